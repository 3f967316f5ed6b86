//! A backend that redirects: the token must never leave for a host the config did not name,
//! and a write is `delivered` only when the configured backend said so. Redirects are never
//! followed; a 3xx is a server fault (lookups fall back, writes stay queued, the probe says
//! where the redirect pointed and exits 76).
//!
//! Every test has a second server, the redirect's target, that must receive nothing.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use wxcardd::api::{ApiConfig, Client, MemberInfo};
use wxcardd::service::{CardService, ManualClock, ServiceConfig, WriteOutcome};
use wxcardd::store::{Store, StoreConfig};

/// The redirect's target: counts connections and keeps what it was sent.
struct Elsewhere {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Elsewhere {
    fn start() -> Elsewhere {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (Arc::clone(&connections), Arc::clone(&received));
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(mut tcp) = tcp else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = tcp.read(&mut buf) {
                    r.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let body = r#"{"status":200,"message":"","data":{"cardCode":"EVIL","balance":1,"discount":1,"canMemberPrice":true}}"#;
                let _ = write!(
                    tcp,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Elsewhere {
            addr,
            connections,
            received,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/evil", self.addr)
    }

    fn assert_untouched(&self) {
        let got = String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned();
        assert_eq!(
            self.connections.load(Ordering::SeqCst),
            0,
            "the redirect target was contacted:\n{got}"
        );
    }
}

/// Reads one request (head and Content-Length body) from `stream`.
fn read_request(stream: &mut impl Read) -> Option<Vec<u8>> {
    let head = support::read_http_head(stream)?;
    let len = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    let mut request = head.into_bytes();
    request.extend(body);
    Some(request)
}

fn redirect_answer(code: u16, location: &str) -> String {
    format!(
        "HTTP/1.1 {code} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// A plain-HTTP backend answering every request with `code` and `Location: location`.
fn redirector(code: u16, location: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp): Result<TcpStream, _> = tcp else {
                return;
            };
            if read_request(&mut tcp).is_some() {
                let _ = tcp.write_all(redirect_answer(code, &location).as_bytes());
            }
        }
    });
    addr
}

/// An HTTPS backend (certificate signed by a private CA, returned as PEM) that redirects.
fn tls_redirector(code: u16, location: String) -> (String, SocketAddr) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            if read_request(&mut tls).is_some() {
                let _ = tls.write_all(redirect_answer(code, &location).as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    (ca.pem(), addr)
}

fn probe(dir: &std::path::Path, base_url: &str, extra: &str) -> (i32, String) {
    let headers = dir.join("api-headers");
    std::fs::write(&headers, "X-Api-Token: TOKEN-MUST-STAY-HOME\n").unwrap();
    let config = dir.join("wxcardd.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{base_url}\"\nconnect_timeout_ms = 500\ndeadline_ms = 3000\n\
             headers_file = \"{}\"\n{extra}",
            headers.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wxcardd"))
        .args(["probe", "--config"])
        .arg(&config)
        .args(["--wx-code", "812345678901234567"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_probe_names_a_redirect_and_sends_the_token_nowhere_else() {
    for code in [301, 302, 303, 307, 308] {
        let elsewhere = Elsewhere::start();
        let backend = redirector(code, elsewhere.url());
        let dir = tempfile::tempdir().unwrap();
        let (exit, text) = probe(dir.path(), &format!("http://{backend}/"), "");
        elsewhere.assert_untouched();
        assert_eq!(exit, 76, "HTTP {code}: {text}");
        assert!(text.contains("redirect"), "HTTP {code}: {text}");
        assert!(text.contains(&elsewhere.url()), "names the target: {text}");
        assert!(text.contains("api.base_url"), "says what to fix: {text}");
        assert!(!text.contains("OK"), "{text}");
    }
}

#[test]
fn an_https_backend_redirecting_to_plain_http_gets_no_token_in_clear() {
    let elsewhere = Elsewhere::start();
    let (ca_pem, backend) = tls_redirector(301, elsewhere.url());
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let (exit, text) = probe(
        dir.path(),
        &format!("https://{backend}/"),
        &format!("ca_file = \"{}\"\n", ca.display()),
    );
    elsewhere.assert_untouched();
    assert_eq!(exit, 76, "{text}");
    assert!(text.contains(&elsewhere.url()), "{text}");
}

/// A hostile Location header reaches the terminal escaped (HTTP parsers refuse C0 bytes in
/// a header, but let a bidi override through as UTF-8).
#[test]
fn the_redirect_target_is_printed_escaped() {
    let backend = redirector(302, "http://127.0.0.1:1/\u{202e}exe.gpj".into());
    let dir = tempfile::tempdir().unwrap();
    let (exit, text) = probe(dir.path(), &format!("http://{backend}/"), "");
    assert_eq!(exit, 76, "{text}");
    assert!(!text.contains('\u{202e}'), "{text:?}");
    assert!(text.contains("\\u{202e}exe.gpj"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_with_a_redirect_stays_queued() {
    for code in [302, 307, 308] {
        let elsewhere = Elsewhere::start();
        let backend = redirector(code, elsewhere.url());
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path().join("store"), &StoreConfig::default()).unwrap();
        let client = Client::new(&ApiConfig {
            base_url: format!("http://{backend}/"),
            connect_timeout_ms: 300,
            deadline_ms: 2_000,
            ..ApiConfig::default()
        })
        .unwrap();
        let service = CardService::new(
            client,
            Arc::new(store),
            ServiceConfig::default(),
            Arc::new(ManualClock::new(1_800_000_000_000)),
        );
        let outcome = service
            .create(MemberInfo {
                wx_code: "812345678901234567".into(),
                ..MemberInfo::default()
            })
            .await
            .unwrap();
        assert!(
            matches!(outcome, WriteOutcome::Queued { .. }),
            "HTTP {code}: {outcome:?}"
        );
        elsewhere.assert_untouched();
        let status = service.status().await.unwrap();
        assert_eq!(status.outbox_pending, 1, "HTTP {code}");
    }
}

/// The cashier's lookup and pay code go through the async reads (src/api/reads.rs), not
/// ureq: the same rule holds there. The lookup falls back to the cache (nothing cached:
/// no card), the pay code is an error naming the redirect, and the target hears nothing,
/// over plain HTTP and from HTTPS.
#[tokio::test(flavor = "current_thread")]
async fn a_lookup_answered_with_a_redirect_falls_back_and_sends_the_token_nowhere_else() {
    use wxcardd::service::{LookupAnswer, Source};
    for https in [false, true] {
        let elsewhere = Elsewhere::start();
        let dir = tempfile::tempdir().unwrap();
        let headers = dir.path().join("api-headers");
        std::fs::write(&headers, "X-Api-Token: TOKEN-MUST-STAY-HOME\n").unwrap();
        let (base_url, ca_file) = if https {
            let (ca_pem, backend) = tls_redirector(302, elsewhere.url());
            let ca = dir.path().join("ca.pem");
            std::fs::write(&ca, ca_pem).unwrap();
            (format!("https://{backend}/"), Some(ca))
        } else {
            (
                format!("http://{}/", redirector(307, elsewhere.url())),
                None,
            )
        };
        let client = Client::new(&ApiConfig {
            base_url,
            connect_timeout_ms: 300,
            deadline_ms: 2_000,
            headers_file: Some(headers),
            ca_file,
            ..ApiConfig::default()
        })
        .unwrap();
        let (store, _) = Store::open(dir.path().join("store"), &StoreConfig::default()).unwrap();
        let service = CardService::new(
            client,
            Arc::new(store),
            ServiceConfig::default(),
            Arc::new(ManualClock::new(1_800_000_000_000)),
        );
        let lookup = service.lookup("812345678901234567", None).await.unwrap();
        assert_eq!(lookup.source, Source::Cache, "https {https}: {lookup:?}");
        assert!(
            !matches!(lookup.answer, LookupAnswer::Card { .. }),
            "https {https}: {lookup:?}"
        );
        let err = service.pay_code("812345678901234567").await.unwrap_err();
        assert!(
            err.to_string().contains(&elsewhere.url()),
            "https {https}: {err}"
        );
        elsewhere.assert_untouched();
    }
}
