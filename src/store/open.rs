//! Opening the store: private modes, sled's configuration, and the quarantine of a store
//! that sled cannot open.
//!
//! A till with no engineer on site must not crash-loop on a damaged disk. When sled reports
//! corruption (or a damaged file it cannot parse), the whole directory is renamed to a dated
//! `<name>.quarantine-<UTC>` sibling (kept for an operator, never deleted), a loud error is
//! logged with the number of queued writes it held (from the sidecar file, when readable),
//! and an empty store is opened in its place. Errors that are not about the store's bytes
//! (another process holds the lock, permissions, a full disk) are returned instead: moving a
//! healthy store aside for those would hide queued writes for nothing.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

use super::codec::{key, parse_u64};
use super::{Store, StoreConfig, StoreError, fsutil, meta, seal};

/// What happened while opening the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The store directory did not hold a store before (first start, or after quarantine).
    pub created: bool,
    /// Set when the previous store could not be opened and was moved aside.
    pub quarantined: Option<Quarantined>,
    /// Set when sled opened the store but without writes it had acknowledged.
    pub lost_acknowledged: Option<LostAcknowledged>,
    /// Cards in the cache as found (before eviction to a lowered `max_cards`).
    pub cards: u64,
    /// Writes waiting in the outbox after open.
    pub pending: u64,
    /// Dead letters after open.
    pub dead: u64,
    /// The outbox sealing key was missing or damaged while writes were queued: those
    /// writes cannot be read (they yield `StoreError::Decode` with their ids).
    pub sealing_key_replaced: bool,
}

/// A store that was moved aside because sled could not open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Where the old store now is.
    pub path: PathBuf,
    /// sled's error, as text.
    pub reason: String,
    /// Queued writes the old store held as of its last outbox change, if the sidecar file
    /// could be read (it is not fsynced: after a power cut it may lag the last change).
    pub queued: Option<QueuedCount>,
}

/// Evidence that sled recovered less than it had acknowledged: the sidecar recorded outbox
/// ids up to `last_acked_id` as on disk, but the recovered store's next id is not above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostAcknowledged {
    pub last_acked_id: u64,
    pub recovered_next_id: u64,
}

/// Queued writes held by a store: pending plus dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedCount {
    pub pending: u64,
    pub dead: u64,
}

/// Whether a sled open error means the store's bytes are damaged.
fn is_damage(e: &sled::Error) -> bool {
    use std::io::ErrorKind;
    match e {
        sled::Error::Corruption { .. } | sled::Error::ReportableBug(_) => true,
        sled::Error::Unsupported(_) => true,
        sled::Error::Io(io) => {
            matches!(io.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof)
        }
        sled::Error::CollectionNotFound(_) => false,
    }
}

impl Store {
    /// Opens the store in `dir`, creating it (0700, files 0600) if needed.
    ///
    /// A store sled cannot open because its bytes are damaged is quarantined and an empty
    /// one opened instead; [`OpenReport::quarantined`] says so. Open does no scan or count:
    /// lengths come from the `meta` counters.
    pub fn open(
        dir: impl AsRef<Path>,
        config: &StoreConfig,
    ) -> Result<(Store, OpenReport), StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let io_err = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { op, path, source }
        };
        fsutil::create_private_dir(&dir).map_err(io_err("create the store directory", &dir))?;
        let existed = dir.join("db").exists();
        // The sidecar is created right after the schema key is durable: if it exists, this
        // directory held an initialised store, whatever sled now says.
        let initialised = dir.join(fsutil::SIDECAR).exists();
        let prior = fsutil::read_sidecar(&dir);

        let (db, quarantined) = match open_sled(&dir, config) {
            Ok(db) if initialised && !has_schema(&db)? => {
                // sled treats an unreadable log as a torn tail and opens what precedes it:
                // here nothing, so the store's data is gone, not merely absent.
                drop(db);
                let q = quarantine(&dir, "sled opened it without its data (unreadable log)")?;
                let db = open_sled(&dir, config).map_err(|source| StoreError::Open {
                    path: dir.clone(),
                    source,
                })?;
                (db, Some(q))
            }
            Ok(db) => (db, None),
            Err(source) if is_damage(&source) => {
                let q = quarantine(&dir, &source.to_string())?;
                let db = open_sled(&dir, config).map_err(|source| StoreError::Open {
                    path: dir.clone(),
                    source,
                })?;
                (db, Some(q))
            }
            Err(source) => return Err(StoreError::Open { path: dir, source }),
        };
        let created = !existed || quarantined.is_some();

        let tree = |name: &str| db.open_tree(name);
        let meta = tree("meta")?;
        let (cards, card_keys, card_lru) = (tree("cards")?, tree("card_keys")?, tree("card_lru")?);
        let (outbox, dead) = (tree("outbox")?, tree("dead")?);

        // Whether this open wrote anything that must be durable before we go on.
        let mut wrote = false;
        match meta.get(meta::SCHEMA)? {
            None => {
                meta.insert(meta::SCHEMA, &meta::SCHEMA_VERSION.to_be_bytes()[..])?;
                wrote = true;
            }
            Some(v) => {
                let found = parse_u64(&v).ok_or(StoreError::Meta { key: "schema" })?;
                if found != meta::SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        path: dir,
                        found,
                        expected: meta::SCHEMA_VERSION,
                    });
                }
            }
        }

        let next_id = meta::get(&meta, meta::OUTBOX_NEXT_ID)?;
        let lost_acknowledged = match prior {
            Some(p) if quarantined.is_none() && p.acked > 0 && next_id <= p.acked => {
                log::error!(
                    "STORE LOST ACKNOWLEDGED WRITES: {} recovered outbox ids below {next_id}, \
                     but ids up to {} had been acknowledged as queued; sled discarded part of \
                     its log (disk damage?). The writes after the damage will NOT be delivered.",
                    dir.display(),
                    p.acked
                );
                // Never hand out a lost write's id again: the cashier was told it.
                meta.insert(meta::OUTBOX_NEXT_ID, &(p.acked + 1).to_be_bytes()[..])?;
                wrote = true;
                Some(LostAcknowledged {
                    last_acked_id: p.acked,
                    recovered_next_id: next_id,
                })
            }
            _ => None,
        };

        let next_seq = match last_u64_key(&card_lru)? {
            Some(k) => parse_u64(&k).ok_or(StoreError::Meta { key: "card_lru" })? + 1,
            None => 1,
        };
        let db_path = dir.join("db");
        let db_file = File::open(&db_path).map_err(io_err("open for fsync", &db_path))?;
        // The schema key is made durable before the sidecar exists (see `initialised`). An
        // open that wrote nothing skips this: it costs tens of ms on a large store.
        if wrote {
            db.flush()?;
            db_file.sync_all().map_err(io_err("fsync", &db_path))?;
        }
        let sidecar =
            fsutil::open_sidecar(&dir).map_err(io_err("open the sidecar file in", &dir))?;

        let (sealer, key_state) =
            seal::Sealer::open(&dir).map_err(io_err("open the sealing key in", &dir))?;
        let mut report = OpenReport {
            created,
            quarantined,
            lost_acknowledged,
            cards: meta::get(&meta, meta::CARDS_COUNT)?,
            pending: meta::get(&meta, meta::OUTBOX_COUNT)?,
            dead: meta::get(&meta, meta::DEAD_COUNT)?,
            sealing_key_replaced: false,
        };
        if key_state != seal::KeyState::Loaded && report.pending + report.dead > 0 {
            log::error!(
                "STORE SEALING KEY {}: {} holds {} queued writes sealed with a key that is \
                 gone; they cannot be read and will NOT be delivered",
                if key_state == seal::KeyState::Created {
                    "MISSING"
                } else {
                    "DAMAGED"
                },
                dir.display(),
                report.pending + report.dead
            );
            report.sealing_key_replaced = true;
        }
        let acked = next_id
            .saturating_sub(1)
            .max(lost_acknowledged.map_or(0, |l| l.last_acked_id));
        let state = fsutil::Sidecar {
            pending: report.pending,
            dead: report.dead,
            acked,
        };
        fsutil::write_sidecar(&sidecar, state)
            .map_err(io_err("write the sidecar file in", &dir))?;

        let store = Store {
            dir: dir.clone(),
            config: config.clone(),
            db,
            db_file,
            meta,
            cards,
            card_keys,
            card_lru,
            outbox,
            dead,
            cache_lock: Mutex::new(()),
            touches: Mutex::new(Default::default()),
            access_seq: AtomicU64::new(next_seq),
            cache_writes: AtomicU64::new(0),
            sidecar: Mutex::new((sidecar, acked)),
            sealer: RwLock::new(sealer),
        };
        // A limit lowered since the last run applies at once.
        {
            let _guard = store.cache_lock.lock().unwrap_or_else(|p| p.into_inner());
            store.evict_over_limit()?;
        }
        fsutil::restrict_tree(&dir).map_err(io_err("restrict file modes in", &dir))?;
        // The schema key is durable already (above); when this open created the store, its
        // directory entries become durable too, so the first acknowledged enqueue does not
        // depend on entries still in the page cache.
        if created {
            fsutil::sync_dir(&dir).map_err(io_err("fsync", &dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsutil::sync_dir(parent).map_err(io_err("fsync", parent))?;
            }
        }
        Ok((store, report))
    }
}

fn open_sled(dir: &Path, config: &StoreConfig) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(config.cache_capacity_bytes)
        .flush_every_ms(config.flush_every_ms)
        .mode(sled::Mode::LowSpace)
        .open()
}

fn has_schema(db: &sled::Db) -> Result<bool, StoreError> {
    Ok(db.open_tree("meta")?.contains_key(meta::SCHEMA)?)
}

/// Moves `dir` aside and recreates it empty; logs the loud error.
fn quarantine(dir: &Path, cause: &str) -> Result<Quarantined, StoreError> {
    let target = fsutil::quarantine_path(dir, SystemTime::now());
    let queued = fsutil::read_sidecar(dir).map(|s| QueuedCount {
        pending: s.pending,
        dead: s.dead,
    });
    std::fs::rename(dir, &target).map_err(|source| StoreError::Io {
        op: "move the damaged store aside to",
        path: target.clone(),
        source,
    })?;
    let held = match queued {
        Some(q) => format!(
            "{} queued writes ({} pending, {} dead letters)",
            q.pending + q.dead,
            q.pending,
            q.dead
        ),
        None => "an unknown number of queued writes".to_string(),
    };
    log::error!(
        "STORE QUARANTINED: sled cannot open {} ({cause}); moved it to {} with {held}; \
         starting with an EMPTY store. Queued writes in the quarantined store will NOT be \
         delivered unless an operator recovers them.",
        dir.display(),
        target.display()
    );
    fsutil::create_private_dir(dir).map_err(|source| StoreError::Io {
        op: "recreate the store directory",
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(Quarantined {
        path: target,
        reason: cause.to_string(),
        queued,
    })
}

/// The greatest key of a tree whose keys are [`key`]s (8-byte big-endian u64s), found with
/// forward lookups only: a binary search on "is there a key at or above `x`" (at most 64
/// seeks, each a tree descent).
///
/// Not `tree.last()`: any reverse iteration in sled (`last`, `next_back`, `get_lt`, whatever
/// the bounds) compiles in its "no upper bound" case, a comparison against a 1 MiB constant of
/// 0xFF bytes (`Iter::high_key`'s `MAX_KEY`), 14% of the shipped binary (issue 12's size,
/// BENCHMARKS.md "5. Size").
fn last_u64_key(tree: &sled::Tree) -> sled::Result<Option<sled::IVec>> {
    let at_or_above = |x: u64| tree.range(key(x)..).next().transpose();
    let Some((first, _)) = at_or_above(0)? else {
        // Empty, or only keys below `key(0)` (shorter: not sequences; the caller refuses).
        return Ok(tree.first()?.map(|(k, _)| k));
    };
    // Invariant: a key >= lo exists; none >= hi + 1.
    let mut lo = parse_u64(&first).unwrap_or(0);
    let mut hi = u64::MAX;
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if at_or_above(mid)?.is_some() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(at_or_above(lo)?.map(|(k, _)| k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_u64_key_is_what_sleds_last_says() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        assert_eq!(last_u64_key(&tree).unwrap(), None);
        let sets: &[&[u64]] = &[
            &[0],
            &[7],
            &[u64::MAX],
            &[1, 2, 3],
            &[5, 1 << 40, u64::MAX - 1],
            &[0, u64::MAX],
            &[3, 1 << 63, (1 << 63) + 1, 12_345_678_901],
        ];
        for set in sets {
            tree.clear().unwrap();
            for &k in *set {
                tree.insert(key(k), &b"pk"[..]).unwrap();
            }
            let want = tree.last().unwrap().map(|(k, _)| k);
            assert_eq!(last_u64_key(&tree).unwrap(), want, "keys {set:?}");
        }
        // Many keys, spread out.
        tree.clear().unwrap();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            tree.insert(key(x >> (x % 50)), &b"pk"[..]).unwrap();
        }
        let want = tree.last().unwrap().map(|(k, _)| k);
        assert_eq!(last_u64_key(&tree).unwrap(), want);
    }

    #[test]
    fn a_key_that_is_not_a_u64_is_still_found_and_refused() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert(key(9), &b"pk"[..]).unwrap();
        tree.insert([0xFFu8; 9], &b"pk"[..]).unwrap();
        let last = last_u64_key(&tree).unwrap().unwrap();
        assert_eq!(parse_u64(&last), None, "{last:?}");
        tree.clear().unwrap();
        tree.insert([0u8; 3], &b"pk"[..]).unwrap();
        let last = last_u64_key(&tree).unwrap().unwrap();
        assert_eq!(parse_u64(&last), None, "{last:?}");
    }
}
