//! End to end through a Function URL: plain HTTP requests on the function's own loopback port
//! reach the real echo-function binary as payload-format-2.0 events, and its answers come back as
//! HTTP responses.

mod common;

use common::{ECHO, Scratch, request, status};
use proxyharvest_local::{LocalLambda, Options, StartError, manifest::Manifest};
use serde_json::{Value, json};

fn manifest(port: u16) -> Manifest {
    let value = json!({
        "region": "us-east-1",
        "account_id": "123456789012",
        "functions": {
            "echo": { "binary": ECHO, "timeout_s": 30, "memory_mb": 128 },
            "other": { "binary": ECHO, "timeout_s": 30, "memory_mb": 128 }
        },
        "function_urls": [ { "function": "echo", "port": port } ]
    });
    Manifest::from_json(&value.to_string()).unwrap()
}

async fn start(port: u16, logs: &Scratch) -> Result<LocalLambda, StartError> {
    LocalLambda::start(
        manifest(port),
        Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            log_dir: Some(logs.path().to_owned()),
            schedules: false,
        },
    )
    .await
}

#[tokio::test]
async fn a_get_with_query_and_headers_reaches_the_function_and_its_json_comes_back() {
    let logs = Scratch::new("url-get");
    let runtime = start(0, &logs).await.unwrap();
    let url = runtime.function_url("echo").expect("echo has a URL");
    assert_ne!(url, runtime.local_addr());
    assert_eq!(runtime.function_url("other"), None);

    let reply = request(
        url,
        "GET",
        "/judge?ph_token=abc&x=1&x=2",
        &[("X-Custom", "kept"), ("X-Forwarded-For", "203.0.113.77")],
        "",
    )
    .await;
    // The echo function's plain JSON answer: 200 application/json, the body as it answered.
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    let answer = reply.json();
    let event = &answer["echo"];
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["rawPath"], "/judge");
    assert_eq!(event["rawQueryString"], "ph_token=abc&x=1&x=2");
    assert_eq!(
        event["queryStringParameters"],
        json!({"ph_token": "abc", "x": "1,2"})
    );
    assert_eq!(event["headers"]["x-custom"], "kept");
    assert_eq!(event["headers"]["host"], url.to_string());
    assert_eq!(
        event["headers"]["x-forwarded-for"],
        "203.0.113.77, 127.0.0.1"
    );
    assert_eq!(event["headers"]["x-forwarded-proto"], "http");
    assert_eq!(event["headers"]["x-forwarded-port"], url.port().to_string());
    assert_eq!(event["requestContext"]["http"]["method"], "GET");
    assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(answer["env"]["AWS_LAMBDA_FUNCTION_NAME"], "echo");

    let status = status(runtime.local_addr()).await;
    assert_eq!(
        status["functions"]["echo"]["invocations_succeeded"], 1,
        "{status}"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_structured_answer_sets_status_headers_cookies_and_body() {
    let logs = Scratch::new("url-structured");
    let runtime = start(0, &logs).await.unwrap();
    let url = runtime.function_url("echo").unwrap();
    let reply = request(url, "POST", "/?status=201", &[], "hello body").await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(reply.header("x-echo").as_deref(), Some("yes"));
    assert_eq!(
        reply.header("set-cookie").as_deref(),
        Some("echo=1; Max-Age=60")
    );
    let event: Value = reply.json();
    assert_eq!(event["body"], "hello body");
    assert_eq!(event["isBase64Encoded"], false);
    assert_eq!(event["requestContext"]["http"]["method"], "POST");
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_taken_port_fails_the_start_naming_the_function() {
    let logs = Scratch::new("url-taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = start(port, &logs).await.unwrap_err().to_string();
    assert!(err.starts_with("function URL of echo:"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}
