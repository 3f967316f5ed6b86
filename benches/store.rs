//! Store benchmark (std-only timing, `harness = false`): cache hits with 100,000 cards,
//! open-to-ready with 100,000 cards, durable enqueue latency, idle RSS of a process with
//! the store open.
//!
//! Run: `cargo bench --bench store` (release profile). Set `WXCARDD_BENCH_DIR` to put the
//! store on a particular disk (default: the system temp dir). Figures go to BENCHMARKS.md.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wxcardd::store::{CardKeys, Store, StoreConfig};

const LOOKUPS: usize = 20_000;
const ENQUEUES: usize = 1_000;
const RSS_ENV: &str = "WXCARDD_BENCH_RSS_DIR";

/// Shaped like a getmembercard answer as the service would cache it.
#[derive(Serialize, Deserialize)]
struct Card {
    card_code: String,
    balance: String,
    discount: String,
    can_member_price: bool,
    state: String,
}

/// Shaped like an activemember write (MemberInfo), with made-up personal fields.
#[derive(Serialize)]
struct Member {
    wx_card_id: String,
    wx_code: String,
    card_code: String,
    name: String,
    phone: String,
    sex: String,
    birthday: String,
    id_card: String,
    address: String,
}

/// Cards cached: 100,000, or `WXCARDD_BENCH_CARDS`.
fn cards() -> u64 {
    std::env::var("WXCARDD_BENCH_CARDS").map_or(100_000, |v| v.parse().expect("a number"))
}

fn card(i: u64) -> Card {
    Card {
        card_code: format!("C{i:010}"),
        balance: format!("{}.{:02}", i % 5000, i % 100),
        discount: "0.95".into(),
        can_member_price: i % 2 == 0,
        state: "active".into(),
    }
}

fn member(i: u64) -> Member {
    Member {
        wx_card_id: "pXYZ0123456789abcdefghij".into(),
        wx_code: format!("{i:012}"),
        card_code: format!("C{i:010}"),
        name: "Test Person".into(),
        phone: format!("139{i:08}"),
        sex: "F".into(),
        birthday: "1990-01-01".into(),
        id_card: format!("11010119900101{i:04}"),
        address: "1 Example Road, Example City".into(),
    }
}

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort_unstable();
    println!(
        "{name}: n={} median={:?} p99={:?} max={:?}",
        v.len(),
        pct(&v, 0.5),
        pct(&v, 0.99),
        v[v.len() - 1]
    );
}

/// The default config, with `WXCARDD_BENCH_CACHE_BYTES` overriding sled's cache capacity.
fn bench_config() -> StoreConfig {
    let mut c = StoreConfig::default();
    // Hold every card the bench caches, whatever the shipped default bound is.
    c.max_cards = c.max_cards.max(cards());
    if let Ok(v) = std::env::var("WXCARDD_BENCH_CACHE_BYTES") {
        c.cache_capacity_bytes = v.parse().expect("WXCARDD_BENCH_CACHE_BYTES is a number");
    }
    c
}

/// CPU time consumed by this process (all threads) so far.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Child process: open the store, serve a few lookups, report VmRSS.
fn rss_child(dir: &Path) {
    println!("RSS_BEFORE_KIB {}", vm_rss_kib());
    let (store, _) = Store::open(dir, &bench_config()).unwrap();
    println!("RSS_OPEN_KIB {}", vm_rss_kib());
    let mut rng = Rng(7);
    for _ in 0..1_000 {
        let i = rng.next() % cards();
        store
            .get_card_by_wx::<Card>(&format!("{i:012}"))
            .unwrap()
            .unwrap();
    }
    store.enqueue(1, &member(1)).unwrap();
    println!("RSS_KIB {}", vm_rss_kib());
}

fn main() {
    if let Ok(dir) = std::env::var(RSS_ENV) {
        rss_child(Path::new(&dir));
        return;
    }
    let base = std::env::var_os("WXCARDD_BENCH_DIR").map(std::path::PathBuf::from);
    let tmp = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let dir = tmp.path().join("store");
    let config = bench_config();
    println!("store in {}; config {config:?}", dir.display());

    let (store, _) = Store::open(&dir, &config).unwrap();
    let t = Instant::now();
    for i in 0..cards() {
        store
            .put_card(
                &CardKeys::both(format!("{i:012}"), format!("C{i:010}")),
                i,
                &card(i),
            )
            .unwrap();
    }
    let fill = t.elapsed();
    println!(
        "fill: {} cards in {fill:?} ({:?} per put)",
        cards(),
        fill / cards() as u32
    );
    store.close().unwrap();

    // The first open replays the log written by the fill; sled 0.34 writes its snapshot
    // only at open, so later opens start from that snapshot.
    let t = Instant::now();
    let (store, report) = Store::open(&dir, &config).unwrap();
    println!(
        "open after fill (replays the fill's log): {:?}, cards={}",
        t.elapsed(),
        report.cards
    );
    store.close().unwrap();
    let mut opens = Vec::new();
    let cpu = process_cpu();
    for _ in 0..7 {
        let t = Instant::now();
        let (store, report) = Store::open(&dir, &config).unwrap();
        opens.push(t.elapsed());
        assert_eq!(report.cards, cards());
        store.close().unwrap();
    }
    println!("  (process CPU per open: {:?})", (process_cpu() - cpu) / 7);
    // For comparison: sled's own open of the same files, with the same cache capacity.
    let mut raw = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let db = sled::Config::new()
            .path(&dir)
            .cache_capacity(config.cache_capacity_bytes)
            .open()
            .unwrap();
        raw.push(t.elapsed());
        drop(db);
        wait_released(&dir);
    }
    summary("  sled::Config::open alone, same files", raw);
    summary(
        &format!("open-to-ready, {} cards, after a clean restart", cards()),
        opens,
    );

    let (store, _) = Store::open(&dir, &config).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut hits = Vec::with_capacity(LOOKUPS);
    let cpu = process_cpu();
    for n in 0..LOOKUPS {
        let i = rng.next() % cards();
        let t = Instant::now();
        let c = if n % 2 == 0 {
            store.get_card_by_wx::<Card>(&format!("{i:012}")).unwrap()
        } else {
            store
                .get_card_by_code::<Card>(&format!("C{i:010}"))
                .unwrap()
        };
        hits.push(t.elapsed());
        assert_eq!(c.expect("cached").fetched_at_ms, i);
    }
    println!(
        "  (process CPU per lookup: {:?})",
        (process_cpu() - cpu) / LOOKUPS as u32
    );
    summary(
        &format!("cache hit (uniform random over {} cards)", cards()),
        hits,
    );

    // Regular customers: lookups over a hot set of 1,000 cards (most reads move nothing).
    let mut hot = Vec::with_capacity(LOOKUPS);
    for _ in 0..LOOKUPS {
        let i = rng.next() % 1_000;
        let t = Instant::now();
        let c = store.get_card_by_wx::<Card>(&format!("{i:012}")).unwrap();
        hot.push(t.elapsed());
        assert!(c.is_some());
    }
    summary("cache hit (hot set of 1,000 cards)", hot);

    let mut enq = Vec::with_capacity(ENQUEUES);
    for i in 0..ENQUEUES as u64 {
        let m = member(i);
        let t = Instant::now();
        let id = store.enqueue(i, &m).unwrap();
        enq.push(t.elapsed());
        store.remove_delivered(id).unwrap();
    }
    summary("durable enqueue (seal + transaction + flush + fsync)", enq);

    // The store's side of a replay: peek the oldest, remove it, until the backlog is gone
    // (the last removal drains the outbox and rotates the sealing key).
    for i in 0..ENQUEUES as u64 {
        store.enqueue(i, &member(i)).unwrap();
    }
    #[derive(Deserialize)]
    struct Any {}
    let t = Instant::now();
    while let Some(e) = store.peek_oldest::<Any>().unwrap() {
        store.remove_delivered(e.id).unwrap();
    }
    let drain = t.elapsed();
    println!(
        "replay drain (peek + remove, {ENQUEUES} entries): {drain:?}, {:.0} entries/s",
        ENQUEUES as f64 / drain.as_secs_f64()
    );
    store.close().unwrap();

    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(RSS_ENV, &dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> f64 {
        let kib: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .expect("child reported RSS")
            .parse()
            .unwrap();
        kib as f64 / 1024.0
    };
    println!(
        "idle RSS, store open with {} cards: {:.1} MiB just opened, {:.1} MiB after 1,000 lookups and an enqueue",
        cards(),
        field("RSS_OPEN_KIB "),
        field("RSS_KIB ")
    );
    println!(
        "on disk: {:.1} MiB",
        dir_size(&dir) as f64 / (1024.0 * 1024.0)
    );
    if std::env::var_os("WXCARDD_BENCH_KEEP").is_some() {
        println!("kept {}", tmp.keep().display());
    }
}

/// Blocks until sled's IO threads have closed the data file (as `Store::close` does).
fn wait_released(dir: &Path) {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(dir.join("db")).unwrap();
    // SAFETY: flock on a descriptor we own; released when `f` closes.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dir_size(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}
