//! An off-screen canvas in the device's own pixel layout (the layout drawn on it is in
//! [`super::layout`]).
//!
//! The framebuffer backend copies the canvas to the device in one write, so the customer
//! never sees a half-drawn frame being built; the PNG backend encodes it. The canvas keeps
//! the bounding box of what was drawn since the last clear and clears only that (the
//! background is one colour), and reports which rows changed, so a pay-code frame on a
//! 1080x1920 screen costs little more than the QR itself.

use std::ops::Range;

use super::config::PixelFormat;

use super::font::{Coverage, Font};
use super::qr::QrPlacement;

/// The frame (canvas plus what is on it) lives with the layout; re-exported where it was.
pub use super::layout::Frame;

/// A colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

/// Background of every screen: white, so the QR's quiet zone is the screen itself.
pub const BACKGROUND: Rgb = Rgb(255, 255, 255);
const QR_DARK: Rgb = Rgb(0, 0, 0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
}

impl Rect {
    fn union(self, o: Rect) -> Rect {
        Rect {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }
}

/// Pixels in a device layout, with damage tracking.
pub struct Canvas {
    width: usize,
    height: usize,
    stride: usize,
    format: PixelFormat,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    /// Drawn since the last clear; `None` when the canvas is all background.
    dirty: Option<Rect>,
    /// Whether the background is known to be [`BACKGROUND`] outside `dirty`.
    clean: bool,
    /// Rows changed since [`Canvas::take_changed_rows`].
    changed: Option<Range<usize>>,
}

impl Canvas {
    /// A canvas of `width` x `height` pixels, `stride` bytes a line (at least
    /// `width` x bytes per pixel). Its content is undefined until the first [`Canvas::clear`].
    pub fn new(width: usize, height: usize, stride: usize, format: PixelFormat) -> Self {
        let stride = stride.max(width * format.bytes_per_pixel());
        Self {
            width,
            height,
            stride,
            format,
            buf: vec![0; stride * height],
            scratch: Vec::with_capacity(stride),
            dirty: None,
            clean: false,
            changed: None,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Bytes per line.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The pixel layout.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The whole frame, `stride` x `height` bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Rows changed since the last call, to copy to the device.
    pub fn take_changed_rows(&mut self) -> Option<Range<usize>> {
        self.changed.take()
    }

    /// Marks the whole canvas as changed (e.g. after another program drew on the device).
    pub fn invalidate(&mut self) {
        self.clean = false;
        self.changed = Some(0..self.height);
    }

    fn pixel(&self, c: Rgb) -> [u8; 4] {
        encode(self.format, c)
    }

    fn mark(&mut self, r: Rect) {
        self.dirty = Some(self.dirty.map_or(r, |d| d.union(r)));
        let rows = r.y0..r.y1;
        self.changed = Some(match self.changed.take() {
            Some(c) => c.start.min(rows.start)..c.end.max(rows.end),
            None => rows,
        });
    }

    /// Paints everything drawn since the last clear with the background.
    pub fn clear(&mut self) {
        let area = if self.clean {
            match self.dirty {
                Some(d) => d,
                None => return,
            }
        } else {
            Rect {
                x0: 0,
                y0: 0,
                x1: self.width,
                y1: self.height,
            }
        };
        self.fill(area, BACKGROUND);
        self.mark(area);
        self.dirty = None;
        self.clean = true;
    }

    /// Fills a rectangle, clipped to the canvas.
    pub fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        let r = Rect {
            x0: x.min(self.width),
            y0: y.min(self.height),
            x1: x.saturating_add(w).min(self.width),
            y1: y.saturating_add(h).min(self.height),
        };
        if r.x0 < r.x1 && r.y0 < r.y1 {
            self.fill(r, c);
            self.mark(r);
        }
    }

    /// Copies a `w` x `h` block of pixels (rows top to bottom) to (`x`, `y`), clipped.
    pub fn blit(&mut self, x: usize, y: usize, w: usize, h: usize, px: &[Rgb]) {
        let bpp = self.format.bytes_per_pixel();
        let (x1, y1) = ((x + w).min(self.width), (y + h).min(self.height));
        if x >= x1 || y >= y1 || px.len() < w * h {
            return;
        }
        for row in y..y1 {
            let src = &px[(row - y) * w..][..x1 - x];
            let at = row * self.stride + x * bpp;
            for (i, &c) in src.iter().enumerate() {
                let p = self.pixel(c);
                self.buf[at + i * bpp..at + (i + 1) * bpp].copy_from_slice(&p[..bpp]);
            }
        }
        self.mark(Rect {
            x0: x,
            y0: y,
            x1,
            y1,
        });
    }

    fn fill(&mut self, r: Rect, c: Rgb) {
        let bpp = self.format.bytes_per_pixel();
        let px = self.pixel(c);
        let (start, end) = (r.x0 * bpp, r.x1 * bpp);
        if px[..bpp].iter().all(|&b| b == px[0]) {
            for y in r.y0..r.y1 {
                self.buf[y * self.stride + start..y * self.stride + end].fill(px[0]);
            }
            return;
        }
        self.scratch.clear();
        for _ in r.x0..r.x1 {
            self.scratch.extend_from_slice(&px[..bpp]);
        }
        for y in r.y0..r.y1 {
            self.buf[y * self.stride + start..y * self.stride + end].copy_from_slice(&self.scratch);
        }
    }

    /// Draws a QR code (quiet zone included) at `p`; `dark_at(x, y)` answers for padded
    /// module coordinates. Each module row is built once and copied `p.module` times.
    pub fn draw_qr(
        &mut self,
        p: QrPlacement,
        padded: usize,
        dark_at: impl Fn(usize, usize) -> bool,
    ) {
        if p.x + p.side > self.width || p.y + p.side > self.height || p.side != padded * p.module {
            return;
        }
        let bpp = self.format.bytes_per_pixel();
        let (dark, light) = (self.pixel(QR_DARK), self.pixel(BACKGROUND));
        let mut row = std::mem::take(&mut self.scratch);
        for my in 0..padded {
            row.clear();
            for mx in 0..padded {
                let px = if dark_at(mx, my) {
                    &dark[..bpp]
                } else {
                    &light[..bpp]
                };
                for _ in 0..p.module {
                    row.extend_from_slice(px);
                }
            }
            for dy in 0..p.module {
                let at = (p.y + my * p.module + dy) * self.stride + p.x * bpp;
                self.buf[at..at + row.len()].copy_from_slice(&row);
            }
        }
        self.scratch = row;
        self.mark(Rect {
            x0: p.x,
            y0: p.y,
            x1: p.x + p.side,
            y1: p.y + p.side,
        });
    }

    /// Blends `c` over the pixel run at (`x`, `y`), `len` long, with coverage `alpha`,
    /// clipped to the canvas: each pixel is mixed with what is there (a coloured band, the
    /// background), read back from the device's pixel layout.
    pub fn blend_run(&mut self, x: usize, y: usize, len: usize, c: Rgb, alpha: u8) {
        if alpha == 0 || y >= self.height || x >= self.width {
            return;
        }
        if alpha == 255 {
            self.fill_rect(x, y, len, 1, c);
            return;
        }
        let end = x.saturating_add(len).min(self.width);
        let bpp = self.format.bytes_per_pixel();
        for xx in x..end {
            let at = y * self.stride + xx * bpp;
            let px = &mut self.buf[at..at + bpp];
            let mixed = mix(c, decode(self.format, px), alpha);
            px.copy_from_slice(&encode(self.format, mixed)[..bpp]);
        }
        self.mark(Rect {
            x0: x,
            y0: y,
            x1: end,
            y1: y + 1,
        });
    }

    /// Blends one glyph's coverage in `c` with its pen position at (`x`, `y`), clipped to
    /// `clip` and the canvas.
    fn blend_glyph(&mut self, x: usize, y: usize, g: &Coverage, c: Rgb, clip: Rect) {
        let (x0, y0) = (x as isize + g.left, y as isize + g.top);
        let cx0 = x0.max(clip.x0 as isize) as usize;
        let cy0 = y0.max(clip.y0 as isize) as usize;
        let cx1 = (x0 + g.width as isize).clamp(0, clip.x1.min(self.width) as isize) as usize;
        let cy1 = (y0 + g.height as isize).clamp(0, clip.y1.min(self.height) as isize) as usize;
        if cx0 >= cx1 || cy0 >= cy1 {
            return;
        }
        let (stride, ax0, ay0) = (self.stride, (cx0 as isize - x0) as usize, y0);
        let rows = (cy0..cy1).map(|yy| {
            let at = (yy as isize - ay0) as usize * g.width + ax0;
            (yy * stride, &g.alpha[at..at + (cx1 - cx0)])
        });
        // One loop per layout, so the per-pixel decode and encode are inlined.
        match self.format {
            PixelFormat::Xrgb8888 => blend_rows::<4>(
                &mut self.buf,
                cx0,
                rows,
                c,
                |p| Rgb(p[2], p[1], p[0]),
                |Rgb(r, g, b)| [b, g, r, 0xff],
            ),
            PixelFormat::Xbgr8888 => blend_rows::<4>(
                &mut self.buf,
                cx0,
                rows,
                c,
                |p| Rgb(p[0], p[1], p[2]),
                |Rgb(r, g, b)| [r, g, b, 0xff],
            ),
            PixelFormat::Rgb888 => blend_rows::<3>(
                &mut self.buf,
                cx0,
                rows,
                c,
                |p| Rgb(p[0], p[1], p[2]),
                |Rgb(r, g, b)| [r, g, b],
            ),
            PixelFormat::Rgb565 => blend_rows::<2>(
                &mut self.buf,
                cx0,
                rows,
                c,
                |p| decode(PixelFormat::Rgb565, p),
                |c| {
                    let [lo, hi, ..] = encode(PixelFormat::Rgb565, c);
                    [lo, hi]
                },
            ),
        }
        self.mark(Rect {
            x0: cx0,
            y0: cy0,
            x1: cx1,
            y1: cy1,
        });
    }

    /// The colour of the pixel at (`x`, `y`), decoded from the device's layout (RGB565
    /// expanded to 8 bits a channel).
    pub fn get(&self, x: usize, y: usize) -> Option<Rgb> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let bpp = self.format.bytes_per_pixel();
        let at = y * self.stride + x * bpp;
        Some(decode(self.format, &self.buf[at..at + bpp]))
    }

    /// Draws one line of `text` set at `px` pixels with its top-left corner at (`x`, `y`),
    /// clipped to the canvas. Returns the width drawn.
    pub fn text(
        &mut self,
        font: &Font,
        text: &str,
        x: usize,
        y: usize,
        px: usize,
        c: Rgb,
    ) -> usize {
        let all = (0, 0, self.width, self.height);
        self.text_clipped(font, text, x, y, px, c, all)
    }

    /// [`Canvas::text`], with no pixel drawn outside `clip` (`x0, y0, x1, y1`, end
    /// exclusive): a glyph's ink may reach past its line box (accents, descenders, side
    /// bearings), and a box of the layout must never paint over its neighbours.
    #[allow(clippy::too_many_arguments)]
    pub fn text_clipped(
        &mut self,
        font: &Font,
        text: &str,
        x: usize,
        y: usize,
        px: usize,
        c: Rgb,
        (x0, y0, x1, y1): (usize, usize, usize, usize),
    ) -> usize {
        let clip = Rect { x0, y0, x1, y1 };
        let max = x1.min(self.width).saturating_sub(x);
        font.glyphs(text, px, max, |pen, glyph| {
            self.blend_glyph(x + pen, y, glyph, c, clip);
        });
        font.text_width(text, px).min(max)
    }
}

/// `c` in the device layout `format` (the bytes past its pixel size are padding).
fn encode(format: PixelFormat, c: Rgb) -> [u8; 4] {
    let Rgb(r, g, b) = c;
    match format {
        PixelFormat::Rgb565 => {
            let v = (u16::from(r >> 3) << 11) | (u16::from(g >> 2) << 5) | u16::from(b >> 3);
            let [lo, hi] = v.to_le_bytes();
            [lo, hi, 0, 0]
        }
        PixelFormat::Xrgb8888 => [b, g, r, 0xff],
        PixelFormat::Xbgr8888 => [r, g, b, 0xff],
        PixelFormat::Rgb888 => [r, g, b, 0],
    }
}

/// The colour of one pixel's bytes in layout `format`.
fn decode(format: PixelFormat, px: &[u8]) -> Rgb {
    match format {
        PixelFormat::Rgb565 => {
            let v = u16::from_le_bytes([px[0], px[1]]);
            let (r, g, b) = ((v >> 11) as u8, ((v >> 5) & 0x3f) as u8, (v & 0x1f) as u8);
            Rgb(r << 3 | r >> 2, g << 2 | g >> 4, b << 3 | b >> 2)
        }
        PixelFormat::Xrgb8888 => Rgb(px[2], px[1], px[0]),
        PixelFormat::Xbgr8888 | PixelFormat::Rgb888 => Rgb(px[0], px[1], px[2]),
    }
}

/// Blends `c` with coverage `alpha` over the pixels of `buf` from column `x0` on, one row
/// per `(offset of the line, coverage)`.
fn blend_rows<'a, const BPP: usize>(
    buf: &mut [u8],
    x0: usize,
    rows: impl Iterator<Item = (usize, &'a [u8])>,
    c: Rgb,
    decode: impl Fn(&[u8]) -> Rgb,
    encode: impl Fn(Rgb) -> [u8; BPP],
) {
    let ink = encode(c);
    for (line, alpha) in rows {
        let start = line + x0 * BPP;
        let pixels = &mut buf[start..start + alpha.len() * BPP];
        for (px, &a) in pixels.chunks_exact_mut(BPP).zip(alpha) {
            match a {
                0 => {}
                255 => px.copy_from_slice(&ink),
                a => px.copy_from_slice(&encode(mix(c, decode(px), a))),
            }
        }
    }
}

/// `fg` over `bg` with coverage `alpha` (255 = all `fg`).
fn mix(fg: Rgb, bg: Rgb, alpha: u8) -> Rgb {
    let a = u16::from(alpha);
    let m = |f: u8, b: u8| ((u16::from(f) * a + u16::from(b) * (255 - a) + 127) / 255) as u8;
    Rgb(m(fg.0, bg.0), m(fg.1, bg.1), m(fg.2, bg.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb565_and_xrgb8888_encode_as_devices_expect() {
        let mut c = Canvas::new(2, 1, 0, PixelFormat::Rgb565);
        c.fill_rect(0, 0, 1, 1, Rgb(255, 0, 0));
        c.fill_rect(1, 0, 1, 1, Rgb(0, 0, 255));
        assert_eq!(c.bytes(), &[0x00, 0xf8, 0x1f, 0x00]);
        let mut c = Canvas::new(1, 1, 0, PixelFormat::Xrgb8888);
        c.fill_rect(0, 0, 1, 1, Rgb(1, 2, 3));
        assert_eq!(c.bytes(), &[3, 2, 1, 0xff]);
    }

    #[test]
    fn clear_restores_only_what_was_drawn_and_tracks_rows() {
        let mut c = Canvas::new(10, 10, 0, PixelFormat::Xrgb8888);
        c.clear();
        assert_eq!(c.take_changed_rows(), Some(0..10));
        c.fill_rect(2, 3, 4, 2, Rgb(17, 17, 17));
        assert_eq!(c.take_changed_rows(), Some(3..5));
        c.clear();
        assert_eq!(
            c.take_changed_rows(),
            Some(3..5),
            "cleared rows must reach the device"
        );
        c.clear();
        assert_eq!(
            c.take_changed_rows(),
            None,
            "nothing drawn, nothing to clear"
        );
        assert!(c.bytes().iter().all(|&b| b == 0xff));
        c.fill_rect(8, 8, 100, 100, Rgb(17, 17, 17));
        assert_eq!(c.take_changed_rows(), Some(8..10), "clipped");
    }

    /// The colour at (x, y), decoded here independently of the canvas code.
    fn at(c: &Canvas, x: usize, y: usize) -> (i32, i32, i32) {
        let b = &c.bytes()[y * c.stride()..];
        let p = |i: usize| i32::from(b[i]);
        match c.format() {
            PixelFormat::Xrgb8888 => (p(x * 4 + 2), p(x * 4 + 1), p(x * 4)),
            PixelFormat::Xbgr8888 => (p(x * 4), p(x * 4 + 1), p(x * 4 + 2)),
            PixelFormat::Rgb888 => (p(x * 3), p(x * 3 + 1), p(x * 3 + 2)),
            PixelFormat::Rgb565 => {
                let v = p(x * 2) | p(x * 2 + 1) << 8;
                (
                    (v >> 11) * 255 / 31,
                    (v >> 5 & 63) * 255 / 63,
                    (v & 31) * 255 / 31,
                )
            }
        }
    }

    #[test]
    fn text_is_anti_aliased_and_blended_with_the_band_under_it() {
        let font = Font::builtin();
        let (band, ink) = ((230, 120, 0), (20, 20, 20));
        for format in [
            PixelFormat::Xrgb8888,
            PixelFormat::Xbgr8888,
            PixelFormat::Rgb888,
            PixelFormat::Rgb565,
        ] {
            let mut c = Canvas::new(240, 60, 0, format);
            c.clear();
            c.fill_rect(0, 0, 240, 60, Rgb(230, 120, 0));
            let w = c.text(&font, "5,000.08 Pay", 4, 8, 40, Rgb(20, 20, 20));
            assert!(w > 100, "{format:?}: {w}");
            let tol = if format == PixelFormat::Rgb565 { 12 } else { 2 };
            let (mut solid, mut partial) = (0, 0);
            for y in 0..60 {
                for x in 0..240 {
                    let p = at(&c, x, y);
                    // Every pixel lies between the band and the ink: t of the way to the ink.
                    let t = f64::from(band.0 - p.0) / f64::from(band.0 - ink.0);
                    let expect = |b: i32, i: i32| f64::from(b) + t * f64::from(i - b);
                    assert!(
                        (f64::from(p.1) - expect(band.1, ink.1)).abs() <= f64::from(tol)
                            && (f64::from(p.2) - expect(band.2, ink.2)).abs() <= f64::from(tol),
                        "{format:?} ({x},{y}) = {p:?} is not band {band:?} blended with ink {ink:?}"
                    );
                    if t > 0.97 {
                        solid += 1;
                    } else if t > 0.1 {
                        partial += 1;
                    }
                }
            }
            assert!(solid > 100, "{format:?}: {solid} solid ink pixels");
            assert!(partial > 50, "{format:?}: {partial} anti-aliased pixels");
        }
    }

    #[test]
    fn blend_run_mixes_with_what_is_there_and_get_decodes_every_layout() {
        for format in [
            PixelFormat::Xrgb8888,
            PixelFormat::Xbgr8888,
            PixelFormat::Rgb888,
            PixelFormat::Rgb565,
        ] {
            let mut c = Canvas::new(4, 2, 0, format);
            c.clear();
            c.fill_rect(0, 0, 4, 1, Rgb(0, 0, 255));
            c.blend_run(1, 0, 2, Rgb(255, 0, 0), 128);
            let Rgb(r, g, b) = c.get(1, 0).unwrap();
            assert!(
                (120..=136).contains(&r) && g < 8 && (118..=136).contains(&b),
                "{r},{g},{b}"
            );
            assert_eq!(c.get(0, 0), Some(Rgb(0, 0, 255)));
            assert_eq!(c.get(3, 1), Some(BACKGROUND));
            assert_eq!(c.get(4, 0), None);
        }
    }
}
