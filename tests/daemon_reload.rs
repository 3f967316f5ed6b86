//! Errors during reload never kill the daemon: a bad config file or a token file that cannot
//! be used is logged and shown in STATUS=, and the daemon keeps running on its previous
//! configuration (lookups still reach the backend with the old client).

mod support;

use serde_json::Value;
use support::{DaemonProcess, SimProcess, daemon_config};
use wxcardd::control::protocol::{Command, LookupParams};

const ACTIVE: &str = "812345678901234567";

fn lookup(daemon: &DaemonProcess) -> Value {
    daemon
        .client()
        .request(&Command::Lookup(LookupParams {
            wx_code: ACTIVE.into(),
            card_id: None,
        }))
        .unwrap()
}

fn sighup(daemon: &DaemonProcess) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGHUP) };
}

/// The STATUS= text of the next READY=1 (a reload ends with one).
fn status_after_reload(daemon: &mut DaemonProcess) -> String {
    let datagram = daemon.wait_notify("READY=1");
    datagram
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= with READY=1: {datagram:?}"))
        .to_owned()
}

#[test]
fn a_failed_reload_is_reported_in_status_and_the_daemon_runs_on() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("api-headers");
    std::fs::write(&headers, "X-Api-Token: GOOD\n").unwrap();
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "");
    let good = std::fs::read_to_string(&config).unwrap().replace(
        "deadline_ms = 2000\n",
        &format!(
            "deadline_ms = 2000\nheaders_file = \"{}\"\n",
            headers.display()
        ),
    );
    std::fs::write(&config, &good).unwrap();
    let mut daemon = DaemonProcess::start(&config, &socket, &[]);
    assert_eq!(lookup(&daemon)["result"]["source"], "api");

    // A config file that does not parse.
    std::fs::write(&config, "[api\nbase_url = 1\n").unwrap();
    sighup(&daemon);
    let status = status_after_reload(&mut daemon);
    assert!(status.contains("last reload failed"), "{status}");
    assert!(!status.contains('\n'), "{status:?}");
    assert_eq!(daemon.child.try_wait().unwrap(), None, "the daemon exited");
    assert_eq!(lookup(&daemon)["result"]["source"], "api");

    // A token file that cannot be used: the running client (and token) stay.
    std::fs::write(&config, &good).unwrap();
    std::fs::write(&headers, "no colon on this line\n").unwrap();
    sighup(&daemon);
    let status = status_after_reload(&mut daemon);
    assert!(status.contains("last reload failed"), "{status}");
    assert_eq!(daemon.child.try_wait().unwrap(), None, "the daemon exited");
    assert_eq!(lookup(&daemon)["result"]["source"], "api");
    let (_, last) = sim.admin_get("last-headers");
    assert_eq!(last["x-api-token"], "GOOD", "{last}");

    // Fixed: the next reload clears the report.
    std::fs::write(&headers, "X-Api-Token: GOOD\n").unwrap();
    sighup(&daemon);
    let status = status_after_reload(&mut daemon);
    assert!(!status.contains("reload failed"), "{status}");
    assert!(status.starts_with("online"), "{status}");
}
