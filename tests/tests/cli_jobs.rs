//! `proxyharvest run`, `wait`, `status` and `jobs` as people use them: the real binary against the
//! local stack, with the exit codes that say what happened. Run by `make local-test`.

use std::process::Output;

use proxyharvest::job::JobRecord;
use proxyharvest_tests::farm::{self, Kind};
use proxyharvest_tests::judge::{self, JudgeFormat};
use proxyharvest_tests::sources::{Route, SourcesServer};
use proxyharvest_tests::stack::cli_binary;

async fn cli(args: &[&str]) -> Output {
    tokio::process::Command::new(cli_binary())
        .args(args)
        .output()
        .await
        .expect("the CLI runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn run_waits_for_the_job_and_status_and_jobs_report_it() {
    let judge = judge::start(JudgeFormat::Own).await;
    let farm = farm::start(&[Kind::Elite, Kind::Socks5, Kind::Refused]).await;
    let list: String = farm.list_text();
    let sources = SourcesServer::start(vec![
        ("/l.txt".into(), Route::text(list)),
        ("/gone".into(), Route::Status(404)),
    ])
    .await;
    let (good, gone, judge_url) = (
        sources.url("/l.txt"),
        sources.url("/gone"),
        judge.url().to_string(),
    );
    let out = cli(&[
        "run",
        "--source",
        &good,
        "--source",
        &gone,
        "--judge",
        &judge_url,
        "--allow-private",
        "--json",
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let rec: JobRecord = serde_json::from_slice(&out.stdout).expect("--json prints the job record");
    assert_eq!(rec.state.as_str(), "complete");
    assert_eq!(rec.tally.total(), rec.scraped, "accounting");
    assert!(rec.tally.live >= 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("source FAIL") && err.contains("/gone"),
        "{err}"
    );
    let job = rec.job_id.to_string();

    let out = cli(&["status", &job]).await;
    assert_eq!(out.status.code(), Some(0));
    let status = text(&out.stdout);
    assert!(status.contains(&format!("job {job} complete")), "{status}");
    assert!(
        status.contains("source ok") && status.contains("source FAIL"),
        "{status}"
    );

    let out = cli(&["wait", &job]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "waiting for a finished job ends at once"
    );

    let out = cli(&["jobs", "--limit", "200"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains(&job), "{}", text(&out.stdout));

    let out = cli(&["status", "no-such-job"]).await;
    assert_eq!(out.status.code(), Some(1), "an unknown job is an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn too_few_live_proxies_has_its_own_exit_code() {
    let judge = judge::start(JudgeFormat::Own).await;
    let farm = farm::start(&[Kind::Elite, Kind::Garbage]).await;
    let list: String = farm.list_text();
    let sources = SourcesServer::start(vec![("/l.txt".into(), Route::text(list))]).await;
    let (src, judge_url) = (sources.url("/l.txt"), judge.url().to_string());
    let out = cli(&[
        "run",
        "--source",
        &src,
        "--judge",
        &judge_url,
        "--allow-private",
        "--min-live",
        "1000",
    ])
    .await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--min-live asked for 1000"));
    assert!(
        text(&out.stdout).contains("complete"),
        "the job itself completed"
    );
}
