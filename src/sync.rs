//! `savio-sync sync`: the whole pipeline for one run.
//!
//! ```text
//! reader thread ──rows (bounded)──▶ writer (async, rate-limited) ──row outcomes (bounded)──▶ reports
//! ```
//!
//! The reader (CSV/JSONL parsing and mapping, CPU-bound) runs on its own thread so it never blocks the
//! async runtime; everything between stages is a bounded channel, so memory stays flat whatever the input's
//! size. Reports are written as rows complete and flushed every second: a crash keeps everything done so far.
//! `summary.json` is written at the end of every run, aborted or not.
//!
//! With a state file ([`crate::state`]) the run also takes the state's lock, decides whether it continues
//! an unfinished run (resume), passes every mapped payload through the [`Gate`] on the reader thread
//! (resume, unsure feedback, incremental) and journals every outcome.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::client::{ClientConfig, ClientError, SavioClient};
use crate::mapping::spec::InputSection;
use crate::mapping::{Mapping, REPEATED_FEEDBACK_GROUP, SENT_GROUP, sent_marker};
use crate::model::Entity;
use crate::pipeline::RowKind;
use crate::pipeline::{Pipeline, PrepareError, Row};
use crate::progress::{Counters, Progress, ProgressMode};
use crate::report::failures::{FailuresError, FailuresWriter};
use crate::report::results::ResultLine;
use crate::report::results::{ResultsError, ResultsWriter, Status};
use crate::report::summary::StateInfo;
use crate::report::summary::{ExitReason, SyncSummary};
use crate::sink::{Job, RowDone, Sink, SinkConfig, StopReason, Stopper, journal_entry};
use crate::source::{Delimiter, DelimiterOrigin, Format, InputPath, InputSpec, ReadError, SourceInfo, TextEncoding};
use crate::state::{Gate, Journal, LockError, Mode, NewRun, RunLock, Settled, StateError, StateStore};

/// Everything a run needs, validated by the binary before anything starts.
pub struct SyncSettings {
    pub input: InputSpec,
    pub mapping: Mapping,
    pub client: ClientConfig,
    pub sink: SinkConfig,
    pub report_dir: PathBuf,
    /// How long requests in flight may take to finish after Ctrl-C.
    pub grace: Duration,
    pub progress: ProgressMode,
    /// The state file and how to use it; `None` runs without state (no resume, no incremental, no lock).
    pub state: Option<StateSettings>,
    /// Process only this shard's rows.
    pub shard: Option<Shard>,
}

/// How a run uses its state file.
#[derive(Debug, Clone)]
pub struct StateSettings {
    pub path: PathBuf,
    pub mode: Mode,
    pub resume: ResumeChoice,
}

/// Whether to continue the last run on the same input and mapping when it did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeChoice {
    /// Continue it when its input and mapping are unchanged (said clearly); else start afresh.
    Auto,
    /// `--resume`: continue it, or refuse.
    Required,
    /// `--no-resume`: always start a new run.
    Never,
}

/// Shard `k` of `n` (1-based): the rows whose key hashes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub k: u32,
    pub n: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("'{s}' is not a shard: write K/N with 1 <= K <= N, e.g. 2/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (u32, u32) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

impl Shard {
    /// Whether a row belongs to this shard. Rows that share a company share a shard (so a company derived
    /// from contact rows is sent by the shard that sends its contacts); otherwise the contact's key, the
    /// feedback's hash, or, for a row that mapped to nothing, its line number decides. BLAKE3, so every
    /// machine and version agrees.
    pub fn owns(&self, row: &Row) -> bool {
        let key = shard_key(row);
        let h = blake3::hash(key.as_bytes());
        let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]));
        n % u64::from(self.n) == u64::from(self.k - 1)
    }
}

fn shard_key(row: &Row) -> String {
    if let RowKind::Mapped { payloads, dropped } = &row.kind {
        let company = payloads.iter().find_map(|p| match p {
            crate::model::Payload::Company(c) => Some(c.internal_id.clone()),
            _ => None,
        });
        let company = company.or_else(|| dropped.iter().find(|d| d.entity == Entity::Company).map(|d| d.key.clone()));
        if let Some(c) = company.filter(|c| !c.is_empty()) {
            return format!("company:{c}");
        }
        for entity in [Entity::Contact, Entity::Feedback] {
            if let Some(p) = payloads.iter().find(|p| p.entity() == entity) {
                return format!("{entity}:{}", p.report_key());
            }
            if let Some(d) = dropped.iter().find(|d| d.entity == entity && !d.key.is_empty()) {
                return format!("{entity}:{}", d.key);
            }
        }
    }
    format!("line:{}", row.line)
}

/// Failures of a run as a whole. Those marked "before sending" happen before any request.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot create the report folder '{}'", dir.display())]
    ReportDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Failures(#[from] FailuresError),
    #[error("cannot write '{}'", path.display())]
    Summary {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0}")]
    Resume(String),
    #[error("a pipeline task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// What a finished run leaves: its summary (also in `summary.json`) and where the reports are.
#[derive(Debug)]
pub struct SyncOutcome {
    pub summary: SyncSummary,
    pub report_dir: PathBuf,
}

/// Runs one sync. `interrupt` flips to `true` on Ctrl-C.
pub async fn run(settings: SyncSettings, interrupt: watch::Receiver<bool>) -> Result<SyncOutcome, SyncError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let base_url = settings.client.base_url.clone();
    let client = SavioClient::new(settings.client)?;
    let input = settings.input.clone();
    let mapping = Arc::new(settings.mapping);
    let pipeline = {
        let mapping = Arc::clone(&mapping);
        tokio::task::spawn_blocking(move || Pipeline::open(&input, &mapping)).await.map_err(SyncError::Task)??
    };
    let mut pipeline = pipeline;
    pipeline.retry_unknown(settings.sink.retry_unknown);
    for w in pipeline.warnings() {
        tracing::warn!("{w}");
    }
    let info = pipeline.info().clone();
    let dir = settings.report_dir.clone();
    let mut durable = match &settings.state {
        Some(st) => {
            let (st, input, mapping_path, dir) =
                (st.clone(), settings.input.clone(), mapping.path().to_path_buf(), dir.clone());
            let (shard, retry_unknown) = (settings.shard, settings.sink.retry_unknown);
            let prepared = tokio::task::spawn_blocking(move || {
                prepare_state(&st, &input, &mapping_path, &dir, shard, retry_unknown)
            });
            Some(prepared.await.map_err(SyncError::Task)??)
        }
        None => None,
    };
    let results_path = dir.join("results.csv");
    let failures_path = dir.join(match info.format {
        Format::Csv => "failures.csv",
        Format::Jsonl => "failures.jsonl",
    });
    // The report files' headers reach the disk before anything is sent: a full disk or an unwritable folder
    // stops the run here, with nothing sent. The run then ends in the state file instead of looking killed.
    let opened = (|| {
        std::fs::create_dir_all(&dir).map_err(|source| SyncError::ReportDir { dir: dir.clone(), source })?;
        let mut results = ResultsWriter::create(&results_path)?;
        let mut failures = FailuresWriter::create(&failures_path, &info, true)?;
        results.flush()?;
        failures.flush()?;
        Ok::<_, SyncError>((results, failures))
    })();
    let (results, failures) = match opened {
        Ok(files) => files,
        Err(e) => {
            if let Some(d) = durable.as_mut()
                && let Err(end) = d.store.end_run(d.run_id, false, "reports_failed", "{}")
            {
                tracing::warn!("{}", error_chain(&end));
            }
            return Err(e);
        }
    };
    tracing::info!("reports go to {}", dir.display());

    let counters = Arc::new(Counters::default());
    let progress = Progress::start(settings.progress, Arc::clone(&counters), progress_total(&settings.input));
    let (rows_tx, rows_rx) = mpsc::channel::<Vec<Job>>(READ_AHEAD / READ_BATCH);
    let (done_tx, done_rx) = mpsc::channel::<RowDone>(1024);
    let last_line = Arc::new(AtomicU64::new(0));
    let gate = durable.as_mut().and_then(|d| d.gate.take());
    let reader = spawn_reader(pipeline, gate, settings.shard, rows_tx, Arc::clone(&counters), Arc::clone(&last_line));
    let journal = durable.as_ref().and_then(|d| d.journal.clone());

    let mut summary = SyncSummary {
        input: info.path.to_string(),
        mapping: mapping.path().display().to_string(),
        base_url,
        started: started_at.to_rfc3339(),
        results_file: Some(results_path.display().to_string()),
        failures_file: Some(failures_path.display().to_string()),
        rerun_flags: rerun_flags(&info, mapping.input()),
        ..Default::default()
    };
    // A summary from the start, `exit_reason` null: a monitor tells a run going on (or killed: no `finished`
    // ever comes) from one that never started. The end of the run replaces it.
    if let Err(e) = summary.write_atomic(&dir.join("summary.json")) {
        tracing::warn!("cannot write {}: {e}", dir.join("summary.json").display());
    }
    let throttle_limit = crate::sink::throttle_limit(&settings.sink);
    let sink = Sink::new(client, settings.sink, journal.clone());
    let reporter = tokio::spawn(report(
        done_rx,
        Reports { results, failures, stopper: sink.stopper() },
        summary.clone(),
        Arc::clone(&counters),
        journal,
    ));
    let stats = sink.stats();
    let stop = sink.run(rows_rx, done_tx, interrupt, settings.grace).await;
    drop(sink);
    let read = tokio::task::spawn_blocking(move || reader.join()).await.map_err(SyncError::Task)?;
    let counted = reporter.await.map_err(SyncError::Task)?;
    progress.finish();

    summary.rows = counted.rows;
    summary.rows_by_status = counted.rows_by_status;
    summary.payloads = counted.payloads;
    summary.unknown = counted.unknown;
    summary.failures = counted.failures;
    summary.unchanged = counted.unchanged;
    summary.done_before_resume = counted.done_before_resume;
    summary.blank_rows = read.as_ref().map_or(0, |r| r.as_ref().map_or(0, |end| end.blank));
    // Every outcome is queued to the journal by now (the writer and the reporter are done): wait for the
    // last commit before the run is marked as ended.
    let mut journal_error = None;
    if let Some(d) = durable.as_mut() {
        d.info.other_shard_rows = read.as_ref().map_or(0, |r| r.as_ref().map_or(0, |end| end.other_shard));
        if let Some(task) = d.task.take() {
            drop(d.journal.take());
            journal_error = tokio::task::spawn_blocking(move || task.finish()).await.map_err(SyncError::Task)?.err();
        }
        summary.state = Some(d.info.clone());
    }
    summary.requests = stats.requests.load(Ordering::Relaxed);
    summary.retries = stats.retries.load(Ordering::Relaxed);
    summary.throttled = stats.throttled.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    summary.duration_secs = (elapsed * 1000.0).round() / 1000.0;
    summary.rows_per_sec = round1(summary.rows as f64 / elapsed.max(0.001));
    summary.requests_per_sec = round1(summary.requests as f64 / elapsed.max(0.001));
    summary.finished = chrono::Utc::now().to_rfc3339();

    let read_whole = matches!(read, Ok(Ok(ReaderEnd { whole: true, .. })));
    let read_error = match read {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(error_chain(&e)),
        Err(_) => Some("the reader thread panicked".to_string()),
    };
    let reason = match (&stop, &read_error) {
        // Checked first: whatever else stopped the run, its reports are incomplete.
        _ if counted.report_error.is_some() => {
            let e = counted.report_error.as_deref().unwrap_or_default();
            summary.abort_message = Some(reports_failed_message(e));
            ExitReason::ReportsFailed
        }
        (Some(StopReason::ReportsFailed(e)), _) => {
            summary.abort_message = Some(reports_failed_message(e));
            ExitReason::ReportsFailed
        }
        (Some(StopReason::AuthRejected(m)), _) => {
            summary.abort_message = Some(format!("Savio rejected the token ({m}); nothing more was sent"));
            ExitReason::AuthRejected
        }
        (Some(StopReason::Interrupted), _) => {
            summary.abort_message = Some("interrupted (Ctrl-C / SIGTERM)".into());
            ExitReason::Interrupted
        }
        (Some(StopReason::Throttled(streak)), _) => {
            summary.abort_message = Some(format!(
                "Savio answered nothing but 429 Too Many Requests for {} s (the limit is --max-retry-after x \
                 (--max-retries + 1) = {} s); nothing more was sent, the same command resumes the run",
                streak.as_secs(),
                throttle_limit.as_secs()
            ));
            ExitReason::Throttled
        }
        (Some(StopReason::Unavailable(streak, last)), _) => {
            summary.abort_message = Some(format!(
                "every request failed for {} s without an answer from Savio or with a 5xx (last: {last}; the \
                 limit is --max-retry-after x (--max-retries + 1) = {} s); nothing more was sent, the same \
                 command resumes the run",
                streak.as_secs(),
                throttle_limit.as_secs()
            ));
            ExitReason::Unavailable
        }
        (None, Some(e)) => {
            summary.abort_message = Some(format!("the input became unreadable: {e}"));
            ExitReason::InputError
        }
        (None, None) if summary.unknown > 0 => ExitReason::UnknownOutcomes,
        (None, None) if summary.rows_with(Status::Failed) + summary.rows_with(Status::Blocked) > 0 => {
            ExitReason::RowsFailed
        }
        (None, None) => ExitReason::Completed,
    };
    if (reason != ExitReason::Completed && stop.is_some() && !read_whole) || read_error.is_some() {
        let line = last_line.load(Ordering::Relaxed);
        if line > 0 {
            summary.stopped_after_line = Some(line);
            summary.abort_message = summary.abort_message.map(|m| format!("{m}; rows after line {line} were not read"));
        }
    }
    summary.exit_reason = Some(reason);
    summary.exit_code = Some(reason.exit_code() as u8);
    let summary_path = dir.join("summary.json");
    if let Err(source) = summary.write_atomic(&summary_path) {
        // Everything was sent and journaled by now: the run still ends in the state file (which keeps this
        // summary), and exits as aborted rather than as "nothing was sent".
        let e = error_chain(&SyncError::Summary { path: summary_path, source });
        tracing::error!("{e}");
        summary.exit_reason = Some(ExitReason::ReportsFailed);
        summary.exit_code = Some(ExitReason::ReportsFailed.exit_code() as u8);
        summary.abort_message = Some(match summary.abort_message.take() {
            Some(m) if reason == ExitReason::ReportsFailed => m,
            Some(m) => format!("{}; before that: {m}", reports_failed_message(&e)),
            None => reports_failed_message(&e),
        });
    }
    let reason = summary.exit_reason.unwrap_or(reason);
    if let Some(mut d) = durable {
        let finished = matches!(reason, ExitReason::Completed | ExitReason::RowsFailed | ExitReason::UnknownOutcomes);
        let json = serde_json::to_string(&summary).unwrap_or_default();
        let reason_name = serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(String::from));
        d.store.end_run(d.run_id, finished, reason_name.as_deref().unwrap_or("unknown"), &json)?;
        if let Some(e) = journal_error {
            return Err(e.into());
        }
    }
    Ok(SyncOutcome { summary, report_dir: dir })
}

fn reports_failed_message(e: &str) -> String {
    format!(
        "the reports cannot be written ({e}); nothing more was sent, the state file records every outcome and \
         the same command resumes the run once there is room"
    )
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The input's size for a percentage, when it is a plain (not compressed) UTF-8 file: then bytes read
/// from the decoded stream and bytes of the file agree.
fn progress_total(input: &InputSpec) -> Option<u64> {
    let InputPath::File(path) = &input.path else { return None };
    if !input.encoding.is_utf8() || is_gzip(path) {
        return None;
    }
    std::fs::metadata(path).ok().map(|m| m.len())
}

fn is_gzip(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 2];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == [0x1f, 0x8b]
}

/// A run's hold on its state file.
struct Durable {
    store: StateStore,
    run_id: i64,
    info: StateInfo,
    gate: Option<Gate>,
    journal: Option<Journal>,
    task: Option<crate::state::journal::JournalTask>,
    _lock: RunLock,
}

/// Locks the state, decides between a new run and a resume, and opens the journal and the gate. Nothing has
/// been sent yet, so every error here leaves Savio untouched.
fn prepare_state(
    st: &StateSettings,
    input: &InputSpec,
    mapping_path: &Path,
    report_dir: &Path,
    shard: Option<Shard>,
    retry_unknown: bool,
) -> Result<Durable, SyncError> {
    let input_key = match &input.path {
        InputPath::Stdin => "-".to_string(),
        InputPath::File(p) => std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()).display().to_string(),
    };
    let mapping_key =
        std::fs::canonicalize(mapping_path).unwrap_or_else(|_| mapping_path.to_path_buf()).display().to_string();
    if let Some(dir) = st.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Folder { path: st.path.clone(), source })?;
    }
    let lock = RunLock::acquire(&st.path, &format!("input {input_key}"))?;
    let mut store = StateStore::open(&st.path)?;
    let input_fp = match &input.path {
        InputPath::Stdin => None,
        InputPath::File(p) => Some(crate::state::fingerprint(p)?),
    };
    let mapping_fp = crate::state::fingerprint(mapping_path)?;
    let shard_s = shard.map(|s| s.to_string());
    let unfinished = store.last_run_for(&input_key, &mapping_key, shard_s.as_deref())?.filter(|r| !r.is_finished());
    let state_name = st.path.display();
    let resume_from = match (st.resume, unfinished) {
        (ResumeChoice::Required, _) if input_fp.is_none() => {
            return Err(SyncError::Resume(
                "--resume needs the input as a file: standard input cannot be checked for changes".into(),
            ));
        }
        (ResumeChoice::Required, None) => {
            return Err(SyncError::Resume(format!(
                "--resume: the state file '{state_name}' holds no unfinished run of '{input_key}' with mapping \
                 '{mapping_key}'; run without --resume"
            )));
        }
        (ResumeChoice::Never, Some(r)) => {
            tracing::warn!("run {} on this input did not finish; --no-resume: starting a new run", r.id);
            None
        }
        (ResumeChoice::Never, None) | (ResumeChoice::Auto, None) => None,
        (choice, Some(r)) => {
            let mut changed = Vec::new();
            if input_fp.is_none() || r.input_fingerprint != input_fp {
                changed.push("input file");
            }
            if r.mapping_fingerprint != mapping_fp {
                changed.push("mapping");
            }
            if changed.is_empty() {
                Some(r)
            } else if choice == ResumeChoice::Required {
                return Err(SyncError::Resume(format!(
                    "--resume refused: the {} changed since run {} (started {}) stopped, so its journal no longer \
                     describes these rows. Run without --resume to start a new run ({} skips what Savio \
                     already accepted)",
                    changed.join(" and "),
                    r.id,
                    r.started,
                    if st.mode == Mode::Incremental { "it" } else { "--incremental" }
                )));
            } else {
                tracing::warn!(
                    "run {} on this input did not finish, but the {} changed since: starting a new run",
                    r.id,
                    changed.join(" and ")
                );
                None
            }
        }
    };
    let report_dir_s = report_dir.display().to_string();
    let (run_id, resumes) = match &resume_from {
        Some(r) => {
            store.resume_run(r.id, &report_dir_s)?;
            tracing::warn!(
                "resuming run {} (started {}, {}): what it already sent is skipped",
                r.id,
                r.started,
                r.exit_reason
                    .as_deref()
                    .map_or("killed before it could finish".to_string(), |e| format!("stopped: {e}"))
            );
            (r.id, r.resumes + 1)
        }
        None => {
            let id = store.begin_run(&NewRun {
                input: &input_key,
                input_fingerprint: input_fp.as_deref(),
                mapping: &mapping_key,
                mapping_fingerprint: &mapping_fp,
                mode: st.mode,
                shard: shard_s.as_deref(),
                report_dir: &report_dir_s,
            })?;
            (id, 0)
        }
    };
    let gate = Gate::open(&st.path, st.mode, resume_from.as_ref().map(|r| r.id), retry_unknown)?;
    let (journal, task) = Journal::start(&st.path, run_id)?;
    tracing::info!("state: {} (run {run_id}, {})", st.path.display(), st.mode.as_str());
    Ok(Durable {
        store,
        run_id,
        info: StateInfo {
            file: st.path.display().to_string(),
            run_id,
            mode: st.mode.as_str().into(),
            resumed: resume_from.is_some(),
            resumes,
            shard: shard_s,
            other_shard_rows: 0,
        },
        gate: Some(gate),
        journal: Some(journal),
        task: Some(task),
        _lock: lock,
    })
}

struct ReaderEnd {
    blank: u64,
    other_shard: u64,
    /// Every row of the input was handed to the writer (a stop came after the reading was done).
    whole: bool,
}

/// Why the reader stopped early.
#[derive(Debug, thiserror::Error)]
enum ReaderError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Rows read ahead of the writer at most (memory stays flat whatever the input size).
const READ_AHEAD: usize = 1024;
/// Rows handed to the writer together when it is behind: one wake-up of each side per batch, not per row.
const READ_BATCH: usize = 64;

/// Reads and maps on a plain thread, feeding the writer; stops when the writer stops listening. The shard
/// filter and the state's gate run here too, off the async runtime.
///
/// Rows go over in batches when the writer is behind (the channel is full), and one by one when it is
/// waiting for them (a slow input such as a pipe): batching never holds a row back while the writer idles.
fn spawn_reader(
    mut pipeline: Pipeline,
    gate: Option<Gate>,
    shard: Option<Shard>,
    rows: mpsc::Sender<Vec<Job>>,
    counters: Arc<Counters>,
    last_line: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Result<ReaderEnd, ReaderError>> {
    std::thread::spawn(move || {
        let mut end = ReaderEnd { blank: 0, other_shard: 0, whole: false };
        let mut batch = Vec::with_capacity(READ_BATCH);
        // `last_line` is the last line handed to the writer: a batch the writer no longer takes (the run
        // stopped) was not read as far as the reports go, and "rows after line N were not read" says so.
        let mut read_to = 0;
        while let Some(mut row) = pipeline.next_row()? {
            counters.bytes.store(pipeline.bytes_read(), Ordering::Relaxed);
            read_to = row.line;
            if matches!(row.kind, RowKind::Blank) {
                end.blank += 1;
                continue;
            }
            if let Some(shard) = shard
                && !shard.owns(&row)
            {
                end.other_shard += 1;
                continue;
            }
            let mut settled = Vec::new();
            if let (Some(gate), RowKind::Mapped { payloads, .. }) = (&gate, &mut row.kind) {
                let mut send = Vec::with_capacity(payloads.len());
                for p in payloads.drain(..) {
                    match gate.check(row.line, &p)? {
                        Some(s) => settled.push(settled_line(row.line, &p, s)),
                        None => send.push(p),
                    }
                }
                *payloads = send;
            }
            batch.push(Job { row, settled });
            let full = batch.len() >= READ_BATCH;
            let sent = if full || rows.capacity() > 0 {
                rows.blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(READ_BATCH)))
            } else {
                Ok(())
            };
            if sent.is_err() {
                return Ok(end);
            }
            if batch.is_empty() {
                last_line.store(read_to, Ordering::Relaxed);
            }
        }
        if batch.is_empty() || rows.blocking_send(batch).is_ok() {
            last_line.store(read_to, Ordering::Relaxed);
            end.whole = true;
        }
        Ok(end)
    })
}

fn settled_line(line: u64, p: &crate::model::Payload, s: Settled) -> ResultLine {
    ResultLine {
        line,
        entity: Some(p.entity()),
        key: p.report_key(),
        status: s.status,
        http_status: None,
        savio_id: s.savio_id,
        attempts: 0,
        latency: Duration::ZERO,
        reason: s.reason,
        group: s.group,
        hash: String::new(),
    }
}

/// What the reporter counted.
struct Counted {
    rows: u64,
    rows_by_status: std::collections::BTreeMap<Status, u64>,
    payloads: crate::report::summary::EntityCounts,
    unknown: u64,
    failures: crate::report::groups::Groups,
    unchanged: u64,
    done_before_resume: u64,
    /// Why the reports could not be written, when they could not: the run was stopped then.
    report_error: Option<String>,
}

/// The report files, and how to stop the run when they cannot be written.
struct Reports {
    results: ResultsWriter,
    failures: FailuresWriter,
    stopper: Stopper,
}

impl Reports {
    /// The first write error stops the run; later outcomes are still counted and journaled, not written.
    fn check<E: std::error::Error>(stopper: &Stopper, res: Result<(), E>, error: &mut Option<String>) {
        if let Err(e) = res
            && error.is_none()
        {
            let e = error_chain(&e);
            tracing::error!("{e}: stopping the run (nothing more is sent); the state file still records every outcome");
            stopper.stop(StopReason::ReportsFailed(e.clone()));
            *error = Some(e);
        }
    }
}

/// Writes `results.csv` and the failures file as rows complete; flushes at least every second. When they
/// cannot be written (disk full), stops the run, and keeps counting and journaling what completes, so the
/// state file still knows what Savio has.
async fn report(
    mut done: mpsc::Receiver<RowDone>,
    mut reports: Reports,
    mut tally: SyncSummary,
    counters: Arc<Counters>,
    journal: Option<Journal>,
) -> Counted {
    let (mut unchanged, mut done_before_resume) = (0, 0);
    let mut error: Option<String> = None;
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let row = tokio::select! {
            r = done.recv() => match r {
                Some(r) => r,
                None => break,
            },
            _ = flush.tick() => {
                if error.is_none() {
                    let res = reports.results.flush().map_err(SyncError::from);
                    let res = res.and_then(|()| reports.failures.flush().map_err(SyncError::from));
                    Reports::check(&reports.stopper, res, &mut error);
                }
                continue;
            }
        };
        let status = row.status();
        for r in &row.results {
            if error.is_none() {
                let res = reports.results.write(r);
                Reports::check(&reports.stopper, res, &mut error);
            }
            if r.status == Status::Skipped {
                if r.group == Settled::UNCHANGED {
                    unchanged += 1;
                } else if r.group == Settled::DONE_BEFORE {
                    done_before_resume += 1;
                }
            }
            if let Some(j) = &journal
                && !r.hash.is_empty()
                && r.entity.is_some()
            {
                j.record(journal_entry(r)).await;
            }
            if let Some(e) = r.entity {
                tally.add_payload(e, r.status);
            }
            if r.status.needs_rerun() {
                let group = if r.group.is_empty() { r.status.as_str().to_string() } else { r.group.clone() };
                tally.failures.add(group, row.line);
            }
        }
        *tally.rows_by_status.entry(status).or_default() += 1;
        counters.rows.fetch_add(1, Ordering::Relaxed);
        if status.needs_rerun() {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            if error.is_none()
                && let Some(raw) = row.source.raw()
            {
                let res = reports.failures.write(row.line, &raw, &row.reason(), &sent_cell(&row.results));
                Reports::check(&reports.stopper, res, &mut error);
            }
        } else {
            counters.ok.fetch_add(1, Ordering::Relaxed);
        }
        tally.rows += 1;
    }
    let Reports { results, failures, stopper } = reports;
    if error.is_none() {
        let res = results.finish().map_err(SyncError::from);
        let res = res.and_then(|()| failures.finish().map_err(SyncError::from));
        Reports::check(&stopper, res, &mut error);
    }
    Counted {
        rows: tally.rows,
        rows_by_status: tally.rows_by_status,
        payloads: tally.payloads,
        unknown: tally.unknown,
        failures: tally.failures,
        unchanged,
        done_before_resume,
        report_error: error,
    }
}

/// The flags a re-run of the failures file needs to read it as this run read the input: the file keeps the
/// input's encoding and delimiter, but an encoding without a byte-order mark (windows-1252) cannot be told
/// from the bytes, and a delimiter that had to be given may not be detected either. Nothing when the mapping's
/// `[input]` says it (the re-run uses the same mapping), the byte-order mark or `sep=` line tells, or UTF-8.
fn rerun_flags(info: &SourceInfo, section: &InputSection) -> String {
    let mut flags = String::new();
    let in_mapping = section.encoding.as_deref().and_then(TextEncoding::from_label);
    if !info.encoding.bom && !info.encoding.is_utf8() && in_mapping.map(|e| e.name()) != Some(info.encoding.name()) {
        flags.push_str(&format!(" --encoding {}", info.encoding.name().to_ascii_lowercase()));
    }
    if let Some(d) = info.delimiter
        && info.delimiter_origin() == Some(DelimiterOrigin::Given)
        && section.delimiter.as_deref().and_then(Delimiter::parse) != Some(d)
    {
        match d.0 {
            b'\t' => flags.push_str(" --delimiter tab"),
            b'\'' => flags.push_str(" --delimiter \"'\""),
            b => flags.push_str(&format!(" --delimiter '{}'", b as char)),
        }
    }
    flags
}

/// A failed row's `_savio_sent` cell: what of it Savio has (ok, not sent again since an earlier run did,
/// by the failures file or the state file, or feedback an earlier row of this run holds too: that row
/// creates it, or its own failures file row does), or may have (feedback whose outcome is unknown), so that a re-run of the failures file sends the
/// rest and never creates a feedback twice.
fn sent_cell(results: &[ResultLine]) -> String {
    let mut marks: Vec<String> = Vec::new();
    for r in results {
        let Some(entity) = r.entity else { continue };
        let mark = match r.status {
            Status::Ok => sent_marker(entity, false),
            // Savio has it: an earlier run sent it (the failures file's, the run this one resumes, or one the
            // state file records), or an earlier row of this run did.
            Status::Skipped
                if [SENT_GROUP, REPEATED_FEEDBACK_GROUP, Settled::DONE_BEFORE, Settled::UNCHANGED]
                    .contains(&r.group.as_str()) =>
            {
                sent_marker(entity, false)
            }
            Status::Unknown if entity == Entity::Feedback => sent_marker(entity, true),
            _ => continue,
        };
        if !marks.contains(&mark) {
            marks.push(mark);
        }
    }
    marks.join(", ")
}

/// The default report folder: `savio-reports/<UTC time>-<input name>/` under the current directory.
pub fn default_report_dir(input: &InputPath) -> PathBuf {
    let stem = match input {
        InputPath::Stdin => "stdin".to_string(),
        InputPath::File(p) => p
            .file_name()
            .map(|n| n.to_string_lossy().split('.').next().unwrap_or("input").to_string())
            .unwrap_or_else(|| "input".into()),
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    PathBuf::from("savio-reports").join(format!("{stamp}-{stem}"))
}
