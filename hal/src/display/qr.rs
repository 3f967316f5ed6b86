//! The QR module matrix of a pay code: encoded once, shared by every backend.
//!
//! Every display draws the same matrix (error correction level M, a quiet zone of four
//! modules) so that what the customer's phone reads does not depend on the backend. Placement
//! picks the largest whole-pixel module size that fits an area and centres the code in it:
//! fractional module sizes blur module edges and cost decoders their first try.

use qrcode::{Color, EcLevel, QrCode};

/// Light modules the decoder needs around the code, on every side.
pub const QUIET_ZONE: usize = 4;

/// Longest pay code accepted, in bytes. wxcard pay codes are about twenty digits; the bound
/// keeps a hostile or broken backend answer from producing an unreadably dense code.
pub const MAX_PAYLOAD: usize = 256;

/// Why a pay code could not be turned into a QR code.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum QrError {
    /// Nothing to encode.
    #[error("pay code is empty")]
    Empty,
    /// Longer than [`MAX_PAYLOAD`].
    #[error("pay code is {0} bytes long, more than the {MAX_PAYLOAD} a customer display shows")]
    TooLong(usize),
    /// The encoder refused the data.
    #[error("QR encoder refused the pay code: {0}")]
    Encode(String),
}

/// A square grid of dark and light modules, without its quiet zone.
#[derive(Clone, PartialEq, Eq)]
pub struct QrMatrix {
    size: usize,
    dark: Vec<bool>,
}

impl std::fmt::Debug for QrMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The modules encode the pay code, a payment credential: never print them.
        write!(f, "QrMatrix({0}x{0})", self.size)
    }
}

/// Where a QR code goes inside an area, in pixels (or terminal cells).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QrPlacement {
    /// Side of one module.
    pub module: usize,
    /// Left edge of the quiet zone.
    pub x: usize,
    /// Top edge of the quiet zone.
    pub y: usize,
    /// Side of the whole code including its quiet zone.
    pub side: usize,
}

impl QrMatrix {
    /// Encodes `data` at error correction level M.
    pub fn encode(data: &str) -> Result<Self, QrError> {
        if data.is_empty() {
            return Err(QrError::Empty);
        }
        if data.len() > MAX_PAYLOAD {
            return Err(QrError::TooLong(data.len()));
        }
        let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)
            .map_err(|e| QrError::Encode(e.to_string()))?;
        let size = code.width();
        let dark = code
            .into_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        Ok(Self { size, dark })
    }

    /// Modules on a side, without the quiet zone.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Modules on a side, with the quiet zone.
    pub fn padded_size(&self) -> usize {
        self.size + 2 * QUIET_ZONE
    }

    /// Whether the module at (`x`, `y`) is dark; coordinates count from the top-left corner
    /// of the quiet zone, and anything outside the code is light.
    pub fn is_dark_padded(&self, x: usize, y: usize) -> bool {
        let (Some(x), Some(y)) = (x.checked_sub(QUIET_ZONE), y.checked_sub(QUIET_ZONE)) else {
            return false;
        };
        x < self.size && y < self.size && self.dark[y * self.size + x]
    }

    /// The largest whole module size at which the code with its quiet zone fits a `width` x
    /// `height` area at (`x`, `y`), centred; `None` when not even one pixel per module fits.
    pub fn place(&self, x: usize, y: usize, width: usize, height: usize) -> Option<QrPlacement> {
        let padded = self.padded_size();
        let module = width.min(height) / padded;
        if module == 0 {
            return None;
        }
        let side = module * padded;
        Some(QrPlacement {
            module,
            x: x + (width - side) / 2,
            y: y + (height - side) / 2,
            side,
        })
    }

    /// The code as a standalone SVG document, one unit per module, quiet zone included.
    pub fn to_svg(&self) -> String {
        let padded = self.padded_size();
        let mut path = String::with_capacity(self.size * self.size * 4);
        for y in 0..self.size {
            let mut x = 0;
            while x < self.size {
                if !self.dark[y * self.size + x] {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < self.size && self.dark[y * self.size + x] {
                    x += 1;
                }
                use std::fmt::Write as _;
                let _ = write!(
                    path,
                    "M{} {}h{}v1h-{}z",
                    start + QUIET_ZONE,
                    y + QUIET_ZONE,
                    x - start,
                    x - start
                );
            }
        }
        format!(
            concat!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {p} {p}" "#,
                r##"shape-rendering="crispEdges"><rect width="{p}" height="{p}" fill="#fff"/>"##,
                r##"<path fill="#000" d="{d}"/></svg>"##
            ),
            p = padded,
            d = path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_and_oversized_codes() {
        assert_eq!(QrMatrix::encode(""), Err(QrError::Empty));
        let long = "1".repeat(MAX_PAYLOAD + 1);
        assert_eq!(
            QrMatrix::encode(&long),
            Err(QrError::TooLong(MAX_PAYLOAD + 1))
        );
    }

    #[test]
    fn placement_is_the_largest_whole_module_and_centred() {
        let m = QrMatrix::encode("134567890123456789").unwrap();
        assert_eq!(m.size(), 21, "18 digits fit version 1 at level M");
        let padded = 29;
        let p = m.place(10, 20, 300, 200).unwrap();
        assert_eq!(p.module, 200 / padded);
        assert_eq!(p.side, p.module * padded);
        assert_eq!(p.y, 20 + (200 - p.side) / 2);
        assert_eq!(p.x, 10 + (300 - p.side) / 2);
        assert!(m.place(0, 0, 28, 1000).is_none());
    }

    #[test]
    fn quiet_zone_is_light_and_finder_corner_dark() {
        let m = QrMatrix::encode("hello").unwrap();
        for i in 0..m.padded_size() {
            assert!(!m.is_dark_padded(i, 0) && !m.is_dark_padded(0, i));
            assert!(!m.is_dark_padded(i, m.padded_size() - 1));
        }
        assert!(m.is_dark_padded(QUIET_ZONE, QUIET_ZONE));
        assert!(!m.is_dark_padded(usize::MAX, 5));
    }

    #[test]
    fn debug_does_not_leak_modules() {
        let m = QrMatrix::encode("secret").unwrap();
        assert_eq!(format!("{m:?}"), "QrMatrix(21x21)");
    }
}
