//! Simulated member cards: their states, the card file format and the built-in set.
//!
//! A card is parsed from JSON (admin API) or TOML (card file) through one strict code path,
//! [`Card::from_json`], so both inputs give the same clear errors. Money and points are
//! [`Decimal`]s that keep the scale they were written with (`"3.0"` stays `3.0` on the wire);
//! the card file takes them as strings because TOML floats would lose that text.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

/// What a card answers on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardState {
    /// Usable: getmembercard and getpaycode answer 200.
    Active,
    /// Issued (e.g. by savecardid) but not yet activated; activemember makes it active.
    Inactive,
    /// Reported lost: answers 603.
    Lost,
    /// Voided: answers 604.
    Voided,
    /// Unavailable (frozen): answers 601.
    Unavailable,
}

impl CardState {
    /// The name used in the card file and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            CardState::Active => "active",
            CardState::Inactive => "inactive",
            CardState::Lost => "lost",
            CardState::Voided => "voided",
            CardState::Unavailable => "unavailable",
        }
    }

    /// The business status a blocked card answers with, `None` for active and inactive cards.
    pub fn blocking_status(self) -> Option<u16> {
        match self {
            CardState::Active | CardState::Inactive => None,
            CardState::Unavailable => Some(601),
            CardState::Lost => Some(603),
            CardState::Voided => Some(604),
        }
    }
}

impl fmt::Display for CardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CardState {
    type Err = CardError;
    fn from_str(s: &str) -> Result<Self, CardError> {
        Ok(match s {
            "active" => CardState::Active,
            "inactive" => CardState::Inactive,
            "lost" => CardState::Lost,
            "voided" => CardState::Voided,
            "unavailable" => CardState::Unavailable,
            other => return Err(CardError::BadState(other.to_owned())),
        })
    }
}

/// A member card as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// The code of the card in WeChat, what a scanner reads (the key).
    pub wx_code: String,
    /// The WeChat card template id (`cardId` / `wxCardId` on the wire).
    pub card_id: String,
    /// The merchant's own member card number.
    pub card_code: String,
    pub balance: Decimal,
    pub discount: Decimal,
    pub can_member_price: bool,
    pub points: Decimal,
    pub state: CardState,
}

/// Why a card description was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CardError {
    #[error("a card must be a table/object")]
    NotAnObject,
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field `{field}` is not an exact decimal: {text:?}")]
    BadDecimal { field: &'static str, text: String },
    #[error(
        "field `{0}` is a float; write it as a string (e.g. \"128.50\") to keep its exact value"
    )]
    FloatInToml(String),
    #[error("unknown card state {0:?} (active, inactive, lost, voided, unavailable)")]
    BadState(String),
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("wxCode must be 1-64 characters of digits or letters, got {0:?}")]
    BadWxCode(String),
    #[error("wxCode {0:?} appears twice")]
    Duplicate(String),
    #[error("card file is not valid TOML: {0}")]
    Toml(String),
    #[error("card #{index}: {source}")]
    InFile {
        index: usize,
        #[source]
        source: Box<CardError>,
    },
}

const FIELDS: [&str; 8] = [
    "wxCode",
    "cardId",
    "cardCode",
    "balance",
    "discount",
    "canMemberPrice",
    "points",
    "state",
];

/// Whether a wxCode is acceptable as a card key: 1-64 ASCII letters or digits.
pub fn valid_wx_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Parses a decimal from a JSON string or number, keeping the text's scale.
pub fn decimal_from_json(field: &'static str, v: &Value) -> Result<Decimal, CardError> {
    let text = match v {
        Value::String(s) => s.as_str(),
        // With serde_json's arbitrary_precision feature, `as_str` is the number's own text.
        Value::Number(n) => n.as_str(),
        _ => {
            return Err(CardError::WrongType {
                field,
                expected: "a decimal (number or string)",
            });
        }
    };
    Decimal::from_str_exact(text.trim()).map_err(|_| CardError::BadDecimal {
        field,
        text: text.to_owned(),
    })
}

/// A decimal as a JSON number with exactly its text (`3.0` stays `3.0`).
pub fn decimal_to_json(d: &Decimal) -> Value {
    // Decimal's Display never produces exponents, so this is always a valid JSON number.
    Value::Number(serde_json::Number::from_string_unchecked(d.to_string()))
}

fn string_field(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, CardError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CardError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn decimal_field(obj: &Map<String, Value>, field: &'static str) -> Result<Decimal, CardError> {
    obj.get(field)
        .map(|v| decimal_from_json(field, v))
        .unwrap_or(Ok(Decimal::ZERO))
}

impl Card {
    /// A new active card with zero balance, discount and points.
    pub fn new(wx_code: &str, card_id: &str, card_code: &str) -> Card {
        Card {
            wx_code: wx_code.to_owned(),
            card_id: card_id.to_owned(),
            card_code: card_code.to_owned(),
            balance: Decimal::ZERO,
            discount: Decimal::ZERO,
            can_member_price: true,
            points: Decimal::ZERO,
            state: CardState::Active,
        }
    }

    /// Parses the admin/card-file form. Only `wxCode` is required; `state` defaults to
    /// `active`, numbers to 0, `canMemberPrice` to true, strings to empty.
    pub fn from_json(v: &Value) -> Result<Card, CardError> {
        let obj = v.as_object().ok_or(CardError::NotAnObject)?;
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(CardError::UnknownField(unknown.clone()));
        }
        let wx_code = string_field(obj, "wxCode")?.ok_or(CardError::Missing("wxCode"))?;
        if !valid_wx_code(&wx_code) {
            return Err(CardError::BadWxCode(wx_code));
        }
        let can_member_price = match obj.get("canMemberPrice") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(CardError::WrongType {
                    field: "canMemberPrice",
                    expected: "a boolean",
                });
            }
        };
        let state = match string_field(obj, "state")? {
            None => CardState::Active,
            Some(s) => s.parse()?,
        };
        Ok(Card {
            wx_code,
            card_id: string_field(obj, "cardId")?.unwrap_or_default(),
            card_code: string_field(obj, "cardCode")?.unwrap_or_default(),
            balance: decimal_field(obj, "balance")?,
            discount: decimal_field(obj, "discount")?,
            can_member_price,
            points: decimal_field(obj, "points")?,
            state,
        })
    }

    /// The admin form of the card (the same fields [`Card::from_json`] reads).
    pub fn to_json(&self) -> Value {
        json!({
            "wxCode": self.wx_code,
            "cardId": self.card_id,
            "cardCode": self.card_code,
            "balance": decimal_to_json(&self.balance),
            "discount": decimal_to_json(&self.discount),
            "canMemberPrice": self.can_member_price,
            "points": decimal_to_json(&self.points),
            "state": self.state.as_str(),
        })
    }
}

fn toml_to_json(key: &str, v: &toml::Value) -> Result<Value, CardError> {
    Ok(match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::Number((*i).into()),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Float(_) => return Err(CardError::FloatInToml(key.to_owned())),
        _ => {
            return Err(CardError::WrongType {
                field: "(card field)",
                expected: "a string, integer or boolean",
            });
        }
    })
}

/// Parses a card file: a TOML document of `[[card]]` tables (see docs/simulator.md).
pub fn parse_card_file(text: &str) -> Result<Vec<Card>, CardError> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| CardError::Toml(e.to_string()))?;
    if let Some(k) = doc.keys().find(|k| k.as_str() != "card") {
        return Err(CardError::UnknownField(k.clone()));
    }
    let Some(list) = doc.get("card") else {
        return Ok(Vec::new());
    };
    let list = list.as_array().ok_or(CardError::WrongType {
        field: "card",
        expected: "an array of tables ([[card]])",
    })?;
    let mut cards: Vec<Card> = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let in_file = |e| CardError::InFile {
            index: i + 1,
            source: Box::new(e),
        };
        let table = entry.as_table().ok_or(in_file(CardError::NotAnObject))?;
        let mut obj = Map::new();
        for (k, v) in table {
            obj.insert(k.clone(), toml_to_json(k, v).map_err(in_file)?);
        }
        let card = Card::from_json(&Value::Object(obj)).map_err(in_file)?;
        if cards.iter().any(|c| c.wx_code == card.wx_code) {
            return Err(in_file(CardError::Duplicate(card.wx_code)));
        }
        cards.push(card);
    }
    Ok(cards)
}

/// The card template id of the built-in set.
pub const DEFAULT_CARD_ID: &str = "pX2bjt7hUDgWBCMlT5tTNMbA3Dk0";

/// The built-in card set, the text of `docs/simulator.md`'s example (and the demo's cards).
pub const DEFAULT_CARDS_TOML: &str = r#"
[[card]]   # a regular member
wxCode = "812345678901234567"
cardId = "pX2bjt7hUDgWBCMlT5tTNMbA3Dk0"
cardCode = "M0001001"
balance = "128.50"
discount = "0.95"
canMemberPrice = true
points = "1200"
state = "active"

[[card]]   # a gold member with a large balance
wxCode = "812345678901234568"
cardId = "pX2bjt7hUDgWBCMlT5tTNMbA3Dk0"
cardCode = "M0001002"
balance = "5000.00"
discount = "0.88"
canMemberPrice = true
points = "86400"
state = "active"

[[card]]   # an empty balance, no member price
wxCode = "812345678901234569"
cardId = "pX2bjt7hUDgWBCMlT5tTNMbA3Dk0"
cardCode = "M0001003"
balance = "0.00"
discount = "1.00"
canMemberPrice = false
points = "0"
state = "active"

[[card]]   # issued, waiting for activemember
wxCode = "812345678901234570"
cardId = "pX2bjt7hUDgWBCMlT5tTNMbA3Dk0"
cardCode = "M0001004"
balance = "0.00"
discount = "1.00"
state = "inactive"

[[card]]   # reported lost: 603
wxCode = "812345678901234571"
cardId = "pX2bjt7hUDgWBCMlT5tTNMbA3Dk0"
cardCode = "M0001005"
balance = "42.00"
discount = "0.95"
state = "lost"

[[card]]   # voided: 604
wxCode = "812345678901234572"
cardId = "pX2bjt7hUDgWBCMlT5tTNMbA3Dk0"
cardCode = "M0001006"
balance = "0.00"
discount = "1.00"
state = "voided"

[[card]]   # unavailable (frozen): 601
wxCode = "812345678901234573"
cardId = "pX2bjt7hUDgWBCMlT5tTNMbA3Dk0"
cardCode = "M0001007"
balance = "17.30"
discount = "0.95"
state = "unavailable"
"#;

/// The built-in card set: three active cards, one each inactive, lost, voided, unavailable.
pub fn default_cards() -> Vec<Card> {
    parse_card_file(DEFAULT_CARDS_TOML).expect("the built-in card set parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_has_every_state() {
        let cards = default_cards();
        for state in [
            CardState::Active,
            CardState::Inactive,
            CardState::Lost,
            CardState::Voided,
            CardState::Unavailable,
        ] {
            assert!(cards.iter().any(|c| c.state == state), "{state} missing");
        }
        assert_eq!(cards[0].balance.to_string(), "128.50");
    }

    #[test]
    fn decimals_keep_their_text() {
        let card = Card::from_json(
            &serde_json::from_str(r#"{"wxCode":"1234","balance":3.0,"discount":"0.950"}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(card.balance.to_string(), "3.0");
        let out = serde_json::to_string(&card.to_json()).unwrap();
        assert!(out.contains(r#""balance":3.0"#), "{out}");
        assert!(out.contains(r#""discount":0.950"#), "{out}");
    }

    #[test]
    fn toml_floats_are_refused_with_a_hint() {
        let err = parse_card_file("[[card]]\nwxCode = \"1\"\nbalance = 1.5\n").unwrap_err();
        assert!(err.to_string().contains("as a string"), "{err}");
    }

    #[test]
    fn bad_cards_are_refused() {
        let bad = [
            r#"{"cardId":"x"}"#,
            r#"{"wxCode":""}"#,
            r#"{"wxCode":"12 34"}"#,
            r#"{"wxCode":"1","state":"stolen"}"#,
            r#"{"wxCode":"1","balance":"abc"}"#,
            r#"{"wxCode":"1","canMemberPrice":"yes"}"#,
            r#"{"wxCode":"1","colour":"red"}"#,
            r#"["wxCode"]"#,
        ];
        for text in bad {
            let v: Value = serde_json::from_str(text).unwrap();
            assert!(Card::from_json(&v).is_err(), "{text} accepted");
        }
    }

    #[test]
    fn duplicate_wx_codes_in_a_file_are_refused() {
        let err =
            parse_card_file("[[card]]\nwxCode = \"1\"\n[[card]]\nwxCode = \"1\"\n").unwrap_err();
        assert!(err.to_string().contains("card #2"), "{err}");
    }
}
