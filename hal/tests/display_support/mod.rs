//! Shared by the display tests: pay codes to show, and decoding pictures back with rqrr, an
//! decoder independent of the `qrcode` encoder.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use wxcard_hal::display::{CardSummary, MaskedCardNumber, PayCode, Screen};

/// A pay code shaped like the ones wxcard hands out.
pub const CODE: &str = "134523879145223801";
/// A full card number that must never appear on any display.
pub const CARD: &str = "6222021234567890";

/// A pay code screen valid for two minutes from `now`.
pub fn pay_code(code: &str, now: Instant) -> Screen {
    Screen::PayCode(PayCode::new(code, now + Duration::from_secs(120)).expect("encodable"))
}

/// A card summary for [`CARD`].
pub fn card() -> Screen {
    Screen::Card(CardSummary {
        card: MaskedCardNumber::new(CARD),
        balance: "128.50".into(),
        points: Some("3120".into()),
        member_price: true,
        discount: "0.95".into(),
    })
}

/// Decodes every QR code rqrr finds in a greyscale picture.
pub fn decode_grey(width: usize, height: usize, luma: impl Fn(usize, usize) -> u8) -> Vec<String> {
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(width, height, luma);
    img.detect_grids()
        .into_iter()
        .filter_map(|g| g.decode().ok().map(|(_, content)| content))
        .collect()
}

/// Luma of 8-bit RGB.
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114) / 1000) as u8
}

/// Decodes a PNG file's QR codes (any colour type the png crate expands to 8-bit).
pub fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<String>) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let codes = decode_grey(w, h, |x, y| {
        let p = &buf[y * info.line_size + x * channels..];
        if channels >= 3 {
            luma(p[0], p[1], p[2])
        } else {
            p[0]
        }
    });
    (w, h, codes)
}

/// Whether an external tool from Debian's packages is installed. Under CI (`CI` set, as
/// `.ci/run` runs) a missing tool fails the test; on a developer's fresh machine the test is
/// skipped with a loud line saying what to install, so `cargo test` still runs the rest.
pub fn have_tool(program: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    if found {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is required under CI: apt-get install {package}"
    );
    // Straight to the process's stderr, past the test harness's capture: a skip is loud.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "SKIPPED: {program} is not installed (apt-get install {package}); CI runs this test\n"
        )
        .as_bytes(),
    );
    false
}
