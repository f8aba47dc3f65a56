//! The client side of SOCKS4/4a and SOCKS5 (RFC 1928, with RFC 1929 username/password), up to
//! the point where the tunnel to the judge is open.
//!
//! The byte layouts are built by pure functions (tested against the RFCs' examples); the async
//! handshakes read the exact reply sizes and classify what came back: a wrong version byte is
//! another protocol, a refused method or bad credentials is an auth failure, a non-success reply
//! to CONNECT is the proxy refusing to reach the judge.

use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::{AttemptError, read_exact, write_all};
use crate::outcome::FailureReason;
use crate::proxy::{Credentials, Endpoint, Host};

const SOCKS4_GRANTED: u8 = 0x5A;
const SOCKS4_REJECTED: u8 = 0x5B;
const SOCKS5_NO_AUTH: u8 = 0x00;
const SOCKS5_USER_PASS: u8 = 0x02;
const SOCKS5_NO_ACCEPTABLE: u8 = 0xFF;

/// The SOCKS4 CONNECT request: an IPv4 destination, or SOCKS4a (IP `0.0.0.1` plus the name) for a
/// name. `None` for an IPv6 destination, which SOCKS4 cannot express.
pub(crate) fn socks4_request(dest: &Endpoint, userid: &str) -> Option<Vec<u8>> {
    let port = dest.port.get().to_be_bytes();
    let mut req = vec![4, 1, port[0], port[1]];
    match &dest.host {
        Host::Ip(IpAddr::V4(ip)) => {
            req.extend_from_slice(&ip.octets());
            req.extend_from_slice(userid.as_bytes());
            req.push(0);
        }
        Host::Ip(IpAddr::V6(_)) => return None,
        Host::Name(name) => {
            req.extend_from_slice(&[0, 0, 0, 1]);
            req.extend_from_slice(userid.as_bytes());
            req.push(0);
            req.extend_from_slice(name.as_bytes());
            req.push(0);
        }
    }
    Some(req)
}

/// Opens a SOCKS4(a) tunnel to `dest`; the userid is the username when there are credentials.
pub(crate) async fn socks4<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    dest: &Endpoint,
    auth: Option<&Credentials>,
) -> Result<(), AttemptError> {
    let userid = auth.map(|c| c.username.as_str()).unwrap_or_default();
    let req = socks4_request(dest, userid).ok_or_else(|| {
        AttemptError::new(
            FailureReason::Io,
            "socks4 request",
            "SOCKS4 cannot reach an IPv6 judge",
        )
    })?;
    write_all(stream, &req, "socks4 request").await?;
    let mut reply = [0u8; 8];
    read_exact(stream, &mut reply, "socks4 reply").await?;
    // The reply's version byte is 0 by the spec; some servers echo 4.
    if reply[0] != 0 && reply[0] != 4 {
        return Err(AttemptError::mismatch(
            "socks4 reply",
            format_args!("version byte {:#04x}", reply[0]),
        ));
    }
    match reply[1] {
        SOCKS4_GRANTED => Ok(()),
        SOCKS4_REJECTED => Err(AttemptError::new(
            FailureReason::Rejected,
            "socks4 reply",
            "request rejected or failed",
        )),
        // 0x5C/0x5D: the server could not confirm the userid with identd.
        0x5C | 0x5D => Err(AttemptError::new(
            FailureReason::AuthFailed,
            "socks4 reply",
            format_args!("identd refused (code {:#04x})", reply[1]),
        )),
        code => Err(AttemptError::mismatch(
            "socks4 reply",
            format_args!("unknown reply code {code:#04x}"),
        )),
    }
}

/// The SOCKS5 greeting: no authentication, plus username/password when we have credentials.
pub(crate) fn socks5_greeting(with_auth: bool) -> &'static [u8] {
    if with_auth {
        &[5, 2, SOCKS5_NO_AUTH, SOCKS5_USER_PASS]
    } else {
        &[5, 1, SOCKS5_NO_AUTH]
    }
}

/// The RFC 1929 username/password request.
pub(crate) fn socks5_auth_request(c: &Credentials) -> Vec<u8> {
    // `Credentials` guarantees at most 255 bytes each.
    let mut req = Vec::with_capacity(3 + c.username.len() + c.password.len());
    req.push(1);
    req.push(c.username.len() as u8);
    req.extend_from_slice(c.username.as_bytes());
    req.push(c.password.len() as u8);
    req.extend_from_slice(c.password.as_bytes());
    req
}

/// The SOCKS5 CONNECT request, with the destination as an address or a domain name.
pub(crate) fn socks5_connect_request(dest: &Endpoint) -> Vec<u8> {
    let mut req = vec![5, 1, 0];
    match &dest.host {
        Host::Ip(IpAddr::V4(ip)) => {
            req.push(1);
            req.extend_from_slice(&ip.octets());
        }
        Host::Ip(IpAddr::V6(ip)) => {
            req.push(4);
            req.extend_from_slice(&ip.octets());
        }
        Host::Name(name) => {
            // `Host` names are at most 253 bytes.
            req.push(3);
            req.push(name.len() as u8);
            req.extend_from_slice(name.as_bytes());
        }
    }
    req.extend_from_slice(&dest.port.get().to_be_bytes());
    req
}

/// Opens a SOCKS5 tunnel to `dest`, authenticating if the proxy asks and we can.
pub(crate) async fn socks5<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    dest: &Endpoint,
    auth: Option<&Credentials>,
) -> Result<(), AttemptError> {
    write_all(stream, socks5_greeting(auth.is_some()), "socks5 greeting").await?;
    let mut choice = [0u8; 2];
    read_exact(stream, &mut choice, "socks5 greeting").await?;
    if choice[0] != 5 {
        return Err(AttemptError::mismatch(
            "socks5 greeting",
            format_args!("version byte {:#04x}", choice[0]),
        ));
    }
    match (choice[1], auth) {
        (SOCKS5_NO_AUTH, _) => {}
        (SOCKS5_USER_PASS, Some(creds)) => {
            write_all(stream, &socks5_auth_request(creds), "socks5 auth").await?;
            let mut status = [0u8; 2];
            read_exact(stream, &mut status, "socks5 auth").await?;
            if status[1] != 0 {
                return Err(AttemptError::new(
                    FailureReason::AuthFailed,
                    "socks5 auth",
                    "credentials refused",
                ));
            }
        }
        (SOCKS5_NO_ACCEPTABLE, _) => {
            return Err(AttemptError::new(
                FailureReason::AuthFailed,
                "socks5 greeting",
                "no acceptable authentication method",
            ));
        }
        (method, _) => {
            return Err(AttemptError::mismatch(
                "socks5 greeting",
                format_args!("method {method:#04x} was not offered"),
            ));
        }
    }
    write_all(stream, &socks5_connect_request(dest), "socks5 connect").await?;
    let mut reply = [0u8; 4];
    read_exact(stream, &mut reply, "socks5 reply").await?;
    if reply[0] != 5 {
        return Err(AttemptError::mismatch(
            "socks5 reply",
            format_args!("version byte {:#04x}", reply[0]),
        ));
    }
    if reply[1] != 0 {
        return Err(AttemptError::new(
            FailureReason::Rejected,
            "socks5 reply",
            format_args!("CONNECT refused (code {:#04x})", reply[1]),
        ));
    }
    // Skip the bound address: its length depends on its type.
    let bound_len = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            read_exact(stream, &mut len, "socks5 reply").await?;
            len[0] as usize + 2
        }
        atyp => {
            return Err(AttemptError::mismatch(
                "socks5 reply",
                format_args!("address type {atyp:#04x}"),
            ));
        }
    };
    let mut bound = [0u8; 255 + 2];
    read_exact(stream, &mut bound[..bound_len], "socks5 reply").await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn endpoint(s: &str) -> Endpoint {
        let (h, p) = crate::proxy::split_host_port(s).unwrap();
        Endpoint {
            host: h.parse().unwrap(),
            port: p.parse().unwrap(),
        }
    }

    #[test]
    fn socks4_requests_match_the_protocol() {
        let req = socks4_request(&endpoint("1.2.3.4:80"), "bob").unwrap();
        assert_eq!(req, [4, 1, 0, 80, 1, 2, 3, 4, b'b', b'o', b'b', 0]);
        let req = socks4_request(&endpoint("judge.example:8080"), "").unwrap();
        let mut want = vec![4, 1, 0x1f, 0x90, 0, 0, 0, 1, 0];
        want.extend_from_slice(b"judge.example\0");
        assert_eq!(req, want);
        assert!(socks4_request(&endpoint("[::1]:80"), "").is_none());
    }

    #[test]
    fn socks5_requests_match_rfc1928() {
        assert_eq!(socks5_greeting(false), [5, 1, 0]);
        assert_eq!(socks5_greeting(true), [5, 2, 0, 2]);
        assert_eq!(
            socks5_connect_request(&endpoint("10.0.0.1:443")),
            [5, 1, 0, 1, 10, 0, 0, 1, 1, 0xbb]
        );
        let mut want = vec![5, 1, 0, 3, 9];
        want.extend_from_slice(b"localhost");
        want.extend_from_slice(&[0, 80]);
        assert_eq!(socks5_connect_request(&endpoint("localhost:80")), want);
        let v6 = socks5_connect_request(&endpoint("[::1]:80"));
        assert_eq!((v6[3], v6.len()), (4, 4 + 16 + 2));
        let auth = socks5_auth_request(&Credentials::new("u", "pw").unwrap());
        assert_eq!(auth, [1, 1, b'u', 2, b'p', b'w']);
    }

    /// Pairs of (bytes the server expects, bytes it answers).
    type Script = Vec<(Vec<u8>, Vec<u8>)>;

    /// Runs `handshake` against a scripted server that checks what it receives and answers with
    /// canned replies, one per expected request.
    async fn scripted<F, Fut>(script: Script, handshake: F) -> Result<(), AttemptError>
    where
        F: FnOnce(tokio::io::DuplexStream) -> Fut,
        Fut: std::future::Future<Output = Result<(), AttemptError>>,
    {
        let (client, mut server) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move {
            for (expect, answer) in script {
                let mut got = vec![0u8; expect.len()];
                server.read_exact(&mut got).await.unwrap();
                assert_eq!(got, expect);
                server.write_all(&answer).await.unwrap();
            }
        });
        let result = handshake(client).await;
        server.await.unwrap();
        result
    }

    #[tokio::test]
    async fn socks5_with_credentials_authenticates_then_connects() {
        let creds = Credentials::new("u", "pw").unwrap();
        let dest = endpoint("localhost:80");
        let script = vec![
            (vec![5, 2, 0, 2], vec![5, 2]),
            (socks5_auth_request(&creds), vec![1, 0]),
            (
                socks5_connect_request(&dest),
                vec![5, 0, 0, 3, 4, b'h', b'o', b's', b't', 0, 80],
            ),
        ];
        let c = creds.clone();
        scripted(script, |mut s| async move {
            socks5(&mut s, &dest, Some(&c)).await
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn socks5_failures_are_classified() {
        let dest = endpoint("1.2.3.4:80");
        let creds = Credentials::new("u", "bad").unwrap();
        let cases: Vec<(Script, Option<Credentials>, FailureReason)> = vec![
            (
                vec![(vec![5, 1, 0], vec![5, 0xff])],
                None,
                FailureReason::AuthFailed,
            ),
            (
                vec![
                    (vec![5, 2, 0, 2], vec![5, 2]),
                    (socks5_auth_request(&creds), vec![1, 1]),
                ],
                Some(creds.clone()),
                FailureReason::AuthFailed,
            ),
            (
                vec![
                    (vec![5, 1, 0], vec![5, 0]),
                    (socks5_connect_request(&dest), vec![5, 2, 0, 1]),
                ],
                None,
                FailureReason::Rejected,
            ),
            (
                vec![(vec![5, 1, 0], b"HT".to_vec())],
                None,
                FailureReason::ProtocolMismatch,
            ),
            (
                vec![(vec![5, 1, 0], vec![5, 2])],
                None,
                FailureReason::ProtocolMismatch,
            ),
        ];
        for (script, auth, want) in cases {
            let d = dest.clone();
            let err = scripted(script, |mut s| async move {
                socks5(&mut s, &d, auth.as_ref()).await
            })
            .await
            .unwrap_err();
            assert_eq!(err.reason, want, "{err}");
        }
    }

    #[tokio::test]
    async fn socks4a_sends_the_name_and_classifies_replies() {
        let dest = endpoint("judge.example:80");
        let req = socks4_request(&dest, "").unwrap();
        for (reply, want) in [
            (vec![0, SOCKS4_GRANTED, 0, 0, 0, 0, 0, 0], None),
            (vec![4, SOCKS4_GRANTED, 0, 0, 0, 0, 0, 0], None),
            (
                vec![0, SOCKS4_REJECTED, 0, 0, 0, 0, 0, 0],
                Some(FailureReason::Rejected),
            ),
            (
                vec![0, 0x5D, 0, 0, 0, 0, 0, 0],
                Some(FailureReason::AuthFailed),
            ),
            (b"HTTP/1.1".to_vec(), Some(FailureReason::ProtocolMismatch)),
        ] {
            let d = dest.clone();
            let got = scripted(vec![(req.clone(), reply)], |mut s| async move {
                socks4(&mut s, &d, None).await
            })
            .await
            .err()
            .map(|e| e.reason);
            assert_eq!(got, want);
        }
    }
}
