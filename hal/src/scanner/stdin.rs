//! Codes typed or piped on standard input, one per line: for the demo, and for manual entry
//! at the till when a scanner breaks.
//!
//! Lines go through the same frame parser as scanner bytes (so the same limits and rejections
//! apply); a last line without a newline still counts at end of input, after which the source
//! ends with [`ScannerError::Closed`]. [`LineScanner`] takes any `AsyncRead`, so a pipe or a
//! socket works the same way as stdin.

use std::{io, time::Duration, time::Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{
    Assembler, FrameConfig, ScanSource, ScannerError, ScannerEvent, ScannerName, scanner_name,
};

/// Read buffer size; it bounds the events one read can queue, as for devices.
const READ_BUFFER: usize = 1024;

/// A line-per-code source over any reader.
pub struct LineScanner<R> {
    reader: R,
    assembler: Assembler,
    connected: bool,
    ended: bool,
    buf: Box<[u8]>,
}

/// The stdin scanner.
pub type StdinScanner = LineScanner<tokio::io::Stdin>;

impl StdinScanner {
    /// A scanner named `name` reading this process's standard input.
    pub fn stdin(
        name: &str,
        frame: &FrameConfig,
        duplicate_window: Duration,
    ) -> Result<Self, ScannerError> {
        LineScanner::new(name, tokio::io::stdin(), frame, duplicate_window)
    }
}

impl<R: AsyncRead + Unpin + Send> LineScanner<R> {
    /// A scanner named `name` reading lines from `reader`.
    pub fn new(
        name: &str,
        reader: R,
        frame: &FrameConfig,
        duplicate_window: Duration,
    ) -> Result<Self, ScannerError> {
        Ok(LineScanner {
            reader,
            assembler: Assembler::new(scanner_name(name)?, frame, duplicate_window)?,
            connected: false,
            ended: false,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
        })
    }
}

impl<R: AsyncRead + Unpin + Send> ScanSource for LineScanner<R> {
    fn name(&self) -> &ScannerName {
        self.assembler.name()
    }

    async fn next_event(&mut self) -> Result<ScannerEvent, ScannerError> {
        if !self.connected {
            self.connected = true;
            return Ok(ScannerEvent::Connected);
        }
        loop {
            if let Some(event) = self.assembler.pop() {
                return Ok(event);
            }
            if self.ended {
                return Err(ScannerError::Closed);
            }
            match self.reader.read(&mut self.buf).await {
                Ok(0) => {
                    self.ended = true;
                    // End of input ends a last line that had no newline.
                    self.assembler.push(b"\n", Instant::now());
                }
                Ok(n) => self.assembler.push(&self.buf[..n], Instant::now()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    self.ended = true;
                    return Err(ScannerError::Read {
                        path: "stdin".into(),
                        source,
                    });
                }
            }
        }
    }
}
