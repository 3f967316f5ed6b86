//! Plain-words rendering of answers and events for `wxcardctl`.
//!
//! Every string printed here may have come from the backend (messages, card codes) or a
//! device: each goes through the one sanitizer ([`wxcard_hal::text`]) so that no control
//! character, escape sequence or bidi override reaches the operator's terminal. Card numbers
//! go through the customer display's masker ([`MaskedCardNumber`]), so the operator sees a
//! card the way the customer display and the logs show it.

use serde_json::Value;
use wxcard_hal::display::MaskedCardNumber;
use wxcard_hal::text::untrusted;

use super::protocol::Command;

/// A value for the terminal: strings escaped and capped, never raw.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => untrusted(s).into_owned(),
        Value::Null => String::new(),
        other => untrusted(&other.to_string()).into_owned(),
    }
}

/// A card number from an answer, masked (`**** 7890`); the mask keeps only ASCII letters
/// and digits, so nothing of an escape sequence survives it.
fn card_number(v: &Value) -> String {
    let full = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    MaskedCardNumber::new(&full).to_string()
}

/// One outbox row's state in words.
fn row_state(e: &Value) -> String {
    let rejected = e.get("rejected").filter(|r| !r.is_null());
    let unreadable = e.get("undecodable").filter(|u| !u.is_null());
    if e["reason"] == "undecodable" {
        format!("UNDECODABLE ({})", unreadable.map(text).unwrap_or_default())
    } else if let Some(rej) = rejected {
        format!("DEAD ({} {})", text(&rej[0]), text(&rej[1]))
    } else if e["state"] == "dead" {
        "DEAD".to_owned()
    } else if let Some(why) = unreadable {
        format!("pending, UNREADABLE ({})", text(why))
    } else {
        "pending".to_owned()
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
    if r["outcome"] == "offline" {
        // Nothing came from the cache: no "from cache, 0 s old" for data that is not there.
        let reason = text(&r["reason"]);
        let said = if reason.contains("no recent data") {
            reason
        } else {
            "offline, nothing cached for this card".to_owned()
        };
        return format!("{} OFFLINE: {said}", text(&r["wx_code"]));
    }
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
                card_number(&c["cardCode"]),
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
                card_number(&c["cardCode"]),
                text(&c["balance"]),
                text(&c["points"])
            ),
            None => "delivered".to_owned(),
        },
        "queued" => format!(
            "{}: queued as outbox entry {}; it will be sent when the backend takes it",
            match text(&r["reason"]) {
                reason if reason.is_empty() => "backend unreachable".to_owned(),
                reason => reason,
            },
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
        Command::PayCodeShow(_) => {
            let on: Vec<String> = r["shown_on"]
                .as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default();
            format!(
                "pay code {} shown on {}",
                text(&r["pay_code"]),
                on.join(", ")
            )
        }
        Command::Status => {
            let s = &r["service"];
            let mut out = format!(
                "wxcardd {}{}, up {}\nbackend: {}\noutbox: {} pending, {} dead letters (capacity {})",
                text(&r["version"]),
                match r["till"].as_str() {
                    Some(till) if !till.is_empty() => format!(" on till {}", text(&r["till"])),
                    _ => String::new(),
                },
                age(r["uptime_s"].as_u64().unwrap_or(0) * 1000),
                match (s["backend"].as_str(), s["online"] == true) {
                    (Some("credentials_refused"), _) =>
                        "REFUSES THE TOKEN (HTTP 401/403): lookups \
                        answer from the cache, writes queue; fix /etc/wxcardd/api-headers, then \
                        systemctl reload wxcardd"
                            .to_owned(),
                    (_, true) => "online".to_owned(),
                    (_, false) => "OFFLINE".to_owned(),
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
            if r["display_font"].is_string() {
                out.push_str(&format!("\ndisplay font: {}", text(&r["display_font"])));
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
                    format!(
                        "{:>6}  {:<8} {}",
                        e["entry"],
                        row_state(e),
                        text(&e["summary"])
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        Command::OutboxDrop(_) => format!(
            "dropped outbox entry {} ({}): {}; it will never be sent",
            r["entry"],
            row_state(&r["was"]),
            text(&r["was"]["summary"])
        ),
        Command::OutboxRetry(_) => format!(
            "outbox entry {} ({}): {} is sent next",
            r["entry"],
            row_state(&r["was"]),
            text(&r["was"]["summary"])
        ),
        _ => "ok".into(),
    }
}

/// An event line for a person.
pub fn describe_event(e: &Value) -> String {
    match e["event"].as_str().unwrap_or("") {
        "scan" => format!("scan   {} read {}", text(&e["scanner"]), text(&e["code"])),
        "card" => format!("card   {}", describe_lookup(e)),
        "backend" => match e["kind"].as_str() {
            Some("credentials_refused") => format!(
                "backend REFUSES THE TOKEN (HTTP {}): fix /etc/wxcardd/api-headers, then systemctl reload wxcardd",
                e["http_status"]
            ),
            _ => format!("backend {}", text(&e["kind"])),
        },
        "outbox" => match e["kind"].as_str() {
            Some("undecodable") => format!(
                "outbox entry {} UNDECODABLE, set aside: {}",
                e["entry"],
                text(&e["detail"])
            ),
            Some("dead_lettered") => format!(
                "outbox entry {} refused by the backend: {} {}",
                e["entry"],
                text(&e["status"]),
                text(&e["message"])
            ),
            Some("dead_letter_expired") => format!(
                "outbox entry {} DROPPED unattended after the retention: the write is lost",
                e["entry"]
            ),
            _ => format!("outbox entry {} {}", e["entry"], text(&e["kind"])),
        },
        "scanner" => format!("scanner {} {}", text(&e["scanner"]), text(&e["state"])),
        _ => format!("{} {}", text(&e["event"]), untrusted(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn card_numbers_are_masked_as_the_customer_display_masks_them() {
        let full = "6222021234567890";
        let shown = MaskedCardNumber::new(full).to_string();
        let lookup = json!({
            "outcome": "card", "source": "api", "wx_code": "100000000001",
            "card": {"cardCode": full, "balance": 1, "discount": 1, "canMemberPrice": true}
        });
        let line = describe_lookup(&lookup);
        assert!(line.contains(&format!("card {shown} ")), "{line}");
        assert!(!line.contains("62220212"), "{line}");
        let created = json!({
            "outcome": "delivered",
            "created": {"cardCode": full, "balance": 0, "points": 0}
        });
        let line = describe_write(&created);
        assert!(line.contains(&format!("card {shown} ")), "{line}");
        // Short numbers show nothing, as on the display; no escape sequence gets through.
        let short = json!({"outcome": "delivered", "created": {"cardCode": "12\u{1b}[2J3"}});
        let line = describe_write(&short);
        assert!(line.contains("card **** ****"), "{line}");
    }

    #[test]
    fn an_event_without_its_own_words_is_shown_escaped() {
        let display = json!({
            "class": "EVENT", "event": "display\u{202e}", "backend": "web",
            "state": "failing", "reason": "bad\u{85}\u{9b}2J\u{2066}font"
        });
        let line = describe_event(&display);
        assert!(line.contains("failing"), "{line}");
        assert!(
            !line
                .chars()
                .any(|c| c.is_control() || matches!(c, '\u{202e}' | '\u{2066}')),
            "{line:?}"
        );
    }
}
