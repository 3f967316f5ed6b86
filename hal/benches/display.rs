//! Customer-display benchmark: pay code in hand to a finished 1080x1920 XRGB8888 frame, and
//! QR encoding alone, side by side with C libqrencode encoding the same strings.
//!
//! Run: `cargo bench -p wxcard-hal --bench display` (needs Debian's `libqrencode-dev`; the
//! library is linked into this bench binary only, never into the normal build).
//! Std-only timing: every sample is one operation timed with `Instant`, and the table gives
//! the median and the 99th percentile.

use std::ffi::{CString, c_char, c_int, c_uchar};
use std::hint::black_box;
use std::time::{Duration, Instant};

use wxcard_hal::display::config::FramebufferConfig;
use wxcard_hal::display::framebuffer::FramebufferDisplay;
use wxcard_hal::display::raster::{Canvas, Frame};
use wxcard_hal::display::{CustomerDisplay, PayCode, PixelFormat, QrMatrix, Screen, Texts, View};

#[repr(C)]
struct QRcode {
    version: c_int,
    width: c_int,
    data: *mut c_uchar,
}

#[link(name = "qrencode")]
unsafe extern "C" {
    fn QRcode_encodeString(
        s: *const c_char,
        version: c_int,
        level: c_int,
        hint: c_int,
        casesensitive: c_int,
    ) -> *mut QRcode;
    fn QRcode_free(code: *mut QRcode);
}
const QR_ECLEVEL_M: c_int = 1;
const QR_MODE_8: c_int = 2;

const W: usize = 1080;
const H: usize = 1920;
const SAMPLES: usize = 2000;

fn codes() -> Vec<String> {
    // Pay-code-shaped strings: 18 digits, varied so no two samples encode the same data.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..SAMPLES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("13{:016}", x % 10_000_000_000_000_000)
        })
        .collect()
}

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "| {name:<52} | {:>9.1} | {:>9.1} | {:>9.1} |",
        us(pick(0.5)),
        us(pick(0.99)),
        us(*samples.last().unwrap())
    );
}

fn time(mut f: impl FnMut(usize)) -> Vec<Duration> {
    for i in 0..50 {
        f(i); // warm caches and the allocator
    }
    (0..SAMPLES)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect()
}

fn main() {
    let codes = codes();
    let c_codes: Vec<CString> = codes
        .iter()
        .map(|c| CString::new(c.as_str()).unwrap())
        .collect();
    let texts = Texts::default();

    // Check both encoders agree on the symbol size before timing them.
    let rust = QrMatrix::encode(&codes[0]).unwrap();
    // SAFETY: a NUL-terminated string; the result is freed right after use.
    let c_width = unsafe {
        let q = QRcode_encodeString(c_codes[0].as_ptr(), 0, QR_ECLEVEL_M, QR_MODE_8, 1);
        assert!(!q.is_null(), "libqrencode failed");
        let w = (*q).width as usize;
        QRcode_free(q);
        w
    };
    println!(
        "symbol: {} modules (qrcode crate), {} modules (libqrencode)\n",
        rust.size(),
        c_width
    );

    println!(
        "| {:<52} | {:>9} | {:>9} | {:>9} |",
        "operation (1080x1920 XRGB8888 where drawn)", "median µs", "p99 µs", "max µs"
    );
    println!("|{:-<54}|{:->11}|{:->11}|{:->11}|", "", "", "", "");

    stats(
        "QR encode, qrcode crate (EC M)",
        time(|i| {
            black_box(QrMatrix::encode(black_box(&codes[i])).unwrap());
        }),
    );
    stats(
        "QR encode, C libqrencode (EC M)",
        time(|i| {
            // SAFETY: as above.
            unsafe {
                let q = QRcode_encodeString(
                    black_box(c_codes[i].as_ptr()),
                    0,
                    QR_ECLEVEL_M,
                    QR_MODE_8,
                    1,
                );
                assert!(!q.is_null());
                black_box((*q).data);
                QRcode_free(q);
            }
        }),
    );

    let now = Instant::now();
    let expiry = now + Duration::from_secs(120);
    let mut frame = Frame::new(Canvas::new(W, H, W * 4, PixelFormat::Xrgb8888));
    let idle = Screen::Idle;
    frame.draw(&View::of(&idle, &texts, now));
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES + 50 {
        frame.draw(&View::of(&idle, &texts, now));
        let t = Instant::now();
        let screen = Screen::PayCode(PayCode::new(black_box(&codes[i % SAMPLES]), expiry).unwrap());
        frame.draw(&View::of(&screen, &texts, now));
        black_box(frame.canvas().bytes());
        if i >= 50 {
            samples.push(t.elapsed());
        }
    }
    stats("idle -> pay code: encode + draw off-screen frame", samples);

    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let path = std::path::PathBuf::from(format!("{dir}/wxcard-bench-fb-{}", std::process::id()));
    std::fs::write(&path, vec![0u8; W * H * 4]).unwrap();
    let cfg = FramebufferConfig {
        device: path.clone(),
        width: Some(W),
        height: Some(H),
        format: Some(PixelFormat::Xrgb8888),
        stride: None,
    };
    let mut fb = FramebufferDisplay::open(&cfg, texts.clone()).unwrap();
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES + 50 {
        fb.show(&idle, now).unwrap();
        let t = Instant::now();
        let screen = Screen::PayCode(PayCode::new(black_box(&codes[i % SAMPLES]), expiry).unwrap());
        fb.show(&screen, now).unwrap();
        if i >= 50 {
            samples.push(t.elapsed());
        }
    }
    stats(
        "idle -> pay code: encode + draw + pwrite to fb file",
        samples,
    );

    let screen = Screen::PayCode(PayCode::new(&codes[0], expiry).unwrap());
    fb.show(&screen, now).unwrap();
    let mut tick = 0u64;
    stats(
        "countdown tick (same code, 1 s later) to fb file",
        time(|_| {
            tick += 1;
            fb.show(&screen, now + Duration::from_secs(tick % 100))
                .unwrap();
        }),
    );

    let mut full = Frame::new(Canvas::new(W, H, W * 4, PixelFormat::Xrgb8888));
    stats(
        "worst case: full clear + pay code, no damage tracking",
        time(|i| {
            full.invalidate();
            let screen = Screen::PayCode(PayCode::new(&codes[i], expiry).unwrap());
            full.draw(&View::of(&screen, &texts, now));
            black_box(full.canvas().bytes());
        }),
    );
    let _ = std::fs::remove_file(&path);
}
