//! A job: one run of the pipeline, from the trigger's plan to the published list.
//!
//! The job's state is an enum whose transitions live here and nowhere else; the table adapter
//! turns [`JobState::allowed_sources`] into the conditions of its DynamoDB updates, so a state
//! can only be entered from the states listed here, even under concurrent writers. The messages
//! between the functions are versioned so that a message from another version is rejected
//! with a clear error instead of being misread.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::list::CheckParams;
use crate::outcome::{Tally, epoch_secs};
use crate::plan::Plan;
use crate::proxy::Proxy;

/// Version of the messages on the chunk and aggregate queues.
pub const MESSAGE_VERSION: u32 = 1;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Recorded; sources being fetched and chunks being sent.
    Planned,
    /// Every chunk is on the queue; validators are checking.
    Checking,
    /// Every chunk is counted; the aggregator is merging into the published list.
    Aggregating,
    /// Done: every chunk was checked and the list was written.
    Complete,
    /// Done, but some chunks failed (their proxies are counted as unchecked).
    CompletePartial,
    /// The job stopped making progress past its planned deadline and was closed by the sweep.
    Expired,
    /// The job could not run (e.g. its chunks could not be queued).
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Planned,
        JobState::Checking,
        JobState::Aggregating,
        JobState::Complete,
        JobState::CompletePartial,
        JobState::Expired,
        JobState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Planned => "planned",
            JobState::Checking => "checking",
            JobState::Aggregating => "aggregating",
            JobState::Complete => "complete",
            JobState::CompletePartial => "complete_partial",
            JobState::Expired => "expired",
            JobState::Failed => "failed",
        }
    }

    /// A final state: nothing will change the job any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Complete | JobState::CompletePartial | JobState::Expired | JobState::Failed
        )
    }

    /// The states from which `self` may be entered. Entering `Aggregating` again from itself is
    /// allowed so that a redelivered aggregate message can finish a job whose aggregator died.
    pub fn allowed_sources(self) -> &'static [JobState] {
        match self {
            JobState::Planned => &[],
            JobState::Checking => &[JobState::Planned],
            JobState::Aggregating => &[JobState::Checking, JobState::Aggregating],
            JobState::Complete | JobState::CompletePartial => &[JobState::Aggregating],
            // The sweep first takes a stalled job to `aggregating` (to merge what it has), then
            // ends it `expired`.
            JobState::Expired => &[JobState::Aggregating],
            JobState::Failed => &[JobState::Planned, JobState::Checking, JobState::Aggregating],
        }
    }

    pub fn can_enter_from(self, from: JobState) -> bool {
        self.allowed_sources().contains(&from)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown job state {s:?}"))
    }
}

/// A job id: short, URL- and key-safe. Deterministic for a scheduled slot
/// (`sched-20261203T1700Z`), chosen by the caller for manual runs so that a retried invocation
/// names the same job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    pub fn new(s: &str) -> Result<JobId, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if ok {
            Ok(JobId(s.to_owned()))
        } else {
            Err(format!(
                "invalid job id {s:?}: 1-64 characters of [A-Za-z0-9._-]"
            ))
        }
    }

    /// The id of the job of a scheduled slot: the same event delivered twice names one job.
    pub fn for_slot(slot: SystemTime) -> JobId {
        let t = humantime::format_rfc3339_seconds(slot).to_string();
        // 2026-12-03T17:00:00Z -> 20261203T1700Z (minute resolution, like schedules).
        let compact: String = t[..16].chars().filter(|c| *c != '-' && *c != ':').collect();
        JobId(format!("sched-{compact}Z"))
    }

    /// A fresh id for a manual run.
    pub fn random(now: SystemTime) -> JobId {
        let t = humantime::format_rfc3339_seconds(now).to_string();
        let compact: String = t[..19].chars().filter(|c| *c != '-' && *c != ':').collect();
        JobId(format!(
            "run-{compact}-{:06x}",
            rand::random::<u32>() & 0xff_ffff
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        JobId::new(&s)
    }
}

impl From<JobId> for String {
    fn from(j: JobId) -> String {
        j.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The check settings that travel with every chunk, so validators need no extra read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckSpec {
    pub judge: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_https: Option<String>,
    /// PEM of a private judge's CA, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_ca_pem: Option<String>,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub max_response_bytes: usize,
    pub concurrency: usize,
    pub allow_private: bool,
}

/// One chunk of a job, as sent on the chunk queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkMessage {
    pub v: u32,
    pub job_id: JobId,
    pub chunk_id: String,
    pub check: CheckSpec,
    pub proxies: Vec<Proxy>,
}

/// "Every chunk of this job is counted": sent on the aggregate queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateMessage {
    pub v: u32,
    pub job_id: JobId,
}

/// Why a queue message was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message is not valid JSON of the expected shape: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("message version {found} is not supported (this build speaks {MESSAGE_VERSION})")]
    Version { found: u32 },
    #[error("chunk {chunk_id} holds no proxies")]
    EmptyChunk { chunk_id: String },
}

impl ChunkMessage {
    pub fn parse(body: &str) -> Result<ChunkMessage, MessageError> {
        check_version(body)?;
        let m: ChunkMessage = serde_json::from_str(body)?;
        if m.proxies.is_empty() {
            return Err(MessageError::EmptyChunk {
                chunk_id: m.chunk_id,
            });
        }
        Ok(m)
    }
}

impl AggregateMessage {
    pub fn parse(body: &str) -> Result<AggregateMessage, MessageError> {
        check_version(body)?;
        Ok(serde_json::from_str(body)?)
    }
}

/// Reads `v` first, so that a message of another version says so instead of failing on a field.
fn check_version(body: &str) -> Result<(), MessageError> {
    #[derive(Deserialize)]
    struct Versioned {
        v: u32,
    }
    let Versioned { v } = serde_json::from_str(body)?;
    if v != MESSAGE_VERSION {
        return Err(MessageError::Version { found: v });
    }
    Ok(())
}

/// The job record as stored and as shown to people (`proxyharvest status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: JobId,
    pub state: JobState,
    #[serde(with = "epoch_secs")]
    pub created_at: SystemTime,
    #[serde(with = "epoch_secs")]
    pub updated_at: SystemTime,
    /// When the job should be over if all goes to plan; the waiter and the sweep go by it.
    #[serde(with = "epoch_secs")]
    pub deadline_at: SystemTime,
    pub chunks_total: u64,
    pub chunks_done: u64,
    pub chunks_failed: u64,
    /// Unique proxies the job set out to check.
    pub scraped: u64,
    /// Outcomes of the counted chunks.
    pub tally: Tally,
    /// Proxies in the published list after the merge (final states only).
    pub list_total: Option<u64>,
    pub plan: Option<Plan>,
    /// What the checks used (judge, timeouts): published with the list.
    pub check: Option<CheckParams>,
    pub error: Option<String>,
    /// The sweep found the job stalled past its deadline; it ends `expired`.
    #[serde(default)]
    pub expiring: bool,
    /// Chunks that ended in the dead-letter queue (their proxies counted unchecked).
    #[serde(default)]
    pub failed_chunks: Vec<String>,
    /// What happened to each source.
    #[serde(default)]
    pub sources: Vec<crate::source::SourceReport>,
}

impl JobRecord {
    /// `scraped = live + dead + unchecked + rejected`, once every chunk is counted.
    pub fn accounting_holds(&self) -> bool {
        self.tally.total() == self.scraped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn transitions_are_one_way() {
        use JobState::*;
        assert!(Checking.can_enter_from(Planned));
        assert!(Expired.can_enter_from(Aggregating));
        assert!(!Expired.can_enter_from(Complete));
        assert!(Aggregating.can_enter_from(Checking));
        assert!(Aggregating.can_enter_from(Aggregating));
        assert!(Complete.can_enter_from(Aggregating));
        assert!(!Complete.can_enter_from(Checking));
        assert!(!Checking.can_enter_from(Complete));
        for s in JobState::ALL.into_iter().filter(|s| s.is_final()) {
            for t in JobState::ALL {
                assert!(!t.can_enter_from(s), "{t} must not follow final {s}");
            }
        }
    }

    #[test]
    fn state_names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn slot_id_is_deterministic_per_minute() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_317_200); // 2026-12-03T17:00:00Z
        assert_eq!(JobId::for_slot(t).as_str(), "sched-20261203T1700Z");
        assert_eq!(
            JobId::for_slot(t + Duration::from_secs(30)),
            JobId::for_slot(t)
        );
        assert!(
            JobId::random(t)
                .as_str()
                .starts_with("run-20261203T170000-")
        );
    }

    #[test]
    fn job_ids_are_validated() {
        assert!(JobId::new("run-1").is_ok());
        for bad in ["", "a/b", "x y", &"x".repeat(65)] {
            assert!(JobId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_reject_wrong_version_and_garbage() {
        let ok = r#"{"v":1,"job_id":"j","chunk_id":"c0","check":{"judge":"http://127.0.0.1/","timeout_ms":1,"connect_timeout_ms":1,"max_response_bytes":1,"concurrency":1,"allow_private":false},"proxies":[{"host":"1.2.3.4","port":80}]}"#;
        assert_eq!(ChunkMessage::parse(ok).unwrap().proxies.len(), 1);
        assert!(matches!(
            ChunkMessage::parse(&ok.replace(r#""v":1"#, r#""v":2"#)),
            Err(MessageError::Version { found: 2 })
        ));
        assert!(matches!(
            ChunkMessage::parse("not json"),
            Err(MessageError::Malformed(_))
        ));
        assert!(matches!(
            ChunkMessage::parse(&ok.replace(r#"[{"host":"1.2.3.4","port":80}]"#, "[]")),
            Err(MessageError::EmptyChunk { .. })
        ));
        assert!(AggregateMessage::parse(r#"{"v":1,"job_id":"../x"}"#).is_err());
    }
}
