//! `proxyharvest plan`, run as a user runs it: the built binary, its output and its exit code.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

/// Runs the binary with a clean environment, so `PROXYHARVEST_*` settings of the caller do not
/// change the numbers.
fn plan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proxyharvest"))
        .arg("plan")
        .args(args)
        .env_clear()
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let o = plan(&all);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("--json prints JSON")
}

fn items(bill: &Value) -> &Vec<Value> {
    bill["items"].as_array().expect("items")
}

fn item<'a>(bill: &'a Value, what: &str) -> &'a Value {
    items(bill)
        .iter()
        .find(|i| i["what"].as_str().unwrap().starts_with(what))
        .unwrap_or_else(|| panic!("no item {what:?}"))
}

fn num(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-9)
}

#[test]
fn human_output_itemises_every_service() {
    let o = plan(&["--proxies", "10000"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    for line in [
        "Plan for 10,000 proxies on arm64 (rate(6 hours), 120 runs a month)",
        "chunks",
        "wall time, worst case",
        "wall time, typical",
        "Cost of one run",
        "Cost of a month (120 runs",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    let itemised = [
        ("Lambda", "invocations"),
        ("Lambda", "trigger compute"),
        ("Lambda", "validator compute (worst case)"),
        ("Lambda", "aggregator compute"),
        ("SQS", "send (batches of 10, per 64 KB)"),
        ("SQS", "receive (Lambda pollers, per 64 KB)"),
        ("SQS", "delete"),
        ("DynamoDB", "job record writes"),
        ("DynamoDB", "chunk results writes"),
        ("DynamoDB", "job record reads"),
        ("DynamoDB", "results query"),
        ("S3", "GET (merge state)"),
        ("S3", "PUT (state, proxies.json, 5 text lists)"),
        ("Data transfer", "out to the proxies checked"),
    ];
    let lines: Vec<&str> = out.lines().map(str::trim_start).collect();
    for (service, what) in itemised {
        // Once per run and once per month.
        let n = lines
            .iter()
            .filter(|l| l.starts_with(service) && l.contains(what) && l.contains('$'))
            .count();
        assert_eq!(n, 2, "{service} / {what} in:\n{out}");
    }
    for monthly in [
        "reaper sweeps",
        "reaper compute",
        "idle polling by Lambda",
        "sweep reads (index, job records)",
        "storage (results until they expire)",
    ] {
        assert_eq!(lines.iter().filter(|l| l.contains(monthly)).count(), 1);
    }
    assert_eq!(lines.iter().filter(|l| l.starts_with("total ")).count(), 2);
    assert!(out.contains("Free tiers are not applied"), "{out}");
    assert!(out.contains("70 % of checks fail fast"), "{out}");
    assert!(
        out.contains("https://aws.amazon.com/lambda/pricing/ (as of "),
        "{out}"
    );
}

#[test]
fn json_totals_are_the_sums_of_the_items() {
    let e = json(&["--proxies", "25000"]);
    assert!(num(&e["plan"]["chunks"]) > 0.0);
    for bill in [&e["per_run"], &e["per_month"]] {
        let sum: f64 = items(bill).iter().map(|i| num(&i["cost_usd"])).sum();
        assert!(close(num(&bill["total_usd"]), sum), "{bill}");
        assert!(sum > 0.0);
    }
    // A month is 120 runs plus what the month costs whatever the runs.
    let runs = num(&e["runs_per_month"]);
    assert_eq!(runs, 120.0);
    let fixed: f64 = [
        "reaper sweeps",
        "reaper compute",
        "idle polling",
        "sweep reads",
        "storage",
    ]
    .iter()
    .map(|w| num(&item(&e["per_month"], w)["cost_usd"]))
    .sum();
    assert!(close(
        num(&e["per_month"]["total_usd"]),
        runs * num(&e["per_run"]["total_usd"]) + fixed
    ));
    // Validators run in rounds of 20 (the template's default).
    let chunks = num(&e["plan"]["chunks"]);
    assert_eq!(num(&e["timing"]["rounds"]), (chunks / 20.0).ceil());
    assert_eq!(
        num(&item(&e["per_run"], "invocations")["quantity"]),
        chunks + 2.0
    );
}

#[test]
fn no_proxies_cost_only_the_fixed_calls() {
    let e = json(&["--proxies", "0"]);
    assert_eq!(num(&e["plan"]["chunks"]), 0.0);
    assert_eq!(num(&e["timing"]["rounds"]), 0.0);
    let run = &e["per_run"];
    for per_proxy in [
        "validator compute",
        "chunk results writes",
        "out to the proxies",
    ] {
        assert_eq!(num(&item(run, per_proxy)["cost_usd"]), 0.0, "{per_proxy}");
    }
    // The trigger and the aggregator still run, and the list is still published.
    assert_eq!(num(&item(run, "invocations")["quantity"]), 2.0);
    assert_eq!(num(&item(run, "PUT")["quantity"]), 7.0);
    assert!(num(&run["total_usd"]) > 0.0);
}

#[test]
fn bad_schedules_are_errors_with_exit_code_1() {
    for (schedule, says) in [
        ("every 6 hours", "is not an EventBridge schedule"),
        ("rate(1 hours)", "singular for 1"),
        ("rate(6 weeks)", "unknown unit"),
    ] {
        let o = plan(&["--schedule", schedule]);
        assert_eq!(o.status.code(), Some(1), "{schedule}");
        let err = stderr(&o);
        assert!(err.contains(says) && err.contains(schedule), "{err}");
        assert!(o.stdout.is_empty());
    }
    // A cron schedule needs its runs counted by the caller.
    let o = plan(&["--schedule", "cron(0 */6 * * ? *)"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--runs-per-month"), "{}", stderr(&o));
    let e = json(&[
        "--schedule",
        "cron(0 */6 * * ? *)",
        "--runs-per-month",
        "30",
    ]);
    assert_eq!(num(&e["runs_per_month"]), 30.0);
    assert_eq!(e["schedule"], "cron(0 */6 * * ? *)");
}

#[test]
fn deployment_flags_change_the_numbers() {
    let base = json(&["--proxies", "20000"]);
    let gb_s = num(&item(&base["per_run"], "validator compute")["quantity"]);

    let big = json(&["--proxies", "20000", "--memory-mb", "512"]);
    assert!(close(
        num(&item(&big["per_run"], "validator compute")["quantity"]),
        2.0 * gb_s
    ));

    let x86 = json(&["--proxies", "20000", "--architecture", "x86_64"]);
    assert_eq!(x86["architecture"], "x86_64");
    assert_eq!(
        num(&item(&x86["per_run"], "validator compute")["price_usd"]),
        0.0000166667
    );

    let wide = json(&["--proxies", "20000", "--validator-max-concurrency", "100"]);
    assert_eq!(wide["plan"], base["plan"]);
    assert_eq!(
        num(&wide["timing"]["rounds"]),
        (num(&base["plan"]["chunks"]) / 100.0).ceil()
    );

    let daily = json(&["--proxies", "20000", "--schedule", "rate(1 day)"]);
    assert_eq!(num(&daily["runs_per_month"]), 30.0);

    for bad in [
        ["--architecture", "sparc"],
        ["--memory-mb", "64"],
        ["--validator-max-concurrency", "1"],
    ] {
        let o = plan(&bad);
        assert_eq!(o.status.code(), Some(1), "{bad:?}");
    }
}

#[test]
fn the_configuration_shapes_the_chunks() {
    let dir = std::env::temp_dir().join(format!("proxyharvest-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config: PathBuf = dir.join("config.toml");
    // 20 checks at once, 30 s each: 105 s usable is 3 rounds, 60 proxies a chunk.
    std::fs::write(&config, "[check]\nconcurrency = 20\ntimeout_ms = 30000\n").unwrap();
    let e = json(&["--proxies", "600", "--config", config.to_str().unwrap()]);
    assert_eq!(num(&e["concurrency"]), 20.0);
    assert_eq!(num(&e["plan"]["chunks"]), 10.0);
    assert_eq!(num(&e["plan"]["chunk_size"]), 60.0);
    assert_eq!(num(&e["plan"]["max_chunk_duration_ms"]), 90_000.0);

    let prices = dir.join("prices.toml");
    std::fs::write(&prices, "region = \"us-east-1\"\n").unwrap();
    let o = plan(&["--prices", prices.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("prices.toml"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
