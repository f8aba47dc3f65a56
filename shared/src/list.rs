//! The published list: the versioned JSON document the aggregator writes, and the plain text
//! lists derived from it.
//!
//! The document is both the product (consumers download it) and the state the next merge starts
//! from, so it carries what a merge needs: per-proxy history, when each proxy was last checked,
//! and a short memory of proxies recently found dead ([`Tombstone`]) so that an older job's
//! result cannot bring them back. Its shape is pinned by `schema/proxy-list.schema.json`; a test
//! validates a realistic document against that file, so the two cannot drift apart.
//!
//! Timestamps are RFC 3339 UTC strings with milliseconds: the document never holds more
//! precision than it can write, which is what keeps merges idempotent across a round trip.
//! Derived numbers a consumer wants at hand (a proxy's `uptime`) are written, but recomputed from
//! the counts they derive from when read, so the two can never disagree.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::outcome::Anonymity;
use crate::proxy::{Credentials, Endpoint, Host, Port, Protocol, ProtocolSet, ProxyKey};

/// The major version of the document this code writes and reads. Bump it only for a change an
/// older reader would misread; adding an optional field is not one.
pub const LIST_VERSION: u32 = 1;

/// The document published after every merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedList {
    pub version: u32,
    #[serde(with = "rfc3339")]
    pub generated_at: SystemTime,
    /// The job whose results were merged last, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    pub counts: ListCounts,
    pub check: CheckParams,
    /// Live proxies, fastest first.
    pub proxies: Vec<ListedProxy>,
    /// Proxies found dead within the retention window, sorted by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<Tombstone>,
}

/// Summary counts of [`PublishedList::proxies`], recomputed on every merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListCounts {
    pub total: u64,
    pub by_protocol: ProtocolCounts,
    pub by_anonymity: AnonymityCounts,
}

/// How many listed proxies speak each protocol (a proxy may count under several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProtocolCounts {
    pub http: u64,
    pub https: u64,
    pub socks4: u64,
    pub socks5: u64,
}

/// How many listed proxies fall in each anonymity grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AnonymityCounts {
    pub elite: u64,
    pub anonymous: u64,
    pub transparent: u64,
}

impl ListCounts {
    pub fn of(proxies: &[ListedProxy]) -> Self {
        let mut c = ListCounts {
            total: proxies.len() as u64,
            ..ListCounts::default()
        };
        for p in proxies {
            for protocol in p.protocols.iter() {
                *match protocol {
                    Protocol::Http => &mut c.by_protocol.http,
                    Protocol::Https => &mut c.by_protocol.https,
                    Protocol::Socks4 => &mut c.by_protocol.socks4,
                    Protocol::Socks5 => &mut c.by_protocol.socks5,
                } += 1;
            }
            *match p.anonymity {
                Anonymity::Elite => &mut c.by_anonymity.elite,
                Anonymity::Anonymous => &mut c.by_anonymity.anonymous,
                Anonymity::Transparent => &mut c.by_anonymity.transparent,
            } += 1;
        }
        c
    }
}

/// What the check that produced the list used, so consumers can judge the numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckParams {
    /// URL of the judge the proxies were checked against.
    pub judge: String,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
}

/// One live proxy. Credentials are two flat optional fields, present together or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedProxy {
    /// The protocols that really worked in the last successful check.
    pub protocols: ProtocolSet,
    pub host: Host,
    pub port: Port,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Full judge round trip through the fastest working protocol.
    pub latency_ms: u32,
    pub anonymity: Anonymity,
    /// The address the judge saw requests come from.
    pub exit_ip: IpAddr,
    /// When the proxy was last checked (alive: a dead check removes the entry).
    #[serde(with = "rfc3339")]
    pub last_checked: SystemTime,
    pub history: History,
    /// ISO 3166-1 alpha-2 code (upper case) of where the exit address is, when geolocation ran.
    /// Absent means unknown, never guessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Autonomous system number of the exit address, when geolocation ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
}

impl ListedProxy {
    /// The credentials, if both halves are present.
    pub fn credentials(&self) -> Option<Credentials> {
        match (&self.username, &self.password) {
            (Some(username), Some(password)) => Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }),
            _ => None,
        }
    }

    pub fn key(&self) -> ProxyKey {
        ProxyKey {
            endpoint: Endpoint {
                host: self.host.clone(),
                port: self.port,
            },
            auth: self.credentials(),
        }
    }

    /// The proxy to check again, listed under the protocols that worked last time.
    pub fn to_proxy(&self) -> crate::proxy::Proxy {
        let key = self.key();
        crate::proxy::Proxy {
            endpoint: key.endpoint,
            auth: key.auth,
            protocols: self.protocols,
        }
    }
}

/// What the list remembers about a proxy across checks. Invariant: `streak <= successes <=
/// checks` (checked when read). Written with its [`History::uptime`], which is not stored: it is
/// recomputed from the counts, so a document cannot make it disagree with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "HistoryDoc", try_from = "HistoryDoc")]
pub struct History {
    /// The earliest check that found it alive.
    pub first_seen: SystemTime,
    pub last_seen_alive: SystemTime,
    /// Alive or dead checks counted (unchecked and rejected ones are not checks).
    pub checks: u32,
    pub successes: u32,
    /// Alive checks in a row up to the latest check: 0 once a check finds the proxy dead.
    pub streak: u32,
}

impl History {
    /// `successes / checks` rounded to 3 decimals (0 before any check): the published `uptime`.
    pub fn uptime(&self) -> f64 {
        if self.checks == 0 {
            return 0.0;
        }
        let ratio = f64::from(self.successes) / f64::from(self.checks);
        (ratio * 1000.0).round() / 1000.0
    }
}

/// [`History`] as the document writes it.
#[derive(Serialize, Deserialize)]
struct HistoryDoc {
    #[serde(with = "rfc3339")]
    first_seen: SystemTime,
    #[serde(with = "rfc3339")]
    last_seen_alive: SystemTime,
    checks: u32,
    successes: u32,
    /// Written for consumers; ignored when read (recomputed).
    #[serde(default, skip_deserializing)]
    uptime: f64,
    streak: u32,
}

impl From<History> for HistoryDoc {
    fn from(h: History) -> Self {
        HistoryDoc {
            first_seen: h.first_seen,
            last_seen_alive: h.last_seen_alive,
            checks: h.checks,
            successes: h.successes,
            uptime: h.uptime(),
            streak: h.streak,
        }
    }
}

impl TryFrom<HistoryDoc> for History {
    type Error = String;
    fn try_from(d: HistoryDoc) -> Result<Self, String> {
        if !(d.streak <= d.successes && d.successes <= d.checks) {
            return Err(format!(
                "history counts must satisfy streak <= successes <= checks, got {} <= {} <= {}",
                d.streak, d.successes, d.checks
            ));
        }
        Ok(History {
            first_seen: d.first_seen,
            last_seen_alive: d.last_seen_alive,
            checks: d.checks,
            successes: d.successes,
            streak: d.streak,
        })
    }
}

/// A proxy found dead, remembered for the retention window so that an older "alive" result
/// merged later cannot resurrect it (without this, merging two jobs in different orders could
/// give different lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub host: Host,
    pub port: Port,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// When it was found dead.
    #[serde(with = "rfc3339")]
    pub checked_at: SystemTime,
    /// Its history if it was listed before it died, so that a revival continues the count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<History>,
}

impl Tombstone {
    pub fn new(key: &ProxyKey, checked_at: SystemTime, history: Option<History>) -> Self {
        Tombstone {
            host: key.endpoint.host.clone(),
            port: key.endpoint.port,
            username: key.auth.as_ref().map(|c| c.username.clone()),
            password: key.auth.as_ref().map(|c| c.password.clone()),
            checked_at,
            history,
        }
    }

    pub fn key(&self) -> ProxyKey {
        let auth = match (&self.username, &self.password) {
            (Some(username), Some(password)) => Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }),
            _ => None,
        };
        ProxyKey {
            endpoint: Endpoint {
                host: self.host.clone(),
                port: self.port,
            },
            auth,
        }
    }
}

/// Why bytes could not be read as a published list.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("not a proxy list document: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "proxy list version {found} is not supported (this build reads version {supported}); \
         upgrade proxyharvest"
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("proxy list entry {index} ({what}) is invalid: {problem}")]
    InvalidEntry {
        index: usize,
        what: String,
        problem: String,
    },
}

impl PublishedList {
    /// An empty list, as the first merge starts from.
    pub fn empty(generated_at: SystemTime, check: CheckParams) -> Self {
        PublishedList {
            version: LIST_VERSION,
            generated_at: whole_millis(generated_at),
            job_id: None,
            counts: ListCounts::default(),
            check,
            proxies: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// The document as published: compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .expect("a published list has only string map keys and always serialises")
    }

    /// Reads a document, refusing one of another major version before looking at its body,
    /// and credentials this crate could not have written.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ListError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let VersionOnly { version } = serde_json::from_slice(bytes)?;
        if version != LIST_VERSION {
            return Err(ListError::UnsupportedVersion {
                found: version,
                supported: LIST_VERSION,
            });
        }
        let list: PublishedList = serde_json::from_slice(bytes)?;
        for (index, p) in list.proxies.iter().enumerate() {
            check_credentials(&p.username, &p.password)
                .and_then(|()| check_geolocation(p))
                .map_err(|problem| ListError::InvalidEntry {
                    index,
                    what: format!("{}:{}", p.host, p.port),
                    problem,
                })?;
        }
        for (index, t) in list.removed.iter().enumerate() {
            check_credentials(&t.username, &t.password).map_err(|problem| {
                ListError::InvalidEntry {
                    index,
                    what: format!("removed {}:{}", t.host, t.port),
                    problem,
                }
            })?;
        }
        Ok(list)
    }

    /// The plain text lists published beside the document, as `(file name, contents)`:
    /// `http.txt`, `https.txt`, `socks4.txt`, `socks5.txt` (`[user:pass@]host:port` of the
    /// proxies speaking that protocol) and `all.txt` (`scheme://[user:pass@]host:port`, one line
    /// per protocol). Lines follow the list order (fastest first) and end with a newline.
    pub fn text_lists(&self) -> Vec<(&'static str, String)> {
        let mut per_protocol: BTreeMap<Protocol, String> = BTreeMap::new();
        let mut all = String::new();
        for p in &self.proxies {
            let key = p.key();
            for protocol in p.protocols.iter() {
                let text = per_protocol.entry(protocol).or_default();
                text.push_str(&key.to_string());
                text.push('\n');
                all.push_str(&format!("{protocol}://{key}\n"));
            }
        }
        let mut take = |p: Protocol| per_protocol.remove(&p).unwrap_or_default();
        vec![
            ("http.txt", take(Protocol::Http)),
            ("https.txt", take(Protocol::Https)),
            ("socks4.txt", take(Protocol::Socks4)),
            ("socks5.txt", take(Protocol::Socks5)),
            ("all.txt", all),
        ]
    }
}

/// Credentials must come as a pair that [`Credentials::new`] accepts: anything else could not
/// have been checked, and would print an ambiguous line in the text lists.
fn check_credentials(username: &Option<String>, password: &Option<String>) -> Result<(), String> {
    match (username, password) {
        (None, None) => Ok(()),
        (Some(u), Some(p)) => Credentials::new(u, p).map(drop).map_err(|e| e.to_string()),
        _ => Err("username and password must be given together".to_owned()),
    }
}

/// A country is an upper-case ISO 3166-1 alpha-2 code, so that filters can compare it exactly;
/// AS 0 is reserved and never announced, so it can only be a placeholder for "unknown".
fn check_geolocation(p: &ListedProxy) -> Result<(), String> {
    match (&p.country, p.asn) {
        (Some(c), _) if !is_country_code(c) => Err(format!(
            "country {c:?} is not an upper-case two-letter ISO 3166-1 code"
        )),
        (_, Some(0)) => Err("asn 0 is reserved; leave asn out when it is unknown".to_owned()),
        _ => Ok(()),
    }
}

/// Two upper-case ASCII letters, the form of an ISO 3166-1 alpha-2 code.
pub fn is_country_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// Drops what is finer than a millisecond: the precision the document keeps. Milliseconds, not
/// seconds, so that two jobs checking a proxy within one second are two checks, while a replay
/// of the same result (same millisecond) is still recognised as one.
pub fn whole_millis(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_millis(d.as_millis() as u64),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// Serde for `SystemTime` as an RFC 3339 UTC string with milliseconds
/// (`2026-12-03T17:13:00.123Z`).
pub mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(super::whole_millis(*t)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s)
            .map(super::whole_millis)
            .map_err(|e| serde::de::Error::custom(format!("invalid timestamp {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn listed(text: &str, latency_ms: u32, anonymity: Anonymity) -> ListedProxy {
        let proxy: crate::proxy::Proxy = text.parse().unwrap();
        ListedProxy {
            protocols: proxy.protocols,
            host: proxy.endpoint.host,
            port: proxy.endpoint.port,
            username: proxy.auth.as_ref().map(|c| c.username.clone()),
            password: proxy.auth.as_ref().map(|c| c.password.clone()),
            latency_ms,
            anonymity,
            exit_ip: "203.0.113.7".parse().unwrap(),
            last_checked: at(1_796_000_000),
            history: History {
                first_seen: at(1_795_000_000),
                last_seen_alive: at(1_796_000_000),
                checks: 7,
                successes: 5,
                streak: 3,
            },
            country: None,
            asn: None,
        }
    }

    /// Every protocol, credentials, IPv6, a host name and geolocation: what the schema test
    /// validates.
    pub(crate) fn realistic() -> PublishedList {
        let mut both = listed("http://198.51.100.4:8080", 120, Anonymity::Elite);
        both.protocols.insert(Protocol::Https);
        both.country = Some("NZ".to_owned());
        both.asn = Some(64_500);
        let proxies = vec![
            both,
            listed(
                "socks5://user:p4ss@[2001:db8::7]:1080",
                250,
                Anonymity::Anonymous,
            ),
            listed(
                "socks4://proxy.example.net:1080",
                900,
                Anonymity::Transparent,
            ),
        ];
        PublishedList {
            version: LIST_VERSION,
            generated_at: at(1_796_000_100),
            job_id: Some("job-2026-12-03T17-00".to_owned()),
            counts: ListCounts::of(&proxies),
            check: CheckParams {
                judge: "http://httpbin.org/get?show_env=1".to_owned(),
                timeout_ms: 10_000,
                connect_timeout_ms: 5_000,
            },
            proxies,
            removed: vec![Tombstone::new(
                &"192.0.2.9:3128"
                    .parse::<crate::proxy::Proxy>()
                    .unwrap()
                    .key(),
                at(1_796_000_050),
                Some(History {
                    first_seen: at(1_790_000_000),
                    last_seen_alive: at(1_795_000_000),
                    checks: 3,
                    successes: 2,
                    streak: 0,
                }),
            )],
        }
    }

    #[test]
    fn json_round_trips() {
        let list = realistic();
        let back = PublishedList::from_json(&list.to_json()).unwrap();
        assert_eq!(back, list);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        let mut list = realistic();
        list.generated_at = at(1_796_000_100) + Duration::from_micros(999_999);
        let v: serde_json::Value = serde_json::from_slice(&list.to_json()).unwrap();
        assert_eq!(v["generated_at"], "2026-11-30T00:55:00.999Z");
        assert_eq!(
            PublishedList::from_json(&list.to_json())
                .unwrap()
                .generated_at,
            at(1_796_000_100) + Duration::from_millis(999)
        );
    }

    #[test]
    fn absent_credentials_are_not_written() {
        let v: serde_json::Value = serde_json::from_slice(&realistic().to_json()).unwrap();
        let first = v["proxies"][0].as_object().unwrap();
        assert!(!first.contains_key("username") && !first.contains_key("password"));
        assert_eq!(v["proxies"][1]["username"], "user");
        assert_eq!(v["proxies"][1]["host"], "2001:db8::7");
    }

    #[test]
    fn history_is_written_with_its_uptime_and_streak() {
        let v: serde_json::Value = serde_json::from_slice(&realistic().to_json()).unwrap();
        let h = &v["proxies"][0]["history"];
        assert_eq!(h["uptime"], 0.714); // 5 of 7
        assert_eq!(h["streak"], 3);
        assert_eq!(v["removed"][0]["history"]["uptime"], 0.667); // 2 of 3
    }

    #[test]
    fn uptime_is_rounded_to_three_decimals_and_zero_without_checks() {
        let h = |successes, checks| History {
            first_seen: at(0),
            last_seen_alive: at(0),
            checks,
            successes,
            streak: 0,
        };
        assert_eq!(h(1, 3).uptime(), 0.333);
        assert_eq!(h(2, 3).uptime(), 0.667);
        assert_eq!(h(4, 4).uptime(), 1.0);
        assert_eq!(h(1, 2001).uptime(), 0.0);
        assert_eq!(h(0, 0).uptime(), 0.0);
    }

    #[test]
    fn uptime_is_recomputed_when_read() {
        let mut v: serde_json::Value = serde_json::from_slice(&realistic().to_json()).unwrap();
        v["proxies"][0]["history"]["uptime"] = 0.001.into();
        let list = PublishedList::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(list.proxies[0].history.uptime(), 0.714);
        let again: serde_json::Value = serde_json::from_slice(&list.to_json()).unwrap();
        assert_eq!(again["proxies"][0]["history"]["uptime"], 0.714);
    }

    #[test]
    fn impossible_history_counts_are_rejected() {
        for (field, value) in [("successes", 8), ("streak", 6)] {
            let mut v: serde_json::Value = serde_json::from_slice(&realistic().to_json()).unwrap();
            v["proxies"][0]["history"][field] = value.into(); // checks 7, successes 5
            let err = PublishedList::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
            assert!(
                err.to_string().contains("streak <= successes <= checks"),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn geolocation_is_written_only_when_known() {
        let v: serde_json::Value = serde_json::from_slice(&realistic().to_json()).unwrap();
        assert_eq!(
            (&v["proxies"][0]["country"], &v["proxies"][0]["asn"]),
            (&"NZ".into(), &64_500.into())
        );
        let second = v["proxies"][1].as_object().unwrap();
        assert!(!second.contains_key("country") && !second.contains_key("asn"));
    }

    #[test]
    fn malformed_country_is_rejected() {
        for bad in ["nz", "NZL", "N1", ""] {
            let mut v: serde_json::Value = serde_json::from_slice(&realistic().to_json()).unwrap();
            v["proxies"][2]["country"] = bad.into();
            let err = PublishedList::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
            assert!(
                matches!(err, ListError::InvalidEntry { index: 2, .. }),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn unknown_major_version_is_rejected() {
        let mut v: serde_json::Value = serde_json::from_slice(&realistic().to_json()).unwrap();
        v["version"] = 2.into();
        // A future version may change anything else too: the version alone must decide.
        v["proxies"] = "something else".into();
        let err = PublishedList::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            matches!(
                err,
                ListError::UnsupportedVersion {
                    found: 2,
                    supported: 1
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("version 2 is not supported"));
    }

    #[test]
    fn half_credentials_are_rejected() {
        let mut v: serde_json::Value = serde_json::from_slice(&realistic().to_json()).unwrap();
        v["proxies"][1].as_object_mut().unwrap().remove("password");
        let err = PublishedList::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            matches!(err, ListError::InvalidEntry { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_a_json_error() {
        assert!(matches!(
            PublishedList::from_json(b"{\"version\":1}"),
            Err(ListError::Json(_))
        ));
        assert!(matches!(
            PublishedList::from_json(b"[]"),
            Err(ListError::Json(_))
        ));
    }

    #[test]
    fn counts_cover_protocols_and_anonymity() {
        let c = realistic().counts;
        assert_eq!(c.total, 3);
        assert_eq!(
            c.by_protocol,
            ProtocolCounts {
                http: 1,
                https: 1,
                socks4: 1,
                socks5: 1
            }
        );
        assert_eq!(
            c.by_anonymity,
            AnonymityCounts {
                elite: 1,
                anonymous: 1,
                transparent: 1
            }
        );
    }

    #[test]
    fn text_lists_follow_list_order() {
        let mut list = realistic();
        let mut fast_socks5 = listed("socks5://[::ffff:198.51.100.9]:9050", 50, Anonymity::Elite);
        fast_socks5.protocols.insert(Protocol::Http);
        list.proxies.insert(0, fast_socks5);
        let lists: BTreeMap<_, _> = list.text_lists().into_iter().collect();
        assert_eq!(lists.len(), 5);
        assert_eq!(
            lists["http.txt"],
            "[::ffff:198.51.100.9]:9050\n198.51.100.4:8080\n"
        );
        assert_eq!(lists["https.txt"], "198.51.100.4:8080\n");
        assert_eq!(lists["socks4.txt"], "proxy.example.net:1080\n");
        assert_eq!(
            lists["socks5.txt"],
            "[::ffff:198.51.100.9]:9050\nuser:p4ss@[2001:db8::7]:1080\n"
        );
        assert_eq!(
            lists["all.txt"],
            "http://[::ffff:198.51.100.9]:9050\nsocks5://[::ffff:198.51.100.9]:9050\n\
             http://198.51.100.4:8080\nhttps://198.51.100.4:8080\n\
             socks5://user:p4ss@[2001:db8::7]:1080\nsocks4://proxy.example.net:1080\n"
        );
        // Every line of all.txt parses back to a proxy in the list.
        for line in lists["all.txt"].lines() {
            let p: crate::proxy::Proxy = line.parse().unwrap();
            assert!(list.proxies.iter().any(|l| l.key() == p.key()), "{line}");
        }
    }

    #[test]
    fn empty_list_has_empty_text_lists() {
        let list = PublishedList::empty(at(0), realistic().check);
        assert!(list.text_lists().iter().all(|(_, text)| text.is_empty()));
    }

    fn schema_validator() -> jsonschema::Validator {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schema/proxy-list.schema.json"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap()
    }

    fn schema_errors(v: &serde_json::Value) -> Vec<String> {
        schema_validator()
            .iter_errors(v)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect()
    }

    #[test]
    fn realistic_list_matches_the_schema() {
        let v: serde_json::Value = serde_json::from_slice(&realistic().to_json()).unwrap();
        assert_eq!(schema_errors(&v), Vec::<String>::new());
        let empty = PublishedList::empty(at(0), realistic().check);
        let v: serde_json::Value = serde_json::from_slice(&empty.to_json()).unwrap();
        assert_eq!(schema_errors(&v), Vec::<String>::new());
    }

    #[test]
    fn broken_documents_fail_the_schema() {
        let good: serde_json::Value = serde_json::from_slice(&realistic().to_json()).unwrap();
        type Breakage = (&'static str, fn(&mut serde_json::Value));
        let breakages: [Breakage; 15] = [
            ("port 0", |v| v["proxies"][0]["port"] = 0.into()),
            ("port too large", |v| v["proxies"][0]["port"] = 65536.into()),
            ("unknown protocol", |v| {
                v["proxies"][0]["protocols"] = serde_json::json!(["ftp"])
            }),
            ("unknown anonymity", |v| {
                v["proxies"][0]["anonymity"] = "invisible".into()
            }),
            ("bad timestamp", |v| v["generated_at"] = "yesterday".into()),
            ("bad exit ip", |v| {
                v["proxies"][0]["exit_ip"] = "1.2.3".into()
            }),
            ("unknown field", |v| {
                v["proxies"][0]["city"] = "Wellington".into()
            }),
            ("lower-case country", |v| {
                v["proxies"][0]["country"] = "nz".into()
            }),
            ("asn 0", |v| v["proxies"][0]["asn"] = 0.into()),
            ("uptime above 1", |v| {
                v["proxies"][0]["history"]["uptime"] = 1.5.into()
            }),
            ("history without uptime", |v| {
                v["proxies"][0]["history"]
                    .as_object_mut()
                    .unwrap()
                    .remove("uptime");
            }),
            ("history without streak", |v| {
                v["proxies"][0]["history"]
                    .as_object_mut()
                    .unwrap()
                    .remove("streak");
            }),
            ("listed proxy with no streak", |v| {
                v["proxies"][0]["history"]["streak"] = 0.into()
            }),
            ("negative streak", |v| {
                v["removed"][0]["history"]["streak"] = (-1).into()
            }),
            ("username without password", |v| {
                v["proxies"][1].as_object_mut().unwrap().remove("password");
            }),
        ];
        for (what, break_it) in breakages {
            let mut v = good.clone();
            break_it(&mut v);
            assert!(!schema_errors(&v).is_empty(), "{what} passed the schema");
        }
    }
}
