//! The control API on `--listen`, for tests and the fault matrix: health, a status snapshot,
//! killing the busy environments of a function, and firing a schedule now.

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use hyper::{Method, Request, StatusCode, body::Incoming};
use serde::Serialize;
use serde_json::json;

use crate::{
    app::App,
    environment::FunctionStatus,
    http::{self, Response},
    scheduler,
    sqs::MappingStatus,
};

/// The body of `GET /_local/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub functions: BTreeMap<String, FunctionStatus>,
    pub event_sources: Vec<MappingStatus>,
    pub schedules: BTreeMap<String, ScheduleStatus>,
}

#[derive(Debug, Serialize)]
pub struct ScheduleStatus {
    pub function: String,
    pub enabled: bool,
    pub fired: u64,
}

pub fn status(app: &App) -> Status {
    Status {
        functions: app
            .functions
            .iter()
            .map(|(name, function)| (name.clone(), function.status()))
            .collect(),
        event_sources: app
            .mappings
            .iter()
            .map(|mapping| mapping.status())
            .collect(),
        schedules: app
            .manifest
            .schedules
            .values()
            .map(|schedule| {
                let status = ScheduleStatus {
                    function: schedule.function.clone(),
                    enabled: schedule.enabled,
                    fired: app.fires(&schedule.name),
                };
                (schedule.name.clone(), status)
            })
            .collect(),
    }
}

pub async fn handle(app: Arc<App>, request: Request<Incoming>) -> Response {
    let path = request.uri().path().to_owned();
    match (request.method(), http::segments(&path).as_slice()) {
        (&Method::GET, ["_local", "health"]) => http::text(StatusCode::OK, "ok"),
        (&Method::GET, ["_local", "status"]) => http::json(
            StatusCode::OK,
            serde_json::to_vec(&status(&app)).expect("status serializes"),
        ),
        (&Method::POST, ["_local", "functions", name, "kill"]) => {
            let name = http::percent_decode(name);
            match app.function(&name) {
                Some(function) => {
                    let killed = function.kill_busy();
                    tracing::info!(function = %name, killed, "killed busy environments");
                    http::json(StatusCode::OK, json!({ "killed": killed }).to_string())
                }
                None => not_found(&format!("no function named {name}")),
            }
        }
        (&Method::POST, ["_local", "schedules", name, "fire"]) => {
            let name = http::percent_decode(name);
            match app.manifest.schedules.get(&name) {
                Some(schedule) => {
                    let now = SystemTime::now();
                    scheduler::fire(&app, schedule, now);
                    let time = humantime::format_rfc3339_seconds(now).to_string();
                    http::json(
                        StatusCode::ACCEPTED,
                        json!({ "fired": name, "time": time }).to_string(),
                    )
                }
                None => not_found(&format!("no schedule named {name}")),
            }
        }
        _ => not_found(&format!(
            "{} {path} is not a control endpoint",
            request.method()
        )),
    }
}

fn not_found(message: &str) -> Response {
    http::json(
        StatusCode::NOT_FOUND,
        json!({ "error": message }).to_string(),
    )
}
