//! Outbound HTTP from guests: allowed only to the `HOST:PORT` pairs the operator lists
//! (`--allow-outbound`). Anything else fails inside the guest with `HttpRequestDenied`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use wasmtime_wasi_http::{
    default_send_request, Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks,
};

/// What `Allowlist::parse` takes, as a JSON Schema pattern: a host (a name, an address, or
/// an IPv6 address in brackets) and a port 0-65535 (leading zeros allowed, as `u16` parses).
pub const HOST_PORT_PATTERN: &str = "^.*[^\\[\\]:]\\]?:0*(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})$";

/// The set of `host:port` a guest may reach. Hosts compare case-insensitively.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    allowed: HashSet<(String, u16)>,
}

impl Allowlist {
    /// Parse entries of the form `HOST:PORT` (`[::1]:8080` for IPv6).
    pub fn parse<I, S>(entries: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut allowed = HashSet::new();
        for e in entries {
            let e = e.as_ref();
            let (host, port) = e
                .rsplit_once(':')
                .ok_or_else(|| format!("--allow-outbound {e:?}: expected HOST:PORT"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| format!("--allow-outbound {e:?}: {port:?} is not a port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(format!("--allow-outbound {e:?}: empty host"));
            }
            allowed.insert((host.to_ascii_lowercase(), port));
        }
        Ok(Self { allowed })
    }

    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allowed.contains(&(host.to_ascii_lowercase(), port))
    }

    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }
}

/// The wasi-http hooks of one activation.
pub struct Hooks {
    allow: Arc<Allowlist>,
}

impl Hooks {
    pub fn new(allow: Arc<Allowlist>) -> Self {
        Self { allow }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let uri = request.uri();
        let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        };
        let allowed = uri
            .authority()
            .map(|a| {
                self.allow
                    .allows(a.host(), a.port_u16().unwrap_or(default_port))
            })
            .unwrap_or(false);
        if !allowed {
            tracing::info!(uri = %uri, "outbound request denied");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_host_port_pairs() {
        let a = Allowlist::parse(["127.0.0.1:8080", "API.example.com:443", "[::1]:9000"]).unwrap();
        assert!(a.allows("127.0.0.1", 8080));
        assert!(!a.allows("127.0.0.1", 8081));
        assert!(a.allows("api.example.com", 443));
        assert!(a.allows("[::1]", 9000));
        assert!(!a.allows("localhost", 8080));
        assert!(Allowlist::parse(["nohost"]).is_err());
        assert!(Allowlist::parse(["h:notaport"]).is_err());
        assert!(Allowlist::parse([":80"]).is_err());
    }
}
