//! Outbound HTTP from guests. Two rules, both enforced in the `send_request` hook of
//! wasi-http, before anything leaves the host:
//!
//! 1. **Allowlist.** A request goes only to a `HOST:PORT` the operator lists
//!    (`--allow-outbound`), intersected with its tenant's `outbound_allowlist` when the
//!    tenant has one (`Allowlist::restricted_to`). Anything else fails inside the guest with
//!    `HttpRequestDenied`.
//! 2. **Never this host's own listeners** (the API, `--metrics-listen`), unless the operator
//!    named the address literally. An allowlisted name can resolve to an address of this
//!    host (a DNS answer, `/etc/hosts`, rebinding between two lookups, an alias such as
//!    `127.1`); a guest must not reach the API that way. The host name is resolved here,
//!    once, and every address it resolves to is checked: one on which this host listens
//!    (a wildcard listen counts for every local address, loopback included) refuses the
//!    request with `HttpRequestDenied`, and the host's log says why. The exceptions, where
//!    the entry names the address itself: an IP literal (`127.0.0.1:7700`, `[::1]:7700`,
//!    `[::ffff:127.0.0.1]:7700`: no resolution happens) and `localhost` for loopback
//!    addresses (it always means this machine, so allowlisting `localhost:<api port>` says
//!    so on purpose). Any other name (`127.1`, `localhost.`, `api.example.com`) that lands
//!    on a listener is refused.
//!
//! And one rule of durability: a request leaves only once everything the store was handed
//! before it is on disk (`Store::durable_barrier`, waited on in `send_request` before the
//! connection is made), since a guest's writes no longer wait for the disk themselves; an
//! at-most-once step's start is therefore durable before its body's first request.
//!
//! Connecting: for `http`, the request is sent to the very address that was checked (its
//! URI's authority becomes that address; the `Host` header keeps the name), so a second
//! resolution cannot answer differently. When a name has several addresses, they are tried
//! in order, as a connect would, and the first that accepts a connection is used.
//! For `https`, the TLS certificate is verified against the name, which
//! `wasmtime_wasi_http::default_send_request` takes from the URI, so it resolves the name
//! again: a rebinding between the two lookups can reach a listener of this host only with a
//! TLS handshake, which the host's plain-HTTP listeners refuse before any request is read.
//!
//! Must not: send any HTTP itself; that is `default_send_request`'s.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use wasmtime_wasi_http::{
    default_send_request, Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks,
};

/// What `Allowlist::parse` takes, as a JSON Schema pattern: a host (a name, an address, or
/// an IPv6 address in brackets) and a port 0-65535 (leading zeros allowed, as `u16` parses).
pub const HOST_PORT_PATTERN: &str = "^.*[^\\[\\]:]\\]?:0*(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})$";

/// The set of `host:port` a guest may reach, and the addresses this host listens on (which
/// it may not reach through a name). Hosts compare case-insensitively, IP literals by
/// address. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    allowed: Arc<HashSet<(String, u16)>>,
    /// Where this host's own listeners are: the API and the metrics listener.
    listen: Arc<[SocketAddr]>,
}

/// `host` as the allowlist stores it: lower case, without IPv6 brackets, an IP literal in
/// its one textual form.
fn normalize_host(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host.to_ascii_lowercase(),
    }
}

/// One `HOST:PORT` entry; `what` names the list in errors.
fn parse_entry(what: &str, e: &str) -> Result<(String, u16), String> {
    let (host, port) = e
        .rsplit_once(':')
        .ok_or_else(|| format!("{what} {e:?}: expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{what} {e:?}: {port:?} is not a port"))?;
    let host = normalize_host(host);
    if host.is_empty() {
        return Err(format!("{what} {e:?}: empty host"));
    }
    Ok((host, port))
}

impl Allowlist {
    /// Parse the server's entries (`--allow-outbound`), of the form `HOST:PORT` (`[::1]:8080`
    /// for IPv6).
    pub fn parse<I, S>(entries: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let allowed = entries
            .into_iter()
            .map(|e| parse_entry("--allow-outbound", e.as_ref()))
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(Self {
            allowed: Arc::new(allowed),
            listen: Arc::default(),
        })
    }

    /// The same list, refusing (rule 2) the addresses this host listens on. Set once, from
    /// `Options::api_listen`.
    pub fn protecting(mut self, listen: &[SocketAddr]) -> Self {
        self.listen = listen.into();
        self
    }

    /// The list one tenant's guests get: with `None` (the tenant sets no list) this one
    /// unchanged; with `Some(entries)` only what is both here and in `entries`. The addresses
    /// refused by rule 2 stay. An entry that does not parse is an error (the API validates
    /// tenants' lists with the same parser, so that means a stored list the host no longer
    /// accepts). Cheap for `None` (two reference counts); proportional to the tenant's list
    /// otherwise.
    pub fn restricted_to(&self, tenant_entries: Option<&[String]>) -> Result<Allowlist, String> {
        let Some(entries) = tenant_entries else {
            return Ok(self.clone());
        };
        let mut allowed = HashSet::new();
        for e in entries {
            let entry = parse_entry("outbound_allowlist", e)?;
            if self.allowed.contains(&entry) {
                allowed.insert(entry);
            }
        }
        Ok(Self {
            allowed: Arc::new(allowed),
            listen: self.listen.clone(),
        })
    }

    /// Check a tenant's `outbound_allowlist` entries (for the API, before storing them).
    pub fn check_entries(entries: &[String]) -> Result<(), String> {
        entries
            .iter()
            .try_for_each(|e| parse_entry("outbound_allowlist", e).map(drop))
    }

    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.allowed.contains(&(normalize_host(host), port))
    }

    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Whether `uri` (http or https) names a `HOST:PORT` this list allows, without
    /// resolving it (`crate::webhooks`, when a webhook is created or changed).
    pub fn allows_uri(&self, uri: &http::Uri) -> bool {
        Target::of(uri).is_some_and(|t| self.allows(&t.host, t.port))
    }

    /// Where a request to `uri` that is not a guest's (a webhook delivery) may connect,
    /// under the same two rules as a guest's: the allowlist, and never this host's own
    /// listeners through a name. The name is resolved here, once; connect only to the
    /// addresses returned. `Err`: why the request must not go out.
    pub async fn destination(
        &self,
        uri: &http::Uri,
        timeout: Duration,
    ) -> Result<Vec<SocketAddr>, String> {
        let target = Target::of(uri)
            .filter(|t| self.allows(&t.host, t.port))
            .ok_or_else(|| format!("{uri} is not in the outbound allowlist"))?;
        let addrs = resolve(&target, timeout)
            .await
            .map_err(|e| format!("resolving {}: {e:?}", target.host))?;
        match self.refusal(&target, &addrs) {
            Some(why) => Err(why),
            None => Ok(addrs),
        }
    }

    /// Why a request to `target`, resolved to `addrs`, must not go out (rule 2), if it must
    /// not.
    fn refusal(&self, target: &Target, addrs: &[SocketAddr]) -> Option<String> {
        if self.listen.is_empty() || matches!(target.dest, Dest::Ip(_)) {
            return None;
        }
        let mut local: Option<Option<Vec<IpAddr>>> = None;
        for addr in addrs {
            let hit = own_listener(*addr, &self.listen, || {
                local.get_or_insert_with(local_addresses).clone()
            });
            let Some(listener) = hit else { continue };
            if target.dest == Dest::Localhost && canonical(addr.ip()).is_loopback() {
                continue;
            }
            return Some(format!(
                "{}:{} resolves to {addr}, where this host listens ({listener}): a guest \
                 reaches this host's own listeners only through an entry that names the \
                 address itself (an IP literal such as {}, or localhost for a loopback \
                 address)",
                target.host,
                target.port,
                SocketAddr::new(canonical(addr.ip()), addr.port()),
            ));
        }
        None
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The listener of this host that a connection to `dest` would reach, if any. `listen`
/// are the listen addresses; `local_ips` lists this host's interface addresses (for a
/// wildcard listen), `None` when they cannot be read (then every address counts as local).
fn own_listener(
    dest: SocketAddr,
    listen: &[SocketAddr],
    mut local_ips: impl FnMut() -> Option<Vec<IpAddr>>,
) -> Option<SocketAddr> {
    // A connection to the unspecified address goes to the loopback address (Linux).
    let ip = match canonical(dest.ip()) {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    for l in listen.iter().filter(|l| l.port() == dest.port()) {
        let lip = canonical(l.ip());
        // A wildcard listen (0.0.0.0 or ::) takes connections to any local address; counted
        // for both families, as `::` usually also accepts IPv4.
        let reached = if lip.is_unspecified() {
            ip.is_loopback()
                || local_ips().is_none_or(|ips| ips.iter().any(|x| canonical(*x) == ip))
        } else {
            lip == ip
        };
        if reached {
            return Some(*l);
        }
    }
    None
}

/// This host's interface addresses, `None` when they cannot be read.
#[cfg(unix)]
fn local_addresses() -> Option<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `getifaddrs` fills `head` with a list we own until `freeifaddrs`.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list `getifaddrs` returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: `ifa_addr` points to a sockaddr whose family says its real type.
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))));
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from `getifaddrs` and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Some(out)
}

/// Not known here: every address counts as local for a wildcard listen.
#[cfg(not(unix))]
fn local_addresses() -> Option<Vec<IpAddr>> {
    None
}

/// What the guest's URI names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Dest {
    Ip(IpAddr),
    Localhost,
    Name,
}

/// Where a request goes: the host as the allowlist stores it, the port, the scheme.
#[derive(Clone, Debug)]
struct Target {
    host: String,
    port: u16,
    https: bool,
    dest: Dest,
}

impl Target {
    fn of(uri: &http::Uri) -> Option<Target> {
        let authority = uri.authority()?;
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = normalize_host(authority.host());
        let dest = match host.parse::<IpAddr>() {
            Ok(ip) => Dest::Ip(ip),
            Err(_) if host == "localhost" => Dest::Localhost,
            Err(_) => Dest::Name,
        };
        Some(Target {
            host,
            port,
            https,
            dest,
        })
    }
}

/// How long a name lookup may take at most (the guest's connect timeout, if shorter).
const DNS_TIMEOUT: Duration = Duration::from_secs(30);

/// `default_send_request`'s connect timeout when the guest sets none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(600);

/// The addresses of `target`, resolved once.
async fn resolve(target: &Target, timeout: Duration) -> Result<Vec<SocketAddr>, HttpError> {
    if let Dest::Ip(ip) = target.dest {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(timeout.min(DNS_TIMEOUT), lookup).await
    {
        Err(_elapsed) => return Err(HttpError::DnsTimeout),
        Ok(Err(e)) => {
            return Err(HttpError::DnsError {
                rcode: Some(e.to_string()),
                info_code: None,
            })
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    if addrs.is_empty() {
        return Err(HttpError::DnsError {
            rcode: Some("no address".into()),
            info_code: None,
        });
    }
    Ok(addrs)
}

/// The first of `addrs` that accepts a connection (the probe is closed again; with one
/// address there is no probe).
async fn first_reachable(addrs: &[SocketAddr], timeout: Duration) -> Result<SocketAddr, HttpError> {
    if let [only] = addrs {
        return Ok(*only);
    }
    let mut last = HttpError::ConnectionTimeout;
    for addr in addrs {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_probe)) => return Ok(*addr),
            Ok(Err(e)) => last = HttpError::Connect(e),
            Err(_elapsed) => last = HttpError::ConnectionTimeout,
        }
    }
    Err(last)
}

/// `request` sent to `addr` instead of the name in its URI; the `Host` header keeps the
/// name.
fn pinned<B>(
    mut request: http::Request<B>,
    addr: SocketAddr,
) -> Result<http::Request<B>, HttpError> {
    let uri = request.uri().clone();
    if !request.headers().contains_key(http::header::HOST) {
        let authority = uri.authority().ok_or(HttpError::HttpRequestUriInvalid)?;
        let host = match authority.port() {
            Some(port) => format!("{}:{port}", authority.host()),
            None => authority.host().to_string(),
        };
        let value =
            http::HeaderValue::from_str(&host).map_err(|_| HttpError::HttpRequestUriInvalid)?;
        request.headers_mut().insert(http::header::HOST, value);
    }
    let mut parts = uri.into_parts();
    parts.authority = Some(
        addr.to_string()
            .parse()
            .map_err(|_| HttpError::InternalError(Some(format!("{addr} is not an authority"))))?,
    );
    *request.uri_mut() =
        http::Uri::from_parts(parts).map_err(|_| HttpError::HttpRequestUriInvalid)?;
    Ok(request)
}

/// The wasi-http hooks of one activation.
pub struct Hooks {
    allow: Arc<Allowlist>,
    /// Waited on before each request leaves (`Store::durable_barrier`).
    db: crate::db::Store,
    /// The W3C `traceparent` requests carry (set before each use, `HostState::http`),
    /// unless the guest set its own.
    pub traceparent: Option<String>,
}

impl Hooks {
    /// `allow`: the server's list restricted to the activation's tenant
    /// (`Allowlist::restricted_to`); `db`: the store whose writes must be on disk before a
    /// request leaves.
    pub fn new(allow: Arc<Allowlist>, db: crate::db::Store) -> Self {
        Self {
            allow,
            db,
            traceparent: None,
        }
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
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        if let Some(tp) = self.traceparent.as_deref() {
            if let (false, Ok(value)) = (
                request.headers().contains_key("traceparent"),
                http::HeaderValue::from_str(tp),
            ) {
                request.headers_mut().insert("traceparent", value);
            }
        }
        let uri = request.uri().clone();
        let target = Target::of(&uri).filter(|t| self.allow.allows(&t.host, t.port));
        let Some(target) = target else {
            tracing::info!(uri = %uri, "outbound request denied: not in the allowlist");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        let allow = self.allow.clone();
        let db = self.db.clone();
        let send = async move {
            use http_body_util::BodyExt;
            // Durability at the point of output: the request (even its connection) depends
            // on what the guest did so far, e.g. an at-most-once step's start, which the
            // activation wrote without waiting for the disk. A store that cannot make it
            // durable sends nothing.
            db.durable_barrier().await.map_err(|e| {
                tracing::error!(error = %e, uri = %uri, "outbound request not sent: storage");
                HttpError::InternalError(Some(format!("not sent: {e}")))
            })?;
            let timeout = options
                .and_then(|o| o.connect_timeout)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
            let addrs = resolve(&target, timeout).await?;
            if let Some(why) = allow.refusal(&target, &addrs) {
                tracing::warn!(uri = %uri, "outbound request denied: {why}");
                return Err(HttpError::HttpRequestDenied);
            }
            let request = if target.https {
                request
            } else {
                pinned(request, first_reachable(&addrs, timeout).await?)?
            };
            let (res, io) = default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        };
        Box::new(send.instrument(tracing::Span::current()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_matches_host_port_pairs() {
        let a = Allowlist::parse(["127.0.0.1:8080", "API.example.com:443", "[::1]:9000"]).unwrap();
        assert!(a.allows("127.0.0.1", 8080));
        assert!(!a.allows("127.0.0.1", 8081));
        assert!(a.allows("api.example.com", 443));
        assert!(a.allows("[::1]", 9000));
        assert!(
            a.allows("[0:0::1]", 9000),
            "IP literals compare as addresses"
        );
        assert!(!a.allows("localhost", 8080));
        assert!(Allowlist::parse(["nohost"]).is_err());
        assert!(Allowlist::parse(["h:notaport"]).is_err());
        assert!(Allowlist::parse([":80"]).is_err());
    }

    #[test]
    fn a_tenant_list_intersects_the_servers() {
        let server = ["api.example.com:443", "127.0.0.1:8080", "[::1]:9000"];
        type Pairs = &'static [(&'static str, u16)];
        // (the tenant's list, reachable, not reachable)
        let cases: &[(Option<&[&str]>, Pairs, Pairs)] = &[
            // No tenant list: the server's unchanged.
            (
                None,
                &[("api.example.com", 443), ("127.0.0.1", 8080), ("::1", 9000)],
                &[("other.example.com", 443)],
            ),
            // An empty list: nothing.
            (
                Some(&[]),
                &[],
                &[("api.example.com", 443), ("127.0.0.1", 8080)],
            ),
            // Only entries in both; one the server lacks gives nothing.
            (
                Some(&["API.Example.com:443", "other.example.com:443"]),
                &[("api.example.com", 443)],
                &[("other.example.com", 443), ("127.0.0.1", 8080)],
            ),
            // Same host, another port: not in both.
            (
                Some(&["api.example.com:8443", "127.0.0.1:8080"]),
                &[("127.0.0.1", 8080)],
                &[("api.example.com", 8443), ("api.example.com", 443)],
            ),
            // IPv6 literals compare as addresses.
            (
                Some(&["[0::1]:9000"]),
                &[("[::1]", 9000)],
                &[("127.0.0.1", 8080)],
            ),
        ];
        let a = Allowlist::parse(server).unwrap();
        for (tenant, allowed, denied) in cases {
            let owned: Option<Vec<String>> =
                tenant.map(|t| t.iter().map(|s| s.to_string()).collect());
            let r = a.restricted_to(owned.as_deref()).unwrap();
            for (h, p) in *allowed {
                assert!(r.allows(h, *p), "{tenant:?}: {h}:{p} should be allowed");
            }
            for (h, p) in *denied {
                assert!(!r.allows(h, *p), "{tenant:?}: {h}:{p} should be denied");
            }
        }
        let bad = vec!["no-port".to_string()];
        let err = a.restricted_to(Some(&bad)).unwrap_err();
        assert!(err.contains("outbound_allowlist"), "{err}");
        assert!(Allowlist::check_entries(&bad).is_err());
        assert!(Allowlist::check_entries(&["h:1".to_string()]).is_ok());
    }

    #[test]
    fn a_restricted_list_still_protects_the_listeners() {
        let a = Allowlist::parse(["api.example.com:7700"])
            .unwrap()
            .protecting(&[sa("127.0.0.1:7700")]);
        let r = a
            .restricted_to(Some(&["api.example.com:7700".into()]))
            .unwrap();
        let t = Target::of(&"http://api.example.com:7700/".parse().unwrap()).unwrap();
        assert!(r.refusal(&t, &[sa("127.0.0.1:7700")]).is_some());
    }

    #[test]
    fn finds_the_listener_an_address_reaches() {
        let local = || {
            Some(vec![
                ip("127.0.0.1"),
                ip("10.1.2.3"),
                ip("::1"),
                ip("fd00::5"),
            ])
        };
        // (destination, listen addresses, the listener reached)
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            (
                "127.0.0.1:7700",
                &["127.0.0.1:7700"],
                Some("127.0.0.1:7700"),
            ),
            ("127.0.0.1:7701", &["127.0.0.1:7700"], None),
            // A listener bound to one loopback address takes no other.
            ("127.0.0.2:7700", &["127.0.0.1:7700"], None),
            (
                "[::ffff:127.0.0.1]:7700",
                &["127.0.0.1:7700"],
                Some("127.0.0.1:7700"),
            ),
            ("0.0.0.0:7700", &["127.0.0.1:7700"], Some("127.0.0.1:7700")),
            ("[::]:7700", &["[::1]:7700"], Some("[::1]:7700")),
            ("[::1]:7700", &["127.0.0.1:7700"], None),
            ("10.1.2.3:7700", &["127.0.0.1:7700"], None),
            // Wildcards: any loopback or local address, either family.
            ("127.0.0.2:7700", &["0.0.0.0:7700"], Some("0.0.0.0:7700")),
            ("10.1.2.3:7700", &["0.0.0.0:7700"], Some("0.0.0.0:7700")),
            ("[fd00::5]:7700", &["[::]:7700"], Some("[::]:7700")),
            ("[::ffff:10.1.2.3]:7700", &["[::]:7700"], Some("[::]:7700")),
            ("10.9.9.9:7700", &["0.0.0.0:7700"], None),
            ("10.1.2.3:80", &["0.0.0.0:7700"], None),
            // The second listener (metrics) counts too.
            (
                "127.0.0.1:9100",
                &["0.0.0.0:7700", "127.0.0.1:9100"],
                Some("127.0.0.1:9100"),
            ),
        ];
        for (dest, listen, want) in cases {
            let listen: Vec<SocketAddr> = listen.iter().map(|s| sa(s)).collect();
            assert_eq!(
                own_listener(sa(dest), &listen, local),
                want.map(sa),
                "{dest} against {listen:?}"
            );
        }
        // Local addresses unknown: a wildcard listen counts for every address.
        assert_eq!(
            own_listener(sa("10.9.9.9:7700"), &[sa("0.0.0.0:7700")], || None),
            Some(sa("0.0.0.0:7700"))
        );
    }

    #[test]
    fn only_a_literal_entry_reaches_a_listener() {
        let listen = [sa("127.0.0.1:7700")];
        let a = Allowlist::parse(["x:1"]).unwrap().protecting(&listen);
        // (URI, what it resolved to, refused)
        let cases: &[(&str, &[&str], bool)] = &[
            ("http://127.0.0.1:7700/", &["127.0.0.1:7700"], false),
            (
                "http://[::ffff:127.0.0.1]:7700/",
                &["[::ffff:127.0.0.1]:7700"],
                false,
            ),
            ("http://localhost:7700/", &["127.0.0.1:7700"], false),
            (
                "http://LOCALHOST:7700/",
                &["[::1]:7700", "127.0.0.1:7700"],
                false,
            ),
            ("http://127.1:7700/", &["127.0.0.1:7700"], true),
            ("http://localhost.:7700/", &["127.0.0.1:7700"], true),
            ("https://api.example.com:7700/", &["127.0.0.1:7700"], true),
            // One bad address among good ones is enough.
            (
                "http://api.example.com:7700/",
                &["93.184.216.34:7700", "127.0.0.1:7700"],
                true,
            ),
            (
                "http://api.example.com:7700/",
                &["93.184.216.34:7700"],
                false,
            ),
            ("http://api.example.com:80/", &["127.0.0.1:80"], false),
        ];
        for (uri, addrs, refused) in cases {
            let t = Target::of(&uri.parse().unwrap()).unwrap();
            let addrs: Vec<SocketAddr> = addrs.iter().map(|s| sa(s)).collect();
            let why = a.refusal(&t, &addrs);
            assert_eq!(why.is_some(), *refused, "{uri} -> {addrs:?}: {why:?}");
        }
        // A host with no listener recorded (in-process use) refuses nothing.
        let open = Allowlist::parse(["x:1"]).unwrap();
        let t = Target::of(&"http://127.1:7700/".parse().unwrap()).unwrap();
        assert!(open.refusal(&t, &[sa("127.0.0.1:7700")]).is_none());
    }

    #[test]
    fn the_refusal_names_the_name_the_address_and_the_way_out() {
        let a = Allowlist::parse(["127.1:7700"])
            .unwrap()
            .protecting(&[sa("0.0.0.0:7700")]);
        let t = Target::of(&"http://127.1:7700/v1/functions".parse().unwrap()).unwrap();
        let why = a.refusal(&t, &[sa("127.0.0.1:7700")]).unwrap();
        assert!(
            why.contains("127.1:7700 resolves to 127.0.0.1:7700"),
            "{why}"
        );
        assert!(why.contains("(0.0.0.0:7700)"), "{why}");
        assert!(why.contains("IP literal such as 127.0.0.1:7700"), "{why}");
    }

    #[test]
    fn a_pinned_request_goes_to_the_address_and_keeps_the_name() {
        let req = http::Request::get("http://api.example.com:8080/a/b?c=d")
            .body(())
            .unwrap();
        let req = pinned(req, sa("[::1]:8080")).unwrap();
        assert_eq!(req.uri().to_string(), "http://[::1]:8080/a/b?c=d");
        assert_eq!(req.headers()[http::header::HOST], "api.example.com:8080");
        // A Host header already there (wasi-http sets it) is left alone.
        let req = http::Request::get("http://api.example.com/")
            .header(http::header::HOST, "api.example.com")
            .body(())
            .unwrap();
        let req = pinned(req, sa("10.0.0.1:80")).unwrap();
        assert_eq!(req.uri().to_string(), "http://10.0.0.1:80/");
        assert_eq!(req.headers()[http::header::HOST], "api.example.com");
    }

    #[tokio::test]
    async fn names_resolve_once_and_literals_not_at_all() {
        let t = Target::of(&"http://[::ffff:127.0.0.1]:9/".parse().unwrap()).unwrap();
        assert_eq!(
            resolve(&t, Duration::from_secs(5)).await.unwrap(),
            [sa("[::ffff:127.0.0.1]:9")]
        );
        // `127.1` is no IP literal to Rust, but the resolver reads it as 127.0.0.1: the
        // alias the end-to-end test uses.
        let t = Target::of(&"http://127.1:9/".parse().unwrap()).unwrap();
        assert_eq!(t.dest, Dest::Name);
        assert_eq!(
            resolve(&t, Duration::from_secs(5)).await.unwrap(),
            [sa("127.0.0.1:9")]
        );
    }

    #[tokio::test]
    async fn the_first_address_that_accepts_is_used() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open_addr = open.local_addr().unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let got = first_reachable(&[closed, open_addr], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got, open_addr);
        let err = first_reachable(&[closed, closed], Duration::from_secs(5)).await;
        assert!(matches!(err, Err(HttpError::Connect(_))), "{err:?}");
    }
}
