//! The one rate limiter every request of a run goes through, and the run-wide pause a 429 imposes.
//!
//! Savio's quota is per account, so there is a single limiter for all endpoints. It spaces requests evenly
//! (GCRA with a burst of one), so `--rate N` means at most N requests in any one-second window, never a
//! burst of N followed by N more. A 429 pauses *every* request until its `Retry-After` has passed, not only
//! the one that was refused.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

pub(crate) struct Limiter {
    governor: DefaultDirectRateLimiter,
    pause_until: Mutex<Option<Instant>>,
}

impl Limiter {
    pub(crate) fn new(rate: NonZeroU32) -> Limiter {
        let period = Duration::from_secs(1) / rate.get();
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(rate))
            .allow_burst(NonZeroU32::MIN);
        Limiter { governor: RateLimiter::direct(quota), pause_until: Mutex::new(None) }
    }

    /// Waits for any run-wide pause to end, then for this request's turn.
    pub(crate) async fn ready(&self) {
        loop {
            self.wait_pause().await;
            self.governor.until_ready().await;
            // A 429 may have paused the run while this request waited for its turn.
            if self.current_pause().is_none() {
                return;
            }
        }
    }

    async fn wait_pause(&self) {
        while let Some(until) = self.current_pause() {
            tokio::time::sleep_until(until).await;
        }
    }

    fn current_pause(&self) -> Option<Instant> {
        let mut guard = self.pause_until.lock().unwrap_or_else(|p| p.into_inner());
        match *guard {
            Some(t) if t > Instant::now() => Some(t),
            Some(_) => {
                *guard = None;
                None
            }
            None => None,
        }
    }

    /// Pauses every request of the run for `d` (extends, never shortens, a pause already in force).
    pub(crate) fn pause_for(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut guard = self.pause_until.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none_or(|t| t < until) {
            *guard = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spaces_requests_evenly() {
        let l = Limiter::new(NonZeroU32::new(100).unwrap());
        let start = std::time::Instant::now();
        for _ in 0..21 {
            l.ready().await;
        }
        // 21 requests at 100/s with no burst: the last one no sooner than 200 ms after the first.
        assert!(start.elapsed() >= Duration::from_millis(195), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_pause_holds_every_request() {
        let l = Limiter::new(NonZeroU32::new(1000).unwrap());
        l.ready().await;
        l.pause_for(Duration::from_millis(150));
        l.pause_for(Duration::from_millis(10)); // never shortens
        let start = std::time::Instant::now();
        l.ready().await;
        assert!(start.elapsed() >= Duration::from_millis(140), "{:?}", start.elapsed());
    }
}
