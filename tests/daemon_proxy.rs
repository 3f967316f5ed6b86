//! A till whose only way out is an HTTP proxy named in the environment (`HTTP_PROXY`, as a
//! systemd drop-in's `Environment=` sets it): ureq honours it, so the lookups, which otherwise
//! run as async reads on the executor (src/api/reads.rs), must take the same way out rather
//! than try the backend directly and fall back to the cache.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use support::{DaemonProcess, daemon_config};
use wxcardd::control::protocol::{Command, LookupParams};

const CARD: &str = r#"{"status":200,"message":"","data":{"cardCode":"VIA-PROXY","balance":7.00,"discount":1,"canMemberPrice":false}}"#;

/// A forward proxy that is also the backend: it tunnels a CONNECT (or takes an absolute-form
/// request) and answers every request with [`CARD`]. Keeps the request lines it saw.
fn proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                while let Some(head) = support::read_http_head(&mut tcp) {
                    let first = head.lines().next().unwrap_or_default().to_owned();
                    log.lock().unwrap().push(first.clone());
                    let answer = if first.starts_with("CONNECT ") {
                        "HTTP/1.1 200 Connection established\r\n\r\n".to_owned()
                    } else {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{CARD}",
                            CARD.len()
                        )
                    };
                    if tcp.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn lookups_go_through_the_proxy_the_environment_names() {
    let (proxy, seen) = proxy();
    // The backend's own address listens to nothing: only the proxy reaches "it".
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = daemon_config(dir.path(), &format!("http://{closed}/"), "", "");
    let proxy_url = format!("http://{proxy}");
    let daemon = DaemonProcess::start(
        &config,
        &socket,
        &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "")],
    );
    let mut client = daemon.client();
    for _ in 0..2 {
        let lookup = client
            .request(&Command::Lookup(LookupParams {
                wx_code: "812345678901234567".into(),
                card_id: None,
            }))
            .unwrap();
        assert_eq!(lookup["result"]["source"], "api", "{lookup}");
        assert_eq!(
            lookup["result"]["card"]["cardCode"], "VIA-PROXY",
            "{lookup}"
        );
    }
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|l| l.contains("getmembercard")),
        "the proxy saw no lookup: {seen:?}"
    );
}
