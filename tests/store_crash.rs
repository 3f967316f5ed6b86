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
    }
}

fn spawn_burst(dir: &Path, start: u64) -> Child {
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
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the helper process")
}

/// Runs the helper from `start` and SIGKILLs it once `kill_after` acks were read; returns
/// the acknowledged `(id, seq)` pairs it printed.
fn burst_and_kill(dir: &Path, start: u64, kill_after: usize) -> Vec<(u64, u64)> {
    let mut child = spawn_burst(dir, start);
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acks = Vec::new();
    let mut lines = stdout.lines();
    while acks.len() < kill_after {
        let line = lines
            .next()
            .expect("helper exited early; see its stderr")
            .unwrap();
        if let Some(rest) = line.strip_prefix("OPEN ") {
            assert!(
                rest.ends_with("clean=true"),
                "helper's open was not clean: {rest}"
            );
        } else if let Some(rest) = line.strip_prefix("ACK ") {
            let mut it = rest.split(' ').map(|n| n.parse::<u64>().unwrap());
            acks.push((it.next().unwrap(), it.next().unwrap()));
        }
    }
    child.kill().expect("SIGKILL the helper"); // Child::kill sends SIGKILL on Unix
    // Acks printed between our last read and the kill count too.
    for line in lines {
        if let Some(rest) = line.unwrap().strip_prefix("ACK ") {
            let mut it = rest.split(' ').map(|n| n.parse::<u64>().unwrap());
            acks.push((it.next().unwrap(), it.next().unwrap()));
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the helper was killed, not finished");
    acks
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
    entries.last().map_or(0, |e| e.value.seq + 1)
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
