//! The circuit breaker: after a few consecutive transport failures, stop making the cashier
//! wait on a network that is down.
//!
//! Closed: lookups go to the backend. After `failures_to_open` consecutive failures it opens:
//! lookups answer from the cache at once, and only the background probe touches the network.
//! The first success (probe, replay or lookup) closes it. Pure logic with the time passed in,
//! so it is tested without sleeping.

use std::time::{Duration, Instant};

/// The breaker's state as others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// The backend is answering; requests go to the network.
    Closed,
    /// The backend is down; requests do not wait on the network.
    Open {
        /// When it opened.
        since: Instant,
    },
}

/// An online/offline change, for the daemon's event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The breaker opened.
    WentOffline,
    /// The breaker closed after being open this long.
    WentOnline {
        /// How long the backend was considered down.
        offline_for: Duration,
    },
}

/// A consecutive-failure circuit breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    failures_to_open: u32,
    consecutive_failures: u32,
    state: BreakerState,
}

impl Breaker {
    /// A closed breaker that opens after `failures_to_open` consecutive failures (at least 1).
    pub fn new(failures_to_open: u32) -> Self {
        Breaker {
            failures_to_open: failures_to_open.max(1),
            consecutive_failures: 0,
            state: BreakerState::Closed,
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// True when requests should go to the network.
    pub fn is_closed(&self) -> bool {
        self.state == BreakerState::Closed
    }

    /// Consecutive failures seen since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Records an answer from the backend (any well-formed answer, including a business
    /// status: the backend is reachable).
    pub fn record_success(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = 0;
        match self.state {
            BreakerState::Closed => None,
            BreakerState::Open { since } => {
                self.state = BreakerState::Closed;
                Some(Transition::WentOnline {
                    offline_for: now.saturating_duration_since(since),
                })
            }
        }
    }

    /// Opens the breaker at once, whatever the count (the backend refused the credentials:
    /// asking again with the same token cannot help). The next success closes it.
    pub fn trip(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.state == BreakerState::Closed {
            self.state = BreakerState::Open { since: now };
            return Some(Transition::WentOffline);
        }
        None
    }

    /// Records a transport failure or a server fault.
    pub fn record_failure(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.state == BreakerState::Closed && self.consecutive_failures >= self.failures_to_open
        {
            self.state = BreakerState::Open { since: now };
            return Some(Transition::WentOffline);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_closes_on_success() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3);
        assert_eq!(b.record_failure(t0), None);
        assert_eq!(b.record_failure(t0), None);
        assert!(b.is_closed());
        assert_eq!(b.record_failure(t0), Some(Transition::WentOffline));
        assert_eq!(b.state(), BreakerState::Open { since: t0 });
        // Further failures do not re-announce.
        assert_eq!(b.record_failure(t0), None);
        let later = t0 + Duration::from_secs(42);
        assert_eq!(
            b.record_success(later),
            Some(Transition::WentOnline {
                offline_for: Duration::from_secs(42)
            })
        );
        assert!(b.is_closed());
        assert_eq!(b.record_success(later), None);
    }

    #[test]
    fn a_trip_opens_at_once_and_a_success_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3);
        assert_eq!(b.trip(t0), Some(Transition::WentOffline));
        assert_eq!(b.trip(t0), None);
        assert!(!b.is_closed());
        assert!(matches!(
            b.record_success(t0),
            Some(Transition::WentOnline { .. })
        ));
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2);
        b.record_failure(t0);
        b.record_success(t0);
        assert_eq!(b.record_failure(t0), None);
        assert!(b.is_closed());
        assert_eq!(b.record_failure(t0), Some(Transition::WentOffline));
    }
}
