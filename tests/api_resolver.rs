//! The client's name resolution: a backend given as an IP address is reached without a
//! resolver thread. ureq's default resolver starts a thread per request (to time out
//! getaddrinfo) whenever a timeout is set, pooled connection or not: one clone3 per card
//! lookup. The lookups here run on a thread that a seccomp filter forbids to start threads.

use std::time::Duration;

use wxcard_sim::{SimConfig, Simulator};
use wxcardd::api::{ApiConfig, Client};

const ACTIVE: &str = "812345678901234567";

/// Makes clone and clone3 fail with EPERM on the calling thread (and any it would start).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn forbid_new_threads() {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "x86_64")]
    const CLONE: u32 = 56;
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
    #[cfg(target_arch = "aarch64")]
    const CLONE: u32 = 220;
    const CLONE3: u32 = 435;
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
    const EPERM: u32 = 0x0005_0000 | 1; // SECCOMP_RET_ERRNO | EPERM
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut program = [
        op(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        op(JEQ_K, 0, 4, ARCH), // another ABI: allow
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JEQ_K, 1, 0, CLONE3),
        op(JEQ_K, 0, 1, CLONE),
        op(RET_K, 0, 0, EPERM),
        op(RET_K, 0, 0, ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl on the calling thread; the filter program outlives the call (the
    // kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The simulator (its threads started here, before any filter) and a client for it.
fn simulator_and_client() -> (wxcard_sim::BlockingSim, Client) {
    let sim = Simulator::spawn_in_thread(SimConfig::default()).unwrap();
    let client = Client::new(&ApiConfig {
        base_url: sim.base_url(),
        connect_timeout_ms: 2_000,
        deadline_ms: 5_000,
        ..ApiConfig::default()
    })
    .unwrap();
    (sim, client)
}

/// Runs `f` on a new thread under [`forbid_new_threads`]; a panic there (a thread was needed)
/// fails the test with its message.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn on_a_thread_that_cannot_start_threads(f: impl FnOnce() + Send + 'static) {
    let filtered = std::thread::spawn(move || {
        forbid_new_threads();
        // The filter works: this thread cannot start one.
        assert!(std::thread::Builder::new().spawn(|| ()).is_err());
        f();
    });
    if let Err(panic) = filtered.join() {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("a lookup needed a thread: {text}");
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn lookups_against_an_ip_address_start_no_thread() {
    // The simulator's threads start before the filter, on other threads.
    let (_sim, client) = simulator_and_client();
    on_a_thread_that_cannot_start_threads(move || {
        // A new connection, then a pooled one: both resolve without a thread.
        for _ in 0..2 {
            let card = client
                .get_member_card(None, ACTIVE, Some(Duration::from_secs(5)))
                .expect("the card");
            assert!(!card.card_code.is_empty());
        }
    });
}

/// Issue 12: the cashier's lookup runs on the daemon's executor. A lookup whose answer is
/// already cached (the same card scanned again) and a pay code start no thread at all: no
/// blocking-pool hop for the request, no cache write. A current-thread runtime on the
/// filtered thread runs them; sled's own threads started before the filter.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn a_lookup_of_a_card_already_cached_and_a_pay_code_start_no_thread() {
    use std::sync::Arc;
    use wxcardd::service::{CardService, LookupAnswer, ManualClock, ServiceConfig, Source};
    use wxcardd::store::{Store, StoreConfig};

    let (_sim, client) = simulator_and_client();
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path().join("store"), &StoreConfig::default()).unwrap();
    let service = CardService::new(
        client,
        Arc::new(store),
        ServiceConfig::default(),
        Arc::new(ManualClock::new(1_800_000_000_000)),
    );
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    // The first lookup caches the card (a write, on a blocking thread).
    let first = runtime().block_on(service.lookup(ACTIVE, None)).unwrap();
    assert_eq!(first.source, Source::Api);
    runtime().block_on(service.sync()).unwrap();

    on_a_thread_that_cannot_start_threads(move || {
        runtime().block_on(async {
            for _ in 0..3 {
                let again = service.lookup(ACTIVE, None).await.expect("the card");
                assert_eq!(again.source, Source::Api);
                assert!(matches!(again.answer, LookupAnswer::Card { .. }));
            }
            let code = service.pay_code(ACTIVE).await.expect("a pay code");
            assert!(!code.0.is_empty());
        });
    });
}
