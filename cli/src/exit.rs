//! Exit codes that mean what happened. Scripts branch on these; the README lists them.

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the job or command completed.
    Done,
    /// An error stopped the command (bad input, unreachable service, …).
    Error,
    /// The job completed, but some chunks failed: their proxies are counted unchecked.
    Partial,
    /// The job completed with fewer live proxies than `--min-live` asked for.
    TooFewLive,
    /// Waiting gave up: the job made no progress past its planned deadline. It may still end.
    TimedOut,
    /// The job ended `failed` or `expired`.
    JobFailed,
}

impl Outcome {
    pub fn code(self) -> i32 {
        match self {
            Outcome::Done => 0,
            Outcome::Error => 1,
            // 2 is clap's code for a usage error.
            Outcome::Partial => 3,
            Outcome::TooFewLive => 4,
            Outcome::TimedOut => 5,
            Outcome::JobFailed => 6,
        }
    }
}

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
