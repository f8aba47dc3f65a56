//! The one configuration loader: TOML in, a validated [`Config`] out.
//!
//! Two layers, kept apart: the raw serde structs mirror the file (every field optional, unknown
//! keys rejected so a typo cannot pass silently), and [`Config`] holds the checked values the
//! program uses (durations, URLs, bounded numbers). A file is laid over the built-in default
//! (`config/default.toml`, embedded), so it only needs the settings it changes; `[[sources]]` in
//! a file replaces the default list as a whole. Then `PROXYHARVEST_<SECTION>_<KEY>` variables
//! override single settings ([`Config::apply_env`], given the variables so tests need not touch
//! the process environment):
//!
//! ```no_run
//! let mut config = proxyharvest::config::load(None)?;
//! config.apply_env(std::env::vars())?;
//! # Ok::<(), proxyharvest::config::ConfigError>(())
//! ```
//!
//! Every error names the key and where its value came from, so it can be fixed without
//! reading code. This module knows nothing of the checker or the sources: the callers turn these
//! settings into their own options.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::geo::{DbLocation, GeoSettings};
use crate::proxy::Protocol;

/// The built-in configuration.
const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
const DEFAULT_ORIGIN: &str = "the built-in default configuration";
const ENV_PREFIX: &str = "PROXYHARVEST_";

const CONCURRENCY: RangeInclusive<u64> = 1..=4096;
const CHECK_TIMEOUT_MS: RangeInclusive<u64> = 100..=300_000;
const MAX_RESPONSE_BYTES: RangeInclusive<u64> = 1024..=16 * 1024 * 1024;
const FETCH_TIMEOUT_MS: RangeInclusive<u64> = 1000..=900_000;
const MIN_CONNECT_TIMEOUT_MS: u64 = 100;
const FETCH_MAX_BYTES: RangeInclusive<u64> = 1024..=1024 * 1024 * 1024;
const RETRIES: RangeInclusive<u64> = 0..=10;
const MAX_AGE_HOURS: RangeInclusive<u64> = 1..=720;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub check: CheckSettings,
    pub fetch: FetchSettings,
    pub list: ListSettings,
    /// Optional geolocation databases (`[geo]`); none by default.
    pub geo: GeoSettings,
    pub sources: Vec<SourceSpec>,
}

/// How proxies are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSettings {
    /// The plain-HTTP judge (scheme `http`).
    pub judge: Url,
    /// The judge for the CONNECT check (scheme `https`), if any.
    pub judge_https: Option<Url>,
    /// CA certificates (PEM) to trust for `judge_https` instead of the public roots.
    pub judge_ca: Option<PathBuf>,
    pub concurrency: usize,
    /// The most one protocol's check of one proxy may take.
    pub timeout: Duration,
    /// The most the TCP connect may take; never more than `timeout`.
    pub connect_timeout: Duration,
    pub max_response_bytes: usize,
    /// Whether private, loopback and metadata addresses may be contacted.
    pub allow_private: bool,
}

/// How source lists are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSettings {
    pub timeout: Duration,
    /// Never more than `timeout`.
    pub connect_timeout: Duration,
    pub max_bytes: usize,
    /// Further attempts after a failed fetch.
    pub retries: u32,
}

/// How the published list ages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListSettings {
    /// How long an entry stays without a new check (whole hours).
    pub max_age: Duration,
}

/// One list to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// An `http(s)://` URL or a local path.
    pub location: String,
    /// The protocol of entries written without a scheme.
    pub default_protocol: Option<Protocol>,
    /// Extra request headers, sorted by name.
    pub headers: Vec<(String, String)>,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} is not a valid configuration: {source}")]
    Syntax {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    /// A value out of range, of the wrong kind, or missing. `origin` is the file or variable.
    #[error("{key} {problem} in {origin}")]
    Invalid {
        key: String,
        problem: String,
        origin: String,
    },
}

/// Loads the configuration file at `path` laid over the built-in default, or the built-in
/// default alone. A relative `check.judge_ca` or `geo.*_db` path is taken relative to the file.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let Some(path) = path else {
        return validate(default_raw()?, DEFAULT_ORIGIN);
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let origin = path.display().to_string();
    let mut raw = parse(&text, &origin)?;
    if let Some(ca) = raw.check.as_mut().and_then(|c| c.judge_ca.as_mut())
        && ca.is_relative()
        && !ca.as_os_str().is_empty()
    {
        *ca = path.parent().unwrap_or(Path::new("")).join(&*ca);
    }
    if let Some(geo) = raw.geo.as_mut() {
        for db in [&mut geo.country_db, &mut geo.asn_db].into_iter().flatten() {
            if let Ok(DbLocation::Path(p)) = db.parse::<DbLocation>()
                && p.is_relative()
            {
                *db = path
                    .parent()
                    .unwrap_or(Path::new(""))
                    .join(p)
                    .display()
                    .to_string();
            }
        }
    }
    validate(raw.over(default_raw()?), &origin)
}

/// Reads a configuration from text laid over the built-in default; `origin` names the text in
/// errors (usually the file name).
pub fn from_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let raw = parse(text, origin)?;
    validate(raw.over(default_raw()?), origin)
}

impl Config {
    /// Overrides settings from `PROXYHARVEST_<SECTION>_<KEY>` variables (`PROXYHARVEST_CHECK_
    /// CONCURRENCY=256`; an empty value unsets an optional setting). Other variables are ignored,
    /// but an unknown key in the `CHECK`, `FETCH`, `LIST` or `GEO` section is an error, like an unknown
    /// key in a file. On error, the configuration is left unchanged.
    pub fn apply_env(
        &mut self,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let mut raw = RawConfig::from(&*self);
        let mut set_by: Vec<(String, String)> = Vec::new();
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) =
                ["CHECK", "FETCH", "LIST", "GEO"].into_iter().find_map(|s| {
                    let key = rest.strip_prefix(s)?.strip_prefix('_')?;
                    Some((s.to_ascii_lowercase(), key.to_ascii_lowercase()))
                })
            else {
                continue;
            };
            let dotted = format!("{section}.{key}");
            raw.set(&section, &key, &value)
                .map_err(|problem| ConfigError::Invalid {
                    key: dotted.clone(),
                    problem,
                    origin: format!("environment variable {name}"),
                })?;
            set_by.push((dotted, name));
        }
        if set_by.is_empty() {
            return Ok(());
        }
        *self = validate(raw, "").map_err(|e| match e {
            ConfigError::Invalid { key, problem, .. } => {
                let origin = match set_by.iter().find(|(k, _)| *k == key) {
                    Some((_, var)) => format!("environment variable {var}"),
                    None => {
                        let vars: Vec<&str> = set_by.iter().map(|(_, v)| v.as_str()).collect();
                        format!("the configuration overridden by {}", vars.join(", "))
                    }
                };
                ConfigError::Invalid {
                    key,
                    problem,
                    origin,
                }
            }
            other => other,
        })?;
        Ok(())
    }
}

// ---- the raw layer: what the file says ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    check: Option<RawCheck>,
    fetch: Option<RawFetch>,
    list: Option<RawList>,
    geo: Option<RawGeo>,
    sources: Option<Vec<RawSource>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    judge: Option<String>,
    judge_https: Option<String>,
    judge_ca: Option<PathBuf>,
    concurrency: Option<u64>,
    timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    max_response_bytes: Option<u64>,
    allow_private: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFetch {
    timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    max_bytes: Option<u64>,
    retries: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    max_age_hours: Option<u64>,
}

/// Each a path or `s3://bucket/key`; an empty string means none.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeo {
    country_db: Option<String>,
    asn_db: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: String,
    protocol: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn parse(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|source| ConfigError::Syntax {
        origin: origin.to_owned(),
        source,
    })
}

fn default_raw() -> Result<RawConfig, ConfigError> {
    parse(DEFAULT_TOML, DEFAULT_ORIGIN)
}

impl RawConfig {
    /// This layer's settings, falling back to `base` for each one it does not set.
    fn over(self, base: RawConfig) -> RawConfig {
        let (c, b) = (
            self.check.unwrap_or_default(),
            base.check.unwrap_or_default(),
        );
        let check = RawCheck {
            judge: c.judge.or(b.judge),
            judge_https: c.judge_https.or(b.judge_https),
            judge_ca: c.judge_ca.or(b.judge_ca),
            concurrency: c.concurrency.or(b.concurrency),
            timeout_ms: c.timeout_ms.or(b.timeout_ms),
            connect_timeout_ms: c.connect_timeout_ms.or(b.connect_timeout_ms),
            max_response_bytes: c.max_response_bytes.or(b.max_response_bytes),
            allow_private: c.allow_private.or(b.allow_private),
        };
        let (f, b) = (
            self.fetch.unwrap_or_default(),
            base.fetch.unwrap_or_default(),
        );
        let fetch = RawFetch {
            timeout_ms: f.timeout_ms.or(b.timeout_ms),
            connect_timeout_ms: f.connect_timeout_ms.or(b.connect_timeout_ms),
            max_bytes: f.max_bytes.or(b.max_bytes),
            retries: f.retries.or(b.retries),
        };
        let (l, b) = (self.list.unwrap_or_default(), base.list.unwrap_or_default());
        let list = RawList {
            max_age_hours: l.max_age_hours.or(b.max_age_hours),
        };
        let (g, b) = (self.geo.unwrap_or_default(), base.geo.unwrap_or_default());
        let geo = RawGeo {
            country_db: g.country_db.or(b.country_db),
            asn_db: g.asn_db.or(b.asn_db),
        };
        RawConfig {
            check: Some(check),
            fetch: Some(fetch),
            list: Some(list),
            geo: Some(geo),
            sources: self.sources.or(base.sources),
        }
    }

    /// Sets one setting from the text of an environment variable.
    fn set(&mut self, section: &str, key: &str, value: &str) -> Result<(), String> {
        let check = self.check.get_or_insert_with(RawCheck::default);
        let fetch = self.fetch.get_or_insert_with(RawFetch::default);
        let list = self.list.get_or_insert_with(RawList::default);
        let geo = self.geo.get_or_insert_with(RawGeo::default);
        let text = || Some(value.to_owned());
        match (section, key) {
            ("check", "judge") => check.judge = text(),
            ("check", "judge_https") => check.judge_https = text(),
            ("check", "judge_ca") => check.judge_ca = Some(PathBuf::from(value)),
            ("check", "concurrency") => check.concurrency = Some(number(value)?),
            ("check", "timeout_ms") => check.timeout_ms = Some(number(value)?),
            ("check", "connect_timeout_ms") => check.connect_timeout_ms = Some(number(value)?),
            ("check", "max_response_bytes") => check.max_response_bytes = Some(number(value)?),
            ("check", "allow_private") => check.allow_private = Some(boolean(value)?),
            ("fetch", "timeout_ms") => fetch.timeout_ms = Some(number(value)?),
            ("fetch", "connect_timeout_ms") => fetch.connect_timeout_ms = Some(number(value)?),
            ("fetch", "max_bytes") => fetch.max_bytes = Some(number(value)?),
            ("fetch", "retries") => fetch.retries = Some(number(value)?),
            ("list", "max_age_hours") => list.max_age_hours = Some(number(value)?),
            ("geo", "country_db") => geo.country_db = text(),
            ("geo", "asn_db") => geo.asn_db = text(),
            _ => return Err("is not a setting".to_owned()),
        }
        Ok(())
    }
}

fn number(value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("must be a whole number (got {value:?})"))
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("must be true or false (got {value:?})")),
    }
}

/// The raw form of a validated configuration, so that overrides go through the same checks.
impl From<&Config> for RawConfig {
    fn from(c: &Config) -> Self {
        let ms = |d: Duration| Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        RawConfig {
            check: Some(RawCheck {
                judge: Some(c.check.judge.to_string()),
                judge_https: c.check.judge_https.as_ref().map(Url::to_string),
                judge_ca: c.check.judge_ca.clone(),
                concurrency: Some(c.check.concurrency as u64),
                timeout_ms: ms(c.check.timeout),
                connect_timeout_ms: ms(c.check.connect_timeout),
                max_response_bytes: Some(c.check.max_response_bytes as u64),
                allow_private: Some(c.check.allow_private),
            }),
            fetch: Some(RawFetch {
                timeout_ms: ms(c.fetch.timeout),
                connect_timeout_ms: ms(c.fetch.connect_timeout),
                max_bytes: Some(c.fetch.max_bytes as u64),
                retries: Some(u64::from(c.fetch.retries)),
            }),
            list: Some(RawList {
                max_age_hours: Some(c.list.max_age.as_secs() / 3600),
            }),
            geo: Some(RawGeo {
                country_db: c.geo.country_db.as_ref().map(DbLocation::to_string),
                asn_db: c.geo.asn_db.as_ref().map(DbLocation::to_string),
            }),
            sources: Some(
                c.sources
                    .iter()
                    .map(|s| RawSource {
                        url: s.location.clone(),
                        protocol: s.default_protocol.map(|p| p.scheme().to_owned()),
                        headers: s.headers.iter().cloned().collect(),
                    })
                    .collect(),
            ),
        }
    }
}

// ---- validation: raw to checked ----

/// Builds errors that name the key and the origin.
struct Checker<'a> {
    origin: &'a str,
}

impl Checker<'_> {
    fn invalid(&self, key: impl Display, problem: impl Display) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            problem: problem.to_string(),
            origin: self.origin.to_owned(),
        }
    }

    fn required<T>(&self, key: &str, value: Option<T>) -> Result<T, ConfigError> {
        value.ok_or_else(|| self.invalid(key, "is missing"))
    }

    fn within(
        &self,
        key: &str,
        value: Option<u64>,
        range: RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        let v = self.required(key, value)?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(self.invalid(
                key,
                format_args!(
                    "must be between {} and {} (got {v})",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }

    fn connect_timeout(
        &self,
        section: &str,
        value: Option<u64>,
        timeout_ms: u64,
    ) -> Result<Duration, ConfigError> {
        let key = format!("{section}.connect_timeout_ms");
        let v = self.required(&key, value)?;
        if (MIN_CONNECT_TIMEOUT_MS..=timeout_ms).contains(&v) {
            Ok(Duration::from_millis(v))
        } else {
            Err(self.invalid(
                key,
                format_args!(
                    "must be between {MIN_CONNECT_TIMEOUT_MS} and {section}.timeout_ms \
                     ({timeout_ms}) (got {v})"
                ),
            ))
        }
    }

    fn url(&self, key: &str, value: &str, scheme: &str) -> Result<Url, ConfigError> {
        let url = Url::parse(value)
            .map_err(|e| self.invalid(key, format_args!("is not a URL ({e}): {value:?}")))?;
        if url.scheme() != scheme || url.host_str().is_none_or(str::is_empty) {
            return Err(self.invalid(
                key,
                format_args!("must be an {scheme}:// URL with a host (got {value:?})"),
            ));
        }
        Ok(url)
    }

    /// An optional database location; an empty string is how a file or variable says "none".
    fn db_location(
        &self,
        key: &str,
        value: Option<String>,
    ) -> Result<Option<DbLocation>, ConfigError> {
        value
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|problem: String| self.invalid(key, problem))
            })
            .transpose()
    }

    fn source(&self, index: usize, raw: RawSource) -> Result<SourceSpec, ConfigError> {
        let key = |field: &str| format!("sources[{index}].{field}");
        let location = raw.url.trim().to_owned();
        if location.is_empty() {
            return Err(self.invalid(key("url"), "is empty"));
        }
        // A scheme of one letter is a Windows drive (`C:\lists\http.txt`): a path.
        if let Some(url) = Url::parse(&location).ok().filter(|u| u.scheme().len() > 1)
            && !matches!(url.scheme(), "http" | "https")
        {
            return Err(self.invalid(
                key("url"),
                format_args!("must be an http:// or https:// URL or a path (got {location:?})"),
            ));
        }
        let default_protocol = raw
            .protocol
            .map(|p| {
                Protocol::from_scheme(&p).ok_or_else(|| {
                    self.invalid(
                        key("protocol"),
                        format_args!("must be one of http, https, socks4, socks5 (got {p:?})"),
                    )
                })
            })
            .transpose()?;
        for (name, value) in &raw.headers {
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                return Err(self.invalid(
                    key("headers"),
                    format_args!("has an invalid header name {name:?}"),
                ));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(self.invalid(
                    key("headers"),
                    format_args!("has a control character in the value of {name:?}"),
                ));
            }
        }
        Ok(SourceSpec {
            location,
            default_protocol,
            headers: raw.headers.into_iter().collect(),
        })
    }
}

fn validate(raw: RawConfig, origin: &str) -> Result<Config, ConfigError> {
    let v = Checker { origin };
    let c = raw.check.unwrap_or_default();
    let check_timeout_ms = v.within("check.timeout_ms", c.timeout_ms, CHECK_TIMEOUT_MS)?;
    let judge = v.required("check.judge", c.judge)?;
    let check = CheckSettings {
        judge: v.url("check.judge", &judge, "http")?,
        // An empty string is how a file or variable says "none" over the default.
        judge_https: c
            .judge_https
            .filter(|s| !s.trim().is_empty())
            .map(|s| v.url("check.judge_https", &s, "https"))
            .transpose()?,
        judge_ca: c.judge_ca.filter(|p| !p.as_os_str().is_empty()),
        concurrency: v.within("check.concurrency", c.concurrency, CONCURRENCY)? as usize,
        timeout: Duration::from_millis(check_timeout_ms),
        connect_timeout: v.connect_timeout("check", c.connect_timeout_ms, check_timeout_ms)?,
        max_response_bytes: v.within(
            "check.max_response_bytes",
            c.max_response_bytes,
            MAX_RESPONSE_BYTES,
        )? as usize,
        allow_private: v.required("check.allow_private", c.allow_private)?,
    };

    let f = raw.fetch.unwrap_or_default();
    let fetch_timeout_ms = v.within("fetch.timeout_ms", f.timeout_ms, FETCH_TIMEOUT_MS)?;
    let fetch = FetchSettings {
        timeout: Duration::from_millis(fetch_timeout_ms),
        connect_timeout: v.connect_timeout("fetch", f.connect_timeout_ms, fetch_timeout_ms)?,
        max_bytes: v.within("fetch.max_bytes", f.max_bytes, FETCH_MAX_BYTES)? as usize,
        retries: v.within("fetch.retries", f.retries, RETRIES)? as u32,
    };

    let l = raw.list.unwrap_or_default();
    let hours = v.within("list.max_age_hours", l.max_age_hours, MAX_AGE_HOURS)?;
    let list = ListSettings {
        max_age: Duration::from_secs(hours * 3600),
    };

    let g = raw.geo.unwrap_or_default();
    let geo = GeoSettings {
        country_db: v.db_location("geo.country_db", g.country_db)?,
        asn_db: v.db_location("geo.asn_db", g.asn_db)?,
    };

    let mut sources: Vec<SourceSpec> = Vec::new();
    for (index, raw) in raw.sources.unwrap_or_default().into_iter().enumerate() {
        let source = v.source(index, raw)?;
        if let Some(first) = sources.iter().position(|s| s.location == source.location) {
            return Err(v.invalid(
                format_args!("sources[{index}].url"),
                format_args!("repeats sources[{first}].url ({})", source.location),
            ));
        }
        sources.push(source);
    }

    Ok(Config {
        check,
        fetch,
        list,
        geo,
        sources,
    })
}

/// What the settings mean for each part that uses them. Configuration sits above the engine,
/// so the conversions live here and the engine knows nothing of configuration.
impl Config {
    /// The checking engine's configuration.
    pub fn check_config(&self) -> crate::check::CheckConfig {
        let c = &self.check;
        let mut cfg = crate::check::CheckConfig::new(crate::judge::JudgeConfig {
            http: c.judge.clone(),
            https: c.judge_https.clone(),
            ca_file: c.judge_ca.clone(),
        });
        cfg.timeout = c.timeout;
        cfg.connect_timeout = c.connect_timeout;
        cfg.max_response_bytes = c.max_response_bytes;
        cfg.concurrency = c.concurrency;
        cfg.policy = crate::target::TargetPolicy {
            allow_private: c.allow_private,
        };
        cfg
    }

    /// The check parameters published with the list.
    pub fn check_params(&self) -> crate::list::CheckParams {
        crate::list::CheckParams {
            judge: self.check.judge.to_string(),
            timeout_ms: self.check.timeout.as_millis() as u64,
            connect_timeout_ms: self.check.connect_timeout.as_millis() as u64,
        }
    }

    /// The check settings sent with every chunk of a job (the CA file travels as PEM).
    pub fn check_spec(&self) -> Result<crate::job::CheckSpec, ConfigError> {
        let c = &self.check;
        let judge_ca_pem = c
            .judge_ca
            .as_ref()
            .map(|path| {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })
            })
            .transpose()?;
        Ok(crate::job::CheckSpec {
            judge: c.judge.to_string(),
            judge_https: c.judge_https.as_ref().map(Url::to_string),
            judge_ca_pem,
            timeout_ms: c.timeout.as_millis() as u64,
            connect_timeout_ms: c.connect_timeout.as_millis() as u64,
            max_response_bytes: c.max_response_bytes,
            concurrency: c.concurrency,
            allow_private: c.allow_private,
        })
    }

    /// How to fetch the sources. Private addresses are reachable by redirects and DNS answers
    /// only where private targets are allowed at all.
    pub fn fetch_options(&self) -> crate::source::FetchOptions {
        let f = &self.fetch;
        crate::source::FetchOptions {
            http: crate::http::HttpOptions {
                connect_timeout: f.connect_timeout,
                timeout: f.timeout,
                allow_private: self.check.allow_private,
                ..crate::http::HttpOptions::default()
            },
            max_bytes: f.max_bytes,
            retries: f.retries,
            ..crate::source::FetchOptions::default()
        }
    }

    /// The sources to fetch.
    pub fn sources(&self) -> Result<Vec<crate::source::Source>, ConfigError> {
        self.sources
            .iter()
            .map(|s| {
                let location = s
                    .location
                    .parse::<crate::source::SourceLocation>()
                    .map_err(|e| ConfigError::Invalid {
                        key: "sources.url".into(),
                        problem: format!("{:?}: {e}", s.location),
                        origin: "the configuration".into(),
                    })?;
                let mut src =
                    crate::source::Source::new(location).with_default_protocol(s.default_protocol);
                src.headers = s.headers.clone();
                Ok(src)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn error(text: &str) -> String {
        from_str(text, "config.toml").unwrap_err().to_string()
    }

    #[test]
    fn defaults_load() {
        let c = load(None).unwrap();
        assert_eq!(c.check.judge.as_str(), "http://httpbin.org/get?show_env=1");
        assert_eq!(
            c.check.judge_https.as_ref().map(Url::as_str),
            Some("https://httpbin.org/get?show_env=1")
        );
        assert_eq!(c.check.concurrency, 512);
        assert_eq!(c.check.timeout, Duration::from_secs(10));
        assert_eq!(c.check.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.check.max_response_bytes, 32 * 1024);
        assert!(!c.check.allow_private);
        assert_eq!(c.fetch.max_bytes, 50 * 1024 * 1024);
        assert_eq!(c.fetch.retries, 2);
        assert_eq!(c.list.max_age, Duration::from_secs(24 * 3600));
        assert!((8..=12).contains(&c.sources.len()), "{}", c.sources.len());
        for s in &c.sources {
            assert!(
                s.location.starts_with("https://raw.githubusercontent.com/"),
                "{s:?}"
            );
        }
        for p in [Protocol::Http, Protocol::Socks4, Protocol::Socks5] {
            assert!(c.sources.iter().any(|s| s.default_protocol == Some(p)));
        }
    }

    #[test]
    fn example_is_valid_and_describes_every_setting() {
        let text = include_str!("../../config/example.toml");
        let c = from_str(text, "example.toml").unwrap();
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.sources[0].headers[0].0, "User-Agent");
        // Every key the loader accepts appears in the example, set or commented out.
        for key in [
            "judge",
            "judge_https",
            "judge_ca",
            "concurrency",
            "timeout_ms",
            "connect_timeout_ms",
            "max_response_bytes",
            "allow_private",
            "max_bytes",
            "retries",
            "max_age_hours",
            "country_db",
            "asn_db",
            "url",
            "protocol",
            "headers",
        ] {
            assert!(
                text.contains(&format!("\n{key} = ")) || text.contains(&format!("# {key} = ")),
                "{key}"
            );
        }
    }

    #[test]
    fn a_file_overrides_only_what_it_sets() {
        let c = from_str("[check]\nconcurrency = 64\n", "config.toml").unwrap();
        let d = load(None).unwrap();
        assert_eq!(c.check.concurrency, 64);
        assert_eq!(c.check.judge, d.check.judge);
        assert_eq!(c.sources, d.sources);
        let c = from_str("sources = []\n[check]\njudge_https = \"\"\n", "config.toml").unwrap();
        assert!(c.sources.is_empty());
        assert_eq!(c.check.judge_https, None);
        let c = from_str(
            "[[sources]]\nurl = \"lists/mine.txt\"\nprotocol = \"SOCKS5H\"\n",
            "config.toml",
        )
        .unwrap();
        assert_eq!(
            c.sources,
            [SourceSpec {
                location: "lists/mine.txt".to_owned(),
                default_protocol: Some(Protocol::Socks5),
                headers: vec![],
            }]
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        for (text, unknown) in [
            ("[check]\nconcurency = 5\n", "concurency"),
            ("[chek]\n", "chek"),
            (
                "[[sources]]\nurl = \"https://a.test/\"\nproto = \"http\"\n",
                "proto",
            ),
        ] {
            let e = error(text);
            assert!(
                e.starts_with("config.toml is not a valid configuration"),
                "{e}"
            );
            assert!(e.contains(unknown), "{e}");
        }
    }

    #[test]
    fn every_validation_error_names_key_and_file() {
        let cases = [
            (
                "[check]\nconcurrency = 0",
                "check.concurrency must be between 1 and 4096 (got 0) in config.toml",
            ),
            (
                "[check]\nconcurrency = 5000",
                "check.concurrency must be between 1 and 4096",
            ),
            (
                "[check]\njudge = \"https://judge.test/\"",
                "check.judge must be an http:// URL with a host",
            ),
            ("[check]\njudge = \"not a url\"", "check.judge is not a URL"),
            (
                "[check]\njudge_https = \"http://judge.test/\"",
                "check.judge_https must be an https:// URL",
            ),
            (
                "[check]\ntimeout_ms = 50",
                "check.timeout_ms must be between 100 and 300000",
            ),
            (
                "[check]\ntimeout_ms = 1000\nconnect_timeout_ms = 2000",
                "check.connect_timeout_ms must be between 100 and check.timeout_ms (1000) (got 2000)",
            ),
            (
                "[check]\nconnect_timeout_ms = 10",
                "check.connect_timeout_ms must be between 100",
            ),
            (
                "[check]\nmax_response_bytes = 10",
                "check.max_response_bytes must be between 1024",
            ),
            (
                "[fetch]\ntimeout_ms = 999",
                "fetch.timeout_ms must be between 1000 and 900000",
            ),
            (
                "[fetch]\nconnect_timeout_ms = 40000",
                "fetch.connect_timeout_ms must be between 100 and fetch.timeout_ms (30000)",
            ),
            (
                "[fetch]\nmax_bytes = 0",
                "fetch.max_bytes must be between 1024",
            ),
            (
                "[fetch]\nretries = 11",
                "fetch.retries must be between 0 and 10",
            ),
            (
                "[list]\nmax_age_hours = 0",
                "list.max_age_hours must be between 1 and 720",
            ),
            ("[[sources]]\nurl = \" \"", "sources[0].url is empty"),
            (
                "[[sources]]\nurl = \"ftp://lists.test/a.txt\"",
                "sources[0].url must be an http:// or https:// URL or a path",
            ),
            (
                "[[sources]]\nurl = \"https://a.test/\"\nprotocol = \"ftp\"",
                "sources[0].protocol must be one of http, https, socks4, socks5 (got \"ftp\")",
            ),
            (
                "[[sources]]\nurl = \"https://a.test/\"\nheaders = { \"Bad Name\" = \"x\" }",
                "sources[0].headers has an invalid header name \"Bad Name\"",
            ),
            (
                "[[sources]]\nurl = \"https://a.test/\"\nheaders = { \"X-A\" = \"a\\nb\" }",
                "sources[0].headers has a control character",
            ),
            (
                "[[sources]]\nurl = \"https://a.test/\"\n[[sources]]\nurl = \"https://a.test/\"",
                "sources[1].url repeats sources[0].url",
            ),
        ];
        for (text, want) in cases {
            let e = error(text);
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.ends_with(" in config.toml"), "{text:?}: {e}");
        }
        // Wrong types are syntax errors, which name the file and the key.
        let e = error("[check]\nconcurrency = -1");
        assert!(
            e.contains("config.toml") && e.contains("concurrency"),
            "{e}"
        );
    }

    #[test]
    fn geolocation_is_off_by_default_and_set_per_database() {
        assert_eq!(load(None).unwrap().geo, GeoSettings::default());
        let c = from_str(
            "[geo]\ncountry_db = \"s3://geo/GeoLite2-City.mmdb\"\nasn_db = \"\"\n",
            "config.toml",
        )
        .unwrap();
        assert_eq!(
            c.geo.country_db,
            Some(DbLocation::S3 {
                bucket: "geo".to_owned(),
                key: "GeoLite2-City.mmdb".to_owned()
            })
        );
        assert_eq!(c.geo.asn_db, None);
        assert!(c.geo.is_enabled());
        let e = error("[geo]\nasn_db = \"s3:///ASN.mmdb\"\n");
        assert!(
            e.starts_with("geo.asn_db must be s3://bucket/key or a path")
                && e.ends_with(" in config.toml"),
            "{e}"
        );
        assert!(error("[geo]\ncity_db = \"x\"\n").contains("city_db"));
    }

    #[test]
    fn load_resolves_geo_paths_next_to_the_file() {
        let dir =
            std::env::temp_dir().join(format!("proxyharvest-geo-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(
            &path,
            "[geo]\ncountry_db = \"geo/Country.mmdb\"\nasn_db = \"s3://b/ASN.mmdb\"\n",
        )
        .unwrap();
        let c = load(Some(&path)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            c.geo.country_db,
            Some(DbLocation::Path(dir.join("geo/Country.mmdb")))
        );
        assert_eq!(c.geo.asn_db.unwrap().to_string(), "s3://b/ASN.mmdb");
    }

    #[test]
    fn load_reads_a_file_and_resolves_judge_ca_next_to_it() {
        let dir = std::env::temp_dir().join(format!("proxyharvest-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, "[check]\njudge_ca = \"ca.pem\"\nconcurrency = 0\n").unwrap();
        let e = load(Some(&path)).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "check.concurrency must be between 1 and 4096 (got 0) in {}",
                path.display()
            )
        );
        std::fs::write(&path, "[check]\njudge_ca = \"ca.pem\"\n").unwrap();
        let c = load(Some(&path)).unwrap();
        assert_eq!(c.check.judge_ca, Some(dir.join("ca.pem")));
        std::fs::remove_dir_all(&dir).unwrap();
        let e = load(Some(&dir.join("missing.toml"))).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        assert!(e.to_string().contains("missing.toml"));
    }

    #[test]
    fn env_overrides_settings() {
        let mut c = load(None).unwrap();
        c.apply_env(env(&[
            ("PROXYHARVEST_CHECK_CONCURRENCY", "256"),
            (
                "PROXYHARVEST_CHECK_JUDGE",
                "http://judge.test:8080/azenv.php",
            ),
            ("PROXYHARVEST_CHECK_JUDGE_HTTPS", ""),
            ("PROXYHARVEST_CHECK_JUDGE_CA", "/etc/judge.pem"),
            ("PROXYHARVEST_CHECK_TIMEOUT_MS", "4000"),
            ("PROXYHARVEST_CHECK_CONNECT_TIMEOUT_MS", "1500"),
            ("PROXYHARVEST_CHECK_MAX_RESPONSE_BYTES", "4096"),
            ("PROXYHARVEST_CHECK_ALLOW_PRIVATE", "true"),
            ("PROXYHARVEST_FETCH_TIMEOUT_MS", "5000"),
            ("PROXYHARVEST_FETCH_CONNECT_TIMEOUT_MS", "1000"),
            ("PROXYHARVEST_FETCH_MAX_BYTES", "2048"),
            ("PROXYHARVEST_FETCH_RETRIES", "0"),
            ("PROXYHARVEST_LIST_MAX_AGE_HOURS", "6"),
            (
                "PROXYHARVEST_GEO_COUNTRY_DB",
                "s3://geo-bucket/GeoLite2-Country.mmdb",
            ),
            ("PROXYHARVEST_GEO_ASN_DB", "/opt/geo/GeoLite2-ASN.mmdb"),
            ("PROXYHARVEST_BUCKET", "ignored: not a setting section"),
            ("PATH", "/usr/bin"),
        ]))
        .unwrap();
        assert_eq!(c.check.concurrency, 256);
        assert_eq!(c.check.judge.as_str(), "http://judge.test:8080/azenv.php");
        assert_eq!(c.check.judge_https, None);
        assert_eq!(c.check.judge_ca, Some(PathBuf::from("/etc/judge.pem")));
        assert_eq!(c.check.timeout, Duration::from_millis(4000));
        assert_eq!(c.check.connect_timeout, Duration::from_millis(1500));
        assert_eq!(c.check.max_response_bytes, 4096);
        assert!(c.check.allow_private);
        assert_eq!(c.fetch.timeout, Duration::from_secs(5));
        assert_eq!(c.fetch.connect_timeout, Duration::from_secs(1));
        assert_eq!(c.fetch.max_bytes, 2048);
        assert_eq!(c.fetch.retries, 0);
        assert_eq!(c.list.max_age, Duration::from_secs(6 * 3600));
        assert_eq!(
            c.geo.country_db,
            Some(DbLocation::S3 {
                bucket: "geo-bucket".to_owned(),
                key: "GeoLite2-Country.mmdb".to_owned()
            })
        );
        assert_eq!(
            c.geo.asn_db,
            Some(DbLocation::Path(PathBuf::from(
                "/opt/geo/GeoLite2-ASN.mmdb"
            )))
        );
        assert_eq!(c.sources, load(None).unwrap().sources);
        // An empty value turns a database off again.
        c.apply_env(env(&[("PROXYHARVEST_GEO_ASN_DB", "")]))
            .unwrap();
        assert_eq!(c.geo.asn_db, None);
        assert!(c.geo.country_db.is_some());
    }

    #[test]
    fn no_env_overrides_change_nothing() {
        let mut c = load(None).unwrap();
        c.apply_env(env(&[("HOME", "/root")])).unwrap();
        assert_eq!(c, load(None).unwrap());
        // Round-tripping through the raw layer loses nothing either.
        let d = from_str(include_str!("../../config/example.toml"), "example.toml").unwrap();
        assert_eq!(validate(RawConfig::from(&d), "again").unwrap(), d);
    }

    #[test]
    fn bad_env_values_name_the_variable_and_change_nothing() {
        let cases = [
            (
                "PROXYHARVEST_CHECK_CONCURRENCY",
                "lots",
                "check.concurrency must be a whole number (got \"lots\") in environment variable PROXYHARVEST_CHECK_CONCURRENCY",
            ),
            (
                "PROXYHARVEST_CHECK_CONCURRENCY",
                "0",
                "check.concurrency must be between 1 and 4096 (got 0) in environment variable PROXYHARVEST_CHECK_CONCURRENCY",
            ),
            (
                "PROXYHARVEST_CHECK_ALLOW_PRIVATE",
                "maybe",
                "check.allow_private must be true or false",
            ),
            (
                "PROXYHARVEST_CHECK_JUDGE",
                "ftp://judge.test/",
                "check.judge must be an http:// URL",
            ),
            (
                "PROXYHARVEST_CHECK_CONCURENCY",
                "5",
                "check.concurency is not a setting in environment variable PROXYHARVEST_CHECK_CONCURENCY",
            ),
            (
                "PROXYHARVEST_GEO_COUNTRY_DB",
                "s3://only-a-bucket",
                "geo.country_db must be s3://bucket/key or a path (got \"s3://only-a-bucket\") in environment variable PROXYHARVEST_GEO_COUNTRY_DB",
            ),
            (
                "PROXYHARVEST_GEO_CITY_DB",
                "/x.mmdb",
                "geo.city_db is not a setting in environment variable PROXYHARVEST_GEO_CITY_DB",
            ),
            (
                "PROXYHARVEST_CHECK_TIMEOUT_MS",
                "1000",
                "check.connect_timeout_ms must be between 100 and check.timeout_ms (1000) (got 5000) in the configuration overridden by PROXYHARVEST_CHECK_TIMEOUT_MS",
            ),
        ];
        for (name, value, want) in cases {
            let mut c = load(None).unwrap();
            let e = c.apply_env(env(&[(name, value)])).unwrap_err().to_string();
            assert!(e.contains(want), "{name}={value}: {e}");
            assert_eq!(c, load(None).unwrap());
        }
    }
}
