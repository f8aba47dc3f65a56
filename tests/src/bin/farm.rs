//! A loopback playground: a judge (plain and TLS), a proxy of every kind and a sources server
//! listing them, running until interrupted. For trying `proxyharvest check`, `scan` and `run`
//! without a network; `make demo` and the README examples use it.
//!
//! Prints one JSON line with the URLs (`judge`, `judge_https`, `judge_ca`, `source`), so scripts
//! can read it.

use proxyharvest_tests::farm::{self, Kind};
use proxyharvest_tests::judge::{self, JudgeFormat};
use proxyharvest_tests::sources::{Route, SourcesServer};

#[tokio::main]
async fn main() {
    let kinds = [
        Kind::Elite,
        Kind::Anonymous,
        Kind::Transparent,
        Kind::HttpNoConnect,
        Kind::HttpAuth {
            user: "demo".into(),
            pass: "secret".into(),
        },
        Kind::Socks4,
        Kind::Socks5,
        Kind::Socks5Auth {
            user: "demo".into(),
            pass: "secret".into(),
        },
        Kind::Slow {
            delay: std::time::Duration::from_millis(300),
        },
        Kind::Blackhole,
        Kind::Reset,
        Kind::Garbage,
        Kind::CaptivePortal,
        Kind::Honeypot,
        Kind::Refused,
    ];
    let farm = farm::start(&kinds).await;
    let judge = judge::start(JudgeFormat::Own).await;
    let (tls_judge, ca) = judge::start_tls(JudgeFormat::Own).await;
    let list: String = farm
        .proxies()
        .iter()
        .map(|(_, p)| format!("{p}\n"))
        .chain(std::iter::once(
            "# hostile entries a scraped list may hold (never contacted, even with --allow-private)\n169.254.169.254:80\n0.0.0.0:3128\n".into(),
        ))
        .collect();
    let sources = SourcesServer::start(vec![("/proxies.txt".into(), Route::text(list))]).await;
    println!(
        "{}",
        serde_json::json!({
            "judge": judge.url().to_string(),
            "judge_https": tls_judge.url().to_string(),
            "judge_ca": ca.display().to_string(),
            "source": sources.url("/proxies.txt"),
            "proxies": farm.proxies().iter().map(|(k, p)| format!("{p} ({k:?})")).collect::<Vec<_>>(),
        })
    );
    tokio::signal::ctrl_c().await.ok();
    drop((farm, judge, tls_judge, sources));
}
