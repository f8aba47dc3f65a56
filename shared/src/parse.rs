//! Pulling proxies out of whatever public lists serve: plain lines, JSON, HTML tables, CIDR ranges.
//!
//! [`parse`] never fails: a list is scraped from strangers, so every entry that does not read as a
//! proxy is skipped and counted in [`Parsed::invalid`], and the rest is kept. The format is
//! detected per body from its first non-blank byte: `[` or `{` is tried as JSON (and read as lines
//! if it is not JSON, since `[2001:db8::1]:80` also starts with `[`), `<` is HTML, anything else is
//! lines. Bodies can be large (tens of MB, millions of lines of junk), so the scanners work on the
//! bytes in one pass without a regex or an HTML crate, JSON is streamed through a serde visitor
//! instead of being built into a tree, and at most [`MAX_ENTRIES`] entries are kept.
//!
//! What counts as invalid: an entry that tries to be a proxy and fails (bad port, octet above 255,
//! unknown scheme, an over-wide or IPv6 CIDR range, garbage). Every proxy entry has a port, hence a
//! digit, so a line without any digit (a title, a column header, prose) is skipped without being
//! counted; a line with a digit that does not parse is counted. Comments (`#`, `//`, `;`) and
//! blank lines are skipped. The same rule applies to strings inside JSON arrays.

use std::net::{IpAddr, Ipv4Addr};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::proxy::{Credentials, Host, Port, Protocol, Proxy, dedup, split_host_port};

/// The most entries [`parse`] keeps from one body (before de-duplication); the rest is dropped
/// and [`Parsed::truncated`] is set. Bounds memory whatever a source serves.
pub const MAX_ENTRIES: usize = 2_000_000;

/// The most addresses one CIDR range may expand to: an IPv4 `/24` or narrower.
pub const MAX_RANGE_ADDRESSES: u32 = 256;

/// No sensible entry is longer (scheme, 255-byte user and password, 253-byte host, port).
const MAX_TOKEN_LEN: usize = 1024;

/// JSON nesting searched for arrays of entries: `[...]`, `{"k":[...]}`, `{"k":{"k":[...]}}`.
const MAX_JSON_DEPTH: u8 = 2;

/// What one body yielded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Distinct proxies in first-seen order; one address listed under several protocols is one
    /// proxy with all of them.
    pub proxies: Vec<Proxy>,
    /// Entries that tried to be proxies and failed.
    pub invalid: u64,
    /// Entries merged into an earlier one with the same address and credentials.
    pub duplicates: u64,
    /// True when entries were dropped because [`MAX_ENTRIES`] was reached.
    pub truncated: bool,
}

/// Reads every proxy in `body`, whatever its format. `default_protocol` is given to entries that
/// name no protocol of their own (a list known to be SOCKS5 only, say).
pub fn parse(body: &[u8], default_protocol: Option<Protocol>) -> Parsed {
    parse_with_limit(body, default_protocol, MAX_ENTRIES)
}

fn parse_with_limit(body: &[u8], default_protocol: Option<Protocol>, limit: usize) -> Parsed {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    let sink = match first {
        Some(b'[' | b'{') => parse_json(body, default_protocol, limit).unwrap_or_else(|| {
            let mut sink = Sink::new(default_protocol, limit);
            sink.lines(body);
            sink
        }),
        Some(b'<') => {
            let mut sink = Sink::new(default_protocol, limit);
            sink.html(body);
            sink
        }
        _ => {
            let mut sink = Sink::new(default_protocol, limit);
            sink.lines(body);
            sink
        }
    };
    sink.finish()
}

/// Collects entries from any of the scanners, enforcing the limit.
struct Sink {
    entries: Vec<Proxy>,
    invalid: u64,
    truncated: bool,
    limit: usize,
    default_protocol: Option<Protocol>,
}

impl Sink {
    fn new(default_protocol: Option<Protocol>, limit: usize) -> Self {
        Sink {
            entries: Vec::new(),
            invalid: 0,
            truncated: false,
            limit,
            default_protocol,
        }
    }

    fn finish(self) -> Parsed {
        let (proxies, duplicates) = dedup(self.entries);
        Parsed {
            proxies,
            invalid: self.invalid,
            duplicates,
            truncated: self.truncated,
        }
    }

    fn push(&mut self, mut proxy: Proxy) {
        if self.entries.len() >= self.limit {
            self.truncated = true;
            return;
        }
        if proxy.protocols.is_empty()
            && let Some(p) = self.default_protocol
        {
            proxy.protocols.insert(p);
        }
        self.entries.push(proxy);
    }

    fn entry(&mut self, entry: Result<Entry, Invalid>) {
        match entry {
            Ok(Entry::One(proxy)) => self.push(proxy),
            Ok(Entry::Range(range)) => {
                for ip in range.addresses() {
                    if self.truncated {
                        return;
                    }
                    self.push(range.proxy(ip));
                }
            }
            Err(Invalid) => self.invalid += 1,
        }
    }

    /// Plain text: one entry per line.
    fn lines(&mut self, body: &[u8]) {
        for line in body.split(|&b| b == b'\n') {
            if self.truncated {
                return;
            }
            self.line(line);
        }
    }

    /// One line (or one string of a JSON array): the first whitespace-separated token is the
    /// entry, and whatever follows it (country, anonymity, a comment) is ignored, except that
    /// `ip port` written as two columns is read as `ip:port`.
    fn line(&mut self, line: &[u8]) {
        let line = line.trim_ascii();
        if line.is_empty() || is_comment(line) {
            return;
        }
        let mut tokens = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|t| !t.is_empty());
        let Some(first) = tokens.next() else { return };
        let token = (first.len() <= MAX_TOKEN_LEN)
            .then(|| std::str::from_utf8(first).ok())
            .flatten();
        let parsed = match token {
            Some(token) => match tokens.next() {
                Some(port) if !token.contains(':') && is_port_column(port) => {
                    // Both halves are short ASCII: this allocation is bounded and rare.
                    let joined = format!("{token}:{}", String::from_utf8_lossy(port));
                    parse_token(&joined)
                }
                _ => parse_token(token),
            },
            None => Err(Invalid),
        };
        match parsed {
            Err(Invalid) if !line.iter().any(u8::is_ascii_digit) => {}
            parsed => self.entry(parsed),
        }
    }

    /// HTML: entries are read from table rows. A page without any `<tr>` is read as lines with
    /// the tags removed, which covers lists served inside `<pre>` or `<textarea>`.
    fn html(&mut self, body: &[u8]) {
        let rows = table_rows(body, |cells| {
            if let Some(entry) = row_entry(cells) {
                self.entry(entry);
            }
            !self.truncated
        });
        if rows == 0 {
            for line in body.split(|&b| b == b'\n') {
                if self.truncated {
                    return;
                }
                self.line(strip_tags(line).as_bytes());
            }
        }
    }
}

fn is_comment(line: &[u8]) -> bool {
    line.starts_with(b"#") || line.starts_with(b"//") || line.starts_with(b";")
}

fn is_port_column(t: &[u8]) -> bool {
    (1..=5).contains(&t.len()) && t.iter().all(u8::is_ascii_digit)
}

/// An entry that does not read as a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Invalid;

/// One parsed entry: a proxy, or a CIDR range standing for several.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    One(Proxy),
    Range(Range),
}

/// An IPv4 range of at most [`MAX_RANGE_ADDRESSES`] addresses sharing port, credentials and
/// protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    network: u32,
    count: u32,
    port: Port,
    auth: Option<Credentials>,
    protocol: Option<Protocol>,
}

impl Range {
    /// The first address and the size of `addr/prefix`, if it is narrow enough.
    fn bounds(addr: Ipv4Addr, prefix: u8) -> Result<(u32, u32), Invalid> {
        if prefix > 32 {
            return Err(Invalid);
        }
        let count = 1u64 << (32 - prefix);
        if count > u64::from(MAX_RANGE_ADDRESSES) {
            return Err(Invalid);
        }
        // At most 256 addresses means a prefix of 24 or more, so the shift is at most 8.
        let mask = u32::MAX << (32 - prefix);
        Ok((u32::from(addr) & mask, count as u32))
    }

    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let network = self.network;
        (0..self.count).map(move |i| Ipv4Addr::from(network + i))
    }

    fn proxy(&self, ip: Ipv4Addr) -> Proxy {
        let mut p = Proxy::new(Host::Ip(IpAddr::V4(ip)), self.port).with_auth(self.auth.clone());
        if let Some(protocol) = self.protocol {
            p.protocols.insert(protocol);
        }
        p
    }
}

/// Reads one entry: `[scheme://][user:pass@]host:port[/]`, `[scheme://]host:port:user:pass`,
/// `[2001:db8::1]:8080`, or a range `[scheme://][user:pass@]1.2.3.0/24:port`.
fn parse_token(token: &str) -> Result<Entry, Invalid> {
    let (protocol, rest) = match token.split_once("://") {
        Some((scheme, rest)) => (Some(Protocol::from_scheme(scheme).ok_or(Invalid)?), rest),
        None => (None, token),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (
                Some(Credentials::new(user, pass).map_err(|_| Invalid)?),
                hostport,
            )
        }
        None => (None, rest),
    };
    if let Some((addr, prefix_port)) = hostport.split_once('/') {
        let (prefix, port) = prefix_port.split_once(':').ok_or(Invalid)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| Invalid)?;
        let prefix: u8 = prefix.parse().map_err(|_| Invalid)?;
        let (network, count) = Range::bounds(addr, prefix)?;
        return Ok(Entry::Range(Range {
            network,
            count,
            port: port.parse().map_err(|_| Invalid)?,
            auth,
            protocol,
        }));
    }
    let (host, port, auth) = if auth.is_none()
        && !hostport.starts_with('[')
        && hostport.bytes().filter(|&b| b == b':').count() >= 3
    {
        // host:port:user:pass (the password may itself hold colons).
        let mut parts = hostport.splitn(4, ':');
        let (Some(host), Some(port), Some(user), Some(pass)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Invalid);
        };
        let auth = Credentials::new(user, pass).map_err(|_| Invalid)?;
        (host, port, Some(auth))
    } else {
        let (host, port) = split_host_port(hostport).map_err(|_| Invalid)?;
        (host, port, auth)
    };
    let host: Host = host.parse().map_err(|_| Invalid)?;
    let port: Port = port.parse().map_err(|_| Invalid)?;
    let mut proxy = Proxy::new(host, port).with_auth(auth);
    if let Some(p) = protocol {
        proxy.protocols.insert(p);
    }
    Ok(Entry::One(proxy))
}

// ---------------------------------------------------------------------------------------------
// HTML tables

/// Reads a table row: the first cell holding an IP address (or a whole `ip:port` entry), the
/// first all-digit cell after it as the port, and any cell that is exactly a scheme name as the
/// protocol. Rows without anything address-like (headers, ads) yield nothing; rows with an
/// address-like cell that does not make a proxy are invalid.
fn row_entry(cells: &[String]) -> Option<Result<Entry, Invalid>> {
    let protocol = cells.iter().find_map(|c| Protocol::from_scheme(c));
    let (index, ip_cell) = cells
        .iter()
        .enumerate()
        .find(|(_, c)| looks_like_ip(c) || looks_like_entry(c))?;
    if looks_like_entry(ip_cell) {
        return Some(parse_token(ip_cell).map(|entry| match entry {
            Entry::One(mut proxy) if proxy.protocols.is_empty() => {
                if let Some(p) = protocol {
                    proxy.protocols.insert(p);
                }
                Entry::One(proxy)
            }
            other => other,
        }));
    }
    let parsed = (|| {
        let ip: IpAddr = ip_cell.parse().map_err(|_| Invalid)?;
        let port = cells[index + 1..]
            .iter()
            .find(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(Invalid)?;
        let port: Port = port.parse().map_err(|_| Invalid)?;
        let mut proxy = Proxy::new(Host::Ip(ip), port);
        if let Some(p) = protocol {
            proxy.protocols.insert(p);
        }
        Ok(Entry::One(proxy))
    })();
    Some(parsed)
}

/// A dotted quad (valid or not: `1.2.3.256` is an invalid entry, not prose) or an IPv6 address.
fn looks_like_ip(cell: &str) -> bool {
    let dotted = cell.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && cell.bytes().filter(|&b| b == b'.').count() == 3;
    dotted || (cell.contains(':') && cell.parse::<std::net::Ipv6Addr>().is_ok())
}

/// A cell holding a whole `ip:port` (or `scheme://...`) entry.
fn looks_like_entry(cell: &str) -> bool {
    cell.len() <= MAX_TOKEN_LEN
        && !cell.contains(char::is_whitespace)
        && cell.bytes().any(|b| b.is_ascii_digit())
        && split_host_port(cell.split_once("://").map_or(cell, |(_, r)| r)).is_ok()
}

/// One HTML tag: where it starts and ends in the body, its lower-cased name, and whether it
/// closes (`</td>`).
struct Tag {
    start: usize,
    end: usize,
    name: [u8; 8],
    closing: bool,
}

impl Tag {
    fn is(&self, name: &[u8]) -> bool {
        self.name.starts_with(name) && self.name.get(name.len()) == Some(&0)
    }
}

/// The tags of a document in order, in one pass. Comments, scripts and attribute values are not
/// understood: a stray `<` only ever produces a tag that is ignored.
struct Tags<'a> {
    html: &'a [u8],
    pos: usize,
}

impl Iterator for Tags<'_> {
    type Item = Tag;
    fn next(&mut self) -> Option<Tag> {
        let start = self.html[self.pos..].iter().position(|&b| b == b'<')? + self.pos;
        let end = self.html[start..].iter().position(|&b| b == b'>')? + start + 1;
        self.pos = end;
        let inner = &self.html[start + 1..end - 1];
        let (closing, inner) = match inner.strip_prefix(b"/") {
            Some(rest) => (true, rest),
            None => (false, inner),
        };
        let mut name = [0u8; 8];
        for (slot, b) in name[..7]
            .iter_mut()
            .zip(inner.iter().take_while(|b| b.is_ascii_alphanumeric()))
        {
            *slot = b.to_ascii_lowercase();
        }
        Some(Tag {
            start,
            end,
            name,
            closing,
        })
    }
}

/// Calls `row` with the cell texts of every `<tr>` row, in one pass over the document; returns
/// how many rows there were. Closing `</td>` and `</tr>` are optional, as in HTML.
fn table_rows(html: &[u8], mut row: impl FnMut(&[String]) -> bool) -> usize {
    let mut rows = 0;
    let mut cells: Vec<String> = Vec::new();
    let mut in_row = false;
    let mut cell_start: Option<usize> = None;
    for tag in (Tags { html, pos: 0 }) {
        if let Some(start) = cell_start
            && (tag.is(b"td") || tag.is(b"th") || tag.is(b"tr") || tag.is(b"table"))
        {
            cells.push(cell_text(&html[start..tag.start]));
            cell_start = None;
        }
        let ends_row = tag.is(b"tr") || (tag.closing && tag.is(b"table"));
        if ends_row && in_row {
            in_row = false;
            if !row(&cells) {
                return rows;
            }
            cells.clear();
        }
        if tag.is(b"tr") && !tag.closing {
            in_row = true;
            rows += 1;
        } else if in_row && !tag.closing && (tag.is(b"td") || tag.is(b"th")) {
            cell_start = Some(tag.end);
        }
    }
    if in_row {
        if let Some(start) = cell_start {
            cells.push(cell_text(&html[start..]));
        }
        row(&cells);
    }
    rows
}

/// A cell's text: tags removed, the common entities decoded, whitespace trimmed.
fn cell_text(cell: &[u8]) -> String {
    strip_tags(cell).trim().to_owned()
}

fn strip_tags(html: &[u8]) -> String {
    let mut text = Vec::with_capacity(html.len());
    let mut in_tag = false;
    for &b in html {
        match (in_tag, b) {
            (false, b'<') => in_tag = true,
            (true, b'>') => in_tag = false,
            (false, b) => text.push(b),
            (true, _) => {}
        }
    }
    let text = String::from_utf8_lossy(&text);
    if !text.contains('&') {
        return text.into_owned();
    }
    text.replace("&nbsp;", " ")
        .replace("&#58;", ":")
        .replace("&colon;", ":")
        .replace("&amp;", "&")
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Streams a JSON body into a sink; `None` when the body is not JSON.
fn parse_json(body: &[u8], default_protocol: Option<Protocol>, limit: usize) -> Option<Sink> {
    let mut sink = Sink::new(default_protocol, limit);
    let mut de = serde_json::Deserializer::from_slice(body);
    Level {
        sink: &mut sink,
        depth: 0,
    }
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    Some(sink)
}

/// A JSON value at `depth`: an array is a list of entries; an object is searched for such arrays
/// down to [`MAX_JSON_DEPTH`]; anything else is ignored.
struct Level<'s> {
    sink: &'s mut Sink,
    depth: u8,
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Item {
                sink: &mut *self.sink,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            if self.depth < MAX_JSON_DEPTH {
                map.next_value_seed(Level {
                    sink: &mut *self.sink,
                    depth: self.depth + 1,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// One element of an array of entries: a string is read as a line, an object by its fields;
/// anything else (numbers, nested arrays) is ignored.
struct Item<'s> {
    sink: &'s mut Sink,
}

impl<'de> DeserializeSeed<'de> for Item<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Item<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a proxy entry")
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.sink.line(s.as_bytes());
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut fields = JsonFields::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.to_ascii_lowercase().as_str() {
                "ip" | "host" | "address" | "addr" | "ip_address" | "ipaddress" => {
                    fields.host = scalar_text(map.next_value()?);
                }
                "port" => fields.port = scalar_text(map.next_value()?),
                "protocol" | "protocols" | "type" | "types" | "scheme" => {
                    fields.protocols = protocol_names(map.next_value()?);
                }
                "username" | "user" | "login" => fields.username = scalar_text(map.next_value()?),
                "password" | "pass" => fields.password = scalar_text(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if let Some(entry) = fields.entry() {
            self.sink.entry(entry);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// The fields of one JSON entry that matter. Small per object, so plain `Value`s are fine here.
#[derive(Default)]
struct JsonFields {
    host: Option<String>,
    port: Option<String>,
    protocols: Vec<Protocol>,
    username: Option<String>,
    password: Option<String>,
}

impl JsonFields {
    /// An object with neither an address nor a port field is not an entry (metadata, say).
    /// Protocol names that are not schemes are ignored rather than fatal, because `type` holds
    /// the anonymity level in some APIs.
    fn entry(self) -> Option<Result<Entry, Invalid>> {
        if self.host.is_none() && self.port.is_none() {
            return None;
        }
        let parsed = (|| {
            let host = self.host.ok_or(Invalid)?;
            let auth = match &self.username {
                Some(user) if !user.is_empty() => Some(
                    Credentials::new(user, self.password.as_deref().unwrap_or(""))
                        .map_err(|_| Invalid)?,
                ),
                _ => None,
            };
            let mut proxy = match self.port {
                Some(port) => Proxy::new(
                    host.parse().map_err(|_| Invalid)?,
                    port.parse().map_err(|_| Invalid)?,
                ),
                // `{"ip": "1.2.3.4:8080"}`: the whole entry in one field.
                None => match parse_token(&host)? {
                    Entry::One(proxy) => proxy,
                    Entry::Range(_) => return Err(Invalid),
                },
            };
            if auth.is_some() {
                proxy.auth = auth;
            }
            for p in self.protocols {
                proxy.protocols.insert(p);
            }
            Ok(Entry::One(proxy))
        })();
        Some(parsed)
    }
}

fn scalar_text(v: serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn protocol_names(v: serde_json::Value) -> Vec<Protocol> {
    match v {
        serde_json::Value::String(s) => s
            .split([',', '/', ' '])
            .filter_map(|name| Protocol::from_scheme(name.trim()))
            .collect(),
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|item| item.as_str().and_then(Protocol::from_scheme))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::proxy::ProtocolSet;

    /// The canonical lines of everything parsed, for compact assertions.
    fn lines(parsed: &Parsed) -> Vec<String> {
        parsed
            .proxies
            .iter()
            .flat_map(Proxy::canonical_lines)
            .collect()
    }

    fn parse_str(s: &str) -> Parsed {
        parse(s.as_bytes(), None)
    }

    #[test]
    fn plain_lines_in_every_notation() {
        let body = "1.2.3.4:80\n\
                    http://1.2.3.5:8080\n\
                    socks5://user:pass@1.2.3.6:1080\n\
                    SOCKS4A://1.2.3.7:1080/\n\
                    socks5h://proxy.example.com:1080\n\
                    1.2.3.8:3128:bob:s3cr:et\n\
                    alice:pw@1.2.3.9:8000\n\
                    https://1.2.3.10:443:carol:pw\n";
        let parsed = parse_str(body);
        assert_eq!(
            lines(&parsed),
            [
                "1.2.3.4:80",
                "http://1.2.3.5:8080",
                "socks5://user:pass@1.2.3.6:1080",
                "socks4://1.2.3.7:1080",
                "socks5://proxy.example.com:1080",
                "bob:s3cr:et@1.2.3.8:3128",
                "alice:pw@1.2.3.9:8000",
                "https://carol:pw@1.2.3.10:443",
            ]
        );
        assert_eq!((parsed.invalid, parsed.duplicates), (0, 0));
        assert!(!parsed.truncated);
    }

    #[test]
    fn crlf_blank_lines_comments_and_trailing_columns() {
        let body = "# fresh list\r\n\r\n// by someone\r\n; ini style\r\n   \r\n\
                    1.2.3.4:80 US elite # good one\r\n\
                    1.2.3.5:81\t# tab then comment\r\n\
                    1.2.3.6\t8080\tDE\r\n\
                    IP Address Port Country\r\n";
        let parsed = parse_str(body);
        assert_eq!(lines(&parsed), ["1.2.3.4:80", "1.2.3.5:81", "1.2.3.6:8080"]);
        assert_eq!(parsed.invalid, 0, "comments and prose are not invalid");
    }

    #[test]
    fn ipv6_in_brackets() {
        let parsed = parse_str("[2001:db8::1]:8080\nsocks5://[::1]:1080\n2001:db8::2:8080\n");
        assert_eq!(
            lines(&parsed),
            ["[2001:db8::1]:8080", "socks5://[::1]:1080"]
        );
        assert_eq!(
            parsed.invalid, 1,
            "unbracketed IPv6 with a port is ambiguous"
        );
    }

    #[test]
    fn each_kind_of_invalid_entry_is_counted_once() {
        for junk in [
            "1.2.3.4:0",
            "1.2.3.4:65536",
            "1.2.3.4:99999999",
            "1.2.3.256:80",
            "ftp://1.2.3.4:21",
            "1.2.3.4",
            "1.2.3.4:80a",
            "%%$#@!12",
            "[::1:80",
            "1.2.3.4:80:user",
            "bad user:pw@1.2.3.4:80 extra",
            "1.2.3.0/23:80",
            "1.2.3.0/33:80",
            "[2001:db8::]/120:80",
            "2001:db8::/120:80",
            "1.2.3.0/24",
        ] {
            let parsed = parse_str(junk);
            assert_eq!(parsed.invalid, 1, "{junk:?}");
            assert!(parsed.proxies.is_empty(), "{junk:?}");
        }
    }

    #[test]
    fn lines_without_digits_are_prose_not_invalid() {
        let parsed = parse_str("Free proxy list\ngarbage\nhttp://proxy.example.com:port\n");
        assert_eq!((parsed.proxies.len(), parsed.invalid), (0, 0));
    }

    #[test]
    fn duplicates_merge_protocols() {
        let body = "http://1.2.3.4:80\nsocks5://1.2.3.4:80\n1.2.3.4:80\nu:p@1.2.3.4:80\n";
        let parsed = parse_str(body);
        assert_eq!(parsed.duplicates, 2);
        assert_eq!(
            lines(&parsed),
            ["http://1.2.3.4:80", "socks5://1.2.3.4:80", "u:p@1.2.3.4:80"]
        );
    }

    #[test]
    fn default_protocol_applies_only_where_none_is_named() {
        let parsed = parse(b"1.2.3.4:80\nhttp://1.2.3.5:80\n", Some(Protocol::Socks5));
        assert_eq!(lines(&parsed), ["socks5://1.2.3.4:80", "http://1.2.3.5:80"]);
    }

    #[test]
    fn cidr_ranges_expand_within_bounds() {
        let parsed = parse_str("socks5://1.2.3.4/30:1080\n");
        assert_eq!(
            lines(&parsed),
            [
                "socks5://1.2.3.4:1080",
                "socks5://1.2.3.5:1080",
                "socks5://1.2.3.6:1080",
                "socks5://1.2.3.7:1080"
            ]
        );
        let parsed = parse_str("10.0.0.77/24:8080\n9.9.9.9/32:1\n");
        assert_eq!(parsed.proxies.len(), 257);
        assert_eq!(parsed.proxies[0].to_string(), "10.0.0.0:8080");
        assert_eq!(parsed.proxies[255].to_string(), "10.0.0.255:8080");
        assert_eq!(parsed.proxies[256].to_string(), "9.9.9.9:1");
        let parsed = parse_str("u:p@1.2.3.0/31:80\n");
        assert_eq!(lines(&parsed), ["u:p@1.2.3.0:80", "u:p@1.2.3.1:80"]);
        assert_eq!(parse_str("1.0.0.0/8:80\n1.2.3.0/24:0\n").invalid, 2);
    }

    #[test]
    fn json_array_of_objects() {
        let body = r#"[
            {"ip": "1.2.3.4", "port": 8080, "protocol": "HTTP", "country": "US"},
            {"host": "1.2.3.5", "port": "1080", "protocols": ["socks4", "socks5", "smtp"]},
            {"address": "[2001:db8::1]", "port": 3128},
            {"ip_address": "1.2.3.6", "port": 80, "username": "u", "password": "p", "type": "elite"},
            {"addr": "1.2.3.7:9000"},
            {"ip": "1.2.3.8", "port": 0},
            {"ip": "1.2.3.999", "port": 80},
            {"port": 80},
            {"page": 2},
            17, null, [1, 2]
        ]"#;
        let parsed = parse_str(body);
        assert_eq!(
            lines(&parsed),
            [
                "http://1.2.3.4:8080",
                "socks4://1.2.3.5:1080",
                "socks5://1.2.3.5:1080",
                "[2001:db8::1]:3128",
                "u:p@1.2.3.6:80",
                "1.2.3.7:9000",
            ]
        );
        assert_eq!(parsed.invalid, 3);
    }

    #[test]
    fn json_object_holding_the_array_one_or_two_levels_down() {
        let one = r#"{"total": 2, "data": [{"ip": "1.2.3.4", "port": 80}], "meta": {"x": 1}}"#;
        assert_eq!(lines(&parse_str(one)), ["1.2.3.4:80"]);
        let two = r#"{"result": {"proxies": [{"ip": "1.2.3.5", "port": 81}]}, "ok": true}"#;
        assert_eq!(lines(&parse_str(two)), ["1.2.3.5:81"]);
        let three = r#"{"a": {"b": {"c": [{"ip": "1.2.3.6", "port": 82}]}}}"#;
        assert!(
            parse_str(three).proxies.is_empty(),
            "deeper than two levels"
        );
    }

    #[test]
    fn json_array_of_strings_reads_each_as_a_line() {
        let parsed = parse(
            br#"["1.2.3.4:80", "socks4://1.2.3.5:1080", "1.2.3.4:0", "n/a"]"#,
            Some(Protocol::Http),
        );
        assert_eq!(
            lines(&parsed),
            ["http://1.2.3.4:80", "socks4://1.2.3.5:1080"]
        );
        assert_eq!(parsed.invalid, 1);
    }

    #[test]
    fn broken_json_falls_back_to_lines() {
        let parsed = parse_str("[2001:db8::1]:8080\n[2001:db8::2]:8080\n");
        assert_eq!(parsed.proxies.len(), 2);
        let parsed = parse_str("{\"ip\": \"1.2.3.4\", \"port\": 80\n1.2.3.5:80\n");
        assert_eq!(lines(&parsed), ["1.2.3.5:80"]);
    }

    #[test]
    fn html_table_rows() {
        let body = r#"<!DOCTYPE html><html><body><table class="list">
            <thead><tr><th>IP Address</th><th>Port</th><th>Code</th><th>Https</th></tr></thead>
            <tbody>
            <tr><td>1.2.3.4</td><td>8080</td><td>US</td><td class='hx'>yes</td></tr>
            <TR><TD><a href="/ip/1.2.3.5">1.2.3.5</a></TD><TD> <b>1080</b> </TD><TD>SOCKS5</TD></TR>
            <tr><td>&nbsp;1.2.3.6&nbsp;</td><td>3128
            <tr><td>1.2.3.256</td><td>80</td></tr>
            <tr><td>1.2.3.7</td><td>none</td></tr>
            <tr><td>socks4://1.2.3.8:1080</td></tr>
            <tr><td colspan="3">Advertisement 2026</td></tr>
            </tbody></table>
            <track src="x"><p>10.0.0.1:80</p></body></html>"#;
        let parsed = parse_str(body);
        assert_eq!(
            lines(&parsed),
            [
                "1.2.3.4:8080",
                "socks5://1.2.3.5:1080",
                "1.2.3.6:3128",
                "socks4://1.2.3.8:1080"
            ]
        );
        assert_eq!(parsed.invalid, 2);
    }

    #[test]
    fn html_without_a_table_is_read_as_text() {
        let body = "<html><body><pre>\n1.2.3.4:80\n<b>1.2.3.5:81</b>\n</pre></body></html>\n";
        assert_eq!(lines(&parse_str(body)), ["1.2.3.4:80", "1.2.3.5:81"]);
    }

    #[test]
    fn binary_bytes_are_junk_not_a_crash() {
        let body: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let parsed = parse(&body, None);
        assert!(parsed.proxies.is_empty());
        assert!(parsed.invalid > 0);
    }

    #[test]
    fn stops_at_the_limit_and_says_so() {
        let body = "1.2.3.1:80\n1.2.3.2:80\n1.2.3.3:80\n1.2.3.0/24:81\n";
        let parsed = parse_with_limit(body.as_bytes(), None, 2);
        assert_eq!(parsed.proxies.len(), 2);
        assert!(parsed.truncated);
        let parsed = parse_with_limit(body.as_bytes(), None, 100);
        assert_eq!(parsed.proxies.len(), 100);
        assert!(parsed.truncated, "a range is cut at the limit too");
        let json = br#"[{"ip":"1.2.3.1","port":80},{"ip":"1.2.3.2","port":80}]"#;
        let parsed = parse_with_limit(json, None, 1);
        assert_eq!((parsed.proxies.len(), parsed.truncated), (1, true));
        assert!(!parse_with_limit(json, None, 2).truncated);
    }

    #[test]
    fn a_million_junk_lines_are_counted_quickly() {
        let mut body = Vec::with_capacity(20_000_000);
        for i in 0..1_000_000u32 {
            body.extend_from_slice(format!("junk-{i}:{}x\n", i % 70_000).as_bytes());
        }
        body.extend_from_slice(b"1.2.3.4:80\n");
        let start = Instant::now();
        let parsed = parse(&body, None);
        assert_eq!(parsed.invalid, 1_000_000);
        assert_eq!(lines(&parsed), ["1.2.3.4:80"]);
        assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
    }

    #[test]
    fn a_fifty_megabyte_body_is_fine() {
        // 50 MB: one huge line without a newline, then long comment lines, then entries.
        let mut body = vec![b'x'; 20 << 20];
        body.push(b'\n');
        let comment = format!("# {}\n", "c".repeat(4094));
        while body.len() < 50 << 20 {
            body.extend_from_slice(comment.as_bytes());
        }
        body.extend_from_slice(b"1.2.3.4:80\n[::1]:81\n");
        let start = Instant::now();
        let parsed = parse(&body, None);
        assert_eq!(lines(&parsed), ["1.2.3.4:80", "[::1]:81"]);
        assert_eq!(parsed.invalid, 0);
        assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
    }

    #[test]
    fn protocol_field_forms() {
        assert_eq!(
            protocol_names(serde_json::json!("socks4/socks5")),
            [Protocol::Socks4, Protocol::Socks5]
        );
        assert_eq!(
            protocol_names(serde_json::json!(["HTTPS", 5])),
            [Protocol::Https]
        );
        assert!(protocol_names(serde_json::json!(1)).is_empty());
        let set: ProtocolSet = protocol_names(serde_json::json!("http"))
            .into_iter()
            .collect();
        assert!(set.contains(Protocol::Http));
    }

    #[test]
    fn tags_are_named_without_prefix_confusion() {
        let html = b"<track><TR class=x></Td><!-- c --><thead>";
        let tags: Vec<Tag> = Tags { html, pos: 0 }.collect();
        assert!(!tags[0].is(b"tr") && tags[0].is(b"track"));
        assert!(tags[1].is(b"tr") && !tags[1].closing);
        assert!(tags[2].is(b"td") && tags[2].closing);
        assert!(!tags[4].is(b"th"));
        assert_eq!((tags[1].start, tags[1].end), (7, 19));
    }

    #[test]
    fn a_huge_table_without_closing_tags_is_linear() {
        let mut html = b"<table>".to_vec();
        for i in 0..200_000u32 {
            html.extend_from_slice(
                format!("<tr><td>10.{}.{}.1<td>80", i >> 8 & 255, i & 255).as_bytes(),
            );
        }
        let start = Instant::now();
        let parsed = parse(&html, None);
        assert_eq!(parsed.proxies.len(), 65_536);
        assert_eq!(parsed.duplicates, 200_000 - 65_536);
        assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
    }
}
