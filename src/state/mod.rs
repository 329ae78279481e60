//! Durable memory between runs: what was sent, what Savio accepted, which runs did not finish.
//!
//! One embedded SQLite file (WAL) per job holds:
//! - `runs`: every run, its input and mapping (with content fingerprints), mode, and how it ended;
//! - `journal`: every payload's outcome in a run, committed in batches as payloads complete; feedback
//!   (not idempotent) is marked in the [`inflight`] log *before* its request is sent, so a crash leaves a
//!   trace, which becomes a `pending` row;
//! - `accepted`: per entity key, the hash of the last payload Savio accepted (for `--incremental`);
//! - `unsure_feedback`: feedback whose creation is unknown, never re-sent blindly by a later run.
//!
//! Three things are built on it: **resume** (a run that did not finish continues, skipping what its journal
//! records as done: [`Gate`]), **incremental sync** (skip what Savio already has), and **one run at a time**
//! ([`lock::RunLock`]). Durability: a process crash (`kill -9`, OOM, panic) loses nothing committed; the
//! journal commits at least every [`journal::COMMIT_EVERY`], and feedback's write-ahead mark is written
//! before its request leaves. An OS crash or power cut can lose the last second (`synchronous=NORMAL`).

mod gate;
pub mod inflight;
pub mod journal;
pub mod lock;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

pub use gate::{Gate, Settled};
pub use journal::{Journal, JournalEntry};
pub use lock::{LockError, RunLock};
pub use schema::SchemaError;

/// Failures of the state file. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot use the state file '{}': {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: SchemaError,
    },
    #[error("the state file '{}' does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("cannot create the folder of the state file '{}'", path.display())]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state file '{}' failed: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot start the state journal")]
    JournalThread(#[source] std::io::Error),
    #[error("the state journal's thread panicked")]
    JournalPanicked,
    #[error("cannot write the in-flight log '{}'", path.display())]
    Inflight {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read '{}' to fingerprint it", path.display())]
    Fingerprint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How a run decides what to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Skip payloads whose hash equals the last one Savio accepted for their key.
    Incremental,
    /// Send everything.
    Full,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Incremental => "incremental",
            Mode::Full => "full",
        }
    }
}

/// One run as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub started: String,
    pub finished: Option<String>,
    pub input: String,
    pub input_fingerprint: Option<String>,
    pub mapping: String,
    pub mapping_fingerprint: String,
    pub mode: String,
    pub shard: Option<String>,
    pub pid: i64,
    pub report_dir: Option<String>,
    pub resumes: i64,
    pub exit_reason: Option<String>,
    /// The run's summary.json, when it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
}

impl RunRecord {
    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }
}

/// What a new run records about itself.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub input: &'a str,
    pub input_fingerprint: Option<&'a str>,
    pub mapping: &'a str,
    pub mapping_fingerprint: &'a str,
    pub mode: Mode,
    pub shard: Option<&'a str>,
    pub report_dir: &'a str,
}

/// The state file, opened for a run or for `savio-sync runs`.
pub struct StateStore {
    conn: Connection,
    path: PathBuf,
}

impl StateStore {
    /// Opens (creating it and its folder if needed) and migrates the state file, then replays the in-flight
    /// log a crashed run left ([`inflight`]). Call it holding the run lock.
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StateError::Folder { path: path.into(), source })?;
        }
        let mut conn = connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        schema::migrate(&mut conn).map_err(|source| StateError::Open { path: path.into(), source })?;
        let recovered = inflight::replay(&mut conn, path)?;
        if recovered > 0 {
            tracing::warn!(
                "{recovered} feedback were in flight when the last run stopped: they may or may not have been \
                 created, and are not re-sent (--retry-unknown re-sends them)"
            );
        }
        Ok(StateStore { conn, path: path.into() })
    }

    /// Opens an existing state file without creating or migrating anything (for `savio-sync runs`).
    pub fn open_existing(path: &Path) -> Result<StateStore, StateError> {
        if !path.exists() {
            return Err(StateError::Missing { path: path.into() });
        }
        let mut conn = connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        schema::migrate(&mut conn).map_err(|source| StateError::Open { path: path.into(), source })?;
        Ok(StateStore { conn, path: path.into() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        |source| StateError::Sqlite { path: self.path.clone(), source }
    }

    /// The most recent run on this input and mapping (and shard), finished or not.
    pub fn last_run_for(
        &self,
        input: &str,
        mapping: &str,
        shard: Option<&str>,
    ) -> Result<Option<RunRecord>, StateError> {
        self.conn
            .query_row(
                &format!("{SELECT_RUN} WHERE input = ?1 AND mapping = ?2 AND shard IS ?3 ORDER BY id DESC LIMIT 1"),
                params![input, mapping, shard],
                run_record,
            )
            .optional()
            .map_err(self.sqlite())
    }

    /// Every run, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let mut stmt = self.conn.prepare(&format!("{SELECT_RUN} ORDER BY id DESC LIMIT ?1")).map_err(self.sqlite())?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], run_record)
            .map_err(self.sqlite())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sqlite())?;
        Ok(rows)
    }

    /// Records the start of a new run; returns its id.
    pub fn begin_run(&mut self, run: &NewRun<'_>) -> Result<i64, StateError> {
        self.conn
            .execute(
                "INSERT INTO runs (started, input, input_fingerprint, mapping, mapping_fingerprint, mode, shard, pid,
                                   report_dir)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    now(),
                    run.input,
                    run.input_fingerprint,
                    run.mapping,
                    run.mapping_fingerprint,
                    run.mode.as_str(),
                    run.shard,
                    std::process::id(),
                    run.report_dir
                ],
            )
            .map_err(self.sqlite())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Reopens an unfinished run to continue it.
    pub fn resume_run(&mut self, id: i64, report_dir: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE runs SET resumes = resumes + 1, pid = ?2, report_dir = ?3 WHERE id = ?1",
                params![id, std::process::id(), report_dir],
            )
            .map_err(self.sqlite())?;
        Ok(())
    }

    /// Records how a run ended. `finished` is false when it stopped early (interrupted, token rejected,
    /// input error): such a run can be resumed.
    pub fn end_run(&mut self, id: i64, finished: bool, exit_reason: &str, summary: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE runs SET finished = ?2, exit_reason = ?3, summary = ?4 WHERE id = ?1",
                params![id, finished.then(now), exit_reason, summary],
            )
            .map_err(self.sqlite())?;
        Ok(())
    }

    /// Payload outcomes recorded for a run, by status.
    pub fn journal_counts(&self, run: i64) -> Result<Vec<(String, i64)>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT status, count(*) FROM journal WHERE run_id = ?1 GROUP BY status ORDER BY status")
            .map_err(self.sqlite())?;
        let rows = stmt
            .query_map([run], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.sqlite())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sqlite())?;
        Ok(rows)
    }

    /// SQLite's own consistency check: `"ok"` when the file is sound.
    pub fn integrity_check(&self) -> Result<String, StateError> {
        self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(self.sqlite())
    }
}

const SELECT_RUN: &str = "SELECT id, started, finished, input, input_fingerprint, mapping, mapping_fingerprint, mode,
    shard, pid, report_dir, resumes, exit_reason, summary FROM runs";

fn run_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: r.get(0)?,
        started: r.get(1)?,
        finished: r.get(2)?,
        input: r.get(3)?,
        input_fingerprint: r.get(4)?,
        mapping: r.get(5)?,
        mapping_fingerprint: r.get(6)?,
        mode: r.get(7)?,
        shard: r.get(8)?,
        pid: r.get(9)?,
        report_dir: r.get(10)?,
        resumes: r.get(11)?,
        exit_reason: r.get(12)?,
        summary: r.get::<_, Option<String>>(13)?.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

/// Opens a connection with the settings every user of the file shares.
pub(crate) fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, StateError> {
    let sqlite = |source| StateError::Sqlite { path: path.into(), source };
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(sqlite)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
    // A file that is not SQLite at all fails here, on the first read.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| StateError::Open { path: path.into(), source: SchemaError::Sqlite(e) })?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!("the state file '{}' could not switch to WAL (journal mode {mode})", path.display());
    }
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sqlite)?;
    conn.pragma_update(None, "foreign_keys", true).map_err(sqlite)?;
    Ok(conn)
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A content fingerprint of a file (BLAKE3, hex), streamed: a resume refuses when it changed.
pub fn fingerprint(path: &Path) -> Result<String, StateError> {
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path).map_err(|source| StateError::Fingerprint { path: path.into(), source })?;
    hasher.update_reader(file).map_err(|source| StateError::Fingerprint { path: path.into(), source })?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// The default state file of a job: `<folder of the report folders>/<mapping name>[.shard-K-of-N].state.sqlite`.
///
/// One per mapping, not per input, so a nightly export with a new file name each night still finds what
/// was sent last night. Per shard, so shards on one machine do not wait for each other's lock.
pub fn default_state_path(report_dir: &Path, mapping: &Path, shard: Option<(u32, u32)>) -> PathBuf {
    let parent = report_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let stem = mapping.file_stem().map_or_else(|| "savio".into(), |s| s.to_string_lossy().into_owned());
    let shard = shard.map(|(k, n)| format!(".shard-{k}-of-{n}")).unwrap_or_default();
    parent.join(format!("{stem}{shard}.state.sqlite"))
}

/// One line of `savio-sync runs`: a run, the state file it is in, and its journal's payload counts.
#[derive(Debug, Clone, Serialize)]
pub struct RunListing {
    pub state_file: String,
    #[serde(flatten)]
    pub run: RunRecord,
    /// Payload outcomes the journal holds for the run, by status (`pending`: in flight when it died).
    pub journal: std::collections::BTreeMap<String, i64>,
}

impl RunListing {
    /// The `limit` newest runs of a state file, with their journal counts.
    pub fn read(store: &StateStore, limit: usize) -> Result<Vec<RunListing>, StateError> {
        let state_file = store.path().display().to_string();
        store
            .runs(limit)?
            .into_iter()
            .map(|run| {
                let journal = store.journal_counts(run.id)?.into_iter().collect();
                Ok(RunListing { state_file: state_file.clone(), run, journal })
            })
            .collect()
    }
}

/// `savio-sync runs` as text: per state file, one block per run, newest first, with the payload outcomes its
/// journal holds and how it ended.
pub fn render_runs(out: &mut dyn std::io::Write, runs: &[RunListing]) -> std::io::Result<()> {
    let mut current: Option<&str> = None;
    for RunListing { state_file: file, run, journal: counts } in runs {
        if current != Some(file.as_str()) {
            if current.is_some() {
                writeln!(out)?;
            }
            writeln!(out, "{file}")?;
            current = Some(file.as_str());
        }
        let count = |s: &str| counts.get(s).copied().unwrap_or(0);
        let unchanged = run.summary.as_ref().and_then(|s| s["unchanged"].as_u64()).unwrap_or(0);
        let rows = run.summary.as_ref().and_then(|s| s["rows"].as_u64());
        let ended = match (&run.finished, &run.exit_reason) {
            (Some(at), Some(r)) => format!("{r} at {at}"),
            (None, Some(r)) => format!("{r}, not finished (resumable)"),
            (_, None) => format!("did not finish (PID {}; resumable)", run.pid),
        };
        let resumed = if run.resumes > 0 { format!(", resumed {}x", run.resumes) } else { String::new() };
        let shard = run.shard.as_ref().map(|s| format!(", shard {s}")).unwrap_or_default();
        writeln!(out, "  run {} started {} ({}{shard}{resumed}): {ended}", run.id, run.started, run.mode)?;
        writeln!(out, "    input   {}", run.input)?;
        writeln!(out, "    mapping {}", run.mapping)?;
        let mut line = format!(
            "    payloads: {} ok, {} failed, {} blocked, {} unknown",
            count("ok"),
            count("failed"),
            count("blocked"),
            count("unknown") + count("pending")
        );
        if unchanged > 0 {
            line.push_str(&format!(", {unchanged} unchanged (not sent)"));
        }
        if let Some(rows) = rows {
            line.push_str(&format!("; {rows} rows"));
        }
        writeln!(out, "{line}")?;
        if let Some(dir) = &run.report_dir {
            writeln!(out, "    reports {dir}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_recorded_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.sqlite");
        let mut s = StateStore::open(&path).unwrap();
        let run = NewRun {
            input: "a.csv",
            input_fingerprint: Some("f1"),
            mapping: "m.toml",
            mapping_fingerprint: "m1",
            mode: Mode::Incremental,
            shard: None,
            report_dir: "r",
        };
        let id = s.begin_run(&run).unwrap();
        let last = s.last_run_for("a.csv", "m.toml", None).unwrap().unwrap();
        assert_eq!((last.id, last.is_finished()), (id, false));
        s.end_run(id, true, "completed", "{\"rows\":3}").unwrap();
        let runs = s.runs(10).unwrap();
        assert_eq!(runs[0].exit_reason.as_deref(), Some("completed"));
        assert_eq!(runs[0].summary.as_ref().unwrap()["rows"], 3);
        assert!(s.last_run_for("a.csv", "m.toml", Some("1/2")).unwrap().is_none());
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_a_clear_error_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "name,email\nAda,ada@example.com\n".repeat(100)).unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = StateStore::open(&path).err().unwrap().to_string();
        assert!(err.contains("notes.txt"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn default_paths_are_per_mapping_and_shard() {
        let p = default_state_path(Path::new("savio-reports/20261203-x"), Path::new("m/hubspot.toml"), None);
        assert_eq!(p, Path::new("savio-reports/hubspot.state.sqlite"));
        let p = default_state_path(Path::new("r"), Path::new("hubspot.toml"), Some((2, 4)));
        assert_eq!(p, Path::new("./hubspot.shard-2-of-4.state.sqlite"));
    }
}
