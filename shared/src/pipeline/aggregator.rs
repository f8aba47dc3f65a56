//! The aggregator: merge a finished job into the published list, once.
//!
//! `checking` -> `aggregating` is a conditional update, so a second aggregate message for a job
//! that is already final is a no-op; a message for a job left in `aggregating` (its aggregator
//! died) finishes it. The merge itself is idempotent and the write conditional, so a rerun or a
//! concurrent job loses nothing.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tracing::Instrument;

use crate::geo::GeoDb;
use crate::job::{AggregateMessage, JobState, MessageError};
use crate::list::CheckParams;
use crate::pipeline::Services;
use crate::table::Aggregation;

#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Geo(#[from] crate::geo::GeoError),
}

/// How long unchecked entries stay listed: the deployment's configuration (file defaults laid
/// under `PROXYHARVEST_LIST_MAX_AGE_HOURS` and the other variables).
pub fn max_age_from_config() -> Result<Duration, crate::config::ConfigError> {
    let mut cfg = crate::config::load(None)?;
    cfg.apply_env(std::env::vars())?;
    Ok(cfg.list.max_age)
}

/// The deployment's geolocation databases (`PROXYHARVEST_GEO_COUNTRY_DB`, `_ASN_DB`), loaded
/// once at start-up and given to the publisher with [`crate::publish::Publisher::with_geo`];
/// `None` when none is configured.
/// An `s3://` database is read with `s3`, or a client from the standard AWS configuration.
pub async fn geo_from_config(
    s3: Option<&aws_sdk_s3::Client>,
) -> Result<Option<Arc<GeoDb>>, AggregateError> {
    let mut cfg = crate::config::load(None)?;
    cfg.apply_env(std::env::vars())?;
    Ok(crate::geo::load(&cfg.geo, s3).await?.map(Arc::new))
}

/// Handles a batch; returns the ids of the records that failed.
pub async fn handle(services: &Services, max_age: Duration, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or("");
        if let Err(e) = process(services, max_age, body).await {
            tracing::error!(message_id = %id, error = %e, "aggregate message failed; it will be retried");
            response.add_failure(id);
        }
    }
    response
}

pub async fn process(
    services: &Services,
    max_age: Duration,
    body: &str,
) -> Result<(), AggregateError> {
    let msg = AggregateMessage::parse(body)?;
    let span = tracing::info_span!("aggregate", job_id = %msg.job_id);
    aggregate(services, max_age, &msg.job_id)
        .instrument(span)
        .await
}

/// Merges and finishes one job, inside its span.
async fn aggregate(
    services: &Services,
    max_age: Duration,
    job: &crate::job::JobId,
) -> Result<(), AggregateError> {
    let rec = match services.table.begin_aggregation(job).await? {
        Aggregation::Go(rec) => rec,
        Aggregation::Final(rec) => {
            tracing::info!(state = %rec.state, "job already final; nothing to do");
            return Ok(());
        }
        Aggregation::NotReady(rec) => {
            tracing::warn!(state = %rec.state, done = rec.chunks_done, total = rec.chunks_total, "aggregate message for a job that is not ready; ignored");
            return Ok(());
        }
    };
    let results = services.table.load_results(job).await?;
    let params = rec.check.clone().unwrap_or_else(|| CheckParams {
        judge: String::new(),
        timeout_ms: 0,
        connect_timeout_ms: 0,
    });
    let list = services
        .publisher
        .publish(&results, &params, Some(job.as_str()), max_age)
        .await?;
    let end = if rec.expiring {
        JobState::Expired
    } else if rec.chunks_failed > 0 {
        JobState::CompletePartial
    } else {
        JobState::Complete
    };
    // The report first: once the job is final, its report is there to read.
    let mut report = *rec.clone();
    report.state = end;
    report.list_total = Some(list.counts.total);
    let key = format!("{}{job}.json", services.deployment.report_prefix);
    services
        .publisher
        .bucket()
        .put(
            &key,
            serde_json::to_vec_pretty(&report).expect("serializes"),
            "application/json",
        )
        .await
        .map_err(crate::publish::PublishError::from)?;
    services.table.finish(job, end, list.counts.total).await?;
    let scheduled = job.as_str().starts_with("sched-");
    crate::metrics::Record::for_function("aggregator")
        .count("JobsFinished", 1)
        .count(
            "ScheduledJobsCompleted",
            u64::from(scheduled && end != JobState::Expired),
        )
        .count("JobsExpired", u64::from(end == JobState::Expired))
        .count("ListedProxies", list.counts.total)
        .property("job_id", job.as_str())
        .property("state", end.as_str())
        .emit();
    tracing::info!(results = results.len(), listed = list.counts.total, state = %end, "job finished");
    Ok(())
}
