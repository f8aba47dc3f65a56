//! End to end through the Invoke API: the real echo-function binary behind the Runtime API,
//! driven by aws-sdk-lambda and the control API on loopback.

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_sdk_lambda::{
    config::{BehaviorVersion, Credentials, Region},
    primitives::Blob,
    types::InvocationType,
};
use common::{Scratch, echo_manifest, eventually, request, status};
use proxyharvest_local::{LocalLambda, Options, manifest::Manifest};
use serde_json::{Value, json};

async fn start(timeout_s: u64, logs: &Scratch) -> LocalLambda {
    let manifest = Manifest::from_json(&echo_manifest(timeout_s).to_string()).unwrap();
    LocalLambda::start(
        manifest,
        Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            log_dir: Some(logs.path().to_owned()),
            schedules: false,
        },
    )
    .await
    .unwrap()
}

fn lambda_client(addr: SocketAddr) -> aws_sdk_lambda::Client {
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://{addr}"))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

/// A synchronous invoke: (function error header, payload).
async fn invoke(client: &aws_sdk_lambda::Client, payload: Value) -> (Option<String>, Value) {
    let output = client
        .invoke()
        .function_name("echo")
        .payload(Blob::new(payload.to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(output.status_code(), 200);
    assert_eq!(output.executed_version(), Some("$LATEST"));
    let body = output.payload().expect("a payload").as_ref();
    (
        output.function_error().map(str::to_owned),
        serde_json::from_slice(body).unwrap(),
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn sync_invoke_echoes_the_event_from_a_warm_environment() {
    let logs = Scratch::new("echo");
    let runtime = start(30, &logs).await;
    let client = lambda_client(runtime.local_addr());

    let before = now_ms();
    let (error, first) = invoke(&client, json!({"hello": "world"})).await;
    assert_eq!(error, None, "{first}");
    assert_eq!(first["echo"], json!({"hello": "world"}));
    assert_eq!(
        first["function_arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:echo"
    );
    let deadline = first["deadline_ms"].as_u64().unwrap();
    assert!(
        deadline >= before + 29_000 && deadline <= now_ms() + 30_000,
        "deadline {deadline} is about now + 30 s"
    );
    assert_eq!(first["env"]["AWS_LAMBDA_FUNCTION_NAME"], "echo");
    assert_eq!(first["env"]["AWS_REGION"], "us-east-1");
    assert_eq!(first["env"]["ECHO_SETTING"], "from-manifest");

    let (_, second) = invoke(&client, json!({"n": 2})).await;
    assert_eq!(second["pid"], first["pid"], "the warm process is reused");
    assert_ne!(second["request_id"], first["request_id"]);

    let status = status(runtime.local_addr()).await;
    let echo = &status["functions"]["echo"];
    assert_eq!(echo["environments_alive"], 1, "{status}");
    assert_eq!(echo["environments_busy"], 0, "{status}");
    assert_eq!(echo["invocations_succeeded"], 2, "{status}");
    runtime.shutdown().await;

    let log = std::fs::read_to_string(logs.path().join("echo.log")).unwrap();
    assert!(log.contains(r#"event {"hello":"world"}"#), "{log}");
    assert!(log.contains("] START RequestId: "), "{log}");
}

#[tokio::test]
async fn function_errors_are_unhandled_with_the_error_json() {
    let logs = Scratch::new("error");
    let runtime = start(30, &logs).await;
    let client = lambda_client(runtime.local_addr());
    let (error, body) = invoke(&client, json!({"fail": "boom"})).await;
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(body["errorMessage"], "boom", "{body}");
    assert!(body["errorType"].as_str().is_some(), "{body}");
    let (error, _) = invoke(&client, json!({})).await;
    assert_eq!(error, None, "a handled error leaves the environment usable");
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_timed_out_invocation_is_killed_and_the_next_gets_a_fresh_environment() {
    let logs = Scratch::new("timeout");
    let runtime = start(1, &logs).await;
    let client = lambda_client(runtime.local_addr());
    let (_, warm) = invoke(&client, json!({})).await;

    let started = std::time::Instant::now();
    let (error, body) = invoke(&client, json!({"sleep_ms": 5000})).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered at the deadline"
    );
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(
        body,
        json!({"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 1 seconds"})
    );

    let (error, fresh) = invoke(&client, json!({"again": true})).await;
    assert_eq!(error, None, "{fresh}");
    assert_ne!(fresh["pid"], warm["pid"], "a new process");
    let status = status(runtime.local_addr()).await;
    assert_eq!(
        status["functions"]["echo"]["invocations_timed_out"], 1,
        "{status}"
    );
    assert_eq!(
        status["functions"]["echo"]["environments_alive"], 1,
        "{status}"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_process_exit_fails_the_invocation_and_is_replaced() {
    let logs = Scratch::new("exit");
    let runtime = start(30, &logs).await;
    let client = lambda_client(runtime.local_addr());
    let (error, body) = invoke(&client, json!({"exit": true})).await;
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(body["errorType"], "Runtime.ExitError", "{body}");
    assert_eq!(
        body["errorMessage"],
        "Runtime exited with error: exit status 3"
    );
    let (error, _) = invoke(&client, json!({})).await;
    assert_eq!(error, None);
    runtime.shutdown().await;
}

#[tokio::test]
async fn the_kill_endpoint_kills_busy_environments_only() {
    let logs = Scratch::new("kill");
    let runtime = start(30, &logs).await;
    let addr = runtime.local_addr();
    let client = lambda_client(addr);
    let busy = tokio::spawn({
        let client = client.clone();
        async move { invoke(&client, json!({"sleep_ms": 20_000})).await }
    });
    eventually(Duration::from_secs(10), "a busy environment", || async {
        let status = status(addr).await;
        (status["functions"]["echo"]["environments_busy"] == 1).then_some(())
    })
    .await;
    // A second environment, idle once this returns, which the kill must spare.
    let (_, idle) = invoke(&client, json!({})).await;
    assert_eq!(
        status(addr).await["functions"]["echo"]["environments_alive"],
        2
    );

    let reply = request(addr, "POST", "/_local/functions/echo/kill", &[], "").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json(), json!({"killed": 1}));
    let (error, body) = busy.await.unwrap();
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(body["errorType"], "Runtime.ExitError", "{body}");
    assert_eq!(
        body["errorMessage"],
        "Runtime exited with error: signal: killed"
    );

    let status = status(addr).await;
    assert_eq!(
        status["functions"]["echo"]["environments_alive"], 1,
        "the idle one lives: {status}"
    );
    assert_eq!(
        status["functions"]["echo"]["environments_busy"], 0,
        "{status}"
    );
    let (_, after) = invoke(&client, json!({})).await;
    assert_eq!(
        after["pid"], idle["pid"],
        "the spared environment still serves"
    );
    let reply = request(addr, "POST", "/_local/functions/echo/kill", &[], "").await;
    assert_eq!(reply.json(), json!({"killed": 0}));
    let reply = request(addr, "POST", "/_local/functions/nope/kill", &[], "").await;
    assert_eq!(reply.status, 404);
    runtime.shutdown().await;
}

#[tokio::test]
async fn unknown_functions_are_resource_not_found() {
    let logs = Scratch::new("unknown");
    let runtime = start(30, &logs).await;
    let addr = runtime.local_addr();
    let reply = request(
        addr,
        "POST",
        "/2015-03-31/functions/nope/invocations",
        &[],
        "{}",
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.header("x-amzn-ErrorType").as_deref(),
        Some("ResourceNotFoundException")
    );
    assert_eq!(
        reply.json(),
        json!({"Type": "User", "Message": "Function not found: arn:aws:lambda:us-east-1:123456789012:function:nope"})
    );
    let err = lambda_client(addr)
        .invoke()
        .function_name("nope")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{err:?}"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn arns_event_and_dry_run_invocations() {
    let logs = Scratch::new("types");
    let runtime = start(30, &logs).await;
    let addr = runtime.local_addr();
    let client = lambda_client(addr);

    let arn = "arn:aws:lambda:us-east-1:123456789012:function:echo";
    let output = client
        .invoke()
        .function_name(arn)
        .payload(Blob::new(r#"{"by":"arn"}"#))
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(output.payload().unwrap().as_ref()).unwrap();
    assert_eq!(body["echo"], json!({"by": "arn"}));

    let output = client
        .invoke()
        .function_name("echo")
        .invocation_type(InvocationType::Event)
        .payload(Blob::new(r#"{"async":true}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(output.status_code(), 202);
    eventually(Duration::from_secs(10), "the async invocation", || async {
        let status = status(addr).await;
        (status["functions"]["echo"]["invocations_succeeded"] == 2).then_some(())
    })
    .await;

    let reply = request(
        addr,
        "POST",
        "/2015-03-31/functions/echo/invocations",
        &[("X-Amz-Invocation-Type", "DryRun")],
        "{}",
    )
    .await;
    assert_eq!(reply.status, 204);
    let reply = request(
        addr,
        "POST",
        "/2015-03-31/functions/echo/invocations",
        &[],
        "{not json",
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.header("x-amzn-ErrorType").as_deref(),
        Some("InvalidRequestContentException")
    );
    let status = status(addr).await;
    assert_eq!(
        status["functions"]["echo"]["invocations_started"], 2,
        "DryRun runs nothing"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn health_and_firing_a_schedule() {
    let logs = Scratch::new("schedule");
    let runtime = start(30, &logs).await;
    let addr = runtime.local_addr();
    let reply = request(addr, "GET", "/_local/health", &[], "").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));

    let reply = request(
        addr,
        "POST",
        "/_local/schedules/echo-schedule/fire",
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, 202, "{reply:?}");
    eventually(
        Duration::from_secs(10),
        "the scheduled invocation",
        || async {
            let status = status(addr).await;
            (status["functions"]["echo"]["invocations_succeeded"] == 1).then_some(())
        },
    )
    .await;
    let status = status(addr).await;
    assert_eq!(status["schedules"]["echo-schedule"]["fired"], 1, "{status}");
    let reply = request(addr, "POST", "/_local/schedules/nope/fire", &[], "").await;
    assert_eq!(reply.status, 404);
    runtime.shutdown().await;

    let log = std::fs::read_to_string(logs.path().join("echo.log")).unwrap();
    let event_line = log
        .lines()
        .find_map(|line| {
            line.split_once("] event ")
                .map(|(_, event)| event.to_owned())
        })
        .expect("the function logged its event");
    let event: Value = serde_json::from_str(&event_line).unwrap();
    assert_eq!(event["detail-type"], "Scheduled Event");
    assert_eq!(event["source"], "aws.events");
    assert_eq!(
        event["resources"],
        json!(["arn:aws:events:us-east-1:123456789012:rule/echo-schedule"])
    );
}
