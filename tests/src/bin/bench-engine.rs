//! `make bench`: how fast and how lean is the checking engine?
//!
//! Runs [`Checker::check_all`] against a loopback farm of thousands of proxies and reports checks
//! per second, CPU per check, peak RSS and memory per check in flight, with the machine they were
//! measured on (docs/benchmarks.md records the figures).
//!
//! The farm and its judge do more work per check than the checker (they accept, parse, forward
//! and echo), so they run in a child process — this same binary in a hidden `--serve-farm` mode —
//! and the CPU and memory figures are the parent's alone: `getrusage(RUSAGE_SELF)` and
//! `/proc/self/status`. Both processes share the machine's cores, so throughput is conservative.
//!
//! Three phases, against one farm (each checks its share of it):
//! - memory: slow proxies (each answers after [`SLOW_DELAY`]) keep `concurrency` checks in flight
//!   at once; (peak RSS − RSS before) / concurrency is the memory per check in flight. It runs
//!   first, on a heap no earlier phase has grown. (Every phase resets the peak before it starts.)
//! - live: fast elite HTTP proxies and a plain HTTP judge: checks per second, CPU per check.
//! - mixed: 60 % live, 30 % refused ports, 10 % blackholes under a short timeout: wall time
//!   against the floor the blackholes set, ceil(blackholes / concurrency) × timeout.
//!
//! Every verdict is verified (live and slow are alive, refused is refused, a blackhole times out):
//! a wrong one is an internal failure and the exit status is 1. Performance is reported, never
//! asserted.

use std::fmt;
use std::io::{self, Read as _};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use proxyharvest::check::{CheckConfig, CheckError, Checker, raise_fd_limit};
use proxyharvest::judge::JudgeConfig;
use proxyharvest::outcome::{Alive, FailureReason, Outcome};
use proxyharvest::proxy::Proxy;
use proxyharvest::target::TargetPolicy;
use proxyharvest_tests::farm::{self, Kind};
use proxyharvest_tests::judge::{self, JudgeFormat};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const USAGE: &str = "usage: bench-engine [--proxies N] [--concurrency N] [--quick]
  --proxies N      proxies in the live and the mixed phase (default 5000, at least 10)
  --concurrency N  checks in flight at once (default 512)
  --quick          a smoke run: 300 proxies unless --proxies is given";

/// How long a slow proxy of the memory phase sits on each request.
const SLOW_DELAY: Duration = Duration::from_millis(200);
/// The per-check timeout of the mixed phase: what each blackhole costs.
const MIXED_TIMEOUT: Duration = Duration::from_secs(1);
/// The per-check timeout of the other phases: far above any loopback check, so none times out.
const LIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The targets, reported beside the figures.
const TARGET_CPU_MS_PER_CHECK: f64 = 0.2;
const TARGET_KIB_PER_CHECK: f64 = 64.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Options {
    proxies: usize,
    concurrency: usize,
    quick: bool,
}

/// What this process is: the benchmark, or the farm it spawned.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Bench(Options),
    ServeFarm(Counts),
}

/// How many proxies of each kind: a farm's, or the share of it a phase checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    live: usize,
    refused: usize,
    blackhole: usize,
    slow: usize,
}

/// The farm process's one line on stdout: the judge and the proxies, grouped by kind.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FarmListing {
    judge: String,
    live: Vec<Proxy>,
    refused: Vec<Proxy>,
    blackhole: Vec<Proxy>,
    slow: Vec<Proxy>,
}

#[derive(Debug)]
enum BenchError {
    Usage(String),
    Io {
        what: &'static str,
        source: io::Error,
    },
    Farm(String),
    Checker(CheckError),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(why) => write!(f, "{why}\n{USAGE}"),
            BenchError::Io { what, source } => write!(f, "{what}: {source}"),
            BenchError::Farm(why) => write!(f, "the farm process failed: {why}"),
            BenchError::Checker(e) => write!(f, "cannot build the checker: {e}"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Io { source, .. } => Some(source),
            BenchError::Checker(e) => Some(e),
            BenchError::Usage(_) | BenchError::Farm(_) => None,
        }
    }
}

fn io_error(what: &'static str) -> impl FnOnce(io::Error) -> BenchError {
    move |source| BenchError::Io { what, source }
}

fn parse_args(args: &[String]) -> Result<Mode, BenchError> {
    let number = |flag: &str, value: Option<&String>| -> Result<usize, BenchError> {
        value
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| BenchError::Usage(format!("{flag} needs a whole number")))
    };
    if args.first().map(String::as_str) == Some("--serve-farm") {
        let n: Vec<usize> = (1..=4)
            .map(|i| number("--serve-farm", args.get(i)))
            .collect::<Result<_, _>>()?;
        return Ok(Mode::ServeFarm(Counts {
            live: n[0],
            refused: n[1],
            blackhole: n[2],
            slow: n[3],
        }));
    }
    let (mut proxies, mut concurrency, mut quick) = (None, 512, false);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--proxies" => proxies = Some(number(arg, rest.next())?),
            "--concurrency" => concurrency = number(arg, rest.next())?,
            "--quick" => quick = true,
            other => return Err(BenchError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    let proxies = proxies.unwrap_or(if quick { 300 } else { 5000 });
    if proxies < 10 || concurrency == 0 {
        return Err(BenchError::Usage(
            "at least 10 proxies and a concurrency of at least 1".into(),
        ));
    }
    Ok(Mode::Bench(Options {
        proxies,
        concurrency,
        quick,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match parse_args(&args) {
        Ok(Mode::ServeFarm(spec)) => serve_farm(spec).await.map(|()| true),
        Ok(Mode::Bench(options)) => bench(options).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e @ BenchError::Usage(_)) => {
            eprintln!("bench-engine: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("bench-engine: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---- the farm process ---------------------------------------------------------------------------

impl Counts {
    fn kinds(&self) -> Vec<Kind> {
        let slow = Kind::Slow { delay: SLOW_DELAY };
        [
            (Kind::Elite, self.live),
            (Kind::Refused, self.refused),
            (Kind::Blackhole, self.blackhole),
            (slow, self.slow),
        ]
        .into_iter()
        .flat_map(|(kind, n)| std::iter::repeat_n(kind, n))
        .collect()
    }

    fn total(&self) -> usize {
        self.live + self.refused + self.blackhole + self.slow
    }
}

/// Serves a farm and a judge, prints their [`FarmListing`], and runs until stdin closes (the
/// parent is done or gone) or the process is killed.
async fn serve_farm(spec: Counts) -> Result<(), BenchError> {
    raise_fd_limit().map_err(io_error("raise the open-file limit"))?;
    let farm = farm::start(&spec.kinds()).await;
    let judge = judge::start(JudgeFormat::Own).await;
    let mut listing = FarmListing {
        judge: judge.url().to_string(),
        ..FarmListing::default()
    };
    for (kind, proxy) in farm.proxies() {
        match kind {
            Kind::Elite => listing.live.push(proxy),
            Kind::Refused => listing.refused.push(proxy),
            Kind::Blackhole => listing.blackhole.push(proxy),
            _ => listing.slow.push(proxy),
        }
    }
    let line = serde_json::to_string(&listing).expect("a listing serializes");
    println!("{line}");
    let parent_gone = tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 64];
        while std::io::stdin().read(&mut sink).unwrap_or(0) > 0 {}
    });
    let _ = parent_gone.await;
    drop((farm, judge));
    Ok(())
}

/// A farm served by a child process.
struct FarmProcess {
    child: Child,
    listing: FarmListing,
}

impl FarmProcess {
    async fn spawn(spec: Counts) -> Result<FarmProcess, BenchError> {
        let exe = std::env::current_exe().map_err(io_error("find this executable"))?;
        let counts = [spec.live, spec.refused, spec.blackhole, spec.slow];
        let mut child = Command::new(exe)
            .arg("--serve-farm")
            .args(counts.map(|n| n.to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io_error("start the farm process"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .map_err(io_error("read the farm listing"))?;
        let listing: FarmListing = serde_json::from_str(&line)
            .map_err(|e| BenchError::Farm(format!("no listing on stdout ({e}): {line:?}")))?;
        let listed = listing.live.len()
            + listing.refused.len()
            + listing.blackhole.len()
            + listing.slow.len();
        if listed != spec.total() {
            return Err(BenchError::Farm(format!(
                "asked for {} proxies, got {listed}",
                spec.total()
            )));
        }
        Ok(FarmProcess { child, listing })
    }

    /// CPU time the farm process has used so far (all its threads).
    fn cpu(&self) -> Option<Duration> {
        let pid = self.child.id()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // SAFETY: sysconf has no preconditions.
        let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        proc_stat_cpu(&stat, u64::try_from(ticks_per_sec).ok()?)
    }

    /// Closes the farm's stdin, which ends it; kills it if it lingers.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// User + system time from the text of `/proc/PID/stat` (fields 14 and 15, in clock ticks).
fn proc_stat_cpu(stat: &str, ticks_per_sec: u64) -> Option<Duration> {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis,
    // where field 3 is the first.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks_per_sec as f64,
    ))
}

// ---- measuring this process --------------------------------------------------------------------

/// CPU time used by this process, all threads.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    user: Duration,
    system: Duration,
}

impl CpuTime {
    fn now() -> io::Result<CpuTime> {
        // SAFETY: rusage is plain data, for which all zeroes is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage only writes into the struct we pass it.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let duration = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        Ok(CpuTime {
            user: duration(usage.ru_utime),
            system: duration(usage.ru_stime),
        })
    }

    fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    fn total(self) -> Duration {
        self.user + self.system
    }
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> Result<u64, BenchError> {
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(io_error("read /proc/self/status"))?;
    status_field_kib(&status, field).ok_or_else(|| BenchError::Io {
        what: "read /proc/self/status",
        source: io::Error::new(io::ErrorKind::InvalidData, format!("no {field} line")),
    })
}

fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0); false where that is not allowed.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

// ---- the phases ---------------------------------------------------------------------------------

/// The verdict a farm proxy must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Alive,
    Refused,
    TimedOut,
}

impl Expect {
    fn matches(self, outcome: &Outcome) -> bool {
        match (self, outcome) {
            (Expect::Alive, Outcome::Alive(_)) => true,
            (Expect::Refused, Outcome::Dead { reason }) => *reason == FailureReason::Refused,
            (Expect::TimedOut, Outcome::Dead { reason }) => *reason == FailureReason::Timeout,
            _ => false,
        }
    }
}

/// Merges the groups so that each is spread evenly over the result, as kinds are in a real list:
/// the i-th of a group of k sits about (i + ½) / k of the way through.
fn interleave<T>(groups: Vec<Vec<T>>) -> Vec<T> {
    let mut keyed: Vec<(f64, T)> = groups
        .into_iter()
        .flat_map(|group| {
            let k = group.len() as f64;
            group
                .into_iter()
                .enumerate()
                .map(move |(i, x)| ((i as f64 + 0.5) / k, x))
        })
        .collect();
    // Stable: on a tie the earlier group comes first.
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    keyed.into_iter().map(|(_, x)| x).collect()
}

/// One phase: its share of the farm and the per-check timeout.
struct Phase {
    name: &'static str,
    share: Counts,
    timeout: Duration,
}

/// What one phase measured, and whether every verdict was right.
struct Measured {
    name: &'static str,
    share: Counts,
    timeout: Duration,
    concurrency: usize,
    wall: Duration,
    cpu: CpuTime,
    farm_cpu: Option<Duration>,
    rss_before_kib: u64,
    peak_rss_kib: u64,
    /// Round trips of the checks found alive.
    latency: Latency,
    wrong: usize,
    first_wrong: Option<String>,
}

/// The spread of round trips (ms), to tell a slow engine from a few stalled connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Latency {
    p50: u32,
    p99: u32,
    max: u32,
    /// The slowest TCP connect among them.
    max_connect: u32,
}

impl Latency {
    fn of<'a>(alive: impl Iterator<Item = &'a Alive>) -> Latency {
        let (mut totals, connects): (Vec<u32>, Vec<u32>) = alive
            .map(|a| (a.timings.total_ms, a.timings.connect_ms))
            .unzip();
        totals.sort_unstable();
        let at = |q: f64| {
            let i = ((totals.len() as f64 - 1.0) * q).round() as usize;
            totals.get(i).copied().unwrap_or(0)
        };
        Latency {
            p50: at(0.5),
            p99: at(0.99),
            max: totals.last().copied().unwrap_or(0),
            max_connect: connects.into_iter().max().unwrap_or(0),
        }
    }
}

impl Measured {
    fn checks(&self) -> usize {
        self.share.total()
    }

    fn checks_per_sec(&self) -> f64 {
        self.checks() as f64 / self.wall.as_secs_f64()
    }

    fn cpu_ms_per_check(&self) -> f64 {
        self.cpu.total().as_secs_f64() * 1000.0 / self.checks() as f64
    }

    /// Growth of RSS during the phase, shared out over the checks in flight.
    fn kib_per_check_in_flight(&self) -> f64 {
        self.peak_rss_kib.saturating_sub(self.rss_before_kib) as f64 / self.concurrency as f64
    }

    /// The floor blackholes set: each holds a slot for the whole timeout.
    fn blackhole_bound(&self) -> Duration {
        self.timeout * self.share.blackhole.div_ceil(self.concurrency) as u32
    }

    fn line(&self) -> String {
        let farm_cpu = self
            .farm_cpu
            .map_or("?".into(), |d| format!("{:.2}", d.as_secs_f64()));
        let Latency {
            p50,
            p99,
            max,
            max_connect,
        } = self.latency;
        format!(
            "{:<6} {:>5} checks, {:>4} in flight: {:.2} s wall, {:.0} checks/s, CPU {:.2} s \
             (user {:.2} + sys {:.2}) = {:.3} ms/check, farm CPU {farm_cpu} s, RSS {} -> peak {} \
             KiB, alive round trip p50/p99/max {p50}/{p99}/{max} ms (connect max {max_connect} \
             ms), {} wrong verdicts",
            self.name,
            self.checks(),
            self.concurrency,
            self.wall.as_secs_f64(),
            self.checks_per_sec(),
            self.cpu.total().as_secs_f64(),
            self.cpu.user.as_secs_f64(),
            self.cpu.system.as_secs_f64(),
            self.cpu_ms_per_check(),
            self.rss_before_kib,
            self.peak_rss_kib,
            self.wrong,
        )
    }
}

/// Checks the phase's share of the farm once each, and verifies every verdict.
async fn run(
    phase: &Phase,
    farm: &FarmProcess,
    concurrency: usize,
) -> Result<Measured, BenchError> {
    let judge =
        farm.listing.judge.parse().map_err(|e| {
            BenchError::Farm(format!("bad judge URL {:?}: {e}", farm.listing.judge))
        })?;
    let config = CheckConfig {
        connect_timeout: phase.timeout.min(Duration::from_secs(2)),
        timeout: phase.timeout,
        concurrency,
        policy: TargetPolicy {
            allow_private: true,
        },
        ..CheckConfig::new(JudgeConfig {
            http: judge,
            https: None,
            ca_file: None,
        })
    };
    let checker = Checker::new(config).await.map_err(BenchError::Checker)?;
    let (listing, share) = (&farm.listing, phase.share);
    let expected = interleave(vec![
        tag(Expect::Alive, &listing.live[..share.live]),
        tag(Expect::Alive, &listing.slow[..share.slow]),
        tag(Expect::Refused, &listing.refused[..share.refused]),
        tag(Expect::TimedOut, &listing.blackhole[..share.blackhole]),
    ]);
    let proxies: Vec<Proxy> = expected.iter().map(|(_, p)| p.clone()).collect();

    let farm_before = farm.cpu();
    reset_peak_rss();
    let rss_before_kib = status_kib("VmRSS")?;
    let cpu_before = CpuTime::now().map_err(io_error("getrusage"))?;
    let started = Instant::now();
    let results = checker.check_all(proxies, None, |_| {}).await;
    let wall = started.elapsed();
    let cpu = CpuTime::now()
        .map_err(io_error("getrusage"))?
        .since(cpu_before);
    let peak_rss_kib = status_kib("VmHWM")?;
    let farm_cpu = farm
        .cpu()
        .zip(farm_before)
        .map(|(after, before)| after.saturating_sub(before));

    let wrong: Vec<String> = expected
        .iter()
        .zip(&results)
        .filter(|((expect, _), result)| !expect.matches(&result.outcome))
        .map(|((expect, proxy), result)| {
            format!("{proxy}: expected {expect:?}, got {:?}", result.outcome)
        })
        .collect();
    Ok(Measured {
        name: phase.name,
        share: phase.share,
        timeout: phase.timeout,
        concurrency: checker.concurrency(),
        wall,
        cpu,
        farm_cpu,
        rss_before_kib,
        peak_rss_kib,
        latency: Latency::of(results.iter().filter_map(|r| match &r.outcome {
            Outcome::Alive(a) => Some(a),
            _ => None,
        })),
        wrong: wrong.len(),
        first_wrong: wrong.into_iter().next(),
    })
}

fn tag(expect: Expect, proxies: &[Proxy]) -> Vec<(Expect, Proxy)> {
    proxies.iter().map(|p| (expect, p.clone())).collect()
}

/// The three phases for these options, in the order they run. They share one farm (see
/// [`farm_for`]): the mixed phase checks the first 60 % of the live phase's proxies again.
fn phases(options: &Options) -> [Phase; 3] {
    let n = options.proxies;
    let rounds = if options.quick { 1 } else { 2 };
    let refused = n * 3 / 10;
    let blackhole = n / 10;
    [
        Phase {
            name: "memory",
            share: Counts {
                slow: options.concurrency * rounds,
                ..Counts::default()
            },
            timeout: LIVE_TIMEOUT,
        },
        Phase {
            name: "live",
            share: Counts {
                live: n,
                ..Counts::default()
            },
            timeout: LIVE_TIMEOUT,
        },
        Phase {
            name: "mixed",
            share: Counts {
                live: n - refused - blackhole,
                refused,
                blackhole,
                slow: 0,
            },
            timeout: MIXED_TIMEOUT,
        },
    ]
}

/// A farm with enough proxies of each kind for every phase.
///
/// One farm for all phases: every farm binds a port per proxy, and a refused port is bound
/// without `SO_REUSEADDR`, so it cannot take a port still in TIME_WAIT from an earlier farm; a farm
/// per phase would run out of ephemeral ports after a run or two within a minute.
fn farm_for(phases: &[Phase]) -> Counts {
    phases.iter().fold(Counts::default(), |farm, p| Counts {
        live: farm.live.max(p.share.live),
        refused: farm.refused.max(p.share.refused),
        blackhole: farm.blackhole.max(p.share.blackhole),
        slow: farm.slow.max(p.share.slow),
    })
}

// ---- the report ---------------------------------------------------------------------------------

/// The machine, as the figures need it described.
fn describe_machine(fd_limit: u64) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = status_field_kib(&meminfo, "MemTotal").unwrap_or(0) as f64 / 1024.0 / 1024.0;
    // Other work on the machine slows the wall times (not the CPU and memory figures): say how much.
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    format!(
        "machine: {cpus} CPUs (nproc), {model}, Linux {}, {mem_gib:.1} GiB RAM, open-file limit \
         {fd_limit}, load average {} before the run\nthe farm and judge run in a child process on \
         the same cores: figures are conservative; CPU and RSS are this process's alone",
        kernel.trim(),
        load.join(" "),
    )
}

fn table(runs: &[Measured]) -> String {
    let mut out = String::from(
        "| phase | proxies | in flight | timeout | wall s | checks/s | CPU s (user+sys) | CPU ms/check | farm CPU s | RSS before → peak MiB | wrong |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for m in runs {
        let farm_cpu = m
            .farm_cpu
            .map_or("?".into(), |d| format!("{:.2}", d.as_secs_f64()));
        out.push_str(&format!(
            "| {} | {} | {} | {} s | {:.2} | {:.0} | {:.2} ({:.2}+{:.2}) | {:.3} | {farm_cpu} | {:.1} → {:.1} | {} |\n",
            m.name,
            m.checks(),
            m.concurrency,
            m.timeout.as_secs_f64(),
            m.wall.as_secs_f64(),
            m.checks_per_sec(),
            m.cpu.total().as_secs_f64(),
            m.cpu.user.as_secs_f64(),
            m.cpu.system.as_secs_f64(),
            m.cpu_ms_per_check(),
            m.rss_before_kib as f64 / 1024.0,
            m.peak_rss_kib as f64 / 1024.0,
            m.wrong,
        ));
    }
    out
}

fn verdicts(memory: &Measured, live: &Measured, mixed: &Measured) -> String {
    let cpu = live.cpu_ms_per_check();
    let kib = memory.kib_per_check_in_flight();
    let bound = mixed.blackhole_bound().as_secs_f64();
    let fast = (mixed.share.live + mixed.share.refused) as f64 / live.checks_per_sec();
    format!(
        "CPU per live plain-HTTP check: {cpu:.3} ms (target <= {TARGET_CPU_MS_PER_CHECK} ms: \
         {:.2} of it)\n\
         memory per check in flight: {kib:.1} KiB ({} in flight, {SLOW_DELAY:?} each; target <= \
         {TARGET_KIB_PER_CHECK} KiB: {:.2} of it)\n\
         mixed wall time: {:.2} s; blackhole bound ceil({} / {}) x {:?} = {bound:.2} s \
         ({:.2}x); the {} fast checks alone take {fast:.2} s at the live phase's rate\n\
         peak RSS over the run: {:.1} MiB",
        cpu / TARGET_CPU_MS_PER_CHECK,
        memory.concurrency,
        kib / TARGET_KIB_PER_CHECK,
        mixed.wall.as_secs_f64(),
        mixed.share.blackhole,
        mixed.concurrency,
        mixed.timeout,
        mixed.wall.as_secs_f64() / bound,
        mixed.share.live + mixed.share.refused,
        [memory, live, mixed]
            .iter()
            .map(|m| m.peak_rss_kib)
            .max()
            .unwrap_or(0) as f64
            / 1024.0,
    )
}

/// Runs the phases and prints the figures; `Ok(false)` if any verdict was wrong.
async fn bench(options: Options) -> Result<bool, BenchError> {
    let fd_limit = raise_fd_limit().map_err(io_error("raise the open-file limit"))?;
    println!("{}", describe_machine(fd_limit));
    println!(
        "options: --proxies {} --concurrency {}{}",
        options.proxies,
        options.concurrency,
        if options.quick { " --quick" } else { "" }
    );
    if !reset_peak_rss() {
        println!("note: /proc/self/clear_refs is not writable: each peak RSS includes the earlier");
    }
    let phases = phases(&options);
    let farm = FarmProcess::spawn(farm_for(&phases)).await?;
    let mut runs = Vec::new();
    for phase in &phases {
        let measured = run(phase, &farm, options.concurrency).await?;
        println!("{}", measured.line());
        if let Some(first) = &measured.first_wrong {
            eprintln!(
                "{}: {} wrong verdicts, first: {first}",
                measured.name, measured.wrong
            );
        }
        runs.push(measured);
    }
    farm.stop().await;
    println!("\n{}", table(&runs));
    let [memory, live, mixed] = &runs[..] else {
        unreachable!("three phases ran");
    };
    println!("{}", verdicts(memory, live, mixed));
    Ok(runs.iter().all(|m| m.wrong == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_have_defaults_and_quick_shrinks_the_farm() {
        let bench = |text| match parse_args(&args(text)).unwrap() {
            Mode::Bench(o) => o,
            other => panic!("expected the benchmark, got {other:?}"),
        };
        assert_eq!(
            bench(""),
            Options {
                proxies: 5000,
                concurrency: 512,
                quick: false
            }
        );
        assert_eq!(bench("--quick").proxies, 300);
        assert_eq!(bench("--quick --proxies 40").proxies, 40);
        assert_eq!(bench("--concurrency 64").concurrency, 64);
        for bad in [
            "--proxies",
            "--proxies x",
            "--proxies 9",
            "--concurrency 0",
            "--fast",
        ] {
            assert!(
                matches!(parse_args(&args(bad)), Err(BenchError::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn serve_farm_mode_takes_four_counts() {
        assert_eq!(
            parse_args(&args("--serve-farm 6 3 1 2")).unwrap(),
            Mode::ServeFarm(Counts {
                live: 6,
                refused: 3,
                blackhole: 1,
                slow: 2
            })
        );
        assert!(parse_args(&args("--serve-farm 6 3 1")).is_err());
    }

    #[test]
    fn phases_split_the_mixed_farm_sixty_thirty_ten() {
        let options = Options {
            proxies: 5003,
            concurrency: 512,
            quick: false,
        };
        let [memory, live, mixed] = phases(&options);
        assert_eq!(memory.share.slow, 1024);
        assert_eq!(memory.share.total(), 1024);
        assert_eq!(live.share.live, 5003);
        assert_eq!((mixed.share.refused, mixed.share.blackhole), (1500, 500));
        assert_eq!(mixed.share.total(), 5003);
        assert_eq!(mixed.timeout, MIXED_TIMEOUT);
        let phases = [memory, live, mixed];
        assert_eq!(
            farm_for(&phases),
            Counts {
                live: 5003,
                refused: 1500,
                blackhole: 500,
                slow: 1024
            }
        );
    }

    #[test]
    fn interleaving_spreads_each_group_evenly() {
        let groups = vec![vec!['a'; 6], vec!['b'; 3], vec!['c'; 1], vec![]];
        let mixed: String = interleave(groups).into_iter().collect();
        assert_eq!(mixed, "abaabcaaba");
    }

    #[test]
    fn verdicts_are_checked_by_reason() {
        let dead = |reason| Outcome::Dead { reason };
        assert!(Expect::Refused.matches(&dead(FailureReason::Refused)));
        assert!(!Expect::Refused.matches(&dead(FailureReason::Timeout)));
        assert!(Expect::TimedOut.matches(&dead(FailureReason::Timeout)));
        assert!(!Expect::TimedOut.matches(&dead(FailureReason::ConnectTimeout)));
        assert!(!Expect::Alive.matches(&Outcome::Unchecked));
    }

    #[test]
    fn proc_files_are_read_by_field() {
        let status = "Name:\tbench\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_field_kib(status, "VmRSS"), Some(10240));
        assert_eq!(status_field_kib(status, "VmHWM"), Some(20480));
        assert_eq!(status_field_kib(status, "VmPeak"), None);
        // utime 250 and stime 125 ticks, behind a command name with a space and a parenthesis.
        let stat = "42 (bench (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 125 0 0 20 0 3 0";
        assert_eq!(proc_stat_cpu(stat, 100), Some(Duration::from_millis(3750)));
        assert_eq!(proc_stat_cpu("42 (bench) S 1", 100), None);
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        // Spin until the process has been charged 20 ms of CPU: on a loaded machine that takes
        // longer in wall time, never forever (a clock that does not move fails the test).
        let before = CpuTime::now().unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        let mut spent = Duration::ZERO;
        while spent < Duration::from_millis(20) && start.elapsed() < Duration::from_secs(30) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            spent = CpuTime::now().unwrap().since(before).total();
        }
        assert!(spent >= Duration::from_millis(20), "{spent:?}");
    }

    #[test]
    fn blackhole_bound_rounds_up_to_whole_timeouts() {
        let measured = |blackhole, concurrency| Measured {
            name: "mixed",
            share: Counts {
                blackhole,
                ..Counts::default()
            },
            timeout: Duration::from_secs(1),
            concurrency,
            wall: Duration::from_secs(1),
            cpu: CpuTime::default(),
            farm_cpu: None,
            rss_before_kib: 1000,
            peak_rss_kib: 1512,
            wrong: 0,
            latency: Latency::default(),
            first_wrong: None,
        };
        assert_eq!(measured(500, 512).blackhole_bound(), Duration::from_secs(1));
        assert_eq!(measured(513, 512).blackhole_bound(), Duration::from_secs(2));
        assert_eq!(measured(0, 512).blackhole_bound(), Duration::ZERO);
        assert_eq!(measured(0, 512).kib_per_check_in_flight(), 1.0);
    }
}
