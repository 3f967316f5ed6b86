//! A revoked token is not an outage: HTTP 401/403 is its own state, `credentials_refused`,
//! in `status`, in systemd's STATUS=, in a `backend` event and in `wxcardctl status`.
//! Lookups still answer from the cache (marked), writes queue and say why, the probe keeps
//! checking, and the state clears when the backend accepts again, also after
//! `systemctl reload` re-reads the credential.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{DaemonProcess, SimProcess, daemon_config, wait_event};
use wxcardd::api::MemberInfo;
use wxcardd::control::protocol::{Command, LookupParams, MemberParams};

const ACTIVE: &str = "812345678901234567";
const INACTIVE: &str = "812345678901234570";

fn request(daemon: &DaemonProcess, command: &Command) -> Value {
    daemon.client().request(command).unwrap()
}

fn lookup(daemon: &DaemonProcess, wx: &str) -> Value {
    request(
        daemon,
        &Command::Lookup(LookupParams {
            wx_code: wx.into(),
            card_id: None,
        }),
    )
}

fn backend_state(daemon: &DaemonProcess) -> Value {
    request(daemon, &Command::Status)["result"]["service"]["backend"].clone()
}

fn poll(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    cond()
}

fn wxcardctl_status(socket: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxcardctl"))
        .arg("--socket")
        .arg(socket)
        .arg("status")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_401_is_credentials_refused_not_offline_and_clears_when_accepted_again() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "");
    let mut daemon = DaemonProcess::start(&config, &socket, &[]);
    let mut events = daemon.client();
    events.request(&Command::Subscribe).unwrap();
    assert_eq!(lookup(&daemon, ACTIVE)["result"]["source"], "api");

    sim.set_fault("unauthorized");
    let cached = lookup(&daemon, ACTIVE);
    assert_eq!(cached["result"]["source"], "cache", "{cached}");
    assert_eq!(cached["result"]["outcome"], "card", "{cached}");
    let event = wait_event(&mut events, "credentials_refused event", |v| {
        v["event"] == "backend" && v["kind"] != "online"
    });
    assert_eq!(event["kind"], "credentials_refused", "{event}");
    assert_eq!(backend_state(&daemon), "credentials_refused");
    daemon.wait_notify("STATUS=backend refuses the token: fix /etc/wxcardd/api-headers");
    let human = wxcardctl_status(&socket);
    assert!(
        human.to_lowercase().contains("refuses the token") && human.contains("api-headers"),
        "{human}"
    );

    let queued = request(
        &daemon,
        &Command::Activate(MemberParams {
            member: MemberInfo {
                wx_code: INACTIVE.into(),
                ..MemberInfo::default()
            },
        }),
    );
    assert_eq!(queued["result"]["outcome"], "queued", "{queued}");
    assert!(
        queued["result"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("token")),
        "a queued write says why: {queued}"
    );

    // The probe keeps checking: once the backend accepts again, the state clears and the
    // queued write goes.
    sim.set_fault("none");
    let back = wait_event(&mut events, "online event", |v| {
        v["event"] == "backend" && v["kind"] == "online"
    });
    assert_eq!(back["kind"], "online");
    assert_eq!(backend_state(&daemon), "online");
    assert!(
        poll(Duration::from_secs(10), || sim
            .write_count("activemember", INACTIVE)
            .0
            == 1),
        "the queued write is delivered"
    );
}

/// A backend stub that accepts only `X-Api-Token: GOOD`, and answers 401 otherwise.
fn token_checking_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match tcp.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let answer = if text.contains("\r\nx-api-token: good\r\n") {
                let body = r#"{"status":602,"message":"card does not exist"}"#;
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = tcp.write_all(answer.as_bytes());
        }
    });
    addr
}

#[test]
fn reload_rereads_the_token_and_clears_credentials_refused() {
    let backend = token_checking_backend();
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("api-headers");
    std::fs::write(&headers, "X-Api-Token: REVOKED\n").unwrap();
    let (config, socket) = daemon_config(dir.path(), &format!("http://{backend}/"), "", "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "deadline_ms = 2000\n",
        &format!(
            "deadline_ms = 2000\nheaders_file = \"{}\"\n",
            headers.display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let daemon = DaemonProcess::start(&config, &socket, &[]);
    let answer = lookup(&daemon, ACTIVE);
    assert_eq!(answer["result"]["source"], "cache", "{answer}");
    assert_eq!(backend_state(&daemon), "credentials_refused");

    std::fs::write(&headers, "X-Api-Token: GOOD\n").unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGHUP) };
    assert!(
        poll(Duration::from_secs(10), || backend_state(&daemon)
            == "online"),
        "still {} after reload",
        backend_state(&daemon)
    );
    let answer = lookup(&daemon, ACTIVE);
    assert_eq!(answer["result"]["source"], "api", "{answer}");
    assert_eq!(answer["result"]["outcome"], "card_state", "{answer}");
}
