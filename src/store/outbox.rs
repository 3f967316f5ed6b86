//! The durable outbox of queued writes, and its dead-letter list.
//!
//! **Durability:** [`Store::enqueue`] returns only after sled's `flush()` *and* an fsync of
//! sled's `db` file: sled 0.34 flushes with `sync_file_range`, which neither reaches the
//! disk's write cache nor persists file-size metadata. Values stay under
//! [`super::MAX_VALUE_BYTES`], so sled never puts them in its (never fsynced) blob files.
//!
//! **Order:** ids come from a counter in `meta`, bumped in the same transaction as the
//! insert, so ids are strictly increasing, never reused, and key order is replay order.
//!
//! **Bound:** pending plus dead letters may not exceed `max_outbox` (both hold personal data
//! on disk). A full outbox refuses [`Store::enqueue`] with [`StoreError::OutboxFull`]; the
//! check runs inside the insert's transaction, so a refused write leaves no trace.
//!
//! **Dead letters** keep the outbox id. [`Store::retry_dead`] puts the entry back under that
//! same id, which is older than every pending entry (replay is in order, so everything older
//! was already settled): the retried write is replayed *next*, and the id the cashier was
//! given stays the one the operator sees.
//!
//! **Damage never jams the queue.** An entry that cannot be read (bytes flipped or cut, the
//! sealing key lost or replaced, a payload of another type) is moved aside whole by
//! [`Store::dead_letter_undecodable`]: its raw bytes are kept in a dead letter marked
//! undecodable, so the entries behind it replay, and [`Store::retry_dead`] puts the very
//! same bytes back (useful once the right key file is restored). [`Store::outbox_items`]
//! lists every row, readable or not, and never fails because one row is damaged. An operator
//! may also drop a pending entry ([`Store::drop_pending`]).
//!
//! **Removal** ([`Store::remove_delivered`]) is not fsynced: a removal lost in a crash means
//! one resend, which the service's at-least-once replay must recognise anyway. Call
//! [`Store::sync`] after a batch. sled is log-structured, so a removed value's bytes stay in
//! the `db` file for a while; payloads are therefore sealed ([`super::seal`]) and the key is
//! overwritten whenever the outbox and dead letters drain (see docs/store.md).

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::codec::{self, RECORD_RAW_DEAD, Reader, Writer, key, parse_u64};
use super::meta::{self, TxError};
use super::seal::{KEY_FILE, Sealer};
use super::{Store, StoreError, fsutil};

/// The id of a queued write: increasing in enqueue order, never reused.
pub type OutboxId = u64;

/// Longest dead-letter message kept (the backend's text is untrusted).
const MAX_MESSAGE_BYTES: usize = 1024;

/// A pending write.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry<T> {
    pub id: OutboxId,
    /// When it was queued (unix milliseconds).
    pub enqueued_at_ms: u64,
    pub value: T,
}

/// A write the backend rejected, kept for the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter<T> {
    pub id: OutboxId,
    pub enqueued_at_ms: u64,
    /// When it was rejected (unix milliseconds).
    pub dead_at_ms: u64,
    /// The backend's business status (e.g. 603, 801).
    pub status: i64,
    /// The backend's message (truncated to 1 KiB).
    pub message: String,
    pub value: T,
}

/// Why a dead letter is dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadReason {
    /// The backend refused it: its business status and message.
    Refused { status: i64, message: String },
    /// Its pending record could not be read or decoded; the raw bytes are kept as they were.
    Undecodable { detail: String },
}

/// A dead letter's state in an [`OutboxItem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadState {
    /// When it was set aside (unix ms), if the record says.
    pub dead_at_ms: Option<u64>,
    /// Why.
    pub reason: DeadReason,
}

/// One row of the outbox as an operator sees it, pending or dead, readable or not.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem<T> {
    pub id: OutboxId,
    /// When it was queued (unix ms), if the record's header can be read.
    pub enqueued_at_ms: Option<u64>,
    /// Set for a dead letter.
    pub dead: Option<DeadState>,
    /// The write, or why it cannot be read (never quoting the payload).
    pub value: Result<T, String>,
}

/// Outbox lengths and age, from counters and the first key: no scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: u64,
    pub dead: u64,
    pub max: u64,
    /// Enqueue time of the oldest pending write.
    pub oldest_enqueued_at_ms: Option<u64>,
}

fn decode_pending<T: DeserializeOwned>(
    sealer: &Sealer,
    id: u64,
    bytes: &[u8],
) -> Result<OutboxEntry<T>, StoreError> {
    let err = |e: codec::DecodeError| e.into_store("outbox entry", id);
    let mut r = Reader::new(bytes).map_err(err)?;
    let enqueued_at_ms = r.u64().map_err(err)?;
    let plain = sealer.open_sealed(id, r.rest()).map_err(err)?;
    let value = codec::decode_payload(&plain).map_err(err)?;
    Ok(OutboxEntry {
        id,
        enqueued_at_ms,
        value,
    })
}

fn decode_dead<T: DeserializeOwned>(
    sealer: &Sealer,
    id: u64,
    bytes: &[u8],
) -> Result<DeadLetter<T>, StoreError> {
    let err = |e: codec::DecodeError| e.into_store("dead letter", id);
    let mut r = Reader::new(bytes).map_err(err)?;
    let enqueued_at_ms = r.u64().map_err(err)?;
    let dead_at_ms = r.u64().map_err(err)?;
    let status = r.i64().map_err(err)?;
    let message = r.str().map_err(err)?.to_string();
    let plain = sealer.open_sealed(id, r.rest()).map_err(err)?;
    let value = codec::decode_payload(&plain).map_err(err)?;
    Ok(DeadLetter {
        id,
        enqueued_at_ms,
        dead_at_ms,
        status,
        message,
        value,
    })
}

/// The reason text of a decode error (never the payload).
fn decode_reason(e: StoreError) -> String {
    match e {
        StoreError::Decode { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// The enqueue time in a pending record's header, if readable.
fn pending_enqueued_at(bytes: &[u8]) -> Option<u64> {
    Reader::new(bytes).and_then(|mut r| r.u64()).ok()
}

fn item_pending<T: DeserializeOwned>(sealer: &Sealer, id: u64, bytes: &[u8]) -> OutboxItem<T> {
    OutboxItem {
        id,
        enqueued_at_ms: pending_enqueued_at(bytes),
        dead: None,
        value: decode_pending(sealer, id, bytes)
            .map(|e| e.value)
            .map_err(decode_reason),
    }
}

/// The parts of a set-aside record: dead-at, reason, the original pending bytes.
fn parse_raw_dead(bytes: &[u8]) -> Result<(u64, &str, &[u8]), codec::DecodeError> {
    let mut r = Reader::new_version(bytes, RECORD_RAW_DEAD)?;
    let dead_at = r.u64()?;
    let reason = r.str()?;
    Ok((dead_at, reason, r.rest()))
}

fn item_dead<T: DeserializeOwned>(sealer: &Sealer, id: u64, bytes: &[u8]) -> OutboxItem<T> {
    if bytes.first() == Some(&RECORD_RAW_DEAD) {
        return match parse_raw_dead(bytes) {
            Ok((dead_at, reason, raw)) => OutboxItem {
                id,
                enqueued_at_ms: pending_enqueued_at(raw),
                dead: Some(DeadState {
                    dead_at_ms: Some(dead_at),
                    reason: DeadReason::Undecodable {
                        detail: reason.to_owned(),
                    },
                }),
                value: decode_pending(sealer, id, raw)
                    .map(|e| e.value)
                    .map_err(decode_reason),
            },
            Err(e) => OutboxItem {
                id,
                enqueued_at_ms: None,
                dead: Some(DeadState {
                    dead_at_ms: None,
                    reason: DeadReason::Undecodable {
                        detail: e.0.clone(),
                    },
                }),
                value: Err(e.0),
            },
        };
    }
    match decode_dead::<T>(sealer, id, bytes) {
        Ok(d) => OutboxItem {
            id,
            enqueued_at_ms: Some(d.enqueued_at_ms),
            dead: Some(DeadState {
                dead_at_ms: Some(d.dead_at_ms),
                reason: DeadReason::Refused {
                    status: d.status,
                    message: d.message,
                },
            }),
            value: Ok(d.value),
        },
        Err(e) => {
            // Whatever of the header can still be read.
            let mut r = Reader::new(bytes).ok();
            let enqueued_at_ms = r.as_mut().and_then(|r| r.u64().ok());
            let dead_at_ms = r.as_mut().and_then(|r| r.u64().ok());
            let status = r.as_mut().and_then(|r| r.i64().ok());
            let message = r
                .as_mut()
                .and_then(|r| r.str().ok())
                .unwrap_or_default()
                .to_owned();
            OutboxItem {
                id,
                enqueued_at_ms,
                dead: Some(DeadState {
                    dead_at_ms,
                    reason: DeadReason::Refused {
                        status: status.unwrap_or(0),
                        message,
                    },
                }),
                value: Err(decode_reason(e)),
            }
        }
    }
}

fn truncate_message(m: &str) -> &str {
    if m.len() <= MAX_MESSAGE_BYTES {
        return m;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !m.is_char_boundary(end) {
        end -= 1;
    }
    &m[..end]
}

fn abort(e: StoreError) -> TxError {
    ConflictableTransactionError::Abort(e)
}

impl Store {
    /// Queues `value` at `now_ms` (unix ms); returns its id once it is on disk.
    ///
    /// Refused with [`StoreError::OutboxFull`] (nothing written) when pending plus dead
    /// letters reach `max_outbox`, or [`StoreError::ValueTooLarge`].
    pub fn enqueue<T: Serialize + ?Sized>(
        &self,
        now_ms: u64,
        value: &T,
    ) -> Result<OutboxId, StoreError> {
        let payload = codec::encode_payload(value)?;
        let max = self.config.max_outbox;
        // Held until the entry is committed, so the key cannot rotate under it.
        let sealer = self.sealer.read().unwrap_or_else(|p| p.into_inner());
        let id = (&self.outbox, &self.meta).transaction(|(outbox, meta)| {
            let pending = meta::tx_get(meta, meta::OUTBOX_COUNT)?;
            let dead = meta::tx_get(meta, meta::DEAD_COUNT)?;
            if pending + dead >= max {
                return Err(abort(StoreError::OutboxFull { pending, dead, max }));
            }
            let id = meta::tx_get(meta, meta::OUTBOX_NEXT_ID)?.max(1);
            meta::tx_set(meta, meta::OUTBOX_NEXT_ID, id + 1)?;
            let sealed = sealer.seal(id, &payload).map_err(|source| {
                abort(StoreError::Io {
                    op: "seal a queued write with",
                    path: self.dir.join(KEY_FILE),
                    source,
                })
            })?;
            let record = Writer::new(8 + sealed.len()).u64(now_ms).rest(&sealed);
            outbox.insert(&key(id), record)?;
            meta::tx_set(meta, meta::OUTBOX_COUNT, pending + 1)?;
            Ok(id)
        })?;
        drop(sealer);
        self.sync()?;
        self.update_sidecar(Some(id));
        Ok(id)
    }

    /// The oldest pending write, if any.
    pub fn peek_oldest<T: DeserializeOwned>(&self) -> Result<Option<OutboxEntry<T>>, StoreError> {
        match self.outbox.first()? {
            None => Ok(None),
            Some((k, v)) => {
                let id = parse_u64(&k).ok_or(StoreError::Meta { key: "outbox key" })?;
                decode_pending(
                    &self.sealer.read().unwrap_or_else(|p| p.into_inner()),
                    id,
                    &v,
                )
                .map(Some)
            }
        }
    }

    /// Pending writes in replay order. An entry that does not decode yields
    /// [`StoreError::Decode`] with its id, and iteration goes on.
    pub fn pending<T: DeserializeOwned>(
        &self,
    ) -> impl Iterator<Item = Result<OutboxEntry<T>, StoreError>> + '_ {
        self.outbox.iter().map(|kv| {
            let (k, v) = kv?;
            let id = parse_u64(&k).ok_or(StoreError::Meta { key: "outbox key" })?;
            decode_pending(
                &self.sealer.read().unwrap_or_else(|p| p.into_inner()),
                id,
                &v,
            )
        })
    }

    /// Removes a delivered write (and its personal data). Returns whether it was pending.
    pub fn remove_delivered(&self, id: OutboxId) -> Result<bool, StoreError> {
        let removed = (&self.outbox, &self.meta).transaction(|(outbox, meta)| {
            if outbox.remove(&key(id))?.is_none() {
                return Ok(false);
            }
            let pending = meta::tx_get(meta, meta::OUTBOX_COUNT)?;
            meta::tx_set(meta, meta::OUTBOX_COUNT, pending.saturating_sub(1))?;
            Ok(true)
        })?;
        self.update_sidecar(None);
        if removed {
            self.shred_if_drained();
        }
        Ok(removed)
    }

    /// Moves a pending write to the dead-letter list with the backend's answer.
    pub fn dead_letter(
        &self,
        id: OutboxId,
        status: i64,
        message: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let message = truncate_message(message);
        (&self.outbox, &self.dead, &self.meta).transaction(|(outbox, dead, meta)| {
            let Some(bytes) = outbox.remove(&key(id))? else {
                return Err(abort(StoreError::NotFound {
                    what: "pending write",
                    id,
                }));
            };
            let mut r = Reader::new(&bytes).map_err(|e| abort(e.into_store("outbox entry", id)))?;
            let enqueued_at_ms = r
                .u64()
                .map_err(|e| abort(e.into_store("outbox entry", id)))?;
            let payload = r.rest();
            let record = Writer::new(32 + message.len() + payload.len())
                .u64(enqueued_at_ms)
                .u64(now_ms)
                .i64(status)
                .str(message)
                .rest(payload);
            dead.insert(&key(id), record)?;
            let pending = meta::tx_get(meta, meta::OUTBOX_COUNT)?;
            meta::tx_set(meta, meta::OUTBOX_COUNT, pending.saturating_sub(1))?;
            let d = meta::tx_get(meta, meta::DEAD_COUNT)?;
            meta::tx_set(meta, meta::DEAD_COUNT, d + 1)?;
            Ok(())
        })?;
        self.update_sidecar(None);
        Ok(())
    }

    /// Dead letters, oldest id first.
    pub fn dead_letters<T: DeserializeOwned>(
        &self,
    ) -> impl Iterator<Item = Result<DeadLetter<T>, StoreError>> + '_ {
        self.dead.iter().map(|kv| {
            let (k, v) = kv?;
            let id = parse_u64(&k).ok_or(StoreError::Meta { key: "dead key" })?;
            decode_dead(
                &self.sealer.read().unwrap_or_else(|p| p.into_inner()),
                id,
                &v,
            )
        })
    }

    /// Puts a dead letter back in the outbox under its id, so it is replayed next.
    pub fn retry_dead(&self, id: OutboxId) -> Result<(), StoreError> {
        (&self.outbox, &self.dead, &self.meta).transaction(|(outbox, dead, meta)| {
            let Some(bytes) = dead.remove(&key(id))? else {
                return Err(abort(StoreError::NotFound {
                    what: "dead letter",
                    id,
                }));
            };
            if bytes.first() == Some(&RECORD_RAW_DEAD) {
                // Set aside as undecodable: the original bytes go back as they were.
                let (_, _, raw) =
                    parse_raw_dead(&bytes).map_err(|e| abort(e.into_store("dead letter", id)))?;
                outbox.insert(&key(id), raw)?;
                let d = meta::tx_get(meta, meta::DEAD_COUNT)?;
                meta::tx_set(meta, meta::DEAD_COUNT, d.saturating_sub(1))?;
                let pending = meta::tx_get(meta, meta::OUTBOX_COUNT)?;
                meta::tx_set(meta, meta::OUTBOX_COUNT, pending + 1)?;
                return Ok(());
            }
            let mut r = Reader::new(&bytes).map_err(|e| abort(e.into_store("dead letter", id)))?;
            let enqueued_at_ms = r
                .u64()
                .map_err(|e| abort(e.into_store("dead letter", id)))?;
            let _dead_at = r
                .u64()
                .map_err(|e| abort(e.into_store("dead letter", id)))?;
            let _status = r
                .i64()
                .map_err(|e| abort(e.into_store("dead letter", id)))?;
            let _message = r
                .str()
                .map_err(|e| abort(e.into_store("dead letter", id)))?;
            let payload = r.rest();
            let record = Writer::new(8 + payload.len())
                .u64(enqueued_at_ms)
                .rest(payload);
            outbox.insert(&key(id), record)?;
            let d = meta::tx_get(meta, meta::DEAD_COUNT)?;
            meta::tx_set(meta, meta::DEAD_COUNT, d.saturating_sub(1))?;
            let pending = meta::tx_get(meta, meta::OUTBOX_COUNT)?;
            meta::tx_set(meta, meta::OUTBOX_COUNT, pending + 1)?;
            Ok(())
        })?;
        self.update_sidecar(None);
        Ok(())
    }

    /// Deletes a dead letter for good (an operator's decision). Returns whether it existed.
    pub fn drop_dead(&self, id: OutboxId) -> Result<bool, StoreError> {
        let dropped = (&self.dead, &self.meta).transaction(|(dead, meta)| {
            if dead.remove(&key(id))?.is_none() {
                return Ok(false);
            }
            let d = meta::tx_get(meta, meta::DEAD_COUNT)?;
            meta::tx_set(meta, meta::DEAD_COUNT, d.saturating_sub(1))?;
            Ok(true)
        })?;
        self.update_sidecar(None);
        if dropped {
            self.shred_if_drained();
        }
        Ok(dropped)
    }

    /// Moves a pending entry that cannot be read to the dead letters, its bytes kept exactly
    /// as they were, with `detail` (why it could not be read). Works whatever the bytes are,
    /// so one damaged entry never blocks the entries behind it. Returns whether it was
    /// pending.
    pub fn dead_letter_undecodable(
        &self,
        id: OutboxId,
        detail: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let detail = truncate_message(detail);
        let moved =
            (&self.outbox, &self.dead, &self.meta).transaction(|(outbox, dead, meta)| {
                let Some(raw) = outbox.remove(&key(id))? else {
                    return Ok(false);
                };
                let record = Writer::new_version(16 + detail.len() + raw.len(), RECORD_RAW_DEAD)
                    .u64(now_ms)
                    .str(detail)
                    .rest(&raw);
                dead.insert(&key(id), record)?;
                let pending = meta::tx_get(meta, meta::OUTBOX_COUNT)?;
                meta::tx_set(meta, meta::OUTBOX_COUNT, pending.saturating_sub(1))?;
                let d = meta::tx_get(meta, meta::DEAD_COUNT)?;
                meta::tx_set(meta, meta::DEAD_COUNT, d + 1)?;
                Ok(true)
            })?;
        self.update_sidecar(None);
        Ok(moved)
    }

    /// Deletes a pending entry for good (an operator's decision), readable or not. Returns
    /// whether it was pending.
    pub fn drop_pending(&self, id: OutboxId) -> Result<bool, StoreError> {
        let dropped = (&self.outbox, &self.meta).transaction(|(outbox, meta)| {
            if outbox.remove(&key(id))?.is_none() {
                return Ok(false);
            }
            let pending = meta::tx_get(meta, meta::OUTBOX_COUNT)?;
            meta::tx_set(meta, meta::OUTBOX_COUNT, pending.saturating_sub(1))?;
            Ok(true)
        })?;
        self.update_sidecar(None);
        if dropped {
            self.shred_if_drained();
        }
        Ok(dropped)
    }

    /// Every row: pending entries in replay order, then dead letters, each readable or not.
    /// Only a failure of sled itself fails the whole list; a damaged row is an item whose
    /// `value` says why it cannot be read.
    pub fn outbox_items<T: DeserializeOwned>(&self) -> Result<Vec<OutboxItem<T>>, StoreError> {
        let sealer = self.sealer.read().unwrap_or_else(|p| p.into_inner());
        let mut items = Vec::new();
        for (tree, dead) in [(&self.outbox, false), (&self.dead, true)] {
            for kv in tree.iter() {
                let (k, v) = kv?;
                let Some(id) = parse_u64(&k) else {
                    log::error!("store: an outbox key of {} bytes is not an id", k.len());
                    continue;
                };
                items.push(if dead {
                    item_dead(&sealer, id, &v)
                } else {
                    item_pending(&sealer, id, &v)
                });
            }
        }
        Ok(items)
    }

    /// One row by id, pending or dead, readable or not.
    pub fn outbox_item<T: DeserializeOwned>(
        &self,
        id: OutboxId,
    ) -> Result<Option<OutboxItem<T>>, StoreError> {
        let sealer = self.sealer.read().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = self.outbox.get(key(id))? {
            return Ok(Some(item_pending(&sealer, id, &v)));
        }
        Ok(self.dead.get(key(id))?.map(|v| item_dead(&sealer, id, &v)))
    }

    /// Pending writes (a counter, no scan).
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        meta::get(&self.meta, meta::OUTBOX_COUNT)
    }

    /// Lengths, bound and oldest enqueue time.
    pub fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let oldest_enqueued_at_ms = match self.outbox.first()? {
            None => None,
            // A damaged head entry has no age to report; the replay sets it aside.
            Some((_, v)) => pending_enqueued_at(&v),
        };
        Ok(OutboxStats {
            pending: meta::get(&self.meta, meta::OUTBOX_COUNT)?,
            dead: meta::get(&self.meta, meta::DEAD_COUNT)?,
            max: self.config.max_outbox,
            oldest_enqueued_at_ms,
        })
    }

    /// Age of the oldest pending write at `now_ms`, if any.
    pub fn oldest_age_ms(&self, now_ms: u64) -> Result<Option<u64>, StoreError> {
        Ok(self
            .outbox_stats()?
            .oldest_enqueued_at_ms
            .map(|t| now_ms.saturating_sub(t)))
    }

    /// When no write is pending or dead, makes that durable and overwrites the sealing key,
    /// so the bytes of every settled write left in sled's log can no longer be read. A
    /// failure is logged and retried at the next drain.
    fn shred_if_drained(&self) {
        let mut sealer = self.sealer.write().unwrap_or_else(|p| p.into_inner());
        let drained = meta::get(&self.meta, meta::OUTBOX_COUNT)
            .and_then(|p| Ok(p + meta::get(&self.meta, meta::DEAD_COUNT)?))
            .map(|n| n == 0);
        let result = match drained {
            Ok(false) => return,
            Ok(true) => self.sync().and_then(|()| {
                sealer.rotate().map_err(|source| StoreError::Io {
                    op: "rotate the sealing key",
                    path: self.dir.join(KEY_FILE),
                    source,
                })
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            log::warn!("store: outbox drained but its sealing key was not rotated: {e}");
        }
    }

    /// Rewrites the sidecar; `acked` is an id whose enqueue was just fsynced. A failure
    /// only costs the quarantine report its number.
    fn update_sidecar(&self, acked: Option<OutboxId>) {
        let mut guard = self.sidecar.lock().unwrap_or_else(|p| p.into_inner());
        let (f, last_acked) = &mut *guard;
        *last_acked = (*last_acked).max(acked.unwrap_or(0));
        let counts = meta::get(&self.meta, meta::OUTBOX_COUNT)
            .and_then(|p| Ok((p, meta::get(&self.meta, meta::DEAD_COUNT)?)));
        match counts {
            Ok((pending, dead)) => {
                let state = fsutil::Sidecar {
                    pending,
                    dead,
                    acked: *last_acked,
                };
                if let Err(e) = fsutil::write_sidecar(f, state) {
                    log::warn!("store: cannot update the queued-writes sidecar: {e}");
                }
            }
            Err(e) => log::warn!("store: cannot read outbox counters: {e}"),
        }
    }
}
