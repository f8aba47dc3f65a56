//! The trigger: start a job.
//!
//! Invoked by the schedule (an EventBridge "Scheduled Event") or by hand with a [`RunRequest`].
//! A scheduled slot names its job deterministically and a manual caller names its own, so an
//! event delivered twice or an invocation retried after a timeout finds the job it already
//! started instead of starting another. The job's chunk total is recorded before the first chunk
//! is sent, so no validator can ever see a job that looks complete while chunks are still queued.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;

use crate::config::Config;
use crate::job::{AggregateMessage, ChunkMessage, JobId, JobRecord, JobState, MESSAGE_VERSION};
use crate::pipeline::{LAMBDA_MAX_CONCURRENCY, Services, validator_margin};
use crate::plan::{self, CHUNK_BUDGET_BYTES, Plan, PlanInput};
use crate::proxy::{self, Proxy};
use crate::source::{self, SourceReport};
use crate::table::{Checking, Created};

/// Overrides a person (or `proxyharvest run`) may pass when starting a job by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The job's id, chosen by the caller so that a retried invocation names the same job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// A whole configuration (TOML) to use instead of the deployment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_toml: Option<String>,
    /// Sources to use instead of the configured ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_https: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_ca_pem: Option<String>,
    /// Ask to check private addresses; granted only where the deployment allows it.
    #[serde(default)]
    pub allow_private: bool,
}

/// What started the trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerEvent {
    Scheduled { slot: SystemTime },
    Run(Box<RunRequest>),
}

impl TriggerEvent {
    pub fn parse(v: Value) -> Result<TriggerEvent, TriggerError> {
        if v.get("source").and_then(Value::as_str) == Some("aws.events") {
            let time = v
                .get("time")
                .and_then(Value::as_str)
                .ok_or_else(|| TriggerError::BadEvent("scheduled event without time".into()))?;
            let slot = humantime::parse_rfc3339_weak(time.trim_end_matches('Z')).map_err(|e| {
                TriggerError::BadEvent(format!("scheduled event time {time:?}: {e}"))
            })?;
            return Ok(TriggerEvent::Scheduled { slot });
        }
        let req: RunRequest = serde_json::from_value(v)
            .map_err(|e| TriggerError::BadEvent(format!("not a run request: {e}")))?;
        Ok(TriggerEvent::Run(Box::new(req)))
    }
}

/// What the trigger returns (and `proxyharvest run` prints).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerResponse {
    pub job_id: JobId,
    /// False when the job existed already (a duplicate event or a retried invocation).
    pub created: bool,
    pub state: JobState,
    pub scraped: u64,
    pub chunks: u64,
    pub plan: Option<Plan>,
    /// Epoch seconds by which the job should be over.
    pub deadline_at: u64,
    pub sources: Vec<SourceReport>,
    /// The chunk plan priced, per run and per month at the schedule (see [`crate::cost`]);
    /// absent when the schedule cannot be priced (a cron expression).
    #[serde(default)]
    pub estimate: Option<Value>,
    /// Where the job and its list live, so a caller needs no other configuration.
    pub table: String,
    pub bucket: String,
    pub list_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("bad trigger event: {0}")]
    BadEvent(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("this deployment does not allow private targets (ALLOW_PRIVATE_TARGETS is not true)")]
    PrivateNotAllowed,
    #[error("planning failed: {0}")]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    #[error("job {job}: chunks could not be queued: {source}")]
    Queue {
        job: JobId,
        source: crate::queue::QueueError,
    },
}

impl From<TriggerError> for lambda_runtime::Diagnostic {
    fn from(e: TriggerError) -> Self {
        let kind = match &e {
            TriggerError::BadEvent(_) => "BadEvent",
            TriggerError::Config(_) | TriggerError::PrivateNotAllowed => "Config",
            TriggerError::Plan(_) => "Plan",
            TriggerError::Table(_) => "Table",
            TriggerError::Publish(_) => "Publish",
            TriggerError::Queue { .. } => "Queue",
        };
        crate::pipeline::diagnostic(kind, &e)
    }
}

/// The configuration a job runs with: the request's, or the deployment's (the file at
/// `CONFIG_KEY` in the bucket, else the built-in default), then the environment, then the
/// request's overrides.
pub fn job_config(
    req: &RunRequest,
    deployed: Option<&str>,
    allow_private_here: bool,
) -> Result<Config, TriggerError> {
    let mut cfg = match (&req.config_toml, deployed) {
        (Some(text), _) => crate::config::from_str(text, "the run request's config"),
        (None, Some(text)) => crate::config::from_str(text, "the deployment's config"),
        (None, None) => crate::config::load(None),
    }
    .map_err(|e| TriggerError::Config(e.to_string()))?;
    cfg.apply_env(std::env::vars())
        .map_err(|e| TriggerError::Config(e.to_string()))?;
    apply_overrides(&mut cfg, req)?;
    if cfg.check.allow_private && !allow_private_here {
        return Err(TriggerError::PrivateNotAllowed);
    }
    Ok(cfg)
}

/// Lays a run request's overrides over the configuration.
fn apply_overrides(cfg: &mut Config, req: &RunRequest) -> Result<(), TriggerError> {
    let url = |s: &str| -> Result<url::Url, TriggerError> {
        s.parse()
            .map_err(|e| TriggerError::Config(format!("{s:?}: {e}")))
    };
    if !req.sources.is_empty() {
        cfg.sources = req
            .sources
            .iter()
            .map(|s| crate::config::SourceSpec {
                location: s.clone(),
                default_protocol: None,
                headers: Vec::new(),
            })
            .collect();
    }
    if let Some(j) = &req.judge {
        cfg.check.judge = url(j)?;
    }
    if let Some(j) = &req.judge_https {
        cfg.check.judge_https = Some(url(j)?);
    }
    if let Some(pem) = &req.judge_ca_pem {
        // One file per invocation: concurrent invocations must not read each other's half-writes.
        let path = std::env::temp_dir().join(format!(
            "proxyharvest-run-judge-ca-{}-{:08x}.pem",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&path, pem)
            .map_err(|e| TriggerError::Config(format!("writing {}: {e}", path.display())))?;
        cfg.check.judge_ca = Some(path);
    }
    if req.allow_private {
        cfg.check.allow_private = true;
    }
    Ok(())
}

/// Starts (or finds) a job.
pub async fn handle(services: &Services, event: Value) -> Result<TriggerResponse, TriggerError> {
    let now = SystemTime::now();
    let (job_id, req) = match TriggerEvent::parse(event)? {
        TriggerEvent::Scheduled { slot } => (JobId::for_slot(slot), RunRequest::default()),
        TriggerEvent::Run(req) => (
            req.job_id.clone().unwrap_or_else(|| JobId::random(now)),
            *req,
        ),
    };
    let d = &services.deployment;
    let deployed =
        match (&req.config_toml, &d.config_key) {
            (None, Some(key)) => {
                let obj = services
                    .publisher
                    .bucket()
                    .get(key)
                    .await
                    .map_err(|e| TriggerError::Config(e.to_string()))?
                    .ok_or_else(|| {
                        TriggerError::Config(format!(
                            "CONFIG_KEY names s3://{}/{key}, which does not exist",
                            services.publisher.bucket().name()
                        ))
                    })?;
                Some(String::from_utf8(obj.body).map_err(|_| {
                    TriggerError::Config(format!("s3://.../{key} is not UTF-8 text"))
                })?)
            }
            _ => None,
        };
    let cfg = job_config(&req, deployed.as_deref(), d.allow_private)?;
    let span = tracing::info_span!("job", job_id = %job_id);
    start(services, job_id, cfg, now).instrument(span).await
}

/// Records, plans and queues one job, inside its span.
async fn start(
    services: &Services,
    job_id: JobId,
    cfg: Config,
    now: SystemTime,
) -> Result<TriggerResponse, TriggerError> {
    let d = &services.deployment;

    // The job exists from the start, so a waiter sees it and a duplicate finds it.
    let provisional_deadline = now + Duration::from_secs(3600);
    if let Created::Existing(rec) = services
        .table
        .create_job(&job_id, now, provisional_deadline)
        .await?
    {
        tracing::info!(state = %rec.state, "job exists already; not starting it again");
        return Ok(response(services, &rec, false, Vec::new()));
    }

    let sources = cfg
        .sources()
        .map_err(|e| TriggerError::Config(e.to_string()))?;
    let spec = cfg
        .check_spec()
        .map_err(|e| TriggerError::Config(e.to_string()))?;
    let fetched = source::fetch_all(&sources, &cfg.fetch_options()).await;
    for r in &fetched.reports {
        tracing::info!(source = %r.source, fetched = r.fetched, parsed = r.parsed, invalid = r.invalid, error = ?r.error, "source");
    }
    // Known-good proxies are re-checked with every job, so the list stays fresh.
    let known: Vec<Proxy> = match services.publisher.current().await? {
        Some((list, _)) => list.proxies.iter().map(|p| p.to_proxy()).collect(),
        None => Vec::new(),
    };
    let (proxies, _dups) = proxy::dedup(fetched.proxies.into_iter().chain(known));

    let concurrency = spec.concurrency.min(LAMBDA_MAX_CONCURRENCY);
    let plan = plan::plan(&PlanInput {
        proxies: proxies.len(),
        function_timeout: d.validator_timeout,
        safety_margin: validator_margin(d.validator_timeout),
        worst_case_check: Duration::from_millis(spec.timeout_ms),
        concurrency,
    })?;
    let scraped = proxies.len() as u64;
    let chunks = plan::split_by_size(proxies, &plan, CHUNK_BUDGET_BYTES);
    let deadline_at = job_deadline(
        now,
        chunks.len(),
        d.validator_concurrency,
        d.validator_timeout,
    );
    services
        .table
        .start_checking(
            &job_id,
            &Checking {
                plan: &plan,
                chunks_total: chunks.len() as u64,
                scraped,
                deadline_at,
                check: &cfg.check_params(),
                sources: &fetched.reports,
            },
        )
        .await?;

    let send = if chunks.is_empty() {
        // Nothing to check: the aggregator still runs, to age out old entries.
        let body = serde_json::to_string(&AggregateMessage {
            v: MESSAGE_VERSION,
            job_id: job_id.clone(),
        })
        .expect("serializes");
        services.aggregate.send(&body).await
    } else {
        let messages: Vec<(String, String)> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, proxies)| {
                let chunk_id = format!("c{i:05}");
                let msg = ChunkMessage {
                    v: MESSAGE_VERSION,
                    job_id: job_id.clone(),
                    chunk_id: chunk_id.clone(),
                    check: spec.clone(),
                    proxies,
                };
                (chunk_id, serde_json::to_string(&msg).expect("serializes"))
            })
            .collect();
        services.chunks.send_all(&messages).await
    };
    if let Err(source) = send {
        let err = TriggerError::Queue {
            job: job_id.clone(),
            source,
        };
        services.table.fail(&job_id, &err.to_string()).await?;
        return Err(err);
    }
    let rec = services
        .table
        .get_job(&job_id)
        .await?
        .ok_or_else(|| TriggerError::Config("job vanished".into()))?;
    tracing::info!(scraped, chunks = rec.chunks_total, "job started");
    let mut out = response(services, &rec, true, fetched.reports);
    out.estimate = estimate(d, &spec, scraped as usize, sources.len());
    Ok(out)
}

/// The job's plan priced with the deployment's settings, for the report.
fn estimate(
    d: &crate::pipeline::Deployment,
    spec: &crate::job::CheckSpec,
    proxies: usize,
    sources: usize,
) -> Option<Value> {
    use crate::cost::{Assumptions, Deployment, EstimateInput, Prices};
    let deployment = Deployment {
        architecture: d.architecture.parse().ok()?,
        schedule: d.schedule.parse().ok()?,
        validator_timeout: d.validator_timeout,
        validator_max_concurrency: d.validator_concurrency,
        ..Deployment::default()
    };
    let input = EstimateInput {
        proxies,
        check: spec.clone(),
        deployment,
        assumptions: Assumptions::default(),
        runs_per_month: None,
        sources,
    };
    match crate::cost::estimate(&input, &Prices::builtin()) {
        Ok(e) => serde_json::to_value(e).ok(),
        Err(e) => {
            tracing::info!(error = %e, "no cost estimate for this job");
            None
        }
    }
}

/// When a job should be over: every round of chunks may take a whole validator timeout, plus
/// time for the aggregator and a margin.
pub fn job_deadline(
    now: SystemTime,
    chunks: usize,
    validator_concurrency: usize,
    validator_timeout: Duration,
) -> SystemTime {
    let rounds = chunks.div_ceil(validator_concurrency.max(1)) as u32;
    now + validator_timeout * rounds + Duration::from_secs(300)
}

fn response(
    services: &Services,
    rec: &JobRecord,
    created: bool,
    sources: Vec<SourceReport>,
) -> TriggerResponse {
    TriggerResponse {
        job_id: rec.job_id.clone(),
        created,
        state: rec.state,
        scraped: rec.scraped,
        chunks: rec.chunks_total,
        plan: rec.plan,
        deadline_at: crate::outcome::unix_secs(rec.deadline_at),
        sources,
        estimate: None,
        table: services.table.name().to_owned(),
        bucket: services.publisher.bucket().name().to_owned(),
        list_key: services.publisher.document_key(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scheduled_events_name_their_slot() {
        let ev = json!({"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events",
            "account":"1","time":"2026-12-03T17:00:00Z","region":"us-east-1","resources":[],"detail":{}});
        let TriggerEvent::Scheduled { slot } = TriggerEvent::parse(ev).unwrap() else {
            panic!("not scheduled")
        };
        assert_eq!(JobId::for_slot(slot).as_str(), "sched-20261203T1700Z");
    }

    #[test]
    fn run_requests_are_strict() {
        assert!(matches!(
            TriggerEvent::parse(json!({"sources": ["http://127.0.0.1:1/x"]})),
            Ok(TriggerEvent::Run(_))
        ));
        assert!(matches!(
            TriggerEvent::parse(json!({"sourcez": []})),
            Err(TriggerError::BadEvent(_))
        ));
    }

    #[test]
    fn the_deployment_config_applies_unless_the_request_brings_its_own() {
        let deployed = "[check]\nconcurrency = 7\n";
        let cfg = job_config(&RunRequest::default(), Some(deployed), false).unwrap();
        assert_eq!(cfg.check.concurrency, 7);
        let req = RunRequest {
            config_toml: Some("[check]\nconcurrency = 9\n".into()),
            ..RunRequest::default()
        };
        assert_eq!(
            job_config(&req, Some(deployed), false)
                .unwrap()
                .check
                .concurrency,
            9
        );
        let private = RunRequest {
            allow_private: true,
            ..RunRequest::default()
        };
        assert!(matches!(
            job_config(&private, None, false),
            Err(TriggerError::PrivateNotAllowed)
        ));
        assert!(
            job_config(&private, None, true)
                .unwrap()
                .check
                .allow_private
        );
    }

    #[test]
    fn deadline_grows_with_rounds() {
        let t0 = SystemTime::UNIX_EPOCH;
        let one = job_deadline(t0, 5, 10, Duration::from_secs(120));
        let three = job_deadline(t0, 25, 10, Duration::from_secs(120));
        assert_eq!(three.duration_since(one).unwrap(), Duration::from_secs(240));
    }
}
