//! The judge: the function behind a Lambda Function URL that echoes the request it received as a
//! [`JudgeDocument`], so that a deployment checks proxies against its own judge instead of a
//! public one and its rate limits.
//!
//! The Function URL front end is itself a proxy of sorts: it terminates TLS and adds headers of its
//! own (`x-forwarded-for`, `x-forwarded-proto`, `x-forwarded-port`, `x-amzn-trace-id`,
//! `x-amzn-tls-version`, `x-amzn-tls-cipher-suite`) to every request. Echoed as they are, they
//! would make every proxy look anonymous at best, so [`answer`] removes them again and reports
//! the rest as the proxy delivered it. The client address is `requestContext.http.sourceIp`, the
//! peer of the front end's TCP connection: the proxy's exit address.
//!
//! The handler is a pure function of the event, so the function crate is a thin `main` and tests
//! need no runtime.

use std::net::IpAddr;

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use aws_lambda_events::http::{HeaderValue, header::CONTENT_TYPE};

use crate::judge::JudgeDocument;

/// Headers the Function URL front end adds to every request, whatever the client sent.
const FRONT_END_HEADERS: &[&str] = &["x-forwarded-proto", "x-forwarded-port", "x-amzn-trace-id"];

/// Prefixes of further front-end headers (`x-amzn-tls-version`, `x-amzn-tls-cipher-suite`).
const FRONT_END_PREFIXES: &[&str] = &["x-amzn-tls-"];

/// The header the front end appends the client's address to; what came before is the proxy's.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// Why a request cannot be judged: the event lacks what every Function URL event carries.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JudgeRequestError {
    #[error("the event has no requestContext.http.sourceIp: not a Function URL request")]
    NoSourceIp,
    #[error("requestContext.http.sourceIp {0:?} is not an IP address")]
    BadSourceIp(String),
}

/// The HTTP response to one Function URL request: 200 with the [`JudgeDocument`] (JSON), or 400
/// with the reason when the event is not a Function URL request.
pub fn answer(request: &LambdaFunctionUrlRequest) -> LambdaFunctionUrlResponse {
    match document(request) {
        Ok(doc) => response(
            200,
            "application/json",
            serde_json::to_string(&doc).expect("a judge document serializes"),
        ),
        Err(e) => response(400, "text/plain; charset=utf-8", e.to_string()),
    }
}

/// What the judge saw: the client address, method, path, query and every header the client
/// sent, without those the front end added.
pub fn document(request: &LambdaFunctionUrlRequest) -> Result<JudgeDocument, JudgeRequestError> {
    let http = &request.request_context.http;
    let source = http
        .source_ip
        .as_deref()
        .ok_or(JudgeRequestError::NoSourceIp)?;
    let remote_addr: IpAddr = source
        .parse()
        .map_err(|_| JudgeRequestError::BadSourceIp(source.to_owned()))?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in &request.headers {
        let name = name.as_str();
        if FRONT_END_HEADERS.contains(&name)
            || FRONT_END_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            continue;
        }
        let mut value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == FORWARDED_FOR {
            value = without_last_hop(&value, remote_addr);
            if value.is_empty() {
                continue;
            }
        }
        headers.push((name.to_owned(), value));
    }
    // The front end may hand cookies over in `cookies` only; they are request headers all the same.
    if !request.headers.contains_key("cookie")
        && let Some(cookies) = request.cookies.as_ref().filter(|c| !c.is_empty())
    {
        headers.push(("cookie".to_owned(), cookies.join("; ")));
    }
    let path = request
        .raw_path
        .as_deref()
        .or(http.path.as_deref())
        .unwrap_or("/");
    // AWS documents `rawQueryString` both with and without the `?`; the echo carries none.
    let query = request.raw_query_string.as_deref().unwrap_or_default();
    let query = query.strip_prefix('?').unwrap_or(query);
    Ok(JudgeDocument::new(
        remote_addr,
        http.method.as_deref().unwrap_or_default(),
        path,
        query,
        headers,
    ))
}

/// An `X-Forwarded-For` list without its last element if that is `peer` (the hop the front end
/// appended); empty when nothing else is left.
fn without_last_hop(list: &str, peer: IpAddr) -> String {
    let is_peer = |hop: &str| hop.trim().parse::<IpAddr>().ok() == Some(peer);
    match list.rsplit_once(',') {
        Some((before, last)) if is_peer(last) => before.trim().to_owned(),
        None if is_peer(list) => String::new(),
        _ => list.trim().to_owned(),
    }
}

fn response(status: i64, content_type: &'static str, body: String) -> LambdaFunctionUrlResponse {
    let mut response = LambdaFunctionUrlResponse::default();
    response.status_code = status;
    response
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A proxy cache must never answer a check with an old echo (its token would not match).
    response
        .headers
        .insert("cache-control", HeaderValue::from_static("no-store"));
    response.body = Some(body);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{self, parse_echo};
    use crate::outcome::Anonymity;
    use serde_json::{Value, json};

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    /// A Function URL event as AWS delivers it (shape of the AWS documentation's example), for a
    /// GET through an elite proxy at 65.78.31.245.
    fn event() -> Value {
        json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/",
            "rawQueryString": format!("a=1&ph_token={TOKEN}"),
            "headers": {
                "x-amzn-tls-cipher-suite": "ECDHE-RSA-AES128-GCM-SHA256",
                "x-amzn-tls-version": "TLSv1.2",
                "x-amzn-trace-id": "Root=1-5eb33c07-de25b420912dee103a5db434",
                "x-forwarded-proto": "https",
                "host": "abcdefg.lambda-url.eu-west-2.on.aws",
                "x-forwarded-port": "443",
                "x-forwarded-for": "65.78.31.245",
                "accept": "*/*",
                "user-agent": "proxyharvest/0.1",
                "x-custom": "kept"
            },
            "queryStringParameters": {"a": "1", "ph_token": TOKEN},
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "abcdefg",
                "domainName": "abcdefg.lambda-url.eu-west-2.on.aws",
                "domainPrefix": "abcdefg",
                "http": {
                    "method": "GET",
                    "path": "/",
                    "protocol": "HTTP/1.1",
                    "sourceIp": "65.78.31.245",
                    "userAgent": "proxyharvest/0.1"
                },
                "requestId": "MIZRNhJtIAMEMDw=",
                "routeKey": "$default",
                "stage": "$default",
                "time": "11/Jan/2023:11:45:34 +0000",
                "timeEpoch": 1673437534837_i64
            },
            "isBase64Encoded": false
        })
    }

    fn request(edit: impl FnOnce(&mut Value)) -> LambdaFunctionUrlRequest {
        let mut value = event();
        edit(&mut value);
        serde_json::from_value(value).unwrap()
    }

    fn body(response: &LambdaFunctionUrlResponse) -> &[u8] {
        response.body.as_deref().unwrap().as_bytes()
    }

    #[test]
    fn answers_with_a_judge_document_the_checker_reads() {
        let response = answer(&request(|_| {}));
        assert_eq!(response.status_code, 200);
        assert_eq!(response.headers[CONTENT_TYPE], "application/json");
        assert!(!response.is_base64_encoded);
        let echo = parse_echo(body(&response)).unwrap();
        assert_eq!(echo.remote_addr, "65.78.31.245".parse::<IpAddr>().unwrap());
        assert_eq!(echo.query, format!("a=1&ph_token={TOKEN}"));
        assert!(judge::verify(&echo, TOKEN));
        assert!(!judge::verify(&echo, "another-token"));
        assert_eq!(echo.header("x-custom"), Some("kept"));
        assert_eq!(
            echo.header("host"),
            Some("abcdefg.lambda-url.eu-west-2.on.aws")
        );
        assert_eq!(echo.header("user-agent"), Some("proxyharvest/0.1"));
        assert_eq!(
            judge::grade(&echo, Some("192.0.2.1".parse().unwrap())),
            Anonymity::Elite
        );
    }

    #[test]
    fn front_end_headers_are_left_out() {
        let doc = document(&request(|_| {})).unwrap();
        let names: Vec<&str> = doc.headers.keys().map(String::as_str).collect();
        assert_eq!(names, ["accept", "host", "user-agent", "x-custom"]);
        assert_eq!(doc.method, "GET");
        assert_eq!(doc.path, "/");
    }

    #[test]
    fn a_forwarded_for_the_proxy_added_survives_without_the_front_end_hop() {
        let doc = document(&request(|e| {
            e["headers"]["x-forwarded-for"] = "203.0.113.77, 65.78.31.245".into();
            e["headers"]["via"] = "1.1 squid".into();
        }))
        .unwrap();
        assert_eq!(doc.headers["x-forwarded-for"], "203.0.113.77");
        let echo = parse_echo(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(
            judge::grade(&echo, Some("192.0.2.1".parse().unwrap())),
            Anonymity::Anonymous
        );
        // A transparent proxy's client address is still there to be found.
        let doc = document(&request(|e| {
            e["headers"]["x-forwarded-for"] = "192.0.2.1,65.78.31.245".into();
        }))
        .unwrap();
        assert_eq!(doc.headers["x-forwarded-for"], "192.0.2.1");
        // A list that does not end with the source address is not the front end's: kept whole.
        assert_eq!(
            without_last_hop("10.0.0.1, 10.0.0.2", "65.78.31.245".parse().unwrap()),
            "10.0.0.1, 10.0.0.2"
        );
    }

    #[test]
    fn repeated_headers_and_cookies_are_echoed() {
        let mut req = request(|e| {
            e["cookies"] = json!(["a=1", "b=2"]);
        });
        req.headers
            .append("x-custom", HeaderValue::from_static("again"));
        let doc = document(&req).unwrap();
        assert_eq!(doc.headers["x-custom"], "kept, again");
        assert_eq!(doc.headers["cookie"], "a=1; b=2");
        // A cookie header the front end kept is not doubled.
        req.headers
            .insert("cookie", HeaderValue::from_static("a=1; b=2"));
        assert_eq!(document(&req).unwrap().headers["cookie"], "a=1; b=2");
    }

    #[test]
    fn query_path_and_method_come_from_the_event() {
        let doc = document(&request(|e| {
            e["rawQueryString"] = format!("?ph_token={TOKEN}").into();
            e["rawPath"] = "/judge/x".into();
            e["requestContext"]["http"]["method"] = "HEAD".into();
        }))
        .unwrap();
        assert_eq!(doc.query, format!("ph_token={TOKEN}"));
        assert_eq!(doc.path, "/judge/x");
        assert_eq!(doc.method, "HEAD");
        let empty = document(&request(|e| e["rawQueryString"] = "".into())).unwrap();
        assert_eq!(empty.query, "");
    }

    #[test]
    fn an_ipv6_source_is_the_remote_address() {
        let doc = document(&request(|e| {
            e["requestContext"]["http"]["sourceIp"] = "2001:db8::7".into();
            e["headers"]["x-forwarded-for"] = "2001:db8::7".into();
        }))
        .unwrap();
        assert_eq!(doc.remote_addr, "2001:db8::7");
        assert!(!doc.headers.contains_key("x-forwarded-for"));
    }

    #[test]
    fn events_without_a_source_address_get_400() {
        let missing = request(|e| {
            e["requestContext"]["http"]
                .as_object_mut()
                .unwrap()
                .remove("sourceIp");
        });
        assert_eq!(document(&missing), Err(JudgeRequestError::NoSourceIp));
        let response = answer(&missing);
        assert_eq!(response.status_code, 400);
        assert!(
            response.body.as_deref().unwrap().contains("sourceIp"),
            "{response:?}"
        );
        let bad = request(|e| e["requestContext"]["http"]["sourceIp"] = "nope".into());
        assert_eq!(
            document(&bad),
            Err(JudgeRequestError::BadSourceIp("nope".into()))
        );
    }

    #[test]
    fn the_response_serializes_as_a_function_url_response() {
        let value = serde_json::to_value(answer(&request(|_| {}))).unwrap();
        assert_eq!(value["statusCode"], 200);
        assert_eq!(value["isBase64Encoded"], false);
        assert_eq!(value["headers"]["content-type"], "application/json");
        assert_eq!(value["headers"]["cache-control"], "no-store");
        let body = value["body"].as_str().unwrap();
        assert!(parse_echo(body.as_bytes()).is_ok(), "{body}");
    }
}
