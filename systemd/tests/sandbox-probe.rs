//! Sandbox probe for `systemd/tests/boot-test`: started as wxcardd.service's ExecStart (through
//! a drop-in, so every other setting is the shipped unit's), it tries what the daemon needs to
//! do and what the hardening must forbid, prints one `ok NAME` or `FAIL NAME: detail` line per
//! check, then reports READY=1 with a STATUS= summary and keeps the watchdog fed until stopped.
//!
//! Std only and built with plain `rustc`, so it needs no crate and no part of the workspace.
//! Device nodes are not checked: a container has none of the scanners' devices.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::time::Duration;

unsafe extern "C" {
    fn setgroups(n: usize, list: *const u32) -> i32;
    fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    fn socket(domain: i32, ty: i32, proto: i32) -> i32;
    fn close(fd: i32) -> i32;
    fn signal(signum: i32, handler: usize) -> usize;
}

const AF_NETLINK: i32 = 16;
const AF_PACKET: i32 = 17;
const SOCK_RAW: i32 = 3;
const EPERM: i32 = 1;
const EAFNOSUPPORT: i32 = 97;
const SIGHUP: i32 = 1;
const SIG_IGN: usize = 1;

struct Probe {
    failed: usize,
    passed: usize,
}

impl Probe {
    fn check(&mut self, name: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("ok {name}");
            }
            Err(detail) => {
                self.failed += 1;
                println!("FAIL {name}: {detail}");
            }
        }
    }
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

/// Expects a raw libc call to fail with `errno`.
fn denied(ret: i32, errno: i32) -> Result<(), String> {
    if ret >= 0 {
        unsafe { close(ret) };
        return Err("allowed".into());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(errno) {
        Ok(())
    } else {
        Err(e.to_string())
    }
}

fn mode_of(path: &str) -> Result<u32, String> {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .map_err(|e| e.to_string())
}

fn expect_mode(path: &str, want: u32) -> Result<(), String> {
    match mode_of(path)? {
        m if m == want => Ok(()),
        m => Err(format!("mode {m:o}, want {want:o}")),
    }
}

fn notify(msg: &str) -> std::io::Result<()> {
    let path = std::env::var("NOTIFY_SOCKET").map_err(|_| ErrorKind::NotFound)?;
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(msg.as_bytes(), &addr)?;
    } else {
        sock.send_to(msg.as_bytes(), &path)?;
    }
    Ok(())
}

fn main() {
    // `systemctl reload` (ExecReload=/bin/kill -HUP) must reach the process and not kill it.
    unsafe { signal(SIGHUP, SIG_IGN) };
    let mut p = Probe {
        failed: 0,
        passed: 0,
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();

    // Identity and privileges.
    let uid = status_field(&status, "Uid:");
    p.check(
        "non-root user",
        match uid.split_whitespace().next() {
            Some("0") | None => Err(format!("Uid: {uid}")),
            Some(_) => Ok(()),
        },
    );
    let groups: Vec<u32> = status_field(&status, "Groups:")
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .collect();
    for g in ["video", "wxcard-scan", "wxcard"] {
        p.check(
            &format!("supplementary group {g}"),
            match group_id(g) {
                Some(gid) if groups.contains(&gid) => Ok(()),
                Some(gid) => Err(format!("gid {gid} not in {groups:?}")),
                None => Err("group does not exist".into()),
            },
        );
    }
    // Device access no wider than the scanners: not every serial port, keyboard or console.
    for g in ["dialout", "input", "tty"] {
        p.check(
            &format!("not in group {g}"),
            match group_id(g) {
                Some(gid) if groups.contains(&gid) => Err(format!("gid {gid} in {groups:?}")),
                _ => Ok(()),
            },
        );
    }
    p.check(
        "no capabilities",
        match status_field(&status, "CapEff:").as_str() {
            "0000000000000000" => Ok(()),
            other => Err(format!("CapEff {other}")),
        },
    );
    p.check(
        "no new privileges",
        match status_field(&status, "NoNewPrivs:").as_str() {
            "1" => Ok(()),
            other => Err(format!("NoNewPrivs {other}")),
        },
    );
    p.check(
        "seccomp filter",
        match status_field(&status, "Seccomp:").as_str() {
            "2" => Ok(()),
            other => Err(format!("Seccomp {other}")),
        },
    );

    // The API token, as a credential only.
    let creds = std::env::var("CREDENTIALS_DIRECTORY").unwrap_or_default();
    p.check(
        "api-headers credential",
        match std::fs::read_to_string(format!("{creds}/api-headers")) {
            Ok(s) if s.contains("X-Api-Token: boot-test") => Ok(()),
            Ok(s) => Err(format!("unexpected content ({} bytes)", s.len())),
            Err(e) => Err(format!("{creds}/api-headers: {e}")),
        },
    );
    p.check(
        "api-headers not readable in /etc",
        match std::fs::read("/etc/wxcardd/api-headers") {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(()),
            other => Err(format!("{:?}", other.map(|_| "readable"))),
        },
    );
    p.check(
        "config readable",
        std::fs::read("/etc/wxcardd/wxcardd.toml")
            .map(|_| ())
            .map_err(|e| e.to_string()),
    );

    // Files: own state directory only.
    p.check(
        "state directory 0700",
        expect_mode("/var/lib/wxcardd", 0o700),
    );
    let store = "/var/lib/wxcardd/store";
    p.check(
        "state directory writable",
        std::fs::create_dir_all(store)
            .and_then(|()| std::fs::write(format!("{store}/probe"), b"1"))
            .map_err(|e| e.to_string()),
    );
    p.check("UMask 0077", expect_mode(&format!("{store}/probe"), 0o600));
    for path in ["/usr/probe", "/etc/wxcardd/probe", "/var/tmp/../probe"] {
        p.check(
            &format!("{path} not writable"),
            match std::fs::write(path, b"1") {
                Err(e) if matches!(e.raw_os_error(), Some(30) | Some(13)) => Ok(()), // EROFS, EACCES
                other => Err(format!("{other:?}")),
            },
        );
    }
    p.check(
        "home directories hidden",
        match std::fs::read_dir("/home").map(|d| d.count()) {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(()),
            Ok(0) => Ok(()),
            other => Err(format!("{other:?} entries")),
        },
    );
    let pids = std::fs::read_dir("/proc").map(|d| {
        d.filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .count()
    });
    p.check(
        "other processes invisible",
        match pids {
            Ok(1) => Ok(()),
            other => Err(format!("{other:?} pids visible")),
        },
    );
    p.check(
        "non-process /proc hidden",
        match std::fs::metadata("/proc/meminfo") {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => Err(format!("{:?}", other.map(|_| "visible"))),
        },
    );

    // The control socket: bound under UMask 0077, then given to group wxcard, mode 0660.
    let sock = "/run/wxcardd/control.sock";
    let _ = std::fs::remove_file(sock);
    let listener = UnixListener::bind(sock);
    p.check(
        "bind control socket",
        listener.as_ref().map(|_| ()).map_err(|e| e.to_string()),
    );
    p.check("socket needs chmod after bind", expect_mode(sock, 0o700));
    let wxcard = group_id("wxcard");
    p.check(
        "chown socket to group wxcard",
        match wxcard {
            Some(gid) => std::os::unix::fs::chown(sock, None, Some(gid)).map_err(|e| e.to_string()),
            None => Err("no group wxcard".into()),
        },
    );
    p.check(
        "chmod socket 0660",
        std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| e.to_string())
            .and_then(|()| expect_mode(sock, 0o660)),
    );
    p.check("runtime directory 0755", expect_mode("/run/wxcardd", 0o755));

    // Network: TCP yes (backend, kiosk page), netlink and packet sockets no.
    p.check(
        "tcp over loopback",
        (|| {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            let mut c = std::net::TcpStream::connect(l.local_addr()?)?;
            c.write_all(b"ping")?;
            let (mut s, _) = l.accept()?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf)?;
            Ok::<_, std::io::Error>(())
        })()
        .map_err(|e| e.to_string()),
    );
    p.check(
        "AF_NETLINK refused",
        denied(unsafe { socket(AF_NETLINK, SOCK_RAW, 0) }, EAFNOSUPPORT),
    );
    p.check(
        "AF_PACKET refused",
        denied(unsafe { socket(AF_PACKET, SOCK_RAW, 0) }, EAFNOSUPPORT),
    );

    // System calls outside the filter.
    p.check(
        "setgroups refused",
        denied(unsafe { setgroups(0, std::ptr::null()) }, EPERM),
    );
    let mask = 1u64;
    p.check(
        "sched_setaffinity refused",
        denied(unsafe { sched_setaffinity(0, 8, &mask) }, EPERM),
    );

    // The notify protocol.
    p.check(
        "watchdog 30 s",
        match std::env::var("WATCHDOG_USEC").as_deref() {
            Ok("30000000") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    p.check(
        "journal stream",
        std::env::var("JOURNAL_STREAM")
            .map(|_| ())
            .map_err(|e| e.to_string()),
    );

    let summary = format!("sandbox probe: {} ok, {} failed", p.passed, p.failed);
    println!("{summary}");
    let _ = std::io::stdout().flush();
    if let Err(e) = notify(&format!("READY=1\nSTATUS={summary}")) {
        println!("FAIL notify: {e}");
        std::process::exit(1);
    }
    loop {
        std::thread::sleep(Duration::from_secs(10));
        let _ = notify("WATCHDOG=1");
    }
}
