//! Just enough HTTP/1.1 to talk to a judge through a proxy: requests, and a bounded response
//! reader.
//!
//! Hand-written rather than a client library because a checker must see exactly what the proxy
//! sent back (a 407, a captive portal's page, random bytes) and classify it, must never pool or
//! reuse a connection, and must cap what it reads. The head is parsed with `httparse`; the body
//! is framed by Content-Length, chunked encoding, or the connection closing. The framing logic is
//! pure ([`parse_response`]) and the async reader only feeds it bytes.

use std::time::Instant;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::conn::AttemptError;
use crate::outcome::FailureReason;
use crate::proxy::Credentials;

/// Most headers a proxy or judge answer may carry before we call it garbage.
const MAX_HEADERS: usize = 64;
/// A CONNECT answer is a status line and a few headers; more than this is not a proxy talking.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// A GET for `target` (absolute-form through a forwarding proxy, origin-form through a tunnel).
pub(crate) fn get_request(
    target: &str,
    host: &str,
    user_agent: &str,
    proxy_auth: Option<&Credentials>,
) -> Vec<u8> {
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n\
         Accept: */*\r\nConnection: close\r\n"
    );
    push_auth(&mut req, proxy_auth);
    req.push_str("\r\n");
    req.into_bytes()
}

/// A CONNECT for `authority` (`host:port`).
pub(crate) fn connect_request(
    authority: &str,
    user_agent: &str,
    proxy_auth: Option<&Credentials>,
) -> Vec<u8> {
    let mut req = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {user_agent}\r\n"
    );
    push_auth(&mut req, proxy_auth);
    req.push_str("\r\n");
    req.into_bytes()
}

fn push_auth(req: &mut String, auth: Option<&Credentials>) {
    if let Some(c) = auth {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.username, c.password));
        req.push_str("Proxy-Authorization: Basic ");
        req.push_str(&token);
        req.push_str("\r\n");
    }
}

/// The reason a non-2xx answer from (or through) a proxy publishes.
pub(crate) fn status_failure(status: u16) -> FailureReason {
    match status {
        403 | 407 => FailureReason::AuthFailed,
        _ => FailureReason::Rejected,
    }
}

/// A complete response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why bytes are not (yet) a complete response.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("not an HTTP response: {0}")]
    NotHttp(httparse::Error),
    #[error("malformed body framing: {0}")]
    BadFraming(&'static str),
}

impl ParseError {
    fn into_attempt(self, step: &'static str) -> AttemptError {
        match self {
            ParseError::NotHttp(_) => AttemptError::mismatch(step, self),
            // A head that parsed but a body that does not: a proxy mangling the judge's answer.
            ParseError::BadFraming(_) => AttemptError::new(FailureReason::Tampered, step, self),
        }
    }
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// A parsed head: status, its length in bytes, and how the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    len: usize,
    framing: Framing,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf).map_err(ParseError::NotHttp)? {
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) => len,
    };
    let status = resp.code.unwrap_or_default();
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = std::str::from_utf8(h.value)
                .map(|v| v.to_ascii_lowercase().trim_end().ends_with("chunked"))
                .unwrap_or(false);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(ParseError::BadFraming("invalid Content-Length"))?;
            if length.is_some_and(|l| l != v) {
                return Err(ParseError::BadFraming("conflicting Content-Length"));
            }
            length = Some(v);
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(l) = length {
        Framing::Length(l)
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        len,
        framing,
    }))
}

/// Decodes a chunked body; `None` while the last chunk and trailers have not all arrived.
fn dechunk(data: &[u8]) -> Result<Option<Vec<u8>>, ParseError> {
    let mut body = Vec::with_capacity(data.len());
    let mut pos = 0;
    loop {
        let Some(line_end) = find_crlf(&data[pos..]) else {
            return Ok(None);
        };
        let line = &data[pos..pos + line_end];
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size_text)
            .ok()
            .map(str::trim)
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or(ParseError::BadFraming("invalid chunk size"))?;
        pos += line_end + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(end) = find_crlf(&data[pos..]) else {
                    return Ok(None);
                };
                pos += end + 2;
                if end == 0 {
                    return Ok(Some(body));
                }
            }
        }
        let chunk_end = pos
            .checked_add(size)
            .ok_or(ParseError::BadFraming("chunk size overflows"))?;
        if data.len() < chunk_end + 2 {
            return Ok(None);
        }
        if &data[chunk_end..chunk_end + 2] != b"\r\n" {
            return Err(ParseError::BadFraming("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&data[pos..chunk_end]);
        pos = chunk_end + 2;
    }
}

fn find_crlf(data: &[u8]) -> Option<usize> {
    data.windows(2).position(|w| w == b"\r\n")
}

/// Tries to read a whole response from `buf`; `eof` says the peer has closed. `Ok(None)` means
/// more bytes are needed. Interim 1xx answers (`100 Continue`) are skipped.
pub(crate) fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, ParseError> {
    let mut start = 0;
    loop {
        let Some(head) = parse_head(&buf[start..])? else {
            return Ok(None);
        };
        let rest = &buf[start + head.len..];
        if (100..200).contains(&head.status) && head.status != 101 {
            start += head.len;
            continue;
        }
        let body = match head.framing {
            Framing::Length(n) if rest.len() >= n => Some(rest[..n].to_vec()),
            Framing::Length(_) => None,
            Framing::Chunked => dechunk(rest)?,
            Framing::UntilClose if eof => Some(rest.to_vec()),
            Framing::UntilClose => None,
        };
        return Ok(body.map(|body| Response {
            status: head.status,
            body,
        }));
    }
}

/// Reads one response, at most `max` bytes in all (head included). Returns it with the instant
/// the first byte arrived. The caller bounds the time.
pub(crate) async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    max: usize,
) -> Result<(Response, Instant), AttemptError> {
    const STEP: &str = "response";
    let mut buf: Vec<u8> = Vec::new();
    let mut first_byte = None;
    loop {
        // Grow in small steps: most judge answers are well under 2 KiB.
        let want = (max + 1 - buf.len()).min(2048);
        buf.reserve(want);
        let n = match (&mut *stream).take(want as u64).read_buf(&mut buf).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify: the bytes so far are all there is.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => 0,
            Err(e) => return Err(AttemptError::io(STEP, &e)),
        };
        let first = *first_byte.get_or_insert_with(Instant::now);
        let eof = n == 0;
        if eof && buf.is_empty() {
            return Err(AttemptError::closed(STEP));
        }
        if buf.len() > max {
            return Err(AttemptError::new(
                FailureReason::TooLarge,
                STEP,
                format_args!("more than {max} bytes"),
            ));
        }
        match parse_response(&buf, eof).map_err(|e| e.into_attempt(STEP))? {
            Some(resp) => return Ok((resp, first)),
            None if eof => {
                return Err(AttemptError::new(
                    FailureReason::Reset,
                    STEP,
                    format_args!(
                        "closed after {} bytes, before the response ended",
                        buf.len()
                    ),
                ));
            }
            None => {}
        }
    }
}

/// Reads the answer to a CONNECT: the head only, as the tunnel starts right after it.
/// Returns the status.
pub(crate) async fn read_connect_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<u16, AttemptError> {
    const STEP: &str = "CONNECT answer";
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    loop {
        let want = MAX_CONNECT_HEAD + 1 - buf.len();
        let n = (&mut *stream)
            .take(want as u64)
            .read_buf(&mut buf)
            .await
            .map_err(|e| AttemptError::io(STEP, &e))?;
        if n == 0 {
            return Err(AttemptError::closed(STEP));
        }
        let head = parse_head(&buf).map_err(|e| e.into_attempt(STEP))?;
        match head {
            Some(head) if (200..300).contains(&head.status) && buf.len() > head.len => {
                // Bytes before we even started TLS: not a tunnel we can use.
                return Err(AttemptError::mismatch(
                    STEP,
                    "data after a 2xx CONNECT answer",
                ));
            }
            Some(head) => return Ok(head.status),
            None if buf.len() > MAX_CONNECT_HEAD => {
                return Err(AttemptError::mismatch(STEP, "CONNECT answer head too long"));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn complete(raw: &[u8]) -> Response {
        parse_response(raw, false).unwrap().unwrap()
    }

    #[test]
    fn requests_carry_host_close_and_basic_auth() {
        let creds = Credentials::new("user", "pa:ss").unwrap();
        let req = get_request("http://j.example/?t=1", "j.example", "ua/1", Some(&creds));
        let text = String::from_utf8(req).unwrap();
        assert!(text.starts_with("GET http://j.example/?t=1 HTTP/1.1\r\nHost: j.example\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        // base64("user:pa:ss")
        assert!(text.contains("Proxy-Authorization: Basic dXNlcjpwYTpzcw==\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let text = String::from_utf8(connect_request("j.example:443", "ua/1", None)).unwrap();
        assert_eq!(
            text,
            "CONNECT j.example:443 HTTP/1.1\r\nHost: j.example:443\r\nUser-Agent: ua/1\r\n\r\n"
        );
    }

    #[test]
    fn content_length_body_waits_for_all_bytes() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel";
        assert_eq!(parse_response(raw, false), Ok(None));
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(complete(raw).body, b"hello");
    }

    #[test]
    fn chunked_body_is_decoded_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: a\r\n\r\n";
        assert_eq!(complete(raw).body, b"hello world");
        let partial = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
        assert_eq!(parse_response(partial, false), Ok(None));
    }

    #[test]
    fn bad_chunks_are_framing_errors() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(
            parse_response(raw, false),
            Err(ParseError::BadFraming(_))
        ));
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n";
        assert!(matches!(
            parse_response(raw, false),
            Err(ParseError::BadFraming(_))
        ));
    }

    #[test]
    fn body_until_close_needs_eof() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\nbody";
        assert_eq!(parse_response(raw, false), Ok(None));
        assert_eq!(parse_response(raw, true).unwrap().unwrap().body, b"body");
    }

    #[test]
    fn interim_100_continue_is_skipped() {
        let raw =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(complete(raw).status, 404);
    }

    #[test]
    fn garbage_is_not_http() {
        let raw = [0x93u8, 0x11, 0x00, 0x42, 0xfe];
        assert!(matches!(
            parse_response(&raw, false),
            Err(ParseError::NotHttp(_))
        ));
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n";
        assert!(matches!(
            parse_response(raw, false),
            Err(ParseError::BadFraming(_))
        ));
    }

    #[test]
    fn forbidden_and_proxy_auth_statuses_are_auth_failures() {
        assert_eq!(status_failure(407), FailureReason::AuthFailed);
        assert_eq!(status_failure(403), FailureReason::AuthFailed);
        assert_eq!(status_failure(405), FailureReason::Rejected);
        assert_eq!(status_failure(502), FailureReason::Rejected);
    }

    async fn read_from(bytes: Vec<u8>, max: usize) -> Result<Response, AttemptError> {
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            server.write_all(&bytes).await.unwrap();
        });
        read_response(&mut client, max).await.map(|(r, _)| r)
    }

    #[tokio::test]
    async fn reader_caps_the_response() {
        let mut raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n".to_vec();
        raw.resize(raw.len() + 5000, b'x');
        let err = read_from(raw.clone(), 1024).await.unwrap_err();
        assert_eq!(err.reason, FailureReason::TooLarge);
        let resp = read_from(raw, 8 * 1024).await.unwrap();
        assert_eq!(resp.body.len(), 5000);
    }

    #[tokio::test]
    async fn reader_classifies_early_close() {
        let err = read_from(Vec::new(), 1024).await.unwrap_err();
        assert_eq!(err.reason, FailureReason::Reset);
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec();
        let err = read_from(raw, 1024).await.unwrap_err();
        assert_eq!(err.reason, FailureReason::Reset);
        let err = read_from(vec![0xffu8; 40], 1024).await.unwrap_err();
        assert_eq!(err.reason, FailureReason::ProtocolMismatch);
    }

    #[tokio::test]
    async fn connect_head_must_not_be_followed_by_data() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        server
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_connect_head(&mut client).await.unwrap(), 200);
        server
            .write_all(b"HTTP/1.1 200 OK\r\n\r\nsurprise")
            .await
            .unwrap();
        let err = read_connect_head(&mut client).await.unwrap_err();
        assert_eq!(err.reason, FailureReason::ProtocolMismatch);
        server
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_connect_head(&mut client).await.unwrap(), 407);
    }
}
