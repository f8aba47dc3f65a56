//! Judges on loopback, in each format the checker understands, over HTTP or HTTPS.
//!
//! A [`JudgeServer`] echoes every request it receives the way the real judge would: our own
//! [`JudgeDocument`], httpbin's `/get?show_env=1` (including the `X-Forwarded-*` headers that
//! httpbin.org's load balancer adds, so the parser's handling of them is exercised), or an azenv
//! HTML page. It accepts origin-form targets (direct, or through a tunnel) and absolute-form
//! targets (from a forwarding HTTP proxy), answers with `Content-Length` and `Connection: close`,
//! and counts the requests it echoed ([`JudgeServer::hits`]).
//!
//! The HTTPS judge presents a self-signed certificate for both `localhost` and `127.0.0.1`. Its
//! URL uses the IP: rustls verifies IP names, and no proxy has to resolve `localhost` (which may
//! answer `::1`, where nothing listens).

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use proxyharvest::judge::JudgeDocument;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Which judge to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeFormat {
    /// Our own judge: a [`JudgeDocument`] at `/judge`.
    Own,
    /// httpbin.org's `/get?show_env=1`.
    Httpbin,
    /// The classic `azenv.php` page.
    Azenv,
}

impl JudgeFormat {
    /// The path and query the judge is published at.
    fn path_and_query(self) -> &'static str {
        match self {
            JudgeFormat::Own => "/judge",
            JudgeFormat::Httpbin => "/get?show_env=1",
            JudgeFormat::Azenv => "/azenv.php",
        }
    }
}

/// A running judge on 127.0.0.1. Stops (and deletes its CA file, if any) when dropped.
pub struct JudgeServer {
    pub addr: SocketAddr,
    format: JudgeFormat,
    tls: bool,
    hits: Arc<AtomicUsize>,
    accept_loop: JoinHandle<()>,
    temp_dir: Option<PathBuf>,
}

impl JudgeServer {
    /// The judge's URL: `http://127.0.0.1:PORT/judge`, `.../get?show_env=1` or `.../azenv.php`,
    /// with `https` for a TLS judge.
    pub fn url(&self) -> url::Url {
        let scheme = if self.tls { "https" } else { "http" };
        let text = format!("{scheme}://{}{}", self.addr, self.format.path_and_query());
        url::Url::parse(&text).expect("a loopback URL is valid")
    }

    /// How many requests the judge has echoed.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JudgeServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Starts a plain HTTP judge on 127.0.0.1 (any free port).
pub async fn start(format: JudgeFormat) -> JudgeServer {
    serve_on_loopback(format, None).await
}

/// Starts an HTTPS judge on 127.0.0.1 and returns it with the path of its CA certificate (PEM),
/// for [`proxyharvest::judge::tls_config`]. The file lives as long as the server.
pub async fn start_tls(format: JudgeFormat) -> (JudgeServer, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate a self-signed certificate");
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key.into())
        .expect("a freshly generated certificate and key match");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "proxyharvest-judge-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("create the CA directory");
    let ca_file = dir.join("judge-ca.pem");
    std::fs::write(&ca_file, certified.cert.pem()).expect("write the CA file");

    let mut server = serve_on_loopback(format, Some(TlsAcceptor::from(Arc::new(config)))).await;
    server.temp_dir = Some(dir);
    (server, ca_file)
}

async fn serve_on_loopback(format: JudgeFormat, tls: Option<TlsAcceptor>) -> JudgeServer {
    // A deep accept queue: with hundreds of checks in flight, the default of 128 overflows and
    // each dropped connection waits out the kernel's 1 s retry, which tests would then measure.
    let socket = tokio::net::TcpSocket::new_v4().expect("create a socket");
    socket
        .bind("127.0.0.1:0".parse().expect("a loopback address"))
        .expect("bind the judge on loopback");
    let listener = socket.listen(4096).expect("listen on loopback");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let hits = Arc::new(AtomicUsize::new(0));
    let context = Arc::new(Context {
        format,
        scheme: if tls.is_some() { "https" } else { "http" },
        local: addr,
        hits: hits.clone(),
    });
    let is_tls = tls.is_some();
    let accept_loop = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of descriptors, most likely: let connections drain.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let context = context.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let _ = handle(stream, peer, tls, &context).await;
            });
        }
    });
    JudgeServer {
        addr,
        format,
        tls: is_tls,
        hits,
        accept_loop,
        temp_dir: None,
    }
}

/// What every connection needs to know about its judge.
struct Context {
    format: JudgeFormat,
    scheme: &'static str,
    local: SocketAddr,
    hits: Arc<AtomicUsize>,
}

async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    context: &Context,
) -> io::Result<()> {
    match tls {
        Some(acceptor) => {
            let stream = tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream))
                .await
                .map_err(|_| io::ErrorKind::TimedOut)??;
            serve(stream, peer, context).await
        }
        None => serve(stream, peer, context).await,
    }
}

async fn serve<S>(mut io: S, peer: SocketAddr, context: &Context) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut io))
        .await
        .map_err(|_| io::ErrorKind::TimedOut)??;
    let response = match Request::parse(&head) {
        Some(request) => {
            context.hits.fetch_add(1, Ordering::SeqCst);
            let (content_type, body) = render(&request, peer, context);
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            response.extend_from_slice(&body);
            response
        }
        None => {
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        }
    };
    io.write_all(&response).await?;
    io.shutdown().await
}

/// Reads up to the blank line that ends a request head. A body, if any, is ignored.
async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
    }
}

/// One request as received: the target split into path and query, headers as sent.
struct Request {
    method: String,
    /// The authority of an absolute-form target, if the request had one.
    authority: Option<String>,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn parse(head: &[u8]) -> Option<Request> {
        let text = std::str::from_utf8(head).ok()?;
        let mut lines = text.split("\r\n");
        let mut request_line = lines.next()?.split(' ');
        let (method, target, version) = (
            request_line.next()?,
            request_line.next()?,
            request_line.next()?,
        );
        if request_line.next().is_some() || !version.starts_with("HTTP/1.") {
            return None;
        }
        let (authority, path, query) = if target.starts_with('/') {
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            (None, path.to_owned(), query.to_owned())
        } else {
            let url = url::Url::parse(target).ok()?;
            let authority = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str()?),
                None => url.host_str()?.to_owned(),
            };
            let query = url.query().unwrap_or_default().to_owned();
            (Some(authority), url.path().to_owned(), query)
        };
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':')?;
                Some((name.trim().to_owned(), value.trim().to_owned()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Request {
            method: method.to_owned(),
            authority,
            path,
            query,
            headers,
        })
    }

    /// All values of a header (case-insensitive name), joined as HTTP allows.
    fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

/// The judge's answer: content type and body.
fn render(request: &Request, peer: SocketAddr, context: &Context) -> (&'static str, Vec<u8>) {
    match context.format {
        JudgeFormat::Own => {
            let doc = JudgeDocument::new(
                peer.ip(),
                &request.method,
                &request.path,
                &request.query,
                request.headers.iter().map(|(n, v)| (n, v)),
            );
            let body = serde_json::to_vec(&doc).expect("a judge document serializes");
            ("application/json", body)
        }
        JudgeFormat::Httpbin => ("application/json", render_httpbin(request, peer, context)),
        JudgeFormat::Azenv => (
            "text/html; charset=UTF-8",
            render_azenv(request, peer).into_bytes(),
        ),
    }
}

/// httpbin.org behind its load balancer: the balancer appends the peer to `X-Forwarded-For` and
/// adds `X-Forwarded-Proto`, `X-Forwarded-Port` and `X-Amzn-Trace-Id`; `origin` is the whole
/// forwarded chain.
fn render_httpbin(request: &Request, peer: SocketAddr, context: &Context) -> Vec<u8> {
    let chain = match request.header("x-forwarded-for") {
        Some(received) => format!("{received}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    let mut headers = Map::new();
    for (name, value) in &request.headers {
        let name = title_case(name);
        let joined = match headers.remove(&name) {
            Some(Value::String(before)) => format!("{before},{value}"),
            _ => value.clone(),
        };
        headers.insert(name, Value::String(joined));
    }
    let trace = format!(
        "Root=1-{:08x}-{:024x}",
        context.hits.load(Ordering::SeqCst),
        peer.port()
    );
    for (name, value) in [
        ("X-Forwarded-For", chain.clone()),
        ("X-Forwarded-Proto", context.scheme.to_owned()),
        ("X-Forwarded-Port", context.local.port().to_string()),
        ("X-Amzn-Trace-Id", trace),
    ] {
        headers.insert(name.to_owned(), Value::String(value));
    }

    let mut args = Map::new();
    for (name, value) in url::form_urlencoded::parse(request.query.as_bytes()) {
        let value = Value::String(value.into_owned());
        match args.get_mut(name.as_ref()) {
            Some(Value::Array(values)) => values.push(value),
            Some(single) => *single = Value::Array(vec![single.take(), value]),
            None => {
                args.insert(name.into_owned(), value);
            }
        }
    }

    let host = request
        .authority
        .clone()
        .or_else(|| request.header("host"))
        .unwrap_or_else(|| context.local.to_string());
    let query = if request.query.is_empty() {
        String::new()
    } else {
        format!("?{}", request.query)
    };
    let body = serde_json::json!({
        "args": args,
        "headers": headers,
        "origin": chain,
        "url": format!("{}://{host}{}{query}", context.scheme, request.path),
    });
    serde_json::to_vec_pretty(&body).expect("JSON values serialize")
}

/// `x-forwarded-for` -> `X-Forwarded-For`, as httpbin prints header names.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// azenv.php 1.04: the CGI variables, one `KEY = value` line each, HTML-escaped in a `<pre>`.
fn render_azenv(request: &Request, peer: SocketAddr) -> String {
    let mut page = String::from(
        "<html>\n<head>\n<title>AZ Environment variables 1.04</title>\n</head>\n<body>\n<pre>\n",
    );
    for (name, value) in &request.headers {
        let key = name.to_ascii_uppercase().replace('-', "_");
        let _ = writeln!(page, "HTTP_{key} = {}", escape_html(value));
    }
    let uri = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let _ = write!(
        page,
        "REMOTE_ADDR = {}\nREMOTE_PORT = {}\nREQUEST_METHOD = {}\nREQUEST_URI = {}\n\
         REQUEST_TIME_FLOAT = {}.{:06}\nREQUEST_TIME = {}\n</pre>\n</body>\n</html>\n",
        peer.ip(),
        peer.port(),
        escape_html(&request.method),
        escape_html(&uri),
        now.as_secs(),
        now.subsec_micros(),
        now.as_secs(),
    );
    page
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    use proxyharvest::judge::{grade, new_token, parse_echo, tls_config, verify, with_token};
    use proxyharvest::outcome::Anonymity;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::pki_types::ServerName;

    const ALL: [JudgeFormat; 3] = [JudgeFormat::Own, JudgeFormat::Httpbin, JudgeFormat::Azenv];

    /// Sends `request` and returns the status line and the body, checking `Content-Length`.
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        mut io: S,
        request: &str,
    ) -> (String, Vec<u8>) {
        io.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        io.read_to_end(&mut response).await.unwrap();
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response head");
        let head = String::from_utf8(response[..end].to_vec()).unwrap();
        let body = response[end + 4..].to_vec();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("Content-Length")
            .parse()
            .unwrap();
        assert_eq!(length, body.len(), "{head}");
        assert!(head.contains("\r\nConnection: close"), "{head}");
        (head.lines().next().unwrap().to_owned(), body)
    }

    /// `/path?query` of a URL: the origin-form target.
    fn origin_form(url: &url::Url) -> &str {
        &url[url::Position::BeforePath..]
    }

    #[tokio::test]
    async fn each_format_echoes_a_direct_request() {
        for format in ALL {
            let judge = start(format).await;
            let token = new_token();
            let url = with_token(&judge.url(), &token);
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: judge-test\r\n\
                 X-Forwarded-For: 192.0.2.9\r\nVia: 1.1 farm\r\nConnection: close\r\n\r\n",
                origin_form(&url),
                judge.addr
            );
            let stream = TcpStream::connect(judge.addr).await.unwrap();
            let (status, body) = exchange(stream, &request).await;
            assert_eq!(status, "HTTP/1.1 200 OK", "{format:?}");
            let echo = parse_echo(&body).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert!(verify(&echo, &token), "{format:?}: {echo:?}");
            assert!(!verify(&echo, &new_token()), "{format:?}");
            assert_eq!(echo.remote_addr, judge.addr.ip(), "{format:?}");
            assert_eq!(echo.header("via"), Some("1.1 farm"), "{format:?}");
            assert_eq!(
                echo.header("x-forwarded-for"),
                Some("192.0.2.9"),
                "{format:?}"
            );
            assert_eq!(
                grade(&echo, Some("192.0.2.9".parse().unwrap())),
                Anonymity::Transparent,
                "{format:?}"
            );
            assert_eq!(judge.hits(), 1, "{format:?}");
        }
    }

    #[tokio::test]
    async fn each_format_echoes_an_absolute_form_request() {
        for format in ALL {
            let judge = start(format).await;
            let token = new_token();
            let url = with_token(&judge.url(), &token);
            let request = format!(
                "GET {url} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                judge.addr
            );
            let stream = TcpStream::connect(judge.addr).await.unwrap();
            let (status, body) = exchange(stream, &request).await;
            assert_eq!(status, "HTTP/1.1 200 OK", "{format:?}");
            let echo = parse_echo(&body).unwrap();
            assert!(verify(&echo, &token), "{format:?}: {echo:?}");
            // Only the checker's own headers arrived: nothing reveals a proxy.
            assert_eq!(
                grade(&echo, Some("192.0.2.9".parse().unwrap())),
                Anonymity::Elite,
                "{format:?}: {echo:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_malformed_request_gets_400_and_is_not_counted() {
        let judge = start(JudgeFormat::Own).await;
        let stream = TcpStream::connect(judge.addr).await.unwrap();
        let (status, body) = exchange(stream, "NONSENSE\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert!(body.is_empty());
        assert_eq!(judge.hits(), 0);
    }

    #[tokio::test]
    async fn tls_judge_is_trusted_with_its_ca_file_under_both_names() {
        let (judge, ca_file) = start_tls(JudgeFormat::Own).await;
        assert_eq!(judge.url().scheme(), "https");
        let connector = TlsConnector::from(tls_config(Some(&ca_file)).unwrap());
        for (round, name) in ["127.0.0.1", "localhost"].into_iter().enumerate() {
            let token = new_token();
            let url = with_token(&judge.url(), &token);
            let tcp = TcpStream::connect(judge.addr).await.unwrap();
            let server_name = ServerName::try_from(name.to_owned()).unwrap();
            let tls = connector.connect(server_name, tcp).await.unwrap();
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n",
                origin_form(&url)
            );
            let (status, body) = exchange(tls, &request).await;
            assert_eq!(status, "HTTP/1.1 200 OK");
            let echo = parse_echo(&body).unwrap();
            assert!(verify(&echo, &token));
            assert_eq!(judge.hits(), round + 1);
        }
        drop(judge);
        assert!(!ca_file.exists(), "the CA file goes with the server");
    }

    #[tokio::test]
    async fn tls_judge_is_not_trusted_without_its_ca_file() {
        let (judge, _ca_file) = start_tls(JudgeFormat::Azenv).await;
        let connector = TlsConnector::from(tls_config(None).unwrap());
        let tcp = TcpStream::connect(judge.addr).await.unwrap();
        let server_name = ServerName::try_from("127.0.0.1").unwrap();
        assert!(connector.connect(server_name, tcp).await.is_err());
        assert_eq!(judge.hits(), 0);
    }
}
