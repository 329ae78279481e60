//! The in-flight log: every feedback about to be sent, appended by the writer right before its request.
//!
//! Feedback cannot be de-duplicated by Savio, so a crash must never leave a created feedback without a
//! trace: the mark has to be durable before the request leaves. A plain append does that: once `write()`
//! returns, the line survives a crash of the process (`kill -9`, OOM, panic), which is the guarantee the
//! journal's commits give with `synchronous=NORMAL`; an OS crash can lose the last of either. Committing a
//! SQLite transaction per mark instead cost more CPU than the request itself and made every feedback wait
//! for another thread (measured in BENCHMARKS.md).
//!
//! The log is replayed into the journal when the run ends and, after a crash, when the state is next opened
//! (under the run lock): a mark whose payload has no outcome in the journal becomes `pending` there and
//! unsure, so no later run re-sends it blindly; a mark followed by a `created` line (appended when Savio
//! answered 2xx, before the journal's batch commits that outcome) becomes `ok`. Then the log is removed. It
//! holds about 300 bytes per feedback sent by the current run.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::{StateError, now};

/// `<state file>-inflight`, next to SQLite's own `-wal` and `-shm`.
pub fn path_for(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push("-inflight");
    PathBuf::from(name)
}

#[derive(Serialize, Deserialize)]
struct Mark<'a> {
    run: i64,
    line: u64,
    key: &'a str,
    hash: &'a str,
    /// A second line for the same feedback, appended when Savio answered 2xx: it was created (with this id,
    /// when the answer had one). The journal commits outcomes in batches, so after a crash this line is what
    /// tells a created feedback from one that was in flight.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    created: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

/// The writer's handle: appends one line per feedback, each with a single `write()`.
#[derive(Debug)]
pub struct InflightLog {
    file: File,
    path: PathBuf,
    run_id: i64,
}

impl InflightLog {
    pub fn open(state: &Path, run_id: i64) -> Result<InflightLog, StateError> {
        let path = path_for(state);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| StateError::Inflight { path: path.clone(), source })?;
        Ok(InflightLog { file, path, run_id })
    }

    /// Records a feedback (its source line, report key and content hash) as about to be sent.
    pub fn mark(&self, line: u64, key: &str, hash: &str) -> Result<(), StateError> {
        self.append(&Mark { run: self.run_id, line, key, hash, created: false, id: None })
    }

    /// Records that a marked feedback was created (Savio answered 2xx), before the journal's batch commits it.
    pub fn created(&self, line: u64, key: &str, hash: &str, id: Option<String>) -> Result<(), StateError> {
        self.append(&Mark { run: self.run_id, line, key, hash, created: true, id })
    }

    fn append(&self, mark: &Mark<'_>) -> Result<(), StateError> {
        let mut buf = serde_json::to_vec(mark).unwrap_or_default();
        buf.push(b'\n');
        (&self.file).write_all(&buf).map_err(|source| StateError::Inflight { path: self.path.clone(), source })
    }
}

/// Moves the marks of `state`'s in-flight log into the journal, then removes the log. A mark with no outcome
/// in the journal becomes a `pending` feedback, and unsure, unless the log also records it as created: then
/// it is `ok` (and accepted) as if the journal had committed it. Returns how many stay pending. A torn last line (the
/// process died inside the append) is a mark whose request never left, and is skipped.
pub fn replay(conn: &mut Connection, state: &Path) -> Result<u64, StateError> {
    let path = path_for(state);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(StateError::Inflight { path, source }),
    };
    let sqlite = |source| StateError::Sqlite { path: state.into(), source };
    let tx = conn.transaction().map_err(sqlite)?;
    let mut recovered = 0;
    {
        let mut journal = tx
            .prepare(
                "INSERT OR IGNORE INTO journal (run_id, line, entity, key, hash, status, savio_id, reason, at)
                 VALUES (?1, ?2, 'feedback', ?3, ?4, 'pending', NULL, 'in flight when the run stopped', ?5)",
            )
            .map_err(sqlite)?;
        let mut unsure = tx
            .prepare("INSERT OR REPLACE INTO unsure_feedback (key, run_id, line, at) VALUES (?1, ?2, ?3, ?4)")
            .map_err(sqlite)?;
        // A created feedback: ok, unless the journal already holds its outcome (a `pending` row is one this
        // replay just wrote from its mark).
        let mut created = tx
            .prepare(
                "INSERT INTO journal (run_id, line, entity, key, hash, status, savio_id, reason, at)
                 VALUES (?1, ?2, 'feedback', ?3, ?4, 'ok', ?5, 'created; recorded from the in-flight log', ?6)
                 ON CONFLICT (run_id, line, entity) DO UPDATE SET status = 'ok', savio_id = excluded.savio_id,
                     reason = excluded.reason, at = excluded.at
                 WHERE status = 'pending'",
            )
            .map_err(sqlite)?;
        let mut accepted = tx
            .prepare(
                "INSERT OR REPLACE INTO accepted (entity, key, hash, savio_id, at, run_id)
                 VALUES ('feedback', ?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(sqlite)?;
        let mut sure = tx.prepare("DELETE FROM unsure_feedback WHERE key = ?1").map_err(sqlite)?;
        let mut pending: HashSet<(i64, i64)> = HashSet::new();
        let at = now();
        // Per run, the lines whose feedback has a row in the journal: one query per run, not one per mark.
        let mut outcomes: HashMap<i64, HashSet<i64>> = HashMap::new();
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|source| StateError::Inflight { path: path.clone(), source })?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            let Ok(mark) = serde_json::from_slice::<Mark<'_>>(&line) else {
                tracing::warn!("{}: skipping an unreadable line", path.display());
                continue;
            };
            let at_line = i64::try_from(mark.line).unwrap_or(i64::MAX);
            if mark.created {
                if created.execute(params![mark.run, at_line, mark.key, mark.hash, mark.id, at]).map_err(sqlite)? == 1 {
                    accepted.execute(params![mark.key, mark.hash, mark.id, at, mark.run]).map_err(sqlite)?;
                    sure.execute([mark.key]).map_err(sqlite)?;
                    if pending.remove(&(mark.run, at_line)) {
                        recovered -= 1;
                    }
                }
                continue;
            }
            let lines = match outcomes.entry(mark.run) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(feedback_lines(&tx, mark.run).map_err(sqlite)?),
            };
            if lines.contains(&at_line) {
                continue;
            }
            if journal.execute(params![mark.run, at_line, mark.key, mark.hash, at]).map_err(sqlite)? == 1 {
                unsure.execute(params![mark.key, mark.run, at_line, at]).map_err(sqlite)?;
                pending.insert((mark.run, at_line));
                recovered += 1;
            }
        }
    }
    tx.commit().map_err(sqlite)?;
    std::fs::remove_file(&path).map_err(|source| StateError::Inflight { path, source })?;
    Ok(recovered)
}

fn feedback_lines(conn: &Connection, run: i64) -> rusqlite::Result<HashSet<i64>> {
    let mut stmt = conn.prepare("SELECT line FROM journal WHERE run_id = ?1 AND entity = 'feedback'")?;
    stmt.query_map([run], |r| r.get(0))?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new state file (in a temporary folder, kept alive by the first value) with one run begun.
    fn state_with_a_run() -> (tempfile::TempDir, PathBuf, super::super::StateStore, i64) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.sqlite");
        let mut store = super::super::StateStore::open(&state).unwrap();
        let run = store
            .begin_run(&super::super::NewRun {
                input: "in.csv",
                input_fingerprint: None,
                mapping: "m.toml",
                mapping_fingerprint: "x",
                mode: super::super::Mode::Full,
                shard: None,
                report_dir: "r",
            })
            .unwrap();
        (dir, state, store, run)
    }

    /// The keys of the feedback recorded as unsure.
    fn unsure_keys(conn: &Connection) -> Vec<String> {
        let mut stmt = conn.prepare("SELECT key FROM unsure_feedback").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn marks_without_an_outcome_become_pending_and_unsure_and_the_log_goes() {
        let (_dir, state, mut store, run) = state_with_a_run();
        let log = InflightLog::open(&state, run).unwrap();
        log.mark(2, "sha:aa", "aa11").unwrap();
        log.mark(3, "sha:bb", "bb22").unwrap();
        drop(log);
        // Line 2 got its outcome before the "crash"; line 3 did not. A torn append follows.
        store
            .conn
            .execute("INSERT INTO journal VALUES (?1, 2, 'feedback', 'sha:aa', 'aa11', 'ok', '7', '', 'now')", [run])
            .unwrap();
        OpenOptions::new().append(true).open(path_for(&state)).unwrap().write_all(b"{\"run\":1,\"li").unwrap();

        assert_eq!(replay(&mut store.conn, &state).unwrap(), 1);
        assert!(!path_for(&state).exists());
        let status = |line: i64| -> String {
            store
                .conn
                .query_row("SELECT status FROM journal WHERE run_id = ?1 AND line = ?2", [run, line], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(status(2), "ok");
        assert_eq!(status(3), "pending");
        assert_eq!(unsure_keys(&store.conn), ["sha:bb"]);
        // Nothing to replay: a no-op.
        assert_eq!(replay(&mut store.conn, &state).unwrap(), 0);
    }

    /// Regression: a feedback Savio had created, whose outcome was still waiting for the journal's batch when
    /// the process was killed, came back `pending` and unsure: every later night reported it unknown (exit 1)
    /// although it existed. The log's `created` line now makes it `ok` and accepted.
    #[test]
    fn a_feedback_the_log_records_as_created_is_ok_not_unknown() {
        let (_dir, state, mut store, run) = state_with_a_run();
        let log = InflightLog::open(&state, run).unwrap();
        log.mark(2, "sha:aa", "aa11").unwrap();
        log.mark(3, "sha:bb", "bb22").unwrap();
        log.created(2, "sha:aa", "aa11", Some("41".into())).unwrap();
        drop(log);
        // Killed: neither outcome reached the journal.
        assert_eq!(replay(&mut store.conn, &state).unwrap(), 1, "only line 3 was in flight");
        let row = |line: i64| -> (String, Option<String>) {
            store
                .conn
                .query_row("SELECT status, savio_id FROM journal WHERE run_id = ?1 AND line = ?2", [run, line], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap()
        };
        assert_eq!(row(2), ("ok".into(), Some("41".into())));
        assert_eq!(row(3).0, "pending");
        let accepted: String =
            store.conn.query_row("SELECT hash FROM accepted WHERE key = 'sha:aa'", [], |r| r.get(0)).unwrap();
        assert_eq!(accepted, "aa11", "a later run does not create it again");
        assert_eq!(unsure_keys(&store.conn), ["sha:bb"]);
    }
}
