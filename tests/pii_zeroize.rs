//! Personal data and the API token are zeroed before their memory is freed (issue 10, part
//! 4): freed memory is what a core dump or the next allocation shows.
//!
//! A global allocator wraps the system's and, while armed, looks in every block being freed
//! for the test's marker values. It allocates nothing itself.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use wxcardd::api::pii::{IdCard, Name, Phone, Pii};
use wxcardd::api::{ApiConfig, Client};

const MARKERS: [&[u8]; 4] = [
    b"13899990000",
    b"110101199912319876",
    "欧阳测试".as_bytes(),
    b"tok-7f3a9c52e1-secret-value",
];

static ARMED: AtomicBool = AtomicBool::new(false);
static FOUND: [AtomicUsize; 4] = [
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
];

struct Watching;

fn contains(block: &[u8], marker: &[u8]) -> bool {
    block.len() >= marker.len() && block.windows(marker.len()).any(|w| w == marker)
}

// SAFETY: every call is passed to `System` unchanged; dealloc only reads the block it is
// about to free, which is still valid for `layout.size()` bytes.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::SeqCst) {
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            for (marker, found) in MARKERS.iter().zip(&FOUND) {
                if contains(block, marker) {
                    found.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Watching = Watching;

/// One test only: the counters are process-wide.
#[test]
fn personal_values_and_the_token_are_zeroed_before_they_are_freed() {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("api-headers");
    std::fs::write(
        &headers,
        "# the token\nX-Api-Token: tok-7f3a9c52e1-secret-value\n",
    )
    .unwrap();
    let config = ApiConfig {
        headers_file: Some(headers),
        ..ApiConfig::default()
    };

    ARMED.store(true, Ordering::SeqCst);
    let phone = Pii::<Phone>::new(String::from_utf8(MARKERS[0].to_vec()).unwrap());
    // As the outbox reads a queued write back (from a literal: no other copy is freed).
    let id: Pii<IdCard> = serde_json::from_str("\"110101199912319876\"").unwrap();
    let name = Pii::<Name>::new(String::from("欧阳") + "测试");
    let copy = name.clone();
    drop((phone, id, name, copy));
    let client = Client::new(&config).unwrap();
    drop(client);
    ARMED.store(false, Ordering::SeqCst);

    let found: Vec<usize> = FOUND.iter().map(|f| f.load(Ordering::SeqCst)).collect();
    assert_eq!(
        found,
        vec![0, 0, 0, 0],
        "freed blocks still holding the phone, ID number, name, token"
    );
}
