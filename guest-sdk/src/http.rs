//! A small blocking outbound HTTP client over raw `wasi:http/outgoing-handler` 0.2 calls.
//!
//! Owns URL parsing and the request/response plumbing. The outgoing body is written and
//! finished *before* `outgoing-handler.handle` is called (a client that races writing an
//! empty body with sending the request sees spurious "connection reset" errors that also
//! hide a host denial). Only a body too large for the host's buffer is streamed after the
//! request is sent.
//!
//! **Call it only inside a step.** An HTTP response is not deterministic: the same request
//! can answer differently on a replay, so code outside a step that branches on it would
//! diverge from the journal. Inside a step the response is used once and only the step's
//! result is replayed.
//!
//! The host forwards only requests to hosts its operator allows. A denied or failed request
//! returns an [`Error`] of type `HttpError` whose message names the wasi error code (e.g.
//! `HttpRequestDenied`, `ConnectionRefused`). A non-2xx status is not an error: check
//! [`Response::status`].
//!
//! ```no_run
//! # fn demo(ctx: &mut durable_sdk::Context) -> Result<(), durable_sdk::Error> {
//! use durable_sdk::http;
//!
//! let status: u16 = ctx.step("notify", |_| {
//!     let response = http::post_json("https://example.com/hook", &serde_json::json!({"ok": true}))?;
//!     Ok(response.status)
//! })?;
//! # let _ = status; Ok(()) }
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, FutureIncomingResponse, IncomingBody, IncomingResponse, Method, OutgoingBody,
    OutgoingRequest, Scheme,
};
use wasip2::io::streams::{OutputStream, StreamError};

use crate::error::Error;

/// The error type of every failed request.
const HTTP_ERROR: &str = "HttpError";

/// How many bytes to ask for per read of the response body.
const READ_CHUNK: u64 = 64 * 1024;

/// An HTTP response: the status and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, read to the end.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced with U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body deserialized from JSON; a body that is not a `T` gives an error of type
    /// `HttpError`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(
                HTTP_ERROR,
                format!(
                    "the response body (status {}) is not the expected JSON: {e}",
                    self.status
                ),
            )
        })
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    Request::new("GET", url).send()
}

/// `POST url` with `body` serialized as JSON (`content-type: application/json`).
pub fn post_json<T: Serialize + ?Sized>(url: &str, body: &T) -> Result<Response, Error> {
    Request::new("POST", url).json(body)?.send()
}

/// A request to build up and [`send`](Self::send), for methods, headers or bodies that
/// [`get`] and [`post_json`] do not cover.
///
/// ```no_run
/// # fn demo() -> Result<(), durable_sdk::Error> {
/// use durable_sdk::http::Request;
/// let response = Request::new("PUT", "http://127.0.0.1:8080/items/1")
///     .header("authorization", "Bearer token")
///     .body("hello")
///     .send()?;
/// # let _ = response; Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// A request with this method (`GET`, `POST`, ... or any other token) and URL
    /// (`http://host[:port][/path][?query]` or `https://...`), no headers and no body.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` serialized as JSON and adds `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let body = serde_json::to_vec(value)?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, Error> {
        if let Some(answer) = crate::host::http_send(&self) {
            return answer;
        }
        let url = Url::parse(&self.url)
            .map_err(|why| Error::new(HTTP_ERROR, format!("invalid URL {:?}: {why}", self.url)))?;
        let what = format!("{} {}", self.method, self.url);
        let fail = |why: String| Error::new(HTTP_ERROR, format!("{what} failed: {why}"));

        let entries: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.as_bytes().to_vec()))
            .collect();
        let headers = wasip2::http::types::Fields::from_list(&entries)
            .map_err(|e| fail(format!("invalid header: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        request
            .set_method(&method(&self.method))
            .map_err(|()| fail("invalid method".into()))?;
        request
            .set_scheme(Some(&url.scheme))
            .map_err(|()| fail("invalid scheme".into()))?;
        request
            .set_authority(Some(url.authority))
            .map_err(|()| fail("invalid authority".into()))?;
        request
            .set_path_with_query(Some(&url.path_with_query))
            .map_err(|()| fail("invalid path".into()))?;

        let body = request
            .body()
            .map_err(|()| fail("request body unavailable".into()))?;
        let stream = body
            .write()
            .map_err(|()| fail("request body stream unavailable".into()))?;
        let buffered =
            write_without_blocking(&stream, &self.body).map_err(|e| fail(stream_error(e)))?;
        let future = if buffered == self.body.len() {
            // The usual case: the whole body is with the host; finish it, then send.
            drop(stream);
            OutgoingBody::finish(body, None).map_err(|e| fail(code(&e)))?;
            outgoing_handler::handle(request, None).map_err(|e| fail(code(&e)))?
        } else {
            // A body larger than the host buffers: send the request, then stream the rest.
            let future = outgoing_handler::handle(request, None).map_err(|e| fail(code(&e)))?;
            write_blocking(&stream, &self.body[buffered..]).map_err(|e| fail(stream_error(e)))?;
            drop(stream);
            OutgoingBody::finish(body, None).map_err(|e| fail(code(&e)))?;
            future
        };

        let response = await_response(&future).map_err(fail)?;
        let status = response.status();
        let body = read_body(&response).map_err(fail)?;
        Ok(Response { status, body })
    }
}

/// Writes as much of `data` as the stream accepts without waiting; returns how much.
fn write_without_blocking(stream: &OutputStream, data: &[u8]) -> Result<usize, StreamError> {
    let mut written = 0;
    while written < data.len() {
        let permitted = usize::try_from(stream.check_write()?).unwrap_or(usize::MAX);
        if permitted == 0 {
            break;
        }
        let end = data.len().min(written.saturating_add(permitted));
        stream.write(&data[written..end])?;
        written = end;
    }
    Ok(written)
}

/// Writes all of `data`, waiting for the stream whenever it is full, then flushes.
fn write_blocking(stream: &OutputStream, data: &[u8]) -> Result<(), StreamError> {
    let mut written = 0;
    while written < data.len() {
        written += write_without_blocking(stream, &data[written..])?;
        if written < data.len() {
            stream.subscribe().block();
        }
    }
    stream.blocking_flush()
}

fn await_response(future: &FutureIncomingResponse) -> Result<IncomingResponse, String> {
    loop {
        match future.get() {
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(e))) => return Err(code(&e)),
            Some(Err(())) => return Err("the response was already taken".into()),
            None => future.subscribe().block(),
        }
    }
}

fn read_body(response: &IncomingResponse) -> Result<Vec<u8>, String> {
    let body = response
        .consume()
        .map_err(|()| "response body unavailable".to_string())?;
    let stream = body
        .stream()
        .map_err(|()| "response body stream unavailable".to_string())?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(format!("reading the response body: {}", stream_error(e))),
        }
    }
    drop(stream);
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

fn method(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(name.to_string()),
    }
}

/// The wasi error code's name, e.g. `HttpRequestDenied` or `DnsError(...)`.
fn code(e: &ErrorCode) -> String {
    let text = format!("{e:?}");
    match text.strip_prefix("ErrorCode::") {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::Closed => "stream closed".to_string(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

/// The parts of an `http` or `https` URL that a wasi request needs.
#[derive(Debug)]
struct Url<'a> {
    scheme: Scheme,
    authority: &'a str,
    path_with_query: String,
}

impl<'a> Url<'a> {
    /// Parses `scheme://authority[/path][?query][#fragment]`; the fragment is dropped and an
    /// empty path becomes `/`.
    fn parse(url: &'a str) -> Result<Self, &'static str> {
        let (scheme, rest) = url.split_once("://").ok_or("missing scheme")?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err("only http and https are supported"),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() {
            return Err("missing host");
        }
        if authority.contains('@') {
            return Err("credentials in URLs are not supported");
        }
        if authority.chars().any(char::is_whitespace) || path.chars().any(char::is_whitespace) {
            return Err("whitespace in URL");
        }
        let path_with_query = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Ok(Self {
            scheme,
            authority,
            path_with_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (bool, String, String) {
        let u = Url::parse(url).unwrap();
        (
            matches!(u.scheme, Scheme::Https),
            u.authority.to_string(),
            u.path_with_query,
        )
    }

    #[test]
    fn parses_host_port_path_and_query() {
        assert_eq!(
            parts("http://127.0.0.1:8080/check-status/job-1?x=1"),
            (
                false,
                "127.0.0.1:8080".into(),
                "/check-status/job-1?x=1".into()
            )
        );
        assert_eq!(
            parts("HTTPS://example.com"),
            (true, "example.com".into(), "/".into())
        );
        assert_eq!(
            parts("http://example.com?q=1#frag"),
            (false, "example.com".into(), "/?q=1".into())
        );
        assert_eq!(
            parts("http://example.com/a#frag"),
            (false, "example.com".into(), "/a".into())
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for url in [
            "example.com/x",
            "ftp://example.com/",
            "http:///path",
            "http://user:pw@example.com/",
            "http://exa mple.com/",
        ] {
            assert!(Url::parse(url).is_err(), "{url}");
        }
    }
}
