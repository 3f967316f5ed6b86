//! The business `status` of a wxcard response.
//!
//! The spec lists 23 codes. The original types `status` as a string but its examples send a
//! number, so both `200` and `"200"` are accepted. A code outside the list is kept as it came
//! ([`Status::Unknown`]) and is never taken for success.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

macro_rules! statuses {
    ($($variant:ident = $code:literal, $zh:literal, $en:literal;)*) => {
        /// A business status code from the wxcard backend.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum Status {
            $(#[doc = concat!($code, ": ", $en, " (", $zh, ")")] $variant,)*
            /// A code the spec does not list, kept exactly as the server sent it.
            Unknown(String),
        }

        impl Status {
            /// Every documented status, in the spec's order.
            pub const DOCUMENTED: &'static [Status] = &[$(Status::$variant,)*];

            /// The status for a numeric code; an unlisted code becomes [`Status::Unknown`].
            pub fn from_code(code: u32) -> Status {
                match code {
                    $($code => Status::$variant,)*
                    other => Status::Unknown(other.to_string()),
                }
            }

            /// The numeric code, or `None` for an unknown status that is not a number.
            pub fn code(&self) -> Option<u32> {
                match self {
                    $(Status::$variant => Some($code),)*
                    Status::Unknown(raw) => raw.parse().ok(),
                }
            }

            /// The spec's English meaning.
            pub fn meaning(&self) -> &'static str {
                match self {
                    $(Status::$variant => $en,)*
                    Status::Unknown(_) => "unknown status",
                }
            }

            /// The original document's Chinese meaning.
            pub fn meaning_zh(&self) -> &'static str {
                match self {
                    $(Status::$variant => $zh,)*
                    Status::Unknown(_) => "未知状态",
                }
            }
        }
    };
}

statuses! {
    Success = 200, "成功", "success";
    InternalError = 500, "内部错误", "internal error";
    CardUnavailable = 601, "卡不可用", "card unavailable";
    CardNotFound = 602, "卡不存在", "card does not exist";
    CardLost = 603, "卡挂失", "card reported lost";
    CardVoided = 604, "卡作废", "card voided";
    InsufficientBalance = 605, "卡余额不足", "insufficient card balance";
    CardPayCodeExpired = 606, "卡付款码超时", "card pay code expired";
    InsufficientPoints = 607, "积分不足", "insufficient points";
    GiftUnavailable = 608, "礼品不可用", "gift unavailable";
    PaymentSucceeded = 701, "支付成功", "payment succeeded";
    PaymentConfirmationFailed = 702, "支付确认失败", "payment confirmation failed";
    PaymentStatusUnknown = 703, "支付状态未知", "payment status unknown";
    PayCodeExpired = 704, "付款码超时", "pay code expired";
    DuplicateSerial = 801, "流水号重复", "duplicate serial number";
    DayEndNotClosed = 901, "未日结", "day-end not closed";
    DayEndInProgress = 902, "日结进行中", "day-end in progress";
    DayEndInterrupted = 903, "日结中断", "day-end interrupted";
    DayEndComplete = 904, "日结完成", "day-end complete";
    DayEndAmountChanged = 905, "日结金额发生变化", "day-end amount changed";
    CannotPurchase = 1001, "无法购买", "cannot purchase";
    SoldOut = 1002, "已售罄", "sold out";
    PaymentTimedOut = 1003, "支付超时", "payment timed out";
}

impl Status {
    /// Parses a status as it appears in a body: digits only (a number or a string of digits,
    /// no sign, no spaces). Anything else is kept as [`Status::Unknown`].
    pub fn parse(raw: &str) -> Status {
        match raw.parse::<u32>() {
            Ok(code) if raw.bytes().all(|b| b.is_ascii_digit()) => Status::from_code(code),
            _ => Status::Unknown(raw.to_owned()),
        }
    }

    /// True only for 200.
    pub fn is_success(&self) -> bool {
        *self == Status::Success
    }

    /// A definitive answer about the card itself: the backend knows this card is not usable
    /// (601 unavailable, 602 does not exist, 603 lost, 604 voided). The card service caches
    /// these so a lost card is never shown with an old balance offline.
    pub fn is_card_state(&self) -> bool {
        matches!(
            self,
            Status::CardUnavailable | Status::CardNotFound | Status::CardLost | Status::CardVoided
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Unknown(raw) => write!(
                f,
                "\"{}\" (unknown status)",
                wxcard_hal::text::sanitize(raw, 40)
            ),
            known => write!(
                f,
                "{} ({})",
                known.code().unwrap_or_default(),
                known.meaning()
            ),
        }
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self, self.code()) {
            (Status::Unknown(raw), _) if raw.parse::<u32>().is_err() => s.serialize_str(raw),
            (_, Some(code)) => s.serialize_u32(code),
            (Status::Unknown(raw), None) => s.serialize_str(raw),
            (_, None) => unreachable!("every documented status has a code"),
        }
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StatusVisitor;
        impl Visitor<'_> for StatusVisitor {
            type Value = Status;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code as a number or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Status, E> {
                Ok(u32::try_from(v)
                    .map(Status::from_code)
                    .unwrap_or_else(|_| Status::Unknown(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Status, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Ok(Status::Unknown(v.to_string())),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Status, E> {
                Ok(Status::Unknown(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Status, E> {
                Ok(Status::parse(v))
            }
        }
        // With serde_json's `arbitrary_precision`, numbers arrive as their text; going through
        // `Value` handles both that and the plain representation.
        let value = serde_json::Value::deserialize(d)?;
        match value {
            serde_json::Value::Number(n) => Ok(Status::parse(&n.to_string())),
            serde_json::Value::String(s) => StatusVisitor.visit_str(&s),
            other => Err(de::Error::invalid_type(
                de::Unexpected::Other(value_kind(&other)),
                &StatusVisitor,
            )),
        }
    }
}

fn value_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_three_documented_codes_round_trip() {
        assert_eq!(Status::DOCUMENTED.len(), 23);
        for status in Status::DOCUMENTED {
            let code = status.code().expect("documented codes are numeric");
            assert_eq!(&Status::from_code(code), status);
            let as_number: Status = serde_json::from_str(&code.to_string()).unwrap();
            let as_string: Status = serde_json::from_str(&format!("\"{code}\"")).unwrap();
            assert_eq!(&as_number, status);
            assert_eq!(&as_string, status);
            assert_eq!(serde_json::to_string(status).unwrap(), code.to_string());
        }
    }

    #[test]
    fn unknown_codes_are_kept_as_they_came_and_never_success() {
        for raw in [
            "999", "\"777\"", "\"OK\"", "\"\"", "-1", "200.0", "\" 200\"",
        ] {
            let status: Status = serde_json::from_str(raw).unwrap();
            assert!(!status.is_success(), "{raw} must not be success");
            assert!(matches!(status, Status::Unknown(_)), "{raw} -> {status:?}");
        }
        let s: Status = serde_json::from_str("\"OK\"").unwrap();
        assert_eq!(s, Status::Unknown("OK".into()));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"OK\"");
        let s: Status = serde_json::from_str("999").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "999");
    }

    #[test]
    fn non_scalar_status_is_an_error() {
        assert!(serde_json::from_str::<Status>("null").is_err());
        assert!(serde_json::from_str::<Status>("[200]").is_err());
    }
}
