//! The API client against the simulator over real HTTP on 127.0.0.1: every endpoint, every
//! fault the simulator plays, and every documented status code.

use std::time::Duration;

use wxcard_sim::{BlockingSim, FaultMode, PayCodeCheck, SimConfig, Simulator};
use wxcardd::api::{
    self, ApiConfig, ApiError, CardIssueDetail, CardIssueOrder, Client, MemberInfo, ServerFault,
    Status, TransportKind,
};

const ACTIVE: &str = "812345678901234567";
const INACTIVE: &str = "812345678901234570";
const LOST: &str = "812345678901234571";
const VOIDED: &str = "812345678901234572";
const UNAVAILABLE: &str = "812345678901234573";

fn start() -> (BlockingSim, Client) {
    let sim = Simulator::spawn_in_thread(SimConfig::default()).expect("simulator starts");
    let client = Client::new(&ApiConfig {
        base_url: sim.base_url(),
        connect_timeout_ms: 500,
        deadline_ms: 2_000,
        ..ApiConfig::default()
    })
    .unwrap();
    (sim, client)
}

fn member(wx_code: &str) -> MemberInfo {
    MemberInfo {
        wx_code: wx_code.into(),
        ..MemberInfo::default()
    }
}

fn order(id: i64, wx_code: &str) -> CardIssueOrder {
    CardIssueOrder {
        id,
        card_id: Some("pX2bjt7hUDgWBCMlT5tTNMbA3Dk0".into()),
        member_card_class_id: Some(1),
        member_card_class_name: Some("普通会员".into()),
        create_qty: Some(1),
        sent_qty: Some(1),
        create_time: Some("2026-11-28 10:00:00".parse().unwrap()),
        user_id: Some(7),
        user_name: Some("cashier 7".into()),
        details: vec![CardIssueDetail {
            id: Some(1),
            order_id: Some(id),
            card_code: Some(format!("N{id:07}")),
            wx_code: Some(wx_code.into()),
            create_time: None,
        }],
    }
}

fn business(err: ApiError) -> Status {
    match err {
        ApiError::Business { status, .. } => status,
        other => panic!("expected a business status, got {other:?}"),
    }
}

#[test]
fn getmembercard_answers_cards_and_card_states() {
    let (_sim, client) = start();
    let card = client.get_member_card(None, ACTIVE, None).unwrap();
    assert_eq!(card.card_code, "M0001001");
    assert_eq!(card.balance.to_string(), "128.50");
    assert_eq!(card.discount.to_string(), "0.95");
    assert!(card.can_member_price);
    for (code, status) in [
        (LOST, Status::CardLost),
        (VOIDED, Status::CardVoided),
        (UNAVAILABLE, Status::CardUnavailable),
        ("899999999999999999", Status::CardNotFound),
    ] {
        let err = client.get_member_card(None, code, None).unwrap_err();
        assert!(!err.is_unavailable());
        assert_eq!(business(err), status, "{code}");
    }
}

#[test]
fn activemember_changes_state_once() {
    let (sim, client) = start();
    client.activate_member(&member(INACTIVE), None).unwrap();
    assert_eq!(
        client
            .get_member_card(None, INACTIVE, None)
            .unwrap()
            .card_code,
        "M0001004"
    );
    // A resend is accepted and recognised by the simulator as a duplicate.
    client.activate_member(&member(INACTIVE), None).unwrap();
    let count = sim
        .counters()
        .write(wxcard_sim::Endpoint::ActiveMember, INACTIVE);
    assert_eq!((count.receipts, count.applications), (2, 1));
    assert_eq!(
        business(client.activate_member(&member(LOST), None).unwrap_err()),
        Status::CardLost
    );
}

#[test]
fn createmembercard_creates_and_answers_the_card() {
    let (sim, client) = start();
    let wx = "855500000000000001";
    let mut m = member(wx);
    m.phone = Some(api::pii::Pii::new("13812345678"));
    m.name = Some(api::pii::Pii::new("李四"));
    let created = client.create_member_card(&m, None).unwrap();
    assert!(!created.card_code.is_empty());
    assert!(sim.card(wx).is_some());
    let card = client.get_member_card(None, wx, None).unwrap();
    assert_eq!(card.card_code, created.card_code);
}

#[test]
fn savecardid_records_once_and_answers_801_to_a_repeat() {
    let (sim, client) = start();
    client
        .save_card_id(&order(501, "866600000000000001"), None)
        .unwrap();
    let recorded = sim.order(501).expect("order recorded");
    assert_eq!(recorded["details"][0]["wxCode"], "866600000000000001");
    assert_eq!(recorded["memberCardClassName"], "普通会员");
    let again = client
        .save_card_id(&order(501, "866600000000000001"), None)
        .unwrap_err();
    assert_eq!(business(again), Status::DuplicateSerial);
}

#[test]
fn getpaycode_returns_an_18_digit_code_the_simulator_accepts() {
    let (sim, client) = start();
    let code = client.get_pay_code(ACTIVE, None).unwrap();
    assert_eq!(code.0.len(), 18, "{code:?}");
    assert!(code.0.bytes().all(|b| b.is_ascii_digit()));
    assert!(matches!(
        sim.check_paycode(&code.0),
        PayCodeCheck::Valid { .. }
    ));
    assert_eq!(
        business(client.get_pay_code(LOST, None).unwrap_err()),
        Status::CardLost
    );
}

#[test]
fn every_documented_status_and_an_unknown_one_reach_the_caller() {
    let (sim, client) = start();
    let mut codes: Vec<u16> = Status::DOCUMENTED
        .iter()
        .filter_map(|s| s.code())
        .filter(|c| *c != 200)
        .map(|c| c as u16)
        .collect();
    codes.push(777);
    for code in codes {
        sim.force_status(wxcard_sim::Endpoint::GetMemberCard, code, 1);
        let err = client.get_member_card(None, ACTIVE, None).unwrap_err();
        let status = business(err);
        assert_eq!(status, Status::from_code(u32::from(code)));
        assert_eq!(status.code(), Some(u32::from(code)));
        if code == 777 {
            assert!(matches!(status, Status::Unknown(_)));
        }
    }
    // After the forced answers, the real one again.
    assert!(client.get_member_card(None, ACTIVE, None).is_ok());
}

fn with_fault(mode: FaultMode, check: impl Fn(&Client, &BlockingSim)) {
    let (sim, client) = start();
    sim.set_fault(mode).unwrap();
    check(&client, &sim);
    sim.clear_faults().unwrap();
    assert!(
        client.get_member_card(None, ACTIVE, None).is_ok(),
        "{mode:?} cleared"
    );
}

#[test]
fn refused_port_is_a_transport_error_on_every_endpoint() {
    with_fault(FaultMode::Refuse, |client, _| {
        let errors = [
            client.get_member_card(None, ACTIVE, None).unwrap_err(),
            client.get_pay_code(ACTIVE, None).unwrap_err(),
            client.activate_member(&member(INACTIVE), None).unwrap_err(),
            client
                .create_member_card(&member("855500000000000002"), None)
                .unwrap_err(),
            client
                .save_card_id(&order(1, "866600000000000002"), None)
                .unwrap_err(),
        ];
        for err in errors {
            assert_eq!(err.transport_kind(), Some(TransportKind::Refused), "{err}");
        }
    });
}

#[test]
fn html_500_is_a_server_fault() {
    with_fault(FaultMode::Http500, |client, sim| {
        let err = client.activate_member(&member(INACTIVE), None).unwrap_err();
        assert!(
            matches!(err, ApiError::Server { fault: ServerFault::HttpStatus { code: 500, ref body }, .. } if body.contains("<")),
            "{err:?}"
        );
        assert!(err.is_unavailable());
        // Not applied.
        let count = sim
            .counters()
            .write(wxcard_sim::Endpoint::ActiveMember, INACTIVE);
        assert_eq!(count.applications, 0);
    });
}

#[test]
fn truncated_json_is_a_server_fault() {
    with_fault(FaultMode::Truncated, |client, _| {
        let err = client.get_member_card(None, ACTIVE, None).unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::Server {
                    fault: ServerFault::Truncated,
                    ..
                }
            ),
            "{err:?}"
        );
    });
}

#[test]
fn status_as_a_string_is_accepted() {
    with_fault(FaultMode::StringStatus, |client, _| {
        let card = client.get_member_card(None, ACTIVE, None).unwrap();
        assert_eq!(card.balance.to_string(), "128.50");
        client.activate_member(&member(INACTIVE), None).unwrap();
        let err = client.get_member_card(None, LOST, None).unwrap_err();
        assert_eq!(business(err), Status::CardLost);
    });
}

#[test]
fn a_hang_ends_at_the_deadline() {
    with_fault(FaultMode::Hang, |client, _| {
        let err = client
            .get_member_card(None, ACTIVE, Some(Duration::from_millis(300)))
            .unwrap_err();
        assert_eq!(err.transport_kind(), Some(TransportKind::Deadline), "{err}");
    });
}

#[test]
fn latency_below_the_deadline_is_fine_and_above_it_is_a_timeout() {
    let (sim, client) = start();
    sim.set_latency(Duration::from_millis(100)).unwrap();
    assert!(
        client
            .get_member_card(None, ACTIVE, Some(Duration::from_millis(1_500)))
            .is_ok()
    );
    sim.set_latency(Duration::from_millis(1_000)).unwrap();
    let err = client
        .get_member_card(None, ACTIVE, Some(Duration::from_millis(200)))
        .unwrap_err();
    assert_eq!(err.transport_kind(), Some(TransportKind::Deadline), "{err}");
}
