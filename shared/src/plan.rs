//! Planning: cutting a job's proxies into chunks that are sure to finish before the function
//! running them is killed.
//!
//! A validator checks `concurrency` proxies at a time, and no check takes longer than
//! `worst_case_check`, so a chunk of `n` proxies needs at most `ceil(n / concurrency)` rounds of
//! `worst_case_check` each. The plan gives every chunk at most as many rounds as fit in the
//! function's timeout minus a safety margin, and keeps chunks small enough that a queue message
//! carrying one stays far below the SQS limit ([`MAX_CHUNK_PROXIES`]). Chunks are balanced (sizes
//! differ by at most one) so that no function gets a much longer tail than the others.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::proxy::Proxy;

/// The serialised size (JSON, as in a queue message) of the longest proxy without credentials:
/// `{"host":"<253-byte name>","port":65535,"protocols":["http","https","socks4","socks5"]}` is
/// 324 bytes; rounded up for the comma between entries and some slack. Entries with credentials
/// can be longer (up to about 1.4 KB when every character of a 255-byte username and password
/// needs escaping); [`split_by_size`] handles those.
pub const MAX_ENTRY_BYTES: usize = 384;

/// The byte budget for the proxies in one chunk: half the 256 KiB SQS message limit, leaving
/// the rest for the envelope and for the limit some documents still quote.
pub const CHUNK_BUDGET_BYTES: usize = 128 * 1024;

/// The most proxies in one chunk: `CHUNK_BUDGET_BYTES / MAX_ENTRY_BYTES` = 341.
pub const MAX_CHUNK_PROXIES: usize = CHUNK_BUDGET_BYTES / MAX_ENTRY_BYTES;

/// Time a validator keeps for storing and counting after its last check ends (at most; see
/// [`validator_margin`]).
pub const VALIDATOR_MARGIN: Duration = Duration::from_secs(15);

/// The margin for a validator with this timeout: [`VALIDATOR_MARGIN`], or a quarter of a short
/// timeout, so that short-lived validators still get rounds to check in.
pub fn validator_margin(timeout: Duration) -> Duration {
    VALIDATOR_MARGIN.min(timeout / 4)
}

/// Lambda allows 1,024 file descriptors; each check holds at most two.
pub const LAMBDA_MAX_CONCURRENCY: usize = 480;

/// What the plan is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanInput {
    /// How many proxies the job has to check.
    pub proxies: usize,
    /// The validator function's timeout.
    pub function_timeout: Duration,
    /// Time kept back for start-up, reading the chunk and writing results.
    pub safety_margin: Duration,
    /// The longest one check can take (all protocols tried, every timeout hit).
    pub worst_case_check: Duration,
    /// How many checks a validator runs at once.
    pub concurrency: usize,
}

/// How a job is cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The size of the largest chunk; the others are this size or one less. 0 when there are
    /// no proxies.
    pub chunk_size: usize,
    /// How many chunks.
    pub chunks: usize,
    /// Rounds of `concurrency` checks the largest chunk needs.
    pub rounds_per_chunk: usize,
    /// The longest a chunk can take: `rounds_per_chunk * worst_case_check`, never more than
    /// the function's timeout minus the safety margin.
    #[serde(rename = "max_chunk_duration_ms", with = "millis")]
    pub max_chunk_duration: Duration,
}

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the safety margin ({margin:?}) leaves no time in the function timeout ({timeout:?}); \
         raise the timeout or lower the margin"
    )]
    NoTimeLeft { timeout: Duration, margin: Duration },
    #[error(
        "one round of checks can take {worst_case:?} but only {usable:?} is usable \
         (function timeout minus safety margin): the function could not finish even one round; \
         raise the function timeout or lower the check timeouts"
    )]
    RoundTooLong {
        usable: Duration,
        worst_case: Duration,
    },
    #[error("the worst-case check duration must be above zero")]
    ZeroWorstCase,
    #[error("the concurrency must be at least 1")]
    ZeroConcurrency,
}

/// Makes the plan: the fewest balanced chunks such that each finishes within
/// `function_timeout - safety_margin` and holds at most [`MAX_CHUNK_PROXIES`] proxies.
pub fn plan(input: &PlanInput) -> Result<Plan, PlanError> {
    if input.worst_case_check.is_zero() {
        return Err(PlanError::ZeroWorstCase);
    }
    if input.concurrency == 0 {
        return Err(PlanError::ZeroConcurrency);
    }
    let usable = input
        .function_timeout
        .checked_sub(input.safety_margin)
        .filter(|d| !d.is_zero())
        .ok_or(PlanError::NoTimeLeft {
            timeout: input.function_timeout,
            margin: input.safety_margin,
        })?;
    let rounds = usable.as_nanos() / input.worst_case_check.as_nanos();
    if rounds == 0 {
        return Err(PlanError::RoundTooLong {
            usable,
            worst_case: input.worst_case_check,
        });
    }
    if input.proxies == 0 {
        return Ok(Plan {
            chunk_size: 0,
            chunks: 0,
            rounds_per_chunk: 0,
            max_chunk_duration: Duration::ZERO,
        });
    }
    let rounds = usize::try_from(rounds).unwrap_or(usize::MAX);
    let capacity = rounds
        .saturating_mul(input.concurrency)
        .min(MAX_CHUNK_PROXIES);
    let chunks = input.proxies.div_ceil(capacity);
    let chunk_size = input.proxies.div_ceil(chunks);
    let rounds_per_chunk = chunk_size.div_ceil(input.concurrency);
    Ok(Plan {
        chunk_size,
        chunks,
        rounds_per_chunk,
        // rounds_per_chunk <= rounds, and rounds * worst_case <= usable: no overflow.
        max_chunk_duration: input.worst_case_check * rounds_per_chunk as u32,
    })
}

/// Cuts `items` into balanced chunks (sizes differ by at most one, order kept, nothing lost)
/// as the plan says. Given more items than planned for, it makes more chunks, none larger than
/// `chunk_size` (one item per chunk for a plan made for zero proxies).
pub fn split<T: Clone>(items: &[T], plan: &Plan) -> Vec<Vec<T>> {
    let count = chunk_count(items.len(), plan);
    balanced_ranges(items.len(), count)
        .map(|range| items[range].to_vec())
        .collect()
}

/// Like [`split`], then splits further any chunk whose JSON (`serde_json::to_vec` of the
/// `Vec<Proxy>`) is larger than `max_bytes`, as a chunk of long credentials can be. A single
/// proxy larger than `max_bytes` still gets a chunk of its own: nothing is dropped.
pub fn split_by_size(items: Vec<Proxy>, plan: &Plan, max_bytes: usize) -> Vec<Vec<Proxy>> {
    let sizes: Vec<usize> = items.iter().map(json_len).collect();
    let mut ranges = Vec::new();
    for range in balanced_ranges(items.len(), chunk_count(items.len(), plan)) {
        halve_until_fits(range, &sizes, max_bytes, &mut ranges);
    }
    let mut items = items.into_iter();
    ranges
        .into_iter()
        .map(|r| items.by_ref().take(r.len()).collect())
        .collect()
}

fn chunk_count(items: usize, plan: &Plan) -> usize {
    items
        .div_ceil(plan.chunk_size.max(1))
        .max(plan.chunks)
        .min(items)
}

/// `count` consecutive ranges covering `0..len`, the first `len % count` one longer.
fn balanced_ranges(len: usize, count: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    // No chunks (count 0) only happens with no items.
    let base = len.checked_div(count).unwrap_or(0);
    let longer = len.checked_rem(count).unwrap_or(0);
    (0..count).scan(0, move |start, i| {
        let size = base + usize::from(i < longer);
        let range = *start..*start + size;
        *start += size;
        Some(range)
    })
}

/// The JSON size of the array of the proxies in `range`: brackets, entries and commas.
fn array_len(range: &std::ops::Range<usize>, sizes: &[usize]) -> usize {
    2 + sizes[range.clone()].iter().sum::<usize>() + range.len().saturating_sub(1)
}

fn halve_until_fits(
    range: std::ops::Range<usize>,
    sizes: &[usize],
    max_bytes: usize,
    out: &mut Vec<std::ops::Range<usize>>,
) {
    if range.len() <= 1 || array_len(&range, sizes) <= max_bytes {
        out.push(range);
        return;
    }
    let middle = range.start + range.len() / 2;
    halve_until_fits(range.start..middle, sizes, max_bytes, out);
    halve_until_fits(middle..range.end, sizes, max_bytes, out);
}

fn json_len(p: &Proxy) -> usize {
    serde_json::to_vec(p)
        .expect("a proxy always serialises")
        .len()
}

/// Serde for a `Duration` as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{Credentials, Host, Port, Protocol};

    const SEC: Duration = Duration::from_secs(1);

    fn input(proxies: usize) -> PlanInput {
        PlanInput {
            proxies,
            function_timeout: 900 * SEC,
            safety_margin: 60 * SEC,
            worst_case_check: 40 * SEC,
            concurrency: 8,
        }
    }

    #[test]
    fn rounds_limit_chunk_size() {
        // 840 s usable / 40 s = 21 rounds of 8 = 168 proxies per chunk at most.
        let p = plan(&input(1000)).unwrap();
        assert_eq!(p.chunks, 6); // ceil(1000 / 168)
        assert_eq!(p.chunk_size, 167); // ceil(1000 / 6)
        assert_eq!(p.rounds_per_chunk, 21);
        assert_eq!(p.max_chunk_duration, 840 * SEC);
    }

    #[test]
    fn message_size_caps_chunk_size() {
        let p = plan(&PlanInput {
            concurrency: 1000,
            ..input(10_000)
        })
        .unwrap();
        assert!(p.chunk_size <= MAX_CHUNK_PROXIES);
        assert_eq!(p.chunks, 10_000usize.div_ceil(MAX_CHUNK_PROXIES));
        assert_eq!(p.rounds_per_chunk, 1);
        assert_eq!(p.max_chunk_duration, 40 * SEC);
    }

    #[test]
    fn small_job_is_one_chunk_of_few_rounds() {
        let p = plan(&input(20)).unwrap();
        assert_eq!((p.chunks, p.chunk_size, p.rounds_per_chunk), (1, 20, 3));
        assert_eq!(p.max_chunk_duration, 120 * SEC);
    }

    #[test]
    fn no_proxies_no_chunks() {
        let p = plan(&input(0)).unwrap();
        assert_eq!((p.chunks, p.chunk_size, p.rounds_per_chunk), (0, 0, 0));
        assert!(split::<u8>(&[], &p).is_empty());
    }

    #[test]
    fn impossible_inputs_are_errors() {
        let cases = [
            (
                PlanInput {
                    safety_margin: 900 * SEC,
                    ..input(1)
                },
                "leaves no time",
            ),
            (
                PlanInput {
                    safety_margin: 901 * SEC,
                    ..input(1)
                },
                "leaves no time",
            ),
            (
                PlanInput {
                    worst_case_check: 841 * SEC,
                    ..input(1)
                },
                "could not finish even one round",
            ),
            (
                PlanInput {
                    worst_case_check: Duration::ZERO,
                    ..input(1)
                },
                "above zero",
            ),
            (
                PlanInput {
                    concurrency: 0,
                    ..input(1)
                },
                "at least 1",
            ),
        ];
        for (i, want) in cases {
            let err = plan(&i).unwrap_err().to_string();
            assert!(err.contains(want), "{i:?}: {err}");
        }
        // Exactly one round fits: fine.
        assert!(
            plan(&PlanInput {
                worst_case_check: 840 * SEC,
                ..input(1)
            })
            .is_ok()
        );
    }

    #[test]
    fn plan_serialises_duration_as_millis() {
        let p = plan(&input(20)).unwrap();
        let v = serde_json::to_value(p).unwrap();
        assert_eq!(v["max_chunk_duration_ms"], 120_000);
        assert_eq!(serde_json::from_value::<Plan>(v).unwrap(), p);
    }

    #[test]
    fn split_is_balanced_and_keeps_order() {
        let items: Vec<usize> = (0..1000).collect();
        let p = plan(&input(1000)).unwrap();
        let chunks = split(&items, &p);
        assert_eq!(chunks.len(), p.chunks);
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [167, 167, 167, 167, 166, 166]);
        assert_eq!(chunks.concat(), items);
    }

    #[test]
    fn split_of_more_items_than_planned_respects_chunk_size() {
        let p = plan(&input(10)).unwrap();
        let items: Vec<u32> = (0..100).collect();
        let chunks = split(&items, &p);
        assert!(chunks.iter().all(|c| c.len() <= p.chunk_size));
        assert_eq!(chunks.concat(), items);
        let zero = plan(&input(0)).unwrap();
        assert_eq!(split(&items[..3], &zero).len(), 3);
    }

    fn proxy(i: usize, long_auth: bool) -> Proxy {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i as u32);
        let p =
            Proxy::new(Host::Ip(ip.into()), Port::new(8080).unwrap()).with_protocol(Protocol::Http);
        if long_auth {
            p.with_auth(Some(
                Credentials::new(&"u".repeat(255), &"\"".repeat(255)).unwrap(),
            ))
        } else {
            p
        }
    }

    #[test]
    fn longest_plain_entry_fits_max_entry_bytes() {
        let name = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        let longest = Proxy::new(name.parse().unwrap(), Port::new(65535).unwrap())
            .with_protocol(Protocol::Http)
            .with_protocol(Protocol::Https)
            .with_protocol(Protocol::Socks4)
            .with_protocol(Protocol::Socks5);
        // Plus one byte for the comma separating it from the next entry.
        assert!(
            json_len(&longest) < MAX_ENTRY_BYTES,
            "{}",
            json_len(&longest)
        );
        let worst = vec![longest; MAX_CHUNK_PROXIES];
        assert!(serde_json::to_vec(&worst).unwrap().len() <= CHUNK_BUDGET_BYTES);
    }

    #[test]
    fn split_by_size_splits_chunks_of_long_credentials() {
        let items: Vec<Proxy> = (0..300).map(|i| proxy(i, i % 3 == 0)).collect();
        let p = plan(&input(items.len())).unwrap();
        let max_bytes = 16 * 1024;
        let chunks = split_by_size(items.clone(), &p, max_bytes);
        assert!(chunks.len() > p.chunks, "{} chunks", chunks.len());
        for c in &chunks {
            assert!(serde_json::to_vec(c).unwrap().len() <= max_bytes);
            assert!(c.len() <= p.chunk_size);
        }
        assert_eq!(chunks.concat(), items);
    }

    #[test]
    fn split_by_size_leaves_small_chunks_alone() {
        let items: Vec<Proxy> = (0..1000).map(|i| proxy(i, false)).collect();
        let p = plan(&input(items.len())).unwrap();
        let by_size = split_by_size(items.clone(), &p, CHUNK_BUDGET_BYTES);
        assert_eq!(by_size, split(&items, &p));
        // One entry over the limit still goes out, alone.
        let huge = vec![proxy(0, true), proxy(1, false)];
        let chunks = split_by_size(huge.clone(), &plan(&input(2)).unwrap(), 100);
        assert_eq!(chunks, [vec![huge[0].clone()], vec![huge[1].clone()]]);
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
    fn every_plan_finishes_in_time_balances_and_loses_nothing() {
        let mut rng = Lcg(42);
        let mut planned = 0;
        for _ in 0..5000 {
            let i = PlanInput {
                proxies: rng.next(20_000) as usize,
                function_timeout: Duration::from_millis(1 + rng.next(900_000)),
                safety_margin: Duration::from_millis(rng.next(120_000)),
                worst_case_check: Duration::from_millis(1 + rng.next(120_000)),
                concurrency: 1 + rng.next(2048) as usize,
            };
            let Ok(p) = plan(&i) else { continue };
            planned += 1;
            let usable = i.function_timeout - i.safety_margin;
            assert!(p.max_chunk_duration <= usable, "{i:?} {p:?}");
            let items: Vec<usize> = (0..i.proxies).collect();
            let chunks = split(&items, &p);
            assert_eq!(chunks.len(), p.chunks, "{i:?}");
            assert_eq!(chunks.concat(), items, "{i:?}");
            if let (Some(max), Some(min)) = (
                chunks.iter().map(Vec::len).max(),
                chunks.iter().map(Vec::len).min(),
            ) {
                assert!(max - min <= 1 && min >= 1 && max == p.chunk_size, "{i:?}");
                assert!(max <= MAX_CHUNK_PROXIES);
                let rounds = max.div_ceil(i.concurrency) as u32;
                assert!(i.worst_case_check * rounds <= usable, "{i:?} {p:?}");
                assert_eq!(i.worst_case_check * rounds, p.max_chunk_duration);
            }
        }
        assert!(planned > 1000, "only {planned} inputs were plannable");
    }
}
