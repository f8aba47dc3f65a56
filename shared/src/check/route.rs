//! The judge as each protocol addresses it, worked out once per checker from the configured URLs.
//!
//! An HTTP proxy is handed the absolute URL; a SOCKS5 proxy the host (name or address) and port;
//! a SOCKS4 proxy needs an IPv4 address, so a judge name is resolved here, once, and SOCKS4a
//! (the name itself) is used only when the name has no IPv4 address; the HTTPS path needs the
//! `CONNECT` authority and the TLS server name. Doing this per check would repeat the same DNS
//! query thousands of times a second.

use rustls_pki_types::ServerName;
use url::Url;

use super::CheckError;
use crate::judge::JudgeConfig;
use crate::proxy::{Endpoint, Host, Port};

/// How to reach the judge through each kind of proxy.
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    pub http: Url,
    /// The HTTP judge's host and port, for SOCKS5.
    pub http_endpoint: Endpoint,
    /// The HTTP judge for SOCKS4: an IPv4 address, or a name for SOCKS4a; `None` when the judge is
    /// an IPv6 address, which SOCKS4 cannot reach.
    pub socks4_endpoint: Option<Endpoint>,
    /// The HTTPS judge, if one is configured.
    pub https: Option<HttpsRoute>,
}

#[derive(Debug, Clone)]
pub(crate) struct HttpsRoute {
    pub url: Url,
    /// `host:port` for `CONNECT`.
    pub authority: String,
    pub server_name: ServerName<'static>,
}

impl Routes {
    pub async fn new(judge: &JudgeConfig) -> Result<Routes, CheckError> {
        let http_endpoint = endpoint_of(&judge.http, "http")?;
        let socks4_endpoint = socks4_endpoint(&http_endpoint).await;
        let https = match &judge.https {
            None => None,
            Some(url) => Some(https_route(url)?),
        };
        Ok(Routes {
            http: judge.http.clone(),
            http_endpoint,
            socks4_endpoint,
            https,
        })
    }
}

fn bad_url(url: &Url, why: &'static str) -> CheckError {
    CheckError::JudgeUrl {
        url: url.to_string(),
        why,
    }
}

/// The host and port of a judge URL, which must use `scheme`.
pub(crate) fn endpoint_of(url: &Url, scheme: &str) -> Result<Endpoint, CheckError> {
    if url.scheme() != scheme {
        return Err(bad_url(
            url,
            if scheme == "http" {
                "the HTTP judge must be an http:// URL"
            } else {
                "the HTTPS judge must be an https:// URL"
            },
        ));
    }
    let host = match url.host() {
        Some(url::Host::Ipv4(ip)) => Host::Ip(ip.into()),
        Some(url::Host::Ipv6(ip)) => Host::Ip(ip.into()),
        Some(url::Host::Domain(name)) => name
            .parse()
            .map_err(|_| bad_url(url, "the host is not a usable DNS name"))?,
        None => return Err(bad_url(url, "the URL has no host")),
    };
    let port = url
        .port_or_known_default()
        .and_then(Port::new)
        .ok_or_else(|| bad_url(url, "the URL has no usable port"))?;
    Ok(Endpoint { host, port })
}

/// The `Host` header for a request to `url`: the host, plus the port when it is not the default.
pub(crate) fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The origin-form request target (`/path?query`) for a request through a tunnel.
pub(crate) fn origin_form(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

async fn socks4_endpoint(judge: &Endpoint) -> Option<Endpoint> {
    match &judge.host {
        Host::Ip(ip) if ip.is_ipv4() => Some(judge.clone()),
        Host::Ip(_) => None,
        Host::Name(name) => {
            let v4 = tokio::net::lookup_host((name.as_str(), judge.port.get()))
                .await
                .ok()
                .and_then(|mut addrs| addrs.find(|a| a.is_ipv4()));
            Some(match v4 {
                Some(addr) => Endpoint {
                    host: Host::Ip(addr.ip()),
                    port: judge.port,
                },
                None => judge.clone(),
            })
        }
    }
}

fn https_route(url: &Url) -> Result<HttpsRoute, CheckError> {
    let endpoint = endpoint_of(url, "https")?;
    let server_name = match &endpoint.host {
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        Host::Name(name) => ServerName::try_from(name.clone())
            .map_err(|_| bad_url(url, "the host is not a valid TLS server name"))?,
    };
    Ok(HttpsRoute {
        url: url.clone(),
        authority: endpoint.to_string(),
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn url(s: &str) -> Url {
        s.parse().unwrap()
    }

    #[test]
    fn request_targets_and_host_headers() {
        let u = url("http://judge.example:8080/echo?a=1");
        assert_eq!(host_header(&u), "judge.example:8080");
        assert_eq!(origin_form(&u), "/echo?a=1");
        let u = url("https://[::1]/");
        assert_eq!(host_header(&u), "[::1]");
        assert_eq!(origin_form(&u), "/");
    }

    #[test]
    fn judge_urls_are_validated() {
        let e = endpoint_of(&url("http://127.0.0.1:81/x"), "http").unwrap();
        assert_eq!(e.to_string(), "127.0.0.1:81");
        let e = endpoint_of(&url("https://judge.example/"), "https").unwrap();
        assert_eq!(e.to_string(), "judge.example:443");
        assert!(endpoint_of(&url("https://judge.example/"), "http").is_err());
        assert!(endpoint_of(&url("http://nodots/"), "http").is_err());
    }

    #[tokio::test]
    async fn routes_for_every_protocol() {
        let judge = JudgeConfig {
            http: url("http://127.0.0.1:8000/"),
            https: Some(url("https://[::1]:8443/")),
            ca_file: None,
        };
        let routes = Routes::new(&judge).await.unwrap();
        assert_eq!(
            routes.socks4_endpoint.unwrap().to_string(),
            "127.0.0.1:8000"
        );
        let https = routes.https.unwrap();
        assert_eq!(https.authority, "[::1]:8443");
        let ip: IpAddr = "::1".parse().unwrap();
        assert_eq!(https.server_name, ServerName::IpAddress(ip.into()));
        // SOCKS4 cannot reach an IPv6 judge.
        let v6 = endpoint_of(&url("http://[::1]/"), "http").unwrap();
        assert!(socks4_endpoint(&v6).await.is_none());
        // A name is resolved locally to IPv4 ("localhost" needs no network).
        let name = endpoint_of(&url("http://localhost:8000/"), "http").unwrap();
        let v4 = socks4_endpoint(&name).await.unwrap();
        assert_eq!(v4.host, Host::Ip("127.0.0.1".parse().unwrap()));
    }
}
