//! The kiosk page server over real HTTP on 127.0.0.1: the page, the event stream, the QR as
//! SVG rasterised and decoded with rqrr, reconnects and shutdown.

mod display_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use display_support::{CARD, CODE, card, decode_grey, pay_code};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use wxcard_hal::display::config::WebConfig;
use wxcard_hal::display::web::WebDisplay;
use wxcard_hal::display::{CustomerDisplay, Screen, Texts};

fn start() -> WebDisplay {
    let cfg = WebConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..WebConfig::default()
    };
    let texts = Texts {
        shop_name: "好又多 Good Shop".into(),
        ..Texts::default()
    };
    WebDisplay::start(&cfg, texts).unwrap()
}

/// An SSE client on HTTP/1.0, so the body is plain bytes until the server closes.
struct Events {
    reader: BufReader<OwnedReadHalf>,
    _write: tokio::net::tcp::OwnedWriteHalf,
}

impl Events {
    async fn connect(addr: SocketAddr) -> Self {
        let (read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
        write
            .write_all(b"GET /events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
            .await
            .unwrap();
        let mut reader = BufReader::new(read);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        assert!(
            line.starts_with("HTTP/1.0 200") || line.starts_with("HTTP/1.1 200"),
            "{line}"
        );
        let mut content_type = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            if line.to_ascii_lowercase().starts_with("content-type:") {
                content_type = line.clone();
            }
            if line == "\r\n" {
                break;
            }
        }
        assert!(content_type.contains("text/event-stream"), "{content_type}");
        Events {
            reader,
            _write: write,
        }
    }

    /// The next `screen` event's JSON, or `None` when the server closed the stream.
    async fn next(&mut self) -> Option<Value> {
        let read = async {
            let mut line = String::new();
            let (mut event, mut data) = (String::new(), String::new());
            loop {
                line.clear();
                if self.reader.read_line(&mut line).await.unwrap() == 0 {
                    return None;
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if l.is_empty() {
                    if event == "screen" {
                        return Some(serde_json::from_str(&data).expect("event data is JSON"));
                    }
                    (event, data) = (String::new(), String::new());
                } else if let Some(v) = l.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = l.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("event within 10 s")
    }
}

/// Rasterises the SVG this crate emits (`M x y h w v1 h-w z` runs) at 6 px a module.
fn decode_svg(svg: &str) -> Vec<String> {
    let n: usize = svg
        .split("viewBox=\"0 0 ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let d = svg
        .split(" d=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let mut dark = vec![false; n * n];
    for run in d.split('M').filter(|r| !r.is_empty()) {
        let (xy, rest) = run.split_once('h').unwrap();
        let (x, y) = xy.split_once(' ').unwrap();
        let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
        let w: usize = rest.split('v').next().unwrap().parse().unwrap();
        for i in x..x + w {
            dark[y * n + i] = true;
        }
    }
    decode_grey(n * 6, n * 6, |x, y| {
        if dark[(y / 6) * n + x / 6] { 0 } else { 255 }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_is_served_and_listens_on_loopback_by_default() {
    assert!(WebConfig::default().listen.ip().is_loopback());
    let web = start();
    let mut s = TcpStream::connect(web.local_addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    assert!(body.contains("new EventSource(\"events\")"));
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screens_are_pushed_and_the_svg_decodes_to_the_pay_code() {
    let mut web = start();
    let addr = web.local_addr();
    let mut events = Events::connect(addr).await;
    assert_eq!(
        events.next().await.unwrap()["screen"]["kind"],
        "blank",
        "current screen on connect"
    );

    let now = Instant::now();
    web.show(&Screen::Idle, now).unwrap();
    let idle = events.next().await.unwrap();
    assert_eq!(idle["screen"]["rows"][0]["value"], "好又多 Good Shop");

    let code = pay_code(CODE, now);
    web.show(&code, now).unwrap();
    let ev = events.next().await.unwrap();
    assert_eq!(ev["screen"]["kind"], "paycode");
    assert_eq!(ev["screen"]["digits"], "1345 2387 9145 2238 01");
    let left = ev["remaining_ms"].as_u64().unwrap();
    assert!((110_000..=120_000).contains(&left), "{left}");
    assert_eq!(
        decode_svg(ev["screen"]["svg"].as_str().unwrap()),
        vec![CODE.to_string()]
    );

    // A countdown tick changes nothing the page does not compute itself: no push. The next
    // event is therefore the card, not a repeat of the pay code.
    web.show(&code, now + Duration::from_secs(1)).unwrap();
    web.show(&card(), now).unwrap();
    let ev = events.next().await.unwrap();
    assert_eq!(ev["screen"]["kind"], "card");
    assert!(!ev.to_string().contains(CARD) && !ev.to_string().contains(&CARD[..8]));
    assert_eq!(ev["screen"]["rows"][0]["value"], "**** 7890");

    // A client connecting now gets the card straight away.
    let mut late = Events::connect(addr).await;
    assert_eq!(late.next().await.unwrap()["screen"]["kind"], "card");

    // An expired code is pushed as the expired screen, without a QR.
    web.show(&code, now + Duration::from_secs(120)).unwrap();
    let ev = events.next().await.unwrap();
    assert_eq!(ev["screen"]["kind"], "expired");
    assert!(ev["screen"]["svg"].is_null());

    // Stopping ends the streams and frees the port for the restarted daemon.
    web.stop().await;
    assert!(events.next().await.is_none());
    assert_eq!(
        late.next().await.unwrap()["screen"]["kind"],
        "expired",
        "pushed before the stop"
    );
    assert!(late.next().await.is_none());
    let again = WebDisplay::start(
        &WebConfig {
            listen: addr,
            ..WebConfig::default()
        },
        Texts::default(),
    )
    .unwrap();
    again.stop().await;
}

#[test]
fn starting_outside_a_runtime_is_a_clear_error() {
    let err = WebDisplay::start(&WebConfig::default(), Texts::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

/// The whole response to `GET path` over HTTP/1.0.
async fn get_bytes(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = Vec::new();
    s.read_to_end(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_logo_is_served_next_to_the_page_and_a_bad_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let logo = dir.path().join("logo.png");
    let mut png_bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    png_bytes.extend_from_slice(b"rest of a picture");
    std::fs::write(&logo, &png_bytes).unwrap();
    let bad = dir.path().join("logo.gif");
    std::fs::write(&bad, b"GIF89a").unwrap();

    let mut web = start().with_logo(Some(&logo));
    let addr = web.local_addr();
    let answer = get_bytes(addr, "/logo.png").await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: image/png"),
        "{text}"
    );
    assert!(answer.ends_with(&png_bytes));
    let mut events = Events::connect(addr).await;
    events.next().await.unwrap();
    web.show(&Screen::Idle, Instant::now()).unwrap();
    assert_eq!(events.next().await.unwrap()["screen"]["logo"], true);
    web.stop().await;

    for path in [
        Some(bad.as_path()),
        Some(dir.path().join("none.png").as_path()),
        None,
    ] {
        let mut web = start().with_logo(path);
        let answer = get_bytes(web.local_addr(), "/logo.png").await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.contains(" 404 "), "{path:?}: {text}");
        let mut events = Events::connect(web.local_addr()).await;
        events.next().await.unwrap();
        web.show(&Screen::Idle, Instant::now()).unwrap();
        assert_eq!(events.next().await.unwrap()["screen"]["logo"], false);
        web.stop().await;
    }
}
