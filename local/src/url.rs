//! Function URLs: one loopback HTTP listener per function that has one, standing in for Lambda's
//! front end at `https://<url-id>.lambda-url.<region>.on.aws` (auth type `NONE`).
//!
//! Each request becomes a payload-format-2.0 event built the way AWS builds it — lower-cased
//! headers with repeated values joined by commas, `cookies` split out of the `Cookie` header,
//! decoded `queryStringParameters`, a base64 body unless it is UTF-8 text, `requestContext.http`
//! with the peer's address as `sourceIp` — plus the headers the front end adds itself
//! (`x-forwarded-for` appended with the peer, `x-forwarded-proto`, `x-forwarded-port`,
//! `x-amzn-trace-id`). The function's answer maps back as Lambda documents: an object with a
//! `statusCode` is a structured response, any other JSON is a 200 `application/json` body, and a
//! function error or an unusable answer is a 502.
//!
//! What is not like AWS: plain HTTP instead of HTTPS (so no `x-amzn-tls-*` headers and
//! `x-forwarded-proto: http`), no CORS, no `AWS_IAM` auth, no response streaming.

use std::{net::SocketAddr, sync::Arc, time::SystemTime};

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    HeaderMap, Request, StatusCode, Version,
    body::{Bytes, Incoming},
    header::{CONTENT_LENGTH, HeaderName, HeaderValue, SET_COOKIE},
    http::request::Parts,
};
use serde_json::{Map, Value, json};

use crate::{
    environment::{Function, Outcome},
    http::{self, Peer, Response},
    ids,
};

/// Lambda's limit on a synchronous request payload; a larger body is refused as AWS does.
const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// What Lambda answers when the function failed or its answer cannot be mapped.
const BAD_GATEWAY_BODY: &str = "Internal Server Error";

/// One function's URL: the function and what its events say about the endpoint.
#[derive(Debug)]
pub struct FunctionUrl {
    function: Arc<Function>,
    site: Site,
}

/// The endpoint as the events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Site {
    /// Lambda's `<url-id>`: the first label of the domain.
    url_id: String,
    domain_name: String,
    /// The listener's port, reported in `x-forwarded-port`.
    port: u16,
}

/// The per-request values AWS makes up: ids and the arrival time.
#[derive(Debug, Clone)]
struct Arrival {
    request_id: String,
    trace_root: String,
    time: SystemTime,
}

impl FunctionUrl {
    pub fn new(function: Arc<Function>, region: &str, port: u16) -> Self {
        let url_id = ids::hex(32);
        Self {
            function,
            site: Site {
                domain_name: format!("{url_id}.lambda-url.{region}.on.aws"),
                url_id,
                port,
            },
        }
    }

    /// Serves one request: event in, function invoked, response mapped back.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response {
        let Some(Peer(peer)) = request.extensions().get::<Peer>().copied() else {
            return bad_gateway();
        };
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
            return http::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request must be smaller than 6291456 bytes",
            );
        }
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => {
                tracing::debug!(error = %err, "cannot read a function URL request body");
                return http::text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request must be smaller than 6291456 bytes",
                );
            }
        };
        let arrival = Arrival {
            request_id: ids::uuid(),
            trace_root: ids::trace_id()
                .split(';')
                .next()
                .expect("split yields one part")
                .to_owned(),
            time: SystemTime::now(),
        };
        let event = event(&self.site, &parts, peer, &body, &arrival);
        let payload = Bytes::from(serde_json::to_vec(&event).expect("JSON values serialize"));
        http_response(self.function.invoke(payload).await)
    }
}

/// The payload-format-2.0 event for one request.
fn event(site: &Site, parts: &Parts, peer: SocketAddr, body: &[u8], arrival: &Arrival) -> Value {
    let source_ip = peer.ip().to_canonical();
    let mut headers = joined_headers(&parts.headers);
    let forwarded = match headers.get("x-forwarded-for").and_then(Value::as_str) {
        Some(before) => format!("{before}, {source_ip}"),
        None => source_ip.to_string(),
    };
    headers.insert("x-forwarded-for".into(), forwarded.into());
    headers.insert("x-forwarded-proto".into(), "http".into());
    headers.insert("x-forwarded-port".into(), site.port.to_string().into());
    headers.insert("x-amzn-trace-id".into(), arrival.trace_root.clone().into());

    let raw_query = parts.uri.query().unwrap_or_default();
    let epoch_ms = arrival
        .time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": site.url_id,
            "domainName": site.domain_name,
            "domainPrefix": site.url_id,
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": protocol(parts.version),
                "sourceIp": source_ip.to_string(),
                "userAgent": user_agent,
            },
            "requestId": arrival.request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": clf_time(arrival.time),
            "timeEpoch": epoch_ms,
        },
        "isBase64Encoded": false,
    });
    let cookies: Vec<&str> = parts
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !raw_query.is_empty() {
        event["queryStringParameters"] = Value::Object(query_parameters(raw_query));
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => event["body"] = text.into(),
            Err(_) => {
                event["body"] = base64::engine::general_purpose::STANDARD
                    .encode(body)
                    .into();
                event["isBase64Encoded"] = true.into();
            }
        }
    }
    event
}

/// Header names lower-cased (hyper already does), repeated values joined with `,` as AWS does.
fn joined_headers(headers: &HeaderMap) -> Map<String, Value> {
    let mut joined = Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        joined.insert(name.as_str().to_owned(), values.join(",").into());
    }
    joined
}

/// Decoded query parameters, a repeated one's values joined with `,` as AWS does.
fn query_parameters(query: &str) -> Map<String, Value> {
    let decode = |s: &str| http::percent_decode(&s.replace('+', " "));
    let mut parameters = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode(name), decode(value));
        match parameters.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                parameters.insert(name, value.into());
            }
        }
    }
    parameters
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

/// `12/Mar/2020:19:03:58 +0000`, the time format of `requestContext.time`.
fn clf_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // `YYYY-MM-DDTHH:MM:SSZ`
    let iso = humantime::format_rfc3339_seconds(time).to_string();
    let month: usize = iso[5..7].parse().expect("a two-digit month");
    format!(
        "{}/{}/{}:{} +0000",
        &iso[8..10],
        MONTHS[month - 1],
        &iso[..4],
        &iso[11..19]
    )
}

/// The HTTP response for how the invocation ended.
fn http_response(outcome: Outcome) -> Response {
    let Outcome::Success(body) = outcome else {
        return bad_gateway();
    };
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return bad_gateway();
    };
    match value {
        Value::Object(object) if object.contains_key("statusCode") => structured(&object)
            .unwrap_or_else(|problem| {
                tracing::warn!(%problem, "a function URL response cannot be mapped");
                bad_gateway()
            }),
        _ => http::json(StatusCode::OK, body),
    }
}

/// A response the function spelled out: `statusCode`, `headers`, `cookies`, `body`,
/// `isBase64Encoded`.
fn structured(object: &Map<String, Value>) -> Result<Response, String> {
    let status = object["statusCode"]
        .as_u64()
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| format!("statusCode {} is not an HTTP status", object["statusCode"]))?;
    let body = match object.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) if object.get("isBase64Encoded") == Some(&Value::Bool(true)) => {
            Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|err| format!("body is not base64: {err}"))?,
            )
        }
        Some(Value::String(text)) => Bytes::from(text.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in object
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let text = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value = HeaderValue::from_str(&text)
            .map_err(|_| format!("invalid value of header {name}: {text:?}"))?;
        headers.append(name, value);
    }
    for cookie in object
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let cookie = cookie.as_str().ok_or("a cookie is not a string")?;
        let value =
            HeaderValue::from_str(cookie).map_err(|_| format!("invalid cookie {cookie:?}"))?;
        headers.append(SET_COOKIE, value);
    }
    Ok(response)
}

fn bad_gateway() -> Response {
    http::text(StatusCode::BAD_GATEWAY, BAD_GATEWAY_BODY)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hyper::header::CONTENT_TYPE;

    use super::*;

    fn site() -> Site {
        Site {
            url_id: "abc123".into(),
            domain_name: "abc123.lambda-url.us-east-1.on.aws".into(),
            port: 9101,
        }
    }

    fn arrival() -> Arrival {
        Arrival {
            request_id: "req-1".into(),
            trace_root: "Root=1-5eb33c07-de25b420912dee103a5db434".into(),
            // 2020-03-12T19:03:58.390Z
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_584_039_838_390),
        }
    }

    fn parts(builder: hyper::http::request::Builder) -> Parts {
        builder.body(()).unwrap().into_parts().0
    }

    fn peer() -> SocketAddr {
        "127.0.0.2:40000".parse().unwrap()
    }

    #[test]
    fn a_get_becomes_the_event_aws_builds() {
        let request = parts(
            Request::get("/my/path?parameter1=value1&parameter1=value2&parameter2=a%20b+c")
                .header("Host", "127.0.0.1:9101")
                .header("User-Agent", "agent")
                .header("X-Multi", "one")
                .header("X-Multi", "two")
                .header("Cookie", "cookie1=a; cookie2=b"),
        );
        let event = event(&site(), &request, peer(), b"", &arrival());
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "$default");
        assert_eq!(event["rawPath"], "/my/path");
        assert_eq!(
            event["rawQueryString"],
            "parameter1=value1&parameter1=value2&parameter2=a%20b+c"
        );
        assert_eq!(
            event["queryStringParameters"],
            json!({"parameter1": "value1,value2", "parameter2": "a b c"})
        );
        assert_eq!(event["cookies"], json!(["cookie1=a", "cookie2=b"]));
        let headers = &event["headers"];
        assert_eq!(headers["host"], "127.0.0.1:9101");
        assert_eq!(headers["x-multi"], "one,two");
        assert_eq!(headers["cookie"], "cookie1=a; cookie2=b");
        assert_eq!(headers["x-forwarded-for"], "127.0.0.2");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-port"], "9101");
        assert_eq!(
            headers["x-amzn-trace-id"],
            "Root=1-5eb33c07-de25b420912dee103a5db434"
        );
        let context = &event["requestContext"];
        assert_eq!(context["accountId"], "anonymous");
        assert_eq!(context["apiId"], "abc123");
        assert_eq!(context["domainName"], "abc123.lambda-url.us-east-1.on.aws");
        assert_eq!(context["domainPrefix"], "abc123");
        assert_eq!(
            context["http"],
            json!({"method": "GET", "path": "/my/path", "protocol": "HTTP/1.1",
                   "sourceIp": "127.0.0.2", "userAgent": "agent"})
        );
        assert_eq!(context["requestId"], "req-1");
        assert_eq!(context["stage"], "$default");
        assert_eq!(context["time"], "12/Mar/2020:19:03:58 +0000");
        assert_eq!(context["timeEpoch"], 1_584_039_838_390_u64);
        assert_eq!(event["isBase64Encoded"], false);
        assert!(event.get("body").is_none(), "{event}");
    }

    #[test]
    fn the_event_parses_as_a_function_url_request() {
        let request = parts(Request::post("/").header("X-Forwarded-For", "203.0.113.77"));
        let value = event(&site(), &request, peer(), b"{\"a\":1}", &arrival());
        assert_eq!(
            value["headers"]["x-forwarded-for"],
            "203.0.113.77, 127.0.0.2"
        );
        assert!(value.get("queryStringParameters").is_none());
        assert!(value.get("cookies").is_none());
        let typed: aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest =
            serde_json::from_value(value).unwrap();
        assert_eq!(typed.body.as_deref(), Some("{\"a\":1}"));
        assert!(!typed.is_base64_encoded);
        assert_eq!(typed.request_context.http.method.as_deref(), Some("POST"));
        assert_eq!(
            typed.request_context.http.source_ip.as_deref(),
            Some("127.0.0.2")
        );
    }

    #[test]
    fn binary_bodies_are_base64_and_mapped_ipv4_peers_canonical() {
        let request = parts(Request::put("/bin"));
        let peer: SocketAddr = "[::ffff:127.0.0.3]:1234".parse().unwrap();
        let event = event(&site(), &request, peer, &[0xff, 0x00, 0x80], &arrival());
        assert_eq!(event["body"], "/wCA");
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.3");
    }

    async fn read(response: Response) -> (StatusCode, HeaderMap, Bytes) {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, body)
    }

    #[tokio::test]
    async fn plain_json_answers_are_200_application_json() {
        for answer in [
            &br#"{"message":"Hello, world!"}"#[..],
            br#""Hello, world!""#,
            b"[1,2]",
        ] {
            let (status, headers, body) =
                read(http_response(Outcome::Success(Bytes::from_static(answer)))).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(headers[CONTENT_TYPE], "application/json");
            assert_eq!(body, answer);
        }
    }

    #[tokio::test]
    async fn structured_answers_map_status_headers_cookies_and_body() {
        let answer = json!({"statusCode": 201,
            "headers": {"Content-Type": "text/plain", "My-Custom-Header": "Custom Value", "X-N": 5},
            "cookies": ["a=1; Max-Age=60", "b=2"],
            "body": "created", "isBase64Encoded": false});
        let (status, headers, body) =
            read(http_response(Outcome::Success(answer.to_string().into()))).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(headers[CONTENT_TYPE], "text/plain");
        assert_eq!(headers["my-custom-header"], "Custom Value");
        assert_eq!(headers["x-n"], "5");
        let cookies: Vec<&str> = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, ["a=1; Max-Age=60", "b=2"]);
        assert_eq!(body, "created");

        let binary = json!({"statusCode": 200, "body": "/wCA", "isBase64Encoded": true});
        let (_, _, body) = read(http_response(Outcome::Success(binary.to_string().into()))).await;
        assert_eq!(body.as_ref(), [0xff, 0x00, 0x80]);
    }

    #[tokio::test]
    async fn failures_and_unmappable_answers_are_502() {
        let failure = Outcome::runtime_failure("Unhandled", "boom");
        let unmappable = [
            failure,
            Outcome::Success(Bytes::from_static(b"not json")),
            Outcome::Success(json!({"statusCode": 42}).to_string().into()),
            Outcome::Success(
                json!({"statusCode": 200, "headers": {"bad name": "x"}})
                    .to_string()
                    .into(),
            ),
            Outcome::Success(
                json!({"statusCode": 200, "body": "%%", "isBase64Encoded": true})
                    .to_string()
                    .into(),
            ),
        ];
        for outcome in unmappable {
            let (status, _, body) = read(http_response(outcome.clone())).await;
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{outcome:?}");
            assert_eq!(body, BAD_GATEWAY_BODY);
        }
    }

    #[test]
    fn times_use_the_common_log_format() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_631_055_022);
        assert_eq!(clf_time(t), "07/Sep/2021:22:50:22 +0000");
    }
}
