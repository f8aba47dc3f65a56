//! The HTTPS path: an HTTP `CONNECT` tunnel through the proxy, then TLS to the judge inside it.
//!
//! TLS is end to end with the judge, so a proxy that answers CONNECT but cannot really tunnel, or
//! that intercepts TLS, fails here (as [`FailureReason::Tls`]) rather than passing for alive.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::conn::{AttemptError, write_all};
use super::http1;
use crate::outcome::FailureReason;
use crate::proxy::Credentials;

/// Asks the proxy to open a tunnel to `authority` (`host:port`); succeeds on a 2xx answer.
pub(crate) async fn http_connect(
    stream: &mut TcpStream,
    authority: &str,
    user_agent: &str,
    auth: Option<&Credentials>,
) -> Result<(), AttemptError> {
    let req = http1::connect_request(authority, user_agent, auth);
    write_all(stream, &req, "CONNECT").await?;
    match http1::read_connect_head(stream).await? {
        200..=299 => Ok(()),
        status => Err(AttemptError::new(
            http1::status_failure(status),
            "CONNECT",
            format_args!("proxy answered {status}"),
        )),
    }
}

/// Starts TLS with the judge over an open tunnel. Any handshake failure is a TLS failure: once the
/// tunnel is up, the proxy's only job is to pass bytes, so a broken handshake means it did not.
pub(crate) async fn tls(
    stream: TcpStream,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
) -> Result<TlsStream<TcpStream>, AttemptError> {
    TlsConnector::from(config)
        .connect(server_name, stream)
        .await
        .map_err(|e| AttemptError::new(FailureReason::Tls, "TLS handshake", e))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A one-shot proxy that reads the CONNECT head and answers `answer`.
    async fn answer_connect(answer: &'static [u8]) -> Result<(), AttemptError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let mut got = Vec::new();
            while !got.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got.starts_with(b"CONNECT judge.example:443 HTTP/1.1\r\n"));
            s.write_all(answer).await.unwrap();
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let result = http_connect(&mut stream, "judge.example:443", "ua", None).await;
        server.await.unwrap();
        result
    }

    #[tokio::test]
    async fn connect_statuses_are_classified() {
        assert!(
            answer_connect(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .is_ok()
        );
        let err = answer_connect(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            .await
            .unwrap_err();
        assert_eq!(err.reason, FailureReason::AuthFailed);
        let err = answer_connect(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await
            .unwrap_err();
        assert_eq!(err.reason, FailureReason::Rejected);
    }
}
