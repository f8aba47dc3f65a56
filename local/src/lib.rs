//! proxyharvest-local: a small local Lambda runtime for a machine that cannot run Lambda.
//!
//! It runs the real function binaries (built with lambda_runtime) behind the Lambda Runtime API,
//! polls SQS queues like event source mappings, serves the Invoke API, fires schedules and serves
//! Function URLs, all driven by the resolved manifest the deploy script writes. SQS is reached through the standard
//! AWS configuration chain, so an emulator on loopback (moto) stands in for AWS.
//!
//! Modules: `manifest` (what to run), `environment` (processes and the Runtime API), `invoke`
//! (Invoke API), `sqs` (event source pollers), `schedule` (expressions, pure) and `scheduler`
//! (timers), `url` (Function URLs, each on its own port), `control` (health, status, fault
//! injection); `app` routes the listen address.
//!
//! What is not like Lambda: the timeout clock starts when an invocation is handed to an
//! environment, so a cold start counts against it; memory is not limited; asynchronous
//! invocations are not retried; a mapping's batch is one ReceiveMessage (at most 10 messages).

mod app;
pub mod control;
pub mod environment;
mod http;
mod ids;
pub mod invoke;
pub mod manifest;
pub mod schedule;
mod scheduler;
pub mod sqs;
mod url;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::{sync::watch, task::JoinHandle};

use crate::{
    app::App,
    environment::{Function, LogSink},
    http::ServerTask,
    manifest::Manifest,
    sqs::{Mapping, Poller},
    url::FunctionUrl,
};

/// How long a stop waits for killed processes to be reaped.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How to run a manifest.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the Invoke and control APIs listen.
    pub listen: SocketAddr,
    /// Where `<function>.log` files go; the runtime's stderr when `None`.
    pub log_dir: Option<PathBuf>,
    /// Whether schedules fire on their own (they can always be fired through the control API).
    pub schedules: bool,
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("function {function}: binary {} does not exist or is not a file", binary.display())]
    MissingBinary { function: String, binary: PathBuf },
    #[error("cannot create log directory {}: {source}", dir.display())]
    LogDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(std::io::Error),
    #[error(transparent)]
    Listen(std::io::Error),
    #[error("function URL of {function}: {source}")]
    FunctionUrl {
        function: String,
        source: std::io::Error,
    },
}

/// A running local runtime. Stop it with [`LocalLambda::shutdown`].
#[derive(Debug)]
pub struct LocalLambda {
    addr: SocketAddr,
    app: Arc<App>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Where each Function URL listens, by function name.
    urls: BTreeMap<String, SocketAddr>,
    _server: ServerTask,
    _url_servers: Vec<ServerTask>,
}

impl LocalLambda {
    /// Starts serving `manifest`: the APIs on `options.listen`, each Function URL on its port of
    /// the same address, a poller per enabled event source and, unless disabled, a timer per
    /// enabled schedule. Environments start on demand.
    pub async fn start(manifest: Manifest, options: Options) -> Result<Self, StartError> {
        for spec in manifest.functions.values() {
            if !spec.binary.is_file() {
                return Err(StartError::MissingBinary {
                    function: spec.name.clone(),
                    binary: spec.binary.clone(),
                });
            }
        }
        if let Some(dir) = &options.log_dir {
            std::fs::create_dir_all(dir).map_err(|source| StartError::LogDir {
                dir: dir.clone(),
                source,
            })?;
        }
        let inherited: Vec<(String, String)> = std::env::vars().collect();
        let mut functions = BTreeMap::new();
        for spec in manifest.functions.values() {
            let log =
                LogSink::open(options.log_dir.as_deref(), &spec.name).map_err(StartError::Log)?;
            let arn = manifest.function_arn(&spec.name);
            let function =
                Function::new(spec.clone(), arn, &manifest.region, inherited.clone(), log);
            functions.insert(spec.name.clone(), Arc::new(function));
        }
        let mappings: Vec<Arc<Mapping>> = manifest
            .event_sources
            .iter()
            .map(|source| Arc::new(Mapping::new(source.clone())))
            .collect();

        let listener = http::bind(options.listen)
            .await
            .map_err(StartError::Listen)?;
        let addr = listener.local_addr().map_err(StartError::Listen)?;
        let app = Arc::new(App::new(manifest, functions, mappings));
        let server = http::serve(listener, {
            let app = Arc::clone(&app);
            move |request| Arc::clone(&app).handle(request)
        });
        let mut urls = BTreeMap::new();
        let mut url_servers = Vec::new();
        for spec in &app.manifest.function_urls {
            let url_error = |source| StartError::FunctionUrl {
                function: spec.function.clone(),
                source,
            };
            let listener = http::bind(SocketAddr::new(options.listen.ip(), spec.port))
                .await
                .map_err(url_error)?;
            let bound = listener.local_addr().map_err(url_error)?;
            let function = app
                .function(&spec.function)
                .expect("validated by the manifest");
            let url = Arc::new(FunctionUrl::new(
                function,
                &app.manifest.region,
                bound.port(),
            ));
            url_servers.push(http::serve(listener, move |request| {
                Arc::clone(&url).handle(request)
            }));
            tracing::info!(function = %spec.function, addr = %bound, "function URL listening");
            urls.insert(spec.function.clone(), bound);
        }

        let (stop, stopping) = watch::channel(false);
        let mut tasks = Vec::new();
        let enabled: Vec<&Arc<Mapping>> =
            app.mappings.iter().filter(|m| m.source.enabled).collect();
        if !enabled.is_empty() {
            let client = sqs_client(&app.manifest.region).await;
            for mapping in enabled {
                let poller = Poller {
                    client: client.clone(),
                    function: app
                        .function(&mapping.source.function)
                        .expect("validated by the manifest"),
                    region: app.manifest.region.clone(),
                };
                tasks.push(tokio::spawn(
                    poller.run(Arc::clone(mapping), stopping.clone()),
                ));
            }
        }
        if options.schedules {
            for schedule in app.manifest.schedules.values().filter(|s| s.enabled) {
                tasks.push(tokio::spawn(scheduler::run(
                    Arc::clone(&app),
                    schedule.clone(),
                    stopping.clone(),
                )));
            }
        }
        tracing::info!(%addr, functions = app.functions.len(), mappings = app.mappings.len(),
            schedules = app.manifest.schedules.len(), "local Lambda runtime started");
        Ok(Self {
            addr,
            app,
            stop,
            tasks,
            urls,
            _server: server,
            _url_servers: url_servers,
        })
    }

    /// The address the Invoke and control APIs listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the Function URL of `function` listens, if it has one.
    pub fn function_url(&self, function: &str) -> Option<SocketAddr> {
        self.urls.get(function).copied()
    }

    /// A snapshot of what `GET /_local/status` reports.
    pub fn status(&self) -> control::Status {
        control::status(&self.app)
    }

    /// Stops polling and firing, kills every function process and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        for function in self.app.functions.values() {
            function.shutdown(STOP_GRACE).await;
        }
        tracing::info!("local Lambda runtime stopped");
    }
}

/// The SQS client of every poller, from the standard chain (`AWS_ENDPOINT_URL*`, credentials
/// from the environment) in the manifest's region.
async fn sqs_client(region: &str) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// Resolves once `stop` is true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
