//! The SQS event source end to end: the `proxyharvest-local` binary polls a queue on a moto
//! server, deletes what the echo function handled, leaves its reported failure to SQS's redrive
//! policy, and stops cleanly on SIGTERM. Skipped (with a note) where moto is not installed.

mod common;

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::Stdio,
    time::Duration,
};

use aws_sdk_sqs::{
    config::{BehaviorVersion, Credentials, Region},
    types::QueueAttributeName,
};
use common::{Scratch, eventually, request, status};
use serde_json::json;
use tokio::process::{Child, Command};

fn moto_server() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = PathBuf::from(home).join(".cache/proxyharvest/venv-moto/bin/moto_server");
    path.is_file().then_some(path)
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn wait_healthy(addr: SocketAddr, path: &str) {
    eventually(Duration::from_secs(20), path, || async {
        let connected = tokio::net::TcpStream::connect(addr).await.is_ok();
        if !connected {
            return None;
        }
        (request(addr, "GET", path, &[], "").await.status == 200).then_some(())
    })
    .await;
}

fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

async fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().expect("still running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap()
}

#[tokio::test]
async fn a_mapping_deletes_handled_messages_and_leaves_failures_to_the_redrive_policy() {
    let Some(moto) = moto_server() else {
        eprintln!(
            "note: moto_server not installed under ~/.cache/proxyharvest/venv-moto; skipping the SQS end-to-end test"
        );
        return;
    };
    let scratch = Scratch::new("sqs");
    let moto_addr = free_addr();
    let mut moto = Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &moto_addr.port().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_healthy(moto_addr, "/moto-api/").await;
    let endpoint = format!("http://{moto_addr}");
    let sqs = sqs_client(&endpoint);

    let dlq = sqs
        .create_queue()
        .queue_name("chunks-dlq")
        .send()
        .await
        .unwrap();
    let dlq_url = dlq.queue_url().unwrap().to_owned();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string();
    let queue = sqs
        .create_queue()
        .queue_name("chunks")
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .unwrap();
    let queue_url = queue.queue_url().unwrap().to_owned();

    let manifest = json!({
        "region": "us-east-1",
        "account_id": "123456789012",
        "functions": { "echo": { "binary": common::ECHO, "timeout_s": 10 } },
        "event_sources": [ { "function": "echo", "queue_url": queue_url,
            "queue_arn": "arn:aws:sqs:us-east-1:123456789012:chunks", "batch_size": 10,
            "report_batch_item_failures": true, "maximum_concurrency": 2, "enabled": true } ],
        "schedules": []
    });
    let manifest_path = scratch.path().join("manifest.json");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let local_addr = free_addr();
    let mut local = Command::new(env!("CARGO_BIN_EXE_proxyharvest-local"))
        .arg("--manifest")
        .arg(&manifest_path)
        .args([
            "--listen",
            &local_addr.to_string(),
            "--no-schedules",
            "--log-dir",
        ])
        .arg(scratch.path().join("logs"))
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_healthy(local_addr, "/_local/health").await;

    for body in [r#"{"n":1}"#, r#"{"fail":true}"#, r#"{"n":3}"#] {
        sqs.send_message()
            .queue_url(&queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let dead = eventually(
        Duration::from_secs(30),
        "the failed message in the DLQ",
        || async {
            let received = sqs
                .receive_message()
                .queue_url(&dlq_url)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            received
                .messages()
                .first()
                .and_then(|m| m.body().map(str::to_owned))
        },
    )
    .await;
    assert_eq!(dead, r#"{"fail":true}"#);

    let status = status(local_addr).await;
    let mapping = &status["event_sources"][0];
    assert_eq!(mapping["messages_deleted"], 2, "{status}");
    assert!(
        mapping["messages_received"].as_u64().unwrap() >= 4,
        "the failure was retried: {status}"
    );
    let left = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attributes = left.attributes().unwrap();
    assert_eq!(
        attributes[&QueueAttributeName::ApproximateNumberOfMessages],
        "0"
    );
    assert_eq!(
        attributes[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible],
        "0"
    );

    let exit = terminate(&mut local).await;
    assert!(exit.success(), "{exit:?}");
    let log = std::fs::read_to_string(scratch.path().join("logs/echo.log")).unwrap();
    assert!(log.contains(r#""eventSource":"aws:sqs""#), "{log}");
    assert!(
        log.contains(r#""eventSourceARN":"arn:aws:sqs:us-east-1:123456789012:chunks""#),
        "{log}"
    );
    terminate(&mut moto).await;
}
