//! PNG snapshot backend: the current screen as a picture file, for tests and remote support.
//!
//! The screen is drawn exactly as the framebuffer draws it (same canvas and layout, RGB
//! bytes) and written to a temporary file in the target's folder that is then renamed over
//! the target, so whoever fetches the snapshot never reads half a file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::config::{PixelFormat, PngConfig};
use super::font::{DEFAULT_FONT, Font};
use super::layout::Look;
use super::raster::{Canvas, Frame};
use super::view::{Texts, View};
use super::{CustomerDisplay, DisplayError, Screen};

/// Writes every shown screen to a PNG file.
pub struct PngDisplay {
    path: PathBuf,
    frame: Frame,
    texts: Texts,
}

impl PngDisplay {
    /// A snapshot writer for `config` drawing text with the default font file (or the
    /// built-in fallback); nothing is written until the first screen.
    pub fn new(config: &PngConfig, texts: Texts) -> Result<Self, DisplayError> {
        Self::with_font(config, texts, Font::shared(DEFAULT_FONT.as_ref(), 0))
    }

    /// A snapshot writer for `config` drawing text with `font`.
    pub fn with_font(
        config: &PngConfig,
        texts: Texts,
        font: Arc<Font>,
    ) -> Result<Self, DisplayError> {
        let (w, h) = (config.width, config.height);
        if w == 0 || h == 0 || w > 8192 || h > 8192 {
            return Err(DisplayError::Geometry {
                path: config.path.clone(),
                reason: format!("{w}x{h} is not a snapshot size"),
            });
        }
        Ok(Self {
            path: config.path.clone(),
            frame: Frame::new(Canvas::new(w, h, w * 3, PixelFormat::Rgb888), font),
            texts,
        })
    }

    /// Draws in `look` from the next frame on.
    pub fn set_look(&mut self, look: Look) {
        self.frame.set_look(look);
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl CustomerDisplay for PngDisplay {
    fn show(&mut self, screen: &Screen, now: Instant) -> Result<(), DisplayError> {
        self.frame.draw(&View::of(screen, &self.texts, now));
        if self.frame.canvas_mut().take_changed_rows().is_none() {
            return Ok(());
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let written = write_png(&tmp, self.frame.canvas())
            .map_err(|e| DisplayError::io(&tmp, e))
            .and_then(|()| {
                std::fs::rename(&tmp, &self.path).map_err(|e| DisplayError::io(&self.path, e))
            });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
            self.frame.invalidate();
        }
        written
    }

    fn name(&self) -> &'static str {
        "png"
    }
}

fn write_png(path: &Path, canvas: &Canvas) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    let mut enc = png::Encoder::new(&mut out, canvas.width() as u32, canvas.height() as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().map_err(std::io::Error::other)?;
    writer
        .write_image_data(canvas.bytes())
        .map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)?;
    out.flush()
}
