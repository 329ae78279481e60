//! The writer stage: sends mapped payloads to Savio as fast as the API allows, without losing or duplicating
//! any, and hands every row's outcome to the reports.
//!
//! - **Bounded everything.** Rows arrive through a bounded channel; at most about two seconds of the rate
//!   ([`WINDOW`] at most) of payloads are in progress (dispatched, waiting or sending); at most `concurrency` requests are in flight; one rate limiter
//!   paces every request of the run ([`limiter`]).
//! - **Order where it matters** ([`order`]): a contact waits for its company, and for an earlier upsert of
//!   the same contact; a company that failed blocks its contacts; feedback waits for the company and person
//!   it names.
//! - **Retries as policy** ([`crate::client::classify`]): transient failures are retried with full-jitter
//!   backoff, a 429 pauses the whole run for its `Retry-After` (capped), a 400 fails the row with Savio's
//!   message, a 401/403 stops the run. Feedback, which is not idempotent, is never re-sent after an
//!   ambiguous failure: it is reported `unknown` (unless `retry_unknown`).
//! - **Stopping.** A soft stop (token rejected, Ctrl-C, Savio answering nothing but 429 for too long) sends
//!   nothing new, lets requests in flight finish and reports every payload not sent; a hard stop (grace
//!   period over) also abandons requests in flight. "Nothing new" holds to the last moment: every wait of a
//!   payload (for its row's order, a slot, the rate limiter, a backoff or a 429's pause, a connection) ends
//!   at the stop, and a request not yet written to a connection is withheld ([`Leaving`]).
//! - **Write-ahead marks, as late as possible.** Feedback's in-flight mark is written right before its
//!   request is written to a connection, after every wait: a crash leaves marks only for requests that
//!   may have left. A request that leaves late after its rate-limit grant (a slow mark, a slow connect) takes
//!   a fresh grant, so departures never bunch ([`limiter`]).

mod limiter;
mod order;

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::client::{Backoff, Departure, RetryAction, SavioClient, SendError, classify, classify_status, idempotent};
use crate::mapping::{DropReason, REPEATED_FEEDBACK_GROUP, SENT_GROUP};
use crate::model::{Entity, Payload, json_hash};
use crate::pipeline::{Row, RowKind, RowSource, reason_text};
use crate::report::results::{ResultLine, Status};
use crate::state::{Journal, JournalEntry};
use limiter::{Grant, LATE, Limiter};
use order::{Done, Registry, Waits};

/// The most payloads in progress at once (dispatched but not finished). Bounds memory whatever the input
/// size, and is far above any useful concurrency.
pub const WINDOW: usize = 2048;

/// How far ahead of the rate the writer dispatches: about this much of `--rate`'s requests (see
/// [`window_for`]).
const LOOK_AHEAD: Duration = Duration::from_secs(2);

/// The payloads in progress for a run: about [`LOOK_AHEAD`] of its rate, at least four per request in
/// flight, at most [`WINDOW`]. A window far beyond the rate only queues payloads at the rate limiter, where
/// a feedback that waited for its row's upserts lands behind hundreds of later rows' (at 10 requests/s,
/// minutes): rows then finish late and out of order, and a killed run's results file shows little of what
/// it sent.
fn window_for(cfg: &SinkConfig) -> usize {
    let rate = u64::from(cfg.rate.get() / cfg.rate_shares.get()).max(1);
    let ahead = usize::try_from(rate.saturating_mul(LOOK_AHEAD.as_secs())).unwrap_or(usize::MAX);
    ahead.max(cfg.concurrency.get().saturating_mul(4)).clamp(1, WINDOW)
}

/// How the writer behaves. Built from flags by the binary.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Requests in flight at once.
    pub concurrency: NonZeroUsize,
    /// Requests per second, for the whole run (all endpoints).
    pub rate: NonZeroU32,
    /// How many processes share `rate` (`--shard K/N` gives N): this one paces at `rate / rate_shares`.
    pub rate_shares: NonZeroU32,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The longest a 429's `Retry-After` (or any backoff) may pause the run.
    pub max_retry_after: Duration,
    pub backoff: Backoff,
    /// Re-send feedback whose outcome is unknown (may create duplicates).
    pub retry_unknown: bool,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            concurrency: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
            rate: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            rate_shares: NonZeroU32::MIN,
            max_retries: 6,
            max_retry_after: Duration::from_secs(60),
            backoff: Backoff::default(),
            retry_unknown: false,
        }
    }
}

/// Every outcome of one input row, handed to the reports when the row's last payload is done.
#[derive(Debug)]
pub struct RowDone {
    pub line: u64,
    /// What the row was read from: its raw form goes to the failures file when it needs a re-run.
    pub source: RowSource,
    pub results: Vec<ResultLine>,
}

impl RowDone {
    /// The row's outcome: the most severe of its payloads'.
    pub fn status(&self) -> Status {
        self.results.iter().map(|r| r.status).max_by_key(|s| s.severity()).unwrap_or(Status::Skipped)
    }

    /// The reasons of every payload that did not land, for the failures file.
    pub fn reason(&self) -> String {
        let reasons: Vec<String> = self
            .results
            .iter()
            .filter(|r| r.status.needs_rerun())
            .map(|r| match r.entity {
                Some(e) => format!("{e} {}: {}", r.status, r.reason),
                None => r.reason.clone(),
            })
            .collect();
        reasons.join("; ")
    }
}

/// One row for the writer: the mapped row, and the outcomes the state already settled without a request
/// (unchanged since the last accepted run, done before a resume, unknown from an earlier run).
#[derive(Debug)]
pub struct Job {
    pub row: Row,
    pub settled: Vec<ResultLine>,
}

impl From<Row> for Job {
    fn from(row: Row) -> Job {
        Job { row, settled: Vec::new() }
    }
}

/// Why the writer stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Savio answered 401/403: every further request would fail the same way.
    AuthRejected(String),
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Savio answered nothing but 429 for this long (see [`throttle_limit`]).
    Throttled(Duration),
    /// For this long every attempt failed without an answer from Savio, or with a 5xx (see
    /// [`throttle_limit`]); the last failure.
    Unavailable(Duration, String),
    /// The reports could not be written (disk full, folder gone): nothing more is sent, since what it
    /// would do could not be recorded.
    ReportsFailed(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::AuthRejected(m) => write!(f, "token rejected: {m}"),
            StopReason::Interrupted => f.write_str("interrupted"),
            StopReason::Throttled(d) => {
                write!(f, "Savio kept answering 429 Too Many Requests for {} s, accepting nothing", d.as_secs())
            }
            StopReason::Unavailable(d, last) => {
                write!(f, "Savio was unavailable for {} s, every request failing (last: {last})", d.as_secs())
            }
            StopReason::ReportsFailed(e) => write!(f, "the reports cannot be written: {e}"),
        }
    }
}

/// How long Savio may answer nothing but 429 before the run stops: as long as one payload's retries could
/// be paused by it (`--max-retry-after` for each of `--max-retries` + 1 attempts), at least a second. Each
/// 429 pauses the whole writer, so past this no payload would have landed anyway; stopping reports what
/// was not sent and lets the same command resume later, instead of pausing, one payload after another, for
/// as long as the quota stays exhausted (days, for a large file).
///
/// The same limit holds for an outage (connections refused, timeouts, nothing but 5xx): every payload
/// would otherwise spend its retries failing, a few a second, and a nightly run over a large file would
/// still be failing rows (holding its lock) when the next night's run starts.
pub fn throttle_limit(cfg: &SinkConfig) -> Duration {
    cfg.max_retry_after.saturating_mul(cfg.max_retries.saturating_add(1)).max(Duration::from_secs(1))
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct StopState {
    reason: Option<StopReason>,
    /// Also abandon requests in flight.
    hard: bool,
}

/// Request counters of a run.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
}

struct Shared {
    client: SavioClient,
    cfg: SinkConfig,
    limiter: Limiter,
    slots: Semaphore,
    registry: Registry,
    stats: Arc<SinkStats>,
    stop: watch::Sender<StopState>,
    /// The state journal: feedback is marked there before it is sent.
    journal: Option<Journal>,
    /// Since when Savio has answered nothing but 429 (`None`: its last answer was something else).
    throttled_since: Mutex<Option<Instant>>,
    /// Since when every attempt has failed without an answer or with a 5xx (`None`: the last one did not).
    failing_since: Mutex<Option<Instant>>,
}

impl Shared {
    /// Notes an answer: a 429 may stop the run (see [`throttle_limit`]), anything else ends a 429 streak.
    fn note_answer(&self, status: u16) {
        if status < 500 {
            *self.failing_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        if status != 429 {
            *self.throttled_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return;
        }
        if let Some(streak) = self.streak_over_limit(&self.throttled_since) {
            tracing::error!(
                "Savio answered nothing but 429 Too Many Requests for {} s (more than --max-retry-after x \
                 (--max-retries + 1)): stopping; the same command resumes the run",
                streak.as_secs()
            );
            self.request_stop(StopReason::Throttled(streak), false);
        }
    }

    /// Notes an attempt that failed for want of Savio (no answer, or a 5xx): when every attempt has for
    /// longer than [`throttle_limit`], the run stops.
    fn note_outage(&self, err: &SendError) {
        if let Some(streak) = self.streak_over_limit(&self.failing_since) {
            tracing::error!(
                "every request failed for {} s (more than --max-retry-after x (--max-retries + 1)), the last \
                 with {err}: stopping; the same command resumes the run",
                streak.as_secs()
            );
            self.request_stop(StopReason::Unavailable(streak, short(err)), false);
        }
    }

    /// Extends the streak that `since` times (starting it now if none is going): its length once it has
    /// reached [`throttle_limit`] and the run has not been stopped yet.
    fn streak_over_limit(&self, since: &Mutex<Option<Instant>>) -> Option<Duration> {
        let now = Instant::now();
        let streak = now - *since.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(now);
        (streak >= throttle_limit(&self.cfg) && self.stop_reason().is_none()).then_some(streak)
    }

    fn stop_reason(&self) -> Option<StopReason> {
        self.stop.borrow().reason.clone()
    }

    fn request_stop(&self, reason: StopReason, hard: bool) {
        self.stop.send_modify(|s| {
            if s.reason.is_none() {
                s.reason = Some(reason);
            }
            s.hard |= hard;
        });
    }

    /// Resolves when the run is asked to stop (soft or hard).
    async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| s.reason.is_some()).await;
    }

    /// Resolves when a hard stop is requested.
    async fn hard_stop(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| s.hard).await;
    }
}

/// Stops a [`Sink`] as its own stops do (nothing new is sent, requests in flight finish). Does nothing once
/// the sink is gone.
#[derive(Clone)]
pub struct Stopper(std::sync::Weak<Shared>);

impl Stopper {
    pub fn stop(&self, reason: StopReason) {
        if let Some(shared) = self.0.upgrade() {
            shared.request_stop(reason, false);
        }
    }
}

/// The writer. Create one per run with [`Sink::new`], then [`Sink::run`].
pub struct Sink {
    shared: Arc<Shared>,
}

impl Sink {
    pub fn new(client: SavioClient, cfg: SinkConfig, journal: Option<Journal>) -> Sink {
        let (stop, _) = watch::channel(StopState::default());
        let shared = Shared {
            limiter: Limiter::shared(cfg.rate, cfg.rate_shares),
            slots: Semaphore::new(cfg.concurrency.get()),
            registry: Registry::default(),
            stats: Arc::new(SinkStats::default()),
            stop,
            client,
            cfg,
            journal,
            throttled_since: Mutex::new(None),
            failing_since: Mutex::new(None),
        };
        Sink { shared: Arc::new(shared) }
    }

    pub fn stats(&self) -> Arc<SinkStats> {
        Arc::clone(&self.shared.stats)
    }

    /// A handle that stops the run from outside the writer (the reports' stage, when it cannot write).
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::downgrade(&self.shared))
    }

    /// Sends every row's payloads (rows arrive in batches, in input order); returns when all dispatched
    /// payloads are done, or why it stopped early.
    ///
    /// `interrupt` flips to `true` on Ctrl-C: reading stops, nothing new is sent, requests in flight get
    /// `grace` from that moment to finish before they are abandoned (and reported as such).
    pub async fn run(
        &self,
        rows: mpsc::Receiver<Vec<Job>>,
        out: mpsc::Sender<RowDone>,
        interrupt: watch::Receiver<bool>,
        grace: Duration,
    ) -> Option<StopReason> {
        // Watched for the whole run, beside the feeding: not only between batches, which can wait for a window
        // slot for long, nor only while rows remain, since after the last row comes the wait for requests.
        tokio::select! {
            stop = self.feed(rows, out) => stop,
            never = self.watch_interrupt(interrupt, grace) => match never {},
        }
    }

    /// On Ctrl-C: a soft stop at once, a hard one when `grace` has passed. Never returns.
    async fn watch_interrupt(&self, mut interrupt: watch::Receiver<bool>, grace: Duration) -> std::convert::Infallible {
        // A sender gone without an interrupt means there will be none.
        if interrupt.wait_for(|i| *i).await.is_ok() {
            self.shared.request_stop(StopReason::Interrupted, false);
            tracing::warn!("interrupted: sending nothing new, waiting up to {grace:?} for requests in flight");
            tokio::time::sleep(grace).await;
            tracing::warn!("grace period over: abandoning requests still in flight");
            self.shared.request_stop(StopReason::Interrupted, true);
        }
        std::future::pending().await
    }

    /// Dispatches every row until the input ends or the run stops, then waits for every payload.
    async fn feed(&self, mut rows: mpsc::Receiver<Vec<Job>>, out: mpsc::Sender<RowDone>) -> Option<StopReason> {
        let size = window_for(&self.shared.cfg);
        let window = Arc::new(Semaphore::new(size));
        let mut stop_rx = self.shared.stop.subscribe();
        let mut reports_gone = false;
        loop {
            if self.shared.stop_reason().is_some() {
                break;
            }
            let batch = tokio::select! {
                biased;
                _ = stop_rx.changed() => continue,
                r = rows.recv() => match r {
                    Some(batch) => batch,
                    None => break,
                },
            };
            if !self.dispatch_all(batch, &window, &out).await {
                reports_gone = true;
                break;
            }
        }
        // Stop the reader (it sees the channel closed), then give the rows it had already handed over their
        // outcome too: after a stop, "not sent". Every row read is reported.
        rows.close();
        while !reports_gone && let Some(batch) = rows.recv().await {
            reports_gone = !self.dispatch_all(batch, &window, &out).await;
        }
        // Every payload done: requests in flight end with their answer, or at the hard stop.
        let everything = u32::try_from(size).unwrap_or(u32::MAX);
        let _ = Arc::clone(&window).acquire_many_owned(everything).await;
        self.shared.stop_reason()
    }

    /// [`Sink::dispatch`] for each row of a batch, in order; false as soon as the reports are gone.
    async fn dispatch_all(&self, batch: Vec<Job>, window: &Arc<Semaphore>, out: &mpsc::Sender<RowDone>) -> bool {
        for job in batch {
            if !self.dispatch(job, window, out).await {
                return false;
            }
        }
        true
    }

    /// Hands one row on: straight to the reports when it has no payload, else a job per payload. Returns
    /// false when the reports are gone (nothing more can be recorded).
    async fn dispatch(&self, job: Job, window: &Arc<Semaphore>, out: &mpsc::Sender<RowDone>) -> bool {
        let Job { row, settled } = job;
        let (line, kind, source) = row.into_parts();
        let (payloads, mut results): (_, Vec<ResultLine>) = match kind {
            RowKind::Blank => return true,
            RowKind::Skipped(reason) => (Vec::new(), vec![row_line(line, Status::Skipped, reason, String::new())]),
            RowKind::Failed(problems) => {
                let group = problems.first().map(|p| p.kind()).unwrap_or_default();
                (Vec::new(), vec![row_line(line, Status::Failed, reason_text(&problems), group)])
            }
            RowKind::Mapped { payloads, dropped } => {
                // A company repeated from an earlier contact row is the normal case of a contacts export: it
                // gets a line only when the row has nothing else to show (nothing sent, nothing the state
                // settled: an unchanged contact is something to show). Every other drop is reported.
                let only_drops = payloads.is_empty() && settled.is_empty();
                let pre = dropped
                    .into_iter()
                    .filter(|d| {
                        only_drops || !(d.entity == Entity::Company && matches!(d.reason, DropReason::Duplicate { .. }))
                    })
                    .map(|d| {
                        let (status, group) = match d.reason {
                            DropReason::Sent { unknown: true } => {
                                (Status::Unknown, format!("{}: outcome unknown (failures file)", d.entity))
                            }
                            DropReason::Sent { unknown: false } => (Status::Skipped, SENT_GROUP.to_string()),
                            DropReason::Duplicate { .. } if d.entity == Entity::Feedback => {
                                (Status::Skipped, REPEATED_FEEDBACK_GROUP.to_string())
                            }
                            _ => (Status::Skipped, String::new()),
                        };
                        ResultLine {
                            entity: Some(d.entity),
                            key: d.key.clone(),
                            ..row_line(line, status, d.to_string(), group)
                        }
                    })
                    .collect();
                (payloads, pre)
            }
        };
        results.extend(settled);
        if payloads.is_empty() {
            if results.is_empty() {
                results.push(row_line(line, Status::Skipped, "nothing to send".into(), String::new()));
            }
            return out.send(RowDone { line, source, results }).await.is_ok();
        }
        let tracker = Arc::new(RowTracker {
            remaining: AtomicUsize::new(payloads.len()),
            state: Mutex::new(Some(RowDone { line, source, results })),
            out: out.clone(),
        });
        for payload in payloads {
            let (waits, completion) = self.shared.registry.register(&payload);
            // After a stop nothing waits for room in the window (which empties only as requests in flight end):
            // the payload is reported "not sent" here and now.
            let permit = tokio::select! {
                biased;
                permit = Arc::clone(window).acquire_owned() => permit,
                () = self.shared.stopped() => {
                    let stop = self.shared.stop_reason().unwrap_or(StopReason::Interrupted);
                    let result = not_sent_result(prepare(&self.shared, &payload, line).0, &stop, None);
                    self.shared.registry.complete(completion, Done::Failed(result.reason.clone()));
                    if let Some(row) = tracker.finish(result)
                        && out.send(row).await.is_err()
                    {
                        return false;
                    }
                    continue;
                }
            };
            let Ok(permit) = permit else { return false };
            let shared = Arc::clone(&self.shared);
            let tracker = Arc::clone(&tracker);
            // The task's own future stays small (tokio copies it when spawning and again when it ends): the
            // request's future, several kilobytes, is boxed with the payload it owns, and handing the row to
            // the reports waits (boxed) only when their queue is full.
            tokio::spawn(async move {
                let result = Box::pin(send_payload(&shared, payload, waits, line)).await;
                let done = if result.status == Status::Ok { Done::Ok } else { Done::Failed(result.reason.clone()) };
                shared.registry.complete(completion, done);
                if let Some(row) = tracker.finish(result) {
                    // The reports are gone only when the run is being torn down; nothing more can be recorded then.
                    if let Err(mpsc::error::TrySendError::Full(row)) = tracker.out.try_send(row) {
                        let _ = Box::pin(tracker.out.send(row)).await;
                    }
                }
                drop(permit);
            });
        }
        true
    }
}

fn row_line(line: u64, status: Status, reason: String, group: String) -> ResultLine {
    ResultLine {
        line,
        entity: None,
        key: String::new(),
        status,
        http_status: None,
        savio_id: None,
        attempts: 0,
        latency: Duration::ZERO,
        reason,
        group,
        hash: String::new(),
    }
}

/// Collects the outcomes of one row's payloads; the last one to finish hands the row to the reports.
struct RowTracker {
    remaining: AtomicUsize,
    state: Mutex<Option<RowDone>>,
    out: mpsc::Sender<RowDone>,
}

impl RowTracker {
    /// Adds a payload's outcome; the row, when it was the last one, to hand to the reports.
    fn finish(&self, result: ResultLine) -> Option<RowDone> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = state.as_mut() {
            s.results.push(result);
        }
        let mut done = if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 { state.take() } else { None };
        if let Some(done) = done.as_mut() {
            done.results.sort_by_key(|r| r.entity);
        }
        done
    }
}

/// A payload's result line before any attempt (status `Failed`, no reason yet), and its JSON: serialised
/// once, the request body of every attempt and the input of the content hash (kept by the state; a
/// feedback's key is made from it).
fn prepare(shared: &Shared, payload: &Payload, line: u64) -> (ResultLine, Result<Bytes, serde_json::Error>) {
    let entity = payload.entity();
    let body = serde_json::to_vec(payload).map(Bytes::from);
    let hash = match &body {
        Ok(json) if shared.journal.is_some() || entity == Entity::Feedback => json_hash(json),
        _ => String::new(),
    };
    let key = if body.is_ok() { payload.report_key_with_hash(&hash) } else { String::new() };
    let hash = if shared.journal.is_some() { hash } else { String::new() };
    let r = ResultLine {
        line,
        entity: Some(entity),
        key,
        status: Status::Failed,
        http_status: None,
        savio_id: None,
        attempts: 0,
        latency: Duration::ZERO,
        reason: String::new(),
        group: String::new(),
        hash,
    };
    (r, body)
}

/// One payload's whole life: wait for what it depends on, then attempts until success or a final failure.
async fn send_payload(shared: &Shared, payload: Payload, waits: Waits, line: u64) -> ResultLine {
    let entity = payload.entity();
    let (mut r, body) = prepare(shared, &payload, line);
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            r.reason = format!("cannot serialise the payload: {e}");
            r.group = format!("{entity}: not serialisable");
            return r;
        }
    };
    if let Some((company, reason)) = waits.blocked_by {
        return blocked(r, &company, &reason);
    }
    // Waiting for the row's order ends at a stop too (the loop below then reports "not sent").
    let ordered = async {
        if let Some(previous) = waits.previous {
            order::wait(previous).await;
        }
        for signal in waits.after {
            order::wait(signal).await;
        }
        match waits.company {
            Some((company, signal)) => match order::wait(signal).await {
                Done::Failed(reason) => Some((company, reason)),
                Done::Ok => None,
            },
            None => None,
        }
    };
    let blocked_by = tokio::select! {
        biased;
        blocked_by = ordered => blocked_by,
        () = shared.stopped() => None,
    };
    if let Some((company, reason)) = blocked_by {
        return blocked(r, &company, &reason);
    }
    let idempotent = idempotent(entity);
    // Feedback's in-flight mark, until it is written (right before its request first leaves).
    let mark = (!idempotent && shared.journal.is_some()).then(|| (r.line, r.key.clone(), r.hash.clone()));
    let mut unmarked = mark.is_some();
    let mut last_error: Option<String> = None;
    // Feedback re-sent by `retry_unknown` after an answer that leaves its creation open (a 500, a timeout):
    // however its later attempts end, short of a success, it may exist in Savio.
    let mut maybe_created = false;
    loop {
        if let Some(stop) = shared.stop_reason() {
            let r = not_sent_result(r, &stop, last_error.as_deref());
            return if maybe_created { maybe_created_result(r, entity) } else { r };
        }
        // Waiting for a slot, and below for the rate limiter, ends as soon as the run stops: what was queued
        // is reported "not sent" at once, not paced out at `--rate` (which could outlast any grace period).
        // (The wait itself first: when it is ready at once, the stop signal is never even looked at.)
        let acquired = tokio::select! {
            biased;
            acquired = shared.slots.acquire() => acquired,
            () = shared.stopped() => continue,
        };
        let Ok(slot) = acquired else {
            r.reason = "not sent: the writer shut down".into();
            return r;
        };
        let grant = tokio::select! {
            biased;
            grant = shared.limiter.ready() => grant,
            () = shared.stopped() => continue,
        };
        let leaving = Leaving {
            shared,
            entity,
            grant: Mutex::new(grant),
            mark: mark.as_ref().filter(|_| unmarked).map(|(line, key, hash)| (*line, key.as_str(), hash.as_str())),
            marked: AtomicBool::new(false),
            departures: AtomicU32::new(0),
            withheld: Mutex::new(None),
        };
        // A stop before the request is written cancels the attempt (connecting included); after, the request
        // has its grace period like any other in flight.
        let attempt = tokio::select! {
            a = Box::pin(shared.client.send_json_with(entity, body.clone(), &leaving)) => a,
            () = leaving.stopped_before_leaving() => continue,
            () = shared.hard_stop() => {
                let departures = leaving.departures.load(Ordering::Acquire);
                if departures == 0 {
                    continue;
                }
                // Abandoned before the client could count what it wrote: count what was cleared to leave.
                shared.stats.requests.fetch_add(u64::from(departures), Ordering::Relaxed);
                r.attempts += 1;
                r.status = if idempotent { Status::Failed } else { Status::Unknown };
                r.reason = "interrupted while the request was in flight (it may have been applied)".into();
                r.group = format!("{entity}: interrupted in flight");
                return r;
            }
        };
        drop(slot);
        if leaving.marked.load(Ordering::Acquire) {
            unmarked = false;
        }
        let withheld = leaving.withheld.lock().unwrap_or_else(|p| p.into_inner()).take();
        shared.stats.requests.fetch_add(u64::from(attempt.written), Ordering::Relaxed);
        r.latency += attempt.latency;
        let err = match attempt.outcome {
            Ok(accepted) => {
                shared.note_answer(accepted.status);
                r.attempts += 1;
                r.status = Status::Ok;
                r.http_status = Some(accepted.status);
                r.savio_id = accepted.id;
                // Created: said in the in-flight log at once, since the journal commits it only with its batch.
                if let (Some((line, key, hash)), Some(journal)) = (&mark, &shared.journal)
                    && let Err(e) =
                        journal.after_created(*line, key, hash, r.savio_id.as_ref().map(ToString::to_string))
                {
                    tracing::warn!("{e}: if the run crashes now, this feedback will be reported unknown");
                }
                r.reason = match accepted.cut {
                    // The status says it was applied: an ok without an id, not an unknown outcome.
                    Some(cut) => format!("Savio answered {}, but {cut}: no Savio id", accepted.status),
                    None => String::new(),
                };
                return r;
            }
            Err(SendError::Withheld { .. }) => match withheld {
                Some(Withheld::Journal(e)) => {
                    r.reason = format!("not sent: {e}");
                    r.group = format!("{entity}: not sent (state journal failed)");
                    return r;
                }
                // The run stopped: the loop's top reports it.
                Some(Withheld::Stopped) | None => continue,
            },
            Err(err) => err,
        };
        r.attempts += 1;
        if let Some(status) = err.status() {
            shared.note_answer(status);
        }
        if err.status().is_some_and(|s| s >= 500)
            || matches!(err, SendError::Connect { .. } | SendError::Timeout { .. } | SendError::Connection { .. })
        {
            shared.note_outage(&err);
        }
        r.http_status = err.status();
        let mut action = classify(&err, idempotent);
        if action == RetryAction::Unknown && shared.cfg.retry_unknown {
            action = RetryAction::Retry { after: None };
            maybe_created = true;
        }
        let retries_left = r.attempts <= shared.cfg.max_retries;
        match action {
            RetryAction::Retry { after } if retries_left => {
                shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                let cap = shared.cfg.max_retry_after;
                let backoff = shared.cfg.backoff.delay(r.attempts - 1, &mut rand::rng());
                if err.status() == Some(429) {
                    shared.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    if shared.stop_reason().is_some() {
                        // This 429 may have been the one that stopped the run: nothing is left to pause.
                        last_error = Some(err.to_string());
                        continue;
                    }
                    let pause = after.unwrap_or(backoff).min(cap);
                    tracing::warn!(line, %entity, "Savio is throttling (429): pausing every request for {pause:?}");
                    shared.limiter.pause_for(pause);
                } else {
                    let wait = after.unwrap_or(backoff).min(cap);
                    tracing::debug!(line, %entity, attempt = r.attempts, "retrying in {wait:?}: {err}");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shared.stopped() => {}
                    }
                }
                last_error = Some(err.to_string());
            }
            RetryAction::Retry { .. } => {
                r.reason = format!("gave up after {} attempts: {err}", r.attempts);
                r.group = format!("{entity}: gave up after retries ({})", short(&err));
                return if maybe_created { maybe_created_result(r, entity) } else { r };
            }
            RetryAction::Unknown => {
                r.status = Status::Unknown;
                r.reason = format!(
                    "{err}; the feedback may or may not have been created, so it was not re-sent \
                     (--retry-unknown re-sends, at the risk of a duplicate)"
                );
                r.group = format!("{entity}: outcome unknown ({})", short(&err));
                return r;
            }
            RetryAction::Fail => {
                r.reason = err.to_string();
                r.group = format!("{entity}: refused by Savio ({})", short(&err));
                return r;
            }
            RetryAction::AbortAuth => {
                let msg = auth_message(err.status().unwrap_or(401), err.endpoint());
                tracing::error!("token rejected ({msg}): stopping, nothing more will be sent");
                shared.request_stop(StopReason::AuthRejected(msg.clone()), false);
                r.reason = format!("token rejected: {msg}");
                r.group = "token rejected".into();
                return r;
            }
        }
    }
}

fn auth_message(status: u16, endpoint: &crate::client::Endpoint) -> String {
    format!("Savio answered {status} to {endpoint}")
}

/// Why a request was withheld at its departure.
enum Withheld {
    /// The run stopped.
    Stopped,
    /// Feedback's in-flight mark could not be written: sending it would risk a duplicate after a crash.
    Journal(crate::state::StateError),
}

/// One attempt at the moment its request would be written to a connection (see [`Departure`]): the last
/// look at the stop, feedback's in-flight mark, and a fresh rate-limit grant when it leaves late.
struct Leaving<'a> {
    shared: &'a Shared,
    entity: Entity,
    /// The grant this attempt was let through with; renewed when the request leaves [`LATE`] after it.
    grant: Mutex<Grant>,
    /// Feedback's in-flight mark (line, key, hash), while it is still to be written.
    mark: Option<(u64, &'a str, &'a str)>,
    marked: AtomicBool,
    /// How many times the request was cleared to be written (once, or once per 307/308 hop); more than none,
    /// it may have reached Savio.
    departures: AtomicU32,
    withheld: Mutex<Option<Withheld>>,
}

impl Leaving<'_> {
    fn withhold(&self, why: Withheld) -> bool {
        *self.withheld.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        false
    }

    /// Resolves when the run stops before this request was cleared to leave; never once it was.
    async fn stopped_before_leaving(&self) {
        self.shared.stopped().await;
        if self.departures.load(Ordering::Acquire) > 0 {
            std::future::pending::<()>().await;
        }
    }

    async fn clear(&self) -> bool {
        let shared = self.shared;
        loop {
            if shared.stop_reason().is_some() {
                return self.withhold(Withheld::Stopped);
            }
            let grant = *self.grant.lock().unwrap_or_else(|p| p.into_inner());
            // A 429 paused the run since the grant (this request was connecting): it waits like every other,
            // before its mark, since the pause can be long. Leaving late after the grant (a slow connect, a
            // mark held up by a busy disk) would bunch departures past what the limiter allowed: a fresh grant,
            // for the moment it really leaves.
            let paused = shared.limiter.paused();
            let marking = self.mark.is_some() && !self.marked.load(Ordering::Acquire);
            if paused || (!marking && grant.age() >= LATE) {
                let grant = tokio::select! {
                    biased;
                    grant = shared.limiter.regrant(grant) => grant,
                    () = shared.stopped() => continue,
                };
                *self.grant.lock().unwrap_or_else(|p| p.into_inner()) = grant;
                continue;
            }
            // Marked as late as possible, after every wait but the last look at the grant: a crash leaves a
            // mark only for a request that may have left.
            if let Some((line, key, hash)) = self.mark
                && marking
                && let Some(journal) = &shared.journal
            {
                if let Err(e) = journal.before_send(line, key, hash) {
                    return self.withhold(Withheld::Journal(e));
                }
                self.marked.store(true, Ordering::Release);
                continue;
            }
            self.departures.fetch_add(1, Ordering::AcqRel);
            return true;
        }
    }
}

impl Departure for Leaving<'_> {
    fn cleared(&self) -> impl Future<Output = bool> + Send {
        self.clear()
    }

    /// A 401/403 stops the run as soon as its status line arrives: requests that would leave while its body
    /// is read are withheld.
    fn answered(&self, status: StatusCode) {
        if classify_status(status.as_u16(), true, None) == RetryAction::AbortAuth {
            let endpoint = self.shared.client.endpoint_of(self.entity);
            self.shared.request_stop(StopReason::AuthRejected(auth_message(status.as_u16(), endpoint)), false);
        }
    }
}

/// The journal's record of a payload's outcome.
pub(crate) fn journal_entry(r: &ResultLine) -> JournalEntry {
    JournalEntry {
        line: r.line,
        entity: r.entity.unwrap_or(Entity::Feedback),
        key: r.key.clone(),
        hash: r.hash.clone(),
        status: r.status,
        savio_id: r.savio_id.as_ref().map(ToString::to_string),
        reason: r.reason.clone(),
    }
}

/// The kind of a failed attempt without its details: "HTTP 400", "timeout", ...
fn short(err: &SendError) -> String {
    match err {
        SendError::Status { status, .. } => format!("HTTP {status}"),
        SendError::Connect { .. } => "cannot connect".into(),
        SendError::Timeout { .. } => "timeout".into(),
        SendError::Connection { .. } => "connection lost".into(),
        SendError::Redirect { .. } => "redirect not followed".into(),
        SendError::NotApi { .. } => "HTML page, not the API".into(),
        SendError::Body { .. } => "body not serialisable".into(),
        SendError::Withheld { .. } => "not sent".into(),
    }
}

fn blocked(mut r: ResultLine, company: &str, reason: &str) -> ResultLine {
    r.status = Status::Blocked;
    r.reason = format!("company {company} failed: {reason}");
    r.group = format!("{}: blocked by a failed company", r.entity.map_or("row", |e| e.as_str()));
    r
}

/// A payload's result when the run stopped before its request left.
/// A payload that did not land, one of whose attempts may have created it anyway: `unknown`, so that its
/// failures file row and the state file keep it from being created again blindly.
fn maybe_created_result(mut r: ResultLine, entity: Entity) -> ResultLine {
    r.status = Status::Unknown;
    r.reason = format!("{}; an earlier attempt may have created it (outcome unknown)", r.reason);
    r.group = format!("{entity}: outcome unknown (retried, then gave up)");
    r
}

fn not_sent_result(mut r: ResultLine, stop: &StopReason, last_error: Option<&str>) -> ResultLine {
    r.reason = not_sent(stop, last_error);
    r.group = format!("{}: not sent (run stopped)", r.entity.map_or("row", |e| e.as_str()));
    r
}

fn not_sent(stop: &StopReason, last_error: Option<&str>) -> String {
    let why = match stop {
        StopReason::Throttled(_) | StopReason::Unavailable(..) => format!("{stop}, so the run stopped"),
        _ => format!("run stopped ({stop})"),
    };
    match last_error {
        None => format!("not sent: {why}"),
        Some(e) => format!("not sent again: {why}; last attempt: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_about_two_seconds_of_the_rate() {
        let cfg = |rate: u32, concurrency: usize| SinkConfig {
            rate: NonZeroU32::new(rate).unwrap(),
            concurrency: NonZeroUsize::new(concurrency).unwrap(),
            ..SinkConfig::default()
        };
        assert_eq!(window_for(&cfg(10, 8)), 32, "four per request in flight");
        assert_eq!(window_for(&cfg(100, 8)), 200);
        assert_eq!(window_for(&cfg(1_000_000, 16)), WINDOW);
    }
}
