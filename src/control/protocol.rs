//! The control socket's protocol: JSON lines, versioned, requests with ids.
//!
//! On connect the server sends a `VERSION` object (as gpsd does), so a client can refuse a
//! major version it does not speak. Each request is one JSON object on one line with an `id`
//! (any JSON scalar, echoed back) and a `cmd`; each answer is one line, `RESULT` or `ERROR`.
//! After `subscribe`, `EVENT` lines are interleaved. docs/protocol.md is the reference.
//!
//! Parsing goes through `serde_json::Value` and dispatches on `cmd` by hand rather than with
//! an internally tagged enum: serde's tagged enums buffer their content, which loses numbers
//! under serde_json's `arbitrary_precision` (on in this crate for exact money values).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::api::{CardIssueOrder, MemberInfo};

/// Major version: bumped on an incompatible change.
pub const PROTO_MAJOR: u32 = 1;
/// Minor version: bumped when commands, fields or events are added.
pub const PROTO_MINOR: u32 = 1;
/// The longest request line accepted, in bytes (newline excluded).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The first line the server sends on every connection.
pub fn version_line() -> Value {
    json!({
        "class": "VERSION",
        "release": env!("CARGO_PKG_VERSION"),
        "proto_major": PROTO_MAJOR,
        "proto_minor": PROTO_MINOR,
    })
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The client's id, echoed in the answer.
    pub id: Value,
    /// What to do.
    pub command: Command,
}

/// Every request the daemon understands.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Look a card up (network first, cache when offline).
    Lookup(LookupParams),
    /// Activate a member's card (activemember); queued when offline.
    Activate(MemberParams),
    /// Create a member (createmembercard); queued when offline.
    Create(MemberParams),
    /// Issue cards (savecardid); queued when offline.
    Issue(IssueParams),
    /// Fetch a pay code for a card and show it on the customer display.
    PayCodeShow(WxCodeParams),
    /// Take the pay code off the display (payment done or cancelled).
    PayCodeClear,
    /// Show a message on the customer display.
    DisplayMessage(MessageParams),
    /// Put the customer display back on the idle screen.
    DisplayIdle,
    /// Inject a scan as if a scanner had read it (manual entry).
    Scan(ScanParams),
    /// The daemon's state.
    Status,
    /// Pending writes and dead letters.
    OutboxList,
    /// Move a dead letter back to the outbox for another try.
    OutboxRetry(OutboxIdParams),
    /// Drop a dead letter for good.
    OutboxDrop(OutboxIdParams),
    /// Receive events on this connection from now on.
    Subscribe,
}

impl Command {
    /// Every command name, as sent in `cmd`.
    pub const NAMES: [&'static str; 14] = [
        "lookup",
        "activate",
        "create",
        "issue",
        "paycode_show",
        "paycode_clear",
        "display_message",
        "display_idle",
        "scan",
        "status",
        "outbox_list",
        "outbox_retry",
        "outbox_drop",
        "subscribe",
    ];

    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Lookup(_) => "lookup",
            Command::Activate(_) => "activate",
            Command::Create(_) => "create",
            Command::Issue(_) => "issue",
            Command::PayCodeShow(_) => "paycode_show",
            Command::PayCodeClear => "paycode_clear",
            Command::DisplayMessage(_) => "display_message",
            Command::DisplayIdle => "display_idle",
            Command::Scan(_) => "scan",
            Command::Status => "status",
            Command::OutboxList => "outbox_list",
            Command::OutboxRetry(_) => "outbox_retry",
            Command::OutboxDrop(_) => "outbox_drop",
            Command::Subscribe => "subscribe",
        }
    }

    /// The request line for this command (used by `wxcardctl`).
    pub fn to_request(&self, id: Value) -> Value {
        let params = match self {
            Command::Lookup(p) => to_object(p),
            Command::Activate(p) | Command::Create(p) => to_object(p),
            Command::Issue(p) => to_object(p),
            Command::PayCodeShow(p) => to_object(p),
            Command::DisplayMessage(p) => to_object(p),
            Command::Scan(p) => to_object(p),
            Command::OutboxRetry(p) | Command::OutboxDrop(p) => to_object(p),
            Command::PayCodeClear
            | Command::DisplayIdle
            | Command::Status
            | Command::OutboxList
            | Command::Subscribe => Map::new(),
        };
        let mut object = Map::new();
        object.insert("id".into(), id);
        object.insert("cmd".into(), Value::String(self.name().into()));
        object.extend(params);
        Value::Object(object)
    }
}

fn to_object<T: Serialize>(params: &T) -> Map<String, Value> {
    match serde_json::to_value(params) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// `lookup` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupParams {
    /// The member card code (what the scanner read).
    pub wx_code: String,
    /// The WeChat card template id, if the backend wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_id: Option<String>,
}

/// `activate` and `create` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberParams {
    /// The member, with the API's field names.
    pub member: MemberInfo,
}

/// `issue` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueParams {
    /// The order, with the API's field names.
    pub order: CardIssueOrder,
}

/// Parameters naming a card by its wxCode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WxCodeParams {
    /// The member card code.
    pub wx_code: String,
}

/// `display_message` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageParams {
    /// The text to show.
    pub text: String,
    /// `info` (default) or `error`.
    #[serde(default)]
    pub level: MessageLevel,
}

/// How a display message is styled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageLevel {
    /// A neutral message.
    #[default]
    Info,
    /// An error.
    Error,
}

/// `scan` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanParams {
    /// The code, as a scanner would have read it.
    pub code: String,
    /// The scanner name reported in events; `manual` by default.
    #[serde(default = "manual")]
    pub scanner: String,
}

fn manual() -> String {
    "manual".into()
}

/// `outbox_retry` and `outbox_drop` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxIdParams {
    /// The outbox entry id (from `outbox_list`).
    pub entry: u64,
}

/// Machine-readable error codes in `ERROR` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is not a JSON object.
    Malformed,
    /// The line is longer than [`MAX_LINE_BYTES`].
    TooLong,
    /// `cmd` names no known command.
    UnknownCommand,
    /// The command's parameters are missing or of the wrong type.
    BadParams,
    /// The peer's uid/gid is not allowed.
    Forbidden,
    /// The daemon is shutting down.
    ShuttingDown,
    /// The request was understood but failed (backend rejection, full outbox, ...).
    Failed,
    /// A subscriber fell too far behind and is disconnected.
    Overrun,
    /// The daemon holds as many connections as it takes (`control.max_connections`); this
    /// one is closed. Try again later.
    Busy,
}

/// A request that could not be parsed, with the id when one could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolError {
    /// The request's id, or null.
    pub id: Value,
    /// What kind of error.
    pub code: ErrorCode,
    /// A sentence for a person.
    pub message: String,
}

impl ProtocolError {
    /// The `ERROR` line for this error.
    pub fn to_line(&self) -> Value {
        error_line(self.id.clone(), self.code, &self.message)
    }
}

/// An `ERROR` answer.
pub fn error_line(id: Value, code: ErrorCode, message: &str) -> Value {
    json!({"class": "ERROR", "id": id, "error": {"code": code, "message": message}})
}

/// A `RESULT` answer.
pub fn result_line(id: Value, result: Value) -> Value {
    json!({"class": "RESULT", "id": id, "result": result})
}

/// An event as the daemon's broadcast carries it: serialized once where it is published and
/// shared by every subscriber (socket clients, the kiosk page) without a copy each.
pub type Event = std::sync::Arc<EventLine>;

/// One `EVENT` line, `{"class":"EVENT","event":...,<the body's fields>}`, as JSON text (no
/// newline). Built straight from the body's type: a card event is written from the lookup
/// itself, without a `Value` tree built, walked and freed on the way (BENCHMARKS.md, "Issue
/// 12", part 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine(Box<str>);

impl EventLine {
    /// The line for `event` with the fields of `body`, which serializes as a map (a struct
    /// or a JSON object); anything else gives the line without a body.
    pub fn new<T: Serialize + ?Sized>(event: &str, body: &T) -> Self {
        #[derive(Serialize)]
        struct Line<'a, T: ?Sized> {
            class: &'static str,
            event: &'a str,
            #[serde(flatten)]
            body: &'a T,
        }
        let line = serde_json::to_string(&Line {
            class: "EVENT",
            event,
            body,
        })
        .unwrap_or_else(|_| json!({"class": "EVENT", "event": event}).to_string());
        EventLine(line.into_boxed_str())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, ProtocolError> {
    let fail = |id: Value, code, message: String| ProtocolError { id, code, message };
    if line.len() > MAX_LINE_BYTES {
        return Err(fail(
            Value::Null,
            ErrorCode::TooLong,
            format!("request longer than {MAX_LINE_BYTES} bytes"),
        ));
    }
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| fail(Value::Null, ErrorCode::Malformed, format!("not JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(fail(
            Value::Null,
            ErrorCode::Malformed,
            "a request is a JSON object".into(),
        ));
    };
    let id = object.remove("id").unwrap_or(Value::Null);
    if !(id.is_null() || id.is_string() || id.is_number()) {
        return Err(fail(
            Value::Null,
            ErrorCode::Malformed,
            "`id` must be a string or a number".into(),
        ));
    }
    let cmd = match object.remove("cmd") {
        Some(Value::String(s)) => s,
        _ => {
            return Err(fail(
                id,
                ErrorCode::Malformed,
                "`cmd` (a string) is missing".into(),
            ));
        }
    };
    let params = Value::Object(object);
    let bad = |e: serde_json::Error| ProtocolError {
        id: id.clone(),
        code: ErrorCode::BadParams,
        message: format!("{cmd}: {e}"),
    };
    fn take<T: DeserializeOwned>(params: &Value) -> Result<T, serde_json::Error> {
        T::deserialize(params)
    }
    let no_params = |params: &Value| -> Result<(), serde_json::Error> {
        match params.as_object() {
            Some(m) if m.is_empty() => Ok(()),
            _ => Err(serde::de::Error::custom("takes no parameters")),
        }
    };
    let command = match cmd.as_str() {
        "lookup" => Command::Lookup(take(&params).map_err(bad)?),
        "activate" => Command::Activate(take(&params).map_err(bad)?),
        "create" => Command::Create(take(&params).map_err(bad)?),
        "issue" => Command::Issue(take(&params).map_err(bad)?),
        "paycode_show" => Command::PayCodeShow(take(&params).map_err(bad)?),
        "paycode_clear" => no_params(&params)
            .map(|_| Command::PayCodeClear)
            .map_err(bad)?,
        "display_message" => Command::DisplayMessage(take(&params).map_err(bad)?),
        "display_idle" => no_params(&params)
            .map(|_| Command::DisplayIdle)
            .map_err(bad)?,
        "scan" => Command::Scan(take(&params).map_err(bad)?),
        "status" => no_params(&params).map(|_| Command::Status).map_err(bad)?,
        "outbox_list" => no_params(&params)
            .map(|_| Command::OutboxList)
            .map_err(bad)?,
        "outbox_retry" => Command::OutboxRetry(take(&params).map_err(bad)?),
        "outbox_drop" => Command::OutboxDrop(take(&params).map_err(bad)?),
        "subscribe" => no_params(&params)
            .map(|_| Command::Subscribe)
            .map_err(bad)?,
        other => {
            return Err(ProtocolError {
                message: format!(
                    "unknown command {other:?}; known: {}",
                    Command::NAMES.join(", ")
                ),
                id,
                code: ErrorCode::UnknownCommand,
            });
        }
    };
    Ok(Request { id, command })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips_through_its_request_line() {
        let order: CardIssueOrder = serde_json::from_str(
            r#"{"id": 9, "createQty": 4, "details": [{"id": 5, "orderId": 9}]}"#,
        )
        .unwrap();
        let member = MemberInfo {
            wx_code: "112233445566".into(),
            ..MemberInfo::default()
        };
        let commands = [
            Command::Lookup(LookupParams {
                wx_code: "1".into(),
                card_id: Some("t".into()),
            }),
            Command::Activate(MemberParams {
                member: member.clone(),
            }),
            Command::Create(MemberParams { member }),
            Command::Issue(IssueParams { order }),
            Command::PayCodeShow(WxCodeParams {
                wx_code: "1".into(),
            }),
            Command::PayCodeClear,
            Command::DisplayMessage(MessageParams {
                text: "hi".into(),
                level: MessageLevel::Error,
            }),
            Command::DisplayIdle,
            Command::Scan(ScanParams {
                code: "1".into(),
                scanner: "front".into(),
            }),
            Command::Status,
            Command::OutboxList,
            Command::OutboxRetry(OutboxIdParams { entry: 7 }),
            Command::OutboxDrop(OutboxIdParams { entry: 8 }),
            Command::Subscribe,
        ];
        assert_eq!(commands.len(), Command::NAMES.len());
        for (i, command) in commands.into_iter().enumerate() {
            assert_eq!(command.name(), Command::NAMES[i]);
            let line = serde_json::to_vec(&command.to_request(json!(i))).unwrap();
            let parsed = parse_request(&line).unwrap();
            assert_eq!(parsed.id, json!(i));
            assert_eq!(parsed.command, command);
        }
    }

    #[test]
    fn bad_lines_get_the_right_error_and_keep_the_id() {
        let code = |line: &str| parse_request(line.as_bytes()).unwrap_err();
        assert_eq!(code("not json").code, ErrorCode::Malformed);
        assert_eq!(code("[1]").code, ErrorCode::Malformed);
        assert_eq!(code(r#"{"id": 3}"#).code, ErrorCode::Malformed);
        let e = code(r#"{"id": 4, "cmd": "fly"}"#);
        assert_eq!((e.code, e.id), (ErrorCode::UnknownCommand, json!(4)));
        let e = code(r#"{"id": "a", "cmd": "lookup"}"#);
        assert_eq!((e.code, e.id), (ErrorCode::BadParams, json!("a")));
        assert_eq!(
            code(r#"{"id": 1, "cmd": "status", "x": 1}"#).code,
            ErrorCode::BadParams
        );
        assert_eq!(
            code(r#"{"id": 1, "cmd": "outbox_drop", "entry": "x"}"#).code,
            ErrorCode::BadParams
        );
        let long = format!(
            r#"{{"cmd": "scan", "code": "{}"}}"#,
            "1".repeat(MAX_LINE_BYTES)
        );
        assert_eq!(code(&long).code, ErrorCode::TooLong);
    }
}
