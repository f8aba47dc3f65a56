//! The Lambda Invoke API on `--listen`: `POST /2015-03-31/functions/{name-or-arn}/invocations`,
//! enough of it for the AWS SDKs and CLI pointed at `AWS_ENDPOINT_URL_LAMBDA`. SigV4 headers are
//! accepted and ignored; qualifiers are accepted and mean `$LATEST`, the only version there is.

use std::sync::Arc;

use hyper::{
    Method, Request, StatusCode,
    body::{Bytes, Incoming},
    header::HeaderValue,
};

use crate::{
    app::App,
    environment::Outcome,
    http::{self, Response},
};

pub async fn handle(app: Arc<App>, request: Request<Incoming>) -> Response {
    let path = request.uri().path().to_owned();
    let segments = http::segments(&path);
    let (&Method::POST, ["2015-03-31", "functions", target, "invocations"]) =
        (request.method(), segments.as_slice())
    else {
        return user_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!(
                "{} {path} is not an operation of the local runtime",
                request.method()
            ),
        );
    };
    let name = function_name(&http::percent_decode(target)).to_owned();
    let Some(function) = app.function(&name) else {
        return user_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {}", app.manifest.function_arn(&name)),
        );
    };
    let invocation_type = request
        .headers()
        .get("x-amz-invocation-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_owned();
    let payload = match http::body(request).await {
        Ok(body) => body,
        Err(err) => {
            return user_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                &err.to_string(),
            );
        }
    };
    let payload = match checked_payload(payload) {
        Ok(payload) => payload,
        Err(message) => {
            return user_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                &message,
            );
        }
    };
    match invocation_type.as_str() {
        "RequestResponse" => {
            let mut response = match function.invoke(payload).await {
                Outcome::Success(body) => http::json(StatusCode::OK, body),
                Outcome::Failure { body, .. } => {
                    let mut response = http::json(StatusCode::OK, body);
                    response.headers_mut().insert(
                        "x-amz-function-error",
                        HeaderValue::from_static("Unhandled"),
                    );
                    response
                }
            };
            response.headers_mut().insert(
                "x-amz-executed-version",
                HeaderValue::from_static("$LATEST"),
            );
            response
        }
        "Event" => {
            tokio::spawn(async move {
                if let Outcome::Failure { error_type, .. } = function.invoke(payload).await {
                    tracing::warn!(function = %function.name(), %error_type, "asynchronous invocation failed");
                }
            });
            http::empty(StatusCode::ACCEPTED)
        }
        "DryRun" => http::empty(StatusCode::NO_CONTENT),
        other => user_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("unknown X-Amz-Invocation-Type `{other}`"),
        ),
    }
}

/// The function name inside any of the forms Invoke accepts: `name`, `name:qualifier`,
/// `account:function:name[:qualifier]`, `arn:aws:lambda:region:account:function:name[:qualifier]`.
pub fn function_name(target: &str) -> &str {
    let name = match target.split_once(":function:") {
        Some((_, name)) => name,
        None => target,
    };
    name.split(':').next().unwrap_or(name)
}

/// Lambda only takes JSON payloads; an empty one is delivered as `{}`.
fn checked_payload(payload: Bytes) -> Result<Bytes, String> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"{}"));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(&payload)
        .map(|_| payload)
        .map_err(|err| format!("Could not parse request body into json: {err}"))
}

/// An API error the way Lambda reports one: `x-amzn-ErrorType` and `{"Type":"User","Message"}`.
pub fn user_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let body = serde_json::json!({ "Type": "User", "Message": message });
    let mut response = http::json(status, body.to_string());
    response
        .headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_out_of_every_accepted_form() {
        for target in [
            "proxyharvest-trigger",
            "proxyharvest-trigger:$LATEST",
            "123456789012:function:proxyharvest-trigger",
            "arn:aws:lambda:us-east-1:123456789012:function:proxyharvest-trigger",
            "arn:aws:lambda:us-east-1:123456789012:function:proxyharvest-trigger:live",
        ] {
            assert_eq!(function_name(target), "proxyharvest-trigger", "{target}");
        }
    }

    #[test]
    fn payloads_must_be_json_and_default_to_an_empty_object() {
        assert_eq!(checked_payload(Bytes::new()).unwrap(), "{}");
        assert_eq!(checked_payload(Bytes::from_static(b"[1]")).unwrap(), "[1]");
        let err = checked_payload(Bytes::from_static(b"{oops")).unwrap_err();
        assert!(
            err.starts_with("Could not parse request body into json"),
            "{err}"
        );
    }
}
