//! The wire types of the wxcard API, named exactly as the spec names them (camelCase).
//!
//! Requests omit absent optional fields rather than sending `null`. Money and points are
//! [`Amount`]s that keep the decimal text the server sent; dates are [`WxDateTime`] in the
//! spec's `YYYY-MM-DD HH:MM:SS` local wall-clock form.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::pii::{Address, Birthday, IdCard, Name, Phone, Pii, Sex};
use super::status::Status;

/// A money or points value, exactly as the backend sent it (`3.0` stays `3.0`).
///
/// Accepts a JSON number (kept as text thanks to serde_json's `arbitrary_precision`) or a
/// string of a decimal number. No binary floating point is involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(pub Decimal);

impl Amount {
    /// The decimal value.
    pub fn value(&self) -> Decimal {
        self.0
    }
}

/// Why a text is not an [`Amount`]: never rounded, refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a decimal number (or its mantissa has more digits than 96 bits hold).
    #[error("not an exact decimal number: {0}")]
    Syntax(String),
    /// The exponent is not a small integer.
    #[error("exponent out of range")]
    Exponent,
    /// The exact value needs more than 96 bits of digits or 28 decimal places.
    #[error("does not fit exactly in 28 significant digits and 28 decimal places")]
    DoesNotFit,
}

/// Largest exponent magnitude considered: anything further cannot fit 28 digits anyway.
const MAX_EXPONENT: i64 = 64;

impl FromStr for Amount {
    type Err = AmountError;

    /// Parses `123.45`, or an exponent form (`12345e-2`, `1.2345E2`) exactly: the mantissa
    /// with rust_decimal's exact parser, then the decimal point moved with checked integer
    /// arithmetic. Nothing is ever rounded: what does not fit is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mantissa, exponent) = match s.find(['e', 'E']) {
            Some(at) => (&s[..at], Some(&s[at + 1..])),
            None => (s, None),
        };
        let m =
            Decimal::from_str_exact(mantissa).map_err(|e| AmountError::Syntax(e.to_string()))?;
        let Some(exponent) = exponent else {
            return Ok(Amount(m));
        };
        let exp: i64 = exponent.parse().map_err(|_| AmountError::Exponent)?;
        if exp.abs() > MAX_EXPONENT {
            return Err(AmountError::Exponent);
        }
        let mut digits: i128 = m.mantissa();
        let mut scale: i64 = i64::from(m.scale()) - exp;
        if scale < 0 {
            let factor = 10i128
                .checked_pow(u32::try_from(-scale).map_err(|_| AmountError::DoesNotFit)?)
                .ok_or(AmountError::DoesNotFit)?;
            digits = digits.checked_mul(factor).ok_or(AmountError::DoesNotFit)?;
            scale = 0;
        }
        // Only exact reductions: trailing zeros may absorb places past the 28 allowed.
        while scale > i64::from(Decimal::MAX_SCALE) && digits % 10 == 0 && digits != 0 {
            digits /= 10;
            scale -= 1;
        }
        if digits == 0 {
            scale = scale.min(i64::from(Decimal::MAX_SCALE));
        }
        let scale = u32::try_from(scale).map_err(|_| AmountError::DoesNotFit)?;
        Decimal::try_from_i128_with_scale(digits, scale)
            .map(Amount)
            .map_err(|_| AmountError::DoesNotFit)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n =
            serde_json::Number::from_str(&self.0.to_string()).map_err(serde::ser::Error::custom)?;
        n.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s,
            other => {
                return Err(de::Error::custom(format!(
                    "expected a decimal number, found {other}"
                )));
            }
        };
        text.parse()
            .map_err(|e| de::Error::custom(format!("not a decimal number {text:?}: {e}")))
    }
}

/// The spec's date form: local wall-clock time `YYYY-MM-DD HH:MM:SS`, no zone (stores run on
/// China Standard Time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WxDateTime(pub chrono::NaiveDateTime);

impl WxDateTime {
    /// The spec's format string.
    pub const FORMAT: &'static str = "%Y-%m-%d %H:%M:%S";

    /// The current local time of this machine.
    pub fn now_local() -> Self {
        use chrono::Timelike;
        let now = chrono::Local::now().naive_local();
        WxDateTime(now.with_nanosecond(0).unwrap_or(now))
    }
}

impl FromStr for WxDateTime {
    type Err = chrono::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        chrono::NaiveDateTime::parse_from_str(s, Self::FORMAT).map(WxDateTime)
    }
}

impl fmt::Display for WxDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(Self::FORMAT))
    }
}

impl Serialize for WxDateTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WxDateTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| de::Error::custom(format!("date {s:?} is not YYYY-MM-DD HH:MM:SS: {e}")))
    }
}

/// `savecardid` request: an order that issues a batch of WeChat member cards (微信会员开卡).
///
/// `id` is the order id; the backend answers 801 (duplicate serial number) to a repeated one,
/// which is how a resend is recognised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardIssueOrder {
    /// Order id.
    pub id: i64,
    /// WeChat card (template) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_id: Option<String>,
    /// Member card class id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_card_class_id: Option<i64>,
    /// Member card class name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_card_class_name: Option<String>,
    /// Number of cards to issue (开卡数量).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_qty: Option<i64>,
    /// Number of cards sent out (发卡数量).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_qty: Option<i64>,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<WxDateTime>,
    /// Operator id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// Operator name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// One row per card (开卡明细).
    #[serde(default)]
    pub details: Vec<CardIssueDetail>,
}

/// One card of a [`CardIssueOrder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardIssueDetail {
    /// Row id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// The order this row belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<i64>,
    /// Merchant card number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_code: Option<String>,
    /// WeChat card code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wx_code: Option<String>,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<WxDateTime>,
}

/// `createmembercard` and `activemember` request: a member and their card.
///
/// Personal fields are [`Pii`]: masked in every `Debug`, real on the wire.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    /// WeChat card (template) id (微信会员CardId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wx_card_id: Option<String>,
    /// WeChat member card code (微信会员卡号): what the scanner reads.
    pub wx_code: String,
    /// Merchant member card number (会员卡号).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_code: Option<String>,
    /// Name (姓名).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Pii<Name>>,
    /// Phone (电话).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Pii<Phone>>,
    /// Sex (性别).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<Pii<Sex>>,
    /// Birthday (生日).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthday: Option<Pii<Birthday>>,
    /// National ID card number (身份证).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_card: Option<Pii<IdCard>>,
    /// Address (地址).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Pii<Address>>,
}

/// `getmembercard` answer: the card's state (获取会员卡信息).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberCard {
    /// Merchant card number.
    pub card_code: String,
    /// Balance.
    pub balance: Amount,
    /// Discount (优惠), passed through as sent: the spec does not say amount or rate.
    pub discount: Amount,
    /// Whether member prices apply.
    pub can_member_price: bool,
}

/// `createmembercard` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedMember {
    /// WeChat card (template) id.
    pub wx_card_id: String,
    /// Merchant card number.
    pub card_code: String,
    /// Balance.
    pub balance: Amount,
    /// Points.
    pub points: Amount,
}

/// A pay code as `getpaycode` returns it: the string to render as a QR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PayCode(pub String);

/// Every response body: `status`, `message`, and `data` where the endpoint has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// `data`, absent on endpoints without one. (A missing `Option` field is `None`.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    /// The business status.
    pub status: Status,
    /// The server's message; may be empty.
    #[serde(default)]
    pub message: String,
}
