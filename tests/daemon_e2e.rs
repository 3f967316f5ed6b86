//! End to end with the real binaries: a serial scanner on a pty, the simulator, wxcardd and
//! a control-socket client. Also the systemd notify protocol, SIGTERM and SIGHUP.

mod support;

use serde_json::Value;
use support::hal_common::{Pty, point_link};
use support::{DaemonProcess, SimProcess, daemon_config, wait_event};
use wxcardd::api::MemberInfo;
use wxcardd::control::protocol::{Command, LookupParams, MemberParams};

const ACTIVE: &str = "812345678901234567";
const INACTIVE: &str = "812345678901234570";

fn scanner_section(link: &std::path::Path) -> String {
    format!(
        "\n[[scanner]]\nname = \"front\"\nduplicate_window_ms = 0\n\
         device = {{ kind = \"serial\", path = \"{}\" }}\n",
        link.display()
    )
}

fn is_event(v: &Value, name: &str) -> bool {
    v["class"] == "EVENT" && v["event"] == name
}

#[test]
fn a_scan_becomes_scan_and_card_events_online_and_from_cache_offline() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut pty = Pty::open();
    let link = dir.path().join("scanner-front");
    point_link(&link, &pty.slave);
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "");
    // Cached data counts as stale at once, so the offline answer says so.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[service]\n", "[service]\nfresh_for_s = 0\n")
        + &scanner_section(&link);
    std::fs::write(&config, text).unwrap();

    let daemon = DaemonProcess::start(&config, &socket, &[]);
    let mut events = daemon.client();
    assert_eq!(
        events.request(&Command::Subscribe).unwrap()["class"],
        "RESULT"
    );
    let mut status = daemon.client();
    let scanners = status.request(&Command::Status).unwrap()["result"]["scanners"].clone();
    if !scanners.to_string().contains("connected") {
        wait_event(&mut events, "scanner connected", |v| {
            is_event(v, "scanner") && v["state"] == "connected"
        });
    }

    // Online: the scan, then the card from the backend.
    pty.send(format!("{ACTIVE}\r").as_bytes());
    let scan = wait_event(&mut events, "scan", |v| is_event(v, "scan"));
    assert_eq!(scan["scanner"], "front");
    assert_eq!(scan["code"], ACTIVE);
    assert_eq!(scan["kind"], "wechat_member_code");
    let card = wait_event(&mut events, "card", |v| is_event(v, "card"));
    assert_eq!(card["source"], "api");
    assert_eq!(card["outcome"], "card");
    assert_eq!(card["card"]["balance"].to_string(), "128.50");

    // Backend down: the same scan answers from the cache, marked stale.
    sim.set_fault("refuse");
    pty.send(format!("{ACTIVE}\r\n").as_bytes());
    let card = wait_event(&mut events, "card from cache", |v| is_event(v, "card"));
    assert_eq!(card["source"], "cache", "{card}");
    assert_eq!(card["stale"], true);
    assert_eq!(card["card"]["balance"].to_string(), "128.50");

    // An activation is queued, then delivered when the backend is back.
    let member = MemberInfo {
        wx_code: INACTIVE.into(),
        ..MemberInfo::default()
    };
    let queued = status
        .request(&Command::Activate(MemberParams { member }))
        .unwrap();
    assert_eq!(queued["result"]["outcome"], "queued", "{queued}");
    sim.set_fault("none");
    let delivered = wait_event(&mut events, "delivery", |v| is_event(v, "outbox"));
    assert_eq!(delivered["kind"], "delivered", "{delivered}");
    assert_eq!(delivered["entry"], queued["result"]["entry"]);
    let counters = sim.counters();
    assert_eq!(counters["activemember"][INACTIVE]["applications"], 1);

    // Unplugged: an event, not a restart; plugged back in at the same path: scans resume.
    drop(pty);
    wait_event(&mut events, "scanner disconnected", |v| {
        is_event(v, "scanner") && v["state"] == "disconnected"
    });
    let mut pty = Pty::open();
    point_link(&link, &pty.slave);
    wait_event(&mut events, "scanner back", |v| {
        is_event(v, "scanner") && v["state"] == "connected"
    });
    pty.send(format!("{ACTIVE}\r").as_bytes());
    let card = wait_event(&mut events, "card after replug", |v| is_event(v, "card"));
    assert_eq!(card["source"], "api");
}

#[test]
fn notify_ready_watchdog_sigterm_and_sighup() {
    let sim = SimProcess::start(&[]);
    sim.set_fault("refuse");
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "");
    // READY=1 is awaited by start(); systemd's watchdog asks for pings every 200 ms.
    let mut daemon = DaemonProcess::start(&config, &socket, &[("WATCHDOG_USEC", "400000")]);
    daemon.wait_notify("WATCHDOG=1");
    let status = daemon.wait_notify("STATUS=");
    assert!(status.contains("queued"), "{status}");

    // Queue a write, reload: the queue and the socket stay.
    let mut client = daemon.client();
    let member = MemberInfo {
        wx_code: INACTIVE.into(),
        ..MemberInfo::default()
    };
    let queued = client
        .request(&Command::Activate(MemberParams { member }))
        .unwrap();
    assert_eq!(queued["result"]["outcome"], "queued");
    let pid = daemon.child.id() as i32;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    daemon.wait_notify("RELOADING=1");
    daemon.wait_notify("READY=1");
    let after = client.request(&Command::Status).unwrap();
    assert_eq!(after["result"]["service"]["outbox_pending"], 1, "{after}");

    // SIGTERM: exit 0, the store intact for the next start.
    drop(client);
    let status = daemon.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0));
    assert!(!socket.exists(), "the socket is removed at exit");
    let daemon = DaemonProcess::start(&config, &socket, &[]);
    let mut client = daemon.client();
    let status = client.request(&Command::Status).unwrap();
    assert_eq!(status["result"]["service"]["outbox_pending"], 1, "{status}");
}

#[test]
fn bad_requests_get_errors_and_nothing_else_is_affected() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "");
    let daemon = DaemonProcess::start(&config, &socket, &[]);
    let mut bad = daemon.client();
    let mut good = daemon.client();
    for (line, code) in [
        (b"this is not json\n".to_vec(), "malformed"),
        (
            b"{\"id\":7,\"cmd\":\"launch\"}\n".to_vec(),
            "unknown_command",
        ),
        (b"{\"id\":8,\"cmd\":\"lookup\"}\n".to_vec(), "bad_params"),
        (
            [
                b"{\"id\":9,\"cmd\":\"scan\",\"code\":\"".to_vec(),
                vec![b'1'; 200_000],
                b"\"}\n".to_vec(),
            ]
            .concat(),
            "too_long",
        ),
    ] {
        bad.send_raw(&line).unwrap();
        let answer = bad.read_line().unwrap();
        assert_eq!(answer["class"], "ERROR", "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        // The other connection, and this one, still work.
        let ok = good
            .request(&Command::Lookup(LookupParams {
                wx_code: ACTIVE.into(),
                card_id: None,
            }))
            .unwrap();
        assert_eq!(ok["result"]["outcome"], "card");
    }
    let ok = bad.request(&Command::Status).unwrap();
    assert_eq!(ok["class"], "RESULT");
}

#[test]
fn a_slow_subscriber_is_dropped_and_the_daemon_keeps_answering() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "subscriber_queue = 4\n");
    let daemon = DaemonProcess::start(&config, &socket, &[]);
    let mut slow = daemon.client();
    assert_eq!(
        slow.request(&Command::Subscribe).unwrap()["class"],
        "RESULT"
    );
    // The slow one never reads while thousands of events are published.
    let mut busy = daemon.client();
    for i in 0..4_000 {
        let answer = busy
            .request(&Command::Scan(wxcardd::control::protocol::ScanParams {
                code: format!("PRODUCT-{i}"),
                scanner: "manual".into(),
            }))
            .unwrap();
        assert_eq!(answer["class"], "RESULT");
    }
    // Once it reads, it finds the events that were in flight, then the end of the connection:
    // it was cut at once (issue 10), with the `overrun` line if the socket had room for it.
    let end = loop {
        match slow.read_line() {
            Ok(v) if v["class"] == "EVENT" => continue,
            other => break other,
        }
    };
    match &end {
        Ok(line) => assert_eq!(line["error"]["code"], "overrun", "{line}"),
        Err(e) => assert!(e.to_string().contains("closed the connection"), "{e}"),
    }
    assert!(busy.request(&Command::Status).unwrap()["class"] == "RESULT");
    // Its subscriber slot is free again.
    assert_eq!(
        busy.request(&Command::Subscribe).unwrap()["class"],
        "RESULT"
    );
}

#[test]
fn a_pay_code_request_yields_a_png_whose_qr_is_the_simulators_pay_code() {
    use support::display_support::decode_png;
    use wxcardd::control::protocol::WxCodeParams;

    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("display.png");
    let display = format!(
        "\n[display]\nbackends = [\"png\"]\nshop_name = \"Test shop\"\n\n[display.png]\npath = \"{}\"\n",
        png.display()
    );
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", &display);
    let daemon = DaemonProcess::start(&config, &socket, &[]);
    let mut client = daemon.client();
    let answer = client
        .request(&Command::PayCodeShow(WxCodeParams {
            wx_code: ACTIVE.into(),
        }))
        .unwrap();
    assert_eq!(answer["class"], "RESULT", "{answer}");
    let code = answer["result"]["pay_code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 18);
    assert_eq!(answer["result"]["displays"], 1);

    // The display is drawn off the request path; wait (bounded) for the snapshot.
    let started = std::time::Instant::now();
    let decoded = loop {
        if let Ok(bytes) = std::fs::read(&png) {
            let (_, _, codes) = decode_png(&bytes);
            if !codes.is_empty() {
                break codes;
            }
        }
        assert!(
            started.elapsed().as_secs() < 20,
            "no QR in {}",
            png.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(decoded, vec![code.clone()]);
    // The simulator issued exactly that code, valid now.
    let mut check = ureq::get(&format!("http://{}/admin/paycodes/{code}", sim.admin))
        .call()
        .unwrap();
    let body = check.body_mut().read_to_string().unwrap();
    assert!(body.contains("\"status\":200"), "{body}");

    // Offline: no pay code, and the display says so instead of showing an old one.
    sim.set_fault("refuse");
    let answer = client
        .request(&Command::PayCodeShow(WxCodeParams {
            wx_code: ACTIVE.into(),
        }))
        .unwrap();
    assert_eq!(answer["class"], "ERROR", "{answer}");
    let started = std::time::Instant::now();
    loop {
        let (_, _, codes) = decode_png(&std::fs::read(&png).unwrap());
        if codes.is_empty() {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 20,
            "the old pay code is still shown"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // Back online, a pay code again; SIGTERM leaves the display idle, not on the code.
    sim.set_fault("none");
    let answer = client
        .request(&Command::PayCodeShow(WxCodeParams {
            wx_code: ACTIVE.into(),
        }))
        .unwrap();
    assert_eq!(answer["class"], "RESULT", "{answer}");
    let started = std::time::Instant::now();
    while decode_png(&std::fs::read(&png).unwrap()).2.is_empty() {
        assert!(started.elapsed().as_secs() < 20, "no pay code shown");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(client);
    assert_eq!(daemon.signal_and_wait(libc::SIGTERM).code(), Some(0));
    let (_, _, codes) = decode_png(&std::fs::read(&png).unwrap());
    assert!(
        codes.is_empty(),
        "a pay code is left on the display after exit: {codes:?}"
    );
}

#[test]
fn personal_data_never_reaches_the_log_and_leaves_the_store_after_delivery() {
    use wxcardd::api::pii::{Address, Birthday, IdCard, Name, Phone, Pii};

    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "");
    let log = dir.path().join("wxcardd.log");
    let daemon =
        DaemonProcess::start_logging_to(&config, &socket, &[("RUST_LOG", "trace")], Some(&log));
    let secrets = [
        "王小明",
        "13912345678",
        "110101199001011234",
        "朝阳区光华路1号",
        "1990-01-01",
    ];
    let member = |wx: &str| MemberInfo {
        wx_code: wx.into(),
        name: Some(Pii::<Name>::new(secrets[0])),
        phone: Some(Pii::<Phone>::new(secrets[1])),
        id_card: Some(Pii::<IdCard>::new(secrets[2])),
        address: Some(Pii::<Address>::new(secrets[3])),
        birthday: Some(Pii::<Birthday>::new(secrets[4])),
        ..MemberInfo::default()
    };
    let mut client = daemon.client();
    let mut events = daemon.client();
    events.request(&Command::Subscribe).unwrap();
    // Sent at once, queued while offline, refused by the backend, delivered on replay.
    let online = client.request(&Command::Create(MemberParams {
        member: member("855500000000000031"),
    }));
    assert_eq!(online.unwrap()["result"]["outcome"], "delivered");
    sim.set_fault("refuse");
    let queued = client
        .request(&Command::Create(MemberParams {
            member: member("855500000000000032"),
        }))
        .unwrap();
    assert_eq!(queued["result"]["outcome"], "queued");
    let listed = client.request(&Command::OutboxList).unwrap().to_string();
    sim.set_fault("none");
    wait_event(&mut events, "delivery", |v| {
        is_event(v, "outbox") && v["kind"] == "delivered"
    });
    let status = daemon.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0));

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("queued as outbox entry"),
        "the log is really captured"
    );
    for secret in secrets {
        assert!(!logged.contains(secret), "{secret} in the daemon's log");
        assert!(!listed.contains(secret), "{secret} in outbox_list");
    }
    // Delivered: no personal data left readable anywhere in the store's files.
    for entry in walk(&dir.path().join("store")) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in secrets {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{secret} readable in {}", entry.display());
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_malformed_token_file_is_a_config_error_not_a_crash_loop() {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("api-headers");
    std::fs::write(&headers, "this line has no colon SECRETVALUE\n").unwrap();
    let (config, _socket) = daemon_config(dir.path(), "http://127.0.0.1:9/", "", "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "deadline_ms = 2000\n",
        &format!(
            "deadline_ms = 2000\nheaders_file = \"{}\"\n",
            headers.display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxcardd"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // EX_CONFIG: the unit's RestartPreventExitStatus=78 stops systemd from restarting it.
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
    assert!(!stderr.contains("SECRETVALUE"), "{stderr}");
}
