//! Shared fixtures for the scanner tests: real pseudo-terminals behind a udev-like symlink,
//! the process's CPU time, and the recorded captures under `tests/data/scanners/`.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::{
    ffi::CStr,
    fs::File,
    io::Write,
    os::fd::{FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    time::Duration,
};

use wxcard_hal::scanner::{Parsed, ScannerEvent};

/// The master side of a pty; dropping it "unplugs" the device at its slave path.
pub struct Pty {
    pub master: File,
    pub slave: PathBuf,
}

impl Pty {
    /// A new pty pair. Only the master is open: the scanner under test opens the slave by
    /// path, as it would open `/dev/ttyACM0`.
    pub fn open() -> Pty {
        // SAFETY: plain libc calls on a descriptor we own; the name buffer is large enough and
        // ptsname_r NUL-terminates it.
        unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            let master = OwnedFd::from_raw_fd(fd);
            assert_eq!(libc::grantpt(fd), 0, "grantpt");
            assert_eq!(libc::unlockpt(fd), 0, "unlockpt");
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(
                libc::ptsname_r(fd, name.as_mut_ptr(), name.len()),
                0,
                "ptsname_r"
            );
            let slave = PathBuf::from(
                CStr::from_ptr(name.as_ptr())
                    .to_str()
                    .expect("utf-8 pts name"),
            );
            Pty {
                master: File::from(master),
                slave,
            }
        }
    }

    /// Writes bytes as the scanner would send them.
    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to pty master");
    }
}

/// Points `link` at `target` atomically, as udev re-creates a by-id symlink.
pub fn point_link(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("symlink");
    std::fs::rename(&tmp, link).expect("rename symlink");
}

/// User plus system CPU time this process has used.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// One recorded capture: header metadata, the scanner settings, the raw bytes, the expected
/// output lines.
pub struct Capture {
    pub name: String,
    pub header: Vec<String>,
    pub settings: CaptureSettings,
    pub payload: Vec<u8>,
    pub expected: Vec<String>,
}

/// The `#:` TOML lines of a capture header.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSettings {
    /// `"serial"` (bytes as read from the tty) or `"evdev"` (24-byte input_event records).
    pub interface: String,
    #[serde(default)]
    pub frame: wxcard_hal::scanner::FrameConfig,
}

pub fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/scanners")
}

/// Every `*.cap` file with its `.expected` file.
pub fn captures() -> Vec<Capture> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(captures_dir())
        .expect("tests/data/scanners")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cap"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no captures found");
    paths.iter().map(|p| load_capture(p)).collect()
}

pub fn load_capture(path: &Path) -> Capture {
    let bytes = std::fs::read(path).expect("read capture");
    let marker = b"\n#--\n";
    let end = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap_or_else(|| panic!("{}: no `#--` line ends the header", path.display()));
    let header_text = std::str::from_utf8(&bytes[..end]).expect("header is UTF-8");
    let payload = bytes[end + marker.len()..].to_vec();
    let mut header = Vec::new();
    let mut toml_text = String::new();
    for line in header_text.lines() {
        if let Some(setting) = line.strip_prefix("#:") {
            toml_text.push_str(setting.trim_start());
            toml_text.push('\n');
        } else {
            let text = line
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{}: header line {line:?} lacks '#'", path.display()));
            header.push(text.trim().to_owned());
        }
    }
    let settings: CaptureSettings =
        toml::from_str(&toml_text).unwrap_or_else(|e| panic!("{}: settings: {e}", path.display()));
    let expected = std::fs::read_to_string(path.with_extension("expected"))
        .unwrap_or_else(|e| panic!("{}: expected file: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect();
    Capture {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        header,
        settings,
        payload,
        expected,
    }
}

/// The line an event is written as in `.expected` files.
pub fn event_line(event: &ScannerEvent) -> Option<String> {
    match event {
        ScannerEvent::Scan(scan) => Some(format!(
            "scan {} {}",
            scan.symbology.map_or("-".to_owned(), |s| s.to_string()),
            scan.code
        )),
        ScannerEvent::Rejected { reason } => Some(format!("rejected {reason}")),
        ScannerEvent::Connected | ScannerEvent::Disconnected { .. } => None,
    }
}

/// The line a parser result is written as in `.expected` files.
pub fn parsed_line(parsed: &Parsed) -> String {
    match parsed {
        Parsed::Frame(f) => format!(
            "scan {} {}",
            f.symbology.map_or("-".to_owned(), |s| s.to_string()),
            f.code
        ),
        Parsed::Rejected(reason) => format!("rejected {reason}"),
    }
}
