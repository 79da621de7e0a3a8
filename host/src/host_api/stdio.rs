//! Guest stdout/stderr capture: bytes are split into lines, which `HostState` records in the
//! execution's logs at the guest's replay position (so a replay does not log them twice).
//!
//! A guest controls how much it prints, so capture is bounded per activation
//! (`MAX_CAPTURE_BYTES`); the excess is dropped and counted.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::db::LogStream;

/// The most bytes captured from one activation's stdout and stderr together.
const MAX_CAPTURE_BYTES: usize = 1024 * 1024;
/// A line longer than this is split (a guest may print without newlines).
const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Default)]
struct Buffers {
    partial: [Vec<u8>; 2],
    lines: Vec<(LogStream, String)>,
    captured: usize,
    dropped: usize,
}

impl Buffers {
    fn write(&mut self, idx: usize, bytes: &[u8]) {
        let room = MAX_CAPTURE_BYTES.saturating_sub(self.captured);
        let take = bytes.len().min(room);
        self.dropped += bytes.len() - take;
        self.captured += take;
        let stream = if idx == 0 {
            LogStream::Stdout
        } else {
            LogStream::Stderr
        };
        for &b in &bytes[..take] {
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial[idx]);
                self.lines
                    .push((stream, String::from_utf8_lossy(&line).into_owned()));
            } else {
                self.partial[idx].push(b);
                if self.partial[idx].len() >= MAX_LINE_BYTES {
                    let line = std::mem::take(&mut self.partial[idx]);
                    self.lines
                        .push((stream, String::from_utf8_lossy(&line).into_owned()));
                }
            }
        }
    }
}

/// The capture for one activation.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Buffers>>);

/// One of the guest's output streams. Writes go straight into the capture buffers: no
/// task, no channel, never blocks.
#[derive(Clone)]
pub struct Sink {
    buffers: Arc<Mutex<Buffers>>,
    idx: usize,
}

impl IsTerminal for Sink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Sink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Sink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.buffers.lock().expect("stdio").write(self.idx, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready; bytes over the capture budget are counted and dropped.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Sink {
    async fn ready(&mut self) {}
}

impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buffers.lock().expect("stdio").write(self.idx, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Capture {
    fn stream(&self, idx: usize) -> Sink {
        Sink {
            buffers: self.0.clone(),
            idx,
        }
    }

    pub fn stdout(&self) -> Sink {
        self.stream(0)
    }

    pub fn stderr(&self) -> Sink {
        self.stream(1)
    }

    /// Complete lines captured so far; at the end of an activation, partial lines too.
    pub fn take_lines(&self, at_end: bool) -> Vec<(LogStream, String)> {
        let mut b = self.0.lock().expect("stdio");
        if at_end {
            for (idx, stream) in [(0, LogStream::Stdout), (1, LogStream::Stderr)] {
                if !b.partial[idx].is_empty() {
                    let line = std::mem::take(&mut b.partial[idx]);
                    b.lines
                        .push((stream, String::from_utf8_lossy(&line).into_owned()));
                }
            }
            if b.dropped > 0 {
                let n = std::mem::take(&mut b.dropped);
                b.lines.push((
                    LogStream::Stderr,
                    format!("[{n} bytes of output dropped: over {MAX_CAPTURE_BYTES} bytes in one activation]"),
                ));
            }
        }
        std::mem::take(&mut b.lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_per_stream_and_bounds_capture() {
        let c = Capture::default();
        {
            let mut b = c.0.lock().unwrap();
            b.write(0, b"hello\nwor");
            b.write(1, b"oops\n");
            b.write(0, b"ld\n");
        }
        assert_eq!(
            c.take_lines(false),
            vec![
                (LogStream::Stdout, "hello".into()),
                (LogStream::Stderr, "oops".into()),
                (LogStream::Stdout, "world".into()),
            ]
        );
        c.0.lock()
            .unwrap()
            .write(0, &vec![b'x'; MAX_CAPTURE_BYTES + 10]);
        let lines = c.take_lines(true);
        assert!(
            lines
                .last()
                .unwrap()
                .1
                .contains("27 bytes of output dropped"),
            "{:?}",
            lines.last()
        );
    }
}
