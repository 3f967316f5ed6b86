//! Frame parser cases through the public API: terminators, STX/ETX, AIM ids, prefix and
//! suffix, the capacity limit, rejections, the idle timeout, refused settings.

use std::time::{Duration, Instant};

use wxcard_hal::scanner::{
    CODE_CAPACITY, FrameConfig, FrameParser, Parsed, Reject, frame::FrameConfigError,
};
fn parse_all(config: &FrameConfig, chunks: &[&[u8]]) -> Vec<Parsed> {
    let mut parser = FrameParser::new(config).expect("config");
    let now = Instant::now();
    let mut out = Vec::new();
    for chunk in chunks {
        parser.push(chunk, now, &mut |p| out.push(p));
    }
    out
}

fn codes(out: &[Parsed]) -> Vec<String> {
    out.iter()
        .map(|p| match p {
            Parsed::Frame(f) => match f.symbology {
                Some(s) => format!("{s} {}", f.code),
                None => f.code.to_string(),
            },
            Parsed::Rejected(r) => format!("rejected: {r}"),
        })
        .collect()
}

#[test]
fn cr_and_crlf_end_frames_and_split_codes_join() {
    let out = parse_all(&FrameConfig::default(), &[b"0123", b"45\r\n67", b"89\r"]);
    assert_eq!(codes(&out), ["012345", "6789"]);
}

#[test]
fn stx_etx_with_aim_id_prefix_and_suffix() {
    let config = FrameConfig {
        prefix: "PRE".into(),
        suffix: "#".into(),
        ..FrameConfig::default()
    };
    let out = parse_all(&config, &[b"junk\x02PRE]Q1", b"123456789012#\x03"]);
    assert_eq!(
        codes(&out),
        [
            "rejected: frame of 4 bytes cut short before its terminator",
            "]Q1 123456789012"
        ]
    );
}

#[test]
fn aim_off_keeps_the_bracket() {
    let config = FrameConfig {
        aim: false,
        ..FrameConfig::default()
    };
    assert_eq!(codes(&parse_all(&config, &[b"]E0123\r"])), ["]E0123"]);
}

#[test]
fn too_long_frame_is_dropped_once_up_to_its_terminator() {
    let long = vec![b'7'; 5000];
    let out = parse_all(&FrameConfig::default(), &[&long, &long, b"\r42\r"]);
    assert_eq!(out[0], Parsed::Rejected(Reject::TooLong { len: 10_000 }));
    assert_eq!(codes(&out[1..]), ["42"]);
}

#[test]
fn exactly_capacity_is_accepted_one_more_is_not() {
    let mut frame = vec![b'1'; CODE_CAPACITY];
    frame.push(b'\r');
    assert_eq!(
        codes(&parse_all(&FrameConfig::default(), &[&frame])).len(),
        1
    );
    assert!(matches!(
        parse_all(&FrameConfig::default(), &[&frame])[0],
        Parsed::Frame(_)
    ));
    let mut frame = vec![b'1'; CODE_CAPACITY + 1];
    frame.push(b'\r');
    assert_eq!(
        parse_all(&FrameConfig::default(), &[&frame]),
        [Parsed::Rejected(Reject::TooLong {
            len: CODE_CAPACITY + 1
        })]
    );
}

#[test]
fn control_chars_and_bad_utf8_reject_with_a_reason() {
    let out = parse_all(
        &FrameConfig::default(),
        &[b"12\x1b34\r", b"ab\xff\r", "码123\r".as_bytes()],
    );
    assert_eq!(
        out[..2],
        [
            Parsed::Rejected(Reject::ControlChar {
                byte: 0x1b,
                offset: 2
            }),
            Parsed::Rejected(Reject::InvalidUtf8 { offset: 2 }),
        ]
    );
    assert_eq!(codes(&out[2..]), ["码123"]);
}

/// Valid UTF-8 that would still garble a log line or the screen: a C1 control (found by the
/// chunking proptest as `C2 80`), a bidi override, a line separator.
#[test]
fn c1_controls_and_bidi_overrides_reject_with_a_reason() {
    let out = parse_all(
        &FrameConfig::default(),
        &[
            "12\u{85}34\r".as_bytes(),
            "ab\u{202e}c\r".as_bytes(),
            "x\u{2028}\r".as_bytes(),
        ],
    );
    assert_eq!(
        out,
        [
            Parsed::Rejected(Reject::UnsafeChar {
                code: 0x85,
                offset: 2
            }),
            Parsed::Rejected(Reject::UnsafeChar {
                code: 0x202e,
                offset: 2
            }),
            Parsed::Rejected(Reject::UnsafeChar {
                code: 0x2028,
                offset: 1
            }),
        ]
    );
}

#[test]
fn idle_timeout_ends_an_unterminated_frame() {
    let config = FrameConfig {
        terminators: vec![],
        idle_timeout_ms: 50,
        ..FrameConfig::default()
    };
    let mut parser = FrameParser::new(&config).unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    parser.push(b"1234", t0, &mut |p| out.push(p));
    parser.push(b"5678", t0 + Duration::from_millis(40), &mut |p| {
        out.push(p)
    });
    assert_eq!(parser.deadline(), Some(t0 + Duration::from_millis(90)));
    parser.poll_idle(t0 + Duration::from_millis(89), &mut |p| out.push(p));
    assert!(out.is_empty());
    parser.poll_idle(t0 + Duration::from_millis(90), &mut |p| out.push(p));
    assert_eq!(codes(&out), ["12345678"]);
    let Parsed::Frame(f) = &out[0] else {
        unreachable!()
    };
    assert_eq!(f.at, t0 + Duration::from_millis(40));
    assert_eq!(parser.deadline(), None);
    // A gap longer than the timeout splits codes even when they come in one push call each.
    parser.push(b"11", t0 + Duration::from_secs(1), &mut |p| out.push(p));
    parser.push(b"22", t0 + Duration::from_secs(2), &mut |p| out.push(p));
    assert_eq!(codes(&out[1..]), ["11"]);
}

#[test]
fn bad_config_is_refused() {
    let config = FrameConfig {
        terminators: vec![],
        ..FrameConfig::default()
    };
    assert_eq!(
        FrameParser::new(&config).unwrap_err(),
        FrameConfigError::NeverEnds
    );
    let config = FrameConfig {
        prefix: "x".repeat(33),
        ..FrameConfig::default()
    };
    assert!(matches!(
        FrameParser::new(&config),
        Err(FrameConfigError::AffixTooLong {
            which: "prefix",
            len: 33
        })
    ));
}
