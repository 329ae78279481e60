//! The retry policy as pure data: which failed attempts may be repeated, after how long.
//!
//! The client never retries by itself (the writer owns retries, rate limits and concurrency); this module is
//! the table the writer consults. It is kept free of I/O and clocks so it can be pinned by tests: the unit
//! tests below cover the table, and `tests/client.rs` sends every status code 200–599 through a real HTTP
//! round trip to check that what the client produces classifies as documented on [`classify`].

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderValue;

use super::error::SendError;
use crate::model::Entity;

/// What the writer should do with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Repeat the request; wait at least `after` when the server said so (`Retry-After`), otherwise back off.
    Retry { after: Option<Duration> },
    /// A permanent failure for this request: report it, do not repeat.
    Fail,
    /// The token is refused: every further request will fail the same way, so stop the run.
    AbortAuth,
    /// The request may or may not have been applied and repeating it could duplicate it: report the row as an
    /// unknown outcome, do not repeat.
    Unknown,
}

/// Whether sending the same payload of this entity twice is harmless. Upserts are; feedback creation is not.
pub fn idempotent(entity: Entity) -> bool {
    match entity {
        Entity::Company | Entity::Contact => true,
        Entity::Feedback => false,
    }
}

/// Classifies a failed attempt, resolving an HTTP-date `Retry-After` against the current time.
///
/// # The table
///
/// A request is repeated only when repeating cannot do harm. Company and contact upserts are idempotent (an
/// upsert applied twice leaves the same state), so any transient failure may be retried. Feedback creation is
/// not: Savio has no idempotency key and no de-duplication, so a repeat after an unknown outcome can create a
/// duplicate. For feedback an ambiguous failure is [`RetryAction::Unknown`], which the writer reports rather
/// than repeats.
///
/// | failure | upsert (idempotent) | feedback |
/// |---|---|---|
/// | cannot connect (refused, DNS, TLS handshake, connect timeout): nothing sent | Retry | Retry |
/// | timeout, connection broken mid-request | Retry | Unknown |
/// | 429 Too Many Requests | Retry | Retry |
/// | 503 Service Unavailable | Retry | Retry |
/// | 500, 502, 504 | Retry | Unknown |
/// | other 5xx not listed below (507, 509, 520–599…) | Retry | Unknown |
/// | 501, 505, 506, 508, 510, 511: the server will not change its mind | Fail | Fail |
/// | 408 Request Timeout: the server gave up waiting for the request before processing it | Retry | Retry |
/// | 401, 403, 407: the token (or a proxy's credentials) is refused | AbortAuth | AbortAuth |
/// | other 4xx (400, 404, 405, 409, 413, 422…) | Fail | Fail |
/// | 3xx not followed, 1xx, unexpected 2xx in an error, ≥ 600 | Fail | Fail |
/// | request body cannot be serialised, or withheld by the caller: nothing was sent | Fail | Fail |
///
/// Every `Retry` from a status answer carries the server's `Retry-After` (either form), when it sent one.
///
/// Why only 408, 429 and 503 are retried for feedback: they say the request was not processed (408: the server
/// stopped waiting for the request before it had all of it) or refused. A 500
/// is an unhandled failure, which a server may raise after its writes committed: Django (whose shapes Savio's
/// answers have) runs without a request transaction by default, and creating a feedback also creates its
/// person, company, tags and feature request. A 502 can follow a worker killed after it committed, and a 504
/// is issued while the application may still be working, exactly like our own timeout. For feedback, all
/// three are `Unknown`: reported, never repeated blindly (`--retry-unknown` repeats them). Upserts repeat.
/// The sandbox fails with 500 or 503 before applying anything, so its 500s come out `unknown` too: the
/// client cannot know that.
pub fn classify(err: &SendError, idempotent: bool) -> RetryAction {
    classify_at(err, idempotent, SystemTime::now())
}

/// [`classify`] with the clock passed in, for tests and for callers that already read it.
pub fn classify_at(err: &SendError, idempotent: bool, now: SystemTime) -> RetryAction {
    match err {
        SendError::Connect { .. } => RetryAction::Retry { after: None },
        SendError::Timeout { .. } | SendError::Connection { .. } => unless_unsafe(idempotent, None),
        SendError::Redirect { .. } | SendError::NotApi { .. } | SendError::Body { .. } | SendError::Withheld { .. } => {
            RetryAction::Fail
        }
        SendError::Status { status, retry_after, .. } => {
            classify_status(*status, idempotent, retry_after.map(|r| r.delay_from(now)))
        }
    }
}

/// The status-code part of the table (see [`classify`]).
pub fn classify_status(status: u16, idempotent: bool, after: Option<Duration>) -> RetryAction {
    match status {
        401 | 403 | 407 => RetryAction::AbortAuth,
        408 | 429 | 503 => RetryAction::Retry { after },
        500 | 502 | 504 => unless_unsafe(idempotent, after),
        501 | 505 | 506 | 508 | 510 | 511 => RetryAction::Fail,
        500..=599 => unless_unsafe(idempotent, after),
        _ => RetryAction::Fail,
    }
}

/// Retry when repeating is harmless, otherwise the outcome is unknown.
fn unless_unsafe(idempotent: bool, after: Option<Duration>) -> RetryAction {
    if idempotent { RetryAction::Retry { after } } else { RetryAction::Unknown }
}

/// A parsed `Retry-After` header: either form RFC 9110 allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 3`
    Delay(Duration),
    /// `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`
    At(SystemTime),
}

impl RetryAfter {
    /// Parses a header value; anything that is neither delta-seconds nor an HTTP date is `None` (and the
    /// writer falls back to its own backoff). A delay too large for `u64` seconds saturates. The writer caps
    /// the wait: a server asking for an hour should not stall a run silently.
    pub fn parse(value: &str) -> Option<RetryAfter> {
        let value = value.trim();
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            let secs = value.parse::<u64>().unwrap_or(u64::MAX);
            return Some(RetryAfter::Delay(Duration::from_secs(secs)));
        }
        httpdate::parse_http_date(value).ok().map(RetryAfter::At)
    }

    pub(crate) fn from_header(value: &HeaderValue) -> Option<RetryAfter> {
        value.to_str().ok().and_then(RetryAfter::parse)
    }

    /// How long to wait from `now`; a date in the past means no wait.
    pub fn delay_from(&self, now: SystemTime) -> Duration {
        match self {
            RetryAfter::Delay(delay) => *delay,
            RetryAfter::At(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
        }
    }
}

/// Exponential backoff with full jitter: the wait before retry `attempt` (0 for the first retry) is uniform in
/// `[0, min(cap, base * 2^attempt)]`, which spreads concurrent writers apart after a shared failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { base: Duration::from_millis(250), cap: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// A random wait in `[0, self.ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// `min(cap, base * 2^attempt)`, saturating instead of overflowing for large attempts.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let grown = match 1u32.checked_shl(attempt) {
            Some(factor) => self.base.saturating_mul(factor),
            None if self.base.is_zero() => Duration::ZERO,
            None => Duration::MAX,
        };
        grown.min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::error::Endpoint;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use reqwest::Url;

    fn status(status: u16, retry_after: Option<RetryAfter>) -> SendError {
        let url = Url::parse("https://h.example/app/api/users/").unwrap();
        SendError::Status { endpoint: Endpoint::new("POST", &url), status, body: String::new(), retry_after }
    }

    const RETRY: RetryAction = RetryAction::Retry { after: None };

    #[test]
    fn status_table_for_upserts_and_feedback() {
        use RetryAction::{AbortAuth, Fail, Unknown};
        let table: &[(u16, RetryAction, RetryAction)] = &[
            (200, Fail, Fail),
            (301, Fail, Fail),
            (304, Fail, Fail),
            (400, Fail, Fail),
            (401, AbortAuth, AbortAuth),
            (403, AbortAuth, AbortAuth),
            (404, Fail, Fail),
            (405, Fail, Fail),
            (407, AbortAuth, AbortAuth),
            (408, RETRY, RETRY),
            (409, Fail, Fail),
            (413, Fail, Fail),
            (422, Fail, Fail),
            (429, RETRY, RETRY),
            (500, RETRY, Unknown),
            (501, Fail, Fail),
            (502, RETRY, Unknown),
            (503, RETRY, RETRY),
            (504, RETRY, Unknown),
            (505, Fail, Fail),
            (507, RETRY, Unknown),
            (511, Fail, Fail),
            (520, RETRY, Unknown),
            (599, RETRY, Unknown),
            (600, Fail, Fail),
        ];
        for &(code, upsert, feedback) in table {
            let err = status(code, None);
            assert_eq!(classify(&err, true), upsert, "{code} upsert");
            assert_eq!(classify(&err, false), feedback, "{code} feedback");
        }
    }

    #[test]
    fn retry_after_is_carried_into_the_action() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let delay = status(429, Some(RetryAfter::Delay(Duration::from_secs(3))));
        assert_eq!(classify_at(&delay, false, now), RetryAction::Retry { after: Some(Duration::from_secs(3)) });
        let at = status(503, Some(RetryAfter::At(now + Duration::from_secs(7))));
        assert_eq!(classify_at(&at, false, now), RetryAction::Retry { after: Some(Duration::from_secs(7)) });
        let past = status(429, Some(RetryAfter::At(now - Duration::from_secs(7))));
        assert_eq!(classify_at(&past, true, now), RetryAction::Retry { after: Some(Duration::ZERO) });
    }

    #[test]
    fn retry_after_parses_both_forms_and_rejects_the_rest() {
        assert_eq!(RetryAfter::parse("3"), Some(RetryAfter::Delay(Duration::from_secs(3))));
        assert_eq!(RetryAfter::parse(" 120 "), Some(RetryAfter::Delay(Duration::from_secs(120))));
        assert_eq!(
            RetryAfter::parse("99999999999999999999999"),
            Some(RetryAfter::Delay(Duration::from_secs(u64::MAX)))
        );
        let date = RetryAfter::parse("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(date, Some(RetryAfter::At(SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480))));
        for bad in ["", "-1", "1.5", "soon", "3s", "Wed, 32 Oct 2015 07:28:00 GMT"] {
            assert_eq!(RetryAfter::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_date_in_the_past_means_no_wait() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let past = RetryAfter::At(SystemTime::UNIX_EPOCH + Duration::from_secs(40));
        let future = RetryAfter::At(SystemTime::UNIX_EPOCH + Duration::from_secs(160));
        assert_eq!(past.delay_from(now), Duration::ZERO);
        assert_eq!(future.delay_from(now), Duration::from_secs(60));
    }

    #[test]
    fn backoff_ceiling_doubles_then_caps_without_overflow() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::from_millis(250));
        assert_eq!(b.ceiling(1), Duration::from_millis(500));
        assert_eq!(b.ceiling(6), Duration::from_secs(16));
        assert_eq!(b.ceiling(7), Duration::from_secs(30));
        for attempt in [31, 32, 64, u32::MAX] {
            assert_eq!(b.ceiling(attempt), Duration::from_secs(30), "{attempt}");
        }
        let huge = Backoff { base: Duration::MAX, cap: Duration::MAX };
        assert_eq!(huge.ceiling(3), Duration::MAX);
        let zero = Backoff { base: Duration::ZERO, cap: Duration::from_secs(1) };
        assert_eq!(zero.ceiling(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn backoff_delay_is_full_jitter_within_the_ceiling() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in [0, 1, 5, 40, u32::MAX] {
            let ceiling = b.ceiling(attempt);
            let delays: Vec<Duration> = (0..200).map(|_| b.delay(attempt, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "{attempt}");
            // Full jitter: spread over the whole range, not clustered near the ceiling.
            assert!(delays.iter().any(|d| *d < ceiling / 4), "{attempt}");
            assert!(delays.iter().any(|d| *d > ceiling * 3 / 4), "{attempt}");
        }
        let huge = Backoff { base: Duration::MAX, cap: Duration::MAX };
        assert!(huge.delay(u32::MAX, &mut rng) <= Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn only_feedback_is_not_idempotent() {
        assert!(idempotent(Entity::Company));
        assert!(idempotent(Entity::Contact));
        assert!(!idempotent(Entity::Feedback));
    }
}
