//! Scanner benchmarks, std-only timing: the frame parser's cost per frame and throughput,
//! and the latency from a frame's last byte written into a real pty to the scan event
//! coming out of the serial backend.
//!
//! Run: `cargo bench -p wxcard-hal --bench scanner` (add `-- 20000` for more pty scans).
//! Figures go to BENCHMARKS.md, Scanners section.

use std::{
    ffi::CStr,
    fs::File,
    hint::black_box,
    io::Write,
    os::fd::{FromRawFd, OwnedFd},
    path::PathBuf,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};
use wxcard_hal::scanner::{
    Assembler, FrameConfig, FrameParser, ScanSource, ScannerEvent, ScannerName, run,
    serial::{SerialConfig, SerialScanner},
};

fn main() {
    let scans: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    println!("load average before: {}", loadavg());
    parser_throughput();
    pty_latency(scans);
    println!("load average after: {}", loadavg());
}

/// The machine's load, printed with the figures: on a shared 2-core box the pty latency
/// follows it (the kernel flushes pty input to the reader in a kworker that competes with
/// whatever else runs).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|e| e.to_string(), |s| s.trim().to_owned())
}

/// 18-digit WeChat-style codes with an AIM id and CR, as a Newland sends them.
fn wire(frames: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames * 22);
    for i in 0..frames {
        write!(out, "]Q1{:018}\r", 881_234_567_890_000_000u64 + i as u64).unwrap();
    }
    out
}

fn parser_throughput() {
    const FRAMES: usize = 100_000;
    const ROUNDS: usize = 15;
    let bytes = wire(FRAMES);
    let config = FrameConfig::default();
    let name = ScannerName::try_from("bench").unwrap();
    println!(
        "## frame parser: {FRAMES} frames of 22 bytes (`]Q1` + 18 digits + CR), 4096-byte reads, best of {ROUNDS}"
    );
    let mut best_parser = Duration::MAX;
    let mut best_assembler = Duration::MAX;
    for _ in 0..ROUNDS {
        let mut parser = FrameParser::new(&config).unwrap();
        let now = Instant::now();
        let mut count = 0usize;
        let t0 = Instant::now();
        for chunk in bytes.chunks(4096) {
            parser.push(black_box(chunk), now, &mut |p| {
                black_box(&p);
                count += 1;
            });
        }
        best_parser = best_parser.min(t0.elapsed());
        assert_eq!(count, FRAMES);

        let mut assembler =
            Assembler::new(name.clone(), &config, Duration::from_millis(300)).unwrap();
        let t0 = Instant::now();
        let mut count = 0usize;
        for chunk in bytes.chunks(4096) {
            assembler.push(black_box(chunk), now);
            while let Some(event) = assembler.pop() {
                black_box(&event);
                count += 1;
            }
        }
        best_assembler = best_assembler.min(t0.elapsed());
        assert_eq!(count, FRAMES);
    }
    for (what, took) in [
        ("FrameParser::push", best_parser),
        ("Assembler (parser + dedupe + event)", best_assembler),
    ] {
        let ns = took.as_nanos() as f64 / FRAMES as f64;
        let mbs = bytes.len() as f64 / took.as_secs_f64() / 1e6;
        println!("| {what} | {ns:.0} ns/frame | {mbs:.0} MB/s |");
    }
}

struct Pty {
    master: File,
    slave: PathBuf,
}

fn pty() -> Pty {
    // SAFETY: plain libc calls on a descriptor we own; ptsname_r NUL-terminates the buffer.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0);
        let master = OwnedFd::from_raw_fd(fd);
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        Pty {
            master: File::from(master),
            slave: PathBuf::from(CStr::from_ptr(name.as_ptr()).to_str().unwrap()),
        }
    }
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
    println!(
        "| {what} | {} | {:.1} us | {:.1} us | {:.1} us | {:.1} us |",
        samples.len(),
        us(at(0.5)),
        us(at(0.9)),
        us(at(0.99)),
        us(*samples.last().unwrap())
    );
}

fn pty_latency(scans: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("ttyACM-bench");
        let mut pty = pty();
        std::os::unix::fs::symlink(&pty.slave, &link).unwrap();
        let config = SerialConfig::new(link.to_str().unwrap());
        let frame = FrameConfig::default();
        let window = Duration::from_millis(300);
        let warmup = 500;

        // 1. Direct: the source's own next_event().
        let mut source = SerialScanner::new("bench", &config, &frame, window).unwrap();
        assert!(matches!(source.next_event().await.unwrap(), ScannerEvent::Connected));
        let mut total = Vec::with_capacity(scans);
        let mut own = Vec::with_capacity(scans);
        for i in 0..scans + warmup {
            let bytes = format!("]Q1{:018}\r", 881_234_567_890_000_000u64 + i as u64);
            let t0 = Instant::now();
            pty.master.write_all(bytes.as_bytes()).unwrap();
            let scan = loop {
                if let ScannerEvent::Scan(scan) = source.next_event().await.unwrap() {
                    break scan;
                }
            };
            let out = Instant::now();
            if i >= warmup {
                total.push(out - t0);
                own.push(out - scan.at);
            }
        }
        drop(source);

        // 2. As the daemon runs it: the source in its own task, events through a channel.
        let source = SerialScanner::new("bench", &config, &frame, window).unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(source, tx, async {
            let _ = stopped.await;
        }));
        assert!(matches!(rx.recv().await.unwrap().event, ScannerEvent::Connected));
        let mut channel = Vec::with_capacity(scans);
        for i in 0..scans + warmup {
            // Distinct from the codes above only so no read could be taken for a repeat.
            let bytes = format!("]Q1{:018}\r", 991_234_567_890_000_000u64 + i as u64);
            let t0 = Instant::now();
            pty.master.write_all(bytes.as_bytes()).unwrap();
            loop {
                if let ScannerEvent::Scan(_) = rx.recv().await.unwrap().event {
                    break;
                }
            }
            if i >= warmup {
                channel.push(t0.elapsed());
            }
        }
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();

        println!();
        println!("## pty latency: {scans} scans of 22 bytes, current-thread tokio runtime, after {warmup} warm-up scans");
        println!("| path | scans | median | p90 | p99 | max |");
        println!("|---|---|---|---|---|---|");
        report("write(2) of the frame into the pty master -> `Scan` from `next_event()`", total);
        report("pty read returned (`Scan::at`) -> `Scan` from `next_event()`", own);
        report("write(2) into the pty master -> `Scan` received from `run()`'s channel", channel);
    });
}
