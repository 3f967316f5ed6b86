//! Pay codes: 18-digit numeric codes with an expiry, remembered after they expire.
//!
//! getpaycode hands out a fresh code each call; the simulator keeps every code it issued
//! (up to a cap, oldest forgotten first) so a later check of an expired code can answer 606
//! rather than "unknown". Time is passed in, so expiry is tested without waiting.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;

/// How many issued codes are remembered before the oldest are forgotten.
pub const REMEMBERED_CODES: usize = 100_000;

/// The length of a pay code, as WeChat's: 18 digits.
pub const PAY_CODE_LEN: usize = 18;

/// The outcome of checking a pay code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayCodeCheck {
    /// Issued and not yet expired.
    Valid {
        wx_code: String,
        remaining: Duration,
    },
    /// Issued, and expired: answers 606.
    Expired { wx_code: String },
    /// Never issued (or forgotten).
    Unknown,
}

#[derive(Debug, Clone)]
struct Issued {
    wx_code: String,
    /// `None` for a TTL too large to add to the clock: never expires.
    expires: Option<Instant>,
}

/// Issued pay codes.
#[derive(Debug)]
pub struct PayCodes {
    ttl: Duration,
    issued: HashMap<String, Issued>,
    order: VecDeque<String>,
}

impl PayCodes {
    pub fn new(ttl: Duration) -> PayCodes {
        PayCodes {
            ttl,
            issued: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a new code for `wx_code` valid until `now + ttl`.
    pub fn issue(&mut self, wx_code: &str, now: Instant) -> String {
        let mut rng = rand::rng();
        let code = loop {
            // WeChat pay codes start with 10-15; the rest is random.
            let mut code = format!("1{}", rng.random_range(0..=5));
            while code.len() < PAY_CODE_LEN {
                code.push(char::from(b'0' + rng.random_range(0..10u8)));
            }
            if !self.issued.contains_key(&code) {
                break code;
            }
        };
        if self.order.len() >= REMEMBERED_CODES
            && let Some(old) = self.order.pop_front()
        {
            self.issued.remove(&old);
        }
        self.issued.insert(
            code.clone(),
            Issued {
                wx_code: wx_code.to_owned(),
                expires: now.checked_add(self.ttl),
            },
        );
        self.order.push_back(code.clone());
        code
    }

    /// Checks a code at time `now`.
    pub fn check(&self, code: &str, now: Instant) -> PayCodeCheck {
        match self.issued.get(code) {
            None => PayCodeCheck::Unknown,
            Some(i) => match i.expires {
                Some(expires) if now >= expires => PayCodeCheck::Expired {
                    wx_code: i.wx_code.clone(),
                },
                expires => PayCodeCheck::Valid {
                    wx_code: i.wx_code.clone(),
                    remaining: expires.map_or(Duration::MAX, |e| e - now),
                },
            },
        }
    }

    /// Forgets every code.
    pub fn clear(&mut self) {
        self.issued.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_18_digits_and_expire() {
        let mut p = PayCodes::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let code = p.issue("8123", t0);
        assert_eq!(code.len(), PAY_CODE_LEN);
        assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
        assert!(code.starts_with('1'));
        assert_eq!(
            p.check(&code, t0 + Duration::from_secs(59)),
            PayCodeCheck::Valid {
                wx_code: "8123".into(),
                remaining: Duration::from_secs(1)
            }
        );
        assert_eq!(
            p.check(&code, t0 + Duration::from_secs(60)),
            PayCodeCheck::Expired {
                wx_code: "8123".into()
            }
        );
        assert_eq!(p.check("123456789012345678", t0), PayCodeCheck::Unknown);
        let second = p.issue("8123", t0);
        assert_ne!(code, second);
        p.clear();
        assert_eq!(p.check(&code, t0), PayCodeCheck::Unknown);
    }

    #[test]
    fn a_huge_ttl_never_expires_and_does_not_overflow() {
        let mut p = PayCodes::new(Duration::MAX);
        let t0 = Instant::now();
        let code = p.issue("8123", t0);
        assert!(matches!(
            p.check(&code, t0 + Duration::from_secs(1 << 40)),
            PayCodeCheck::Valid { .. }
        ));
    }
}
