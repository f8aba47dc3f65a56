//! Connections to a proxy, and the one error type every step of an attempt reports.
//!
//! Every step (connect, handshake, request, response, verification) fails with an
//! [`AttemptError`]: the [`FailureReason`] that ends up in the published result, plus the step and
//! a detail for the debug log. The mapping from I/O errors to reasons lives here, in one place, so
//! that "refused", "reset" and "closed early" mean the same thing whichever protocol was spoken.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::outcome::FailureReason;

/// Why one protocol attempt against one proxy failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {reason:?}: {detail}")]
pub(crate) struct AttemptError {
    pub reason: FailureReason,
    /// The step that failed ("connect", "socks5 greeting", "response", ...).
    pub step: &'static str,
    pub detail: String,
}

impl AttemptError {
    pub fn new(reason: FailureReason, step: &'static str, detail: impl fmt::Display) -> Self {
        AttemptError {
            reason,
            step,
            detail: detail.to_string(),
        }
    }

    pub fn io(step: &'static str, e: &io::Error) -> Self {
        AttemptError::new(io_reason(e), step, e)
    }

    /// The peer did not answer in the protocol we spoke ("not this protocol, maybe another").
    pub fn mismatch(step: &'static str, detail: impl fmt::Display) -> Self {
        AttemptError::new(FailureReason::ProtocolMismatch, step, detail)
    }

    /// The connection closed before the peer said anything useful.
    pub fn closed(step: &'static str) -> Self {
        AttemptError::new(FailureReason::Reset, step, "connection closed by the proxy")
    }
}

/// Maps an I/O error to the reason a result publishes.
pub(crate) fn io_reason(e: &io::Error) -> FailureReason {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => FailureReason::Refused,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            FailureReason::Reset
        }
        K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
            FailureReason::Unreachable
        }
        K::TimedOut => FailureReason::Timeout,
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::ENETDOWN | libc::EHOSTDOWN) => {
                FailureReason::Unreachable
            }
            _ => FailureReason::Io,
        },
    }
}

/// Opens a fresh TCP connection (never pooled: a check must see the proxy as a new client does).
pub(crate) async fn connect(
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<TcpStream, AttemptError> {
    match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(AttemptError::new(
            FailureReason::ConnectTimeout,
            "connect",
            format_args!("{addr} did not accept within {connect_timeout:?}"),
        )),
        Ok(Err(e)) => Err(AttemptError::io("connect", &e)),
        Ok(Ok(stream)) => {
            // Requests are written whole; Nagle would only add latency to the measurement.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

pub(crate) async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    step: &'static str,
) -> Result<(), AttemptError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| AttemptError::io(step, &e))?;
    stream.flush().await.map_err(|e| AttemptError::io(step, &e))
}

/// Reads exactly `buf.len()` bytes of a handshake reply; the peer closing early is a reset.
pub(crate) async fn read_exact<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    step: &'static str,
) -> Result<(), AttemptError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(AttemptError::closed(step)),
        Err(e) => Err(AttemptError::io(step, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_published_reasons() {
        let cases = [
            (io::ErrorKind::ConnectionRefused, FailureReason::Refused),
            (io::ErrorKind::ConnectionReset, FailureReason::Reset),
            (io::ErrorKind::BrokenPipe, FailureReason::Reset),
            (io::ErrorKind::UnexpectedEof, FailureReason::Reset),
            (io::ErrorKind::HostUnreachable, FailureReason::Unreachable),
            (io::ErrorKind::TimedOut, FailureReason::Timeout),
            (io::ErrorKind::PermissionDenied, FailureReason::Io),
        ];
        for (kind, want) in cases {
            assert_eq!(io_reason(&io::Error::from(kind)), want, "{kind:?}");
        }
        let raw = io::Error::from_raw_os_error(libc::ENETUNREACH);
        assert_eq!(io_reason(&raw), FailureReason::Unreachable);
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = connect(addr, Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.reason, FailureReason::Refused);
    }

    #[tokio::test]
    async fn short_handshake_reply_is_a_reset() {
        let (mut client, mut server) = tokio::io::duplex(64);
        server.write_all(&[5]).await.unwrap();
        drop(server);
        let mut buf = [0u8; 2];
        let err = read_exact(&mut client, &mut buf, "greeting")
            .await
            .unwrap_err();
        assert_eq!(err.reason, FailureReason::Reset);
    }
}
