//! Crypto-shredding of queued writes: outbox payloads are sealed (ChaCha20-Poly1305) with a
//! key kept in its own small file, and that key is overwritten with a fresh one whenever the
//! outbox and the dead letters are both empty.
//!
//! Why: sled is log-structured, so a delivered write's bytes stay in the `db` file after its
//! removal until sled happens to reuse that segment (measured: still there after thousands
//! of later writes). Nothing in sled's API scrubs them. Sealed, those leftover bytes are
//! ciphertext, and once every write sealed under a key is settled the key itself is
//! overwritten in place (and fsynced), so the leftovers can no longer be read. While writes
//! are queued their personal data is readable by whoever can read the 0600 files: that is
//! what queueing them means.
//!
//! Each record carries a random 96-bit nonce (never derived from the outbox id, so an id
//! reused after a crash can never reuse a nonce); the outbox id is the associated data, so a
//! sealed payload cannot be moved under another id unnoticed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::codec::DecodeError;

/// Name of the key file inside the store directory.
pub(crate) const KEY_FILE: &str = "outbox.key";
const KEY_LEN: usize = 32;

/// The current sealing key and its file.
pub(crate) struct Sealer {
    key: LessSafeKey,
    file: File,
    rng: SystemRandom,
}

/// How the key file was found at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyState {
    /// It existed and was well-formed.
    Loaded,
    /// There was none; a new key was created.
    Created,
    /// It was damaged (wrong length); it was moved aside and a new key created.
    Replaced,
}

impl Sealer {
    /// Loads the key from `dir`, or creates one (0600, fsynced with its directory entry).
    pub(crate) fn open(dir: &Path) -> io::Result<(Sealer, KeyState)> {
        let path = dir.join(KEY_FILE);
        let rng = SystemRandom::new();
        let mut state = KeyState::Loaded;
        match File::open(&path) {
            Ok(mut f) => {
                let mut raw = Vec::with_capacity(KEY_LEN);
                f.read_to_end(&mut raw)?;
                if raw.len() != KEY_LEN {
                    let aside = dir.join(format!("{KEY_FILE}.damaged"));
                    fs::rename(&path, &aside)?;
                    state = KeyState::Replaced;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => state = KeyState::Created,
            Err(e) => return Err(e),
        }
        if state != KeyState::Loaded {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all_at(&fresh_key(&rng)?, 0)?;
            file.sync_all()?;
            File::open(dir)?.sync_all()?;
        }
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut raw = [0u8; KEY_LEN];
        file.read_exact_at(&mut raw, 0)?;
        let key = make_key(&raw)?;
        Ok((Sealer { key, file, rng }, state))
    }

    /// Seals `plaintext` for outbox id `id`: nonce, then ciphertext and tag.
    pub(crate) fn seal(&self, id: u64, plaintext: &[u8]) -> io::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| io::Error::other("no randomness for a nonce"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(id.to_be_bytes()),
                &mut body,
            )
            .map_err(|_| io::Error::other("sealing failed"))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a payload sealed by [`Sealer::seal`] for `id`.
    pub(crate) fn open_sealed(&self, id: u64, sealed: &[u8]) -> Result<Vec<u8>, DecodeError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(DecodeError("sealed payload truncated".into()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("12 bytes");
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(id.to_be_bytes()), &mut body)
            .map_err(|_| DecodeError("sealed payload does not open with the current key".into()))?;
        Ok(plain.to_vec())
    }

    /// Overwrites the key file in place with a fresh key and fsyncs it; the old key is gone
    /// from the file (an in-place overwrite reuses the same blocks on ext4).
    pub(crate) fn rotate(&mut self) -> io::Result<()> {
        let raw = fresh_key(&self.rng)?;
        self.file.write_all_at(&raw, 0)?;
        self.file.sync_all()?;
        self.key = make_key(&raw)?;
        Ok(())
    }
}

fn fresh_key(rng: &SystemRandom) -> io::Result<[u8; KEY_LEN]> {
    let mut raw = [0u8; KEY_LEN];
    rng.fill(&mut raw)
        .map_err(|_| io::Error::other("no randomness for a key"))?;
    Ok(raw)
}

fn make_key(raw: &[u8; KEY_LEN]) -> io::Result<LessSafeKey> {
    let unbound =
        UnboundKey::new(&CHACHA20_POLY1305, raw).map_err(|_| io::Error::other("bad key length"))?;
    Ok(LessSafeKey::new(unbound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, state) = Sealer::open(dir.path()).unwrap();
        assert_eq!(state, KeyState::Created);
        let sealed = s.seal(7, b"phone 13800000000").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"phone"));
        assert_eq!(s.open_sealed(7, &sealed).unwrap(), b"phone 13800000000");
        assert!(s.open_sealed(8, &sealed).is_err(), "bound to its id");
        let mut bad = sealed.clone();
        bad[NONCE_LEN + 1] ^= 1;
        assert!(s.open_sealed(7, &bad).is_err());
        assert!(s.open_sealed(7, &sealed[..10]).is_err());
        // The same key comes back at the next open; a rotated one does not open old data.
        let (again, state) = Sealer::open(dir.path()).unwrap();
        assert_eq!(state, KeyState::Loaded);
        assert!(again.open_sealed(7, &sealed).is_ok());
        s.rotate().unwrap();
        assert!(s.open_sealed(7, &sealed).is_err());
        let (after, _) = Sealer::open(dir.path()).unwrap();
        assert!(after.open_sealed(7, &sealed).is_err());
    }

    #[test]
    fn a_damaged_key_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let (_s, state) = Sealer::open(dir.path()).unwrap();
        assert_eq!(state, KeyState::Replaced);
        assert_eq!(
            fs::read(dir.path().join(format!("{KEY_FILE}.damaged"))).unwrap(),
            b"short"
        );
        assert_eq!(fs::read(dir.path().join(KEY_FILE)).unwrap().len(), KEY_LEN);
    }
}
