//! The local control socket for the POS app and `wxcardctl`.
//!
//! - [`protocol`]: JSON lines, a VERSION line on connect, requests with ids (docs/protocol.md).
//! - [`server`]: the Unix socket server, peer-credential checks, bounded subscribers.
//! - `socket_io`: a connection registered for reading only (a peer reading its lines does not
//!   wake the daemon).
//! - [`client`]: a blocking client (`wxcardctl`, tests).
//! - [`web`]: the same protocol over a loopback WebSocket for browser POS apps.

pub mod client;
pub mod human;
pub mod protocol;
pub mod server;
mod socket_io;
pub mod web;
