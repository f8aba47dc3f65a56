//! The checker against the loopback farm and judges: every kind of proxy must come out with the
//! right verdict, in every judge format.
//!
//! The farm's proxies exit from 127.0.0.2 while the checker asks the judge directly from
//! 127.0.0.1, so exit addresses and anonymity grades are real, not assumed. Timing is asserted
//! only with generous bounds.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use proxyharvest::check::{CheckConfig, Checker};
use proxyharvest::judge::JudgeConfig;
use proxyharvest::outcome::{Alive, Anonymity, FailureReason, Outcome, RejectReason};
use proxyharvest::proxy::{Protocol, ProtocolSet, Proxy, dedup};
use proxyharvest::target::TargetPolicy;
use proxyharvest_tests::farm::{self, EXIT_IP, Kind};
use proxyharvest_tests::judge::{self, JudgeFormat, JudgeServer};
use tokio::time::Instant;

const FORMATS: [JudgeFormat; 3] = [JudgeFormat::Own, JudgeFormat::Httpbin, JudgeFormat::Azenv];

fn config(http: url::Url, https: Option<(url::Url, &Path)>, timeout: Duration) -> CheckConfig {
    let (https, ca_file) = match https {
        Some((url, ca)) => (Some(url), Some(ca.to_owned())),
        None => (None, None),
    };
    CheckConfig {
        connect_timeout: Duration::from_secs(2),
        timeout,
        policy: TargetPolicy {
            allow_private: true,
        },
        ..CheckConfig::new(JudgeConfig {
            http,
            https,
            ca_file,
        })
    }
}

/// A checker allowed to check loopback proxies, with the plain HTTP judge only.
async fn http_checker(judge: &JudgeServer) -> Checker {
    Checker::new(config(judge.url(), None, Duration::from_secs(5)))
        .await
        .expect("the loopback judge answers")
}

fn alive(outcome: &Outcome) -> &Alive {
    match outcome {
        Outcome::Alive(a) => a,
        other => panic!("expected alive, got {other:?}"),
    }
}

fn set(protocols: &[Protocol]) -> ProtocolSet {
    protocols.iter().copied().collect()
}

fn dead(reason: FailureReason) -> Outcome {
    Outcome::Dead { reason }
}

#[tokio::test]
async fn anonymity_and_exit_address_in_every_judge_format() {
    for format in FORMATS {
        let judge = judge::start(format).await;
        let farm = farm::start(&[Kind::Elite, Kind::Anonymous, Kind::Transparent]).await;
        let checker = http_checker(&judge).await;
        assert_eq!(checker.own_ip(), Some(IpAddr::from([127, 0, 0, 1])));
        for (kind, proxy) in farm.proxies() {
            let result = checker.check(&proxy).await;
            let a = alive(&result.outcome);
            let want = match kind {
                Kind::Elite => Anonymity::Elite,
                Kind::Anonymous => Anonymity::Anonymous,
                _ => Anonymity::Transparent,
            };
            assert_eq!(a.anonymity, want, "{kind:?} with the {format:?} judge");
            assert_eq!(a.exit_ip, IpAddr::from(EXIT_IP), "{kind:?} with {format:?}");
            // No HTTPS judge: Https is neither tried nor reported.
            assert_eq!(
                a.protocols,
                set(&[Protocol::Http]),
                "{kind:?} with {format:?}"
            );
            assert_eq!(a.latency_ms, a.timings.total_ms);
            assert!(a.timings.connect_ms <= a.timings.first_byte_ms);
            assert!(a.timings.first_byte_ms <= a.timings.total_ms);
        }
    }
}

#[tokio::test]
async fn connect_support_is_told_apart_with_a_tls_judge() {
    let http_judge = judge::start(JudgeFormat::Own).await;
    let (tls_judge, ca) = judge::start_tls(JudgeFormat::Own).await;
    let checker = Checker::new(config(
        http_judge.url(),
        Some((tls_judge.url(), &ca)),
        Duration::from_secs(5),
    ))
    .await
    .expect("the loopback judges answer");
    let farm = farm::start(&[Kind::Elite, Kind::HttpNoConnect, Kind::Transparent]).await;
    let proxies = farm.proxies();

    let elite = checker.check(&proxies[0].1).await;
    assert_eq!(
        alive(&elite.outcome).protocols,
        set(&[Protocol::Http, Protocol::Https])
    );
    let no_connect = checker.check(&proxies[1].1).await;
    assert_eq!(alive(&no_connect.outcome).protocols, set(&[Protocol::Http]));
    // Through the tunnel the proxy cannot add headers; its plain HTTP leak still counts.
    let transparent = checker.check(&proxies[2].1).await;
    let a = alive(&transparent.outcome);
    assert_eq!(a.protocols, set(&[Protocol::Http, Protocol::Https]));
    assert_eq!(a.anonymity, Anonymity::Transparent);
    assert!(tls_judge.hits() >= 2, "the HTTPS judge was really reached");
}

#[tokio::test]
async fn http_auth_needs_the_right_credentials() {
    let judge = judge::start(JudgeFormat::Own).await;
    let checker = http_checker(&judge).await;
    let auth = Kind::HttpAuth {
        user: "alice".into(),
        pass: "s3cret".into(),
    };
    let farm = farm::start(&[auth]).await;
    let proxy = farm.proxies().remove(0).1;

    let with = checker.check(&proxy).await;
    assert_eq!(alive(&with.outcome).protocols, set(&[Protocol::Http]));
    let without = checker.check(&proxy.clone().with_auth(None)).await;
    assert_eq!(without.outcome, dead(FailureReason::AuthFailed));
    let wrong = proxyharvest::proxy::Credentials::new("alice", "wrong").unwrap();
    let wrong = checker.check(&proxy.with_auth(Some(wrong))).await;
    assert_eq!(wrong.outcome, dead(FailureReason::AuthFailed));
}

#[tokio::test]
async fn socks_proxies_report_exactly_what_they_speak() {
    for format in FORMATS {
        let judge = judge::start(format).await;
        let checker = http_checker(&judge).await;
        let auth = Kind::Socks5Auth {
            user: "bob".into(),
            pass: "hunter2".into(),
        };
        let farm = farm::start(&[Kind::Socks4, Kind::Socks5, auth]).await;
        let proxies = farm.proxies();

        let socks4 = checker.check(&proxies[0].1).await;
        let a = alive(&socks4.outcome);
        assert_eq!(a.protocols, set(&[Protocol::Socks4]), "{format:?}");
        assert_eq!(a.exit_ip, IpAddr::from(EXIT_IP));
        assert_eq!(a.anonymity, Anonymity::Elite);
        let socks5 = checker.check(&proxies[1].1).await;
        assert_eq!(alive(&socks5.outcome).protocols, set(&[Protocol::Socks5]));
        let with = checker.check(&proxies[2].1).await;
        assert_eq!(alive(&with.outcome).protocols, set(&[Protocol::Socks5]));
        let without = checker.check(&proxies[2].1.clone().with_auth(None)).await;
        assert_eq!(without.outcome, dead(FailureReason::AuthFailed));
    }
}

#[tokio::test]
async fn a_judge_named_by_host_is_reached_through_every_protocol() {
    let judge = judge::start(JudgeFormat::Own).await;
    // SOCKS5 sends the name; SOCKS4 the address resolved locally; HTTP the absolute URL.
    let mut url = judge.url();
    url.set_host(Some("localhost")).unwrap();
    let checker = Checker::new(config(url, None, Duration::from_secs(5)))
        .await
        .expect("the judge answers at localhost");
    let farm = farm::start(&[Kind::Elite, Kind::Socks4, Kind::Socks5]).await;
    for (kind, proxy) in farm.proxies() {
        let result = checker.check(&proxy).await;
        assert_eq!(
            alive(&result.outcome).protocols,
            set(&[kind.protocol()]),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn broken_proxies_die_with_the_reason_that_explains_it() {
    let judge = judge::start(JudgeFormat::Httpbin).await;
    let timeout = Duration::from_millis(1500);
    let checker = Checker::new(config(judge.url(), None, timeout))
        .await
        .unwrap();
    let cases = [
        (Kind::Blackhole, dead(FailureReason::Timeout)),
        (Kind::Reset, dead(FailureReason::Reset)),
        // Random bytes are no protocol at all: not a judge answer tampered with.
        (Kind::Garbage, dead(FailureReason::ProtocolMismatch)),
        (Kind::CaptivePortal, dead(FailureReason::Tampered)),
        (Kind::EndlessBody, dead(FailureReason::TooLarge)),
        (Kind::Honeypot, dead(FailureReason::Tampered)),
        (Kind::Refused, dead(FailureReason::Refused)),
        (
            Kind::Slow {
                delay: Duration::from_secs(5),
            },
            dead(FailureReason::Timeout),
        ),
    ];
    let kinds: Vec<Kind> = cases.iter().map(|(k, _)| k.clone()).collect();
    let farm = farm::start(&kinds).await;
    let proxies: Vec<Proxy> = farm.proxies().into_iter().map(|(_, p)| p).collect();

    let started = Instant::now();
    let results = checker.check_all(proxies, None, |_| {}).await;
    let elapsed = started.elapsed();
    for ((kind, want), result) in cases.iter().zip(&results) {
        assert_eq!(&result.outcome, want, "{kind:?}");
    }
    // All ran at once; the slowest ended at the deadline, not long after it.
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < timeout + Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn a_slow_proxy_within_the_timeout_is_alive() {
    let judge = judge::start(JudgeFormat::Own).await;
    let checker = http_checker(&judge).await;
    let farm = farm::start(&[Kind::Slow {
        delay: Duration::from_millis(300),
    }])
    .await;
    let result = checker.check(&farm.proxies()[0].1).await;
    assert!(alive(&result.outcome).latency_ms >= 300);
}

#[tokio::test]
async fn a_blackhole_times_out_at_about_the_configured_timeout() {
    let judge = judge::start(JudgeFormat::Own).await;
    let timeout = Duration::from_secs(1);
    let checker = Checker::new(config(judge.url(), None, timeout))
        .await
        .unwrap();
    let farm = farm::start(&[Kind::Blackhole]).await;
    let started = Instant::now();
    let result = checker.check(&farm.proxies()[0].1).await;
    assert_eq!(result.outcome, dead(FailureReason::Timeout));
    let elapsed = started.elapsed();
    assert!(elapsed >= timeout && elapsed < timeout * 3, "{elapsed:?}");
}

#[tokio::test]
async fn mislabelled_and_unlabelled_entries_are_found() {
    let judge = judge::start(JudgeFormat::Own).await;
    let checker = http_checker(&judge).await;
    let farm = farm::start(&[Kind::Socks5, Kind::Elite, Kind::Socks4]).await;
    let at = |i: usize| farm.endpoint(i);

    let mislabelled: Proxy = format!("http://{}", at(0)).parse().unwrap();
    let result = checker.check(&mislabelled).await;
    assert_eq!(alive(&result.outcome).protocols, set(&[Protocol::Socks5]));

    for (i, want) in [(1, Protocol::Http), (2, Protocol::Socks4)] {
        let bare: Proxy = at(i).to_string().parse().unwrap();
        assert!(bare.protocols.is_empty());
        let result = checker.check(&bare).await;
        assert_eq!(alive(&result.outcome).protocols, set(&[want]), "{bare}");
    }
}

#[tokio::test]
async fn one_address_listed_as_http_and_socks5_is_one_proxy() {
    let judge = judge::start(JudgeFormat::Own).await;
    let checker = http_checker(&judge).await;
    let farm = farm::start(&[Kind::Socks5]).await;
    let entries = [
        format!("http://{}", farm.endpoint(0)),
        format!("socks5://{}", farm.endpoint(0)),
    ]
    .map(|s| s.parse::<Proxy>().unwrap());
    let (proxies, duplicates) = dedup(entries);
    assert_eq!((proxies.len(), duplicates), (1, 1));
    let results = checker.check_all(proxies, None, |_| {}).await;
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].proxy.protocols,
        set(&[Protocol::Http, Protocol::Socks5])
    );
    assert_eq!(
        alive(&results[0].outcome).protocols,
        set(&[Protocol::Socks5])
    );
}

#[tokio::test]
async fn default_policy_rejects_loopback_proxies_without_connecting() {
    let judge = judge::start(JudgeFormat::Own).await;
    let mut config = config(judge.url(), None, Duration::from_secs(5));
    config.policy = TargetPolicy::default();
    let checker = Checker::new(config).await.unwrap();
    let farm = farm::start(&[Kind::Elite, Kind::Socks5, Kind::Blackhole]).await;
    let proxies: Vec<Proxy> = farm.proxies().into_iter().map(|(_, p)| p).collect();
    let results = checker.check_all(proxies, None, |_| {}).await;
    for r in &results {
        assert_eq!(
            r.outcome,
            Outcome::Rejected {
                reason: RejectReason::ForbiddenTarget
            }
        );
    }
    assert_eq!(farm.accepts(), 0, "a rejected proxy is never connected to");
}

#[tokio::test]
async fn check_all_with_a_past_deadline_returns_every_proxy_unchecked() {
    let judge = judge::start(JudgeFormat::Own).await;
    let checker = http_checker(&judge).await;
    let farm = farm::start(&[Kind::Elite, Kind::Socks5, Kind::Elite]).await;
    let proxies: Vec<Proxy> = farm.proxies().into_iter().map(|(_, p)| p).collect();
    let mut reported = 0;
    let results = checker
        .check_all(proxies.clone(), Some(Instant::now()), |_| reported += 1)
        .await;
    assert_eq!(results.len(), proxies.len());
    assert_eq!(reported, proxies.len());
    for (r, p) in results.iter().zip(&proxies) {
        assert_eq!(&r.proxy, p);
        assert_eq!(r.outcome, Outcome::Unchecked);
    }
    assert_eq!(farm.accepts(), 0);
}

#[tokio::test]
async fn check_all_stopping_mid_way_keeps_every_proxy_in_order() {
    let judge = judge::start(JudgeFormat::Own).await;
    let mut config = config(judge.url(), None, Duration::from_secs(5));
    config.concurrency = 2;
    let checker = Checker::new(config).await.unwrap();
    assert_eq!(checker.concurrency(), 2);
    // Two at a time, 300 ms each: by the 400 ms stop at most two rounds have started.
    let slow = Kind::Slow {
        delay: Duration::from_millis(300),
    };
    let farm = farm::start_many(slow, 10).await;
    let proxies: Vec<Proxy> = farm.proxies().into_iter().map(|(_, p)| p).collect();
    let stop_at = Instant::now() + Duration::from_millis(400);
    let mut finished = Vec::new();
    let results = checker
        .check_all(proxies.clone(), Some(stop_at), |r| {
            finished.push(r.outcome.clone())
        })
        .await;
    assert_eq!(results.len(), proxies.len());
    assert_eq!(finished.len(), proxies.len());
    for (r, p) in results.iter().zip(&proxies) {
        assert_eq!(&r.proxy, p, "order preserved");
    }
    let checked = results.iter().filter(|r| r.outcome.is_alive()).count();
    let unchecked = results
        .iter()
        .filter(|r| r.outcome == Outcome::Unchecked)
        .count();
    assert_eq!(checked + unchecked, results.len());
    assert!((2..=4).contains(&checked), "{checked} checked");
    // The unchecked are exactly the tail: checks start in input order.
    assert!(results[..checked].iter().all(|r| r.outcome.is_alive()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_all_scales_to_thousands_of_proxies() {
    let limit = proxyharvest::check::raise_fd_limit().expect("read the open-file limit");
    let n = 5_000;
    // Listeners, plus per check in flight: the checker's socket, the farm's two, the judge's.
    assert!(
        limit >= (n + 4 * 512 + 256) as u64,
        "open-file limit {limit} too low"
    );
    let judge = judge::start(JudgeFormat::Own).await;
    let checker = http_checker(&judge).await;
    let farm = farm::start_many(Kind::Elite, n).await;
    let proxies: Vec<Proxy> = farm.proxies().into_iter().map(|(_, p)| p).collect();
    // Thousands in flight: the part of a check that lives in its task stays small (the attempts,
    // with their buffers and TLS state, are boxed and live only while they run).
    let size = std::mem::size_of_val(&checker.check(&proxies[0]));
    assert!(size <= 1024, "a check future takes {size} bytes");
    let started = Instant::now();
    let results = checker.check_all(proxies, None, |_| {}).await;
    let alive = results.iter().filter(|r| r.outcome.is_alive()).count();
    assert_eq!(alive, n, "all alive after {:?}", started.elapsed());
    assert_eq!(
        judge.hits(),
        n + 1,
        "one direct request, then one per proxy"
    );
}
