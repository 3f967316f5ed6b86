//! wxcardd: the till daemon for WeChat member cards.
//!
//! # Layout
//! - [`api`]: the typed wxcard HTTP client (requests, responses, statuses, errors).
//! - [`store`]: sled-backed card cache and durable outbox (only this module touches sled).
//! - [`service`]: the policy: network or cache, send or queue, replay, the breaker.
//! - [`control`]: the local socket's protocol, server and client (`wxcardctl`).
//! - [`daemon`]: the wiring on tokio: scanners, display, signals, systemd notify, the demo.
//! - [`memory`]: glibc malloc's set-up (two arenas, trimming after bursts).
//! - [`metrics`]: Prometheus metrics (node_exporter textfile, optional `/metrics`).
//! - [`config`]: the daemon's typed TOML configuration.
//! - [`report`]: `wxcardctl report`, the support report without secrets or member data.
//! - [`probe`]: the technician's one-shot check (`wxcardd probe`).
//! - [`setup`]: the technician's wizard that finds a scanner and writes its table (`wxcardd setup`).
//!
//! Hardware (scanners in, screens out) lives in the `wxcard-hal` crate; the backend simulator
//! (tests, `--demo`) in the `wxcard-sim` crate (sim/). ARCHITECTURE.md is
//! the map.

/// The commit this build came from (build.rs: `WXCARDD_COMMIT`, else the checkout's HEAD,
/// else "unknown"): in `wxcardd_build_info`, `--version` and the support report.
pub const COMMIT: &str = env!("WXCARDD_COMMIT");

/// What `--version` prints after the program's name: `0.1.0 (commit 1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WXCARDD_COMMIT"),
    ")"
);

pub mod api;
pub mod config;
pub mod control;
pub mod daemon;
pub mod memory;
pub mod metrics;
pub mod probe;
pub mod report;
pub mod service;
pub mod setup;
pub mod store;
