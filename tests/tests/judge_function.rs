//! The judge function end to end: the real `judge` binary behind its Function URL on the local
//! stack (URL from the manifest's `JudgeUrl` output), asked directly and used by the real checker
//! through loopback farm proxies.
//!
//! Locally the URL is plain HTTP and the local front end adds the headers Lambda's does
//! (`x-forwarded-for`, `x-forwarded-proto`, `x-forwarded-port`, `x-amzn-trace-id`), so these tests
//! show that the judge hides the front end and grades what the proxy did.

use std::net::IpAddr;
use std::time::Duration;

use proxyharvest::check::{CheckConfig, Checker};
use proxyharvest::judge::{self, JudgeConfig};
use proxyharvest::outcome::{Anonymity, Outcome};
use proxyharvest::target::TargetPolicy;
use proxyharvest_tests::farm::{self, EXIT_IP, Kind};
use proxyharvest_tests::stack::Stack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn judge_url() -> url::Url {
    let stack = Stack::from_env().await;
    let url = stack.manifest["outputs"]["JudgeUrl"]
        .as_str()
        .expect("the manifest has a JudgeUrl output");
    url.parse().expect("JudgeUrl is a URL")
}

/// One GET straight to the judge with `headers`; the body of its answer.
async fn get(url: &url::Url, headers: &[(&str, &str)]) -> (String, Vec<u8>) {
    let addr = url.socket_addrs(|| None).unwrap()[0];
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "GET {}?{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
        url.path(),
        url.query().unwrap_or_default()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    (head, raw[split + 4..].to_vec())
}

#[tokio::test]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn the_judge_echoes_the_request_without_the_front_end_headers() {
    let url = judge_url().await;
    let token = judge::new_token();
    let (head, body) = get(
        &judge::with_token(&url, &token),
        &[("X-Forwarded-For", "198.51.100.1"), ("X-Custom", "kept")],
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let echo = judge::parse_echo(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert!(judge::verify(&echo, &token), "{echo:?}");
    assert_eq!(echo.remote_addr, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(echo.header("x-custom"), Some("kept"));
    // What the client sent stays; the hop the front end appended does not.
    assert_eq!(echo.header("x-forwarded-for"), Some("198.51.100.1"));
    for added in ["x-forwarded-proto", "x-forwarded-port", "x-amzn-trace-id"] {
        assert_eq!(echo.header(added), None, "{added} leaked: {echo:?}");
    }
}

#[tokio::test]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn the_checker_grades_farm_proxies_against_the_judge_function() {
    let url = judge_url().await;
    let config = CheckConfig {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
        policy: TargetPolicy {
            allow_private: true,
        },
        ..CheckConfig::new(JudgeConfig {
            http: url,
            https: None,
            ca_file: None,
        })
    };
    let checker = Checker::new(config)
        .await
        .expect("the judge function answers");
    assert_eq!(checker.own_ip(), Some(IpAddr::from([127, 0, 0, 1])));
    let farm = farm::start(&[Kind::Elite, Kind::Anonymous, Kind::Transparent]).await;
    for (kind, proxy) in farm.proxies() {
        let result = checker.check(&proxy).await;
        let Outcome::Alive(alive) = &result.outcome else {
            panic!("{kind:?}: expected alive, got {:?}", result.outcome);
        };
        assert_eq!(alive.exit_ip, IpAddr::from(EXIT_IP), "{kind:?}");
        let want = match kind {
            Kind::Elite => Anonymity::Elite,
            Kind::Anonymous => Anonymity::Anonymous,
            _ => Anonymity::Transparent,
        };
        assert_eq!(alive.anonymity, want, "{kind:?}");
    }
}
