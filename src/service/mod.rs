//! The card service: the one place that decides whether an answer comes from the network or
//! the cache, and whether a write is sent now or queued.
//!
//! - Lookups go to the backend with a short deadline; every definitive answer (the card, or
//!   601/602/603/604) is cached in the store with the time it was fetched. When the backend is
//!   unreachable the cache answers, marked `source: cache` with its age, `stale` past the
//!   freshness window, and nothing older than the maximum offline age is served.
//! - A backend that refuses the token (HTTP 401/403) is not an outage: it is the state
//!   `credentials_refused` (status, event, log), the breaker opens at once (asking again
//!   with the same token cannot help), lookups answer from the cache and writes queue until
//!   the probe sees the backend accept again (a fixed token and a reload).
//! - A circuit breaker stops lookups from waiting on a network that is down; a background
//!   probe closes it when the backend answers again.
//! - Writes are sent at once when the backend answers; otherwise they go into the store's
//!   durable outbox and the caller is told `queued` only once the entry is on disk. A
//!   background task replays the outbox in order with jittered exponential backoff.
//!
//! # Delivery guarantee
//! At least once, in enqueue order, with resends recognised. An entry is removed only after
//! the backend accepted it, and removals are not fsynced one by one, so a crash between a
//! send and its (durable) removal resends that write on restart. How the backend recognises
//! the resend:
//! - `savecardid`: the spec's 801 (duplicate serial number) for a repeated order id; the
//!   replay counts 801 as delivered.
//! - `activemember` and `createmembercard`: the spec says nothing. The simulator answers 200
//!   to re-activating an active card and to creating an existing member (and counts the
//!   resend as a duplicate receipt, not a second application). If the vendor's backend
//!   instead answers a business status, the resent entry becomes a dead letter with that
//!   status, visible in `outbox_list`: never silently dropped, never silently applied twice.
//!
//! An entry the store cannot read (damaged bytes, the sealing key lost or replaced) is set
//! aside as an `undecodable` dead letter, raw bytes kept, with an error log line and an
//! `outbox` event: one bad entry never blocks the writes behind it.
//!
//! A business refusal (6xx, ...) or a request the backend refuses as malformed (HTTP 400,
//! 413, 415, 422) moves the entry to the dead letters with the backend's status and message;
//! it is never retried on its own (it would block every write behind it). A dead letter waits
//! `dead_letter_retention_s` (7 days) for an operator to retry or drop it, then it is dropped
//! with the personal data it holds. Both moments are loud, for a fleet's monitoring: an
//! error-level log line naming the entry and endpoint (no member data, not even the card
//! code), an `outbox` event (`dead_lettered`, `dead_letter_expired`) and a metric
//! (`wxcardd_dead_letters`, `wxcardd_dead_letters_total`, `wxcardd_dead_letters_expired_total`;
//! the alert `WxcarddDeadLetter`). Status 500 in a
//! body, other HTTP errors and transport failures count as the backend being unavailable and
//! are retried with backoff. Writes are sent one at a time, replay included, so they reach
//! the backend in the order the cashier made them.

mod backoff;
mod breaker;
mod card;
mod clock;
mod types;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use backoff::Backoff;
pub use breaker::{Breaker, BreakerState, Transition};
pub use card::CardService;
pub use clock::{Clock, ManualClock, SystemClock};
pub use types::{
    BackendState, CachedAnswer, DeadKind, Lookup, LookupAnswer, OutboxRow, QueuedWrite, RowState,
    ServiceEvent, ServiceStatus, Source, WriteOutcome,
};

use crate::store::StoreError;

/// `[service]` in the config file: the offline policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Deadline of a lookup or pay-code call the cashier waits on, in milliseconds.
    pub lookup_deadline_ms: u64,
    /// Deadline of a write call, in milliseconds.
    pub write_deadline_ms: u64,
    /// Cached data older than this is served marked `stale`, in seconds.
    pub fresh_for_s: u64,
    /// Cached data older than this is not served at all, in seconds.
    pub max_offline_age_s: u64,
    /// Consecutive failed calls that open the breaker.
    pub breaker_failures: u32,
    /// How often the probe checks an unreachable backend, in milliseconds.
    pub probe_interval_ms: u64,
    /// The wxCode the probe looks up (any answer, even 602, proves the backend is back).
    pub probe_wx_code: String,
    /// First replay retry delay ceiling, in milliseconds.
    pub replay_backoff_base_ms: u64,
    /// Largest replay retry delay, in milliseconds.
    pub replay_backoff_max_ms: u64,
    /// A dead letter (a write the backend refused) is dropped, with the personal data it
    /// holds, this long after it was refused, in seconds; until then an operator can retry
    /// or drop it. 0 keeps dead letters until an operator acts.
    pub dead_letter_retention_s: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            lookup_deadline_ms: 1_500,
            write_deadline_ms: 5_000,
            fresh_for_s: 600,
            max_offline_age_s: 24 * 3600,
            breaker_failures: 3,
            probe_interval_ms: 5_000,
            probe_wx_code: "000000000000".into(),
            replay_backoff_base_ms: 1_000,
            replay_backoff_max_ms: 300_000,
            dead_letter_retention_s: 7 * 24 * 3600,
        }
    }
}

impl ServiceConfig {
    fn lookup_deadline(&self) -> Duration {
        Duration::from_millis(self.lookup_deadline_ms)
    }
    fn write_deadline(&self) -> Duration {
        Duration::from_millis(self.write_deadline_ms)
    }
    fn fresh_for_ms(&self) -> u64 {
        self.fresh_for_s.saturating_mul(1000)
    }
    fn max_offline_age_ms(&self) -> u64 {
        self.max_offline_age_s.saturating_mul(1000)
    }
}

/// Why the service could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The outbox is full: the write was refused, not queued.
    #[error(
        "the outbox is full ({max} writes waiting or dead): write refused, nothing queued{}",
        if *maybe_applied { " (the backend did not answer in time: it may have carried it out)" } else { "" }
    )]
    OutboxFull {
        /// The outbox capacity.
        max: u64,
        /// A direct send timed out before the refusal: the backend may have the write.
        maybe_applied: bool,
    },
    /// The request is malformed (e.g. a wxCode with spaces); nothing was sent or queued.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No pending write or dead letter has this id (delivered, dropped, or never queued).
    #[error("no outbox entry {0} (pending or dead)")]
    NoEntry(u64),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The runtime stopped before the work ended (shutdown).
    #[error("the daemon is shutting down")]
    ShuttingDown,
}
