//! Firing schedules: one timer per enabled schedule, plus firing on demand from the control API.
//! A fire is an asynchronous invocation with the event EventBridge sends (or the rule's constant
//! input). When to fire is decided by `crate::schedule`; this module only waits and sends.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{app::App, ids, manifest::ScheduleSpec};

/// The event EventBridge sends for a scheduled rule; `time` is the scheduled time.
pub fn scheduled_event(region: &str, account_id: &str, rule_arn: &str, time: SystemTime) -> Value {
    json!({
        "version": "0",
        "id": ids::uuid(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": humantime::format_rfc3339_seconds(time).to_string(),
        "region": region,
        "resources": [rule_arn],
        "detail": {}
    })
}

/// Invokes the schedule's function asynchronously, as of `time`.
pub fn fire(app: &Arc<App>, schedule: &ScheduleSpec, time: SystemTime) {
    let Some(function) = app.function(&schedule.function) else {
        // The manifest checked every schedule's function exists.
        return;
    };
    let manifest = &app.manifest;
    let payload = match &schedule.input {
        Some(input) => input.clone(),
        None => scheduled_event(
            &manifest.region,
            &manifest.account_id,
            &manifest.rule_arn(&schedule.name),
            time,
        ),
    };
    app.count_fire(&schedule.name);
    tracing::info!(schedule = %schedule.name, function = %schedule.function,
        time = %humantime::format_rfc3339_seconds(time), "schedule fired");
    let name = schedule.name.clone();
    tokio::spawn(async move {
        let outcome = function.invoke(Bytes::from(payload.to_string())).await;
        if let crate::environment::Outcome::Failure { error_type, .. } = outcome {
            tracing::warn!(schedule = %name, %error_type, "scheduled invocation failed");
        }
    });
}

/// Fires `schedule` at each of its times until `stop` turns true.
pub async fn run(app: Arc<App>, schedule: ScheduleSpec, mut stop: watch::Receiver<bool>) {
    let start = SystemTime::now();
    let mut after = start;
    loop {
        let Some(next) = schedule.schedule.next_after(start, after) else {
            tracing::info!(schedule = %schedule.name, "schedule has no future fire time");
            return;
        };
        let wait = next
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = crate::stopped(&mut stop) => return,
        }
        fire(&app, &schedule, whole_second(next));
        after = next;
    }
}

fn whole_second(time: SystemTime) -> SystemTime {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_event_matches_eventbridge() {
        let time = humantime::parse_rfc3339("2026-12-03T17:00:00Z").unwrap();
        let arn = "arn:aws:events:us-east-1:123456789012:rule/proxyharvest-schedule";
        let mut event = scheduled_event("us-east-1", "123456789012", arn, time);
        let id = event["id"].as_str().unwrap().to_owned();
        assert_eq!(id.len(), 36, "{id}");
        event["id"] = "ID".into();
        assert_eq!(
            event,
            json!({
                "version": "0", "id": "ID", "detail-type": "Scheduled Event",
                "source": "aws.events", "account": "123456789012",
                "time": "2026-12-03T17:00:00Z", "region": "us-east-1",
                "resources": [arn], "detail": {}
            })
        );
        let parsed: aws_lambda_events::event::eventbridge::EventBridgeEvent =
            serde_json::from_value(event).unwrap();
        assert_eq!(parsed.source, "aws.events");
    }

    #[test]
    fn fire_times_drop_sub_second_parts() {
        let time = humantime::parse_rfc3339("2026-12-03T17:20:30.750Z").unwrap();
        assert_eq!(
            humantime::format_rfc3339_nanos(whole_second(time)).to_string(),
            "2026-12-03T17:20:30.000000000Z"
        );
    }
}
