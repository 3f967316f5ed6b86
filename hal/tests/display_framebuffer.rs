//! The framebuffer backend against a plain file of the right size, read back as the screen
//! would scan it out, and decoded with rqrr.

mod display_support;

use std::path::Path;
use std::time::{Duration, Instant};

use display_support::{CODE, card, decode_grey, luma, pay_code};
use wxcard_hal::display::config::FramebufferConfig;
use wxcard_hal::display::framebuffer::FramebufferDisplay;
use wxcard_hal::display::{CustomerDisplay, Message, PixelFormat, Screen, Texts};

fn open(path: &Path, w: usize, h: usize, stride: usize, format: PixelFormat) -> FramebufferDisplay {
    std::fs::write(path, vec![0x5a; stride * h]).unwrap();
    let cfg = FramebufferConfig {
        device: path.to_owned(),
        width: Some(w),
        height: Some(h),
        format: Some(format),
        stride: Some(stride),
    };
    FramebufferDisplay::open(&cfg, Texts::default()).unwrap()
}

/// The file's pixels as luma, decoding the format independently of the renderer.
fn decode_file(path: &Path, w: usize, h: usize, stride: usize, format: PixelFormat) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    decode_grey(w, h, |x, y| pixel_luma(&bytes, x, y, stride, format))
}

fn pixel_luma(bytes: &[u8], x: usize, y: usize, stride: usize, format: PixelFormat) -> u8 {
    let at = y * stride + x * format.bytes_per_pixel();
    match format {
        PixelFormat::Rgb565 => {
            let v = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
            let (r, g, b) = ((v >> 11) as u8, ((v >> 5) & 0x3f) as u8, (v & 0x1f) as u8);
            luma(r << 3 | r >> 2, g << 2 | g >> 4, b << 3 | b >> 2)
        }
        PixelFormat::Xrgb8888 => luma(bytes[at + 2], bytes[at + 1], bytes[at]),
        PixelFormat::Xbgr8888 | PixelFormat::Rgb888 => {
            luma(bytes[at], bytes[at + 1], bytes[at + 2])
        }
    }
}

#[test]
fn pay_code_decodes_from_xrgb8888_portrait_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fb0");
    let (w, h) = (1080, 1920);
    let mut fb = open(&path, w, h, w * 4, PixelFormat::Xrgb8888);
    assert!(fb.is_mapped(), "copied through mmap");
    let now = Instant::now();
    fb.show(&pay_code(CODE, now), now).unwrap();
    assert_eq!(
        decode_file(&path, w, h, w * 4, PixelFormat::Xrgb8888),
        vec![CODE.to_string()]
    );
}

#[test]
fn pay_code_decodes_from_rgb565_landscape_file_with_padded_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fb0");
    let (w, h, stride) = (800, 480, 800 * 2 + 64);
    let mut fb = open(&path, w, h, stride, PixelFormat::Rgb565);
    assert!(fb.is_mapped());
    fb.use_pwrite();
    assert!(!fb.is_mapped());
    let now = Instant::now();
    fb.show(&pay_code(CODE, now), now).unwrap();
    assert_eq!(
        decode_file(&path, w, h, stride, PixelFormat::Rgb565),
        vec![CODE.to_string()]
    );
}

#[test]
fn expired_code_and_later_screens_leave_no_qr_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fb0");
    let (w, h) = (480, 800);
    let mut fb = open(&path, w, h, w * 4, PixelFormat::Xrgb8888);
    let now = Instant::now();
    let screen = pay_code(CODE, now);
    fb.show(&screen, now).unwrap();
    assert_eq!(
        decode_file(&path, w, h, w * 4, PixelFormat::Xrgb8888).len(),
        1
    );

    // The same code past its expiry: the daemon kept the screen up, the display must not.
    fb.show(&screen, now + Duration::from_secs(120)).unwrap();
    assert!(decode_file(&path, w, h, w * 4, PixelFormat::Xrgb8888).is_empty());

    fb.show(&pay_code(CODE, now), now).unwrap();
    for next in [card(), Screen::Message(Message::Offline), Screen::Idle] {
        fb.show(&next, now).unwrap();
        assert!(
            decode_file(&path, w, h, w * 4, PixelFormat::Xrgb8888).is_empty(),
            "{next:?}"
        );
    }
    fb.show(&Screen::Blank, now).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.iter().all(|&b| b == 0xff),
        "blank is all background, nothing left over"
    );
}

#[test]
fn countdown_tick_rewrites_only_the_countdown_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fb0");
    let (w, h) = (600, 1024);
    let mut fb = open(&path, w, h, w * 4, PixelFormat::Xrgb8888);
    let now = Instant::now();
    let screen = pay_code(CODE, now);
    fb.show(&screen, now).unwrap();
    let before = std::fs::read(&path).unwrap();
    fb.show(&screen, now + Duration::from_secs(1)).unwrap();
    let after = std::fs::read(&path).unwrap();
    let changed: Vec<usize> = (0..h)
        .filter(|&y| before[y * w * 4..(y + 1) * w * 4] != after[y * w * 4..(y + 1) * w * 4])
        .collect();
    assert!(!changed.is_empty(), "the countdown moved from 2:00 to 1:59");
    assert!(
        changed.len() <= 16 * 3,
        "only one text line changed, got {} rows",
        changed.len()
    );
    assert!(
        *changed.first().unwrap() > h / 2,
        "the QR rows did not change"
    );
    assert_eq!(
        decode_file(&path, w, h, w * 4, PixelFormat::Xrgb8888),
        vec![CODE.to_string()]
    );
}

#[test]
fn file_too_small_for_the_configured_frame_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fb0");
    std::fs::write(&path, vec![0; 1000]).unwrap();
    let cfg = FramebufferConfig {
        device: path,
        width: Some(100),
        height: Some(100),
        format: Some(PixelFormat::Xrgb8888),
        stride: None,
    };
    let err = FramebufferDisplay::open(&cfg, Texts::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("needs 40000"), "{err}");
}
