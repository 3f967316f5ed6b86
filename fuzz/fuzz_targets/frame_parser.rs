//! Fuzzes the scanner frame parser and the evdev keyboard-wedge decoder: no input may make
//! them panic, emit a code over capacity or with control characters, or give a different
//! result when the same bytes arrive in different chunks.
//!
//! The first two bytes choose the settings and where the input is cut; the rest is the wire.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wxcard_hal::scanner::{
    Assembler, CODE_CAPACITY, FrameConfig, FrameParser, Parsed, ScannerName, evdev::Wedge,
    frame::Terminator,
};

fn config(bits: u8) -> FrameConfig {
    let all = [
        Terminator::Cr,
        Terminator::Lf,
        Terminator::Tab,
        Terminator::Etx,
        Terminator::Crlf,
    ];
    let terminators: Vec<Terminator> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, t)| *t)
        .collect();
    FrameConfig {
        terminators: if terminators.is_empty() {
            vec![Terminator::Cr]
        } else {
            terminators
        },
        stx: bits & 0x20 != 0,
        prefix: if bits & 0x40 != 0 {
            "DL:".into()
        } else {
            String::new()
        },
        suffix: if bits & 0x80 != 0 {
            "#".into()
        } else {
            String::new()
        },
        aim: bits & 0x10 != 0,
        idle_timeout_ms: 0,
    }
}

fn parse(config: &FrameConfig, pieces: &[&[u8]], now: Instant) -> Vec<Parsed> {
    let mut parser = FrameParser::new(config).expect("valid settings");
    let mut out = Vec::new();
    for piece in pieces {
        parser.push(piece, now, &mut |p| out.push(p));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [bits, cut, wire @ ..] = data else { return };
    let config = config(*bits);
    let now = Instant::now();
    let cut = usize::from(*cut) % (wire.len() + 1);
    let whole = parse(&config, &[wire], now);
    assert_eq!(parse(&config, &[&wire[..cut], &wire[cut..]], now), whole);
    for parsed in &whole {
        if let Parsed::Frame(frame) = parsed {
            assert!(!frame.code.is_empty() && frame.code.len() <= CODE_CAPACITY);
            assert!(!frame.code.chars().any(char::is_control));
        }
    }

    let name = ScannerName::try_from("fuzz").unwrap();
    let mut assembler = Assembler::new(name, &config, Duration::ZERO).unwrap();
    let mut wedge = Wedge::new();
    wedge.feed(&wire[..cut], now, &mut assembler);
    wedge.feed(&wire[cut..], now, &mut assembler);
    while assembler.pop().is_some() {}
});
