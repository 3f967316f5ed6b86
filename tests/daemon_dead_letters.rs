//! Dead letters are loud (issue 13, part 5): a write the backend refuses on replay is an
//! error-level log line naming the entry and endpoint, an `outbox` event, and a metric; when
//! nobody acts, its expiry after the retention is an error-level line and a metric too. None
//! of them carries member data or the card code.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{DaemonProcess, SimProcess, wait_event};
use wxcardd::api::MemberInfo;
use wxcardd::control::protocol::{Command, MemberParams};

const LOST: &str = "812345678901234571";
const PHONE: &str = "13912345678";

fn config(dir: &std::path::Path, base_url: &str, retention: &str) -> std::path::PathBuf {
    let text = format!(
        "[api]\nbase_url = \"{base_url}\"\nconnect_timeout_ms = 300\ndeadline_ms = 1000\n\n\
         [service]\nlookup_deadline_ms = 500\nwrite_deadline_ms = 1000\nprobe_interval_ms = 100\n\
         replay_backoff_base_ms = 50\nreplay_backoff_max_ms = 200\n{retention}\n\n\
         [store]\ndir = \"{}\"\n\n[control]\nsocket = \"{}\"\n\n\
         [metrics]\ntextfile_path = \"{}\"\ninterval_s = 1\n",
        dir.join("store").display(),
        dir.join("control.sock").display(),
        dir.join("textfile/wxcardd.prom").display(),
    );
    let path = dir.join("wxcardd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn is_event_kind(v: &Value, event: &str, kind: &str) -> bool {
    v["class"] == "EVENT" && v["event"] == event && v["kind"] == kind
}

fn poll_file(path: &std::path::Path, want: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l == want) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {want:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The log lines at ERROR level (env_logger's format off the journal).
fn error_lines(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" ERROR "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_dead_letter_and_its_expiry_are_errors_events_and_metrics() {
    let sim = SimProcess::start(&[]);
    sim.set_fault("refuse");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("textfile")).unwrap();
    let prom = dir.path().join("textfile/wxcardd.prom");
    let config_path = config(dir.path(), &sim.base_url(), "");
    let socket = dir.path().join("control.sock");
    let log = dir.path().join("wxcardd.log");
    let daemon = DaemonProcess::start_logging_to(&config_path, &socket, &[], Some(&log));

    let mut events = daemon.client();
    events.request(&Command::Subscribe).unwrap();
    let mut client = daemon.client();
    let member = MemberInfo {
        wx_code: LOST.into(),
        phone: Some(wxcardd::api::pii::Pii::new(PHONE)),
        ..MemberInfo::default()
    };
    let queued = client
        .request(&Command::Activate(MemberParams { member }))
        .unwrap();
    assert_eq!(queued["result"]["outcome"], "queued", "{queued}");
    let entry = queued["result"]["entry"].clone();
    sim.set_fault("none");

    // The event...
    let dead = wait_event(&mut events, "dead letter", |v| {
        is_event_kind(v, "outbox", "dead_lettered")
    });
    assert_eq!(dead["entry"], entry, "{dead}");
    // ...the metric (and its counter)...
    let text = poll_file(&prom, "wxcardd_dead_letters 1");
    assert!(
        text.lines()
            .any(|l| l == "wxcardd_dead_letters_total{reason=\"rejected\"} 1"),
        "{text}"
    );
    // ...and an error-level line naming the entry and the endpoint, without member data.
    let errors = error_lines(&log);
    let line = errors
        .iter()
        .find(|l| l.contains(&format!("outbox entry {entry} (activemember) refused")))
        .unwrap_or_else(|| panic!("no error line for the dead letter: {errors:#?}"));
    assert!(!line.contains(LOST) && !line.contains(PHONE), "{line}");
    drop((events, client));
    assert_eq!(daemon.signal_and_wait(libc::SIGTERM).code(), Some(0));

    // Nobody acted; past the retention (1 s here) the next start drops it, loudly.
    std::thread::sleep(Duration::from_millis(1100));
    let config_path = config(dir.path(), &sim.base_url(), "dead_letter_retention_s = 1");
    let log = dir.path().join("wxcardd-2.log");
    let daemon = DaemonProcess::start_logging_to(&config_path, &socket, &[], Some(&log));
    let text = poll_file(&prom, "wxcardd_dead_letters_expired_total 1");
    assert!(
        text.lines().any(|l| l == "wxcardd_dead_letters 0"),
        "{text}"
    );
    let errors = error_lines(&log);
    let line = errors
        .iter()
        .find(|l| l.contains(&format!("dead letter {entry} (activemember) dropped")))
        .unwrap_or_else(|| panic!("no error line for the expiry: {errors:#?}"));
    assert!(!line.contains(LOST) && !line.contains(PHONE), "{line}");
    let all = std::fs::read_to_string(&log).unwrap();
    assert!(!all.contains(PHONE), "member data in the log:\n{all}");
    drop(daemon);
}
