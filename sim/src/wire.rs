//! The vendor API's wire format as the simulator reads and writes it.
//!
//! Requests are checked against the spec (field names, JSON types, date format), written
//! here independently of the daemon's client types, so a client that drifts from the spec
//! fails against the simulator instead of agreeing with itself. Personal fields of a
//! `MemberInfo` are type-checked and then dropped: they are never stored or logged.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value, json};

/// The five endpoints of the vendor API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    SaveCardId,
    CreateMemberCard,
    ActiveMember,
    GetPayCode,
    GetMemberCard,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::SaveCardId,
        Endpoint::CreateMemberCard,
        Endpoint::ActiveMember,
        Endpoint::GetPayCode,
        Endpoint::GetMemberCard,
    ];

    /// The last path segment, e.g. `activemember`.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::SaveCardId => "savecardid",
            Endpoint::CreateMemberCard => "createmembercard",
            Endpoint::ActiveMember => "activemember",
            Endpoint::GetPayCode => "getpaycode",
            Endpoint::GetMemberCard => "getmembercard",
        }
    }

    /// The full path the simulator serves, e.g. `/api/weixin/wxcard/activemember`.
    pub fn path(self) -> String {
        format!("/api/weixin/wxcard/{}", self.as_str())
    }

    /// Whether the endpoint changes state (and is counted per key).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Endpoint::SaveCardId | Endpoint::CreateMemberCard | Endpoint::ActiveMember
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Endpoint::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("unknown endpoint {s:?}"))
    }
}

/// What a handler answers before faults are applied: an HTTP status and the JSON envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// 200 for every business answer; 400 for a request that breaks the wire format.
    pub http: u16,
    pub status: u16,
    pub message: String,
    pub data: Option<Value>,
}

impl Reply {
    pub fn ok(data: Option<Value>) -> Reply {
        Reply {
            http: 200,
            status: 200,
            message: String::new(),
            data,
        }
    }

    /// A business status other than success, answered with HTTP 200.
    pub fn status(status: u16, message: impl Into<String>) -> Reply {
        Reply {
            http: 200,
            status,
            message: message.into(),
            data: None,
        }
    }

    /// A request that does not follow the spec: HTTP 400, business status 500.
    pub fn bad_request(why: impl fmt::Display) -> Reply {
        Reply {
            http: 400,
            status: 500,
            message: format!("bad request: {why}"),
            data: None,
        }
    }

    /// The JSON body, with the status as a number, as a string (`"200"`, a fault) or
    /// left out (a fault).
    pub fn body(&self, status: StatusForm) -> Value {
        let mut body = Map::new();
        if let Some(data) = &self.data {
            body.insert("data".into(), data.clone());
        }
        match status {
            StatusForm::Number => {
                body.insert("status".into(), json!(self.status));
            }
            StatusForm::String => {
                body.insert("status".into(), Value::String(self.status.to_string()));
            }
            StatusForm::Absent => {}
        }
        body.insert("message".into(), Value::String(self.message.clone()));
        Value::Object(body)
    }
}

/// How [`Reply::body`] writes `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusForm {
    /// `"status": 200`, as the spec's examples.
    Number,
    /// `"status": "200"`, as the spec's table types it.
    String,
    /// No `status` at all (a fault).
    Absent,
}

/// A wire-format violation, answered with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body must be a JSON object")]
    NotAnObject,
    #[error("field `{0}` is missing")]
    Missing(String),
    #[error("field `{0}` must not be empty")]
    Empty(String),
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    #[error("field `{0}` must be a date `YYYY-MM-DD HH:MM:SS`")]
    BadDate(String),
    #[error("unknown field `{0}` (field names are camelCase, as in the spec)")]
    UnknownField(String),
    #[error("content-type must be application/json or text/json")]
    ContentType,
}

/// Whether `s` is a spec date, `YYYY-MM-DD HH:MM:SS`, with plausible ranges.
pub fn is_spec_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 19 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let num = |r: std::ops::Range<usize>| {
        std::str::from_utf8(&b[r])
            .ok()
            .and_then(|t| t.parse::<u32>().ok())
    };
    let shape = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b' '
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    shape
        && matches!(num(5..7), Some(1..=12))
        && matches!(num(8..10), Some(1..=31))
        && matches!(num(11..13), Some(0..=23))
        && matches!(num(14..16), Some(0..=59))
        && matches!(num(17..19), Some(0..=59))
}

/// Whether a content-type header names JSON as the spec allows.
pub fn is_json_content_type(value: &str) -> bool {
    let media = value.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json") || media.eq_ignore_ascii_case("text/json")
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Date,
}

fn check_fields(
    obj: &Map<String, Value>,
    prefix: &str,
    spec: &[(&str, Kind)],
    extra: &[&str],
) -> Result<(), WireError> {
    for (key, value) in obj {
        let field = format!("{prefix}{key}");
        let Some((_, kind)) = spec.iter().find(|(name, _)| name == key) else {
            if extra.contains(&key.as_str()) {
                continue;
            }
            return Err(WireError::UnknownField(field));
        };
        // An absent optional field should be omitted, but a null is tolerated like absence.
        if value.is_null() {
            continue;
        }
        match kind {
            Kind::Str if !value.is_string() => {
                return Err(WireError::WrongType {
                    field,
                    expected: "a string",
                });
            }
            Kind::Int if value.as_i64().is_none() => {
                return Err(WireError::WrongType {
                    field,
                    expected: "an integer",
                });
            }
            Kind::Date if !value.as_str().is_some_and(is_spec_date) => {
                return Err(WireError::BadDate(field));
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, WireError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(WireError::NotAnObject),
        Err(e) => Err(WireError::NotJson(e.to_string())),
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// The non-personal part of a `MemberInfo` (createmembercard, activemember).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub wx_code: String,
    pub wx_card_id: Option<String>,
    pub card_code: Option<String>,
}

const MEMBER_INFO: [(&str, Kind); 9] = [
    ("wxCardId", Kind::Str),
    ("wxCode", Kind::Str),
    ("cardCode", Kind::Str),
    ("name", Kind::Str),
    ("phone", Kind::Str),
    ("sex", Kind::Str),
    ("birthday", Kind::Str),
    ("idCard", Kind::Str),
    ("address", Kind::Str),
];

impl MemberInfo {
    /// Checks a `MemberInfo` body. `wxCode` is required and non-empty; every other field is
    /// optional but must be a string. Personal fields are checked and dropped.
    pub fn parse(body: &[u8]) -> Result<MemberInfo, WireError> {
        let obj = parse_object(body)?;
        check_fields(&obj, "", &MEMBER_INFO, &[])?;
        let wx_code = opt_str(&obj, "wxCode").ok_or(WireError::Missing("wxCode".into()))?;
        if wx_code.is_empty() {
            return Err(WireError::Empty("wxCode".into()));
        }
        Ok(MemberInfo {
            wx_code,
            wx_card_id: opt_str(&obj, "wxCardId").filter(|s| !s.is_empty()),
            card_code: opt_str(&obj, "cardCode").filter(|s| !s.is_empty()),
        })
    }
}

/// One row of a `CardIssueOrder`: the card it issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCard {
    pub wx_code: String,
    pub card_code: String,
}

/// A checked `CardIssueOrder` (savecardid). The whole body is kept for the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct CardIssueOrder {
    pub id: i64,
    pub card_id: String,
    pub details: Vec<IssuedCard>,
    pub raw: Value,
}

const ORDER: [(&str, Kind); 9] = [
    ("id", Kind::Int),
    ("cardId", Kind::Str),
    ("memberCardClassId", Kind::Int),
    ("memberCardClassName", Kind::Str),
    ("createQty", Kind::Int),
    ("sentQty", Kind::Int),
    ("createTime", Kind::Date),
    ("userId", Kind::Int),
    ("userName", Kind::Str),
];

const DETAIL: [(&str, Kind); 5] = [
    ("id", Kind::Int),
    ("orderId", Kind::Int),
    ("cardCode", Kind::Str),
    ("wxCode", Kind::Str),
    ("createTime", Kind::Date),
];

impl CardIssueOrder {
    /// Checks a `CardIssueOrder` body. `id` (integer) is required; every other field is
    /// optional but must have the spec's type; `details` must be an array of objects.
    pub fn parse(body: &[u8]) -> Result<CardIssueOrder, WireError> {
        let obj = parse_object(body)?;
        check_fields(&obj, "", &ORDER, &["details"])?;
        let id = match obj.get("id") {
            Some(v) => v.as_i64().ok_or(WireError::WrongType {
                field: "id".into(),
                expected: "an integer",
            })?,
            None => return Err(WireError::Missing("id".into())),
        };
        let mut details = Vec::new();
        match obj.get("details") {
            None | Some(Value::Null) => {}
            Some(Value::Array(rows)) => {
                for (i, row) in rows.iter().enumerate() {
                    let prefix = format!("details[{i}].");
                    let row = row.as_object().ok_or_else(|| WireError::WrongType {
                        field: format!("details[{i}]"),
                        expected: "an object",
                    })?;
                    check_fields(row, &prefix, &DETAIL, &[])?;
                    details.push(IssuedCard {
                        wx_code: opt_str(row, "wxCode").unwrap_or_default(),
                        card_code: opt_str(row, "cardCode").unwrap_or_default(),
                    });
                }
            }
            Some(_) => {
                return Err(WireError::WrongType {
                    field: "details".into(),
                    expected: "an array",
                });
            }
        }
        Ok(CardIssueOrder {
            id,
            card_id: opt_str(&obj, "cardId").unwrap_or_default(),
            details,
            raw: Value::Object(obj),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_EXAMPLE: &str = r#"{"memberCardClassId": 1, "memberCardClassName": "",
        "cardId": "", "createQty": 4, "sentQty": 5, "createTime": "2026-01-15 10:11:33",
        "userId": 7, "userName": "",
        "details": [{"orderId": 1, "wxCode": "", "cardCode": "",
                     "createTime": "2026-01-15 10:11:33", "id": 5}],
        "id": 9}"#;

    #[test]
    fn the_spec_examples_parse() {
        let order = CardIssueOrder::parse(ORDER_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(order.id, 9);
        assert_eq!(order.details.len(), 1);
        let member = MemberInfo::parse(
            br#"{"wxCardId":"","wxCode":"8123","cardCode":"","name":"","phone":"","sex":"",
                "birthday":"","idCard":"","address":""}"#,
        )
        .unwrap();
        assert_eq!(member.wx_code, "8123");
        assert_eq!(member.wx_card_id, None);
    }

    #[test]
    fn wire_violations_are_named() {
        let cases: [(&[u8], &str); 9] = [
            (b"{", "not JSON"),
            (b"[]", "JSON object"),
            (br#"{"name":"x"}"#, "`wxCode` is missing"),
            (br#"{"wxCode":""}"#, "must not be empty"),
            (br#"{"wxCode":8123}"#, "`wxCode` must be a string"),
            (
                br#"{"wxCode":"1","wx_code":"1"}"#,
                "unknown field `wx_code`",
            ),
            (
                br#"{"wxCode":"1","phone":13800138000}"#,
                "`phone` must be a string",
            ),
            (br#"{"wxCode":"1","WxCode":"1"}"#, "unknown field"),
            (br#"{"wxCode":"1","idcard":"1"}"#, "unknown field `idcard`"),
        ];
        for (body, want) in cases {
            let err = MemberInfo::parse(body).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
        let order_cases: [(&str, &str); 6] = [
            (r#"{"cardId":""}"#, "`id` is missing"),
            (r#"{"id":"9"}"#, "`id` must be an integer"),
            (r#"{"id":9.5}"#, "`id` must be an integer"),
            (
                r#"{"id":9,"createTime":"2026-01-15T10:11:33"}"#,
                "`createTime` must be a date",
            ),
            (r#"{"id":9,"details":{}}"#, "`details` must be an array"),
            (
                r#"{"id":9,"details":[{"orderId":"1"}]}"#,
                "`details[0].orderId` must be an integer",
            ),
        ];
        for (body, want) in order_cases {
            let err = CardIssueOrder::parse(body.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }

    #[test]
    fn dates_follow_the_spec() {
        assert!(is_spec_date("2026-01-15 10:11:33"));
        for bad in [
            "2026-1-15 10:11:33",
            "2026-13-15 10:11:33",
            "2026-01-15 24:00:00",
            "2026-01-15",
            "2026-01-15 10:11:3é",
        ] {
            assert!(!is_spec_date(bad), "{bad}");
        }
    }

    #[test]
    fn reply_bodies() {
        let r = Reply::ok(Some(json!("123")));
        assert_eq!(
            serde_json::to_string(&r.body(StatusForm::Number)).unwrap(),
            r#"{"data":"123","message":"","status":200}"#
        );
        assert_eq!(r.body(StatusForm::String)["status"], json!("200"));
        assert_eq!(r.body(StatusForm::Absent).get("status"), None);
        assert_eq!(Reply::bad_request("x").http, 400);
    }

    proptest::proptest! {
        #[test]
        fn untrusted_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = MemberInfo::parse(&bytes);
            let _ = CardIssueOrder::parse(&bytes);
        }

        #[test]
        fn json_like_text_never_panics(text in r#"\{("[a-zA-Z\[\]]{0,9}":("[0-9 :-]{0,20}"|-?[0-9.e]{1,25}|\[\{\}\]|null|true),?){0,6}\}"#) {
            let _ = MemberInfo::parse(text.as_bytes());
            let _ = CardIssueOrder::parse(text.as_bytes());
            let _ = is_spec_date(&text);
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                let _ = crate::card::Card::from_json(&v);
            }
        }
    }

    #[test]
    fn content_types() {
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("text/json"));
        assert!(!is_json_content_type("text/plain"));
    }
}
