//! Bookkeeping counters in the `meta` tree, read and written inside the same sled
//! transactions as the data they count, so a crash can never leave them out of step.

use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::StoreError;
use super::codec::parse_u64;

pub(crate) const SCHEMA: &[u8] = b"schema";
pub(crate) const CARDS_COUNT: &[u8] = b"cards.count";
pub(crate) const OUTBOX_COUNT: &[u8] = b"outbox.count";
pub(crate) const OUTBOX_NEXT_ID: &[u8] = b"outbox.next_id";
pub(crate) const DEAD_COUNT: &[u8] = b"dead.count";

/// The layout version this build writes and reads.
pub(crate) const SCHEMA_VERSION: u64 = 1;

fn name(key: &[u8]) -> &'static str {
    match key {
        SCHEMA => "schema",
        CARDS_COUNT => "cards.count",
        OUTBOX_COUNT => "outbox.count",
        OUTBOX_NEXT_ID => "outbox.next_id",
        DEAD_COUNT => "dead.count",
        _ => "unknown",
    }
}

/// A transaction error carrying a [`StoreError`].
pub(crate) type TxError = ConflictableTransactionError<StoreError>;

/// Reads a counter inside a transaction; a missing key is 0.
pub(crate) fn tx_get(meta: &TransactionalTree, key: &'static [u8]) -> Result<u64, TxError> {
    match meta.get(key)? {
        None => Ok(0),
        Some(v) => parse_u64(&v).ok_or(ConflictableTransactionError::Abort(StoreError::Meta {
            key: name(key),
        })),
    }
}

/// Writes a counter inside a transaction.
pub(crate) fn tx_set(meta: &TransactionalTree, key: &'static [u8], v: u64) -> Result<(), TxError> {
    meta.insert(key, &v.to_be_bytes()[..])?;
    Ok(())
}

/// Reads a counter outside a transaction; a missing key is 0.
pub(crate) fn get(meta: &sled::Tree, key: &'static [u8]) -> Result<u64, StoreError> {
    match meta.get(key)? {
        None => Ok(0),
        Some(v) => parse_u64(&v).ok_or(StoreError::Meta { key: name(key) }),
    }
}
