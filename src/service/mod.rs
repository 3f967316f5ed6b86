//! The card service: the one place that decides whether an answer comes from the network or
//! the cache, and whether a write is sent now or queued.
//!
//! (In progress: the breaker and the replay backoff are here; the lookup/write policy on top
//! of the store lands with the store.)

pub mod backoff;
pub mod breaker;
