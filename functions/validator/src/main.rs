//! The validator function: checks one chunk (see `proxyharvest::pipeline::validator`).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use proxyharvest::pipeline::{Services, validator};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let _ = proxyharvest::check::raise_fd_limit();
    let services = Services::from_env().await?;
    let checkers = validator::Checkers::default();
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (services, checkers) = (&services, &checkers);
        async move {
            let deadline = event.context.deadline();
            Ok::<SqsBatchResponse, Error>(
                validator::handle(services, checkers, event.payload, deadline).await,
            )
        }
    }))
    .await
}
