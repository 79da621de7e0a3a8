//! Serving the API over HTTP/1.1 connections: accept, per-connection limits, graceful
//! shutdown. `axum::serve` exposes no timeouts, so connections are served here with
//! hyper-util's connection builder and a tokio timer.
//!
//! Per connection: `TCP_NODELAY` (without it every small write after the first, such as
//! each SSE frame, waits for the client's delayed ACK, ~40 ms); a header-read timeout
//! (hyper runs it whenever the connection waits for a request head, so it bounds slow
//! heads and idle kept-alive connections alike); and a refusal of requests whose head
//! carries both `Content-Length` and `Transfer-Encoding` (request smuggling), which hyper
//! would otherwise accept by dropping `Content-Length` before the router sees it.
//!
//! Durability at the point of output (`durable_output`, the layer `api::router` puts around
//! every route):
//! a response leaves only once everything written before it was made is on disk
//! (`Store::durable_barrier`: free when it already is, one shared fdatasync otherwise), so no
//! client is ever shown a write that a crash could take back. Writes themselves need not
//! wait for the disk. The live history stream also waits for it before each frame
//! (`api::executions`). Only `/healthz` and `/metrics` answer without it: they report on the
//! host (and must keep answering after a fail-stop), not on what it stored.
//!
//! Must not: know routes or handlers (that is `api::router`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use super::ApiError;
use crate::Host;

/// How long a shutdown waits for requests in flight. A live history stream ends only with
/// its execution, so the wait must be bounded; clients reconnect with their last event id.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serve the API on `listener` until `shutdown` resolves; then stop accepting, let the
/// requests in flight finish (up to `SHUTDOWN_GRACE`) and return.
pub async fn serve(
    listener: TcpListener,
    host: Arc<Host>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let header_read_timeout = host.opts.header_read_timeout;
    serve_router(listener, super::router(host), header_read_timeout, shutdown).await
}

/// After the handler, before the response leaves: wait until everything written so far is
/// on disk. A barrier that fails (the store stopped writing) replaces the response with the
/// error: what it would have shown may not survive a restart.
pub(super) async fn durable_output(
    axum::extract::State(host): axum::extract::State<Arc<Host>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let exempt = matches!(req.uri().path(), "/healthz" | "/metrics");
    let resp = next.run(req).await;
    if exempt {
        return resp;
    }
    match host.db.durable_barrier().await {
        Ok(()) => resp,
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Serve `GET /metrics` alone, without authentication, on `listener` (`--metrics-listen`),
/// with the same connection handling as the API, until `shutdown` resolves.
pub async fn serve_metrics(
    listener: TcpListener,
    host: Arc<Host>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let header_read_timeout = host.opts.header_read_timeout;
    let router = super::operations::metrics_router(host);
    serve_router(listener, router, header_read_timeout, shutdown).await
}

async fn serve_router(
    listener: TcpListener,
    router: axum::Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: the listener is still good.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, "TCP_NODELAY not set");
        }
        let smuggled = Arc::new(AtomicBool::new(false));
        let io = TokioIo::new(Sniffed {
            inner: stream,
            heads: HeadScanner::default(),
            smuggled: smuggled.clone(),
        });
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let router = router.clone();
                let smuggled = smuggled.load(Ordering::Relaxed);
                async move {
                    if smuggled {
                        return Ok(refuse_smuggled());
                    }
                    router.oneshot(req.map(axum::body::Body::new)).await
                }
            });
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let conn = builder.serve_connection_with_upgrades(io, service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.changed() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(());
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::info!("shutdown: closing the connections still open");
    }
    Ok(())
}

/// The answer to a request with both `Content-Length` and `Transfer-Encoding`; the
/// connection is closed after it (its framing cannot be trusted).
fn refuse_smuggled() -> axum::response::Response {
    let mut resp = ApiError::BadRequest(
        "a request with both Content-Length and Transfer-Encoding is refused".into(),
    )
    .into_response();
    resp.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// A connection's reads, scanned for request heads that carry both framing headers.
struct Sniffed {
    inner: TcpStream,
    heads: HeadScanner,
    smuggled: Arc<AtomicBool>,
}

impl AsyncRead for Sniffed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let this = &mut *self;
            if this.heads.scan(&buf.filled()[before..]) {
                this.smuggled.store(true, Ordering::Relaxed);
            }
        }
        res
    }
}

impl AsyncWrite for Sniffed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The longest line prefix kept: enough for the header names and request lines it looks
/// for; longer lines are judged by their start.
const LINE_PREFIX: usize = 64;

/// Finds, in a byte stream, blocks of lines that start with an HTTP/1 request line and
/// end with an empty line (a request head) and carry both a `Content-Length` and a
/// `Transfer-Encoding` header. It does not follow body framing: a body that embeds such a
/// head is flagged too, which only refuses a request that carries a smuggling attempt.
#[derive(Default)]
struct HeadScanner {
    line: Vec<u8>,
    line_len: usize,
    /// The current block began with a request line.
    in_head: bool,
    content_length: bool,
    transfer_encoding: bool,
}

impl HeadScanner {
    /// Scan more bytes; true once a head with both headers has ended in them.
    fn scan(&mut self, bytes: &[u8]) -> bool {
        let mut found = false;
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() < LINE_PREFIX {
                    self.line.push(b.to_ascii_lowercase());
                }
                self.line_len += 1;
                continue;
            }
            let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
            if self.line_len <= 1 && line.is_empty() {
                found |= self.in_head && self.content_length && self.transfer_encoding;
                self.in_head = false;
                self.content_length = false;
                self.transfer_encoding = false;
            } else if !self.in_head {
                self.in_head = is_request_line(line);
            } else {
                self.content_length |= line.starts_with(b"content-length:");
                self.transfer_encoding |= line.starts_with(b"transfer-encoding:");
            }
            self.line.clear();
            self.line_len = 0;
        }
        found
    }
}

/// `METHOD SP target SP HTTP/1.x` (lowercased, possibly cut to `LINE_PREFIX`): a method
/// of letters, then a space.
fn is_request_line(line: &[u8]) -> bool {
    let method = line.iter().take_while(|b| b.is_ascii_lowercase()).count();
    method > 0 && line.get(method) == Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_with_both_framing_headers_are_found_wherever_the_reads_split() {
        let both = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let cases: [(&[u8], bool); 5] = [
            (both, true),
            (b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", false),
            (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", false),
            // A body's lines are not headers unless they follow a request line.
            (b"PUT /x HTTP/1.1\r\nContent-Length: 50\r\n\r\nxx\r\ntransfer-encoding: a\r\n\r\n", false),
            // A second, pipelined head.
            (
                b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 1\r\n\r\n",
                true,
            ),
        ];
        for (bytes, expected) in cases {
            for split in 0..bytes.len() {
                let mut s = HeadScanner::default();
                let found = s.scan(&bytes[..split]) | s.scan(&bytes[split..]);
                assert_eq!(
                    found,
                    expected,
                    "{:?} split at {split}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }
}
