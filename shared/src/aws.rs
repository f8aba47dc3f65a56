//! The AWS clients, built once from the standard configuration chain.
//!
//! The code never knows which AWS it talks to: region, credentials and endpoints come from the
//! environment (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`), so the same binaries run on
//! Lambda, against moto, and against LocalStack.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the shared SDK configuration.
pub async fn load() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// An S3 client. Emulators on `http://127.0.0.1:PORT` need path-style addressing.
pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    let overridden = std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(overridden)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub fn sqs(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}
