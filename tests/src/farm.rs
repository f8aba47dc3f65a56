//! A farm of proxies on loopback, well-behaved and not: every kind of answer a checker meets in
//! the wild, each on its own port of 127.0.0.1.
//!
//! Forwarding kinds (HTTP, SOCKS) really forward, and only to 127.0.0.0/8: a target anywhere else
//! is refused, so a test can never leak traffic off the machine. Their upstream connections leave
//! from [`EXIT_IP`] (127.0.0.2; Linux routes all of 127/8 to `lo`), so the judge sees the checker
//! itself as 127.0.0.1 and every proxied request as 127.0.0.2 — which is what lets a test tell an
//! exit address from the checker's own and grade anonymity on one machine.
//!
//! Each accepted connection is one small task (a few KiB of buffers), so that [`start_many`] can
//! run thousands of proxies for a benchmark once the open-file limit is raised.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use proxyharvest::proxy::{Credentials, Host, Port, Protocol, Proxy};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// The source address of every upstream connection a farm proxy makes.
pub const EXIT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The made-up client address an [`Kind::Anonymous`] proxy forwards (TEST-NET-3).
pub const FAKE_FORWARDED_FOR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);

/// The address a [`Kind::Honeypot`] claims every request came from (TEST-NET-2).
pub const HONEYPOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 23);

/// Longest request head a farm proxy reads.
const MAX_HEAD: usize = 16 * 1024;

/// How a farm proxy behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An HTTP proxy (forwarding and CONNECT) that adds nothing.
    Elite,
    /// Adds `Via` and `X-Forwarded-For: <FAKE_FORWARDED_FOR>`.
    Anonymous,
    /// Adds `X-Forwarded-For: <its client's address>`.
    Transparent,
    /// Forwards plain HTTP; answers CONNECT with 405.
    HttpNoConnect,
    /// An elite HTTP proxy that answers 407 without these Basic credentials.
    HttpAuth { user: String, pass: String },
    /// SOCKS4 and SOCKS4a.
    Socks4,
    /// SOCKS5 without authentication, to IPv4 addresses and domain names.
    Socks5,
    /// SOCKS5 requiring these username/password credentials (RFC 1929).
    Socks5Auth { user: String, pass: String },
    /// Accepts and never answers.
    Blackhole,
    /// Accepts and resets the connection at once (SO_LINGER 0).
    Reset,
    /// Answers anything with random bytes (the first one >= 0x80, so that no protocol's first
    /// byte matches by chance).
    Garbage,
    /// Answers anything with 200 and a fixed login page.
    CaptivePortal,
    /// Answers 200 with a body that never ends.
    EndlessBody,
    /// An elite HTTP proxy that answers only after `delay`.
    Slow { delay: Duration },
    /// Answers every request with a canned httpbin-style echo from [`HONEYPOT_IP`], without the
    /// request's token.
    Honeypot,
    /// A port where nothing listens (reserved, so no one else takes it while the farm lives).
    Refused,
}

impl Kind {
    /// The protocol this kind is listed under: what it really speaks, `http` for the others.
    pub fn protocol(&self) -> Protocol {
        match self {
            Kind::Socks4 => Protocol::Socks4,
            Kind::Socks5 | Kind::Socks5Auth { .. } => Protocol::Socks5,
            _ => Protocol::Http,
        }
    }

    /// The credentials this kind requires, if any.
    pub fn credentials(&self) -> Option<Credentials> {
        match self {
            Kind::HttpAuth { user, pass } | Kind::Socks5Auth { user, pass } => {
                Some(Credentials::new(user, pass).expect("farm credentials are valid"))
            }
            _ => None,
        }
    }
}

/// Running farm proxies. Stops them all when dropped.
pub struct Farm {
    members: Vec<(Kind, SocketAddr)>,
    accepts: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
    /// Bound but not listening: connecting is refused, and the port stays ours.
    refused: Vec<TcpSocket>,
}

impl Farm {
    /// Every proxy as a checker would get it from a list: `127.0.0.1:port`, listed under the
    /// kind's protocol, with the kind's credentials.
    pub fn proxies(&self) -> Vec<(Kind, Proxy)> {
        self.members
            .iter()
            .map(|(kind, addr)| {
                let port = Port::new(addr.port()).expect("a bound port is not 0");
                let proxy = Proxy::new(Host::Ip(addr.ip()), port)
                    .with_protocol(kind.protocol())
                    .with_auth(kind.credentials());
                (kind.clone(), proxy)
            })
            .collect()
    }

    /// The farm as a source list serves it: one canonical line per proxy.
    pub fn list_text(&self) -> String {
        self.proxies()
            .iter()
            .map(|(_, p)| format!("{p}\n"))
            .collect()
    }

    /// Just the proxies, in farm order.
    pub fn plain_proxies(&self) -> Vec<Proxy> {
        self.proxies().into_iter().map(|(_, p)| p).collect()
    }

    /// The address of the `i`-th proxy (in the order given to [`start`]).
    pub fn endpoint(&self, i: usize) -> SocketAddr {
        self.members[i].1
    }

    /// Connections accepted by all proxies of the farm so far.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// Starts one proxy of each kind, in order, on 127.0.0.1.
pub async fn start(kinds: &[Kind]) -> Farm {
    let mut farm = Farm {
        members: Vec::with_capacity(kinds.len()),
        accepts: Arc::new(AtomicUsize::new(0)),
        tasks: JoinSet::new(),
        refused: Vec::new(),
    };
    for kind in kinds {
        let addr = if *kind == Kind::Refused {
            let socket = TcpSocket::new_v4().expect("create a socket");
            // Ports still in TIME_WAIT from an earlier farm may be taken again.
            socket.set_reuseaddr(true).expect("SO_REUSEADDR");
            socket
                .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                .expect("bind a loopback port");
            let addr = socket.local_addr().expect("a bound socket has an address");
            farm.refused.push(socket);
            addr
        } else {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind a farm proxy on loopback");
            let addr = listener
                .local_addr()
                .expect("a bound listener has an address");
            farm.tasks.spawn(accept_loop(
                listener,
                Arc::new(kind.clone()),
                farm.accepts.clone(),
            ));
            addr
        };
        farm.members.push((kind.clone(), addr));
    }
    farm
}

/// Starts `n` proxies of one kind (for benchmarks: raise the open-file limit first).
pub async fn start_many(kind: Kind, n: usize) -> Farm {
    start(&vec![kind; n]).await
}

async fn accept_loop(listener: TcpListener, kind: Arc<Kind>, accepts: Arc<AtomicUsize>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors, most likely: let connections drain.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        accepts.fetch_add(1, Ordering::SeqCst);
        let kind = kind.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(&kind, stream, peer).await {
                tracing::trace!(?kind, error = %e, "farm connection ended");
            }
        });
    }
}

async fn serve(kind: &Kind, mut stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
    match kind {
        Kind::Elite
        | Kind::Anonymous
        | Kind::Transparent
        | Kind::HttpNoConnect
        | Kind::HttpAuth { .. }
        | Kind::Slow { .. } => http_proxy(kind, stream, peer).await,
        Kind::Socks4 => socks4(stream).await,
        Kind::Socks5 | Kind::Socks5Auth { .. } => socks5(kind, stream).await,
        Kind::Blackhole => drain(&mut stream).await,
        Kind::Reset => stream.set_zero_linger(),
        Kind::Garbage => {
            let mut bytes: [u8; 64] = rand::random();
            bytes[0] |= 0x80;
            answer_anything(stream, &bytes).await
        }
        Kind::CaptivePortal => {
            let page = "<html><head><title>Welcome</title></head><body>\
                        <form action=\"/login\">Please log in to use the Internet.</form>\
                        </body></html>";
            answer_anything(stream, response(200, "text/html", page).as_bytes()).await
        }
        Kind::EndlessBody => {
            let mut buf = [0u8; 2048];
            if stream.read(&mut buf).await? == 0 {
                return Ok(());
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                .await?;
            let chunk = [b'x'; 8192];
            // Until the checker hangs up: it must stop at its response cap.
            loop {
                stream.write_all(&chunk).await?;
            }
        }
        Kind::Honeypot => {
            let body = serde_json::json!({
                "args": {},
                "headers": {"Accept": "*/*", "Host": "judge.example", "User-Agent": "curl/8.0"},
                "origin": HONEYPOT_IP.to_string(),
                "url": "http://judge.example/get?show_env=1",
            });
            let text = response(200, "application/json", &body.to_string());
            answer_anything(stream, text.as_bytes()).await
        }
        Kind::Refused => unreachable!("nothing listens for a refused proxy"),
    }
}

/// A whole HTTP/1.1 response with `Connection: close`.
fn response(status: u16, content_type: &str, body: &str) -> String {
    let reason = match status {
        200 => "OK",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        _ => "Bad Gateway",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 407 {
        head.push_str("Proxy-Authenticate: Basic realm=\"farm\"\r\n");
    }
    format!("{head}\r\n{body}")
}

/// Waits for the client's first bytes, answers `answer` whatever they were, and closes cleanly
/// (FIN, not RST: the client must get to read the answer).
async fn answer_anything(mut stream: TcpStream, answer: &[u8]) -> io::Result<()> {
    let mut buf = [0u8; 2048];
    if stream.read(&mut buf).await? == 0 {
        return Ok(());
    }
    stream.write_all(answer).await?;
    stream.shutdown().await?;
    drain(&mut stream).await
}

/// Reads and discards until the peer closes.
async fn drain(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 512];
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}

/// Connects to `addr` from [`EXIT_IP`]; only loopback IPv4 targets are allowed.
async fn connect_from_exit(addr: SocketAddr) -> io::Result<TcpStream> {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {}
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the farm only forwards to 127.0.0.0/8, not {addr}"),
            ));
        }
    }
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((EXIT_IP, 0)))?;
    socket.connect(addr).await
}

/// Resolves `host` (an IPv4 address or a name such as `localhost`) to an IPv4 address.
async fn resolve_v4(host: &str, port: u16) -> io::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: no IPv4")))
}

/// Splits `host:port` / `[v6]:port`.
fn split_authority(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host, port.parse().ok()?))
}

/// A parsed request head.
struct RequestHead {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a request head; returns it with any bytes that followed it.
async fn read_request(stream: &mut TcpStream) -> io::Result<(RequestHead, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = std::str::from_utf8(&buf[..end])
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(_version)) = (first.next(), first.next(), first.next())
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let head = RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
    };
    Ok((head, buf[end + 4..].to_vec()))
}

async fn http_proxy(kind: &Kind, mut client: TcpStream, peer: SocketAddr) -> io::Result<()> {
    let (head, rest) = read_request(&mut client).await?;
    if let Kind::Slow { delay } = kind {
        tokio::time::sleep(*delay).await;
    }
    let reply = |status| response(status, "text/plain", "farm proxy\n");
    if let Kind::HttpAuth { user, pass } = kind {
        let want = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        let given = head
            .header("proxy-authorization")
            .and_then(|v| v.strip_prefix("Basic "));
        if given != Some(want.as_str()) {
            return client.write_all(reply(407).as_bytes()).await;
        }
    }
    if head.method.eq_ignore_ascii_case("CONNECT") {
        if *kind == Kind::HttpNoConnect {
            return client.write_all(reply(405).as_bytes()).await;
        }
        let upstream = match split_authority(&head.target) {
            Some((host, port)) => match resolve_v4(host, port).await {
                Ok(addr) => connect_from_exit(addr).await,
                Err(e) => Err(e),
            },
            None => Err(io::ErrorKind::InvalidInput.into()),
        };
        let Ok(mut upstream) = upstream else {
            return client.write_all(reply(502).as_bytes()).await;
        };
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        upstream.write_all(&rest).await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        return Ok(());
    }
    // Plain forwarding: absolute-form target to origin-form upstream.
    let Some(after_scheme) = head.target.strip_prefix("http://") else {
        return client.write_all(reply(502).as_bytes()).await;
    };
    let split = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let (authority, path) = after_scheme.split_at(split);
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let authority_port = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let upstream = match split_authority(&authority_port) {
        Some((host, port)) => match resolve_v4(host, port).await {
            Ok(addr) => connect_from_exit(addr).await,
            Err(e) => Err(e),
        },
        None => Err(io::ErrorKind::InvalidInput.into()),
    };
    let Ok(mut upstream) = upstream else {
        return client.write_all(reply(502).as_bytes()).await;
    };
    let mut req = format!("{} {path} HTTP/1.1\r\n", head.method);
    for (name, value) in &head.headers {
        let hop_by_hop = ["proxy-authorization", "proxy-connection", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h));
        if !hop_by_hop {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    match kind {
        Kind::Anonymous => req.push_str(&format!(
            "Via: 1.1 farm\r\nX-Forwarded-For: {FAKE_FORWARDED_FOR}\r\n"
        )),
        Kind::Transparent => req.push_str(&format!("X-Forwarded-For: {}\r\n", peer.ip())),
        _ => {}
    }
    req.push_str("Connection: close\r\n\r\n");
    upstream.write_all(req.as_bytes()).await?;
    upstream.write_all(&rest).await?;
    relay(&mut upstream, &mut client).await
}

/// Copies `from` to `to` until `from` closes, then closes `to`.
async fn relay<R, W>(from: &mut R, to: &mut W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tokio::io::copy(from, to).await?;
    to.shutdown().await
}

async fn read_nul_terminated(stream: &mut TcpStream) -> io::Result<String> {
    let mut bytes = Vec::new();
    loop {
        match stream.read_u8().await? {
            0 => break,
            b if bytes.len() < 255 => bytes.push(b),
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "field too long")),
        }
    }
    String::from_utf8(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

async fn socks4(mut client: TcpStream) -> io::Result<()> {
    // The version byte alone first: a SOCKS5 greeting is shorter than a SOCKS4 request, and
    // waiting for the rest would hang the client instead of telling it "wrong protocol".
    let mut req = [0u8; 8];
    client.read_exact(&mut req[..1]).await?;
    if req[0] != 4 {
        return Ok(()); // Not SOCKS4: hang up, as real servers do.
    }
    client.read_exact(&mut req[1..]).await?;
    let port = u16::from_be_bytes([req[2], req[3]]);
    let ip = Ipv4Addr::new(req[4], req[5], req[6], req[7]);
    let _userid = read_nul_terminated(&mut client).await?;
    let is_4a = ip.octets()[..3] == [0, 0, 0] && ip.octets()[3] != 0;
    let target = if is_4a {
        let name = read_nul_terminated(&mut client).await?;
        resolve_v4(&name, port).await
    } else {
        Ok(SocketAddr::from((ip, port)))
    };
    let upstream = match target {
        Ok(addr) if req[1] == 1 => connect_from_exit(addr).await,
        Ok(_) => Err(io::ErrorKind::Unsupported.into()),
        Err(e) => Err(e),
    };
    let mut reply = [0, 0x5A, req[2], req[3], req[4], req[5], req[6], req[7]];
    let Ok(mut upstream) = upstream else {
        reply[1] = 0x5B;
        return client.write_all(&reply).await;
    };
    client.write_all(&reply).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

async fn socks5(kind: &Kind, mut client: TcpStream) -> io::Result<()> {
    let mut greeting = [0u8; 2];
    client.read_exact(&mut greeting).await?;
    if greeting[0] != 5 {
        return Ok(()); // Not SOCKS5: hang up, as real servers do.
    }
    let mut methods = vec![0u8; greeting[1] as usize];
    client.read_exact(&mut methods).await?;
    let required = if matches!(kind, Kind::Socks5Auth { .. }) {
        0x02
    } else {
        0x00
    };
    if !methods.contains(&required) {
        return client.write_all(&[5, 0xFF]).await;
    }
    client.write_all(&[5, required]).await?;
    if let Kind::Socks5Auth { user, pass } = kind {
        let mut header = [0u8; 2];
        client.read_exact(&mut header).await?;
        let mut given_user = vec![0u8; header[1] as usize];
        client.read_exact(&mut given_user).await?;
        let mut given_pass = vec![0u8; client.read_u8().await? as usize];
        client.read_exact(&mut given_pass).await?;
        if given_user != user.as_bytes() || given_pass != pass.as_bytes() {
            return client.write_all(&[1, 1]).await;
        }
        client.write_all(&[1, 0]).await?;
    }
    let mut req = [0u8; 4];
    client.read_exact(&mut req).await?;
    let host = match req[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut name = vec![0u8; client.read_u8().await? as usize];
            client.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await?;
            std::net::Ipv6Addr::from(ip).to_string()
        }
        _ => return client.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0]).await,
    };
    let port = client.read_u16().await?;
    if req[1] != 1 {
        return client.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]).await;
    }
    let upstream = match resolve_v4(&host, port).await {
        Ok(addr) => connect_from_exit(addr).await,
        Err(e) => Err(e),
    };
    let Ok(mut upstream) = upstream else {
        // 0x02: connection not allowed by ruleset.
        return client.write_all(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]).await;
    };
    let bound = upstream.local_addr()?;
    let mut reply = vec![5, 0, 0, 1];
    match bound.ip() {
        IpAddr::V4(ip) => reply.extend_from_slice(&ip.octets()),
        IpAddr::V6(_) => reply.extend_from_slice(&[0, 0, 0, 0]),
    }
    reply.extend_from_slice(&bound.port().to_be_bytes());
    client.write_all(&reply).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_with_and_without_brackets() {
        assert_eq!(split_authority("127.0.0.1:80"), Some(("127.0.0.1", 80)));
        assert_eq!(split_authority("[::1]:443"), Some(("::1", 443)));
        assert_eq!(split_authority("localhost"), None);
    }

    #[tokio::test]
    async fn forwarding_never_leaves_loopback() {
        let err = connect_from_exit("192.0.2.1:80".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    }

    #[tokio::test]
    async fn refused_kind_refuses_and_counts_no_accept() {
        let farm = start(&[Kind::Refused]).await;
        let err = TcpStream::connect(farm.endpoint(0)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(farm.accepts(), 0);
    }

    #[tokio::test]
    async fn garbage_answers_bytes_no_protocol_starts_with() {
        let farm = start(&[Kind::Garbage]).await;
        let mut s = TcpStream::connect(farm.endpoint(0)).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 64);
        assert!(got[0] >= 0x80);
        assert_eq!(farm.accepts(), 1);
    }
}
