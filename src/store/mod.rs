//! The on-disk store: a bounded card cache and a durable outbox, both in one sled database.
//!
//! Why one module owns sled: the card service decides *when* to trust the cache or queue a
//! write; this module decides *how* those facts survive a power cut, a `kill -9` or a
//! corrupt disk. Nothing outside `store` touches sled, so the key layout, the durability rule
//! (flush, then fsync, before an outbox acknowledgement) and the quarantine of a store that
//! will not open live in one place.
//!
//! The store is generic over the payload: values are any `T: Serialize + DeserializeOwned`,
//! encoded as JSON behind a small fixed binary header (see `codec.rs`). JSON stays tolerant
//! of added optional fields across upgrades and is easy to inspect in an operator tool
//! built on this API; the payloads are a few hundred bytes, so its cost is noise next to an
//! fsync. Outbox payloads are additionally sealed (`seal.rs`).
//!
//! # Layout (sled trees)
//! - `meta`: counters kept transactionally with the data they count (`cards.count`,
//!   `outbox.count`, `dead.count`, `outbox.next_id`) and `schema`. Lengths are read from
//!   here, so nothing is scanned or counted at open.
//! - `cards`: primary key (`w` + wxCode, or `c` + cardCode when no wxCode is known) ->
//!   header + JSON value (`cache.rs`).
//! - `card_keys`: `c` + cardCode -> primary key, for cards known by both codes.
//! - `card_lru`: access sequence (u64 BE) -> primary key; the first key is the least
//!   recently used card.
//! - `outbox`: outbox id (u64 BE) -> header + sealed JSON value (`outbox.rs`, `seal.rs`); key
//!   order is replay order.
//! - `dead`: outbox id (u64 BE) -> dead-letter header (status, message, times) + sealed value,
//!   or, for an entry set aside as undecodable, version 2: dead-at, reason, and the pending
//!   record's bytes exactly as they were.
//!
//! Besides sled's files the directory holds `queued.count` (a sidecar, see `fsutil.rs`) and
//! `outbox.key` (the sealing key, see `seal.rs`).
//!
//! **Architecture Invariant:** the store never decides whether an answer is fresh, stale or
//! valid, and never talks to the network: it keeps what the service gives it, with times the
//! service passes in (unix milliseconds), so tests drive time explicitly.

mod cache;
mod codec;
mod error;
mod fsutil;
mod meta;
mod open;
mod outbox;
mod seal;

pub use cache::{CachedCard, CardKeys};
pub use error::StoreError;
pub use open::{LostAcknowledged, OpenReport, Quarantined, QueuedCount};
pub use outbox::{
    DeadLetter, DeadReason, DeadState, OutboxEntry, OutboxId, OutboxItem, OutboxStats,
};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};

/// Largest encoded value the store accepts (cards and queued writes alike).
///
/// sled 0.34 writes any item larger than a quarter of a segment (128 KiB by default) to a
/// separate "blob" file that it never fsyncs; keeping every value well under that bound means
/// every byte we acknowledge lives in the `db` file that [`Store`] fsyncs.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Longest wxCode or cardCode accepted as a cache key.
pub const MAX_CODE_BYTES: usize = 128;

/// Tunables of the store. [`Default`] gives the values meant for a POS box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// sled's page cache budget in bytes (sled's own default is 1 GiB; a till has little RAM).
    pub cache_capacity_bytes: u64,
    /// Cards kept in the cache; past this the least recently used is evicted.
    pub max_cards: u64,
    /// Queued writes held at once, pending plus dead letters (both hold personal data).
    /// When reached, [`Store::enqueue`] is refused with [`StoreError::OutboxFull`].
    pub max_outbox: u64,
    /// sled's background flush period for non-acknowledged changes (cache, deliveries).
    /// `None` leaves them to the next durable enqueue or [`Store::sync`].
    pub flush_every_ms: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_capacity_bytes: 4 * 1024 * 1024,
            max_cards: 50_000,
            max_outbox: 10_000,
            flush_every_ms: Some(500),
        }
    }
}

/// An open store: the card cache and the outbox. Cheap to share behind an `Arc`; every
/// method takes `&self` and is safe to call from several threads.
///
/// All methods block on disk IO (the durable ones on an fsync): call them from a blocking
/// thread (`spawn_blocking`), not on the async executor's threads.
pub struct Store {
    dir: PathBuf,
    config: StoreConfig,
    db: sled::Db,
    /// A second handle on sled's `db` file, used only to fsync it.
    db_file: File,
    meta: sled::Tree,
    cards: sled::Tree,
    card_keys: sled::Tree,
    card_lru: sled::Tree,
    outbox: sled::Tree,
    dead: sled::Tree,
    /// Serialises cache mutations (put, eviction, persisting reads' recency), which span
    /// several trees. A cache hit does not take it.
    cache_lock: Mutex<()>,
    /// Cache hits whose recency is not on disk yet (see `cache`).
    touches: Mutex<cache::Touches>,
    /// Next access sequence for the LRU tree; starts past the largest one on disk.
    access_seq: AtomicU64,
    /// Sled writes (inserts, removes, transactions) the card cache has made since open.
    cache_writes: AtomicU64,
    /// The key that seals outbox payloads; rotated (write lock) when the outbox drains.
    sealer: RwLock<seal::Sealer>,
    /// The queued-writes sidecar file and the highest acknowledged outbox id, under the lock
    /// that keeps the file's updates in order.
    sidecar: Mutex<(File, u64)>,
}

impl Store {
    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Makes every change so far durable: sled's flush, then an fsync of its data file.
    ///
    /// [`Store::enqueue`] already does this before it returns; call it after a batch of
    /// deliveries to make their removal stick (and their personal data go) at once.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.db_file.sync_all().map_err(|source| StoreError::Io {
            op: "fsync the sled data file",
            path: self.dir.join("db"),
            source,
        })
    }

    /// Closes the store and returns once sled has let go of its files, so another process
    /// can open the store at once. (Dropping a `Store` also syncs and closes it, but sled's
    /// IO threads may hold the data file, and its lock, a moment longer.)
    pub fn close(self) -> Result<(), StoreError> {
        let path = self.dir.join("db");
        let io_err = |source| StoreError::Io {
            op: "wait for sled to release",
            path: path.clone(),
            source,
        };
        // A second descriptor on our own open file description: it never held sled's lock,
        // so a blocking flock on it waits exactly until sled's descriptor is closed.
        let probe = self.db_file.try_clone().map_err(io_err)?;
        drop(self);
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor we own; blocking until sled's lock is released.
        if unsafe { libc::flock(probe.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(std::io::Error::last_os_error()));
        }
        // SAFETY: as above; closing `probe` would release it too.
        unsafe { libc::flock(probe.as_raw_fd(), libc::LOCK_UN) };
        Ok(())
    }

    /// Sled writes (inserts, removes and transactions, each counted once) the card cache has
    /// made since open: what a cache hit costs in writes, for tests and benchmarks.
    pub fn cache_writes(&self) -> u64 {
        self.cache_writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Holds back the card cache's writes (puts, removals, evictions) until the guard is
    /// dropped; reads go on. For tests that show what does not wait for a cache write.
    #[doc(hidden)]
    pub fn hold_cache_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.cache_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes sled reports on disk for the whole store (data file, blobs, snapshots).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The recency of cards read since the last persist, so it survives a restart.
        let persisted = {
            let _guard = self.cache_lock.lock().unwrap_or_else(|p| p.into_inner());
            self.persist_touches()
        };
        if let Err(e) = persisted {
            log::warn!("store: could not persist the cache's read order: {e}");
        }
        if let Err(e) = self.sync() {
            log::error!("store: final sync of {} failed: {e}", self.dir.display());
        }
        // Files sled created since open (snapshots) get the store's modes before we go.
        if let Err(e) = fsutil::restrict_tree(&self.dir) {
            log::warn!(
                "store: could not restrict file modes in {}: {e}",
                self.dir.display()
            );
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    /// The service shares one store between its lookup path and the replay task.
    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::Store>();
    }
}
