//! The one HTTP client builder, for fetching proxy lists (and anything else the project fetches
//! over plain HTTP(S) without a proxy in the way).
//!
//! Lists are fetched from URLs the operator configured, but their servers are strangers: a
//! redirect or a DNS answer could point the fetcher, running inside a cloud account, at the
//! account's own network (the metadata endpoint, internal services). So, unless
//! [`HttpOptions::allow_private`] is set:
//! - host names resolve through a resolver that drops every address
//!   [`crate::target::is_forbidden`] rejects (a name left with none fails to resolve);
//! - a redirect to an IP literal that is forbidden is refused before any connection, unless it
//!   stays on the origin (host and port) of the URL the operator configured;
//! - whatever `allow_private` says, only `http` and `https` redirects are followed, and at most
//!   [`MAX_REDIRECTS`] of them.
//!
//! The operator's own URLs are trusted as written: a configured `http://127.0.0.1:8080/list.txt`
//! or `http://10.1.2.3/` is fetched, because reqwest connects to an IP literal without asking the
//! resolver and because the operator chose it. This is what lets tests serve lists from loopback
//! with `allow_private` off, and still see a redirect to `http://10.0.0.1/` refused.
//!
//! The client uses no system proxy and no cookies, and [`read_capped`] bounds what a response may
//! cost in memory.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::{Attempt, Policy};
use url::Url;

use crate::target::is_forbidden;

/// The most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;

/// How the client behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Time allowed to establish the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time allowed for the whole request, body included.
    pub timeout: Duration,
    /// Let redirects and DNS answers lead to private, loopback and other non-public addresses.
    /// For tests and lab networks only.
    pub allow_private: bool,
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            allow_private: false,
            user_agent: concat!("proxyharvest/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// What went wrong building a client or reading a response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    #[error("response larger than the {limit}-byte cap{}", declared_text(*.declared))]
    TooLarge {
        limit: usize,
        /// The Content-Length the server announced, when it did.
        declared: Option<u64>,
    },
    #[error("reading the response body: {0}")]
    Body(#[source] reqwest::Error),
}

fn declared_text(declared: Option<u64>) -> String {
    declared.map_or_else(String::new, |n| format!(" (Content-Length {n})"))
}

/// Why a redirect was not followed. Carried inside reqwest's redirect error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefused {
    #[error("redirect to a non-HTTP scheme {0:?} refused")]
    Scheme(String),
    #[error("redirect to forbidden address {0} refused")]
    ForbiddenAddress(IpAddr),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
}

/// A host name resolved to no address the fetcher may contact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} resolves only to forbidden addresses")]
pub struct ForbiddenName {
    pub name: String,
}

/// Builds the client every HTTP fetch goes through.
pub fn client(opts: &HttpOptions) -> Result<reqwest::Client, HttpError> {
    let allow_private = opts.allow_private;
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.timeout)
        .user_agent(opts.user_agent.as_str())
        .redirect(Policy::custom(
            move |attempt: Attempt| match check_redirect(
                attempt.url(),
                attempt.previous(),
                allow_private,
            ) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            },
        ));
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
    }
    builder.build().map_err(HttpError::Build)
}

/// Decides whether to follow a redirect to `next`, given the URLs requested so far (the first is
/// the operator's).
fn check_redirect(
    next: &Url,
    previous: &[Url],
    allow_private: bool,
) -> Result<(), RedirectRefused> {
    if !matches!(next.scheme(), "http" | "https") {
        return Err(RedirectRefused::Scheme(next.scheme().to_owned()));
    }
    // `previous` holds the original request too, so it is one longer than the hops taken.
    if previous.len() > MAX_REDIRECTS {
        return Err(RedirectRefused::TooMany);
    }
    if allow_private {
        return Ok(());
    }
    let ip = match next.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        // Names go through the resolver, which drops forbidden addresses.
        Some(url::Host::Domain(_)) | None => return Ok(()),
    };
    let same_origin = previous.first().is_some_and(|first| {
        first.host() == next.host() && first.port_or_known_default() == next.port_or_known_default()
    });
    if is_forbidden(ip) && !same_origin {
        return Err(RedirectRefused::ForbiddenAddress(ip));
    }
    Ok(())
}

/// Resolves with the system resolver and keeps only the addresses the fetcher may contact.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = public_only(found);
            if allowed.is_empty() {
                return Err(ForbiddenName { name }.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

fn public_only(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    addrs
        .into_iter()
        .filter(|a| !is_forbidden(a.ip()))
        .collect()
}

/// Reads a whole response body, failing with [`HttpError::TooLarge`] as soon as it exceeds
/// `max_bytes` (at once when the Content-Length says so), so a hostile or endless response costs
/// at most `max_bytes` of memory.
pub async fn read_capped(
    mut resp: reqwest::Response,
    max_bytes: usize,
) -> Result<Vec<u8>, HttpError> {
    let declared = resp.content_length();
    if let Some(len) = declared
        && len > max_bytes as u64
    {
        return Err(HttpError::TooLarge {
            limit: max_bytes,
            declared,
        });
    }
    // Trust the declared length for the first allocation only as far as the cap.
    let initial = declared.map_or(64 * 1024, |n| n as usize).min(max_bytes);
    let mut body = Vec::with_capacity(initial);
    while let Some(chunk) = resp.chunk().await.map_err(HttpError::Body)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(HttpError::TooLarge {
                limit: max_bytes,
                declared,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        s.parse().unwrap()
    }

    #[test]
    fn redirect_to_forbidden_ip_literal_is_refused() {
        let first = [url("http://127.0.0.1:8080/list")];
        for next in [
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:8080/",
            "http://127.0.0.1:6379/",
            "http://[::ffff:192.168.1.1]/",
        ] {
            assert!(
                matches!(
                    check_redirect(&url(next), &first, false),
                    Err(RedirectRefused::ForbiddenAddress(_))
                ),
                "{next}"
            );
            assert_eq!(check_redirect(&url(next), &first, true), Ok(()), "{next}");
        }
    }

    #[test]
    fn redirect_within_the_configured_origin_or_to_public_hosts_is_followed() {
        let first = [url("http://127.0.0.1:8080/list")];
        for next in [
            "http://127.0.0.1:8080/other",
            "https://1.1.1.1/list",
            "http://lists.example.com/x",
        ] {
            assert_eq!(check_redirect(&url(next), &first, false), Ok(()), "{next}");
        }
    }

    #[test]
    fn redirect_to_other_schemes_is_refused_even_when_private_is_allowed() {
        let first = [url("http://1.1.1.1/")];
        for next in [
            "file:///etc/passwd",
            "ftp://1.1.1.1/list",
            "gopher://1.1.1.1/",
        ] {
            assert!(matches!(
                check_redirect(&url(next), &first, true),
                Err(RedirectRefused::Scheme(_))
            ));
        }
    }

    #[test]
    fn redirect_chain_is_limited() {
        let chain: Vec<Url> = (0..=MAX_REDIRECTS)
            .map(|i| url(&format!("http://1.1.1.1/{i}")))
            .collect();
        let next = url("http://1.1.1.1/next");
        assert_eq!(check_redirect(&next, &chain[..MAX_REDIRECTS], true), Ok(()));
        assert_eq!(
            check_redirect(&next, &chain, true),
            Err(RedirectRefused::TooMany)
        );
    }

    #[test]
    fn resolver_filter_keeps_public_addresses_only() {
        let addrs: Vec<SocketAddr> = ["10.0.0.1:0", "1.1.1.1:0", "[::1]:0", "[2606:4700::1111]:0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let kept = public_only(addrs);
        assert_eq!(
            kept,
            [
                "1.1.1.1:0".parse().unwrap(),
                "[2606:4700::1111]:0".parse().unwrap()
            ]
        );
    }

    #[tokio::test]
    async fn resolver_refuses_a_name_with_only_private_addresses() {
        let err = match PublicOnlyResolver
            .resolve("localhost".parse().unwrap())
            .await
        {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(err) => err,
        };
        assert!(err.to_string().contains("forbidden"), "{err}");
    }

    #[test]
    fn default_options_build_a_client() {
        client(&HttpOptions::default()).unwrap();
        client(&HttpOptions {
            allow_private: true,
            ..HttpOptions::default()
        })
        .unwrap();
    }
}
