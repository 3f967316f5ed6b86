//! The async reads (`get_member_card_async`, `get_pay_code_async`: the cashier's lookups on
//! the daemon's executor) against a scripted backend on 127.0.0.1: kept-alive connections
//! and the ways a server ends them, and the answers that are not answers. The blocking
//! client's own tests (api_client, api_transport, api_redirect, api_tls) hold the same
//! rules for ureq; these hold them for the second path.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wxcardd::api::{ApiConfig, ApiError, Client, ServerFault, TransportKind};

const ACTIVE: &str = "812345678901234567";
const CARD: &str = r#"{"status":200,"message":"","data":{"cardCode":"C1","balance":128.50,"discount":0.95,"canMemberPrice":true}}"#;

/// What the backend does with one request.
#[derive(Clone)]
enum Reply {
    /// Writes these bytes and keeps the connection open.
    Raw(String),
    /// Writes these bytes and closes.
    RawThenClose(String),
    /// Closes without a byte.
    Close,
    /// Never answers (holds the connection until the test ends).
    Silent,
    /// Resets the connection (RST, not FIN) without a byte.
    Reset,
}

fn ok(body: &str) -> Reply {
    Reply::Raw(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// A backend playing one script per accepted connection (the last script repeats); after a
/// script's last reply it closes. Keeps the requests it got.
struct Scripted {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn start(scripts: Vec<Vec<Reply>>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (a, r) = (Arc::clone(&accepted), Arc::clone(&requests));
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(mut tcp) = tcp else { return };
                let n = a.fetch_add(1, Ordering::SeqCst);
                let script = scripts[n.min(scripts.len() - 1)].clone();
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    for reply in script {
                        let Some(request) = support::read_http_head(&mut tcp) else {
                            return;
                        };
                        r.lock().unwrap().push(request);
                        match reply {
                            Reply::Raw(bytes) => {
                                let _ = tcp.write_all(bytes.as_bytes());
                            }
                            Reply::RawThenClose(bytes) => {
                                let _ = tcp.write_all(bytes.as_bytes());
                                return;
                            }
                            Reply::Close => return,
                            Reply::Reset => {
                                reset(&tcp);
                                return;
                            }
                            Reply::Silent => {
                                std::thread::sleep(Duration::from_secs(30));
                                return;
                            }
                        }
                    }
                });
            }
        });
        Scripted {
            addr,
            accepted,
            requests,
        }
    }

    fn client(&self, deadline_ms: u64) -> Client {
        client_for(&format!("http://{}/", self.addr), deadline_ms, None)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Makes the close of `tcp` a reset (SO_LINGER with a zero timeout).
fn reset(tcp: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a valid `linger` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

fn client_for(base_url: &str, deadline_ms: u64, headers: Option<&std::path::Path>) -> Client {
    Client::new(&ApiConfig {
        base_url: base_url.into(),
        connect_timeout_ms: 500,
        deadline_ms,
        headers_file: headers.map(Into::into),
        ..ApiConfig::default()
    })
    .unwrap()
}

async fn lookup(client: &Client) -> Result<wxcardd::api::MemberCard, ApiError> {
    client.get_member_card_async(None, ACTIVE, None).await
}

fn fault(result: Result<wxcardd::api::MemberCard, ApiError>) -> ServerFault {
    match result {
        Err(ApiError::Server { fault, .. }) => fault,
        other => panic!("expected a server fault, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn lookups_share_one_kept_alive_connection_and_send_the_token_headers() {
    let backend = Scripted::start(vec![vec![ok(CARD); 5]]);
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("h");
    std::fs::write(&headers, "X-Api-Token: T0KEN\n").unwrap();
    let client = client_for(&format!("http://{}/", backend.addr), 3_000, Some(&headers));
    for _ in 0..5 {
        let card = client
            .get_member_card_async(Some("pXyz"), ACTIVE, None)
            .await
            .unwrap();
        assert_eq!(card.card_code, "C1");
        assert_eq!(card.balance.to_string(), "128.50");
    }
    assert_eq!(backend.accepted(), 1, "one connection for five lookups");
    let requests = backend.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 5);
    let first = requests[0].to_ascii_lowercase();
    assert!(
        first.starts_with(&format!(
            "get /api/weixin/wxcard/getmembercard?cardid=pxyz&wxcode={ACTIVE} http/1.1\r\n"
        )),
        "{first}"
    );
    assert!(first.contains("x-api-token: t0ken\r\n"), "{first}");
    assert!(first.contains("user-agent: wxcardd/"), "{first}");
    assert!(
        first.contains(&format!("host: {}", backend.addr)),
        "{first}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_the_server_closed_while_idle_is_replaced_without_an_error() {
    // The first connection answers once and closes; the second keeps answering.
    let backend = Scripted::start(vec![
        vec![Reply::RawThenClose(match ok(CARD) {
            Reply::Raw(s) => s,
            _ => unreachable!(),
        })],
        vec![ok(CARD); 4],
    ]);
    let client = backend.client(3_000);
    lookup(&client).await.unwrap();
    // Let the server's FIN arrive (on loopback it is there by the time the thread ends).
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lookup(&client).await.expect("a new connection");
    assert_eq!(backend.accepted(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_kept_alive_connection_closed_as_the_request_arrives_is_tried_again_once() {
    // The server takes the second request on the first connection and closes without a
    // byte (its keep-alive timer ran out just then): the GET goes again, on a new one.
    let backend = Scripted::start(vec![vec![ok(CARD), Reply::Close], vec![ok(CARD); 4]]);
    let client = backend.client(3_000);
    lookup(&client).await.unwrap();
    lookup(&client)
        .await
        .expect("sent again on a new connection");
    assert_eq!(backend.accepted(), 2);
    assert_eq!(backend.requests.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn a_new_connection_closed_without_an_answer_is_an_error_not_a_retry_loop() {
    let backend = Scripted::start(vec![vec![Reply::Close]]);
    let client = backend.client(3_000);
    let err = lookup(&client).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(err.transport_kind(), Some(TransportKind::Io), "{err}");
    assert_eq!(backend.accepted(), 1, "no second try on a fresh connection");
}

#[tokio::test(flavor = "current_thread")]
async fn a_backend_that_never_answers_ends_at_the_deadline_and_is_not_reused() {
    let backend = Scripted::start(vec![vec![Reply::Silent], vec![ok(CARD); 2]]);
    let client = backend.client(300);
    let err = lookup(&client).await.unwrap_err();
    assert_eq!(err.transport_kind(), Some(TransportKind::Deadline), "{err}");
    // The timed-out connection may still get its answer later: it is never reused.
    lookup(&client)
        .await
        .expect("the next lookup, on a new connection");
    assert_eq!(backend.accepted(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn nothing_listening_is_refused() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = client_for(&format!("http://{addr}/"), 3_000, None);
    let err = lookup(&client).await.unwrap_err();
    assert_eq!(err.transport_kind(), Some(TransportKind::Refused), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn answers_that_are_not_wxcard_answers_are_server_faults() {
    let html = "<html><body>Proxy login</body></html>";
    type Expect = fn(&ServerFault) -> bool;
    let cases: Vec<(Reply, Expect)> = vec![
        (ok(html), |f| matches!(f, ServerFault::NotJson { .. })),
        (
            Reply::Raw(format!(
                "HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\n\r\n{html}",
                html.len()
            )),
            |f| matches!(f, ServerFault::HttpStatus { code: 502, .. }),
        ),
        // Half a JSON body, then the connection ends.
        (
            Reply::RawThenClose(format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                CARD.len(),
                &CARD[..30]
            )),
            |f| *f == ServerFault::Truncated,
        ),
        // Not HTTP at all.
        (
            Reply::RawThenClose("SSH-2.0-OpenSSH_9.2\r\n\r\n".into()),
            |f| matches!(f, ServerFault::NotJson { snippet } if snippet.contains("not an HTTP answer")),
        ),
        // JSON without a status.
        (ok(r#"{"data":{}}"#), |f| *f == ServerFault::MissingStatus),
        // A 200 without data.
        (ok(r#"{"status":200}"#), |f| {
            matches!(f, ServerFault::BadData(_))
        }),
    ];
    for (reply, expected) in cases {
        let backend = Scripted::start(vec![vec![reply]]);
        let got = fault(lookup(&backend.client(3_000)).await);
        assert!(expected(&got), "{got:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_endless_body_is_refused_at_the_limit() {
    let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
    let endless = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        chunk.repeat(200)
    );
    let backend = Scripted::start(vec![vec![Reply::Raw(endless)]]);
    let client = Client::new(&ApiConfig {
        base_url: format!("http://{}/", backend.addr),
        max_body_bytes: 64 * 1024,
        ..ApiConfig::default()
    })
    .unwrap();
    assert_eq!(
        fault(lookup(&client).await),
        ServerFault::BodyTooLarge { limit: 64 * 1024 }
    );
}

#[tokio::test(flavor = "current_thread")]
async fn chunked_and_close_delimited_bodies_are_read_whole() {
    let (a, b) = CARD.split_at(40);
    let chunked = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let backend = Scripted::start(vec![vec![Reply::Raw(chunked); 2]]);
    let client = backend.client(3_000);
    for _ in 0..2 {
        assert_eq!(lookup(&client).await.unwrap().card_code, "C1");
    }
    assert_eq!(
        backend.accepted(),
        1,
        "a chunked answer leaves the connection usable"
    );

    // HTTP/1.0 style: no length, the body ends with the connection, which is not reused.
    let close_delimited = format!("HTTP/1.0 200 OK\r\n\r\n{CARD}");
    let backend = Scripted::start(vec![vec![Reply::RawThenClose(close_delimited)]]);
    let client = backend.client(3_000);
    for _ in 0..2 {
        assert_eq!(lookup(&client).await.unwrap().card_code, "C1");
    }
    assert_eq!(backend.accepted(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn an_empty_pay_code_is_refused_and_a_good_one_comes_back() {
    let backend = Scripted::start(vec![vec![
        ok(r#"{"status":200,"data":""}"#),
        ok(r#"{"status":200,"data":"PAY-123"}"#),
    ]]);
    let client = backend.client(3_000);
    match client.get_pay_code_async(ACTIVE, None).await {
        Err(ApiError::Server {
            fault: ServerFault::BadData(_),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let code = client.get_pay_code_async(ACTIVE, None).await.unwrap();
    assert_eq!(code.0, "PAY-123");
    let requests = backend.requests.lock().unwrap().clone();
    assert!(
        requests[1].starts_with(&format!(
            "GET /api/weixin/wxcard/getpaycode?wxCode={ACTIVE} HTTP/1.1"
        )),
        "{}",
        requests[1]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_idle_longer_than_a_router_may_keep_it_is_not_reused() {
    // The server keeps the connection open, but a shop's router or NAT may have forgotten it
    // without a word: after 15 s idle (ureq's limit too) a lookup opens a new one rather than
    // wait for the deadline on a dead one.
    let backend = Scripted::start(vec![vec![ok(CARD); 3]]);
    let client = backend.client(3_000);
    lookup(&client).await.unwrap();
    lookup(&client).await.unwrap();
    assert_eq!(backend.accepted(), 1, "reused while fresh");
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(16)).await;
    tokio::time::resume();
    lookup(&client).await.unwrap();
    assert_eq!(backend.accepted(), 2, "a new connection after 16 s idle");
}

#[tokio::test(flavor = "current_thread")]
async fn informational_answers_before_the_answer_are_skipped() {
    // An unasked-for 100 Continue and a 103 Early Hints, in the same write as the answer
    // (RFC 9110: a client takes any number of 1xx before the final answer).
    let Reply::Raw(card) = ok(CARD) else {
        unreachable!()
    };
    let with_1xx = format!(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n{card}"
    );
    let backend = Scripted::start(vec![vec![Reply::Raw(with_1xx); 2]]);
    let client = backend.client(3_000);
    for _ in 0..2 {
        let card = lookup(&client).await.expect("the answer after the 1xx");
        assert_eq!(card.card_code, "C1");
    }
    assert_eq!(backend.accepted(), 1, "the connection stays usable");
}

#[tokio::test(flavor = "current_thread")]
async fn broken_chunked_bodies_and_oversized_heads_are_server_faults() {
    let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let not_http = |f: &ServerFault| matches!(f, ServerFault::NotJson { snippet } if snippet.contains("not an HTTP answer"));
    type Expect = Box<dyn Fn(&ServerFault) -> bool>;
    let mut cases: Vec<(&str, String, Expect)> = vec![
        (
            "a chunk size that is not hex",
            format!("{chunked}zz\r\n{CARD}\r\n0\r\n\r\n"),
            Box::new(not_http),
        ),
        (
            "a chunk size past u64",
            format!("{chunked}fffffffffffffffffffff\r\n{CARD}\r\n0\r\n\r\n"),
            Box::new(not_http),
        ),
        (
            "a chunk larger than sent, then the end",
            format!("{chunked}fff\r\n{CARD}"),
            Box::new(|f| *f == ServerFault::Truncated),
        ),
        (
            "a header line of 100 KB",
            format!(
                "HTTP/1.1 200 OK\r\nX-Junk: {}\r\nContent-Length: {}\r\n\r\n{CARD}",
                "a".repeat(100_000),
                CARD.len()
            ),
            Box::new(not_http),
        ),
        (
            "1xx answers without end",
            "HTTP/1.1 103 Early Hints\r\n\r\n".repeat(10_000),
            Box::new(not_http),
        ),
        (
            "a head that never ends",
            format!("HTTP/1.1 200 OK\r\n{}", "X-Junk: a\r\n".repeat(20_000)),
            Box::new(not_http),
        ),
    ];
    cases.push((
        "101 Switching Protocols (the only 1xx that is final)",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
            .into(),
        Box::new(|f| matches!(f, ServerFault::HttpStatus { code: 101, .. })),
    ));
    for (what, bytes, expected) in cases {
        let backend = Scripted::start(vec![vec![Reply::RawThenClose(bytes)]]);
        let got = match lookup(&backend.client(3_000)).await {
            Err(ApiError::Server { fault, .. }) => fault,
            other => panic!("{what}: {other:?}"),
        };
        assert!(expected(&got), "{what}: {got:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_reset_is_a_transport_error_and_on_a_kept_alive_connection_a_retry() {
    // On a new connection: the backend is unreachable, no second try.
    let backend = Scripted::start(vec![vec![Reply::Reset]]);
    let err = lookup(&backend.client(3_000)).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        matches!(err, ApiError::Transport { .. }),
        "a reset is the network's doing: {err:?}"
    );
    assert_eq!(backend.accepted(), 1);

    // On a kept-alive one, as the second request arrives: sent again on a new connection.
    let backend = Scripted::start(vec![vec![ok(CARD), Reply::Reset], vec![ok(CARD); 2]]);
    let client = backend.client(3_000);
    lookup(&client).await.unwrap();
    lookup(&client)
        .await
        .expect("sent again on a new connection");
    assert_eq!(backend.accepted(), 2);
}
