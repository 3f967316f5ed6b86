//! Starting, controlling and stopping a simulator from Rust.
//!
//! [`Simulator::start`] runs on the caller's tokio runtime and returns a [`SimHandle`];
//! [`Simulator::spawn_in_thread`] brings its own runtime (one worker thread) for synchronous
//! tests and returns a [`BlockingSim`], whose fault setters block until the fault is in
//! force. Setting a fault waits for the API listener to follow it, so a test that sets
//! `refuse` and then connects is refused, without a sleep.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::card::Card;
use super::counters::Counters;
use super::fault::{FaultMode, Faults};
use super::paycode::PayCodeCheck;
use super::wire::Endpoint;
use super::{Shared, SimConfig, SimError, admin, api, listener, lock, reset_all};

/// Entry points.
pub struct Simulator;

impl Simulator {
    /// Binds both listeners and serves them on the current tokio runtime.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        let api_listener = listener::bind(config.api_addr).map_err(|source| SimError::Bind {
            what: "API",
            addr: config.api_addr,
            source,
        })?;
        let admin_listener =
            listener::bind(config.admin_addr).map_err(|source| SimError::Bind {
                what: "admin API",
                addr: config.admin_addr,
                source,
            })?;
        let local = |l: &tokio::net::TcpListener, what, addr| {
            l.local_addr()
                .map_err(|source| SimError::Bind { what, addr, source })
        };
        let api_addr = local(&api_listener, "API", config.api_addr)?;
        let admin_addr = local(&admin_listener, "admin API", config.admin_addr)?;
        let shared = Arc::new(Shared::new(api_addr, &config));
        let (stop, stopped) = watch::channel(false);

        let api_task = tokio::spawn(listener::run(
            api_listener,
            api::router(shared.clone()),
            shared.clone(),
            stopped.clone(),
        ));
        let mut admin_stopped = stopped;
        let admin_router = admin::router(shared.clone());
        let admin_task = tokio::spawn(async move {
            let served = axum::serve(admin_listener, admin_router)
                .with_graceful_shutdown(async move {
                    let _ = admin_stopped.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                log::error!("admin API stopped: {e}");
            }
        });
        log::info!("simulator listening: api={api_addr} admin={admin_addr}");
        Ok(SimHandle {
            inner: Arc::new(Inner {
                api_addr,
                admin_addr,
                shared,
                stop,
                tasks: Mutex::new(vec![api_task, admin_task]),
            }),
        })
    }

    /// Starts a simulator on its own runtime (one worker thread), for synchronous callers.
    /// Must not be called from inside a tokio runtime.
    pub fn spawn_in_thread(config: SimConfig) -> Result<BlockingSim, SimError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wxcard-sim")
            .enable_all()
            .build()
            .map_err(SimError::Runtime)?;
        let handle = runtime.block_on(Simulator::start(config))?;
        Ok(BlockingSim {
            handle,
            runtime: Some(runtime),
        })
    }
}

#[derive(Debug)]
struct Inner {
    api_addr: SocketAddr,
    admin_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: stop serving (the tasks end on their own).
        self.stop.send_replace(true);
    }
}

/// Controls a running simulator. Cheap to clone; the simulator stops when
/// [`SimHandle::shutdown`] is awaited or the last clone is dropped.
#[derive(Debug, Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

impl SimHandle {
    /// Where the vendor API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.inner.api_addr
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.inner.admin_addr
    }

    /// The base URL a client is configured with, e.g. `http://127.0.0.1:41234/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.inner.api_addr)
    }

    /// The fault mode and latency in force.
    pub fn faults(&self) -> Faults {
        self.inner.shared.faults()
    }

    /// Puts `faults` in force; returns once the API port follows (e.g. stopped listening).
    pub async fn set_faults(&self, faults: Faults) -> Result<(), SimError> {
        self.inner.shared.set_faults(faults).await
    }

    /// Changes the fault mode, keeping the latency.
    pub async fn set_fault(&self, mode: FaultMode) -> Result<(), SimError> {
        let faults = Faults {
            mode,
            ..self.faults()
        };
        self.set_faults(faults).await
    }

    /// Changes the added latency, keeping the mode.
    pub async fn set_latency(&self, latency: Duration) -> Result<(), SimError> {
        let faults = Faults {
            latency,
            ..self.faults()
        };
        self.set_faults(faults).await
    }

    /// No mode, no latency, no forced statuses.
    pub async fn clear_faults(&self) -> Result<(), SimError> {
        self.inner.shared.forced().clear();
        self.set_faults(Faults::default()).await
    }

    /// Answers the next `count` requests of `endpoint` with business status `status`
    /// (without applying them). A count of 0 removes the rule.
    pub fn force_status(&self, endpoint: Endpoint, status: u16, count: u32) {
        self.inner.shared.forced().set(endpoint, status, count);
    }

    /// Back to the configured cards; forgets orders, pay codes, counters and faults.
    pub async fn reset(&self) -> Result<(), SimError> {
        reset_all(&self.inner.shared).await
    }

    /// A snapshot of every counter.
    pub fn counters(&self) -> Counters {
        self.inner.shared.state().counters().clone()
    }

    /// The card with this wxCode, as it is now.
    pub fn card(&self, wx_code: &str) -> Option<Card> {
        self.inner.shared.state().card(wx_code).cloned()
    }

    /// Adds a card or replaces the one with the same wxCode.
    pub fn put_card(&self, card: Card) {
        self.inner.shared.state().put_card(card);
    }

    /// The savecardid order recorded under `id`, as it was received.
    pub fn order(&self, id: i64) -> Option<serde_json::Value> {
        self.inner.shared.state().order(id).cloned()
    }

    /// Checks a pay code as a payment terminal would: valid, expired (606) or unknown.
    pub fn check_paycode(&self, code: &str) -> PayCodeCheck {
        let now = tokio::time::Instant::now().into_std();
        self.inner.shared.state().check_paycode(code, now)
    }

    /// Stops both listeners, closes every connection and waits for the tasks to end.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// A simulator on its own runtime, for synchronous tests. Dereferences to [`SimHandle`]
/// for everything that does not wait; the methods here block instead of being `async`.
/// Dropping it stops the simulator. Use it only outside a tokio runtime (blocking on, or
/// dropping, a runtime inside another one panics); async code uses [`SimHandle`].
#[derive(Debug)]
pub struct BlockingSim {
    handle: SimHandle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl BlockingSim {
    fn block<T>(&self, f: impl Future<Output = T>) -> T {
        self.runtime
            .as_ref()
            .expect("the runtime lives until drop")
            .block_on(f)
    }

    /// A handle usable from async code running elsewhere.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// [`SimHandle::set_faults`], blocking.
    pub fn set_faults(&self, faults: Faults) -> Result<(), SimError> {
        self.block(self.handle.set_faults(faults))
    }

    /// [`SimHandle::set_fault`], blocking.
    pub fn set_fault(&self, mode: FaultMode) -> Result<(), SimError> {
        self.block(self.handle.set_fault(mode))
    }

    /// [`SimHandle::set_latency`], blocking.
    pub fn set_latency(&self, latency: Duration) -> Result<(), SimError> {
        self.block(self.handle.set_latency(latency))
    }

    /// [`SimHandle::clear_faults`], blocking.
    pub fn clear_faults(&self) -> Result<(), SimError> {
        self.block(self.handle.clear_faults())
    }

    /// [`SimHandle::reset`], blocking.
    pub fn reset(&self) -> Result<(), SimError> {
        self.block(self.handle.reset())
    }

    /// Stops the simulator and its runtime.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.block_on(self.handle.shutdown());
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl std::ops::Deref for BlockingSim {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl Drop for BlockingSim {
    fn drop(&mut self) {
        self.stop();
    }
}
