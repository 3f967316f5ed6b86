//! The serial backend on real pseudo-terminals: the scanner opens the pty slave through a
//! symlink, as it would open a `/dev/serial/by-id/...` link; "unplugging" closes the master and
//! removes the slave node, "replugging" creates a new pty and re-points the link.

mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use common::{Pty, point_link};
use tokio::sync::{mpsc, oneshot};
use wxcard_hal::scanner::{
    ErrorKind, FrameConfig, ScanSource, ScannerEvent, ScannerMessage, run,
    serial::{SerialConfig, SerialScanner},
};

const WAIT: Duration = Duration::from_secs(10);

fn scanner(name: &str, link: &Path) -> SerialScanner {
    let config = SerialConfig::new(link.to_str().expect("utf-8 path"));
    SerialScanner::new(
        name,
        &config,
        &FrameConfig::default(),
        Duration::from_millis(300),
    )
    .expect("scanner")
}

async fn next(rx: &mut mpsc::Receiver<ScannerMessage>) -> ScannerEvent {
    let message = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no scanner event within 10 s")
        .expect("scanner task ended");
    message.event
}

async fn expect_scan(rx: &mut mpsc::Receiver<ScannerMessage>, symbology: Option<&str>, code: &str) {
    match next(rx).await {
        ScannerEvent::Scan(scan) => {
            assert_eq!(scan.code.as_str(), code);
            assert_eq!(scan.symbology.map(|s| s.to_string()).as_deref(), symbology);
            assert_eq!(scan.scanner.as_str(), "front");
            assert!(scan.at <= Instant::now());
        }
        other => panic!("expected scan {code}, got {other:?}"),
    }
}

fn expect_disconnected(event: ScannerEvent, kind: ErrorKind) -> String {
    match event {
        ScannerEvent::Disconnected { error } => {
            assert_eq!(error.kind(), kind, "{error}");
            error.to_string()
        }
        other => panic!("expected a disconnection ({kind:?}), got {other:?}"),
    }
}

/// Spawns the scanner task; sending on the returned sender shuts it down.
fn spawn(
    source: SerialScanner,
) -> (
    mpsc::Receiver<ScannerMessage>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(16);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        run(source, tx, async {
            let _ = stopped.await;
        })
        .await
        .expect("serial source never ends on its own");
    });
    (rx, stop, task)
}

#[tokio::test]
async fn codes_in_odd_chunks_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyACM-scanner");
    let pty = Pty::open();
    point_link(&link, &pty.slave);
    let (mut rx, stop, task) = spawn(scanner("front", &link));
    assert!(matches!(next(&mut rx).await, ScannerEvent::Connected));

    // The bytes leave in uneven pieces, about as fast as a 115200-baud wire carries them.
    let writer = std::thread::spawn(move || {
        let mut pty = pty;
        let wire = b"]Q1123456789012345678\rVIP0042\r\n\x02]C0ABC-123\x03";
        let sizes = [1, 3, 7, 2, 5, 11];
        let mut rest = &wire[..];
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*size).min(rest.len()));
            pty.send(chunk);
            rest = tail;
            std::thread::sleep(Duration::from_millis(1));
        }
        pty
    });
    expect_scan(&mut rx, Some("]Q1"), "123456789012345678").await;
    expect_scan(&mut rx, None, "VIP0042").await;
    expect_scan(&mut rx, Some("]C0"), "ABC-123").await;
    let _pty = writer.join().unwrap();
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// CPU time of the calling thread: the current-thread runtime runs the scanner task, its
/// timers and its IO on this thread, so this is the scanner's cost alone.
fn thread_cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[tokio::test(flavor = "current_thread")]
async fn unplug_and_replug_at_the_same_path_with_the_cpu_idle_between() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-Newland_scanner-if00");
    let mut pty = Pty::open();
    point_link(&link, &pty.slave);
    let (mut rx, stop, task) = spawn(scanner("front", &link));
    assert!(matches!(next(&mut rx).await, ScannerEvent::Connected));
    pty.send(b"123456789012\r");
    expect_scan(&mut rx, None, "123456789012").await;

    // Unplug: the master closes, the slave reads EIO or end of file, its node disappears.
    drop(pty);
    expect_disconnected(next(&mut rx).await, ErrorKind::Gone);

    // While it is gone the source retries with backoff: nothing is reported again, and the
    // thread that runs it stays idle (a loop on a dead descriptor would burn the whole 1.5 s).
    let cpu_before = thread_cpu_time();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cpu_gone = thread_cpu_time() - cpu_before;
    assert!(
        rx.try_recv().is_err(),
        "the disconnection was reported more than once"
    );
    assert!(
        cpu_gone < Duration::from_millis(100),
        "{cpu_gone:?} of CPU in 1.5 s while the scanner was gone"
    );

    // Replug: a new device node, the same symlink path.
    let mut pty = Pty::open();
    point_link(&link, &pty.slave);
    assert!(matches!(next(&mut rx).await, ScannerEvent::Connected));
    // The same code again is a new read after a reconnection, not a duplicate.
    pty.send(b"123456789012\r");
    expect_scan(&mut rx, None, "123456789012").await;
    pty.send(b"VIP0042\r");
    expect_scan(&mut rx, None, "VIP0042").await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_scanner_plugged_in_after_start_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("late");
    let (mut rx, stop, task) = spawn(scanner("front", &link));
    expect_disconnected(next(&mut rx).await, ErrorKind::Gone);
    let mut pty = Pty::open();
    point_link(&link, &pty.slave);
    assert!(matches!(next(&mut rx).await, ScannerEvent::Connected));
    pty.send(b"]E06901234567892\r\n");
    expect_scan(&mut rx, Some("]E0"), "6901234567892").await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn the_port_is_held_exclusively() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("shared");
    let pty = Pty::open();
    point_link(&link, &pty.slave);
    let (mut rx, stop, task) = spawn(scanner("front", &link));
    assert!(matches!(next(&mut rx).await, ScannerEvent::Connected));

    // TIOCEXCL is set on the tty: an ordinary user's open fails with EBUSY; root may open it,
    // and then TIOCGEXCL reports the flag.
    let path = std::ffi::CString::new(pty.slave.to_str().unwrap()).unwrap();
    // SAFETY: plain libc calls on a path and a descriptor we own.
    unsafe {
        let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
        let fd = libc::open(path.as_ptr(), flags);
        if fd < 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EBUSY)
            );
        } else {
            let mut excl: libc::c_int = 0;
            let rc = libc::ioctl(fd, libc::TIOCGEXCL, &mut excl);
            libc::close(fd);
            assert_eq!(rc, 0, "TIOCGEXCL");
            assert_eq!(excl, 1, "the tty is not in exclusive mode");
        }
    }

    // A second scanner on the same port (even as root) is refused by the exclusive lock, with
    // a hint at how to find the holder.
    let mut second = scanner("front", &link);
    let event = tokio::time::timeout(WAIT, second.next_event())
        .await
        .unwrap()
        .unwrap();
    let message = expect_disconnected(event, ErrorKind::InUse);
    assert!(message.contains("fuser -v"), "{message}");
    stop.send(()).unwrap();
    task.await.unwrap();
    drop(pty);
}
