//! End to end through the local stack: the real function binaries in the local Lambda runtime,
//! the emulator's queues, table and bucket, and a loopback farm of proxies, judge and sources in
//! this process. Run by `make local-test` (ignored by a plain `cargo test`, which has no stack).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use proxyharvest::job::{JobId, JobRecord, JobState};
use proxyharvest::list::PublishedList;
use proxyharvest::outcome::Anonymity;
use proxyharvest::proxy::{Protocol, ProtocolSet, Proxy};
use proxyharvest_tests::farm::{self, Kind};
use proxyharvest_tests::judge::{self, JudgeFormat};
use proxyharvest_tests::sources::{Route, SourcesServer};
use proxyharvest_tests::stack::{self, Stack, chunk_body, job_id as id, loopback_spec};
use serde_json::json;

const JOB_LIMIT: Duration = Duration::from_secs(180);

/// The invariant, and every chunk counted.
fn assert_accounting(rec: &JobRecord) {
    stack::assert_accounting(rec);
    assert_eq!(rec.chunks_done, rec.chunks_total, "{rec:?}");
}

/// The list entries at this farm's addresses, by port.
fn ours(list: &PublishedList, farm: &farm::Farm) -> BTreeMap<u16, proxyharvest::list::ListedProxy> {
    let ports: Vec<u16> = (0..farm.len()).map(|i| farm.endpoint(i).port()).collect();
    list.proxies
        .iter()
        .filter(|p| {
            p.host.ip() == Some(IpAddr::V4(Ipv4Addr::LOCALHOST)) && ports.contains(&p.port.get())
        })
        .map(|p| (p.port.get(), p.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn a_job_runs_from_trigger_to_the_published_list() {
    let stack = Stack::from_env().await;
    let kinds = vec![
        Kind::Elite,
        Kind::Anonymous,
        Kind::Transparent,
        Kind::HttpNoConnect,
        Kind::Socks4,
        Kind::Socks5,
        Kind::Socks5Auth {
            user: "u".into(),
            pass: "p".into(),
        },
        Kind::HttpAuth {
            user: "a".into(),
            pass: "b".into(),
        },
        Kind::Blackhole,
        Kind::Refused,
        Kind::Garbage,
        Kind::CaptivePortal,
        Kind::Honeypot,
    ];
    let special = farm::start(&kinds).await;
    // Enough fast proxies for several chunks (chunks hold 2 checks x 26 rounds here).
    let bulk = farm::start_many(Kind::Elite, 90).await;
    let judge = judge::start(JudgeFormat::Own).await;
    let (tls_judge, ca) = judge::start_tls(JudgeFormat::Own).await;
    let mut list = special.list_text() + &bulk.list_text();
    // Hostile entries: the metadata address and junk.
    list += "169.254.169.254:80\nhttp://0.0.0.0:8080\nnot a proxy 12\n1.2.3.4:0\n";
    let sources = SourcesServer::start(vec![("/list.txt".into(), Route::text(list))]).await;

    let job = id("e2e-full");
    let config = format!(
        "[check]\ntimeout_ms = 4000\nconnect_timeout_ms = 1000\nconcurrency = 2\n\n[[sources]]\nurl = \"{}\"\n",
        sources.url("/list.txt")
    );
    let started = stack
        .invoke_trigger(&json!({
            "job_id": job,
            "config_toml": config,
            "judge": judge.url().to_string(),
            "judge_https": tls_judge.url().to_string(),
            "judge_ca_pem": std::fs::read_to_string(&ca).unwrap(),
            "allow_private": true,
        }))
        .await
        .expect("the trigger starts the job");
    assert!(started.created);
    assert!(started.chunks >= 2, "several chunks expected: {started:?}");
    assert_eq!(started.sources.len(), 1);
    assert_eq!(started.sources[0].invalid, 2, "{:?}", started.sources[0]);

    let rec = stack.wait_final(&job, JOB_LIMIT).await;
    assert_eq!(rec.state, JobState::Complete, "{rec:?}");
    assert_accounting(&rec);
    // 169.254.169.254 and 0.0.0.0 are never contacted, even with private targets allowed.
    assert!(rec.tally.rejected >= 2, "{rec:?}");
    assert!(rec.tally.live >= 91, "{rec:?}");

    let published = stack.publisher.published().await.unwrap().expect("a list");
    let mine = ours(&published, &special);
    let expect: Vec<(usize, ProtocolSet, Anonymity)> = vec![
        (
            0,
            [Protocol::Http, Protocol::Https].into_iter().collect(),
            Anonymity::Elite,
        ),
        (
            1,
            [Protocol::Http, Protocol::Https].into_iter().collect(),
            Anonymity::Anonymous,
        ),
        (
            2,
            [Protocol::Http, Protocol::Https].into_iter().collect(),
            Anonymity::Transparent,
        ),
        (3, ProtocolSet::single(Protocol::Http), Anonymity::Elite),
        (4, ProtocolSet::single(Protocol::Socks4), Anonymity::Elite),
        (
            5,
            [Protocol::Socks4, Protocol::Socks5].into_iter().collect(),
            Anonymity::Elite,
        ),
        (6, ProtocolSet::single(Protocol::Socks5), Anonymity::Elite),
        (
            7,
            [Protocol::Http, Protocol::Https].into_iter().collect(),
            Anonymity::Elite,
        ),
    ];
    for (i, protocols, anonymity) in &expect {
        let port = special.endpoint(*i).port();
        let entry = mine
            .get(&port)
            .unwrap_or_else(|| panic!("{:?} at {port} should be listed", kinds[*i]));
        assert_eq!(entry.anonymity, *anonymity, "{:?}", kinds[*i]);
        assert_eq!(entry.exit_ip, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(
            entry.protocols.iter().all(|p| protocols.contains(p))
                && protocols.iter().any(|p| entry.protocols.contains(p)),
            "{:?}: listed {:?}, expected within {:?}",
            kinds[*i],
            entry.protocols,
            protocols
        );
    }
    assert_eq!(
        mine.len(),
        expect.len(),
        "only the live ones are listed: {mine:?}"
    );
    assert_eq!(ours(&published, &bulk).len(), bulk.len());
    let latencies: Vec<u32> = published.proxies.iter().map(|p| p.latency_ms).collect();
    assert!(latencies.windows(2).all(|w| w[0] <= w[1]), "fastest first");
    let credentials = mine[&special.endpoint(6).port()].credentials().unwrap();
    assert_eq!(
        (credentials.username.as_str(), credentials.password.as_str()),
        ("u", "p")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn a_second_job_merges_into_the_list() {
    let stack = Stack::from_env().await;
    let judge = judge::start(JudgeFormat::Httpbin).await;
    let first = farm::start(&[Kind::Elite, Kind::Socks5]).await;
    let second = farm::start(&[Kind::Elite, Kind::Socks4]).await;
    let sources = SourcesServer::start(vec![
        ("/a.txt".into(), Route::text(first.list_text())),
        ("/b.txt".into(), Route::text(second.list_text())),
    ])
    .await;
    let run = |path: &str, job: &JobId| {
        json!({
            "job_id": job,
            "sources": [sources.url(path)],
            "judge": judge.url().to_string(),
            "allow_private": true,
        })
    };
    let job1 = id("e2e-merge1");
    stack.invoke_trigger(&run("/a.txt", &job1)).await.unwrap();
    let rec1 = stack.wait_final(&job1, JOB_LIMIT).await;
    assert_eq!(rec1.state, JobState::Complete);
    assert_accounting(&rec1);
    let after1 = stack.publisher.published().await.unwrap().unwrap();
    assert_eq!(ours(&after1, &first).len(), 2);

    let job2 = id("e2e-merge2");
    let started = stack.invoke_trigger(&run("/b.txt", &job2)).await.unwrap();
    // The listed proxies of the first job are re-checked with the second.
    assert!(started.scraped >= 4, "{started:?}");
    let rec2 = stack.wait_final(&job2, JOB_LIMIT).await;
    assert_eq!(rec2.state, JobState::Complete);
    assert_accounting(&rec2);
    let after2 = stack.publisher.published().await.unwrap().unwrap();
    let kept = ours(&after2, &first);
    assert_eq!(kept.len(), 2, "the first job's proxies are still listed");
    assert_eq!(
        ours(&after2, &second).len(),
        2,
        "the second job's proxies are added"
    );
    for p in kept.values() {
        assert!(
            p.history.checks >= 2,
            "history carries over: {:?}",
            p.history
        );
        assert_eq!(p.history.checks, p.history.successes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn a_duplicated_chunk_is_counted_once() {
    let stack = Stack::from_env().await;
    let judge = judge::start(JudgeFormat::Azenv).await;
    let farm = farm::start(&[Kind::Elite, Kind::Refused, Kind::Socks5]).await;
    let proxies: Vec<Proxy> = farm.plain_proxies();
    let job = id("e2e-dup");
    stack
        .start_checking_job(
            &job,
            2,
            proxies.len() as u64,
            SystemTime::now() + Duration::from_secs(600),
            &judge.url(),
        )
        .await;
    let spec = loopback_spec(&judge.url(), 4000);
    let chunk = |chunk_id: &str, proxies: &[Proxy]| chunk_body(&job, chunk_id, &spec, proxies);
    let c0 = chunk("c00000", &proxies[..2]);
    let c1 = chunk("c00001", &proxies[2..]);
    // The same chunk twice at once, then the other one.
    tokio::join!(stack.send_chunk_body(&c0), stack.send_chunk_body(&c0));
    stack.send_chunk_body(&c1).await;

    let rec = stack.wait_final(&job, JOB_LIMIT).await;
    assert_eq!(rec.state, JobState::Complete);
    assert_eq!(rec.chunks_done, 2);
    assert_accounting(&rec);
    assert_eq!((rec.tally.live, rec.tally.dead), (2, 1), "{rec:?}");
    let results = stack.table.load_results(&job).await.unwrap();
    assert_eq!(results.len(), proxies.len(), "results stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn malformed_messages_are_dead_lettered_while_jobs_complete() {
    let stack = Stack::from_env().await;
    let judge = judge::start(JudgeFormat::Own).await;
    let farm = farm::start(&[Kind::Elite]).await;
    let sources =
        SourcesServer::start(vec![("/l.txt".into(), Route::text(farm.list_text()))]).await;
    let marker = format!("poison-{:08x}", rand::random::<u32>());
    stack.send_chunk_body(&format!("not json {marker}")).await;
    stack
        .send_chunk_body(&format!(r#"{{"v":99,"job_id":"{marker}"}}"#))
        .await;
    stack
        .send_chunk_body(&format!(
            r#"{{"v":1,"job_id":"{marker}-unknown","chunk_id":"c0","check":{{"judge":"http://127.0.0.1:1/","timeout_ms":1000,"connect_timeout_ms":1000,"max_response_bytes":1024,"concurrency":1,"allow_private":true}},"proxies":[{{"host":"127.0.0.1","port":1}}]}}"#
        ))
        .await;
    let job = id("e2e-poison");
    stack
        .invoke_trigger(&json!({
            "job_id": job,
            "sources": [sources.url("/l.txt")],
            "judge": judge.url().to_string(),
            "allow_private": true,
        }))
        .await
        .unwrap();
    let rec = stack.wait_final(&job, JOB_LIMIT).await;
    assert_eq!(rec.state, JobState::Complete);
    assert_accounting(&rec);
    // Each goes to the dead-letter queue at once; no job can claim them, so the reaper moves
    // them on to the poison queue, where they stay for inspection.
    for _ in 0..3 {
        let body = stack
            .await_poison(&marker, Duration::from_secs(60))
            .await
            .expect("each poison message ends in the poison queue");
        assert!(body.contains(&marker));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn a_schedule_event_delivered_twice_makes_one_job() {
    let stack = Stack::from_env().await;
    // A slot far in the past, unique to this run, so it names a job no one else makes.
    let minute = 1_000_000 + u64::from(rand::random::<u16>());
    let slot = SystemTime::UNIX_EPOCH + Duration::from_secs(minute * 60);
    let time = humantime::format_rfc3339_seconds(slot).to_string();
    let event = json!({"version":"0","id":"1","detail-type":"Scheduled Event","source":"aws.events",
        "account":"123456789012","time": time,"region":"us-east-1",
        "resources":["arn:aws:events:us-east-1:123456789012:rule/x"],"detail":{}});
    let (a, b) = tokio::join!(stack.invoke_trigger(&event), stack.invoke_trigger(&event));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.job_id, b.job_id);
    assert_eq!(a.job_id, JobId::for_slot(slot));
    assert_eq!(
        [a.created, b.created].iter().filter(|c| **c).count(),
        1,
        "exactly one invocation creates the job"
    );
    // (The job itself uses the deployment's default sources and judge, which need the internet;
    // only its creation is under test here.)
    let rec = stack
        .table
        .get_job(&a.job_id)
        .await
        .unwrap()
        .expect("one job");
    assert_ne!(rec.state, JobState::Failed, "{rec:?}");
}
