//! Text for the raster backends: an anti-aliased outline font read from a file (by default
//! the CJK TrueType font of Debian's `fonts-wqy-microhei`), a small Latin font built in for
//! when that file is missing or lacks a character, and a bounded cache of rasterised glyphs.
//!
//! Why this shape:
//! - The font file is memory-mapped and parsed lazily by `ab_glyph` (ttf-parser): loading
//!   costs ~20 µs and only the pages of the glyphs drawn are read, so a 5 MB CJK font adds
//!   ~1 MB to RSS. `fontdue` was measured too: it parses the whole font at load, 330 ms and
//!   +180 MB RSS with the same file (BENCHMARKS.md, Display), which a 12 MB daemon cannot pay.
//! - The built-in font is DejaVu Sans cut down to Latin-1 and punctuation (~27 KB,
//!   `fonts/DejaVuSans-Latin.ttf`, Bitstream Vera licence in `fonts/LICENSE-DejaVu`), so a
//!   box without the font file still shows the balance and the pay-code digits. A character
//!   neither font has draws as a visible box, never as nothing.
//! - Glyphs are rasterised once per (character, size) and kept in a cache capped in bytes and
//!   in entries (least recently used half dropped when full), so a redraw of the same screen
//!   only blends, and hostile text (every character distinct) costs time, never memory.
//! - Sizes are line heights: text set at `px` pixels takes a line of `px` pixels (the font's
//!   ascent plus descent), whatever the font; glyphs sit at whole-pixel pen positions with
//!   advances rounded, so [`Font::text_width`] is exactly what [`Font::glyphs`] draws.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ab_glyph::{Font as _, FontRef, GlyphId, PxScale, ScaleFont as _, point};

pub use super::config::DEFAULT_FONT;

/// Largest size drawn; larger requests are drawn at this size (bounds one glyph's bytes).
pub const MAX_PX: usize = 512;

/// Bytes of coverage the glyph cache holds at most (a 1080x1920 screen's text is ~150 KB).
pub const CACHE_BYTES: usize = 1 << 20;

/// Glyphs the cache holds at most (bounds the map itself for many small glyphs).
pub const CACHE_GLYPHS: usize = 4096;

static LATIN: &[u8] = include_bytes!("fonts/DejaVuSans-Latin.ttf");

/// Why a font file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FontError {
    /// The file could not be opened or mapped.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a TrueType/OpenType font (or collection) with that face.
    #[error("{path}: not a TrueType/OpenType font, or it has no face {index}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The face index asked for.
        index: u32,
    },
}

/// A font file mapped into memory and the face parsed from it.
struct Mapped {
    /// Borrows `map`: declared first so it is dropped first.
    face: FontRef<'static>,
    map: memmap2::Mmap,
}

impl Mapped {
    fn open(path: &Path, index: u32) -> Result<Mapped, FontError> {
        let io = |source| FontError::Io {
            path: path.into(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only and private to this process. A font file is
        // replaced by the package manager with a rename, which leaves this mapping on the old
        // file; only truncating it in place under a running daemon could fault.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        // SAFETY: the slice points into the mapping owned by the same `Mapped`, which is
        // never unmapped while `face` lives (`face` is dropped first; moving `Mapped` does
        // not move the mapped pages).
        let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(map.as_ptr(), map.len()) };
        let face =
            FontRef::try_from_slice_and_index(bytes, index).map_err(|_| FontError::Invalid {
                path: path.into(),
                index,
            })?;
        Ok(Mapped { face, map })
    }

    /// Gives back the pages read so far: they stay in the page cache and fault back in when
    /// read again. Each page fault maps up to 64 KB around it, so a hundred glyphs read from
    /// a CJK font would otherwise keep ~2 MB of it in the daemon's RSS for good, when the
    /// glyphs drawn from them are in the cache.
    fn release_pages(&self) {
        // SAFETY: a read-only private file mapping never written: MADV_DONTNEED only unmaps
        // its pages, and the next read faults in the same bytes of the file.
        let _ = unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        };
    }
}

/// One rasterised glyph: coverage (255 = solid ink), placed relative to the pen position on
/// the line's top edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Pixels from the pen position to the left edge (may be negative).
    pub left: isize,
    /// Pixels from the line's top to the top edge (may be negative for tall accents).
    pub top: isize,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width` x `height` coverage values, row by row.
    pub alpha: Vec<u8>,
}

/// The rasterised glyphs, by (character, size).
#[derive(Default)]
struct GlyphCache {
    map: HashMap<(char, u16), (Coverage, u64)>,
    bytes: usize,
    clock: u64,
}

impl GlyphCache {
    fn get(&mut self, key: (char, u16), make: impl FnOnce() -> Coverage) -> &Coverage {
        self.clock += 1;
        if !self.map.contains_key(&key) {
            let glyph = make();
            while !self.map.is_empty()
                && (self.bytes + glyph.alpha.len() > CACHE_BYTES || self.map.len() >= CACHE_GLYPHS)
            {
                self.evict_older_half();
            }
            self.bytes += glyph.alpha.len();
            self.map.insert(key, (glyph, 0));
        }
        let entry = self.map.get_mut(&key).expect("inserted above");
        entry.1 = self.clock;
        &entry.0
    }

    /// Drops the least recently used half (at least one glyph).
    fn evict_older_half(&mut self) {
        let mut stamps: Vec<u64> = self.map.values().map(|e| e.1).collect();
        let mid = stamps.len() / 2;
        let (_, &mut cut, _) = stamps.select_nth_unstable(mid);
        self.map.retain(|_, e| e.1 > cut);
        self.bytes = self.map.values().map(|e| e.0.alpha.len()).sum();
    }
}

/// Where a character's glyph comes from.
enum Source<'a> {
    Face(&'a FontRef<'static>, GlyphId),
    /// Neither font has it: a box, full width for wide (CJK) characters.
    Missing {
        wide: bool,
    },
}

/// A typeface the raster backends draw with, at any pixel size: the font file if it loaded,
/// else the built-in Latin font; per character, the built-in font stands in for what the
/// file lacks, and a box for what neither has.
pub struct Font {
    name: String,
    file: Option<Mapped>,
    latin: FontRef<'static>,
    cache: Mutex<GlyphCache>,
}

impl std::fmt::Debug for Font {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Font").field("name", &self.name).finish()
    }
}

impl Font {
    fn with(name: String, file: Option<Mapped>) -> Font {
        Font {
            name,
            file,
            latin: FontRef::try_from_slice(LATIN).expect("the built-in font parses"),
            cache: Mutex::default(),
        }
    }

    /// The built-in Latin font alone (digits, Latin-1, punctuation; boxes for the rest).
    pub fn builtin() -> Arc<Font> {
        Arc::new(Font::with("built-in Latin fallback".into(), None))
    }

    /// Face `index` (0 unless the file is a collection) of the font file at `path`.
    pub fn load(path: &Path, index: u32) -> Result<Font, FontError> {
        let mapped = Mapped::open(path, index)?;
        let name = if index == 0 {
            path.display().to_string()
        } else {
            format!("{} (face {index})", path.display())
        };
        Ok(Font::with(name, Some(mapped)))
    }

    /// [`Font::load`], or the built-in Latin font (with a warning in the log and the reason
    /// in [`Font::name`]) when the file is missing, unreadable or not a font.
    pub fn open(path: &Path, index: u32) -> Font {
        match Font::load(path, index) {
            Ok(font) => {
                log::info!("customer display font: {}", font.name);
                font
            }
            Err(e) => {
                log::warn!(
                    "customer display font: {e}; drawing with the built-in Latin font \
                     (digits and Latin only, Chinese shows as boxes)"
                );
                let reason = match &e {
                    FontError::Io { source, .. } => source.to_string(),
                    FontError::Invalid { index, .. } => {
                        format!("not a TrueType/OpenType font with face {index}")
                    }
                };
                Font::with(
                    format!(
                        "built-in Latin fallback (font file {}: {reason})",
                        path.display()
                    ),
                    None,
                )
            }
        }
    }

    /// The process's font for `path` and `index`: loaded (or fallen back) once and shared
    /// by every backend that opens with the same file, so its warning is logged once and its
    /// glyph cache is shared. The file is loaded again only when it changed (appeared,
    /// vanished, or a new size or time), e.g. when a backend reopens after the package was
    /// installed.
    pub fn shared(path: &Path, index: u32) -> Arc<Font> {
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.len(), m.modified().ok()));
        let mut shared = shared_slot();
        let found = shared
            .iter()
            .position(|(p, i, _, _)| p == path && *i == index);
        let font = match found.map(|at| shared.remove(at)) {
            Some((_, _, s, font)) if s == stamp => font,
            _ => Arc::new(Font::open(path, index)),
        };
        // The most recent last; a few files at most (one per config the daemon ran with).
        shared.push((path.to_path_buf(), index, stamp, font.clone()));
        if shared.len() > SHARED_FONTS {
            shared.remove(0);
        }
        font
    }

    /// What `status` reports: the font file, or the built-in fallback and why.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a font file is in use (else only the built-in Latin font).
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    fn primary(&self) -> &FontRef<'static> {
        self.file.as_ref().map_or(&self.latin, |m| &m.face)
    }

    /// Where `c` is drawn from; `None` for characters that take no room (controls, joiners,
    /// variation selectors), so stray escapes draw nothing.
    fn source(&self, c: char) -> Option<Source<'_>> {
        if ignorable(c) {
            return None;
        }
        for face in [self.file.as_ref().map(|m| &m.face), Some(&self.latin)]
            .into_iter()
            .flatten()
        {
            let id = face.glyph_id(c);
            if id.0 != 0 {
                return Some(Source::Face(face, id));
            }
        }
        Some(Source::Missing {
            wide: u32::from(c) >= 0x1100,
        })
    }

    fn clamp(px: usize) -> usize {
        px.clamp(1, MAX_PX)
    }

    fn advance(source: &Source<'_>, px: usize) -> usize {
        match source {
            Source::Face(face, id) => {
                let adv = face.as_scaled(PxScale::from(px as f32)).h_advance(*id);
                adv.max(0.0).round() as usize
            }
            Source::Missing { wide: true } => px * 7 / 8,
            Source::Missing { wide: false } => px / 2,
        }
    }

    /// Height in pixels of one line of text set at `px` pixels.
    pub fn line_height(&self, px: usize) -> usize {
        Self::clamp(px)
    }

    /// Advance width in pixels of `text` set at `px` pixels.
    pub fn text_width(&self, text: &str, px: usize) -> usize {
        let px = Self::clamp(px);
        text.chars()
            .filter_map(|c| self.source(c))
            .map(|s| Self::advance(&s, px))
            .sum()
    }

    /// Calls `draw(pen_x, glyph)` for every glyph of `text` set at `px` pixels, the line's
    /// top-left corner at (0, 0), until the pen passes `max_width`. `draw` must not call back
    /// into this font's drawing (the glyph cache is locked meanwhile).
    pub fn glyphs(
        &self,
        text: &str,
        px: usize,
        max_width: usize,
        mut draw: impl FnMut(usize, &Coverage),
    ) {
        let px = Self::clamp(px);
        let baseline = self
            .primary()
            .as_scaled(PxScale::from(px as f32))
            .ascent()
            .round();
        let mut cache = self.cache();
        let mut read_file = false;
        let mut pen = 0;
        for c in text.chars() {
            if pen >= max_width {
                break;
            }
            let Some(source) = self.source(c) else {
                continue;
            };
            let advance = Self::advance(&source, px);
            let key = match source {
                Source::Face(..) => c,
                // Every missing character of a kind shares one box.
                Source::Missing { wide } => {
                    if wide {
                        '\u{10FFFF}'
                    } else {
                        '\u{10FFFE}'
                    }
                }
            };
            let glyph = cache.get((key, px as u16), || match source {
                Source::Face(face, id) => {
                    read_file = true;
                    rasterise(face, id, px, baseline)
                }
                Source::Missing { .. } => placeholder(advance, px, baseline),
            });
            draw(pen, glyph);
            pen += advance;
        }
        if read_file {
            if let Some(file) = &self.file {
                file.release_pages();
            }
        }
    }

    /// Calls `plot(x, y, len, alpha)` for every horizontal run of `len` pixels of equal
    /// coverage `alpha` (255 = solid ink) of `text` set at `px` pixels, the line's top-left
    /// corner at (0, 0). Glyphs starting beyond `max_width` are not reported; pixels left of
    /// 0 or above the line are cut off.
    pub fn render(
        &self,
        text: &str,
        px: usize,
        max_width: usize,
        mut plot: impl FnMut(usize, usize, usize, u8),
    ) {
        self.glyphs(text, px, max_width, |pen, g| {
            for (gy, row) in g.alpha.chunks(g.width.max(1)).enumerate() {
                let y = g.top + gy as isize;
                if y < 0 {
                    continue;
                }
                let mut gx = 0;
                while gx < row.len() {
                    let a = row[gx];
                    let start = gx;
                    while gx < row.len() && row[gx] == a {
                        gx += 1;
                    }
                    let x = pen as isize + g.left + start as isize;
                    let skip = usize::try_from(-x).unwrap_or(0);
                    if a != 0 && gx - start > skip {
                        plot(
                            (x + skip as isize) as usize,
                            y as usize,
                            gx - start - skip,
                            a,
                        );
                    }
                }
            }
        });
    }

    fn cache(&self) -> MutexGuard<'_, GlyphCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many glyphs and coverage bytes the cache holds (for tests and `status`).
    pub fn cache_size(&self) -> (usize, usize) {
        let cache = self.cache();
        (cache.map.len(), cache.bytes)
    }
}

/// Font files kept open by [`Font::shared`] at most.
const SHARED_FONTS: usize = 4;

type Stamp = Option<(u64, Option<std::time::SystemTime>)>;

/// A font [`Font::shared`] keeps open: file, face, the file's size and time when loaded.
type Shared = (PathBuf, u32, Stamp, Arc<Font>);

fn shared_slot() -> MutexGuard<'static, Vec<Shared>> {
    static SHARED: Mutex<Vec<Shared>> = Mutex::new(Vec::new());
    SHARED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The name of the font the raster backends last opened with ([`Font::shared`]), for
/// `status`; `None` when no framebuffer or PNG display has opened.
pub fn current() -> Option<String> {
    shared_slot().last().map(|(_, _, _, f)| f.name().to_owned())
}

/// Characters that take no room: controls, zero-width spaces and joiners, bidi marks,
/// variation selectors, the byte-order mark.
fn ignorable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}')
}

fn rasterise(face: &FontRef<'static>, id: GlyphId, px: usize, baseline: f32) -> Coverage {
    let glyph = id.with_scale_and_position(PxScale::from(px as f32), point(0.0, baseline));
    let Some(outline) = face.outline_glyph(glyph) else {
        return Coverage::default(); // a space, or an empty or broken outline
    };
    let b = outline.px_bounds();
    let (width, height) = (b.width() as usize, b.height() as usize);
    let mut alpha = vec![0u8; width * height];
    outline.draw(|x, y, c| {
        if let Some(a) = alpha.get_mut(y as usize * width + x as usize) {
            *a = (c.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    });
    Coverage {
        left: b.min.x as isize,
        top: b.min.y as isize,
        width,
        height,
        alpha,
    }
}

/// A hollow box standing on the baseline, for characters no font has.
fn placeholder(advance: usize, px: usize, baseline: f32) -> Coverage {
    let margin = (advance / 8).max(1);
    let width = advance.saturating_sub(2 * margin).max(3);
    let height = (px * 5 / 8).max(3);
    let stroke = (px / 16).clamp(1, width / 3);
    let mut alpha = vec![0u8; width * height];
    for y in 0..height {
        for x in 0..width {
            if x < stroke || y < stroke || x >= width - stroke || y >= height - stroke {
                alpha[y * width + x] = 255;
            }
        }
    }
    Coverage {
        left: margin as isize,
        top: baseline as isize - height as isize,
        width,
        height,
        alpha,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ink(font: &Font, text: &str, px: usize) -> Vec<(usize, usize, usize, u8)> {
        let mut runs = Vec::new();
        font.render(text, px, usize::MAX, |x, y, len, a| {
            runs.push((x, y, len, a))
        });
        runs
    }

    #[test]
    fn builtin_draws_latin_and_digits_anti_aliased_and_boxes_for_cjk() {
        let font = Font::builtin();
        let runs = ink(&font, "¥5,000.00", 32);
        assert!(runs.iter().any(|r| r.3 == 255), "solid ink");
        assert!(
            runs.iter().any(|r| r.3 > 0 && r.3 < 255),
            "anti-aliased edges"
        );
        assert!(runs.iter().all(|r| r.1 < 40), "within about a line");
        // A CJK character is a visible box, as wide as a full-width character.
        let boxed = ink(&font, "余", 32);
        assert!(
            !boxed.is_empty(),
            "a missing character is not drawn as nothing"
        );
        assert_eq!(font.text_width("余", 32), 28);
        // Controls take no room and draw nothing.
        assert_eq!(font.text_width("\u{1b}[2J", 32), font.text_width("[2J", 32));
        assert!(ink(&font, "\u{1b}\u{200b}", 32).is_empty());
    }

    #[test]
    fn width_is_the_sum_of_what_is_drawn_and_clips_at_max_width() {
        let font = Font::builtin();
        let mut pens = Vec::new();
        font.glyphs("123456", 40, usize::MAX, |pen, _| pens.push(pen));
        let w = font.text_width("123456", 40);
        assert_eq!(pens.len(), 6);
        assert_eq!(w, pens[5] + font.text_width("6", 40));
        let mut n = 0;
        font.glyphs("123456", 40, pens[2], |_, _| n += 1);
        assert_eq!(n, 2, "glyphs whose pen is past max_width are not drawn");
        assert_eq!(font.line_height(40), 40);
        assert_eq!(font.line_height(100_000), MAX_PX);
    }

    #[test]
    fn cache_stays_bounded_under_hostile_text() {
        let font = Font::builtin();
        // Every printable Latin-1 character at many sizes: far more than the caps hold.
        let text: String = (0x21u8..=0xFF).map(char::from).collect();
        let sizes = (6..26).chain((100..=400).step_by(60));
        for px in sizes {
            font.glyphs(&text, px, usize::MAX, |_, _| {});
            let (glyphs, bytes) = font.cache_size();
            assert!(glyphs <= CACHE_GLYPHS, "{glyphs} glyphs at {px}px");
            assert!(bytes <= CACHE_BYTES, "{bytes} bytes at {px}px");
        }
        // Many distinct missing characters share one box.
        let cjk: String = (0x4E00u32..0x5E00).filter_map(char::from_u32).collect();
        let before = font.cache_size().0;
        font.glyphs(&cjk, 20, usize::MAX, |_, _| {});
        assert!(font.cache_size().0 <= before + 1);
    }

    #[test]
    fn cache_keeps_recently_used_glyphs() {
        let mut cache = GlyphCache::default();
        let big = || Coverage {
            width: 100,
            height: 100,
            alpha: vec![1; 10_000],
            ..Coverage::default()
        };
        cache.get(('a', 10), big);
        for i in 0..(CACHE_BYTES / 10_000 * 3) {
            cache.get(('a', 10), || unreachable!("kept while in use"));
            cache.get((char::from_u32(0x4E00 + i as u32).unwrap(), 10), big);
            assert!(cache.bytes <= CACHE_BYTES);
        }
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fonts")
            .join(name)
    }

    /// The Debian font file. Under CI (`CI` set, as `.ci/run` runs, which installs
    /// `fonts-wqy-microhei`) a missing file fails the test; elsewhere the test is skipped
    /// with a loud line saying what to install.
    fn debian_font() -> Option<&'static Path> {
        let path = Path::new(DEFAULT_FONT);
        if path.exists() {
            return Some(path);
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "{DEFAULT_FONT} is required under CI: apt-get install fonts-wqy-microhei"
        );
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: no /usr/share/fonts/truetype/wqy/wqy-microhei.ttc \
              (apt-get install fonts-wqy-microhei); CI runs this test\n",
        );
        None
    }

    #[test]
    fn loads_the_debian_cjk_font_and_its_collection_faces() {
        let Some(file) = debian_font() else { return };
        let font = Font::load(file, 0).unwrap();
        assert!(font.has_file());
        assert_eq!(font.name(), DEFAULT_FONT);
        // CJK from the file: real glyphs, anti-aliased, not the placeholder box.
        let runs = ink(&font, "余额", 32);
        assert!(runs.iter().any(|r| r.3 > 0 && r.3 < 255), "anti-aliased");
        assert!(runs.len() > 60, "strokes, not a box: {} runs", runs.len());
        assert_ne!(runs, ink(&Font::builtin(), "余额", 32));
        // The .ttc holds two faces (Micro Hei, Micro Hei Mono); there is no third.
        let mono = Font::load(file, 1).unwrap();
        assert_eq!(mono.name(), format!("{DEFAULT_FONT} (face 1)"));
        assert_ne!(mono.text_width("iiii", 32), font.text_width("iiii", 32));
        let err = Font::load(file, 2).unwrap_err();
        assert!(matches!(err, FontError::Invalid { index: 2, .. }), "{err}");
    }

    #[test]
    fn missing_unreadable_or_corrupt_files_fall_back_to_the_builtin_latin_font() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.ttc");
        let font = Font::open(&missing, 0);
        assert!(!font.has_file());
        assert!(
            font.name().starts_with(&format!(
                "built-in Latin fallback (font file {}: ",
                missing.display()
            )) && font.name().contains("No such file"),
            "{}",
            font.name()
        );
        assert!(!ink(&font, "5,000.00", 24).is_empty(), "digits still drawn");

        let garbage = dir.path().join("garbage.ttf");
        std::fs::write(&garbage, b"this is not a font at all, just text").unwrap();
        // The first 1 KB of a real font: its table directory points past the end.
        let truncated = dir.path().join("truncated.ttf");
        let head = &std::fs::read(fixture("DejaVuSans-digits.ttf")).unwrap()[..1024];
        std::fs::write(&truncated, head).unwrap();
        let empty = dir.path().join("empty.ttf");
        std::fs::write(&empty, b"").unwrap();
        for bad in [&garbage, &truncated, &empty, &dir.path().to_path_buf()] {
            let err = Font::load(bad, 0).err();
            assert!(err.is_some(), "{} loaded", bad.display());
            let font = Font::open(bad, 0);
            assert!(!font.has_file());
            assert!(font.name().contains("built-in Latin fallback"));
            assert_eq!(
                font.text_width("12", 24),
                Font::builtin().text_width("12", 24)
            );
        }
    }

    #[test]
    fn characters_the_file_lacks_come_from_the_builtin_font_or_a_box() {
        // A font file with digits only: letters come from the built-in font, CJK is a box.
        let digits = Font::load(&fixture("DejaVuSans-digits.ttf"), 0).unwrap();
        let builtin = Font::builtin();
        assert_eq!(ink(&digits, "A", 30), ink(&builtin, "A", 30));
        assert!(!ink(&digits, "A", 30).is_empty());
        assert!(!ink(&digits, "余", 30).is_empty(), "a box, not nothing");
        assert_eq!(ink(&digits, "余", 30), ink(&builtin, "余", 30));
        assert_eq!(digits.text_width("A余", 30), builtin.text_width("A余", 30));
        // With the CJK file, Latin and digits come from the file itself.
        let Some(file) = debian_font() else { return };
        let cjk = Font::load(file, 0).unwrap();
        assert_ne!(ink(&cjk, "A", 30), ink(&builtin, "A", 30));
    }

    #[test]
    fn shared_fonts_load_once_per_file_and_report_current() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("later.ttf");
        let a = Font::shared(&missing, 0);
        let b = Font::shared(&missing, 0);
        assert!(Arc::ptr_eq(&a, &b), "loaded once");
        assert!(!a.has_file());
        assert!(current().is_some());
        // Installed later: the next open picks the file up.
        std::fs::copy(fixture("DejaVuSans-digits.ttf"), &missing).unwrap();
        let c = Font::shared(&missing, 0);
        assert!(c.has_file());
        assert!(Arc::ptr_eq(&c, &Font::shared(&missing, 0)));
    }
}
