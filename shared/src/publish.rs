//! Publishing: merge a job's results into the list in the bucket without losing anyone's update.
//!
//! The merge state ([`STATE`]: the list plus the proxies recently found dead, which the merge needs
//! so that an older result never resurrects a proxy) is the source of truth. It is replaced only
//! with a conditional write on the ETag it was read at; on a conflict it is re-read and the merge
//! redone, with jittered backoff, up to [`MAX_ATTEMPTS`]. Because the merge is order-independent
//! and idempotent, two jobs finishing at once both end up in the list, and a replayed job changes
//! nothing. What consumers read — [`DOCUMENT`] (without the dead) and the text lists — is derived
//! from the state; after writing them the publisher checks that the state is still the one it
//! derived them from, and rewrites them from the newest one if not, so they converge on the last
//! state whatever the interleaving. With geolocation configured ([`Publisher::with_geo`]), every
//! merged list is enriched with the country and ASN of each exit address before it is written.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::bucket::{Bucket, BucketError, Precondition, Versioned, Written};
use crate::geo::GeoDb;
use crate::list::{CheckParams, ListError, PublishedList};
use crate::merge::{MergePolicy, merge};
use crate::outcome::CheckResult;

/// How many read-merge-write rounds a publisher tries before giving up.
pub const MAX_ATTEMPTS: u32 = 10;
/// The published document consumers read, under the list prefix.
pub const DOCUMENT: &str = "proxies.json";
/// The merge state, under the list prefix.
pub const STATE: &str = "state.json";

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("the published list s3://{bucket}/{key} is unreadable ({source}); not overwriting it")]
    Corrupt {
        bucket: String,
        key: String,
        source: ListError,
    },
    #[error(
        "the list kept changing under us: {MAX_ATTEMPTS} conditional writes lost to concurrent publishers"
    )]
    Contended,
}

/// The published list in one bucket, under one prefix.
#[derive(Clone, Debug)]
pub struct Publisher {
    bucket: Bucket,
    prefix: String,
    /// Geolocation databases to enrich each merged list with, if any.
    geo: Option<Arc<GeoDb>>,
}

impl Publisher {
    pub fn new(bucket: Bucket, prefix: impl Into<String>) -> Publisher {
        Publisher {
            bucket,
            prefix: prefix.into(),
            geo: None,
        }
    }

    /// Enriches every list this publisher writes from `geo` (none: the fields stay absent).
    pub fn with_geo(mut self, geo: Option<Arc<GeoDb>>) -> Publisher {
        self.geo = geo;
        self
    }

    /// Where consumers read the list.
    pub fn document_key(&self) -> String {
        format!("{}{DOCUMENT}", self.prefix)
    }

    fn state_key(&self) -> String {
        format!("{}{STATE}", self.prefix)
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The published list, as consumers see it.
    pub async fn published(&self) -> Result<Option<PublishedList>, PublishError> {
        self.read(&self.document_key())
            .await
            .map(|o| o.map(|(list, _)| list))
    }

    /// The merge state and its ETag, if anything was published.
    pub async fn current(&self) -> Result<Option<(PublishedList, String)>, PublishError> {
        self.read(&self.state_key()).await
    }

    async fn read(&self, key: &str) -> Result<Option<(PublishedList, String)>, PublishError> {
        match self.bucket.get(key).await? {
            None => Ok(None),
            Some(Versioned { body, etag }) => {
                let list =
                    PublishedList::from_json(&body).map_err(|source| PublishError::Corrupt {
                        bucket: self.bucket.name().to_owned(),
                        key: key.to_owned(),
                        source,
                    })?;
                Ok(Some((list, etag)))
            }
        }
    }

    /// Merges `results` into the published list and writes it back; returns what was written.
    pub async fn publish(
        &self,
        results: &[CheckResult],
        params: &CheckParams,
        job_id: Option<&str>,
        max_age: Duration,
    ) -> Result<PublishedList, PublishError> {
        let key = self.state_key();
        for attempt in 0..MAX_ATTEMPTS {
            let current = self.current().await?;
            let policy = MergePolicy {
                now: SystemTime::now(),
                max_age,
            };
            let mut merged = merge(
                current.as_ref().map(|(l, _)| l),
                results,
                params.clone(),
                job_id.map(str::to_owned),
                &policy,
            );
            if let Some(geo) = &self.geo {
                geo.enrich(&mut merged);
            }
            let pre = match &current {
                Some((_, etag)) => Precondition::Matches(etag.clone()),
                None => Precondition::Absent,
            };
            match self
                .bucket
                .put_if(&key, merged.to_json(), "application/json", &pre)
                .await?
            {
                Written::Done { etag } => {
                    self.write_derived(&merged, etag).await?;
                    return Ok(merged);
                }
                Written::Conflict => {
                    tracing::info!(attempt, "published list changed under us; re-merging");
                    let base = 25u64 << attempt.min(6);
                    let jitter = rand::random::<u64>() % base.max(1);
                    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
                }
            }
        }
        Err(PublishError::Contended)
    }

    /// Writes what consumers read from the state `list` (whose ETag is `etag`), then makes sure
    /// it was derived from the newest state.
    async fn write_derived(
        &self,
        list: &PublishedList,
        mut etag: String,
    ) -> Result<(), PublishError> {
        let mut list = list.clone();
        for _ in 0..MAX_ATTEMPTS {
            let mut public = list.clone();
            public.removed.clear();
            self.bucket
                .put(&self.document_key(), public.to_json(), "application/json")
                .await?;
            for (name, text) in list.text_lists() {
                let key = format!("{}{name}", self.prefix);
                self.bucket
                    .put(&key, text.into_bytes(), "text/plain; charset=utf-8")
                    .await?;
            }
            match self.current().await? {
                Some((newest, newest_etag)) if newest_etag != etag => {
                    list = newest;
                    etag = newest_etag;
                }
                _ => return Ok(()),
            }
        }
        Err(PublishError::Contended)
    }
}
