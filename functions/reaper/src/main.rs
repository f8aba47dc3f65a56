//! The reaper function: records dead-lettered chunks and sweeps stalled jobs (see
//! `proxyharvest::pipeline::reaper`).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use proxyharvest::pipeline::{Services, reaper};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let services = Services::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let services = &services;
        async move { reaper::handle(services, event.payload).await }
    }))
    .await
}
