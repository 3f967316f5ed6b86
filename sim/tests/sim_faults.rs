//! Every fault of the real `wxcard-sim` binary, switched through its admin API and observed
//! over real HTTP (with ureq, and with raw sockets where the bytes matter).

mod sim_support;

use std::io::Read;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sim_support::*;

fn get_request(sim: &SimProcess, keep_alive: bool) -> String {
    format!(
        "GET /api/weixin/wxcard/getmembercard?wxCode={ACTIVE} HTTP/1.1\r\nHost: {}\r\n\
         Connection: {}\r\n\r\n",
        sim.api,
        if keep_alive { "keep-alive" } else { "close" }
    )
}

#[test]
fn refuse_stops_listening_closes_connections_and_comes_back() {
    let sim = SimProcess::spawn(&[]);
    let mut kept = TcpStream::connect(sim.api).unwrap();
    let (head, body) = raw_exchange(&mut kept, &get_request(&sim, true));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!body.is_empty());

    sim.set_mode("refuse");
    // The admin API answered only once the port was closed: no waiting needed.
    let err = TcpStream::connect(sim.api).expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    // The keep-alive connection was closed too.
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    let n = kept.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the old connection still delivers data");
    let result = agent(Duration::from_secs(2))
        .get(sim.url(&format!("getmembercard?wxCode={ACTIVE}")))
        .call();
    assert!(
        matches!(
            result,
            Err(ureq::Error::Io(_)) | Err(ureq::Error::ConnectionFailed)
        ),
        "{result:?}"
    );
    let (_, health) = sim.admin_get("health");
    assert_eq!(health["api"].as_str(), Some("down"));

    sim.clear();
    assert_eq!(sim.member_card(ACTIVE).1["status"].as_u64(), Some(200));
    assert_eq!(sim.admin_get("health").1["api"].as_str(), Some("up"));
    // Refusing twice and clearing twice is harmless.
    sim.set_mode("refuse");
    sim.set_mode("refuse");
    sim.clear();
    sim.clear();
    assert_eq!(sim.member_card(ACTIVE).0, 200);
}

#[test]
fn http500_answers_html_and_applies_nothing() {
    let sim = SimProcess::spawn(&[]);
    sim.set_mode("http500");
    let mut response = agent(Duration::from_secs(5))
        .post(sim.url("activemember"))
        .header("content-type", "application/json")
        .send(format!(r#"{{"wxCode":"{INACTIVE}"}}"#))
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 500);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let text = response.body_mut().read_to_string().unwrap();
    assert!(text.starts_with("<!DOCTYPE html>"), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err());
    assert_eq!(sim.write_count("activemember", INACTIVE), (0, 0));
    assert_eq!(sim.counters()["faulted"]["activemember"].as_u64(), Some(1));
    sim.clear();
    assert_eq!(sim.member_card(INACTIVE).1["status"].as_u64(), Some(601));
}

#[test]
fn truncated_cuts_the_body_and_closes_the_connection() {
    let sim = SimProcess::spawn(&[]);
    sim.set_mode("truncated");
    for _ in 0..5 {
        let mut stream = TcpStream::connect(sim.api).unwrap();
        let (head, body) = raw_exchange(&mut stream, &get_request(&sim, true));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let announced = content_length(&head);
        assert!(announced > 0, "{head}");
        assert!(!body.is_empty(), "some of the body arrives");
        assert!(body.len() < announced, "{} of {announced}", body.len());
        assert!(body.starts_with(b"{"));
        assert!(serde_json::from_slice::<Value>(&body).is_err());
        // The connection is closed, not left waiting for the rest.
        let mut buf = [0u8; 1];
        assert_eq!(stream.read(&mut buf).unwrap_or(0), 0);
    }
    // ureq sees a broken body.
    let mut response = agent(Duration::from_secs(5))
        .post(sim.url("activemember"))
        .header("content-type", "application/json")
        .send(format!(r#"{{"wxCode":"{INACTIVE}"}}"#))
        .expect("a head");
    assert!(response.body_mut().read_to_string().is_err());
    // The write was applied before its answer was cut: a lost acknowledgement.
    assert_eq!(sim.write_count("activemember", INACTIVE), (1, 1));
    sim.clear();
    let (_, again) = sim.activate(INACTIVE);
    assert_eq!(again["message"].as_str(), Some("already active"));
    assert_eq!(sim.write_count("activemember", INACTIVE), (2, 1));
}

#[test]
fn string_status_sends_the_status_as_a_string() {
    let sim = SimProcess::spawn(&[]);
    sim.set_mode("string_status");
    let (http, body) = sim.member_card(ACTIVE);
    assert_eq!(http, 200);
    assert_eq!(body["status"], Value::String("200".into()), "{body}");
    assert_eq!(body["data"]["balance"].to_string(), "128.50");
    let (_, lost) = sim.member_card(LOST);
    assert_eq!(lost["status"], Value::String("603".into()));
    sim.clear();
    assert_eq!(sim.member_card(ACTIVE).1["status"].as_u64(), Some(200));
}

#[test]
fn latency_delays_every_answer() {
    let sim = SimProcess::spawn(&[]);
    let (http, faults) = sim.admin_send("PUT", "faults", r#"{"latencyMs":300}"#);
    assert_eq!(http, 200);
    assert_eq!(faults["latencyMs"].as_u64(), Some(300));
    let started = Instant::now();
    assert_eq!(sim.member_card(ACTIVE).0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A client deadline shorter than the latency times out.
    let result = agent(Duration::from_millis(100))
        .get(sim.url(&format!("getmembercard?wxCode={ACTIVE}")))
        .call();
    assert!(matches!(result, Err(ureq::Error::Timeout(_))), "{result:?}");
    sim.clear();
    assert_eq!(sim.admin_get("faults").1["latencyMs"].as_u64(), Some(0));
}

#[test]
fn hang_holds_requests_until_cleared() {
    let sim = SimProcess::spawn(&[]);
    sim.set_mode("hang");
    // A client with a short deadline gives up.
    let result = agent(Duration::from_millis(200))
        .get(sim.url(&format!("getmembercard?wxCode={ACTIVE}")))
        .call();
    assert!(matches!(result, Err(ureq::Error::Timeout(_))), "{result:?}");

    // A patient client is answered once the hang is cleared, and its write applied then.
    let url = sim.url("activemember");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = agent(Duration::from_secs(20))
            .post(url)
            .header("content-type", "application/json")
            .send(format!(r#"{{"wxCode":"{INACTIVE}"}}"#));
        let _ = tx.send(answer(result));
    });
    assert!(wait_until(Duration::from_secs(10), || sim
        .requests("activemember")
        == 1));
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "answered during the hang"
    );
    assert_eq!(sim.write_count("activemember", INACTIVE), (0, 0));
    sim.clear();
    let (http, body) = rx.recv_timeout(Duration::from_secs(10)).expect("answered");
    assert_eq!((http, body["status"].as_u64()), (200, Some(200)));
    assert_eq!(sim.write_count("activemember", INACTIVE), (1, 1));
}

#[test]
fn bad_fault_requests_are_refused() {
    let sim = SimProcess::spawn(&[]);
    for body in [
        r#"{"mode":"explode"}"#,
        r#"{"latencyMs":-1}"#,
        "nope",
        r#"{"x":1}"#,
    ] {
        let (http, answer) = sim.admin_send("PUT", "faults", body);
        assert_eq!(http, 400, "{body}: {answer}");
        assert!(answer["error"].is_string());
    }
    assert_eq!(sim.admin_get("faults").1["mode"].as_str(), Some("none"));
}

#[test]
fn garbage_on_the_api_port_does_not_hurt_it() {
    let sim = SimProcess::spawn(&[]);
    let garbage: [&[u8]; 4] = [
        b"\x00\xff\xfe GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /api/weixin/wxcard/activemember HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{",
        b"GET /api/weixin/wxcard/getpaycode?wxCode=%ZZ%00 HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for bytes in garbage {
        let mut stream = TcpStream::connect(sim.api).unwrap();
        std::io::Write::write_all(&mut stream, bytes).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
    assert_eq!(sim.member_card(ACTIVE).1["status"].as_u64(), Some(200));
    assert_eq!(sim.counters()["activemember"], serde_json::json!({}));
}

#[test]
fn no_status_leaves_the_status_out() {
    let sim = SimProcess::spawn(&[]);
    sim.set_mode("no_status");
    let (http, body) = sim.activate(INACTIVE);
    assert_eq!(http, 200);
    assert!(body.is_object(), "{body}");
    assert!(body.get("status").is_none(), "{body}");
    assert!(body.get("message").is_some());
    let (_, card) = sim.member_card(ACTIVE);
    assert!(card.get("status").is_none());
    assert_eq!(card["data"]["balance"].to_string(), "128.50");
    // Applied: the backend did the work, the answer was malformed.
    assert_eq!(sim.write_count("activemember", INACTIVE), (1, 1));
}

#[test]
fn not_json_answers_an_html_page_with_200() {
    let sim = SimProcess::spawn(&[]);
    sim.set_mode("not_json");
    let mut response = agent(Duration::from_secs(5))
        .post(sim.url("activemember"))
        .header("content-type", "application/json")
        .send(format!(r#"{{"wxCode":"{INACTIVE}"}}"#))
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let text = response.body_mut().read_to_string().unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    // Not applied: the request never reached the backend.
    assert_eq!(sim.write_count("activemember", INACTIVE), (0, 0));
}

#[test]
fn oversized_streams_a_16_mib_body() {
    let sim = SimProcess::spawn(&[]);
    sim.set_mode("oversized");
    let mut response = agent(Duration::from_secs(30))
        .get(sim.url(&format!("getmembercard?wxCode={LOST}")))
        .call()
        .expect("a head");
    let announced: u64 = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(announced, 16 << 20);
    // A client with a sane limit refuses it.
    let limited = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec();
    assert!(
        matches!(limited, Err(ureq::Error::BodyExceedsLimit(_))),
        "{limited:?}"
    );
    // Read whole, it is one valid JSON envelope of exactly that length.
    let mut response = agent(Duration::from_secs(30))
        .get(sim.url(&format!("getmembercard?wxCode={LOST}")))
        .call()
        .unwrap();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(32 << 20)
        .read_to_vec()
        .unwrap();
    assert_eq!(bytes.len() as u64, announced);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["status"].as_u64(), Some(603));
}

#[test]
fn faults_can_target_some_endpoints() {
    let sim = SimProcess::spawn(&[]);
    let (http, faults) = sim.admin_send(
        "PUT",
        "faults",
        r#"{"mode":"hang","endpoints":["activemember","savecardid"]}"#,
    );
    assert_eq!(http, 200, "{faults}");
    assert_eq!(
        faults["endpoints"],
        serde_json::json!(["savecardid", "activemember"])
    );
    // Reads still work while writes hang.
    assert_eq!(sim.member_card(ACTIVE).1["status"].as_u64(), Some(200));
    let result = agent(Duration::from_millis(200))
        .post(sim.url("activemember"))
        .header("content-type", "application/json")
        .send(format!(r#"{{"wxCode":"{INACTIVE}"}}"#));
    assert!(matches!(result, Err(ureq::Error::Timeout(_))), "{result:?}");
    sim.clear();
    assert_eq!(
        sim.admin_get("faults").1["endpoints"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
}
