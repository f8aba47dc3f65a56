//! The command line's arguments (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "proxyharvest",
    version,
    about = "A fresh, verified list of working public proxies"
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). PROXYHARVEST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check the proxies found in a file or stdin, on this machine.
    Check(CheckArgs),
    /// The whole job on this machine: fetch sources, check, write the published list format.
    Scan(ScanArgs),
    /// Start a job on the pipeline (invokes the trigger) and wait for it.
    Run(RunArgs),
    /// Wait for a job that is already running.
    Wait(WaitArgs),
    /// Show a job's record: counts, plan, each source and each failed chunk.
    Status(StatusArgs),
    /// Recent jobs, newest first, with state, counts and durations.
    Jobs(JobsArgs),
    /// Read the published list.
    Get(GetArgs),
    /// The chunk plan of a run and what runs cost on AWS (itemised, from published prices).
    Plan(PlanArgs),
}

/// How to check (shared by `check` and `scan`; `run` passes the judge settings on).
#[derive(Args, Debug, Clone, Default)]
pub struct CheckFlags {
    /// URL of the HTTP judge (azenv, httpbin or proxyharvest format).
    #[arg(long)]
    pub judge: Option<String>,
    /// URL of an HTTPS judge, used to check CONNECT.
    #[arg(long)]
    pub judge_https: Option<String>,
    /// CA certificate (PEM) of a private HTTPS judge.
    #[arg(long)]
    pub judge_ca: Option<PathBuf>,
    /// Allow proxies at private, loopback and link-local addresses (off by default: scraped
    /// lists are hostile input).
    #[arg(long)]
    pub allow_private: bool,
    /// Checks in flight at once (capped by the open-file limit).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Time allowed for the whole check of one proxy.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Time allowed for the TCP connect to a proxy.
    #[arg(long)]
    pub connect_timeout_ms: Option<u64>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// One JSON object per line.
    Json,
    /// `scheme://host:port` of the live proxies, one per line.
    Txt,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// File to read proxies from, in any format the parser takes; `-` for stdin.
    #[arg(long, short, default_value = "-")]
    pub input: String,
    #[command(flatten)]
    pub check: CheckFlags,
    #[arg(long, value_enum, default_value = "json")]
    pub format: ResultFormat,
    /// Write results here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// A configuration file (TOML); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// A configuration file (TOML); without it, the built-in defaults and public sources.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A source URL or file (repeatable); replaces the configured sources.
    #[arg(long = "source")]
    pub sources: Vec<String>,
    /// Where to write proxies.json and the text lists.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    #[command(flatten)]
    pub check: CheckFlags,
    /// Exit with code 4 when fewer live proxies than this were found.
    #[arg(long, default_value_t = 0)]
    pub min_live: u64,
}

/// Where the pipeline is: the local stack's manifest, or names given directly.
#[derive(Args, Debug, Clone, Default)]
pub struct StackArgs {
    /// The local stack's manifest (written by `make local-up`).
    #[arg(long, env = "PROXYHARVEST_MANIFEST")]
    pub stack_manifest: Option<PathBuf>,
    /// The trigger function's name.
    #[arg(long, env = "PROXYHARVEST_TRIGGER_FUNCTION")]
    pub function: Option<String>,
    /// The jobs table's name.
    #[arg(long, env = "PROXYHARVEST_TABLE")]
    pub table: Option<String>,
    /// The list bucket's name.
    #[arg(long, env = "PROXYHARVEST_BUCKET")]
    pub bucket: Option<String>,
    /// The key prefix of the published list in the bucket.
    #[arg(long, env = "PROXYHARVEST_LIST_PREFIX", default_value = "list/")]
    pub list_prefix: String,
}

#[derive(Args, Debug, Clone, Default)]
pub struct WaitFlags {
    /// Print machine-readable JSON (the final job record) instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Exit with code 4 when the job ends with fewer live proxies than this.
    #[arg(long, default_value_t = 0)]
    pub min_live: u64,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// A configuration file (TOML) sent with the job instead of the deployment's.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A source URL (repeatable); replaces the configured sources.
    #[arg(long = "source")]
    pub sources: Vec<String>,
    #[arg(long)]
    pub judge: Option<String>,
    #[arg(long)]
    pub judge_https: Option<String>,
    #[arg(long)]
    pub judge_ca: Option<PathBuf>,
    /// Ask for private targets; granted only where the deployment allows it.
    #[arg(long)]
    pub allow_private: bool,
    /// Start the job and print its id without waiting.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub wait: WaitFlags,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    pub job_id: String,
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub wait: WaitFlags,
}

#[derive(Args, Debug)]
pub struct JobsArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// How far back to look (e.g. 24h, 7d).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub since: std::time::Duration,
    /// At most this many jobs.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print the job records as a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    pub job_id: String,
    #[command(flatten)]
    pub stack: StackArgs,
    /// Print the job record as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// The published JSON document (filtered).
    Json,
    /// `host:port` lines (`scheme://host:port` when no protocol filter is given).
    Txt,
    /// One row per proxy, with a header row.
    Csv,
    /// `scheme://user:pass@host:port` URLs for HTTP clients (credentials percent-encoded).
    Url,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[arg(long, value_enum, default_value = "txt")]
    pub format: ListFormat,
    /// Only proxies that speak this protocol (http, https, socks4, socks5).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Only proxies at least this anonymous (transparent, anonymous, elite).
    #[arg(long)]
    pub anonymity: Option<String>,
    /// Only proxies that answered the judge within this many milliseconds.
    #[arg(long)]
    pub max_latency_ms: Option<u32>,
    /// Only proxies whose uptime (alive checks / checks, 0 to 1) is at least this.
    #[arg(long)]
    pub min_uptime: Option<f64>,
    /// Only proxies checked within this long (e.g. 30m, 2h).
    #[arg(long, value_parser = proxyharvest::consume::parse_age)]
    pub max_age: Option<std::time::Duration>,
    /// Only proxies exiting in this country (ISO 3166-1 code, e.g. NZ); needs geolocation.
    #[arg(long)]
    pub country: Option<String>,
    /// At most this many proxies: the fastest that pass the filters.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Deployment settings default to infra/template.yaml's (see `proxyharvest::cost::Deployment`).
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// A configuration file (TOML): its check timeout and concurrency shape the chunks.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Proxies one run checks, after de-duplication.
    #[arg(long, default_value_t = 50_000)]
    pub proxies: usize,
    /// Validators running at once (the template's ValidatorMaxConcurrency; default 20).
    #[arg(long)]
    pub validator_max_concurrency: Option<usize>,
    /// The trigger's EventBridge schedule (default "rate(6 hours)").
    #[arg(long)]
    pub schedule: Option<String>,
    /// Runs a month, instead of counting them from the schedule (needed for cron schedules).
    #[arg(long)]
    pub runs_per_month: Option<f64>,
    /// arm64 or x86_64 (default arm64).
    #[arg(long)]
    pub architecture: Option<String>,
    /// The validator's memory in MB (default 256).
    #[arg(long)]
    pub memory_mb: Option<u32>,
    /// A price file like config/prices.toml, instead of the built-in prices.
    #[arg(long)]
    pub prices: Option<PathBuf>,
    /// Print the estimate as JSON.
    #[arg(long)]
    pub json: bool,
}
