//! Duplicate suppression: a scanner that reads the same code twice in quick succession (a
//! phone held under a presentation scanner, a double trigger pull) must produce one scan.
//!
//! The window is measured from the previous read of the same code, not from the one
//! reported: a code that keeps arriving closer together than the window is reported once,
//! however long it stays under the scanner. Time is passed in, so tests use fixed instants.

use std::time::{Duration, Instant};

use super::Code;

/// Remembers the last code one scanner read.
#[derive(Debug, Clone)]
pub struct Dedupe {
    window: Duration,
    last: Option<(Code, Instant)>,
}

impl Dedupe {
    /// Suppresses repeats within `window`; a zero window suppresses nothing.
    pub fn new(window: Duration) -> Self {
        Dedupe { window, last: None }
    }

    /// Whether `code`, read at `at`, should be reported.
    pub fn admit(&mut self, code: &Code, at: Instant) -> bool {
        if let Some((last, seen)) = &mut self.last {
            if last == code && at.saturating_duration_since(*seen) < self.window {
                *seen = at;
                return false;
            }
        }
        self.last = Some((code.clone(), at));
        true
    }

    /// Forgets the last code (the device went away: a read after it comes back is new).
    pub fn clear(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> Code {
        Code::try_from(s).unwrap()
    }

    #[test]
    fn repeats_within_the_window_are_reported_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Dedupe::new(ms(300));
        assert!(d.admit(&code("123"), t0));
        assert!(!d.admit(&code("123"), t0 + ms(299)));
        // The window slides with every repeat.
        assert!(!d.admit(&code("123"), t0 + ms(500)));
        assert!(d.admit(&code("123"), t0 + ms(800)));
        assert!(d.admit(&code("456"), t0 + ms(801)));
        assert!(d.admit(&code("123"), t0 + ms(802)));
        d.clear();
        assert!(d.admit(&code("123"), t0 + ms(803)));
    }

    #[test]
    fn zero_window_suppresses_nothing() {
        let t0 = Instant::now();
        let mut d = Dedupe::new(Duration::ZERO);
        assert!(d.admit(&code("1"), t0));
        assert!(d.admit(&code("1"), t0));
    }
}
