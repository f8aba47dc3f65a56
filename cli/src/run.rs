//! `proxyharvest run`, `wait` and `status`: start a job on the pipeline and follow it.
//!
//! Waiting follows the job's own record in the table: progress is chunks counted, and the
//! time limit is the deadline the job's plan implies (recorded by the trigger), extended for as
//! long as the job keeps making progress. Nothing here guesses a fixed timeout, and every ending
//! is reported as what it is.

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_lambda::primitives::Blob;
use proxyharvest::job::{JobId, JobRecord, JobState};
use proxyharvest::pipeline::trigger::{RunRequest, TriggerResponse};
use proxyharvest::table::JobTable;

use crate::args::{JobsArgs, RunArgs, StatusArgs, WaitArgs, WaitFlags};
use crate::exit::{Outcome, Result};
use crate::progress::Progress;
use crate::stack::Stack;

/// How long a job may go without progress past its deadline before waiting gives up.
const STALL_GRACE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(500);

pub async fn run(a: RunArgs) -> Result<Outcome> {
    let stack = Stack::resolve(&a.stack).await?;
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let job_id = JobId::random(SystemTime::now());
    let request = RunRequest {
        job_id: Some(job_id.clone()),
        config_toml: a.config.as_deref().map(read).transpose()?,
        sources: a.sources.clone(),
        judge: a.judge.clone(),
        judge_https: a.judge_https.clone(),
        judge_ca_pem: a.judge_ca.as_deref().map(read).transpose()?,
        allow_private: a.allow_private,
    };
    eprintln!("starting job {job_id} (function {})…", stack.function);
    let out = stack
        .lambda()
        .invoke()
        .function_name(&stack.function)
        .payload(Blob::new(serde_json::to_vec(&request)?))
        .send()
        .await
        .map_err(|e| {
            format!(
                "invoking {}: {}",
                stack.function,
                aws_sdk_lambda::error::DisplayErrorContext(&e)
            )
        })?;
    let payload = out.payload.map(|b| b.into_inner()).unwrap_or_default();
    if let Some(kind) = out.function_error {
        return Err(format!(
            "the trigger failed ({kind}): {}",
            String::from_utf8_lossy(&payload)
        )
        .into());
    }
    let started: TriggerResponse = serde_json::from_slice(&payload).map_err(|e| {
        format!(
            "the trigger answered something unexpected ({e}): {}",
            String::from_utf8_lossy(&payload)
        )
    })?;
    for s in &started.sources {
        match &s.error {
            None => eprintln!("  source ok    {} — {} proxies", s.source, s.parsed),
            Some(e) => eprintln!("  source FAIL  {} — {e}", s.source),
        }
    }
    if !started.created {
        eprintln!("job {} existed already; following it", started.job_id);
    }
    eprintln!(
        "job {}: {} unique proxies in {} chunk(s)",
        started.job_id, started.scraped, started.chunks
    );
    if let Some(e) = &started.estimate {
        let usd = |k: &str| e[k]["total_usd"].as_f64().unwrap_or(0.0);
        eprintln!(
            "estimated AWS cost: ${:.4} this run (worst case), ${:.2} a month at {}",
            usd("per_run"),
            usd("per_month"),
            e["schedule"].as_str().unwrap_or("the schedule")
        );
    }
    if a.no_wait {
        println!("{}", started.job_id);
        return Ok(Outcome::Done);
    }
    let table = JobTable::new(proxyharvest::aws::dynamodb(&stack.sdk), &started.table);
    let list_url = format!("s3://{}/{}", started.bucket, started.list_key);
    wait_for(&table, &started.job_id, &a.wait, Some(&list_url)).await
}

pub async fn wait(a: WaitArgs) -> Result<Outcome> {
    let stack = Stack::resolve(&a.stack).await?;
    let job = JobId::new(&a.job_id)?;
    wait_for(&stack.table()?, &job, &a.wait, None).await
}

pub async fn jobs(a: JobsArgs) -> Result<Outcome> {
    let stack = Stack::resolve(&a.stack).await?;
    let table = stack.table()?;
    let since = SystemTime::now()
        .checked_sub(a.since)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut records = Vec::new();
    for job in table.recent_jobs(since, a.limit).await? {
        if let Some(rec) = table.get_job(&job).await? {
            records.push(rec);
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(Outcome::Done);
    }
    if records.is_empty() {
        println!(
            "no jobs in the last {}",
            humantime::format_duration(a.since)
        );
        return Ok(Outcome::Done);
    }
    println!(
        "{:<34} {:<16} {:<20} {:>7} {:>9} {:>7} {:>7} {:>9} {:>8} {:>7}",
        "JOB", "STATE", "CREATED", "TOOK", "CHUNKS", "SCRAPED", "LIVE", "DEAD", "UNCHECK", "REJECT"
    );
    for r in &records {
        let took = r
            .updated_at
            .duration_since(r.created_at)
            .unwrap_or_default();
        println!(
            "{:<34} {:<16} {:<20} {:>6}s {:>9} {:>7} {:>7} {:>9} {:>8} {:>7}",
            r.job_id.as_str(),
            r.state.as_str(),
            humantime::format_rfc3339_seconds(r.created_at).to_string(),
            took.as_secs(),
            format!("{}/{}", r.chunks_done, r.chunks_total),
            r.scraped,
            r.tally.live,
            r.tally.dead,
            r.tally.unchecked,
            r.tally.rejected
        );
    }
    Ok(Outcome::Done)
}

pub async fn status(a: StatusArgs) -> Result<Outcome> {
    let stack = Stack::resolve(&a.stack).await?;
    let job = JobId::new(&a.job_id)?;
    let Some(rec) = stack.table()?.get_job(&job).await? else {
        return Err(format!("no job {job} in table {}", stack.table.unwrap_or_default()).into());
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        println!("{}", describe(&rec));
        if let Some(plan) = &rec.plan {
            println!(
                "plan: {} chunk(s) of up to {} proxies, {} round(s) per chunk, at most {}s each",
                plan.chunks,
                plan.chunk_size,
                plan.rounds_per_chunk,
                plan.max_chunk_duration.as_secs()
            );
        }
        for s in &rec.sources {
            match &s.error {
                None => println!(
                    "source ok    {} — {} bytes, {} proxies, {} invalid, {} duplicates, {} ms",
                    s.source, s.bytes, s.parsed, s.invalid, s.duplicates, s.elapsed_ms
                ),
                Some(e) => println!(
                    "source FAIL  {} — {e} (after {} attempt(s))",
                    s.source, s.attempts
                ),
            }
        }
        for c in &rec.failed_chunks {
            println!("chunk FAILED {c} — dead-lettered; its proxies are counted unchecked");
        }
        if let Some(e) = &rec.error {
            println!("error: {e}");
        }
    }
    Ok(Outcome::Done)
}

/// One line that says where a job is.
pub fn describe(rec: &JobRecord) -> String {
    let t = &rec.tally;
    let took = rec
        .updated_at
        .duration_since(rec.created_at)
        .unwrap_or_default()
        .as_secs();
    format!(
        "job {} {}: chunks {}/{} ({} failed); proxies {} of {} accounted: {} live, {} dead, {} unchecked, {} rejected; {}s{}",
        rec.job_id,
        rec.state,
        rec.chunks_done,
        rec.chunks_total,
        rec.chunks_failed,
        t.total(),
        rec.scraped,
        t.live,
        t.dead,
        t.unchecked,
        t.rejected,
        took,
        rec.list_total
            .map(|n| format!("; list holds {n}"))
            .unwrap_or_default()
    )
}

/// Follows a job until it ends, or until it stops making progress past its deadline.
pub async fn wait_for(
    table: &JobTable,
    job: &JobId,
    flags: &WaitFlags,
    list_url: Option<&str>,
) -> Result<Outcome> {
    let mut progress: Option<Progress> = None;
    let mut last_done = None;
    let mut last_progress = Instant::now();
    let first_look = Instant::now();
    let rec = loop {
        let Some(rec) = table.get_job(job).await? else {
            if first_look.elapsed() > Duration::from_secs(30) {
                return Err(format!("no job {job} in table {}", table.name()).into());
            }
            tokio::time::sleep(POLL).await;
            continue;
        };
        if rec.state.is_final() {
            break rec;
        }
        let p = progress.get_or_insert_with(|| Progress::new(rec.chunks_total, "chunks"));
        p.set_total(rec.chunks_total);
        let note = format!(
            " · {}/{} proxies checked · {}",
            rec.tally.total(),
            rec.scraped,
            rec.state
        );
        p.update(rec.chunks_done, rec.tally.live, &note);
        let marker = (rec.chunks_done, rec.state);
        if last_done != Some(marker) {
            last_done = Some(marker);
            last_progress = Instant::now();
        }
        let past_deadline = SystemTime::now() > rec.deadline_at;
        if past_deadline && last_progress.elapsed() > STALL_GRACE {
            if let Some(p) = progress.as_mut() {
                p.finish();
            }
            eprintln!(
                "gave up waiting: job {job} is still {} with {}/{} chunks counted, no progress for {}s and past its planned deadline. It may still finish: proxyharvest wait {job}",
                rec.state,
                rec.chunks_done,
                rec.chunks_total,
                last_progress.elapsed().as_secs()
            );
            if flags.json {
                println!("{}", serde_json::to_string_pretty(&rec)?);
            }
            return Ok(Outcome::TimedOut);
        }
        tokio::time::sleep(POLL).await;
    };
    if let Some(p) = progress.as_mut() {
        p.update(rec.chunks_done, rec.tally.live, "");
        p.finish();
    }
    if flags.json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        println!("{}", describe(&rec));
        if let Some(url) = list_url.filter(|_| rec.list_total.is_some()) {
            println!("published list: {url}");
        }
    }
    if !rec.accounting_holds()
        && matches!(rec.state, JobState::Complete | JobState::CompletePartial)
    {
        eprintln!(
            "warning: accounting does not add up: {} scraped, {} accounted",
            rec.scraped,
            rec.tally.total()
        );
    }
    Ok(outcome(&rec, flags.min_live))
}

/// The exit code a final job record means.
pub fn outcome(rec: &JobRecord, min_live: u64) -> Outcome {
    match rec.state {
        JobState::Complete | JobState::CompletePartial if rec.tally.live < min_live => {
            eprintln!(
                "job ended with {} live proxies; --min-live asked for {min_live}",
                rec.tally.live
            );
            Outcome::TooFewLive
        }
        JobState::Complete => Outcome::Done,
        JobState::CompletePartial => Outcome::Partial,
        JobState::Expired | JobState::Failed => Outcome::JobFailed,
        JobState::Planned | JobState::Checking | JobState::Aggregating => Outcome::TimedOut,
    }
}
