//! proxyharvest: keep a fresh, verified list of working public proxies.
//!
//! The modules are the domain's words, layered so that dependencies run one way:
//! - the model: [`proxy`] (what a proxy is) and [`outcome`] (what a check found);
//! - reading lists: [`parse`] (text to proxies) and [`source`] (fetching lists, with [`http`]);
//! - checking: [`target`] (which addresses may be contacted), [`judge`] (what the judge echoed and
//!   what it means) and [`check`] (the concurrent engine);
//! - planning and publishing: [`plan`] (chunks that fit a deadline), [`merge`] (new results into
//!   the published list) and [`list`] (the published document and text lists);
//! - the AWS side: [`aws`] (clients), [`table`] (jobs, DynamoDB), [`queue`] (SQS), [`bucket`]
//!   (S3), with [`job`] (states and messages) and [`publish`] (merge and write without lost
//!   updates) over them, and [`pipeline`], the three Lambda handlers;
//! - [`consume`]: the consumer's side, fetching, filtering and printing the published list;
//! - [`config`]: the one configuration loader; [`metrics`]: CloudWatch metrics as log lines.
//! - [`cost`]: what a run and a month of runs cost on AWS, from the plan and published prices.
//! - [`geo`]: the optional country and ASN of exit addresses, from MaxMind-format databases.

pub mod aws;
pub mod bucket;
pub mod check;
pub mod config;
pub mod consume;
pub mod cost;
pub mod geo;
pub mod http;
pub mod job;
pub mod judge;
pub mod list;
pub mod merge;
pub mod metrics;
pub mod outcome;
pub mod parse;
pub mod pipeline;
pub mod plan;
pub mod proxy;
pub mod publish;
pub mod queue;
pub mod source;
pub mod table;
pub mod target;
