//! The one rate limiter every request of a run goes through, and the run-wide pause a 429 imposes.
//!
//! Savio's quota is per account, so there is a single limiter for all endpoints. `--rate N` means: at most N
//! requests in any one-second window, and N per second sustained.
//!
//! Why not `governor`: its GCRA decides at the moment a waiter wakes up. With a burst of one (needed so no
//! window ever holds more than N), every wake-up that is late by a timer tick pushes all later requests back
//! by that much, and the achieved rate drifts several percent under N (measured: 192/s for `--rate 200`).
//! A larger burst fixes the drift but lets a window hold more than N. Here each request instead *reserves* its
//! slot when it asks: slots are exactly `1/N` apart whatever the wake-up jitter, so both properties hold.
//! A request that asks after a quiet spell gets the current instant (no credit is saved up: no bursts).
//!
//! Slots are sent exactly `1/N` apart, but they *arrive* with network and scheduling jitter: two requests
//! `N` slots apart can land less than a second apart at the server. The period therefore carries a 2% margin
//! (`--rate 200` paces at 196/s), which absorbs up to 20 ms of jitter across any window; measured in
//! BENCHMARKS.md, without a margin a server saw 203 requests in one second, and 206 with 1% on a loaded
//! machine.
//!
//! Slots alone are not enough when the process stalls (a busy machine, a page fault storm, a stop-the-world
//! in the allocator): requests whose slots passed during a 70 ms stall all wake at its end and leave
//! together, and the window that starts there holds them *and* the next second's worth of on-time slots
//! (measured on a loaded 2-core machine: 214 in one second for `--rate 200`). So every grant is also logged,
//! and a request leaves only when fewer than N grants happened in the last `N` periods (at least a second):
//! after a stall the late requests are spread out again instead of bursting.
//!
//! A grant is logged when it is given, but the request leaves later: after the connection is ready and, for
//! feedback, after its in-flight mark is written (a `write()` that a busy disk can hold up). A request that
//! leaves [`LATE`] or more after its grant asks again ([`Limiter::regrant`]): its entry in the log moves to
//! the moment it really leaves, and it waits if that would put more than N in a window. Marking before the
//! grant instead would leave marks for requests that then wait seconds at the limiter, and a crash then
//! reports never-sent feedback as `unknown`.
//!
//! A 429 pauses *every* request until its `Retry-After` has passed, not only the one that was refused.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The pacing margin: the period is `(1 + MARGIN) / N` seconds.
const MARGIN: f64 = 0.02;

/// A request that leaves this long after its grant takes a fresh one. Well under the 20 ms of jitter the
/// margin absorbs across a window at any rate (2% of a second).
pub(crate) const LATE: Duration = Duration::from_millis(5);

/// When a request was let through: its entry in the limiter's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant(Instant);

impl Grant {
    /// How long ago the grant was given.
    pub(crate) fn age(&self) -> Duration {
        Instant::now().saturating_duration_since(self.0)
    }
}

pub(crate) struct Limiter {
    period: Duration,
    next_slot: Mutex<Option<Instant>>,
    pause_until: Mutex<Option<Instant>>,
    /// At most `budget` grants in any `window` (`budget` periods: a second and the margin, unshared).
    budget: usize,
    window: Duration,
    /// The grants of the last `window`, oldest first (never more than `budget`).
    granted: Mutex<VecDeque<Instant>>,
}

impl Limiter {
    #[cfg(test)]
    pub(crate) fn new(rate: NonZeroU32) -> Limiter {
        Limiter::shared(rate, NonZeroU32::MIN)
    }

    /// This process's share of a rate that `shares` processes split evenly (`--shard K/N`): slots `N`
    /// periods apart, so the N processes together stay within `rate`.
    pub(crate) fn shared(rate: NonZeroU32, shares: NonZeroU32) -> Limiter {
        let period = Duration::from_secs(1).mul_f64(1.0 + MARGIN) * shares.get() / rate.get();
        let budget = (rate.get() / shares.get()).max(1);
        Limiter {
            period,
            next_slot: Mutex::new(None),
            pause_until: Mutex::new(None),
            budget: budget as usize,
            window: period * budget,
            granted: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits for any run-wide pause to end, then for this request's slot.
    pub(crate) async fn ready(&self) -> Grant {
        loop {
            self.wait_pause().await;
            let slot = self.reserve();
            if slot > Instant::now() {
                tokio::time::sleep_until(slot).await;
            }
            // A 429 may have paused the run while this request waited for its slot.
            if self.current_pause().is_some() {
                continue;
            }
            return self.log_grant().await;
        }
    }

    /// A fresh grant for a request that did not leave at once after `old`: a pause that began meanwhile is
    /// waited out (and a new slot taken after it); otherwise `old`'s entry in the log moves to now, waiting
    /// only if the window would then hold more than N.
    pub(crate) async fn regrant(&self, old: Grant) -> Grant {
        self.forget(old);
        if self.current_pause().is_some() {
            return self.ready().await;
        }
        self.log_grant().await
    }

    /// Whether a 429's pause is in force.
    pub(crate) fn paused(&self) -> bool {
        self.current_pause().is_some()
    }

    async fn log_grant(&self) -> Grant {
        while let Some(until) = self.grant() {
            tokio::time::sleep_until(until).await;
        }
        Grant(Instant::now())
    }

    /// Removes a grant from the log (if it is still in the window).
    fn forget(&self, grant: Grant) {
        let mut granted = self.granted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = granted.iter().rposition(|t| *t == grant.0) {
            granted.remove(i);
        }
    }

    /// Logs a grant now if the last `window` holds fewer than `budget`; otherwise says when it will.
    fn grant(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut granted = self.granted.lock().unwrap_or_else(|p| p.into_inner());
        while granted.front().is_some_and(|t| *t + self.window <= now) {
            granted.pop_front();
        }
        if granted.len() < self.budget {
            granted.push_back(now);
            return None;
        }
        granted.front().map(|t| *t + self.window)
    }

    /// Takes the next free slot: `period` after the previous one, never in the past.
    fn reserve(&self) -> Instant {
        let now = Instant::now();
        let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
        let slot = match *next {
            Some(t) if t > now => t,
            _ => now,
        };
        *next = Some(slot + self.period);
        slot
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

    /// Pauses every request of the run for `d` (extends, never shortens, a pause already in force). Slots
    /// reserved before the pause are void: after it, pacing starts afresh.
    pub(crate) fn pause_for(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut guard = self.pause_until.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none_or(|t| t < until) {
            *guard = Some(until);
        }
        drop(guard);
        let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
        if next.is_some_and(|t| t < until) {
            *next = Some(until);
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

    #[tokio::test(start_paused = true)]
    async fn slots_are_exact_whatever_the_wake_up_jitter() {
        let l = Limiter::new(NonZeroU32::new(200).unwrap());
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..401 {
            l.ready().await;
            times.push(Instant::now() - start);
        }
        assert_eq!(times[400], Duration::from_secs(2).mul_f64(1.0 + MARGIN), "401 requests at 200/s take 2 s + margin");
        for (i, t) in times.iter().enumerate().skip(200) {
            assert!(*t - times[i - 200] >= Duration::from_secs(1), "at most 200 in any 1 s window");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_share_of_the_rate_paces_at_rate_over_shares() {
        let l = Limiter::shared(NonZeroU32::new(10).unwrap(), NonZeroU32::new(4).unwrap());
        let start = Instant::now();
        for _ in 0..11 {
            l.ready().await;
        }
        // 10/s split four ways: 2.5/s here, so 11 requests span 10 periods of 400 ms.
        assert_eq!(Instant::now() - start, Duration::from_secs(4).mul_f64(1.0 + MARGIN));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_never_lets_a_window_hold_more_than_n() {
        use std::sync::Arc;
        let l = Arc::new(Limiter::new(NonZeroU32::new(100).unwrap()));
        let start = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (l, times) = (Arc::clone(&l), Arc::clone(&times));
            tasks.push(tokio::spawn(async move {
                for _ in 0..25 {
                    l.ready().await;
                    times.lock().unwrap().push(Instant::now() - start);
                }
            }));
        }
        // 1.5 s in, the process stalls for 80 ms: every slot due meanwhile wakes at the same instant after.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tokio::time::advance(Duration::from_millis(80)).await;
        for t in tasks {
            t.await.unwrap();
        }
        let mut times = times.lock().unwrap().clone();
        times.sort();
        assert_eq!(times.len(), 400);
        for (i, t) in times.iter().enumerate().skip(100) {
            assert!(*t - times[i - 100] >= Duration::from_secs(1), "at most 100 in any 1 s window (request {i})");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_leaves_late_is_regranted_so_no_window_holds_more_than_n() {
        use std::sync::Arc;
        let l = Arc::new(Limiter::new(NonZeroU32::new(10).unwrap()));
        let start = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        // The first request's in-flight mark takes 500 ms (a busy disk): it leaves half a second after its
        // grant. Logged at its grant, the window from there would hold it and ten on-time requests.
        let first = l.ready().await;
        let late = {
            let (l, times) = (Arc::clone(&l), Arc::clone(&times));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                assert!(first.age() >= LATE);
                l.regrant(first).await;
                times.lock().unwrap().push(Instant::now() - start);
            })
        };
        for _ in 0..30 {
            l.ready().await;
            times.lock().unwrap().push(Instant::now() - start);
        }
        late.await.unwrap();
        let mut times = times.lock().unwrap().clone();
        times.sort();
        assert_eq!(times.len(), 31);
        for (i, t) in times.iter().enumerate().skip(10) {
            assert!(*t - times[i - 10] >= Duration::from_secs(1), "at most 10 in any 1 s window (request {i})");
        }
    }

    #[tokio::test]
    async fn a_regrant_waits_out_a_pause_that_began_meanwhile() {
        let l = Limiter::new(NonZeroU32::new(1000).unwrap());
        let grant = l.ready().await;
        l.pause_for(Duration::from_millis(150));
        assert!(l.paused());
        let start = std::time::Instant::now();
        l.regrant(grant).await;
        assert!(start.elapsed() >= Duration::from_millis(140), "{:?}", start.elapsed());
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
