//! The Lambda Runtime API one environment serves to its process, the subset lambda_runtime 1.5
//! uses: `GET /2018-06-01/runtime/invocation/next`, `POST .../invocation/{id}/response`,
//! `POST .../invocation/{id}/error` and `POST /2018-06-01/runtime/init/error`.

use std::sync::Arc;

use hyper::{Method, Request, StatusCode, body::Incoming, header::HeaderValue};

use super::process::{Channel, Completion, Event};
use crate::http::{self, Response};

const ACCEPTED: &[u8] = br#"{"status":"OK"}"#;

pub(super) async fn handle(channel: Arc<Channel>, request: Request<Incoming>) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match (&method, http::segments(&path).as_slice()) {
        (&Method::GET, ["2018-06-01", "runtime", "invocation", "next"]) => {
            event_response(channel.next_event().await)
        }
        (
            &Method::POST,
            [
                "2018-06-01",
                "runtime",
                "invocation",
                id,
                kind @ ("response" | "error"),
            ],
        ) => {
            let body = match http::body(request).await {
                Ok(body) => body,
                Err(err) => {
                    return error(StatusCode::BAD_REQUEST, "InvalidRequest", &err.to_string());
                }
            };
            let completion = if *kind == "response" {
                Completion::Response(body)
            } else {
                Completion::Error(body)
            };
            match channel.complete(id, completion) {
                Ok(()) => http::json(StatusCode::ACCEPTED, ACCEPTED),
                Err(err) => error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestID",
                    &err.to_string(),
                ),
            }
        }
        (&Method::POST, ["2018-06-01", "runtime", "init", "error"]) => {
            let body = http::body(request).await.unwrap_or_default();
            channel.init_failed(body);
            http::json(StatusCode::ACCEPTED, ACCEPTED)
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{method} {path} is not part of the Runtime API"),
        ),
    }
}

fn event_response(event: Event) -> Response {
    let mut response = http::json(StatusCode::OK, event.payload);
    let headers = response.headers_mut();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", event.request_id),
        ("lambda-runtime-deadline-ms", event.deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", event.function_arn),
        ("lambda-runtime-trace-id", event.trace_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

fn error(status: StatusCode, error_type: &str, message: &str) -> Response {
    http::json(status, super::error_json(error_type, message))
}
