//! The open-file limit, which caps how many checks can be in flight.
//!
//! Every check in flight holds one socket (two for a moment when an attempt is replaced), so a
//! concurrency above the soft `RLIMIT_NOFILE` would fail with "too many open files" — and those
//! failures would be published as dead proxies. The engine therefore never runs more checks than
//! the limit allows, and the CLI raises the soft limit to the hard one at start.

use std::io;

/// Descriptors kept back for everything that is not a check (stdio, logs, the runtime, TLS roots).
const RESERVED_FDS: u64 = 64;

fn nofile() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim)
}

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = nofile()?;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the struct we pass it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// `requested`, capped so that two descriptors per check fit under the soft open-file limit (with
/// some kept back), and at least 1.
pub fn effective_concurrency(requested: usize) -> usize {
    let soft = nofile().map(|l| l.rlim_cur).unwrap_or(1024);
    cap(requested, soft)
}

fn cap(requested: usize, soft_limit: u64) -> usize {
    let fits = soft_limit.saturating_sub(RESERVED_FDS) / 2;
    let fits = usize::try_from(fits).unwrap_or(usize::MAX);
    requested.min(fits).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_fits_two_fds_per_check_under_the_limit() {
        assert_eq!(cap(512, 1024), 480);
        assert_eq!(cap(100, 1024), 100);
        assert_eq!(cap(10_000, 20_000), 9_968);
        assert_eq!(cap(512, 10), 1);
        assert_eq!(cap(0, 1024), 1);
        // An unlimited soft limit (RLIM_INFINITY) must not overflow.
        assert_eq!(cap(usize::MAX, u64::MAX), ((u64::MAX - 64) / 2) as usize);
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let raised = raise_fd_limit().unwrap();
        let lim = nofile().unwrap();
        assert_eq!(raised, lim.rlim_cur);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        let want = cap(usize::MAX, raised);
        assert_eq!(effective_concurrency(usize::MAX), want);
    }
}
