//! One attempt: one protocol, one fresh connection, one judge round trip, one verdict.
//!
//! An attempt connects to the proxy, performs the protocol's handshake (none, `CONNECT` + TLS,
//! SOCKS4 or SOCKS5), sends a GET for the judge URL carrying a fresh token, reads the answer and
//! accepts it only if it is a judge echo carrying that token. It measures where the time went and
//! reads the exit address and anonymity from the echo. The [`Prober`] holds what every attempt
//! shares: the routes to the judge, the TLS configuration and the checker's own address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::Url;

use super::conn::{self, AttemptError, write_all};
use super::route::{Routes, host_header, origin_form};
use super::{CheckConfig, CheckError, http1, socks, tunnel};
use crate::judge;
use crate::outcome::{Anonymity, FailureReason, Timings};
use crate::proxy::{Credentials, Host, Protocol, ProtocolSet};

/// What a working attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Success {
    pub timings: Timings,
    pub exit_ip: IpAddr,
    pub anonymity: Anonymity,
}

/// Everything attempts share, built once per checker.
#[derive(Debug)]
pub(crate) struct Prober {
    routes: Routes,
    tls: Arc<rustls::ClientConfig>,
    own_ip: Option<IpAddr>,
    user_agent: String,
    connect_timeout: Duration,
    max_response_bytes: usize,
}

impl Prober {
    /// Builds the TLS configuration and routes, then asks the judge directly for our own address.
    pub async fn new(config: &CheckConfig) -> Result<Prober, CheckError> {
        let tls = judge::tls_config(config.judge.ca_file.as_deref()).map_err(CheckError::Tls)?;
        let routes = Routes::new(&config.judge).await?;
        let mut prober = Prober {
            routes,
            tls,
            own_ip: None,
            user_agent: config.user_agent.clone(),
            connect_timeout: config.connect_timeout,
            max_response_bytes: config.max_response_bytes,
        };
        let own_ip = tokio::time::timeout(config.timeout, prober.ask_judge_directly())
            .await
            .map_err(|_| CheckError::JudgeUnreachable {
                url: config.judge.http.to_string(),
                detail: format!("no answer within {:?}", config.timeout),
            })??;
        prober.own_ip = Some(own_ip);
        Ok(prober)
    }

    pub fn own_ip(&self) -> Option<IpAddr> {
        self.own_ip
    }

    /// The protocols this prober can test: Https only with an HTTPS judge, Socks4 only when the
    /// judge is reachable over IPv4 or by name.
    pub fn testable(&self) -> ProtocolSet {
        Protocol::ALL
            .into_iter()
            .filter(|p| match p {
                Protocol::Https => self.routes.https.is_some(),
                Protocol::Socks4 => self.routes.socks4_endpoint.is_some(),
                Protocol::Http | Protocol::Socks5 => true,
            })
            .collect()
    }

    /// The checker's address as the judge sees it, from a request without any proxy.
    async fn ask_judge_directly(&self) -> Result<IpAddr, CheckError> {
        let url = &self.routes.http;
        let unreachable = |detail: String| CheckError::JudgeUnreachable {
            url: url.to_string(),
            detail,
        };
        let endpoint = &self.routes.http_endpoint;
        let addrs: Vec<SocketAddr> = match &endpoint.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, endpoint.port.get())],
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), endpoint.port.get()))
                .await
                .map_err(|e| unreachable(format!("cannot resolve {name}: {e}")))?
                .collect(),
        };
        let mut last_error = format!("{} resolved to no address", endpoint.host);
        let mut stream = None;
        for addr in addrs {
            match conn::connect(addr, self.connect_timeout).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = format!("{addr}: {e}"),
            }
        }
        let mut stream = stream.ok_or_else(|| unreachable(last_error))?;
        let req = http1::get_request(&origin_form(url), &host_header(url), &self.user_agent, None);
        let (resp, _) = exchange(&mut stream, &req, self.max_response_bytes)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !(200..300).contains(&resp.status) {
            return Err(CheckError::JudgeStatus {
                url: url.to_string(),
                status: resp.status,
            });
        }
        judge::own_ip_from(&resp.body).map_err(|source| CheckError::JudgeAnswer {
            url: url.to_string(),
            source,
        })
    }

    /// One attempt with `protocol` through the proxy at `addr`. The caller bounds the time.
    pub async fn attempt(
        &self,
        addr: SocketAddr,
        auth: Option<&Credentials>,
        protocol: Protocol,
    ) -> Result<Success, AttemptError> {
        let start = Instant::now();
        let token = judge::new_token();
        let mut stream = conn::connect(addr, self.connect_timeout).await?;
        let connected = Instant::now();
        let ua = self.user_agent.as_str();
        let max = self.max_response_bytes;
        let (resp, handshaken, first_byte) = match protocol {
            Protocol::Http => {
                let url = judge::with_token(&self.routes.http, &token);
                let req = http1::get_request(url.as_str(), &host_header(&url), ua, auth);
                let (resp, first) = exchange(&mut stream, &req, max).await?;
                (resp, connected, first)
            }
            Protocol::Https => Box::pin(self.through_tls(stream, auth, &token)).await?,
            Protocol::Socks4 | Protocol::Socks5 => {
                if protocol == Protocol::Socks4 {
                    let dest = self.routes.socks4_endpoint.as_ref().ok_or_else(|| {
                        AttemptError::new(
                            FailureReason::Io,
                            "socks4",
                            "judge unreachable by SOCKS4",
                        )
                    })?;
                    socks::socks4(&mut stream, dest, auth).await?;
                } else {
                    socks::socks5(&mut stream, &self.routes.http_endpoint, auth).await?;
                }
                let handshaken = Instant::now();
                let url = judge::with_token(&self.routes.http, &token);
                let req = http1::get_request(&origin_form(&url), &host_header(&url), ua, None);
                let (resp, first) = exchange(&mut stream, &req, max).await?;
                (resp, handshaken, first)
            }
        };
        let done = Instant::now();
        if !(200..300).contains(&resp.status) {
            return Err(AttemptError::new(
                http1::status_failure(resp.status),
                "judge answer",
                format_args!("HTTP {} through the proxy", resp.status),
            ));
        }
        let echo = judge::parse_echo(&resp.body)
            .map_err(|e| AttemptError::new(FailureReason::Tampered, "judge answer", e))?;
        if !judge::verify(&echo, &token) {
            return Err(AttemptError::new(
                FailureReason::Tampered,
                "judge answer",
                "the echo does not carry this check's token",
            ));
        }
        let ms =
            |t: Instant| u32::try_from(t.duration_since(start).as_millis()).unwrap_or(u32::MAX);
        Ok(Success {
            timings: Timings {
                connect_ms: ms(connected),
                handshake_ms: ms(handshaken),
                first_byte_ms: ms(first_byte),
                total_ms: ms(done),
            },
            exit_ip: echo.remote_addr,
            anonymity: judge::grade(&echo, self.own_ip),
        })
    }

    /// `CONNECT` to the HTTPS judge, TLS inside the tunnel, then the GET. Kept in its own future
    /// (boxed by the caller): the TLS state is large and only this path needs it.
    async fn through_tls(
        &self,
        mut stream: TcpStream,
        auth: Option<&Credentials>,
        token: &str,
    ) -> Result<(http1::Response, Instant, Instant), AttemptError> {
        let route = self.routes.https.as_ref().ok_or_else(|| {
            AttemptError::new(FailureReason::Io, "CONNECT", "no HTTPS judge configured")
        })?;
        tunnel::http_connect(&mut stream, &route.authority, &self.user_agent, auth).await?;
        let mut tls = tunnel::tls(stream, self.tls.clone(), route.server_name.clone()).await?;
        let handshaken = Instant::now();
        let url: Url = judge::with_token(&route.url, token);
        let req = http1::get_request(
            &origin_form(&url),
            &host_header(&url),
            &self.user_agent,
            None,
        );
        let (resp, first) = exchange(&mut tls, &req, self.max_response_bytes).await?;
        Ok((resp, handshaken, first))
    }
}

/// Sends a request and reads the whole response.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
    max: usize,
) -> Result<(http1::Response, Instant), AttemptError> {
    write_all(stream, request, "request").await?;
    http1::read_response(stream, max).await
}
