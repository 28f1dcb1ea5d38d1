//! Least privilege for `ringlay run`: once the host is set up, the daemon keeps
//! only the capabilities it still uses, in every thread, and sets
//! `no_new_privs`.
//!
//! What the running daemon does, and what that needs:
//!
//! - the workers read and write file descriptors opened during set-up (TUN
//!   queues, UDP sockets, io_uring rings): nothing;
//! - the control loop re-reads the leases file, re-creates and renews the lease
//!   in etcd (over the network), publishes tables, and removes the status socket
//!   (and its directory, if it created it) on exit, all as uid 0 on root's files
//!   in root's directories: nothing (without `CAP_DAC_OVERRIDE`, a leases file
//!   root does not own must be readable by its mode). `subnet.env` is written
//!   once, during set-up;
//! - closing the TUN device removes it with its address and routes: nothing;
//! - direct routes (host-gw, `DirectRouting`) are reconciled while running and
//!   deleted on exit, and the `--ip-masq` nftables table is deleted on exit (by
//!   running `nft`): `CAP_NET_ADMIN`, and only then.
//!
//! Capabilities are per thread (capabilities(7)): each thread reduces itself.
//! The endpoint thread needs nothing and gives everything up when it starts; each
//! worker gives everything up once its ring is set up; the main thread (the
//! control loop) keeps what the list above says, after set-up. The control
//! runtime's blocking pool keeps no idle thread, so a thread it starts later is
//! started by the reduced main thread and inherits its sets. [`drop_after_setup`]
//! then checks every thread in `/proc/self/task`.

use std::time::{Duration, Instant};

use crate::sys::caps::{self, CapSet};
use crate::{Error, Result};

/// How long [`drop_after_setup`] waits for every thread to have reduced itself
/// (the workers do so as soon as their rings are set up).
const THREADS_WAIT: Duration = Duration::from_secs(5);

/// A capability the running daemon keeps, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// The capability's bit.
    pub cap: u32,
    /// Why it is kept, for the log.
    pub why: &'static str,
}

/// What a daemon with these features keeps: `CAP_NET_ADMIN` when it manages
/// routes while running (`routes`: host-gw or DirectRouting; the text says
/// which) or deletes the masquerade table on exit (`ip_masq`); else nothing.
pub fn needs(routes: Option<&'static str>, ip_masq: bool) -> Vec<Need> {
    let mut out = Vec::new();
    if let Some(why) = routes {
        out.push(Need {
            cap: caps::CAP_NET_ADMIN,
            why,
        });
    }
    if ip_masq {
        out.push(Need {
            cap: caps::CAP_NET_ADMIN,
            why: "the --ip-masq nftables table is deleted at exit",
        });
    }
    out
}

/// Reduces the calling thread to `needs`, sets `no_new_privs`, waits (up to 5 s)
/// until every thread of the process holds no more, and logs what was kept and
/// why. A thread still holding more after the wait is logged as an error; a
/// failure to reduce this thread is a start-up error.
pub fn drop_after_setup(needs: &[Need]) -> Result<CapSet> {
    let keep = needs
        .iter()
        .fold(CapSet::EMPTY, |s, n| CapSet(s.0 | CapSet::only(n.cap).0));
    let reduced = caps::restrict_thread(keep)
        .map_err(|e| Error::setup("dropping the capabilities the daemon no longer needs", e))?;
    let deadline = Instant::now() + THREADS_WAIT;
    loop {
        match caps::threads_exceeding(keep, reduced.bounding) {
            Ok(left) if left.is_empty() => break,
            Ok(left) if Instant::now() >= deadline => {
                for t in left {
                    tracing::error!(
                        tid = t.tid, thread = %t.name,
                        effective = format_args!("{:#x}", t.caps.effective.0),
                        permitted = format_args!("{:#x}", t.caps.permitted.0),
                        bounding = format_args!("{:#x}", t.caps.bounding.0),
                        no_new_privs = t.caps.no_new_privs,
                        "a thread kept capabilities the daemon dropped"
                    );
                }
                break;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                tracing::error!("cannot check the threads' capabilities: {e}");
                break;
            }
        }
    }
    if needs.is_empty() {
        tracing::info!("capabilities dropped, no_new_privs set; kept none");
    } else {
        let why: Vec<&str> = needs.iter().map(|n| n.why).collect();
        tracing::info!(
            "capabilities dropped, no_new_privs set; kept {}: {}",
            reduced.permitted,
            why.join("; ")
        );
    }
    if !reduced.bounding.is_subset(keep) {
        tracing::info!(
            bounding = %reduced.bounding,
            "the bounding set stays as it was given: narrowing it needs CAP_SETPCAP, which \
             ringlay was not given; no_new_privs keeps it out of reach"
        );
    }
    Ok(reduced.permitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_net_admin_only_for_routes_or_masquerading() {
        assert!(needs(None, false).is_empty());
        let hostgw = needs(Some("routes are managed (host-gw)"), false);
        assert_eq!(hostgw.len(), 1);
        assert_eq!(hostgw[0].cap, caps::CAP_NET_ADMIN);
        let masq = needs(None, true);
        assert_eq!(masq[0].cap, caps::CAP_NET_ADMIN);
        assert!(masq[0].why.contains("--ip-masq"));
        assert_eq!(needs(Some("x"), true).len(), 2);
    }
}
