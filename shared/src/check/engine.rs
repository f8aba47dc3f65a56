//! The checker: one proxy at a time ([`Checker::check`]) or many at once ([`Checker::check_all`]).
//!
//! A check resolves the proxy's address under the target policy (a forbidden address is rejected
//! before any connection), then runs attempts in the order [`Strategy`] picks, each on a fresh
//! connection, all under one deadline: `timeout` after the check started. An attempt cut off by
//! the deadline fails as `Timeout`, and what already worked is kept. Many checks run as tasks in
//! a `JoinSet`, at most `concurrency` at once; results come back in input order, one per input.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::conn::AttemptError;
use super::limits::effective_concurrency;
use super::probe::{Prober, Success};
use super::strategy::Strategy;
use super::{CheckConfig, CheckError};
use crate::outcome::{Alive, CheckResult, FailureReason, Outcome};
use crate::proxy::{ProtocolSet, Proxy};
use crate::target;

/// Checks proxies against the judge. Cloning is cheap: clones share one configuration.
#[derive(Debug, Clone)]
pub struct Checker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: CheckConfig,
    prober: Prober,
    concurrency: usize,
}

impl Checker {
    /// Builds the TLS configuration and learns the checker's own public IP by asking the judge
    /// directly once (it is what "transparent" is graded against).
    pub async fn new(config: CheckConfig) -> Result<Checker, CheckError> {
        let prober = Prober::new(&config).await?;
        let concurrency = effective_concurrency(config.concurrency);
        Ok(Checker {
            inner: Arc::new(Inner {
                config,
                prober,
                concurrency,
            }),
        })
    }

    /// The checker's own address as the judge saw it (always known once [`Checker::new`] succeeded).
    pub fn own_ip(&self) -> Option<IpAddr> {
        self.inner.prober.own_ip()
    }

    /// How many checks [`Checker::check_all`] runs at once: the configured number, capped by the
    /// open-file limit.
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    pub fn config(&self) -> &CheckConfig {
        &self.inner.config
    }

    /// Checks one proxy; never takes much longer than [`CheckConfig::worst_case`].
    pub async fn check(&self, proxy: &Proxy) -> CheckResult {
        let deadline = Instant::now() + self.inner.config.timeout;
        let outcome = self.outcome(proxy, deadline).await;
        CheckResult {
            proxy: proxy.clone(),
            outcome,
            checked_at: SystemTime::now(),
        }
    }

    async fn outcome(&self, proxy: &Proxy, deadline: Instant) -> Outcome {
        let Inner { config, prober, .. } = &*self.inner;
        let endpoint = &proxy.endpoint;
        let resolved = tokio::time::timeout_at(
            deadline,
            target::resolve(&endpoint.host, endpoint.port, config.policy),
        )
        .await;
        let addr = match resolved {
            Err(_) => {
                return Outcome::Dead {
                    reason: FailureReason::Timeout,
                };
            }
            Ok(Err(reason)) => return Outcome::Rejected { reason },
            Ok(Ok(addr)) => addr,
        };
        let mut strategy = Strategy::new(proxy.protocols, prober.testable());
        let mut best: Option<Success> = None;
        while let Some(protocol) = strategy.next() {
            let attempt = prober.attempt(addr, proxy.auth.as_ref(), protocol);
            let result = match Box::pin(tokio::time::timeout_at(deadline, attempt)).await {
                Ok(result) => result,
                Err(_) => Err(AttemptError::new(
                    FailureReason::Timeout,
                    "check",
                    format_args!("no verdict within {:?}", config.timeout),
                )),
            };
            match result {
                Ok(success) => {
                    tracing::debug!(%proxy, %protocol, ms = success.timings.total_ms, "attempt worked");
                    strategy.record(protocol, Ok(()));
                    best = Some(match best {
                        None => success,
                        Some(b) => combine(b, success),
                    });
                }
                Err(e) => {
                    tracing::debug!(%proxy, %protocol, error = %e, "attempt failed");
                    strategy.record(protocol, Err(e.reason));
                }
            }
        }
        match (strategy.verdict(), best) {
            (Ok(protocols), Some(best)) => Outcome::Alive(alive(protocols, best)),
            (Err(reason), _) => Outcome::Dead { reason },
            // A verdict of "worked" always comes with a success; keep the types honest anyway.
            (Ok(_), None) => Outcome::Dead {
                reason: FailureReason::Io,
            },
        }
    }

    /// Checks all `proxies`, `concurrency` at a time, and returns exactly one result per input, in
    /// input order. Once `stop_at` has passed no further check is started: those proxies come
    /// back `Unchecked` (checks already running finish, within [`CheckConfig::worst_case`]).
    /// `on_result` is called once per result, from the calling task: as each check finishes, then
    /// for every unchecked proxy at the end.
    pub async fn check_all(
        &self,
        proxies: Vec<Proxy>,
        stop_at: Option<Instant>,
        mut on_result: impl FnMut(&CheckResult),
    ) -> Vec<CheckResult> {
        let mut results: Vec<Option<CheckResult>> = vec![None; proxies.len()];
        let mut pending = proxies.into_iter().enumerate();
        let mut running = JoinSet::new();
        let mut stopped = false;
        loop {
            while !stopped && running.len() < self.inner.concurrency {
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    stopped = true;
                    break;
                }
                let Some((i, proxy)) = pending.next() else {
                    break;
                };
                let checker = self.clone();
                running.spawn(async move { (i, checker.check(&proxy).await) });
            }
            match running.join_next().await {
                Some(Ok((i, result))) => {
                    on_result(&result);
                    results[i] = Some(result);
                }
                // A panicking check is a bug: surface it rather than publish a made-up verdict.
                Some(Err(e)) => match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(e) => unreachable!("check tasks are never cancelled: {e}"),
                },
                None => break,
            }
        }
        let now = SystemTime::now();
        for (i, proxy) in pending {
            let result = CheckResult {
                proxy,
                outcome: Outcome::Unchecked,
                checked_at: now,
            };
            on_result(&result);
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.expect("every input is either checked or left unchecked"))
            .collect()
    }
}

/// Keeps the faster attempt's timings and exit address, and the lower anonymity of the two: a
/// proxy that leaks the client's address in plain HTTP is transparent even if its CONNECT tunnel
/// (where it cannot add headers) looks elite.
fn combine(a: Success, b: Success) -> Success {
    let anonymity = a.anonymity.min(b.anonymity);
    let fastest = if b.timings.total_ms < a.timings.total_ms {
        b
    } else {
        a
    };
    Success {
        anonymity,
        ..fastest
    }
}

fn alive(protocols: ProtocolSet, best: Success) -> Alive {
    Alive {
        protocols,
        latency_ms: best.timings.total_ms,
        timings: best.timings,
        exit_ip: best.exit_ip,
        anonymity: best.anonymity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Anonymity, Timings};

    fn success(total_ms: u32, anonymity: Anonymity, exit: &str) -> Success {
        Success {
            timings: Timings {
                total_ms,
                ..Timings::default()
            },
            exit_ip: exit.parse().unwrap(),
            anonymity,
        }
    }

    #[test]
    fn combined_attempts_keep_the_fastest_and_the_least_anonymous() {
        let http = success(80, Anonymity::Transparent, "1.1.1.1");
        let https = success(20, Anonymity::Elite, "2.2.2.2");
        let c = combine(http, https);
        assert_eq!(c.timings.total_ms, 20);
        assert_eq!(c.exit_ip, "2.2.2.2".parse::<IpAddr>().unwrap());
        assert_eq!(c.anonymity, Anonymity::Transparent);
        assert_eq!(combine(https, http), c);
    }
}
