//! Metrics in CloudWatch Embedded Metric Format (EMF): one JSON line on stdout per emission,
//! which Lambda's log pipeline turns into CloudWatch metrics with no API call and no extra
//! permission. Every line also carries the job and chunk ids as properties, so a metric can be
//! traced back to its logs.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "proxyharvest";

/// A unit CloudWatch knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF record: dimensions, metric values (a value may be a list, for distributions such as
/// check latencies) and free-form properties.
#[derive(Debug, Clone, Default)]
pub struct Record {
    dimensions: Vec<(String, String)>,
    metrics: Vec<(String, Unit, Value)>,
    properties: Vec<(String, Value)>,
}

impl Record {
    /// A record for one function (the `Function` dimension).
    pub fn for_function(function: &str) -> Record {
        Record::default().dimension("Function", function)
    }

    pub fn dimension(mut self, name: &str, value: &str) -> Record {
        self.dimensions.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn count(mut self, name: &str, n: u64) -> Record {
        self.metrics.push((name.to_owned(), Unit::Count, json!(n)));
        self
    }

    pub fn millis(mut self, name: &str, ms: u64) -> Record {
        self.metrics
            .push((name.to_owned(), Unit::Milliseconds, json!(ms)));
        self
    }

    /// Many values of one metric (EMF allows up to 100 per record; more are sampled evenly).
    pub fn millis_each(mut self, name: &str, values: &[u32]) -> Record {
        if values.is_empty() {
            return self;
        }
        let step = values.len().div_ceil(100);
        let sampled: Vec<u32> = values.iter().step_by(step).copied().collect();
        self.metrics
            .push((name.to_owned(), Unit::Milliseconds, json!(sampled)));
        self
    }

    pub fn property(mut self, name: &str, value: impl Into<Value>) -> Record {
        self.properties.push((name.to_owned(), value.into()));
        self
    }

    /// The EMF document, at `at`.
    pub fn to_json(&self, at: SystemTime) -> Value {
        let ts = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut doc = Map::new();
        for (k, v) in &self.properties {
            doc.insert(k.clone(), v.clone());
        }
        for (k, v) in &self.dimensions {
            doc.insert(k.clone(), json!(v));
        }
        for (k, _, v) in &self.metrics {
            doc.insert(k.clone(), v.clone());
        }
        let dims: Vec<&str> = self.dimensions.iter().map(|(k, _)| k.as_str()).collect();
        let defs: Vec<Value> = self
            .metrics
            .iter()
            .map(|(k, unit, _)| json!({"Name": k, "Unit": unit.as_str()}))
            .collect();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": ts,
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [dims], "Metrics": defs}],
            }),
        );
        Value::Object(doc)
    }

    /// Writes the record as one line on stdout.
    pub fn emit(&self) {
        println!("{}", self.to_json(SystemTime::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn records_follow_the_embedded_metric_format() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let doc = Record::for_function("validator")
            .count("ProxiesChecked", 35)
            .millis_each("CheckLatency", &[12, 40])
            .property("job_id", "run-1")
            .to_json(at);
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_123u64);
        let def = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(def["Namespace"], NAMESPACE);
        assert_eq!(def["Dimensions"], json!([["Function"]]));
        assert_eq!(
            def["Metrics"],
            json!([{"Name": "ProxiesChecked", "Unit": "Count"}, {"Name": "CheckLatency", "Unit": "Milliseconds"}])
        );
        assert_eq!(doc["Function"], "validator");
        assert_eq!(doc["ProxiesChecked"], 35);
        assert_eq!(doc["CheckLatency"], json!([12, 40]));
        assert_eq!(doc["job_id"], "run-1");
    }

    #[test]
    fn long_distributions_are_sampled_to_a_hundred_values() {
        let values: Vec<u32> = (0..1000).collect();
        let doc = Record::for_function("v")
            .millis_each("L", &values)
            .to_json(UNIX_EPOCH);
        assert_eq!(doc["L"].as_array().unwrap().len(), 100);
        let empty = Record::for_function("v")
            .millis_each("L", &[])
            .to_json(UNIX_EPOCH);
        assert!(empty.get("L").is_none());
    }
}
