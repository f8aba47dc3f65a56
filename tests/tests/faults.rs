//! The fault matrix, end to end through the local stack: killed validators, poison messages,
//! chunks that cannot fit their deadline, stalled jobs, concurrent and replayed aggregation, and
//! hostile sources and proxies. Every test asserts the accounting invariant. Run by
//! `make local-test` (ignored by a plain `cargo test`, which has no stack).

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use proxyharvest::bucket::Bucket;
use proxyharvest::job::{AggregateMessage, JobRecord, JobState, MESSAGE_VERSION};
use proxyharvest::list::CheckParams;
use proxyharvest::outcome::{Alive, Anonymity, CheckResult, Outcome, Timings};
use proxyharvest::proxy::{Protocol, ProtocolSet, Proxy};
use proxyharvest::publish::Publisher;
use proxyharvest_tests::farm::{self, Kind};
use proxyharvest_tests::judge::{self, JudgeFormat};
use proxyharvest_tests::sources::{Route, SourcesServer};
use proxyharvest_tests::stack::{
    Stack, assert_accounting, chunk_body, job_id as id, loopback_spec,
};
use serde_json::json;

const JOB_LIMIT: Duration = Duration::from_secs(240);

fn timed_out(status: &serde_json::Value, function: &str) -> u64 {
    status["functions"][function]["invocations_timed_out"]
        .as_u64()
        .unwrap_or(0)
}

/// 1. A validator killed mid-chunk: the message comes back after its visibility timeout, the
///    chunk is counted once, the job completes with correct counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn a_killed_validator_s_chunk_comes_back_and_is_counted_once() {
    let stack = Stack::from_env().await;
    let validator = stack.function("Validator");
    let judge = judge::start(JudgeFormat::Own).await;
    // Slow but alive: the validator is busy long enough to be killed mid-chunk.
    let farm = farm::start(&[
        Kind::Slow {
            delay: Duration::from_millis(2500),
        },
        Kind::Slow {
            delay: Duration::from_millis(2500),
        },
    ])
    .await;
    let job = id("fault-kill");
    stack
        .start_checking_job(
            &job,
            1,
            2,
            SystemTime::now() + Duration::from_secs(900),
            &judge.url(),
        )
        .await;
    stack
        .send_chunk_body(&chunk_body(
            &job,
            "c00000",
            &loopback_spec(&judge.url(), 4000),
            &farm.plain_proxies(),
        ))
        .await;
    // Wait until a validator has the chunk (the farm sees its connections), then kill it.
    let start = Instant::now();
    while farm.accepts() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no validator picked the chunk up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = stack.kill_busy(&validator).await;
    assert!(killed >= 1, "a busy validator was killed");
    let rec = stack.table.get_job(&job).await.unwrap().unwrap();
    assert_eq!(rec.chunks_done, 0, "the killed invocation counted nothing");

    let rec = stack.wait_final(&job, JOB_LIMIT).await;
    assert_eq!(rec.state, JobState::Complete, "{rec:?}");
    assert_eq!((rec.chunks_done, rec.chunks_total), (1, 1));
    assert_eq!(rec.tally.live, 2, "{rec:?}");
    assert_accounting(&rec);
    assert_eq!(stack.table.load_results(&job).await.unwrap().len(), 2);
}

/// 3. A poison message for a known job: dead-letter queue, job `complete_partial`, its proxies
///    `unchecked`; the job's other chunk is checked normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn a_poison_chunk_ends_its_job_complete_partial() {
    let stack = Stack::from_env().await;
    let judge = judge::start(JudgeFormat::Own).await;
    let farm = farm::start(&[Kind::Elite, Kind::Socks5]).await;
    // More proxies than a chunk may hold: rejected at once, never retried.
    let oversized: Vec<Proxy> = (1..=400u16)
        .map(|p| {
            format!("socks5://203.0.113.7:{}", 10_000 + p)
                .parse()
                .unwrap()
        })
        .collect();
    let job = id("fault-poison");
    let scraped = (oversized.len() + 2) as u64;
    stack
        .start_checking_job(
            &job,
            2,
            scraped,
            SystemTime::now() + Duration::from_secs(900),
            &judge.url(),
        )
        .await;
    let spec = loopback_spec(&judge.url(), 4000);
    stack
        .send_chunk_body(&chunk_body(&job, "c00000", &spec, &farm.plain_proxies()))
        .await;
    stack
        .send_chunk_body(&chunk_body(&job, "c00001", &spec, &oversized))
        .await;
    let rec = stack.wait_final(&job, JOB_LIMIT).await;
    assert_eq!(rec.state, JobState::CompletePartial, "{rec:?}");
    assert_eq!(rec.failed_chunks, vec!["c00001".to_owned()]);
    assert_eq!(rec.tally.unchecked, oversized.len() as u64);
    assert_eq!(rec.tally.live, 2);
    assert_accounting(&rec);
    // The per-job report is in the bucket once the job is final.
    let report = Bucket::new(proxyharvest::aws::s3(&stack.sdk), &stack.bucket)
        .get(&format!("reports/{job}.json"))
        .await
        .unwrap()
        .expect("a report");
    let report: JobRecord = serde_json::from_slice(&report.body).unwrap();
    assert_eq!(report.state, JobState::CompletePartial);
    assert_eq!(report.failed_chunks, rec.failed_chunks);
}

/// 4. A chunk whose checks cannot all fit the deadline: continuation chunks carry the rest,
///    nothing is lost, no invocation is killed by the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn a_chunk_too_big_for_its_deadline_continues_instead_of_timing_out() {
    let stack = Stack::from_env().await;
    let validator = stack.function("Validator");
    let judge = judge::start(JudgeFormat::Own).await;
    // 24 proxies of 2.5 s each, 2 at a time: 30 s of checking, in a validator that has 20 s.
    let kinds = vec![
        Kind::Slow {
            delay: Duration::from_millis(2500)
        };
        24
    ];
    let farm = farm::start(&kinds).await;
    let job = id("fault-cont");
    stack
        .start_checking_job(
            &job,
            1,
            kinds.len() as u64,
            SystemTime::now() + Duration::from_secs(900),
            &judge.url(),
        )
        .await;
    let before = timed_out(&stack.runtime_status().await, &validator);
    stack
        .send_chunk_body(&chunk_body(
            &job,
            "c00000",
            &loopback_spec(&judge.url(), 4000),
            &farm.plain_proxies(),
        ))
        .await;
    let rec = stack.wait_final(&job, JOB_LIMIT).await;
    assert_eq!(rec.state, JobState::Complete, "{rec:?}");
    assert!(rec.chunks_total >= 2, "continuations were sent: {rec:?}");
    assert_eq!(rec.chunks_done, rec.chunks_total);
    assert_eq!(
        rec.tally.live,
        kinds.len() as u64,
        "every proxy checked: {rec:?}"
    );
    assert_accounting(&rec);
    let after = timed_out(&stack.runtime_status().await, &validator);
    assert_eq!(after, before, "no validator ran into its timeout");
}

/// A job that stops making progress past its deadline is ended `expired` by the sweep, and
/// what it had is still merged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn a_stalled_job_is_expired_by_the_sweep_and_its_results_are_merged() {
    let stack = Stack::from_env().await;
    let judge = judge::start(JudgeFormat::Own).await;
    let farm = farm::start(&[Kind::Elite]).await;
    let job = id("fault-expire");
    // Two chunks planned, one ever sent: the job can never complete on its own.
    stack
        .start_checking_job(&job, 2, 3, SystemTime::now(), &judge.url())
        .await;
    stack
        .send_chunk_body(&chunk_body(
            &job,
            "c00000",
            &loopback_spec(&judge.url(), 4000),
            &farm.plain_proxies(),
        ))
        .await;
    let start = Instant::now();
    while stack
        .table
        .get_job(&job)
        .await
        .unwrap()
        .unwrap()
        .chunks_done
        < 1
    {
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Past its deadline, quiet for longer than the local stack's stall limit (3 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sweep = stack.manifest["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str().unwrap_or("").ends_with("-sweep"))
        .expect("the sweep schedule")["name"]
        .as_str()
        .unwrap()
        .to_owned();
    stack.fire_schedule(&sweep).await;
    let rec = stack.wait_final(&job, JOB_LIMIT).await;
    assert_eq!(rec.state, JobState::Expired, "{rec:?}");
    assert_eq!(rec.tally.live, 1);
    assert_eq!(
        rec.tally.unchecked, 2,
        "the chunk never counted is unchecked"
    );
    assert_accounting(&rec);
    let list = stack.publisher.published().await.unwrap().unwrap();
    let port = farm.endpoint(0).port();
    assert!(
        list.proxies.iter().any(|p| p.port.get() == port),
        "the expired job's live proxy is published"
    );
}

fn alive_result(proxy: &str, latency_ms: u32, at: SystemTime) -> CheckResult {
    CheckResult {
        proxy: proxy.parse().unwrap(),
        outcome: Outcome::Alive(Alive {
            protocols: ProtocolSet::single(Protocol::Http),
            latency_ms,
            timings: Timings::default(),
            exit_ip: "203.0.113.200".parse().unwrap(),
            anonymity: Anonymity::Elite,
        }),
        checked_at: at,
    }
}

/// 6. Two jobs publishing at the same moment, many times over: the list always holds the union.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn concurrent_publishers_never_lose_an_update() {
    let stack = Stack::from_env().await;
    let prefix = format!("test-concurrent-{:08x}/", rand::random::<u32>());
    let publisher = Publisher::new(
        Bucket::new(proxyharvest::aws::s3(&stack.sdk), &stack.bucket),
        &prefix,
    );
    let params = CheckParams {
        judge: "http://judge.test/".into(),
        timeout_ms: 1000,
        connect_timeout_ms: 1000,
    };
    let mut expected = BTreeSet::new();
    for round in 0..12u16 {
        let now = SystemTime::now();
        let a = vec![alive_result(
            &format!("http://203.0.113.1:{}", 1000 + round),
            10,
            now,
        )];
        let b = vec![alive_result(
            &format!("http://203.0.113.2:{}", 1000 + round),
            20,
            now,
        )];
        let c = vec![alive_result(
            &format!("http://203.0.113.3:{}", 1000 + round),
            30,
            now,
        )];
        let (ra, rb, rc) = tokio::join!(
            publisher.publish(&a, &params, Some("a"), Duration::from_secs(3600)),
            publisher.publish(&b, &params, Some("b"), Duration::from_secs(3600)),
            publisher.publish(&c, &params, Some("c"), Duration::from_secs(3600)),
        );
        ra.unwrap();
        rb.unwrap();
        rc.unwrap();
        for r in a.iter().chain(&b).chain(&c) {
            expected.insert(r.proxy.key().to_string());
        }
        let list = publisher.published().await.unwrap().unwrap();
        let got: BTreeSet<String> = list.proxies.iter().map(|p| p.key().to_string()).collect();
        assert_eq!(got, expected, "round {round}: an update was lost");
        assert_eq!(list.counts.total as usize, expected.len());
        // The text lists converge on the last document.
        let all = Bucket::new(proxyharvest::aws::s3(&stack.sdk), &stack.bucket)
            .get(&format!("{prefix}http.txt"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(all.body).unwrap().lines().count(),
            expected.len(),
            "round {round}: text list behind the document"
        );
    }
}

/// 7. The aggregator dies after reading and before writing the list: the redelivered aggregate
///    message finishes the job once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn an_aggregator_dead_before_writing_is_finished_by_the_redelivery() {
    half_aggregated(false).await;
}

/// 7'. The aggregator dies after writing the list and before finishing the job: the redelivered
///     message finishes it once, and the list counts the job's checks once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn a_redelivered_aggregate_message_finishes_a_half_aggregated_job_once() {
    half_aggregated(true).await;
}

/// Leaves a job as a crashed aggregator would — taken to `aggregating`, the list written or not —
/// then delivers its aggregate message twice.
async fn half_aggregated(wrote_list: bool) {
    let stack = Stack::from_env().await;
    let judge = judge::start(JudgeFormat::Own).await;
    let farm = farm::start(&[Kind::Elite]).await;
    let job = id("fault-agg");
    stack
        .start_checking_job(
            &job,
            1,
            1,
            SystemTime::now() + Duration::from_secs(900),
            &judge.url(),
        )
        .await;
    // The chunk is checked and counted, as a validator would, but the aggregate message is held
    // back: it is what a crashed aggregator leaves behind.
    let checker = proxyharvest::check::Checker::new(
        proxyharvest::pipeline::validator::check_config(&loopback_spec(&judge.url(), 4000))
            .unwrap(),
    )
    .await
    .unwrap();
    let results = checker.check_all(farm.plain_proxies(), None, |_| {}).await;
    let stored = stack
        .table
        .store_results(&job, "c00000", &results)
        .await
        .unwrap();
    let tally = stored.iter().map(|r| &r.outcome).collect();
    stack
        .table
        .count_chunk(&job, "c00000", &tally, false)
        .await
        .unwrap();
    // First aggregator: took the job to aggregating (and maybe wrote the list), then died.
    assert!(matches!(
        stack.table.begin_aggregation(&job).await.unwrap(),
        proxyharvest::table::Aggregation::Go(_)
    ));
    if wrote_list {
        let params = CheckParams {
            judge: judge.url().to_string(),
            timeout_ms: 4000,
            connect_timeout_ms: 1000,
        };
        stack
            .publisher
            .publish(
                &stored,
                &params,
                Some(job.as_str()),
                Duration::from_secs(3600),
            )
            .await
            .unwrap();
    }
    // The message comes back (twice, even): the job ends once.
    let body = serde_json::to_string(&AggregateMessage {
        v: MESSAGE_VERSION,
        job_id: job.clone(),
    })
    .unwrap();
    for _ in 0..2 {
        stack
            .sqs
            .send_message()
            .queue_url(&stack.aggregate_queue_url)
            .message_body(&body)
            .send()
            .await
            .unwrap();
    }
    let rec = stack.wait_final(&job, JOB_LIMIT).await;
    assert_eq!(rec.state, JobState::Complete);
    assert_accounting(&rec);
    let list = stack.publisher.published().await.unwrap().unwrap();
    let port = farm.endpoint(0).port();
    let entry = list
        .proxies
        .iter()
        .find(|p| p.port.get() == port)
        .expect("listed");
    assert_eq!(
        entry.history.checks, 1,
        "the replayed merge counted nothing"
    );
}

/// 8. Hostile sources and proxies in one job: it goes on with what works, and the report says
///    what happened to each source.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn hostile_sources_and_proxies_do_not_stop_a_job() {
    let stack = Stack::from_env().await;
    let judge = judge::start(JudgeFormat::Azenv).await;
    let farm = farm::start(&[
        Kind::Elite,
        Kind::Transparent,
        Kind::Honeypot,
        Kind::Garbage,
        Kind::CaptivePortal,
        Kind::EndlessBody,
        Kind::Blackhole,
        Kind::Reset,
    ])
    .await;
    let good: String = farm
        .proxies()
        .iter()
        .map(|(_, p)| format!("{p}\n"))
        .chain([
            "169.254.169.254:80\n".into(),
            "socks5://0.0.0.0:1080\n".into(),
        ])
        .collect();
    let junk = "not a proxy 1\n".repeat(1_000_000);
    let sources = SourcesServer::start(vec![
        ("/good".into(), Route::text(good)),
        ("/missing".into(), Route::Status(404)),
        ("/hang".into(), Route::Hang),
        ("/endless".into(), Route::Endless),
        (
            "/binary".into(),
            Route::Body {
                content_type: "application/octet-stream",
                body: (0..=255u8).cycle().take(100_000).collect(),
            },
        ),
        ("/junk".into(), Route::text(junk)),
        (
            "/to-metadata".into(),
            Route::Redirect("http://169.254.169.254/latest/meta-data/".into()),
        ),
        (
            "/drip".into(),
            Route::SlowDrip {
                body: "1.2.3.4:80\n".repeat(10_000).into_bytes(),
                bytes_per_sec: 1000,
            },
        ),
    ])
    .await;
    let paths = [
        "/good",
        "/missing",
        "/hang",
        "/endless",
        "/binary",
        "/junk",
        "/to-metadata",
        "/drip",
    ];
    let mut config = String::from(
        "[check]\ntimeout_ms = 3000\nconnect_timeout_ms = 1000\n\n\
         [fetch]\ntimeout_ms = 3000\nconnect_timeout_ms = 1000\nmax_bytes = 20971520\nretries = 0\n",
    );
    for p in paths {
        config += &format!("\n[[sources]]\nurl = \"{}\"\n", sources.url(p));
    }
    let job = id("fault-hostile");
    let started = stack
        .invoke_trigger(&json!({
            "job_id": job,
            "config_toml": config,
            "judge": judge.url().to_string(),
            "allow_private": true,
        }))
        .await
        .expect("the trigger starts the job");
    let rec = stack.wait_final(&job, JOB_LIMIT).await;
    assert_eq!(rec.state, JobState::Complete, "{rec:?}");
    assert_accounting(&rec);
    assert!(
        rec.tally.live >= 2,
        "elite and transparent are alive: {rec:?}"
    );
    assert!(
        rec.tally.rejected >= 2,
        "metadata and 0.0.0.0 are never contacted: {rec:?}"
    );
    let reports = &rec.sources;
    assert_eq!(reports.len(), paths.len(), "{reports:?}");
    let report = |path: &str| {
        reports
            .iter()
            .find(|r| r.source.ends_with(path))
            .unwrap_or_else(|| panic!("no report for {path}: {reports:?}"))
    };
    assert!(report("/good").error.is_none());
    for path in ["/missing", "/hang", "/endless", "/to-metadata", "/drip"] {
        assert!(report(path).error.is_some(), "{path}: {:?}", report(path));
    }
    assert_eq!(report("/binary").parsed, 0);
    assert_eq!(report("/junk").invalid, 1_000_000);
    assert_eq!(started.sources.len(), paths.len());
}
