//! Money is kept exactly or refused: a balance in exponent form is scaled exactly (checked
//! arithmetic, never rust_decimal's rounding parser), and what does not fit is an error the
//! lookup treats like any bad answer. Property: any decimal the spec's examples allow (a
//! plain decimal, or its exponent form) round-trips digit for digit from the wire (a JSON
//! number in a getmembercard answer) to the socket (the lookup as the daemon serializes it)
//! to the display (the text the customer screen shows).

use proptest::prelude::*;
use serde_json::Value;
use wxcardd::api::{Amount, MemberCard};
use wxcardd::service::{Lookup, LookupAnswer, Source};

/// The wire answer's data with `balance` as the raw JSON number text.
fn card_from_wire(balance: &str) -> Result<MemberCard, serde_json::Error> {
    serde_json::from_str(&format!(
        r#"{{"cardCode":"M0001001","balance":{balance},"discount":0.95,"canMemberPrice":true}}"#
    ))
}

/// The `balance` text as the socket carries it (the lookup serialized as the daemon does).
fn on_socket(card: MemberCard) -> String {
    let lookup = Lookup {
        wx_code: "812345678901234567".into(),
        source: Source::Api,
        age_ms: 0,
        stale: false,
        answer: LookupAnswer::Card { card },
    };
    let text = serde_json::to_string(&lookup).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    value["card"]["balance"].to_string()
}

/// `digits` with the decimal point `scale` places from the right (plain form).
fn plain(negative: bool, digits: &str, scale: usize) -> String {
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    let sign = if negative { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// The issue's example has 29 significant digits, one more than rust_decimal's 96-bit
/// mantissa holds: it used to show as `100000000000000000000000.00000`; it is refused now (the
/// lookup falls back like any bad answer), and the same number with 28 digits is exact.
#[test]
fn the_issue_example_is_refused_and_one_digit_less_is_kept_exactly() {
    let e = card_from_wire("99999999999999999999999.999999e0").unwrap_err();
    assert!(e.to_string().contains("not an exact decimal"), "{e}");
    let card = card_from_wire("9999999999999999999999.999999e0").unwrap();
    assert_eq!(card.balance.to_string(), "9999999999999999999999.999999");
    assert_eq!(on_socket(card), "9999999999999999999999.999999");
    let card = card_from_wire("12850e-2").unwrap();
    assert_eq!(card.balance.to_string(), "128.50");
    let card = card_from_wire("1.2850E2").unwrap();
    assert_eq!(card.balance.to_string(), "128.50");
}

#[test]
fn what_does_not_fit_is_refused_not_rounded() {
    for wire in [
        "1e29",
        "79228162514264337593543950336",
        "1.00000000000000000000000000001",
        "0.1234567890123456789012345678901e0",
        "1e-29",
        "1e999999999999999999999",
        "99999999999999999999999.999999e10",
    ] {
        let parsed = wire.parse::<Amount>();
        assert!(
            parsed.is_err(),
            "{wire} became {:?}",
            parsed.map(|a| a.to_string())
        );
        assert!(card_from_wire(wire).is_err(), "{wire}");
    }
    // Exact reductions are fine: trailing zeros absorb a small exponent.
    assert_eq!(
        "1000e-30".parse::<Amount>().unwrap().to_string(),
        "0.0000000000000000000000000010"
    );
}

/// True when `digits` (an integer, no sign) fits rust_decimal's 96-bit mantissa.
fn fits(digits: &str) -> bool {
    digits
        .parse::<u128>()
        .is_ok_and(|m| m < 79_228_162_514_264_337_593_543_950_336)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_spec_decimal_round_trips_digit_for_digit(
        negative in any::<bool>(),
        digits in "[1-9][0-9]{0,28}",
        scale in 0usize..=6,
        exponent in -6i32..=6,
    ) {
        let written = plain(negative, &digits, scale);
        // Plain form: the very text, everywhere; refused only when it cannot be held.
        match card_from_wire(&written) {
            Ok(card) => {
                prop_assert_eq!(card.balance.to_string(), written.clone());
                prop_assert_eq!(on_socket(card), written.clone());
            }
            Err(_) => prop_assert!(!fits(&digits), "{} refused", written),
        }

        // Exponent form: the mantissa's digits, the point moved exactly.
        let wire = format!("{written}e{exponent}");
        let new_scale = scale as i32 - exponent;
        let (all_digits, expected) = if new_scale >= 0 {
            (digits.clone(), plain(negative, &digits, new_scale as usize))
        } else {
            let shifted = format!("{digits}{}", "0".repeat((-new_scale) as usize));
            (shifted.clone(), plain(negative, &shifted, 0))
        };
        match card_from_wire(&wire) {
            Ok(card) => {
                prop_assert!(fits(&all_digits), "{} accepted as {}", wire, card.balance);
                prop_assert_eq!(card.balance.to_string(), expected.clone());
                prop_assert_eq!(on_socket(card), expected);
            }
            Err(_) => prop_assert!(!fits(&all_digits), "{} refused", wire),
        }
    }
}
