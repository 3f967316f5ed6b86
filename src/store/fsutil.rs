//! Filesystem chores around sled: private modes, directory fsync, the quarantine folder name
//! and the queued-writes sidecar file.
//!
//! The sidecar exists because a store sled cannot open cannot be asked how many queued
//! writes it held; a one-line text file beside sled's files, rewritten in place after every
//! outbox change, can still be read when the database cannot.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Name of the queued-writes sidecar file inside the store directory.
pub(crate) const SIDECAR: &str = "queued.count";

/// Creates `dir` (and missing parents) as 0700, and tightens an existing `dir` to 0700.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Sets every file under `dir` to 0600 and every directory (with `dir`) to 0700.
///
/// sled creates its files with the process umask; this runs at open and close. The 0700
/// directory is what keeps a file sled creates in between (a snapshot) private.
pub(crate) fn restrict_tree(dir: &Path) -> io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            restrict_tree(&entry.path())?;
        } else if ty.is_file() {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// fsyncs a directory so that entries created or renamed in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The quarantine folder for `dir`: a sibling named `<name>.quarantine-<UTC time>`, with a
/// numeric suffix if that exists already.
pub(crate) fn quarantine_path(dir: &Path, now: SystemTime) -> PathBuf {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let base = format!("{name}.quarantine-{}", utc_stamp(secs));
    let parent = dir.parent().unwrap_or(Path::new("."));
    let mut candidate = parent.join(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = parent.join(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

/// `YYYYmmddTHHMMSSZ` for unix seconds (proleptic Gregorian, UTC).
pub(crate) fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Opens (creating, 0600) the sidecar file.
pub(crate) fn open_sidecar(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(SIDECAR))
}

/// What the sidecar file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sidecar {
    /// Pending writes after the last outbox change.
    pub(crate) pending: u64,
    /// Dead letters after the last outbox change.
    pub(crate) dead: u64,
    /// The highest outbox id acknowledged (written only after its fsync), so sled's durable
    /// `outbox.next_id` must always be above it: if it is not, sled lost acknowledged data.
    pub(crate) acked: u64,
}

/// Rewrites the sidecar in place with a fixed-width line, so a torn or partial update can
/// only ever leave an unparsable line, never a plausible wrong number.
pub(crate) fn write_sidecar(f: &File, s: Sidecar) -> io::Result<()> {
    let line = format!(
        "pending={:020} dead={:020} acked={:020}\n",
        s.pending, s.dead, s.acked
    );
    f.write_all_at(line.as_bytes(), 0)
}

/// Reads a sidecar written by [`write_sidecar`], or `None` if absent or unparsable.
pub(crate) fn read_sidecar(dir: &Path) -> Option<Sidecar> {
    let text = fs::read_to_string(dir.join(SIDECAR)).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    let mut field = |name: &str| -> Option<u64> { parts.next()?.strip_prefix(name)?.parse().ok() };
    Some(Sidecar {
        pending: field("pending=")?,
        dead: field("dead=")?,
        acked: field("acked=")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_767_225_599), "20251231T235959Z");
        assert_eq!(utc_stamp(4_102_444_800), "21000101T000000Z");
    }

    #[test]
    fn sidecar_round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_sidecar(dir.path()), None);
        let f = open_sidecar(dir.path()).unwrap();
        write_sidecar(
            &f,
            Sidecar {
                pending: 12,
                dead: 3,
                acked: 99,
            },
        )
        .unwrap();
        let s = Sidecar {
            pending: 7,
            dead: 0,
            acked: 100,
        };
        write_sidecar(&f, s).unwrap();
        assert_eq!(read_sidecar(dir.path()), Some(s));
        fs::write(dir.path().join(SIDECAR), b"pending=x dead=1\n").unwrap();
        assert_eq!(read_sidecar(dir.path()), None);
    }
}
