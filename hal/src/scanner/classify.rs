//! What a code is, so the daemon knows what to do with it: a WeChat member card code (look
//! the card up by `wxCode`), a merchant's own member card number (`cardCode`), or anything
//! else (a product barcode scanned by mistake).
//!
//! Rules come from config and are tried in order; the first that matches decides, and a code
//! no rule matches is [`CodeKind::Other`]. The defaults:
//!
//! 1. EAN/UPC (AIM `]E`) codes are `other`: product barcodes, never member cards.
//! 2. 12 to 18 digits are a `wechat_member_code`: WeChat's generated card codes are 12 digits,
//!    and merchant-defined codes on WeChat cards stay within 18 digits in practice.
//! 3. 4 to 32 ASCII letters and digits are a `merchant_card_number`.
//!
//! In TOML (`[classify]`, replacing the defaults as a whole):
//!
//! ```toml
//! [[classify.rules]]
//! kind = "wechat_member_code"
//! charset = "digits"
//! min_len = 12
//! max_len = 18
//! prefixes = ["8"]          # optional: the code must start with one of these
//! symbologies = ["Q", "C"]  # optional: AIM letters; then a scan must carry one of them
//! ```

use serde::Deserialize;

use super::{CODE_CAPACITY, Scan, ScannerError, Symbology};

/// The kinds of code the daemon acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeKind {
    /// The code of a member's card in WeChat (`wxCode`), read off the customer's phone.
    WechatMemberCode,
    /// The merchant's own member card number (`cardCode`), e.g. on a printed card.
    MerchantCardNumber,
    /// Anything else.
    Other,
}

/// Which characters a rule accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    /// ASCII digits only.
    Digits,
    /// ASCII letters and digits.
    Alphanumeric,
    /// Anything the frame parser accepted (default).
    #[default]
    Any,
}

/// One classification rule. Every condition given must hold.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The kind a matching code is.
    pub kind: CodeKind,
    /// Characters allowed. Default `"any"`.
    #[serde(default)]
    pub charset: Charset,
    /// Shortest length in characters. Default 1.
    #[serde(default = "one")]
    pub min_len: usize,
    /// Longest length in characters. Default 256.
    #[serde(default = "capacity")]
    pub max_len: usize,
    /// The code must start with one of these. Default: any start.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// AIM symbology letters (`"Q"`, `"E"`, `"C"`, ...) the rule applies to. When given, a
    /// scan without an AIM identifier does not match. Default: any symbology, or none.
    #[serde(default)]
    pub symbologies: Vec<String>,
}

fn one() -> usize {
    1
}
fn capacity() -> usize {
    CODE_CAPACITY
}

impl Rule {
    fn new(kind: CodeKind, charset: Charset, min_len: usize, max_len: usize) -> Self {
        Rule {
            kind,
            charset,
            min_len,
            max_len,
            prefixes: Vec::new(),
            symbologies: Vec::new(),
        }
    }

    fn matches(&self, code: &str, symbology: Option<Symbology>) -> bool {
        let len = code.chars().count();
        let charset_ok = match self.charset {
            Charset::Digits => code.bytes().all(|b| b.is_ascii_digit()),
            Charset::Alphanumeric => code.bytes().all(|b| b.is_ascii_alphanumeric()),
            Charset::Any => true,
        };
        let symbology_ok = self.symbologies.is_empty()
            || symbology.is_some_and(|s| {
                self.symbologies
                    .iter()
                    .any(|letter| letter.as_bytes() == [s.code])
            });
        (self.min_len..=self.max_len).contains(&len)
            && charset_ok
            && symbology_ok
            && (self.prefixes.is_empty()
                || self.prefixes.iter().any(|p| code.starts_with(p.as_str())))
    }
}

/// Classification rules, `[classify]` in the daemon's config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyConfig {
    /// Tried in order; the first match decides. Default: see the module docs.
    pub rules: Vec<Rule>,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        let mut product = Rule::new(CodeKind::Other, Charset::Any, 1, CODE_CAPACITY);
        product.symbologies = vec!["E".into()];
        ClassifyConfig {
            rules: vec![
                product,
                Rule::new(CodeKind::WechatMemberCode, Charset::Digits, 12, 18),
                Rule::new(CodeKind::MerchantCardNumber, Charset::Alphanumeric, 4, 32),
            ],
        }
    }
}

/// Validated classification rules.
#[derive(Debug, Clone)]
pub struct Classifier {
    rules: Vec<Rule>,
}

impl Classifier {
    /// Checks the rules: lengths in order, symbologies single ASCII letters.
    pub fn new(config: &ClassifyConfig) -> Result<Self, ScannerError> {
        for (i, rule) in config.rules.iter().enumerate() {
            if rule.min_len > rule.max_len {
                return Err(ScannerError::Config(format!(
                    "classify rule {}: min_len {} > max_len {}",
                    i + 1,
                    rule.min_len,
                    rule.max_len
                )));
            }
            if let Some(bad) = rule
                .symbologies
                .iter()
                .find(|s| !(s.len() == 1 && s.as_bytes()[0].is_ascii_alphabetic()))
            {
                return Err(ScannerError::Config(format!(
                    "classify rule {}: symbology {bad:?} is not one AIM letter such as \"Q\"",
                    i + 1
                )));
            }
        }
        Ok(Classifier {
            rules: config.rules.clone(),
        })
    }

    /// The kind of `code`, read with `symbology` if the scanner reported one.
    pub fn classify(&self, code: &str, symbology: Option<Symbology>) -> CodeKind {
        self.rules
            .iter()
            .find(|rule| rule.matches(code, symbology))
            .map_or(CodeKind::Other, |rule| rule.kind)
    }

    /// The kind of a scan's code.
    pub fn classify_scan(&self, scan: &Scan) -> CodeKind {
        self.classify(&scan.code, scan.symbology)
    }
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier {
            rules: ClassifyConfig::default().rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QR: Option<Symbology> = Some(Symbology {
        code: b'Q',
        modifier: b'1',
    });
    const EAN: Option<Symbology> = Some(Symbology {
        code: b'E',
        modifier: b'0',
    });

    #[test]
    fn defaults() {
        let c = Classifier::default();
        assert_eq!(c.classify("123456789012", QR), CodeKind::WechatMemberCode);
        assert_eq!(
            c.classify("123456789012345678", None),
            CodeKind::WechatMemberCode
        );
        assert_eq!(
            c.classify("1234567890123456789", None),
            CodeKind::MerchantCardNumber
        );
        assert_eq!(c.classify("6901234567892", EAN), CodeKind::Other);
        assert_eq!(c.classify("VIP0042", None), CodeKind::MerchantCardNumber);
        assert_eq!(c.classify("abc", None), CodeKind::Other);
        assert_eq!(c.classify("https://example.com/x", QR), CodeKind::Other);
    }

    #[test]
    fn rules_from_toml_with_prefix_and_symbology() {
        let config: ClassifyConfig = toml::from_str(
            r#"
            [[rules]]
            kind = "wechat_member_code"
            charset = "digits"
            min_len = 12
            max_len = 12
            prefixes = ["88", "89"]
            symbologies = ["Q"]
            "#,
        )
        .unwrap();
        let c = Classifier::new(&config).unwrap();
        assert_eq!(c.classify("881234567890", QR), CodeKind::WechatMemberCode);
        assert_eq!(c.classify("881234567890", EAN), CodeKind::Other);
        assert_eq!(c.classify("771234567890", QR), CodeKind::Other);
        assert!(toml::from_str::<ClassifyConfig>("[[rules]]\nkind = \"other\"\nmax = 3").is_err());
        let bad: ClassifyConfig =
            toml::from_str("[[rules]]\nkind = \"other\"\nsymbologies = [\"]Q1\"]").unwrap();
        assert!(Classifier::new(&bad).is_err());
    }
}
