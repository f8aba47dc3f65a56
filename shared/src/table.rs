//! The jobs table (DynamoDB): job records and the results of their chunks.
//!
//! One table, two kinds of item under the job's partition `JOB#<id>`:
//! - `META`: the job record. Every state change is one conditional `UpdateItem` whose condition
//!   comes from [`JobState::allowed_sources`], so concurrent writers cannot break the state
//!   machine. A chunk is counted with one update that adds its tally and its id to the set
//!   `done_chunks` under the condition that the id is not yet there: a redelivered message cannot
//!   count twice.
//! - `RESULT#<chunk>`: the chunk's results, written once (`attribute_not_exists`): when two
//!   deliveries of one chunk race, the first stored results are the ones counted and merged.
//!
//! - under the partition `INDEX`, one small item per job (`<created_at>#<job id>`), so recent
//!   jobs can be listed (`proxyharvest jobs`) and swept without a scan.
//!
//! Items expire (TTL attribute `expires_at`) 30 days after the job was created.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use crate::job::{JobId, JobRecord, JobState};
use crate::list::CheckParams;
use crate::outcome::{CheckResult, Tally, unix_secs};
use crate::plan::Plan;
use crate::source::SourceReport;

/// How long job items are kept.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How far back the sweep looks for unfinished jobs.
pub const SWEEP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Results of one chunk must fit one item (DynamoDB's limit is 400 KB, keys and names included).
pub const MAX_RESULTS_BYTES: usize = 380 * 1024;

const META: &str = "META";
const INDEX: &str = "INDEX";

fn index_key(created: SystemTime, job: &JobId) -> String {
    format!("{:012}#{job}", unix_secs(created))
}

/// A failed table operation, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("DynamoDB {op} for job {job} failed: {message}")]
    Sdk {
        op: &'static str,
        job: String,
        message: String,
    },
    #[error("job {job}: stored item is malformed: {message}")]
    Corrupt { job: String, message: String },
    #[error(
        "job {job} chunk {chunk}: results are {bytes} bytes, over the {MAX_RESULTS_BYTES}-byte item budget"
    )]
    TooLarge {
        job: String,
        chunk: String,
        bytes: usize,
    },
}

fn sdk_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    op: &'static str,
    job: &JobId,
) -> impl FnOnce(SdkError<E, R>) -> TableError {
    let job = job.to_string();
    move |e| TableError::Sdk {
        op,
        job,
        message: DisplayErrorContext(&e).to_string(),
    }
}

fn is_condition_failure<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// What the trigger records when a job starts checking.
#[derive(Debug, Clone, Copy)]
pub struct Checking<'a> {
    pub plan: &'a Plan,
    pub chunks_total: u64,
    /// Unique proxies the job sets out to check.
    pub scraped: u64,
    /// When the job should be over if all goes to plan.
    pub deadline_at: SystemTime,
    pub check: &'a CheckParams,
    pub sources: &'a [SourceReport],
}

/// The result of creating a job record.
#[derive(Debug)]
pub enum Created {
    New,
    /// A job with this id exists already (a schedule event or an invocation delivered twice).
    Existing(Box<JobRecord>),
}

/// The result of counting a chunk as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Counted now. `complete` when this chunk was the last one.
    Now { complete: bool },
    /// It had been counted before (a redelivery). `complete` when every chunk is counted.
    Before { complete: bool },
}

/// The result of trying to start aggregating.
#[derive(Debug)]
pub enum Aggregation {
    /// This caller may merge: the job is (now) `aggregating`.
    Go(Box<JobRecord>),
    /// Nothing to do: the job is already final.
    Final(Box<JobRecord>),
    /// Chunks are still out; the message came too early (or is spurious).
    NotReady(Box<JobRecord>),
}

/// The adapter to the jobs table.
#[derive(Clone, Debug)]
pub struct JobTable {
    client: Client,
    name: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn pk(job: &JobId) -> AttributeValue {
    s(format!("JOB#{job}"))
}

impl JobTable {
    pub fn new(client: Client, name: impl Into<String>) -> JobTable {
        JobTable {
            client,
            name: name.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records a new job in state `planned`, unless one with this id exists.
    pub async fn create_job(
        &self,
        job: &JobId,
        now: SystemTime,
        deadline_at: SystemTime,
    ) -> Result<Created, TableError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.name)
            .item("pk", pk(job))
            .item("sk", s(META))
            .item("job_id", s(job.as_str()))
            .item("state", s(JobState::Planned.as_str()))
            .item("created_at", n(unix_secs(now)))
            .item("updated_at", n(unix_secs(now)))
            .item("deadline_at", n(unix_secs(deadline_at)))
            .item("expires_at", n(unix_secs(now + RETENTION)))
            .item("chunks_total", n(0))
            .item("chunks_done", n(0))
            .item("chunks_failed", n(0))
            .item("scraped", n(0))
            .item("live", n(0))
            .item("dead", n(0))
            .item("unchecked", n(0))
            .item("rejected", n(0))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => {
                self.client
                    .put_item()
                    .table_name(&self.name)
                    .item("pk", s(INDEX))
                    .item("sk", s(index_key(now, job)))
                    .item("job_id", s(job.as_str()))
                    .item("expires_at", n(unix_secs(now + RETENTION)))
                    .send()
                    .await
                    .map_err(sdk_err("PutItem(index)", job))?;
                Ok(Created::New)
            }
            Err(e) if is_condition_failure(&e) => {
                let existing = self
                    .get_job(job)
                    .await?
                    .ok_or_else(|| TableError::Corrupt {
                        job: job.to_string(),
                        message: "exists and does not".into(),
                    })?;
                Ok(Created::Existing(Box::new(existing)))
            }
            Err(e) => Err(sdk_err("PutItem(create job)", job)(e)),
        }
    }

    /// `planned` -> `checking`, with the plan. Must happen before the first chunk is sent, so a
    /// fast validator can never see a job whose total is still unknown.
    pub async fn start_checking(
        &self,
        job: &JobId,
        start: &Checking<'_>,
    ) -> Result<(), TableError> {
        let Checking {
            plan,
            chunks_total,
            scraped,
            deadline_at,
            check,
            sources,
        } = *start;
        let sources_json = serde_json::to_string(sources).expect("reports serialize");
        let plan_json = serde_json::to_string(plan).expect("a plan always serializes");
        let check_json = serde_json::to_string(check).expect("check parameters serialize");
        self.transition(job, JobState::Checking)
            .update_expression(
                "SET #st = :to, updated_at = :now, chunks_total = :total, scraped = :scraped, \
                 deadline_at = :deadline, #plan = :plan, #check = :check, sources = :sources",
            )
            .expression_attribute_values(":sources", s(sources_json))
            .expression_attribute_names("#plan", "plan")
            .expression_attribute_names("#check", "check")
            .expression_attribute_values(":check", s(check_json))
            .expression_attribute_values(":total", n(chunks_total))
            .expression_attribute_values(":scraped", n(scraped))
            .expression_attribute_values(":deadline", n(unix_secs(deadline_at)))
            .expression_attribute_values(":plan", s(plan_json))
            .send()
            .await
            .map_err(sdk_err("UpdateItem(start checking)", job))?;
        Ok(())
    }

    /// A conditional update into `to` from one of its allowed sources; the caller adds the rest
    /// of the update expression, which must `SET #st = :to, updated_at = :now`.
    fn transition(
        &self,
        job: &JobId,
        to: JobState,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        let mut b = self
            .client
            .update_item()
            .table_name(&self.name)
            .key("pk", pk(job))
            .key("sk", s(META))
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":now", n(unix_secs(SystemTime::now())));
        let sources = to.allowed_sources();
        let mut cond = Vec::new();
        for (i, from) in sources.iter().enumerate() {
            let key = format!(":from{i}");
            cond.push(format!("#st = {key}"));
            b = b.expression_attribute_values(key, s(from.as_str()));
        }
        let cond = if cond.is_empty() {
            "attribute_not_exists(pk)".to_owned()
        } else {
            format!("attribute_exists(pk) AND ({})", cond.join(" OR "))
        };
        b.condition_expression(cond)
    }

    /// Reads the job record (strongly consistent).
    pub async fn get_job(&self, job: &JobId) -> Result<Option<JobRecord>, TableError> {
        self.get_meta(job)
            .await?
            .map(|item| record_from_item(job, &item))
            .transpose()
    }

    async fn get_meta(
        &self,
        job: &JobId,
    ) -> Result<Option<HashMap<String, AttributeValue>>, TableError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("pk", pk(job))
            .key("sk", s(META))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err("GetItem(job)", job))?;
        Ok(out.item)
    }

    /// Whether a chunk is already counted, and whether the job has all its chunks counted.
    pub async fn chunk_status(
        &self,
        job: &JobId,
        chunk: &str,
    ) -> Result<Option<(JobRecord, bool)>, TableError> {
        let Some(item) = self.get_meta(job).await? else {
            return Ok(None);
        };
        let counted = done_chunks(&item).iter().any(|c| c == chunk);
        Ok(Some((record_from_item(job, &item)?, counted)))
    }

    /// Stores a chunk's results once. Returns the results that are stored: ours, or those of an
    /// earlier delivery of the same chunk (which everything after this step then works from).
    pub async fn store_results(
        &self,
        job: &JobId,
        chunk: &str,
        results: &[CheckResult],
    ) -> Result<Vec<CheckResult>, TableError> {
        let json = serde_json::to_string(results).expect("results always serialize");
        if json.len() > MAX_RESULTS_BYTES {
            return Err(TableError::TooLarge {
                job: job.to_string(),
                chunk: chunk.to_owned(),
                bytes: json.len(),
            });
        }
        let tally: Tally = results.iter().map(|r| &r.outcome).collect();
        let now = SystemTime::now();
        let res = self
            .client
            .put_item()
            .table_name(&self.name)
            .item("pk", pk(job))
            .item("sk", s(format!("RESULT#{chunk}")))
            .item("results", s(json))
            .item("live", n(tally.live))
            .item("dead", n(tally.dead))
            .item("unchecked", n(tally.unchecked))
            .item("rejected", n(tally.rejected))
            .item("expires_at", n(unix_secs(now + RETENTION)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(results.to_vec()),
            Err(e) if is_condition_failure(&e) => {
                self.chunk_results(job, chunk)
                    .await?
                    .ok_or_else(|| TableError::Corrupt {
                        job: job.to_string(),
                        message: format!("results of {chunk} exist and do not"),
                    })
            }
            Err(e) => Err(sdk_err("PutItem(results)", job)(e)),
        }
    }

    /// Counts a chunk as done exactly once, adding its tally to the job.
    pub async fn count_chunk(
        &self,
        job: &JobId,
        chunk: &str,
        tally: &Tally,
        failed: bool,
    ) -> Result<Counted, TableError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.name)
            .key("pk", pk(job))
            .key("sk", s(META))
            .update_expression(if failed {
                "ADD chunks_done :one, chunks_failed :failed, live :live, dead :dead, \
                 unchecked :unchecked, rejected :rejected, done_chunks :ids, failed_chunks :ids \
                 SET updated_at = :now"
            } else {
                "ADD chunks_done :one, chunks_failed :failed, live :live, dead :dead, \
                 unchecked :unchecked, rejected :rejected, done_chunks :ids SET updated_at = :now"
            })
            .condition_expression(
                "attribute_exists(pk) AND #st = :checking AND NOT contains(done_chunks, :id)",
            )
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":checking", s(JobState::Checking.as_str()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":failed", n(u8::from(failed)))
            .expression_attribute_values(":live", n(tally.live))
            .expression_attribute_values(":dead", n(tally.dead))
            .expression_attribute_values(":unchecked", n(tally.unchecked))
            .expression_attribute_values(":rejected", n(tally.rejected))
            .expression_attribute_values(":ids", AttributeValue::Ss(vec![chunk.to_owned()]))
            .expression_attribute_values(":id", s(chunk))
            .expression_attribute_values(":now", n(unix_secs(SystemTime::now())))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                Ok(Counted::Now {
                    complete: all_counted(&item),
                })
            }
            Err(e) if is_condition_failure(&e) => {
                let item = self.get_meta(job).await?.unwrap_or_default();
                if !done_chunks(&item).iter().any(|c| c == chunk) {
                    // Not a redelivery: the job is not (or no longer) checking.
                    let state = get_s(&item, "state").unwrap_or("missing");
                    return Err(TableError::Corrupt {
                        job: job.to_string(),
                        message: format!("chunk {chunk} cannot be counted in state {state}"),
                    });
                }
                let state = get_s(&item, "state").and_then(|s| s.parse::<JobState>().ok());
                Ok(Counted::Before {
                    complete: all_counted(&item)
                        && matches!(state, Some(JobState::Checking | JobState::Aggregating)),
                })
            }
            Err(e) => Err(sdk_err("UpdateItem(count chunk)", job)(e)),
        }
    }

    /// `checking` (or a half-done `aggregating`) -> `aggregating`, once every chunk is counted.
    pub async fn begin_aggregation(&self, job: &JobId) -> Result<Aggregation, TableError> {
        let res = self
            .transition(job, JobState::Aggregating)
            .update_expression("SET #st = :to, updated_at = :now")
            .condition_expression(
                "attribute_exists(pk) AND (#st = :from0 OR #st = :from1) \
                 AND (chunks_done >= chunks_total OR expiring = :yes)",
            )
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => Ok(Aggregation::Go(Box::new(record_from_item(
                job,
                &out.attributes.unwrap_or_default(),
            )?))),
            Err(e) if is_condition_failure(&e) => {
                let rec = self
                    .get_job(job)
                    .await?
                    .ok_or_else(|| TableError::Corrupt {
                        job: job.to_string(),
                        message: "no such job".into(),
                    })?;
                if rec.state.is_final() {
                    Ok(Aggregation::Final(Box::new(rec)))
                } else {
                    Ok(Aggregation::NotReady(Box::new(rec)))
                }
            }
            Err(e) => Err(sdk_err("UpdateItem(begin aggregation)", job)(e)),
        }
    }

    /// Raises the job's chunk total for a continuation chunk, once per continuation id. Must
    /// happen before the parent chunk is counted, so the job never looks complete while the
    /// continuation is queued.
    pub async fn add_continuation(&self, job: &JobId, chunk: &str) -> Result<(), TableError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.name)
            .key("pk", pk(job))
            .key("sk", s(META))
            .update_expression("ADD chunks_total :one, spawned_chunks :ids SET updated_at = :now")
            .condition_expression(
                "attribute_exists(pk) AND #st = :checking AND NOT contains(spawned_chunks, :id)",
            )
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":checking", s(JobState::Checking.as_str()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ids", AttributeValue::Ss(vec![chunk.to_owned()]))
            .expression_attribute_values(":id", s(chunk))
            .expression_attribute_values(":now", n(unix_secs(SystemTime::now())))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => {
                let item = self.get_meta(job).await?.unwrap_or_default();
                let spawned = item
                    .get("spawned_chunks")
                    .and_then(|v| v.as_ss().ok())
                    .is_some_and(|ids| ids.iter().any(|c| c == chunk));
                if spawned {
                    Ok(()) // a redelivery: raised before
                } else {
                    Err(TableError::Corrupt {
                        job: job.to_string(),
                        message: format!(
                            "continuation {chunk} cannot be added in state {}",
                            get_s(&item, "state").unwrap_or("missing")
                        ),
                    })
                }
            }
            Err(e) => Err(sdk_err("UpdateItem(add continuation)", job)(e)),
        }
    }

    /// The stored results of one chunk, if any.
    pub async fn chunk_results(
        &self,
        job: &JobId,
        chunk: &str,
    ) -> Result<Option<Vec<CheckResult>>, TableError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("pk", pk(job))
            .key("sk", s(format!("RESULT#{chunk}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err("GetItem(results)", job))?;
        out.item
            .map(|item| {
                serde_json::from_str(get_s(&item, "results").unwrap_or("[]")).map_err(|e| {
                    TableError::Corrupt {
                        job: job.to_string(),
                        message: format!("results of {chunk}: {e}"),
                    }
                })
            })
            .transpose()
    }

    /// Jobs created since `since`, newest first (at most `limit`).
    pub async fn recent_jobs(
        &self,
        since: SystemTime,
        limit: usize,
    ) -> Result<Vec<JobId>, TableError> {
        let query = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND sk >= :since")
            .expression_attribute_values(":pk", s(INDEX))
            .expression_attribute_values(":since", s(format!("{:012}", unix_secs(since))))
            .scan_index_forward(false);
        let any = JobId::new("index").expect("valid");
        let items = query_pages(query, "Query(index)", &any, limit).await?;
        Ok(items
            .iter()
            .filter_map(|item| get_s(item, "job_id").and_then(|j| JobId::new(j).ok()))
            .collect())
    }

    /// A stalled job -> `aggregating`, marked as expiring: proxies of chunks never counted are
    /// counted unchecked, so the accounting holds. Only if the job is still exactly as `rec`
    /// shows it (no progress since it was read).
    pub async fn begin_expiry(&self, rec: &JobRecord) -> Result<bool, TableError> {
        let job = &rec.job_id;
        let missing = rec.scraped.saturating_sub(rec.tally.total());
        let res = self
            .client
            .update_item()
            .table_name(&self.name)
            .key("pk", pk(job))
            .key("sk", s(META))
            .update_expression(
                "SET #st = :to, updated_at = :now, expiring = :yes ADD unchecked :missing",
            )
            .condition_expression(
                "attribute_exists(pk) AND (#st = :planned OR #st = :checking) \
                 AND chunks_done = :done AND updated_at = :seen",
            )
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":to", s(JobState::Aggregating.as_str()))
            .expression_attribute_values(":planned", s(JobState::Planned.as_str()))
            .expression_attribute_values(":checking", s(JobState::Checking.as_str()))
            .expression_attribute_values(":now", n(unix_secs(SystemTime::now())))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":missing", n(missing))
            .expression_attribute_values(":done", n(rec.chunks_done))
            .expression_attribute_values(":seen", n(unix_secs(rec.updated_at)))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(sdk_err("UpdateItem(begin expiry)", job)(e)),
        }
    }

    /// Every stored result of the job's chunks.
    pub async fn load_results(&self, job: &JobId) -> Result<Vec<CheckResult>, TableError> {
        let query = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", pk(job))
            .expression_attribute_values(":prefix", s("RESULT#"))
            .consistent_read(true);
        let mut out = Vec::new();
        for item in query_pages(query, "Query(results)", job, usize::MAX).await? {
            let json = get_s(&item, "results").unwrap_or("[]");
            let mut chunk: Vec<CheckResult> =
                serde_json::from_str(json).map_err(|e| TableError::Corrupt {
                    job: job.to_string(),
                    message: format!("results item: {e}"),
                })?;
            out.append(&mut chunk);
        }
        Ok(out)
    }

    /// `aggregating` -> a final state, with the size of the published list.
    pub async fn finish(
        &self,
        job: &JobId,
        to: JobState,
        list_total: u64,
    ) -> Result<bool, TableError> {
        let res = self
            .transition(job, to)
            .update_expression("SET #st = :to, updated_at = :now, list_total = :list_total")
            .expression_attribute_values(":list_total", n(list_total))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(sdk_err("UpdateItem(finish)", job)(e)),
        }
    }

    /// Any non-final state -> `failed`, with the reason.
    pub async fn fail(&self, job: &JobId, error: &str) -> Result<bool, TableError> {
        let res = self
            .transition(job, JobState::Failed)
            .update_expression("SET #st = :to, updated_at = :now, #err = :err")
            .expression_attribute_names("#err", "error")
            .expression_attribute_values(":err", s(error))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(sdk_err("UpdateItem(fail)", job)(e)),
        }
    }
}

/// Every item a query matches, page after page, up to `limit`.
async fn query_pages(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    op: &'static str,
    job: &JobId,
    limit: usize,
) -> Result<Vec<HashMap<String, AttributeValue>>, TableError> {
    let mut items = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = query
            .clone()
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(sdk_err(op, job))?;
        items.extend(page.items.unwrap_or_default());
        if items.len() >= limit {
            items.truncate(limit);
            return Ok(items);
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(items),
        }
    }
}

fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n(item: &HashMap<String, AttributeValue>, k: &str) -> u64 {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn done_chunks(item: &HashMap<String, AttributeValue>) -> Vec<String> {
    item.get("done_chunks")
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default()
}

fn all_counted(item: &HashMap<String, AttributeValue>) -> bool {
    let total = get_n(item, "chunks_total");
    total > 0 && get_n(item, "chunks_done") >= total
}

fn tally_from_item(item: &HashMap<String, AttributeValue>) -> Tally {
    Tally {
        live: get_n(item, "live"),
        dead: get_n(item, "dead"),
        unchecked: get_n(item, "unchecked"),
        rejected: get_n(item, "rejected"),
    }
}

fn secs(item: &HashMap<String, AttributeValue>, k: &str) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(get_n(item, k))
}

fn record_from_item(
    job: &JobId,
    item: &HashMap<String, AttributeValue>,
) -> Result<JobRecord, TableError> {
    let corrupt = |message: String| TableError::Corrupt {
        job: job.to_string(),
        message,
    };
    let state = get_s(item, "state")
        .ok_or_else(|| corrupt("no state".into()))?
        .parse::<JobState>()
        .map_err(corrupt)?;
    let plan = get_s(item, "plan")
        .map(serde_json::from_str::<Plan>)
        .transpose()
        .map_err(|e| corrupt(format!("plan: {e}")))?;
    let check = get_s(item, "check")
        .map(serde_json::from_str::<CheckParams>)
        .transpose()
        .map_err(|e| corrupt(format!("check: {e}")))?;
    Ok(JobRecord {
        job_id: job.clone(),
        state,
        created_at: secs(item, "created_at"),
        updated_at: secs(item, "updated_at"),
        deadline_at: secs(item, "deadline_at"),
        chunks_total: get_n(item, "chunks_total"),
        chunks_done: get_n(item, "chunks_done"),
        chunks_failed: get_n(item, "chunks_failed"),
        scraped: get_n(item, "scraped"),
        tally: tally_from_item(item),
        list_total: item
            .contains_key("list_total")
            .then(|| get_n(item, "list_total")),
        plan,
        check,
        expiring: item
            .get("expiring")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        failed_chunks: item
            .get("failed_chunks")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
        sources: get_s(item, "sources")
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default(),
        error: get_s(item, "error").map(str::to_owned),
    })
}
