//! A control connection's two halves, registered with the runtime for reading only.
//!
//! Why not tokio's `UnixStream` halves: tokio registers a stream for readable *and* writable
//! events, and a Unix socket reports "writable" to epoll every time its peer reads (the
//! kernel's `unix_write_space` runs when the peer consumes a line). Every event line a POS app
//! read woke the daemon once more for nothing: a context switch per line per subscriber,
//! measured as the extra wake-up of an online scan (BENCHMARKS.md, "Issue 12", part 8).
//!
//! Here the socket is registered for reading only. Writes are tried at once (the socket
//! mostly takes a line whole); only when it is full does [`WriteHalf::write`] register a
//! duplicate of the descriptor for writability, wait, and drop it again. A slow client costs
//! that registration; a reading one costs nothing.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

/// Splits a connection into its halves, registered for reading only.
pub fn split(stream: tokio::net::UnixStream) -> io::Result<(ReadHalf, WriteHalf)> {
    let stream = stream.into_std()?; // leaves tokio's registration; non-blocking still
    // SAFETY: the AsyncFd owns the stream, whose descriptor stays open and the same until the
    // AsyncFd is dropped.
    let fd = unsafe { AsyncFd::register_with_interest(stream, Interest::READABLE) }?;
    let fd = Arc::new(fd);
    Ok((ReadHalf(Arc::clone(&fd)), WriteHalf(fd)))
}

/// The reading half: an `AsyncRead`.
pub struct ReadHalf(Arc<AsyncFd<StdUnixStream>>);

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                let mut stream: &StdUnixStream = fd.get_ref();
                stream.read(unfilled)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// The writing half.
pub struct WriteHalf(Arc<AsyncFd<StdUnixStream>>);

impl WriteHalf {
    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        let mut stream: &StdUnixStream = self.0.get_ref();
        stream.write(bytes)
    }

    /// Writes at least one byte, waiting for room if the socket is full.
    pub async fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        loop {
            match self.try_write(bytes) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    /// Waits until the socket has room, through a duplicate descriptor registered for
    /// writability for this wait only (epoll keeps one registration per descriptor).
    async fn writable(&self) -> io::Result<()> {
        let dup = self.0.get_ref().as_fd().try_clone_to_owned()?;
        // SAFETY: the AsyncFd owns the duplicate, open until the AsyncFd is dropped.
        let waiter = unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }?;
        let mut guard = waiter.writable().await?;
        guard.clear_ready();
        Ok(())
    }

    /// Shuts the writing direction down: the peer reads the end.
    pub fn shutdown(&self) -> io::Result<()> {
        self.0.get_ref().shutdown(Shutdown::Write)
    }
}

impl AsRawFd for WriteHalf {
    fn as_raw_fd(&self) -> RawFd {
        self.0.get_ref().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_full_socket_is_waited_for_and_every_byte_arrives_in_order() {
        let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
        let (_read, write) = split(ours).unwrap();
        let total = 4 * 1024 * 1024; // far more than a socket buffer holds
        let bytes: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let expected = bytes.clone();
        let reader = tokio::spawn(async move {
            let mut theirs = theirs;
            let mut got = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            while got.len() < total {
                // Slowly, so the writer finds the socket full again and again.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                let n = theirs.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&chunk[..n]);
            }
            got
        });
        let mut sent = 0;
        while sent < total {
            sent += write.write(&bytes[sent..]).await.unwrap();
        }
        assert_eq!(reader.await.unwrap(), expected);
    }

    #[tokio::test]
    async fn reads_see_lines_and_the_end() {
        let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
        let (mut read, _write) = split(ours).unwrap();
        let mut theirs = theirs;
        tokio::io::AsyncWriteExt::write_all(&mut theirs, b"hello\n")
            .await
            .unwrap();
        drop(theirs);
        let mut all = Vec::new();
        read.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"hello\n");
    }
}
