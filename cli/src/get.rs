//! `proxyharvest get`: read the published list, filter it, print it — the CLI face of
//! [`proxyharvest::consume`], which holds every filter and format.

use std::io::Write;
use std::time::SystemTime;

use proxyharvest::consume::{self, Format, Query};

use crate::args::{GetArgs, ListFormat};
use crate::exit::{Outcome, Result};
use crate::stack::Stack;

/// The query the flags ask for; bad values are reported with the flag that carried them.
fn query(a: &GetArgs) -> Result<Query> {
    Ok(Query {
        protocol: a
            .protocol
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| format!("--protocol: {e}"))?,
        min_anonymity: a
            .anonymity
            .as_deref()
            .map(consume::parse_anonymity)
            .transpose()
            .map_err(|e| format!("--anonymity: {e}"))?,
        max_latency_ms: a.max_latency_ms,
        min_uptime: a.min_uptime,
        max_age: a.max_age,
        country: a.country.clone(),
        limit: a.limit,
    })
}

fn format(f: ListFormat) -> Format {
    match f {
        ListFormat::Json => Format::Json,
        ListFormat::Txt => Format::Txt,
        ListFormat::Csv => Format::Csv,
        ListFormat::Url => Format::Url,
    }
}

pub async fn run(a: GetArgs) -> Result<Outcome> {
    let query = query(&a)?;
    let stack = Stack::resolve(&a.stack).await?;
    // The publisher knows where the document is; fetching it is the consumer's business.
    let publisher = stack.publisher()?;
    let s3 = proxyharvest::aws::s3(&stack.sdk);
    let list = consume::fetch(&s3, publisher.bucket().name(), &publisher.document_key()).await?;
    let selected = query.select(&list, SystemTime::now())?;
    let text = consume::render(&list, &selected, format(a.format), query.protocol);
    let mut out: Box<dyn Write> = match &a.output {
        Some(path) => Box::new(
            std::fs::File::create(path).map_err(|e| format!("--output {}: {e}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn get_args(flags: &[&str]) -> GetArgs {
        let argv = ["proxyharvest", "get"].iter().chain(flags);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Get(a) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_become_a_query() {
        let a = get_args(&[
            "--protocol=socks5",
            "--anonymity=elite",
            "--max-latency-ms=300",
            "--min-uptime=0.9",
            "--max-age=2h",
            "--country=nz",
            "--limit=5",
            "--format=url",
        ]);
        let q = query(&a).unwrap();
        assert_eq!(
            q,
            Query {
                protocol: Some(proxyharvest::proxy::Protocol::Socks5),
                min_anonymity: Some(proxyharvest::outcome::Anonymity::Elite),
                max_latency_ms: Some(300),
                min_uptime: Some(0.9),
                max_age: Some(std::time::Duration::from_secs(7200)),
                country: Some("nz".to_owned()),
                limit: Some(5),
            }
        );
        assert_eq!(format(a.format), Format::Url);
    }

    #[test]
    fn bad_values_name_their_flag() {
        let err = query(&get_args(&["--protocol=ftp"])).unwrap_err();
        assert!(err.to_string().starts_with("--protocol:"), "{err}");
        let err = query(&get_args(&["--anonymity=invisible"])).unwrap_err();
        assert!(err.to_string().starts_with("--anonymity:"), "{err}");
        let err = Cli::try_parse_from(["proxyharvest", "get", "--max-age=soon"]).unwrap_err();
        assert!(err.to_string().contains("30m"), "{err}");
    }

    #[test]
    fn every_format_is_reachable() {
        for (flag, want) in [
            ("json", Format::Json),
            ("txt", Format::Txt),
            ("csv", Format::Csv),
            ("url", Format::Url),
        ] {
            let a = get_args(&["--format", flag]);
            assert_eq!(format(a.format), want);
        }
    }
}
