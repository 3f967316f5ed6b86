//! Turns bytes from any backend into [`ScannerEvent`]s: the frame parser, duplicate
//! suppression and a queue of events not yet handed out.
//!
//! Backends read into a fixed buffer and push what they read here, and read again only once
//! the queue is empty; so the queue holds at most one event per two bytes of one read (a
//! code and its terminator), bounded by the backend's read size. Rejected frames
//! are logged once each, with the reason and never the bytes (a code is a member's
//! identifier).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use super::{
    Scan, ScannerError, ScannerEvent, ScannerName,
    dedupe::Dedupe,
    frame::{FrameConfig, FrameParser, Parsed, Reject},
};
#[cfg(feature = "hidpos")]
use super::{Symbology, frame::Frame};

/// Parser, duplicate filter and pending events of one scanner.
#[derive(Debug)]
pub struct Assembler {
    name: ScannerName,
    parser: FrameParser,
    dedupe: Dedupe,
    queue: VecDeque<ScannerEvent>,
}

impl Assembler {
    /// An assembler for the scanner `name`.
    pub fn new(
        name: ScannerName,
        frame: &FrameConfig,
        duplicate_window: Duration,
    ) -> Result<Self, ScannerError> {
        let parser = FrameParser::new(frame)
            .map_err(|e| ScannerError::Config(format!("scanner {name}: {e}")))?;
        Ok(Assembler {
            name,
            parser,
            dedupe: Dedupe::new(duplicate_window),
            queue: VecDeque::new(),
        })
    }

    /// The scanner's name.
    pub fn name(&self) -> &ScannerName {
        &self.name
    }

    /// Feeds bytes that arrived at `now`.
    pub fn push(&mut self, bytes: &[u8], now: Instant) {
        let Self {
            name,
            parser,
            dedupe,
            queue,
        } = self;
        parser.push(bytes, now, &mut |p| deliver(name, dedupe, queue, p));
    }

    /// Delivers a frame that arrived whole (a HID POS scan, reassembled from its reports):
    /// `symbology`, when the reports carried one, wins over an AIM id in the data.
    #[cfg(feature = "hidpos")]
    pub(crate) fn push_whole(&mut self, frame: &[u8], symbology: Option<Symbology>, at: Instant) {
        let parsed = match self.parser.whole(frame) {
            Ok((code, in_data)) => Parsed::Frame(Frame {
                code,
                symbology: symbology.or(in_data),
                at,
            }),
            Err(reason) => Parsed::Rejected(reason),
        };
        deliver(&self.name, &mut self.dedupe, &mut self.queue, parsed);
    }

    /// Rejects a frame the backend found bad itself, with the reason.
    #[cfg(feature = "hidpos")]
    pub(crate) fn reject(&mut self, reason: Reject) {
        deliver(
            &self.name,
            &mut self.dedupe,
            &mut self.queue,
            Parsed::Rejected(reason),
        );
    }

    /// Events waiting to be handed out.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Marks the frame in progress as bad (see [`FrameParser::poison`]).
    pub fn poison(&mut self, reason: Reject, now: Instant) {
        self.parser.poison(reason, now);
    }

    /// When the frame in progress ends by idle timeout, if it can.
    pub fn deadline(&self) -> Option<Instant> {
        self.parser.deadline()
    }

    /// Ends the frame in progress if its idle timeout passed.
    pub fn poll_idle(&mut self, now: Instant) {
        let Self {
            name,
            parser,
            dedupe,
            queue,
        } = self;
        parser.poll_idle(now, &mut |p| deliver(name, dedupe, queue, p));
    }

    /// The device went away: a frame in progress is reported cut short, and the duplicate
    /// filter forgets the last code.
    pub fn device_lost(&mut self) {
        let Self {
            name,
            parser,
            dedupe,
            queue,
        } = self;
        parser.abandon(&mut |p| deliver(name, dedupe, queue, p));
        dedupe.clear();
    }

    #[cfg(any(feature = "serial", feature = "evdev", feature = "hidpos"))]
    /// Queues an event of the backend's own (a disconnection) behind the pending ones.
    pub(crate) fn report(&mut self, event: ScannerEvent) {
        self.queue.push_back(event);
    }

    /// The next pending event.
    pub fn pop(&mut self) -> Option<ScannerEvent> {
        self.queue.pop_front()
    }
}

fn deliver(
    name: &ScannerName,
    dedupe: &mut Dedupe,
    queue: &mut VecDeque<ScannerEvent>,
    parsed: Parsed,
) {
    match parsed {
        Parsed::Frame(frame) => {
            if dedupe.admit(&frame.code, frame.at) {
                queue.push_back(ScannerEvent::Scan(Scan {
                    code: frame.code,
                    symbology: frame.symbology,
                    scanner: name.clone(),
                    at: frame.at,
                }));
            } else {
                log::debug!("scanner {name}: repeated code suppressed");
            }
        }
        Parsed::Rejected(reason) => {
            log::warn!("scanner {name}: frame rejected: {reason}");
            queue.push_back(ScannerEvent::Rejected { reason });
        }
    }
}
