//! The aggregator function: publishes a finished job (see `proxyharvest::pipeline::aggregator`).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use proxyharvest::pipeline::{Services, aggregator};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let mut services = Services::from_env().await?;
    let geo = aggregator::geo_from_config(None).await?;
    services.publisher = services.publisher.with_geo(geo);
    let max_age = aggregator::max_age_from_config()?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let services = &services;
        async move {
            Ok::<SqsBatchResponse, Error>(
                aggregator::handle(services, max_age, event.payload).await,
            )
        }
    }))
    .await
}
