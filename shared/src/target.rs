//! The target guard: which addresses the checker may connect to.
//!
//! Scraped lists are hostile input. An entry such as `169.254.169.254:80` or `10.0.0.1:6379`
//! would turn the checker, running inside a cloud account, into a probe of that account's own
//! network (metadata credentials, internal services). Every proxy address therefore passes through
//! [`resolve`] before any connection: it yields the one [`SocketAddr`] the caller connects to, so
//! the address that was checked is the address that is used (no second DNS lookup, no rebinding).
//!
//! Addresses fall into three classes, kept in one table per family so a reader sees every range:
//! - **public**: allowed;
//! - **private** (loopback, RFC 1918, CGNAT, link-local, unique-local, benchmarking, ...):
//!   forbidden unless [`TargetPolicy::allow_private`] is set, which exists for tests and lab
//!   networks;
//! - **never**: unspecified, multicast, broadcast/reserved, documentation, and the cloud metadata
//!   endpoints. No proxy can live there, or contacting it is exactly the attack this guard exists
//!   for, so even `allow_private` does not open them.
//!
//! Documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32) are never
//! contacted: they are not routed on the Internet, so an entry there is junk — and examples and
//! test data use them, which must never turn into traffic to whatever a network put there.
//!
//! IPv6 addresses that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, the deprecated
//! IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96` and 6to4 `2002::/16`) are judged by the IPv4
//! address inside, since that is where the packets end up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::outcome::RejectReason;
use crate::proxy::{Host, Port};

/// What the operator allows beyond public addresses.
#[derive(Clone, Copy, Debug, Default)]
pub struct TargetPolicy {
    /// Allow loopback, private, link-local and other non-public unicast ranges (tests, labs).
    /// Metadata endpoints, multicast, broadcast and unspecified addresses stay forbidden.
    pub allow_private: bool,
}

impl TargetPolicy {
    /// Whether this policy lets the checker connect to `ip`.
    pub fn permits(self, ip: IpAddr) -> bool {
        match class_of(ip) {
            Public => true,
            Private => self.allow_private,
            Never => false,
        }
    }
}

/// Whether `ip` is outside the public Internet (see the module documentation for the ranges).
/// This is the verdict under the default policy.
pub fn is_forbidden(ip: IpAddr) -> bool {
    class_of(ip) != Public
}

/// Decides where to connect for a proxy at `host:port`, or why not to.
///
/// An IP host is judged directly. A name is resolved once; a name that does not resolve (or whose
/// lookup fails) is [`RejectReason::Invalid`]. If any of its addresses is not permitted, the whole
/// name is [`RejectReason::ForbiddenTarget`]: a name answering with both a public and a private
/// address must not get a chance to reach the private one. Otherwise the first address is used.
pub async fn resolve(
    host: &Host,
    port: Port,
    policy: TargetPolicy,
) -> Result<SocketAddr, RejectReason> {
    let addrs: Vec<SocketAddr> = match host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, port.get())],
        Host::Name(name) => tokio::net::lookup_host((name.as_str(), port.get()))
            .await
            .map_err(|_| RejectReason::Invalid)?
            .collect(),
    };
    choose(&addrs, policy)
}

/// The verdict on everything a host resolved to (see [`resolve`]).
fn choose(addrs: &[SocketAddr], policy: TargetPolicy) -> Result<SocketAddr, RejectReason> {
    if addrs.iter().any(|a| !policy.permits(a.ip())) {
        return Err(RejectReason::ForbiddenTarget);
    }
    addrs.first().copied().ok_or(RejectReason::Invalid)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Public,
    Private,
    Never,
}
use Class::{Never, Private, Public};

/// IPv4 ranges that are not public, as (network, prefix length, class). The most specific range
/// that matches decides, so the metadata blocks can sit inside the private link-local block.
const V4_RANGES: &[(Ipv4Addr, u8, Class)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, Never), // "this network"; 0.0.0.0 reaches localhost
    (Ipv4Addr::new(10, 0, 0, 0), 8, Private),
    (Ipv4Addr::new(100, 64, 0, 0), 10, Private), // shared address space (CGNAT)
    (Ipv4Addr::new(127, 0, 0, 0), 8, Private),   // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16, Private), // link-local
    // AWS: instance metadata .169.254, DNS .169.253, time .169.123, container credentials
    // (ECS, Lambda) .170.2, EKS pod identity .170.23. Other clouds use .169.254 too.
    (Ipv4Addr::new(169, 254, 169, 0), 24, Never),
    (Ipv4Addr::new(169, 254, 170, 0), 24, Never),
    (Ipv4Addr::new(172, 16, 0, 0), 12, Private),
    (Ipv4Addr::new(192, 0, 0, 0), 24, Private), // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24, Never),   // TEST-NET-1 (documentation)
    (Ipv4Addr::new(192, 168, 0, 0), 16, Private),
    (Ipv4Addr::new(198, 18, 0, 0), 15, Private), // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24, Never), // TEST-NET-2 (documentation)
    (Ipv4Addr::new(203, 0, 113, 0), 24, Never),  // TEST-NET-3 (documentation)
    (Ipv4Addr::new(224, 0, 0, 0), 4, Never),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4, Never),     // reserved, and 255.255.255.255 broadcast
];

/// IPv6 ranges that are not public; same rules as [`V4_RANGES`]. Ranges that embed an IPv4
/// address are handled before this table (see [`embedded_v4`]).
const V6_RANGES: &[(Ipv6Addr, u8, Class)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, Never),
    (Ipv6Addr::LOCALHOST, 128, Private),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, Private), // local-use NAT64
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, Private),     // discard-only
    (Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0), 48, Private),  // benchmarking
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, Never),  // documentation
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, Private),     // unique local
    (Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0), 32, Never),  // AWS metadata, DNS, time
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, Private),    // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, Private),    // site-local (deprecated)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, Never),       // multicast
];

fn class_of(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => class_of_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => class_of_v4(v4),
            None => most_specific(
                V6_RANGES
                    .iter()
                    .map(|&(net, len, class)| (u128::from(net), u128::from(v6), 128, len, class)),
            ),
        },
    }
}

fn class_of_v4(ip: Ipv4Addr) -> Class {
    most_specific(V4_RANGES.iter().map(|&(net, len, class)| {
        (
            u128::from(u32::from(net)),
            u128::from(u32::from(ip)),
            32,
            len,
            class,
        )
    }))
}

/// The class of the longest matching prefix, or public. Items are (network, address, address
/// width in bits, prefix length, class).
fn most_specific(ranges: impl Iterator<Item = (u128, u128, u8, u8, Class)>) -> Class {
    ranges
        .filter(|&(net, addr, width, len, _)| {
            let shift = u32::from(width - len);
            len == 0 || (net >> shift) == (addr >> shift)
        })
        .max_by_key(|&(.., len, _)| len)
        .map_or(Public, |(.., class)| class)
}

/// The IPv4 address an IPv6 address delivers to, for the forms that carry one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low32 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low32),
        // IPv4-compatible ::a.b.c.d (deprecated); :: and ::1 have their own meaning.
        [0, 0, 0, 0, 0, 0, _, _] if !matches!(s[6..], [0, 0] | [0, 1]) => Some(low32),
        // NAT64 well-known prefix 64:ff9b::/96
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low32),
        // 6to4 2002:AABB:CCDD::/48
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: TargetPolicy = TargetPolicy {
        allow_private: true,
    };
    const STRICT: TargetPolicy = TargetPolicy {
        allow_private: false,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_addresses_are_allowed_by_both_policies() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_forbidden(ip(s)), "{s} should be public");
            assert!(STRICT.permits(ip(s)) && OPEN.permits(ip(s)), "{s}");
        }
    }

    #[test]
    fn private_ranges_are_forbidden_unless_allowed() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "2001:2::1",
            "100::1",
            "64:ff9b:1::a00:1",
        ] {
            assert!(is_forbidden(ip(s)), "{s} should be forbidden");
            assert!(!STRICT.permits(ip(s)), "{s}");
            assert!(
                OPEN.permits(ip(s)),
                "{s} should be allowed with allow_private"
            );
        }
    }

    #[test]
    fn never_ranges_stay_forbidden_even_when_private_is_allowed() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "169.254.170.2",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "169.254.169.253",
            "169.254.169.123",
            "169.254.170.23",
            "fd00:ec2::254",
            "fd00:ec2::253",
            "fd00:ec2::123",
            "ff02::1",
            "ff05::2",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "2001:db8::1",
        ] {
            assert!(is_forbidden(ip(s)), "{s}");
            assert!(!OPEN.permits(ip(s)), "{s} must never be allowed");
        }
    }

    #[test]
    fn ipv6_forms_carrying_ipv4_are_judged_by_the_ipv4() {
        for (s, forbidden, permitted_when_open) in [
            ("::ffff:127.0.0.1", true, true),
            ("::ffff:10.1.2.3", true, true),
            ("::ffff:169.254.169.254", true, false),
            ("::ffff:1.2.3.4", false, true),
            ("::10.0.0.1", true, true),
            ("::8.8.8.8", false, true),
            ("64:ff9b::192.168.0.1", true, true),
            ("64:ff9b::169.254.169.254", true, false),
            ("64:ff9b::1.2.3.4", false, true),
            ("2002:7f00:1::", true, true),
            ("2002:a9fe:a9fe::1", true, false),
        ] {
            assert_eq!(is_forbidden(ip(s)), forbidden, "{s}");
            assert_eq!(OPEN.permits(ip(s)), permitted_when_open, "{s}");
        }
    }

    fn port(p: u16) -> Port {
        Port::new(p).unwrap()
    }

    #[tokio::test]
    async fn resolve_checks_ip_hosts_directly() {
        let public = Host::Ip(ip("8.8.8.8"));
        assert_eq!(
            resolve(&public, port(3128), STRICT).await,
            Ok(SocketAddr::new(ip("8.8.8.8"), 3128))
        );
        let loopback = Host::Ip(ip("127.0.0.1"));
        assert_eq!(
            resolve(&loopback, port(80), STRICT).await,
            Err(RejectReason::ForbiddenTarget)
        );
        assert_eq!(
            resolve(&loopback, port(80), OPEN).await,
            Ok(SocketAddr::new(ip("127.0.0.1"), 80))
        );
        let metadata = Host::Ip(ip("169.254.169.254"));
        assert_eq!(
            resolve(&metadata, port(80), OPEN).await,
            Err(RejectReason::ForbiddenTarget)
        );
    }

    #[tokio::test]
    async fn resolve_judges_every_address_of_a_name() {
        // "localhost" resolves from /etc/hosts, without any network, to loopback only.
        let name = Host::Name("localhost".to_owned());
        assert_eq!(
            resolve(&name, port(8080), STRICT).await,
            Err(RejectReason::ForbiddenTarget)
        );
        let addr = resolve(&name, port(8080), OPEN).await.unwrap();
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 8080);
    }

    #[test]
    fn one_forbidden_answer_rejects_the_whole_name() {
        let public = SocketAddr::new(ip("93.184.216.34"), 80);
        let private = SocketAddr::new(ip("10.0.0.5"), 80);
        let metadata = SocketAddr::new(ip("169.254.169.254"), 80);
        assert_eq!(choose(&[public], STRICT), Ok(public));
        assert_eq!(
            choose(&[public, private], STRICT),
            Err(RejectReason::ForbiddenTarget)
        );
        assert_eq!(
            choose(&[private, public], STRICT),
            Err(RejectReason::ForbiddenTarget)
        );
        assert_eq!(choose(&[private, public], OPEN), Ok(private));
        assert_eq!(
            choose(&[public, metadata], OPEN),
            Err(RejectReason::ForbiddenTarget)
        );
    }

    #[test]
    fn a_name_with_no_address_is_invalid() {
        assert_eq!(choose(&[], OPEN), Err(RejectReason::Invalid));
        assert_eq!(choose(&[], STRICT), Err(RejectReason::Invalid));
    }
}
