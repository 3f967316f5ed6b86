//! `wxcardctl lookup` while the backend is down and nothing is cached for the card: it says
//! so in words and exits non-zero, instead of "[from cache, 0 s old, STALE]" and success.

mod support;

use std::process::Command;

use support::{DaemonProcess, SimProcess, daemon_config};

#[test]
fn an_offline_lookup_with_nothing_cached_says_so_and_fails() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "");
    let _daemon = DaemonProcess::start(&config, &socket, &[]);
    sim.set_fault("refuse");
    let out = Command::new(env!("CARGO_BIN_EXE_wxcardctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["lookup", "812345678901234567"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("offline, nothing cached for this card"),
        "{said}"
    );
    assert!(!said.contains("from cache"), "{said}");
    assert_eq!(out.status.code(), Some(1), "{said}");
}
