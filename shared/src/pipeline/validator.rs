//! The validator: check one chunk, store its results once, count it once.
//!
//! Each SQS record is handled on its own: a malformed or unknown message becomes a batch item
//! failure with a log line that says why (it goes back to the queue and, after the redrive limit,
//! to the dead-letter queue) and never fails the rest of the batch. Checks stop starting before
//! the invocation's deadline, leaving time to store and count. The invocation whose count
//! completes the job sends the aggregate message; a redelivery of a chunk that was counted but
//! whose aggregate message may have been lost sends it again (the aggregator is idempotent).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tokio::sync::Mutex;
use tracing::Instrument;

use crate::check::{CheckConfig, CheckError, Checker};
use crate::job::{
    AggregateMessage, CheckSpec, ChunkMessage, JobState, MESSAGE_VERSION, MessageError,
};
use crate::judge::JudgeConfig;
use crate::outcome::{Outcome, Tally};
use crate::pipeline::{LAMBDA_MAX_CONCURRENCY, Services, validator_margin};
use crate::plan::MAX_CHUNK_PROXIES;
use crate::proxy::Proxy;

/// A chunk that keeps running out of time is continued at most this many times; what is left
/// then is counted unchecked rather than passed on forever.
pub const MAX_CONTINUATIONS: usize = 8;
use crate::table::Counted;
use crate::target::TargetPolicy;

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("job {0} is unknown (never created, or expired from the table)")]
    UnknownJob(String),
    #[error("the chunk asks for private targets, which this deployment does not allow")]
    PrivateNotAllowed,
    #[error("bad check settings: {0}")]
    Settings(String),
    #[error("chunk holds {proxies} proxies, more than the {MAX_CHUNK_PROXIES} a chunk may hold")]
    Oversized { proxies: usize },
    #[error("checker could not start: {0}")]
    Checker(#[from] CheckError),
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
}

/// Checkers by settings, kept across invocations: each learns its own IP once per environment.
#[derive(Default)]
pub struct Checkers {
    by_spec: Mutex<HashMap<CheckSpec, Checker>>,
}

impl ChunkError {
    /// Errors that no retry can fix: the message goes to the dead-letter queue at once.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ChunkError::Message(_)
                | ChunkError::UnknownJob(_)
                | ChunkError::PrivateNotAllowed
                | ChunkError::Settings(_)
                | ChunkError::Oversized { .. }
        )
    }
}

impl Checkers {
    async fn get(&self, spec: &CheckSpec) -> Result<Checker, ChunkError> {
        let mut map = self.by_spec.lock().await;
        if let Some(c) = map.get(spec) {
            return Ok(c.clone());
        }
        let checker = Checker::new(check_config(spec)?).await?;
        map.insert(spec.clone(), checker.clone());
        Ok(checker)
    }
}

/// The engine's configuration for a chunk's settings. A private judge's CA travels as PEM and
/// is written to a temporary file for the TLS loader.
pub fn check_config(spec: &CheckSpec) -> Result<CheckConfig, ChunkError> {
    let url = |s: &str| url::Url::parse(s).map_err(|e| ChunkError::Settings(format!("{s}: {e}")));
    let ca_file = match &spec.judge_ca_pem {
        None => None,
        Some(pem) => {
            let path = std::env::temp_dir().join(format!(
                "proxyharvest-judge-ca-{:016x}.pem",
                fxhash(pem.as_bytes())
            ));
            if std::fs::read_to_string(&path).ok().as_deref() != Some(pem.as_str()) {
                // Written aside and renamed: environments share /tmp, and a reader must never see
                // a half-written file.
                let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
                std::fs::write(&tmp, pem)
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .map_err(|e| {
                        ChunkError::Settings(format!("writing {}: {e}", path.display()))
                    })?;
            }
            Some(path)
        }
    };
    let mut cfg = CheckConfig::new(JudgeConfig {
        http: url(&spec.judge)?,
        https: spec.judge_https.as_deref().map(url).transpose()?,
        ca_file,
    });
    cfg.timeout = Duration::from_millis(spec.timeout_ms);
    cfg.connect_timeout = Duration::from_millis(spec.connect_timeout_ms);
    cfg.max_response_bytes = spec.max_response_bytes;
    cfg.concurrency = spec.concurrency.min(LAMBDA_MAX_CONCURRENCY);
    cfg.policy = TargetPolicy {
        allow_private: spec.allow_private,
    };
    Ok(cfg)
}

fn fxhash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Handles a batch; returns the ids of the records that failed.
pub async fn handle(
    services: &Services,
    checkers: &Checkers,
    event: SqsEvent,
    deadline: SystemTime,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or("");
        let Err(e) = process(services, checkers, body, deadline).await else {
            continue;
        };
        if e.is_permanent()
            && let Some(dlq) = &services.chunk_dlq
        {
            match dlq.send(body).await {
                Ok(()) => {
                    tracing::error!(message_id = %id, error = %e, "chunk message rejected; moved to the dead-letter queue");
                    continue;
                }
                Err(dlq_err) => {
                    tracing::error!(message_id = %id, error = %e, %dlq_err, "chunk message rejected, and the dead-letter queue refused it; leaving it for redrive");
                }
            }
        } else {
            tracing::error!(message_id = %id, error = %e, "chunk message failed; it will be retried, then dead-lettered");
        }
        response.add_failure(id);
    }
    response
}

/// Checks, stores and counts one chunk.
pub async fn process(
    services: &Services,
    checkers: &Checkers,
    body: &str,
    deadline: SystemTime,
) -> Result<(), ChunkError> {
    let msg = ChunkMessage::parse(body)?;
    let span = tracing::info_span!("chunk", job_id = %msg.job_id, chunk_id = %msg.chunk_id);
    process_chunk(services, checkers, msg, deadline)
        .instrument(span)
        .await
}

/// [`process`] for a parsed message, inside its job and chunk span, so that every log line
/// carries both ids.
async fn process_chunk(
    services: &Services,
    checkers: &Checkers,
    msg: ChunkMessage,
    deadline: SystemTime,
) -> Result<(), ChunkError> {
    let job = &msg.job_id;

    let Some((rec, counted)) = services.table.chunk_status(job, &msg.chunk_id).await? else {
        return Err(ChunkError::UnknownJob(job.to_string()));
    };
    if counted {
        tracing::info!("chunk was counted before (redelivery)");
        if rec.chunks_done >= rec.chunks_total
            && matches!(rec.state, JobState::Checking | JobState::Aggregating)
        {
            fire_aggregator(services, &msg).await?;
        }
        return Ok(());
    }
    if rec.state != JobState::Checking {
        tracing::warn!(state = %rec.state, "job is not checking; chunk dropped");
        return Ok(());
    }
    if msg.check.allow_private && !services.deployment.allow_private {
        return Err(ChunkError::PrivateNotAllowed);
    }

    if msg.proxies.len() > MAX_CHUNK_PROXIES {
        return Err(ChunkError::Oversized {
            proxies: msg.proxies.len(),
        });
    }

    let checker = checkers.get(&msg.check).await?;
    let margin = validator_margin(services.deployment.validator_timeout);
    let stop_at = stop_at(
        deadline,
        SystemTime::now(),
        Duration::from_millis(msg.check.timeout_ms),
        margin,
    );
    let started = std::time::Instant::now();
    let total = msg.proxies.len();
    let results = checker
        .check_all(msg.proxies.clone(), Some(stop_at), |_| {})
        .await;
    // From here on, work from what is stored: a redelivery racing this one must agree on which
    // proxies were checked and which go on to the continuation.
    let stored = services
        .table
        .store_results(job, &msg.chunk_id, &results)
        .await?;
    let mut tally: Tally = stored.iter().map(|r| &r.outcome).collect();
    let remainder: Vec<Proxy> = stored
        .iter()
        .filter(|r| r.outcome == Outcome::Unchecked)
        .map(|r| r.proxy.clone())
        .collect();
    let continued = !remainder.is_empty() && continuation_depth(&msg.chunk_id) < MAX_CONTINUATIONS;
    if continued {
        let next = format!("{}.1", msg.chunk_id);
        // The total goes up before this chunk is counted: the job can never look complete while
        // the continuation is still queued.
        services.table.add_continuation(job, &next).await?;
        let body = serde_json::to_string(&ChunkMessage {
            v: MESSAGE_VERSION,
            job_id: job.clone(),
            chunk_id: next.clone(),
            check: msg.check.clone(),
            proxies: remainder.clone(),
        })
        .expect("serializes");
        services.chunks.send(&body).await?;
        tally.unchecked -= remainder.len() as u64;
        tracing::info!(continuation = %next, proxies = remainder.len(), "deadline near: the rest goes on in a continuation chunk");
    }
    let latencies: Vec<u32> = stored
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Alive(a) => Some(a.latency_ms),
            _ => None,
        })
        .collect();
    crate::metrics::Record::for_function("validator")
        .count("ProxiesChecked", tally.live + tally.dead)
        .count("ProxiesLive", tally.live)
        .count("ContinuationChunks", u64::from(continued))
        .millis("ChunkDuration", started.elapsed().as_millis() as u64)
        .millis_each("CheckLatency", &latencies)
        .property("job_id", job.as_str())
        .property("chunk_id", msg.chunk_id.as_str())
        .emit();
    tracing::info!(
        proxies = total,
        live = tally.live,
        dead = tally.dead,
        unchecked = tally.unchecked,
        rejected = tally.rejected,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "chunk checked"
    );
    match services
        .table
        .count_chunk(job, &msg.chunk_id, &tally, false)
        .await?
    {
        Counted::Now { complete: true } | Counted::Before { complete: true } => {
            fire_aggregator(services, &msg).await?;
        }
        Counted::Now { complete: false } | Counted::Before { complete: false } => {}
    }
    Ok(())
}

async fn fire_aggregator(services: &Services, msg: &ChunkMessage) -> Result<(), ChunkError> {
    let body = serde_json::to_string(&AggregateMessage {
        v: MESSAGE_VERSION,
        job_id: msg.job_id.clone(),
    })
    .expect("serializes");
    services.aggregate.send(&body).await?;
    tracing::info!("last chunk counted; aggregator fired");
    Ok(())
}

/// When to stop starting checks: every check started before then ends (within `worst_case`)
/// with `margin` left to store, continue and count before the deadline.
pub fn stop_at(
    deadline: SystemTime,
    now: SystemTime,
    worst_case: Duration,
    margin: Duration,
) -> tokio::time::Instant {
    let left = deadline.duration_since(now).unwrap_or(Duration::ZERO);
    let budget = left.saturating_sub(margin + worst_case);
    tokio::time::Instant::now() + budget
}

/// How many continuations deep a chunk is (`c00003.1.1` is 2 deep).
pub fn continuation_depth(chunk_id: &str) -> usize {
    chunk_id.matches('.').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_are_bounded_by_depth() {
        assert_eq!(continuation_depth("c00003"), 0);
        assert_eq!(continuation_depth("c00003.1.1"), 2);
    }

    #[test]
    fn stop_at_leaves_room_for_the_last_check_and_the_bookkeeping() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let before = tokio::time::Instant::now();
        let margin = Duration::from_secs(15);
        let t = stop_at(
            now + Duration::from_secs(120),
            now,
            Duration::from_secs(10),
            margin,
        );
        let budget = t - before;
        assert!(budget <= Duration::from_secs(95) + Duration::from_millis(50));
        assert!(budget >= Duration::from_secs(94));
        // A deadline already too close: stop at once.
        let t = stop_at(
            now + Duration::from_secs(5),
            now,
            Duration::from_secs(10),
            margin,
        );
        assert!(t - tokio::time::Instant::now() < Duration::from_millis(50));
    }
}
