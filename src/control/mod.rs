//! The local control socket for the POS app and `wxcardctl`.
//!
//! (In progress: the protocol is here; the server lands with the daemon's engine.)

pub mod protocol;
