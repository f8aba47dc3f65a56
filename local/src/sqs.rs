//! SQS event source mappings: a poller per mapping that receives batches, invokes the function
//! with the event Lambda would send, and deletes what the function says it handled.
//!
//! The decisions are pure functions (`record`, `event`, `to_delete`) so Lambda's rules — partial
//! batch responses, what counts as a whole-batch failure — are unit-tested without a queue.
//! Failed messages are simply not deleted: SQS makes them visible again after the visibility
//! timeout and its redrive policy moves them to the DLQ, exactly as with real Lambda.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aws_sdk_sqs::{
    Client,
    types::{
        DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    },
};
use base64::Engine;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinSet,
};

use crate::{
    environment::{Function, Outcome},
    manifest::EventSource,
};

/// One record of the SQS event, field for field what Lambda sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsRecord {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// System attributes: ApproximateReceiveCount, SentTimestamp, SenderId, ...
    pub attributes: BTreeMap<String, String>,
    pub message_attributes: BTreeMap<String, SqsMessageAttribute>,
    pub md5_of_body: String,
    pub event_source: String,
    #[serde(rename = "eventSourceARN")]
    pub event_source_arn: String,
    pub aws_region: String,
}

/// A message attribute in the event's shape (binary values base64-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsMessageAttribute {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<String>,
    pub string_list_values: Vec<String>,
    pub binary_list_values: Vec<String>,
    pub data_type: String,
}

/// The event record for a received message; `None` for a message without id or receipt
/// handle, which SQS never returns and which could not be deleted anyway.
pub fn record(message: &Message, queue_arn: &str, region: &str) -> Option<SqsRecord> {
    let encode = |blob: &aws_sdk_sqs::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(blob.as_ref())
    };
    let attribute = |value: &MessageAttributeValue| SqsMessageAttribute {
        string_value: value.string_value().map(str::to_owned),
        binary_value: value.binary_value().map(encode),
        string_list_values: value.string_list_values().to_vec(),
        binary_list_values: value.binary_list_values().iter().map(encode).collect(),
        data_type: value.data_type().to_owned(),
    };
    Some(SqsRecord {
        message_id: message.message_id()?.to_owned(),
        receipt_handle: message.receipt_handle()?.to_owned(),
        body: message.body().unwrap_or_default().to_owned(),
        attributes: message
            .attributes()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
            .collect(),
        message_attributes: message
            .message_attributes()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.clone(), attribute(value)))
            .collect(),
        md5_of_body: message.md5_of_body().unwrap_or_default().to_owned(),
        event_source: "aws:sqs".to_owned(),
        event_source_arn: queue_arn.to_owned(),
        aws_region: region.to_owned(),
    })
}

/// The invocation payload for a batch: `{"Records":[...]}`.
pub fn event(records: &[SqsRecord]) -> Bytes {
    #[derive(Serialize)]
    struct Event<'a> {
        #[serde(rename = "Records")]
        records: &'a [SqsRecord],
    }
    Bytes::from(serde_json::to_vec(&Event { records }).expect("records serialize"))
}

/// Why a whole batch counts as failed (nothing is deleted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchFailed {
    #[error("the invocation failed: {0}")]
    Invocation(String),
    #[error("the batch response is not valid: {0}")]
    InvalidResponse(String),
    #[error("batchItemFailures names `{0}`, which is not a message of this batch")]
    UnknownItem(String),
}

/// The records to delete after an invocation, by Lambda's rules: nothing after a failed
/// invocation; everything after a successful one, unless the mapping reports batch item
/// failures, in which case everything but the `batchItemFailures` — and nothing if that
/// response is malformed or names a message that is not in the batch.
pub fn to_delete<'a>(
    records: &'a [SqsRecord],
    outcome: &Outcome,
    report_batch_item_failures: bool,
) -> Result<Vec<&'a SqsRecord>, BatchFailed> {
    let body = match outcome {
        Outcome::Failure { error_type, .. } => {
            return Err(BatchFailed::Invocation(error_type.clone()));
        }
        Outcome::Success(_) if !report_batch_item_failures => return Ok(records.iter().collect()),
        Outcome::Success(body) => body,
    };
    let failed = failed_items(body)?;
    let known: BTreeSet<&str> = records.iter().map(|r| r.message_id.as_str()).collect();
    if let Some(unknown) = failed.iter().find(|id| !known.contains(id.as_str())) {
        return Err(BatchFailed::UnknownItem(unknown.clone()));
    }
    Ok(records
        .iter()
        .filter(|record| !failed.contains(&record.message_id))
        .collect())
}

/// The `itemIdentifier`s of a batch response; an empty, `null` or list-less response means
/// none failed.
fn failed_items(body: &[u8]) -> Result<BTreeSet<String>, BatchFailed> {
    let invalid = |why: &str| BatchFailed::InvalidResponse(why.to_owned());
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(BTreeSet::new());
    }
    let response: serde_json::Value =
        serde_json::from_slice(body).map_err(|err| invalid(&err.to_string()))?;
    let failures = match &response {
        serde_json::Value::Null => return Ok(BTreeSet::new()),
        serde_json::Value::Object(response) => match response.get("batchItemFailures") {
            None | Some(serde_json::Value::Null) => return Ok(BTreeSet::new()),
            Some(serde_json::Value::Array(failures)) => failures,
            Some(_) => return Err(invalid("batchItemFailures is not a list")),
        },
        _ => return Err(invalid("not a JSON object")),
    };
    failures
        .iter()
        .map(|failure| match failure.get("itemIdentifier") {
            Some(serde_json::Value::String(id)) if !id.is_empty() => Ok(id.clone()),
            _ => Err(invalid("an item has no itemIdentifier string")),
        })
        .collect()
}

/// One mapping and its counters.
#[derive(Debug)]
pub struct Mapping {
    pub source: EventSource,
    received: AtomicU64,
    deleted: AtomicU64,
    batches_failed: AtomicU64,
}

/// A snapshot of one mapping, for `/_local/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappingStatus {
    pub function: String,
    pub queue_arn: String,
    pub enabled: bool,
    pub messages_received: u64,
    pub messages_deleted: u64,
    pub batches_failed: u64,
}

impl Mapping {
    pub fn new(source: EventSource) -> Self {
        Self {
            source,
            received: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            batches_failed: AtomicU64::new(0),
        }
    }

    pub fn status(&self) -> MappingStatus {
        MappingStatus {
            function: self.source.function.clone(),
            queue_arn: self.source.queue_arn.clone(),
            enabled: self.source.enabled,
            messages_received: self.received.load(Ordering::Relaxed),
            messages_deleted: self.deleted.load(Ordering::Relaxed),
            batches_failed: self.batches_failed.load(Ordering::Relaxed),
        }
    }
}

/// What a poller needs besides its mapping.
#[derive(Debug, Clone)]
pub struct Poller {
    pub client: Client,
    pub function: Arc<Function>,
    pub region: String,
}

impl Poller {
    /// Polls until `stop` turns true, with at most `maximum_concurrency` batches in flight.
    /// Batches still running at the stop are abandoned: their messages reappear after the
    /// visibility timeout, as when Lambda's poller is disabled.
    pub async fn run(self, mapping: Arc<Mapping>, mut stop: watch::Receiver<bool>) {
        let source = &mapping.source;
        let slots = Arc::new(Semaphore::new(source.maximum_concurrency.get()));
        let mut batches = JoinSet::new();
        loop {
            while batches.try_join_next().is_some() {}
            let permit = tokio::select! {
                permit = Arc::clone(&slots).acquire_owned() => permit.expect("the semaphore is never closed"),
                () = crate::stopped(&mut stop) => break,
            };
            let received = tokio::select! {
                received = self.receive(source) => received,
                () = crate::stopped(&mut stop) => break,
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(err) => {
                    tracing::warn!(queue = %source.queue_url, error = %err, "ReceiveMessage failed; retrying in 1 s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = crate::stopped(&mut stop) => break,
                    }
                }
            };
            let records: Vec<SqsRecord> = messages
                .iter()
                .filter_map(|message| record(message, &source.queue_arn, &self.region))
                .collect();
            if records.is_empty() {
                continue;
            }
            mapping
                .received
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            batches.spawn(self.clone().handle(Arc::clone(&mapping), records, permit));
        }
        batches.abort_all();
    }

    async fn receive(&self, source: &EventSource) -> Result<Vec<Message>, String> {
        let output = self
            .client
            .receive_message()
            .queue_url(&source.queue_url)
            .max_number_of_messages(i32::try_from(source.batch_size).unwrap_or(10))
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|err| aws_sdk_sqs::error::DisplayErrorContext(err).to_string())?;
        Ok(output.messages.unwrap_or_default())
    }

    async fn handle(
        self,
        mapping: Arc<Mapping>,
        records: Vec<SqsRecord>,
        _slot: OwnedSemaphorePermit,
    ) {
        let source = &mapping.source;
        let outcome = self.function.invoke(event(&records)).await;
        match to_delete(&records, &outcome, source.report_batch_item_failures) {
            Ok(delete) => {
                let deleted = self.delete(&source.queue_url, &delete).await;
                mapping.deleted.fetch_add(deleted, Ordering::Relaxed);
            }
            Err(reason) => {
                mapping.batches_failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(function = %source.function, queue = %source.queue_arn,
                    messages = records.len(), %reason, "batch failed; its messages return after the visibility timeout");
            }
        }
    }

    /// Deletes `records` in batches of ten; returns how many SQS confirmed.
    async fn delete(&self, queue_url: &str, records: &[&SqsRecord]) -> u64 {
        let mut deleted = 0;
        for chunk in records.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, record)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&record.receipt_handle)
                        .build()
                        .ok()
                })
                .collect();
            match self
                .client
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    deleted += output.successful().len() as u64;
                    for failure in output.failed() {
                        tracing::warn!(
                            queue = queue_url,
                            id = failure.id(),
                            code = failure.code(),
                            message = failure.message(),
                            "DeleteMessageBatch entry failed"
                        );
                    }
                }
                Err(err) => tracing::warn!(queue = queue_url,
                    error = %aws_sdk_sqs::error::DisplayErrorContext(err), "DeleteMessageBatch failed"),
            }
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::primitives::Blob;

    use super::*;

    const ARN: &str = "arn:aws:sqs:us-east-1:123456789012:chunks";

    fn message(id: &str) -> Message {
        message_builder(id).build()
    }

    fn message_builder(id: &str) -> aws_sdk_sqs::types::builders::MessageBuilder {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("rh-{id}"))
            .body(format!("{{\"chunk\":\"{id}\"}}"))
            .md5_of_body("0123456789abcdef0123456789abcdef")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "1")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1764780000000")
            .attributes(MessageSystemAttributeName::SenderId, "AIDAEXAMPLE")
            .attributes(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                "1764780000100",
            )
    }

    fn records(ids: &[&str]) -> Vec<SqsRecord> {
        ids.iter()
            .map(|id| record(&message(id), ARN, "us-east-1").unwrap())
            .collect()
    }

    fn success(body: &str) -> Outcome {
        Outcome::Success(Bytes::from(body.to_owned()))
    }

    fn ids(records: &[&SqsRecord]) -> Vec<String> {
        records.iter().map(|r| r.message_id.clone()).collect()
    }

    #[test]
    fn event_has_the_shape_lambda_sends() {
        let event: serde_json::Value = serde_json::from_slice(&event(&records(&["m1"]))).unwrap();
        assert_eq!(
            event,
            serde_json::json!({"Records": [{
                "messageId": "m1",
                "receiptHandle": "rh-m1",
                "body": "{\"chunk\":\"m1\"}",
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1764780000000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1764780000100"
                },
                "messageAttributes": {},
                "md5OfBody": "0123456789abcdef0123456789abcdef",
                "eventSource": "aws:sqs",
                "eventSourceARN": ARN,
                "awsRegion": "us-east-1"
            }]})
        );
    }

    #[test]
    fn event_parses_as_aws_lambda_events_sqs_event() {
        let with_attributes = message_builder("m2")
            .message_attributes(
                "kind",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("full")
                    .build()
                    .unwrap(),
            )
            .message_attributes(
                "blob",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(b"hi".to_vec()))
                    .build()
                    .unwrap(),
            )
            .build();
        let mut batch = records(&["m1"]);
        batch.push(record(&with_attributes, ARN, "us-east-1").unwrap());
        let parsed: aws_lambda_events::event::sqs::SqsEvent =
            serde_json::from_slice(&event(&batch)).unwrap();
        assert_eq!(parsed.records.len(), 2);
        let second = &parsed.records[1];
        assert_eq!(second.message_id.as_deref(), Some("m2"));
        assert_eq!(second.event_source_arn.as_deref(), Some(ARN));
        assert_eq!(second.attributes["ApproximateReceiveCount"], "1");
        assert_eq!(
            second.message_attributes["kind"].string_value.as_deref(),
            Some("full")
        );
        assert_eq!(
            second.message_attributes["blob"]
                .binary_value
                .as_ref()
                .map(|b| b.to_vec()),
            Some(b"hi".to_vec())
        );
    }

    #[test]
    fn messages_without_receipt_handles_are_skipped() {
        let message = Message::builder().message_id("m1").body("x").build();
        assert_eq!(record(&message, ARN, "us-east-1"), None);
    }

    #[test]
    fn failed_invocations_delete_nothing() {
        let batch = records(&["m1", "m2"]);
        let failure =
            Outcome::runtime_failure("Sandbox.Timedout", "Task timed out after 3 seconds");
        for report in [true, false] {
            assert_eq!(
                to_delete(&batch, &failure, report),
                Err(BatchFailed::Invocation("Sandbox.Timedout".into()))
            );
        }
    }

    #[test]
    fn without_item_failure_reporting_success_deletes_all() {
        let batch = records(&["m1", "m2"]);
        let response = success(r#"{"batchItemFailures":[{"itemIdentifier":"m1"}]}"#);
        assert_eq!(
            ids(&to_delete(&batch, &response, false).unwrap()),
            ["m1", "m2"]
        );
    }

    #[test]
    fn empty_or_list_less_responses_mean_all_succeeded() {
        let batch = records(&["m1", "m2"]);
        for body in [
            "",
            " ",
            "null",
            "{}",
            r#"{"batchItemFailures":null}"#,
            r#"{"batchItemFailures":[]}"#,
        ] {
            assert_eq!(
                ids(&to_delete(&batch, &success(body), true).unwrap()),
                ["m1", "m2"],
                "{body:?}"
            );
        }
    }

    #[test]
    fn listed_items_are_kept_and_the_rest_deleted() {
        let batch = records(&["m1", "m2", "m3"]);
        let response =
            success(r#"{"batchItemFailures":[{"itemIdentifier":"m3"},{"itemIdentifier":"m1"}]}"#);
        assert_eq!(ids(&to_delete(&batch, &response, true).unwrap()), ["m2"]);
        let all_failed = success(r#"{"batchItemFailures":[{"itemIdentifier":"m1"}]}"#);
        assert!(
            to_delete(&batch[..1], &all_failed, true)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn malformed_responses_fail_the_whole_batch() {
        let batch = records(&["m1", "m2"]);
        for body in [
            "not json",
            r#""ok""#,
            r#"{"batchItemFailures":{"itemIdentifier":"m1"}}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"id":"m1"}]}"#,
        ] {
            assert!(
                matches!(
                    to_delete(&batch, &success(body), true),
                    Err(BatchFailed::InvalidResponse(_))
                ),
                "{body}"
            );
        }
        assert_eq!(
            to_delete(
                &batch,
                &success(r#"{"batchItemFailures":[{"itemIdentifier":"m9"}]}"#),
                true
            ),
            Err(BatchFailed::UnknownItem("m9".into()))
        );
    }
}
