//! The card cache: one entry per card, reachable by wxCode and by cardCode, bounded by a
//! maximum number of cards with least-recently-used eviction.
//!
//! The value is whatever the service stores: a card's summary, or a definitive negative
//! answer ("lost", "does not exist"), so a lost card's old balance is replaced, never served.
//! A put *replaces* every entry that any of its keys reached (with all of that entry's keys):
//! a negative answer known only by wxCode also hides the card's old entry by cardCode.
//!
//! Layout, chosen for few sled keys per card (sled keeps in-memory state per 16-key leaf, so
//! keys cost RAM and start-up time): an entry lives under its *primary key*, `w`+wxCode when
//! the wxCode is known, else `c`+cardCode; a card known by both codes also has a secondary
//! key `c`+cardCode -> primary key in `card_keys`. A lookup by wxCode is one sled get.
//!
//! Recency is an access sequence: `card_lru` maps sequence -> primary key and each entry
//! holds its sequence as last persisted. A put persists a fresh sequence at once. A read
//! (a cache hit, the path a cashier waits on when the network is down) writes nothing to
//! sled and takes no lock the writers hold: it takes a fresh sequence and records it in
//! memory, in `touches` (primary key -> sequence of its last read). The touches reach sled
//! lazily: eviction, before it evicts the card at the front of `card_lru`, moves it to its
//! last read's sequence instead if it was read since; all pending touches are persisted when
//! their number reaches [`MAX_PENDING_TOUCHES`] (so the map stays small) and when the store
//! is closed or dropped. The order is exact LRU while the process lives; a crash forgets the
//! reads since the last persist, and the order falls back to the one on disk (puts and
//! earlier reads), which only makes eviction slightly less well informed.
//!
//! Refetching a card mostly gives the same answer (a cashier's lookup, then the POS app's own
//! lookup of the same card; a card scanned at every sale). A put of an answer equal to the
//! cached one, under the same keys, writes nothing either ([`Store::refresh_card`]): the newer
//! fetch time joins the read's touch in memory and reaches sled with it, so a read reports the
//! newer time at once and a crash can only make the cached answer look older than it is.
//!
//! A move inserts the new LRU key, patches the entry, then removes the old key: each step
//! leaves a state eviction copes with (it skips LRU keys whose entry has moved on), so a
//! crash mid-way needs no transaction. Puts and evictions are sled transactions that also
//! keep `cards.count` in `meta`, so the bound is enforced without counting at open.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::TransactionalTree;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::codec::{self, DecodeError, Reader, Writer, key, parse_u64};
use super::meta::{self, TxError};
use super::{MAX_CODE_BYTES, Store, StoreError};

/// A tagged code as a sled key (`w`/`c` + code bytes).
type SledKey = Vec<u8>;

/// Reads kept in memory before they are persisted together (about 100 bytes each).
const MAX_PENDING_TOUCHES: usize = 1024;

/// Cache hits and unchanged refetches not yet persisted, by primary key.
pub(super) type Touches = HashMap<SledKey, Touch>;

/// What sled does not know yet about one entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Touch {
    /// Access sequence of the last read or refresh.
    seq: u64,
    /// When the entry's answer was last fetched again unchanged (unix ms), if that is newer
    /// than the fetch time stored in the entry.
    refreshed_ms: Option<u64>,
}

impl Touch {
    /// The fetch time to report for an entry stored with `stored_ms`, the touch being newer
    /// than the entry (callers check the sequences).
    fn fetched_at(&self, stored_ms: u64) -> u64 {
        self.refreshed_ms.map_or(stored_ms, |t| t.max(stored_ms))
    }
}

/// Byte offset of the fetch time in an entry record (after the version byte).
const FETCHED_AT_OFFSET: usize = 1;

/// The keys a card is cached under. At least one must be set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardKeys {
    pub wx_code: Option<String>,
    pub card_code: Option<String>,
}

impl CardKeys {
    /// Keys for a card known by both codes.
    pub fn both(wx_code: impl Into<String>, card_code: impl Into<String>) -> Self {
        CardKeys {
            wx_code: Some(wx_code.into()),
            card_code: Some(card_code.into()),
        }
    }
    /// Keys for a card known only by its wxCode.
    pub fn wx(wx_code: impl Into<String>) -> Self {
        CardKeys {
            wx_code: Some(wx_code.into()),
            card_code: None,
        }
    }
    /// Keys for a card known only by its cardCode.
    pub fn card(card_code: impl Into<String>) -> Self {
        CardKeys {
            wx_code: None,
            card_code: Some(card_code.into()),
        }
    }

    /// The validated `(wx key, card key)`; at least one is set.
    fn sled_keys(&self) -> Result<(Option<SledKey>, Option<SledKey>), StoreError> {
        let wx = self
            .wx_code
            .as_deref()
            .map(|w| index_key(b'w', w))
            .transpose()?;
        let card = self
            .card_code
            .as_deref()
            .map(|c| index_key(b'c', c))
            .transpose()?;
        if wx.is_none() && card.is_none() {
            return Err(StoreError::InvalidKey("neither wxCode nor cardCode given"));
        }
        Ok((wx, card))
    }
}

fn index_key(tag: u8, code: &str) -> Result<Vec<u8>, StoreError> {
    if code.is_empty() {
        return Err(StoreError::InvalidKey("empty code"));
    }
    if code.len() > MAX_CODE_BYTES {
        return Err(StoreError::InvalidKey("code longer than 128 bytes"));
    }
    let mut k = Vec::with_capacity(code.len() + 1);
    k.push(tag);
    k.extend_from_slice(code.as_bytes());
    Ok(k)
}

/// A cached card as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedCard<T> {
    pub keys: CardKeys,
    /// When the service fetched this answer (unix milliseconds).
    pub fetched_at_ms: u64,
    pub value: T,
}

/// An entry's header fields: fetched-at, access sequence, keys; then the payload.
struct Entry<'a> {
    fetched_at_ms: u64,
    seq: u64,
    wx: &'a str,
    card: &'a str,
    payload: &'a [u8],
}

/// Byte offset of the access sequence in an entry record (after the version byte and
/// fetched-at), patched in place on every move.
const SEQ_OFFSET: usize = 1 + 8;

fn encode_entry(keys: &CardKeys, fetched_at_ms: u64, seq: u64, payload: &[u8]) -> Vec<u8> {
    let wx = keys.wx_code.as_deref().unwrap_or("");
    let card = keys.card_code.as_deref().unwrap_or("");
    Writer::new(24 + wx.len() + card.len() + payload.len())
        .u64(fetched_at_ms)
        .u64(seq)
        .str(wx)
        .str(card)
        .rest(payload)
}

/// An entry record with a new access sequence and fetch time, the rest as it was.
fn patch_entry(bytes: &[u8], seq: u64, fetched_at_ms: u64) -> Vec<u8> {
    let mut patched = bytes.to_vec();
    patched[FETCHED_AT_OFFSET..FETCHED_AT_OFFSET + 8].copy_from_slice(&fetched_at_ms.to_be_bytes());
    patched[SEQ_OFFSET..SEQ_OFFSET + 8].copy_from_slice(&seq.to_be_bytes());
    patched
}

fn decode_entry(bytes: &[u8]) -> Result<Entry<'_>, DecodeError> {
    let mut r = Reader::new(bytes)?;
    Ok(Entry {
        fetched_at_ms: r.u64()?,
        seq: r.u64()?,
        wx: r.str()?,
        card: r.str()?,
        payload: r.rest(),
    })
}

/// The cached card in an entry record, and the entry's access sequence.
fn decode_card<T: DeserializeOwned>(
    pk: &[u8],
    bytes: &[u8],
) -> Result<(CachedCard<T>, u64), StoreError> {
    let err = |e: DecodeError| e.into_store("card entry", key_id(pk));
    let e = decode_entry(bytes).map_err(err)?;
    let value = codec::decode_payload(e.payload).map_err(err)?;
    let keys = CardKeys {
        wx_code: (!e.wx.is_empty()).then(|| e.wx.to_string()),
        card_code: (!e.card.is_empty()).then(|| e.card.to_string()),
    };
    let card = CachedCard {
        keys,
        fetched_at_ms: e.fetched_at_ms,
        value,
    };
    Ok((card, e.seq))
}

/// The id reported for a card entry in a decode error: 0, since card entries have no
/// number and a code may be personal; the caller knows the code it looked up and can
/// `remove_card` it.
fn key_id(_pk: &[u8]) -> u64 {
    0
}

/// Removes the entry under primary key `pk` (its record, secondary key and LRU key) inside
/// a transaction; returns whether it existed.
fn tx_remove_entry(
    cards: &TransactionalTree,
    card_keys: &TransactionalTree,
    card_lru: &TransactionalTree,
    pk: &[u8],
) -> Result<bool, TxError> {
    let Some(bytes) = cards.remove(pk)? else {
        return Ok(false);
    };
    // A record we cannot parse is still removed; a secondary key left pointing at it then
    // leads nowhere and reads as a miss.
    if let Ok(e) = decode_entry(&bytes) {
        if pk.first() == Some(&b'w') && !e.card.is_empty() {
            let mut secondary = vec![b'c'];
            secondary.extend_from_slice(e.card.as_bytes());
            if card_keys.get(&secondary)?.as_deref() == Some(pk) {
                card_keys.remove(secondary)?;
            }
        }
        card_lru.remove(&key(e.seq))?;
    }
    Ok(true)
}

impl Store {
    /// Caches `value` for the card under `keys`, fetched at `fetched_at_ms` (unix ms).
    ///
    /// Replaces any entry reachable by one of the keys, then evicts least recently used
    /// cards while more than `max_cards` are cached. Not fsynced: the cache is rebuilt from
    /// the network; sled's background flush makes it durable within `flush_every_ms`.
    pub fn put_card<T: Serialize>(
        &self,
        keys: &CardKeys,
        fetched_at_ms: u64,
        value: &T,
    ) -> Result<(), StoreError> {
        let (wx, card) = keys.sled_keys()?;
        let payload = codec::encode_payload(value)?;
        let pk = wx.clone().or_else(|| card.clone()).expect("one key is set");
        if self.refresh_encoded(keys, &pk, fetched_at_ms, &payload)? {
            return Ok(());
        }
        let _guard = self.cache_lock.lock().unwrap_or_else(|p| p.into_inner());
        let seq = self.access_seq.fetch_add(1, Ordering::Relaxed);
        let record = encode_entry(keys, fetched_at_ms, seq, &payload);
        self.count_writes(1);
        (&self.cards, &self.card_keys, &self.card_lru, &self.meta).transaction(
            |(cards, card_keys, card_lru, meta)| {
                let mut count = meta::tx_get(meta, meta::CARDS_COUNT)?;
                // Every entry reachable by one of the keys goes, with all its keys.
                let mut reachable = Vec::with_capacity(3);
                reachable.extend(wx.clone());
                if let Some(c) = &card {
                    reachable.push(c.clone());
                    if let Some(primary) = card_keys.remove(c.as_slice())? {
                        reachable.push(primary.to_vec());
                    }
                }
                for old in &reachable {
                    if tx_remove_entry(cards, card_keys, card_lru, old)? {
                        count = count.saturating_sub(1);
                    }
                }
                cards.insert(pk.as_slice(), record.as_slice())?;
                if let (Some(_), Some(c)) = (&wx, &card) {
                    card_keys.insert(c.as_slice(), pk.as_slice())?;
                }
                card_lru.insert(&key(seq), pk.as_slice())?;
                meta::tx_set(meta, meta::CARDS_COUNT, count + 1)?;
                Ok(())
            },
        )?;
        self.evict_over_limit()
    }

    /// When the cache already holds exactly `value` under exactly `keys`, records the newer
    /// fetch time and the use in memory (see the module docs) and returns true: nothing is
    /// written to sled, no lock the writers hold is taken, and the caller need not
    /// [`put_card`](Store::put_card). False when the entry is missing or differs.
    ///
    /// A few µs (one sled get, one encode), so the service calls it on its executor and hands
    /// only real changes to a blocking thread.
    pub fn refresh_card<T: Serialize>(
        &self,
        keys: &CardKeys,
        fetched_at_ms: u64,
        value: &T,
    ) -> Result<bool, StoreError> {
        let (wx, card) = keys.sled_keys()?;
        let pk = wx.or(card).expect("one key is set");
        self.refresh_encoded(keys, &pk, fetched_at_ms, &codec::encode_payload(value)?)
    }

    /// [`Store::refresh_card`] with the primary key and the payload already made (a put
    /// needs both either way).
    fn refresh_encoded(
        &self,
        keys: &CardKeys,
        pk: &[u8],
        fetched_at_ms: u64,
        payload: &[u8],
    ) -> Result<bool, StoreError> {
        let Some(bytes) = self.cards.get(pk)? else {
            return Ok(false);
        };
        let Ok(entry) = decode_entry(&bytes) else {
            return Ok(false);
        };
        let same_keys = entry.wx == keys.wx_code.as_deref().unwrap_or("")
            && entry.card == keys.card_code.as_deref().unwrap_or("");
        if !same_keys || entry.payload != payload {
            return Ok(false);
        }
        self.touch(pk.to_vec(), entry.seq, Some(fetched_at_ms))?;
        Ok(true)
    }

    /// Records a use (and maybe a refresh) of the entry under `pk`, stored at sequence
    /// `entry_seq`, in memory; persists the pending touches when there are
    /// [`MAX_PENDING_TOUCHES`] of them. Returns the entry's newest unpersisted refresh time:
    /// an earlier touch's counts only if it came after the entry was written (a put of a
    /// different answer since makes it moot).
    fn touch(
        &self,
        pk: SledKey,
        entry_seq: u64,
        refreshed_ms: Option<u64>,
    ) -> Result<Option<u64>, StoreError> {
        let seq = self.access_seq.fetch_add(1, Ordering::Relaxed);
        let (pending, refreshed_ms) = {
            let mut touches = self.touches.lock().unwrap_or_else(|p| p.into_inner());
            let before = touches
                .get(&pk)
                .filter(|t| t.seq > entry_seq)
                .and_then(|t| t.refreshed_ms);
            let refreshed_ms = refreshed_ms.max(before);
            touches.insert(pk, Touch { seq, refreshed_ms });
            (touches.len(), refreshed_ms)
        };
        if pending >= MAX_PENDING_TOUCHES {
            let _guard = self.cache_lock.lock().unwrap_or_else(|p| p.into_inner());
            self.persist_touches()?;
        }
        Ok(refreshed_ms)
    }

    /// The card cached under this wxCode, marking it used.
    pub fn get_card_by_wx<T: DeserializeOwned>(
        &self,
        wx_code: &str,
    ) -> Result<Option<CachedCard<T>>, StoreError> {
        self.get_card(index_key(b'w', wx_code)?)
    }

    /// The card cached under this cardCode, marking it used.
    pub fn get_card_by_code<T: DeserializeOwned>(
        &self,
        card_code: &str,
    ) -> Result<Option<CachedCard<T>>, StoreError> {
        self.get_card(index_key(b'c', card_code)?)
    }

    /// Removes the card reachable by any of `keys`; returns how many entries went.
    pub fn remove_card(&self, keys: &CardKeys) -> Result<u64, StoreError> {
        let (wx, card) = keys.sled_keys()?;
        let _guard = self.cache_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.count_writes(1);
        let removed = (&self.cards, &self.card_keys, &self.card_lru, &self.meta).transaction(
            |(cards, card_keys, card_lru, meta)| {
                let mut reachable = Vec::with_capacity(3);
                reachable.extend(wx.clone());
                if let Some(c) = &card {
                    reachable.push(c.clone());
                    if let Some(primary) = card_keys.remove(c.as_slice())? {
                        reachable.push(primary.to_vec());
                    }
                }
                let mut removed = 0;
                for pk in &reachable {
                    if tx_remove_entry(cards, card_keys, card_lru, pk)? {
                        removed += 1;
                    }
                }
                let count = meta::tx_get(meta, meta::CARDS_COUNT)?;
                meta::tx_set(meta, meta::CARDS_COUNT, count.saturating_sub(removed))?;
                Ok(removed)
            },
        )?;
        Ok(removed)
    }

    /// Cards currently cached (from the `meta` counter, no scan).
    pub fn card_count(&self) -> Result<u64, StoreError> {
        meta::get(&self.meta, meta::CARDS_COUNT)
    }

    fn get_card<T: DeserializeOwned>(
        &self,
        lookup: Vec<u8>,
    ) -> Result<Option<CachedCard<T>>, StoreError> {
        // No `cache_lock`: sled reads see a committed state of each tree, and a put racing
        // this read is one the read may or may not see, as it would be a moment later.
        let (pk, bytes) = match self.cards.get(&lookup)? {
            Some(bytes) => (lookup, bytes),
            // A cardCode of a card also known by wxCode is a secondary key.
            None if lookup[0] == b'c' => {
                let Some(pk) = self.card_keys.get(&lookup)? else {
                    return Ok(None);
                };
                let Some(bytes) = self.cards.get(&pk)? else {
                    return Ok(None);
                };
                (pk.to_vec(), bytes)
            }
            None => return Ok(None),
        };
        let (mut card, entry_seq) = decode_card(&pk, &bytes)?;
        // The read counts as use, in memory only (see the module docs).
        if let Some(refreshed) = self.touch(pk, entry_seq, None)? {
            card.fetched_at_ms = card.fetched_at_ms.max(refreshed);
        }
        Ok(Some(card))
    }

    /// Writes the pending reads' recency to sled (a batch per step, in the order that makes
    /// a crash mid-way harmless). Caller holds `cache_lock`, so no entry changes meanwhile.
    pub(super) fn persist_touches(&self) -> Result<(), StoreError> {
        let touches = std::mem::take(&mut *self.touches.lock().unwrap_or_else(|p| p.into_inner()));
        if touches.is_empty() {
            return Ok(());
        }
        let (mut new_keys, mut entries, mut old_keys) = (
            sled::Batch::default(),
            sled::Batch::default(),
            sled::Batch::default(),
        );
        let mut moves = 0;
        for (pk, touch) in touches {
            let Some(bytes) = self.cards.get(&pk)? else {
                continue; // evicted or removed since the read
            };
            let Ok((old_seq, stored_ms)) = decode_entry(&bytes).map(|e| (e.seq, e.fetched_at_ms))
            else {
                continue;
            };
            if old_seq >= touch.seq {
                continue; // replaced by a put since the read
            }
            new_keys.insert(key(touch.seq).to_vec(), pk.as_slice());
            let patched = patch_entry(&bytes, touch.seq, touch.fetched_at(stored_ms));
            entries.insert(pk, patched);
            old_keys.remove(key(old_seq).to_vec());
            moves += 1;
        }
        if moves > 0 {
            self.count_writes(3);
            self.card_lru.apply_batch(new_keys)?;
            self.cards.apply_batch(entries)?;
            self.card_lru.apply_batch(old_keys)?;
        }
        Ok(())
    }

    /// Moves the entry under `pk` from LRU sequence `old_seq` to `seq`: new LRU key first,
    /// then the entry, then drop the old key; a crash between steps leaves at worst a stale
    /// LRU key, which eviction skips. Caller holds `cache_lock`.
    fn move_entry(
        &self,
        pk: &[u8],
        bytes: &[u8],
        old_seq: u64,
        touch: Touch,
    ) -> Result<(), StoreError> {
        self.count_writes(3);
        self.card_lru.insert(key(touch.seq), pk)?;
        let stored_ms = decode_entry(bytes).map_or(0, |e| e.fetched_at_ms);
        let patched = patch_entry(bytes, touch.seq, touch.fetched_at(stored_ms));
        self.cards.insert(pk, patched)?;
        self.card_lru.remove(key(old_seq))?;
        Ok(())
    }

    fn count_writes(&self, n: u64) {
        self.cache_writes.fetch_add(n, Ordering::Relaxed);
    }

    /// Evicts least recently used cards until at most `max_cards` remain. Caller holds
    /// `cache_lock`.
    pub(super) fn evict_over_limit(&self) -> Result<(), StoreError> {
        while self.card_count()? > self.config.max_cards {
            let Some((seq_key, pk)) = self.card_lru.first()? else {
                log::error!("store: card count above the limit but the LRU index is empty");
                return Ok(());
            };
            let seq = parse_u64(&seq_key).ok_or(StoreError::Meta { key: "card_lru" })?;
            let entry = self.cards.get(&pk)?;
            let current = entry
                .as_deref()
                .and_then(|b| decode_entry(b).ok().map(|e| e.seq));
            if current.is_some() && current != Some(seq) {
                // A stale key left by a move: the entry lives on at a later sequence.
                self.count_writes(1);
                self.card_lru.remove(seq_key)?;
                continue;
            }
            let touched = self
                .touches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(pk.as_ref());
            if let (Some(bytes), Some(read)) = (&entry, touched.filter(|t| t.seq > seq)) {
                // Read since it was last persisted: it moves to that read's place instead.
                self.move_entry(&pk, bytes, seq, read)?;
                continue;
            }
            self.count_writes(1);
            (&self.cards, &self.card_keys, &self.card_lru, &self.meta)
                .transaction(|(cards, card_keys, card_lru, meta)| {
                    card_lru.remove(&seq_key)?;
                    if tx_remove_entry(cards, card_keys, card_lru, &pk)? {
                        let count = meta::tx_get(meta, meta::CARDS_COUNT)?;
                        meta::tx_set(meta, meta::CARDS_COUNT, count.saturating_sub(1))?;
                    }
                    Ok::<_, TxError>(())
                })
                .map_err(StoreError::from)?;
        }
        Ok(())
    }
}
