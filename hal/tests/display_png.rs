//! The PNG snapshot backend, decoded back by rqrr and by zbarimg (Debian's zbar-tools).

mod display_support;

use std::process::Command;
use std::time::{Duration, Instant};

use display_support::{CODE, card, decode_png, pay_code};
use wxcard_hal::display::config::PngConfig;
use wxcard_hal::display::png::PngDisplay;
use wxcard_hal::display::{CustomerDisplay, Message, Screen, Texts};

fn snapshot(dir: &std::path::Path, name: &str, w: usize, h: usize) -> PngDisplay {
    let cfg = PngConfig {
        path: dir.join(name),
        width: w,
        height: h,
    };
    PngDisplay::new(&cfg, Texts::default()).unwrap()
}

#[test]
fn pay_code_snapshot_decodes_with_rqrr() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    for (w, h) in [(540, 960), (1024, 600), (240, 320)] {
        let mut png = snapshot(dir.path(), "s.png", w, h);
        png.show(&pay_code(CODE, now), now).unwrap();
        let (pw, ph, codes) = decode_png(&std::fs::read(png.path()).unwrap());
        assert_eq!((pw, ph), (w, h));
        assert_eq!(codes, vec![CODE.to_string()], "{w}x{h}");
    }
}

#[test]
fn pay_code_snapshot_decodes_with_zbarimg() {
    if !display_support::have_tool("zbarimg", "zbar-tools") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut png = snapshot(dir.path(), "zbar.png", 540, 960);
    png.show(&pay_code(CODE, now), now).unwrap();
    let out = Command::new("zbarimg")
        .args(["--quiet", "--raw", "-Sdisable", "-Sqrcode.enable"])
        .arg(png.path())
        .output()
        .expect("zbarimg must be installed (Debian package zbar-tools)");
    assert!(
        out.status.success(),
        "zbarimg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), CODE);
}

#[test]
fn other_screens_carry_no_qr_and_files_are_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut png = snapshot(dir.path(), "s.png", 540, 960);
    let screens = [
        Screen::Idle,
        card(),
        Screen::Message(Message::Offline),
        Screen::Message(Message::Error("余额不足 Insufficient balance".into())),
        pay_code(CODE, now - Duration::from_secs(300)),
        Screen::Blank,
    ];
    for s in &screens {
        png.show(s, now).unwrap();
        let (_, _, codes) = decode_png(&std::fs::read(png.path()).unwrap());
        assert!(codes.is_empty(), "{s:?}");
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["s.png"], "no temporary file left behind");
}

#[test]
fn unwritable_target_is_an_io_error() {
    let cfg = PngConfig {
        path: "/nonexistent-dir/x.png".into(),
        width: 10,
        height: 10,
    };
    let mut png = PngDisplay::new(&cfg, Texts::default()).unwrap();
    let err = png.show(&Screen::Idle, Instant::now()).unwrap_err();
    assert_eq!(err.kind(), wxcard_hal::display::ErrorKind::Io);
    assert!(PngDisplay::new(&PngConfig { width: 0, ..cfg }, Texts::default()).is_err());
}

#[test]
fn open_builds_every_listed_backend_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let fb = dir.path().join("fb");
    std::fs::write(&fb, vec![0u8; 320 * 480 * 2]).unwrap();
    let toml_text = format!(
        "backends = [\"framebuffer\", \"png\"]\n[framebuffer]\ndevice = {fb:?}\nwidth = 320\nheight = 480\nformat = \"rgb565\"\n[png]\npath = {:?}\nwidth = 320\nheight = 480\n",
        dir.path().join("snap.png")
    );
    let cfg: wxcard_hal::display::DisplayConfig = toml::from_str(&toml_text).unwrap();
    let mut displays = wxcard_hal::display::open(&cfg).unwrap();
    assert_eq!(displays.len(), 2);
    let now = Instant::now();
    displays.show(&pay_code(CODE, now), now).unwrap();
    let (_, _, codes) = decode_png(&std::fs::read(dir.path().join("snap.png")).unwrap());
    assert_eq!(codes, vec![CODE.to_string()]);
    assert_ne!(
        std::fs::read(&fb).unwrap(),
        vec![0u8; 320 * 480 * 2],
        "framebuffer written too"
    );
}
