//! Crash safety of the outbox with a real process and a real `kill -9`.
//!
//! The test re-runs its own binary as a helper process (the ignored `burst_helper` test,
//! selected by an environment variable) that enqueues writes as fast as it can and prints
//! `ACK <id> <seq>` the moment each `enqueue` returns. The test SIGKILLs it after 1, 10 and
//! 50 acknowledgements and at a random point, on the same store each time, then reopens the
//! store and checks that every acknowledged write is present, intact and in order, that the
//! store opened cleanly, and that nothing but acknowledged (or in-flight) writes appeared.
//!
//! `kill -9` proves what reached the kernel before the acknowledgement; the fsync that makes
//! it survive a power cut is checked by the store's design, not by this test (see
//! docs/store.md).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use wxcardd::store::{Store, StoreConfig};

const DIR_ENV: &str = "WXCARDD_STORE_BURST_DIR";
const START_ENV: &str = "WXCARDD_STORE_BURST_START";
/// `burst` (enqueue only) or `cycle` (enqueue three, deliver them all, repeat).
const MODE_ENV: &str = "WXCARDD_STORE_BURST_MODE";

/// The payload; `filler` is a function of `seq`, so damage is detectable.
#[derive(Debug, Serialize, Deserialize)]
struct BurstWrite {
    seq: u64,
    filler: String,
}

fn filler(seq: u64) -> String {
    format!("{seq:x}-").repeat(20)
}

fn config() -> StoreConfig {
    StoreConfig {
        max_outbox: 1_000_000,
        ..StoreConfig::default()
    }
}

/// The helper process body. Run only by `spawn_burst`, through the environment.
#[test]
#[ignore = "helper process for the kill -9 tests below; they run it themselves"]
fn burst_helper() {
    use std::io::Write;
    let dir = std::env::var(DIR_ENV).expect("run by the crash test, which sets the store dir");
    let start: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let (store, report) = Store::open(&dir, &config()).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nOPEN pending={} clean={}",
        report.pending,
        report.quarantined.is_none()
    )
    .unwrap();
    out.flush().unwrap();
    let cycle = std::env::var(MODE_ENV).is_ok_and(|m| m == "cycle");
    for seq in start.. {
        let id = store
            .enqueue(
                seq,
                &BurstWrite {
                    seq,
                    filler: filler(seq),
                },
            )
            .unwrap();
        writeln!(out, "\nACK {id} {seq}").unwrap();
        out.flush().unwrap();
        if cycle && seq % 3 == 2 {
            // Deliver everything pending; the last removal drains the outbox and rotates
            // the sealing key.
            let ids: Vec<u64> = store
                .pending::<BurstWrite>()
                .map(|e| e.unwrap().id)
                .collect();
            for id in ids {
                // Announced first: a kill between the removal and DONE must not look like a
                // lost write.
                writeln!(out, "\nREMOVING {id}").unwrap();
                out.flush().unwrap();
                store.remove_delivered(id).unwrap();
                writeln!(out, "\nDONE {id}").unwrap();
                out.flush().unwrap();
            }
        }
    }
}

fn spawn_burst(dir: &Path, start: u64, mode: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "burst_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(DIR_ENV, dir)
        .env(START_ENV, start.to_string())
        .env(MODE_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the helper process")
}

/// What a helper printed before it was killed.
#[derive(Default)]
struct Printed {
    /// Acknowledged `(id, seq)` pairs.
    acks: Vec<(u64, u64)>,
    /// Ids whose `remove_delivered` returned.
    done: Vec<u64>,
    /// Ids whose `remove_delivered` was called (it may or may not have returned).
    removing: Vec<u64>,
}

impl Printed {
    fn take(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("OPEN ") {
            assert!(
                rest.ends_with("clean=true"),
                "helper's open was not clean: {rest}"
            );
        } else if let Some(rest) = line.strip_prefix("ACK ") {
            let mut it = rest.split(' ').map(|n| n.parse::<u64>().unwrap());
            self.acks.push((it.next().unwrap(), it.next().unwrap()));
        } else if let Some(rest) = line.strip_prefix("DONE ") {
            self.done.push(rest.parse().unwrap());
        } else if let Some(rest) = line.strip_prefix("REMOVING ") {
            self.removing.push(rest.parse().unwrap());
        }
    }
}

/// Runs the helper in `mode` from `start` and SIGKILLs it as soon as `kill_when` holds for
/// what it printed so far; returns everything it printed, including lines written before
/// the kill landed.
fn run_and_kill(
    dir: &Path,
    start: u64,
    mode: &str,
    kill_when: impl Fn(&Printed) -> bool,
) -> Printed {
    let mut child = spawn_burst(dir, start, mode);
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = Printed::default();
    let mut lines = stdout.lines();
    while !kill_when(&printed) {
        let line = lines
            .next()
            .expect("helper exited early; see its stderr")
            .unwrap();
        printed.take(&line);
    }
    child.kill().expect("SIGKILL the helper"); // Child::kill sends SIGKILL on Unix
    for line in lines {
        printed.take(&line.unwrap());
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the helper was killed, not finished");
    printed
}

/// Runs the helper in burst mode and returns its acknowledged `(id, seq)` pairs.
fn burst_and_kill(dir: &Path, start: u64, kill_after: usize) -> Vec<(u64, u64)> {
    run_and_kill(dir, start, "burst", |p| p.acks.len() >= kill_after).acks
}

/// Reopens the store after `kills` kills and checks every acknowledged write; returns the
/// next sequence number.
fn check(dir: &Path, acked: &[(u64, u64)], kills: usize) -> u64 {
    let (store, report) = Store::open(dir, &config()).unwrap();
    assert_eq!(report.quarantined, None, "the store opened cleanly");
    assert_eq!(report.lost_acknowledged, None);
    let entries: Vec<_> = store
        .pending::<BurstWrite>()
        .map(|e| e.expect("intact entry"))
        .collect();
    assert_eq!(
        report.pending,
        entries.len() as u64,
        "the counter matches the entries"
    );
    for e in &entries {
        assert_eq!(e.value.seq, e.enqueued_at_ms);
        assert_eq!(
            e.value.filler,
            filler(e.value.seq),
            "entry {} damaged",
            e.id
        );
    }
    assert!(
        entries
            .windows(2)
            .all(|p| p[0].id < p[1].id && p[0].value.seq < p[1].value.seq)
    );
    // Every acknowledged write is there, under its acknowledged id.
    let found: std::collections::HashMap<u64, u64> =
        entries.iter().map(|e| (e.id, e.value.seq)).collect();
    for (id, seq) in acked {
        assert_eq!(
            found.get(id),
            Some(seq),
            "acknowledged write {seq} (id {id}) lost"
        );
    }
    // Besides acknowledged writes, at most the one in flight at each kill appeared.
    let acked_ids: std::collections::HashSet<u64> = acked.iter().map(|a| a.0).collect();
    let extra = entries
        .iter()
        .filter(|e| !acked_ids.contains(&e.id))
        .count();
    assert!(extra <= kills, "{extra} unacknowledged entries");
    let next = entries.last().map_or(0, |e| e.value.seq + 1);
    store.close().unwrap(); // the next helper opens it at once
    next
}

#[test]
fn acknowledged_writes_survive_kill_9_at_several_points() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let random_point = 2 + (nanos % 60) as usize;
    eprintln!("kill points (acks read before SIGKILL): 1, 10, 50, {random_point} (random), 0");
    let mut acked = Vec::new();
    let mut next_seq = 0;
    // 0 last: killed during open or its first write, after recoveries of earlier kills.
    for (kills, kill_after) in [1, 10, 50, random_point, 0].into_iter().enumerate() {
        acked.extend(burst_and_kill(&dir, next_seq, kill_after));
        next_seq = check(&dir, &acked, kills + 1);
    }
    assert!(acked.len() >= 61 + random_point);
}

/// Kills the helper while it delivers and drains the outbox, which rotates the sealing key
/// each time it empties: whatever a kill leaves in the outbox must still open with the key
/// on disk (the empty state is made durable before the key is overwritten), and every write
/// acknowledged and not yet delivered must be there.
#[test]
fn queued_writes_stay_readable_across_kills_during_delivery_and_key_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    // Kill points: after some acks (mid-enqueue or mid-delivery), and right after the
    // removal that drained the outbox and rotated the key (before the next enqueue's flush).
    let random = 5 + (nanos % 40) as usize;
    eprintln!("kill points: 2, 7 acks; 3, 6 deliveries (a drain); {random} acks (random)");
    let points: [(&str, usize); 5] = [
        ("acks", 2),
        ("done", 3),
        ("acks", 7),
        ("done", 6),
        ("acks", random),
    ];
    let mut acked = std::collections::HashMap::new();
    let mut done = std::collections::HashSet::new();
    let mut next_seq = 0;
    for (what, n) in points {
        let printed = run_and_kill(&dir, next_seq, "cycle", |p| match what {
            "acks" => p.acks.len() >= n,
            _ => p.done.len() >= n,
        });
        acked.extend(printed.acks.iter().copied());
        done.extend(printed.done.iter().copied());
        // A removal under way at the kill may have happened or not.
        done.extend(printed.removing.iter().copied());
        let (store, report) = Store::open(&dir, &config()).unwrap();
        assert_eq!(report.quarantined, None);
        assert_eq!(report.lost_acknowledged, None);
        assert!(!report.sealing_key_replaced);
        let present: Vec<_> = store
            .pending::<BurstWrite>()
            .map(|e| e.expect("a queued write no longer opens with the key on disk"))
            .collect();
        for e in &present {
            assert_eq!(e.value.filler, filler(e.value.seq));
        }
        let present_ids: std::collections::HashSet<u64> = present.iter().map(|e| e.id).collect();
        for (id, seq) in &acked {
            if !done.contains(id) {
                assert!(
                    present_ids.contains(id),
                    "undelivered write {seq} (id {id}) lost"
                );
            }
        }
        let last_present = present.iter().map(|e| e.value.seq).max().unwrap_or(0);
        next_seq = 1 + acked.values().copied().max().unwrap_or(0).max(last_present);
        store.close().unwrap(); // the next helper opens it at once
    }
    assert!(
        !done.is_empty(),
        "the helper delivered and drained at least once"
    );
}
