//! The devices that could be the scanner: serial ports by id, keyboards by id, HID POS nodes
//! the udev rules named, and any path the technician gives. Maker and model come from udev's
//! database (`/run/udev/data/c<major>:<minor>`) where it has them; nothing else is opened.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// How a candidate is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A tty: raw bytes at a baud rate to be found.
    Serial,
    /// An input event device (keyboard wedge).
    Evdev,
    /// A hidraw node (USB HID POS).
    Hidpos,
}

impl Kind {
    /// The `device.kind` it becomes in the config.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Serial => "serial",
            Kind::Evdev => "evdev",
            Kind::Hidpos => "hidpos",
        }
    }
}

/// One device that might be the scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The path as listed (a by-id link when there is one): what the config will name.
    pub path: PathBuf,
    /// How it is read.
    pub kind: Kind,
    /// Maker and model from udev, e.g. "Newland NLS-FR40", when udev knows them.
    pub label: Option<String>,
}

/// The standard places, then `extra` (given by the technician), without duplicates (two
/// links to one node keep the first).
pub fn list(extra: &[PathBuf], standard: bool) -> Vec<Candidate> {
    let mut paths: Vec<(PathBuf, Option<Kind>)> = Vec::new();
    if standard {
        for (dir, want, kind) in [
            ("/dev/serial/by-id", "", Kind::Serial),
            ("/dev/input/by-id", "-event-kbd", Kind::Evdev),
            ("/dev/wxcard", "", Kind::Hidpos),
        ] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default();
                    match kind {
                        Kind::Hidpos => name.starts_with("hidpos-"),
                        _ => name.ends_with(want),
                    }
                })
                .collect();
            found.sort();
            paths.extend(found.into_iter().map(|p| (p, Some(kind))));
        }
    }
    paths.extend(extra.iter().map(|p| (p.clone(), None)));
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (path, kind) in paths {
        let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if seen.contains(&real) {
            continue;
        }
        seen.push(real.clone());
        out.push(Candidate {
            kind: kind.unwrap_or_else(|| kind_of(&real)),
            label: udev_label(&real),
            path,
        });
    }
    out
}

/// The kind of a node from its kernel name: `hidrawN`, `eventN`, anything else a tty.
fn kind_of(real: &Path) -> Kind {
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if name.starts_with("hidraw") {
        Kind::Hidpos
    } else if name.starts_with("event") {
        Kind::Evdev
    } else {
        Kind::Serial
    }
}

/// "Maker Model" from udev's database entry for the character device `real`.
fn udev_label(real: &Path) -> Option<String> {
    let rdev = std::fs::metadata(real).ok()?.rdev();
    let data = std::fs::read_to_string(format!(
        "/run/udev/data/c{}:{}",
        libc::major(rdev),
        libc::minor(rdev)
    ))
    .ok()?;
    label_from_udev(&data)
}

/// Picks maker and model out of a udev database entry (`E:KEY=value` lines).
pub fn label_from_udev(data: &str) -> Option<String> {
    let get = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            data.lines()
                .find_map(|l| l.strip_prefix("E:")?.strip_prefix(k)?.strip_prefix('='))
                .map(|v| v.replace('_', " ").trim().to_owned())
                .filter(|v| !v.is_empty())
        })
    };
    let vendor = get(&["ID_VENDOR_FROM_DATABASE", "ID_VENDOR"]);
    let model = get(&["ID_MODEL_FROM_DATABASE", "ID_MODEL"]);
    let label = match (vendor, model) {
        (Some(v), Some(m)) => format!("{v} {m}"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => return None,
    };
    // Device strings are untrusted: no control characters or escapes reach the terminal.
    Some(wxcard_hal::text::sanitize(&label, 80).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maker_and_model_from_a_udev_entry() {
        let data = "S:serial/by-id/usb-Newland_NLS-FR40-if00\nE:ID_VENDOR=Newland\n\
                    E:ID_MODEL=NLS-FR40\nE:ID_MODEL_FROM_DATABASE=\nG:systemd\n";
        assert_eq!(label_from_udev(data).as_deref(), Some("Newland NLS-FR40"));
        assert_eq!(label_from_udev("E:ID_BUS=usb\n"), None);
    }

    #[test]
    fn given_paths_are_kept_once_and_kinded_by_node() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let list = list(&[a.clone(), link], false);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].path, a);
        assert_eq!(list[0].kind, Kind::Serial);
        assert_eq!(kind_of(Path::new("/dev/hidraw3")), Kind::Hidpos);
        assert_eq!(kind_of(Path::new("/dev/input/event7")), Kind::Evdev);
    }
}
