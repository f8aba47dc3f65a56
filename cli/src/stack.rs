//! Where the pipeline is: names from the local stack's manifest, overridden by flags or
//! environment, and the AWS clients to reach it (standard AWS configuration chain).

use std::path::Path;

use proxyharvest::bucket::Bucket;
use proxyharvest::publish::Publisher;
use proxyharvest::table::JobTable;

use crate::args::StackArgs;
use crate::exit::Result;

/// The resolved names.
#[derive(Debug, Clone)]
pub struct Stack {
    pub function: String,
    pub table: Option<String>,
    pub bucket: Option<String>,
    pub list_prefix: String,
    pub sdk: aws_config::SdkConfig,
}

fn manifest_outputs(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "stack manifest {}: {e} (is the local stack up? make local-up)",
            path.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("stack manifest {}: {e}", path.display()))?;
    Ok(v.get("outputs").cloned().unwrap_or_default())
}

impl Stack {
    pub async fn resolve(a: &StackArgs) -> Result<Stack> {
        let outputs = match &a.stack_manifest {
            Some(p) => manifest_outputs(p)?,
            None => serde_json::Value::Null,
        };
        let out = |k: &str| outputs.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        Ok(Stack {
            function: a
                .function
                .clone()
                .or_else(|| out("TriggerFunctionName"))
                .unwrap_or_else(|| "proxyharvest-trigger".into()),
            table: a.table.clone().or_else(|| out("TableName")),
            bucket: a.bucket.clone().or_else(|| out("BucketName")),
            list_prefix: a.list_prefix.clone(),
            sdk: proxyharvest::aws::load().await,
        })
    }

    pub fn table(&self) -> Result<JobTable> {
        let name = self.table.as_deref().ok_or(
            "no jobs table: pass --table, set PROXYHARVEST_TABLE, or --stack-manifest for the local stack",
        )?;
        Ok(JobTable::new(proxyharvest::aws::dynamodb(&self.sdk), name))
    }

    pub fn publisher(&self) -> Result<Publisher> {
        let name = self.bucket.as_deref().ok_or(
            "no list bucket: pass --bucket, set PROXYHARVEST_BUCKET, or --stack-manifest for the local stack",
        )?;
        Ok(Publisher::new(
            Bucket::new(proxyharvest::aws::s3(&self.sdk), name),
            &self.list_prefix,
        ))
    }

    pub fn lambda(&self) -> aws_sdk_lambda::Client {
        aws_sdk_lambda::Client::new(&self.sdk)
    }
}
