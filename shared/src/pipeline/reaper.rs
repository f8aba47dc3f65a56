//! The reaper: every job ends.
//!
//! Two duties, one function:
//! - on the chunk dead-letter queue: a chunk message that exhausted its retries (or was rejected
//!   at once) is recorded as a failed chunk — its proxies counted unchecked — and counted towards
//!   completion, so the job ends `complete_partial` instead of hanging. A message no job can
//!   claim (malformed, another version, unknown job) is moved to the poison queue, where it is
//!   kept for inspection.
//! - on a schedule: the sweep finds jobs that stopped making progress past their planned
//!   deadline and ends them `expired` (what they had is still merged), and re-fires the
//!   aggregator for jobs left in `aggregating`.

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use serde::Serialize;
use serde_json::Value;

use crate::job::{AggregateMessage, ChunkMessage, JobId, JobState, MESSAGE_VERSION};
use crate::outcome::{CheckResult, Outcome, Tally};
use crate::pipeline::Services;
use crate::table::Counted;

pub use crate::table::SWEEP_WINDOW;

#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error("no poison queue is configured (CHUNK_POISON_QUEUE_URL)")]
    NoPoisonQueue,
    #[error("unrecognised event: neither an SQS batch nor a scheduled event")]
    UnknownEvent,
}

impl From<ReaperError> for lambda_runtime::Diagnostic {
    fn from(e: ReaperError) -> Self {
        crate::pipeline::diagnostic("Reaper", &e)
    }
}

/// What one sweep did.
#[derive(Debug, Default, Serialize)]
pub struct SweepReport {
    pub looked_at: usize,
    pub expired: Vec<JobId>,
    pub refired: Vec<JobId>,
}

/// Dispatches on the event: an SQS batch from the dead-letter queue, or the sweep schedule.
pub async fn handle(services: &Services, event: Value) -> Result<Value, ReaperError> {
    if event.get("Records").is_some() {
        let batch: SqsEvent =
            serde_json::from_value(event).map_err(|_| ReaperError::UnknownEvent)?;
        let response = dead_letters(services, batch).await;
        return Ok(serde_json::to_value(response).expect("serializes"));
    }
    if event.get("source").and_then(Value::as_str) == Some("aws.events") {
        let report = sweep(services, SystemTime::now()).await?;
        return Ok(serde_json::to_value(report).expect("serializes"));
    }
    Err(ReaperError::UnknownEvent)
}

/// Handles a batch from the chunk dead-letter queue.
pub async fn dead_letters(services: &Services, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or("");
        if let Err(e) = dead_letter(services, body).await {
            tracing::error!(message_id = %id, error = %e, "dead letter not handled; will retry");
            response.add_failure(id);
        }
    }
    response
}

/// Records one dead-lettered chunk as failed, or moves an unclaimable message to the poison queue.
pub async fn dead_letter(services: &Services, body: &str) -> Result<(), ReaperError> {
    let msg = match ChunkMessage::parse(body) {
        Ok(msg) => msg,
        Err(e) => return poison(services, body, &e.to_string()).await,
    };
    let job = &msg.job_id;
    let Some((rec, counted)) = services.table.chunk_status(job, &msg.chunk_id).await? else {
        return poison(services, body, &format!("job {job} is unknown")).await;
    };
    if counted {
        tracing::info!(job_id = %job, chunk_id = %msg.chunk_id, "dead letter for a chunk counted before; nothing to record");
        return Ok(());
    }
    if rec.state != JobState::Checking {
        tracing::warn!(job_id = %job, chunk_id = %msg.chunk_id, state = %rec.state, "dead letter for a job that is no longer checking; dropped");
        return Ok(());
    }
    let now = SystemTime::now();
    let unchecked: Vec<CheckResult> = msg
        .proxies
        .iter()
        .map(|p| CheckResult {
            proxy: p.clone(),
            outcome: Outcome::Unchecked,
            checked_at: now,
        })
        .collect();
    // If a validator stored results before it died, those are what count.
    let stored = services
        .table
        .store_results(job, &msg.chunk_id, &unchecked)
        .await?;
    let tally: Tally = stored.iter().map(|r| &r.outcome).collect();
    let counted = services
        .table
        .count_chunk(job, &msg.chunk_id, &tally, true)
        .await?;
    tracing::warn!(job_id = %job, chunk_id = %msg.chunk_id, unchecked = tally.unchecked, "chunk recorded as failed");
    crate::metrics::Record::for_function("reaper")
        .count("DeadLetterArrivals", 1)
        .property("job_id", job.as_str())
        .property("chunk_id", msg.chunk_id.as_str())
        .emit();
    if matches!(
        counted,
        Counted::Now { complete: true } | Counted::Before { complete: true }
    ) {
        fire_aggregator(services, job).await?;
    }
    Ok(())
}

async fn poison(services: &Services, body: &str, reason: &str) -> Result<(), ReaperError> {
    let queue = services
        .chunk_poison
        .as_ref()
        .ok_or(ReaperError::NoPoisonQueue)?;
    queue.send(body).await?;
    tracing::error!(
        reason,
        "message no job can claim; moved to the poison queue"
    );
    crate::metrics::Record::for_function("reaper")
        .count("DeadLetterArrivals", 1)
        .count("PoisonMessages", 1)
        .property("reason", reason)
        .emit();
    Ok(())
}

async fn fire_aggregator(services: &Services, job: &JobId) -> Result<(), ReaperError> {
    let body = serde_json::to_string(&AggregateMessage {
        v: MESSAGE_VERSION,
        job_id: job.clone(),
    })
    .expect("serializes");
    services.aggregate.send(&body).await?;
    Ok(())
}

/// Ends jobs that stopped making progress past their deadline.
pub async fn sweep(services: &Services, now: SystemTime) -> Result<SweepReport, ReaperError> {
    let mut report = SweepReport::default();
    let since = now
        .checked_sub(SWEEP_WINDOW)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    for job in services.table.recent_jobs(since, 500).await? {
        let Some(rec) = services.table.get_job(&job).await? else {
            continue;
        };
        report.looked_at += 1;
        let stall = services.deployment.stall;
        if rec.state.is_final() || !stalled(rec.deadline_at, rec.updated_at, now, stall) {
            continue;
        }
        match rec.state {
            JobState::Planned | JobState::Checking if services.table.begin_expiry(&rec).await? => {
                tracing::warn!(job_id = %job, state = %rec.state, done = rec.chunks_done, total = rec.chunks_total, "job stalled past its deadline; expiring it");
                fire_aggregator(services, &job).await?;
                report.expired.push(job);
            }
            JobState::Aggregating => {
                tracing::warn!(job_id = %job, "job stuck aggregating; firing the aggregator again");
                fire_aggregator(services, &job).await?;
                report.refired.push(job);
            }
            _ => {}
        }
    }
    Ok(report)
}

/// Past its deadline and without progress for `stall`.
pub fn stalled(
    deadline_at: SystemTime,
    updated_at: SystemTime,
    now: SystemTime,
    stall: Duration,
) -> bool {
    now > deadline_at
        && now
            .duration_since(updated_at)
            .is_ok_and(|quiet| quiet >= stall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jobs_past_deadline_and_quiet_are_stalled() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let stall = Duration::from_secs(120);
        assert!(stalled(t(1000), t(900), t(1100), stall));
        assert!(
            !stalled(t(1000), t(1050), t(1100), stall),
            "recent progress"
        );
        assert!(
            !stalled(t(2000), t(900), t(1100), stall),
            "before the deadline"
        );
    }
}
