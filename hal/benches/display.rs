//! Customer-display benchmark: pay code in hand to a finished 1080x1920 XRGB8888 frame, and
//! QR encoding alone, side by side with C libqrencode encoding the same strings.
//!
//! Run: `cargo bench -p wxcard-hal --bench display` (needs Debian's `libqrencode-dev`; the
//! library is linked into this bench binary only, never into the normal build).
//! Std-only timing: every sample is one operation timed with `Instant`, and the table gives
//! the median and the 99th percentile.

use std::ffi::{CString, c_char, c_int, c_uchar};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wxcard_hal::display::config::FramebufferConfig;
use wxcard_hal::display::font::{DEFAULT_FONT, Font};
use wxcard_hal::display::framebuffer::FramebufferDisplay;
use wxcard_hal::display::raster::{Canvas, Frame, Rgb};
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

/// Wall-clock and thread-CPU time of one operation. Wall time is what the customer waits;
/// CPU time leaves out the time the thread sat descheduled, which on a loaded machine (the
/// build machine runs other builds) is most of the tail.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `setup` (untimed) then `op` (timed) for 50 warm-up and `SAMPLES` measured rounds.
fn measure<S>(mut setup: impl FnMut(usize) -> S, mut op: impl FnMut(S)) -> Vec<Sample> {
    let mut out = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES + 50 {
        let input = setup(i % SAMPLES);
        let (w, c) = (Instant::now(), thread_cpu());
        op(input);
        let (cpu, wall) = (thread_cpu() - c, w.elapsed());
        if i >= 50 {
            out.push(Sample { wall, cpu });
        }
    }
    out
}

fn stats(name: &str, samples: Vec<Sample>) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let summary = |mut v: Vec<Duration>| {
        v.sort();
        let pick = |q: f64| us(v[((v.len() as f64 * q) as usize).min(v.len() - 1)]);
        (pick(0.5), pick(0.99))
    };
    let (wm, w99) = summary(samples.iter().map(|s| s.wall).collect());
    let (cm, c99) = summary(samples.iter().map(|s| s.cpu).collect());
    println!("| {name:<52} | {wm:>8.1} | {w99:>8.1} | {cm:>8.1} | {c99:>8.1} |");
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
        "symbol: {} modules (qrcode crate), {} modules (libqrencode)",
        rust.size(),
        c_width
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<_> = load.split_whitespace().take(3).collect();
    println!("load average before the run: {}\n", load.join(" "));

    println!(
        "| {:<52} | {:>8} | {:>8} | {:>8} | {:>8} |",
        "µs (1080x1920 XRGB8888 where drawn)", "wall p50", "wall p99", "cpu p50", "cpu p99"
    );
    println!(
        "|{:-<54}|{:->10}|{:->10}|{:->10}|{:->10}|",
        "", "", "", "", ""
    );

    stats(
        "QR encode, qrcode crate (EC M)",
        measure(
            |i| &codes[i],
            |code| {
                black_box(QrMatrix::encode(black_box(code)).unwrap());
            },
        ),
    );
    stats(
        "QR encode, C libqrencode (EC M)",
        measure(
            |i| c_codes[i].as_ptr(),
            |code| {
                // SAFETY: as above.
                unsafe {
                    let q = QRcode_encodeString(black_box(code), 0, QR_ECLEVEL_M, QR_MODE_8, 1);
                    assert!(!q.is_null());
                    black_box((*q).data);
                    QRcode_free(q);
                }
            },
        ),
    );

    let now = Instant::now();
    let expiry = now + Duration::from_secs(120);
    let idle = Screen::Idle;
    let font_file = std::path::Path::new(DEFAULT_FONT);
    let font = Arc::new(Font::load(font_file, 0).expect("apt-get install fonts-wqy-microhei"));
    let frame = std::cell::RefCell::new(Frame::new(
        Canvas::new(W, H, W * 4, PixelFormat::Xrgb8888),
        font.clone(),
    ));
    stats(
        "idle -> pay code: encode + draw off-screen frame",
        measure(
            |i| {
                frame.borrow_mut().draw(&View::of(&idle, &texts, now));
                &codes[i]
            },
            |code| {
                let screen = Screen::PayCode(PayCode::new(black_box(code), expiry).unwrap());
                let mut frame = frame.borrow_mut();
                frame.draw(&View::of(&screen, &texts, now));
                black_box(frame.canvas().bytes());
            },
        ),
    );
    stats(
        "same, full clear (no damage tracking)",
        measure(
            |i| {
                frame.borrow_mut().invalidate();
                &codes[i]
            },
            |code| {
                let screen = Screen::PayCode(PayCode::new(black_box(code), expiry).unwrap());
                let mut frame = frame.borrow_mut();
                frame.draw(&View::of(&screen, &texts, now));
                black_box(frame.canvas().bytes());
            },
        ),
    );

    // The layout and painting alone (code encoded once): what issue 15's designs cost.
    let made: Vec<Screen> = codes[..50]
        .iter()
        .map(|c| Screen::PayCode(PayCode::new(c, expiry).unwrap()))
        .collect();
    stats(
        "pay-code frame: layout + paint, full clear",
        measure(
            |i| {
                frame.borrow_mut().invalidate();
                &made[i % made.len()]
            },
            |screen| {
                let mut frame = frame.borrow_mut();
                frame.draw(&View::of(screen, &texts, now));
                black_box(frame.canvas().bytes());
            },
        ),
    );
    stats(
        "layout alone (boxes of a pay-code screen)",
        measure(
            |i| &made[i % made.len()],
            |screen| {
                let frame = frame.borrow();
                black_box(frame.layout(&View::of(screen, &texts, now)));
            },
        ),
    );
    let card = Screen::Card(wxcard_hal::display::CardSummary {
        card: wxcard_hal::display::MaskedCardNumber::new("6222021234567890"),
        balance: "5000.00".into(),
        points: Some("3120".into()),
        member_price: true,
        discount: "0.88".into(),
    });
    stats(
        "card screen: layout + paint, full clear",
        measure(
            |_| frame.borrow_mut().invalidate(),
            |()| {
                let mut frame = frame.borrow_mut();
                frame.draw(&View::of(&card, &texts, now));
                black_box(frame.canvas().bytes());
            },
        ),
    );
    {
        let screen = &made[0];
        frame.borrow_mut().draw(&View::of(screen, &texts, now));
        stats(
            "countdown tick off-screen (numbers + bar)",
            measure(
                |i| now + Duration::from_secs(i as u64 % 100),
                |at| frame.borrow_mut().draw(&View::of(screen, &texts, at)),
            ),
        );
    }
    stats(
        "same, cold glyph cache (new font; new frame: full clear)",
        measure(
            |i| {
                let font = Arc::new(Font::load(font_file, 0).unwrap());
                let canvas = Canvas::new(W, H, W * 4, PixelFormat::Xrgb8888);
                (Frame::new(canvas, font), &codes[i])
            },
            |(mut frame, code)| {
                let screen = Screen::PayCode(PayCode::new(black_box(code), expiry).unwrap());
                frame.draw(&View::of(&screen, &texts, now));
                black_box(frame.canvas().bytes());
            },
        ),
    );
    let mut canvas = Canvas::new(W, H, W * 4, PixelFormat::Xrgb8888);
    canvas.clear();
    canvas.fill_rect(0, 0, W, 200, Rgb(0, 94, 184));
    stats(
        "text: 余额 ¥5,000.00 会员价 9.5折 at 64 px on a band",
        measure(
            |_| (),
            |()| {
                let line = black_box("余额 ¥5,000.00 会员价 9.5折");
                black_box(canvas.text(&font, line, 20, 40, 64, Rgb(255, 255, 255)));
            },
        ),
    );

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
    let fb = std::cell::RefCell::new(
        FramebufferDisplay::open_with_font(&cfg, texts.clone(), font.clone()).unwrap(),
    );
    assert!(fb.borrow().is_mapped());
    let to_device = |name: &str| {
        stats(
            name,
            measure(
                |i| {
                    fb.borrow_mut().show(&idle, now).unwrap();
                    &codes[i]
                },
                |code| {
                    let screen = Screen::PayCode(PayCode::new(black_box(code), expiry).unwrap());
                    fb.borrow_mut().show(&screen, now).unwrap();
                },
            ),
        )
    };
    to_device("idle -> pay code: encode + draw + mmap copy to fb");
    fb.borrow_mut().use_pwrite();
    to_device("idle -> pay code: encode + draw + pwrite to fb");

    let screen = Screen::PayCode(PayCode::new(&codes[0], expiry).unwrap());
    fb.borrow_mut().show(&screen, now).unwrap();
    stats(
        "countdown tick (same code, next second), pwrite",
        measure(
            |i| now + Duration::from_secs(i as u64 % 100),
            |at| fb.borrow_mut().show(&screen, at).unwrap(),
        ),
    );
    let _ = std::fs::remove_file(&path);
}
