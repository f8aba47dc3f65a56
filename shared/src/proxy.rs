//! The proxy model: what a proxy *is*, independent of where it was found or how it is checked.
//!
//! A [`Proxy`] is an endpoint (host + port), optional credentials, and the set of protocols it
//! was listed under (or found to speak). Identity is the endpoint plus credentials: one address
//! listed under several protocols is one proxy with several protocols ([`Proxy::key`]).
//! Invalid values cannot be built: a [`Port`] is never 0, a [`Host`] is an IP or a syntactically
//! valid DNS name. The canonical text form (`socks5://user:pass@1.2.3.4:1080`, or `1.2.3.4:1080`
//! when the protocol is unknown) parses back to the same value.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU16;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A protocol a proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// Plain HTTP forwarding (`GET http://host/path`).
    Http,
    /// An HTTP proxy that tunnels with `CONNECT` (used for HTTPS targets).
    Https,
    /// SOCKS4 (and SOCKS4a, which only adds remote name resolution).
    Socks4,
    /// SOCKS5 (and `socks5h`, which only adds remote name resolution).
    Socks5,
}

impl Protocol {
    /// Every protocol, in the order used when probing an unknown entry.
    pub const ALL: [Protocol; 4] = [
        Protocol::Http,
        Protocol::Socks5,
        Protocol::Socks4,
        Protocol::Https,
    ];

    /// The canonical scheme written in URLs and lists.
    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Socks4 => "socks4",
            Protocol::Socks5 => "socks5",
        }
    }

    /// Parses a scheme as lists write it (case-insensitive; `socks4a` and `socks5h` are aliases).
    pub fn from_scheme(s: &str) -> Option<Protocol> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Some(Protocol::Http),
            "https" => Some(Protocol::Https),
            "socks4" | "socks4a" => Some(Protocol::Socks4),
            "socks5" | "socks5h" => Some(Protocol::Socks5),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Protocol::Http => 1,
            Protocol::Https => 2,
            Protocol::Socks4 => 4,
            Protocol::Socks5 => 8,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

impl FromStr for Protocol {
    type Err = ProxyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::from_scheme(s).ok_or_else(|| ProxyParseError::UnknownScheme(s.to_owned()))
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.scheme())
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A small set of protocols. Serialized as a sorted list of schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ProtocolSet(u8);

impl ProtocolSet {
    pub const EMPTY: ProtocolSet = ProtocolSet(0);

    pub fn single(p: Protocol) -> Self {
        ProtocolSet(p.bit())
    }
    pub fn insert(&mut self, p: Protocol) {
        self.0 |= p.bit();
    }
    pub fn contains(self, p: Protocol) -> bool {
        self.0 & p.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    pub fn union(self, other: ProtocolSet) -> ProtocolSet {
        ProtocolSet(self.0 | other.0)
    }
    /// The protocols in a fixed order (http, https, socks4, socks5).
    pub fn iter(self) -> impl Iterator<Item = Protocol> {
        [
            Protocol::Http,
            Protocol::Https,
            Protocol::Socks4,
            Protocol::Socks5,
        ]
        .into_iter()
        .filter(move |p| self.contains(*p))
    }
}

impl FromIterator<Protocol> for ProtocolSet {
    fn from_iter<I: IntoIterator<Item = Protocol>>(iter: I) -> Self {
        let mut s = ProtocolSet::EMPTY;
        for p in iter {
            s.insert(p);
        }
        s
    }
}

impl Serialize for ProtocolSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for ProtocolSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<Protocol>::deserialize(d)?;
        Ok(v.into_iter().collect())
    }
}

/// A TCP port that is never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Port(NonZeroU16);

impl Port {
    pub fn new(p: u16) -> Option<Port> {
        NonZeroU16::new(p).map(Port)
    }
    pub fn get(self) -> u16 {
        self.0.get()
    }
}

impl TryFrom<u16> for Port {
    type Error = ProxyParseError;
    fn try_from(p: u16) -> Result<Self, Self::Error> {
        Port::new(p).ok_or(ProxyParseError::BadPort)
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.get()
    }
}

impl FromStr for Port {
    type Err = ProxyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProxyParseError::BadPort);
        }
        let n: u32 = s.parse().map_err(|_| ProxyParseError::BadPort)?;
        u16::try_from(n)
            .ok()
            .and_then(Port::new)
            .ok_or(ProxyParseError::BadPort)
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A proxy's host: an IP address, or a DNS name (lower-cased, syntactically valid).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        }
    }
}

impl FromStr for Host {
    type Err = ProxyParseError;
    /// Accepts `1.2.3.4`, `::1`, `[::1]` and DNS names. Rejects IPv4-looking strings with
    /// octets above 255 (`1.2.3.256`) instead of taking them for names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if bare.len() != s.len() {
            return Err(ProxyParseError::BadHost(s.to_owned()));
        }
        let looks_numeric = s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let valid_name = !looks_numeric
            && !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            // A name needs a dot or must be "localhost": bare words in lists are junk.
            && (s.contains('.') || s.eq_ignore_ascii_case("localhost"));
        if valid_name {
            Ok(Host::Name(s.to_ascii_lowercase()))
        } else {
            Err(ProxyParseError::BadHost(s.to_owned()))
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

impl Serialize for Host {
    /// Serialized without brackets (`::1`), as JSON consumers expect a bare address.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Host::Ip(ip) => s.collect_str(ip),
            Host::Name(n) => s.serialize_str(n),
        }
    }
}

impl<'de> Deserialize<'de> for Host {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Host and port: where to connect.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: Host,
    pub port: Port,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Username and password for a proxy. Only printable ASCII without `:`/`@` in the username and
/// without `@` in the password, so that the canonical form stays unambiguous.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: &str, password: &str) -> Result<Self, ProxyParseError> {
        let ok = |s: &str, forbidden: &[u8]| {
            s.len() <= 255
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && !forbidden.contains(&b))
        };
        if username.is_empty() || !ok(username, b":@/") || !ok(password, b"@/") {
            return Err(ProxyParseError::BadCredentials);
        }
        Ok(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}:***)", self.username)
    }
}

/// The identity of a proxy: de-duplication key for lists, results and merges.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProxyKey {
    pub endpoint: Endpoint,
    pub auth: Option<Credentials>,
}

impl fmt::Display for ProxyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.auth {
            Some(c) => write!(f, "{}:{}@{}", c.username, c.password, self.endpoint),
            None => write!(f, "{}", self.endpoint),
        }
    }
}

/// A proxy as listed: endpoint, credentials, and the protocols it was listed under
/// (empty = unknown, to be probed). Serialized flat: `{"host", "port", "auth"?, "protocols"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Proxy {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Credentials>,
    #[serde(default)]
    pub protocols: ProtocolSet,
}

impl Proxy {
    pub fn new(host: Host, port: Port) -> Self {
        Proxy {
            endpoint: Endpoint { host, port },
            auth: None,
            protocols: ProtocolSet::EMPTY,
        }
    }

    pub fn with_protocol(mut self, p: Protocol) -> Self {
        self.protocols.insert(p);
        self
    }

    pub fn with_auth(mut self, auth: Option<Credentials>) -> Self {
        self.auth = auth;
        self
    }

    pub fn key(&self) -> ProxyKey {
        ProxyKey {
            endpoint: self.endpoint.clone(),
            auth: self.auth.clone(),
        }
    }

    /// One canonical line per protocol (`socks5://u:p@1.2.3.4:1080`), or the bare
    /// `host:port` form when the protocol is unknown.
    pub fn canonical_lines(&self) -> Vec<String> {
        if self.protocols.is_empty() {
            return vec![self.key().to_string()];
        }
        self.protocols
            .iter()
            .map(|p| format!("{}://{}", p, self.key()))
            .collect()
    }
}

impl fmt::Display for Proxy {
    /// The canonical form with the first protocol; see [`Proxy::canonical_lines`] for all.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocols.iter().next() {
            Some(p) => write!(f, "{}://{}", p, self.key()),
            None => write!(f, "{}", self.key()),
        }
    }
}

impl FromStr for Proxy {
    type Err = ProxyParseError;
    /// Parses one entry in canonical form: `[scheme://][user:pass@]host:port`, IPv6 in brackets.
    /// Trailing path (`/`) is tolerated, as some lists write `http://1.2.3.4:80/`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (protocol, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (Some(scheme.parse::<Protocol>()?), rest),
            None => (None, s),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some(Credentials::new(u, p)?), hp)
            }
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport)?;
        let mut proxy = Proxy::new(host.parse()?, port.parse()?).with_auth(auth);
        if let Some(p) = protocol {
            proxy.protocols.insert(p);
        }
        Ok(proxy)
    }
}

/// Splits `host:port` / `[v6]:port`.
pub fn split_host_port(s: &str) -> Result<(&str, &str), ProxyParseError> {
    if s.starts_with('[') {
        let end = s
            .find(']')
            .ok_or_else(|| ProxyParseError::BadHost(s.to_owned()))?;
        let port = s[end + 1..]
            .strip_prefix(':')
            .ok_or(ProxyParseError::MissingPort)?;
        Ok((&s[..=end], port))
    } else {
        let (h, p) = s.rsplit_once(':').ok_or(ProxyParseError::MissingPort)?;
        if h.contains(':') {
            // An unbracketed IPv6 address with no unambiguous port.
            return Err(ProxyParseError::BadHost(h.to_owned()));
        }
        Ok((h, p))
    }
}

/// Collapses entries with the same [`ProxyKey`] into one proxy whose protocols are the union of
/// the listed ones, keeping first-seen order. Returns the proxies and how many entries were
/// duplicates.
pub fn dedup<I: IntoIterator<Item = Proxy>>(entries: I) -> (Vec<Proxy>, u64) {
    let mut index: std::collections::HashMap<ProxyKey, usize> = std::collections::HashMap::new();
    let mut out: Vec<Proxy> = Vec::new();
    let mut duplicates = 0;
    for p in entries {
        match index.entry(p.key()) {
            std::collections::hash_map::Entry::Occupied(e) => {
                duplicates += 1;
                let kept = &mut out[*e.get()];
                kept.protocols = kept.protocols.union(p.protocols);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(p);
            }
        }
    }
    (out, duplicates)
}

/// Why a text could not be read as a proxy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyParseError {
    #[error("unknown scheme {0:?}")]
    UnknownScheme(String),
    #[error("invalid host {0:?}")]
    BadHost(String),
    #[error("invalid port (must be 1-65535)")]
    BadPort,
    #[error("missing port")]
    MissingPort,
    #[error("invalid credentials")]
    BadCredentials,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_round_trips() {
        for s in [
            "socks5://user:pass@1.2.3.4:1080",
            "http://1.2.3.4:80",
            "https://[2001:db8::1]:3128",
            "socks4://example.com:1080",
            "10.0.0.1:8080",
            "u:@1.2.3.4:1",
        ] {
            let p: Proxy = s.parse().unwrap();
            assert_eq!(p.to_string(), s, "{s}");
            assert_eq!(p.to_string().parse::<Proxy>().unwrap(), p);
        }
    }

    #[test]
    fn aliases_normalise() {
        let p: Proxy = "SOCKS5H://1.2.3.4:1080".parse().unwrap();
        assert_eq!(p.to_string(), "socks5://1.2.3.4:1080");
        let p: Proxy = "socks4a://1.2.3.4:1080/".parse().unwrap();
        assert_eq!(p.to_string(), "socks4://1.2.3.4:1080");
    }

    #[test]
    fn invalid_values_are_rejected() {
        for s in [
            "1.2.3.4:0",
            "1.2.3.4:65536",
            "1.2.3.256:80",
            "ftp://1.2.3.4:21",
            "1.2.3.4",
            "::1:80",
            "garbage",
            "1.2.3.4:80a",
            "[::1:80",
            "-bad-.com:80",
        ] {
            assert!(s.parse::<Proxy>().is_err(), "{s} should not parse");
        }
    }

    #[test]
    fn key_ignores_protocol() {
        let a: Proxy = "http://1.2.3.4:80".parse().unwrap();
        let b: Proxy = "socks5://1.2.3.4:80".parse().unwrap();
        assert_eq!(a.key(), b.key());
        assert_ne!(a, b);
    }

    #[test]
    fn dedup_merges_protocols_of_one_address() {
        let entries = [
            "http://1.2.3.4:80",
            "socks5://1.2.3.4:80",
            "1.2.3.5:80",
            "1.2.3.4:80",
        ]
        .map(|s| s.parse::<Proxy>().unwrap());
        let (out, dups) = dedup(entries);
        assert_eq!(dups, 2);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].canonical_lines(),
            ["http://1.2.3.4:80", "socks5://1.2.3.4:80"]
        );
    }

    #[test]
    fn protocol_set_serializes_as_list() {
        let s: ProtocolSet = [Protocol::Socks5, Protocol::Http].into_iter().collect();
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"["http","socks5"]"#);
        let back: ProtocolSet = serde_json::from_str(r#"["socks5","http"]"#).unwrap();
        assert_eq!(back, s);
    }
}
