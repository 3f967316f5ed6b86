//! A full disk: the store on a small tmpfs that fills up. Every enqueue either returns an id
//! (and that write is there after a reopen) or a clear error; nothing panics, nothing
//! acknowledged is lost, and a store that cannot open for lack of space is not taken for
//! damaged (quarantine would strand its queued writes). Needs root for the mount (in a private mount namespace); under CI it
//! must run, elsewhere without root it is skipped with a loud line.

use std::ffi::CString;
use std::io::Write;

use serde::{Deserialize, Serialize};
use wxcardd::store::{Store, StoreConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Write1 {
    seq: u64,
    filler: String,
}

/// Mounts a tmpfs of `size` at `dir` in this process's own mount namespace.
fn mount_small_disk(dir: &std::path::Path, size: &str) -> bool {
    // SAFETY: unshare and mount with valid NUL-terminated strings; this test binary is its
    // own process, so the new namespace affects nothing else.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return false;
        }
        let root = CString::new("/").unwrap();
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return false;
        }
        let src = CString::new("tmpfs").unwrap();
        let target = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let data = CString::new(format!("size={size},mode=0700")).unwrap();
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            data.as_ptr().cast(),
        ) == 0
    }
}

#[test]
fn a_full_disk_refuses_writes_clearly_and_loses_none_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    if !mount_small_disk(tmp.path(), "6m") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: the tmpfs mount must work"
        );
        let _ = std::io::stderr()
            .write_all(b"SKIPPED: mounting a small tmpfs needs root; CI runs this test\n");
        return;
    }
    let dir = tmp.path().join("store");
    // Room a technician can free later (old logs, say).
    let filler = tmp.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1024 * 1024]).unwrap();
    let config = StoreConfig {
        max_outbox: 1_000_000,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(&dir, &config).unwrap();
    let mut acked = Vec::new();
    let mut refused = 0;
    let mut first_error = None;
    for seq in 0..20_000u64 {
        let w = Write1 {
            seq,
            filler: format!("{seq:0>2000}"),
        };
        match store.enqueue(seq, &w) {
            Ok(id) => acked.push((id, seq)),
            Err(e) => {
                refused += 1;
                first_error.get_or_insert_with(|| e.to_string());
                if refused > 50 {
                    break;
                }
            }
        }
    }
    let first_error = first_error.expect("the 6 MiB disk filled up");
    assert!(
        first_error.contains("No space left")
            || first_error.contains("ENOSPC")
            || first_error.contains("space"),
        "a full disk is named as such: {first_error}"
    );
    assert!(!acked.is_empty());
    drop(store);

    // On the still-full disk sled cannot open: a clear error, and the store is NOT taken for
    // damaged (quarantining it would strand the queued writes).
    let Err(err) = Store::open(&dir, &config) else {
        panic!("the store opened on a full disk");
    };
    assert!(err.to_string().contains("No space left"), "{err}");
    let entries: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !entries.iter().any(|n| n.contains("quarantine")),
        "{entries:?}"
    );

    // Room made: everything acknowledged is there, intact.
    std::fs::remove_file(&filler).unwrap();
    let (store, report) = Store::open(&dir, &config).unwrap();
    assert_eq!(report.quarantined, None, "{report:?}");
    assert_eq!(report.lost_acknowledged, None, "{report:?}");
    let present: Vec<_> = store
        .pending::<Write1>()
        .map(|e| e.expect("readable"))
        .collect();
    for (id, seq) in &acked {
        let entry = present
            .iter()
            .find(|e| e.id == *id)
            .unwrap_or_else(|| panic!("acknowledged write {seq} (id {id}) lost"));
        assert_eq!(entry.value.seq, *seq);
    }
}
