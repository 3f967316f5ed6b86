//! Record encoding: a version byte, fixed-width big-endian fields, length-prefixed strings,
//! then the JSON payload as the rest of the record.
//!
//! The fixed header lets the cache patch an entry's access sequence and the outbox read an
//! entry's age without parsing JSON; the reader is bounds-checked, so damaged bytes give a
//! [`DecodeError`] and never a panic.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{MAX_VALUE_BYTES, StoreError};

/// Version byte at the start of every record this build writes.
pub(crate) const RECORD_V1: u8 = 1;

/// Version byte of a dead letter set aside because its pending record could not be read:
/// version, dead-at (u64), reason (string), then the pending record's bytes exactly as they
/// were (so a retry puts them back unchanged, e.g. once the right key file is restored).
pub(crate) const RECORD_RAW_DEAD: u8 = 2;

/// Why a record did not decode.
#[derive(Debug)]
pub(crate) struct DecodeError(pub(crate) String);

impl DecodeError {
    pub(crate) fn into_store(self, what: &'static str, id: u64) -> StoreError {
        StoreError::Decode {
            what,
            id,
            reason: self.0,
        }
    }
}

/// Encodes a payload to JSON, refusing values over [`MAX_VALUE_BYTES`].
pub(crate) fn encode_payload<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    let bytes = serde_json::to_vec(value).map_err(StoreError::Encode)?;
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(StoreError::ValueTooLarge {
            size: bytes.len(),
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(bytes)
}

/// Decodes a JSON payload.
///
/// The error names the kind and place of the failure but never quotes the payload:
/// serde_json's own messages quote offending values ("invalid type: string \"1380...\""),
/// and a queued write's values are personal data that must not reach a log.
pub(crate) fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| {
        DecodeError(format!(
            "payload does not decode as the expected type ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// Appends fields to a record.
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn new(capacity: usize) -> Self {
        Self::new_version(capacity, RECORD_V1)
    }
    pub(crate) fn new_version(capacity: usize, version: u8) -> Self {
        let mut v = Vec::with_capacity(capacity + 1);
        v.push(version);
        Writer(v)
    }
    pub(crate) fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A string of at most `u32::MAX` bytes (callers bound it far lower).
    pub(crate) fn str(mut self, s: &str) -> Self {
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(&s.as_bytes()[..len as usize]);
        self
    }
    pub(crate) fn rest(mut self, bytes: &[u8]) -> Vec<u8> {
        self.0.extend_from_slice(bytes);
        self.0
    }
}

/// Reads fields from a record, checking every bound.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Starts reading a record, checking its version byte.
    pub(crate) fn new(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        Self::new_version(bytes, RECORD_V1)
    }

    /// Starts reading a record that must carry version byte `version`.
    pub(crate) fn new_version(bytes: &'a [u8], version: u8) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            Some((&v, rest)) if v == version => Ok(Reader(rest)),
            Some((v, _)) => Err(DecodeError(format!("unknown record version {v}"))),
            None => Err(DecodeError("empty record".into())),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError(format!(
                "record truncated: need {n} bytes, {} left",
                self.0.len()
            )));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        Ok(i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        let b = self.take(4)?;
        let len = u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize;
        let s = self.take(len)?;
        std::str::from_utf8(s).map_err(|_| DecodeError("string is not UTF-8".into()))
    }
    pub(crate) fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// A u64 as a sled key: big-endian, so byte order is numeric order.
pub(crate) fn key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// The u64 in a sled key or small value written by [`key`].
pub(crate) fn parse_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation_is_an_error() {
        let rec = Writer::new(32).u64(7).i64(-3).str("hé").rest(b"{}");
        let mut r = Reader::new(&rec).unwrap();
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.i64().unwrap(), -3);
        assert_eq!(r.str().unwrap(), "hé");
        assert_eq!(r.rest(), b"{}");
        for cut in 0..rec.len() - 2 {
            let r = Reader::new(&rec[..cut]).and_then(|mut r| {
                r.u64()?;
                r.i64()?;
                r.str().map(|_| ())
            });
            assert!(r.is_err(), "cut at {cut} decoded");
        }
        assert!(Reader::new(&[9, 0]).is_err());
    }

    #[test]
    fn decode_errors_never_quote_the_payload() {
        #[derive(serde::Deserialize, Debug)]
        struct Member {
            #[allow(dead_code)]
            phone: u64,
        }
        for bad in [
            &br#"{"phone":"13812345678"}"#[..],
            br#"{"phone":13812345678,"x":"13812345678""#,
        ] {
            let e = decode_payload::<Member>(bad).unwrap_err();
            assert!(!e.0.contains("1381234"), "{}", e.0);
        }
        // serde_json itself would have quoted it.
        let raw = serde_json::from_slice::<Member>(br#"{"phone":"13812345678"}"#).unwrap_err();
        assert!(raw.to_string().contains("13812345678"));
    }

    #[test]
    fn oversized_values_are_refused() {
        let big = "x".repeat(MAX_VALUE_BYTES);
        match encode_payload(&big) {
            Err(StoreError::ValueTooLarge { size, max }) => {
                assert_eq!(size, MAX_VALUE_BYTES + 2);
                assert_eq!(max, MAX_VALUE_BYTES);
            }
            other => panic!("expected ValueTooLarge, got {other:?}"),
        }
    }
}
