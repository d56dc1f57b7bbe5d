//! Where a callback may go. A `live` app's callbacks reach only public addresses
//! (`paybridge_core::net::is_public`): checked when the endpoint is created, and again
//! at every delivery, after DNS resolution, by the resolver of the client that
//! delivers them, which connects only to the addresses it has checked. So a name that
//! resolved to a public address at creation and to `127.0.0.1` later (DNS rebinding)
//! reaches nothing. A `test` app may keep `localhost` and private addresses, for
//! development.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use paybridge_core::net::is_public;
use paybridge_core::{Environment, Invalid};

/// How long the creation check waits for DNS before leaving it to delivery time.
const RESOLVE_AT_CREATION: Duration = Duration::from_secs(3);

/// The URL's host as an IP address, if it is one (`http://[::1]/`, `http://10.0.0.1/`,
/// and the forms the URL standard reads as IPv4, such as `http://2130706433/`).
fn ip_host(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

fn refused(detail: String) -> Invalid {
    Invalid::new(
        "url",
        "url_not_public",
        format!("a live app's callbacks go to public addresses only: {detail}"),
    )
}

/// Checks a new endpoint's URL (already a valid http(s) URL) for an app in
/// `environment`. A live app's URL may not name, or resolve to, a non-public address.
/// A name that does not resolve now is accepted: delivery checks it again.
pub async fn check_new(environment: Environment, raw: &str) -> Result<(), Invalid> {
    if environment != Environment::Live {
        return Ok(());
    }
    let url = url::Url::parse(raw)
        .map_err(|_| Invalid::new("url", "url_invalid", "give an absolute http(s) URL"))?;
    if let Some(ip) = ip_host(&url) {
        return if is_public(ip) {
            Ok(())
        } else {
            Err(refused(format!("{ip} is not one")))
        };
    }
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return Err(refused(format!("{host} is this machine")));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    if let Ok(Ok(addrs)) = tokio::time::timeout(
        RESOLVE_AT_CREATION,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    {
        if let Some(a) = addrs.map(|a| a.ip()).find(|ip| !is_public(*ip)) {
            return Err(refused(format!("{host} resolves to {a}")));
        }
    }
    Ok(())
}

/// Why a delivery was not sent: its target is not public. Carried through reqwest's
/// error so the attempt log can say so.
#[derive(Debug)]
pub struct NotPublic(pub String);

impl std::fmt::Display for NotPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused: {} (a live app's callbacks go to public addresses only)",
            self.0
        )
    }
}

impl std::error::Error for NotPublic {}

/// Checks a delivery's URL before sending it for a live app: an IP host must be public
/// (reqwest connects to an IP host without asking the resolver below).
pub fn check_delivery(raw: &str) -> Result<(), NotPublic> {
    let Ok(url) = url::Url::parse(raw) else {
        return Ok(()); // reqwest refuses it itself
    };
    match ip_host(&url) {
        Some(ip) if !is_public(ip) => Err(NotPublic(format!("{ip} is not a public address"))),
        _ => Ok(()),
    }
}

/// The resolver of the live apps' callback client: it resolves as the system does and
/// keeps only the public addresses, which are then the only ones connected to.
#[derive(Debug, Default, Clone)]
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                all.iter().copied().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let shown = all.first().map(|a| a.ip().to_string()).unwrap_or_default();
                return Err(Box::new(NotPublic(format!(
                    "{host} resolves to {shown}, not a public address"
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The `NotPublic` inside a reqwest error, if that is why it failed.
pub fn not_public<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a NotPublic> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(n) = err.downcast_ref::<NotPublic>() {
            return Some(n);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_apps_refuse_private_targets_and_test_apps_keep_them() {
        for url in [
            "http://127.0.0.1:8080/hooks",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/x",
            "http://10.0.0.1/",
            "http://2130706433/",
            "http://localhost:9/",
            "http://api.localhost/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            let e = check_new(Environment::Live, url).await.unwrap_err();
            assert_eq!(e.code, "url_not_public", "{url}");
            assert!(check_new(Environment::Test, url).await.is_ok(), "{url}");
        }
        assert!(check_new(Environment::Live, "https://93.184.216.34/hooks")
            .await
            .is_ok());
        assert!(check_delivery("http://127.0.0.1:1/").is_err());
        assert!(check_delivery("http://[::ffff:a9fe:a9fe]/").is_err());
        assert!(check_delivery("https://hooks.example/").is_ok());
    }

    #[tokio::test]
    async fn the_resolver_drops_non_public_answers() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = match PublicOnly.resolve(name).await {
            Ok(_) => panic!("localhost resolved to a public address"),
            Err(e) => e,
        };
        let n = not_public(err.as_ref()).expect("NotPublic");
        assert!(n.to_string().contains("localhost"), "{n}");
    }
}
