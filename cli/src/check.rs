//! `proxyharvest check`: check the proxies of a file or stdin on this machine.

use std::io::{Read, Write};

use proxyharvest::check::{Checker, raise_fd_limit};
use proxyharvest::config::{self, Config};
use proxyharvest::outcome::{Outcome as Verdict, ResultRecord};
use proxyharvest::parse;

use crate::args::{CheckArgs, CheckFlags, ResultFormat};
use crate::exit::{Outcome, Result};
use crate::progress::Progress;

/// The configuration file (or the defaults), the environment, then the flags.
pub fn load_config(path: Option<&std::path::Path>, flags: &CheckFlags) -> Result<Config> {
    let mut cfg = config::load(path)?;
    cfg.apply_env(std::env::vars())?;
    let c = &mut cfg.check;
    if let Some(j) = &flags.judge {
        c.judge = j.parse().map_err(|e| format!("--judge {j}: {e}"))?;
    }
    if let Some(j) = &flags.judge_https {
        c.judge_https = Some(j.parse().map_err(|e| format!("--judge-https {j}: {e}"))?);
    }
    if let Some(p) = &flags.judge_ca {
        c.judge_ca = Some(p.clone());
    }
    if flags.allow_private {
        c.allow_private = true;
    }
    if let Some(n) = flags.concurrency {
        c.concurrency = n.max(1);
    }
    if let Some(ms) = flags.timeout_ms {
        c.timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(ms) = flags.connect_timeout_ms {
        c.connect_timeout = std::time::Duration::from_millis(ms);
    }
    if c.connect_timeout > c.timeout {
        c.connect_timeout = c.timeout;
    }
    Ok(cfg)
}

/// A checker for this machine: the open-file limit raised first, so concurrency can be honoured.
pub async fn checker(cfg: &Config) -> Result<Checker> {
    let _ = raise_fd_limit();
    let checker = Checker::new(cfg.check_config()).await?;
    if checker.concurrency() < cfg.check.concurrency {
        eprintln!(
            "note: concurrency capped at {} by the open-file limit",
            checker.concurrency()
        );
    }
    Ok(checker)
}

pub async fn run(a: CheckArgs) -> Result<Outcome> {
    let cfg = load_config(a.config.as_deref(), &a.check)?;
    let mut input = Vec::new();
    if a.input == "-" {
        std::io::stdin().read_to_end(&mut input)?;
    } else {
        input = std::fs::read(&a.input).map_err(|e| format!("reading {}: {e}", a.input))?;
    }
    let parsed = parse::parse(&input, None);
    eprintln!(
        "{} proxies to check ({} invalid entries skipped, {} duplicates merged)",
        parsed.proxies.len(),
        parsed.invalid,
        parsed.duplicates
    );
    let checker = checker(&cfg).await?;
    let mut progress = Progress::new(parsed.proxies.len() as u64, "proxies");
    let (mut done, mut live) = (0, 0);
    let results = checker
        .check_all(parsed.proxies, None, |r| {
            done += 1;
            live += u64::from(r.outcome.is_alive());
            progress.update(done, live, "");
        })
        .await;
    progress.finish();

    let mut out: Box<dyn Write> = match &a.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for r in &results {
        match a.format {
            ResultFormat::Json => {
                serde_json::to_writer(&mut out, &ResultRecord::from(r))?;
                writeln!(out)?;
            }
            ResultFormat::Txt => {
                if let Verdict::Alive(alive) = &r.outcome {
                    let mut p = r.proxy.clone();
                    p.protocols = alive.protocols;
                    for line in p.canonical_lines() {
                        writeln!(out, "{line}")?;
                    }
                }
            }
        }
    }
    out.flush()?;
    eprintln!("{live} of {} alive", results.len());
    Ok(Outcome::Done)
}
