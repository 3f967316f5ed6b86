//! The least a till daemon can do through `../shared/bench/latency.py`: the wake-up floor that
//! the side-by-side figures sit on (BENCHMARKS.md, "Issue 12", part 8).
//!
//! One thread, blocking calls, no parsing beyond a CR: read a code from the pty, then either
//! send one GET over a kept-alive connection to the backend and wait for its whole body
//! (online), or, once the backend has failed, answer from the last body in memory (offline);
//! write one `card` line to the one socket client. No cache on disk, no queue, no checks: not
//! a till, only the cost of the wake-ups (pty worker, daemon, backend, reader) that any
//! implementation pays on this machine.
//!
//! ```text
//! cargo build --release --example floor_till
//! python3 ../shared/bench/latency.py --n 2000 -- target/release/examples/floor_till \
//!     --serial {tty} --socket {socket} --backend 127.0.0.1:PORT
//! ```
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixListener;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut serial, mut socket, mut backend) = (None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next();
        match flag.as_str() {
            "--serial" => serial = value,
            "--socket" => socket = value,
            "--backend" => backend = value,
            _ => return Err(std::io::Error::other(format!("unknown argument {flag}"))),
        }
    }
    let usage = || {
        std::io::Error::other("usage: floor_till --serial TTY --socket PATH [--backend HOST:PORT]")
    };
    let mut tty = std::fs::File::open(serial.ok_or_else(usage)?)?;
    let listener = UnixListener::bind(socket.ok_or_else(usage)?)?;
    let (mut client, _) = listener.accept()?;
    let mut http = match &backend {
        Some(addr) => {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            Some(s)
        }
        None => None,
    };
    let mut last_body = b"{}".to_vec();
    let (mut buf, mut filled) = ([0u8; 256], 0);
    let mut response = Vec::with_capacity(1024);
    loop {
        let n = tty.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        while let Some(end) = buf[..filled].iter().position(|&b| b == b'\r') {
            let code = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.copy_within(end + 1..filled, 0);
            filled -= end + 1;
            if let Some(conn) = http.as_mut() {
                match get(conn, &code, &mut response) {
                    Ok(body) => last_body = body,
                    Err(_) => http = None, // offline from now on: answer from memory
                }
            }
            let mut line =
                format!("{{\"event\":\"card\",\"code\":\"{code}\",\"card\":").into_bytes();
            line.extend_from_slice(&last_body);
            line.extend_from_slice(b"}\n");
            client.write_all(&line)?;
        }
        if filled == buf.len() {
            filled = 0; // no CR in a full buffer: drop it
        }
    }
}

/// One keep-alive GET of getmembercard; the body, read to its Content-Length.
fn get(conn: &mut TcpStream, code: &str, response: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let request = format!(
        "GET /api/weixin/wxcard/getmembercard?wxCode={code}&cardId= HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    );
    conn.write_all(request.as_bytes())?;
    response.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        response.extend_from_slice(&chunk[..n]);
        let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| std::io::Error::other("no content-length"))?;
        if response.len() >= head_end + 4 + length {
            return Ok(response[head_end + 4..head_end + 4 + length].to_vec());
        }
    }
}
