//! The client's HTTP layer: blocking requests to the API, and the mapping of every failure
//! (unreachable server, API error envelope, transport error, unexpected body) to one
//! [`Error`].
//!
//! Every request carries the API key (`Authorization: Bearer`, marked sensitive so that it
//! never shows in reqwest's debug output) and, when one is chosen, the tenant to act in
//! (`Durable-Tenant`). A 401 says how to give a key; a 403 how to see the key's role.
//!
//! Uses `reqwest::blocking`, which runs its own runtime on a thread of its own: it must
//! never be called from inside a tokio runtime, so the client commands run without one.
//! Knows the API's error envelope, not its resources.

use std::time::Duration;

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, Url};
use serde_json::Value;

use super::auth::Credentials;
use super::Error;

/// The header that makes an admin key act in another tenant.
pub const TENANT_HEADER: &str = "durable-tenant";

/// How long an ordinary request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest piece of a non-JSON error body quoted in a message.
const MAX_QUOTED_BODY: usize = 200;

/// A successful answer: its status and body (`Value::Null` when empty).
pub struct Reply {
    pub status: u16,
    /// The body as sent, for `--json`.
    pub text: String,
    pub body: Value,
}

impl Reply {
    /// The array under `key` in the body.
    pub fn array(&self, key: &str) -> Result<&Vec<Value>, Error> {
        self.body.get(key).and_then(Value::as_array).ok_or_else(|| {
            Error::Response(format!(
                "no \"{key}\" array in {}",
                super::table::truncate(&self.text, MAX_QUOTED_BODY)
            ))
        })
    }

    /// The body's `next_cursor`: the next page's cursor, `None` on the last page (also
    /// when the field is absent).
    pub fn next_cursor(&self) -> Option<String> {
        self.body
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

/// One request, built up before it is sent.
pub struct Request<'a> {
    method: Method,
    path: &'a [&'a str],
    query: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    body: Option<(Vec<u8>, &'static str)>,
    timeout: Option<Duration>,
}

impl<'a> Request<'a> {
    /// `method` on the path made of `path` segments (each one percent-encoded).
    pub fn new(method: Method, path: &'a [&'a str]) -> Request<'a> {
        Request {
            method,
            path,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            timeout: Some(REQUEST_TIMEOUT),
        }
    }

    pub fn get(path: &'a [&'a str]) -> Request<'a> {
        Request::new(Method::GET, path)
    }

    pub fn post(path: &'a [&'a str]) -> Request<'a> {
        Request::new(Method::POST, path)
    }

    /// A query parameter, when it has a value.
    pub fn query(mut self, key: &'static str, value: Option<String>) -> Request<'a> {
        if let Some(v) = value {
            self.query.push((key, v));
        }
        self
    }

    pub fn header(mut self, name: &'static str, value: Option<String>) -> Request<'a> {
        if let Some(v) = value {
            self.headers.push((name, v));
        }
        self
    }

    pub fn json(self, text: String) -> Request<'a> {
        self.body(text.into_bytes(), "application/json")
    }

    pub fn body(mut self, bytes: Vec<u8>, content_type: &'static str) -> Request<'a> {
        self.body = Some((bytes, content_type));
        self
    }

    /// The longest the whole exchange may take; `None` for streams that last as long as
    /// they must.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Request<'a> {
        self.timeout = timeout;
        self
    }
}

/// The API at one base URL, as one key (in one tenant).
pub struct Client {
    http: reqwest::blocking::Client,
    base: Url,
    credentials: Credentials,
    /// `Authorization: Bearer <key>`, sensitive; `None` without a key.
    authorization: Option<HeaderValue>,
    /// `Durable-Tenant: <name>`, when a tenant is chosen.
    tenant: Option<HeaderValue>,
}

impl Client {
    /// The client of the server at `server`, sending `credentials`' key and acting in
    /// `tenant` (the key's own tenant when `None`).
    pub fn new(
        server: &str,
        credentials: Credentials,
        tenant: Option<&str>,
    ) -> Result<Client, Error> {
        let base = Url::parse(server)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--server {server:?} is not a server URL such as http://127.0.0.1:7700"
                ))
            })?;
        let http = reqwest::blocking::Client::builder()
            // Each request sets its own; a stream has none.
            .timeout(None)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| Error::Http(format!("cannot set up the HTTP client: {e}")))?;
        let authorization = match &credentials.key {
            Some((key, source)) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                    .map_err(|_| {
                        Error::Usage(format!(
                            "the API key from {source} cannot be sent in an HTTP header"
                        ))
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let tenant = match tenant {
            Some(name) => Some(
                HeaderValue::from_str(name)
                    .map_err(|_| Error::Usage(format!("--tenant {name:?} is not a tenant name")))?,
            ),
            None => None,
        };
        Ok(Client {
            http,
            base,
            credentials,
            authorization,
            tenant,
        })
    }

    /// The server's URL without a trailing slash, for messages.
    pub fn server(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    /// Where the key this client sends came from (`--api-key`, the variable, a file's
    /// path), for messages; `None` without a key.
    pub fn key_source(&self) -> Option<String> {
        self.credentials.key.as_ref().map(|(_, s)| s.to_string())
    }

    /// Send `req`; a 2xx answer is a [`Reply`], anything else an [`Error`].
    pub fn send(&self, req: Request<'_>) -> Result<Reply, Error> {
        let resp = self.open(req)?;
        let status = resp.status().as_u16();
        let text = resp.text().map_err(|e| self.transport(e))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| {
                Error::Response(format!(
                    "status {status} with a body that is not JSON ({e}): {}",
                    super::table::truncate(&text, MAX_QUOTED_BODY)
                ))
            })?
        };
        Ok(Reply { status, text, body })
    }

    /// Send `req` and hand back the open response of a 2xx answer, to be read as a stream.
    pub fn open(&self, req: Request<'_>) -> Result<Response, Error> {
        let resp = self.builder(req).send().map_err(|e| self.transport(e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.api_error(resp))
        }
    }

    fn builder(&self, req: Request<'_>) -> RequestBuilder {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(req.path);
        }
        if !req.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&req.query);
        }
        let mut b = self.http.request(req.method, url);
        if let Some(auth) = &self.authorization {
            b = b.header(AUTHORIZATION, auth.clone());
        }
        if let Some(tenant) = &self.tenant {
            b = b.header(TENANT_HEADER, tenant.clone());
        }
        for (name, value) in req.headers {
            b = b.header(name, value);
        }
        if let Some((bytes, content_type)) = req.body {
            b = b
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        if let Some(t) = req.timeout {
            b = b.timeout(t);
        }
        b
    }

    /// A failure to talk to the server at all.
    fn transport(&self, e: reqwest::Error) -> Error {
        if e.is_connect() {
            Error::Unreachable {
                server: self.server(),
            }
        } else if e.is_timeout() {
            Error::Http(format!("{} did not answer in time", self.server()))
        } else {
            Error::Http(format!("talking to {}: {}", self.server(), error_chain(&e)))
        }
    }

    /// A non-2xx answer: the API's `{"error": {"code", "message"}}`, or whatever came,
    /// with a hint for the answers the caller's key or tenant explain.
    fn api_error(&self, resp: Response) -> Error {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().unwrap_or_default();
        let envelope = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("code")?.as_str()?.to_string(),
                e.get("message")?.as_str()?.to_string(),
            ))
        });
        let (code, message) = envelope.unwrap_or_else(|| {
            let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
            let body = if text.trim().is_empty() {
                "(no body)".to_string()
            } else {
                super::table::truncate(text.trim(), MAX_QUOTED_BODY)
            };
            (reason.replace(' ', "_"), body)
        });
        let hint = match status.as_u16() {
            401 => Some(self.credentials.unauthorized_hint()),
            403 => Some("`durable-host whoami` shows this key's tenant and role".to_string()),
            429 => retry_after.map(|s| format!("retry after {s} s")),
            _ => None,
        };
        Error::Api {
            status: status.as_u16(),
            code,
            message,
            hint,
        }
    }
}

/// An error and its causes, `: `-separated (reqwest's own message omits the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
