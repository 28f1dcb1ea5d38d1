//! When to retry and when to renew. Pure: durations in, durations out.
//!
//! * [`Backoff`]: exponential backoff with jitter for every retry against etcd (the
//!   watch after a broken stream or a compaction, a failed renewal, a failed list).
//!   Each delay is drawn from the upper half of the current step, so no retry is
//!   ever immediate — a stream that breaks at once (flannel #2471's compaction loop)
//!   costs one request per delay, never a hot loop — and nodes that lost etcd
//!   together come back spread out instead of all at once.
//! * [`renew_delay`]: a lease is renewed `margin` before it expires, as flanneld's
//!   `--subnet-lease-renew-margin` does.

use std::time::Duration;

use super::alloc::Rng;

/// The TTL of the etcd lease a subnet lease is attached to: 24 hours, as flanneld.
pub const LEASE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Exponential backoff with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: Rng,
}

impl Backoff {
    /// Delays that start near `base` and double up to `cap`.
    pub fn new(base: Duration, cap: Duration, rng: Rng) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
            rng,
        }
    }

    /// The delay before the next retry: uniform in `[step/2, step]`, where `step`
    /// is `base · 2^attempt` capped at `cap`.
    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .base
            .checked_mul(1u32 << self.attempt.min(20))
            .unwrap_or(self.cap)
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let extra = self.rng.below(u128::from(nanos) + 1);
        half + Duration::from_nanos(u64::try_from(extra).unwrap_or(0))
    }

    /// How many delays were handed out since the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// How long from now until a lease that expires in `remaining` should be renewed:
/// `margin` before its expiry, or now if that has passed.
pub fn renew_delay(remaining: Duration, margin: Duration) -> Duration {
    remaining.saturating_sub(margin)
}

/// Checks `--subnet-lease-renew-margin` against the lease TTL: a margin of the whole
/// TTL or more would renew continuously.
pub fn check_margin(margin: Duration) -> crate::Result<Duration> {
    if margin.is_zero() || margin >= LEASE_TTL {
        return Err(crate::Error::invalid(
            "--subnet-lease-renew-margin",
            margin.as_secs() / 60,
            "minutes from 1 to 1439: how long before the 24 h lease expires to renew it",
        ));
    }
    Ok(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_never_zero() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(5),
            Rng::seeded(1),
        );
        let mut last_step = Duration::ZERO;
        for i in 0..30 {
            let d = b.next_delay();
            let step =
                (Duration::from_millis(100) * (1u32 << i.min(20))).min(Duration::from_secs(5));
            assert!(d >= step / 2 && d <= step, "attempt {i}: {d:?} of {step:?}");
            assert!(d >= Duration::from_millis(50));
            assert!(step >= last_step);
            last_step = step;
        }
        assert_eq!(b.attempts(), 30);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn backoff_jitters() {
        let mut a = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(8),
            Rng::seeded(1),
        );
        let mut b = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(8),
            Rng::seeded(2),
        );
        let da: Vec<_> = (0..5).map(|_| a.next_delay()).collect();
        let db: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert_ne!(da, db);
    }

    #[test]
    fn renewal_timing_and_margin() {
        let m = Duration::from_secs(3600);
        assert_eq!(renew_delay(LEASE_TTL, m), Duration::from_secs(23 * 3600));
        assert_eq!(renew_delay(Duration::from_secs(60), m), Duration::ZERO);
        assert!(check_margin(m).is_ok());
        assert!(check_margin(Duration::ZERO).is_err());
        let err = check_margin(LEASE_TTL).expect_err("too long").to_string();
        assert!(err.contains("--subnet-lease-renew-margin"), "{err}");
        assert!(err.contains("1440"), "{err}");
    }
}
