//! Rate limits: how many requests a key, a client address, or an app's webhook URL may
//! make. Each budget is a GCRA bucket from `governor` (a rate per second and a burst),
//! kept in memory per node; a request over its budget gets a 429 in the error shape
//! with `Retry-After`, and `paybridge_rate_limited{class}` counts it.
//!
//! | class | keyed by | default | who |
//! |---|---|---|---|
//! | `anonymous` | client address | 20/s, burst 100 | no key, or a refused key |
//! | `publishable` | key and client address | 20/s, burst 100 | a browser with the publishable key |
//! | `publishable_write` | key and client address | 5/s, burst 30 | its POST, PUT, PATCH, DELETE (checkouts) |
//! | `secret_key` | key | 5,000/s, burst 10,000 | admin, server and root keys: the app's own back end |
//! | `webhook` | app | 1,000/s, burst 5,000 | `POST /v1/webhooks/stripe/{app}` (Stripe) |
//!
//! The client address is the socket's peer. With `trusted_proxies` set, a request from
//! one of them is taken to be from the rightmost `X-Forwarded-For` address that is not
//! itself a trusted proxy. IPv6 addresses count by their /64, which is what one host
//! gets. Entries that are back to a full bucket are pruned every 30 s, so the table
//! holds only recent callers.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use paybridge_core::keys::{Principal, Role};

use crate::error::{ApiError, ErrorType};
use crate::metrics::RateLimitLabels;
use crate::state::AppState;

/// A budget: `per_second` sustained, up to `burst` at once. `None` (configured as `0`)
/// is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Rate {
    const fn new(per_second: u32, burst: u32) -> Option<Rate> {
        match (NonZeroU32::new(per_second), NonZeroU32::new(burst)) {
            (Some(per_second), Some(burst)) => Some(Rate { per_second, burst }),
            _ => None,
        }
    }

    /// `"20,100"` (20 per second, burst 100), `"20"` (burst 20), or `"0"` / `"off"`
    /// (no limit).
    pub fn parse(s: &str) -> Result<Option<Rate>, String> {
        let s = s.trim();
        if s == "0" || s.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (rate, burst) = match s.split_once(',') {
            Some((r, b)) => (r.trim(), Some(b.trim())),
            None => (s, None),
        };
        let num = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("`{s}` is not `<per second>[,<burst>]` or `off`"))
        };
        let per_second = num(rate)?;
        let burst = burst.map(num).transpose()?.unwrap_or(per_second);
        match Rate::new(per_second, burst) {
            Some(r) => Ok(Some(r)),
            None if per_second == 0 => Ok(None),
            None => Err(format!("`{s}`: the burst must be at least 1")),
        }
    }

    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

/// The configured budgets (see the module's table for the defaults).
#[derive(Debug, Clone)]
pub struct RateLimits {
    pub anonymous: Option<Rate>,
    pub publishable: Option<Rate>,
    pub publishable_write: Option<Rate>,
    pub secret_key: Option<Rate>,
    pub webhook: Option<Rate>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            anonymous: Rate::new(20, 100),
            publishable: Rate::new(20, 100),
            publishable_write: Rate::new(5, 30),
            secret_key: Rate::new(5_000, 10_000),
            webhook: Rate::new(1_000, 5_000),
        }
    }
}

type Keyed<K> = Option<DefaultKeyedRateLimiter<K>>;

/// The buckets of one node.
pub struct Limiter {
    anonymous: Keyed<IpAddr>,
    publishable: Keyed<(String, IpAddr)>,
    publishable_write: Keyed<(String, IpAddr)>,
    secret_key: Keyed<String>,
    webhook: Keyed<String>,
}

/// Why a request was refused: its class and how long until it would pass.
#[derive(Debug)]
pub struct Limited {
    pub class: &'static str,
    pub wait: Duration,
}

fn keyed<K: std::hash::Hash + Eq + Clone>(r: Option<Rate>) -> Keyed<K> {
    r.map(|r| RateLimiter::keyed(r.quota()))
}

fn check<K: std::hash::Hash + Eq + Clone>(
    l: &Keyed<K>,
    key: &K,
    class: &'static str,
) -> Result<(), Limited> {
    let Some(l) = l else { return Ok(()) };
    l.check_key(key).map_err(|not_until| Limited {
        class,
        wait: not_until.wait_time_from(l.clock().now()),
    })
}

impl Limiter {
    pub fn new(limits: &RateLimits) -> Limiter {
        Limiter {
            anonymous: keyed(limits.anonymous),
            publishable: keyed(limits.publishable),
            publishable_write: keyed(limits.publishable_write),
            secret_key: keyed(limits.secret_key),
            webhook: keyed(limits.webhook),
        }
    }

    pub fn anonymous(&self, addr: IpAddr) -> Result<(), Limited> {
        check(&self.anonymous, &addr, "anonymous")
    }

    pub fn webhook(&self, app: &str) -> Result<(), Limited> {
        check(&self.webhook, &app.to_owned(), "webhook")
    }

    /// The budget of a request made with a key.
    pub fn keyed(&self, p: &Principal, addr: IpAddr, writes: bool) -> Result<(), Limited> {
        let id = p.key_id.clone().unwrap_or_else(|| "root".to_owned());
        match p.role {
            Role::Publishable => {
                let key = (id, addr);
                check(&self.publishable, &key, "publishable")?;
                if writes {
                    check(&self.publishable_write, &key, "publishable_write")?;
                }
                Ok(())
            }
            Role::Admin | Role::Server | Role::Root => check(&self.secret_key, &id, "secret_key"),
        }
    }

    /// Forgets callers whose buckets are full again (they are as good as new).
    pub fn prune(&self) {
        fn go<K: std::hash::Hash + Eq + Clone>(l: &Keyed<K>) {
            if let Some(l) = l {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
        go(&self.anonymous);
        go(&self.publishable);
        go(&self.publishable_write);
        go(&self.secret_key);
        go(&self.webhook);
    }

    /// Callers remembered, over all classes.
    pub fn len(&self) -> usize {
        fn n<K: std::hash::Hash + Eq + Clone>(l: &Keyed<K>) -> usize {
            l.as_ref().map_or(0, |l| l.len())
        }
        n(&self.anonymous)
            + n(&self.publishable)
            + n(&self.publishable_write)
            + n(&self.secret_key)
            + n(&self.webhook)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counts the refusal and answers it.
pub fn refuse(state: &AppState, limited: Limited) -> Response {
    refused(state, limited).into_response()
}

/// Counts the refusal; the 429 to answer.
pub fn refused(state: &AppState, limited: Limited) -> ApiError {
    state
        .metrics
        .rate_limited
        .get_or_create(&RateLimitLabels {
            class: limited.class,
        })
        .inc();
    too_many(&limited)
}

/// The 429: `Retry-After` in whole seconds, at least 1.
pub fn too_many(limited: &Limited) -> ApiError {
    let secs = limited.wait.as_secs() + u64::from(limited.wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let who = match limited.class {
        "anonymous" => "this address",
        "webhook" => "this app's webhook URL",
        "secret_key" => "this key",
        _ => "this key from this address",
    };
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorType::RateLimitError,
        "rate_limited",
        format!("Too many requests from {who}; retry after {secs} s"),
    );
    e.retry_after = Some(secs);
    e
}

/// The route that takes Stripe's webhooks: limited per app in its handler, not per
/// address (Stripe sends from a few addresses for all its accounts).
pub const WEBHOOK_ROUTE: &str = "/v1/webhooks/stripe/{app_id}";

/// The middleware, after authentication: a key's budget, or the address's.
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let addr = client_addr(&req, &state.settings.trusted_proxies);
    let verdict = match req.extensions().get::<Principal>() {
        Some(p) => {
            let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
            state.limiter.keyed(p, addr, writes)
        }
        None => {
            let webhook = req
                .extensions()
                .get::<MatchedPath>()
                .is_some_and(|m| m.as_str() == WEBHOOK_ROUTE);
            if webhook {
                Ok(())
            } else {
                state.limiter.anonymous(addr)
            }
        }
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(limited) => refuse(&state, limited),
    }
}

/// The client's address, as the rate limits count it (see the module's notes). Without
/// a socket (a request made in-process) it is the unspecified address.
pub fn client_addr(req: &Request, trusted: &[ipnet::IpNet]) -> IpAddr {
    addr_of(req.extensions(), req.headers(), trusted)
}

fn addr_of(
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    bucket_of(forwarded_client(peer, headers, trusted))
}

/// The client's address (as [`client_addr`] finds it), as an extractor.
pub struct ClientAddr(pub IpAddr);

impl axum::extract::FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(addr_of(
            &parts.extensions,
            &parts.headers,
            &state.settings.trusted_proxies,
        )))
    }
}

fn is_trusted(ip: IpAddr, trusted: &[ipnet::IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|n| n.contains(&ip))
}

/// The client a trusted proxy speaks for: the rightmost `X-Forwarded-For` hop that is
/// not a trusted proxy (the leftmost hop if all are). Anyone else's header is ignored.
fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(v) = value.to_str() else { return peer };
        for hop in v.split(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                // A hop we cannot read: trust nothing to its left.
                Err(_) => hops.clear(),
            }
        }
    }
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(hop, trusted) {
            break;
        }
    }
    client
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// One host's bucket: an IPv4 address, or an IPv6 address's /64.
fn bucket_of(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Parses `PAYBRIDGE_TRUSTED_PROXIES`: comma-separated addresses or CIDR ranges.
pub fn parse_trusted_proxies(s: &str) -> Result<Vec<ipnet::IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("`{p}` is not an IP address or CIDR range"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(Rate::parse("20,100").unwrap(), Rate::new(20, 100));
        assert_eq!(Rate::parse(" 7 ").unwrap(), Rate::new(7, 7));
        assert_eq!(Rate::parse("off").unwrap(), None);
        assert_eq!(Rate::parse("0").unwrap(), None);
        assert!(Rate::parse("20,0").is_err());
        assert!(Rate::parse("fast").is_err());
    }

    #[test]
    fn a_bucket_refuses_past_its_burst_and_says_how_long() {
        let l = Limiter::new(&RateLimits {
            anonymous: Rate::new(1, 3),
            ..RateLimits::default()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            l.anonymous(a).unwrap();
        }
        let e = l.anonymous(a).unwrap_err();
        assert_eq!(e.class, "anonymous");
        assert!(e.wait > Duration::ZERO && e.wait <= Duration::from_secs(1));
        assert_eq!(too_many(&e).retry_after, Some(1));
        l.anonymous(b).expect("another address has its own bucket");
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted = parse_trusted_proxies("10.0.0.0/8, 192.0.2.7").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "198.51.100.9, 203.0.113.5, 10.1.2.3".parse().unwrap(),
        );
        let proxy: IpAddr = "192.0.2.7".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        // The rightmost hop that is not a proxy; what it claims to its left is not trusted.
        assert_eq!(
            forwarded_client(proxy, &h, &trusted),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(forwarded_client(stranger, &h, &trusted), stranger);
        assert_eq!(forwarded_client(proxy, &h, &[]), proxy);
        assert_eq!(forwarded_client(proxy, &HeaderMap::new(), &trusted), proxy);
        h.insert("x-forwarded-for", "203.0.113.5, junk".parse().unwrap());
        assert_eq!(forwarded_client(proxy, &h, &trusted), proxy);
        assert!(parse_trusted_proxies("10.0.0.0/33").is_err());
    }

    #[test]
    fn ipv6_hosts_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(bucket_of(a), bucket_of(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(bucket_of(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
