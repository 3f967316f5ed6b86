//! End-to-end daemon benchmark (std-only timing, `harness = false`), spawning the real release
//! binaries on loopback: scan-to-`card`-event latency through a pty serial scanner and the
//! control socket (cache hit and backend over HTTP), idle RSS, binary sizes, start to READY=1
//! with 100,000 cached cards, and outbox replay throughput against the simulator.
//!
//! Run: `cargo bench --bench daemon` (cargo builds `wxcardd` in target/release first; the
//! simulator runs in-process). `WXCARDD_BENCH_SCANS=N` changes the scans per variant (default 10,000),
//! `WXCARDD_BENCH_WRITES=N` the queued writes (default 5,000), `WXCARDD_BENCH_ONLY=scan|ready|
//! replay|rss` runs one part, `WXCARDD_BENCH_DIR` puts the temporary stores on a given disk.
//! The `rss` part (wxcardd's VmRSS after an ordinary run of `WXCARDD_BENCH_ORDINARY` scans,
//! default 2,000, then after 200 control connections at once and `WXCARDD_BENCH_RSS_SCANS`
//! scans, default 20,000) is issue 12's RSS figure; `WXCARDD_BENCH_STORE` adds lines to its
//! `[store]` section (`cache_capacity_bytes = 2097152`) and `WXCARDD_BENCH_BIN` runs another
//! `wxcardd` binary (a before/after pair without rebuilding the bench).
//! Figures go to BENCHMARKS.md, "Daemon (end to end)".

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::SimProcess;
use support::hal_common::{Pty, point_link};
use wxcardd::api::{Amount, MemberCard};
use wxcardd::service::CachedAnswer;
use wxcardd::store::{CardKeys, Store, StoreConfig};

const DAEMON: &str = env!("CARGO_BIN_EXE_wxcardd");
const CTL: &str = env!("CARGO_BIN_EXE_wxcardctl");
/// Distinct cards in the simulator's card file for the scan runs.
const SCAN_CARDS: u64 = 1_000;
const WARMUP: usize = 500;
const READY_CARDS: u64 = 100_000;
const READY_RESTARTS: usize = 7;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| v.parse().expect("a number"))
}

fn wx_code(i: u64) -> String {
    format!("8666{i:014}")
}

fn check_binaries() {
    for bin in [DAEMON, CTL] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: run `cargo build --release --bins` (or `cargo bench --bench daemon`, \
             which builds it)"
        );
    }
}

// ---- processes ----------------------------------------------------------------------------

/// The simulator, started as the integration tests start it (in this process, on a thread
/// of its own: the daemon's CPU and context switches are read from its own /proc entry).
fn start_sim(cards: Option<&Path>) -> SimProcess {
    match cards {
        Some(file) => {
            let text = std::fs::read_to_string(file).expect("the card file");
            SimProcess::with_cards(wxcard_sim::parse_card_file(&text).expect("a card file"))
        }
        None => SimProcess::start(&[]),
    }
}

/// A running `wxcardd`; `ready_after` is from just before spawn to the READY=1 datagram.
struct Daemon {
    child: Child,
    socket: PathBuf,
    ready_after: Duration,
}

impl Daemon {
    fn start(config: &Path, socket: &Path) -> Daemon {
        let dir = config.parent().unwrap();
        let notify_path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("wxcardd.log"))
            .unwrap();
        let started = Instant::now();
        let bin = std::env::var("WXCARDD_BENCH_BIN").unwrap_or_else(|_| DAEMON.to_owned());
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("wxcardd starts");
        let mut buf = [0u8; 4096];
        let ready_after = loop {
            let n = notify.recv(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "no READY=1 from wxcardd within 30 s: {e} (see {}/wxcardd.log)",
                    dir.display()
                )
            });
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                break started.elapsed();
            }
        };
        Daemon {
            child,
            socket: socket.to_owned(),
            ready_after,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and the exit status, which must be 0.
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "wxcardd exit");
    }

    fn client(&self) -> wxcardd::control::client::ControlClient {
        wxcardd::control::client::ControlClient::connect(
            &self.socket,
            Some(Duration::from_secs(30)),
        )
        .expect("control socket")
    }

    /// A raw subscribed connection: lines are read as text, so the timing does not include
    /// parsing JSON on the bench's side.
    fn subscriber(&self) -> BufReader<UnixStream> {
        let stream = UnixStream::connect(&self.socket).expect("control socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains("\"VERSION\""), "{line}");
        writer
            .write_all(b"{\"id\":1,\"cmd\":\"subscribe\"}\n")
            .unwrap();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.contains("\"RESULT\"") {
                assert!(line.contains("\"subscribed\":true"), "{line}");
                return reader;
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's config: store and socket in `dir`; `service` and `extra` lines added.
fn write_config(dir: &Path, api: SocketAddr, service: &str, extra: &str) -> (PathBuf, PathBuf) {
    let socket = dir.join("control.sock");
    let text = format!(
        "[api]\nbase_url = \"http://{api}/\"\n\n[service]\n{service}\n\n\
         [store]\ndir = \"{}\"\n\n[control]\nsocket = \"{}\"\n{extra}",
        dir.join("store").display(),
        socket.display()
    );
    let path = dir.join("wxcardd.toml");
    std::fs::write(&path, text).unwrap();
    (path, socket)
}

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("WXCARDD_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

// ---- /proc --------------------------------------------------------------------------------

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User and system CPU time of a process (all threads) so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Voluntary plus involuntary context switches of all of a process's threads.
fn context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status =
            std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if line.contains("ctxt_switches:") {
                total += line
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
    }
    total
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---- statistics ---------------------------------------------------------------------------

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_nanos() as f64 / 1000.0)
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort_unstable();
    println!(
        "{name}: n={} median={} p90={} p99={} p99.9={} max={}",
        v.len(),
        us(pct(&v, 0.5)),
        us(pct(&v, 0.9)),
        us(pct(&v, 0.99)),
        us(pct(&v, 0.999)),
        us(v[v.len() - 1])
    );
}

// ---- 1. scan to card event, idle RSS ------------------------------------------------------

fn card_file(dir: &Path) -> PathBuf {
    let path = dir.join("cards.toml");
    let mut text = String::new();
    for i in 0..SCAN_CARDS {
        text += &format!(
            "[[card]]\nwxCode = \"{}\"\ncardCode = \"B{i:07}\"\nbalance = \"{}.{:02}\"\n\
             discount = \"0.95\"\n\n",
            wx_code(i),
            i % 5000,
            i % 100
        );
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Scans `n` codes (round robin over the card file) through the pty, one at a time, and
/// returns write-to-`card`-event latencies; every event is checked for its code and source.
fn scan_run(
    pty: &mut Pty,
    events: &mut BufReader<UnixStream>,
    n: usize,
    source: &str,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(n);
    let mut line = String::new();
    for i in 0..n {
        let code = wx_code(i as u64 % SCAN_CARDS);
        let frame = format!("{code}\r");
        let t0 = Instant::now();
        pty.master.write_all(frame.as_bytes()).expect("pty write");
        let t1 = loop {
            line.clear();
            events.read_line(&mut line).expect("event line");
            if line.contains("\"event\":\"card\"") {
                break Instant::now();
            }
            assert!(!line.contains("\"ERROR\""), "{line}");
        };
        latencies.push(t1 - t0);
        let card: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(card["wx_code"], code.as_str(), "{line}");
        assert_eq!(card["source"], source, "{line}");
        assert_eq!(card["outcome"], "card", "{line}");
    }
    latencies
}

fn bench_scans(scans: usize) {
    let dir = temp_dir();
    let sim = start_sim(Some(&card_file(dir.path())));
    let mut pty = Pty::open();
    let link = dir.path().join("scanner-front");
    point_link(&link, &pty.slave);
    let scanner = format!(
        "\n[[scanner]]\nname = \"front\"\nduplicate_window_ms = 0\n\
         device = {{ kind = \"serial\", path = \"{}\" }}\n",
        link.display()
    );
    let (config, socket) = write_config(dir.path(), sim.api, "", &scanner);
    let daemon = Daemon::start(&config, &socket);
    let pid = daemon.pid();
    let mut control = daemon.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !control
        .request(&wxcardd::control::protocol::Command::Status)
        .unwrap()["result"]["scanners"]
        .to_string()
        .contains("\"connected\"")
    {
        assert!(Instant::now() < deadline, "the pty scanner never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (rss0, _) = rss_kib(pid);
    println!(
        "idle RSS after start (scanner connected, 1 s idle): {}",
        mib(rss0)
    );

    for (variant, source) in [
        ("backend on loopback (HTTP to wxcard-sim)", "api"),
        ("cache hit (backend refused, breaker open)", "cache"),
    ] {
        if source == "cache" {
            sim.set_fault("refuse");
            // Failed lookups until the breaker opens; then lookups answer from the cache at once.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let lookup = wxcardd::control::protocol::Command::Lookup(
                    wxcardd::control::protocol::LookupParams {
                        wx_code: wx_code(0),
                        card_id: None,
                    },
                );
                assert_eq!(
                    control.request(&lookup).unwrap()["result"]["source"],
                    "cache"
                );
                let status = control
                    .request(&wxcardd::control::protocol::Command::Status)
                    .unwrap();
                if status["result"]["service"]["online"] == false {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the breaker never opened: {status}"
                );
            }
        }
        // A new subscription per variant: the lookups above published card events too.
        let mut events = daemon.subscriber();
        scan_run(&mut pty, &mut events, WARMUP, source);
        let (cpu0, cs0) = (cpu_time(pid), context_switches(pid));
        let started = Instant::now();
        let latencies = scan_run(&mut pty, &mut events, scans, source);
        let wall = started.elapsed();
        let (cpu, cs) = (cpu_time(pid) - cpu0, context_switches(pid) - cs0);
        println!("load average: {}", loadavg());
        summary(&format!("pty write -> card event, {variant}"), latencies);
        println!(
            "  wxcardd CPU {:.1} us/scan, {:.1} context switches/scan, {:.0} scans/s paced",
            cpu.as_secs_f64() * 1e6 / scans as f64,
            cs as f64 / scans as f64,
            scans as f64 / wall.as_secs_f64()
        );
    }
    // The same cache hits without the pty and the scanner task: `lookup` request to answer.
    let mut raw = daemon.subscriber();
    let mut line = String::new();
    let mut round_trips = Vec::with_capacity(scans);
    for i in 0..WARMUP + scans {
        let request = format!(
            "{{\"id\":{},\"cmd\":\"lookup\",\"wx_code\":\"{}\"}}\n",
            i + 2,
            wx_code(i as u64 % SCAN_CARDS)
        );
        let t0 = Instant::now();
        raw.get_mut().write_all(request.as_bytes()).unwrap();
        loop {
            line.clear();
            raw.read_line(&mut line).expect("answer line");
            if line.contains("\"RESULT\"") {
                break;
            }
        }
        if i >= WARMUP {
            round_trips.push(t0.elapsed());
        }
        assert!(line.contains("\"source\":\"cache\""), "{line}");
    }
    summary(
        "control socket lookup -> RESULT, cache hit (no pty, no scanner task)",
        round_trips,
    );
    drop(raw);
    std::thread::sleep(Duration::from_secs(1));
    let (rss1, hwm) = rss_kib(pid);
    println!(
        "idle RSS after {} scans and {} lookups (1 s idle): {} (peak VmHWM {})",
        2 * (scans + WARMUP),
        scans + WARMUP,
        mib(rss1),
        mib(hwm)
    );
    drop(control);
    daemon.stop();
}

// ---- 5. RSS after an ordinary run and after 200 connections and 20,000 scans --------------

/// Control connections opened at once in [`bench_rss`], and how many of them subscribe (with
/// the bench's own event reader, `max_subscribers` = 16).
const RSS_CONNECTIONS: usize = 200;
const RSS_SUBSCRIBERS: usize = 15;

/// One of the [`RSS_CONNECTIONS`] clients: connects when `start` opens, asks `status` and a
/// cache `lookup` (a subscriber subscribes instead and reads every event until the daemon
/// closes it), then holds the connection until `done` is set.
fn rss_client(
    socket: PathBuf,
    n: usize,
    start: std::sync::Arc<std::sync::Barrier>,
    connected: std::sync::Arc<std::sync::Barrier>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    start.wait();
    let stream = UnixStream::connect(&socket).expect("control socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("\"VERSION\""), "connection {n}: {line}");
    let subscriber = n < RSS_SUBSCRIBERS;
    let requests = if subscriber {
        "{\"id\":1,\"cmd\":\"subscribe\"}\n".to_owned()
    } else {
        format!(
            "{{\"id\":1,\"cmd\":\"status\"}}\n{{\"id\":2,\"cmd\":\"lookup\",\"wx_code\":\"{}\"}}\n",
            wx_code(n as u64 % SCAN_CARDS)
        )
    };
    writer.write_all(requests.as_bytes()).unwrap();
    let mut answers = 0;
    while answers < if subscriber { 1 } else { 2 } {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(!line.contains("\"ERROR\""), "connection {n}: {line}");
        answers += usize::from(line.contains("\"RESULT\""));
    }
    connected.wait();
    if subscriber {
        // Every card event of the scans, until the bench closes the connection's write half.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => assert!(!line.contains("\"ERROR\""), "connection {n}: {line}"),
            }
            if done.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
        }
    } else {
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Where the anonymous RSS sits, from /proc/PID/smaps (readable by root or the same uid when
/// the daemon is dumpable): the main heap (`[heap]`), the largest other anonymous mappings
/// (malloc's arenas are 64 MiB reservations, thread stacks 2 MiB or less, sled's large
/// allocations their own mmaps) and their count, KiB of RSS.
fn anon_mappings(pid: u32) -> Option<String> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut maps: Vec<(String, u64, u64)> = Vec::new();
    let mut current: Option<(String, u64, bool)> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let (from, to) = first.split_once('-')?;
            let size =
                (u64::from_str_radix(to, 16).ok()? - u64::from_str_radix(from, 16).ok()?) / 1024;
            let name = words.nth(4).unwrap_or("").to_owned();
            let anon = name.is_empty() || name == "[heap]" || name == "[stack]";
            current = Some((name, size, anon));
        } else if first == "Rss:" {
            if let Some((name, size, true)) = current.take() {
                let rss: u64 = words.next()?.parse().ok()?;
                if rss > 0 {
                    maps.push((name, size, rss));
                }
            }
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.2));
    let total: u64 = maps.iter().map(|m| m.2).sum();
    let top: Vec<String> = maps
        .iter()
        .take(6)
        .map(|(name, size, rss)| {
            let name = if name.is_empty() { "anon" } else { name };
            format!("{name} {rss}/{size}")
        })
        .collect();
    Some(format!(
        "smaps: {} anonymous mappings, {total} KiB resident; largest (RSS/size KiB): {}",
        maps.len(),
        top.join(", ")
    ))
}

/// wxcardd's RSS after an ordinary run (start, a scanner, one subscriber, `ordinary` scans:
/// what `side-by-side.sh` does with N=2000 per path) and then after [`RSS_CONNECTIONS`]
/// control connections opened at once and `scans` more scans through the pty while they stay
/// open; backend on loopback, 1,000 distinct cards.
fn bench_rss(ordinary: usize, scans: usize) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Barrier};

    let dir = temp_dir();
    let sim = start_sim(Some(&card_file(dir.path())));
    let mut pty = Pty::open();
    let link = dir.path().join("scanner-front");
    point_link(&link, &pty.slave);
    // The bench runs as the daemon's own uid, which may hold max_connections + 8.
    let extra = format!(
        "max_connections = {RSS_CONNECTIONS}\n\n[[scanner]]\nname = \"front\"\n\
         duplicate_window_ms = 0\ndevice = {{ kind = \"serial\", path = \"{}\" }}\n",
        link.display()
    );
    let (config, socket) = write_config(dir.path(), sim.api, "", &extra);
    if let Ok(store) = std::env::var("WXCARDD_BENCH_STORE") {
        let text = std::fs::read_to_string(&config).unwrap();
        let text = text.replacen("[store]\n", &format!("[store]\n{store}\n"), 1);
        std::fs::write(&config, text).unwrap();
        println!("rss: [store] {store}");
    }
    let daemon = Daemon::start(&config, &socket);
    let pid = daemon.pid();
    let mut control = daemon.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !control
        .request(&wxcardd::control::protocol::Command::Status)
        .unwrap()["result"]["scanners"]
        .to_string()
        .contains("\"connected\"")
    {
        assert!(Instant::now() < deadline, "the pty scanner never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(control);
    std::thread::sleep(Duration::from_secs(1));
    // VmRSS, of which anonymous (heap, stacks) and file-backed (the binary's pages), VmHWM and
    // the thread count.
    let figures = || {
        if let Some(maps) = anon_mappings(pid) {
            println!("     {maps}");
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        format!(
            "{} (anon {}, file {}; VmHWM {}; {} threads)",
            mib(field("VmRSS:")),
            mib(field("RssAnon:")),
            mib(field("RssFile:")),
            mib(field("VmHWM:")),
            field("Threads:")
        )
    };
    println!(
        "rss: after start (scanner connected, 1 s idle): {}",
        figures()
    );

    let mut events = daemon.subscriber();
    scan_run(&mut pty, &mut events, ordinary, "api");
    drop(events);
    std::thread::sleep(Duration::from_secs(1));
    println!(
        "rss: after an ordinary run ({ordinary} scans, one subscriber, 1 s idle): {}",
        figures()
    );

    let start = Arc::new(Barrier::new(RSS_CONNECTIONS + 1));
    let connected = Arc::new(Barrier::new(RSS_CONNECTIONS + 1));
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..RSS_CONNECTIONS)
        .map(|n| {
            let (socket, start, connected, done) = (
                socket.clone(),
                Arc::clone(&start),
                Arc::clone(&connected),
                Arc::clone(&done),
            );
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || rss_client(socket, n, start, connected, done))
                .unwrap()
        })
        .collect();
    let t0 = Instant::now();
    start.wait();
    connected.wait();
    println!(
        "rss: {RSS_CONNECTIONS} connections open and answered ({:.0} ms): {}",
        t0.elapsed().as_secs_f64() * 1e3,
        figures()
    );
    let mut events = daemon.subscriber();
    let t0 = Instant::now();
    scan_run(&mut pty, &mut events, scans, "api");
    println!(
        "rss: after {scans} scans ({:.1} s) with the connections open: {}",
        t0.elapsed().as_secs_f64(),
        figures()
    );
    done.store(true, Ordering::SeqCst);
    // One more scan's event ends each subscriber's read.
    scan_run(&mut pty, &mut events, 1, "api");
    drop(events);
    for client in clients {
        client.join().expect("a client thread");
    }
    // The runtime's idle blocking threads exit after 10 s (tokio's thread_keep_alive).
    let mut idle = 0;
    for wait in [1, 5, 15] {
        std::thread::sleep(Duration::from_secs(wait - idle));
        idle = wait;
        println!("rss: connections closed, {wait} s idle: {}", figures());
    }
    println!("load average: {}", loadavg());
    daemon.stop();
}

// ---- 2. binary sizes ----------------------------------------------------------------------

fn bench_sizes() {
    let dir = temp_dir();
    // `wxcard-sim` is another package's binary: measured when built next to `wxcardd`.
    let sim = Path::new(DAEMON).with_file_name("wxcard-sim");
    let sim = sim.to_str().expect("a UTF-8 path");
    for bin in [DAEMON, CTL, sim] {
        if !Path::new(bin).exists() {
            println!("size {bin}: not built (cargo build --release -p wxcard-sim)");
            continue;
        }
        let size = std::fs::metadata(bin).unwrap().len();
        let copy = dir.path().join("stripped");
        std::fs::copy(bin, &copy).unwrap();
        let stripped = Command::new("strip")
            .arg(&copy)
            .status()
            .ok()
            .filter(|s| s.success())
            .map(|_| std::fs::metadata(&copy).unwrap().len());
        let name = Path::new(bin).file_name().unwrap().to_string_lossy();
        match stripped {
            Some(s) => println!("size {name}: {size} bytes, {s} bytes stripped"),
            None => println!("size {name}: {size} bytes (strip(1) not available)"),
        }
    }
}

// ---- 3. start to READY=1 with 100,000 cached cards ----------------------------------------

/// Fills the store the daemon will open with `cards` cards, as the service caches them.
fn populate(store_dir: &Path, cards: u64) {
    let (store, _) = Store::open(store_dir, &StoreConfig::default()).expect("store opens");
    let discount: Amount = "0.95".parse().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for i in 0..cards {
        let card_code = format!("B{i:07}");
        let answer = CachedAnswer::Card(MemberCard {
            card_code: card_code.clone(),
            balance: format!("{}.{:02}", i % 5000, i % 100).parse().unwrap(),
            discount,
            can_member_price: true,
        });
        store
            .put_card(&CardKeys::both(wx_code(i), card_code), now_ms, &answer)
            .expect("put_card");
    }
    assert_eq!(store.card_count().unwrap(), cards);
    store.close().expect("store closes");
}

fn bench_ready() {
    let dir = temp_dir();
    // The backend is refused: readiness must not depend on it.
    let sim = start_sim(None);
    sim.set_fault("refuse");
    let (config, socket) = write_config(dir.path(), sim.api, "", "");
    let t = Instant::now();
    populate(&dir.path().join("store"), READY_CARDS);
    println!(
        "populated {READY_CARDS} cards in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let first = Daemon::start(&config, &socket);
    println!(
        "start -> READY=1, first start after the store was filled: {:.1} ms",
        first.ready_after.as_secs_f64() * 1e3
    );
    first.stop();
    let mut times = Vec::new();
    let mut rss = 0;
    for _ in 0..READY_RESTARTS {
        let daemon = Daemon::start(&config, &socket);
        times.push(daemon.ready_after);
        std::thread::sleep(Duration::from_millis(500));
        rss = rss_kib(daemon.pid()).0;
        let mut client = daemon.client();
        let lookup =
            wxcardd::control::protocol::Command::Lookup(wxcardd::control::protocol::LookupParams {
                wx_code: wx_code(READY_CARDS - 1),
                card_id: None,
            });
        let answer = client.request(&lookup).unwrap();
        assert_eq!(answer["result"]["source"], "cache", "{answer}");
        assert_eq!(answer["result"]["outcome"], "card", "{answer}");
        drop(client);
        daemon.stop();
    }
    println!("load average: {}", loadavg());
    times.sort_unstable();
    println!(
        "start -> READY=1 with {READY_CARDS} cards, {READY_RESTARTS} clean restarts: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        pct(&times, 0.5).as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "idle RSS with {READY_CARDS} cards cached, 0.5 s after READY: {}",
        mib(rss)
    );
}

// ---- 4. replay throughput -----------------------------------------------------------------

fn bench_replay(writes: usize) {
    let dir = temp_dir();
    let sim = start_sim(None);
    sim.set_fault("refuse");
    let (config, socket) = write_config(
        dir.path(),
        sim.api,
        "probe_interval_ms = 100",
        "subscriber_queue = 8192",
    );
    let daemon = Daemon::start(&config, &socket);
    let mut control = daemon.client();
    let mut enqueue = Vec::with_capacity(writes);
    for i in 0..writes {
        let line = format!(
            "{{\"id\":{i},\"cmd\":\"create\",\"member\":{{\"wxCode\":\"{}\",\"name\":\"Test Person\",\
             \"phone\":\"139{:08}\"}}}}\n",
            wx_code(500_000 + i as u64),
            i
        );
        let t0 = Instant::now();
        control.send_raw(line.as_bytes()).unwrap();
        let answer = control.read_line().unwrap();
        enqueue.push(t0.elapsed());
        assert_eq!(answer["result"]["outcome"], "queued", "{answer}");
    }
    summary(
        &format!("create -> queued answer (control socket, durable enqueue), {writes} writes"),
        enqueue,
    );
    let mut events = daemon.subscriber();
    let t0 = Instant::now();
    sim.set_fault("none");
    let (mut first, mut online, mut delivered) = (None, None, 0);
    let mut line = String::new();
    let (mut gaps, mut previous) = (Vec::with_capacity(writes), None::<Instant>);
    while delivered < writes {
        line.clear();
        events.read_line(&mut line).expect("event line");
        assert!(!line.contains("\"ERROR\""), "{line}");
        if line.contains("\"event\":\"backend\"") && line.contains("\"online\"") {
            online.get_or_insert(t0.elapsed());
        }
        if line.contains("\"event\":\"outbox\"") {
            assert!(line.contains("\"delivered\""), "{line}");
            first.get_or_insert(t0.elapsed());
            delivered += 1;
            let now = Instant::now();
            if let Some(p) = previous {
                gaps.push(now - p);
            }
            previous = Some(now);
        }
    }
    let last = t0.elapsed();
    let first = first.unwrap();
    let status = control
        .request(&wxcardd::control::protocol::Command::Status)
        .unwrap();
    assert_eq!(status["result"]["service"]["outbox_pending"], 0, "{status}");
    assert_eq!(status["result"]["service"]["dead_letters"], 0, "{status}");
    let counters = sim.counters();
    let created = counters["createmembercard"].as_object().expect("counters");
    assert_eq!(created.len(), writes, "every write reached the simulator");
    assert!(
        created
            .values()
            .all(|c| c["applications"] == 1 && c["receipts"] == 1)
    );
    println!("load average: {}", loadavg());
    println!(
        "replay {writes} writes: fault cleared -> online event {:.0} ms, -> first delivery {:.0} ms, \
         -> outbox empty {:.0} ms; {:.0} writes/s first to last delivery, {:.0} writes/s from the fault cleared",
        online.unwrap_or_default().as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        last.as_secs_f64() * 1e3,
        (writes - 1) as f64 / (last - first).as_secs_f64(),
        writes as f64 / last.as_secs_f64()
    );
    summary("  time between two delivered events", gaps);
    drop(events);
    drop(control);
    daemon.stop();
}

fn main() {
    // `cargo bench` passes `--bench`; the bench takes no other arguments.
    check_binaries();
    let only = std::env::var("WXCARDD_BENCH_ONLY").ok();
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    println!("load average at start: {}", loadavg());
    if run("scan") {
        bench_scans(env_num("WXCARDD_BENCH_SCANS", 10_000));
        bench_sizes();
    }
    if run("ready") {
        bench_ready();
    }
    if run("replay") {
        bench_replay(env_num("WXCARDD_BENCH_WRITES", 5_000));
    }
    if run("rss") {
        bench_rss(
            env_num("WXCARDD_BENCH_ORDINARY", 2_000),
            env_num("WXCARDD_BENCH_RSS_SCANS", 20_000),
        );
    }
}
