//! The real daemon at `RUST_LOG=trace`, its lookups on the async read path (a plain
//! `http://` backend, src/api/reads.rs), against a scripted backend that answers normally,
//! and then every way it can answer badly: HTML, half a JSON body, a redirect, an error
//! status, a closed connection, JSON with junk after it. Whatever comes back, the API token
//! (sent in every request) and the member's personal data (in the backend's answers) never
//! reach the log.

mod support;

use std::collections::VecDeque;
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use wxcardd::control::protocol::{Command, LookupParams};

const TOKEN: &str = "TOPSECRET456";
const ACTIVE: &str = "812345678901234567";

/// A member's personal data as a backend may send it along with the card.
const NAME: &str = "王秀英";
const PHONE: &str = "13912345678";
const ID_CARD: &str = "110101199003071234";
const ADDRESS: &str = "北京市朝阳区建国路88号";
const BIRTHDAY: &str = "1990-03-07";

/// The card, with the member's personal data beside it (first: within the first bytes of
/// the body, which a log line about a bad answer may quote).
fn card_json() -> String {
    format!(
        r#"{{"status":200,"data":{{"name":"{NAME}","phone":"{PHONE}","idCard":"{ID_CARD}","address":"{ADDRESS}","birthday":"{BIRTHDAY}","cardCode":"M0001001","balance":128.50,"discount":0.95,"canMemberPrice":true}},"message":""}}"#
    )
}

/// One scripted answer: the bytes written, and whether the connection closes after them.
struct Reply {
    bytes: String,
    close: bool,
}

fn answer(status: &str, content_type: &str, body: &str) -> Reply {
    Reply {
        bytes: format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        close: false,
    }
}

/// A backend that gives the next scripted reply to each request, on whatever connection it
/// comes, and keeps the request heads.
struct Backend {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Backend {
    fn start(replies: Vec<Reply>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let kept = Arc::clone(&heads);
        std::thread::spawn(move || {
            for mut tcp in listener.incoming().flatten() {
                let (kept, replies) = (Arc::clone(&kept), Arc::clone(&replies));
                std::thread::spawn(move || {
                    while let Some(head) = support::read_http_head(&mut tcp) {
                        kept.lock().unwrap().push(head);
                        let Some(reply) = replies.lock().unwrap().pop_front() else {
                            return;
                        };
                        let _ = tcp.write_all(reply.bytes.as_bytes());
                        if reply.close {
                            return;
                        }
                    }
                });
            }
        });
        Backend { url, heads }
    }
}

#[test]
fn neither_the_token_nor_personal_data_reach_the_trace_log_whatever_the_backend_answers() {
    let card = card_json();
    let html = format!(
        "<html><body><h1>Proxy login</h1>{}</body></html>",
        " ".repeat(40)
    );
    let replies = vec![
        // Normal.
        answer("200 OK", "application/json", &card),
        // HTML (a proxy's page).
        answer("200 OK", "text/html", &html),
        // Half the JSON body, then the connection ends.
        Reply {
            bytes: format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                card.len(),
                &card[..card.find("\"cardCode\"").unwrap()]
            ),
            close: true,
        },
        // A redirect.
        Reply {
            bytes:
                "HTTP/1.1 302 Found\r\nLocation: http://login.example/\r\nContent-Length: 0\r\n\r\n"
                    .into(),
            close: false,
        },
        // An error status whose body carries the member's data (and the connection ends,
        // so that the next request comes on a new one).
        Reply {
            bytes: format!(
                "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\
                 Content-Length: {}\r\n\r\n{card}",
                card.len()
            ),
            close: true,
        },
        // A closed connection, not a byte of answer (on a fresh connection: a kept-alive one
        // would be retried, and the retry would take the next reply).
        Reply {
            bytes: String::new(),
            close: true,
        },
        // The card, then junk: not JSON.
        answer(
            "200 OK",
            "application/json",
            &format!("{card}<!-- cache: hit -->"),
        ),
        // `data` not an object: the member's data as a string, and in the card's fields.
        answer(
            "200 OK",
            "application/json",
            &format!(r#"{{"status":200,"data":"{NAME} {PHONE}"}}"#),
        ),
        answer(
            "200 OK",
            "application/json",
            &format!(
                r#"{{"status":200,"data":{{"cardCode":{{"name":"{NAME}"}},"balance":"{PHONE}","discount":0,"canMemberPrice":true}}}}"#
            ),
        ),
        answer(
            "200 OK",
            "application/json",
            &format!(
                r#"{{"status":200,"data":{{"cardCode":"C1","balance":"{ADDRESS}","discount":0,"canMemberPrice":true}}}}"#
            ),
        ),
        // Normal again.
        answer("200 OK", "application/json", &card),
    ];
    let cases = replies.len();
    let backend = Backend::start(replies);

    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("api-headers");
    std::fs::write(&headers, format!("X-Api-Token: {TOKEN}\n")).unwrap();
    let (config, socket) = support::daemon_config(dir.path(), &backend.url, "", "");
    // Every failure still sends the next lookup to the backend (the breaker stays closed).
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replacen(
            "[api]\n",
            &format!("[api]\nheaders_file = \"{}\"\n", headers.display()),
            1,
        )
        .replacen("[service]\n", "[service]\nbreaker_failures = 1000\n", 1);
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("wxcardd.log");
    let daemon = support::DaemonProcess::start_logging_to(
        &config,
        &socket,
        &[("RUST_LOG", "trace")],
        Some(&log),
    );
    let mut client = daemon.client();
    let mut sources = Vec::new();
    for _ in 0..cases {
        let answer = client
            .request(&Command::Lookup(LookupParams {
                wx_code: ACTIVE.into(),
                card_id: None,
            }))
            .unwrap();
        assert_eq!(answer["class"], "RESULT", "{answer}");
        sources.push(
            answer["result"]["source"]
                .as_str()
                .unwrap_or("?")
                .to_owned(),
        );
    }
    drop(daemon);
    let log = std::fs::read_to_string(&log).unwrap();

    // Every reply was taken, the first and last as answers, the others as failures.
    assert_eq!(
        sources.first().map(String::as_str),
        Some("api"),
        "{sources:?}"
    );
    assert_eq!(
        sources.last().map(String::as_str),
        Some("api"),
        "{sources:?}"
    );
    assert!(
        sources[1..cases - 1].iter().all(|s| s == "cache"),
        "{sources:?}"
    );
    let heads = backend.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), cases, "{heads:#?}");
    // The token went out with every request.
    assert!(
        heads.iter().all(|h| h
            .to_ascii_lowercase()
            .contains(&format!("x-api-token: {}\r\n", TOKEN.to_ascii_lowercase()))),
        "{heads:#?}"
    );
    // The trace log is on and the failures are in it, in words.
    for expected in [
        "getmembercard: HTTP 200",
        "not JSON",
        "truncated",
        "redirect",
        "HTTP 500",
        "closed the connection",
    ] {
        assert!(log.contains(expected), "no {expected:?} in the log:\n{log}");
    }
    support::assert_log_keeps_secrets(&log, &[TOKEN, NAME, PHONE, ID_CARD, ADDRESS, BIRTHDAY]);
}
