//! Judges: what a judge echoed, whether it is the answer to our request, and what it says about
//! the proxy.
//!
//! A judge is an HTTP(S) endpoint that echoes the request it received. A check sends
//! `GET <judge-url>?ph_token=<token>` through a proxy; the answer proves the proxy works only if it
//! carries the same fresh token ([`verify`]), since some "proxies" answer every request with a
//! canned page. The echoed headers and client address then grade the proxy's anonymity
//! ([`grade`]).
//!
//! Three formats are understood, detected from the body ([`parse_echo`]), and all reduce to one
//! [`Echo`]: the project's own [`JudgeDocument`] (rendered by the judge function and the test
//! judge), httpbin's `/get?show_env=1`, and the classic `azenv.php` text/HTML page, so that
//! public judges can stand in for our own.
//!
//! [`tls_config`] is the one TLS client configuration for speaking to an HTTPS judge through a
//! `CONNECT` tunnel.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::outcome::Anonymity;

/// The name our own judge writes in [`JudgeDocument::judge`].
pub const JUDGE_NAME: &str = "proxyharvest";

/// The [`JudgeDocument`] version this code writes and reads.
pub const JUDGE_VERSION: u32 = 1;

/// The query parameter that carries a check's token.
pub const TOKEN_PARAM: &str = "ph_token";

/// Headers the checker sends itself: whatever they contain says nothing about the proxy. (The
/// judge's own host name is in `host`, and in loopback tests that is the checker's address.)
const CHECKER_HEADERS: &[&str] = &[
    "host",
    "user-agent",
    "accept",
    "connection",
    "proxy-authorization",
];

/// Headers that only a proxy adds: any of them reaching the judge shows that a proxy is in the
/// way. CDN headers (`cf-connecting-ip`, ...) are absent on purpose: a CDN in front of a judge adds
/// them on every request.
const PROXY_HEADERS: &[&str] = &[
    "via",
    "forwarded",
    "forwarded-for",
    "x-forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-server",
    "x-real-ip",
    "client-ip",
    "x-client-ip",
    "x-originating-ip",
    "x-cluster-client-ip",
    "x-proxy-id",
    "x-proxy-connection",
    "proxy-connection",
    "x-tinyproxy",
    "x-bluecoat-via",
];

/// What a judge received, whichever format it reported it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    /// The address the judge saw the connection come from: the proxy's exit address.
    pub remote_addr: IpAddr,
    /// Request headers, names lower-cased, in the order the judge listed them.
    pub headers: Vec<(String, String)>,
    /// The raw query string (without `?`).
    pub query: String,
}

impl Echo {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The body our own judge answers with (JSON). Header names are lower-cased; repeated headers are
/// joined with `", "` as HTTP allows. A judge behind a front end (Lambda function URL, load
/// balancer) must leave out the headers the front end adds (`x-forwarded-for`, `x-amzn-trace-id`,
/// ...), or every proxy would look anonymous at best.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeDocument {
    /// Always [`JUDGE_NAME`]: how [`parse_echo`] recognises the format.
    pub judge: String,
    /// Always [`JUDGE_VERSION`].
    pub version: u32,
    pub remote_addr: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, String>,
}

impl JudgeDocument {
    /// The document for one request as the judge received it.
    pub fn new<K, V>(
        remote_addr: IpAddr,
        method: &str,
        path: &str,
        query: &str,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut joined: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in headers {
            let name = name.as_ref().to_ascii_lowercase();
            let value = value.as_ref();
            joined
                .entry(name)
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(value);
                })
                .or_insert_with(|| value.to_owned());
        }
        JudgeDocument {
            judge: JUDGE_NAME.to_owned(),
            version: JUDGE_VERSION,
            remote_addr: remote_addr.to_string(),
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: joined,
        }
    }
}

/// Where the judges are. The HTTPS judge is optional: without it, `CONNECT`-only proxies cannot
/// be told apart from plain HTTP ones.
#[derive(Debug, Clone)]
pub struct JudgeConfig {
    pub http: url::Url,
    pub https: Option<url::Url>,
    /// Extra trusted CA certificates (PEM) for the HTTPS judge, e.g. a test judge's own.
    pub ca_file: Option<PathBuf>,
}

/// Why a judge's answer or configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error("the body is not a judge echo in any known format")]
    Unrecognised,
    #[error("the judge document is malformed: {0}")]
    BadDocument(#[source] serde_json::Error),
    #[error("the judge document has version {0}, this build reads version {JUDGE_VERSION}")]
    UnsupportedVersion(u32),
    #[error("the judge reported a client address that is not an IP address: {0:?}")]
    BadAddress(String),
    #[error("cannot read CA certificates from {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("no certificate found in CA file {}", .0.display())]
    NoCertificates(PathBuf),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A fresh check token: 128 random bits in hex, unguessable by a proxy that fakes answers.
pub fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The judge URL with `ph_token=<token>` appended to its query (replacing any token already
/// there, so that exactly one is sent). The fragment is dropped: it is never sent anyway.
pub fn with_token(url: &url::Url, token: &str) -> url::Url {
    let mut out = url.clone();
    out.set_fragment(None);
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != TOKEN_PARAM)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    out.set_query(None);
    out.query_pairs_mut()
        .extend_pairs(kept)
        .append_pair(TOKEN_PARAM, token);
    out
}

/// Reads a judge's answer in any known format: our [`JudgeDocument`], httpbin
/// (`/get?show_env=1`), or azenv. Bodies are expected to be size-capped by the caller.
pub fn parse_echo(body: &[u8]) -> Result<Echo, JudgeError> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.starts_with('{') {
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
            return Err(JudgeError::Unrecognised);
        };
        if object.get("judge").and_then(Value::as_str) == Some(JUDGE_NAME) {
            return parse_document(Value::Object(object));
        }
        if object.get("origin").is_some_and(Value::is_string)
            && object.get("headers").is_some_and(Value::is_object)
        {
            return parse_httpbin(&object);
        }
        return Err(JudgeError::Unrecognised);
    }
    parse_azenv(text)
}

/// Checks that the echo answers our request: the query holds the pair `ph_token=<token>` exactly
/// (a longer token that merely starts with ours does not count).
pub fn verify(echo: &Echo, token: &str) -> bool {
    !token.is_empty()
        && url::form_urlencoded::parse(echo.query.as_bytes())
            .any(|(k, v)| k == TOKEN_PARAM && v == token)
}

/// Grades what the judge received. Transparent if `own_ip` (the checker's own public address)
/// appears as the client address or as a whole address inside any header value; otherwise
/// anonymous if any proxy-revealing header arrived; otherwise elite. Headers the checker sends
/// itself are ignored. Without `own_ip`, transparency cannot be detected.
pub fn grade(echo: &Echo, own_ip: Option<IpAddr>) -> Anonymity {
    let relevant = || {
        echo.headers
            .iter()
            .filter(|(name, _)| !CHECKER_HEADERS.contains(&name.as_str()))
    };
    if let Some(own) = own_ip.map(|ip| ip.to_canonical()) {
        let leaked = echo.remote_addr.to_canonical() == own
            || relevant().any(|(_, value)| addresses_in(value).any(|ip| ip == own));
        if leaked {
            return Anonymity::Transparent;
        }
    }
    if relevant().any(|(name, _)| PROXY_HEADERS.contains(&name.as_str())) {
        Anonymity::Anonymous
    } else {
        Anonymity::Elite
    }
}

/// The checker's own public address, from a judge's answer to a direct (proxy-less) request.
pub fn own_ip_from(body: &[u8]) -> Result<IpAddr, JudgeError> {
    parse_echo(body).map(|echo| echo.remote_addr)
}

/// The TLS client configuration for HTTPS judges: the Web PKI roots plus the certificates of
/// `ca_file` (PEM) if given, the aws-lc-rs provider, and ALPN `http/1.1` only (the checker speaks
/// HTTP/1.1 through the tunnel).
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, JudgeError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let ca_error = |source| JudgeError::CaFile {
            path: path.to_owned(),
            source,
        };
        let mut found = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(ca_error)? {
            roots.add(cert.map_err(ca_error)?)?;
            found += 1;
        }
        if found == 0 {
            return Err(JudgeError::NoCertificates(path.to_owned()));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn parse_document(value: Value) -> Result<Echo, JudgeError> {
    let doc: JudgeDocument = serde_json::from_value(value).map_err(JudgeError::BadDocument)?;
    if doc.version != JUDGE_VERSION {
        return Err(JudgeError::UnsupportedVersion(doc.version));
    }
    Ok(Echo {
        remote_addr: parse_ip(&doc.remote_addr)?,
        headers: doc
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        query: doc.query,
    })
}

/// httpbin reports the client chain in `origin` ("client, proxy"): the last address is the peer.
/// Behind its load balancer httpbin also shows the balancer's `X-Forwarded-For`, which ends with
/// that same peer address; that last element is the judge's own and is removed, so grading sees
/// only what came through the proxy. The whole `origin` is kept as a pseudo-header `origin`, so
/// grading can look for the checker's address anywhere in the chain.
fn parse_httpbin(object: &Map<String, Value>) -> Result<Echo, JudgeError> {
    let origin = object
        .get("origin")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let last = origin.rsplit(',').next().unwrap_or_default();
    let remote_addr = parse_ip(last)?;
    let mut headers = Vec::new();
    for (name, value) in object
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let name = name.to_ascii_lowercase();
        let Some(mut value) = value.as_str().map(str::to_owned) else {
            continue;
        };
        if name == "x-forwarded-for" {
            value = strip_last_hop(&value, remote_addr);
            if value.is_empty() {
                continue;
            }
        }
        headers.push((name, value));
    }
    headers.push(("origin".to_owned(), origin.to_owned()));
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in object
        .get("args")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        // httpbin writes a repeated parameter as a list of values.
        match value {
            Value::Array(values) => {
                for v in values.iter().filter_map(Value::as_str) {
                    query.append_pair(name, v);
                }
            }
            Value::String(v) => {
                query.append_pair(name, v);
            }
            _ => {}
        }
    }
    Ok(Echo {
        remote_addr,
        headers,
        query: query.finish(),
    })
}

/// An `X-Forwarded-For` list without its last element if that is `peer` (the hop the judge's
/// own front end appended).
fn strip_last_hop(list: &str, peer: IpAddr) -> String {
    match list.rsplit_once(',') {
        Some((before, last)) if parse_ip(last).ok() == Some(peer) => before.trim().to_owned(),
        None if parse_ip(list).ok() == Some(peer) => String::new(),
        _ => list.to_owned(),
    }
}

/// azenv.php prints the CGI environment as `KEY = value` lines, usually inside HTML. Request
/// headers are the `HTTP_*` variables (`HTTP_X_FORWARDED_FOR` is header `x-forwarded-for`).
fn parse_azenv(text: &str) -> Result<Echo, JudgeError> {
    let plain = strip_tags(text);
    let mut remote_addr = None;
    let mut query_string = None;
    let mut request_uri_query = None;
    let mut headers = Vec::new();
    for line in plain.lines() {
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        let key = key.trim();
        let value = decode_entities(value.trim());
        match key {
            "REMOTE_ADDR" => remote_addr = Some(parse_ip(&value)?),
            "QUERY_STRING" => query_string = Some(value),
            "REQUEST_URI" => {
                request_uri_query = Some(value.split_once('?').map(|(_, q)| q.to_owned()))
            }
            _ => {
                if let Some(header) = key.strip_prefix("HTTP_") {
                    headers.push((header.to_ascii_lowercase().replace('_', "-"), value));
                }
            }
        }
    }
    let remote_addr = remote_addr.ok_or(JudgeError::Unrecognised)?;
    let query = query_string
        .or(request_uri_query.flatten())
        .unwrap_or_default();
    Ok(Echo {
        remote_addr,
        headers,
        query,
    })
}

/// Replaces every HTML tag with a line break, so `REMOTE_ADDR = 1.2.3.4<br>` ends its line.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => in_tag = true,
            (true, '>') => {
                in_tag = false;
                out.push('\n');
            }
            (false, c) => out.push(c),
            (true, _) => {}
        }
    }
    out
}

/// Decodes the few entities a judge page uses for header values.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

fn parse_ip(s: &str) -> Result<IpAddr, JudgeError> {
    let s = s.trim();
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| JudgeError::BadAddress(s.to_owned()))
}

/// Every IP address written as a whole token in a header value: `1.2.3.4`, `1.2.3.4:5678`,
/// `[2001:db8::1]:80`, `for="[::1]"`. Canonical, so `::ffff:1.2.3.4` counts as `1.2.3.4`.
/// Tokens are maximal runs of characters that can appear in an address, so `11.2.3.45` never
/// yields `1.2.3.4`.
fn addresses_in(value: &str) -> impl Iterator<Item = IpAddr> + '_ {
    value
        .split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
        .filter_map(|token| {
            token.parse::<IpAddr>().ok().or_else(|| {
                // An IPv4 address with a port.
                let (addr, port) = token.rsplit_once(':')?;
                port.parse::<u16>().ok()?;
                addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
            })
        })
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn echo(remote: &str, headers: &[(&str, &str)]) -> Echo {
        Echo {
            remote_addr: ip(remote),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            query: String::new(),
        }
    }

    /// azenv.php 1.04 as public judges serve it, through a proxy that adds `Via` and `XFF`.
    const AZENV_PAGE: &str = r#"<html>
<head>
<title>AZ Environment variables 1.04</title>
</head>
<body>
<pre>
HTTP_HOST = judge.example.net
HTTP_USER_AGENT = Mozilla/5.0 (X11; Linux x86_64) proxyharvest
HTTP_ACCEPT = text/html,application/xhtml+xml;q=0.9,*/*;q=0.8
HTTP_VIA = 1.1 squid.example (squid/5.7)
HTTP_X_FORWARDED_FOR = 198.51.100.23
HTTP_CACHE_CONTROL = max-age=259200
HTTP_CONNECTION = keep-alive
HTTP_X_TEST = a &amp; b &lt;c&gt;
REMOTE_ADDR = 203.0.113.7
REMOTE_PORT = 51322
REQUEST_METHOD = GET
REQUEST_URI = /azenv.php?lang=en&amp;ph_token=0123456789abcdef0123456789abcdef
REQUEST_TIME_FLOAT = 1767225600.123456
REQUEST_TIME = 1767225600
</pre>
</body>
</html>
"#;

    /// httpbin.org `/get?show_env=1` answer through a transparent proxy (origin shows the chain).
    const HTTPBIN_BODY: &str = r#"{
  "args": {
    "ph_token": "0123456789abcdef0123456789abcdef",
    "show_env": "1"
  },
  "headers": {
    "Accept": "*/*",
    "Host": "httpbin.org",
    "User-Agent": "proxyharvest/0.1",
    "Via": "1.1 proxy.example",
    "X-Amzn-Trace-Id": "Root=1-6772b5a0-2d4b7b1f0c3d7e4a5b6c7d8e",
    "X-Forwarded-For": "198.51.100.23, 203.0.113.7",
    "X-Forwarded-Port": "80",
    "X-Forwarded-Proto": "http"
  },
  "origin": "198.51.100.23, 203.0.113.7",
  "url": "http://httpbin.org/get?show_env=1&ph_token=0123456789abcdef0123456789abcdef"
}
"#;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn new_tokens_are_128_bit_hex_and_fresh() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn with_token_appends_one_pair_and_keeps_the_query() {
        let plain = url::Url::parse("http://judge.example/judge").unwrap();
        assert_eq!(
            with_token(&plain, "abc").as_str(),
            "http://judge.example/judge?ph_token=abc"
        );
        let httpbin = url::Url::parse("https://httpbin.org/get?show_env=1#x").unwrap();
        assert_eq!(
            with_token(&httpbin, "abc").as_str(),
            "https://httpbin.org/get?show_env=1&ph_token=abc"
        );
        let again = with_token(&with_token(&httpbin, "old"), "new");
        assert_eq!(again.query(), Some("show_env=1&ph_token=new"));
    }

    #[test]
    fn parses_our_own_document() {
        let doc = JudgeDocument::new(
            ip("203.0.113.7"),
            "GET",
            "/judge",
            "ph_token=abc",
            [
                ("Via", "1.1 a"),
                ("X-Forwarded-For", "1.2.3.4"),
                ("via", "1.1 b"),
            ],
        );
        assert_eq!(doc.judge, JUDGE_NAME);
        assert_eq!(doc.headers["via"], "1.1 a, 1.1 b");
        let body = serde_json::to_vec(&doc).unwrap();
        let echo = parse_echo(&body).unwrap();
        assert_eq!(echo.remote_addr, ip("203.0.113.7"));
        assert_eq!(echo.query, "ph_token=abc");
        assert_eq!(echo.header("x-forwarded-for"), Some("1.2.3.4"));
        assert_eq!(echo.header("via"), Some("1.1 a, 1.1 b"));
    }

    #[test]
    fn rejects_our_document_with_another_version_or_a_bad_address() {
        let mut doc = JudgeDocument::new(ip("1.2.3.4"), "GET", "/", "", [("a", "b")]);
        doc.version = 2;
        let body = serde_json::to_vec(&doc).unwrap();
        assert!(matches!(
            parse_echo(&body),
            Err(JudgeError::UnsupportedVersion(2))
        ));
        doc.version = JUDGE_VERSION;
        doc.remote_addr = "not-an-ip".to_owned();
        let body = serde_json::to_vec(&doc).unwrap();
        assert!(matches!(parse_echo(&body), Err(JudgeError::BadAddress(_))));
        let missing_fields = br#"{"judge": "proxyharvest", "version": 1}"#;
        assert!(matches!(
            parse_echo(missing_fields),
            Err(JudgeError::BadDocument(_))
        ));
    }

    #[test]
    fn parses_httpbin_show_env() {
        let echo = parse_echo(HTTPBIN_BODY.as_bytes()).unwrap();
        assert_eq!(echo.remote_addr, ip("203.0.113.7"));
        assert!(verify(&echo, TOKEN));
        assert_eq!(echo.header("via"), Some("1.1 proxy.example"));
        // The balancer's own hop is gone; the address the proxy added stays.
        assert_eq!(echo.header("x-forwarded-for"), Some("198.51.100.23"));
        assert_eq!(echo.header("origin"), Some("198.51.100.23, 203.0.113.7"));
        assert_eq!(
            grade(&echo, Some(ip("198.51.100.23"))),
            Anonymity::Transparent
        );
        assert_eq!(grade(&echo, Some(ip("192.0.2.1"))), Anonymity::Anonymous);
    }

    #[test]
    fn httpbin_through_an_elite_proxy_has_no_forwarding_header_left() {
        let body = r#"{"args": {"ph_token": ["x", "y"]}, "headers": {"Host": "httpbin.org",
            "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
            "X-Forwarded-Port": "443"}, "origin": "203.0.113.7",
            "url": "https://httpbin.org/get?show_env=1"}"#;
        let echo = parse_echo(body.as_bytes()).unwrap();
        assert_eq!(echo.header("x-forwarded-for"), None);
        assert_eq!(echo.query, "ph_token=x&ph_token=y");
        assert!(verify(&echo, "y"));
        assert_eq!(grade(&echo, Some(ip("192.0.2.1"))), Anonymity::Elite);
    }

    #[test]
    fn parses_an_azenv_page() {
        let echo = parse_echo(AZENV_PAGE.as_bytes()).unwrap();
        assert_eq!(echo.remote_addr, ip("203.0.113.7"));
        assert_eq!(echo.query, format!("lang=en&ph_token={TOKEN}"));
        assert!(verify(&echo, TOKEN));
        assert_eq!(echo.header("x-forwarded-for"), Some("198.51.100.23"));
        assert_eq!(echo.header("x-test"), Some("a & b <c>"));
        assert_eq!(echo.header("host"), Some("judge.example.net"));
        assert_eq!(echo.header("remote-port"), None);
        assert_eq!(
            grade(&echo, Some(ip("198.51.100.23"))),
            Anonymity::Transparent
        );
    }

    #[test]
    fn azenv_prefers_query_string_and_tolerates_br_lines() {
        let page = "REMOTE_ADDR = 2001:db8::7<br>\nQUERY_STRING = ph_token=abc<br>\
                    REQUEST_URI = /azenv.php?other=1<br>HTTP_VIA = 1.0 x<br>";
        let echo = parse_echo(page.as_bytes()).unwrap();
        assert_eq!(echo.remote_addr, ip("2001:db8::7"));
        assert_eq!(echo.query, "ph_token=abc");
        assert_eq!(echo.header("via"), Some("1.0 x"));
    }

    #[test]
    fn anything_else_is_unrecognised() {
        for body in [
            &b""[..],
            b"<html><body>It works!</body></html>",
            b"{\"ip\": \"1.2.3.4\"}",
            b"{ not json",
            b"[1, 2]",
            b"\xff\xfe\x00garbage",
        ] {
            assert!(
                matches!(parse_echo(body), Err(JudgeError::Unrecognised)),
                "{body:?}"
            );
        }
    }

    #[test]
    fn own_ip_is_the_remote_address() {
        assert_eq!(
            own_ip_from(AZENV_PAGE.as_bytes()).unwrap(),
            ip("203.0.113.7")
        );
        assert!(own_ip_from(b"hello").is_err());
    }

    #[test]
    fn verify_needs_the_exact_pair() {
        let with = |query: &str| Echo {
            query: query.to_owned(),
            ..echo("1.2.3.4", &[])
        };
        assert!(verify(&with("ph_token=abc"), "abc"));
        assert!(verify(&with("a=1&ph_token=abc&b=2"), "abc"));
        assert!(!verify(&with(""), "abc"));
        assert!(!verify(&with("a=1"), "abc"));
        assert!(!verify(&with("ph_token=abcd"), "abc"));
        assert!(!verify(&with("ph_token=ab"), "abc"));
        assert!(!verify(&with("xph_token=abc"), "abc"));
        assert!(!verify(&with("q=ph_token=abc"), "abc"));
        assert!(!verify(&with("ph_token="), ""));
    }

    #[test]
    fn grades_elite_when_nothing_reveals_the_proxy() {
        let e = echo(
            "203.0.113.7",
            &[
                ("host", "judge.example"),
                ("user-agent", "proxyharvest"),
                ("accept", "*/*"),
                ("connection", "close"),
                ("cache-control", "no-cache"),
            ],
        );
        assert_eq!(grade(&e, Some(ip("192.0.2.1"))), Anonymity::Elite);
        assert_eq!(grade(&e, None), Anonymity::Elite);
    }

    #[test]
    fn each_proxy_header_grades_anonymous() {
        for name in PROXY_HEADERS {
            let e = echo("203.0.113.7", &[(name, "unknown")]);
            assert_eq!(
                grade(&e, Some(ip("192.0.2.1"))),
                Anonymity::Anonymous,
                "{name}"
            );
        }
        let cdn = echo("203.0.113.7", &[("cf-connecting-ip", "203.0.113.7")]);
        assert_eq!(grade(&cdn, Some(ip("192.0.2.1"))), Anonymity::Elite);
    }

    #[test]
    fn own_ip_anywhere_grades_transparent() {
        let own = Some(ip("192.0.2.1"));
        for (remote, headers) in [
            ("192.0.2.1", vec![]),
            ("::ffff:192.0.2.1", vec![]),
            (
                "203.0.113.7",
                vec![("x-forwarded-for", "10.0.0.1, 192.0.2.1")],
            ),
            ("203.0.113.7", vec![("x-real-ip", "192.0.2.1:51234")]),
            (
                "203.0.113.7",
                vec![("forwarded", "for=192.0.2.1;proto=http")],
            ),
            ("203.0.113.7", vec![("x-custom", "client ::ffff:192.0.2.1")]),
        ] {
            let e = echo(remote, &headers);
            assert_eq!(
                grade(&e, own),
                Anonymity::Transparent,
                "{remote} {headers:?}"
            );
        }
    }

    #[test]
    fn own_ip_matches_whole_addresses_only() {
        let own = Some(ip("1.2.3.4"));
        for value in [
            "11.2.3.45",
            "1.2.3.45",
            "21.2.3.4",
            "1.2.3.4.5",
            "101.2.3.4",
        ] {
            let e = echo("203.0.113.7", &[("x-forwarded-for", value)]);
            assert_eq!(grade(&e, own), Anonymity::Anonymous, "{value}");
        }
    }

    #[test]
    fn own_ipv6_is_found_in_any_spelling() {
        let own = Some(ip("2001:db8::1"));
        for value in [
            "2001:db8::1",
            "2001:DB8:0:0::1",
            "for=\"[2001:db8::1]:4711\"",
            "10.0.0.1, 2001:db8:0::1",
        ] {
            let e = echo("2001:db8::99", &[("forwarded", value)]);
            assert_eq!(grade(&e, own), Anonymity::Transparent, "{value}");
        }
        let other = echo("2001:db8::99", &[("forwarded", "for=\"[2001:db8::10]\"")]);
        assert_eq!(grade(&other, own), Anonymity::Anonymous);
    }

    #[test]
    fn checker_headers_are_ignored() {
        // In loopback tests the judge's host is the checker's own address.
        let e = echo(
            "127.0.0.2",
            &[("host", "127.0.0.1:8080"), ("proxy-authorization", "x")],
        );
        assert_eq!(grade(&e, Some(ip("127.0.0.1"))), Anonymity::Elite);
    }

    #[test]
    fn tls_config_reports_unusable_ca_files() {
        let none = tls_config(None).unwrap();
        assert_eq!(none.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let dir = std::env::temp_dir().join(format!("proxyharvest-judge-{}", new_token()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        assert!(matches!(
            tls_config(Some(&empty)),
            Err(JudgeError::NoCertificates(_))
        ));
        let missing = dir.join("missing.pem");
        assert!(matches!(
            tls_config(Some(&missing)),
            Err(JudgeError::CaFile { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
