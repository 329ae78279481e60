//! The run journal's writer: one thread that owns the write connection and commits in batches.
//!
//! Outcomes are queued and committed together (a batch gathers what arrives for up to [`GATHER`], at most
//! [`BATCH`]), so a busy run costs one commit per batch, not one per row; nothing waits for them. If the
//! process dies, outcomes not yet committed are lost; a feedback among them comes back from its in-flight
//! mark as `unknown`, an upsert is simply sent again.
//! Feedback's write-ahead mark ([`Journal::before_send`]) does not go through this thread: it is appended to
//! the [`super::inflight`] log by the caller before its request leaves, and replayed into the journal when
//! the writer ends (or, after a crash, when the state is next opened). A WAL checkpoint at most every
//! [`COMMIT_EVERY`] bounds what an OS crash could lose.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::mpsc;

use super::inflight::{self, InflightLog};
use super::{StateError, connect, now};
use crate::model::Entity;
use crate::report::results::Status;

/// Most messages in one transaction.
pub const BATCH: usize = 4096;
/// How long a small batch waits for more outcomes before it is committed.
const GATHER: Duration = Duration::from_millis(100);
/// How often a gathering batch looks for more outcomes (and for the end of the run).
const GATHER_STEP: Duration = Duration::from_millis(5);
/// The longest between two checkpoints of the write-ahead log while the run is busy.
pub const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// One payload's outcome (or its write-ahead mark).
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub line: u64,
    pub entity: Entity,
    /// As in the results file: internal_id, email, or `sha:...` for feedback.
    pub key: String,
    /// The payload's content hash.
    pub hash: String,
    pub status: Status,
    pub savio_id: Option<String>,
    pub reason: String,
}

/// The handle every stage uses. Cheap to clone; the writer ends when every handle is dropped.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<JournalEntry>,
    inflight: Arc<InflightLog>,
}

/// The writer thread; [`JournalTask::finish`] waits for its last commit.
pub struct JournalTask {
    thread: std::thread::JoinHandle<Result<(), StateError>>,
}

impl Journal {
    /// Opens a second connection to `path` and the in-flight log, and starts the writer for run `run_id`.
    pub fn start(path: &Path, run_id: i64) -> Result<(Journal, JournalTask), StateError> {
        let conn = connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        // Every row written here belongs to `run_id`, which exists: checking each against `runs` is wasted.
        // A page cache that holds a busy run's working set: with SQLite's default (2 MB) a commit spilled
        // and re-read pages of the `accepted` table, whose keys arrive in random order. And checkpoints
        // only from [`checkpoint`], at most every [`COMMIT_EVERY`], not at every 1000 pages of the WAL.
        for (pragma, value) in [("foreign_keys", 0), ("cache_size", -65_536), ("wal_autocheckpoint", 0)] {
            conn.pragma_update(None, pragma, value)
                .map_err(|source| StateError::Sqlite { path: path.into(), source })?;
        }
        let inflight = Arc::new(InflightLog::open(path, run_id)?);
        let (tx, rx) = mpsc::channel(BATCH * 2);
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("savio-journal".into())
            .spawn(move || write_loop(conn, &path, run_id, rx))
            .map_err(StateError::JournalThread)?;
        Ok((Journal { tx, inflight }, JournalTask { thread }))
    }

    /// Records a feedback (its line, report key and content hash) as about to be sent. Once this returns,
    /// the mark survives a crash of the process; send the request only then.
    pub fn before_send(&self, line: u64, key: &str, hash: &str) -> Result<(), StateError> {
        self.inflight.mark(line, key, hash)
    }

    /// Records that a feedback marked by [`Journal::before_send`] was created (Savio answered 2xx), so that a
    /// crash before the outcome's batch commits leaves it `ok`, not `unknown`.
    pub fn after_created(&self, line: u64, key: &str, hash: &str, id: Option<String>) -> Result<(), StateError> {
        self.inflight.created(line, key, hash, id)
    }

    /// Queues an outcome; it is committed with the next batch.
    pub async fn record(&self, entry: JournalEntry) {
        // A closed journal has already reported its error; the reports still hold the outcome.
        let _ = self.tx.send(entry).await;
    }
}

impl JournalTask {
    /// Waits for the writer to commit everything queued, then for the in-flight log to be replayed (a mark
    /// whose outcome never reached the journal becomes `pending`). Call after dropping every [`Journal`]
    /// handle.
    pub fn finish(self) -> Result<(), StateError> {
        self.thread.join().unwrap_or(Err(StateError::JournalPanicked))
    }
}

fn write_loop(
    mut conn: Connection,
    path: &Path,
    run_id: i64,
    mut rx: mpsc::Receiver<JournalEntry>,
) -> Result<(), StateError> {
    let sqlite = |source| StateError::Sqlite { path: path.into(), source };
    // The keys of unsure feedback (a small table), so that an outcome deletes from it only when it is there.
    let mut unsure_keys = unsure_keys(&conn).map_err(sqlite)?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_checkpoint = Instant::now();
    let mut dirty = false;
    // Takes what is queued, up to a full batch; `false` once every handle is dropped and the queue is empty.
    let drain = |rx: &mut mpsc::Receiver<JournalEntry>, batch: &mut Vec<JournalEntry>| {
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
        true
    };
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        let mut open = drain(&mut rx, &mut batch);
        // Nobody waits for an outcome's commit: gathering what arrives in the next [`GATHER`] makes commits,
        // and the pages each one rewrites, fewer. A run that has ended does not wait.
        let gather_until = Instant::now() + GATHER;
        while open && batch.len() < BATCH / 2 && Instant::now() < gather_until {
            std::thread::sleep(GATHER_STEP);
            open = drain(&mut rx, &mut batch);
        }
        if let Err(e) = write_batch(&mut conn, run_id, batch.drain(..), &mut unsure_keys) {
            rx.close();
            let err = sqlite(e);
            tracing::error!("the state journal cannot be written: {err}");
            return Err(err);
        }
        dirty = true;
        if last_checkpoint.elapsed() >= COMMIT_EVERY {
            checkpoint(&conn);
            last_checkpoint = Instant::now();
            dirty = false;
        }
    }
    inflight::replay(&mut conn, path)?;
    if dirty {
        checkpoint(&conn);
    }
    Ok(())
}

/// Moves the write-ahead log into the database (and syncs both), without waiting for readers.
fn checkpoint(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::debug!("state checkpoint: {e}");
    }
}

fn unsure_keys(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
    let mut stmt = conn.prepare("SELECT key FROM unsure_feedback")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

fn write_batch(
    conn: &mut Connection,
    run_id: i64,
    batch: impl Iterator<Item = JournalEntry>,
    unsure_keys: &mut HashSet<String>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut journal = tx.prepare_cached(
            "INSERT OR REPLACE INTO journal (run_id, line, entity, key, hash, status, savio_id, reason, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut accepted = tx.prepare_cached(
            "INSERT OR REPLACE INTO accepted (entity, key, hash, savio_id, at, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut unsure = tx
            .prepare_cached("INSERT OR REPLACE INTO unsure_feedback (key, run_id, line, at) VALUES (?1, ?2, ?3, ?4)")?;
        let mut sure = tx.prepare_cached("DELETE FROM unsure_feedback WHERE key = ?1")?;
        let at = now();
        for e in batch {
            let status = e.status.as_str();
            let line = i64::try_from(e.line).unwrap_or(i64::MAX);
            journal.execute(params![
                run_id,
                line,
                e.entity.as_str(),
                e.key,
                e.hash,
                status,
                e.savio_id,
                e.reason,
                at
            ])?;
            if status == "ok" {
                accepted.execute(params![e.entity.as_str(), e.key, e.hash, e.savio_id, at, run_id])?;
            }
            match (status, e.entity) {
                ("unknown", Entity::Feedback) => {
                    unsure.execute(params![e.key, run_id, line, at])?;
                    unsure_keys.insert(e.key);
                }
                // Any other outcome settles it: created (ok), or certainly not (refused, not sent).
                (_, Entity::Feedback) if unsure_keys.remove(&e.key) => {
                    sure.execute([&e.key])?;
                }
                _ => {}
            }
        }
    }
    tx.commit()
}
