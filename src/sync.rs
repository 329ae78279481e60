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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::client::{ClientConfig, ClientError, SavioClient};
use crate::mapping::Mapping;
use crate::pipeline::{Pipeline, PrepareError, Row};
use crate::progress::{Counters, Progress, ProgressMode};
use crate::report::failures::{FailuresError, FailuresWriter};
use crate::report::results::{ResultsError, ResultsWriter, Status};
use crate::report::summary::{ExitReason, SyncSummary};
use crate::sink::{RowDone, Sink, SinkConfig, StopReason};
use crate::source::{Format, InputPath, InputSpec, ReadError};

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
    for w in pipeline.warnings() {
        tracing::warn!("{w}");
    }
    let info = pipeline.info().clone();
    let dir = settings.report_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| SyncError::ReportDir { dir: dir.clone(), source })?;
    let results_path = dir.join("results.csv");
    let failures_path = dir.join(match info.format {
        Format::Csv => "failures.csv",
        Format::Jsonl => "failures.jsonl",
    });
    let results = ResultsWriter::create(&results_path)?;
    let failures = FailuresWriter::create(&failures_path, &info)?;
    tracing::info!("reports go to {}", dir.display());

    let counters = Arc::new(Counters::default());
    let progress = Progress::start(settings.progress, Arc::clone(&counters), progress_total(&settings.input));
    let (rows_tx, rows_rx) = mpsc::channel::<Row>(1024);
    let (done_tx, done_rx) = mpsc::channel::<RowDone>(1024);
    let last_line = Arc::new(AtomicU64::new(0));
    let reader = spawn_reader(pipeline, rows_tx, Arc::clone(&counters), Arc::clone(&last_line));

    let mut summary = SyncSummary {
        input: info.path.to_string(),
        mapping: mapping.path().display().to_string(),
        base_url,
        started: started_at.to_rfc3339(),
        results_file: Some(results_path.display().to_string()),
        failures_file: Some(failures_path.display().to_string()),
        ..Default::default()
    };
    let reporter = tokio::spawn(report(done_rx, results, failures, summary.clone(), Arc::clone(&counters)));

    let sink = Sink::new(client, settings.sink);
    let stats = sink.stats();
    let stop = sink.run(rows_rx, done_tx, interrupt, settings.grace).await;
    let read = tokio::task::spawn_blocking(move || reader.join()).await.map_err(SyncError::Task)?;
    let counted = reporter.await.map_err(SyncError::Task)??;
    progress.finish();

    summary.rows = counted.rows;
    summary.rows_by_status = counted.rows_by_status;
    summary.payloads = counted.payloads;
    summary.unknown = counted.unknown;
    summary.failures = counted.failures;
    summary.blank_rows = read.as_ref().map_or(0, |r| r.as_ref().map_or(0, |end| end.blank));
    summary.requests = stats.requests.load(Ordering::Relaxed);
    summary.retries = stats.retries.load(Ordering::Relaxed);
    summary.throttled = stats.throttled.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    summary.duration_secs = (elapsed * 1000.0).round() / 1000.0;
    summary.rows_per_sec = round1(summary.rows as f64 / elapsed.max(0.001));
    summary.requests_per_sec = round1(summary.requests as f64 / elapsed.max(0.001));
    summary.finished = chrono::Utc::now().to_rfc3339();

    let read_error = match read {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(error_chain(&e)),
        Err(_) => Some("the reader thread panicked".to_string()),
    };
    let reason = match (&stop, &read_error) {
        (Some(StopReason::AuthRejected(m)), _) => {
            summary.abort_message = Some(format!("Savio rejected the token ({m}); nothing more was sent"));
            ExitReason::AuthRejected
        }
        (Some(StopReason::Interrupted), _) => {
            summary.abort_message = Some("interrupted (Ctrl-C / SIGTERM)".into());
            ExitReason::Interrupted
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
    if reason != ExitReason::Completed && stop.is_some() || read_error.is_some() {
        let line = last_line.load(Ordering::Relaxed);
        if line > 0 {
            summary.stopped_after_line = Some(line);
            summary.abort_message = summary.abort_message.map(|m| format!("{m}; rows after line {line} were not read"));
        }
    }
    summary.exit_reason = Some(reason);
    summary.exit_code = reason.exit_code() as u8;
    let summary_path = dir.join("summary.json");
    summary.write_atomic(&summary_path).map_err(|source| SyncError::Summary { path: summary_path, source })?;
    Ok(SyncOutcome { summary, report_dir: dir })
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

struct ReaderEnd {
    blank: u64,
}

/// Reads and maps on a plain thread, feeding the writer; stops when the writer stops listening.
fn spawn_reader(
    mut pipeline: Pipeline,
    rows: mpsc::Sender<Row>,
    counters: Arc<Counters>,
    last_line: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Result<ReaderEnd, ReadError>> {
    std::thread::spawn(move || {
        let mut end = ReaderEnd { blank: 0 };
        while let Some(row) = pipeline.next_row()? {
            counters.bytes.store(pipeline.bytes_read(), Ordering::Relaxed);
            last_line.store(row.line, Ordering::Relaxed);
            if matches!(row.kind, crate::pipeline::RowKind::Blank) {
                end.blank += 1;
                continue;
            }
            if rows.blocking_send(row).is_err() {
                break;
            }
        }
        Ok(end)
    })
}

/// What the reporter counted.
struct Counted {
    rows: u64,
    rows_by_status: std::collections::BTreeMap<Status, u64>,
    payloads: crate::report::summary::EntityCounts,
    unknown: u64,
    failures: crate::report::groups::Groups,
}

/// Writes `results.csv` and the failures file as rows complete; flushes at least every second.
async fn report(
    mut done: mpsc::Receiver<RowDone>,
    mut results: ResultsWriter,
    mut failures: FailuresWriter,
    mut tally: SyncSummary,
    counters: Arc<Counters>,
) -> Result<Counted, SyncError> {
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let row = tokio::select! {
            r = done.recv() => match r {
                Some(r) => r,
                None => break,
            },
            _ = flush.tick() => {
                results.flush()?;
                failures.flush()?;
                continue;
            }
        };
        let status = row.status();
        for r in &row.results {
            results.write(r)?;
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
            if let Some(raw) = &row.raw {
                failures.write(row.line, raw, &row.reason())?;
            }
        } else {
            counters.ok.fetch_add(1, Ordering::Relaxed);
        }
        tally.rows += 1;
    }
    results.finish()?;
    failures.finish()?;
    Ok(Counted {
        rows: tally.rows,
        rows_by_status: tally.rows_by_status,
        payloads: tally.payloads,
        unknown: tally.unknown,
        failures: tally.failures,
    })
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
