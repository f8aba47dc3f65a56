//! The three Lambda handlers, as plain async functions over the adapters, so that the function
//! crates are glue and tests can call them directly.
//!
//! - [`trigger`]: fetch, de-duplicate, plan, record the job, queue its chunks;
//! - [`validator`]: check one chunk under the invocation's deadline, store, count once;
//! - [`aggregator`]: merge a finished job into the published list;
//! - [`judge`]: echo a Function URL request as the project's judge document.
//!
//! [`Services`] holds what every handler needs, built once per execution environment from the
//! deployment's environment variables ([`Deployment`]).

use std::time::Duration;

use crate::bucket::Bucket;
use crate::publish::Publisher;
use crate::queue::Queue;
use crate::table::JobTable;

pub mod aggregator;
pub mod judge;
pub mod reaper;
pub mod trigger;
pub mod validator;

pub use crate::plan::{LAMBDA_MAX_CONCURRENCY, VALIDATOR_MARGIN, validator_margin};

/// What the deployment tells a function through its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub table: String,
    pub bucket: String,
    pub list_prefix: String,
    pub chunk_queue_url: String,
    /// Where messages that can never succeed go at once (malformed, unknown job, …).
    pub chunk_dlq_url: Option<String>,
    /// Where the reaper keeps messages no job can claim.
    pub chunk_poison_queue_url: Option<String>,
    /// Key prefix of the per-job reports in the bucket.
    pub report_prefix: String,
    /// How long a job past its deadline may go without progress before the sweep expires it.
    pub stall: Duration,
    /// The deployment's configuration file (TOML) in the bucket, if any (`config/…`).
    pub config_key: Option<String>,
    /// The schedule and architecture, for the cost estimate in the trigger's report.
    pub schedule: String,
    pub architecture: String,
    pub aggregate_queue_url: String,
    /// The validator's function timeout: chunks are planned to finish well inside it.
    pub validator_timeout: Duration,
    /// The validator's maximum concurrency: how many chunks run at once.
    pub validator_concurrency: usize,
    /// Whether jobs may target private addresses at all (only local test stacks say yes).
    pub allow_private: bool,
}

/// A deployment setting is missing or malformed.
#[derive(Debug, thiserror::Error)]
#[error("deployment setting {name}: {problem}")]
pub struct DeploymentError {
    pub name: &'static str,
    pub problem: String,
}

impl Deployment {
    pub fn from_env() -> Result<Deployment, DeploymentError> {
        Deployment::from_vars(|k| std::env::var(k).ok())
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Deployment, DeploymentError> {
        let req = |name: &'static str| {
            var(name).filter(|v| !v.is_empty()).ok_or(DeploymentError {
                name,
                problem: "not set".into(),
            })
        };
        let num = |name: &'static str, default: u64| -> Result<u64, DeploymentError> {
            match var(name) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| DeploymentError {
                    name,
                    problem: format!("{v:?} is not a whole number"),
                }),
            }
        };
        let allow_private = match var("ALLOW_PRIVATE_TARGETS").as_deref() {
            None | Some("false") | Some("") => false,
            Some("true") => true,
            Some(other) => {
                return Err(DeploymentError {
                    name: "ALLOW_PRIVATE_TARGETS",
                    problem: format!("{other:?} is neither true nor false"),
                });
            }
        };
        Ok(Deployment {
            table: req("TABLE_NAME")?,
            bucket: req("BUCKET_NAME")?,
            list_prefix: var("LIST_PREFIX").unwrap_or_else(|| "list/".into()),
            chunk_queue_url: req("CHUNK_QUEUE_URL")?,
            chunk_dlq_url: var("CHUNK_DLQ_URL").filter(|v| !v.is_empty()),
            chunk_poison_queue_url: var("CHUNK_POISON_QUEUE_URL").filter(|v| !v.is_empty()),
            report_prefix: var("REPORT_PREFIX").unwrap_or_else(|| "reports/".into()),
            stall: Duration::from_secs(num("SWEEP_STALL_S", 120)?),
            config_key: var("CONFIG_KEY").filter(|v| !v.is_empty()),
            schedule: var("SCHEDULE_EXPRESSION").unwrap_or_else(|| "rate(6 hours)".into()),
            architecture: var("ARCHITECTURE").unwrap_or_else(|| "arm64".into()),
            aggregate_queue_url: req("AGGREGATE_QUEUE_URL")?,
            validator_timeout: Duration::from_secs(num("VALIDATOR_TIMEOUT_S", 120)?),
            validator_concurrency: num("VALIDATOR_MAX_CONCURRENCY", 20)?.max(1) as usize,
            allow_private,
        })
    }
}

/// The adapters every handler uses, built once.
#[derive(Clone, Debug)]
pub struct Services {
    pub deployment: Deployment,
    pub table: JobTable,
    pub chunks: Queue,
    pub chunk_dlq: Option<Queue>,
    pub chunk_poison: Option<Queue>,
    pub aggregate: Queue,
    pub publisher: Publisher,
}

impl Services {
    pub async fn from_env() -> Result<Services, DeploymentError> {
        let deployment = Deployment::from_env()?;
        let config = crate::aws::load().await;
        Ok(Services::new(deployment, &config))
    }

    pub fn new(deployment: Deployment, config: &aws_config::SdkConfig) -> Services {
        let sqs = crate::aws::sqs(config);
        Services {
            table: JobTable::new(crate::aws::dynamodb(config), &deployment.table),
            chunks: Queue::new(sqs.clone(), &deployment.chunk_queue_url),
            chunk_dlq: deployment
                .chunk_dlq_url
                .as_ref()
                .map(|u| Queue::new(sqs.clone(), u)),
            chunk_poison: deployment
                .chunk_poison_queue_url
                .as_ref()
                .map(|u| Queue::new(sqs.clone(), u)),
            aggregate: Queue::new(sqs, &deployment.aggregate_queue_url),
            publisher: Publisher::new(
                Bucket::new(crate::aws::s3(config), &deployment.bucket),
                &deployment.list_prefix,
            ),
            deployment,
        }
    }
}

/// Turns a handler error into the `errorType` Lambda reports, named after the error's kind.
pub fn diagnostic(error_type: &str, e: &dyn std::error::Error) -> lambda_runtime::Diagnostic {
    lambda_runtime::Diagnostic {
        error_type: error_type.to_owned(),
        error_message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const BASE: [(&str, &str); 4] = [
        ("TABLE_NAME", "t"),
        ("BUCKET_NAME", "b"),
        ("CHUNK_QUEUE_URL", "q1"),
        ("AGGREGATE_QUEUE_URL", "q2"),
    ];

    #[test]
    fn deployment_defaults_forbid_private_targets() {
        let d = Deployment::from_vars(vars(&BASE)).unwrap();
        assert!(!d.allow_private);
        assert_eq!(d.validator_timeout, Duration::from_secs(120));
    }

    #[test]
    fn deployment_errors_name_the_setting() {
        let e = Deployment::from_vars(vars(&BASE[..3])).unwrap_err();
        assert_eq!(e.name, "AGGREGATE_QUEUE_URL");
        let mut bad = BASE.to_vec();
        bad.push(("ALLOW_PRIVATE_TARGETS", "yes"));
        let e = Deployment::from_vars(vars(&bad)).unwrap_err();
        assert_eq!(e.name, "ALLOW_PRIVATE_TARGETS");
    }
}
