//! The list bucket (S3): read an object with its ETag, write one only if it is unchanged.
//!
//! Conditional writes are what make concurrent publishers safe: `If-Match: <etag>` (or
//! `If-None-Match: *` when the object does not exist yet) turns a lost update into a
//! [`Written::Conflict`] that the caller answers by re-reading and re-merging.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("S3 {op} s3://{bucket}/{key} failed: {message}")]
    Sdk {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
}

/// An object's bytes and the ETag they were read at.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub body: Vec<u8>,
    pub etag: String,
}

/// What the object must be for a conditional write to go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// The object must not exist.
    Absent,
    /// The object must still have this ETag.
    Matches(String),
}

/// The result of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Done {
        etag: String,
    },
    /// Someone else wrote first (HTTP 412, or 409 from S3 under concurrency).
    Conflict,
}

#[derive(Clone, Debug)]
pub struct Bucket {
    client: Client,
    name: String,
}

impl Bucket {
    pub fn new(client: Client, name: impl Into<String>) -> Bucket {
        Bucket {
            client,
            name: name.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn err(&self, op: &'static str, key: &str, message: String) -> BucketError {
        BucketError::Sdk {
            op,
            bucket: self.name.clone(),
            key: key.to_owned(),
            message,
        }
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Versioned>, BucketError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Ok(None);
            }
            Err(e) => {
                return Err(self.err("GetObject", key, DisplayErrorContext(&e).to_string()));
            }
        };
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| self.err("GetObject(body)", key, e.to_string()))?
            .into_bytes()
            .to_vec();
        Ok(Some(Versioned { body, etag }))
    }

    /// Writes an object only if the precondition holds.
    pub async fn put_if(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        pre: &Precondition,
    ) -> Result<Written, BucketError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        req = match pre {
            Precondition::Absent => req.if_none_match("*"),
            Precondition::Matches(etag) => req.if_match(etag),
        };
        match req.send().await {
            Ok(out) => Ok(Written::Done {
                etag: out.e_tag().unwrap_or_default().to_owned(),
            }),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
                if matches!(status, Some(412 | 409))
                    || code == "PreconditionFailed"
                    || code == "ConditionalRequestConflict"
                {
                    Ok(Written::Conflict)
                } else {
                    Err(self.err("PutObject", key, DisplayErrorContext(&e).to_string()))
                }
            }
        }
    }

    /// Writes an object unconditionally.
    pub async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<String, BucketError> {
        let out = self
            .client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.err("PutObject", key, DisplayErrorContext(&e).to_string()))?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }
}
