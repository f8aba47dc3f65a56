//! The judge function behind a Function URL: echoes each request as the project's judge document
//! (see `proxyharvest::pipeline::judge`). It needs no AWS client and no configuration.

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use proxyharvest::pipeline::judge;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<LambdaFunctionUrlRequest>| async move {
            Ok::<_, Error>(judge::answer(&event.payload))
        },
    ))
    .await
}
