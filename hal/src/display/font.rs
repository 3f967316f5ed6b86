//! The bitmap font: GNU Unifont through the `unifont` crate.
//!
//! Unifont covers the whole Basic Multilingual Plane, CJK included, in 8x16 (half width) and
//! 16x16 (full width) glyphs, so Chinese labels need no font file on the till. The crate is
//! MIT; the glyph data is GNU Unifont, dual-licensed GPL-2.0-or-later with the font embedding
//! exception and SIL OFL 1.1. A bitmap font also scales by whole pixels without blurring.

use unifont::Glyph;

/// A typeface the raster backends draw with, at any pixel size.
///
/// The one interface the layout uses: how wide a text is and how tall its line is at a
/// pixel size, and the coverage of its pixels. Today it is the built-in Unifont bitmap,
/// scaled by whole pixels (sizes round down to a multiple of 16, at least 16).
#[derive(Debug)]
pub struct Font {
    name: String,
}

impl Font {
    /// The font compiled into the binary.
    pub fn builtin() -> std::sync::Arc<Font> {
        std::sync::Arc::new(Font {
            name: "built-in GNU Unifont".into(),
        })
    }

    /// What `status` reports: the font's name or file.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn scale(px: usize) -> usize {
        (px / HEIGHT).max(1)
    }

    /// Height in pixels of one line of text set at `px` pixels.
    pub fn line_height(&self, px: usize) -> usize {
        HEIGHT * Self::scale(px)
    }

    /// Advance width in pixels of `text` set at `px` pixels.
    pub fn text_width(&self, text: &str, px: usize) -> usize {
        text_width(text) * Self::scale(px)
    }

    /// Calls `plot(x, y, len, alpha)` for every horizontal run of `len` pixels of `text` set
    /// at `px` pixels with its line's top-left corner at (0, 0); `alpha` is the coverage
    /// (255 = solid ink). Runs beyond `max_width` are not reported.
    pub fn render(
        &self,
        text: &str,
        px: usize,
        max_width: usize,
        mut plot: impl FnMut(usize, usize, usize, u8),
    ) {
        let scale = Self::scale(px);
        let mut x = 0;
        for ch in text.chars() {
            let Some(g) = glyph(ch) else { continue };
            if x >= max_width {
                break;
            }
            let x0 = x;
            runs(g, |gx, gy, len| {
                for dy in 0..scale {
                    plot(x0 + gx * scale, gy * scale + dy, len * scale, 255);
                }
            });
            x += g.get_width() * scale;
        }
    }
}

/// Glyph height in font pixels.
pub const HEIGHT: usize = 16;

/// The glyph for `c`; characters Unifont lacks are drawn as U+FFFD. Control characters have
/// no glyph (`None`) and take no room, so stray escapes in a string draw nothing.
pub fn glyph(c: char) -> Option<&'static Glyph> {
    if c.is_control() {
        return None;
    }
    unifont::get_glyph(c).or_else(|| unifont::get_glyph('\u{FFFD}'))
}

/// Width of `text` in font pixels.
pub fn text_width(text: &str) -> usize {
    text.chars().filter_map(glyph).map(Glyph::get_width).sum()
}

/// Calls `run(x, y, len)` for every horizontal run of set pixels of `glyph`, in font pixels.
pub fn runs(glyph: &Glyph, mut run: impl FnMut(usize, usize, usize)) {
    let width = glyph.get_width();
    for y in 0..HEIGHT {
        let mut x = 0;
        while x < width {
            if !glyph.get_pixel(x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while x < width && glyph.get_pixel(x, y) {
                x += 1;
            }
            run(start, y, x - start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_cjk_full_width_and_latin_half_width() {
        assert!(glyph('余').unwrap().is_fullwidth());
        assert!(!glyph('A').unwrap().is_fullwidth());
        assert_eq!(text_width("余额 A"), 16 + 16 + 8 + 8);
        assert_eq!(text_width("\u{1b}[2J"), text_width("[2J"));
        let mut set = 0;
        runs(glyph('付').unwrap(), |_, _, len| set += len);
        assert!(set > 20, "a CJK glyph has ink");
    }
}
