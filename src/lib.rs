//! wxcardd: the till daemon for WeChat member cards.
//!
//! # Layout
//! - [`api`]: the typed wxcard HTTP client (requests, responses, statuses, errors).
//! - [`sim`]: a stateful simulator of the wxcard backend, for tests and the demo.
//! - [`store`]: sled-backed card cache and durable outbox.
//! - [`config`]: the daemon's typed TOML configuration.
//!
//! Hardware (scanners in, screens out) lives in the `wxcard-hal` crate.

pub mod api;
pub mod config;
pub mod control;
pub mod daemon;
pub mod probe;
pub mod service;
pub mod sim;
pub mod store;
