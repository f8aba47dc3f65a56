//! `proxyharvest get` end to end: the CLI binary reading the list the local stack's bucket holds.
//!
//! Each test publishes a few made-up proxies (documentation addresses in 203.0.113.0/24, never
//! contacted: check results are just data) at random ports through the stack's publisher, runs
//! the built binary, and looks for its own entries in the output, since other tests publish into
//! the same list. Run by `make local-test`; needs `cargo build -p proxyharvest-cli` first.

use std::process::Output;
use std::time::{Duration, SystemTime};

use proxyharvest::list::{CheckParams, PublishedList};
use proxyharvest::outcome::{Alive, Anonymity, CheckResult, FailureReason, Outcome, Timings};
use proxyharvest::proxy::{Credentials, Port, Protocol, ProtocolSet, Proxy};
use proxyharvest_tests::stack::{Stack, cli_binary};

const PASSWORD: &str = "p,a\"ss#1";
const HOUR: Duration = Duration::from_secs(3600);

/// The fixtures live under their own prefix, never in the list the stack's jobs re-check: their
/// made-up addresses must never become check targets.
const PREFIX: &str = "test-get-cli/";

/// Runs `proxyharvest get --stack-manifest $PROXYHARVEST_MANIFEST --list-prefix PREFIX ARGS…`.
async fn get(args: &[&str]) -> Output {
    let manifest = std::env::var("PROXYHARVEST_MANIFEST").expect("PROXYHARVEST_MANIFEST is set");
    tokio::process::Command::new(cli_binary())
        .args([
            "get",
            "--stack-manifest",
            &manifest,
            "--list-prefix",
            PREFIX,
        ])
        .args(args)
        .output()
        .await
        .expect("the CLI runs")
}

/// `get` that must succeed; its stdout.
async fn get_ok(args: &[&str]) -> String {
    let out = get(args).await;
    assert!(
        out.status.success(),
        "get {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Three published proxies at one random address:
/// - `fast`: http and https, elite, checked a minute ago, always alive (uptime 1);
/// - `flaky`: socks5 with credentials, anonymous, alive, dead, alive again (2 of 3, streak 1);
/// - `stale`: socks4, transparent, last checked three hours ago.
struct Fixture {
    host: String,
    user: String,
    fast: u16,
    flaky: u16,
    stale: u16,
}

impl Fixture {
    async fn publish(stack: &Stack) -> Fixture {
        let host = format!("203.0.113.{}", 1 + rand::random::<u8>() % 250);
        let base = 20_000 + rand::random::<u16>() % 40_000;
        let f = Fixture {
            user: format!("u{base}"),
            host,
            fast: base,
            flaky: base + 1,
            stale: base + 2,
        };
        let now = SystemTime::now();
        let minutes = |m: u64| now - Duration::from_secs(60 * m);
        let fast = f.proxy(&[Protocol::Http, Protocol::Https], f.fast, false);
        let flaky = f.proxy(&[Protocol::Socks5], f.flaky, true);
        let results = [
            alive(fast, 5, Anonymity::Elite, minutes(1)),
            alive(flaky.clone(), 7, Anonymity::Anonymous, minutes(30)),
            CheckResult {
                proxy: flaky.clone(),
                outcome: Outcome::Dead {
                    reason: FailureReason::Refused,
                },
                checked_at: minutes(20),
            },
            alive(flaky, 7, Anonymity::Anonymous, minutes(10)),
            alive(
                f.proxy(&[Protocol::Socks4], f.stale, false),
                9,
                Anonymity::Transparent,
                minutes(180),
            ),
        ];
        let params = CheckParams {
            judge: "http://127.0.0.1:9/judge".to_owned(),
            timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
        };
        let publisher = proxyharvest::publish::Publisher::new(
            proxyharvest::bucket::Bucket::new(proxyharvest::aws::s3(&stack.sdk), &stack.bucket),
            PREFIX,
        );
        publisher
            .publish(&results, &params, Some("get-cli-test"), 24 * HOUR)
            .await
            .expect("publish the fixture");
        f
    }

    /// One of ours, speaking `protocols`, with our credentials if `auth`.
    fn proxy(&self, protocols: &[Protocol], port: u16, auth: bool) -> Proxy {
        let auth = auth.then(|| Credentials::new(&self.user, PASSWORD).expect("valid credentials"));
        let host = self.host.parse().expect("a fixture address");
        let mut proxy = Proxy::new(host, Port::new(port).expect("a nonzero port")).with_auth(auth);
        proxy.protocols = protocols.iter().copied().collect();
        proxy
    }

    fn endpoint(&self, port: u16) -> String {
        format!("{}:{port}", self.host)
    }

    /// Which of ours (`fast`, `flaky`, `stale`) appear in `output`, in that order.
    fn ours(&self, output: &str) -> Vec<&'static str> {
        [
            ("fast", self.fast),
            ("flaky", self.flaky),
            ("stale", self.stale),
        ]
        .into_iter()
        .filter(|(_, port)| output.lines().any(|l| l.contains(&self.endpoint(*port))))
        .map(|(name, _)| name)
        .collect()
    }

    /// Our lines of `output`, in output order.
    fn lines<'a>(&self, output: &'a str) -> Vec<&'a str> {
        let ours = [self.fast, self.flaky, self.stale].map(|p| self.endpoint(p));
        output
            .lines()
            .filter(|l| ours.iter().any(|e| l.contains(e.as_str())))
            .collect()
    }
}

fn alive(proxy: Proxy, latency_ms: u32, anonymity: Anonymity, at: SystemTime) -> CheckResult {
    CheckResult {
        outcome: Outcome::Alive(Alive {
            protocols: proxy.protocols,
            latency_ms,
            timings: Timings::default(),
            exit_ip: "203.0.113.254".parse().unwrap(),
            anonymity,
        }),
        proxy: Proxy {
            protocols: ProtocolSet::EMPTY,
            ..proxy
        },
        checked_at: at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn txt_and_url_print_one_line_per_protocol_without_a_filter() {
    let stack = Stack::from_env().await;
    let f = Fixture::publish(&stack).await;
    let (fast, flaky, stale) = (f.endpoint(f.fast), f.endpoint(f.flaky), f.endpoint(f.stale));
    let txt = get_ok(&["--format", "txt"]).await;
    assert_eq!(
        f.lines(&txt),
        [
            format!("http://{fast}"),
            format!("https://{fast}"),
            format!("socks5://{}:{PASSWORD}@{flaky}", f.user),
            format!("socks4://{stale}"),
        ]
    );
    let url = get_ok(&["--format", "url"]).await;
    assert_eq!(
        f.lines(&url),
        [
            format!("http://{fast}"),
            format!("https://{fast}"),
            format!("socks5://{}:p%2Ca%22ss%231@{flaky}", f.user),
            format!("socks4://{stale}"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn a_protocol_filter_prints_bare_txt_lines_and_urls_of_that_scheme() {
    let stack = Stack::from_env().await;
    let f = Fixture::publish(&stack).await;
    let flaky = f.endpoint(f.flaky);
    let txt = get_ok(&["--protocol", "socks5"]).await;
    assert_eq!(f.lines(&txt), [format!("{}:{PASSWORD}@{flaky}", f.user)]);
    let url = get_ok(&["--protocol", "https", "--format", "url"]).await;
    assert_eq!(f.lines(&url), [format!("https://{}", f.endpoint(f.fast))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn json_carries_history_uptime_and_streak() {
    let stack = Stack::from_env().await;
    let f = Fixture::publish(&stack).await;
    let json = get_ok(&["--format", "json", "--protocol", "socks5"]).await;
    let list = PublishedList::from_json(json.as_bytes()).expect("get prints a valid list");
    assert_eq!(list.counts.total, list.proxies.len() as u64);
    assert!(
        list.proxies
            .iter()
            .all(|p| p.protocols.contains(Protocol::Socks5))
    );
    let flaky = list
        .proxies
        .iter()
        .find(|p| p.port.get() == f.flaky && p.host.to_string() == f.host)
        .expect("our socks5 proxy is listed");
    let h = flaky.history;
    assert_eq!((h.checks, h.successes, h.streak), (3, 2, 1));
    let raw: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ours = raw["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == f.flaky && p["host"] == f.host.as_str())
        .unwrap();
    assert_eq!(ours["history"]["uptime"], 0.667);
    assert_eq!(ours["username"], f.user.as_str());
    assert!(ours.get("country").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn filters_select_our_entries() {
    let stack = Stack::from_env().await;
    let f = Fixture::publish(&stack).await;
    for (flags, want) in [
        (&["--anonymity", "anonymous"][..], &["fast", "flaky"][..]),
        (&["--anonymity", "elite"], &["fast"]),
        (&["--max-latency-ms", "7"], &["fast", "flaky"]),
        (&["--min-uptime", "0.9"], &["fast", "stale"]),
        (&["--min-uptime", "0.667"], &["fast", "flaky", "stale"]),
        (&["--max-age", "1h"], &["fast", "flaky"]),
        (&["--max-age", "5m"], &["fast"]),
        (&["--max-age", "2h", "--min-uptime", "1"], &["fast"]),
    ] {
        let out = get_ok(flags).await;
        assert_eq!(f.ours(&out), want, "get {flags:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn csv_goes_to_a_file_with_a_header_and_quoted_credentials() {
    let stack = Stack::from_env().await;
    let f = Fixture::publish(&stack).await;
    let path = std::env::temp_dir().join(format!("get-cli-{}.csv", f.fast));
    let stdout = get_ok(&["--format", "csv", "--output", path.to_str().unwrap()]).await;
    assert_eq!(stdout, "", "--output leaves stdout empty");
    let csv = std::fs::read_to_string(&path).expect("the CSV file was written");
    std::fs::remove_file(&path).ok();
    assert_eq!(
        csv.lines().next(),
        Some(
            "protocols,host,port,username,password,latency_ms,anonymity,exit_ip,last_checked,\
             uptime,streak,checks,successes,first_seen,country,asn"
        )
    );
    // Host and port are columns of their own: find our rows by them.
    let ours = [f.fast, f.flaky, f.stale].map(|port| format!(",{},{port},", f.host));
    let rows: Vec<&str> = csv
        .lines()
        .filter(|row| ours.iter().any(|o| row.contains(o.as_str())))
        .collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(
        rows[0].starts_with(&format!("http https,{},{},,,5,elite,", f.host, f.fast)),
        "{}",
        rows[0]
    );
    let flaky = format!(
        "socks5,{},{},{},\"p,a\"\"ss#1\",7,anonymous,203.0.113.254,",
        f.host, f.flaky, f.user
    );
    assert!(rows[1].starts_with(&flaky), "{}", rows[1]);
    assert!(rows[1].contains(",0.667,1,3,2,"), "{}", rows[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn limit_keeps_the_first_of_the_filtered_lines() {
    let stack = Stack::from_env().await;
    Fixture::publish(&stack).await;
    let all = get_ok(&["--protocol", "http", "--max-age", "1h"]).await;
    let two = get_ok(&["--protocol", "http", "--max-age", "1h", "--limit", "2"]).await;
    let want: Vec<&str> = all.lines().take(2).collect();
    assert!(!want.is_empty());
    assert_eq!(two.lines().collect::<Vec<_>>(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn country_filter_fails_clearly_without_geolocation() {
    let stack = Stack::from_env().await;
    Fixture::publish(&stack).await;
    let out = get(&["--country", "NZ"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("geolocation is not enabled in this list"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
