//! A tiny Lambda function for the local runtime's own end-to-end tests. It prints every event on
//! stdout (the function log) and answers with the event plus what the runtime told it; it
//! misbehaves on request: `{"sleep_ms": N}` sleeps first, `{"fail": "message"}` returns a function
//! error, `{"exit": true}` exits the process mid-invocation. An SQS event gets a partial batch
//! response instead, failing the records whose body is `{"fail":true}`. A Function URL event whose
//! query holds `status=N` gets a structured response with that status, a header `x-echo: yes`, a
//! cookie and the event as its (text) body; other Function URL events get the plain answer.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Requested(String);

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    println!("event {payload}");
    if let Some(records) = payload.get("Records").and_then(Value::as_array) {
        let failures: Vec<Value> = records
            .iter()
            .filter(|record| record["body"] == r#"{"fail":true}"#)
            .map(|record| json!({ "itemIdentifier": record["messageId"] }))
            .collect();
        return Ok(json!({ "batchItemFailures": failures }));
    }
    let url_status = payload["queryStringParameters"]["status"]
        .as_str()
        .and_then(|s| s.parse::<u16>().ok());
    if let Some(status) = url_status {
        return Ok(json!({
            "statusCode": status,
            "headers": { "content-type": "text/plain", "x-echo": "yes" },
            "cookies": ["echo=1; Max-Age=60"],
            "body": payload.to_string(),
            "isBase64Encoded": false,
        }));
    }
    if let Some(ms) = payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if payload.get("exit").and_then(Value::as_bool) == Some(true) {
        std::process::exit(3);
    }
    if let Some(message) = payload.get("fail").and_then(Value::as_str) {
        return Err(Requested(message.to_owned()).into());
    }
    Ok(json!({
        "echo": payload,
        "request_id": context.request_id,
        "deadline_ms": context.deadline,
        "function_arn": context.invoked_function_arn,
        "pid": std::process::id(),
        "env": {
            "AWS_LAMBDA_FUNCTION_NAME": std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok(),
            "AWS_REGION": std::env::var("AWS_REGION").ok(),
            "ECHO_SETTING": std::env::var("ECHO_SETTING").ok(),
        },
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}
