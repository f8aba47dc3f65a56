//! Where proxy lists come from, and fetching them all at once.
//!
//! A [`Source`] is a URL or a local file plus what to assume about its entries. [`fetch_all`]
//! fetches every source concurrently (at most [`CONCURRENCY`] at a time), parses each body off the
//! async runtime, and de-duplicates across sources. A broken source never fails the whole fetch:
//! its [`SourceReport`] says what happened (HTTP status, timeout, too large, redirect refused...),
//! and the other sources still yield their proxies.
//!
//! Transient failures are retried with exponential backoff and jitter: connection failures,
//! timeouts, a connection cut mid-body, and the statuses 408, 429 and 5xx. A `Retry-After` header
//! (seconds or an HTTP date) replaces the backoff, capped by [`FetchOptions::max_retry_after`].
//! Other 4xx answers and refused redirects are final: asking again would get the same answer.
//! The client and its guard against private addresses are [`crate::http`]'s.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use url::Url;

use crate::http::{self, HttpError, HttpOptions};
use crate::parse::{Parsed, parse};
use crate::proxy::{Protocol, Proxy, dedup};

/// How many sources are fetched at the same time.
pub const CONCURRENCY: usize = 8;

/// A list of proxies to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub location: SourceLocation,
    /// Given to entries that name no protocol (the list is known to be SOCKS5 only, say).
    pub default_protocol: Option<Protocol>,
    /// Extra request headers (an API key, say); ignored for files.
    pub headers: Vec<(String, String)>,
}

impl Source {
    pub fn new(location: SourceLocation) -> Self {
        Source {
            location,
            default_protocol: None,
            headers: Vec::new(),
        }
    }

    pub fn with_default_protocol(mut self, protocol: Option<Protocol>) -> Self {
        self.default_protocol = protocol;
        self
    }
}

/// Where a list lives: an `http(s)` URL or a local file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SourceLocation {
    Url(Url),
    File(PathBuf),
}

/// A source location that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("empty source location")]
    Empty,
    #[error("invalid URL {text:?}: {reason}")]
    BadUrl { text: String, reason: String },
    #[error("unsupported scheme {0:?} (use http, https, file or a plain path)")]
    Scheme(String),
}

impl FromStr for SourceLocation {
    type Err = LocationError;
    /// `http(s)://...` is a URL, `file://...` and anything without a scheme are file paths.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(LocationError::Empty);
        }
        let Some((scheme, _)) = s.split_once("://") else {
            return Ok(SourceLocation::File(PathBuf::from(s)));
        };
        let bad = |reason: String| LocationError::BadUrl {
            text: s.to_owned(),
            reason,
        };
        let url = Url::parse(s).map_err(|e| bad(e.to_string()))?;
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => Ok(SourceLocation::Url(url)),
            "file" => url
                .to_file_path()
                .map(SourceLocation::File)
                .map_err(|()| bad("not a local absolute path".to_owned())),
            other => Err(LocationError::Scheme(other.to_owned())),
        }
    }
}

impl TryFrom<String> for SourceLocation {
    type Error = LocationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SourceLocation> for String {
    fn from(l: SourceLocation) -> String {
        match l {
            SourceLocation::Url(url) => url.into(),
            SourceLocation::File(path) => path.display().to_string(),
        }
    }
}

impl fmt::Display for SourceLocation {
    /// The URL without its password, or the path: safe to log and to put in reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceLocation::Url(url) if url.password().is_some() => {
                let mut shown = url.clone();
                let _ = shown.set_password(Some("***"));
                write!(f, "{shown}")
            }
            SourceLocation::Url(url) => write!(f, "{url}"),
            SourceLocation::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// How sources are fetched.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub http: HttpOptions,
    /// The largest body read from one source.
    pub max_bytes: usize,
    /// Retries after the first attempt, for transient failures only.
    pub retries: u32,
    /// The first retry waits about this long; each further one twice as long.
    pub backoff: Duration,
    /// The longest wait a `Retry-After` header (or the backoff) may impose.
    pub max_retry_after: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            http: HttpOptions::default(),
            max_bytes: 50 << 20,
            retries: 2,
            backoff: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// What fetching one source did. Goes into job reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceReport {
    /// The location, without any password.
    pub source: String,
    /// Whether a body was obtained (it may still hold no proxy).
    pub fetched: bool,
    pub bytes: u64,
    /// Distinct proxies parsed from this source.
    pub parsed: u64,
    pub invalid: u64,
    /// Entries merged within this source.
    pub duplicates: u64,
    pub error: Option<String>,
    pub attempts: u32,
    pub elapsed_ms: u64,
}

/// Everything fetched.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Distinct proxies across all sources, in source order.
    pub proxies: Vec<Proxy>,
    /// One per source, in the order given.
    pub reports: Vec<SourceReport>,
    /// Proxies found by more than one source (merged into the first; within-source duplicates
    /// are in the reports).
    pub duplicates: u64,
}

/// Why one source yielded nothing.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("HTTP status {0}")]
    Status(StatusCode),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("{0}")]
    Redirect(String),
    /// A host name that resolved only to addresses the fetcher may not contact.
    #[error("{0}")]
    Forbidden(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("connection cut while reading the body: {0}")]
    Body(String),
    #[error("{0}")]
    TooLarge(HttpError),
    #[error("file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("file {path} is larger than the {limit}-byte cap ({size} bytes)")]
    FileTooLarge {
        path: PathBuf,
        size: u64,
        limit: usize,
    },
    #[error("invalid header {name:?}")]
    Header { name: String },
    #[error("{0}")]
    Client(String),
    #[error("parsing failed: {0}")]
    Parse(String),
}

impl SourceError {
    /// Whether asking again may give a different answer.
    fn is_transient(&self) -> bool {
        match self {
            SourceError::Status(s) => {
                s.is_server_error()
                    || *s == StatusCode::TOO_MANY_REQUESTS
                    || *s == StatusCode::REQUEST_TIMEOUT
            }
            SourceError::Timeout(_) | SourceError::Connect(_) | SourceError::Body(_) => true,
            _ => false,
        }
    }

    fn from_reqwest(e: reqwest::Error) -> Self {
        let text = error_chain(&e);
        if caused_by::<http::ForbiddenName>(&e) {
            SourceError::Forbidden(text)
        } else if e.is_redirect() {
            SourceError::Redirect(text)
        } else if e.is_timeout() {
            SourceError::Timeout(text)
        } else if e.is_connect() {
            SourceError::Connect(text)
        } else if e.is_body() || e.is_decode() {
            SourceError::Body(text)
        } else {
            SourceError::Request(text)
        }
    }

    fn from_http(e: HttpError) -> Self {
        match e {
            HttpError::TooLarge { .. } => SourceError::TooLarge(e),
            HttpError::Body(inner) | HttpError::Build(inner) => SourceError::from_reqwest(inner),
        }
    }
}

/// Whether an error of type `E` is somewhere in `e`'s chain of causes.
fn caused_by<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<E>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// An error and its causes, joined, de-duplicated when a layer repeats its cause's text.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Fetches and parses every source. Never fails: each source's fate is in its report.
pub async fn fetch_all(sources: &[Source], opts: &FetchOptions) -> Fetched {
    let client = http::client(&opts.http).map_err(|e| error_chain(&e));
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, source) in sources.iter().enumerate() {
        let (source, opts, client, limit) =
            (source.clone(), opts.clone(), client.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let result = match client {
                Ok(client) => fetch_one(&client, &source, &opts).await,
                Err(e) => failed(&source, SourceError::Client(e), 0, Instant::now()),
            };
            (index, result)
        });
    }
    let mut results: Vec<Option<(SourceReport, Vec<Proxy>)>> = vec![None; sources.len()];
    while let Some(joined) = tasks.join_next().await {
        // A task only ends early by panicking; its slot stays empty and is reported below.
        if let Ok((index, result)) = joined {
            results[index] = Some(result);
        }
    }
    let mut reports = Vec::with_capacity(sources.len());
    let mut all = Vec::new();
    for (source, result) in sources.iter().zip(results) {
        let (report, proxies) = result.unwrap_or_else(|| {
            let e = SourceError::Parse("the fetch task panicked".to_owned());
            failed(source, e, 0, Instant::now())
        });
        reports.push(report);
        all.extend(proxies);
    }
    let (proxies, duplicates) = dedup(all);
    Fetched {
        proxies,
        reports,
        duplicates,
    }
}

fn failed(
    source: &Source,
    error: SourceError,
    attempts: u32,
    started: Instant,
) -> (SourceReport, Vec<Proxy>) {
    tracing::warn!(source = %source.location, attempts, "source failed: {error}");
    let report = SourceReport {
        source: source.location.to_string(),
        fetched: false,
        bytes: 0,
        parsed: 0,
        invalid: 0,
        duplicates: 0,
        error: Some(error.to_string()),
        attempts,
        elapsed_ms: millis(started.elapsed()),
    };
    (report, Vec::new())
}

async fn fetch_one(
    client: &reqwest::Client,
    source: &Source,
    opts: &FetchOptions,
) -> (SourceReport, Vec<Proxy>) {
    let started = Instant::now();
    let (body, attempts) = match &source.location {
        SourceLocation::Url(url) => fetch_url(client, url, &source.headers, opts).await,
        SourceLocation::File(path) => (read_file(path, opts.max_bytes).await, 1),
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => return failed(source, e, attempts, started),
    };
    let bytes = body.len() as u64;
    let default_protocol = source.default_protocol;
    let parsed = tokio::task::spawn_blocking(move || parse(&body, default_protocol)).await;
    let parsed: Parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return failed(source, SourceError::Parse(e.to_string()), attempts, started),
    };
    if parsed.truncated {
        tracing::warn!(source = %source.location, "list truncated at the entry cap");
    }
    let report = SourceReport {
        source: source.location.to_string(),
        fetched: true,
        bytes,
        parsed: parsed.proxies.len() as u64,
        invalid: parsed.invalid,
        duplicates: parsed.duplicates,
        error: None,
        attempts,
        elapsed_ms: millis(started.elapsed()),
    };
    tracing::info!(
        source = %report.source,
        bytes,
        parsed = report.parsed,
        invalid = report.invalid,
        "source fetched"
    );
    (report, parsed.proxies)
}

/// Fetches one URL with retries; returns the body or the last error, and how many attempts it
/// took.
async fn fetch_url(
    client: &reqwest::Client,
    url: &Url,
    headers: &[(String, String)],
    opts: &FetchOptions,
) -> (Result<Vec<u8>, SourceError>, u32) {
    let headers = match header_map(headers) {
        Ok(h) => h,
        Err(e) => return (Err(e), 0),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (result, retry_after) = fetch_once(client, url, &headers, opts.max_bytes).await;
        match result {
            Err(e) if e.is_transient() && attempt <= opts.retries => {
                let wait = retry_after
                    .unwrap_or_else(|| backoff(opts.backoff, attempt))
                    .min(opts.max_retry_after);
                tracing::debug!(%url, attempt, ?wait, "retrying: {e}");
                tokio::time::sleep(wait).await;
            }
            result => return (result, attempt),
        }
    }
}

/// One attempt; on failure also the server's `Retry-After`, if it sent one.
async fn fetch_once(
    client: &reqwest::Client,
    url: &Url,
    headers: &HeaderMap,
    max_bytes: usize,
) -> (Result<Vec<u8>, SourceError>, Option<Duration>) {
    let resp = match client
        .get(url.clone())
        .headers(headers.clone())
        .send()
        .await
    {
        Ok(resp) => resp,
        Err(e) => return (Err(SourceError::from_reqwest(e)), None),
    };
    let status = resp.status();
    if !status.is_success() {
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, SystemTime::now()));
        return (Err(SourceError::Status(status)), retry_after);
    }
    let body = http::read_capped(resp, max_bytes)
        .await
        .map_err(SourceError::from_http);
    (body, None)
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, SourceError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let bad = || SourceError::Header { name: name.clone() };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value).map_err(|_| bad())?;
        map.append(name, value);
    }
    Ok(map)
}

async fn read_file(path: &std::path::Path, max_bytes: usize) -> Result<Vec<u8>, SourceError> {
    let io = |source| SourceError::File {
        path: path.to_owned(),
        source,
    };
    let size = tokio::fs::metadata(path).await.map_err(io)?.len();
    if size > max_bytes as u64 {
        return Err(SourceError::FileTooLarge {
            path: path.to_owned(),
            size,
            limit: max_bytes,
        });
    }
    tokio::fs::read(path).await.map_err(io)
}

/// The wait before retry number `attempt` (1-based): `base * 2^(attempt-1)`, jittered into its
/// upper half so that many fetchers retrying together spread out.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let full = base.saturating_mul(1u32 << (attempt - 1).min(16));
    let jitter = rand::rng().random_range(0.5..=1.0);
    full.mul_f64(jitter)
}

/// Reads a `Retry-After` value: delay seconds, or an HTTP date (a date in the past means now).
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses the preferred HTTP date form (IMF-fixdate, RFC 9110): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let (_, rest) = s.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let year: i64 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let mut hms = time.split(':').map(|n| n.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + sec;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_from_urls_and_paths() {
        let url: SourceLocation = "https://lists.example.com/http.txt".parse().unwrap();
        assert!(
            matches!(url, SourceLocation::Url(ref u) if u.host_str() == Some("lists.example.com"))
        );
        assert_eq!(
            "file:///var/lists/a.txt".parse::<SourceLocation>().unwrap(),
            SourceLocation::File(PathBuf::from("/var/lists/a.txt"))
        );
        assert_eq!(
            "lists/b.txt".parse::<SourceLocation>().unwrap(),
            SourceLocation::File(PathBuf::from("lists/b.txt"))
        );
        assert_eq!(
            "ftp://example.com/x".parse::<SourceLocation>(),
            Err(LocationError::Scheme("ftp".to_owned()))
        );
        assert_eq!("  ".parse::<SourceLocation>(), Err(LocationError::Empty));
        assert!(matches!(
            "http://".parse::<SourceLocation>(),
            Err(LocationError::BadUrl { .. })
        ));
    }

    #[test]
    fn location_round_trips_through_serde_and_hides_passwords() {
        let l: SourceLocation = "https://u:secret@example.com/list?k=1".parse().unwrap();
        assert_eq!(l.to_string(), "https://u:***@example.com/list?k=1");
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<SourceLocation>(&json).unwrap(), l);
        assert!(serde_json::from_str::<SourceLocation>(r#""gopher://x/""#).is_err());
    }

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        for s in [500, 502, 503, 429, 408] {
            assert!(
                SourceError::Status(StatusCode::from_u16(s).unwrap()).is_transient(),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 410] {
            assert!(
                !SourceError::Status(StatusCode::from_u16(s).unwrap()).is_transient(),
                "{s}"
            );
        }
        assert!(SourceError::Timeout(String::new()).is_transient());
        assert!(SourceError::Connect(String::new()).is_transient());
        assert!(!SourceError::Redirect(String::new()).is_transient());
        assert!(!SourceError::Forbidden(String::new()).is_transient());
        let too_large = HttpError::TooLarge {
            limit: 1,
            declared: None,
        };
        assert!(!SourceError::TooLarge(too_large).is_transient());
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 06 Nov 1994 08:49:37
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        for junk in [
            "soon",
            "-1",
            "Sun, 06 Nov 1994 08:50:07 PST",
            "Sun, 32 Nov 1994 08:50:07 GMT",
        ] {
            assert_eq!(retry_after(junk, now), None, "{junk}");
        }
    }

    #[test]
    fn http_dates_match_known_epochs() {
        let secs = |s| {
            parse_http_date(s)
                .unwrap()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        assert_eq!(secs("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
        assert_eq!(secs("Tue, 29 Feb 2000 12:00:00 GMT"), 951_825_600);
        assert_eq!(secs("Fri, 31 Dec 2027 23:59:59 GMT"), 1_830_297_599);
    }

    #[test]
    fn backoff_doubles_and_stays_in_its_upper_half() {
        let base = Duration::from_millis(100);
        for attempt in 1..=4 {
            let full = base * (1 << (attempt - 1));
            for _ in 0..50 {
                let d = backoff(base, attempt);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
        assert!(backoff(Duration::from_secs(1), 100) <= Duration::from_secs(1 << 16));
    }

    #[test]
    fn bad_headers_are_reported() {
        let err = header_map(&[("bad header".to_owned(), "v".to_owned())]).unwrap_err();
        assert_eq!(err.to_string(), "invalid header \"bad header\"");
        let ok = header_map(&[("X-Api-Key".to_owned(), "k".to_owned())]).unwrap();
        assert_eq!(ok["x-api-key"], "k");
    }

    #[tokio::test]
    async fn missing_and_oversized_files_are_errors() {
        let missing = read_file(
            std::path::Path::new("/nonexistent/proxyharvest/list.txt"),
            10,
        );
        assert!(matches!(missing.await, Err(SourceError::File { .. })));
        let path =
            std::env::temp_dir().join(format!("proxyharvest-src-{}.txt", std::process::id()));
        std::fs::write(&path, "1.2.3.4:80\n").unwrap();
        assert!(matches!(
            read_file(&path, 5).await,
            Err(SourceError::FileTooLarge { size: 11, .. })
        ));
        assert_eq!(read_file(&path, 11).await.unwrap(), b"1.2.3.4:80\n");
        std::fs::remove_file(&path).unwrap();
    }
}
