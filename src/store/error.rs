//! The store's one error type: every failure a caller can react to is a named variant.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation of our own (not sled's) failed.
    #[error("store: cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// sled failed to open the store and it was not a corruption we can quarantine (a lock
    /// held by another process, a permission problem, a full disk).
    #[error("store: cannot open sled store in {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    /// sled failed on an open store.
    #[error("store: sled: {0}")]
    Sled(#[from] sled::Error),
    /// The outbox holds its maximum of queued writes; nothing was written.
    #[error(
        "outbox full: {pending} pending and {dead} dead-lettered writes of at most {max}; \
         nothing was queued (deliver, or review and drop dead letters)"
    )]
    OutboxFull { pending: u64, dead: u64, max: u64 },
    /// A value encodes to more than [`super::MAX_VALUE_BYTES`]; nothing was written.
    #[error("store: value of {size} bytes exceeds the limit of {max} bytes; nothing was written")]
    ValueTooLarge { size: usize, max: usize },
    /// A cache key is empty, too long, or neither wxCode nor cardCode was given.
    #[error("store: invalid card key: {0}")]
    InvalidKey(&'static str),
    /// A value could not be encoded as JSON.
    #[error("store: cannot encode value: {0}")]
    Encode(#[source] serde_json::Error),
    /// A stored record could not be decoded (damaged bytes, or a payload type that no longer
    /// matches). `id` is the outbox id, so the caller can dead-letter it (0 for a card entry:
    /// the caller knows the code it looked up and can `remove_card` it).
    #[error("store: cannot decode {what} {id}: {reason}")]
    Decode {
        what: &'static str,
        id: u64,
        reason: String,
    },
    /// A bookkeeping key holds bytes we did not write.
    #[error("store: damaged metadata key {key}")]
    Meta { key: &'static str },
    /// The store was written by an incompatible version of wxcardd.
    #[error("store: schema {found} in {}, this build reads schema {expected}", path.display())]
    Schema {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    /// No dead letter or outbox entry has this id.
    #[error("store: no {what} with id {id}")]
    NotFound { what: &'static str, id: u64 },
}

impl<E: Into<StoreError>> From<sled::transaction::TransactionError<E>> for StoreError {
    fn from(e: sled::transaction::TransactionError<E>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e.into(),
            sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}
