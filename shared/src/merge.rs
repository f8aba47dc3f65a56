//! Merging a job's check results into the previously published list.
//!
//! Jobs overlap and finish out of order, so the merge is built to give the same proxies whatever
//! order results arrive in, and to change nothing when the same results arrive twice:
//! - every proxy (by [`ProxyKey`]) is in one state: listed (alive), or remembered dead
//!   ([`Tombstone`]) for `max_age` so that an older "alive" cannot resurrect it;
//! - a result changes a proxy only if it is strictly fresher than what the list holds ([`Version`]):
//!   the newer check wins; at the same millisecond alive beats dead, and the faster of two alive
//!   results wins. A result no fresher is a replay or a late arrival: it changes nothing and is
//!   not counted;
//! - unchecked and rejected results say nothing about the proxy and are ignored;
//! - anything last checked more than `max_age` before `now` is dropped, listed or dead.
//!
//! The final state per proxy is thus the maximum over every result ever merged (within
//! `max_age`): the "no lost update" property the tests check across merge orders. History is the
//! one exception, by design: a late arrival is not counted, since it cannot be told apart from a
//! replay, so counters and `first_seen` depend on the order results arrived in. The history
//! outlives a death in the tombstone, so a revived proxy continues its counts: its `streak`
//! (alive checks in a row) restarts, while `checks` and `successes`, hence uptime, carry on.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::list::{
    CheckParams, History, LIST_VERSION, ListCounts, ListedProxy, PublishedList, Tombstone,
    whole_millis,
};
use crate::outcome::{Alive, Anonymity, CheckResult, Outcome};
use crate::proxy::{ProtocolSet, ProxyKey};

/// The clock and retention the merge runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergePolicy {
    /// Becomes the list's `generated_at`, and the reference for `max_age`.
    pub now: SystemTime,
    /// How long a proxy stays listed (or remembered dead) after its last check.
    pub max_age: Duration,
}

/// What the list knows about one proxy.
enum Slot {
    Listed(ListedProxy),
    Dead(Tombstone),
}

impl Slot {
    fn version(&self) -> Version {
        match self {
            Slot::Listed(p) => Version(
                p.last_checked,
                Some(AliveRank::new(
                    p.latency_ms,
                    p.protocols,
                    p.exit_ip,
                    p.anonymity,
                )),
            ),
            Slot::Dead(t) => Version(t.checked_at, None),
        }
    }
}

/// The total order in which states supersede each other: by check time, then dead before alive,
/// then by how good the alive result is. Being total (no two different results tie) is what
/// makes the outcome independent of merge order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version(SystemTime, Option<AliveRank>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AliveRank {
    faster: Reverse<u32>,
    protocols: u8,
    exit_ip: IpAddr,
    anonymity: Anonymity,
}

impl AliveRank {
    fn new(latency_ms: u32, protocols: ProtocolSet, exit_ip: IpAddr, anonymity: Anonymity) -> Self {
        AliveRank {
            faster: Reverse(latency_ms),
            protocols: protocols.iter().fold(0, |bits, p| bits | 1 << p as u8),
            exit_ip,
            anonymity,
        }
    }
}

/// Merges `results` into `previous` (or into an empty list) and returns the list to publish.
pub fn merge(
    previous: Option<&PublishedList>,
    results: &[CheckResult],
    params: CheckParams,
    job_id: Option<String>,
    policy: &MergePolicy,
) -> PublishedList {
    let mut state: BTreeMap<ProxyKey, Slot> = BTreeMap::new();
    if let Some(list) = previous {
        let slots = (list.proxies.iter().cloned().map(Slot::Listed))
            .chain(list.removed.iter().cloned().map(Slot::Dead));
        for slot in slots {
            let key = match &slot {
                Slot::Listed(p) => p.key(),
                Slot::Dead(t) => t.key(),
            };
            // A document should hold each key once; if not, keep the fresher state.
            match state.get(&key) {
                Some(held) if held.version() >= slot.version() => {}
                _ => {
                    state.insert(key, slot);
                }
            }
        }
    }

    for result in results {
        apply(&mut state, result);
    }

    let fresh = |t: SystemTime| match policy.now.duration_since(t) {
        Ok(age) => age <= policy.max_age,
        Err(_) => true, // checked "in the future": clock skew, keep it
    };
    let mut proxies = Vec::new();
    let mut removed = Vec::new();
    for slot in state.into_values() {
        match slot {
            Slot::Listed(p) if fresh(p.last_checked) => proxies.push(p),
            Slot::Dead(t) if fresh(t.checked_at) => removed.push(t),
            _ => {}
        }
    }
    // `removed` is already in key order (the map's); the proxies go fastest first.
    proxies.sort_by_cached_key(|p| (p.latency_ms, p.key()));

    PublishedList {
        version: LIST_VERSION,
        generated_at: whole_millis(policy.now),
        job_id,
        counts: ListCounts::of(&proxies),
        check: params,
        proxies,
        removed,
    }
}

/// Applies one result to the state, if it is fresher than what the state holds.
fn apply(state: &mut BTreeMap<ProxyKey, Slot>, result: &CheckResult) {
    let alive = match &result.outcome {
        Outcome::Alive(a) => Some(a),
        Outcome::Dead { .. } => None,
        Outcome::Unchecked | Outcome::Rejected { .. } => return,
    };
    // The document keeps whole milliseconds: compare at that precision, or a result merged again
    // after a round trip through JSON would look fresher than itself.
    let checked_at = whole_millis(result.checked_at);
    let key = result.proxy.key();
    let version = Version(
        checked_at,
        alive.map(|a| AliveRank::new(a.latency_ms, a.protocols, a.exit_ip, a.anonymity)),
    );
    let held = state.get(&key);
    if held.is_some_and(|slot| slot.version() >= version) {
        return; // a replay or a late arrival
    }

    let previous_history = match held {
        Some(Slot::Listed(p)) => Some(p.history),
        Some(Slot::Dead(t)) => t.history,
        None => None,
    };
    let slot = match alive {
        Some(a) => Slot::Listed(listed(&key, a, checked_at, previous_history)),
        None => Slot::Dead(Tombstone::new(
            &key,
            checked_at,
            previous_history.map(|h| History {
                checks: h.checks.saturating_add(1),
                streak: 0,
                ..h
            }),
        )),
    };
    state.insert(key, slot);
}

fn listed(
    key: &ProxyKey,
    alive: &Alive,
    checked_at: SystemTime,
    history: Option<History>,
) -> ListedProxy {
    let history = match history {
        Some(h) => History {
            first_seen: h.first_seen,
            last_seen_alive: checked_at,
            checks: h.checks.saturating_add(1),
            successes: h.successes.saturating_add(1),
            streak: h.streak.saturating_add(1),
        },
        None => History {
            first_seen: checked_at,
            last_seen_alive: checked_at,
            checks: 1,
            successes: 1,
            streak: 1,
        },
    };
    ListedProxy {
        protocols: alive.protocols,
        host: key.endpoint.host.clone(),
        port: key.endpoint.port,
        username: key.auth.as_ref().map(|c| c.username.clone()),
        password: key.auth.as_ref().map(|c| c.password.clone()),
        latency_ms: alive.latency_ms,
        anonymity: alive.anonymity,
        exit_ip: alive.exit_ip,
        last_checked: checked_at,
        history,
        // Geolocation is not part of a check: nothing here knows the exit address's country.
        country: None,
        asn: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Anonymity, FailureReason, RejectReason, Timings};
    use crate::proxy::{Protocol, ProtocolSet, Proxy};

    const HOUR: u64 = 3600;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn policy(now: u64) -> MergePolicy {
        MergePolicy {
            now: at(now),
            max_age: Duration::from_secs(24 * HOUR),
        }
    }

    fn params() -> CheckParams {
        CheckParams {
            judge: "http://judge.test/".to_owned(),
            timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
        }
    }

    fn alive(proxy: &str, latency_ms: u32, checked_at: u64) -> CheckResult {
        let proxy: Proxy = proxy.parse().unwrap();
        CheckResult {
            outcome: Outcome::Alive(Alive {
                protocols: if proxy.protocols.is_empty() {
                    ProtocolSet::single(Protocol::Http)
                } else {
                    proxy.protocols
                },
                latency_ms,
                timings: Timings::default(),
                exit_ip: "203.0.113.1".parse().unwrap(),
                anonymity: Anonymity::Elite,
            }),
            proxy,
            checked_at: at(checked_at),
        }
    }

    fn with(proxy: &str, outcome: Outcome, checked_at: u64) -> CheckResult {
        CheckResult {
            proxy: proxy.parse().unwrap(),
            outcome,
            checked_at: at(checked_at),
        }
    }

    fn dead(proxy: &str, checked_at: u64) -> CheckResult {
        let reason = FailureReason::Refused;
        with(proxy, Outcome::Dead { reason }, checked_at)
    }

    fn run(previous: Option<&PublishedList>, results: &[CheckResult], now: u64) -> PublishedList {
        merge(previous, results, params(), None, &policy(now))
    }

    fn keys(list: &PublishedList) -> Vec<String> {
        list.proxies.iter().map(|p| p.key().to_string()).collect()
    }

    fn entry<'a>(list: &'a PublishedList, key: &str) -> &'a ListedProxy {
        list.proxies
            .iter()
            .find(|p| p.key().to_string() == key)
            .unwrap_or_else(|| panic!("{key} not listed"))
    }

    #[test]
    fn new_alive_proxy_enters_with_fresh_history() {
        let list = run(None, &[alive("socks5://u:p@1.2.3.4:1080", 80, 10)], 20);
        let p = entry(&list, "u:p@1.2.3.4:1080");
        assert_eq!(p.latency_ms, 80);
        assert_eq!(p.last_checked, at(10));
        assert_eq!(p.protocols, ProtocolSet::single(Protocol::Socks5));
        assert_eq!(
            p.history,
            History {
                first_seen: at(10),
                last_seen_alive: at(10),
                checks: 1,
                successes: 1,
                streak: 1
            }
        );
    }

    #[test]
    fn one_entry_per_key_and_credentials_distinguish() {
        let results = [
            alive("http://1.2.3.4:80", 50, 10),
            alive("socks5://1.2.3.4:80", 40, 11),
            alive("http://a:b@1.2.3.4:80", 60, 10),
        ];
        let list = run(None, &results, 20);
        assert_eq!(keys(&list), ["1.2.3.4:80", "a:b@1.2.3.4:80"]);
        // The fresher result describes the proxy.
        assert_eq!(
            entry(&list, "1.2.3.4:80").protocols,
            ProtocolSet::single(Protocol::Socks5)
        );
    }

    #[test]
    fn fresher_alive_updates_and_counts_history() {
        let first = run(None, &[alive("1.2.3.4:80", 500, 10)], 20);
        let list = run(Some(&first), &[alive("1.2.3.4:80", 90, 30)], 40);
        let p = entry(&list, "1.2.3.4:80");
        assert_eq!((p.latency_ms, p.last_checked), (90, at(30)));
        assert_eq!(
            p.history,
            History {
                first_seen: at(10),
                last_seen_alive: at(30),
                checks: 2,
                successes: 2,
                streak: 2
            }
        );
    }

    #[test]
    fn older_result_never_overwrites_a_newer_check() {
        let newer = run(None, &[alive("1.2.3.4:80", 90, 30)], 40);
        let list = run(
            Some(&newer),
            &[alive("1.2.3.4:80", 500, 10), dead("1.2.3.4:80", 20)],
            40,
        );
        let p = entry(&list, "1.2.3.4:80");
        assert_eq!((p.latency_ms, p.last_checked), (90, at(30)));
        assert_eq!(p.history.checks, 1);
    }

    #[test]
    fn fresher_dead_removes_and_remembers() {
        let first = run(None, &[alive("1.2.3.4:80", 90, 10)], 20);
        let list = run(Some(&first), &[dead("1.2.3.4:80", 30)], 40);
        assert!(list.proxies.is_empty());
        assert_eq!(list.removed.len(), 1);
        assert_eq!(list.removed[0].checked_at, at(30));
        assert_eq!(list.removed[0].history.map(|h| h.checks), Some(2));
        // A stale alive result merged afterwards cannot bring it back.
        let list = run(Some(&list), &[alive("1.2.3.4:80", 90, 20)], 40);
        assert!(list.proxies.is_empty());
    }

    #[test]
    fn revived_proxy_continues_its_history() {
        let list = run(None, &[alive("1.2.3.4:80", 90, 10)], 10);
        let list = run(Some(&list), &[dead("1.2.3.4:80", 20)], 20);
        let list = run(Some(&list), &[alive("1.2.3.4:80", 70, 30)], 30);
        assert!(list.removed.is_empty());
        assert_eq!(
            entry(&list, "1.2.3.4:80").history,
            History {
                first_seen: at(10),
                last_seen_alive: at(30),
                checks: 3,
                successes: 2,
                streak: 1
            }
        );
    }

    /// The history of `1.2.3.4:80` after merging one result per step, `true` meaning alive, each
    /// step a separate merge one second after the previous one. `None` when it is not listed.
    fn history_after(steps: &[bool]) -> (Option<History>, Option<History>) {
        let mut list: Option<PublishedList> = None;
        for (i, &is_alive) in steps.iter().enumerate() {
            let t = 10 + i as u64;
            let r = if is_alive {
                alive("1.2.3.4:80", 90, t)
            } else {
                dead("1.2.3.4:80", t)
            };
            list = Some(run(list.as_ref(), &[r], t));
        }
        let list = list.unwrap();
        let listed = list.proxies.first().map(|p| p.history);
        let dead = list.removed.first().and_then(|t| t.history);
        (listed, dead)
    }

    #[test]
    fn streak_counts_alive_checks_since_the_last_dead_one() {
        let (listed, _) = history_after(&[true, true, true]);
        let h = listed.unwrap();
        assert_eq!(
            (h.checks, h.successes, h.streak, h.uptime()),
            (3, 3, 3, 1.0)
        );

        let (listed, tomb) = history_after(&[true, true, false]);
        assert!(listed.is_none());
        let h = tomb.unwrap();
        assert_eq!(
            (h.checks, h.successes, h.streak, h.uptime()),
            (3, 2, 0, 0.667)
        );
        assert_eq!(h.last_seen_alive, at(11));
    }

    #[test]
    fn revival_from_a_tombstone_restarts_the_streak_and_keeps_the_counts() {
        let (listed, _) = history_after(&[true, true, true, false, false, true, true]);
        let h = listed.unwrap();
        assert_eq!((h.checks, h.successes, h.streak), (7, 5, 2));
        assert_eq!(h.uptime(), 0.714);
        assert_eq!((h.first_seen, h.last_seen_alive), (at(10), at(16)));
    }

    #[test]
    fn a_proxy_dead_before_it_was_ever_listed_starts_its_history_when_alive() {
        // Nothing to continue: a tombstone without history does not count the dead check.
        let (listed, _) = history_after(&[false, true]);
        let h = listed.unwrap();
        assert_eq!((h.checks, h.successes, h.streak), (1, 1, 1));
    }

    #[test]
    fn late_results_change_neither_uptime_nor_streak() {
        let list = run(None, &[alive("1.2.3.4:80", 90, 20)], 20);
        let late = run(Some(&list), &[dead("1.2.3.4:80", 15)], 20);
        assert_eq!(late.proxies[0].history, list.proxies[0].history);
        assert_eq!(late.proxies[0].history.streak, 1);
    }

    #[test]
    fn uptime_and_streak_survive_a_round_trip_through_json() {
        let mut list = None;
        for (t, r) in [
            (10, alive("1.2.3.4:80", 90, 10)),
            (20, dead("1.2.3.4:80", 20)),
        ] {
            let merged = run(list.as_ref(), &[r], t);
            list = Some(PublishedList::from_json(&merged.to_json()).unwrap());
        }
        let list = run(list.as_ref(), &[alive("1.2.3.4:80", 90, 30)], 30);
        let v: serde_json::Value = serde_json::from_slice(&list.to_json()).unwrap();
        assert_eq!(v["proxies"][0]["history"]["uptime"], 0.667);
        assert_eq!(v["proxies"][0]["history"]["streak"], 1);
    }

    #[test]
    fn alive_beats_dead_in_the_same_second_in_either_order() {
        let a = alive("1.2.3.4:80", 90, 10);
        let d = dead("1.2.3.4:80", 10);
        for results in [[a.clone(), d.clone()], [d, a]] {
            let list = run(None, &results, 10);
            assert_eq!(keys(&list), ["1.2.3.4:80"]);
        }
    }

    #[test]
    fn faster_of_two_alive_results_in_the_same_second_wins_in_either_order() {
        let slow = alive("1.2.3.4:80", 90, 10);
        let fast = alive("1.2.3.4:80", 30, 10);
        for results in [[slow.clone(), fast.clone()], [fast, slow]] {
            let list = run(None, &results, 10);
            assert_eq!(entry(&list, "1.2.3.4:80").latency_ms, 30);
        }
    }

    #[test]
    fn unchecked_and_rejected_change_nothing() {
        let first = run(None, &[alive("1.2.3.4:80", 90, 10)], 10);
        let noise = [
            with("1.2.3.4:80", Outcome::Unchecked, 20),
            with(
                "1.2.3.4:80",
                Outcome::Rejected {
                    reason: RejectReason::ForbiddenTarget,
                },
                20,
            ),
            with("5.6.7.8:80", Outcome::Unchecked, 20),
        ];
        let list = run(Some(&first), &noise, 20);
        assert_eq!(list.proxies, first.proxies);
        assert!(list.removed.is_empty());
        // The entry is still subject to max_age.
        let later = run(Some(&first), &noise, 10 + 24 * HOUR + 1);
        assert!(later.proxies.is_empty());
    }

    #[test]
    fn unchecked_entries_expire_after_max_age() {
        let first = run(
            None,
            &[alive("1.2.3.4:80", 90, 0), dead("5.6.7.8:80", 0)],
            0,
        );
        let kept = run(Some(&first), &[], 24 * HOUR);
        assert_eq!(keys(&kept), ["1.2.3.4:80"]);
        assert_eq!(kept.removed.len(), 1);
        let expired = run(Some(&first), &[], 24 * HOUR + 1);
        assert!(expired.proxies.is_empty() && expired.removed.is_empty());
        // A result already older than max_age does not enter either.
        let late = run(None, &[alive("9.9.9.9:80", 10, 0)], 24 * HOUR + 1);
        assert!(late.proxies.is_empty());
    }

    #[test]
    fn sorted_fastest_first_then_by_key() {
        let results = [
            alive("9.0.0.1:80", 300, 10),
            alive("9.0.0.3:80", 100, 10),
            alive("9.0.0.2:80", 100, 10),
            alive("9.0.0.4:80", 5, 10),
        ];
        let list = run(None, &results, 10);
        assert_eq!(
            keys(&list),
            ["9.0.0.4:80", "9.0.0.2:80", "9.0.0.3:80", "9.0.0.1:80"]
        );
    }

    #[test]
    fn header_fields_are_recomputed() {
        let first = run(None, &[alive("socks4://1.2.3.4:80", 90, 10)], 10);
        let list = merge(
            Some(&first),
            &[alive("http://5.6.7.8:80", 20, 20), dead("1.2.3.4:80", 20)],
            CheckParams {
                judge: "http://other.test/".to_owned(),
                ..params()
            },
            Some("job-2".to_owned()),
            &MergePolicy {
                now: at(30) + Duration::from_millis(700),
                ..policy(30)
            },
        );
        assert_eq!(list.version, LIST_VERSION);
        assert_eq!(list.generated_at, at(30) + Duration::from_millis(700));
        assert_eq!(list.job_id.as_deref(), Some("job-2"));
        assert_eq!(list.check.judge, "http://other.test/");
        assert_eq!(list.counts, ListCounts::of(&list.proxies));
        assert_eq!((list.counts.total, list.counts.by_protocol.socks4), (1, 0));
    }

    #[test]
    fn merging_twice_is_idempotent_even_through_json() {
        let mut results = vec![
            alive("1.2.3.4:80", 90, 10),
            dead("5.6.7.8:80", 10),
            alive("http://u:p@[2001:db8::1]:8080", 40, 11),
        ];
        // Sub-millisecond times must not make a replay look fresher than the stored millisecond.
        for r in &mut results {
            r.checked_at += Duration::from_micros(600_400);
        }
        let once = run(None, &results, 20);
        let stored = PublishedList::from_json(&once.to_json()).unwrap();
        let twice = run(Some(&stored), &results, 20);
        assert_eq!(twice, once);
        assert_eq!(run(Some(&once), &results, 20), once);
    }

    #[test]
    fn the_same_result_twice_in_one_batch_counts_once() {
        let r = alive("1.2.3.4:80", 90, 10);
        let list = run(None, &[r.clone(), r], 10);
        assert_eq!(entry(&list, "1.2.3.4:80").history.checks, 1);
    }

    /// What "the same proxies" means across merge orders: everything but the history, which by
    /// design does not count late arrivals.
    fn comparable(list: &PublishedList) -> (Vec<ListedProxy>, Vec<(ProxyKey, SystemTime)>) {
        let no_history = History {
            first_seen: SystemTime::UNIX_EPOCH,
            last_seen_alive: SystemTime::UNIX_EPOCH,
            checks: 0,
            successes: 0,
            streak: 0,
        };
        let proxies = list
            .proxies
            .iter()
            .map(|p| ListedProxy {
                history: no_history,
                ..p.clone()
            })
            .collect();
        let removed = list
            .removed
            .iter()
            .map(|t| (t.key(), t.checked_at))
            .collect();
        (proxies, removed)
    }

    #[test]
    fn two_jobs_give_the_same_list_in_either_order() {
        let base = run(
            None,
            &[alive("1.1.1.1:80", 100, 0), alive("2.2.2.2:80", 100, 0)],
            0,
        );
        let job_a = [
            alive("1.1.1.1:80", 50, 10), // superseded by B's dead
            dead("2.2.2.2:80", 10),      // superseded by B's alive
            alive("3.3.3.3:80", 70, 10), // only A
        ];
        let job_b = [
            dead("1.1.1.1:80", 20),
            alive("2.2.2.2:80", 60, 20),
            dead("3.3.3.3:80", 5), // older than A's alive
            alive("4.4.4.4:80", 30, 20),
        ];
        let ab = run(Some(&run(Some(&base), &job_a, 30)), &job_b, 30);
        let ba = run(Some(&run(Some(&base), &job_b, 30)), &job_a, 30);
        assert_eq!(keys(&ab), ["4.4.4.4:80", "2.2.2.2:80", "3.3.3.3:80"]);
        assert_eq!(comparable(&ab), comparable(&ba));
    }

    /// A small deterministic generator, so the property test is reproducible.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % below
        }
    }

    #[test]
    fn merge_order_never_changes_the_proxies() {
        let mut rng = Lcg(7);
        for _ in 0..200 {
            let jobs: Vec<Vec<CheckResult>> = (0..3)
                .map(|_| {
                    (0..8)
                        .map(|_| {
                            let proxy = format!("10.0.0.{}:80", rng.next(6) + 1);
                            let t = rng.next(20);
                            match rng.next(4) {
                                0 | 1 => alive(&proxy, rng.next(1000) as u32, t),
                                2 => dead(&proxy, t),
                                _ => with(&proxy, Outcome::Unchecked, t),
                            }
                        })
                        .collect()
                })
                .collect();
            let in_order = |order: [usize; 3]| {
                let mut list: Option<PublishedList> = None;
                for i in order {
                    list = Some(run(list.as_ref(), &jobs[i], 30));
                }
                comparable(&list.unwrap())
            };
            let want = in_order([0, 1, 2]);
            for order in [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
                assert_eq!(in_order(order), want, "order {order:?} of {jobs:?}");
            }
        }
    }
}
