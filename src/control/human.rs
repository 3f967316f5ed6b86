//! Plain-words rendering of answers and events for `wxcardctl`.

use serde_json::Value;

use super::protocol::Command;
use crate::probe::mask_card_number;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn age(ms: u64) -> String {
    match ms / 1000 {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

/// One lookup answer (`lookup`, `scan`, and `card` events) in a line.
pub fn describe_lookup(r: &Value) -> String {
    let source = if r["source"] == "cache" {
        let mut s = format!("from cache, {} old", age(r["age_ms"].as_u64().unwrap_or(0)));
        if r["stale"] == true {
            s.push_str(", STALE");
        }
        s
    } else {
        "from backend".to_owned()
    };
    let what = match r["outcome"].as_str().unwrap_or("") {
        "card" => {
            let c = &r["card"];
            format!(
                "card {}  balance {}  discount {}  member price {}",
                mask_card_number(&text(&c["cardCode"])),
                text(&c["balance"]),
                text(&c["discount"]),
                if c["canMemberPrice"] == true {
                    "yes"
                } else {
                    "no"
                }
            )
        }
        "card_state" => format!(
            "NOT USABLE: {} ({})",
            text(&r["meaning"]),
            text(&r["status"])
        ),
        "rejected" => format!(
            "refused by the backend: status {} {}",
            text(&r["status"]),
            text(&r["message"])
        ),
        "offline" => format!("OFFLINE: {}", text(&r["reason"])),
        other => format!("unexpected answer {other:?}"),
    };
    format!("{} {what}  [{source}]", text(&r["wx_code"]))
}

fn describe_write(r: &Value) -> String {
    match r["outcome"].as_str().unwrap_or("") {
        "delivered" => match r.get("created") {
            Some(c) => format!(
                "delivered: card {} balance {} points {}",
                mask_card_number(&text(&c["cardCode"])),
                text(&c["balance"]),
                text(&c["points"])
            ),
            None => "delivered".to_owned(),
        },
        "queued" => format!(
            "backend unreachable: queued as outbox entry {}; it will be sent when the backend is back",
            r["entry"]
        ),
        "rejected" => format!(
            "refused by the backend: status {} {}",
            text(&r["status"]),
            text(&r["message"])
        ),
        other => format!("unexpected answer {other:?}"),
    }
}

/// A command's result for a person.
pub fn describe(command: &Command, r: &Value) -> String {
    match command {
        Command::Lookup(_) | Command::Scan(_) => describe_lookup(r),
        Command::Activate(_) | Command::Create(_) | Command::Issue(_) => describe_write(r),
        Command::PayCodeShow(_) => format!("pay code {} shown", text(&r["pay_code"])),
        Command::Status => {
            let s = &r["service"];
            let mut out = format!(
                "wxcardd {}, up {}\nbackend: {}\noutbox: {} pending, {} dead letters (capacity {})",
                text(&r["version"]),
                age(r["uptime_s"].as_u64().unwrap_or(0) * 1000),
                if s["online"] == true {
                    "online".to_owned()
                } else {
                    "OFFLINE".to_owned()
                },
                s["outbox_pending"],
                s["dead_letters"],
                s["outbox_max"],
            );
            if let Some(ms) = s["oldest_pending_age_ms"].as_u64() {
                out.push_str(&format!(", oldest waiting {}", age(ms)));
            }
            if let Some(url) = r["kiosk_url"].as_str() {
                out.push_str(&format!("\nkiosk page: {url}"));
            }
            if let Some(url) = r["control_web"]["url"].as_str() {
                let file = text(&r["control_web"]["token_file"]);
                out.push_str(&format!("\nbrowser WebSocket: {url} (token in {file})"));
            }
            out
        }
        Command::OutboxList => {
            let entries = r["entries"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                return "outbox empty".into();
            }
            entries
                .iter()
                .map(|e| {
                    let state = match e.get("rejected") {
                        Some(rej) if !rej.is_null() => {
                            format!("DEAD ({} {})", text(&rej[0]), text(&rej[1]))
                        }
                        _ => "pending".to_owned(),
                    };
                    format!("{:>6}  {:<8} {}", e["entry"], state, text(&e["summary"]))
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => "ok".into(),
    }
}

/// An event line for a person.
pub fn describe_event(e: &Value) -> String {
    match e["event"].as_str().unwrap_or("") {
        "scan" => format!("scan   {} read {}", text(&e["scanner"]), text(&e["code"])),
        "card" => format!("card   {}", describe_lookup(e)),
        "backend" => format!("backend {}", text(&e["kind"])),
        "outbox" => format!("outbox entry {} {}", e["entry"], text(&e["kind"])),
        "scanner" => format!("scanner {} {}", text(&e["scanner"]), text(&e["state"])),
        other => format!("{other} {e}"),
    }
}
