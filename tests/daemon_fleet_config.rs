//! Config for a fleet (issue 13, part 4): `conf.d/*.toml` next to the main file merged over
//! it in name order, `wxcardd check` naming the drop-in and line of a bad value, and
//! `[till] id` in `status` and the metrics.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{DaemonProcess, SimProcess};
use wxcardd::control::protocol::Command as Request;

#[test]
fn drop_ins_set_the_till_id_seen_in_status_and_metrics_and_check_names_them() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("wxcardd.toml");
    std::fs::write(
        &main,
        format!(
            "[api]\nbase_url = \"{}\"\n\n[store]\ndir = \"{}\"\n\n[control]\nsocket = \"{}\"\n\n\
             [metrics]\ntextfile_path = \"/nonexistent/wxcardd.prom\"\n",
            sim.base_url(),
            dir.path().join("store").display(),
            dir.path().join("control.sock").display(),
        ),
    )
    .unwrap();
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    // A fleet-wide base, then the till's own file: the later name wins.
    std::fs::write(
        conf_d.join("10-fleet.toml"),
        format!(
            "[till]\nid = \"fleet-default\"\n\n[metrics]\ntextfile_path = \"{}\"\ninterval_s = 1\n",
            dir.path().join("wxcardd.prom").display()
        ),
    )
    .unwrap();
    std::fs::write(conf_d.join("50-till.toml"), "[till]\nid = \"till-0042\"\n").unwrap();

    let daemon = DaemonProcess::start(&main, &dir.path().join("control.sock"), &[]);
    let status = daemon.client().request(&Request::Status).unwrap();
    assert_eq!(status["result"]["till"], "till-0042", "{status}");
    let prom = dir.path().join("wxcardd.prom");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&prom).unwrap_or_default();
        if text.contains("till=\"till-0042\"") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(daemon);

    // A bad value in a drop-in: check names that file and line, exit 78.
    std::fs::write(
        conf_d.join("50-till.toml"),
        "[till]\nid = \"till-0042\"\n\n[service]\nbreaker_failures = 0\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wxcardd"))
        .args(["check", "--config"])
        .arg(&main)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("50-till.toml line 5") && stderr.contains("service.breaker_failures"),
        "{stderr}"
    );
}
