//! Money and discounts the way a customer reads them, from the decimal text the backend sent.
//!
//! The daemon keeps amounts as exact decimals and hands the display their text (`"5000.00"`,
//! `"0.88"`). Going through a float would change digits a customer may compare with a
//! receipt, so everything here works on the digits of that text: money is only decorated
//! (sign, currency sign, thousands separators), and a discount rate is turned into `8.8折` or
//! `12% off` by moving the decimal point and one exact integer subtraction.

use serde::Deserialize;

/// Which language the configured labels are in; decides how a discount is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelLanguage {
    /// Chinese: a discount reads `8.8折` (the share of the price paid, in tenths).
    Zh,
    /// English: a discount reads `12% off` (the share taken off).
    En,
    /// Both, as the default bilingual labels: `8.8折 · 12% off`.
    #[default]
    Both,
}

/// A decimal text as the spec allows it: an optional `-`, digits, optionally `.` and digits.
struct DecimalText<'a> {
    negative: bool,
    int: &'a str,
    frac: Option<&'a str>,
}

impl<'a> DecimalText<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let (negative, rest) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = match rest.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (rest, None),
        };
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        (digits(int) && frac.is_none_or(digits)).then_some(Self {
            negative,
            int,
            frac,
        })
    }
}

/// `amount` with `currency` in front and the integer part grouped by thousands:
/// `"5000.00"` -> `"¥5,000.00"`, `"-1234"` -> `"-¥1,234"`. Exactly the digits that came in,
/// in the same order: grouping only inserts commas, and no fraction is added or dropped.
/// Text that is not a plain decimal number is shown as it came (it is still the backend's
/// answer, and a guess would be worse).
pub fn money(amount: &str, currency: &str) -> String {
    let Some(d) = DecimalText::parse(amount) else {
        return amount.to_owned();
    };
    let mut out = String::with_capacity(amount.len() + currency.len() + amount.len() / 3 + 1);
    if d.negative {
        out.push('-');
    }
    out.push_str(currency);
    for (i, c) in d.int.chars().enumerate() {
        if i > 0 && (d.int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(frac) = d.frac {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// A discount rate (the share of the price paid) in both customer forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discount {
    /// Tenths of the price paid: `"8.8"` for 0.88 (shown as `8.8折`).
    pub zhe: String,
    /// Percent taken off: `"12"` for 0.88 (shown as `12% off`).
    pub percent_off: String,
}

impl Discount {
    /// The rate as the backend sent it (`"0.88"`). `None` for no discount (`1`, `1.00`) and
    /// for anything that is not a sensible rate (not a plain decimal, zero or below, above
    /// one, or more than 30 decimal places): a discount line that says nonsense is worse
    /// than none.
    pub fn from_rate(rate: &str) -> Option<Self> {
        let d = DecimalText::parse(rate)?;
        if d.negative {
            return None;
        }
        let frac = d.frac.unwrap_or("").trim_end_matches('0');
        let int = d.int.trim_start_matches('0');
        if int.len() > 1 || frac.len() > 30 {
            return None;
        }
        // rate = n / 10^scale exactly; n fits: at most 31 digits < 2^127.
        let scale = u32::try_from(frac.len()).ok()?;
        let n: u128 = format!("{int}{frac}").parse().ok()?;
        let one = 10u128.pow(scale);
        if n == 0 || n >= one {
            return None;
        }
        Some(Self {
            zhe: shifted(n, scale, 1),
            percent_off: shifted(one - n, scale, 2),
        })
    }

    /// The discount written for `language`.
    pub fn text(&self, language: LabelLanguage) -> String {
        match language {
            LabelLanguage::Zh => format!("{}折", self.zhe),
            LabelLanguage::En => format!("{}% off", self.percent_off),
            LabelLanguage::Both => format!("{}折 · {}% off", self.zhe, self.percent_off),
        }
    }
}

/// `n / 10^scale * 10^shift` as a decimal text without trailing zeros (`n` > 0).
fn shifted(n: u128, scale: u32, shift: u32) -> String {
    let (n, places) = if scale >= shift {
        (n, scale - shift)
    } else {
        (n * 10u128.pow(shift - scale), 0)
    };
    let digits = format!("{n:0>width$}", width = places as usize + 1);
    let (int, frac) = digits.split_at(digits.len() - places as usize);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn money_gets_the_sign_and_groups_and_keeps_every_digit() {
        for (amount, shown) in [
            ("5000.00", "¥5,000.00"),
            ("128.50", "¥128.50"),
            ("0.5", "¥0.5"),
            ("3.0", "¥3.0"),
            ("999", "¥999"),
            ("1000", "¥1,000"),
            ("1234567.891", "¥1,234,567.891"),
            ("-1234.5", "-¥1,234.5"),
            ("-5", "-¥5"),
            ("12345678901234567890.12", "¥12,345,678,901,234,567,890.12"),
        ] {
            assert_eq!(money(amount, "¥"), shown, "{amount}");
        }
        assert_eq!(money("5000", "HK$"), "HK$5,000");
    }

    #[test]
    fn money_that_is_not_a_plain_decimal_is_shown_as_it_came() {
        for odd in [
            "", "-", "1.", ".5", "1e3", "+5", "1,000", "abc", "1.2.3", "--1",
        ] {
            assert_eq!(money(odd, "¥"), odd);
        }
    }

    #[test]
    fn discounts_read_as_zhe_and_percent_off() {
        for (rate, zhe, off) in [
            ("0.95", "9.5折", "5% off"),
            ("0.88", "8.8折", "12% off"),
            ("0.9", "9折", "10% off"),
            ("0.90", "9折", "10% off"),
            ("0.875", "8.75折", "12.5% off"),
            ("0.05", "0.5折", "95% off"),
            ("0.5", "5折", "50% off"),
            ("00.8", "8折", "20% off"),
        ] {
            let d = Discount::from_rate(rate).unwrap();
            assert_eq!(d.text(LabelLanguage::Zh), zhe, "{rate}");
            assert_eq!(d.text(LabelLanguage::En), off, "{rate}");
            assert_eq!(
                d.text(LabelLanguage::Both),
                format!("{zhe} · {off}"),
                "{rate}"
            );
        }
    }

    #[test]
    fn no_discount_and_nonsense_rates_give_no_line() {
        for rate in [
            "1", "1.00", "1.0", "0", "0.00", "-0.5", "1.01", "3.0", "95", "", "abc", "0.9x", ".9",
        ] {
            assert_eq!(Discount::from_rate(rate), None, "{rate}");
        }
        let too_precise = format!("0.{}", "1".repeat(31));
        assert_eq!(Discount::from_rate(&too_precise), None);
        let precise = format!("0.{}", "9".repeat(30));
        assert!(Discount::from_rate(&precise).is_some());
    }

    fn decimal() -> impl Strategy<Value = String> {
        "-?[0-9]{1,30}(\\.[0-9]{1,28})?"
    }

    proptest! {
        #[test]
        fn money_only_adds_sign_and_commas(amount in decimal()) {
            let shown = money(&amount, "¥");
            let (sign, rest) = match amount.strip_prefix('-') {
                Some(r) => ("-", r),
                None => ("", amount.as_str()),
            };
            let body = shown.strip_prefix(&format!("{sign}¥")).expect("sign then currency");
            prop_assert_eq!(body.replace(',', ""), rest);
            // Commas only in the integer part, every three digits from the point.
            let int = body.split('.').next().unwrap();
            for (i, group) in int.split(',').enumerate() {
                if i == 0 {
                    prop_assert!((1..=3).contains(&group.len()));
                } else {
                    prop_assert_eq!(group.len(), 3);
                }
            }
            prop_assert!(!body.split('.').nth(1).unwrap_or("").contains(','));
        }

        #[test]
        fn zhe_and_percent_off_add_up_to_ten_and_a_hundred(
            int_digits in "[0-9]{1,6}",
            scale in 1u32..=6,
        ) {
            // Rates with up to six places: k / 10^scale, 0 < k < 10^scale.
            let one = 10u64.pow(scale);
            let k = int_digits.parse::<u64>().unwrap() % one;
            prop_assume!(k > 0);
            let rate = format!("0.{k:0>width$}", width = scale as usize);
            let d = Discount::from_rate(&rate).expect("a rate in (0, 1)");
            // Back to exact integers in ten-millionths: zhe * 10^5 + off * 10^4 == 10^6.
            let ten_millionths = |s: &str, mul: u64| {
                let (i, f) = s.split_once('.').unwrap_or((s, ""));
                let f = format!("{f:0<7}");
                (i.parse::<u64>().unwrap() * 10_000_000 + f[..7].parse::<u64>().unwrap()) * mul
            };
            prop_assert_eq!(
                ten_millionths(&d.zhe, 10) + ten_millionths(&d.percent_off, 1),
                100 * 10_000_000
            );
            prop_assert_eq!(ten_millionths(&d.zhe, 1), k * 10_000_000 * 10 / one);
            prop_assert!(!d.zhe.ends_with('0') || !d.zhe.contains('.'));
        }
    }
}
