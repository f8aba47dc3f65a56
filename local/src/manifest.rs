//! The resolved manifest the deploy script writes: which functions exist, where their binaries
//! are, which queues feed them, which schedules fire them and which have a Function URL.
//!
//! Two layers, as elsewhere in the project: `Raw*` structs mirror the JSON (unknown keys are
//! tolerated so the deploy script can add fields freely), and `Manifest` is the validated form the
//! runtime uses — references resolved, limits checked, schedule expressions parsed — so that a bad
//! manifest fails at start with a message naming the culprit, never mid-run.

use std::{
    collections::BTreeMap,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::schedule::{Schedule, ScheduleError};

/// Lambda's hard limit on a function timeout.
const MAX_TIMEOUT_S: u64 = 900;
/// One ReceiveMessage returns at most ten messages, and the local poller makes one per batch.
const MAX_BATCH_SIZE: usize = 10;
/// Concurrency of a mapping whose manifest entry does not cap it.
const DEFAULT_MAXIMUM_CONCURRENCY: usize = 5;

/// A manifest that could not be read or does not describe a runnable deployment.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("manifest is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest: {0}")]
    Invalid(String),
    #[error("function {function}: {problem}")]
    Function { function: String, problem: String },
    #[error("event source {queue_arn}: {problem}")]
    EventSource { queue_arn: String, problem: String },
    #[error("schedule {name}: {problem}")]
    Schedule { name: String, problem: String },
    #[error("schedule {name}: {source}")]
    Expression { name: String, source: ScheduleError },
    #[error("function URL of {function}: {problem}")]
    FunctionUrl { function: String, problem: String },
}

#[derive(Debug, Deserialize)]
struct RawManifest {
    region: String,
    account_id: String,
    functions: BTreeMap<String, RawFunction>,
    #[serde(default)]
    event_sources: Vec<RawEventSource>,
    #[serde(default)]
    schedules: Vec<RawSchedule>,
    #[serde(default)]
    function_urls: Vec<RawFunctionUrl>,
}

#[derive(Debug, Deserialize)]
struct RawFunction {
    #[serde(default)]
    logical_id: Option<String>,
    binary: PathBuf,
    #[serde(default = "default_timeout_s")]
    timeout_s: u64,
    #[serde(default = "default_memory_mb")]
    memory_mb: u32,
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct RawEventSource {
    function: String,
    queue_url: String,
    queue_arn: String,
    #[serde(default = "default_batch_size")]
    batch_size: usize,
    #[serde(default)]
    report_batch_item_failures: bool,
    #[serde(default)]
    maximum_concurrency: Option<usize>,
    #[serde(default = "yes")]
    enabled: bool,
}

#[derive(Debug, Deserialize)]
struct RawSchedule {
    name: String,
    function: String,
    expression: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    input: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RawFunctionUrl {
    function: String,
    port: u16,
}

fn default_timeout_s() -> u64 {
    3
}
fn default_memory_mb() -> u32 {
    128
}
fn default_batch_size() -> usize {
    MAX_BATCH_SIZE
}
fn yes() -> bool {
    true
}

/// The validated deployment.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub region: String,
    pub account_id: String,
    /// By physical function name.
    pub functions: BTreeMap<String, FunctionSpec>,
    pub event_sources: Vec<EventSource>,
    /// By schedule (rule) name.
    pub schedules: BTreeMap<String, ScheduleSpec>,
    /// At most one per function, each on its own port.
    pub function_urls: Vec<FunctionUrlSpec>,
}

/// One function: what to run and the limits it runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub name: String,
    pub logical_id: Option<String>,
    /// Absolute path of the function's executable (the `bootstrap`).
    pub binary: PathBuf,
    /// Between one second and Lambda's 900.
    pub timeout: Duration,
    pub memory_mb: u32,
    pub environment: BTreeMap<String, String>,
}

/// An SQS event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    pub function: String,
    pub queue_url: String,
    pub queue_arn: String,
    /// 1..=10: one ReceiveMessage per batch.
    pub batch_size: usize,
    pub report_batch_item_failures: bool,
    pub maximum_concurrency: NonZeroUsize,
    pub enabled: bool,
}

/// A schedule (EventBridge rule) that invokes a function asynchronously.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    pub name: String,
    pub function: String,
    pub schedule: Schedule,
    pub enabled: bool,
    /// Constant input that replaces the scheduled event, as a rule target's `Input` does.
    pub input: Option<serde_json::Value>,
}

/// A Function URL (auth type `NONE`): an HTTP listener on loopback whose requests invoke the
/// function with payload-format-2.0 events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionUrlSpec {
    pub function: String,
    /// The listener's port; 0 asks for any free one (tests).
    pub port: u16,
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Parses and validates a manifest from its JSON text.
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest = serde_json::from_str(text)?;
        Self::validate(raw)
    }

    /// The ARN Lambda gives the function named `name`.
    pub fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.region, self.account_id
        )
    }

    /// The ARN EventBridge gives the rule named `name`.
    pub fn rule_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:events:{}:{}:rule/{name}",
            self.region, self.account_id
        )
    }

    fn validate(raw: RawManifest) -> Result<Self, ManifestError> {
        if raw.region.trim().is_empty() {
            return Err(ManifestError::Invalid("region is empty".into()));
        }
        if raw.account_id.len() != 12 || !raw.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ManifestError::Invalid(format!(
                "account_id `{}` is not 12 digits",
                raw.account_id
            )));
        }
        let functions = raw
            .functions
            .into_iter()
            .map(|(name, function)| Ok((name.clone(), validate_function(name, function)?)))
            .collect::<Result<BTreeMap<_, _>, ManifestError>>()?;
        let event_sources = raw
            .event_sources
            .into_iter()
            .map(|source| validate_event_source(source, &functions))
            .collect::<Result<Vec<_>, _>>()?;
        let mut schedules = BTreeMap::new();
        for schedule in raw.schedules {
            let schedule = validate_schedule(schedule, &functions)?;
            if schedules.contains_key(&schedule.name) {
                return Err(ManifestError::Schedule {
                    name: schedule.name,
                    problem: "appears twice".into(),
                });
            }
            schedules.insert(schedule.name.clone(), schedule);
        }
        let function_urls = validate_function_urls(raw.function_urls, &functions)?;
        Ok(Self {
            region: raw.region,
            account_id: raw.account_id,
            functions,
            event_sources,
            schedules,
            function_urls,
        })
    }
}

fn validate_function(name: String, raw: RawFunction) -> Result<FunctionSpec, ManifestError> {
    let problem = |problem: String| ManifestError::Function {
        function: name.clone(),
        problem,
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err(problem(
            "a function name has only letters, digits, - and _".into(),
        ));
    }
    if !raw.binary.is_absolute() {
        return Err(problem(format!(
            "binary {} is not an absolute path",
            raw.binary.display()
        )));
    }
    if !(1..=MAX_TIMEOUT_S).contains(&raw.timeout_s) {
        return Err(problem(format!(
            "timeout_s {} is outside 1..={MAX_TIMEOUT_S}",
            raw.timeout_s
        )));
    }
    if !(128..=10_240).contains(&raw.memory_mb) {
        return Err(problem(format!(
            "memory_mb {} is outside 128..=10240",
            raw.memory_mb
        )));
    }
    Ok(FunctionSpec {
        name,
        logical_id: raw.logical_id,
        binary: raw.binary,
        timeout: Duration::from_secs(raw.timeout_s),
        memory_mb: raw.memory_mb,
        environment: raw.environment,
    })
}

fn validate_event_source(
    raw: RawEventSource,
    functions: &BTreeMap<String, FunctionSpec>,
) -> Result<EventSource, ManifestError> {
    let problem = |problem: String| ManifestError::EventSource {
        queue_arn: raw.queue_arn.clone(),
        problem,
    };
    if !functions.contains_key(&raw.function) {
        return Err(problem(format!("unknown function `{}`", raw.function)));
    }
    if !(1..=MAX_BATCH_SIZE).contains(&raw.batch_size) {
        return Err(problem(format!(
            "batch_size {} is outside 1..={MAX_BATCH_SIZE} (the local runtime makes one ReceiveMessage per batch)",
            raw.batch_size
        )));
    }
    let maximum_concurrency = match raw.maximum_concurrency {
        None => NonZeroUsize::new(DEFAULT_MAXIMUM_CONCURRENCY).expect("non-zero default"),
        Some(n) => NonZeroUsize::new(n)
            .ok_or_else(|| problem("maximum_concurrency must be at least 1".into()))?,
    };
    if !raw.queue_url.starts_with("http://") && !raw.queue_url.starts_with("https://") {
        return Err(problem(format!(
            "queue_url `{}` is not a URL",
            raw.queue_url
        )));
    }
    Ok(EventSource {
        function: raw.function,
        queue_url: raw.queue_url,
        queue_arn: raw.queue_arn,
        batch_size: raw.batch_size,
        report_batch_item_failures: raw.report_batch_item_failures,
        maximum_concurrency,
        enabled: raw.enabled,
    })
}

fn validate_schedule(
    raw: RawSchedule,
    functions: &BTreeMap<String, FunctionSpec>,
) -> Result<ScheduleSpec, ManifestError> {
    if !functions.contains_key(&raw.function) {
        return Err(ManifestError::Schedule {
            name: raw.name,
            problem: format!("unknown function `{}`", raw.function),
        });
    }
    let schedule = raw
        .expression
        .parse()
        .map_err(|source| ManifestError::Expression {
            name: raw.name.clone(),
            source,
        })?;
    // `null` input means "send the event", like an absent one.
    let input = raw.input.filter(|input| !input.is_null());
    Ok(ScheduleSpec {
        name: raw.name,
        function: raw.function,
        schedule,
        enabled: raw.enabled,
        input,
    })
}

fn validate_function_urls(
    raw: Vec<RawFunctionUrl>,
    functions: &BTreeMap<String, FunctionSpec>,
) -> Result<Vec<FunctionUrlSpec>, ManifestError> {
    let mut urls: Vec<FunctionUrlSpec> = Vec::with_capacity(raw.len());
    for url in raw {
        let problem = |problem: String| ManifestError::FunctionUrl {
            function: url.function.clone(),
            problem,
        };
        if !functions.contains_key(&url.function) {
            return Err(problem("unknown function".into()));
        }
        if urls.iter().any(|u| u.function == url.function) {
            return Err(problem("a function has at most one URL".into()));
        }
        if let Some(other) = urls.iter().find(|u| url.port != 0 && u.port == url.port) {
            return Err(problem(format!(
                "port {} is taken by the URL of {}",
                url.port, other.function
            )));
        }
        urls.push(FunctionUrlSpec {
            function: url.function,
            port: url.port,
        });
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{
      "region": "us-east-1",
      "account_id": "123456789012",
      "stack": "an extra key the runtime ignores",
      "functions": {
        "proxyharvest-trigger": { "logical_id": "TriggerFunction", "binary": "/opt/fn/trigger",
          "timeout_s": 60, "memory_mb": 256, "environment": {"TABLE_NAME": "jobs"} },
        "proxyharvest-validator": { "binary": "/opt/fn/validator", "timeout_s": 120,
          "memory_mb": 1024, "architecture": "x86_64" }
      },
      "event_sources": [ { "function": "proxyharvest-validator",
          "queue_url": "http://127.0.0.1:4566/123456789012/chunks",
          "queue_arn": "arn:aws:sqs:us-east-1:123456789012:chunks", "batch_size": 1,
          "report_batch_item_failures": true, "maximum_concurrency": 4, "enabled": true } ],
      "schedules": [ { "name": "proxyharvest-schedule", "function": "proxyharvest-trigger",
          "expression": "rate(1 hour)", "enabled": true, "input": null } ],
      "function_urls": [ { "function": "proxyharvest-validator", "port": 9101 } ]
    }"#;

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Manifest, ManifestError> {
        let mut value: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
        edit(&mut value);
        Manifest::from_json(&value.to_string())
    }

    #[test]
    fn example_manifest_parses_with_extras_tolerated() {
        let manifest = Manifest::from_json(EXAMPLE).unwrap();
        let trigger = &manifest.functions["proxyharvest-trigger"];
        assert_eq!(trigger.binary, Path::new("/opt/fn/trigger"));
        assert_eq!(trigger.timeout, Duration::from_secs(60));
        assert_eq!(trigger.memory_mb, 256);
        assert_eq!(trigger.logical_id.as_deref(), Some("TriggerFunction"));
        assert_eq!(trigger.environment["TABLE_NAME"], "jobs");
        assert!(
            manifest.functions["proxyharvest-validator"]
                .environment
                .is_empty()
        );

        let source = &manifest.event_sources[0];
        assert_eq!(source.function, "proxyharvest-validator");
        assert_eq!(source.batch_size, 1);
        assert!(source.report_batch_item_failures && source.enabled);
        assert_eq!(source.maximum_concurrency.get(), 4);

        let schedule = &manifest.schedules["proxyharvest-schedule"];
        assert_eq!(schedule.schedule, Schedule::Rate(Duration::from_secs(3600)));
        assert_eq!(schedule.input, None, "null input means the scheduled event");
        assert_eq!(
            manifest.function_arn("proxyharvest-trigger"),
            "arn:aws:lambda:us-east-1:123456789012:function:proxyharvest-trigger"
        );
        assert_eq!(
            manifest.rule_arn("proxyharvest-schedule"),
            "arn:aws:events:us-east-1:123456789012:rule/proxyharvest-schedule"
        );
        assert_eq!(
            manifest.function_urls,
            [FunctionUrlSpec {
                function: "proxyharvest-validator".into(),
                port: 9101
            }]
        );
    }

    #[test]
    fn function_urls_are_optional() {
        let manifest = with(|m| {
            m.as_object_mut().unwrap().remove("function_urls");
        })
        .unwrap();
        assert!(manifest.function_urls.is_empty());
    }

    #[test]
    fn optional_fields_take_lambda_defaults() {
        let manifest = with(|m| {
            m["functions"]["proxyharvest-trigger"] = serde_json::json!({"binary": "/opt/fn/t"});
            m["event_sources"][0] = serde_json::json!({"function": "proxyharvest-validator",
                "queue_url": "http://127.0.0.1:1/q", "queue_arn": "arn:q"});
            m["schedules"][0]["input"] = serde_json::json!({"job": "full"});
        })
        .unwrap();
        let trigger = &manifest.functions["proxyharvest-trigger"];
        assert_eq!(trigger.timeout, Duration::from_secs(3));
        assert_eq!(trigger.memory_mb, 128);
        let source = &manifest.event_sources[0];
        assert_eq!(source.batch_size, 10);
        assert!(source.enabled && !source.report_batch_item_failures);
        assert_eq!(
            source.maximum_concurrency.get(),
            DEFAULT_MAXIMUM_CONCURRENCY
        );
        assert_eq!(
            manifest.schedules["proxyharvest-schedule"].input,
            Some(serde_json::json!({"job": "full"}))
        );
    }

    #[test]
    fn invalid_manifests_name_the_culprit() {
        type Edit = fn(&mut serde_json::Value);
        let cases: [(Edit, &str); 12] = [
            (|m| m["account_id"] = "12345".into(), "12 digits"),
            (
                |m| m["functions"]["proxyharvest-trigger"]["binary"] = "trigger".into(),
                "absolute",
            ),
            (
                |m| m["functions"]["proxyharvest-trigger"]["timeout_s"] = 901.into(),
                "timeout_s 901",
            ),
            (
                |m| m["functions"]["proxyharvest-trigger"]["memory_mb"] = 64.into(),
                "memory_mb 64",
            ),
            (
                |m| m["event_sources"][0]["function"] = "nope".into(),
                "unknown function `nope`",
            ),
            (
                |m| m["event_sources"][0]["batch_size"] = 11.into(),
                "batch_size 11",
            ),
            (
                |m| m["event_sources"][0]["maximum_concurrency"] = 0.into(),
                "at least 1",
            ),
            (
                |m| m["schedules"][0]["expression"] = "rate(1 hours)".into(),
                "proxyharvest-schedule",
            ),
            (
                |m| {
                    let copy = m["schedules"][0].clone();
                    m["schedules"].as_array_mut().unwrap().push(copy);
                },
                "appears twice",
            ),
            (
                |m| m["function_urls"][0]["function"] = "nope".into(),
                "function URL of nope: unknown function",
            ),
            (
                |m| {
                    m["function_urls"] = serde_json::json!([
                        {"function": "proxyharvest-validator", "port": 9101},
                        {"function": "proxyharvest-trigger", "port": 9101}]);
                },
                "port 9101 is taken by the URL of proxyharvest-validator",
            ),
            (
                |m| {
                    m["function_urls"] = serde_json::json!([
                        {"function": "proxyharvest-validator", "port": 0},
                        {"function": "proxyharvest-validator", "port": 0}]);
                },
                "at most one URL",
            ),
        ];
        for (edit, expected) in cases {
            let err = with(edit).unwrap_err().to_string();
            assert!(err.contains(expected), "expected `{expected}` in: {err}");
        }
    }

    #[test]
    fn missing_required_keys_are_json_errors() {
        let err = with(|m| {
            m["functions"]["proxyharvest-trigger"]
                .as_object_mut()
                .unwrap()
                .remove("binary");
        })
        .unwrap_err();
        assert!(matches!(err, ManifestError::Json(_)), "{err}");
        assert!(err.to_string().contains("binary"), "{err}");
    }

    #[test]
    fn load_reports_the_path_it_could_not_read() {
        let err = Manifest::load(Path::new("/nonexistent/manifest.json")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/manifest.json"),
            "{err}"
        );
    }
}
