//! Injected faults: a fixed-window rate limit (429) and seeded random server errors (500/503).
//!
//! Both are decided under one lock, in arrival order, so a run that sends the same requests one after the
//! other with the same seed sees the same faults at the same places. Time is passed in, so the window logic
//! is tested without sleeping.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WINDOW: Duration = Duration::from_secs(1);

/// What the fault layer decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Over the rate limit: answer 429 with `Retry-After: wait_secs`.
    Throttled { wait_secs: u64 },
    /// Answer this server error (500 or 503) without applying the request.
    Failed(StatusCode),
}

/// At most `limit` requests per one-second window; the window starts at the first request after the
/// previous one ended. Throttled requests do not count, as in DRF (which only records allowed requests).
#[derive(Debug)]
struct FixedWindow {
    limit: u32,
    started: Option<Instant>,
    count: u32,
}

impl FixedWindow {
    fn admit(&mut self, now: Instant) -> Result<(), Fault> {
        let started = match self.started {
            Some(started) if now.duration_since(started) < WINDOW => started,
            _ => {
                self.started = Some(now);
                self.count = 0;
                now
            }
        };
        if self.count >= self.limit {
            let left = WINDOW.saturating_sub(now.duration_since(started));
            let wait_secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            return Err(Fault::Throttled { wait_secs: wait_secs.max(1) });
        }
        self.count += 1;
        Ok(())
    }
}

#[derive(Debug)]
pub(crate) struct Faults {
    window: Option<FixedWindow>,
    fail_rate: f64,
    rng: StdRng,
}

impl Faults {
    /// `fail_rate` must be within 0..=1 (checked when the config is validated).
    pub(crate) fn new(rate_limit: Option<u32>, fail_rate: f64, seed: u64) -> Self {
        Faults {
            window: rate_limit.map(|limit| FixedWindow { limit, started: None, count: 0 }),
            fail_rate,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Decides one request: throttled first (a throttled request draws nothing from the RNG), then failed
    /// with probability `fail_rate`, as 500 or 503 with equal odds.
    pub(crate) fn check(&mut self, now: Instant) -> Result<(), Fault> {
        if let Some(window) = &mut self.window {
            window.admit(now)?;
        }
        if self.fail_rate > 0.0 && self.rng.random::<f64>() < self.fail_rate {
            let status = if self.rng.random::<bool>() {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            return Err(Fault::Failed(status));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_admits_the_limit_then_throttles_until_it_ends() {
        let mut faults = Faults::new(Some(3), 0.0, 0);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(faults.check(t0 + Duration::from_millis(i * 10)), Ok(()));
        }
        assert_eq!(faults.check(t0 + Duration::from_millis(500)), Err(Fault::Throttled { wait_secs: 1 }));
        assert_eq!(faults.check(t0 + Duration::from_millis(999)), Err(Fault::Throttled { wait_secs: 1 }));
        assert_eq!(faults.check(t0 + Duration::from_millis(1000)), Ok(()));
    }

    #[test]
    fn throttled_requests_do_not_use_up_the_next_window() {
        let mut faults = Faults::new(Some(1), 0.0, 0);
        let t0 = Instant::now();
        assert_eq!(faults.check(t0), Ok(()));
        for _ in 0..10 {
            assert!(faults.check(t0 + Duration::from_millis(100)).is_err());
        }
        assert_eq!(faults.check(t0 + Duration::from_millis(1100)), Ok(()));
        assert!(faults.check(t0 + Duration::from_millis(1200)).is_err());
    }

    #[test]
    fn same_seed_gives_the_same_failures() {
        let run = |seed| {
            let mut faults = Faults::new(None, 0.4, seed);
            let now = Instant::now();
            (0..200).map(|_| faults.check(now)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let failures = run(7).iter().filter(|r| r.is_err()).count();
        assert!((40..=120).contains(&failures), "{failures} failures for p = 0.4");
    }

    #[test]
    fn fail_rate_one_fails_everything_with_both_statuses_and_zero_never_fails() {
        let now = Instant::now();
        let mut always = Faults::new(None, 1.0, 3);
        let statuses: Vec<_> = (0..100).map(|_| always.check(now)).collect();
        assert!(statuses.contains(&Err(Fault::Failed(StatusCode::INTERNAL_SERVER_ERROR))));
        assert!(statuses.contains(&Err(Fault::Failed(StatusCode::SERVICE_UNAVAILABLE))));
        assert!(statuses.iter().all(Result::is_err));
        let mut never = Faults::new(None, 0.0, 3);
        assert!((0..100).all(|_| never.check(now).is_ok()));
    }
}
