//! Schedule expressions — `rate(N unit)` and AWS `cron(...)` — and when they next fire.
//!
//! Pure functions of time: the caller passes "now" in, so every rule is unit-tested without
//! waiting. The timers that act on these answers live in `crate::scheduler`. Times are UTC and
//! fire on whole minutes, as EventBridge does.

mod civil;
mod cron;

use std::{
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use cron::Cron;

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every period, counted from when the runtime started (EventBridge counts from creation).
    Rate(Duration),
    Cron(Cron),
}

/// Why a schedule expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule expression `{0}` is neither rate(...) nor cron(...)")]
    Syntax(String),
    #[error("rate expression `{expression}`: {problem}")]
    Rate { expression: String, problem: String },
    #[error("cron expression `{expression}`: {problem}")]
    Cron { expression: String, problem: String },
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        let trimmed = expression.trim();
        if let Some(inner) = strip_call(trimmed, "rate") {
            parse_rate(inner).map_err(|problem| ScheduleError::Rate {
                expression: expression.to_owned(),
                problem,
            })
        } else if let Some(inner) = strip_call(trimmed, "cron") {
            Cron::parse(inner)
                .map(Schedule::Cron)
                .map_err(|problem| ScheduleError::Cron {
                    expression: expression.to_owned(),
                    problem,
                })
        } else {
            Err(ScheduleError::Syntax(expression.to_owned()))
        }
    }
}

impl Schedule {
    /// The first fire time strictly after `after`, for a schedule that started at `start`;
    /// `None` when a cron expression never fires again (its years have passed).
    pub fn next_after(&self, start: SystemTime, after: SystemTime) -> Option<SystemTime> {
        match self {
            Schedule::Rate(period) => {
                let elapsed = after.duration_since(start).unwrap_or(Duration::ZERO);
                let periods_done = elapsed.as_nanos() / period.as_nanos();
                let next = u32::try_from(periods_done + 1).ok()?;
                start.checked_add(period.checked_mul(next)?)
            }
            Schedule::Cron(cron) => {
                let minute = cron.next_minute_after(epoch_minute(after))?;
                let seconds = u64::try_from(minute).ok()?.checked_mul(60)?;
                UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
            }
        }
    }
}

/// The whole minute since the epoch that `time` falls in (times before 1970 count as minute -1,
/// which no schedule matches anyway).
fn epoch_minute(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs() / 60).unwrap_or(i64::MAX))
        .unwrap_or(-1)
}

/// `name(inner)` -> `inner`.
fn strip_call<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.strip_prefix(name)?
        .trim_start()
        .strip_prefix('(')?
        .strip_suffix(')')
}

/// `N unit`, where the unit is singular exactly when N is 1, as EventBridge insists.
fn parse_rate(inner: &str) -> Result<Schedule, String> {
    let parts: Vec<&str> = inner.split_whitespace().collect();
    let [value, unit] = parts[..] else {
        return Err("expected `N minute(s)|hour(s)|day(s)`".into());
    };
    let value: u32 = value
        .parse()
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("`{value}` is not a positive whole number"))?;
    let (seconds, singular) = match unit {
        "minute" | "minutes" => (60, unit == "minute"),
        "hour" | "hours" => (3600, unit == "hour"),
        "day" | "days" => (86_400, unit == "day"),
        _ => {
            return Err(format!(
                "unknown unit `{unit}` (minute(s), hour(s) or day(s))"
            ));
        }
    };
    if singular != (value == 1) {
        return Err(format!(
            "EventBridge wants the singular unit for 1 and the plural otherwise, not `{value} {unit}`"
        ));
    }
    Ok(Schedule::Rate(Duration::from_secs(
        seconds * u64::from(value),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).expect(text)
    }

    fn fmt(time: SystemTime) -> String {
        humantime::format_rfc3339_seconds(time).to_string()
    }

    fn next(expression: &str, after: &str) -> String {
        let schedule: Schedule = expression.parse().expect(expression);
        fmt(schedule
            .next_after(UNIX_EPOCH, at(after))
            .expect("fires again"))
    }

    #[test]
    fn rates_parse_with_matching_units() {
        for (expression, seconds) in [
            ("rate(1 minute)", 60),
            ("rate(5 minutes)", 300),
            ("rate(1 hour)", 3600),
            ("rate(12 hours)", 43_200),
            ("rate(1 day)", 86_400),
            (" rate( 2 days ) ", 172_800),
        ] {
            assert_eq!(
                expression.parse::<Schedule>(),
                Ok(Schedule::Rate(Duration::from_secs(seconds))),
                "{expression}"
            );
        }
    }

    #[test]
    fn rates_reject_bad_numbers_and_units() {
        for (expression, expected) in [
            ("rate(0 minutes)", "positive"),
            ("rate(-1 minutes)", "positive"),
            ("rate(1 minutes)", "singular"),
            ("rate(5 minute)", "singular"),
            ("rate(5 seconds)", "unknown unit"),
            ("rate(5)", "expected"),
        ] {
            let err = expression.parse::<Schedule>().unwrap_err();
            assert!(
                matches!(err, ScheduleError::Rate { .. }),
                "{expression}: {err}"
            );
            assert!(err.to_string().contains(expected), "{expression}: {err}");
        }
    }

    #[test]
    fn unknown_forms_are_syntax_errors() {
        for expression in [
            "",
            "every 5 minutes",
            "at(2026-12-03T17:00:00)",
            "rate 5 minutes",
        ] {
            assert_eq!(
                expression.parse::<Schedule>(),
                Err(ScheduleError::Syntax(expression.into()))
            );
        }
    }

    #[test]
    fn rate_fires_one_period_after_start_then_every_period() {
        let schedule: Schedule = "rate(1 hour)".parse().unwrap();
        let start = at("2026-12-03T16:20:30Z");
        let first = schedule.next_after(start, start).unwrap();
        assert_eq!(fmt(first), "2026-12-03T17:20:30Z");
        let second = schedule.next_after(start, first).unwrap();
        assert_eq!(fmt(second), "2026-12-03T18:20:30Z");
        let late = schedule
            .next_after(start, at("2026-12-03T19:59:00Z"))
            .unwrap();
        assert_eq!(
            fmt(late),
            "2026-12-03T20:20:30Z",
            "missed fires are not replayed"
        );
    }

    #[test]
    fn cron_fires_on_the_next_matching_minute() {
        // Every day at 12:00.
        assert_eq!(
            next("cron(0 12 * * ? *)", "2026-12-03T11:59:59Z"),
            "2026-12-03T12:00:00Z"
        );
        assert_eq!(
            next("cron(0 12 * * ? *)", "2026-12-03T12:00:00Z"),
            "2026-12-04T12:00:00Z",
            "strictly after"
        );
        // Every 15 minutes.
        assert_eq!(
            next("cron(0/15 * * * ? *)", "2026-12-03T17:01:00Z"),
            "2026-12-03T17:15:00Z"
        );
        // Weekdays at 08:30: Thursday 2026-12-03 after 08:30 -> Friday.
        assert_eq!(
            next("cron(30 8 ? * MON-FRI *)", "2026-12-03T09:00:00Z"),
            "2026-12-04T08:30:00Z"
        );
        // Friday after 08:30 -> Monday.
        assert_eq!(
            next("cron(30 8 ? * 2-6 *)", "2026-12-04T09:00:00Z"),
            "2026-12-07T08:30:00Z"
        );
        // First of the month at 00:00, across a year end.
        assert_eq!(
            next("cron(0 0 1 * ? *)", "2026-12-03T17:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
        // 29 February only exists in leap years.
        assert_eq!(
            next("cron(0 6 29 FEB ? *)", "2026-03-01T00:00:00Z"),
            "2028-02-29T06:00:00Z"
        );
        // A list of hours in one year only.
        assert_eq!(
            next("cron(5 3,21 * DEC ? 2026)", "2026-12-03T17:00:00Z"),
            "2026-12-03T21:05:00Z"
        );
    }

    #[test]
    fn cron_whose_years_have_passed_never_fires() {
        let schedule: Schedule = "cron(0 0 * * ? 2020)".parse().unwrap();
        assert_eq!(
            schedule.next_after(UNIX_EPOCH, at("2026-01-01T00:00:00Z")),
            None
        );
        let impossible: Schedule = "cron(0 0 31 FEB ? *)".parse().unwrap();
        assert_eq!(
            impossible.next_after(UNIX_EPOCH, at("2026-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn cron_errors_name_the_expression() {
        let err = "cron(0 12 L * ? *)".parse::<Schedule>().unwrap_err();
        assert!(matches!(err, ScheduleError::Cron { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("cron(0 12 L * ? *)"), "{message}");
        assert!(message.contains("not supported"), "{message}");
    }
}
