//! The checking engine: is this proxy alive, which protocols does it really speak, how fast is
//! it, where does it exit, and how much does it reveal?
//!
//! A proxy is alive only if a request through it reaches the judge and the judge's echo carries
//! the fresh token of that very request; anything else (a captive portal, a honeypot with a canned
//! answer, random bytes) is dead, with the reason that explains it best. Every check connects
//! afresh (no pool: a shared connection would measure the pool, not the proxy), is bounded by one
//! deadline ([`CheckConfig::worst_case`], which the planner relies on), and never contacts an
//! address the [`TargetPolicy`] forbids.
//!
//! The submodules follow the path of one check:
//! - `engine`: [`Checker`], one check and many at once;
//! - `strategy`: which protocols to try, in what order, and the verdict;
//! - `probe`: one attempt with one protocol, from connect to verified echo;
//! - `route`: where the judge is, as each protocol addresses it;
//! - `socks`, `tunnel` (CONNECT + TLS), `http1` (requests and a bounded response reader) and
//!   `conn` (connecting, and the error every step reports) speak the wire protocols;
//! - `limits`: the open-file limit that caps concurrency.

use std::time::Duration;

use crate::judge::{JudgeConfig, JudgeError};
use crate::target::TargetPolicy;

mod conn;
mod engine;
mod http1;
mod limits;
mod probe;
mod route;
mod socks;
mod strategy;
mod tunnel;

pub use engine::Checker;
pub use limits::{effective_concurrency, raise_fd_limit};

/// How to check: where the judge is, how long to wait, how much to read, how many at once.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub judge: JudgeConfig,
    /// TCP connect to the proxy.
    pub connect_timeout: Duration,
    /// The whole check of one proxy, all protocols tried.
    pub timeout: Duration,
    /// Cap on a judge answer read through a proxy (head and body); more is `TooLarge`.
    pub max_response_bytes: usize,
    /// Checks in flight at once (capped by the open-file limit, see [`effective_concurrency`]).
    pub concurrency: usize,
    /// Which proxy addresses may be contacted at all.
    pub policy: TargetPolicy,
    pub user_agent: String,
}

/// The public judge used when none is configured: httpbin echoes what it received, in a format
/// [`crate::judge::parse_echo`] reads.
pub const DEFAULT_JUDGE: &str = "http://httpbin.org/get?show_env=1";

impl CheckConfig {
    /// The defaults, with `judge` as the judge.
    pub fn new(judge: JudgeConfig) -> Self {
        CheckConfig {
            judge,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_response_bytes: 32 * 1024,
            concurrency: 512,
            policy: TargetPolicy::default(),
            user_agent: concat!("proxyharvest/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The longest one check can take: the planner sizes chunks with it.
    pub fn worst_case(&self) -> Duration {
        self.timeout
    }
}

impl Default for CheckConfig {
    /// 5 s connect timeout, 10 s per proxy, 32 KiB answers, 512 at once, private targets
    /// forbidden, and the [`DEFAULT_JUDGE`] over plain HTTP only.
    fn default() -> Self {
        CheckConfig::new(JudgeConfig {
            http: DEFAULT_JUDGE
                .parse()
                .expect("the default judge URL is valid"),
            https: None,
            ca_file: None,
        })
    }
}

/// Why a [`Checker`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("judge URL {url} cannot be used: {why}")]
    JudgeUrl { url: String, why: &'static str },
    #[error("cannot set up TLS for the HTTPS judge: {0}")]
    Tls(#[source] JudgeError),
    #[error("judge {url} is unreachable: {detail}")]
    JudgeUnreachable { url: String, detail: String },
    #[error("judge {url} answered HTTP {status} to a direct request")]
    JudgeStatus { url: String, status: u16 },
    #[error("judge {url} answered, but not as a judge: {source}")]
    JudgeAnswer {
        url: String,
        #[source]
        source: JudgeError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let c = CheckConfig::default();
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.worst_case(), Duration::from_secs(10));
        assert_eq!(c.max_response_bytes, 32 * 1024);
        assert_eq!(c.concurrency, 512);
        assert!(!c.policy.allow_private);
        assert!(c.judge.https.is_none());
    }
}
