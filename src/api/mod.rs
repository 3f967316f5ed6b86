//! The typed wxcard API client.
//!
//! Five endpoints (spec: `docs/spec/wxcard-api.md`), typed requests and responses named
//! as on the wire, the 23 documented statuses, and errors split by what a caller does about
//! them ([`ApiError`]). This module knows nothing of sled, scanners or displays; it is the
//! only place that builds HTTP requests to the backend.

mod client;
mod error;
pub mod pii;
mod reads;
mod status;
mod types;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use client::{Client, ClientBuildError};
pub use error::{ApiError, ServerFault, TransportKind};
pub use status::Status;
pub use types::{
    Amount, AmountError, CardIssueDetail, CardIssueOrder, CreatedMember, Envelope, MemberCard,
    MemberInfo, PayCode, WxDateTime,
};

/// The five endpoints of the wxcard API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `POST api/weixin/wxcard/savecardid`: issue a batch of member cards.
    SaveCardId,
    /// `POST api/weixin/wxcard/createmembercard`: create a member.
    CreateMemberCard,
    /// `POST api/weixin/wxcard/activemember`: activate a card.
    ActiveMember,
    /// `GET api/weixin/wxcard/getpaycode?wxCode=`: a pay code.
    GetPayCode,
    /// `GET api/weixin/wxcard/getmembercard?cardId=&wxCode=`: card info.
    GetMemberCard,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 5] = [
        Endpoint::SaveCardId,
        Endpoint::CreateMemberCard,
        Endpoint::ActiveMember,
        Endpoint::GetPayCode,
        Endpoint::GetMemberCard,
    ];

    /// The path relative to the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::SaveCardId => "api/weixin/wxcard/savecardid",
            Endpoint::CreateMemberCard => "api/weixin/wxcard/createmembercard",
            Endpoint::ActiveMember => "api/weixin/wxcard/activemember",
            Endpoint::GetPayCode => "api/weixin/wxcard/getpaycode",
            Endpoint::GetMemberCard => "api/weixin/wxcard/getmembercard",
        }
    }

    /// The endpoint's last path segment, as used in logs.
    pub fn name(self) -> &'static str {
        self.path().rsplit('/').next().unwrap_or_default()
    }

    /// True for the endpoints that change state on the backend.
    pub fn is_write(self) -> bool {
        !matches!(self, Endpoint::GetPayCode | Endpoint::GetMemberCard)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[api]` in the config file: where the backend is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Base URL the endpoint paths are appended to, e.g. `https://pos.example.com/`.
    pub base_url: String,
    /// Connect timeout in milliseconds.
    pub connect_timeout_ms: u64,
    /// Overall deadline of one call (connect, send, answer) in milliseconds.
    pub deadline_ms: u64,
    /// A file of extra request headers, `Name: value` per line (the API token). Read once at
    /// start; its values are never logged.
    pub headers_file: Option<PathBuf>,
    /// An extra CA certificate file (PEM), trusted besides the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// The largest response body accepted, in bytes; a larger one is refused unread.
    pub max_body_bytes: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            base_url: "http://127.0.0.1:8080/".into(),
            connect_timeout_ms: 2_000,
            deadline_ms: 5_000,
            headers_file: None,
            ca_file: None,
            max_body_bytes: 64 * 1024,
        }
    }
}

impl ApiConfig {
    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The overall deadline of one call.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}
