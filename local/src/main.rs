//! `proxyharvest-local --manifest FILE --listen 127.0.0.1:9000 [--log-dir DIR] [--no-schedules]`:
//! runs the local Lambda runtime until SIGTERM or SIGINT, then stops its functions and exits 0.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use proxyharvest_local::{LocalLambda, Options, manifest::Manifest};
use tokio::signal::unix::{SignalKind, signal};

/// A local Lambda runtime: function binaries behind the Runtime API, SQS event sources, the
/// Invoke API and schedules, from a resolved manifest.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The resolved manifest (JSON) written by the deploy script.
    #[arg(long)]
    manifest: PathBuf,
    /// Address of the Invoke and control APIs.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Directory for `<function>.log` files (default: this process's stderr).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Do not fire schedules on their own (`POST /_local/schedules/{name}/fire` still works).
    #[arg(long)]
    no_schedules: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROXYHARVEST_LOCAL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("proxyharvest-local: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let manifest = Manifest::load(&args.manifest)?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let options = Options {
        listen: args.listen,
        log_dir: args.log_dir,
        schedules: !args.no_schedules,
    };
    let runtime = LocalLambda::start(manifest, options).await?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    runtime.shutdown().await;
    Ok(())
}
