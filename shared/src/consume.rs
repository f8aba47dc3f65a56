//! The consumer's side of the published list: fetch it, pick the proxies that fit, print them.
//!
//! `proxyharvest get` is a thin shell over this module, and a Rust program that only wants
//! proxies uses the same three steps: [`fetch`] the document, [`Query::select`] entries from it,
//! [`render`] them in a [`Format`]. Selection borrows from the list and keeps its order (fastest
//! first), so `limit` means "the fastest N that fit". Filters that a list cannot answer fail
//! loudly instead of returning nothing: a country filter on a list without geolocation is an
//! error, not an empty result.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::bucket::{Bucket, BucketError};
use crate::list::{
    ListCounts, ListError, ListedProxy, PublishedList, is_country_code, whole_millis,
};
use crate::outcome::Anonymity;
use crate::proxy::{Host, Protocol};

/// Which proxies a consumer wants. Every filter is optional; an empty query selects everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Only proxies that speak this protocol.
    pub protocol: Option<Protocol>,
    /// Only proxies at least this anonymous (transparent < anonymous < elite).
    pub min_anonymity: Option<Anonymity>,
    pub max_latency_ms: Option<u32>,
    /// Only proxies whose published uptime (0..=1) is at least this.
    pub min_uptime: Option<f64>,
    /// Only proxies last checked at most this long before `now`.
    pub max_age: Option<Duration>,
    /// Only proxies whose exit is in this country (ISO 3166-1 alpha-2, any case).
    pub country: Option<String>,
    /// At most this many, the fastest first.
    pub limit: Option<usize>,
}

/// Why a query cannot be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error(
        "geolocation is not enabled in this list: no entry carries a country, so --country \
         cannot be answered"
    )]
    NoGeolocation,
    #[error("country {0:?} is not a two-letter ISO 3166-1 code (e.g. NZ)")]
    BadCountry(String),
    #[error("minimum uptime {0} is not between 0 and 1")]
    BadUptime(f64),
    #[error("invalid age {input:?}: {problem} (write e.g. 30m, 2h, 1day)")]
    BadAge { input: String, problem: String },
    #[error("invalid anonymity {0:?}: one of transparent, anonymous, elite")]
    BadAnonymity(String),
}

impl Query {
    /// The entries of `list` that pass every filter, in list order, at most `limit` of them.
    /// Ages are measured at `now`; an entry checked after `now` (clock skew) has age 0.
    pub fn select<'a>(
        &self,
        list: &'a PublishedList,
        now: SystemTime,
    ) -> Result<Vec<&'a ListedProxy>, QueryError> {
        if let Some(min) = self.min_uptime
            && !(0.0..=1.0).contains(&min)
        {
            return Err(QueryError::BadUptime(min));
        }
        let country = match &self.country {
            None => None,
            Some(c) => {
                let code = c.to_ascii_uppercase();
                if !is_country_code(&code) {
                    return Err(QueryError::BadCountry(c.clone()));
                }
                if !list.proxies.iter().any(|p| p.country.is_some()) {
                    return Err(QueryError::NoGeolocation);
                }
                Some(code)
            }
        };
        let fits = |p: &ListedProxy| {
            self.protocol.is_none_or(|want| p.protocols.contains(want))
                && self.min_anonymity.is_none_or(|min| p.anonymity >= min)
                && self.max_latency_ms.is_none_or(|max| p.latency_ms <= max)
                && self.min_uptime.is_none_or(|min| p.history.uptime() >= min)
                && self.max_age.is_none_or(|max| {
                    now.duration_since(p.last_checked).unwrap_or(Duration::ZERO) <= max
                })
                && country
                    .as_deref()
                    .is_none_or(|want| p.country.as_deref() == Some(want))
        };
        Ok(list
            .proxies
            .iter()
            .filter(|p| fits(p))
            .take(self.limit.unwrap_or(usize::MAX))
            .collect())
    }
}

/// Parses an age as people write it (`90s`, `30m`, `2h`, `1day`), for [`Query::max_age`].
pub fn parse_age(input: &str) -> Result<Duration, QueryError> {
    humantime::parse_duration(input).map_err(|e| QueryError::BadAge {
        input: input.to_owned(),
        problem: e.to_string(),
    })
}

/// Parses an anonymity grade as the document writes it, for [`Query::min_anonymity`].
pub fn parse_anonymity(input: &str) -> Result<Anonymity, QueryError> {
    serde_json::from_value(serde_json::Value::String(input.to_ascii_lowercase()))
        .map_err(|_| QueryError::BadAnonymity(input.to_owned()))
}

/// How selected proxies are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The published document, cut down to the selection (counts recomputed, still valid
    /// against the schema).
    Json,
    /// The project's canonical text form, as in the published `.txt` lists: `[user:pass@]host:port`
    /// under a protocol filter, else `scheme://[user:pass@]host:port`, one line per protocol.
    Txt,
    /// One row per proxy with a header row; fields quoted as RFC 4180 says.
    Csv,
    /// URLs for HTTP clients (`scheme://user:pass@host:port`, credentials percent-encoded): one
    /// per proxy under a protocol filter, else one per protocol.
    Url,
}

/// The CSV header row's columns, in order. New columns go at the end, so that scripts reading
/// columns by position keep working; `country` and `asn` are empty without geolocation.
pub const CSV_COLUMNS: [&str; 16] = [
    "protocols",
    "host",
    "port",
    "username",
    "password",
    "latency_ms",
    "anonymity",
    "exit_ip",
    "last_checked",
    "uptime",
    "streak",
    "checks",
    "successes",
    "first_seen",
    "country",
    "asn",
];

/// Prints `selected` (entries of `list`) in `format`. `protocol` is the query's protocol filter:
/// the line formats print only that protocol when it is given. Every line ends with `\n`.
pub fn render(
    list: &PublishedList,
    selected: &[&ListedProxy],
    format: Format,
    protocol: Option<Protocol>,
) -> String {
    match format {
        Format::Json => json(list, selected),
        // Under a filter, txt drops the scheme (like `http.txt`); a URL always has one.
        Format::Txt => lines(selected, protocol, |p, scheme| match protocol {
            Some(_) => p.key().to_string(),
            None => format!("{scheme}://{}", p.key()),
        }),
        Format::Url => lines(selected, protocol, url),
        Format::Csv => csv(selected),
    }
}

/// The document with only the selected proxies: the header of `list`, counts recomputed, no
/// tombstones (consumers never see them).
fn json(list: &PublishedList, selected: &[&ListedProxy]) -> String {
    let proxies: Vec<ListedProxy> = selected.iter().map(|p| (*p).clone()).collect();
    let doc = PublishedList {
        version: list.version,
        generated_at: list.generated_at,
        job_id: list.job_id.clone(),
        counts: ListCounts::of(&proxies),
        check: list.check.clone(),
        proxies,
        removed: Vec::new(),
    };
    let mut out = String::from_utf8(doc.to_json()).expect("serde_json writes UTF-8");
    out.push('\n');
    out
}

/// One line per proxy under a protocol filter, else one per protocol the proxy speaks.
fn lines(
    selected: &[&ListedProxy],
    protocol: Option<Protocol>,
    line: impl Fn(&ListedProxy, Protocol) -> String,
) -> String {
    let mut out = String::new();
    for p in selected {
        let schemes: Vec<Protocol> = match protocol {
            Some(only) => vec![only],
            None => p.protocols.iter().collect(),
        };
        for scheme in schemes {
            out.push_str(&line(p, scheme));
            out.push('\n');
        }
    }
    out
}

/// `scheme://user:pass@host:port`, credentials percent-encoded: a password may hold `:`, `#`,
/// `%` or `?`, which an HTTP client would otherwise read as URL syntax.
fn url(p: &ListedProxy, scheme: Protocol) -> String {
    let auth = match p.credentials() {
        Some(c) => format!(
            "{}:{}@",
            percent_encode(&c.username),
            percent_encode(&c.password)
        ),
        None => String::new(),
    };
    format!("{scheme}://{auth}{}:{}", p.host, p.port)
}

/// Encodes every byte but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            write!(out, "%{b:02X}").expect("writing to a String cannot fail");
        }
    }
    out
}

fn csv(selected: &[&ListedProxy]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for p in selected {
        let protocols: Vec<&str> = p.protocols.iter().map(Protocol::scheme).collect();
        let h = &p.history;
        let row = [
            protocols.join(" "),
            bare_host(&p.host),
            p.port.to_string(),
            p.username.clone().unwrap_or_default(),
            p.password.clone().unwrap_or_default(),
            p.latency_ms.to_string(),
            anonymity_name(p.anonymity),
            p.exit_ip.to_string(),
            timestamp(p.last_checked),
            format!("{:.3}", h.uptime()),
            h.streak.to_string(),
            h.checks.to_string(),
            h.successes.to_string(),
            timestamp(h.first_seen),
            p.country.clone().unwrap_or_default(),
            p.asn.map(|n| n.to_string()).unwrap_or_default(),
        ];
        let quoted: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        out.push_str(&quoted.join(","));
        out.push('\n');
    }
    out
}

/// RFC 4180: a field holding a comma, quote or line break (or padded with spaces, which some
/// readers trim) is quoted, with quotes doubled.
fn csv_field(field: &str) -> String {
    let needs_quotes =
        field.contains([',', '"', '\n', '\r']) || field.starts_with(' ') || field.ends_with(' ');
    if needs_quotes {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// The host as the JSON writes it: IPv6 without brackets, since the port is a column of its own.
fn bare_host(host: &Host) -> String {
    match host {
        Host::Ip(ip) => ip.to_string(),
        Host::Name(name) => name.clone(),
    }
}

/// The name the document uses for a grade (`elite`, …).
fn anonymity_name(a: Anonymity) -> String {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("an anonymity grade serialises as a string")
}

/// A timestamp as the document writes it.
fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(whole_millis(t)).to_string()
}

/// Why the published list could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error(
        "no proxy list at s3://{bucket}/{key}: nothing published yet, or a wrong bucket or key"
    )]
    Missing { bucket: String, key: String },
    #[error("s3://{bucket}/{key}: {source}")]
    Invalid {
        bucket: String,
        key: String,
        #[source]
        source: ListError,
    },
}

/// Reads the published document (by default at `list/proxies.json` in the deployment's bucket).
pub async fn fetch(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<PublishedList, FetchError> {
    let object = Bucket::new(client.clone(), bucket).get(key).await?;
    let object = object.ok_or_else(|| FetchError::Missing {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    })?;
    PublishedList::from_json(&object.body).map_err(|source| FetchError::Invalid {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::{CheckParams, History, Tombstone};
    use crate::proxy::Proxy;

    const NOW: u64 = 1_800_000_000;
    const MIN: u64 = 60;

    fn ago(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW - secs)
    }

    fn now() -> SystemTime {
        ago(0)
    }

    /// An entry for `text` (canonical form, protocols included), checked `age` seconds ago, with
    /// `successes` of `checks` alive.
    fn entry(text: &str, latency_ms: u32, anonymity: Anonymity, age: u64) -> ListedProxy {
        let proxy: Proxy = text.parse().unwrap();
        ListedProxy {
            protocols: proxy.protocols,
            host: proxy.endpoint.host,
            port: proxy.endpoint.port,
            username: proxy.auth.as_ref().map(|c| c.username.clone()),
            password: proxy.auth.as_ref().map(|c| c.password.clone()),
            latency_ms,
            anonymity,
            exit_ip: "203.0.113.50".parse().unwrap(),
            last_checked: ago(age),
            history: History {
                first_seen: ago(10 * 24 * 3600),
                last_seen_alive: ago(age),
                checks: 4,
                successes: 4,
                streak: 4,
            },
            country: None,
            asn: None,
        }
    }

    fn with_history(mut p: ListedProxy, successes: u32, checks: u32) -> ListedProxy {
        p.history.successes = successes;
        p.history.checks = checks;
        p.history.streak = 1;
        p
    }

    fn in_country(mut p: ListedProxy, country: &str) -> ListedProxy {
        p.country = Some(country.to_owned());
        p
    }

    /// Fastest first, as the merge sorts it.
    fn list(proxies: Vec<ListedProxy>) -> PublishedList {
        PublishedList {
            version: crate::list::LIST_VERSION,
            generated_at: now(),
            job_id: Some("job-1".to_owned()),
            counts: ListCounts::of(&proxies),
            check: CheckParams {
                judge: "http://judge.test/".to_owned(),
                timeout_ms: 10_000,
                connect_timeout_ms: 5_000,
            },
            proxies,
            removed: vec![Tombstone::new(
                &"192.0.2.9:3128".parse::<Proxy>().unwrap().key(),
                ago(MIN),
                None,
            )],
        }
    }

    fn sample() -> PublishedList {
        let mut both = entry("http://198.51.100.4:8080", 50, Anonymity::Elite, 10 * MIN);
        both.protocols.insert(Protocol::Https);
        list(vec![
            in_country(both, "NZ"),
            in_country(
                with_history(
                    entry(
                        "socks5://user:p,a\"ss@[2001:db8::7]:1080",
                        120,
                        Anonymity::Anonymous,
                        3 * 60 * MIN,
                    ),
                    1,
                    2,
                ),
                "DE",
            ),
            with_history(
                entry("socks5://198.51.100.5:1080", 300, Anonymity::Elite, MIN),
                2,
                3,
            ),
            entry(
                "socks4://proxy.example.net:1080",
                900,
                Anonymity::Transparent,
                0,
            ),
        ])
    }

    fn hosts(selected: &[&ListedProxy]) -> Vec<String> {
        selected.iter().map(|p| p.key().to_string()).collect()
    }

    fn pick(query: Query) -> Vec<String> {
        hosts(&query.select(&sample(), now()).unwrap())
    }

    const ALL: [&str; 4] = [
        "198.51.100.4:8080",
        "user:p,a\"ss@[2001:db8::7]:1080",
        "198.51.100.5:1080",
        "proxy.example.net:1080",
    ];

    #[test]
    fn an_empty_query_selects_everything_in_list_order() {
        assert_eq!(pick(Query::default()), ALL);
    }

    #[test]
    fn protocol_filter_keeps_proxies_speaking_it() {
        let q = |p| Query {
            protocol: Some(p),
            ..Query::default()
        };
        assert_eq!(pick(q(Protocol::Https)), [ALL[0]]);
        assert_eq!(pick(q(Protocol::Socks5)), [ALL[1], ALL[2]]);
        assert_eq!(pick(q(Protocol::Socks4)), [ALL[3]]);
    }

    #[test]
    fn anonymity_filter_is_a_minimum() {
        let q = |a| Query {
            min_anonymity: Some(a),
            ..Query::default()
        };
        assert_eq!(pick(q(Anonymity::Elite)), [ALL[0], ALL[2]]);
        assert_eq!(pick(q(Anonymity::Anonymous)), [ALL[0], ALL[1], ALL[2]]);
        assert_eq!(pick(q(Anonymity::Transparent)), ALL);
    }

    #[test]
    fn max_latency_is_inclusive() {
        let q = Query {
            max_latency_ms: Some(120),
            ..Query::default()
        };
        assert_eq!(pick(q), [ALL[0], ALL[1]]);
    }

    #[test]
    fn min_uptime_compares_the_published_rounded_uptime() {
        let q = |u| Query {
            min_uptime: Some(u),
            ..Query::default()
        };
        // Uptimes: 1.0, 0.5, 0.667 (2 of 3, rounded), 1.0.
        assert_eq!(pick(q(0.667)), [ALL[0], ALL[2], ALL[3]]);
        assert_eq!(pick(q(0.668)), [ALL[0], ALL[3]]);
        assert_eq!(pick(q(0.5)), ALL);
        assert_eq!(pick(q(1.0)), [ALL[0], ALL[3]]);
    }

    #[test]
    fn min_uptime_outside_zero_to_one_is_an_error() {
        for bad in [-0.1, 1.01, f64::NAN] {
            let q = Query {
                min_uptime: Some(bad),
                ..Query::default()
            };
            assert!(
                matches!(q.select(&sample(), now()), Err(QueryError::BadUptime(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn max_age_is_measured_from_now_and_inclusive() {
        let q = |secs| Query {
            max_age: Some(Duration::from_secs(secs)),
            ..Query::default()
        };
        assert_eq!(pick(q(10 * MIN)), [ALL[0], ALL[2], ALL[3]]);
        assert_eq!(pick(q(10 * MIN - 1)), [ALL[2], ALL[3]]);
        assert_eq!(pick(q(0)), [ALL[3]]);
        // An entry checked "after now" (clock skew) is as fresh as can be.
        let early = Query {
            max_age: Some(Duration::ZERO),
            ..Query::default()
        };
        assert_eq!(
            hosts(&early.select(&sample(), ago(2 * MIN)).unwrap()),
            [ALL[2], ALL[3]]
        );
    }

    #[test]
    fn country_filter_matches_any_case_and_skips_unknown_countries() {
        let q = |c: &str| Query {
            country: Some(c.to_owned()),
            ..Query::default()
        };
        assert_eq!(pick(q("nz")), [ALL[0]]);
        assert_eq!(pick(q("DE")), [ALL[1]]);
        assert_eq!(pick(q("FR")), Vec::<String>::new());
        assert_eq!(
            q("N1").select(&sample(), now()),
            Err(QueryError::BadCountry("N1".to_owned()))
        );
    }

    #[test]
    fn country_filter_on_a_list_without_geolocation_is_an_error() {
        let mut plain = sample();
        for p in &mut plain.proxies {
            p.country = None;
        }
        let q = Query {
            country: Some("NZ".to_owned()),
            ..Query::default()
        };
        let err = q.select(&plain, now()).unwrap_err();
        assert_eq!(err, QueryError::NoGeolocation);
        assert!(
            err.to_string()
                .contains("geolocation is not enabled in this list")
        );
    }

    #[test]
    fn limit_takes_the_fastest_that_fit() {
        let q = Query {
            protocol: Some(Protocol::Socks5),
            limit: Some(1),
            ..Query::default()
        };
        assert_eq!(pick(q), [ALL[1]]);
        let none = Query {
            limit: Some(0),
            ..Query::default()
        };
        assert_eq!(pick(none), Vec::<String>::new());
    }

    #[test]
    fn filters_combine() {
        let q = Query {
            protocol: Some(Protocol::Socks5),
            min_anonymity: Some(Anonymity::Elite),
            max_age: Some(Duration::from_secs(2 * MIN)),
            min_uptime: Some(0.6),
            max_latency_ms: Some(300),
            ..Query::default()
        };
        assert_eq!(pick(q), [ALL[2]]);
    }

    #[test]
    fn ages_and_grades_parse_as_people_write_them() {
        assert_eq!(parse_age("30m").unwrap(), Duration::from_secs(30 * MIN));
        assert_eq!(parse_age("2h").unwrap(), Duration::from_secs(120 * MIN));
        assert!(matches!(parse_age("soon"), Err(QueryError::BadAge { .. })));
        assert_eq!(parse_anonymity("Elite").unwrap(), Anonymity::Elite);
        assert_eq!(
            parse_anonymity("invisible"),
            Err(QueryError::BadAnonymity("invisible".to_owned()))
        );
    }

    fn render_all(format: Format, protocol: Option<Protocol>) -> String {
        let list = sample();
        let q = Query {
            protocol,
            ..Query::default()
        };
        render(&list, &q.select(&list, now()).unwrap(), format, protocol)
    }

    #[test]
    fn txt_prints_one_line_per_protocol_without_a_filter() {
        assert_eq!(
            render_all(Format::Txt, None),
            "http://198.51.100.4:8080\nhttps://198.51.100.4:8080\n\
             socks5://user:p,a\"ss@[2001:db8::7]:1080\nsocks5://198.51.100.5:1080\n\
             socks4://proxy.example.net:1080\n"
        );
    }

    #[test]
    fn txt_prints_bare_entries_under_a_protocol_filter() {
        assert_eq!(
            render_all(Format::Txt, Some(Protocol::Socks5)),
            "user:p,a\"ss@[2001:db8::7]:1080\n198.51.100.5:1080\n"
        );
        // The same lines as the published socks5.txt.
        let published = sample().text_lists();
        assert_eq!(
            published
                .iter()
                .find(|(n, _)| *n == "socks5.txt")
                .unwrap()
                .1,
            render_all(Format::Txt, Some(Protocol::Socks5))
        );
    }

    #[test]
    fn url_without_credentials_is_scheme_host_port() {
        assert_eq!(
            render_all(Format::Url, Some(Protocol::Https)),
            "https://198.51.100.4:8080\n"
        );
        assert_eq!(
            render_all(Format::Url, Some(Protocol::Socks4)),
            "socks4://proxy.example.net:1080\n"
        );
    }

    #[test]
    fn url_with_credentials_percent_encodes_them() {
        let out = render_all(Format::Url, Some(Protocol::Socks5));
        assert_eq!(
            out,
            "socks5://user:p%2Ca%22ss@[2001:db8::7]:1080\nsocks5://198.51.100.5:1080\n"
        );
        // An HTTP client's URL parser gets the credentials back exactly.
        let first = url::Url::parse(out.lines().next().unwrap()).unwrap();
        assert_eq!(first.username(), "user");
        let password = first.password().unwrap();
        assert_eq!(password, "p%2Ca%22ss");
        assert_eq!(percent_decode(password), "p,a\"ss");
        assert_eq!(first.host_str(), Some("[2001:db8::7]"));
    }

    #[test]
    fn every_url_special_character_in_a_password_is_encoded() {
        let mut p = entry("http://198.51.100.4:8080", 50, Anonymity::Elite, 0);
        p.username = Some("a.b-c_d~e".to_owned());
        p.password = Some("p:#?%[]!$&'()*+,;=".to_owned());
        let line = url(&p, Protocol::Http);
        assert_eq!(
            line,
            "http://a.b-c_d~e:p%3A%23%3F%25%5B%5D%21%24%26%27%28%29%2A%2B%2C%3B%3D@198.51.100.4:8080"
        );
        let parsed = url::Url::parse(&line).unwrap();
        assert_eq!(parsed.port(), Some(8080));
        assert_eq!(
            percent_decode(parsed.password().unwrap()),
            "p:#?%[]!$&'()*+,;="
        );
    }

    fn percent_decode(s: &str) -> String {
        let mut out = Vec::new();
        let mut bytes = s.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex: String = [bytes.next().unwrap(), bytes.next().unwrap()]
                    .iter()
                    .map(|&b| b as char)
                    .collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                out.push(b);
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn url_prints_one_line_per_protocol_without_a_filter() {
        assert_eq!(
            render_all(Format::Url, None),
            "http://198.51.100.4:8080\nhttps://198.51.100.4:8080\n\
             socks5://user:p%2Ca%22ss@[2001:db8::7]:1080\nsocks5://198.51.100.5:1080\n\
             socks4://proxy.example.net:1080\n"
        );
    }

    #[test]
    fn csv_has_a_header_and_quotes_what_needs_quoting() {
        let out = render_all(Format::Csv, None);
        let rows: Vec<&str> = out.lines().collect();
        assert_eq!(rows.len(), 5);
        assert_eq!(
            rows[0],
            "protocols,host,port,username,password,latency_ms,anonymity,exit_ip,last_checked,\
             uptime,streak,checks,successes,first_seen,country,asn"
        );
        assert_eq!(
            rows[1],
            "http https,198.51.100.4,8080,,,50,elite,203.0.113.50,2027-01-15T07:50:00.000Z,\
             1.000,4,4,4,2027-01-05T08:00:00.000Z,NZ,"
        );
        assert_eq!(
            rows[2],
            "socks5,2001:db8::7,1080,user,\"p,a\"\"ss\",120,anonymous,203.0.113.50,\
             2027-01-15T05:00:00.000Z,0.500,1,2,1,2027-01-05T08:00:00.000Z,DE,"
        );
        assert_eq!(
            rows[4],
            "socks4,proxy.example.net,1080,,,900,transparent,203.0.113.50,\
             2027-01-15T08:00:00.000Z,1.000,4,4,4,2027-01-05T08:00:00.000Z,,"
        );
        // The ASN is the last column, empty when unknown (as above).
        let mut with_asn = sample();
        with_asn.proxies[0].asn = Some(64_500);
        let selected: Vec<&ListedProxy> = with_asn.proxies.iter().collect();
        let out = render(&with_asn, &selected[..1], Format::Csv, None);
        assert!(out.lines().nth(1).unwrap().ends_with(",NZ,64500"), "{out}");
        // A protocol filter selects rows; it does not change them.
        let socks5 = render_all(Format::Csv, Some(Protocol::Socks5));
        assert_eq!(
            socks5.lines().collect::<Vec<_>>(),
            [rows[0], rows[2], rows[3]]
        );
    }

    #[test]
    fn csv_fields_follow_rfc_4180() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(" padded"), "\" padded\"");
    }

    #[test]
    fn json_is_the_document_cut_down_to_the_selection() {
        let list = sample();
        let q = Query {
            protocol: Some(Protocol::Socks5),
            ..Query::default()
        };
        let selected = q.select(&list, now()).unwrap();
        let out = render(&list, &selected, Format::Json, q.protocol);
        assert!(out.ends_with('\n'));
        let doc = PublishedList::from_json(out.as_bytes()).unwrap();
        assert_eq!(
            hosts(&doc.proxies.iter().collect::<Vec<_>>()),
            [ALL[1], ALL[2]]
        );
        assert_eq!(doc.counts, ListCounts::of(&doc.proxies));
        assert_eq!(doc.counts.by_protocol.socks5, 2);
        assert!(doc.removed.is_empty());
        assert_eq!(
            (doc.version, doc.generated_at, &doc.job_id, &doc.check),
            (list.version, list.generated_at, &list.job_id, &list.check)
        );
        // Entries are whole, history and geolocation included.
        assert_eq!(doc.proxies[0], list.proxies[1]);
    }

    #[test]
    fn an_empty_selection_prints_nothing_but_the_frame() {
        let list = sample();
        assert_eq!(render(&list, &[], Format::Txt, None), "");
        assert_eq!(render(&list, &[], Format::Url, None), "");
        assert_eq!(render(&list, &[], Format::Csv, None).lines().count(), 1);
        let doc =
            PublishedList::from_json(render(&list, &[], Format::Json, None).as_bytes()).unwrap();
        assert!(doc.proxies.is_empty() && doc.counts.total == 0);
    }
}
