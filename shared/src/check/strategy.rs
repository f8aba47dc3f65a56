//! Which protocols to try on one proxy, in what order, and what the attempts add up to.
//!
//! Kept apart from the I/O so the rules can be read (and tested) in one place:
//! 1. every listed protocol is tried (in [`Protocol::ALL`] order);
//! 2. while nothing has worked and every failure so far only says "not this protocol"
//!    ([`FailureReason::ProtocolMismatch`], or [`FailureReason::Reset`]: a SOCKS server hangs up
//!    on an HTTP request), the other protocols are probed one by one — this also covers entries
//!    listed without a protocol, and mislabelled ones;
//! 3. the sibling (http<->https, socks4<->socks5) of each protocol that worked is tried, so that
//!    everything that really works is recorded; so is the sibling of a listed protocol the proxy
//!    understood but refused (an HTTP proxy listed as `https` that refuses CONNECT may still
//!    forward plain HTTP);
//! 4. a failure to connect at all (refused, connect timeout, unreachable) or the check's deadline
//!    ends the check at once: no other protocol can help.

use crate::outcome::FailureReason;
use crate::proxy::{Protocol, ProtocolSet};

/// The state of one proxy's check: what was tried, what worked, what failed how.
#[derive(Debug, Clone)]
pub(crate) struct Strategy {
    listed: ProtocolSet,
    /// Protocols this checker can test at all (no HTTPS judge: no Https).
    testable: ProtocolSet,
    tried: ProtocolSet,
    worked: ProtocolSet,
    /// Listed protocols the proxy understood but refused (their siblings are worth a try).
    refused: ProtocolSet,
    /// The first failure that shows the proxy speaks the protocol but does not work.
    conclusive: Option<FailureReason>,
    /// A failure that ends the check (connection-level, or out of time).
    fatal: Option<FailureReason>,
    mismatch: bool,
    reset: bool,
}

/// The protocol that shares the proxy's software with `p`: a working one suggests the other.
pub(crate) fn sibling(p: Protocol) -> Protocol {
    match p {
        Protocol::Http => Protocol::Https,
        Protocol::Https => Protocol::Http,
        Protocol::Socks4 => Protocol::Socks5,
        Protocol::Socks5 => Protocol::Socks4,
    }
}

fn ends_check(reason: FailureReason) -> bool {
    matches!(
        reason,
        FailureReason::Refused
            | FailureReason::ConnectTimeout
            | FailureReason::Unreachable
            | FailureReason::Timeout
    )
}

impl Strategy {
    pub fn new(listed: ProtocolSet, testable: ProtocolSet) -> Self {
        Strategy {
            listed,
            testable,
            tried: ProtocolSet::EMPTY,
            worked: ProtocolSet::EMPTY,
            refused: ProtocolSet::EMPTY,
            conclusive: None,
            fatal: None,
            mismatch: false,
            reset: false,
        }
    }

    /// The next protocol to try, or `None` when the check is over.
    pub fn next(&self) -> Option<Protocol> {
        if self.fatal.is_some() {
            return None;
        }
        let untried = |p: &Protocol| self.testable.contains(*p) && !self.tried.contains(*p);
        let listed = Protocol::ALL
            .into_iter()
            .filter(|p| self.listed.contains(*p))
            .find(untried);
        if listed.is_some() {
            return listed;
        }
        if self.worked.is_empty() && self.conclusive.is_none() {
            let probe = Protocol::ALL.into_iter().find(untried);
            if probe.is_some() {
                return probe;
            }
        }
        self.worked
            .union(self.refused)
            .iter()
            .map(sibling)
            .find(untried)
    }

    /// Records how the attempt with `p` went.
    pub fn record(&mut self, p: Protocol, result: Result<(), FailureReason>) {
        self.tried.insert(p);
        match result {
            Ok(()) => self.worked.insert(p),
            Err(reason) if ends_check(reason) => self.fatal = Some(reason),
            Err(FailureReason::ProtocolMismatch) => self.mismatch = true,
            Err(FailureReason::Reset) => self.reset = true,
            Err(reason) => {
                if reason == FailureReason::Rejected && self.listed.contains(p) {
                    self.refused.insert(p);
                }
                self.conclusive.get_or_insert(reason);
            }
        }
    }

    /// Every protocol that worked, or the one reason that best explains why none did: a
    /// conclusive failure, else what ended the check, else "spoke something else", else "hung up".
    pub fn verdict(&self) -> Result<ProtocolSet, FailureReason> {
        if !self.worked.is_empty() {
            return Ok(self.worked);
        }
        Err(self
            .conclusive
            .or(self.fatal)
            .or(self.mismatch.then_some(FailureReason::ProtocolMismatch))
            .or(self.reset.then_some(FailureReason::Reset))
            .unwrap_or(FailureReason::ProtocolMismatch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureReason as F;
    use Protocol::*;

    fn all() -> ProtocolSet {
        Protocol::ALL.into_iter().collect()
    }

    /// Drives a strategy with a fixed answer per protocol; returns the order tried and the verdict.
    fn run(
        listed: &[Protocol],
        testable: ProtocolSet,
        answer: impl Fn(Protocol) -> Result<(), FailureReason>,
    ) -> (Vec<Protocol>, Result<ProtocolSet, FailureReason>) {
        let mut s = Strategy::new(listed.iter().copied().collect(), testable);
        let mut order = Vec::new();
        while let Some(p) = s.next() {
            assert!(!order.contains(&p), "{p} tried twice");
            order.push(p);
            s.record(p, answer(p));
        }
        (order, s.verdict())
    }

    fn set(ps: &[Protocol]) -> ProtocolSet {
        ps.iter().copied().collect()
    }

    #[test]
    fn working_listed_protocol_then_its_sibling_only() {
        let (order, v) = run(&[Http], all(), |_| Ok(()));
        assert_eq!(order, [Http, Https]);
        assert_eq!(v, Ok(set(&[Http, Https])));
        let (order, v) = run(&[Socks4], all(), |p| {
            if p == Socks4 { Ok(()) } else { Err(F::Reset) }
        });
        assert_eq!(order, [Socks4, Socks5]);
        assert_eq!(v, Ok(set(&[Socks4])));
    }

    #[test]
    fn unlisted_entry_is_probed_in_order_until_one_works() {
        let (order, v) = run(
            &[],
            all(),
            |p| {
                if p == Socks5 { Ok(()) } else { Err(F::Reset) }
            },
        );
        assert_eq!(order, [Http, Socks5, Socks4]);
        assert_eq!(v, Ok(set(&[Socks5])));
    }

    #[test]
    fn mislabelled_entry_is_found_after_a_mismatch() {
        let (order, v) = run(&[Http], all(), |p| match p {
            Http => Err(F::ProtocolMismatch),
            Socks5 => Ok(()),
            _ => Err(F::ProtocolMismatch),
        });
        assert_eq!(order, [Http, Socks5, Socks4]);
        assert_eq!(v, Ok(set(&[Socks5])));
    }

    #[test]
    fn conclusive_failure_of_a_listed_protocol_stops_probing() {
        let (order, v) = run(&[Http], all(), |_| Err(F::Tampered));
        assert_eq!(order, [Http]);
        assert_eq!(v, Err(F::Tampered));
        // A probe that finds a protocol spoken but failing stops the probing too.
        let (order, v) = run(&[], all(), |p| match p {
            Http => Err(F::Reset),
            _ => Err(F::AuthFailed),
        });
        assert_eq!(order, [Http, Socks5]);
        assert_eq!(v, Err(F::AuthFailed));
    }

    #[test]
    fn connection_failures_end_the_check_at_once() {
        for reason in [F::Refused, F::ConnectTimeout, F::Unreachable, F::Timeout] {
            let (order, v) = run(&[Http, Socks5], all(), |_| Err(reason));
            assert_eq!(order, [Http]);
            assert_eq!(v, Err(reason));
        }
        // What already worked stays recorded.
        let (order, v) = run(&[Http], all(), |p| {
            if p == Http { Ok(()) } else { Err(F::Timeout) }
        });
        assert_eq!(order, [Http, Https]);
        assert_eq!(v, Ok(set(&[Http])));
    }

    #[test]
    fn all_mismatches_or_resets_give_the_most_telling_reason() {
        let (order, v) = run(&[Http], all(), |_| Err(F::ProtocolMismatch));
        assert_eq!(order.len(), 4);
        assert_eq!(v, Err(F::ProtocolMismatch));
        let (_, v) = run(&[], all(), |_| Err(F::Reset));
        assert_eq!(v, Err(F::Reset));
    }

    #[test]
    fn untestable_protocols_are_never_tried() {
        let no_https = set(&[Http, Socks4, Socks5]);
        let (order, v) = run(&[Https], no_https, |p| {
            if p == Http { Ok(()) } else { Err(F::Reset) }
        });
        assert_eq!(order, [Http]);
        assert_eq!(v, Ok(set(&[Http])));
    }

    #[test]
    fn refused_connect_leads_to_plain_http() {
        let (order, v) = run(&[Https], all(), |p| {
            if p == Http { Ok(()) } else { Err(F::Rejected) }
        });
        assert_eq!(order, [Https, Http]);
        assert_eq!(v, Ok(set(&[Http])));
    }

    #[test]
    fn every_listed_protocol_is_tried() {
        let (order, v) = run(&[Http, Socks5], all(), |p| {
            if p == Socks5 { Ok(()) } else { Err(F::Reset) }
        });
        assert_eq!(order, [Http, Socks5, Socks4]);
        assert_eq!(v, Ok(set(&[Socks5])));
    }
}
