//! Customer displays: one trait, one file per backend, each behind a Cargo feature.
//!
//! # Layout
//! - [`screen`]: the values the daemon shows ([`Screen`], [`PayCode`], [`CardSummary`]).
//! - [`format`]: money (`¥5,000.00`) and discounts (`8.8折`, `12% off`) from the backend's
//!   exact decimal text.
//! - [`qr`]: the QR matrix of a pay code, encoded once and drawn by every backend.
//! - [`view`]: a screen reduced to heading, rows and QR, with the configured [`Labels`].
//! - [`config`]: `[display]` settings, all with defaults.
//! - [`driver`]: keeps a display on the latest screen with a live countdown (tokio).
//! - `raster` and `font`: an off-screen canvas and anti-aliased text from a CJK font file
//!   (a built-in Latin font when it is missing), shared by the framebuffer and PNG backends.
//! - `layout`: where every box of a screen goes at any size (computed, then painted), the
//!   shop's look (accent, logo) and the panel's physical size.
//! - [`framebuffer`], [`terminal`], [`web`], [`png`]: the backends.
//!
//! # Driving a display
//! The caller passes `now` to [`CustomerDisplay::show`]; a pay code's countdown is computed
//! from it and an expired code is replaced by the "expired" message, never drawn. While a
//! pay code is up the caller re-shows it about once a second; backends redraw only what
//! changed where they can. Fetching and refreshing pay codes is the daemon's business.
//!
//! **Invariant:** no backend talks to the wxcard backend; the kiosk page server is local
//! display output and listens on loopback unless configured otherwise.

pub mod config;
pub mod driver;
pub mod format;
pub mod qr;
pub mod screen;
pub mod view;

#[cfg(any(feature = "framebuffer", feature = "png"))]
pub mod font;
#[cfg(feature = "framebuffer")]
pub mod framebuffer;
#[cfg(any(feature = "framebuffer", feature = "png"))]
pub mod layout;
#[cfg(feature = "png")]
pub mod png;
#[cfg(any(feature = "framebuffer", feature = "png"))]
pub mod raster;
#[cfg(feature = "terminal")]
pub mod terminal;
#[cfg(feature = "web")]
pub mod web;

use std::path::PathBuf;
use std::time::Instant;

pub use config::{BackendKind, Colour, DisplayConfig, PixelFormat};
pub use format::LabelLanguage;
pub use qr::{QrError, QrMatrix};
pub use screen::{CardSummary, MaskedCardNumber, Message, PayCode, Screen};
pub use view::{Labels, Texts, View};

/// A screen the customer looks at.
pub trait CustomerDisplay: Send {
    /// Shows `screen` as it is at `now`.
    fn show(&mut self, screen: &Screen, now: Instant) -> Result<(), DisplayError>;

    /// Short backend name for logs (`"framebuffer"`, `"terminal"`, ...).
    fn name(&self) -> &'static str;
}

impl<D: CustomerDisplay + ?Sized> CustomerDisplay for Box<D> {
    fn show(&mut self, screen: &Screen, now: Instant) -> Result<(), DisplayError> {
        (**self).show(screen, now)
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }
}

/// What generic code needs to know about a display error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing the device failed (unplugged, permissions).
    Io,
    /// The configuration does not describe a usable display.
    Config,
    /// The device uses something this crate does not draw (pixel format, missing feature).
    Unsupported,
}

/// Why a display could not be opened or updated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DisplayError {
    /// A device or file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The device or file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The geometry is missing, zero, or larger than the device or file.
    #[error("{path}: {reason}")]
    Geometry {
        /// The device or file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The device's pixel layout is not one this crate draws.
    #[error("{path}: unsupported pixel layout {layout}")]
    PixelFormat {
        /// The device.
        path: PathBuf,
        /// Description of the layout reported.
        layout: String,
    },
    /// The kiosk page server could not start.
    #[error("kiosk page on {addr}: {reason}")]
    Web {
        /// The configured listen address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// This binary was built without the backend's feature.
    #[error("display backend {0:?} is not built into this binary (cargo feature missing)")]
    NotBuilt(BackendKind),
}

impl DisplayError {
    /// The class of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DisplayError::Io { .. } | DisplayError::Web { .. } => ErrorKind::Io,
            DisplayError::Geometry { .. } => ErrorKind::Config,
            DisplayError::PixelFormat { .. } | DisplayError::NotBuilt(_) => ErrorKind::Unsupported,
        }
    }

    #[allow(dead_code)] // unused when only the web backend is built
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DisplayError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A display that shows nothing; always built (for tills without a customer screen).
#[derive(Debug, Default)]
pub struct NullDisplay;

impl CustomerDisplay for NullDisplay {
    fn show(&mut self, _screen: &Screen, _now: Instant) -> Result<(), DisplayError> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "null"
    }
}

/// Several displays driven together.
#[derive(Default)]
pub struct Displays {
    list: Vec<Box<dyn CustomerDisplay>>,
}

impl Displays {
    /// Adds a display.
    pub fn push(&mut self, display: Box<dyn CustomerDisplay>) {
        self.list.push(display);
    }

    /// How many displays are driven.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl CustomerDisplay for Displays {
    /// Shows on every display, even when one fails; returns the first error.
    fn show(&mut self, screen: &Screen, now: Instant) -> Result<(), DisplayError> {
        let mut first = None;
        for d in &mut self.list {
            if let Err(e) = d.show(screen, now) {
                log::warn!("customer display {}: {e}", d.name());
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn name(&self) -> &'static str {
        "displays"
    }
}

/// The font the framebuffer and PNG backends draw with, as `status` reports it: the font
/// file, or `built-in Latin fallback (font file ...: reason)`; `None` until one of them opens
/// (or when neither is built).
pub fn font_in_use() -> Option<String> {
    #[cfg(any(feature = "framebuffer", feature = "png"))]
    return font::current();
    #[cfg(not(any(feature = "framebuffer", feature = "png")))]
    return None;
}

/// Opens every backend `config` lists. The web backend must be opened inside a tokio
/// runtime (it spawns its server there).
pub fn open(config: &DisplayConfig) -> Result<Displays, DisplayError> {
    let mut out = Displays::default();
    let texts = config.texts();
    for kind in &config.backends {
        out.push(open_one(*kind, config, &texts)?);
    }
    Ok(out)
}

/// Opens one backend of `config` (the daemon opens, retries and replaces each on its own).
/// The web backend must be opened inside a tokio runtime.
pub fn open_one(
    kind: BackendKind,
    config: &DisplayConfig,
    texts: &Texts,
) -> Result<Box<dyn CustomerDisplay>, DisplayError> {
    let _ = (config, texts); // unused when no backend feature is on
    match kind {
        #[cfg(feature = "framebuffer")]
        BackendKind::Framebuffer => {
            let mut fb = framebuffer::FramebufferDisplay::open_with_font(
                &config.framebuffer,
                texts.clone(),
                font::Font::shared(&config.font, config.font_face),
            )?;
            fb.set_look(layout::Look::from_config(config));
            Ok(Box::new(fb))
        }
        #[cfg(feature = "terminal")]
        BackendKind::Terminal => Ok(Box::new(terminal::TerminalDisplay::open(
            &config.terminal,
            texts.clone(),
        )?)),
        #[cfg(feature = "web")]
        BackendKind::Web => Ok(Box::new(
            web::WebDisplay::start(&config.web, texts.clone())?
                .with_accent(config.accent)
                .with_logo(config.logo.as_deref()),
        )),
        #[cfg(feature = "png")]
        BackendKind::Png => {
            let mut png = png::PngDisplay::with_font(
                &config.png,
                texts.clone(),
                font::Font::shared(&config.font, config.font_face),
            )?;
            png.set_look(layout::Look::from_config(config));
            Ok(Box::new(png))
        }
        #[allow(unreachable_patterns)]
        other => Err(DisplayError::NotBuilt(other)),
    }
}
