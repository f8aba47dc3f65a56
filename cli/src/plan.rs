//! `proxyharvest plan`: the chunk plan of a run and what runs cost on AWS, before any run.
//!
//! All numbers come from [`proxyharvest::cost::estimate`] (which plans with the trigger's own
//! planner); this module only gathers its inputs from the configuration and the flags and
//! prints the result, as an itemised table or as the same struct in JSON.

use std::fmt::Write as _;
use std::io::Write as _;

use proxyharvest::cost::{self, Bill, Deployment, Estimate, EstimateInput, Item, Prices};

use crate::args::{CheckFlags, PlanArgs};
use crate::exit::{Outcome, Result};

pub fn run(args: PlanArgs) -> Result<Outcome> {
    let cfg = crate::check::load_config(args.config.as_deref(), &CheckFlags::default())?;
    let mut deployment = Deployment::default();
    if let Some(s) = &args.schedule {
        deployment.schedule = s.parse()?;
    }
    if let Some(a) = &args.architecture {
        deployment.architecture = a.parse()?;
    }
    if let Some(n) = args.validator_max_concurrency {
        deployment.validator_max_concurrency = n;
    }
    if let Some(mb) = args.memory_mb {
        deployment.validator_memory_mb = mb;
    }
    let prices = match &args.prices {
        Some(path) => Prices::load(path)?,
        None => Prices::builtin(),
    };
    let input = EstimateInput {
        proxies: args.proxies,
        check: cfg.check_spec()?,
        deployment,
        assumptions: cost::Assumptions {
            // Fetching the sources is most of the trigger's time.
            trigger_duration: cfg.fetch.timeout,
            ..cost::Assumptions::default()
        },
        runs_per_month: args.runs_per_month,
        sources: cfg.sources.len(),
    };
    let estimate = cost::estimate(&input, &prices)?;
    let text = if args.json {
        serde_json::to_string_pretty(&estimate)? + "\n"
    } else {
        render(&estimate, input.check.concurrency, &prices)
    };
    // An error (a closed pipe) is reported, not a panic as with print!.
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(Outcome::Done)
}

/// The estimate as a readable report. `configured` is the configured check concurrency, shown
/// beside the capped one.
fn render(e: &Estimate, configured: usize, prices: &Prices) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "Plan for {} proxies on {} ({}, {} runs a month)",
        thousands(e.proxies as f64),
        e.architecture,
        e.schedule,
        number(e.runs_per_month)
    );
    let p = &e.plan;
    let t = &e.timing;
    let capped = if configured > e.concurrency {
        format!(" (configured {configured}, capped for Lambda)")
    } else {
        String::new()
    };
    let rows = [
        (
            "checks at once per validator",
            format!("{}{capped}", e.concurrency),
        ),
        ("chunks", thousands(p.chunks as f64)),
        (
            "chunk size",
            format!(
                "{} proxies, {} round(s) of checks, at most {}",
                p.chunk_size,
                p.rounds_per_chunk,
                duration(p.max_chunk_duration.as_secs_f64())
            ),
        ),
        (
            "validators at once",
            format!(
                "{} -> {} round(s) of chunks",
                e.validator_max_concurrency, t.rounds
            ),
        ),
        (
            "wall time, worst case",
            format!(
                "{} checking, {} with trigger and aggregator",
                duration(t.worst_checking_s),
                duration(t.worst_run_s)
            ),
        ),
        (
            "wall time, typical",
            format!(
                "{} checking, {} with trigger and aggregator",
                duration(t.typical_checking_s),
                duration(t.typical_run_s)
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(w, "  {name:<30} {value}");
    }
    let _ = writeln!(
        w,
        "\nCost of one run (USD, {}; compute at the worst case)",
        e.region
    );
    table(w, &e.per_run);
    let _ = writeln!(
        w,
        "  {:<BEFORE_COST$} {:>12}",
        "typical (validators at their typical duration)",
        usd(e.typical_per_run_usd)
    );
    let _ = writeln!(
        w,
        "\nCost of a month ({} runs, plus the reaper, idle polling and storage)",
        number(e.runs_per_month)
    );
    table(w, &e.per_month);
    let _ = writeln!(w, "\nAssumptions");
    for a in &e.assumptions {
        let _ = writeln!(w, "  - {a}");
    }
    let _ = writeln!(w, "\nPrices (free tiers not applied)");
    for (service, source, as_of) in [
        ("Lambda", &prices.lambda.source, &prices.lambda.as_of),
        ("SQS", &prices.sqs.source, &prices.sqs.as_of),
        ("DynamoDB", &prices.dynamodb.source, &prices.dynamodb.as_of),
        ("S3", &prices.s3.source, &prices.s3.as_of),
        (
            "Data transfer",
            &prices.data_transfer.source,
            &prices.data_transfer.as_of,
        ),
    ] {
        let _ = writeln!(w, "  {service:<14} {source} (as of {as_of})");
    }
    out
}

/// The width of a table row before its cost column.
const BEFORE_COST: usize = 14 + 1 + 40 + 1 + 16 + 1 + 9 + 1 + 22;

fn table(w: &mut String, bill: &Bill) {
    let _ = writeln!(
        w,
        "  {:<14} {:<40} {:>16} {:<9} {:>22} {:>12}",
        "service", "item", "quantity", "unit", "price", "cost"
    );
    for Item {
        service,
        what,
        quantity,
        unit,
        price_usd,
        per,
        cost_usd,
    } in &bill.items
    {
        let per = match *per {
            1e6 => "1M ",
            1e3 => "1K ",
            _ => "",
        };
        let _ = writeln!(
            w,
            "  {:<14} {:<40} {:>16} {:<9} {:>22} {:>12}",
            service.to_string(),
            what,
            number(*quantity),
            unit,
            format!("${price_usd}/{per}{unit}"),
            usd(*cost_usd)
        );
    }
    let _ = writeln!(w, "  {:<BEFORE_COST$} {:>12}", "total", usd(bill.total_usd));
}

fn usd(v: f64) -> String {
    format!("${v:.6}")
}

/// Whole numbers with thousands separators; fractions to two decimals (six when tiny).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        thousands(v)
    } else if v.abs() < 0.01 {
        format!("{v:.6}")
    } else {
        format!("{v:.2}")
    }
}

fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.0} s")
    } else {
        let s = seconds.round() as u64;
        if s < 3600 {
            format!("{} min {} s", s / 60, s % 60)
        } else {
            format!("{} h {} min", s / 3600, s % 3600 / 60)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_296_000.0), "1,296,000");
        assert_eq!(number(120.0), "120");
        assert_eq!(number(0.666_666), "0.67");
        assert_eq!(number(0.000_953_674), "0.000954");
        assert_eq!(duration(24.7), "25 s");
        assert_eq!(duration(180.0), "3 min 0 s");
        assert_eq!(duration(7260.0), "2 h 1 min");
        assert_eq!(usd(0.001_009_03), "$0.001009");
    }
}
