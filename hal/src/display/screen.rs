//! What a customer display shows, as values the daemon builds.
//!
//! Money, points and discounts arrive as the decimal text the backend sent (`"5000.00"`,
//! `"0.88"`): hal does not depend on the daemon's decimal types, and the view decorates that
//! text for the customer (`¥5,000.00`, `8.8折`) without changing a digit (see
//! [`super::format`]). A card number is
//! cut to its last four characters when the summary is built, so no backend can show (or
//! log) the full number. A pay code carries its QR matrix, encoded once, and its expiry
//! instant; the countdown is computed from a `now` the caller passes in, which keeps the
//! rendering testable without a clock.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::driver;
use super::qr::{QrError, QrMatrix};

/// One screen of the customer display.
#[derive(Debug, Clone, Default)]
pub enum Screen {
    /// Nothing at all (display asleep, or between customers when the shop wants it dark).
    Blank,
    /// The welcome screen with the shop's name.
    #[default]
    Idle,
    /// A member card after a scan.
    Card(CardSummary),
    /// A pay code for the customer's phone or the scanner.
    PayCode(PayCode),
    /// An error or a notice.
    Message(Message),
}

/// A member card as the customer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSummary {
    /// The card number, masked.
    pub card: MaskedCardNumber,
    /// Balance as the backend sent it, a decimal text, e.g. `"5000.00"` (shown `¥5,000.00`).
    pub balance: String,
    /// Points as the backend sent them; `None` when it did not send any (the line is left
    /// out rather than shown as a dash that reads like zero).
    pub points: Option<String>,
    /// Whether the member gets member prices.
    pub member_price: bool,
    /// The discount rate as the backend sent it, a decimal text, e.g. `"0.95"` (shown as
    /// `9.5折` or `5% off`; no line for `"1.00"` or a rate outside (0, 1]).
    pub discount: String,
}

/// A card number of which only the last four characters are kept.
///
/// Numbers shorter than eight characters keep nothing: their last four would be half the
/// number. Only ASCII letters and digits survive; anything else in an untrusted number is
/// dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct MaskedCardNumber {
    last_four: String,
}

impl MaskedCardNumber {
    /// Masks `full`; the full number is not kept.
    pub fn new(full: &str) -> Self {
        let kept: Vec<char> = full.chars().filter(char::is_ascii_alphanumeric).collect();
        let last_four = if kept.len() >= 8 {
            kept[kept.len() - 4..].iter().collect()
        } else {
            String::new()
        };
        Self { last_four }
    }

    /// The last four characters, or an empty string when the number was too short to show any.
    pub fn last_four(&self) -> &str {
        &self.last_four
    }
}

impl fmt::Display for MaskedCardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.last_four.is_empty() {
            f.write_str("**** ****")
        } else {
            write!(f, "**** {}", self.last_four)
        }
    }
}

impl fmt::Debug for MaskedCardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MaskedCardNumber({self})")
    }
}

/// A pay code, its QR matrix and when it stops being valid.
#[derive(Clone)]
pub struct PayCode {
    code: Arc<str>,
    expires_at: Instant,
    lifetime: Duration,
    qr: Arc<QrMatrix>,
}

impl PayCode {
    /// Encodes the QR matrix once; every backend draws this same matrix. `expires_at` is on
    /// tokio's clock ([`driver::now`]), as every `now` the displays are given: the lifetime
    /// is measured on that clock too, so the bar starts full even when tokio's clock is
    /// paused and moved (tests) and stands apart from the std clock.
    pub fn new(code: &str, expires_at: Instant) -> Result<Self, QrError> {
        let qr = QrMatrix::encode(code)?;
        // Whole seconds, rounded up: the time it took to get here does not shorten it.
        let left = expires_at.saturating_duration_since(driver::now());
        let lifetime = Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0));
        Ok(Self {
            code: code.into(),
            expires_at,
            lifetime,
            qr: Arc::new(qr),
        })
    }

    /// The code as the backend sent it.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// When the code stops being valid.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// How long the code was valid for when it was made (whole seconds, rounded up); the
    /// countdown bar shows the share of it left.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The encoded matrix.
    pub fn qr(&self) -> &QrMatrix {
        &self.qr
    }

    /// Time left at `now` (zero once expired).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.expires_at.saturating_duration_since(now)
    }

    /// Whether the code is no longer valid at `now`; an expired code is never drawn.
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires_at
    }

    /// The code in groups of four, the way a cashier reads it out.
    pub fn grouped_digits(&self) -> String {
        let mut out = String::with_capacity(self.code.len() + self.code.len() / 4);
        for (i, c) in self.code.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    }
}

impl fmt::Debug for PayCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A pay code is a payment credential: logs get its length only.
        f.debug_struct("PayCode")
            .field(
                "code",
                &format_args!("<{} chars>", self.code.chars().count()),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An error or a notice on the customer display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The backend cannot be reached: the configured "offline: pay code unavailable" text.
    Offline,
    /// An error in the caller's words (already translated for the customer).
    Error(String),
    /// A neutral notice.
    Info(String),
}

/// Formats a countdown as `m:ss`, rounding up so the display reaches `0:00` exactly at expiry.
pub fn format_countdown(remaining: Duration) -> String {
    let mut secs = remaining.as_secs();
    if remaining.subsec_nanos() > 0 {
        secs += 1;
    }
    format!("{}:{:02}", secs / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_number_keeps_only_last_four() {
        let m = MaskedCardNumber::new("6222 0212 3456 7890");
        assert_eq!(m.last_four(), "7890");
        assert_eq!(m.to_string(), "**** 7890");
        assert!(!format!("{m:?}").contains("6222"));
        assert_eq!(MaskedCardNumber::new("1234567").to_string(), "**** ****");
        assert_eq!(MaskedCardNumber::new("").to_string(), "**** ****");
        assert_eq!(
            MaskedCardNumber::new("ab\u{1b}[2Jcdefgh").last_four(),
            "efgh"
        );
    }

    #[test]
    fn countdown_rounds_up_and_stops_at_zero() {
        let t0 = Instant::now();
        let code = PayCode::new("12345678901234567", t0 + Duration::from_secs(90)).unwrap();
        assert_eq!(format_countdown(code.remaining(t0)), "1:30");
        assert_eq!(
            format_countdown(code.remaining(t0 + Duration::from_millis(500))),
            "1:30"
        );
        assert_eq!(
            format_countdown(code.remaining(t0 + Duration::from_millis(1000))),
            "1:29"
        );
        assert_eq!(
            format_countdown(code.remaining(t0 + Duration::from_secs(89))),
            "0:01"
        );
        assert!(!code.is_expired(t0 + Duration::from_millis(89_999)));
        assert!(code.is_expired(t0 + Duration::from_secs(90)));
        assert_eq!(
            format_countdown(code.remaining(t0 + Duration::from_secs(500))),
            "0:00"
        );
    }

    #[test]
    fn pay_code_debug_hides_the_code_and_digits_are_grouped() {
        let code = PayCode::new("123456789012345678", Instant::now()).unwrap();
        // Not even a 10-digit run of it (the expiry instant prints digits of its own, so a
        // short run like "1234" could appear there by chance).
        let printed = format!("{code:?}");
        for run in ["123456789012345678", "1234567890", "9012345678"] {
            assert!(!printed.contains(run), "{printed}");
        }
        assert_eq!(code.grouped_digits(), "1234 5678 9012 3456 78");
    }
}
