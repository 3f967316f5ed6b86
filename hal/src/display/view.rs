//! The words and layout roles of a screen, shared by every backend.
//!
//! A [`Screen`] plus the configured [`Labels`] and a `now` become a [`View`]: a heading, a
//! few label/value rows, and optionally the QR with its digits and countdown. Backends only
//! decide where those go (pixels, terminal cells, HTML), so the same screen says the same
//! thing everywhere, and an expired pay code turns into a message here, once, for all.

use std::time::Instant;

use serde::Deserialize;

use super::format::{self, Discount, LabelLanguage};
use super::qr::QrMatrix;
use super::screen::{Message, Screen, format_countdown};

/// The texts a customer reads. Defaults are bilingual (Chinese, then English); a shop can
/// replace any of them in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Labels {
    /// The language these labels are in: `zh` writes a discount as `8.8折`, `en` as
    /// `12% off`, `both` (the default, for the bilingual defaults) as `8.8折 · 12% off`.
    pub language: LabelLanguage,
    /// Currency sign put before money (`¥5,000.00`).
    pub currency: String,
    /// Heading of the idle screen, shown above the shop name.
    pub welcome: String,
    /// Heading of the card summary.
    pub card: String,
    /// Row label for the balance.
    pub balance: String,
    /// Row label for the points.
    pub points: String,
    /// Row label for member pricing.
    pub member_price: String,
    /// Value shown when member pricing applies.
    pub yes: String,
    /// Value shown when it does not.
    pub no: String,
    /// Row label for the discount.
    pub discount: String,
    /// Heading of the pay-code screen.
    pub pay_code: String,
    /// Text before the countdown.
    pub expires_in: String,
    /// Shown instead of a pay code whose time is up.
    pub expired: String,
    /// The offline message.
    pub offline: String,
    /// Heading of an error message.
    pub error: String,
    /// Heading of a notice.
    pub notice: String,
}

impl Default for Labels {
    fn default() -> Self {
        Self {
            language: LabelLanguage::Both,
            currency: "¥".into(),
            welcome: "欢迎光临 Welcome".into(),
            card: "会员卡 Member card".into(),
            balance: "余额 Balance".into(),
            points: "积分 Points".into(),
            member_price: "会员价 Member price".into(),
            yes: "是 Yes".into(),
            no: "否 No".into(),
            discount: "折扣 Discount".into(),
            pay_code: "付款码 Pay code".into(),
            expires_in: "有效期 Expires in".into(),
            expired: "付款码已过期 Pay code expired".into(),
            offline: "离线：付款码不可用 Offline: pay code unavailable".into(),
            error: "错误 Error".into(),
            notice: "提示 Notice".into(),
        }
    }
}

/// Everything textual a backend needs besides the screen: the shop name and the labels.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Texts {
    /// Shown on the idle screen.
    pub shop_name: String,
    /// The labels.
    pub labels: Labels,
}

impl Default for Texts {
    fn default() -> Self {
        Self {
            shop_name: "wxcard".into(),
            labels: Labels::default(),
        }
    }
}

/// How a view should feel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Ordinary content.
    Normal,
    /// Something went wrong (error, offline, expired).
    Alert,
}

/// One label/value row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What the value is.
    pub label: String,
    /// The value.
    pub value: String,
}

/// The QR part of a pay-code view.
#[derive(Debug, Clone, Copy)]
pub struct QrPart<'a> {
    /// The matrix.
    pub matrix: &'a QrMatrix,
    /// Raw code (for backends that label their output with it).
    pub code: &'a str,
}

/// A screen reduced to text roles.
#[derive(Debug, Clone)]
pub struct View<'a> {
    /// Which screen kind it came from (`blank`, `idle`, `card`, `paycode`, `expired` (a pay
    /// code whose time is up), `offline`, `message`).
    pub kind: &'static str,
    /// Normal or alert colours.
    pub tone: Tone,
    /// The big line at the top (empty for a blank screen).
    pub heading: String,
    /// Lines below the heading.
    pub rows: Vec<Row>,
    /// The code, when a valid pay code is shown.
    pub qr: Option<QrPart<'a>>,
    /// The countdown line (`"有效期 Expires in 1:30"`), with a pay code.
    pub countdown: Option<String>,
    /// Milliseconds left, with a pay code (for backends that count down by themselves).
    pub remaining_ms: Option<u64>,
    /// Milliseconds the pay code was valid for when it was made, with a pay code (the
    /// countdown bar is `remaining_ms / lifetime_ms` full).
    pub lifetime_ms: Option<u64>,
    /// The pay code grouped in fours (empty without one).
    pub digits: String,
    /// The shop's name (the idle and card screens carry it in their header band).
    pub shop: String,
}

impl<'a> View<'a> {
    /// Reduces `screen` at `now`.
    pub fn of(screen: &'a Screen, texts: &Texts, now: Instant) -> View<'a> {
        let l = &texts.labels;
        let mut v = View {
            kind: "blank",
            tone: Tone::Normal,
            heading: String::new(),
            rows: Vec::new(),
            qr: None,
            countdown: None,
            remaining_ms: None,
            lifetime_ms: None,
            digits: String::new(),
            shop: texts.shop_name.clone(),
        };
        match screen {
            Screen::Blank => {}
            Screen::Idle => {
                v.kind = "idle";
                v.heading = l.welcome.clone();
                v.rows.push(Row {
                    label: String::new(),
                    value: texts.shop_name.clone(),
                });
            }
            Screen::Card(c) => {
                v.kind = "card";
                v.heading = l.card.clone();
                let row = |label: &str, value: String| Row {
                    label: label.to_owned(),
                    value,
                };
                v.rows = vec![
                    row("", c.card.to_string()),
                    row(&l.balance, format::money(&c.balance, &l.currency)),
                ];
                // No points line when the backend did not say: "-" would read as zero.
                if let Some(points) = &c.points {
                    v.rows.push(row(&l.points, points.clone()));
                }
                v.rows.push(row(
                    &l.member_price,
                    if c.member_price {
                        l.yes.clone()
                    } else {
                        l.no.clone()
                    },
                ));
                // No line for full price (`1.00`), nor for a rate that makes no sense.
                if let Some(d) = Discount::from_rate(&c.discount) {
                    v.rows.push(row(&l.discount, d.text(l.language)));
                }
            }
            Screen::PayCode(p) if p.is_expired(now) => {
                v.kind = "expired";
                v.tone = Tone::Alert;
                v.heading = l.expired.clone();
            }
            Screen::PayCode(p) => {
                v.kind = "paycode";
                v.heading = l.pay_code.clone();
                let remaining = p.remaining(now);
                v.countdown = Some(format!("{} {}", l.expires_in, format_countdown(remaining)));
                v.remaining_ms = Some(u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX));
                v.lifetime_ms = Some(u64::try_from(p.lifetime().as_millis()).unwrap_or(u64::MAX));
                v.digits = p.grouped_digits();
                v.qr = Some(QrPart {
                    matrix: p.qr(),
                    code: p.code(),
                });
            }
            Screen::Message(m) => {
                v.kind = "message";
                match m {
                    Message::Offline => {
                        v.kind = "offline";
                        v.tone = Tone::Alert;
                        v.heading = l.offline.clone();
                    }
                    Message::Error(text) => {
                        v.tone = Tone::Alert;
                        v.heading = l.error.clone();
                        v.rows.push(Row {
                            label: String::new(),
                            value: text.clone(),
                        });
                    }
                    Message::Info(text) => {
                        v.heading = l.notice.clone();
                        v.rows.push(Row {
                            label: String::new(),
                            value: text.clone(),
                        });
                    }
                }
            }
        }
        v.sanitize();
        v
    }

    /// Escapes control characters, escape sequences and bidi overrides in every text, and
    /// caps its length: messages and values may come from the backend or the POS app, and a
    /// terminal display would obey an escape sequence (see [`crate::text`]).
    fn sanitize(&mut self) {
        let clean = |s: &mut String| {
            if let std::borrow::Cow::Owned(o) = crate::text::untrusted(s) {
                *s = o;
            }
        };
        clean(&mut self.heading);
        clean(&mut self.digits);
        clean(&mut self.shop);
        for row in &mut self.rows {
            clean(&mut row.label);
            clean(&mut row.value);
        }
    }

    /// Each row as one line of text (`"label  value"`, or just the value).
    pub fn row_lines(&self) -> impl Iterator<Item = String> + '_ {
        self.rows.iter().map(|r| {
            if r.label.is_empty() {
                r.value.clone()
            } else {
                format!("{}  {}", r.label, r.value)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::{CardSummary, MaskedCardNumber};

    fn card(points: Option<&str>) -> Screen {
        card_with("128.50", "0.95", points)
    }

    fn card_with(balance: &str, discount: &str, points: Option<&str>) -> Screen {
        Screen::Card(CardSummary {
            card: MaskedCardNumber::new("M0001001A"),
            balance: balance.into(),
            points: points.map(str::to_owned),
            member_price: true,
            discount: discount.into(),
        })
    }

    fn value_of(view: &View<'_>, label: &str) -> Option<String> {
        view.rows
            .iter()
            .find(|r| r.label == label)
            .map(|r| r.value.clone())
    }

    #[test]
    fn the_card_screen_shows_money_with_sign_and_groups() {
        let texts = Texts::default();
        let now = Instant::now();
        for (sent, shown) in [
            ("5000.00", "¥5,000.00"),
            ("-1234567", "-¥1,234,567"),
            ("0.5", "¥0.5"),
        ] {
            let screen = card_with(sent, "1", None);
            let view = View::of(&screen, &texts, now);
            assert_eq!(
                value_of(&view, &texts.labels.balance).as_deref(),
                Some(shown)
            );
        }
        let mut hk = Texts::default();
        hk.labels.currency = "HK$".into();
        let screen = card_with("12000.5", "1", None);
        let view = View::of(&screen, &hk, now);
        assert_eq!(
            value_of(&view, &hk.labels.balance).as_deref(),
            Some("HK$12,000.5")
        );
    }

    #[test]
    fn the_discount_is_written_in_the_labels_language_and_left_out_at_full_price() {
        let now = Instant::now();
        let mut texts = Texts::default();
        for (language, rate, shown) in [
            (LabelLanguage::Zh, "0.88", Some("8.8折")),
            (LabelLanguage::En, "0.88", Some("12% off")),
            (LabelLanguage::Zh, "0.95", Some("9.5折")),
            (LabelLanguage::En, "0.95", Some("5% off")),
            (LabelLanguage::Both, "0.88", Some("8.8折 · 12% off")),
            (LabelLanguage::Zh, "1.00", None),
            (LabelLanguage::En, "1", None),
            (LabelLanguage::Both, "3.0", None),
            (LabelLanguage::Both, "0", None),
        ] {
            texts.labels.language = language;
            let screen = card_with("1.00", rate, None);
            let view = View::of(&screen, &texts, now);
            assert_eq!(
                value_of(&view, &texts.labels.discount).as_deref(),
                shown,
                "{language:?} {rate}"
            );
        }
    }

    #[test]
    fn the_card_number_on_the_display_is_the_one_masked_form() {
        let screen = Screen::Card(CardSummary {
            card: MaskedCardNumber::new("6222021234567890"),
            balance: "1".into(),
            points: None,
            member_price: false,
            discount: "1".into(),
        });
        let view = View::of(&screen, &Texts::default(), Instant::now());
        assert_eq!(view.rows[0].value, "**** 7890");
        assert!(view.row_lines().all(|l| !l.contains("62220212")));
    }

    #[test]
    fn points_are_shown_when_given_and_their_line_left_out_otherwise() {
        let texts = Texts::default();
        let now = Instant::now();
        let label = &texts.labels.points;
        let (some, none) = (card(Some("1200")), card(None));
        let with = View::of(&some, &texts, now);
        assert!(
            with.rows
                .iter()
                .any(|r| &r.label == label && r.value == "1200")
        );
        let without = View::of(&none, &texts, now);
        assert!(without.rows.iter().all(|r| &r.label != label));
        assert!(without.rows.iter().all(|r| r.value != "-"));
        assert_eq!(without.rows.len() + 1, with.rows.len());
    }
}

#[cfg(test)]
mod sanitize_tests {
    use super::*;

    #[test]
    fn a_message_reaches_every_display_escaped_and_capped() {
        let hostile = format!(
            "lost\n<0>FORGED \u{1b}[2J\u{85}\u{202e}x{}",
            "y".repeat(500)
        );
        let screen = Screen::Message(Message::Error(hostile));
        let view = View::of(&screen, &Texts::default(), Instant::now());
        let value = &view.rows[0].value;
        assert!(!value.chars().any(crate::text::is_unsafe), "{value:?}");
        assert!(
            value.starts_with("lost\\u{a}<0>FORGED \\u{1b}[2J"),
            "{value:?}"
        );
        assert!(
            value.ends_with('…') && !value.contains(&"y".repeat(300)),
            "{value}"
        );
    }
}
