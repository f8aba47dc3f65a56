//! The trigger function: starts a job (see `proxyharvest::pipeline::trigger`).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use proxyharvest::pipeline::{Services, trigger};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let services = Services::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let services = &services;
        async move { trigger::handle(services, event.payload).await }
    }))
    .await
}
