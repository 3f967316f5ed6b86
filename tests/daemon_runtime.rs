//! Issue 12: the daemon's executor is one thread (`current_thread`), so a scan's hand-offs
//! (scanner task, engine, subscriber forwarder, socket writer) are queue pushes rather than
//! futex wake-ups of another worker; blocking work still goes to the blocking pool. `status`
//! reports the shape, and the daemon's threads show it.

mod support;

use support::{DaemonProcess, SimProcess, daemon_config};
use wxcardd::control::protocol::{Command, LookupParams};

#[test]
fn the_executor_is_one_thread_and_lookups_still_work() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "");
    let daemon = DaemonProcess::start(&config, &socket, &[]);
    let mut client = daemon.client();

    let status = client.request(&Command::Status).unwrap();
    let runtime = &status["result"]["runtime"];
    assert_eq!(runtime["flavor"], "current_thread", "{status}");
    assert_eq!(runtime["workers"], 1, "{status}");

    // A lookup runs on the executor (the async read, then the cache write on the blocking
    // pool) and comes back.
    let lookup = client
        .request(&Command::Lookup(LookupParams {
            wx_code: "812345678901234567".into(),
            card_id: None,
        }))
        .unwrap();
    assert_eq!(lookup["result"]["source"], "api", "{lookup}");

    // No executor worker threads: tokio names its multi-thread workers (and, by default, its
    // blocking threads) "tokio-runtime-worker"; the daemon names its blocking pool.
    let pid = daemon.child.id();
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("tokio-runtime")),
        "{names:?}"
    );
}

/// The daemon's blocking-pool threads (named by `wxcardd::daemon::runtime`; comm holds 15
/// bytes of the name) and the context switches of each so far (to see the pool at rest).
fn blocking_threads(pid: u32) -> std::collections::BTreeMap<u32, u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| {
            let t = t.ok()?;
            let name = std::fs::read_to_string(t.path().join("comm")).ok()?;
            if name.trim() != &"wxcardd-blocking"[..15] {
                return None;
            }
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let switches = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            Some((t.file_name().to_str()?.parse().ok()?, switches))
        })
        .collect()
}

/// Issue 12 (RSS after a burst): a connection from a listed peer (here the daemon's own uid)
/// is let in without the blocking pool. The peer check used to be a `spawn_blocking` per
/// connection, so a burst of connections started up to `max_blocking_threads` threads (14 in
/// the rss bench), each with its stack and malloc arena use, and woke the idle ones.
#[test]
fn a_burst_of_control_connections_uses_no_blocking_thread() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    const BURST: usize = 120;
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // Nothing else on the blocking pool meanwhile: no metrics file, no probe.
    let (config, socket) = support::quiet_daemon_config(
        dir.path(),
        &sim.base_url(),
        &format!("max_connections = {BURST}\n"),
    );
    let daemon = DaemonProcess::start(&config, &socket, &[]);
    let pid = daemon.child.id();
    // Start-up's store work (the first `status` tick at READY=1, the outbox and dead-letter
    // checks) runs on the pool: wait until it is done. The next tick is 5 s after READY=1;
    // the burst is over long before.
    let mut before = blocking_threads(pid);
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = blocking_threads(pid);
        if now == before || Instant::now() > deadline {
            break;
        }
        before = now;
    }

    // All connected while the daemon is stopped (they wait in the listen backlog), so that
    // its executor accepts and checks them back to back when it runs again, as in a real
    // burst; then each one's VERSION line is read.
    let signal = |sig| {
        // SAFETY: kill(2) on the daemon this test started; no memory is touched.
        assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    };
    signal(libc::SIGSTOP);
    let streams: Vec<_> = (0..BURST)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
        .collect();
    signal(libc::SIGCONT);
    for stream in &streams {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        assert!(line.contains("\"VERSION\""), "{line}");
    }
    // Idle blocking threads live on for 10 s (tokio's keep-alive): every thread the burst
    // started is still there. (sled's own threads inherit the name of the pool thread that
    // opened the store, and its IO threads come and go: one may show up meanwhile.)
    let started: Vec<u32> = blocking_threads(pid)
        .into_keys()
        .filter(|tid| !before.contains_key(tid))
        .collect();
    drop(streams);
    assert!(
        started.len() <= 1,
        "{BURST} connections started blocking threads {started:?} ({} before: {before:?})",
        before.len()
    );
}
