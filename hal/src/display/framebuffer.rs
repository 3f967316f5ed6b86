//! Linux framebuffer backend: `/dev/fbN`, or a plain file with the same layout.
//!
//! Geometry, line length and pixel layout come from the device (`FBIOGET_VSCREENINFO`,
//! `FBIOGET_FSCREENINFO`); for a plain file they come from the config, and the file must
//! already be large enough. Frames are drawn on an off-screen [`Canvas`] in the device's own
//! layout and the changed rows are copied out in one go, so the screen never shows a frame
//! being built up piece by piece. The copy goes through a shared memory mapping of the device
//! (one `memcpy`, about four times faster than `pwrite` for a 1080x1920 frame) and falls back
//! to a single `pwrite` where the device cannot be mapped. A plain file is mapped too: it must
//! not be truncated while the display is open.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::config::{FramebufferConfig, PixelFormat};
use super::font::{DEFAULT_FONT, Font};
use super::layout::Look;
use super::raster::{Canvas, Frame};
use super::view::{Texts, View};
use super::{CustomerDisplay, DisplayError, Screen};

/// Where and how a frame is laid out on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Visible width in pixels.
    pub width: usize,
    /// Visible height in pixels.
    pub height: usize,
    /// Bytes per line.
    pub stride: usize,
    /// Pixel layout.
    pub format: PixelFormat,
    /// Byte offset of the visible frame (panning).
    pub offset: u64,
    /// Width and height of the visible area in mm as the driver reports them (`None` for
    /// a plain file; many drivers report 0, which the layout ignores).
    pub size_mm: Option<(u32, u32)>,
}

/// A shared, writable mapping of the device, unmapped on drop.
struct Mapping {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by one `FramebufferDisplay` and only written through `&mut`.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(file: &File, len: usize) -> Option<Self> {
        // SAFETY: a fresh shared mapping of `len` bytes of a file we hold open; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            log::debug!(
                "framebuffer mmap failed ({}), using pwrite",
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(Self {
            ptr: std::ptr::NonNull::new(ptr.cast())?,
            len,
        })
    }

    fn write(&mut self, at: usize, bytes: &[u8]) -> std::io::Result<()> {
        match at.checked_add(bytes.len()) {
            Some(end) if end <= self.len => {
                // SAFETY: `at..end` lies inside the mapping; source and mapping are distinct.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        self.ptr.as_ptr().add(at),
                        bytes.len(),
                    )
                };
                Ok(())
            }
            _ => Err(std::io::Error::other(
                "frame write past the end of the mapping",
            )),
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `Mapping::new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A framebuffer device or file.
pub struct FramebufferDisplay {
    path: PathBuf,
    file: File,
    mapping: Option<Mapping>,
    geometry: Geometry,
    frame: Frame,
    texts: Texts,
}

impl FramebufferDisplay {
    /// Opens the device or file named in `config`, drawing text with the default font file
    /// (or the built-in fallback).
    pub fn open(config: &FramebufferConfig, texts: Texts) -> Result<Self, DisplayError> {
        Self::open_with_font(config, texts, Font::shared(DEFAULT_FONT.as_ref(), 0))
    }

    /// Opens the device or file named in `config`, drawing text with `font`.
    pub fn open_with_font(
        config: &FramebufferConfig,
        texts: Texts,
        font: Arc<Font>,
    ) -> Result<Self, DisplayError> {
        let path = config.device.clone();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| DisplayError::io(&path, e))?;
        let meta = file.metadata().map_err(|e| DisplayError::io(&path, e))?;
        let geometry = if meta.file_type().is_char_device() {
            query_device(&file, &path)?
        } else {
            from_config(config, meta.len(), &path)?
        };
        let canvas = Canvas::new(
            geometry.width,
            geometry.height,
            geometry.stride,
            geometry.format,
        );
        let mapped_len = geometry.offset as usize + geometry.stride * geometry.height;
        let mapping = Mapping::new(&file, mapped_len);
        Ok(Self {
            path,
            file,
            mapping,
            geometry,
            frame: Frame::new(canvas, font),
            texts,
        })
    }

    /// Draws in `look` from the next frame on; the device's own size in mm is used when
    /// the config gives neither `dpi` nor `diagonal_in`.
    pub fn set_look(&mut self, mut look: Look) {
        look.device_mm = self.geometry.size_mm;
        let (w, h) = (self.geometry.width, self.geometry.height);
        let (per_mm, source) = look.px_per_mm(w, h);
        log::info!(
            "customer display {}: {w}x{h}, {:.0} dpi ({source}), pay code at least {} mm where it fits",
            self.path.display(),
            per_mm * 25.4,
            super::layout::QR_MIN_MM
        );
        self.frame.set_look(look);
    }

    /// Whether frames are copied through a memory mapping (else with `pwrite`).
    pub fn is_mapped(&self) -> bool {
        self.mapping.is_some()
    }

    /// Copies frames with `pwrite` from now on, for a device whose mapping misbehaves.
    pub fn use_pwrite(&mut self) {
        self.mapping = None;
        self.frame.invalidate();
    }

    /// The geometry in use.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Forces the next frame to be written whole (after a console switch, say).
    pub fn invalidate(&mut self) {
        self.frame.invalidate();
    }
}

impl CustomerDisplay for FramebufferDisplay {
    fn show(&mut self, screen: &Screen, now: Instant) -> Result<(), DisplayError> {
        self.frame.draw(&View::of(screen, &self.texts, now));
        let Some(rows) = self.frame.canvas_mut().take_changed_rows() else {
            return Ok(());
        };
        let written = {
            let canvas = self.frame.canvas();
            let stride = canvas.stride();
            let bytes = &canvas.bytes()[rows.start * stride..rows.end * stride];
            let at = self.geometry.offset + (rows.start * stride) as u64;
            match &mut self.mapping {
                Some(m) => m.write(at as usize, bytes),
                None => self.file.write_all_at(bytes, at),
            }
        };
        written.map_err(|e| {
            // The device holds an unknown mix now: repaint everything next time.
            self.frame.invalidate();
            DisplayError::io(&self.path, e)
        })
    }

    fn name(&self) -> &'static str {
        "framebuffer"
    }
}

fn from_config(
    config: &FramebufferConfig,
    len: u64,
    path: &Path,
) -> Result<Geometry, DisplayError> {
    let bad = |reason: String| DisplayError::Geometry {
        path: path.into(),
        reason,
    };
    let (Some(width), Some(height), Some(format)) = (config.width, config.height, config.format)
    else {
        return Err(bad(
            "a plain file needs width, height and format in [display.framebuffer]".into(),
        ));
    };
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return Err(bad(format!("{width}x{height} is not a screen size")));
    }
    let stride = config.stride.unwrap_or(width * format.bytes_per_pixel());
    if stride < width * format.bytes_per_pixel() || stride > 4 * width * format.bytes_per_pixel() {
        return Err(bad(format!(
            "stride {stride} does not fit a line of {width} pixels"
        )));
    }
    let need = (stride * height) as u64;
    if len < need {
        return Err(bad(format!(
            "file is {len} bytes, a {width}x{height} frame needs {need}"
        )));
    }
    Ok(Geometry {
        width,
        height,
        stride,
        format,
        offset: 0,
        size_mm: None,
    })
}

// <linux/fb.h>
const FBIOGET_VSCREENINFO: libc::c_ulong = 0x4600;
const FBIOGET_FSCREENINFO: libc::c_ulong = 0x4602;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct FbBitfield {
    offset: u32,
    length: u32,
    msb_right: u32,
}

#[repr(C)]
#[derive(Default)]
struct FbVarScreeninfo {
    xres: u32,
    yres: u32,
    xres_virtual: u32,
    yres_virtual: u32,
    xoffset: u32,
    yoffset: u32,
    bits_per_pixel: u32,
    grayscale: u32,
    red: FbBitfield,
    green: FbBitfield,
    blue: FbBitfield,
    transp: FbBitfield,
    nonstd: u32,
    activate: u32,
    height: u32,
    width: u32,
    accel_flags: u32,
    pixclock: u32,
    left_margin: u32,
    right_margin: u32,
    upper_margin: u32,
    lower_margin: u32,
    hsync_len: u32,
    vsync_len: u32,
    sync: u32,
    vmode: u32,
    rotate: u32,
    colorspace: u32,
    reserved: [u32; 4],
}

#[repr(C)]
#[derive(Default)]
struct FbFixScreeninfo {
    id: [u8; 16],
    smem_start: libc::c_ulong,
    smem_len: u32,
    type_: u32,
    type_aux: u32,
    visual: u32,
    xpanstep: u16,
    ypanstep: u16,
    ywrapstep: u16,
    line_length: u32,
    mmio_start: libc::c_ulong,
    mmio_len: u32,
    accel: u32,
    capabilities: u16,
    reserved: [u16; 2],
}

fn query_device(file: &File, path: &Path) -> Result<Geometry, DisplayError> {
    let mut var = FbVarScreeninfo::default();
    let mut fix = FbFixScreeninfo::default();
    // SAFETY: both ioctls fill a caller-provided struct of exactly the kernel's layout above.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FBIOGET_VSCREENINFO as _, &mut var) };
    if rc != 0 {
        return Err(DisplayError::io(path, std::io::Error::last_os_error()));
    }
    // SAFETY: as above.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FBIOGET_FSCREENINFO as _, &mut fix) };
    if rc != 0 {
        return Err(DisplayError::io(path, std::io::Error::last_os_error()));
    }
    let layout = |v: &FbVarScreeninfo| {
        (
            v.bits_per_pixel,
            v.red.offset,
            v.red.length,
            v.green.offset,
            v.green.length,
            v.blue.offset,
        )
    };
    let format = match layout(&var) {
        (16, 11, 5, 5, 6, 0) => PixelFormat::Rgb565,
        (32, 16, 8, 8, 8, 0) => PixelFormat::Xrgb8888,
        (32, 0, 8, 8, 8, 16) => PixelFormat::Xbgr8888,
        other => {
            return Err(DisplayError::PixelFormat {
                path: path.into(),
                layout: format!("bpp/red/green/blue = {other:?}"),
            });
        }
    };
    let (width, height, stride) = (
        var.xres as usize,
        var.yres as usize,
        fix.line_length as usize,
    );
    let bpp = format.bytes_per_pixel();
    let offset = var.yoffset as u64 * stride as u64 + var.xoffset as u64 * bpp as u64;
    if width == 0
        || height == 0
        || stride < width * bpp
        || offset + (stride * height) as u64 > fix.smem_len as u64
    {
        return Err(DisplayError::Geometry {
            path: path.into(),
            reason: format!(
                "device reports {width}x{height}, line {stride} bytes, memory {}",
                fix.smem_len
            ),
        });
    }
    Ok(Geometry {
        width,
        height,
        stride,
        format,
        offset,
        size_mm: Some((var.width, var.height)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_struct_sizes_match_linux_fb_h() {
        assert_eq!(std::mem::size_of::<FbVarScreeninfo>(), 160);
        let fix = if cfg!(target_pointer_width = "64") {
            80
        } else {
            68
        };
        assert_eq!(std::mem::size_of::<FbFixScreeninfo>(), fix);
    }

    #[test]
    fn plain_file_needs_complete_geometry_and_enough_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb");
        std::fs::write(&path, vec![0u8; 100]).unwrap();
        let mut cfg = FramebufferConfig {
            device: path.clone(),
            ..Default::default()
        };
        let err = FramebufferDisplay::open(&cfg, Texts::default())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("needs width, height and format"),
            "{err}"
        );
        cfg.width = Some(10);
        cfg.height = Some(10);
        cfg.format = Some(PixelFormat::Rgb565);
        let err = FramebufferDisplay::open(&cfg, Texts::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("needs 200"), "{err}");
        cfg.height = Some(5);
        let fb = FramebufferDisplay::open(&cfg, Texts::default()).unwrap();
        assert_eq!(fb.geometry().stride, 20);
        let missing = FramebufferConfig {
            device: dir.path().join("nope"),
            ..cfg
        };
        let err = FramebufferDisplay::open(&missing, Texts::default())
            .err()
            .unwrap();
        assert_eq!(err.kind(), super::super::ErrorKind::Io);
    }
}
