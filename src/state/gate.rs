//! The gate between mapping and writer: decides, per payload, whether the state says it needs no request.
//!
//! Runs on the reader thread with its own read connection (WAL lets it read while the journal writes), so
//! its lookups never block the async writer. In order:
//! 1. **Resume**: the journal of the run being continued records the payload (same line, same entity) as
//!    ok → skipped; as in flight or unknown (feedback) → unknown, not re-sent unless `--retry-unknown`.
//! 2. **Unsure feedback**: an identical feedback's creation is unknown from an earlier run → unknown, not
//!    re-sent unless `--retry-unknown` (a failures file re-run must not create it twice).
//! 3. **Incremental**: the payload's hash equals the last one Savio accepted for its key → skipped
//!    (`unchanged`). For feedback in every mode: an identical feedback was created → skipped (never twice).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{Mode, StateError, connect};
use crate::model::{Entity, Payload, SavioId};
use crate::report::results::Status;

/// A payload the state settled without a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub status: Status,
    pub savio_id: Option<SavioId>,
    pub reason: String,
    /// For the summary's counts: [`Settled::UNCHANGED`], [`Settled::DONE_BEFORE`] or an unknown group.
    pub group: String,
}

impl Settled {
    pub const UNCHANGED: &'static str = "unchanged";
    pub const DONE_BEFORE: &'static str = "done before resume";
}

pub struct Gate {
    conn: Connection,
    path: PathBuf,
    mode: Mode,
    resume: Option<i64>,
    retry_unknown: bool,
    /// Feedback unsure from earlier runs, by key: its run and line. Read once at the start (the table is
    /// small: only feedback whose creation is unknown), so feedback costs no query here.
    unsure: HashMap<String, (i64, i64)>,
    /// Whether Savio accepted any feedback in an earlier run: when not (a first migration), a full run's
    /// feedback needs no lookup. What this run creates is kept apart by the mapping's own repeat check.
    feedback_accepted: bool,
}

impl Gate {
    pub fn open(path: &Path, mode: Mode, resume: Option<i64>, retry_unknown: bool) -> Result<Gate, StateError> {
        let conn = connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let sqlite = |source| StateError::Sqlite { path: path.into(), source };
        let mut unsure = HashMap::new();
        if !retry_unknown {
            let mut stmt = conn.prepare("SELECT key, run_id, line FROM unsure_feedback").map_err(sqlite)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?)))).map_err(sqlite)?;
            for row in rows {
                let (key, at) = row.map_err(sqlite)?;
                unsure.insert(key, at);
            }
        }
        let feedback_accepted = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM accepted WHERE entity = 'feedback')", [], |r| r.get(0))
            .map_err(sqlite)?;
        Ok(Gate { conn, path: path.into(), mode, resume, retry_unknown, unsure, feedback_accepted })
    }

    /// What the state says about `payload` from input line `line`: `None` means send it.
    pub fn check(&self, line: u64, payload: &Payload) -> Result<Option<Settled>, StateError> {
        let sqlite = |source| StateError::Sqlite { path: self.path.clone(), source };
        let entity = payload.entity();
        let line_i = i64::try_from(line).unwrap_or(i64::MAX);
        if let Some(run) = self.resume {
            let prior: Option<(String, Option<String>)> = self
                .conn
                .prepare_cached("SELECT status, savio_id FROM journal WHERE run_id = ?1 AND line = ?2 AND entity = ?3")
                .and_then(|mut s| {
                    s.query_row(params![run, line_i, entity.as_str()], |r| Ok((r.get(0)?, r.get(1)?))).optional()
                })
                .map_err(sqlite)?;
            match prior.as_ref().map(|(s, id)| (s.as_str(), id)) {
                Some(("ok", id)) => {
                    return Ok(Some(Settled {
                        status: Status::Skipped,
                        savio_id: id.clone().map(parse_id),
                        reason: format!("already sent by run {run} before it stopped"),
                        group: Settled::DONE_BEFORE.into(),
                    }));
                }
                Some(("pending" | "unknown", _)) if entity == Entity::Feedback && !self.retry_unknown => {
                    return Ok(Some(unknown(format!(
                        "was in flight when run {run} stopped: it may or may not have been created, so it is not \
                         re-sent (--retry-unknown re-sends it, at the risk of a duplicate)"
                    ))));
                }
                _ => {}
            }
        }
        if entity == Entity::Feedback
            && !self.unsure.is_empty()
            && let Some(&(run, at_line)) = self.unsure.get(&payload.report_key())
        {
            return Ok(Some(unknown(format!(
                "an identical feedback (run {run}, line {at_line}) may or may not have been created, so it is \
                 not re-sent (--retry-unknown re-sends it, at the risk of a duplicate)"
            ))));
        }
        // Feedback Savio accepted is never created again, whatever the mode: it is not idempotent, and a
        // `--full` re-run of last night's export would duplicate every piece. Upserts are re-sent in full mode.
        if self.mode == Mode::Incremental || (entity == Entity::Feedback && self.feedback_accepted) {
            let key = payload.report_key();
            let last: Option<(String, Option<String>, String)> = self
                .conn
                .prepare_cached("SELECT hash, savio_id, at FROM accepted WHERE entity = ?1 AND key = ?2")
                .and_then(|mut s| {
                    s.query_row(params![entity.as_str(), key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()
                })
                .map_err(sqlite)?;
            if let Some((hash, id, at)) = last
                && hash == payload.content_hash()
            {
                let reason = if entity == Entity::Feedback {
                    format!("Savio already has this feedback (created at {at}); it is not created twice")
                } else {
                    format!("unchanged since Savio accepted it at {at}")
                };
                return Ok(Some(Settled {
                    status: Status::Skipped,
                    savio_id: id.map(parse_id),
                    reason,
                    group: Settled::UNCHANGED.into(),
                }));
            }
        }
        Ok(None)
    }
}

fn unknown(reason: String) -> Settled {
    Settled { status: Status::Unknown, savio_id: None, reason, group: "feedback: outcome unknown (earlier run)".into() }
}

fn parse_id(s: String) -> SavioId {
    s.parse().map(SavioId::Int).unwrap_or(SavioId::Str(s))
}
