//! Golden tests of the wire types against the spec's own examples, in both directions, and
//! the masking of personal data.

use serde::de::IgnoredAny;
use serde_json::Value;
use wxcardd::api::pii::{Address, Birthday, IdCard, Name, Phone, Pii, Sex};
use wxcardd::api::{
    Amount, CardIssueOrder, CreatedMember, Envelope, MemberCard, MemberInfo, PayCode, Status,
};

/// Parses `text`, re-serializes it through `T`, and requires the same JSON (numbers compared
/// by their text, so `3.0` must stay `3.0`).
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(text: &str) -> T {
    let typed: T = serde_json::from_str(text).expect("the spec's example parses");
    let back = serde_json::to_value(&typed).unwrap();
    let original: Value = serde_json::from_str(text).unwrap();
    assert_eq!(back, original, "round trip of {text}");
    typed
}

#[test]
fn card_issue_order_matches_the_spec_example() {
    let example = r#"{"memberCardClassId": 1, "memberCardClassName": "", "cardId": "", "createQty": 4, "sentQty": 5,
 "createTime": "2026-01-15 10:11:33", "userId": 7, "userName": "",
 "details": [{"orderId": 1, "wxCode": "", "cardCode": "", "createTime": "2026-01-15 10:11:33", "id": 5}],
 "id": 9}"#;
    let order: CardIssueOrder = round_trip(example);
    assert_eq!(order.id, 9);
    assert_eq!(order.create_qty, Some(4));
    assert_eq!(order.sent_qty, Some(5));
    assert_eq!(order.user_id, Some(7));
    assert_eq!(order.details.len(), 1);
    assert_eq!(order.details[0].order_id, Some(1));
    assert_eq!(order.details[0].id, Some(5));
    assert_eq!(
        order.create_time.unwrap().to_string(),
        "2026-01-15 10:11:33"
    );
}

#[test]
fn absent_optional_fields_are_omitted_not_null() {
    let order = CardIssueOrder {
        id: 42,
        card_id: None,
        member_card_class_id: None,
        member_card_class_name: None,
        create_qty: None,
        sent_qty: None,
        create_time: None,
        user_id: None,
        user_name: None,
        details: vec![],
    };
    assert_eq!(
        serde_json::to_string(&order).unwrap(),
        r#"{"id":42,"details":[]}"#
    );
    let member = MemberInfo {
        wx_code: "112233445566".into(),
        ..MemberInfo::default()
    };
    assert_eq!(
        serde_json::to_string(&member).unwrap(),
        r#"{"wxCode":"112233445566"}"#
    );
}

#[test]
fn member_info_uses_the_spec_field_names() {
    let member = sample_member();
    let value = serde_json::to_value(&member).unwrap();
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "address", "birthday", "cardCode", "idCard", "name", "phone", "sex", "wxCardId",
            "wxCode"
        ]
    );
    // The wire carries the real values.
    assert_eq!(value["phone"], "13812345678");
    assert_eq!(value["idCard"], "110101199003071234");
    let back: MemberInfo = serde_json::from_value(value).unwrap();
    assert_eq!(back, member);
}

#[test]
fn responses_match_the_spec_examples() {
    let plain: Envelope<IgnoredAny> =
        serde_json::from_str(r#"{"status": 200, "message": ""}"#).unwrap();
    assert_eq!(plain.status, Status::Success);
    assert!(plain.data.is_none());

    let created: Envelope<CreatedMember> = round_trip(
        r#"{"data": {"wxCardId": "", "cardCode": "", "balance": 3.0, "points": 4}, "status": 200, "message": ""}"#,
    );
    let data = created.data.unwrap();
    assert_eq!(data.balance.to_string(), "3.0");
    assert_eq!(data.points.to_string(), "4");

    let pay: Envelope<PayCode> = round_trip(r#"{"data": "", "status": 200, "message": ""}"#);
    assert_eq!(pay.data, Some(PayCode(String::new())));

    let card: Envelope<MemberCard> = round_trip(
        r#"{"data": {"cardCode": "", "balance": 2.0, "discount": 3.0, "canMemberPrice": true}, "status": 200, "message": ""}"#,
    );
    let card = card.data.unwrap();
    assert_eq!(card.balance.to_string(), "2.0");
    assert_eq!(card.discount.to_string(), "3.0");
    assert!(card.can_member_price);
}

#[test]
fn money_keeps_the_decimal_the_server_sent() {
    // 0.1 + 0.2 in binary floating point is 0.30000000000000004; as decimals it is 0.3.
    let a: Amount = serde_json::from_str("0.1").unwrap();
    let b: Amount = serde_json::from_str("0.2").unwrap();
    assert_eq!((a.value() + b.value()).to_string(), "0.3");
    // More digits than an f64 holds survive unchanged, as numbers and as strings.
    for text in [
        "12345678901234.56",
        "\"99999999999.99\"",
        "0.000001",
        "100",
        "-5.50",
    ] {
        let amount: Amount = serde_json::from_str(text).unwrap();
        assert_eq!(amount.to_string(), text.trim_matches('"'));
    }
    assert!(serde_json::from_str::<Amount>("\"abc\"").is_err());
    assert!(serde_json::from_str::<Amount>("true").is_err());
}

#[test]
fn dates_use_the_spec_form() {
    let ok: Value =
        serde_json::json!({"id": 1, "details": [], "createTime": "2026-02-28 23:59:59"});
    let order: CardIssueOrder = serde_json::from_value(ok).unwrap();
    assert_eq!(
        order.create_time.unwrap().to_string(),
        "2026-02-28 23:59:59"
    );
    for bad in [
        "2026-02-30 10:00:00",
        "2026-01-15T10:11:33",
        "2026-01-15",
        "",
    ] {
        let v = serde_json::json!({"id": 1, "details": [], "createTime": bad});
        assert!(
            serde_json::from_value::<CardIssueOrder>(v).is_err(),
            "{bad}"
        );
    }
}

fn sample_member() -> MemberInfo {
    MemberInfo {
        wx_card_id: Some("pFS7Fjg8kV1IdDz01r4SQwMkuCKc".into()),
        wx_code: "112233445566".into(),
        card_code: Some("M000123".into()),
        name: Some(Pii::<Name>::new("张三丰")),
        phone: Some(Pii::<Phone>::new("13812345678")),
        sex: Some(Pii::<Sex>::new("男")),
        birthday: Some(Pii::<Birthday>::new("1990-03-07")),
        id_card: Some(Pii::<IdCard>::new("110101199003071234")),
        address: Some(Pii::<Address>::new("北京市朝阳区建国路88号")),
    }
}

#[test]
fn debug_never_shows_personal_data() {
    let member = sample_member();
    for printed in [format!("{member:?}"), format!("{member:#?}")] {
        for secret in [
            "张三丰",
            "13812345678",
            "1990-03-07",
            "110101199003071234",
            "建国路",
            "男",
        ] {
            assert!(!printed.contains(secret), "{secret} leaked in {printed}");
        }
        assert!(printed.contains("138****5678"), "{printed}");
        assert!(printed.contains("1****************4"), "{printed}");
        // Non-personal fields stay readable for the technician.
        assert!(printed.contains("112233445566"));
    }
}
