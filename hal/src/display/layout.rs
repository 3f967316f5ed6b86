//! Where everything on a screen goes, for every screen size: boxes first, pixels after.
//!
//! [`compute`] turns a [`View`] and a canvas size into a [`Layout`], a list of boxes (header
//! band, logo, text lines, the QR, the countdown bar, an icon) with their sizes in pixels;
//! [`Frame`] then paints them. Computing the boxes apart from painting is what lets a test
//! check, for every screen at every size, that nothing leaves the canvas, nothing overlaps
//! and no text is set below [`MIN_PX`]; and it tells a countdown tick exactly which two boxes
//! (the numbers and the bar) to repaint, so a tick stays cheap.
//!
//! The design: sizes scale with the short side of the screen. Landscape screens put the
//! pay code's QR on the left and its words on the right, and the card's balance on the left
//! and the other rows on the right; portrait screens stack them. The idle and card screens
//! carry the shop's accent colour as a header band with the logo and the shop name (text on
//! it is white or black, whichever contrasts more). An expired or offline pay code has no QR
//! at all but a coloured band with an icon (a clock, a crossed-out circle) and the words, so
//! it cannot be taken for a live code. Long texts shrink to [`MIN_PX`] and are then cut with
//! an ellipsis, never clipped or drawn over something else.
//!
//! Only the font's metrics (`line_height`, `text_width`) are used, so the layout holds for
//! whatever font the [`Font`] wraps.

use std::path::Path;
use std::sync::Arc;

use super::config::{Colour, DisplayConfig};
use super::font::Font;
use super::qr::QrPlacement;
use super::raster::{BACKGROUND, Canvas, Rgb};
use super::view::{Tone, View};

/// No text is set smaller than this many pixels (readable at arm's length on a 7" 800x480
/// panel).
pub const MIN_PX: usize = 18;
/// The QR symbol is at least this wide on the glass: a phone at 30-40 cm reads it at once.
pub const QR_MIN_MM: f64 = 35.0;
/// Assumed when neither the config nor the device says how big the panel is: denser than
/// any common customer display (a 7" 1024x600 panel is 170 dpi, 800x480 is 133), so the
/// 35 mm rule errs towards a larger code.
pub const FALLBACK_DPI: f64 = 160.0;

/// A canvas narrower or lower than this shows nothing.
pub const MIN_SIDE: usize = 120;

/// Body text.
pub const INK: Rgb = Rgb(17, 17, 17);
/// Labels next to values (7.5:1 on white).
pub const MUTED: Rgb = Rgb(0x55, 0x55, 0x55);
/// The expired pay code's band and error headings (6.5:1 against white).
pub const EXPIRED: Rgb = Rgb(0xb3, 0x26, 0x1e);
/// The offline band (6.8:1 against white).
pub const OFFLINE: Rgb = Rgb(0x8a, 0x4b, 0x00);
/// Hairlines and the countdown bar's empty part.
pub const TRACK: Rgb = Rgb(0xdd, 0xdd, 0xdd);

/// A box in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    /// Left edge.
    pub x: usize,
    /// Top edge.
    pub y: usize,
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
}

impl Rect {
    /// Right edge (exclusive).
    pub fn right(&self) -> usize {
        self.x + self.w
    }

    /// Bottom edge (exclusive).
    pub fn bottom(&self) -> usize {
        self.y + self.h
    }

    /// Whether the two boxes share a pixel.
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }

    /// Whether the box lies inside a `w` x `h` canvas.
    pub fn inside(&self, w: usize, h: usize) -> bool {
        self.right() <= w && self.bottom() <= h
    }
}

/// How a text sits in its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Against the left edge.
    Left,
    /// Centred.
    Centre,
    /// Against the right edge.
    Right,
}

/// The drawn icons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icon {
    /// A clock face: the pay code's time is up.
    Clock,
    /// A crossed-out circle: no connection.
    Offline,
}

/// What goes in a box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A coloured background; other boxes are drawn on top of it.
    Band(Rgb),
    /// The shop's logo, scaled to the box, laid over this colour.
    Logo(Rgb),
    /// One line of text.
    Text {
        /// The words, already cut to fit.
        text: String,
        /// Size in pixels.
        px: usize,
        /// Colour.
        ink: Rgb,
        /// The colour under it (for the contrast check).
        bg: Rgb,
        /// Placement in the box.
        align: Align,
    },
    /// The QR code, quiet zone included (the box is exactly the placement).
    Qr(QrPlacement),
    /// The countdown bar, `permille` of it filled from the left.
    Bar {
        /// The filled part.
        fill: Rgb,
        /// Thousandths filled.
        permille: u32,
    },
    /// A hairline.
    Rule(Rgb),
    /// An icon, drawn in `ink` inside the box.
    Icon(Icon, Rgb),
}

impl Item {
    /// Whether other boxes may lie on this one (a band under its text and logo).
    pub fn is_background(&self) -> bool {
        matches!(self, Item::Band(_))
    }
}

/// One box and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// Where.
    pub rect: Rect,
    /// What.
    pub item: Item,
}

/// The boxes of one screen at one size.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Canvas width.
    pub width: usize,
    /// Canvas height.
    pub height: usize,
    /// The boxes, in painting order.
    pub placed: Vec<Placed>,
    /// Indices in `placed` of the countdown numbers and bar, on a pay-code screen.
    pub countdown: Option<(usize, usize)>,
    /// Width of the QR symbol (quiet zone excluded) on the glass, in mm.
    pub qr_mm: Option<f64>,
}

impl Layout {
    /// The countdown numbers' box.
    pub fn countdown_rect(&self) -> Option<Rect> {
        self.countdown.map(|(t, _)| self.placed[t].rect)
    }

    /// The countdown bar's box.
    pub fn bar_rect(&self) -> Option<Rect> {
        self.countdown.map(|(_, b)| self.placed[b].rect)
    }
}

/// A decoded picture, RGBA, 8 bits a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

/// Why a logo could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LogoError {
    /// Reading the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a PNG this decoder reads.
    #[error("not a usable PNG: {0}")]
    Decode(String),
    /// Empty, or too big to be a logo.
    #[error("{0}x{1} pixels is not a logo size")]
    Size(usize, usize),
}

impl Image {
    /// Decodes a PNG file (any colour type; 16-bit and palette images are expanded). Both
    /// raster backends' features bring the `png` crate.
    pub fn load_png(path: &Path) -> Result<Image, LogoError> {
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut dec = png::Decoder::new(file);
        dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = dec
            .read_info()
            .map_err(|e| LogoError::Decode(e.to_string()))?;
        let (w, h) = {
            let info = reader.info();
            (info.width as usize, info.height as usize)
        };
        if w == 0 || h == 0 || w > 4096 || h > 4096 {
            return Err(LogoError::Size(w, h));
        }
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| LogoError::Decode("image too large".into()))?;
        let mut buf = vec![0; size];
        let info = reader
            .next_frame(&mut buf)
            .map_err(|e| LogoError::Decode(e.to_string()))?;
        let channels = info.color_type.samples();
        let mut rgba = Vec::with_capacity(w * h * 4);
        for y in 0..h {
            for x in 0..w {
                let p = &buf[y * info.line_size + x * channels..][..channels];
                rgba.extend_from_slice(&match channels {
                    1 => [p[0], p[0], p[0], 255],
                    2 => [p[0], p[0], p[0], p[1]],
                    3 => [p[0], p[1], p[2], 255],
                    _ => [p[0], p[1], p[2], p[3]],
                });
            }
        }
        Ok(Image {
            width: w,
            height: h,
            rgba,
        })
    }

    /// The largest size with the same aspect ratio that fits `w` x `h`.
    pub fn fit(&self, w: usize, h: usize) -> (usize, usize) {
        if self.width * h <= self.height * w {
            ((self.width * h / self.height).max(1), h)
        } else {
            (w, (self.height * w / self.width).max(1))
        }
    }

    /// Scaled to `w` x `h` (each target pixel the average of the source pixels it covers,
    /// so a large logo shrinks without jagged edges) and laid over `bg`.
    pub fn scaled_over(&self, w: usize, h: usize, bg: Rgb) -> Vec<Rgb> {
        let mut out = Vec::with_capacity(w * h);
        for ty in 0..h {
            let (sy0, sy1) = span(ty, h, self.height);
            for tx in 0..w {
                let (sx0, sx1) = span(tx, w, self.width);
                let mut acc = [0u64; 4];
                for sy in sy0..sy1 {
                    for sx in sx0..sx1 {
                        let p = &self.rgba[(sy * self.width + sx) * 4..][..4];
                        let a = u64::from(p[3]);
                        acc[0] += u64::from(p[0]) * a;
                        acc[1] += u64::from(p[1]) * a;
                        acc[2] += u64::from(p[2]) * a;
                        acc[3] += a;
                    }
                }
                let n = ((sy1 - sy0) * (sx1 - sx0)) as u64;
                let mix = |sum: u64, b: u8| {
                    // sum/255/n of the colour, plus what the coverage leaves of the background.
                    let a_total = acc[3];
                    ((sum + u64::from(b) * (255 * n - a_total)) / (255 * n)) as u8
                };
                out.push(Rgb(mix(acc[0], bg.0), mix(acc[1], bg.1), mix(acc[2], bg.2)));
            }
        }
        out
    }
}

/// The source pixels `[a, b)` that target pixel `t` of `n` covers, of `len`.
fn span(t: usize, n: usize, len: usize) -> (usize, usize) {
    let a = t * len / n;
    let b = ((t + 1) * len).div_ceil(n).clamp(a + 1, len.max(a + 1));
    (a.min(len - 1), b.min(len))
}

/// The shop's look and the panel's physical size: what a layout needs besides the view.
#[derive(Debug, Clone)]
pub struct Look {
    /// Header band colour.
    pub accent: Rgb,
    /// The logo, decoded once.
    pub logo: Option<Arc<Image>>,
    /// Configured pixels per inch.
    pub dpi: Option<f64>,
    /// Configured diagonal, inches.
    pub diagonal_in: Option<f64>,
    /// Width and height in mm as the device reports them.
    pub device_mm: Option<(u32, u32)>,
}

impl Default for Look {
    fn default() -> Self {
        let Colour(r, g, b) = Colour::DEFAULT_ACCENT;
        Self {
            accent: Rgb(r, g, b),
            logo: None,
            dpi: None,
            diagonal_in: None,
            device_mm: None,
        }
    }
}

impl Look {
    /// The look `[display]` asks for; a logo that cannot be loaded is logged and left out.
    pub fn from_config(config: &DisplayConfig) -> Look {
        let Colour(r, g, b) = config.accent;
        let logo = config
            .logo
            .as_deref()
            .and_then(|path| match Image::load_png(path) {
                Ok(img) => Some(Arc::new(img)),
                Err(e) => {
                    log::warn!(
                        "display logo {}: {e}; showing the header without it",
                        path.display()
                    );
                    None
                }
            });
        Look {
            accent: Rgb(r, g, b),
            logo,
            dpi: config.dpi.map(|d| d.0),
            diagonal_in: config.diagonal_in.map(|d| d.0),
            device_mm: None,
        }
    }

    /// Pixels per mm on a `w` x `h` panel: the configured dpi, else the configured diagonal,
    /// else the device's reported size, else [`FALLBACK_DPI`]; and where that came from.
    pub fn px_per_mm(&self, w: usize, h: usize) -> (f64, &'static str) {
        if let Some(dpi) = self.dpi {
            return (dpi / 25.4, "dpi");
        }
        if let Some(d) = self.diagonal_in {
            let px = ((w * w + h * h) as f64).sqrt();
            return (px / d / 25.4, "diagonal_in");
        }
        if let Some((mw, mh)) = self.device_mm {
            // Drivers that do not know say 0 (or garbage): believe only a plausible panel.
            if (20..=2000).contains(&mw) && (20..=2000).contains(&mh) {
                return ((w as f64 / mw as f64).max(h as f64 / mh as f64), "device");
            }
        }
        (FALLBACK_DPI / 25.4, "assumed")
    }
}

fn colour(c: Rgb) -> Colour {
    Colour(c.0, c.1, c.2)
}

/// Relative luminance of an sRGB colour (WCAG 2).
pub fn luminance(c: Rgb) -> f64 {
    colour(c).luminance()
}

/// WCAG 2 contrast ratio of two colours (1 to 21).
pub fn contrast(a: Rgb, b: Rgb) -> f64 {
    colour(a).contrast(colour(b))
}

/// White or black, whichever reads better on `bg` (at least 4.58:1 on any colour).
pub fn ink_on(bg: Rgb) -> Rgb {
    let Colour(r, g, b) = colour(bg).ink();
    Rgb(r, g, b)
}

/// Sizes for one canvas.
struct Metrics {
    w: usize,
    h: usize,
    landscape: bool,
    /// Outer margin.
    m: usize,
    title: usize,
    body: usize,
    small: usize,
    hero: usize,
}

impl Metrics {
    fn new(w: usize, h: usize, scale: f64) -> Self {
        let u = w.min(h) as f64 / 100.0;
        let px = |k: f64| ((k * u * scale).round() as usize).max(MIN_PX);
        Metrics {
            w,
            h,
            landscape: w > h,
            m: ((4.0 * u * scale).round() as usize).max(6),
            title: px(7.0),
            body: px(5.0),
            small: px(3.8),
            hero: px(11.0),
        }
    }
}

/// `text` at the largest size from `px` down to [`MIN_PX`] that fits `max_w`, cut with an
/// ellipsis when not even that does.
pub fn fit(font: &Font, text: &str, px: usize, max_w: usize) -> (String, usize) {
    let px = px.max(MIN_PX);
    if font.text_width(text, px) <= max_w {
        return (text.to_owned(), px);
    }
    // Widths grow with the size: the largest size that fits, by bisection.
    let (mut lo, mut hi) = (MIN_PX, px);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if font.text_width(text, mid) <= max_w {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    if font.text_width(text, lo) <= max_w {
        return (text.to_owned(), lo);
    }
    let chars: Vec<char> = text.chars().collect();
    let cut = |n: usize| {
        let mut s: String = chars[..n].iter().collect::<String>().trim_end().to_owned();
        s.push('…');
        s
    };
    let (mut lo, mut hi) = (0, chars.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if font.text_width(&cut(mid), MIN_PX) <= max_w {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let s = cut(lo);
    if font.text_width(&s, MIN_PX) <= max_w {
        (s, MIN_PX)
    } else {
        (String::new(), MIN_PX)
    }
}

/// Breaks `text` into lines no wider than `max_w` at `px` (at spaces where it can, between
/// any two characters in CJK text), at most `max_lines`; the last one ends in an ellipsis
/// when text is left over.
pub fn wrap(font: &Font, text: &str, px: usize, max_w: usize, max_lines: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut rest: Vec<char> = text.trim().chars().collect();
    while !rest.is_empty() && lines.len() < max_lines {
        let fits = |n: usize| font.text_width(&rest[..n].iter().collect::<String>(), px) <= max_w;
        let mut n = 1;
        while n < rest.len() && fits(n + 1) {
            n += 1;
        }
        if n < rest.len() {
            // Prefer the last space, so Latin words stay whole.
            if let Some(sp) = rest[..=n].iter().rposition(|&c| c == ' ') {
                if sp > 0 {
                    n = sp;
                }
            }
        }
        let line: String = rest[..n].iter().collect();
        rest.drain(..n);
        while rest.first() == Some(&' ') {
            rest.remove(0);
        }
        if lines.len() + 1 == max_lines && !rest.is_empty() {
            let tail: String = line.chars().chain(rest.iter().copied()).collect();
            lines.push(fit(font, &tail, px.max(MIN_PX), max_w).0);
            rest.clear();
        } else {
            lines.push(line);
        }
    }
    lines
}

/// A bilingual label (`"付款码已过期 Pay code expired"`) as its Chinese and English parts,
/// for two lines; `None` for the second when the text is not of that shape.
pub fn split_bilingual(text: &str) -> (&str, Option<&str>) {
    for (i, _) in text.match_indices(' ') {
        let (head, tail) = (&text[..i], text[i + 1..].trim());
        if !head.is_ascii()
            && tail.is_ascii()
            && tail.bytes().any(|b| b.is_ascii_alphabetic())
            && !head.trim().is_empty()
        {
            return (head.trim(), Some(tail));
        }
    }
    (text, None)
}

/// The share of the pay code's life left, in thousandths.
fn permille(view: &View<'_>) -> u32 {
    match (view.remaining_ms, view.lifetime_ms) {
        (Some(r), Some(l)) if l > 0 => (r.min(l) * 1000 / l) as u32,
        (Some(_), _) => 1000,
        _ => 0,
    }
}

/// Builds the boxes of a screen, top to bottom.
struct Builder<'f> {
    font: &'f Font,
    m: Metrics,
    out: Vec<Placed>,
}

impl Builder<'_> {
    fn push(&mut self, rect: Rect, item: Item) -> usize {
        self.out.push(Placed { rect, item });
        self.out.len() - 1
    }

    /// A line of text fitted to `w` at `x`, top at `y`; returns its index and height.
    #[allow(clippy::too_many_arguments)]
    fn text(
        &mut self,
        text: &str,
        x: usize,
        y: usize,
        w: usize,
        px: usize,
        ink: Rgb,
        bg: Rgb,
        align: Align,
    ) -> (usize, usize) {
        let (text, px) = fit(self.font, text, px, w);
        let h = self.font.line_height(px);
        let i = self.push(
            Rect { x, y, w, h },
            Item::Text {
                text,
                px,
                ink,
                bg,
                align,
            },
        );
        (i, h)
    }

    /// The header band with the logo (if any) and `title`; returns its height.
    fn band(&mut self, colour: Rgb, title: &str, look: &Look, with_logo: bool) -> usize {
        let (w, m) = (self.m.w, self.m.m);
        let pad = m * 3 / 4;
        let line = self.font.line_height(self.m.title);
        let band_h = line + 2 * pad;
        self.push(
            Rect {
                x: 0,
                y: 0,
                w,
                h: band_h,
            },
            Item::Band(colour),
        );
        let mut x = m;
        let logo = look.logo.as_ref().filter(|_| with_logo);
        if let Some(img) = logo {
            let (lw, lh) = img.fit(w / 3, band_h.saturating_sub(pad).max(1));
            self.push(
                Rect {
                    x: m,
                    y: (band_h - lh) / 2,
                    w: lw,
                    h: lh,
                },
                Item::Logo(colour),
            );
            x = m + lw + m;
        }
        let tw = w.saturating_sub(x + m);
        let (text, px) = fit(self.font, title, self.m.title, tw);
        let th = self.font.line_height(px);
        let align = if logo.is_some() {
            Align::Left
        } else {
            Align::Centre
        };
        self.push(
            Rect {
                x,
                y: (band_h - th) / 2,
                w: tw,
                h: th,
            },
            Item::Text {
                text,
                px,
                ink: ink_on(colour),
                bg: colour,
                align,
            },
        );
        band_h
    }

    /// Lines (text, px, ink) stacked and centred vertically in `y0..y1` within column
    /// `x`, `w`, with `gap` between them.
    fn stack(&mut self, lines: &[(String, usize, Rgb)], x: usize, w: usize, y0: usize, y1: usize) {
        let gap = self.m.m / 2;
        let fitted: Vec<(String, usize, Rgb)> = lines
            .iter()
            .filter(|(t, _, _)| !t.is_empty())
            .map(|(t, px, ink)| {
                let (t, px) = fit(self.font, t, *px, w);
                (t, px, *ink)
            })
            .collect();
        let total: usize = fitted
            .iter()
            .map(|(_, px, _)| self.font.line_height(*px))
            .sum::<usize>()
            + gap * fitted.len().saturating_sub(1);
        let mut y = y0 + y1.saturating_sub(y0).saturating_sub(total) / 2;
        for (t, px, ink) in fitted {
            let h = self.font.line_height(px);
            if y + h > y1 {
                break;
            }
            self.push(
                Rect { x, y, w, h },
                Item::Text {
                    text: t,
                    px,
                    ink,
                    bg: BACKGROUND,
                    align: Align::Centre,
                },
            );
            y += h + gap;
        }
    }
}

/// The boxes of `view` on a `w` x `h` canvas.
pub fn compute(view: &View<'_>, w: usize, h: usize, font: &Font, look: &Look) -> Layout {
    if w < MIN_SIDE || h < MIN_SIDE {
        // No customer display is this small; draw nothing rather than something broken.
        return Layout {
            width: w,
            height: h,
            ..Layout::default()
        };
    }
    // Shrink everything a step at a time until the screen's content fits.
    let mut last = Layout::default();
    for scale in [1.0, 0.85, 0.7, 0.55, 0.4] {
        let (layout, fits) = attempt(view, w, h, font, look, scale);
        if fits {
            return layout;
        }
        last = layout;
    }
    last
}

fn attempt(
    view: &View<'_>,
    w: usize,
    h: usize,
    font: &Font,
    look: &Look,
    scale: f64,
) -> (Layout, bool) {
    let mut b = Builder {
        font,
        m: Metrics::new(w, h, scale),
        out: Vec::new(),
    };
    let mut layout = Layout {
        width: w,
        height: h,
        ..Layout::default()
    };
    let mut fits = true;
    match view.kind {
        "blank" => {}
        "idle" => idle(&mut b, view, look),
        "card" => fits = card(&mut b, view, look),
        "paycode" => {
            let (countdown, qr_mm, ok) = paycode(&mut b, view, look);
            layout.countdown = countdown;
            layout.qr_mm = qr_mm;
            fits = ok;
        }
        "expired" => state(&mut b, view, EXPIRED, Icon::Clock),
        "offline" => state(&mut b, view, OFFLINE, Icon::Offline),
        _ => message(&mut b, view, look),
    }
    layout.placed = b.out;
    let inside = layout.placed.iter().all(|p| p.rect.inside(w, h));
    (layout, fits && inside)
}

fn idle(b: &mut Builder<'_>, view: &View<'_>, look: &Look) {
    let top = b.band(look.accent, &view.shop, look, true);
    let (m, w, h) = (b.m.m, b.m.w, b.m.h);
    let (first, second) = split_bilingual(&view.heading);
    let mut lines = vec![(first.to_owned(), b.m.hero, INK)];
    if let Some(s) = second {
        lines.push((s.to_owned(), b.m.title, MUTED));
    }
    let text_h: usize = lines
        .iter()
        .map(|(_, px, _)| b.font.line_height(*px))
        .sum::<usize>()
        + m / 2 * lines.len().saturating_sub(1);
    // The logo again, large, above the welcome, when there is room for it.
    let free = h.saturating_sub(top + 2 * m);
    let logo = look.logo.as_ref().map(|img| {
        let box_h = (b.font.line_height(b.m.hero) * 2).min(free.saturating_sub(text_h + m) / 2);
        img.fit(w / 2, box_h.max(1))
    });
    let (lw, lh) = logo.filter(|&(_, lh)| lh >= 2 * MIN_PX).unwrap_or((0, 0));
    let block = if lh > 0 { lh + m + text_h } else { text_h };
    let y0 = top + m + free.saturating_sub(block) / 2;
    let mut ty = y0;
    if lh > 0 {
        b.push(
            Rect {
                x: (w - lw) / 2,
                y: y0,
                w: lw,
                h: lh,
            },
            Item::Logo(BACKGROUND),
        );
        ty += lh + m;
    }
    b.stack(
        &lines,
        m,
        w.saturating_sub(2 * m),
        ty,
        (ty + text_h).min(h.saturating_sub(m)),
    );
}

/// Card: band; balance as the hero; the other rows as a label/value table.
fn card(b: &mut Builder<'_>, view: &View<'_>, look: &Look) -> bool {
    let top = b.band(look.accent, &view.shop, look, true);
    let (m, w, h) = (b.m.m, b.m.w, b.m.h);
    let number = view.rows.first().map(|r| r.value.as_str()).unwrap_or("");
    let balance = view.rows.get(1);
    let table: Vec<_> = view.rows.iter().skip(2).collect();

    let head = |b: &Builder<'_>| {
        let mut lines = vec![
            (view.heading.clone(), b.m.body, MUTED),
            (number.to_owned(), b.m.body, INK),
        ];
        if let Some(r) = balance {
            lines.push((r.label.clone(), b.m.small, MUTED));
            lines.push((r.value.clone(), b.m.hero, INK));
        }
        lines
    };
    let lines = head(b);
    let stack_h = |b: &Builder<'_>, lines: &[(String, usize, Rgb)]| {
        lines
            .iter()
            .map(|(_, px, _)| b.font.line_height(*px))
            .sum::<usize>()
            + b.m.m / 2 * lines.len().saturating_sub(1)
    };
    let row_h = b.font.line_height(b.m.body) + m / 2;
    let table_h = row_h * table.len();
    let (tx, tw, ty0, ty1);
    if b.m.landscape {
        let col = w.saturating_sub(3 * m) / 2;
        let need = stack_h(b, &lines);
        b.stack(&lines, m, col, top + m, h.saturating_sub(m));
        b.push(
            Rect {
                x: m + col + m / 2,
                y: top + 2 * m,
                w: 1,
                h: h.saturating_sub(top + 4 * m),
            },
            Item::Rule(TRACK),
        );
        tx = 2 * m + col;
        tw = col;
        ty0 = top + m + h.saturating_sub(top + 2 * m + table_h) / 2;
        ty1 = h.saturating_sub(m);
        if need > h.saturating_sub(top + 2 * m) {
            return false;
        }
    } else {
        let need = stack_h(b, &lines);
        let free = h.saturating_sub(top + 2 * m);
        if need + m + table_h > free {
            return false;
        }
        // The head block and the table together, centred in what the band leaves.
        let spare = free - need - m - table_h;
        let y0 = top + m + spare / 2;
        b.stack(&lines, m, w.saturating_sub(2 * m), y0, y0 + need);
        let rule_y = y0 + need + m / 2;
        b.push(
            Rect {
                x: m,
                y: rule_y,
                w: w.saturating_sub(2 * m),
                h: 1,
            },
            Item::Rule(TRACK),
        );
        tx = m;
        tw = w.saturating_sub(2 * m);
        ty0 = rule_y + m / 2 + 1;
        ty1 = h.saturating_sub(m);
    }
    let mut y = ty0;
    for r in table {
        let lh = b.font.line_height(b.m.body);
        if y + lh > ty1 {
            return false;
        }
        let gap = m / 2;
        let (value, vpx) = fit(b.font, &r.value, b.m.body, tw * 3 / 5);
        let vw = b.font.text_width(&value, vpx);
        b.text(
            &r.label,
            tx,
            y,
            tw.saturating_sub(vw + gap),
            b.m.body.min(vpx.max(MIN_PX)),
            MUTED,
            BACKGROUND,
            Align::Left,
        );
        b.push(
            Rect {
                x: tx + tw - vw,
                y,
                w: vw,
                h: b.font.line_height(vpx),
            },
            Item::Text {
                text: value,
                px: vpx,
                ink: INK,
                bg: BACKGROUND,
                align: Align::Right,
            },
        );
        y += row_h;
    }
    true
}

/// Pay code: the QR as large as fits (at least [`QR_MIN_MM`] where the panel allows), the
/// digits, the countdown numbers and bar. Returns the countdown's boxes, the QR's width in
/// mm and whether it all fit.
fn paycode(
    b: &mut Builder<'_>,
    view: &View<'_>,
    look: &Look,
) -> (Option<(usize, usize)>, Option<f64>, bool) {
    let Some(qr) = view.qr else {
        return (None, None, true);
    };
    let (m, w, h) = (b.m.m, b.m.w, b.m.h);
    let (per_mm, _) = look.px_per_mm(w, h);
    let digits_px = b.m.body * 6 / 5;
    let count_px = b.m.body;
    let bar_h = (m / 2).max(6);
    let bar_fill = if contrast(look.accent, BACKGROUND) >= 3.0 {
        look.accent
    } else {
        INK
    };
    let mm = |p: &QrPlacement| (p.module * qr.matrix.size()) as f64 / per_mm;
    let line = |px: usize| b.font.line_height(px);
    let words_h = line(b.m.title) + m + line(digits_px) + m / 2 + line(count_px) + m / 3 + bar_h;

    if b.m.landscape {
        // QR square on the left: its quiet zone is the margin.
        let side = h.min(w * 11 / 20);
        let Some(p) = qr.matrix.place(0, 0, side, h) else {
            return (None, None, false);
        };
        b.push(
            Rect {
                x: p.x,
                y: p.y,
                w: p.side,
                h: p.side,
            },
            Item::Qr(p),
        );
        let rx = p.x + p.side + m / 2;
        let rw = w.saturating_sub(rx + m);
        let mut y = h.saturating_sub(words_h) / 2;
        let fits = words_h + 2 * m <= h && rw >= 4 * MIN_PX;
        let (_, th) = b.text(
            &view.heading,
            rx,
            y,
            rw,
            b.m.title,
            INK,
            BACKGROUND,
            Align::Left,
        );
        y += th + m;
        let (_, dh) = b.text(
            &view.digits,
            rx,
            y,
            rw,
            digits_px,
            INK,
            BACKGROUND,
            Align::Left,
        );
        y += dh + m / 2;
        let text = view.countdown.clone().unwrap_or_default();
        let (ti, ch) = b.text(&text, rx, y, rw, count_px, MUTED, BACKGROUND, Align::Left);
        y += ch + m / 3;
        let bi = b.push(
            Rect {
                x: rx,
                y,
                w: rw,
                h: bar_h,
            },
            Item::Bar {
                fill: bar_fill,
                permille: permille(view),
            },
        );
        return (Some((ti, bi)), Some(mm(&p)), fits);
    }

    // Portrait: heading, QR, digits, countdown, bar.
    let (_, th) = b.text(
        &view.heading,
        m,
        m,
        w.saturating_sub(2 * m),
        b.m.title,
        INK,
        BACKGROUND,
        Align::Centre,
    );
    let bottom_h = line(digits_px) + m / 2 + line(count_px) + m / 3 + bar_h + m;
    let qr_top = m + th + m / 2;
    let qr_h = h.saturating_sub(qr_top + bottom_h + m / 2);
    let Some(p) = qr.matrix.place(0, qr_top, w, qr_h) else {
        return (None, None, false);
    };
    b.push(
        Rect {
            x: p.x,
            y: p.y,
            w: p.side,
            h: p.side,
        },
        Item::Qr(p),
    );
    let mut y = p.y + p.side;
    let (_, dh) = b.text(
        &view.digits,
        m,
        y,
        w.saturating_sub(2 * m),
        digits_px,
        INK,
        BACKGROUND,
        Align::Centre,
    );
    y += dh + m / 2;
    let text = view.countdown.clone().unwrap_or_default();
    let (ti, ch) = b.text(
        &text,
        m,
        y,
        w.saturating_sub(2 * m),
        count_px,
        MUTED,
        BACKGROUND,
        Align::Centre,
    );
    y += ch + m / 3;
    let inner = p.module * qr.matrix.size();
    let bar_w = inner.max(w / 2).min(w.saturating_sub(2 * m));
    let bi = b.push(
        Rect {
            x: (w - bar_w) / 2,
            y,
            w: bar_w,
            h: bar_h,
        },
        Item::Bar {
            fill: bar_fill,
            permille: permille(view),
        },
    );
    (Some((ti, bi)), Some(mm(&p)), y + bar_h <= h)
}

/// Expired or offline: a coloured band with an icon, the words below; no QR, no digits.
fn state(b: &mut Builder<'_>, view: &View<'_>, colour: Rgb, icon: Icon) {
    let (m, w, h) = (b.m.m, b.m.w, b.m.h);
    let band_h = if b.m.landscape { h * 2 / 5 } else { h / 3 };
    b.push(
        Rect {
            x: 0,
            y: 0,
            w,
            h: band_h,
        },
        Item::Band(colour),
    );
    let s = (band_h * 3 / 5).min(w.saturating_sub(2 * m)).max(1);
    b.push(
        Rect {
            x: (w - s) / 2,
            y: (band_h - s) / 2,
            w: s,
            h: s,
        },
        Item::Icon(icon, ink_on(colour)),
    );
    let (first, second) = split_bilingual(&view.heading);
    let mut lines = vec![(first.to_owned(), b.m.hero * 4 / 5, colour)];
    if let Some(s) = second {
        lines.push((s.to_owned(), b.m.title, INK));
    }
    for r in view.row_lines() {
        lines.push((r, b.m.body, INK));
    }
    b.stack(
        &lines,
        m,
        w.saturating_sub(2 * m),
        band_h + m,
        h.saturating_sub(m),
    );
}

/// Error or notice: a band with the heading, the text wrapped below.
fn message(b: &mut Builder<'_>, view: &View<'_>, look: &Look) {
    let colour = if view.tone == Tone::Alert {
        EXPIRED
    } else {
        look.accent
    };
    let top = b.band(colour, &view.heading, look, false);
    let (m, w, h) = (b.m.m, b.m.w, b.m.h);
    // The Chinese part large, the English part below it smaller, as on the state screens.
    let big = b.m.hero * 4 / 5;
    let lh = b.font.line_height(big) + m / 2;
    let max_lines = (h.saturating_sub(top + 2 * m) / lh.max(1)).clamp(1, 4);
    let mut lines = Vec::new();
    for text in view.row_lines() {
        let (first, second) = split_bilingual(&text);
        let parts = [(Some(first), big), (second, b.m.title)];
        for (part, px) in parts.into_iter().filter_map(|(p, px)| Some((p?, px))) {
            let left = max_lines - lines.len().min(max_lines);
            for l in wrap(b.font, part, px, w.saturating_sub(2 * m), left) {
                lines.push((l, px, INK));
            }
        }
    }
    lines.truncate(max_lines);
    b.stack(
        &lines,
        m,
        w.saturating_sub(2 * m),
        top + m,
        h.saturating_sub(m),
    );
}

/// The logo at the size a box needs, laid over the colour under it.
struct ScaledLogo {
    w: usize,
    h: usize,
    bg: Rgb,
    px: Vec<Rgb>,
}

/// What was last drawn, minus the countdown: equal keys mean only the countdown can differ.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    kind: &'static str,
    tone: Tone,
    heading: String,
    shop: String,
    rows: Vec<(String, String)>,
    code: Option<String>,
}

impl Key {
    fn of(view: &View<'_>) -> Self {
        Key {
            kind: view.kind,
            tone: view.tone,
            heading: view.heading.clone(),
            shop: view.shop.clone(),
            rows: view
                .rows
                .iter()
                .map(|r| (r.label.clone(), r.value.clone()))
                .collect(),
            code: view.qr.map(|q| q.code.to_owned()),
        }
    }
}

/// The countdown's boxes and what is in them now.
#[derive(Debug, Clone)]
struct Slot {
    text: Placed,
    bar: Placed,
}

/// A canvas plus what is on it, so that a countdown tick redraws the numbers and the bar and
/// not the QR.
pub struct Frame {
    canvas: Canvas,
    font: Arc<Font>,
    look: Look,
    /// Scaled once per box size (the band's and the idle screen's).
    logos: Vec<ScaledLogo>,
    last: Option<(Key, Option<Slot>)>,
}

impl Frame {
    /// A frame drawing on `canvas` with `font`, in the default look.
    pub fn new(canvas: Canvas, font: Arc<Font>) -> Self {
        Self {
            canvas,
            font,
            look: Look::default(),
            logos: Vec::new(),
            last: None,
        }
    }

    /// Uses `look` from the next draw on.
    pub fn set_look(&mut self, look: Look) {
        self.look = look;
        self.logos.clear();
        self.invalidate();
    }

    /// The look in use.
    pub fn look(&self) -> &Look {
        &self.look
    }

    /// The font text is set in.
    pub fn font(&self) -> &Font {
        &self.font
    }

    /// The canvas.
    pub fn canvas(&self) -> &Canvas {
        &self.canvas
    }

    /// The canvas, to take its changed rows.
    pub fn canvas_mut(&mut self) -> &mut Canvas {
        &mut self.canvas
    }

    /// Forgets what is on screen: the next draw repaints everything.
    pub fn invalidate(&mut self) {
        self.last = None;
        self.canvas.invalidate();
    }

    /// The boxes `view` gets on this frame.
    pub fn layout(&self, view: &View<'_>) -> Layout {
        compute(
            view,
            self.canvas.width(),
            self.canvas.height(),
            &self.font,
            &self.look,
        )
    }

    /// Draws `view`, touching only what differs from the last view where it can.
    pub fn draw(&mut self, view: &View<'_>) {
        let key = Key::of(view);
        if let Some((last_key, slot)) = &mut self.last {
            if *last_key == key {
                if let (Some(slot), Some(text)) = (slot, &view.countdown) {
                    let mut text_item = slot.text.clone();
                    if let Item::Text { text: t, .. } = &mut text_item.item {
                        t.clone_from(text);
                    }
                    let mut bar_item = slot.bar.clone();
                    if let Item::Bar { permille: p, .. } = &mut bar_item.item {
                        *p = permille(view);
                    }
                    if text_item != slot.text {
                        let r = text_item.rect;
                        self.canvas.fill_rect(r.x, r.y, r.w, r.h, BACKGROUND);
                        paint(&mut self.canvas, &self.font, &text_item, view, &[]);
                        slot.text = text_item;
                    }
                    if bar_item != slot.bar {
                        paint(&mut self.canvas, &self.font, &bar_item, view, &[]);
                        slot.bar = bar_item;
                    }
                }
                return;
            }
        }
        let layout = self.layout(view);
        self.canvas.clear();
        for p in &layout.placed {
            if let Item::Logo(bg) = p.item {
                self.scale_logo(p.rect, bg);
            }
            paint(&mut self.canvas, &self.font, p, view, &self.logos);
        }
        let slot = layout.countdown.map(|(t, b)| Slot {
            text: layout.placed[t].clone(),
            bar: layout.placed[b].clone(),
        });
        self.last = Some((key, slot));
    }

    fn scale_logo(&mut self, r: Rect, bg: Rgb) {
        if self
            .logos
            .iter()
            .any(|l| (l.w, l.h, l.bg) == (r.w, r.h, bg))
        {
            return;
        }
        let Some(img) = &self.look.logo else { return };
        if self.logos.len() >= 4 {
            self.logos.remove(0);
        }
        self.logos.push(ScaledLogo {
            w: r.w,
            h: r.h,
            bg,
            px: img.scaled_over(r.w, r.h, bg),
        });
    }
}

/// Paints one box.
fn paint(canvas: &mut Canvas, font: &Font, p: &Placed, view: &View<'_>, logos: &[ScaledLogo]) {
    let r = p.rect;
    match &p.item {
        Item::Band(c) | Item::Rule(c) => canvas.fill_rect(r.x, r.y, r.w, r.h, *c),
        Item::Logo(bg) => {
            if let Some(l) = logos.iter().find(|l| (l.w, l.h, l.bg) == (r.w, r.h, *bg)) {
                canvas.blit(r.x, r.y, l.w, l.h, &l.px);
            }
        }
        Item::Text {
            text,
            px,
            ink,
            align,
            ..
        } => {
            let tw = font.text_width(text, *px).min(r.w);
            let x = match align {
                Align::Left => r.x,
                Align::Centre => r.x + (r.w - tw) / 2,
                Align::Right => r.x + r.w - tw,
            };
            let clip = (r.x, r.y, r.right(), r.bottom());
            canvas.text_clipped(font, text, x, r.y, *px, *ink, clip);
        }
        Item::Qr(q) => {
            if let Some(qr) = view.qr {
                canvas.draw_qr(*q, qr.matrix.padded_size(), |x, y| {
                    qr.matrix.is_dark_padded(x, y)
                });
            }
        }
        Item::Bar { fill, permille } => {
            let filled = r.w * (*permille).min(1000) as usize / 1000;
            canvas.fill_rect(r.x, r.y, filled, r.h, *fill);
            canvas.fill_rect(r.x + filled, r.y, r.w - filled, r.h, TRACK);
        }
        Item::Icon(icon, ink) => paint_icon(canvas, r, *icon, *ink),
    }
}

/// A ring with clock hands, or a ring crossed out, in horizontal runs.
fn paint_icon(canvas: &mut Canvas, r: Rect, icon: Icon, ink: Rgb) {
    let s = r.w.min(r.h) as f64;
    let cx = r.x as f64 + s / 2.0;
    let ro = s / 2.0;
    let t = (s / 11.0).max(2.0);
    let ri = ro - t;
    for row in 0..r.h.min(r.w) {
        let dy = row as f64 + 0.5 - s / 2.0;
        let y = r.y + row;
        let half = |rad: f64| (rad * rad - dy * dy).max(0.0).sqrt();
        let (ho, hi) = (half(ro), if dy.abs() < ri { half(ri) } else { 0.0 });
        let run = |canvas: &mut Canvas, a: f64, b: f64| {
            let (a, b) = (a.round().max(r.x as f64), b.round().min(r.right() as f64));
            if b > a {
                canvas.fill_rect(a as usize, y, (b - a) as usize, 1, ink);
            }
        };
        if dy.abs() < ro {
            run(canvas, cx - ho, cx - hi);
            run(canvas, cx + hi, cx + ho);
        }
        match icon {
            Icon::Clock => {
                // Hands: up to twelve and across to three.
                if dy < 0.0 && -dy < ri * 0.65 {
                    run(canvas, cx - t / 2.0, cx + t / 2.0);
                }
                if dy.abs() < t / 2.0 {
                    run(canvas, cx, cx + ri * 0.5);
                }
            }
            Icon::Offline => {
                // A diagonal from top-left to bottom-right inside the ring.
                if dy.abs() < ri {
                    let lim = hi;
                    let a = (dy - t * 0.71).max(-lim);
                    let b = (dy + t * 0.71).min(lim);
                    run(canvas, cx + a, cx + b);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ink_on_any_accent_keeps_aa_contrast() {
        for v in (0..=255u8).step_by(5) {
            for c in [
                Rgb(v, v, v),
                Rgb(v, 0, 0),
                Rgb(0, v, 0),
                Rgb(255, v, 0),
                Rgb(0, v, 255),
            ] {
                assert!(contrast(ink_on(c), c) >= 4.5, "{c:?}");
            }
        }
        assert_eq!(ink_on(Rgb(255, 204, 0)), Rgb(0, 0, 0));
        assert_eq!(ink_on(Rgb(0, 0x69, 0x5c)), Rgb(255, 255, 255));
    }

    #[test]
    fn bilingual_labels_split_into_chinese_and_english() {
        assert_eq!(
            split_bilingual("付款码已过期 Pay code expired"),
            ("付款码已过期", Some("Pay code expired"))
        );
        assert_eq!(
            split_bilingual("离线：付款码不可用 Offline: pay code unavailable"),
            ("离线：付款码不可用", Some("Offline: pay code unavailable"))
        );
        assert_eq!(
            split_bilingual("Pay code expired"),
            ("Pay code expired", None)
        );
        assert_eq!(split_bilingual("付款码"), ("付款码", None));
    }

    #[test]
    fn logo_scales_to_fit_and_blends_over_the_band() {
        // 4x2: left half opaque red, right half transparent.
        let mut rgba = Vec::new();
        for _ in 0..2 {
            for x in 0..4 {
                rgba.extend_from_slice(if x < 2 {
                    &[255, 0, 0, 255]
                } else {
                    &[0, 0, 0, 0]
                });
            }
        }
        let img = Image {
            width: 4,
            height: 2,
            rgba,
        };
        assert_eq!(img.fit(100, 10), (20, 10));
        assert_eq!(img.fit(10, 100), (10, 5));
        let px = img.scaled_over(2, 1, Rgb(0, 0, 255));
        assert_eq!(px, vec![Rgb(255, 0, 0), Rgb(0, 0, 255)]);
    }

    #[test]
    fn a_logo_file_loads_and_a_bad_one_is_left_out_without_failing() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("logo.png");
        {
            let file = std::fs::File::create(&good).unwrap();
            let mut enc = png::Encoder::new(file, 3, 2);
            enc.set_color(png::ColorType::Rgba);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&[255, 0, 0, 255].repeat(6)).unwrap();
        }
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"GIF89a not a png").unwrap();
        let config = |logo: &Path| DisplayConfig {
            logo: Some(logo.to_owned()),
            ..DisplayConfig::default()
        };
        let look = Look::from_config(&config(&good));
        let img = look.logo.expect("a valid PNG loads");
        assert_eq!((img.width, img.height), (3, 2));
        assert_eq!(&img.rgba[..4], &[255, 0, 0, 255]);
        for path in [bad, dir.path().join("missing.png")] {
            let look = Look::from_config(&config(&path));
            assert!(look.logo.is_none(), "{}", path.display());
        }
        assert!(matches!(
            Image::load_png(&dir.path().join("missing.png")),
            Err(LogoError::Io(_))
        ));
    }

    #[test]
    fn physical_size_comes_from_config_then_device_then_an_assumption() {
        let mut look = Look::default();
        assert_eq!(look.px_per_mm(800, 480).1, "assumed");
        look.device_mm = Some((0, 0));
        assert_eq!(look.px_per_mm(800, 480).1, "assumed", "0 mm means unknown");
        look.device_mm = Some((154, 86));
        let (d, src) = look.px_per_mm(800, 480);
        assert_eq!(src, "device");
        // The denser of the two axes: the 35 mm rule then errs towards a larger code.
        assert!((d - 480.0 / 86.0).abs() < 0.01, "{d}");
        look.diagonal_in = Some(7.0);
        let (d, src) = look.px_per_mm(800, 480);
        assert_eq!(src, "diagonal_in");
        assert!((d * 25.4 - 133.3).abs() < 0.5, "{}", d * 25.4);
        look.dpi = Some(96.0);
        assert_eq!(look.px_per_mm(800, 480), (96.0 / 25.4, "dpi"));
    }
}
