//! The queues (SQS): chunks to the validators, "job counted" to the aggregator.
//!
//! Sending is in batches of at most ten entries and at most [`BATCH_BYTES`] of bodies (SQS limits
//! a batch's total payload, not only each message), and a batch's per-entry failures are read even
//! when the call as a whole succeeded; failed entries are retried a few times and then reported
//! by id, so a chunk is never silently lost on the way to its queue.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

/// SQS accepts at most this many entries per batch.
pub const BATCH: usize = 10;
/// Total body bytes per batch: the older, smaller documented limit (256 KiB), to be safe.
pub const BATCH_BYTES: usize = 256 * 1024;
const ATTEMPTS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQS {op} on {queue} failed: {message}")]
    Sdk {
        op: &'static str,
        queue: String,
        message: String,
    },
    #[error("{} message(s) could not be sent to {queue} after {ATTEMPTS} attempts: {}", failed.len(), failed.join("; "))]
    Unsent { queue: String, failed: Vec<String> },
}

/// One queue, by URL.
#[derive(Clone, Debug)]
pub struct Queue {
    client: Client,
    url: String,
}

impl Queue {
    pub fn new(client: Client, url: impl Into<String>) -> Queue {
        Queue {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn send(&self, body: &str) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| QueueError::Sdk {
                op: "SendMessage",
                queue: self.url.clone(),
                message: DisplayErrorContext(&e).to_string(),
            })?;
        Ok(())
    }

    /// Sends every `(id, body)` pair, ten at a time, retrying entries that fail.
    pub async fn send_all(&self, messages: &[(String, String)]) -> Result<(), QueueError> {
        for batch in batches(messages) {
            let mut pending: Vec<&(String, String)> = batch.iter().collect();
            let mut reasons = Vec::new();
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(sqs_id(id))
                            .message_body(body)
                            .build()
                            .expect("id and body are set")
                    })
                    .collect::<Vec<_>>();
                let out = match self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) => {
                        reasons = vec![DisplayErrorContext(&e).to_string()];
                        continue;
                    }
                };
                reasons = out
                    .failed()
                    .iter()
                    .map(|f| format!("{}: {} {}", f.id(), f.code(), f.message().unwrap_or("")))
                    .collect();
                let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
                pending.retain(|(id, _)| failed.contains(&sqs_id(id).as_str()));
                if pending.is_empty() {
                    break;
                }
            }
            if !pending.is_empty() {
                return Err(QueueError::Unsent {
                    queue: self.url.clone(),
                    failed: reasons,
                });
            }
        }
        Ok(())
    }
}

/// Splits messages into batches within both SQS limits (a single oversized message goes alone,
/// and SQS says so).
fn batches(messages: &[(String, String)]) -> Vec<&[(String, String)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, body)) in messages.iter().enumerate() {
        let full = i - start == BATCH || (i > start && bytes + body.len() > BATCH_BYTES);
        if full {
            out.push(&messages[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += body.len();
    }
    if start < messages.len() {
        out.push(&messages[start..]);
    }
    out
}

/// Batch entry ids allow only alphanumerics, `-` and `_`, up to 80 characters.
fn sqs_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_respect_count_and_size() {
        let msg = |n: usize| (format!("m{n}"), "x".repeat(100 * 1024));
        let big: Vec<_> = (0..7).map(msg).collect();
        let sizes: Vec<usize> = super::batches(&big).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2, 2, 1], "100 KiB bodies: two per 256 KiB batch");
        let small: Vec<_> = (0..23).map(|n| (n.to_string(), "y".into())).collect();
        let sizes: Vec<usize> = super::batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [10, 10, 3]);
        assert!(super::batches(&[]).is_empty());
    }

    #[test]
    fn batch_ids_are_sanitised() {
        assert_eq!(super::sqs_id("job.1/c0"), "job_1_c0");
        assert_eq!(super::sqs_id(&"x".repeat(100)).len(), 80);
    }
}
