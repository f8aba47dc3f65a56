//! The state every API handler shares — functions, mappings, schedules — and the router of the
//! `--listen` address: the Invoke API under `/2015-03-31/`, the control API under `/_local/`.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use hyper::{Request, StatusCode, body::Incoming};

use crate::{
    control, environment::Function, http::Response, invoke, manifest::Manifest, sqs::Mapping,
};

#[derive(Debug)]
pub struct App {
    pub manifest: Manifest,
    /// By physical name.
    pub functions: BTreeMap<String, Arc<Function>>,
    pub mappings: Vec<Arc<Mapping>>,
    /// Fires per schedule name, whether by timer or on demand.
    fires: BTreeMap<String, AtomicU64>,
}

impl App {
    pub fn new(
        manifest: Manifest,
        functions: BTreeMap<String, Arc<Function>>,
        mappings: Vec<Arc<Mapping>>,
    ) -> Self {
        let fires = manifest
            .schedules
            .keys()
            .map(|name| (name.clone(), AtomicU64::new(0)))
            .collect();
        Self {
            manifest,
            functions,
            mappings,
            fires,
        }
    }

    pub fn function(&self, name: &str) -> Option<Arc<Function>> {
        self.functions.get(name).cloned()
    }

    pub fn count_fire(&self, schedule: &str) {
        if let Some(count) = self.fires.get(schedule) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn fires(&self, schedule: &str) -> u64 {
        self.fires
            .get(schedule)
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response {
        let path = request.uri().path();
        if path.starts_with("/_local/") {
            control::handle(self, request).await
        } else if path.starts_with("/2015-03-31/functions/") {
            invoke::handle(self, request).await
        } else {
            invoke::user_error(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                &format!("unknown path {path}"),
            )
        }
    }
}
