//! A server of proxy lists on loopback, misbehaving on demand, for the tests of
//! [`proxyharvest::source`], the benchmarks and the demo.
//!
//! Each path has a [`Route`]: a body, a status, a status for the first N requests and then
//! something else (with or without `Retry-After`), a redirect, a body dripped slowly, a body that
//! never ends, or a connection that is accepted and never answered. Requests are counted per path
//! ([`SourcesServer::hits`]) so tests can see how many retries really happened. Plain HTTP/1.1,
//! one request per connection (`Connection: close`), hand-written on a `TcpListener` so it can
//! misbehave in ways a real server would not. Dropping the server stops it and every connection
//! it holds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// What the server does for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// 200 with this body and `Content-Length`.
    Body {
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// This status, with a short text body.
    Status(u16),
    /// `status` (with `Retry-After: retry_after` seconds if set) for the first `times` requests,
    /// then `then`.
    StatusThen {
        status: u16,
        retry_after: Option<u64>,
        times: usize,
        then: Box<Route>,
    },
    /// 302 to this location (absolute or relative).
    Redirect(String),
    /// 200 with the full `Content-Length`, the body written at about this rate.
    SlowDrip { body: Vec<u8>, bytes_per_sec: usize },
    /// 200 without a length, streaming proxy-like lines until the client hangs up.
    Endless,
    /// Reads the request, then never answers (until the server is dropped).
    Hang,
}

impl Route {
    /// A 200 text list, the common case.
    pub fn text(body: impl Into<Vec<u8>>) -> Route {
        Route::Body {
            content_type: "text/plain",
            body: body.into(),
        }
    }
}

/// A running list server on 127.0.0.1.
pub struct SourcesServer {
    pub addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    accept_loop: JoinHandle<()>,
}

impl SourcesServer {
    /// Starts serving `routes` (path, route) on 127.0.0.1 at any free port. Unknown paths get 404.
    pub async fn start(routes: Vec<(String, Route)>) -> SourcesServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sources server on loopback");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let routes: Arc<HashMap<String, Route>> = Arc::new(routes.into_iter().collect());
        let accept_loop = tokio::spawn(accept_loop(listener, routes, hits.clone()));
        SourcesServer {
            addr,
            hits,
            accept_loop,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many requests arrived for `path`.
    pub fn hits(&self, path: &str) -> usize {
        let hits = self.hits.lock().expect("hits lock poisoned");
        hits.get(path).copied().unwrap_or(0)
    }
}

impl Drop for SourcesServer {
    /// Aborting the accept loop drops its `JoinSet`, which aborts every open connection too.
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    routes: Arc<HashMap<String, Route>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                connections.spawn(serve(stream, routes.clone(), hits.clone()));
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    routes: Arc<HashMap<String, Route>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
) {
    let Ok(Some(path)) = tokio::time::timeout(READ_TIMEOUT, read_path(&mut stream)).await else {
        return;
    };
    let hit = {
        let mut hits = hits.lock().expect("hits lock poisoned");
        let n = hits.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let route = routes.get(&path).cloned().unwrap_or(Route::Status(404));
    // Errors here mean the client went away, which is its right.
    let _ = respond(&mut stream, &route, hit).await;
    let _ = stream.shutdown().await;
}

/// Reads the request head and returns its path (query removed), or `None` if it is not HTTP.
async fn read_path(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next()?;
    let target = std::str::from_utf8(line).ok()?.split(' ').nth(1)?;
    let path = target.split('?').next()?;
    Some(path.to_owned())
}

/// Writes the response for the `hit`-th request to this route's path.
async fn respond(stream: &mut TcpStream, route: &Route, hit: usize) -> std::io::Result<()> {
    match route {
        Route::Body { content_type, body } => {
            write_head(
                stream,
                200,
                &[("Content-Type", content_type)],
                Some(body.len()),
            )
            .await?;
            stream.write_all(body).await
        }
        Route::Status(status) => {
            let body = format!("status {status}\n");
            write_head(
                stream,
                *status,
                &[("Content-Type", "text/plain")],
                Some(body.len()),
            )
            .await?;
            stream.write_all(body.as_bytes()).await
        }
        Route::StatusThen {
            status,
            retry_after,
            times,
            then,
        } => {
            if hit > *times {
                return Box::pin(respond(stream, then, hit - times)).await;
            }
            let retry_after = retry_after.map(|s| s.to_string());
            let mut headers = vec![("Content-Type", "text/plain")];
            if let Some(secs) = &retry_after {
                headers.push(("Retry-After", secs));
            }
            write_head(stream, *status, &headers, Some(0)).await
        }
        Route::Redirect(location) => {
            write_head(stream, 302, &[("Location", location)], Some(0)).await
        }
        Route::SlowDrip {
            body,
            bytes_per_sec,
        } => {
            write_head(
                stream,
                200,
                &[("Content-Type", "text/plain")],
                Some(body.len()),
            )
            .await?;
            // Ten writes a second keep the rate smooth enough for timeouts to bite mid-body.
            let per_tick = (bytes_per_sec / 10).max(1);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for chunk in body.chunks(per_tick) {
                tick.tick().await;
                stream.write_all(chunk).await?;
                stream.flush().await?;
            }
            Ok(())
        }
        Route::Endless => {
            write_head(stream, 200, &[("Content-Type", "text/plain")], None).await?;
            let chunk = "10.0.0.1:8080\n".repeat(4096);
            loop {
                stream.write_all(chunk.as_bytes()).await?;
            }
        }
        Route::Hang => std::future::pending().await,
    }
}

async fn write_head(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    length: Option<usize>,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(length) = length {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw GET, to test the server without the client under test.
    async fn get(server: &SourcesServer, path: &str) -> String {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_routes_and_counts_hits() {
        let routes = vec![
            ("/list".to_owned(), Route::text("1.2.3.4:80\n")),
            (
                "/flaky".to_owned(),
                Route::StatusThen {
                    status: 503,
                    retry_after: Some(7),
                    times: 1,
                    then: Box::new(Route::Redirect("/list".to_owned())),
                },
            ),
        ];
        let server = SourcesServer::start(routes).await;
        let ok = get(&server, "/list?page=1").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\n1.2.3.4:80\n"), "{ok}");
        let first = get(&server, "/flaky").await;
        assert!(first.starts_with("HTTP/1.1 503 ") && first.contains("Retry-After: 7\r\n"));
        let second = get(&server, "/flaky").await;
        assert!(second.starts_with("HTTP/1.1 302 ") && second.contains("Location: /list\r\n"));
        assert!(get(&server, "/nope").await.starts_with("HTTP/1.1 404 "));
        assert_eq!((server.hits("/list"), server.hits("/flaky")), (1, 2));
        assert_eq!(server.url("/list"), format!("http://{}/list", server.addr));
    }

    #[tokio::test]
    async fn dropping_the_server_ends_hanging_connections() {
        let server = SourcesServer::start(vec![("/hang".to_owned(), Route::Hang)]).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /hang HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        // Wait until the request was read, so the connection task is really hanging.
        while server.hits("/hang") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(server);
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(0))),
            "the connection should close: {read:?}"
        );
    }
}
