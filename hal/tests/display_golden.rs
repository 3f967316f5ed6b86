//! Proof by pictures: every screen at every common till screen size, as the framebuffer and
//! PNG backends draw it, compared with the committed golden images in `tests/golden/`.
//!
//! Also here: the layout's boxes lie inside the canvas and never overlap, no text is below
//! the minimum size, every text colour keeps WCAG AA contrast (4.5:1) on its background, the
//! QR is at least 35 mm wide on realistic panels, and every pay-code golden decodes with rqrr
//! and with zbarimg.
//!
//! `WXCARD_REGEN_GOLDEN=1 cargo test -p wxcard-hal --test display_golden` rewrites the
//! goldens and the contact sheet in `docs/` (a changed design updates them in the same
//! commit). A mismatch writes the actual picture and a diff next to each other in the
//! target dir and names them.

mod display_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use display_support::{CARD, decode_png};
use wxcard_hal::display::config::PixelFormat;
use wxcard_hal::display::font::Font;
use wxcard_hal::display::layout::{
    self, Image, Item, Layout, Look, MIN_PX, QR_MIN_MM, contrast, ink_on,
};
use wxcard_hal::display::raster::{Canvas, Frame, Rgb};
use wxcard_hal::display::{CardSummary, MaskedCardNumber, Message, PayCode, Screen, Texts, View};

/// The screen sizes tills have: 7" and 10" customer displays up to a portrait 1080p panel.
const SIZES: [(usize, usize); 6] = [
    (800, 480),
    (1024, 600),
    (1280, 800),
    (1366, 768),
    (1920, 1080),
    (1080, 1920),
];

/// A panel diagonal, in inches, a till with that resolution plausibly has (for the 35 mm
/// rule); the smallest common one, which gives the smallest QR in mm.
fn diagonal_of(w: usize, h: usize) -> f64 {
    match (w.max(h), w.min(h)) {
        (800, 480) => 7.0,
        (1024, 600) => 7.0,
        (1280, 800) => 10.1,
        (1366, 768) => 11.6,
        _ => 15.6,
    }
}

/// The one place the golden test gets its font from.
fn golden_font() -> Arc<Font> {
    let path = wxcard_hal::display::config::DEFAULT_FONT;
    match Font::load(path.as_ref(), 0) {
        Ok(font) => Arc::new(font),
        Err(e) => panic!(
            "the goldens are drawn with Debian's fonts-wqy-microhei ({path}): {e}; \
             install it (apt-get install fonts-wqy-microhei, as .ci/run does)"
        ),
    }
}

const PAY_CODE: &str = "134523879145223801";
const LONG_SHOP: &str =
    "好又多超市连锁（上海浦东新区张江高科技园区旗舰店） Haoyouduo Supermarket Zhangjiang Flagship";

/// The shop's look in the goldens: the default accent and a made-up logo.
fn golden_look() -> Look {
    Look {
        logo: Some(Arc::new(test_logo())),
        ..Look::default()
    }
}

/// A 96x96 logo: a white disc with a gold ring and a transparent outside.
fn test_logo() -> Image {
    let n = 96usize;
    let mut rgba = Vec::with_capacity(n * n * 4);
    for y in 0..n {
        for x in 0..n {
            let (dx, dy) = (x as f64 + 0.5 - 48.0, y as f64 + 0.5 - 48.0);
            let d = (dx * dx + dy * dy).sqrt();
            rgba.extend_from_slice(&if d > 47.0 {
                [0, 0, 0, 0]
            } else if d > 38.0 {
                [0xf2, 0xb7, 0x05, 255]
            } else if dx.abs() < 14.0 && dy.abs() < 22.0 {
                [0x00, 0x69, 0x5c, 255]
            } else {
                [255, 255, 255, 255]
            });
        }
    }
    Image {
        width: n,
        height: n,
        rgba,
    }
}

struct Case {
    name: &'static str,
    screen: Screen,
    texts: Texts,
    at: Instant,
}

/// Every screen a customer sees, shown 30 s into a 120 s pay code.
fn cases() -> Vec<Case> {
    // Made right before the code, so its lifetime is 120 s (whole seconds, rounded up).
    let t0 = Instant::now();
    let texts = Texts {
        shop_name: "好又多超市 Haoyouduo".into(),
        ..Texts::default()
    };
    let long = Texts {
        shop_name: LONG_SHOP.into(),
        ..Texts::default()
    };
    let card = Screen::Card(CardSummary {
        card: MaskedCardNumber::new(CARD),
        balance: "5000.00".into(),
        points: Some("3120".into()),
        member_price: true,
        discount: "0.88".into(),
    });
    let code = PayCode::new(PAY_CODE, t0 + Duration::from_secs(120)).unwrap();
    let at = t0 + Duration::from_secs(30);
    let case = |name, screen: Screen, texts: &Texts| Case {
        name,
        screen,
        texts: texts.clone(),
        at,
    };
    vec![
        case("idle", Screen::Idle, &texts),
        case("card", card.clone(), &texts),
        case("card-long-shop-name", card, &long),
        case(
            "lost-card",
            Screen::Message(Message::Error("卡挂失 card reported lost".into())),
            &texts,
        ),
        case("paycode", Screen::PayCode(code.clone()), &texts),
        Case {
            name: "expired",
            screen: Screen::PayCode(code),
            texts: texts.clone(),
            at: t0 + Duration::from_secs(121),
        },
        case("offline", Screen::Message(Message::Offline), &texts),
        case(
            "message",
            Screen::Message(Message::Info(
                "请出示会员卡或付款码 Please show your member card".into(),
            )),
            &texts,
        ),
    ]
}

/// The frame as RGB bytes, drawn as the PNG backend draws it.
fn render(case: &Case, w: usize, h: usize, look: &Look) -> (Vec<u8>, Layout) {
    let mut frame = Frame::new(Canvas::new(w, h, w * 3, PixelFormat::Rgb888), golden_font());
    frame.set_look(look.clone());
    let view = View::of(&case.screen, &case.texts, case.at);
    frame.draw(&view);
    (frame.canvas().bytes().to_vec(), frame.layout(&view))
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_png(path: &Path, w: usize, h: usize, rgb: &[u8]) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(file, w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::High);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(rgb).unwrap();
    writer.finish().unwrap();
}

fn read_png(path: &Path) -> (usize, usize, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

fn regenerating() -> bool {
    std::env::var_os("WXCARD_REGEN_GOLDEN").is_some_and(|v| v == "1")
}

/// A channel may differ by this much (a font hinting change) ...
const TOLERANCE: u8 = 24;
/// ... and this share of a picture's pixels may differ by more (per million).
const MAX_DIFFERING_PPM: usize = 500;

fn name_of(case: &str, w: usize, h: usize) -> String {
    format!("{case}-{w}x{h}.png")
}

#[test]
fn every_screen_at_every_size_matches_its_golden() {
    let look = golden_look();
    let mut failures = Vec::new();
    let mut sheet = Vec::new();
    for (w, h) in SIZES {
        for case in cases() {
            let (rgb, _) = render(&case, w, h, &look);
            let name = name_of(case.name, w, h);
            let path = golden_dir().join(&name);
            if regenerating() {
                std::fs::create_dir_all(golden_dir()).unwrap();
                write_png(&path, w, h, &rgb);
                sheet.push((case.name, w, h, rgb));
                continue;
            }
            assert!(
                path.is_file(),
                "{} is missing: run with WXCARD_REGEN_GOLDEN=1 to make it",
                path.display()
            );
            let (gw, gh, golden) = read_png(&path);
            if (gw, gh) != (w, h) {
                failures.push(format!("{name}: golden is {gw}x{gh}"));
                continue;
            }
            if rgb == golden {
                continue;
            }
            let mut diff = vec![255u8; rgb.len()];
            let mut differing = 0;
            for (i, (a, b)) in rgb.chunks(3).zip(golden.chunks(3)).enumerate() {
                if a.iter().zip(b).any(|(x, y)| x.abs_diff(*y) > TOLERANCE) {
                    differing += 1;
                    diff[i * 3..i * 3 + 3].copy_from_slice(&[255, 0, 0]);
                } else {
                    let l = a[0] / 4 + 191;
                    diff[i * 3..i * 3 + 3].copy_from_slice(&[l, l, l]);
                }
            }
            if differing * 1_000_000 > MAX_DIFFERING_PPM * w * h {
                let actual = out_dir().join(format!("actual-{name}"));
                let diffp = out_dir().join(format!("diff-{name}"));
                write_png(&actual, w, h, &rgb);
                write_png(&diffp, w, h, &diff);
                failures.push(format!(
                    "{name}: {differing} pixels differ; actual {} diff {}",
                    actual.display(),
                    diffp.display()
                ));
            }
        }
    }
    if regenerating() {
        contact_sheet(&sheet);
        return;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A montage of every golden, a third of its size, one row per screen size, for
/// docs/display.md.
/// A rendered golden: screen name, width, height, RGB bytes.
type Shot = (&'static str, usize, usize, Vec<u8>);

fn contact_sheet(shots: &[Shot]) {
    const K: usize = 4;
    const GAP: usize = 8;
    let mut rows: Vec<Vec<&Shot>> = Vec::new();
    for (w, h) in SIZES {
        rows.push(shots.iter().filter(|s| (s.1, s.2) == (w, h)).collect());
    }
    let width = rows
        .iter()
        .map(|r| r.iter().map(|s| s.1 / K + GAP).sum::<usize>() + GAP)
        .max()
        .unwrap();
    let height: usize = rows.iter().map(|r| r[0].2 / K + GAP).sum::<usize>() + GAP;
    let mut out = vec![0x60u8; width * height * 3];
    let mut y0 = GAP;
    for row in &rows {
        let mut x0 = GAP;
        for (_, w, h, rgb) in row.iter().map(|s| (&s.0, s.1, s.2, &s.3)) {
            for y in 0..h / K {
                for x in 0..w / K {
                    // Average a K x K block.
                    let mut acc = [0u32; 3];
                    for dy in 0..K {
                        for dx in 0..K {
                            let p = &rgb[((y * K + dy) * w + x * K + dx) * 3..][..3];
                            for c in 0..3 {
                                acc[c] += u32::from(p[c]);
                            }
                        }
                    }
                    let at = ((y0 + y) * width + x0 + x) * 3;
                    for c in 0..3 {
                        out[at + c] = (acc[c] / (K * K) as u32) as u8;
                    }
                }
            }
            x0 += w / K + GAP;
        }
        y0 += row[0].2 / K + GAP;
    }
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/display-screens.png");
    write_png(&docs, width, height, &out);
}

#[test]
fn every_pay_code_golden_decodes_with_rqrr_and_zbarimg() {
    let zbar = display_support::have_tool("zbarimg", "zbar-tools");
    for (w, h) in SIZES {
        let path = golden_dir().join(name_of("paycode", w, h));
        let (_, _, codes) = decode_png(&std::fs::read(&path).unwrap());
        assert_eq!(codes, vec![PAY_CODE.to_string()], "rqrr, {w}x{h}");
        if zbar {
            let out = std::process::Command::new("zbarimg")
                .args(["--quiet", "--raw", "-Sdisable", "-Sqrcode.enable"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "zbarimg failed on {}", path.display());
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim_end(),
                PAY_CODE,
                "zbarimg, {w}x{h}"
            );
        }
        // And none of the others carries a code: expired and offline are not live codes.
        for other in ["expired", "offline"] {
            let path = golden_dir().join(name_of(other, w, h));
            let (_, _, codes) = decode_png(&std::fs::read(&path).unwrap());
            assert!(codes.is_empty(), "{other} {w}x{h}");
        }
    }
}

/// The boxes of every screen at every size, with the default look and a long-named shop
/// with a logo and a light accent.
fn all_layouts(look: &Look) -> Vec<(String, Layout)> {
    let font = golden_font();
    let mut out = Vec::new();
    for (w, h) in SIZES
        .into_iter()
        .chain([(480, 800), (600, 1024), (768, 1366)])
    {
        for case in cases() {
            let view = View::of(&case.screen, &case.texts, case.at);
            out.push((
                format!("{} {w}x{h}", case.name),
                layout::compute(&view, w, h, &font, look),
            ));
        }
    }
    out
}

fn looks() -> Vec<Look> {
    let mut out = vec![Look::default(), golden_look()];
    for accent in [
        Rgb(255, 204, 0),
        Rgb(0x77, 0x77, 0x77),
        Rgb(250, 250, 250),
        Rgb(0, 0, 0),
    ] {
        out.push(Look {
            accent,
            ..golden_look()
        });
    }
    out
}

#[test]
fn boxes_lie_inside_the_canvas_and_never_overlap() {
    let font = golden_font();
    for look in looks() {
        for (name, l) in all_layouts(&look) {
            assert!(!l.placed.is_empty() || name.starts_with("blank"), "{name}");
            for p in &l.placed {
                assert!(
                    p.rect.inside(l.width, l.height) && p.rect.w > 0 && p.rect.h > 0,
                    "{name}: {p:?} outside {}x{}",
                    l.width,
                    l.height
                );
                if let Item::Text { text, px, .. } = &p.item {
                    assert!(*px >= MIN_PX, "{name}: {text:?} at {px} px");
                    assert!(
                        font.text_width(text, *px) <= p.rect.w,
                        "{name}: {text:?} is wider than its box {:?}",
                        p.rect
                    );
                    assert!(font.line_height(*px) <= p.rect.h, "{name}: {text:?}");
                }
            }
            let content: Vec<_> = l
                .placed
                .iter()
                .filter(|p| !p.item.is_background())
                .collect();
            for (i, a) in content.iter().enumerate() {
                for b in &content[i + 1..] {
                    assert!(
                        !a.rect.overlaps(&b.rect),
                        "{name}: {:?} overlaps {:?}",
                        a,
                        b
                    );
                }
            }
            // Something on a band lies wholly on it or wholly off it.
            for band in l.placed.iter().filter(|p| p.item.is_background()) {
                for c in &content {
                    let inside = c.rect.x >= band.rect.x
                        && c.rect.right() <= band.rect.right()
                        && c.rect.y >= band.rect.y
                        && c.rect.bottom() <= band.rect.bottom();
                    assert!(
                        inside || !c.rect.overlaps(&band.rect),
                        "{name}: {c:?} straddles the band"
                    );
                }
            }
            // Every text has a non-empty line: nothing is lost to ellipsis entirely.
            for p in &l.placed {
                if let Item::Text { text, .. } = &p.item {
                    assert!(!text.is_empty(), "{name}: a text was cut to nothing");
                }
            }
        }
    }
}

#[test]
fn a_long_shop_name_shrinks_then_ends_in_an_ellipsis() {
    let mut cut = 0;
    for (name, l) in all_layouts(&golden_look()) {
        if !name.starts_with("card-long-shop-name") {
            continue;
        }
        let shop = l
            .placed
            .iter()
            .find_map(|p| match &p.item {
                Item::Text { text, px, .. } if p.rect.y < l.placed[0].rect.bottom() => {
                    Some((text.clone(), *px))
                }
                _ => None,
            })
            .unwrap();
        assert!(shop.0.starts_with("好又多"), "{name}: {shop:?}");
        // Whole and smaller than a short name's title, or cut, and then at the minimum size.
        let full = shop.0 == LONG_SHOP;
        assert!(
            full || (shop.0.ends_with('…') && shop.1 == MIN_PX),
            "{name}: {shop:?}"
        );
        cut += usize::from(!full);
    }
    assert!(cut > 0, "a name this long is cut somewhere");
}

#[test]
fn every_text_keeps_aa_contrast_on_its_background() {
    for look in looks() {
        for (name, l) in all_layouts(&look) {
            for p in &l.placed {
                if let Item::Text { text, ink, bg, .. } = &p.item {
                    // The background the layout says is under the text is the one painted.
                    let under = l
                        .placed
                        .iter()
                        .filter(|b| b.item.is_background() && b.rect.overlaps(&p.rect))
                        .map(|b| match b.item {
                            Item::Band(c) => c,
                            _ => unreachable!(),
                        })
                        .next_back()
                        .unwrap_or(wxcard_hal::display::raster::BACKGROUND);
                    assert_eq!(*bg, under, "{name}: {text:?}");
                    let c = contrast(*ink, *bg);
                    assert!(c >= 4.5, "{name}: {text:?} {ink:?} on {bg:?} is {c:.2}:1");
                }
            }
        }
    }
    assert!(contrast(ink_on(Rgb(0x77, 0x77, 0x77)), Rgb(0x77, 0x77, 0x77)) >= 4.5);
}

#[test]
fn the_qr_is_at_least_35_mm_on_real_panels_and_never_smaller_than_what_fits() {
    let font = golden_font();
    let case = &cases()[4];
    assert_eq!(case.name, "paycode");
    let view = View::of(&case.screen, &case.texts, case.at);
    for (w, h) in SIZES {
        for look in [
            Look {
                diagonal_in: Some(diagonal_of(w, h)),
                ..Look::default()
            },
            Look::default(),
        ] {
            let l = layout::compute(&view, w, h, &font, &look);
            let mm = l.qr_mm.unwrap();
            assert!(
                mm >= QR_MIN_MM,
                "{w}x{h} {:?}: QR is {mm:.1} mm",
                look.diagonal_in
            );
            let qr = l
                .placed
                .iter()
                .find_map(|p| match p.item {
                    Item::Qr(q) => Some(q),
                    _ => None,
                })
                .unwrap();
            // At least a third of the short side: the code is the screen's main content.
            assert!(qr.side * 3 >= w.min(h) * 2, "{w}x{h}: QR side {}", qr.side);
        }
    }
}

#[test]
fn a_countdown_tick_repaints_only_the_numbers_and_the_bar() {
    let t0 = Instant::now();
    let code = PayCode::new(PAY_CODE, t0 + Duration::from_secs(120)).unwrap();
    let screen = Screen::PayCode(code);
    let texts = Texts::default();
    for (w, h) in SIZES {
        let mut frame = Frame::new(Canvas::new(w, h, w * 3, PixelFormat::Rgb888), golden_font());
        let first = View::of(&screen, &texts, t0 + Duration::from_secs(30));
        frame.draw(&first);
        let layout = frame.layout(&first);
        let before = frame.canvas().bytes().to_vec();
        frame.canvas_mut().take_changed_rows();
        frame.draw(&View::of(&screen, &texts, t0 + Duration::from_secs(31)));
        let rows = frame
            .canvas_mut()
            .take_changed_rows()
            .expect("the countdown moved");
        let after = frame.canvas().bytes();
        let (t, b) = (layout.countdown_rect().unwrap(), layout.bar_rect().unwrap());
        let mut changed = 0;
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                if before[i..i + 3] != after[i..i + 3] {
                    changed += 1;
                    let inside =
                        |r: layout::Rect| x >= r.x && x < r.right() && y >= r.y && y < r.bottom();
                    assert!(inside(t) || inside(b), "{w}x{h}: pixel {x},{y} changed");
                }
            }
        }
        assert!(changed > 0, "{w}x{h}");
        assert!(rows.start >= t.y.min(b.y) && rows.end <= t.bottom().max(b.bottom()));
    }
}

#[test]
fn text_on_a_band_is_blended_over_the_band_not_over_white() {
    // Every pixel in a text box lies between the colour under it and the ink (anti-aliased
    // edges mix the two): a mix with white would show as a halo on a coloured band.
    for accent in [Rgb(255, 204, 0), Rgb(0, 0x69, 0x5c)] {
        let look = Look {
            accent,
            ..golden_look()
        };
        for case in cases() {
            for (w, h) in [(800, 480), (1080, 1920)] {
                let (rgb, layout) = render(&case, w, h, &look);
                for p in &layout.placed {
                    let Item::Text { ink, bg, text, .. } = &p.item else {
                        continue;
                    };
                    let r = p.rect;
                    for y in r.y..r.bottom() {
                        for x in r.x..r.right() {
                            let px = &rgb[(y * w + x) * 3..][..3];
                            let (a, b) = ([ink.0, ink.1, ink.2], [bg.0, bg.1, bg.2]);
                            for c in 0..3 {
                                let (lo, hi) = (a[c].min(b[c]), a[c].max(b[c]));
                                assert!(
                                    px[c].saturating_add(2) >= lo && px[c] <= hi.saturating_add(2),
                                    "{} {w}x{h}: {text:?} pixel ({x}, {y}) is {px:?}, not between {ink:?} and {bg:?}",
                                    case.name
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn odd_sizes_draw_without_panicking_and_keep_boxes_inside() {
    let font = golden_font();
    let look = golden_look();
    for (w, h) in [
        (120, 120),
        (121, 2000),
        (2000, 121),
        (333, 777),
        (640, 480),
        (480, 272),
        (1280, 1024),
        (2560, 1440),
    ] {
        for case in cases() {
            let view = View::of(&case.screen, &case.texts, case.at);
            let l = layout::compute(&view, w, h, &font, &look);
            if w * h <= 1_000_000 {
                render(&case, w, h, &look);
            }
            for p in &l.placed {
                // The last resort of a screen too odd to fit is clipping, never a panic; on
                // screens of a sane aspect everything fits.
                if w * 3 >= h && h * 3 >= w {
                    assert!(p.rect.inside(w, h), "{} {w}x{h}: {p:?}", case.name);
                }
            }
        }
    }
}
