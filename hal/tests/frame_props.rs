//! Property tests: the parser takes any bytes without panicking, never emits a code over its
//! capacity or with control characters, and gives the same result however the input is
//! chunked.

use std::time::Instant;

use proptest::prelude::*;
use wxcard_hal::scanner::{
    Assembler, CODE_CAPACITY, FrameConfig, FrameParser, Parsed, ScannerName, evdev::Wedge,
    frame::Terminator,
};

fn configs() -> impl Strategy<Value = FrameConfig> {
    (
        prop::sample::subsequence(
            vec![
                Terminator::Cr,
                Terminator::Lf,
                Terminator::Crlf,
                Terminator::Tab,
                Terminator::Etx,
                Terminator::Eot,
                Terminator::Space,
            ],
            1..4,
        ),
        any::<bool>(),
        prop::sample::select(vec!["", "DL:", "]", "\u{2}"]),
        prop::sample::select(vec!["", "#", "\r"]),
        any::<bool>(),
    )
        .prop_map(|(terminators, stx, prefix, suffix, aim)| FrameConfig {
            terminators,
            stx,
            prefix: prefix.into(),
            suffix: suffix.into(),
            aim,
            idle_timeout_ms: 0,
        })
}

/// Bytes that look like scanner traffic often enough to hit every branch: codes,
/// terminators, STX/ETX, AIM ids, long runs, arbitrary bytes.
fn traffic() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(
            prop::sample::select(b"0123456789]QE1\r\n\t\x02\x03 #DL:".to_vec()),
            0..40
        ),
        (1usize..600).prop_map(|n| vec![b'9'; n]),
        Just("码\r".as_bytes().to_vec()),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// All chunks arrive at the same instant, so results compare equal in full.
fn parse(config: &FrameConfig, bytes: &[u8], cuts: &[usize]) -> Vec<Parsed> {
    static NOW: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    let now = *NOW;
    let mut parser = FrameParser::new(config).expect("generated configs are valid");
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        parser.push(&bytes[start..cut], now, &mut |p| out.push(p));
        start = cut;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn chunking_never_changes_the_frames(config in configs(), bytes in traffic(), cuts in prop::collection::vec(any::<usize>(), 0..20)) {
        let whole = parse(&config, &bytes, &[]);
        prop_assert_eq!(&parse(&config, &bytes, &cuts), &whole);
        for parsed in &whole {
            if let Parsed::Frame(frame) = parsed {
                prop_assert!(!frame.code.is_empty() && frame.code.len() <= CODE_CAPACITY);
                prop_assert!(!frame.code.chars().any(char::is_control));
            }
        }
    }

    #[test]
    fn byte_at_a_time_equals_one_piece(bytes in traffic()) {
        let config = FrameConfig::default();
        let every: Vec<usize> = (0..bytes.len()).collect();
        prop_assert_eq!(parse(&config, &bytes, &every), parse(&config, &bytes, &[]));
    }

    #[test]
    fn any_bytes_through_the_wedge(bytes in prop::collection::vec(any::<u8>(), 0..2000), cut in any::<usize>()) {
        let name = ScannerName::try_from("p").unwrap();
        let now = Instant::now();
        let run = |pieces: &[&[u8]]| {
            let mut assembler = Assembler::new(name.clone(), &FrameConfig::default(), std::time::Duration::ZERO).unwrap();
            let mut wedge = Wedge::new();
            for piece in pieces {
                wedge.feed(piece, now, &mut assembler);
            }
            let mut lines = Vec::new();
            while let Some(event) = assembler.pop() {
                lines.push(format!("{event:?}"));
            }
            lines
        };
        let cut = cut % (bytes.len() + 1);
        prop_assert_eq!(run(&[&bytes[..cut], &bytes[cut..]]), run(&[&bytes]));
    }
}
