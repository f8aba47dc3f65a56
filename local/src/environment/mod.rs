//! Functions and their execution environments: how an invocation finds a warm process (or starts
//! one), waits for it under the function's timeout, and what each way of ending means.
//!
//! Like Lambda, a function has a pool of environments created on demand, one invocation each at
//! a time, reused while they live. A timed-out, crashed or killed environment is discarded and
//! replaced on the next need. The process side lives in `process`, the HTTP side in `runtime_api`.

mod log;
mod process;
mod runtime_api;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use hyper::body::Bytes;
use serde::Serialize;

pub use log::LogSink;
pub use process::SpawnError;
use process::{Assignment, Completion, Environment, Launch};

use crate::{ids, manifest::FunctionSpec};

/// `errorType` of an invocation that ran past its deadline.
pub const TIMEOUT_ERROR: &str = "Sandbox.Timedout";
/// `errorType` of an invocation whose process exited or was killed.
pub const EXIT_ERROR: &str = "Runtime.ExitError";

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function's response body.
    Success(Bytes),
    /// A function error, in Lambda's JSON shape (`errorType`, `errorMessage`, ...).
    Failure { error_type: String, body: Bytes },
}

impl Outcome {
    /// A failure raised by the runtime itself rather than reported by the function.
    pub fn runtime_failure(error_type: &str, message: &str) -> Self {
        Outcome::Failure {
            error_type: error_type.to_owned(),
            body: error_json(error_type, message),
        }
    }

    /// A failure the function reported on the Runtime API; its body is passed on as is when it
    /// is JSON, and wrapped otherwise.
    fn function_failure(body: Bytes, default_type: &str) -> Self {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(value) if value.is_object() => Outcome::Failure {
                error_type: value["errorType"]
                    .as_str()
                    .unwrap_or(default_type)
                    .to_owned(),
                body,
            },
            _ => Self::runtime_failure(default_type, &String::from_utf8_lossy(&body)),
        }
    }

    fn timeout(timeout: Duration) -> Self {
        Self::runtime_failure(
            TIMEOUT_ERROR,
            &format!("Task timed out after {} seconds", timeout.as_secs()),
        )
    }
}

/// `{"errorType":...,"errorMessage":...}`, in Lambda's key order.
pub fn error_json(error_type: &str, message: &str) -> Bytes {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ErrorBody<'a> {
        error_type: &'a str,
        error_message: &'a str,
    }
    let body = ErrorBody {
        error_type,
        error_message: message,
    };
    Bytes::from(serde_json::to_vec(&body).expect("strings serialize"))
}

/// Counters behind `/_local/status`. `failed` counts every failure, timeouts included.
#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
}

/// A snapshot of one function, for `/_local/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionStatus {
    pub environments_alive: usize,
    pub environments_busy: usize,
    pub invocations_started: u64,
    pub invocations_succeeded: u64,
    pub invocations_failed: u64,
    pub invocations_timed_out: u64,
}

#[derive(Debug, Default)]
struct Pool {
    /// Live environments without an invocation, most recently used last.
    idle: Vec<Arc<Environment>>,
    /// Every environment whose process has not been reaped yet, by id.
    all: BTreeMap<String, Arc<Environment>>,
}

/// One deployed function and its environments.
#[derive(Debug)]
pub struct Function {
    spec: FunctionSpec,
    arn: String,
    /// The process environment of every new execution environment, but for the per-environment
    /// Runtime API address and log stream.
    variables: BTreeMap<String, String>,
    log: LogSink,
    pool: Mutex<Pool>,
    counters: Counters,
    closing: AtomicBool,
}

impl Function {
    /// `inherited` is the runtime's own environment; the AWS_* and RUST_LOG parts of it reach
    /// the function, as a role's credentials and endpoints would.
    pub fn new(
        spec: FunctionSpec,
        arn: String,
        region: &str,
        inherited: impl IntoIterator<Item = (String, String)>,
        log: LogSink,
    ) -> Self {
        let variables = child_variables(&spec, region, inherited);
        Self {
            spec,
            arn,
            variables,
            log,
            pool: Mutex::default(),
            counters: Counters::default(),
            closing: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Runs one invocation to its end; never panics on function misbehaviour.
    pub async fn invoke(self: &Arc<Self>, payload: Bytes) -> Outcome {
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        let outcome = self.run(payload).await;
        let counter = match &outcome {
            Outcome::Success(_) => &self.counters.succeeded,
            Outcome::Failure { error_type, .. } => {
                if error_type == TIMEOUT_ERROR {
                    self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                &self.counters.failed
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    async fn run(self: &Arc<Self>, payload: Bytes) -> Outcome {
        let request_id = ids::uuid();
        let timeout = self.spec.timeout;
        let (environment, completion, started) = loop {
            if self.closing.load(Ordering::Relaxed) {
                return Outcome::runtime_failure(
                    "Local.ShuttingDown",
                    "the local runtime is stopping",
                );
            }
            let (environment, fresh) = match self.take_idle() {
                Some(environment) => (environment, false),
                None => match self.spawn().await {
                    Ok(environment) => (environment, true),
                    Err(err) => {
                        tracing::error!(function = self.name(), error = %err, "cannot start an environment");
                        return Outcome::runtime_failure(
                            "Runtime.InvalidEntrypoint",
                            &err.to_string(),
                        );
                    }
                },
            };
            let started = Instant::now();
            let deadline = SystemTime::now() + timeout;
            let assignment = Assignment {
                request_id: request_id.clone(),
                payload: payload.clone(),
                deadline_ms: deadline
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
                trace_id: ids::trace_id(),
            };
            match environment.assign(assignment) {
                Some(completion) => break (environment, completion, started),
                // An idle environment died in the meantime: try the next one.
                None if !fresh => continue,
                None => {
                    return Outcome::runtime_failure(
                        EXIT_ERROR,
                        "Runtime exited before it could take the invocation",
                    );
                }
            }
        };
        self.log.line(
            &environment.id,
            &format!("START RequestId: {request_id} Version: $LATEST"),
        );
        let outcome = tokio::select! {
            completion = completion => match completion {
                Ok(Completion::Response(body)) => Outcome::Success(body),
                Ok(Completion::Error(body)) => Outcome::function_failure(body, "Unhandled"),
                Ok(Completion::InitError(body)) => Outcome::function_failure(body, "Runtime.InitError"),
                Ok(Completion::Exited(how)) => Outcome::runtime_failure(EXIT_ERROR, &how),
                Err(_) => Outcome::runtime_failure(EXIT_ERROR, "the execution environment vanished"),
            },
            () = tokio::time::sleep(timeout) => {
                environment.abandon();
                environment.kill();
                self.log.line(&environment.id, &format!(
                    "{request_id} Task timed out after {} seconds", timeout.as_secs()));
                Outcome::timeout(timeout)
            }
        };
        self.log
            .line(&environment.id, &format!("END RequestId: {request_id}"));
        self.log.line(
            &environment.id,
            &format!(
                "REPORT RequestId: {request_id}\tDuration: {:.2} ms\tMemory Size: {} MB",
                started.elapsed().as_secs_f64() * 1000.0,
                self.spec.memory_mb
            ),
        );
        if !environment.is_dead() {
            self.pool().idle.push(environment);
        }
        outcome
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take_idle(&self) -> Option<Arc<Environment>> {
        let mut pool = self.pool();
        while let Some(environment) = pool.idle.pop() {
            if !environment.is_dead() {
                return Some(environment);
            }
        }
        None
    }

    async fn spawn(self: &Arc<Self>) -> Result<Arc<Environment>, SpawnError> {
        let id = ids::hex(8);
        let today = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let launch = Launch {
            binary: &self.spec.binary,
            function_arn: self.arn.clone(),
            variables: &self.variables,
            log_stream: format!("{}/[$LATEST]{id}", today[..10].replace('-', "/")),
            log: self.log.clone(),
        };
        let on_exit = {
            let function = Arc::downgrade(self);
            let id = id.clone();
            move || {
                if let Some(function) = function.upgrade() {
                    let mut pool = function.pool();
                    pool.all.remove(&id);
                    pool.idle.retain(|environment| environment.id != id);
                }
            }
        };
        let environment = Environment::spawn(id.clone(), launch, on_exit).await?;
        self.pool().all.insert(id, Arc::clone(&environment));
        Ok(environment)
    }

    /// SIGKILLs every environment in the middle of an invocation, as if its host died; their
    /// invocations fail with `Runtime.ExitError`. Returns how many were killed.
    pub fn kill_busy(&self) -> usize {
        let busy: Vec<Arc<Environment>> = self
            .pool()
            .all
            .values()
            .filter(|environment| environment.is_busy() && !environment.is_dead())
            .cloned()
            .collect();
        for environment in &busy {
            self.log
                .line(&environment.id, "killed through the control API");
            environment.kill();
        }
        busy.len()
    }

    pub fn status(&self) -> FunctionStatus {
        let (alive, busy) = {
            let pool = self.pool();
            let alive = pool.all.values().filter(|e| !e.is_dead());
            let busy = alive.clone().filter(|e| e.is_busy()).count();
            (alive.count(), busy)
        };
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FunctionStatus {
            environments_alive: alive,
            environments_busy: busy,
            invocations_started: count(&self.counters.started),
            invocations_succeeded: count(&self.counters.succeeded),
            invocations_failed: count(&self.counters.failed),
            invocations_timed_out: count(&self.counters.timed_out),
        }
    }

    /// Refuses new invocations, kills every environment and waits (up to `grace`) until their
    /// processes are reaped.
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.store(true, Ordering::Relaxed);
        let environments: Vec<Arc<Environment>> = self.pool().all.values().cloned().collect();
        for environment in &environments {
            environment.kill();
        }
        let until = Instant::now() + grace;
        while !self.pool().all.is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.pool().idle.clear();
    }
}

/// The variables a function's processes start with: the inherited AWS_* and RUST_LOG, then the
/// manifest's `environment` (which wins over them), then what Lambda itself sets (which wins
/// over everything, as Lambda's reserved variables do).
fn child_variables(
    spec: &FunctionSpec,
    region: &str,
    inherited: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    let mut variables: BTreeMap<String, String> = inherited
        .into_iter()
        .filter(|(name, _)| name.starts_with("AWS_") || name == "RUST_LOG" || name == "PATH")
        .collect();
    variables.extend(spec.environment.clone());
    let task_root = spec
        .binary
        .parent()
        .map(|dir| dir.display().to_string())
        .unwrap_or_else(|| "/".to_owned());
    variables.extend(
        [
            ("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                spec.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", spec.name),
            ),
            ("AWS_REGION", region.to_owned()),
            ("AWS_DEFAULT_REGION", region.to_owned()),
            ("LAMBDA_TASK_ROOT", task_root),
            ("TZ", ":UTC".to_owned()),
        ]
        .map(|(name, value)| (name.to_owned(), value)),
    );
    variables
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn spec() -> FunctionSpec {
        FunctionSpec {
            name: "fn-a".into(),
            logical_id: None,
            binary: PathBuf::from("/opt/fn/bootstrap"),
            timeout: Duration::from_secs(3),
            memory_mb: 256,
            environment: [
                ("TABLE_NAME", "jobs"),
                ("AWS_ENDPOINT_URL", "http://manifest"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        }
    }

    #[test]
    fn children_get_lambda_variables_and_the_aws_part_of_ours() {
        let inherited = [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_ENDPOINT_URL", "http://inherited"),
            ("AWS_REGION", "eu-west-1"),
            ("RUST_LOG", "debug"),
            ("HOME", "/root"),
            ("SECRET_THING", "x"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let variables = child_variables(&spec(), "us-east-1", inherited);
        let get = |name: &str| variables.get(name).map(String::as_str);
        assert_eq!(get("AWS_ACCESS_KEY_ID"), Some("test"));
        assert_eq!(get("RUST_LOG"), Some("debug"));
        assert_eq!(
            get("AWS_ENDPOINT_URL"),
            Some("http://manifest"),
            "manifest wins"
        );
        assert_eq!(
            get("AWS_REGION"),
            Some("us-east-1"),
            "Lambda's own variables win"
        );
        assert_eq!(get("AWS_DEFAULT_REGION"), Some("us-east-1"));
        assert_eq!(get("TABLE_NAME"), Some("jobs"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_NAME"), Some("fn-a"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), Some("256"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_VERSION"), Some("$LATEST"));
        assert_eq!(get("AWS_LAMBDA_LOG_GROUP_NAME"), Some("/aws/lambda/fn-a"));
        assert_eq!(get("LAMBDA_TASK_ROOT"), Some("/opt/fn"));
        assert_eq!(get("HOME"), None);
        assert_eq!(get("SECRET_THING"), None);
    }

    #[test]
    fn function_errors_keep_their_json_and_type() {
        let reported = Bytes::from_static(br#"{"errorType":"MyError","errorMessage":"boom"}"#);
        assert_eq!(
            Outcome::function_failure(reported.clone(), "Unhandled"),
            Outcome::Failure {
                error_type: "MyError".into(),
                body: reported
            }
        );
        let Outcome::Failure { error_type, body } =
            Outcome::function_failure(Bytes::from_static(b"not json"), "Unhandled")
        else {
            panic!("a failure");
        };
        assert_eq!(error_type, "Unhandled");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errorMessage"], "not json");
    }

    #[test]
    fn timeouts_read_like_lambda() {
        let Outcome::Failure { error_type, body } = Outcome::timeout(Duration::from_secs(60))
        else {
            panic!("a failure");
        };
        assert_eq!(error_type, TIMEOUT_ERROR);
        assert_eq!(
            body,
            r#"{"errorType":"Sandbox.Timedout","errorMessage":"Task timed out after 60 seconds"}"#
        );
    }
}
