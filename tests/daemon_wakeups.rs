//! A subscriber reading its event lines must not wake the daemon. A Unix socket reports
//! "writable" to epoll each time its peer reads; registered for that (as tokio registers every
//! stream), the daemon woke once per line per subscriber for nothing (BENCHMARKS.md, "Issue
//! 12", part 8). Counted on the real daemon from its executor thread's context switches.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Voluntary context switches of the daemon's executor (its main thread).
fn executor_switches(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

/// Waits until the executor has not switched for `quiet` (it is asleep), up to 5 s.
fn settle(pid: u32, quiet: Duration) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = executor_switches(pid);
    loop {
        std::thread::sleep(quiet);
        let now = executor_switches(pid);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

fn connect(path: &std::path::Path) -> BufReader<UnixStream> {
    let stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut version = String::new();
    reader.read_line(&mut version).unwrap();
    assert!(version.contains("VERSION"), "{version}");
    reader
}

fn request(conn: &mut BufReader<UnixStream>, line: &str) -> String {
    conn.get_mut().write_all(line.as_bytes()).unwrap();
    let mut answer = String::new();
    conn.read_line(&mut answer).unwrap();
    answer
}

#[test]
fn a_subscriber_reading_its_events_does_not_wake_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = support::quiet_daemon_config(dir.path(), "http://127.0.0.1:9/", "");
    let daemon = support::DaemonProcess::start(&config, &socket, &[]);
    let pid = daemon.child.id();

    let mut subscriber = connect(&socket);
    let answer = request(&mut subscriber, "{\"id\":1,\"cmd\":\"subscribe\"}\n");
    assert!(answer.contains("RESULT"), "{answer}");
    let mut producer = connect(&socket);

    let rounds = 8;
    let mut woken = 0;
    for round in 0..rounds {
        // Not a member code: a `scan` event and no lookup.
        let answer = request(
            &mut producer,
            &format!("{{\"id\":{round},\"cmd\":\"scan\",\"code\":\"not-a-card-{round}\"}}\n"),
        );
        assert!(answer.contains("RESULT"), "{answer}");
        let before = settle(pid, Duration::from_millis(150));
        // Only now does the subscriber read its line: that read alone must not wake it.
        let mut line = String::new();
        subscriber.read_line(&mut line).unwrap();
        assert!(line.contains(&format!("not-a-card-{round}")), "{line}");
        let after = settle(pid, Duration::from_millis(150));
        woken += after - before;
    }
    // One stray wake-up (a timer) is tolerated; a wake-up per line read is the defect.
    assert!(
        woken <= 1,
        "the daemon woke {woken} times for {rounds} lines its subscriber read"
    );
}
