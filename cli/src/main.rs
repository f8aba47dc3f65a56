//! `proxyharvest`, the command line: check proxies and scan sources on this machine, run and
//! watch jobs on the deployed (or local) pipeline, and read the published list.
//!
//! Each subcommand lives in its own module; this file only parses arguments and maps outcomes to
//! exit codes ([`exit::Outcome`]), so every command reports what really happened.

mod args;
mod check;
mod exit;
mod get;
mod plan;
mod progress;
mod run;
mod scan;
mod stack;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::Outcome;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let outcome = match cli.command {
        Command::Check(a) => check::run(a).await,
        Command::Scan(a) => scan::run(a).await,
        Command::Run(a) => run::run(a).await,
        Command::Wait(a) => run::wait(a).await,
        Command::Status(a) => run::status(a).await,
        Command::Jobs(a) => run::jobs(a).await,
        Command::Get(a) => get::run(a).await,
        Command::Plan(a) => plan::run(a),
    };
    let outcome = outcome.unwrap_or_else(|e| {
        eprintln!("proxyharvest: error: {e:#}");
        Outcome::Error
    });
    std::process::exit(outcome.code());
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,proxyharvest=info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROXYHARVEST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
