//! `fetch_all` against the loopback list server: retries, timeouts, caps, redirects and broken
//! sources, each seen from outside through the reports and the server's hit counts.

use std::time::{Duration, Instant};

use proxyharvest::http::HttpOptions;
use proxyharvest::proxy::Protocol;
use proxyharvest::source::{
    FetchOptions, Fetched, Source, SourceLocation, SourceReport, fetch_all,
};
use proxyharvest_tests::sources::{Route, SourcesServer};

/// Fast options: short timeouts and backoff, private addresses refused (the default).
fn options() -> FetchOptions {
    FetchOptions {
        http: HttpOptions {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            ..HttpOptions::default()
        },
        retries: 2,
        backoff: Duration::from_millis(10),
        ..FetchOptions::default()
    }
}

fn source(location: &str) -> Source {
    Source::new(location.parse::<SourceLocation>().unwrap())
}

async fn fetch_one(location: &str, opts: &FetchOptions) -> (Fetched, SourceReport) {
    let fetched = fetch_all(&[source(location)], opts).await;
    let report = fetched.reports[0].clone();
    (fetched, report)
}

fn error_of(report: &SourceReport) -> &str {
    report
        .error
        .as_deref()
        .expect("the source should have failed")
}

#[tokio::test]
async fn a_list_is_fetched_and_parsed() {
    let server = SourcesServer::start(vec![(
        "/list.txt".to_owned(),
        Route::text("1.2.3.4:80\nsocks5://1.2.3.5:1080\n1.2.3.4:80\nnot-a-proxy:0\n"),
    )])
    .await;
    let (fetched, report) = fetch_one(&server.url("/list.txt"), &options()).await;
    assert_eq!(report.error, None);
    assert!(report.fetched);
    assert_eq!(
        (report.parsed, report.invalid, report.duplicates),
        (2, 1, 1)
    );
    assert_eq!((report.attempts, report.bytes), (1, 58));
    assert_eq!(report.source, server.url("/list.txt"));
    let lines: Vec<String> = fetched.proxies.iter().map(ToString::to_string).collect();
    assert_eq!(lines, ["1.2.3.4:80", "socks5://1.2.3.5:1080"]);
}

#[tokio::test]
async fn not_found_is_final() {
    let server = SourcesServer::start(vec![]).await;
    let (fetched, report) = fetch_one(&server.url("/missing"), &options()).await;
    assert!(!report.fetched);
    assert_eq!(error_of(&report), "HTTP status 404 Not Found");
    assert_eq!(report.attempts, 1);
    assert_eq!(server.hits("/missing"), 1, "a 404 is not retried");
    assert!(fetched.proxies.is_empty());
}

#[tokio::test]
async fn server_error_then_success_honours_retry_after() {
    let server = SourcesServer::start(vec![(
        "/flaky".to_owned(),
        Route::StatusThen {
            status: 500,
            retry_after: Some(1),
            times: 1,
            then: Box::new(Route::text("1.2.3.4:80\n")),
        },
    )])
    .await;
    let started = Instant::now();
    let (fetched, report) = fetch_one(&server.url("/flaky"), &options()).await;
    let elapsed = started.elapsed();
    assert_eq!(report.error, None);
    assert_eq!((report.attempts, server.hits("/flaky")), (2, 2));
    assert_eq!(fetched.proxies.len(), 1);
    // The backoff alone would wait about 10 ms; Retry-After asked for a second.
    assert!(elapsed >= Duration::from_secs(1), "waited only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "waited {elapsed:?}");
}

#[tokio::test]
async fn retry_after_is_capped() {
    let server = SourcesServer::start(vec![(
        "/busy".to_owned(),
        Route::StatusThen {
            status: 429,
            retry_after: Some(3600),
            times: 2,
            then: Box::new(Route::text("1.2.3.4:80\n")),
        },
    )])
    .await;
    let opts = FetchOptions {
        max_retry_after: Duration::from_millis(100),
        ..options()
    };
    let started = Instant::now();
    let (_, report) = fetch_one(&server.url("/busy"), &opts).await;
    assert_eq!(report.error, None);
    assert_eq!((report.attempts, server.hits("/busy")), (3, 3));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retries_stop_after_the_configured_count() {
    let server = SourcesServer::start(vec![("/down".to_owned(), Route::Status(503))]).await;
    let (_, report) = fetch_one(&server.url("/down"), &options()).await;
    assert_eq!(error_of(&report), "HTTP status 503 Service Unavailable");
    assert_eq!((report.attempts, server.hits("/down")), (3, 3));
}

#[tokio::test]
async fn a_hanging_server_is_bounded_by_the_timeout() {
    let server = SourcesServer::start(vec![("/hang".to_owned(), Route::Hang)]).await;
    let mut opts = options();
    opts.retries = 1;
    opts.http.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let (_, report) = fetch_one(&server.url("/hang"), &opts).await;
    let elapsed = started.elapsed();
    assert!(error_of(&report).starts_with("timed out"), "{report:?}");
    assert_eq!(
        (report.attempts, server.hits("/hang")),
        (2, 2),
        "a timeout is retried"
    );
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn a_slow_drip_past_the_total_timeout_fails() {
    let body = "1.2.3.4:80\n".repeat(1000).into_bytes();
    let server = SourcesServer::start(vec![(
        "/drip".to_owned(),
        Route::SlowDrip {
            body,
            bytes_per_sec: 2000,
        },
    )])
    .await;
    let mut opts = options();
    opts.retries = 0;
    opts.http.timeout = Duration::from_millis(800);
    let started = Instant::now();
    let (fetched, report) = fetch_one(&server.url("/drip"), &opts).await;
    assert!(error_of(&report).starts_with("timed out"), "{report:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(fetched.proxies.is_empty(), "a partial body is not parsed");
}

#[tokio::test]
async fn an_endless_body_stops_at_the_cap() {
    let server = SourcesServer::start(vec![("/endless".to_owned(), Route::Endless)]).await;
    let opts = FetchOptions {
        max_bytes: 1 << 20,
        ..options()
    };
    let (_, report) = fetch_one(&server.url("/endless"), &opts).await;
    assert_eq!(
        error_of(&report),
        "response larger than the 1048576-byte cap"
    );
    assert_eq!(
        (report.attempts, server.hits("/endless")),
        (1, 1),
        "too large is final"
    );
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_before_reading() {
    let server =
        SourcesServer::start(vec![("/big".to_owned(), Route::text(vec![b'#'; 4096]))]).await;
    let opts = FetchOptions {
        max_bytes: 1000,
        ..options()
    };
    let (_, report) = fetch_one(&server.url("/big"), &opts).await;
    assert_eq!(
        error_of(&report),
        "response larger than the 1000-byte cap (Content-Length 4096)"
    );
}

#[tokio::test]
async fn binary_bytes_are_fetched_and_yield_nothing() {
    let body: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let server = SourcesServer::start(vec![(
        "/bin".to_owned(),
        Route::Body {
            content_type: "application/octet-stream",
            body,
        },
    )])
    .await;
    let (fetched, report) = fetch_one(&server.url("/bin"), &options()).await;
    assert_eq!(report.error, None);
    assert!(report.fetched);
    assert_eq!((report.bytes, report.parsed), (1_000_000, 0));
    assert!(report.invalid > 0);
    assert!(fetched.proxies.is_empty());
}

#[tokio::test]
async fn a_million_junk_lines_are_counted() {
    let mut body = String::with_capacity(16_000_000);
    for i in 0..1_000_000u32 {
        body.push_str(&format!("junk{i}:x{}\n", i % 9));
    }
    body.push_str("1.2.3.4:80\n");
    let server = SourcesServer::start(vec![("/junk".to_owned(), Route::text(body))]).await;
    let (fetched, report) = fetch_one(&server.url("/junk"), &options()).await;
    assert_eq!(report.error, None);
    assert_eq!((report.parsed, report.invalid), (1, 1_000_000));
    assert_eq!(fetched.proxies[0].to_string(), "1.2.3.4:80");
}

#[tokio::test]
async fn a_redirect_to_a_private_address_is_refused_without_connecting() {
    // The target: a second loopback server, forbidden like any private address.
    let target =
        SourcesServer::start(vec![("/list".to_owned(), Route::text("1.2.3.4:80\n"))]).await;
    let server = SourcesServer::start(vec![
        (
            "/to-ten".to_owned(),
            Route::Redirect("http://10.0.0.1/".to_owned()),
        ),
        (
            "/to-target".to_owned(),
            Route::Redirect(target.url("/list")),
        ),
        (
            "/to-metadata".to_owned(),
            Route::Redirect("http://169.254.169.254/latest/".to_owned()),
        ),
    ])
    .await;
    let fetched = fetch_all(
        &[
            source(&server.url("/to-ten")),
            source(&server.url("/to-target")),
            source(&server.url("/to-metadata")),
        ],
        &options(),
    )
    .await;
    for (report, ip) in fetched
        .reports
        .iter()
        .zip(["10.0.0.1", "127.0.0.1", "169.254.169.254"])
    {
        assert!(
            error_of(report).contains(&format!("redirect to forbidden address {ip} refused")),
            "{report:?}"
        );
        assert_eq!(report.attempts, 1, "a refused redirect is final");
    }
    // A name is resolved by the guarded resolver, which leaves localhost no address.
    let by_name = format!("http://localhost:{}/list", target.addr.port());
    let named = SourcesServer::start(vec![("/to-name".to_owned(), Route::Redirect(by_name))]).await;
    let (_, report) = fetch_one(&named.url("/to-name"), &options()).await;
    assert!(
        error_of(&report).contains("localhost resolves only to forbidden addresses"),
        "{report:?}"
    );
    assert_eq!(report.attempts, 1, "a forbidden name is final");
    assert_eq!(
        target.hits("/list"),
        0,
        "nothing may connect to the redirect target"
    );
    // The same redirect is followed when private addresses are allowed.
    let mut opts = options();
    opts.http.allow_private = true;
    let (fetched, report) = fetch_one(&server.url("/to-target"), &opts).await;
    assert_eq!(report.error, None);
    assert_eq!((fetched.proxies.len(), target.hits("/list")), (1, 1));
}

#[tokio::test]
async fn a_redirect_within_the_configured_server_is_followed() {
    let server = SourcesServer::start(vec![
        ("/old".to_owned(), Route::Redirect("/new".to_owned())),
        ("/new".to_owned(), Route::text("1.2.3.4:80\n")),
        ("/loop".to_owned(), Route::Redirect("/loop".to_owned())),
    ])
    .await;
    let (fetched, report) = fetch_one(&server.url("/old"), &options()).await;
    assert_eq!(report.error, None);
    assert_eq!(fetched.proxies.len(), 1);
    let (_, report) = fetch_one(&server.url("/loop"), &options()).await;
    assert!(
        error_of(&report).contains("more than 5 redirects"),
        "{report:?}"
    );
    assert_eq!(server.hits("/loop"), 6);
}

#[tokio::test]
async fn one_broken_source_does_not_spoil_the_others() {
    let server = SourcesServer::start(vec![
        ("/a".to_owned(), Route::text("1.2.3.4:80\n1.2.3.5:80\n")),
        ("/broken".to_owned(), Route::Status(500)),
        (
            "/b.json".to_owned(),
            Route::Body {
                content_type: "application/json",
                body: br#"{"data":[{"ip":"1.2.3.5","port":80,"protocol":"socks5"},
                                   {"ip":"1.2.3.6","port":"8080"}]}"#
                    .to_vec(),
            },
        ),
    ])
    .await;
    let sources = [
        source(&server.url("/a")),
        source(&server.url("/broken")),
        source(&server.url("/b.json")).with_default_protocol(Some(Protocol::Http)),
    ];
    let mut opts = options();
    opts.retries = 1;
    let fetched = fetch_all(&sources, &opts).await;
    let fetched_flags: Vec<bool> = fetched.reports.iter().map(|r| r.fetched).collect();
    assert_eq!(
        fetched_flags,
        [true, false, true],
        "reports keep the sources' order"
    );
    assert_eq!(fetched.reports[1].attempts, 2);
    assert_eq!(server.hits("/broken"), 2);
    assert_eq!(fetched.duplicates, 1, "1.2.3.5:80 is in two sources");
    let lines: Vec<String> = fetched
        .proxies
        .iter()
        .flat_map(|p| p.canonical_lines())
        .collect();
    assert_eq!(
        lines,
        ["1.2.3.4:80", "socks5://1.2.3.5:80", "http://1.2.3.6:8080"]
    );
}

#[tokio::test]
async fn local_files_are_sources_too() {
    let path =
        std::env::temp_dir().join(format!("proxyharvest-sources-{}.txt", std::process::id()));
    std::fs::write(&path, "# local\r\n1.2.3.4:80\r\n1.2.3.5:81\r\n").unwrap();
    let plain = path.display().to_string();
    let as_url = format!("file://{plain}");
    let fetched = fetch_all(
        &[
            source(&plain).with_default_protocol(Some(Protocol::Socks4)),
            source(&as_url),
            source("/nonexistent/proxyharvest/list.txt"),
        ],
        &options(),
    )
    .await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(fetched.reports[0].parsed, 2);
    assert_eq!(fetched.reports[1].parsed, 2);
    assert_eq!(fetched.duplicates, 2);
    let lines: Vec<String> = fetched.proxies.iter().map(ToString::to_string).collect();
    assert_eq!(lines, ["socks4://1.2.3.4:80", "socks4://1.2.3.5:81"]);
    let missing = &fetched.reports[2];
    assert!(!missing.fetched);
    assert!(error_of(missing).starts_with("file /nonexistent/proxyharvest/list.txt: "));
}

#[tokio::test]
async fn reports_serialize_for_job_reports() {
    let server = SourcesServer::start(vec![]).await;
    let (_, report) = fetch_one(&server.url("/x"), &options()).await;
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["fetched"], false);
    assert_eq!(json["error"], "HTTP status 404 Not Found");
    let back: SourceReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}
