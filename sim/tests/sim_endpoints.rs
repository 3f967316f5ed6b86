//! The real `wxcard-sim` binary over real HTTP: every endpoint, every card state, the
//! counters, the admin API, the command line and signals.

mod sim_support;

use serde_json::json;
use sim_support::*;

#[test]
fn getmembercard_answers_by_card_state() {
    let sim = SimProcess::spawn(&[]);
    let (http, body) = sim.get(&format!(
        "getmembercard?cardId=pX2bjt7hUDgWBCMlT5tTNMbA3Dk0&wxCode={ACTIVE}"
    ));
    assert_eq!(http, 200);
    assert_eq!(body["status"].as_u64(), Some(200), "{body}");
    assert_eq!(body["message"].as_str(), Some(""));
    let data = &body["data"];
    assert_eq!(data["cardCode"].as_str(), Some("M0001001"));
    // Decimals keep the text they were configured with.
    assert_eq!(data["balance"].to_string(), "128.50");
    assert_eq!(data["discount"].to_string(), "0.95");
    assert_eq!(data["canMemberPrice"], json!(true));
    assert_eq!(
        sim.member_card(ACTIVE_EMPTY).1["data"]["canMemberPrice"],
        json!(false)
    );
    for (code, status) in [
        (ACTIVE_GOLD, 200),
        (INACTIVE, 601),
        (LOST, 603),
        (VOIDED, 604),
        (UNAVAILABLE, 601),
        (UNKNOWN, 602),
    ] {
        let (http, body) = sim.member_card(code);
        assert_eq!(http, 200);
        assert_eq!(body["status"].as_u64(), Some(status), "{code}: {body}");
        assert!(
            status == 200 || body.get("data").is_none(),
            "{code}: {body}"
        );
    }
    let (_, wrong_template) = sim.get(&format!("getmembercard?cardId=other&wxCode={ACTIVE}"));
    assert_eq!(wrong_template["status"].as_u64(), Some(602));
    // Without cardId the template is not checked.
    let (_, no_card_id) = sim.get(&format!("getmembercard?wxCode={ACTIVE}"));
    assert_eq!(no_card_id["status"].as_u64(), Some(200));
}

#[test]
fn getpaycode_issues_checkable_codes() {
    let sim = SimProcess::spawn(&[]);
    let (http, body) = sim.get(&format!("getpaycode?wxCode={ACTIVE}"));
    assert_eq!((http, body["status"].as_u64()), (200, Some(200)), "{body}");
    let code = body["data"].as_str().expect("a string pay code").to_owned();
    assert_eq!(code.len(), 18, "{code}");
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    let (_, second) = sim.get(&format!("getpaycode?wxCode={ACTIVE}"));
    assert_ne!(second["data"].as_str(), Some(code.as_str()));

    let (http, check) = sim.admin_get(&format!("paycodes/{code}"));
    assert_eq!(
        (http, check["status"].as_u64()),
        (200, Some(200)),
        "{check}"
    );
    assert_eq!(check["data"]["wxCode"].as_str(), Some(ACTIVE));
    let left = check["data"]["expiresInMs"].as_u64().unwrap();
    assert!(left > 0 && left <= 60_000, "{left}");
    assert_eq!(sim.admin_get("paycodes/123456789012345678").0, 404);

    for (wx, status) in [
        (LOST, 603),
        (VOIDED, 604),
        (UNAVAILABLE, 601),
        (UNKNOWN, 602),
    ] {
        let (_, body) = sim.get(&format!("getpaycode?wxCode={wx}"));
        assert_eq!(body["status"].as_u64(), Some(status), "{wx}: {body}");
    }
}

#[test]
fn expired_pay_codes_answer_606() {
    // A TTL of 0 expires every code at once: no waiting needed.
    let sim = SimProcess::spawn(&["--paycode-ttl", "0"]);
    let (_, body) = sim.get(&format!("getpaycode?wxCode={ACTIVE}"));
    let code = body["data"].as_str().unwrap().to_owned();
    let (http, check) = sim.admin_get(&format!("paycodes/{code}"));
    assert_eq!(
        (http, check["status"].as_u64()),
        (200, Some(606)),
        "{check}"
    );
    assert_eq!(check["data"]["wxCode"].as_str(), Some(ACTIVE));
}

#[test]
fn activemember_applies_once_and_recognises_resends() {
    let sim = SimProcess::spawn(&[]);
    let full = format!(
        r#"{{"wxCardId":"pX2bjt7hUDgWBCMlT5tTNMbA3Dk0","wxCode":"{INACTIVE}","cardCode":"",
            "name":"","phone":"","sex":"","birthday":"","idCard":"","address":""}}"#
    );
    let (http, body) = sim.post("activemember", &full);
    assert_eq!(http, 200);
    assert_eq!(body, json!({"status": 200, "message": ""}));
    assert_eq!(sim.member_card(INACTIVE).1["status"].as_u64(), Some(200));
    let (_, again) = sim.activate(INACTIVE);
    assert_eq!(again["status"].as_u64(), Some(200));
    assert_eq!(again["message"].as_str(), Some("already active"));
    assert_eq!(sim.write_count("activemember", INACTIVE), (2, 1));
    let (_, card) = sim.admin_get(&format!("cards/{INACTIVE}"));
    assert_eq!(card["state"].as_str(), Some("active"));

    for (wx, status) in [
        (LOST, 603),
        (VOIDED, 604),
        (UNAVAILABLE, 601),
        (UNKNOWN, 602),
    ] {
        assert_eq!(sim.activate(wx).1["status"].as_u64(), Some(status), "{wx}");
        assert_eq!(sim.write_count("activemember", wx), (1, 0));
    }
}

#[test]
fn createmembercard_creates_once() {
    let sim = SimProcess::spawn(&[]);
    let new = "813000000000000001";
    let body = format!(
        r#"{{"wxCardId":"tplX","wxCode":"{new}","cardCode":"M7","name":"Li Si","phone":"13912345678"}}"#
    );
    let (http, first) = sim.post("createmembercard", &body);
    assert_eq!(
        (http, first["status"].as_u64()),
        (200, Some(200)),
        "{first}"
    );
    let data = &first["data"];
    assert_eq!(data["wxCardId"].as_str(), Some("tplX"));
    assert_eq!(data["cardCode"].as_str(), Some("M7"));
    assert_eq!(data["balance"].to_string(), "0.00");
    assert_eq!(data["points"].to_string(), "0");
    let (_, second) = sim.post("createmembercard", &body);
    assert_eq!(second["data"], first["data"]);
    assert_eq!(second["message"].as_str(), Some("already a member"));
    assert_eq!(sim.write_count("createmembercard", new), (2, 1));
    let (_, card) = sim.member_card(new);
    assert_eq!(card["data"]["cardCode"].as_str(), Some("M7"));
    // Without a cardCode the simulator makes one up.
    let (_, generated) = sim.post("createmembercard", r#"{"wxCode":"813000000000000002"}"#);
    assert_eq!(generated["data"]["cardCode"].as_str(), Some("SIM00000001"));
    let (_, lost) = sim.post("createmembercard", &format!(r#"{{"wxCode":"{LOST}"}}"#));
    assert_eq!(lost["status"].as_u64(), Some(603));
}

#[test]
fn savecardid_records_orders_once() {
    let sim = SimProcess::spawn(&[]);
    let order = r#"{"memberCardClassId": 1, "memberCardClassName": "Gold", "cardId": "tplG",
        "createQty": 4, "sentQty": 5, "createTime": "2026-01-15 10:11:33", "userId": 7,
        "userName": "op",
        "details": [{"orderId": 9, "wxCode": "814000000000000001", "cardCode": "G1",
                     "createTime": "2026-01-15 10:11:33", "id": 5},
                    {"orderId": 9, "wxCode": "", "cardCode": "", "createTime":
                     "2026-01-15 10:11:33", "id": 6}],
        "id": 9}"#;
    let (http, body) = sim.post("savecardid", order);
    assert_eq!(http, 200);
    assert_eq!(body, json!({"status": 200, "message": ""}));
    let (_, again) = sim.post("savecardid", order);
    assert_eq!(again["status"].as_u64(), Some(801), "{again}");
    assert_eq!(sim.write_count("savecardid", "9"), (2, 1));
    let (_, recorded) = sim.admin_get("orders/9");
    assert_eq!(recorded["userName"].as_str(), Some("op"));
    assert_eq!(sim.admin_get("orders").1, json!([9]));
    // The issued card exists, inactive, until activemember.
    let (_, card) = sim.admin_get("cards/814000000000000001");
    assert_eq!(card["state"].as_str(), Some("inactive"), "{card}");
    assert_eq!(card["cardId"].as_str(), Some("tplG"));
    assert_eq!(
        sim.activate("814000000000000001").1["status"].as_u64(),
        Some(200)
    );
}

#[test]
fn wire_format_violations_are_http_400() {
    let sim = SimProcess::spawn(&[]);
    let cases = [
        (
            "activemember",
            r#"{"wx_code":"1"}"#,
            "unknown field `wx_code`",
        ),
        ("activemember", r#"{"name":"x"}"#, "`wxCode` is missing"),
        (
            "activemember",
            r#"{"wxCode":123}"#,
            "`wxCode` must be a string",
        ),
        ("createmembercard", "{not json", "not JSON"),
        ("savecardid", r#"{"id":"9"}"#, "`id` must be an integer"),
        (
            "savecardid",
            r#"{"id":9,"createTime":"2026/01/15"}"#,
            "`createTime` must be a date",
        ),
    ];
    for (path, body, want) in cases {
        let (http, answer) = sim.post(path, body);
        assert_eq!(http, 400, "{path} {body}: {answer}");
        assert_eq!(answer["status"].as_u64(), Some(500));
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(want), "{message:?} lacks {want:?}");
    }
    let (http, answer) = answer(
        agent(std::time::Duration::from_secs(5))
            .post(sim.url("activemember"))
            .header("content-type", "text/plain")
            .send(format!(r#"{{"wxCode":"{INACTIVE}"}}"#)),
    );
    assert_eq!(http, 400, "{answer}");
    assert_eq!(sim.get("getmembercard?cardId=x").0, 400);
    assert_eq!(sim.get("getpaycode?wxCode=").0, 400);
    assert_eq!(sim.get(&format!("getpaycode?wxcode={ACTIVE}")).0, 400);
    assert_eq!(sim.get("nosuchendpoint").0, 404);
    assert_eq!(sim.get("activemember").0, 405);
    // None of these was a well-formed write: nothing counted, nothing applied.
    assert_eq!(sim.counters()["activemember"], json!({}));
    assert_eq!(sim.counters()["savecardid"], json!({}));
    assert_eq!(sim.member_card(INACTIVE).1["status"].as_u64(), Some(601));
}

#[test]
fn personal_data_never_reaches_the_log() {
    let sim = SimProcess::spawn_with_env(&[], &[("RUST_LOG", "trace")]);
    let personal = [
        "Wang Xiaoming",
        "13812345678",
        "110101199003071234",
        "Chaoyang Road 88",
        "1990-03-07",
        "female",
    ];
    let body = format!(
        r#"{{"wxCode":"{INACTIVE}","name":"{}","phone":"{}","idCard":"{}","address":"{}",
            "birthday":"{}","sex":"{}"}}"#,
        personal[0], personal[1], personal[2], personal[3], personal[4], personal[5]
    );
    assert_eq!(sim.post("activemember", &body).0, 200);
    assert_eq!(sim.post("createmembercard", &body).0, 200);
    // A bad request that carries personal data is refused without echoing it.
    let bad = body.replace(r#""wxCode""#, r#""wxcode""#);
    assert_eq!(sim.post("activemember", &bad).0, 400);
    let bad_type = format!(r#"{{"wxCode":"1","phone":{}}}"#, personal[1]);
    let (http, answer) = sim.post("activemember", &bad_type);
    assert_eq!(http, 400);
    assert!(!answer.to_string().contains(personal[1]), "{answer}");
    let mut sim = sim;
    assert!(sim.stop_with(libc::SIGTERM).success());
    let log = sim.stderr();
    assert!(log.contains("activemember"), "the log is written: {log}");
    for value in personal {
        assert!(!log.contains(value), "{value:?} in the log:\n{log}");
    }
}

#[test]
fn admin_cards_force_and_reset() {
    let sim = SimProcess::spawn(&[]);
    let (http, cards) = sim.admin_get("cards");
    assert_eq!(http, 200);
    assert_eq!(cards.as_array().map(Vec::len), Some(7));
    // Replace a card: the lost one is found again.
    let (http, card) = sim.admin_send("PUT", &format!("cards/{LOST}"), r#"{"balance":"42.00"}"#);
    assert_eq!(http, 200, "{card}");
    assert_eq!(card["state"].as_str(), Some("active"));
    assert_eq!(
        sim.member_card(LOST).1["data"]["balance"].to_string(),
        "42.00"
    );
    // Add cards.
    let (http, added) = sim.admin_send(
        "POST",
        "cards",
        r#"[{"wxCode":"815000000000000001","balance":9.9,"state":"voided"}]"#,
    );
    assert_eq!(http, 200, "{added}");
    assert_eq!(
        sim.member_card("815000000000000001").1["status"].as_u64(),
        Some(604)
    );
    assert_eq!(
        sim.admin_send("POST", "cards", r#"{"wxCode":"1","state":"x"}"#)
            .0,
        400
    );
    assert_eq!(sim.admin_get("cards/404404").0, 404);

    // Force a status on the next two activations; they are not applied.
    let (http, forced) = sim.admin_send(
        "POST",
        "force",
        r#"{"endpoint":"activemember","status":605,"count":2}"#,
    );
    assert_eq!(http, 200, "{forced}");
    assert_eq!(forced["forced"][0]["remaining"].as_u64(), Some(2));
    assert_eq!(sim.activate(INACTIVE).1["status"].as_u64(), Some(605));
    assert_eq!(
        sim.activate(INACTIVE).1["message"].as_str(),
        Some("forced by the simulator")
    );
    assert_eq!(sim.write_count("activemember", INACTIVE), (0, 0));
    assert_eq!(sim.activate(INACTIVE).1["status"].as_u64(), Some(200));
    assert_eq!(sim.counters()["faulted"]["activemember"].as_u64(), Some(2));
    assert_eq!(
        sim.admin_send("POST", "force", r#"{"endpoint":"nope","status":605}"#)
            .0,
        400
    );

    let (http, _) = sim.admin_send("POST", "reset", "");
    assert_eq!(http, 200);
    assert_eq!(sim.member_card(LOST).1["status"].as_u64(), Some(603));
    assert_eq!(sim.member_card(INACTIVE).1["status"].as_u64(), Some(601));
    assert_eq!(
        sim.member_card("815000000000000001").1["status"].as_u64(),
        Some(602)
    );
    let counters = sim.counters();
    assert_eq!(counters["activemember"], json!({}));
    assert_eq!(counters["requests"]["getmembercard"].as_u64(), Some(3));
    let (_, health) = sim.admin_get("health");
    assert_eq!(health["api"].as_str(), Some("up"));
    assert_eq!(
        health["apiAddr"].as_str(),
        Some(sim.api.to_string().as_str())
    );
}

#[test]
fn card_file_and_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cards.toml");
    std::fs::write(
        &file,
        "[[card]]\nwxCode = \"600000000001\"\ncardId = \"t\"\ncardCode = \"C1\"\n\
         balance = \"12.340\"\ndiscount = \"5\"\npoints = \"7.5\"\n",
    )
    .unwrap();
    let sim = SimProcess::spawn(&["--cards", file.to_str().unwrap()]);
    let (_, body) = sim.member_card("600000000001");
    assert_eq!(body["data"]["balance"].to_string(), "12.340", "{body}");
    assert_eq!(sim.member_card(ACTIVE).1["status"].as_u64(), Some(602));
    drop(sim);

    std::fs::write(&file, "[[card]]\nwxCode = \"1\"\nbalance = 1.5\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxcard-sim"))
        .args(["--listen", "127.0.0.1:0", "--cards", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("as a string"), "{err}");
    assert!(out.stdout.is_empty());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxcard-sim"))
        .args(["--listen", &port])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

#[test]
fn signals_stop_it_cleanly() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut sim = SimProcess::spawn(&["--admin", "127.0.0.1:0"]);
        assert_eq!(sim.member_card(ACTIVE).0, 200);
        let status = sim.stop_with(signal);
        assert!(status.success(), "signal {signal}: {status:?}");
        assert!(std::net::TcpStream::connect(sim.api).is_err());
    }
}
