//! Cost: what one run of the pipeline, and a month of scheduled runs, cost on AWS.
//!
//! The model is pure arithmetic over three inputs kept apart because they change for different
//! reasons: [`Prices`] (published prices, from `config/prices.toml`), [`Deployment`] (what the
//! SAM template fixes: memory, timeouts, concurrency, schedule) and [`Assumptions`] (what cannot
//! be known before a run: how long fetching takes, how many checks fail fast, how large results
//! are). The chunk plan comes from the real planner ([`crate::plan::plan`]), so the estimate
//! describes the chunks the trigger would make.
//!
//! Every API call the handlers make is counted where the code makes it (the trigger, each
//! validator, the aggregator, the publisher), and priced with the billing unit's rounding: SQS
//! bills each 64 KB of a request's payload, DynamoDB each started 1 KB written or 4 KB read.
//! Compute is priced at the worst case (every chunk runs its planned duration), so the bill is
//! an upper bound; [`Estimate::typical_per_run_usd`] gives the typical figure beside it. Free tiers
//! are never applied.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::job::{CheckSpec, ChunkMessage, JobId, MESSAGE_VERSION};
use crate::outcome::{Alive, Anonymity, CheckResult, FailureReason, Outcome, Timings};
use crate::plan::{self, Plan, PlanError, PlanInput};
use crate::plan::{LAMBDA_MAX_CONCURRENCY, validator_margin};
use crate::proxy::{Host, Port, Protocol, ProtocolSet, Proxy};
use crate::source::SourceReport;
use crate::table::RETENTION;
use crate::table::SWEEP_WINDOW;

/// The month the monthly figures are for: 30 days.
pub const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);
/// DynamoDB bills writes per started 1 KB.
pub const WRITE_UNIT_BYTES: usize = 1024;
/// DynamoDB bills strongly consistent reads per started 4 KB.
pub const READ_UNIT_BYTES: usize = 4096;
/// DynamoDB's storage overhead per item (indexing), added to the item's own size.
const ITEM_STORAGE_OVERHEAD: usize = 100;
/// A result item's bytes besides the results: keys, the four tallies and the expiry time.
const RESULT_ITEM_EXTRA_BYTES: usize = 128;
/// An item of the job index (`INDEX`, `<created_at>#<job id>`, the job id), read by the sweep.
const INDEX_ITEM_BYTES: usize = 96;
/// A chunk id counted into the job record's `done_chunks` set (`c00042`).
const CHUNK_ID_BYTES: usize = 6;
/// S3 calls of one run (see `publish.rs`): the trigger reads the merge state; the aggregator
/// reads it, writes it, writes proxies.json and the five text lists, then re-reads the state.
const S3_GETS_PER_RUN: u64 = 3;
const S3_PUTS_PER_RUN: u64 = 7;
/// SQS accepts at most this many messages in one send.
const SEND_BATCH: usize = crate::queue::BATCH;

const BUILTIN_PRICES: &str = include_str!("../../config/prices.toml");
const BUILTIN_PRICES_ORIGIN: &str = "config/prices.toml (built in)";

/// Why no estimate can be made.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("cannot plan the chunks: {0}")]
    Plan(#[from] PlanError),
    #[error(
        "schedule {expression:?} is not an EventBridge schedule: {problem} \
         (expected e.g. \"rate(6 hours)\" or \"cron(0 */6 * * ? *)\")"
    )]
    Schedule { expression: String, problem: String },
    #[error(
        "cannot count the runs of {expression:?}: cron schedules are not supported for cost; \
         pass --runs-per-month N"
    )]
    CronUnsupported { expression: String },
    #[error("prices in {origin}: {problem}")]
    Prices { origin: String, problem: String },
    #[error("{0}")]
    Invalid(String),
}

// ---- prices ------------------------------------------------------------------------------------

/// Published prices (USD), each service with where it is published and when it was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub region: String,
    pub lambda: LambdaPrices,
    pub sqs: SqsPrices,
    pub dynamodb: DynamoDbPrices,
    pub s3: S3Prices,
    pub data_transfer: TransferPrices,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaPrices {
    pub source: String,
    pub as_of: String,
    #[serde(deserialize_with = "price")]
    pub arm64_per_gb_second: f64,
    #[serde(deserialize_with = "price")]
    pub x86_64_per_gb_second: f64,
    #[serde(deserialize_with = "price")]
    pub per_million_requests: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsPrices {
    pub source: String,
    pub as_of: String,
    #[serde(deserialize_with = "price")]
    pub per_million_requests: f64,
    /// Each started chunk of this many payload bytes is billed as one request.
    pub billed_chunk_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoDbPrices {
    pub source: String,
    pub as_of: String,
    #[serde(deserialize_with = "price")]
    pub per_million_write_request_units: f64,
    #[serde(deserialize_with = "price")]
    pub per_million_read_request_units: f64,
    #[serde(deserialize_with = "price")]
    pub storage_per_gb_month: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Prices {
    pub source: String,
    pub as_of: String,
    #[serde(deserialize_with = "price")]
    pub per_thousand_put: f64,
    #[serde(deserialize_with = "price")]
    pub per_thousand_get: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferPrices {
    pub source: String,
    pub as_of: String,
    #[serde(deserialize_with = "price")]
    pub out_per_gb: f64,
}

/// A price is a finite number of zero or more.
fn price<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "a price must be 0 or more (got {v})"
        )))
    }
}

impl Prices {
    /// The prices shipped in `config/prices.toml`.
    pub fn builtin() -> Prices {
        Prices::from_toml(BUILTIN_PRICES, BUILTIN_PRICES_ORIGIN)
            .expect("the built-in price file is valid (tested)")
    }

    /// Reads a price file.
    pub fn load(path: &Path) -> Result<Prices, CostError> {
        let text = std::fs::read_to_string(path).map_err(|e| CostError::Prices {
            origin: path.display().to_string(),
            problem: e.to_string(),
        })?;
        Prices::from_toml(&text, &path.display().to_string())
    }

    /// Parses a price file; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Prices, CostError> {
        let err = |problem: String| CostError::Prices {
            origin: origin.to_owned(),
            problem,
        };
        let prices: Prices = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if prices.sqs.billed_chunk_bytes == 0 {
            return Err(err("sqs.billed_chunk_bytes must be above 0".into()));
        }
        Ok(prices)
    }

    fn lambda_per_gb_second(&self, arch: Architecture) -> f64 {
        match arch {
            Architecture::Arm64 => self.lambda.arm64_per_gb_second,
            Architecture::X86_64 => self.lambda.x86_64_per_gb_second,
        }
    }
}

// ---- billing units -----------------------------------------------------------------------------

/// The requests SQS bills for one API call carrying `payload_bytes`: one per started chunk of
/// `chunk_bytes`, at least one.
pub fn sqs_billed_requests(payload_bytes: usize, chunk_bytes: usize) -> u64 {
    payload_bytes.div_ceil(chunk_bytes.max(1)).max(1) as u64
}

/// The write request units of writing an item of `item_bytes` (for an update, the larger of the
/// item before and after).
pub fn write_units(item_bytes: usize) -> u64 {
    item_bytes.div_ceil(WRITE_UNIT_BYTES).max(1) as u64
}

/// How a DynamoDB read is made; an eventually consistent one costs half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Strong,
    Eventual,
}

/// The read request units of reading `bytes`.
pub fn read_units(bytes: usize, consistency: Consistency) -> f64 {
    let units = bytes.div_ceil(READ_UNIT_BYTES).max(1) as f64;
    match consistency {
        Consistency::Strong => units,
        Consistency::Eventual => units / 2.0,
    }
}

// ---- the deployment ----------------------------------------------------------------------------

/// The CPU architecture the functions run on (priced differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    #[serde(rename = "arm64")]
    Arm64,
    #[serde(rename = "x86_64")]
    X86_64,
}

impl FromStr for Architecture {
    type Err = CostError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "arm64" => Ok(Architecture::Arm64),
            "x86_64" => Ok(Architecture::X86_64),
            other => Err(CostError::Invalid(format!(
                "architecture {other:?} is neither arm64 nor x86_64"
            ))),
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Architecture::Arm64 => "arm64",
            Architecture::X86_64 => "x86_64",
        })
    }
}

/// An EventBridge schedule expression: `rate(N unit)` or `cron(six fields)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every `every`; `text` is the expression as written.
    Rate { every: Duration, text: String },
    /// A cron expression (fields only, as written); its runs are not counted.
    Cron(String),
}

impl FromStr for Schedule {
    type Err = CostError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |problem: &str| CostError::Schedule {
            expression: s.to_owned(),
            problem: problem.to_owned(),
        };
        let s = s.trim();
        if let Some(fields) = s.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
            let n = fields.split_whitespace().count();
            if n != 6 {
                return Err(bad(&format!("cron() takes 6 fields, this has {n}")));
            }
            return Ok(Schedule::Cron(fields.trim().to_owned()));
        }
        let Some(inner) = s.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) else {
            return Err(bad("it is neither rate(...) nor cron(...)"));
        };
        let mut parts = inner.split_whitespace();
        let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("rate() takes a value and a unit"));
        };
        let value: u64 = value
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| bad(&format!("the rate {value:?} is not a whole number above 0")))?;
        let (seconds, singular) = match unit {
            "minute" | "minutes" => (60, unit == "minute"),
            "hour" | "hours" => (3600, unit == "hour"),
            "day" | "days" => (86_400, unit == "day"),
            _ => {
                return Err(bad(&format!(
                    "unknown unit {unit:?} (minutes, hours or days)"
                )));
            }
        };
        // EventBridge rejects "rate(1 hours)" and "rate(2 hour)".
        if singular != (value == 1) {
            return Err(bad("the unit must be singular for 1 and plural otherwise"));
        }
        let every = value
            .checked_mul(seconds)
            .map(Duration::from_secs)
            .ok_or_else(|| bad("the rate is too long"))?;
        Ok(Schedule::Rate {
            every,
            text: format!("rate({value} {unit})"),
        })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Rate { text, .. } => f.write_str(text),
            Schedule::Cron(fields) => write!(f, "cron({fields})"),
        }
    }
}

impl Schedule {
    /// Runs in a 30-day month (fractional for periods that do not divide it).
    pub fn runs_per_month(&self) -> Result<f64, CostError> {
        match self {
            Schedule::Rate { every, .. } => Ok(MONTH.as_secs_f64() / every.as_secs_f64()),
            Schedule::Cron(_) => Err(CostError::CronUnsupported {
                expression: self.to_string(),
            }),
        }
    }
}

/// What the deployment fixes (infra/template.yaml). The defaults are the template's.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub architecture: Architecture,
    pub schedule: Schedule,
    pub validator_timeout: Duration,
    pub validator_memory_mb: u32,
    /// Validators running at once (the SQS event source's maximum concurrency).
    pub validator_max_concurrency: usize,
    pub trigger_memory_mb: u32,
    pub aggregator_memory_mb: u32,
    /// How often the reaper sweeps for stalled jobs (the template's SweepSchedule).
    pub sweep: Schedule,
    pub reaper_memory_mb: u32,
    /// Queues Lambda polls for the functions (chunks, aggregate, chunk dead letters).
    pub polled_queues: u32,
    /// Pollers Lambda keeps on each queue when it is idle.
    pub pollers_per_queue: u32,
    /// How long one of those pollers' receive calls waits for a message.
    pub long_poll_wait: Duration,
}

impl Default for Deployment {
    fn default() -> Deployment {
        Deployment {
            architecture: Architecture::Arm64,
            schedule: "rate(6 hours)".parse().expect("a valid rate"),
            validator_timeout: Duration::from_secs(120),
            validator_memory_mb: 256,
            validator_max_concurrency: 20,
            trigger_memory_mb: 256,
            aggregator_memory_mb: 512,
            sweep: "rate(5 minutes)".parse().expect("a valid rate"),
            reaper_memory_mb: 512,
            polled_queues: 3,
            pollers_per_queue: 5,
            long_poll_wait: Duration::from_secs(20),
        }
    }
}

impl Deployment {
    /// Lambda's memory range and the event source's concurrency range (the template's too).
    fn validate(&self) -> Result<(), CostError> {
        for (name, mb) in [
            ("validator memory", self.validator_memory_mb),
            ("trigger memory", self.trigger_memory_mb),
            ("aggregator memory", self.aggregator_memory_mb),
            ("reaper memory", self.reaper_memory_mb),
        ] {
            if !(128..=10_240).contains(&mb) {
                return Err(CostError::Invalid(format!(
                    "{name} must be between 128 and 10240 MB (got {mb})"
                )));
            }
        }
        if !(2..=1000).contains(&self.validator_max_concurrency) {
            return Err(CostError::Invalid(format!(
                "the validator's maximum concurrency must be between 2 and 1000 (got {})",
                self.validator_max_concurrency
            )));
        }
        if self.long_poll_wait.is_zero() {
            return Err(CostError::Invalid(
                "the long-poll wait must be above 0".into(),
            ));
        }
        Ok(())
    }
}

/// What cannot be known before a run. Stated in every estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Assumptions {
    /// How long the trigger runs (mostly fetching the sources: the fetch timeout is a fair bound).
    pub trigger_duration: Duration,
    /// How long the aggregator runs (query, merge, seven writes).
    pub aggregator_duration: Duration,
    /// How long one sweep of the reaper runs.
    pub sweep_duration: Duration,
    /// The share of checks that fail fast (refused, reset, unreachable)…
    pub fast_fail_share: f64,
    /// …and how long such a check takes.
    pub fast_fail_time: Duration,
    /// The share of proxies found alive (their stored results are longer).
    pub live_share: f64,
    /// Bytes sent out to the internet per proxy checked (handshakes and requests; answers come
    /// back in, free).
    pub egress_bytes_per_proxy: u64,
    /// Bytes of one proxy in a chunk message (JSON).
    pub proxy_entry_bytes: usize,
    /// Bytes of a stored dead and a stored live result (JSON).
    pub dead_result_bytes: usize,
    pub live_result_bytes: usize,
    /// Bytes of the job record before any chunk is counted (keys, counters, plan, settings).
    pub job_record_bytes: usize,
    /// Bytes of one source's report, stored in the job record.
    pub source_report_bytes: usize,
}

impl Default for Assumptions {
    /// Sizes are measured on typical values of the real types (an IPv4 proxy with one protocol),
    /// so they follow the formats when those change.
    fn default() -> Assumptions {
        let proxy = Proxy::new(
            Host::Ip([203, 0, 113, 254].into()),
            Port::new(8080).expect("8080 is a port"),
        )
        .with_protocol(Protocol::Http);
        let checked_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let dead = CheckResult {
            proxy: proxy.clone(),
            outcome: Outcome::Dead {
                reason: FailureReason::ConnectTimeout,
            },
            checked_at,
        };
        let live = CheckResult {
            outcome: Outcome::Alive(Alive {
                protocols: [Protocol::Http, Protocol::Https]
                    .into_iter()
                    .collect::<ProtocolSet>(),
                latency_ms: 1834,
                timings: Timings {
                    connect_ms: 212,
                    handshake_ms: 431,
                    first_byte_ms: 1790,
                    total_ms: 1834,
                },
                exit_ip: [203, 0, 113, 254].into(),
                anonymity: Anonymity::Anonymous,
            }),
            ..dead.clone()
        };
        Assumptions {
            trigger_duration: Duration::from_secs(30),
            aggregator_duration: Duration::from_secs(10),
            sweep_duration: Duration::from_secs(1),
            fast_fail_share: 0.7,
            fast_fail_time: Duration::from_secs(1),
            live_share: 0.05,
            egress_bytes_per_proxy: 1024,
            proxy_entry_bytes: json_len(&proxy),
            dead_result_bytes: json_len(&dead),
            live_result_bytes: json_len(&live),
            job_record_bytes: 640,
            source_report_bytes: json_len(&SourceReport {
                source:
                    "https://raw.githubusercontent.com/monosans/proxy-list/main/proxies/http.txt"
                        .into(),
                fetched: true,
                bytes: 1_234_567,
                parsed: 54_321,
                invalid: 12,
                duplicates: 345,
                error: None,
                attempts: 1,
                elapsed_ms: 2345,
            }),
        }
    }
}

impl Assumptions {
    fn validate(&self) -> Result<(), CostError> {
        for (name, share) in [
            ("fast_fail_share", self.fast_fail_share),
            ("live_share", self.live_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(CostError::Invalid(format!(
                    "{name} must be between 0 and 1 (got {share})"
                )));
            }
        }
        Ok(())
    }

    /// The mean bytes of one stored result.
    fn result_bytes(&self) -> f64 {
        self.live_share * self.live_result_bytes as f64
            + (1.0 - self.live_share) * self.dead_result_bytes as f64
    }
}

fn json_len<T: Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).expect("serialises").len()
}

// ---- the estimate ------------------------------------------------------------------------------

/// What to estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateInput {
    /// Proxies one run checks (after de-duplication).
    pub proxies: usize,
    /// The check settings that travel with each chunk (timeout, concurrency, judge).
    pub check: CheckSpec,
    pub deployment: Deployment,
    pub assumptions: Assumptions,
    /// Overrides the runs the schedule gives (needed for cron schedules).
    pub runs_per_month: Option<f64>,
    /// Sources fetched (their reports are stored in the job record).
    pub sources: usize,
}

/// The AWS service an item is billed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Lambda,
    Sqs,
    Dynamodb,
    S3,
    DataTransfer,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Lambda => "Lambda",
            Service::Sqs => "SQS",
            Service::Dynamodb => "DynamoDB",
            Service::S3 => "S3",
            Service::DataTransfer => "Data transfer",
        })
    }
}

/// A price for a billing unit: `usd` per `per` units of `unit`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rate {
    usd: f64,
    per: f64,
    unit: &'static str,
}

/// One line of a bill: `quantity` units at `price_usd` per `per` units.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub service: Service,
    pub what: String,
    pub quantity: f64,
    pub unit: &'static str,
    pub price_usd: f64,
    pub per: f64,
    pub cost_usd: f64,
}

impl Item {
    fn new(service: Service, what: impl Into<String>, quantity: f64, rate: Rate) -> Item {
        Item {
            service,
            what: what.into(),
            quantity,
            unit: rate.unit,
            price_usd: rate.usd,
            per: rate.per,
            cost_usd: quantity / rate.per * rate.usd,
        }
    }

    fn times(&self, n: f64) -> Item {
        let rate = Rate {
            usd: self.price_usd,
            per: self.per,
            unit: self.unit,
        };
        Item::new(self.service, self.what.clone(), self.quantity * n, rate)
    }
}

/// Itemised costs and their sum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bill {
    pub items: Vec<Item>,
    pub total_usd: f64,
}

impl Bill {
    fn new(items: Vec<Item>) -> Bill {
        let total_usd = items.iter().map(|i| i.cost_usd).sum();
        Bill { items, total_usd }
    }
}

/// How long a run takes, worst case and typical. Seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timing {
    /// Rounds of validators: `ceil(chunks / validator_max_concurrency)`.
    pub rounds: usize,
    pub worst_chunk_s: f64,
    pub typical_chunk_s: f64,
    /// Checking only: `rounds × chunk duration`.
    pub worst_checking_s: f64,
    pub typical_checking_s: f64,
    /// Trigger, checking and aggregator.
    pub worst_run_s: f64,
    pub typical_run_s: f64,
}

/// The plan and the cost of one run and of a month of runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub proxies: usize,
    /// Checks one validator runs at once (the configured concurrency, capped for Lambda).
    pub concurrency: usize,
    pub validator_max_concurrency: usize,
    pub plan: Plan,
    pub timing: Timing,
    pub architecture: Architecture,
    pub schedule: String,
    pub runs_per_month: f64,
    /// Priced at the worst case: every chunk runs its planned duration.
    pub per_run: Bill,
    /// `per_run` × runs, plus what a month costs whatever the runs (idle polling, storage).
    pub per_month: Bill,
    /// The per-run total with the validators' typical duration instead of the worst case.
    pub typical_per_run_usd: f64,
    pub region: String,
    /// What the numbers rest on, in words.
    pub assumptions: Vec<String>,
}

/// Plans the chunks of `input.proxies` as the trigger would and prices one run and a month.
pub fn estimate(input: &EstimateInput, prices: &Prices) -> Result<Estimate, CostError> {
    let (d, a) = (&input.deployment, &input.assumptions);
    d.validate()?;
    a.validate()?;
    let runs_per_month = match input.runs_per_month {
        Some(n) if n.is_finite() && n >= 0.0 => n,
        Some(n) => {
            return Err(CostError::Invalid(format!(
                "runs per month must be 0 or more (got {n})"
            )));
        }
        None => d.schedule.runs_per_month()?,
    };
    let worst_case_check = Duration::from_millis(input.check.timeout_ms);
    let concurrency = input.check.concurrency.min(LAMBDA_MAX_CONCURRENCY);
    let plan = plan::plan(&PlanInput {
        proxies: input.proxies,
        function_timeout: d.validator_timeout,
        safety_margin: validator_margin(input.deployment.validator_timeout),
        worst_case_check,
        concurrency,
    })?;
    let timing = timing(&plan, input, concurrency);
    let bytes = Sizes::new(&plan, input);

    let per_run = Bill::new(per_run_items(&plan, input, prices, &timing, &bytes));
    let validator_gb = f64::from(d.validator_memory_mb) / 1024.0;
    let typical_per_run_usd = per_run.total_usd
        - plan.chunks as f64
            * (timing.worst_chunk_s - timing.typical_chunk_s)
            * validator_gb
            * prices.lambda_per_gb_second(d.architecture);
    let mut month: Vec<Item> = per_run
        .items
        .iter()
        .map(|i| i.times(runs_per_month))
        .collect();
    month.extend(monthly_items(input, prices, &bytes, runs_per_month)?);

    Ok(Estimate {
        proxies: input.proxies,
        concurrency,
        validator_max_concurrency: d.validator_max_concurrency,
        plan,
        assumptions: statements(input, &bytes, runs_per_month),
        timing,
        architecture: d.architecture,
        schedule: d.schedule.to_string(),
        runs_per_month,
        per_run,
        per_month: Bill::new(month),
        typical_per_run_usd,
        region: prices.region.clone(),
    })
}

/// Chunks run in rounds of `validator_max_concurrency`. A chunk's checks run in a sliding
/// window of `concurrency`, so it takes its summed check time over the concurrency, but never
/// less than one slow check, nor more than planned.
fn timing(plan: &Plan, input: &EstimateInput, concurrency: usize) -> Timing {
    let a = &input.assumptions;
    let worst_check = input.check.timeout_ms as f64 / 1000.0;
    let fast = a.fast_fail_time.as_secs_f64().min(worst_check);
    let mean_check = a.fast_fail_share * fast + (1.0 - a.fast_fail_share) * worst_check;
    let worst_chunk_s = plan.max_chunk_duration.as_secs_f64();
    let typical_chunk_s = if plan.chunks == 0 {
        0.0
    } else {
        (plan.chunk_size as f64 * mean_check / concurrency as f64)
            .max(worst_check)
            .min(worst_chunk_s)
    };
    let rounds = plan
        .chunks
        .div_ceil(input.deployment.validator_max_concurrency);
    let around = (a.trigger_duration + a.aggregator_duration).as_secs_f64();
    Timing {
        rounds,
        worst_chunk_s,
        typical_chunk_s,
        worst_checking_s: rounds as f64 * worst_chunk_s,
        typical_checking_s: rounds as f64 * typical_chunk_s,
        worst_run_s: around + rounds as f64 * worst_chunk_s,
        typical_run_s: around + rounds as f64 * typical_chunk_s,
    }
}

/// The sizes the billing units round: of a chunk message and of a chunk's results item; and
/// what a run leaves in the table (results items and the job record).
struct Sizes {
    /// The job record once every chunk is counted.
    job_record: usize,
    chunk_message: usize,
    result_item: usize,
    stored_per_run: usize,
}

impl Sizes {
    fn new(plan: &Plan, input: &EstimateInput) -> Sizes {
        let a = &input.assumptions;
        // The envelope measured on a real message; entries are comma-separated.
        let envelope = json_len(&ChunkMessage {
            v: MESSAGE_VERSION,
            job_id: JobId::for_slot(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000)),
            chunk_id: "c00000".into(),
            check: input.check.clone(),
            proxies: Vec::new(),
        });
        let n = plan.chunk_size;
        let results_json = 2 + (n as f64 * a.result_bytes()).ceil() as usize + n.saturating_sub(1);
        let result_item = results_json + RESULT_ITEM_EXTRA_BYTES;
        let record = job_record(input, plan.chunks);
        Sizes {
            job_record: record,
            chunk_message: envelope + n * a.proxy_entry_bytes + n.saturating_sub(1),
            result_item,
            stored_per_run: plan.chunks * (result_item + ITEM_STORAGE_OVERHEAD)
                + record
                + INDEX_ITEM_BYTES
                + 2 * ITEM_STORAGE_OVERHEAD,
        }
    }
}

/// The job record's bytes once `counted` chunks are counted.
fn job_record(input: &EstimateInput, counted: usize) -> usize {
    let a = &input.assumptions;
    a.job_record_bytes + input.sources * a.source_report_bytes + counted * CHUNK_ID_BYTES
}

/// Every billed call of one run, where the handlers make it.
fn per_run_items(
    plan: &Plan,
    input: &EstimateInput,
    prices: &Prices,
    timing: &Timing,
    bytes: &Sizes,
) -> Vec<Item> {
    let (d, a) = (&input.deployment, &input.assumptions);
    let chunks = plan.chunks;
    let r = Rates::new(prices, d.architecture);
    let billed = |payload: usize| sqs_billed_requests(payload, prices.sqs.billed_chunk_bytes);

    // The trigger sends chunks in batches of ten; with no chunks it tells the aggregator itself,
    // otherwise the validator that counts the last chunk does: one small send either way.
    let full = chunks / SEND_BATCH;
    let rest = chunks % SEND_BATCH;
    let sends = full as u64 * billed(SEND_BATCH * bytes.chunk_message)
        + if rest > 0 {
            billed(rest * bytes.chunk_message)
        } else {
            0
        }
        + 1;
    // Lambda receives each message (its payload billed like a send) and deletes it.
    let receives = chunks as u64 * billed(bytes.chunk_message) + 1;
    let deletes = chunks as u64 + 1;

    // The job record grows by one chunk id per counted chunk; an update is billed on the larger
    // of the item before and after, a read on the item as it is.
    let record = |counted: usize| job_record(input, counted);
    let record_writes = 2 // create, with its index item
        + write_units(record(0)) // start checking: the plan and settings are written
        + (1..=chunks).map(|i| write_units(record(i))).sum::<u64>()
        + 2 * write_units(record(chunks)); // begin aggregation, finish
    let record_reads = read_units(record(0), Consistency::Strong) // the trigger's final read
        + (0..chunks)
            .map(|i| read_units(record(i), Consistency::Strong))
            .sum::<f64>();
    let result_writes = chunks as u64 * write_units(bytes.result_item);
    let query_reads = read_units(chunks * bytes.result_item, Consistency::Strong);

    let gb_s = |mb: u32, seconds: f64| f64::from(mb) / 1024.0 * seconds;
    let trigger_gb_s = gb_s(d.trigger_memory_mb, a.trigger_duration.as_secs_f64());
    let validator_gb_s = chunks as f64 * gb_s(d.validator_memory_mb, timing.worst_chunk_s);
    let aggregator_gb_s = gb_s(d.aggregator_memory_mb, a.aggregator_duration.as_secs_f64());
    let egress_gb = (input.proxies as u64 * a.egress_bytes_per_proxy) as f64 / GIB;
    use Service::*;
    // A table: one line per item.
    #[rustfmt::skip]
    let items = vec![
        Item::new(Lambda, "invocations", chunks as f64 + 2.0, r.invoke),
        Item::new(Lambda, "trigger compute", trigger_gb_s, r.compute),
        Item::new(Lambda, "validator compute (worst case)", validator_gb_s, r.compute),
        Item::new(Lambda, "aggregator compute", aggregator_gb_s, r.compute),
        Item::new(Sqs, "send (batches of 10, per 64 KB)", sends as f64, r.sqs),
        Item::new(Sqs, "receive (Lambda pollers, per 64 KB)", receives as f64, r.sqs),
        Item::new(Sqs, "delete", deletes as f64, r.sqs),
        Item::new(Dynamodb, "job record writes", record_writes as f64, r.write),
        Item::new(Dynamodb, "chunk results writes", result_writes as f64, r.write),
        Item::new(Dynamodb, "job record reads (strongly consistent)", record_reads, r.read),
        Item::new(Dynamodb, "results query (strongly consistent)", query_reads, r.read),
        Item::new(S3, "GET (merge state)", S3_GETS_PER_RUN as f64, r.get),
        Item::new(S3, "PUT (state, proxies.json, 5 text lists)", S3_PUTS_PER_RUN as f64, r.put),
        Item::new(DataTransfer, "out to the proxies checked", egress_gb, r.egress),
    ];
    items
}

/// The prices in billing units.
struct Rates {
    invoke: Rate,
    compute: Rate,
    sqs: Rate,
    write: Rate,
    read: Rate,
    storage: Rate,
    get: Rate,
    put: Rate,
    egress: Rate,
}

impl Rates {
    fn new(p: &Prices, arch: Architecture) -> Rates {
        let rate = |usd, per, unit| Rate { usd, per, unit };
        Rates {
            invoke: rate(p.lambda.per_million_requests, 1e6, "requests"),
            compute: rate(p.lambda_per_gb_second(arch), 1.0, "GB-s"),
            sqs: rate(p.sqs.per_million_requests, 1e6, "requests"),
            write: rate(p.dynamodb.per_million_write_request_units, 1e6, "WRU"),
            read: rate(p.dynamodb.per_million_read_request_units, 1e6, "RRU"),
            storage: rate(p.dynamodb.storage_per_gb_month, 1.0, "GB-month"),
            get: rate(p.s3.per_thousand_get, 1e3, "requests"),
            put: rate(p.s3.per_thousand_put, 1e3, "requests"),
            egress: rate(p.data_transfer.out_per_gb, 1.0, "GB"),
        }
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// What a month costs beyond its runs: Lambda's pollers receive on every queue all the time,
/// and results stay in the table until they expire.
fn monthly_items(
    input: &EstimateInput,
    prices: &Prices,
    bytes: &Sizes,
    runs: f64,
) -> Result<Vec<Item>, CostError> {
    let (d, a) = (&input.deployment, &input.assumptions);
    let r = Rates::new(prices, d.architecture);
    let polls = f64::from(d.polled_queues * d.pollers_per_queue) * MONTH.as_secs_f64()
        / d.long_poll_wait.as_secs_f64();
    // Items are kept for RETENTION: the table holds that many runs' worth.
    let stored_gb =
        runs * RETENTION.as_secs_f64() / MONTH.as_secs_f64() * bytes.stored_per_run as f64 / GIB;
    // Each sweep queries the index for the jobs of its window (eventually consistent) and reads
    // each of their records (strongly consistent); at most 500, as the reaper does.
    let sweeps = d.sweep.runs_per_month()?;
    let jobs = (runs * SWEEP_WINDOW.as_secs_f64() / MONTH.as_secs_f64())
        .ceil()
        .min(500.0) as usize;
    let sweep_reads = sweeps
        * (read_units(jobs * INDEX_ITEM_BYTES, Consistency::Eventual)
            + jobs as f64 * read_units(bytes.job_record, Consistency::Strong));
    let sweep_gb_s =
        sweeps * f64::from(d.reaper_memory_mb) / 1024.0 * a.sweep_duration.as_secs_f64();
    use Service::*;
    #[rustfmt::skip]
    let items = vec![
        Item::new(Lambda, "reaper sweeps", sweeps, r.invoke),
        Item::new(Lambda, "reaper compute", sweep_gb_s, r.compute),
        Item::new(Sqs, "idle polling by Lambda", polls, r.sqs),
        Item::new(Dynamodb, "sweep reads (index, job records)", sweep_reads, r.read),
        Item::new(Dynamodb, "storage (results until they expire)", stored_gb, r.storage),
    ];
    Ok(items)
}

/// The assumptions in words, with their numbers.
fn statements(input: &EstimateInput, bytes: &Sizes, runs: f64) -> Vec<String> {
    let (d, a) = (&input.deployment, &input.assumptions);
    vec![
        "Free tiers are not applied.".into(),
        format!(
            "The trigger runs {} s (about the fetch timeout), the aggregator {} s, and the \
             reaper {} s a sweep ({}).",
            a.trigger_duration.as_secs_f64(),
            a.aggregator_duration.as_secs_f64(),
            a.sweep_duration.as_secs_f64(),
            d.sweep
        ),
        format!(
            "The job record is about {} bytes with {} source reports, plus {CHUNK_ID_BYTES} a \
             counted chunk.",
            job_record(input, 0),
            input.sources
        ),
        format!(
            "Typical: {:.0} % of checks fail fast (in {} s), the rest take the whole check timeout \
             ({} s); worst case: every check takes the timeout.",
            a.fast_fail_share * 100.0,
            a.fast_fail_time.as_secs_f64(),
            input.check.timeout_ms as f64 / 1000.0
        ),
        format!(
            "A chunk message is about {} bytes ({} per proxy); a chunk's results item about {} \
             bytes ({:.0} % live results of {} bytes, dead of {}).",
            bytes.chunk_message,
            a.proxy_entry_bytes,
            bytes.result_item,
            a.live_share * 100.0,
            a.live_result_bytes,
            a.dead_result_bytes
        ),
        format!(
            "Lambda's pollers: their receive and delete calls are billed as SQS requests; \
             {} pollers on each of {} queues long-poll every {} s when idle.",
            d.pollers_per_queue,
            d.polled_queues,
            d.long_poll_wait.as_secs()
        ),
        format!(
            "{} bytes go out per proxy checked; responses coming in are free.",
            a.egress_bytes_per_proxy
        ),
        format!(
            "{} runs a month (30 days); no redeliveries, retries or contended writes.",
            if runs.fract() == 0.0 {
                format!("{runs:.0}")
            } else {
                format!("{runs:.2}")
            }
        ),
        "Not counted: CloudWatch Logs, EventBridge (free for schedules), S3 storage of the \
         list (a few MB), consumers' reads of the list, the project's judge function (if the \
         checks use it), and chunks split further for long credentials."
            .into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(timeout_ms: u64, concurrency: usize) -> CheckSpec {
        CheckSpec {
            judge: "http://judge.example/".into(),
            judge_https: None,
            judge_ca_pem: None,
            timeout_ms,
            connect_timeout_ms: timeout_ms / 2,
            max_response_bytes: 32_768,
            concurrency,
            allow_private: false,
        }
    }
    /// Round prices, so that the expectations below can be worked out by hand.
    fn round_prices() -> Prices {
        let mut p = Prices::builtin();
        p.lambda.arm64_per_gb_second = 0.00001;
        p.lambda.per_million_requests = 0.2;
        p.sqs.per_million_requests = 0.4;
        p.sqs.billed_chunk_bytes = 65_536;
        p.dynamodb.per_million_write_request_units = 1.0;
        p.dynamodb.per_million_read_request_units = 0.5;
        p.dynamodb.storage_per_gb_month = 0.25;
        p.s3.per_thousand_put = 0.005;
        p.s3.per_thousand_get = 0.0004;
        p.data_transfer.out_per_gb = 0.09;
        p
    }

    fn round_assumptions() -> Assumptions {
        Assumptions {
            trigger_duration: Duration::from_secs(30),
            aggregator_duration: Duration::from_secs(10),
            sweep_duration: Duration::from_secs(1),
            fast_fail_share: 0.7,
            fast_fail_time: Duration::from_secs(1),
            live_share: 0.5,
            egress_bytes_per_proxy: 1024,
            proxy_entry_bytes: 50,
            dead_result_bytes: 100,
            live_result_bytes: 300,
            job_record_bytes: 1000,
            source_report_bytes: 200,
        }
    }

    fn input(proxies: usize) -> EstimateInput {
        EstimateInput {
            proxies,
            check: spec(10_000, 50),
            deployment: Deployment {
                validator_max_concurrency: 2,
                ..Deployment::default()
            },
            assumptions: round_assumptions(),
            runs_per_month: None,
            sources: 0,
        }
    }

    fn item<'a>(bill: &'a Bill, what: &str) -> &'a Item {
        bill.items
            .iter()
            .find(|i| i.what.starts_with(what))
            .unwrap_or_else(|| panic!("no item {what:?} in {bill:#?}"))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-9)
    }

    #[test]
    fn billing_units_round_up_per_started_unit() {
        let chunk = 65_536;
        let cases = [(0, 1), (1, 1), (chunk, 1), (chunk + 1, 2), (4 * chunk, 4)];
        for (payload, billed) in cases {
            assert_eq!(
                sqs_billed_requests(payload, chunk),
                billed,
                "{payload} bytes"
            );
        }
        assert_eq!([0, 1, 1024, 1025, 4096].map(write_units), [1, 1, 1, 2, 4]);
        assert_eq!(read_units(1, Consistency::Strong), 1.0);
        assert_eq!(read_units(4096, Consistency::Strong), 1.0);
        assert_eq!(read_units(4097, Consistency::Strong), 2.0);
        assert_eq!(read_units(1, Consistency::Eventual), 0.5);
        assert_eq!(read_units(4097, Consistency::Eventual), 1.0);
    }

    #[test]
    fn rate_schedules_give_runs_per_month() {
        let cases = [
            ("rate(6 hours)", 120.0),
            ("rate(1 hour)", 720.0),
            ("rate(1 day)", 30.0),
            ("rate(3 days)", 10.0),
            ("rate(1 minute)", 43_200.0),
            ("rate(7 minutes)", 43_200.0 / 7.0),
            (" rate(45 days) ", 30.0 / 45.0),
        ];
        for (text, runs) in cases {
            let s: Schedule = text.parse().unwrap();
            assert!(close(s.runs_per_month().unwrap(), runs), "{text}");
            assert_eq!(s.to_string(), text.trim());
        }
    }

    #[test]
    fn malformed_schedules_say_what_is_wrong() {
        let cases = [
            ("rate(1 hours)", "singular for 1"),
            ("rate(2 hour)", "singular for 1"),
            ("rate(0 hours)", "above 0"),
            ("rate(-1 hours)", "above 0"),
            ("rate(6 weeks)", "unknown unit \"weeks\""),
            ("rate(6)", "a value and a unit"),
            ("rate(6 hours now)", "a value and a unit"),
            ("every 6 hours", "neither rate(...) nor cron(...)"),
            ("cron(0 12 * * ?)", "6 fields, this has 5"),
        ];
        for (text, want) in cases {
            let err = text.parse::<Schedule>().unwrap_err().to_string();
            assert!(err.contains(want) && err.contains(text), "{text}: {err}");
        }
    }

    #[test]
    fn cron_schedules_need_runs_per_month() {
        let s: Schedule = "cron(0 */6 * * ? *)".parse().unwrap();
        assert_eq!(s.to_string(), "cron(0 */6 * * ? *)");
        let err = s.runs_per_month().unwrap_err().to_string();
        assert!(err.contains("--runs-per-month"), "{err}");

        let mut i = input(1000);
        i.deployment.schedule = s;
        assert!(matches!(
            estimate(&i, &round_prices()),
            Err(CostError::CronUnsupported { .. })
        ));
        i.runs_per_month = Some(4.0);
        let e = estimate(&i, &round_prices()).unwrap();
        assert_eq!(e.runs_per_month, 4.0);
        i.runs_per_month = Some(-1.0);
        assert!(estimate(&i, &round_prices()).is_err());
    }

    #[test]
    fn builtin_prices_are_the_published_ones() {
        let p = Prices::builtin();
        assert_eq!(p.region, "us-east-1");
        assert_eq!(p.lambda.arm64_per_gb_second, 0.0000133334);
        assert_eq!(p.lambda.x86_64_per_gb_second, 0.0000166667);
        assert_eq!(p.lambda.per_million_requests, 0.20);
        assert_eq!(p.sqs.per_million_requests, 0.40);
        assert_eq!(p.sqs.billed_chunk_bytes, 65_536);
        assert_eq!(p.dynamodb.per_million_write_request_units, 0.625);
        assert_eq!(p.dynamodb.per_million_read_request_units, 0.125);
        assert_eq!(p.s3.per_thousand_put, 0.005);
        assert_eq!(p.s3.per_thousand_get, 0.0004);
        for (source, as_of) in [
            (&p.lambda.source, &p.lambda.as_of),
            (&p.sqs.source, &p.sqs.as_of),
            (&p.dynamodb.source, &p.dynamodb.as_of),
            (&p.s3.source, &p.s3.as_of),
            (&p.data_transfer.source, &p.data_transfer.as_of),
        ] {
            assert!(source.starts_with("https://aws.amazon.com/"), "{source}");
            assert!(!as_of.is_empty());
        }
    }

    #[test]
    fn bad_price_files_are_refused_with_the_key() {
        let negative = BUILTIN_PRICES.replace("per_thousand_get = 0.0004", "per_thousand_get = -1");
        let err = Prices::from_toml(&negative, "p.toml")
            .unwrap_err()
            .to_string();
        // The TOML error quotes the line, so the key is named.
        for want in [
            "p.toml",
            "per_thousand_get = -1",
            "a price must be 0 or more (got -1)",
        ] {
            assert!(err.contains(want), "{want:?} not in {err}");
        }
        let unknown = format!("{BUILTIN_PRICES}\n[cloudfront]\nper_gb = 1\n");
        let err = Prices::from_toml(&unknown, "p.toml").unwrap_err();
        assert!(err.to_string().contains("cloudfront"), "{err}");
        let zero_chunk =
            BUILTIN_PRICES.replace("billed_chunk_bytes = 65536", "billed_chunk_bytes = 0");
        let err = Prices::from_toml(&zero_chunk, "p.toml").unwrap_err();
        assert!(err.to_string().contains("billed_chunk_bytes"), "{err}");
    }

    #[test]
    fn sizes_are_measured_on_the_real_formats() {
        let a = Assumptions::default();
        assert_eq!(
            a.proxy_entry_bytes,
            r#"{"host":"203.0.113.254","port":8080,"protocols":["http"]}"#.len()
        );
        assert!(a.dead_result_bytes > a.proxy_entry_bytes);
        assert!(a.live_result_bytes > a.dead_result_bytes);
    }

    #[test]
    fn small_case_by_hand() {
        let e = estimate(&input(1000), &round_prices()).unwrap();
        // 105 s usable / 10 s = 10 rounds of 50, capped at 341 proxies a chunk: 3 chunks of 334
        // (7 rounds, 70 s); 2 validators at once: 2 rounds.
        assert_eq!((e.plan.chunks, e.plan.chunk_size), (3, 334));
        assert_eq!(e.timing.rounds, 2);
        assert_eq!(e.timing.worst_chunk_s, 70.0);
        assert_eq!(e.timing.worst_checking_s, 140.0);
        assert_eq!(e.timing.worst_run_s, 180.0);
        // Mean check 0.7 * 1 + 0.3 * 10 = 3.7 s; 334 * 3.7 / 50 = 24.716 s.
        assert!(close(e.timing.typical_chunk_s, 24.716));
        assert!(close(e.timing.typical_checking_s, 49.432));

        let run = &e.per_run;
        let q = |what| item(run, what).quantity;
        assert_eq!(q("invocations"), 5.0);
        assert_eq!(q("trigger compute"), 7.5); // 0.25 GB * 30 s
        assert_eq!(q("validator compute"), 52.5); // 3 * 0.25 GB * 70 s
        assert_eq!(q("aggregator compute"), 5.0); // 0.5 GB * 10 s
        // Messages of about 17 KB: one billed send for the batch of three, one to the
        // aggregator; a receive and a delete per message.
        assert_eq!(q("send"), 2.0);
        assert_eq!(q("receive"), 4.0);
        assert_eq!(q("delete"), 4.0);
        // Results: 2 + 334 * 200 + 333 + 128 = 67,263 bytes = 66 WRU each.
        assert_eq!(q("chunk results writes"), 198.0);
        // Create 2 (with the index item), start 1, three counts 1 each (1006..1018 bytes),
        // aggregate and finish 1 each.
        assert_eq!(q("job record writes"), 8.0);
        assert_eq!(q("job record reads"), 4.0);
        // 3 * 67,263 bytes read = 50 RRU.
        assert_eq!(q("results query"), 50.0);
        assert_eq!(q("GET"), 3.0);
        assert_eq!(q("PUT"), 7.0);
        assert!(close(q("out to the proxies"), 1000.0 * 1024.0 / GIB));

        let total = 65.0 * 0.00001 // Lambda GB-s
            + 5.0 * 0.2e-6 // Lambda requests
            + 10.0 * 0.4e-6 // SQS
            + 206.0 * 1e-6 // DynamoDB writes
            + 54.0 * 0.5e-6 // DynamoDB reads
            + 3.0 * 0.0004e-3
            + 7.0 * 0.005e-3
            + 1000.0 * 1024.0 / GIB * 0.09;
        assert!(close(run.total_usd, total), "{} != {total}", run.total_usd);
        let typical = total - 3.0 * 0.25 * (70.0 - 24.716) * 0.00001;
        assert!(close(e.typical_per_run_usd, typical));

        // 120 runs; idle polling (3 queues * 5 pollers, one call per 20 s for 30 days); 8,640
        // sweeps (every 5 minutes), each reading the index (0.5 RRU) and the 28 jobs of its
        // 7 days (1 RRU each) for 1 s at 0.5 GB; 120 runs of stored items:
        // 3 * (67,263 + 100) + (1,018 + 100) + (96 + 100) bytes each.
        let month = 120.0 * total
            + 3.0 * 5.0 * 30.0 * 86_400.0 / 20.0 * 0.4e-6
            + 8640.0 * 0.2e-6
            + 8640.0 * 0.5 * 0.00001
            + 8640.0 * 28.5 * 0.5e-6
            + 120.0 * 203_403.0 / GIB * 0.25;
        assert_eq!(e.runs_per_month, 120.0);
        assert!(
            close(e.per_month.total_usd, month),
            "{} != {month}",
            e.per_month.total_usd
        );
    }

    #[test]
    fn totals_are_the_sums_of_their_items() {
        for proxies in [0, 1, 999, 50_000] {
            let e = estimate(&input(proxies), &Prices::builtin()).unwrap();
            for bill in [&e.per_run, &e.per_month] {
                let sum: f64 = bill.items.iter().map(|i| i.cost_usd).sum();
                assert!(close(bill.total_usd, sum));
                for i in &bill.items {
                    assert!(close(i.cost_usd, i.quantity / i.per * i.price_usd), "{i:?}");
                }
            }
            for i in &e.per_run.items {
                assert!(close(
                    item(&e.per_month, &i.what).cost_usd,
                    120.0 * i.cost_usd
                ));
            }
        }
    }

    #[test]
    fn no_proxies_costs_only_the_fixed_calls() {
        let e = estimate(&input(0), &round_prices()).unwrap();
        assert_eq!((e.plan.chunks, e.timing.rounds), (0, 0));
        let q = |what| item(&e.per_run, what).quantity;
        assert_eq!(q("validator compute"), 0.0);
        assert_eq!(q("chunk results writes"), 0.0);
        assert_eq!(q("out to the proxies"), 0.0);
        assert_eq!(q("invocations"), 2.0); // trigger and aggregator
        assert_eq!((q("send"), q("receive"), q("delete")), (1.0, 1.0, 1.0));
        assert_eq!(q("job record writes"), 5.0);
        assert_eq!(q("job record reads"), 1.0);
        assert_eq!(q("results query"), 1.0);
        assert!(e.per_run.total_usd > 0.0);
        assert_eq!(e.typical_per_run_usd, e.per_run.total_usd);
    }

    #[test]
    fn source_reports_make_the_job_record_dearer() {
        let mut i = input(1000);
        i.sources = 20; // 1,000 + 20 * 200 = 5,000 bytes: 5 WRU an update, 2 RRU a read
        let e = estimate(&i, &round_prices()).unwrap();
        let q = |what| item(&e.per_run, what).quantity;
        assert_eq!(q("job record writes"), 2.0 + 5.0 + 3.0 * 5.0 + 2.0 * 5.0);
        assert_eq!(q("job record reads"), 4.0 * 2.0);
        assert!(Assumptions::default().source_report_bytes > 100);
    }

    #[test]
    fn deployment_and_config_shape_the_estimate() {
        let prices = Prices::builtin();
        let arm = estimate(&input(10_000), &prices).unwrap();
        let mut i = input(10_000);
        i.deployment.architecture = Architecture::X86_64;
        let x86 = estimate(&i, &prices).unwrap();
        let gb_s = item(&arm.per_run, "validator compute").quantity;
        assert_eq!(item(&x86.per_run, "validator compute").quantity, gb_s);
        assert!(close(
            item(&x86.per_run, "validator compute").cost_usd,
            gb_s * 0.0000166667
        ));

        // More validators at once: fewer rounds, same chunks.
        i.deployment.validator_max_concurrency = 100;
        let wide = estimate(&i, &prices).unwrap();
        assert_eq!(wide.plan, arm.plan);
        assert_eq!(wide.timing.rounds, arm.plan.chunks.div_ceil(100));

        // The configured concurrency is capped at what Lambda's file limit allows.
        i.check.concurrency = 4096;
        assert_eq!(
            estimate(&i, &prices).unwrap().concurrency,
            LAMBDA_MAX_CONCURRENCY
        );

        i.deployment.validator_memory_mb = 64;
        let err = estimate(&i, &prices).unwrap_err().to_string();
        assert!(err.contains("between 128 and 10240"), "{err}");
        let mut i = input(10);
        i.deployment.validator_max_concurrency = 1;
        assert!(estimate(&i, &prices).is_err());
        // A check timeout longer than the validator can run is the planner's error.
        let mut i = input(10);
        i.check.timeout_ms = 200_000;
        assert!(matches!(estimate(&i, &prices), Err(CostError::Plan(_))));
    }
}
