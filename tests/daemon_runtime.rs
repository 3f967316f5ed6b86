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
