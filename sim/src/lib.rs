//! A stateful simulator of the wxcard backend, for tests and the demo.
//!
//! It serves the vendor API's five endpoints over real HTTP, keeps cards in the states the
//! spec names, counts every write per key so tests can prove exactly-once delivery, and can
//! be told at run time (through a separate admin listener, or this library handle) to show
//! the faults a till meets in the field: latency, a refused port, HTTP 500 pages, truncated
//! JSON, a string `status`, a hang, forced business statuses. Requests are checked against
//! the spec with the simulator's own parser, never the client's types, so the simulator
//! tests the wire format instead of mirroring the client. docs/simulator.md is the manual.
//!
//! # Layout
//! - [`card`]: cards, their states, the TOML card file and the built-in set.
//! - [`wire`]: endpoints, request checks, the reply envelope.
//! - [`state`]: the endpoints' logic on the simulated state (pure, synchronous).
//! - [`paycode`], [`counters`], [`fault`]: pay codes with expiry, write counters, faults.
//! - `api`, `listener`, `admin`: the HTTP sides; [`handle`]: starting, controlling, stopping.

pub mod card;
pub mod counters;
pub mod fault;
pub mod handle;
pub mod paycode;
pub mod state;
pub mod wire;

mod admin;
mod api;
mod listener;

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

pub use card::{Card, CardState, default_cards, parse_card_file};
pub use counters::{Counters, WriteCount};
pub use fault::{EndpointSet, FaultMode, Faults};
pub use handle::{BlockingSim, SimHandle, Simulator};
pub use paycode::PayCodeCheck;
pub use wire::Endpoint;

use fault::Forced;
use state::SimState;

/// The default lifetime of a pay code.
pub const DEFAULT_PAYCODE_TTL: Duration = Duration::from_secs(60);

/// How the simulator starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where the vendor API listens; port 0 picks a free port.
    pub api_addr: SocketAddr,
    /// Where the admin API listens; port 0 picks a free port.
    pub admin_addr: SocketAddr,
    /// The cards at start and after a reset.
    pub cards: Vec<Card>,
    /// How long a pay code stays valid.
    pub paycode_ttl: Duration,
}

impl Default for SimConfig {
    /// Both listeners on 127.0.0.1 with free ports, the built-in cards, a 60 s pay code TTL.
    fn default() -> Self {
        SimConfig {
            api_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            cards: default_cards(),
            paycode_ttl: DEFAULT_PAYCODE_TTL,
        }
    }
}

/// Why the simulator could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen for the {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen again on {addr}: {reason}")]
    Rebind { addr: SocketAddr, reason: String },
    #[error("cannot start the simulator's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the simulator has stopped")]
    Stopped,
}

/// Whether the API port listens, as last made true by the listener task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenState {
    Up,
    Down,
    BindFailed(String),
    /// The simulator has shut down.
    Stopped,
}

/// The fault settings with a version, so a caller can wait for the listener to catch up.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FaultsVersion {
    pub version: u64,
    pub faults: Faults,
}

/// What the listener has made true, and for which fault version.
#[derive(Debug, Clone)]
pub(crate) struct ListenStatus {
    pub version: u64,
    pub state: ListenState,
}

/// State shared by the API, admin and listener tasks and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub api_addr: SocketAddr,
    state: Mutex<SimState>,
    forced: Mutex<Forced>,
    pub faults: watch::Sender<FaultsVersion>,
    pub listen: watch::Sender<ListenStatus>,
    /// The extra headers (any but the HTTP plumbing ones) of the last API request, so tests
    /// can see that the client's token arrives. In memory only, never logged.
    last_headers: Mutex<std::collections::BTreeMap<String, String>>,
    /// Extra delay in ms before answering a read of these wxCodes (a slow first lookup,
    /// for the daemon's ordering tests).
    code_delays: Mutex<std::collections::BTreeMap<String, u64>>,
}

/// Locks a mutex, recovering from poisoning: a panicked request must not stop the sim.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn new(api_addr: SocketAddr, config: &SimConfig) -> Shared {
        Shared {
            api_addr,
            state: Mutex::new(SimState::new(config.cards.clone(), config.paycode_ttl)),
            forced: Mutex::new(Forced::default()),
            faults: watch::Sender::new(FaultsVersion::default()),
            listen: watch::Sender::new(ListenStatus {
                version: 0,
                state: ListenState::Up,
            }),
            last_headers: Mutex::new(std::collections::BTreeMap::new()),
            code_delays: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// Keeps the extra headers of an API request (see `last_headers`).
    pub fn record_headers(&self, headers: &axum::http::HeaderMap) {
        const PLUMBING: [&str; 6] = [
            "host",
            "user-agent",
            "accept",
            "accept-encoding",
            "content-type",
            "content-length",
        ];
        *lock(&self.last_headers) = headers
            .iter()
            .filter(|(name, _)| !PLUMBING.contains(&name.as_str()))
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
    }

    /// The extra headers of the last API request.
    pub fn last_headers(&self) -> std::collections::BTreeMap<String, String> {
        lock(&self.last_headers).clone()
    }

    /// The per-wxCode read delays in force.
    pub fn code_delays(&self) -> MutexGuard<'_, std::collections::BTreeMap<String, u64>> {
        lock(&self.code_delays)
    }

    pub fn state(&self) -> MutexGuard<'_, SimState> {
        lock(&self.state)
    }

    pub fn forced(&self) -> MutexGuard<'_, Forced> {
        lock(&self.forced)
    }

    pub fn faults(&self) -> Faults {
        self.faults.borrow().faults
    }

    /// Puts `faults` in force and waits until the API listener has followed (stopped or
    /// started listening as the mode asks).
    pub async fn set_faults(&self, faults: Faults) -> Result<(), SimError> {
        let mut version = 0;
        self.faults.send_modify(|f| {
            f.version += 1;
            f.faults = faults;
            version = f.version;
        });
        log::info!(
            "faults now: mode={} latency={}ms endpoints={:?}",
            faults.mode,
            faults.latency.as_millis(),
            faults
                .endpoints
                .iter()
                .map(Endpoint::as_str)
                .collect::<Vec<_>>()
        );
        let mut rx = self.listen.subscribe();
        let status = rx
            .wait_for(|s| s.version >= version)
            .await
            .map_err(|_| SimError::Stopped)?;
        match &status.state {
            ListenState::BindFailed(reason) => Err(SimError::Rebind {
                addr: self.api_addr,
                reason: reason.clone(),
            }),
            ListenState::Stopped => Err(SimError::Stopped),
            _ => Ok(()),
        }
    }
}

/// Back to the start: cards, orders, pay codes, counters, forced statuses and faults.
pub(crate) async fn reset_all(shared: &Shared) -> Result<(), SimError> {
    shared.state().reset();
    shared.forced().clear();
    shared.code_delays().clear();
    shared.set_faults(Faults::default()).await?;
    log::info!("simulator reset");
    Ok(())
}
