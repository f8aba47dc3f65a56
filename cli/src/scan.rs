//! `proxyharvest scan`: the whole job on one machine — fetch, parse, de-duplicate, check, and
//! write the published list format into a directory (merged with what is already there, so the
//! history of each proxy carries over between scans). With `[geo]` databases configured, the
//! list gets the country and ASN of each exit address, as the aggregator's does.

use std::time::{Instant, SystemTime};

use proxyharvest::config::SourceSpec;
use proxyharvest::list::PublishedList;
use proxyharvest::merge::{MergePolicy, merge};
use proxyharvest::outcome::Tally;
use proxyharvest::source;

use crate::args::ScanArgs;
use crate::check::{checker, load_config};
use crate::exit::{Outcome, Result};
use crate::progress::Progress;

pub async fn run(a: ScanArgs) -> Result<Outcome> {
    let started = Instant::now();
    let mut cfg = load_config(a.config.as_deref(), &a.check)?;
    if !a.sources.is_empty() {
        cfg.sources = a
            .sources
            .iter()
            .map(|s| SourceSpec {
                location: s.clone(),
                default_protocol: None,
                headers: Vec::new(),
            })
            .collect();
    }
    let checker = checker(&cfg).await?;
    // Before the long part, so that a missing or corrupt database fails at once.
    let geo = proxyharvest::geo::load(&cfg.geo, None).await?;

    eprintln!("fetching {} source(s)…", cfg.sources.len());
    let fetched = source::fetch_all(&cfg.sources()?, &cfg.fetch_options()).await;
    let mut failed_sources = 0;
    for r in &fetched.reports {
        match &r.error {
            None => eprintln!(
                "  ok    {} — {} proxies, {} invalid, {} bytes",
                r.source, r.parsed, r.invalid, r.bytes
            ),
            Some(e) => {
                failed_sources += 1;
                eprintln!("  FAIL  {} — {e}", r.source);
            }
        }
    }
    let proxies = fetched.proxies;
    eprintln!(
        "{} unique proxies ({} duplicates merged); checking…",
        proxies.len(),
        fetched.duplicates
    );

    let mut progress = Progress::new(proxies.len() as u64, "proxies");
    let (mut done, mut live) = (0, 0);
    let results = checker
        .check_all(proxies, None, |r| {
            done += 1;
            live += u64::from(r.outcome.is_alive());
            progress.update(done, live, "");
        })
        .await;
    progress.finish();
    let tally: Tally = results.iter().map(|r| &r.outcome).collect();

    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    // Like the pipeline: the merge state (with the proxies recently found dead) is kept beside
    // the published document, which holds the live ones only.
    let doc_path = a.out.join(proxyharvest::publish::DOCUMENT);
    let state_path = a.out.join(proxyharvest::publish::STATE);
    let previous = match std::fs::read(&state_path) {
        Ok(bytes) => Some(
            PublishedList::from_json(&bytes)
                .map_err(|e| format!("{} exists but is not a list: {e}", state_path.display()))?,
        ),
        Err(_) => None,
    };
    let mut list = merge(
        previous.as_ref(),
        &results,
        cfg.check_params(),
        None,
        &MergePolicy {
            now: SystemTime::now(),
            max_age: cfg.list.max_age,
        },
    );
    if let Some(geo) = &geo {
        geo.enrich(&mut list);
    }
    std::fs::write(&state_path, list.to_json())?;
    let mut public = list.clone();
    public.removed.clear();
    std::fs::write(&doc_path, public.to_json())?;
    for (name, text) in list.text_lists() {
        std::fs::write(a.out.join(name), text)?;
    }

    println!(
        "scan done in {:.1}s: {} source(s) ({} failed), {} unique proxies checked: {} live, {} dead, {} unchecked, {} rejected",
        started.elapsed().as_secs_f64(),
        fetched.reports.len(),
        failed_sources,
        tally.total(),
        tally.live,
        tally.dead,
        tally.unchecked,
        tally.rejected
    );
    println!(
        "list: {} proxies in {} (and http.txt, https.txt, socks4.txt, socks5.txt, all.txt)",
        list.counts.total,
        doc_path.display()
    );
    if tally.live < a.min_live {
        eprintln!(
            "only {} live proxies found; --min-live asked for {}",
            tally.live, a.min_live
        );
        return Ok(Outcome::TooFewLive);
    }
    Ok(Outcome::Done)
}
