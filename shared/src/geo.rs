//! Optional geolocation and ASN of each proxy's exit address, from MaxMind-format databases the
//! operator supplies (GeoLite2/GeoIP2 Country or City for the country, GeoLite2 ASN for the
//! autonomous system).
//!
//! The databases are not shipped: their licence is the operator's to accept. Each is optional
//! and independent, and where a database is absent or does not know an address the field stays
//! `None` — a country is never guessed. A database is read whole into memory at start-up
//! ([`load`], from a local path or an `s3://bucket/key`), and opened once so a corrupt file fails
//! loudly then rather than mid-publish. [`GeoDb::enrich`] runs after every merge (the merge
//! drops both fields, so a new database or a changed exit address is picked up on the next run).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use maxminddb::{MaxMindDbError, PathElement, Reader};

use crate::bucket::{Bucket, BucketError};
use crate::list::{PublishedList, is_country_code};

/// Which databases to load; both optional. Without either, geolocation is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoSettings {
    /// A Country or City database: gives `country`.
    pub country_db: Option<DbLocation>,
    /// An ASN database: gives `asn`.
    pub asn_db: Option<DbLocation>,
}

impl GeoSettings {
    pub fn is_enabled(&self) -> bool {
        self.country_db.is_some() || self.asn_db.is_some()
    }
}

/// Where a database file is: a local path, or an object in S3 (`s3://bucket/key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbLocation {
    Path(PathBuf),
    S3 { bucket: String, key: String },
}

impl FromStr for DbLocation {
    type Err = String;

    /// `s3://bucket/key` (both parts non-empty) or any other non-empty text as a path.
    fn from_str(s: &str) -> Result<DbLocation, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("is empty".to_owned());
        }
        let Some(rest) = s.strip_prefix("s3://") else {
            return Ok(DbLocation::Path(PathBuf::from(s)));
        };
        match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(DbLocation::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }),
            _ => Err(format!("must be s3://bucket/key or a path (got {s:?})")),
        }
    }
}

impl fmt::Display for DbLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbLocation::Path(p) => write!(f, "{}", p.display()),
            DbLocation::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Which of the two databases an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Country,
    Asn,
}

impl fmt::Display for DbKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbKind::Country => "country",
            DbKind::Asn => "ASN",
        })
    }
}

/// Why a database could not be loaded. Each names the database and where it was read from.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("cannot read the {kind} database {location}: {source}")]
    Read {
        kind: DbKind,
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot fetch the {kind} database: {source}")]
    Fetch {
        kind: DbKind,
        #[source]
        source: BucketError,
    },
    #[error("the {kind} database {location} does not exist")]
    Missing { kind: DbKind, location: String },
    #[error("the {kind} database {location} is not a valid MaxMind DB file: {source}")]
    Invalid {
        kind: DbKind,
        location: String,
        #[source]
        source: MaxMindDbError,
    },
}

/// The opened databases. Lookups never fail: an address a database does not know is `None`.
pub struct GeoDb {
    country: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind =
            |r: &Option<Reader<Vec<u8>>>| r.as_ref().map(|r| r.metadata().database_type.clone());
        f.debug_struct("GeoDb")
            .field("country", &kind(&self.country))
            .field("asn", &kind(&self.asn))
            .finish()
    }
}

/// Loads the databases `settings` name; `None` when it names none. An `s3://` location is read
/// with `s3`, or with a client from the standard AWS configuration when `s3` is `None`.
pub async fn load(
    settings: &GeoSettings,
    s3: Option<&aws_sdk_s3::Client>,
) -> Result<Option<GeoDb>, GeoError> {
    if !settings.is_enabled() {
        return Ok(None);
    }
    let mut client = s3.cloned();
    let mut read = async |kind: DbKind, location: &Option<DbLocation>| {
        let Some(location) = location else {
            return Ok(None);
        };
        let bytes = match location {
            DbLocation::Path(path) => {
                tokio::fs::read(path)
                    .await
                    .map_err(|source| GeoError::Read {
                        kind,
                        location: location.to_string(),
                        source,
                    })?
            }
            DbLocation::S3 { bucket, key } => {
                if client.is_none() {
                    client = Some(crate::aws::s3(&crate::aws::load().await));
                }
                let client = client.clone().expect("set just above");
                Bucket::new(client, bucket.as_str())
                    .get(key)
                    .await
                    .map_err(|source| GeoError::Fetch { kind, source })?
                    .ok_or_else(|| GeoError::Missing {
                        kind,
                        location: location.to_string(),
                    })?
                    .body
            }
        };
        open(kind, &location.to_string(), bytes).map(Some)
    };
    let country = read(DbKind::Country, &settings.country_db).await?;
    let asn = read(DbKind::Asn, &settings.asn_db).await?;
    Ok(Some(GeoDb { country, asn }))
}

fn open(kind: DbKind, location: &str, bytes: Vec<u8>) -> Result<Reader<Vec<u8>>, GeoError> {
    Reader::from_source(bytes).map_err(|source| GeoError::Invalid {
        kind,
        location: location.to_owned(),
        source,
    })
}

impl GeoDb {
    /// Opens databases already in memory (e.g. fetched by the caller).
    pub fn from_bytes(country: Option<Vec<u8>>, asn: Option<Vec<u8>>) -> Result<GeoDb, GeoError> {
        const IN_MEMORY: &str = "(in memory)";
        Ok(GeoDb {
            country: country
                .map(|b| open(DbKind::Country, IN_MEMORY, b))
                .transpose()?,
            asn: asn.map(|b| open(DbKind::Asn, IN_MEMORY, b)).transpose()?,
        })
    }

    /// The country (ISO 3166-1 alpha-2, upper case) and autonomous system number of `ip`, each
    /// `None` when its database is absent or has no such record.
    pub fn lookup(&self, ip: IpAddr) -> (Option<String>, Option<u32>) {
        let country = self
            .country
            .as_ref()
            .and_then(|r| {
                find::<String>(
                    r,
                    ip,
                    &[PathElement::Key("country"), PathElement::Key("iso_code")],
                )
            })
            .map(|c| c.to_ascii_uppercase())
            // A value the published list could not hold is as good as unknown.
            .filter(|c| is_country_code(c));
        let asn = self
            .asn
            .as_ref()
            .and_then(|r| find::<u32>(r, ip, &[PathElement::Key("autonomous_system_number")]));
        (country, asn)
    }

    /// Sets `country` and `asn` of every listed proxy from its exit address.
    pub fn enrich(&self, list: &mut PublishedList) {
        for p in &mut list.proxies {
            (p.country, p.asn) = self.lookup(p.exit_ip);
        }
    }
}

/// One field of the record for `ip`. A damaged record is logged and treated as unknown: one bad
/// entry must not stop the list from being published.
fn find<T: serde::de::DeserializeOwned>(
    reader: &Reader<Vec<u8>>,
    ip: IpAddr,
    path: &[PathElement<'_>],
) -> Option<T> {
    match reader.lookup(ip).and_then(|r| r.decode_path::<T>(path)) {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(%ip, %error, database = %reader.metadata().database_type, "geolocation lookup failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_as_path_or_s3_object() {
        assert_eq!(
            "s3://geo-bucket/db/GeoLite2-Country.mmdb".parse(),
            Ok(DbLocation::S3 {
                bucket: "geo-bucket".to_owned(),
                key: "db/GeoLite2-Country.mmdb".to_owned()
            })
        );
        assert_eq!(
            " /var/geo/ASN.mmdb ".parse(),
            Ok(DbLocation::Path(PathBuf::from("/var/geo/ASN.mmdb")))
        );
        for bad in ["s3://", "s3://bucket", "s3://bucket/", "s3:///key"] {
            let e = bad.parse::<DbLocation>().unwrap_err();
            assert!(e.contains("must be s3://bucket/key"), "{bad}: {e}");
        }
        assert_eq!("  ".parse::<DbLocation>(), Err("is empty".to_owned()));
        let s3 = "s3://b/k/x.mmdb".parse::<DbLocation>().unwrap();
        assert_eq!(s3.to_string(), "s3://b/k/x.mmdb");
    }

    #[test]
    fn corrupt_bytes_are_a_clear_error() {
        let e = GeoDb::from_bytes(Some(b"not a database".to_vec()), None).unwrap_err();
        assert!(
            matches!(
                e,
                GeoError::Invalid {
                    kind: DbKind::Country,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("the country database (in memory) is not a valid MaxMind DB file"),
            "{e}"
        );
        let e = GeoDb::from_bytes(None, Some(Vec::new())).unwrap_err();
        assert!(e.to_string().starts_with("the ASN database"), "{e}");
    }

    #[test]
    fn no_databases_know_nothing() {
        let db = GeoDb::from_bytes(None, None).unwrap();
        assert_eq!(db.lookup("8.8.8.8".parse().unwrap()), (None, None));
    }

    #[tokio::test]
    async fn load_without_settings_is_off_and_names_missing_files() {
        assert!(load(&GeoSettings::default(), None).await.unwrap().is_none());
        let settings = GeoSettings {
            country_db: None,
            asn_db: Some(DbLocation::Path(PathBuf::from("/nonexistent/ASN.mmdb"))),
        };
        let e = load(&settings, None).await.unwrap_err();
        assert!(
            matches!(
                e,
                GeoError::Read {
                    kind: DbKind::Asn,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("cannot read the ASN database /nonexistent/ASN.mmdb: "),
            "{e}"
        );
    }
}
