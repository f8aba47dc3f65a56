//! The local stack, as end-to-end tests, benchmarks and the demo see it: the manifest that
//! `make local-up` wrote, and clients for the pieces (the trigger through the Lambda Invoke API,
//! the jobs table, the queues, the published list), all from the standard AWS environment.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use proxyharvest::bucket::Bucket;
use proxyharvest::job::{CheckSpec, ChunkMessage, JobId, JobRecord, MESSAGE_VERSION};
use proxyharvest::pipeline::trigger::TriggerResponse;
use proxyharvest::proxy::Proxy;
use proxyharvest::publish::Publisher;
use proxyharvest::table::JobTable;
use serde_json::Value;

/// The running local stack.
pub struct Stack {
    pub sdk: aws_config::SdkConfig,
    pub table: JobTable,
    pub publisher: Publisher,
    pub lambda: aws_sdk_lambda::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub trigger_function: String,
    pub chunk_queue_url: String,
    pub chunk_dlq_url: String,
    pub chunk_poison_url: String,
    pub aggregate_queue_url: String,
    pub bucket: String,
    /// The local runtime's control API (`/_local/...`).
    pub control: String,
    pub manifest: Value,
    /// The state directory the manifest lives in (`.local/<name>`): logs are under it.
    state_dir: PathBuf,
    http: reqwest::Client,
}

impl Stack {
    /// Connects to the stack named by `PROXYHARVEST_MANIFEST` (set by `source .local/*/env`).
    /// Panics with instructions when there is none: these tests cannot pass without it.
    pub async fn from_env() -> Stack {
        let path = std::env::var_os("PROXYHARVEST_MANIFEST")
            .map(PathBuf::from)
            .expect(
                "end-to-end tests need the local stack: run `make local-test` (or `make local-up` \
             and `source .local/moto/env`)",
            );
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .expect("the manifest is JSON");
        let out = |k: &str| {
            manifest["outputs"][k]
                .as_str()
                .unwrap_or_else(|| panic!("manifest output {k} missing"))
                .to_owned()
        };
        let sdk = proxyharvest::aws::load().await;
        Stack {
            table: JobTable::new(proxyharvest::aws::dynamodb(&sdk), out("TableName")),
            publisher: Publisher::new(
                Bucket::new(proxyharvest::aws::s3(&sdk), out("BucketName")),
                "list/",
            ),
            lambda: aws_sdk_lambda::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            trigger_function: out("TriggerFunctionName"),
            chunk_queue_url: out("ChunkQueueUrl"),
            chunk_dlq_url: out("ChunkDeadLetterQueueUrl"),
            chunk_poison_url: out("ChunkPoisonQueueUrl"),
            aggregate_queue_url: out("AggregateQueueUrl"),
            bucket: out("BucketName"),
            control: std::env::var("PROXYHARVEST_LOCAL_CONTROL")
                .unwrap_or_else(|_| "http://127.0.0.1:9001".into()),
            http: reqwest::Client::new(),
            manifest,
            state_dir: path
                .parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".")),
            sdk,
        }
    }

    /// Invokes the trigger synchronously, as `proxyharvest run` does.
    pub async fn invoke_trigger(&self, event: &Value) -> Result<TriggerResponse, String> {
        let out = self
            .lambda
            .invoke()
            .function_name(&self.trigger_function)
            .payload(Blob::new(serde_json::to_vec(event).unwrap()))
            .send()
            .await
            .map_err(|e| aws_sdk_lambda::error::DisplayErrorContext(&e).to_string())?;
        let payload = out.payload.map(|b| b.into_inner()).unwrap_or_default();
        if let Some(kind) = out.function_error {
            return Err(format!("{kind}: {}", String::from_utf8_lossy(&payload)));
        }
        serde_json::from_slice(&payload)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&payload)))
    }

    /// Waits until the job is in a final state (or `limit` passes, which fails the test).
    pub async fn wait_final(&self, job: &JobId, limit: Duration) -> JobRecord {
        let start = Instant::now();
        loop {
            if let Some(rec) = self.table.get_job(job).await.expect("read the job")
                && rec.state.is_final()
            {
                return rec;
            }
            assert!(
                start.elapsed() < limit,
                "job {job} not final after {limit:?}: {:?}",
                self.table.get_job(job).await
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Records a job in `checking` with `chunks` chunks, as the trigger would, without sending
    /// them (tests send their own chunk messages).
    pub async fn start_checking_job(
        &self,
        job: &JobId,
        chunks: u64,
        scraped: u64,
        deadline: std::time::SystemTime,
        judge: &url::Url,
    ) {
        let now = std::time::SystemTime::now();
        self.table
            .create_job(job, now, deadline)
            .await
            .expect("create the job");
        let plan = proxyharvest::plan::plan(&proxyharvest::plan::PlanInput {
            proxies: scraped as usize,
            function_timeout: Duration::from_secs(20),
            safety_margin: Duration::from_secs(5),
            worst_case_check: Duration::from_secs(4),
            concurrency: 2,
        })
        .expect("a plan");
        let params = proxyharvest::list::CheckParams {
            judge: judge.to_string(),
            timeout_ms: 4000,
            connect_timeout_ms: 1000,
        };
        self.table
            .start_checking(
                job,
                &proxyharvest::table::Checking {
                    plan: &plan,
                    chunks_total: chunks,
                    scraped,
                    deadline_at: deadline,
                    check: &params,
                    sources: &[],
                },
            )
            .await
            .expect("start checking");
    }

    /// Sends a raw body to the chunk queue (for duplicate and poison-message tests).
    pub async fn send_chunk_body(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.chunk_queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send to the chunk queue");
    }

    /// The physical name of a function of the template, by its logical id prefix
    /// (`"Validator"` -> `proxyharvest-validator`).
    pub fn function(&self, logical: &str) -> String {
        let functions = self.manifest["functions"].as_object().expect("functions");
        functions
            .iter()
            .find(|(_, f)| f["logical_id"] == format!("{logical}Function"))
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| panic!("no function {logical} in the manifest"))
    }

    /// The log the local runtime writes for a function (`<state>/logs/<function>.log`, as
    /// `make local-up` starts it): one line per log record, `[environment] {json}`.
    pub fn log_file(&self, function: &str) -> PathBuf {
        self.state_dir.join("logs").join(format!("{function}.log"))
    }

    /// How many invocations the SQS event source of a function runs at once (its
    /// `MaximumConcurrency`), if the function has one.
    pub fn event_source_concurrency(&self, function: &str) -> Option<usize> {
        self.manifest["event_sources"]
            .as_array()?
            .iter()
            .find(|source| source["function"] == function)?["maximum_concurrency"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
    }

    /// The local runtime's status document.
    pub async fn runtime_status(&self) -> Value {
        self.http
            .get(format!("{}/_local/status", self.control))
            .send()
            .await
            .expect("the local runtime answers")
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).expect("status is JSON"))
            .expect("status body")
    }

    /// Kills every busy execution environment of a function, as if it died mid-invocation.
    /// Returns how many were killed.
    pub async fn kill_busy(&self, function: &str) -> u64 {
        let v: Value = self
            .http
            .post(format!("{}/_local/functions/{function}/kill", self.control))
            .send()
            .await
            .expect("the local runtime answers")
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).expect("kill answers JSON"))
            .expect("kill body");
        v["killed"].as_u64().unwrap_or(0)
    }

    /// Fires a schedule of the template now (e.g. the reaper's sweep).
    pub async fn fire_schedule(&self, name: &str) {
        let r = self
            .http
            .post(format!("{}/_local/schedules/{name}/fire", self.control))
            .send()
            .await
            .expect("the local runtime answers");
        assert!(r.status().is_success(), "firing {name}: {}", r.status());
    }

    /// Waits until a message whose body contains `marker` is in the chunk dead-letter queue;
    /// deletes it and returns its body.
    pub async fn await_dead_letter(&self, marker: &str, limit: Duration) -> Option<String> {
        self.await_message(&self.chunk_dlq_url, marker, limit).await
    }

    /// Waits until a message whose body contains `marker` is in the poison queue.
    pub async fn await_poison(&self, marker: &str, limit: Duration) -> Option<String> {
        self.await_message(&self.chunk_poison_url, marker, limit)
            .await
    }

    async fn await_message(&self, queue: &str, marker: &str, limit: Duration) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .visibility_timeout(1)
                .send()
                .await
                .expect("receive from the dead-letter queue");
            for m in out.messages() {
                let body = m.body().unwrap_or_default();
                if body.contains(marker) {
                    self.sqs
                        .delete_message()
                        .queue_url(queue)
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .send()
                        .await
                        .expect("delete from the dead-letter queue");
                    return Some(body.to_owned());
                }
            }
        }
        None
    }
}

/// A job configuration (TOML, for the trigger's `config_toml`) that keeps a job on loopback:
/// these sources, this judge and no HTTPS judge (the built-in one is on the internet), private
/// targets allowed, and the check's timeout and concurrency, which also size the chunks.
pub fn loopback_config(
    sources: &[String],
    judge: &url::Url,
    timeout: Duration,
    concurrency: usize,
) -> String {
    let mut toml = format!(
        "[check]\njudge = \"{judge}\"\njudge_https = \"\"\ntimeout_ms = {}\n\
         connect_timeout_ms = 1000\nconcurrency = {concurrency}\nallow_private = true\n",
        timeout.as_millis()
    );
    for url in sources {
        toml += &format!("\n[[sources]]\nurl = \"{url}\"\n");
    }
    toml
}

/// The machine the stack runs on, in one line, for the figures a benchmark prints: every
/// function, the emulator and the loopback servers share its cores.
pub fn machine_summary() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    format!(
        "{cpus} CPUs (nproc), {model}, Linux {}, {:.1} GiB RAM",
        kernel.trim(),
        mem_kib as f64 / 1024.0 / 1024.0
    )
}

/// Check settings for chunks checked on loopback: private targets allowed, 2 checks at once.
pub fn loopback_spec(judge: &url::Url, timeout_ms: u64) -> CheckSpec {
    CheckSpec {
        judge: judge.to_string(),
        judge_https: None,
        judge_ca_pem: None,
        timeout_ms,
        connect_timeout_ms: 1000,
        max_response_bytes: 32 * 1024,
        concurrency: 2,
        allow_private: true,
    }
}

/// A chunk message, as the trigger sends it.
pub fn chunk_body(job: &JobId, chunk_id: &str, spec: &CheckSpec, proxies: &[Proxy]) -> String {
    serde_json::to_string(&ChunkMessage {
        v: MESSAGE_VERSION,
        job_id: job.clone(),
        chunk_id: chunk_id.into(),
        check: spec.clone(),
        proxies: proxies.to_vec(),
    })
    .expect("a chunk serializes")
}

/// A fresh job id with a recognisable prefix.
pub fn job_id(prefix: &str) -> JobId {
    JobId::new(&format!("{prefix}-{:08x}", rand::random::<u32>())).expect("a valid id")
}

/// `scraped = live + dead + unchecked + rejected`: the invariant every end-to-end test asserts.
pub fn assert_accounting(rec: &JobRecord) {
    assert_eq!(
        rec.tally.total(),
        rec.scraped,
        "accounting does not add up for {}: {rec:?}",
        rec.job_id
    );
}

/// The `proxyharvest` binary where `cargo build` put it (the Makefile builds it before the tests).
pub fn cli_binary() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    let bin = target.join("debug/proxyharvest");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p proxyharvest-cli` first",
        bin.display()
    );
    bin
}
