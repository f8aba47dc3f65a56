//! `make soak`: do overlapping jobs survive validators dying under them, with nothing lost and
//! nothing counted twice?
//!
//! Starts `--jobs` jobs (default 3) of `--proxies` loopback proxies each (default 10,000),
//! `--stagger-s` apart, on the local stack, and meanwhile kills every busy validator at random
//! moments (`--kills` times), as if their execution environments died mid-chunk. A killed chunk
//! comes back after the chunk queue's visibility timeout (120 s on the local stack), so the soak
//! waits for every job to be final, up to `--limit-min` minutes. Then, for each job:
//! - proxies lost = scraped − (live + dead + unchecked + rejected): must be 0;
//! - duplicates = stored results whose proxy key appears more than once: must be 0;
//!
//! and it prints the jobs' states and durations. Exit status 1 if any job is not final in time,
//! lost a proxy or has a duplicate; 2 on bad arguments.
//!
//! The farm has one proxy per endpoint (fd and port budgets: 3 × 10,000 listeners would not fit
//! the open-file limit, nor leave ephemeral ports to anyone else on the machine), so the jobs'
//! lists are made distinct by their credentials: job k lists every endpoint as
//! `soak<k>:<secret>@127.0.0.1:port`, a different proxy key per job, which the farm's proxies
//! ignore. Live proxies answer after `--delay-ms`, so a chunk keeps its validator busy for
//! seconds and a kill lands mid-chunk; a tenth are refused ports.

use std::collections::HashMap;
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proxyharvest::check::raise_fd_limit;
use proxyharvest::job::{JobId, JobRecord, JobState};
use proxyharvest::outcome::CheckResult;
use proxyharvest::proxy::{Credentials, Proxy, ProxyKey};
use proxyharvest_tests::farm::{self, Kind};
use proxyharvest_tests::judge::{self, JudgeFormat};
use proxyharvest_tests::sources::{Route, SourcesServer};
use proxyharvest_tests::stack::{self, Stack};
use rand::Rng as _;
use serde_json::json;
use tokio::time::Instant;

const USAGE: &str = "usage: soak [--jobs N] [--proxies N] [--stagger-s S] [--kills N] [--delay-ms MS] [--limit-min M]
  --jobs N        overlapping jobs (default 3)
  --proxies N     proxies per job (default 10000, at least 10); a tenth are refused ports
  --stagger-s S   seconds between job starts (default 5)
  --kills N       times every busy validator is killed, at random moments (default 4)
  --delay-ms MS   how long each live proxy takes to answer (default 500)
  --limit-min M   give up on jobs not final after M minutes (default 20)";

/// The per-check timeout: above the slowest answer, and small enough for 7-round chunks.
const CHECK_TIMEOUT: Duration = Duration::from_millis(2000);
/// Checks in flight in each validator.
const CONCURRENCY: usize = 48;
/// Random pause before each kill.
const KILL_GAP: std::ops::RangeInclusive<u64> = 3_000..=15_000;
/// How long a kill waits for a busy validator before it is skipped.
const KILL_WAIT: Duration = Duration::from_secs(60);
/// How often the jobs' records are read.
const POLL: Duration = Duration::from_secs(1);
/// Open files this process needs beyond one per farm proxy.
const FD_HEADROOM: u64 = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Options {
    jobs: usize,
    proxies: usize,
    stagger: Duration,
    kills: usize,
    delay: Duration,
    limit: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            jobs: 3,
            proxies: 10_000,
            stagger: Duration::from_secs(5),
            kills: 4,
            delay: Duration::from_millis(500),
            limit: Duration::from_secs(20 * 60),
        }
    }
}

#[derive(Debug)]
enum SoakError {
    Usage(String),
    Setup(String),
    Trigger { job: JobId, why: String },
    Table(proxyharvest::table::TableError),
}

impl fmt::Display for SoakError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SoakError::Usage(why) => write!(f, "{why}\n{USAGE}"),
            SoakError::Setup(why) => write!(f, "setting up: {why}"),
            SoakError::Trigger { job, why } => write!(f, "the trigger failed for {job}: {why}"),
            SoakError::Table(e) => write!(f, "reading the jobs: {e}"),
        }
    }
}

impl std::error::Error for SoakError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SoakError::Table(e) => Some(e),
            _ => None,
        }
    }
}

fn parse_args(args: &[String]) -> Result<Options, SoakError> {
    let number = |flag: &str, value: Option<&String>| -> Result<u64, SoakError> {
        value
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| SoakError::Usage(format!("{flag} needs a whole number")))
    };
    let mut o = Options::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--jobs" => o.jobs = number(arg, rest.next())? as usize,
            "--proxies" => o.proxies = number(arg, rest.next())? as usize,
            "--stagger-s" => o.stagger = Duration::from_secs(number(arg, rest.next())?),
            "--kills" => o.kills = number(arg, rest.next())? as usize,
            "--delay-ms" => o.delay = Duration::from_millis(number(arg, rest.next())?),
            "--limit-min" => o.limit = Duration::from_secs(60 * number(arg, rest.next())?),
            other => return Err(SoakError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    if o.jobs == 0 || o.proxies < 10 || o.limit.is_zero() || o.delay >= CHECK_TIMEOUT {
        return Err(SoakError::Usage(format!(
            "at least 1 job of 10 proxies, a limit above 0, and a delay below the {} ms check \
             timeout",
            CHECK_TIMEOUT.as_millis()
        )));
    }
    Ok(o)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match parse_args(&args) {
        Ok(options) => soak(options).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e @ SoakError::Usage(_)) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One job of the soak, from its trigger invocation on.
struct Running {
    job: JobId,
    started: Instant,
    /// When its record was first seen final, since `started`.
    took: Option<Duration>,
    record: Option<JobRecord>,
}

/// What the kills did.
#[derive(Debug, Default)]
struct Kills {
    /// Kill requests that found a busy validator.
    made: usize,
    /// Execution environments killed in all.
    environments: u64,
    /// Kills skipped because no validator was busy in time.
    skipped: usize,
}

async fn soak(o: Options) -> Result<bool, SoakError> {
    let fd_limit = raise_fd_limit()
        .map_err(|e| SoakError::Setup(format!("raising the open-file limit: {e}")))?;
    if fd_limit < o.proxies as u64 + FD_HEADROOM {
        return Err(SoakError::Setup(format!(
            "{} proxies need about {} open files; the limit is {fd_limit}",
            o.proxies,
            o.proxies as u64 + FD_HEADROOM
        )));
    }
    let stack = Arc::new(Stack::from_env().await);
    let validator = stack.function("Validator");
    let kinds: Vec<Kind> = (0..o.proxies)
        .map(|i| {
            if i % 10 == 9 {
                Kind::Refused
            } else {
                Kind::Slow { delay: o.delay }
            }
        })
        .collect();
    let farm = farm::start(&kinds).await;
    let judge = judge::start(JudgeFormat::Own).await;
    let endpoints: Vec<Proxy> = farm.proxies().into_iter().map(|(_, p)| p).collect();
    let routes = (0..o.jobs)
        .map(|k| (format!("/job{k}.txt"), Route::text(job_list(&endpoints, k))))
        .collect();
    let sources = SourcesServer::start(routes).await;

    let soak_start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let killer = tokio::spawn(kill_at_random(
        stack.clone(),
        validator.clone(),
        o.kills,
        done.clone(),
    ));
    let tag = rand::random::<u32>();
    let mut jobs = Vec::with_capacity(o.jobs);
    for k in 0..o.jobs {
        tokio::time::sleep_until(soak_start + o.stagger * k as u32).await;
        let job = JobId::new(&format!("soak-{tag:08x}-{k}")).expect("a valid job id");
        let config = stack::loopback_config(
            &[sources.url(&format!("/job{k}.txt"))],
            &judge.url(),
            CHECK_TIMEOUT,
            CONCURRENCY,
        );
        let started = Instant::now();
        let answer = stack
            .invoke_trigger(&json!({"job_id": job, "config_toml": config, "allow_private": true}))
            .await
            .map_err(|why| SoakError::Trigger {
                job: job.clone(),
                why,
            })?;
        eprintln!(
            "soak: job {job} started: {} proxies in {} chunks",
            answer.scraped, answer.chunks
        );
        jobs.push(Running {
            job,
            started,
            took: None,
            record: None,
        });
    }

    while jobs.iter().any(|j| j.took.is_none()) && soak_start.elapsed() < o.limit {
        for j in jobs.iter_mut().filter(|j| j.took.is_none()) {
            let rec = stack
                .table
                .get_job(&j.job)
                .await
                .map_err(SoakError::Table)?;
            if let Some(rec) = rec {
                if rec.state.is_final() {
                    j.took = Some(j.started.elapsed());
                    eprintln!(
                        "soak: job {} {} after {:.0} s",
                        j.job,
                        rec.state,
                        j.started.elapsed().as_secs_f64()
                    );
                }
                j.record = Some(rec);
            }
        }
        tokio::time::sleep(POLL).await;
    }
    done.store(true, Ordering::SeqCst);
    let kills = killer.await.unwrap_or_default();

    let mut verdicts = Vec::with_capacity(jobs.len());
    for j in &jobs {
        let results = stack
            .table
            .load_results(&j.job)
            .await
            .map_err(SoakError::Table)?;
        verdicts.push(Verdict::new(j, &results));
    }
    let status = stack.runtime_status().await;
    let f = &status["functions"][&validator];
    println!(
        "soak: {} jobs of {} proxies ({} slow elite answering after {} ms, {} refused), {} s \
         apart, {} validators x {CONCURRENCY} checks, check timeout {} ms",
        o.jobs,
        o.proxies,
        kinds.len() - kinds.iter().filter(|k| **k == Kind::Refused).count(),
        o.delay.as_millis(),
        kinds.iter().filter(|k| **k == Kind::Refused).count(),
        o.stagger.as_secs(),
        stack
            .event_source_concurrency(&validator)
            .map_or("?".into(), |n| n.to_string()),
        CHECK_TIMEOUT.as_millis(),
    );
    println!("machine: {}", stack::machine_summary());
    println!(
        "kills: {} of {} found busy validators, {} environments killed, {} skipped (none busy); \
         validator invocations: {} started, {} failed, {} timed out",
        kills.made,
        o.kills,
        kills.environments,
        kills.skipped,
        f["invocations_started"],
        f["invocations_failed"],
        f["invocations_timed_out"],
    );
    println!();
    print!("{}", table(&verdicts));
    let completed = verdicts
        .iter()
        .filter(|v| v.state == Some(JobState::Complete))
        .count();
    let passed = verdicts.iter().all(Verdict::passed);
    println!();
    println!(
        "jobs completed: {completed} of {}; proxies lost: {}; duplicates: {}; total {:.0} s: {}",
        verdicts.len(),
        verdicts.iter().map(|v| v.lost.unsigned_abs()).sum::<u64>(),
        verdicts.iter().map(|v| v.duplicates).sum::<usize>(),
        soak_start.elapsed().as_secs_f64(),
        if passed { "PASS" } else { "FAIL" }
    );
    Ok(passed)
}

/// Job `k`'s list: every farm endpoint, under credentials of its own (a distinct proxy key).
fn job_list(endpoints: &[Proxy], k: usize) -> String {
    let auth = Credentials::new(
        &format!("soak{k}"),
        &format!("{:08x}", rand::random::<u32>()),
    )
    .expect("valid credentials");
    endpoints
        .iter()
        .map(|p| format!("{}\n", p.clone().with_auth(Some(auth.clone()))))
        .collect()
}

/// Kills every busy validator `kills` times, each after a random pause and once one is busy,
/// until `done`.
async fn kill_at_random(
    stack: Arc<Stack>,
    validator: String,
    kills: usize,
    done: Arc<AtomicBool>,
) -> Kills {
    let mut out = Kills::default();
    for _ in 0..kills {
        let gap = rand::rng().random_range(KILL_GAP);
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let waiting = Instant::now();
        loop {
            if done.load(Ordering::SeqCst) {
                return out;
            }
            let busy = stack.runtime_status().await["functions"][&validator]["environments_busy"]
                .as_u64()
                .unwrap_or(0);
            if busy > 0 {
                let killed = stack.kill_busy(&validator).await;
                eprintln!("soak: killed {killed} busy validator(s)");
                out.made += 1;
                out.environments += killed;
                break;
            }
            if waiting.elapsed() > KILL_WAIT {
                out.skipped += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    out
}

/// One job's outcome against the soak's invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    job: JobId,
    /// `None`: the job was never seen in the table.
    state: Option<JobState>,
    took: Option<Duration>,
    scraped: u64,
    /// `scraped − accounted`; negative if more were counted than scraped.
    lost: i64,
    results: usize,
    /// Stored results whose proxy key appears more than once.
    duplicates: usize,
    chunks: (u64, u64),
    failed_chunks: u64,
}

impl Verdict {
    fn new(j: &Running, results: &[CheckResult]) -> Verdict {
        let rec = j.record.as_ref();
        let scraped = rec.map_or(0, |r| r.scraped);
        let accounted = rec.map_or(0, |r| r.tally.total());
        Verdict {
            job: j.job.clone(),
            state: rec.map(|r| r.state),
            took: j.took,
            scraped,
            lost: scraped as i64 - accounted as i64,
            results: results.len(),
            duplicates: duplicated(results),
            chunks: rec.map_or((0, 0), |r| (r.chunks_done, r.chunks_total)),
            failed_chunks: rec.map_or(0, |r| r.chunks_failed),
        }
    }

    /// Final in time, nothing lost, nothing twice.
    fn passed(&self) -> bool {
        self.state.is_some_and(JobState::is_final) && self.lost == 0 && self.duplicates == 0
    }
}

/// How many results share their proxy key with another result.
fn duplicated(results: &[CheckResult]) -> usize {
    let mut seen: HashMap<ProxyKey, usize> = HashMap::new();
    for r in results {
        *seen.entry(r.proxy.key()).or_default() += 1;
    }
    seen.values().filter(|n| **n > 1).sum()
}

fn table(verdicts: &[Verdict]) -> String {
    let mut out = format!(
        "{:<24} {:<16} {:>8} {:>8} {:>6} {:>10} {:>8} {:>11} {:>7} {:>8}\n",
        "job", "state", "took s", "scraped", "lost", "results", "dups", "chunks", "failed", "pass"
    );
    for v in verdicts {
        out += &format!(
            "{:<24} {:<16} {:>8} {:>8} {:>6} {:>10} {:>8} {:>11} {:>7} {:>8}\n",
            v.job.to_string(),
            v.state.map_or("missing".into(), |s| s.to_string()),
            v.took
                .map_or("not final".into(), |d| format!("{:.0}", d.as_secs_f64())),
            v.scraped,
            v.lost,
            v.results,
            v.duplicates,
            format!("{}/{}", v.chunks.0, v.chunks.1),
            v.failed_chunks,
            if v.passed() { "yes" } else { "NO" },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxyharvest::outcome::{FailureReason, Outcome, Tally};
    use std::time::SystemTime;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn result(line: &str) -> CheckResult {
        CheckResult {
            proxy: line.parse().unwrap(),
            outcome: Outcome::Dead {
                reason: FailureReason::Refused,
            },
            checked_at: SystemTime::UNIX_EPOCH,
        }
    }

    fn running(state: JobState, scraped: u64, tally: Tally) -> Running {
        let job = JobId::new("soak-test-0").unwrap();
        let json = json!({
            "job_id": job, "state": state, "created_at": 0, "updated_at": 0, "deadline_at": 0,
            "chunks_total": 2, "chunks_done": 2, "chunks_failed": 0, "scraped": scraped,
            "tally": tally, "list_total": null, "plan": null, "check": null, "error": null,
        });
        Running {
            job,
            started: Instant::now(),
            took: Some(Duration::from_secs(42)),
            record: Some(serde_json::from_value(json).expect("a job record")),
        }
    }

    #[test]
    fn duplicates_are_results_sharing_a_proxy_key() {
        let a = result("http://127.0.0.1:1000");
        let b = result("http://127.0.0.1:1001");
        assert_eq!(duplicated(&[a.clone(), b.clone()]), 0);
        assert_eq!(duplicated(&[a.clone(), b.clone(), a.clone()]), 2);
        // The same endpoint under other credentials is another proxy.
        let a_soak1 = result("http://soak1:x@127.0.0.1:1000");
        assert_eq!(duplicated(&[a, a_soak1]), 0);
    }

    #[test]
    fn job_lists_differ_by_credentials_only() {
        let endpoints: Vec<Proxy> = vec!["127.0.0.1:1000".parse().unwrap()];
        let first: Proxy = job_list(&endpoints, 0).trim().parse().unwrap();
        let second: Proxy = job_list(&endpoints, 1).trim().parse().unwrap();
        assert_eq!(first.endpoint, second.endpoint);
        assert_ne!(first.key(), second.key());
        assert_eq!(first.auth.unwrap().username, "soak0");
    }

    #[test]
    fn a_job_passes_only_if_final_with_nothing_lost_or_twice() {
        let tally = |live, dead| Tally {
            live,
            dead,
            unchecked: 0,
            rejected: 0,
        };
        let ok = Verdict::new(&running(JobState::Complete, 10, tally(9, 1)), &[]);
        assert_eq!(ok.lost, 0);
        assert!(ok.passed());
        let lost = Verdict::new(&running(JobState::Complete, 10, tally(8, 1)), &[]);
        assert_eq!(lost.lost, 1);
        assert!(!lost.passed());
        let over = Verdict::new(&running(JobState::Complete, 10, tally(10, 1)), &[]);
        assert_eq!(over.lost, -1);
        assert!(!over.passed());
        let twice = result("http://127.0.0.1:1000");
        let dup = Verdict::new(
            &running(JobState::Complete, 10, tally(9, 1)),
            &[twice.clone(), twice],
        );
        assert_eq!(dup.duplicates, 2);
        assert!(!dup.passed());
        let stuck = Verdict::new(&running(JobState::Checking, 10, tally(9, 1)), &[]);
        assert!(!stuck.passed());
        assert!(table(&[ok, stuck]).contains("NO"));
    }

    #[test]
    fn arguments_are_checked() {
        assert_eq!(parse_args(&[]).unwrap(), Options::default());
        let o = parse_args(&args(&["--proxies", "500", "--jobs", "2", "--kills", "0"])).unwrap();
        assert_eq!((o.proxies, o.jobs, o.kills), (500, 2, 0));
        for bad in [
            &["--jobs", "0"][..],
            &["--proxies", "9"],
            &["--delay-ms", "2000"],
            &["--limit-min", "0"],
            &["--stagger-s"],
            &["--slow"],
        ] {
            assert!(
                matches!(parse_args(&args(bad)), Err(SoakError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
