//! What one check of one proxy found. The one result type that the checker produces and the
//! planner, merger, publisher and pipeline consume.
//!
//! Every proxy handed to the engine comes back with exactly one [`Outcome`]: alive, dead (with a
//! reason), rejected before any connection, or unchecked because the deadline came first. Nothing
//! is dropped, so the accounting `scraped = live + dead + unchecked + rejected` always holds.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::proxy::{Credentials, Host, Port, ProtocolSet, Proxy, ProxyKey};

/// How much a proxy reveals about its client, graded from what the judge received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anonymity {
    /// The checker's own public IP appears somewhere in what the judge received.
    Transparent,
    /// The client IP is hidden, but headers reveal that a proxy is in the way.
    Anonymous,
    /// Neither the client IP nor any proxy-revealing header reaches the judge.
    Elite,
}

/// Where the time of a successful round trip went. Milliseconds, from the start of the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Timings {
    /// TCP connect to the proxy done.
    pub connect_ms: u32,
    /// Proxy handshake (SOCKS, CONNECT, TLS) done; equal to `connect_ms` for plain HTTP.
    pub handshake_ms: u32,
    /// First byte of the judge's response received.
    pub first_byte_ms: u32,
    /// Whole judge round trip (the published `latency_ms`).
    pub total_ms: u32,
}

/// A proxy that answered correctly through at least one protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alive {
    /// Every protocol that really worked.
    pub protocols: ProtocolSet,
    /// Full judge round trip through the fastest working protocol.
    pub latency_ms: u32,
    pub timings: Timings,
    /// The address the judge saw the request come from.
    pub exit_ip: IpAddr,
    pub anonymity: Anonymity,
}

/// Why a proxy is not alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The TCP connection was refused.
    Refused,
    /// The TCP connection did not complete within the connect timeout.
    ConnectTimeout,
    /// The connection was reset or closed before an answer.
    Reset,
    /// No route / network unreachable / name did not resolve.
    Unreachable,
    /// The peer answered, but not in any protocol tried.
    ProtocolMismatch,
    /// The proxy demands credentials we do not have, or refused the ones we gave.
    AuthFailed,
    /// The proxy refused to forward or tunnel to the judge.
    Rejected,
    /// A step (handshake, response) took longer than its timeout, or the whole check did.
    Timeout,
    /// The response was not the judge's: missing token, wrong format, canned answer, garbage.
    Tampered,
    /// The judge's answer through the proxy was larger than the response cap.
    TooLarge,
    /// TLS to the judge through the tunnel failed (bad certificate, handshake error).
    Tls,
    /// Any other I/O error.
    Io,
}

/// Why a proxy was never connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Loopback, private, link-local, multicast, unspecified or metadata address, and the operator
    /// did not allow private targets.
    ForbiddenTarget,
    /// The entry could not be used at all (e.g. a name that does not resolve to any address).
    Invalid,
}

/// The verdict on one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Alive(Alive),
    Dead {
        reason: FailureReason,
    },
    Rejected {
        reason: RejectReason,
    },
    /// The deadline came before the check could start.
    Unchecked,
}

impl Outcome {
    pub fn is_alive(&self) -> bool {
        matches!(self, Outcome::Alive(_))
    }
}

/// A proxy and what its check found, with when. This is also the stored form of a result
/// (compact JSON: the proxy's fields, the outcome under `outcome`, `checked_at` in epoch seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    #[serde(flatten)]
    pub proxy: Proxy,
    pub outcome: Outcome,
    /// When the check finished (or, for unchecked/rejected, when it was decided).
    #[serde(with = "epoch_millis")]
    pub checked_at: SystemTime,
}

/// Serde for `SystemTime` as whole milliseconds since the Unix epoch.
pub mod epoch_millis {
    use std::time::{Duration, SystemTime};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64;
        s.serialize_u64(ms)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Serde for `SystemTime` as whole seconds since the Unix epoch.
pub mod epoch_secs {
    use std::time::{Duration, SystemTime};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::unix_secs(*t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::deserialize(d)?))
    }
}

/// The flat JSON record `proxyharvest check` prints and the pipeline stores: one per proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub host: Host,
    pub port: Port,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Credentials>,
    /// Protocols the proxy was listed under (empty = unknown).
    #[serde(default)]
    pub listed: ProtocolSet,
    pub alive: bool,
    /// Protocols that really worked (empty unless alive).
    pub protocols: ProtocolSet,
    pub anonymity: Option<Anonymity>,
    pub latency_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    pub exit_ip: Option<IpAddr>,
    /// `dead` reason, `rejected` reason, or `unchecked`; absent when alive.
    pub error: Option<String>,
    /// Seconds since the Unix epoch.
    pub checked_at: u64,
}

impl ResultRecord {
    pub fn key(&self) -> ProxyKey {
        ProxyKey {
            endpoint: crate::proxy::Endpoint {
                host: self.host.clone(),
                port: self.port,
            },
            auth: self.auth.clone(),
        }
    }
}

fn snake<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl From<&CheckResult> for ResultRecord {
    fn from(r: &CheckResult) -> Self {
        let (alive, protocols, anonymity, latency_ms, timings, exit_ip, error) = match &r.outcome {
            Outcome::Alive(a) => (
                true,
                a.protocols,
                Some(a.anonymity),
                Some(a.latency_ms),
                Some(a.timings),
                Some(a.exit_ip),
                None,
            ),
            Outcome::Dead { reason } => (
                false,
                ProtocolSet::EMPTY,
                None,
                None,
                None,
                None,
                Some(snake(reason)),
            ),
            Outcome::Rejected { reason } => (
                false,
                ProtocolSet::EMPTY,
                None,
                None,
                None,
                None,
                Some(snake(reason)),
            ),
            Outcome::Unchecked => (
                false,
                ProtocolSet::EMPTY,
                None,
                None,
                None,
                None,
                Some("unchecked".to_owned()),
            ),
        };
        ResultRecord {
            host: r.proxy.endpoint.host.clone(),
            port: r.proxy.endpoint.port,
            auth: r.proxy.auth.clone(),
            listed: r.proxy.protocols,
            alive,
            protocols,
            anonymity,
            latency_ms,
            timings,
            exit_ip,
            error,
            checked_at: unix_secs(r.checked_at),
        }
    }
}

/// Seconds since the Unix epoch (0 for times before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// Counts of outcomes: the accounting every job report carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tally {
    pub live: u64,
    pub dead: u64,
    pub unchecked: u64,
    pub rejected: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Alive(_) => self.live += 1,
            Outcome::Dead { .. } => self.dead += 1,
            Outcome::Unchecked => self.unchecked += 1,
            Outcome::Rejected { .. } => self.rejected += 1,
        }
    }
    pub fn total(&self) -> u64 {
        self.live + self.dead + self.unchecked + self.rejected
    }
    pub fn merge(&mut self, other: &Tally) {
        self.live += other.live;
        self.dead += other.dead;
        self.unchecked += other.unchecked;
        self.rejected += other.rejected;
    }
}

impl<'a> FromIterator<&'a Outcome> for Tally {
    fn from_iter<I: IntoIterator<Item = &'a Outcome>>(iter: I) -> Self {
        let mut t = Tally::default();
        for o in iter {
            t.add(o);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_carries_reason_for_every_non_alive_outcome() {
        let proxy: Proxy = "http://1.2.3.4:80".parse().unwrap();
        for (outcome, want) in [
            (
                Outcome::Dead {
                    reason: FailureReason::Tampered,
                },
                "tampered",
            ),
            (
                Outcome::Rejected {
                    reason: RejectReason::ForbiddenTarget,
                },
                "forbidden_target",
            ),
            (Outcome::Unchecked, "unchecked"),
        ] {
            let r = CheckResult {
                proxy: proxy.clone(),
                outcome,
                checked_at: SystemTime::UNIX_EPOCH,
            };
            let rec = ResultRecord::from(&r);
            assert!(!rec.alive);
            assert_eq!(rec.error.as_deref(), Some(want));
        }
    }

    #[test]
    fn check_result_round_trips_through_json() {
        let r = CheckResult {
            proxy: "socks5://u:p@1.2.3.4:1080".parse().unwrap(),
            outcome: Outcome::Alive(Alive {
                protocols: ProtocolSet::single(crate::proxy::Protocol::Socks5),
                latency_ms: 12,
                timings: Timings::default(),
                exit_ip: "5.6.7.8".parse().unwrap(),
                anonymity: Anonymity::Elite,
            }),
            checked_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<CheckResult>(&json).unwrap(), r);
    }

    #[test]
    fn tally_adds_up() {
        let outcomes = [
            Outcome::Unchecked,
            Outcome::Dead {
                reason: FailureReason::Refused,
            },
            Outcome::Unchecked,
        ];
        let t: Tally = outcomes.iter().collect();
        assert_eq!((t.unchecked, t.dead, t.total()), (2, 1, 3));
    }
}
