//! `wxcardctl report` against the real daemon: the support report has the version, status,
//! outbox summary, config, scanners, journal and disk sections, and no API token, no member
//! data and no full card code, though the daemon holds all three (issue 13, part 3).

mod support;

use std::process::Command;

use support::{DaemonProcess, SimProcess, daemon_config};
use wxcardd::api::MemberInfo;
use wxcardd::api::pii::Pii;
use wxcardd::control::protocol::{Command as Request, MemberParams};

const CODE: &str = "812345678901234570";
const TOKEN: &str = "s3cr3t-T0KEN-value-42";
const NAME: &str = "Zhang Wei-Report";
const PHONE: &str = "13912345678";
const ID_CARD: &str = "11010519491231002X";

#[test]
fn the_report_has_every_section_and_no_secret_member_data_or_card_code() {
    let sim = SimProcess::start(&[]);
    sim.set_fault("refuse");
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("api-headers");
    std::fs::write(&headers, format!("X-Api-Token: {TOKEN}\n")).unwrap();
    let scanner = format!(
        "\n[[scanner]]\nname = \"front\"\ndevice = {{ kind = \"serial\", path = \"{}\" }}\n",
        dir.path().join("no-tty").display()
    );
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", &scanner);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "deadline_ms = 2000\n",
        &format!(
            "deadline_ms = 2000\nheaders_file = \"{}\"\n",
            headers.display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let daemon = DaemonProcess::start(&config, &socket, &[]);
    let member = MemberInfo {
        wx_code: CODE.into(),
        name: Some(Pii::new(NAME)),
        phone: Some(Pii::new(PHONE)),
        id_card: Some(Pii::new(ID_CARD)),
        ..MemberInfo::default()
    };
    let queued = daemon
        .client()
        .request(&Request::Activate(MemberParams { member }))
        .unwrap();
    assert_eq!(queued["result"]["outcome"], "queued", "{queued}");

    let out_path = dir.path().join("report.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_wxcardctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("report")
        .arg("--config")
        .arg(&config)
        .arg("--output")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report = std::fs::read_to_string(&out_path).unwrap();
    for want in [
        "wxcardd support report",
        &format!("wxcardctl: {}", env!("CARGO_PKG_VERSION")),
        "== status ==",
        "\"outbox_pending\": 1",
        "== outbox (no personal data) ==",
        "activemember",
        "== config (secrets removed) ==",
        "[[scanner]]",
        "== scanners and displays ==",
        "scanner \"front\"",
        "== journal (last 500 lines of wxcardd.service) ==",
        "== disk ==",
        "**** 4570",
    ] {
        assert!(report.contains(want), "{want:?} missing from:\n{report}");
    }
    // The outbox section lists the queued row itself (outbox_list answers {"entries": [...]}).
    let outbox = report
        .split("== outbox (no personal data) ==")
        .nth(1)
        .and_then(|rest| rest.split("\n== ").next())
        .unwrap_or_default();
    assert!(
        outbox.contains("\"endpoint\":\"activemember\"") && !outbox.contains("unexpected answer"),
        "the outbox section does not list the queued write:\n{outbox}"
    );
    for secret in [TOKEN, CODE, NAME, PHONE, ID_CARD] {
        assert!(
            !report.contains(secret),
            "{secret:?} in the report:\n{report}"
        );
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&out_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the report is private to whoever made it");

    // The daemon down: the report is still written, and says so.
    drop(daemon);
    let out = Command::new(env!("CARGO_BIN_EXE_wxcardctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["report", "--output", "-", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("daemon not reachable"), "{report}");
    assert!(
        !report.contains(TOKEN) && !report.contains(CODE),
        "{report}"
    );
}
