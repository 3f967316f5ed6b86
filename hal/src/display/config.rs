//! Configuration of the customer display, as it appears under `[display]` in the daemon's
//! TOML file.
//!
//! Every backend's settings are here and always compiled, so one config file parses the same
//! whatever features a binary was built with; choosing a backend that was not built is an
//! error at [`open`](super::open), not a parse error. Every field has a default (see
//! `docs/display.md`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::view::{Labels, Texts};

/// Debian's `fonts-wqy-microhei` (the .deb depends on it): the default `font`.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc";

/// Which backends to drive. More than one may be listed (e.g. framebuffer and png).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// `/dev/fbN` or a plain file of the same layout.
    Framebuffer,
    /// ANSI text to a tty or stdout.
    Terminal,
    /// A local kiosk page with Server-Sent Events.
    Web,
    /// A PNG file rewritten on every change.
    Png,
}

/// How pixels are laid out in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// 16 bits, little endian, red in the top five bits.
    Rgb565,
    /// 32 bits, little endian, bytes B, G, R, X in memory.
    Xrgb8888,
    /// 32 bits, little endian, bytes R, G, B, X in memory.
    Xbgr8888,
    /// 24 bits, bytes R, G, B (the PNG snapshot's layout).
    Rgb888,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb565 => 2,
            PixelFormat::Rgb888 => 3,
            PixelFormat::Xrgb8888 | PixelFormat::Xbgr8888 => 4,
        }
    }
}

/// `[display]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DisplayConfig {
    /// Backends to drive; default none (the daemon then shows nothing).
    pub backends: Vec<BackendKind>,
    /// Shop name on the idle screen; default `"wxcard"`.
    pub shop_name: String,
    /// Accent colour of the header band on the idle and card screens, `"#RRGGBB"`; default
    /// `"#00695C"` (dark teal). Text on it is white or black, whichever contrasts more.
    pub accent: Colour,
    /// A PNG shown in the header band (scaled to fit once, at start); default none. A file
    /// that cannot be read is a warning, and the band shows without it.
    pub logo: Option<PathBuf>,
    /// Pixels per inch of the panel, to draw the pay code at least 35 mm wide; default none
    /// (a framebuffer's reported size in mm is used, else 160 dpi is assumed).
    pub dpi: Option<Positive>,
    /// Or the panel's diagonal in inches (dpi wins when both are set); default none.
    pub diagonal_in: Option<Positive>,
    /// `[display.labels]`: every text the customer reads.
    pub labels: Labels,
    /// Font file (.ttf, .otf or .ttc) the framebuffer and PNG backends draw text with;
    /// default Debian's `fonts-wqy-microhei` ([`DEFAULT_FONT`](super::font::DEFAULT_FONT)).
    /// A missing or broken file falls back to a built-in Latin font (digits and Latin only).
    pub font: PathBuf,
    /// Face index in a font collection (.ttc); default 0.
    pub font_face: u32,
    /// `[display.framebuffer]`.
    pub framebuffer: FramebufferConfig,
    /// `[display.terminal]`.
    pub terminal: TerminalConfig,
    /// `[display.web]`.
    pub web: WebConfig,
    /// `[display.png]`.
    pub png: PngConfig,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        let texts = Texts::default();
        Self {
            backends: Vec::new(),
            shop_name: texts.shop_name,
            accent: Colour::DEFAULT_ACCENT,
            logo: None,
            dpi: None,
            diagonal_in: None,
            labels: texts.labels,
            font: DEFAULT_FONT.into(),
            font_face: 0,
            framebuffer: FramebufferConfig::default(),
            terminal: TerminalConfig::default(),
            web: WebConfig::default(),
            png: PngConfig::default(),
        }
    }
}

impl DisplayConfig {
    /// The shop name and labels, as the backends take them.
    pub fn texts(&self) -> Texts {
        Texts {
            shop_name: self.shop_name.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// An sRGB colour written `"#RRGGBB"` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colour(pub u8, pub u8, pub u8);

impl Colour {
    /// The default accent, `#00695C`.
    pub const DEFAULT_ACCENT: Colour = Colour(0x00, 0x69, 0x5c);

    /// Parses `#RRGGBB`.
    pub fn parse(text: &str) -> Option<Colour> {
        let hex = text.strip_prefix('#')?;
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let at = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        Some(Colour(at(0)?, at(2)?, at(4)?))
    }

    /// `#rrggbb`.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// Relative luminance (WCAG 2).
    pub fn luminance(self) -> f64 {
        let lin = |v: u8| {
            let v = f64::from(v) / 255.0;
            if v <= 0.04045 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(self.0) + 0.7152 * lin(self.1) + 0.0722 * lin(self.2)
    }

    /// WCAG 2 contrast ratio against `other` (1 to 21).
    pub fn contrast(self, other: Colour) -> f64 {
        let (a, b) = (self.luminance(), other.luminance());
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }

    /// White or black, whichever reads better on this colour (at least 4.58:1 on any).
    pub fn ink(self) -> Colour {
        let (white, black) = (Colour(255, 255, 255), Colour(0, 0, 0));
        if white.contrast(self) >= black.contrast(self) {
            white
        } else {
            black
        }
    }
}

impl<'de> Deserialize<'de> for Colour {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Colour::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a colour: write \"#RRGGBB\""))
        })
    }
}

/// A finite number above zero (a dpi, a diagonal in inches).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Positive(pub f64);

// Only finite numbers above zero are ever made (see `deserialize`), so equality is total.
impl Eq for Positive {}

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() && v > 0.0 && v < 100_000.0 {
            Ok(Positive(v))
        } else {
            Err(serde::de::Error::custom(format!(
                "{v} is not a positive number"
            )))
        }
    }
}

/// `[display.framebuffer]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FramebufferConfig {
    /// Device or plain file; default `/dev/fb0`.
    pub device: PathBuf,
    /// Width in pixels, for a plain file only (a device reports its own).
    pub width: Option<usize>,
    /// Height in pixels, for a plain file only.
    pub height: Option<usize>,
    /// Pixel format, for a plain file only.
    pub format: Option<PixelFormat>,
    /// Bytes per line, for a plain file only; default width x bytes per pixel.
    pub stride: Option<usize>,
}

impl Default for FramebufferConfig {
    fn default() -> Self {
        Self {
            device: "/dev/fb0".into(),
            width: None,
            height: None,
            format: None,
            stride: None,
        }
    }
}

/// `[display.terminal]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TerminalConfig {
    /// A tty to write to (e.g. `/dev/tty2`); default standard output.
    pub path: Option<PathBuf>,
    /// Columns, when the output is not a tty that reports its size; default 80.
    pub columns: Option<usize>,
    /// Rows, likewise; default 24.
    pub rows: Option<usize>,
    /// Lines kept at the top of the terminal, above the customer's screen (the demo's
    /// instructions); default none.
    pub header: Vec<String>,
}

/// `[display.web]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Address of the kiosk page; default `127.0.0.1:8765` (loopback only).
    pub listen: SocketAddr,
    /// Connections to the page at once; past this a new one gets `503` and is closed.
    /// Default 16.
    pub max_clients: usize,
    /// Serve a non-loopback `listen` address (a kiosk browser on another machine); the page
    /// then needs the token from `token_file` in its address. Default false.
    pub allow_remote: bool,
    /// The per-install kiosk token (made 0600 at first start when `allow_remote` is set);
    /// default `/var/lib/wxcardd/kiosk-token`.
    pub token_file: PathBuf,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8765)),
            max_clients: 16,
            allow_remote: false,
            token_file: "/var/lib/wxcardd/kiosk-token".into(),
        }
    }
}

/// `[display.png]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PngConfig {
    /// File rewritten (atomically) on every change; default `/run/wxcardd/display.png`.
    pub path: PathBuf,
    /// Width in pixels; default 540.
    pub width: usize,
    /// Height in pixels; default 960.
    pub height: usize,
}

impl Default for PngConfig {
    fn default() -> Self {
        Self {
            path: "/run/wxcardd/display.png".into(),
            width: 540,
            height: 960,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_gives_documented_defaults() {
        let cfg: DisplayConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, DisplayConfig::default());
        assert!(cfg.backends.is_empty());
        assert_eq!(cfg.framebuffer.device, PathBuf::from("/dev/fb0"));
        assert_eq!(cfg.web.listen.to_string(), "127.0.0.1:8765");
        assert_eq!((cfg.png.width, cfg.png.height), (540, 960));
        assert_eq!(cfg.font, PathBuf::from(DEFAULT_FONT));
        assert_eq!(cfg.font_face, 0);
        assert_eq!(
            cfg.labels.offline,
            "离线：付款码不可用 Offline: pay code unavailable"
        );
    }

    #[test]
    fn full_section_parses_and_unknown_keys_are_rejected() {
        let cfg: DisplayConfig = toml::from_str(
            r#"
            backends = ["framebuffer", "web"]
            shop_name = "好又多"
            font = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
            font_face = 2
            [labels]
            pay_code = "Pay with this code"
            language = "en"
            currency = "HK$"
            [framebuffer]
            device = "/tmp/fb.raw"
            width = 800
            height = 480
            format = "rgb565"
            [terminal]
            path = "/dev/tty2"
            [web]
            listen = "0.0.0.0:9000"
            "#,
        )
        .unwrap();
        assert_eq!(
            cfg.backends,
            vec![BackendKind::Framebuffer, BackendKind::Web]
        );
        assert_eq!(cfg.texts().shop_name, "好又多");
        assert_eq!(
            (cfg.font.to_str(), cfg.font_face),
            (
                Some("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
                2
            )
        );
        assert_eq!(cfg.labels.pay_code, "Pay with this code");
        assert_eq!(cfg.labels.language, crate::display::LabelLanguage::En);
        assert_eq!(cfg.labels.currency, "HK$");
        assert!(toml::from_str::<DisplayConfig>("[labels]\nlanguage = \"fr\"").is_err());
        assert_eq!(
            cfg.labels.balance,
            Labels::default().balance,
            "unset labels keep defaults"
        );
        assert_eq!(cfg.framebuffer.format, Some(PixelFormat::Rgb565));
        assert_eq!(cfg.terminal.path, Some(PathBuf::from("/dev/tty2")));
        let err = toml::from_str::<DisplayConfig>("[labels]\npaycode = \"x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(toml::from_str::<DisplayConfig>("backends = [\"hdmi\"]").is_err());
    }

    #[test]
    fn accent_logo_and_panel_size_parse_and_bad_values_are_refused() {
        let cfg: DisplayConfig = toml::from_str(
            "accent = \"#FFcc00\"\nlogo = \"/etc/wxcardd/logo.png\"\ndpi = 133.5\ndiagonal_in = 7\n",
        )
        .unwrap();
        assert_eq!(cfg.accent, Colour(0xff, 0xcc, 0x00));
        assert_eq!(cfg.logo, Some(PathBuf::from("/etc/wxcardd/logo.png")));
        assert_eq!(cfg.dpi, Some(Positive(133.5)));
        assert_eq!(cfg.diagonal_in, Some(Positive(7.0)));
        for bad in [
            "accent = \"red\"",
            "accent = \"#12345\"",
            "accent = \"#12345g\"",
            "dpi = 0",
            "dpi = -3",
            "diagonal_in = \"7in\"",
        ] {
            assert!(toml::from_str::<DisplayConfig>(bad).is_err(), "{bad}");
        }
        assert_eq!(DisplayConfig::default().accent, Colour::DEFAULT_ACCENT);
    }
}
