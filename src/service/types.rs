//! What the card service answers and emits; serialized as-is on the control socket.

use serde::{Deserialize, Serialize};
use wxcard_hal::display::MaskedCardNumber;

use crate::api::{CardIssueOrder, CreatedMember, Endpoint, MemberCard, MemberInfo, Status};
use crate::store::OutboxId;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The backend, just now.
    Api,
    /// The local cache, because the backend is unreachable.
    Cache,
}

impl Source {
    /// The name it is serialized as (`api`, `cache`): a metric's label.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Cache => "cache",
        }
    }
}

/// The backend's last definitive answer about a card, as cached.
///
/// Externally tagged on purpose: tagged-enum buffering would lose numbers under serde_json's
/// `arbitrary_precision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CachedAnswer {
    /// The card and its balance.
    Card(MemberCard),
    /// The card is not usable: 601 unavailable, 602 does not exist, 603 lost, 604 voided.
    CardState {
        /// The status.
        status: Status,
        /// The backend's message.
        message: String,
    },
}

/// The answer to a lookup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lookup {
    /// The code looked up.
    pub wx_code: String,
    /// Where the answer came from.
    pub source: Source,
    /// How old the data is, in milliseconds (0 when it came from the backend just now).
    pub age_ms: u64,
    /// True when served from the cache past the freshness window.
    pub stale: bool,
    /// The answer itself.
    #[serde(flatten)]
    pub answer: LookupAnswer,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum LookupAnswer {
    /// A usable card.
    Card {
        /// The card.
        card: MemberCard,
    },
    /// The backend says the card is not usable (601-604).
    CardState {
        /// The status.
        status: Status,
        /// Its meaning, for a person.
        meaning: &'static str,
        /// The backend's message.
        message: String,
    },
    /// The backend refused the lookup for another reason (not cached).
    Rejected {
        /// The status.
        status: Status,
        /// The backend's message.
        message: String,
    },
    /// The backend is unreachable and the cache has nothing recent enough to serve.
    Offline {
        /// Why nothing can be served, for a person.
        reason: String,
    },
}

impl LookupAnswer {
    /// Its `outcome` as serialized (`card`, `card_state`, `rejected`, `offline`): a metric's
    /// label.
    pub fn outcome(&self) -> &'static str {
        match self {
            LookupAnswer::Card { .. } => "card",
            LookupAnswer::CardState { .. } => "card_state",
            LookupAnswer::Rejected { .. } => "rejected",
            LookupAnswer::Offline { .. } => "offline",
        }
    }
}

/// A write the service sends or queues.
///
/// Externally tagged on purpose (see [`CachedAnswer`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QueuedWrite {
    /// activemember.
    Activate(MemberInfo),
    /// createmembercard.
    Create(MemberInfo),
    /// savecardid.
    Issue(CardIssueOrder),
}

impl QueuedWrite {
    /// The endpoint this write goes to.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            QueuedWrite::Activate(_) => Endpoint::ActiveMember,
            QueuedWrite::Create(_) => Endpoint::CreateMemberCard,
            QueuedWrite::Issue(_) => Endpoint::SaveCardId,
        }
    }

    /// Checks the codes a write is keyed by before it is sent or queued: a malformed one
    /// would only be refused later, after the cashier was told "queued".
    pub fn validate(&self) -> Result<(), String> {
        match self {
            QueuedWrite::Activate(m) | QueuedWrite::Create(m) => code("wxCode", &m.wx_code),
            QueuedWrite::Issue(o) => {
                if o.id <= 0 {
                    return Err(format!("order id {} must be positive", o.id));
                }
                for detail in &o.details {
                    match detail.wx_code.as_deref() {
                        None | Some("") => {}
                        Some(wx) => code("details[].wxCode", wx)?,
                    }
                }
                Ok(())
            }
        }
    }

    /// A short description without personal data, for logs and `outbox_list`. The card
    /// (微信会员卡号) is masked as the customer display masks it: `activate card **** 4570`.
    pub fn summary(&self) -> String {
        match self {
            QueuedWrite::Activate(m) => {
                format!("activate card {}", MaskedCardNumber::new(&m.wx_code))
            }
            QueuedWrite::Create(m) => {
                format!(
                    "create member for card {}",
                    MaskedCardNumber::new(&m.wx_code)
                )
            }
            QueuedWrite::Issue(o) => format!("issue order {} ({} cards)", o.id, o.details.len()),
        }
    }
}

/// Checks a card code the backend is asked about: 1 to 64 ASCII letters, digits, '-' or '_'
/// (WeChat codes are digits; merchant numbers letters and digits). Anything else would only
/// be refused by the backend, or fill the cache with keys no scanner produces.
pub fn code(what: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {value:?} must be 1 to 64 letters, digits, '-' or '_'"
        ))
    }
}

/// What happened to a write.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum WriteOutcome {
    /// The backend accepted it now.
    Delivered {
        /// createmembercard's answer.
        #[serde(skip_serializing_if = "Option::is_none")]
        created: Option<CreatedMember>,
    },
    /// Not sent now; the write is on disk and will be sent later.
    Queued {
        /// The outbox entry.
        entry: OutboxId,
        /// Why it was not sent now, for a person (backend unreachable, the backend refuses
        /// the token, older writes waiting).
        reason: String,
    },
    /// The backend refused the request itself (HTTP 400 and the like). Not queued.
    Invalid {
        /// What the backend said.
        reason: String,
    },
    /// The backend refused it (a business status). Not queued.
    Rejected {
        /// The status.
        status: Status,
        /// The backend's message.
        message: String,
    },
}

/// Something the daemon may publish.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServiceEvent {
    /// The backend became unreachable (the breaker opened).
    Offline,
    /// The backend refuses the token (HTTP 401/403): lookups answer from the cache, writes
    /// queue, until it accepts again (a fixed token and `systemctl reload`).
    CredentialsRefused {
        /// The HTTP status, 401 or 403.
        http_status: u16,
    },
    /// The backend answers again.
    Online {
        /// How long it was unreachable.
        offline_for_ms: u64,
    },
    /// A queued write reached the backend.
    Delivered {
        /// The outbox entry.
        entry: OutboxId,
        /// Its endpoint.
        endpoint: Endpoint,
    },
    /// A queued write was refused by the backend and moved to the dead letters.
    DeadLettered {
        /// The outbox entry.
        entry: OutboxId,
        /// Its endpoint.
        endpoint: Endpoint,
        /// The backend's status.
        status: Status,
        /// The backend's message.
        message: String,
    },
    /// A dead letter nobody retried or dropped was dropped after `dead_letter_retention_s`,
    /// with the personal data it held: the write never reached the backend.
    DeadLetterExpired {
        /// The outbox entry.
        entry: OutboxId,
        /// Its endpoint; absent when the entry could not be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint: Option<Endpoint>,
    },
    /// A queued write could not be read or decoded: it was set aside as a dead letter with
    /// its raw bytes, and the writes behind it go on.
    Undecodable {
        /// The outbox entry.
        entry: OutboxId,
        /// Why it cannot be read (never its contents).
        detail: String,
    },
}

impl ServiceEvent {
    /// The control socket's event name for it: `backend` or `outbox`.
    pub fn channel(&self) -> &'static str {
        match self {
            ServiceEvent::Offline
            | ServiceEvent::Online { .. }
            | ServiceEvent::CredentialsRefused { .. } => "backend",
            ServiceEvent::Delivered { .. }
            | ServiceEvent::DeadLettered { .. }
            | ServiceEvent::DeadLetterExpired { .. }
            | ServiceEvent::Undecodable { .. } => "outbox",
        }
    }
}

/// How the backend is doing, as `status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendState {
    /// It answers.
    Online,
    /// It is unreachable or answers garbage.
    Offline,
    /// It answers, but refuses the token (HTTP 401/403): fix the headers file.
    CredentialsRefused,
}

/// The service's state for `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    /// `online`, `offline` or `credentials_refused`.
    pub backend: BackendState,
    /// True while the breaker is closed.
    pub online: bool,
    /// When the backend became unreachable (unix ms), while offline.
    pub offline_since_ms: Option<u64>,
    /// Consecutive failed calls.
    pub consecutive_failures: u32,
    /// Writes waiting to be sent.
    pub outbox_pending: u64,
    /// Writes the backend refused, kept for the operator.
    pub dead_letters: u64,
    /// The outbox's capacity (pending plus dead letters).
    pub outbox_max: u64,
    /// Age of the oldest pending write, in milliseconds.
    pub oldest_pending_age_ms: Option<u64>,
}

/// One row of `outbox_list`: every entry is listed, readable or not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    /// The entry id.
    pub entry: OutboxId,
    /// The endpoint; absent when the entry cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    /// What it does, without personal data.
    pub summary: String,
    /// When it was queued (unix ms); absent when the entry's header cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enqueued_at_ms: Option<u64>,
    /// Waiting to be sent, or set aside.
    pub state: RowState,
    /// Why a dead letter was set aside.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<DeadKind>,
    /// For dead letters the backend refused: its status and message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<(Status, String)>,
    /// Why the entry cannot be read (never its contents), when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecodable: Option<String>,
}

/// Whether an outbox row waits to be sent or was set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    /// Waiting to be sent, in order.
    Pending,
    /// A dead letter: waits for an operator (retry or drop) or its retention to end.
    Dead,
}

/// Why a dead letter was set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadKind {
    /// The backend refused it (a business status, or the request as malformed).
    Rejected,
    /// It could not be read or decoded (damaged bytes, the sealing key lost or replaced).
    Undecodable,
}

#[cfg(test)]
mod summary_tests {
    use super::*;

    #[test]
    fn the_metric_labels_are_the_names_the_events_carry() {
        let member: MemberCard = serde_json::from_value(serde_json::json!({
            "cardCode": "M1", "balance": 1, "discount": 1, "canMemberPrice": true
        }))
        .unwrap();
        let answers = [
            LookupAnswer::Card { card: member },
            LookupAnswer::CardState {
                status: Status::from_code(603),
                meaning: "lost",
                message: String::new(),
            },
            LookupAnswer::Rejected {
                status: Status::from_code(500),
                message: String::new(),
            },
            LookupAnswer::Offline {
                reason: String::new(),
            },
        ];
        for answer in answers {
            let value = serde_json::to_value(&answer).unwrap();
            assert_eq!(value["outcome"], answer.outcome(), "{value}");
        }
        for source in [Source::Api, Source::Cache] {
            assert_eq!(serde_json::to_value(source).unwrap(), source.as_str());
        }
    }

    #[test]
    fn the_summary_logged_for_a_write_masks_the_card_as_the_display_does() {
        let member: MemberInfo =
            serde_json::from_value(serde_json::json!({"wxCode": "812345678901234570"})).unwrap();
        let shown = MaskedCardNumber::new("812345678901234570").to_string();
        for write in [
            QueuedWrite::Activate(member.clone()),
            QueuedWrite::Create(member),
        ] {
            let summary = write.summary();
            assert!(summary.ends_with(&format!("card {shown}")), "{summary}");
            assert!(!summary.contains("81234567"), "{summary}");
        }
    }
}
