//! Personal data that must never reach a log.
//!
//! A member's name, phone, sex, birthday, national ID number and address travel in
//! `MemberInfo`. They are wrapped in [`Pii`], whose `Debug` and `Display` print a masked form
//! (`138****5678`, `1****************8`), so a `{:?}` of a request, an error or a queued write
//! cannot leak them. Serialization writes the real value: the wire and the outbox need it.
//!
//! A `Pii` zeroes its value when dropped (the `zeroize` crate), so a member's name or ID
//! number does not linger in freed memory for a core dump or a later allocation to show
//! (issue 10). Copies made on the way (JSON buffers, HTTP bodies) are not covered: the daemon
//! is also made non-dumpable at start and the unit sets `LimitCORE=0`.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

/// How one kind of personal field is masked.
pub trait Mask {
    /// The masked form of `value`, safe for logs.
    fn mask(value: &str) -> String;
}

/// A personal field. `Debug`/`Display` are masked; [`Pii::expose`] gives the real value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pii<M: Mask> {
    value: String,
    #[serde(skip)]
    kind: PhantomData<M>,
}

impl<M: Mask> Pii<M> {
    /// Wraps a personal value.
    pub fn new(value: impl Into<String>) -> Self {
        Pii {
            value: value.into(),
            kind: PhantomData,
        }
    }

    /// The real value, for the wire. Never pass it to a log macro.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The masked form.
    pub fn masked(&self) -> String {
        M::mask(&self.value)
    }
}

impl<M: Mask> Drop for Pii<M> {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

impl<M: Mask> fmt::Debug for Pii<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl<M: Mask> fmt::Display for Pii<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Keeps the first `head` and last `tail` characters, stars in between; short values are all
/// stars so that masking never reveals most of a value.
fn keep_ends(value: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= head + tail + 2 {
        return "*".repeat(chars.len().max(1));
    }
    let stars = chars.len() - head - tail;
    let mut out: String = chars[..head].iter().collect();
    out.extend(std::iter::repeat_n('*', stars));
    out.extend(&chars[chars.len() - tail..]);
    out
}

macro_rules! mask_kind {
    ($(#[$doc:meta] $name:ident => |$v:ident| $body:expr;)*) => {$(
        #[$doc]
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub enum $name {}
        impl Mask for $name {
            fn mask($v: &str) -> String {
                $body
            }
        }
    )*};
}

mask_kind! {
    /// A phone number: first three and last four digits (`138****5678`).
    Phone => |v| keep_ends(v, 3, 4);
    /// A national ID number: first and last character only.
    IdCard => |v| keep_ends(v, 1, 1);
    /// A person's name: nothing but its length.
    Name => |v| "*".repeat(v.chars().count().clamp(1, 4));
    /// An address: fully hidden.
    Address => |_v| "***".to_owned();
    /// A birthday: fully hidden.
    Birthday => |_v| "****-**-**".to_owned();
    /// Sex: fully hidden.
    Sex => |_v| "*".to_owned();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_and_id_are_masked_as_documented() {
        assert_eq!(Pii::<Phone>::new("13812345678").to_string(), "138****5678");
        assert_eq!(
            Pii::<IdCard>::new("110101199003071234").to_string(),
            "1****************4"
        );
        assert_eq!(Pii::<Phone>::new("12345").to_string(), "*****");
        assert_eq!(Pii::<Name>::new("张三").to_string(), "**");
        assert_eq!(
            format!("{:?}", Pii::<Address>::new("北京市朝阳区")),
            "\"***\""
        );
    }

    #[test]
    fn serialization_keeps_the_real_value() {
        let p = Pii::<Phone>::new("13812345678");
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"13812345678\"");
        let back: Pii<Phone> = serde_json::from_str("\"13812345678\"").unwrap();
        assert_eq!(back.expose(), "13812345678");
    }
}
