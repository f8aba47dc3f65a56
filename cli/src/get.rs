//! `proxyharvest get`: read the published list, filter it, print it.

use std::io::Write;

use proxyharvest::list::ListedProxy;
use proxyharvest::outcome::Anonymity;
use proxyharvest::proxy::Protocol;

use crate::args::{GetArgs, ListFormat};
use crate::exit::{Outcome, Result};
use crate::stack::Stack;

/// Which proxies to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub protocol: Option<Protocol>,
    pub min_anonymity: Option<Anonymity>,
    pub max_latency_ms: Option<u32>,
    pub limit: Option<usize>,
}

impl Filter {
    pub fn keep(&self, p: &ListedProxy) -> bool {
        self.protocol
            .is_none_or(|proto| p.protocols.contains(proto))
            && self
                .min_anonymity
                .is_none_or(|a| rank(p.anonymity) >= rank(a))
            && self.max_latency_ms.is_none_or(|m| p.latency_ms <= m)
    }
}

fn rank(a: Anonymity) -> u8 {
    match a {
        Anonymity::Transparent => 0,
        Anonymity::Anonymous => 1,
        Anonymity::Elite => 2,
    }
}

pub async fn run(a: GetArgs) -> Result<Outcome> {
    let stack = Stack::resolve(&a.stack).await?;
    let publisher = stack.publisher()?;
    let Some(mut list) = publisher.published().await? else {
        return Err(format!(
            "nothing published yet at s3://{}/{}",
            publisher.bucket().name(),
            publisher.document_key()
        )
        .into());
    };
    let filter = Filter {
        protocol: a
            .protocol
            .as_deref()
            .map(|p| p.parse::<Protocol>())
            .transpose()
            .map_err(|e| format!("--protocol: {e}"))?,
        min_anonymity: a
            .anonymity
            .as_deref()
            .map(|s| serde_json::from_value::<Anonymity>(serde_json::Value::String(s.into())))
            .transpose()
            .map_err(|_| "--anonymity: one of transparent, anonymous, elite")?,
        max_latency_ms: a.max_latency_ms,
        limit: a.limit,
    };
    list.proxies.retain(|p| filter.keep(p));
    if let Some(n) = filter.limit {
        list.proxies.truncate(n);
    }
    let mut out: Box<dyn Write> = match &a.output {
        Some(path) => Box::new(std::fs::File::create(path)?),
        None => Box::new(std::io::stdout().lock()),
    };
    match a.format {
        ListFormat::Json => {
            list.counts = proxyharvest::list::ListCounts::of(&list.proxies);
            out.write_all(&list.to_json())?;
            writeln!(out)?;
        }
        ListFormat::Txt => {
            for p in &list.proxies {
                let auth = p
                    .credentials()
                    .map(|c| format!("{}:{}@", c.username, c.password))
                    .unwrap_or_default();
                let endpoint = proxyharvest::proxy::Endpoint {
                    host: p.host.clone(),
                    port: p.port,
                };
                match filter.protocol {
                    Some(_) => writeln!(out, "{auth}{endpoint}")?,
                    None => {
                        for proto in p.protocols.iter() {
                            writeln!(out, "{proto}://{auth}{endpoint}")?;
                        }
                    }
                }
            }
        }
    }
    out.flush()?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymity_filter_is_a_minimum() {
        assert!(rank(Anonymity::Elite) > rank(Anonymity::Anonymous));
        assert!(rank(Anonymity::Anonymous) > rank(Anonymity::Transparent));
    }
}
