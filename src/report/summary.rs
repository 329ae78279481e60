//! `summary.json`: the one file a monitor reads after a run. Written atomically (temp file + rename), at the
//! end of every run, including aborted and interrupted ones.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::groups::Groups;
use super::results::Status;
use crate::model::Entity;

/// Why the run ended the way it did; also decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// Every row landed (or was skipped on purpose).
    Completed,
    /// Some rows failed or were blocked; none has an unknown outcome.
    RowsFailed,
    /// Some feedback has an unknown outcome (check before re-sending); other rows may have failed too.
    UnknownOutcomes,
    /// Savio refused the token: nothing more was sent.
    AuthRejected,
    /// Ctrl-C / SIGTERM: reading stopped, in-flight requests were given a grace period.
    Interrupted,
    /// Savio answered nothing but 429 for longer than `--max-retry-after` x (`--max-retries` + 1): stopped as
    /// for an interrupt; the same command resumes the run.
    Throttled,
    /// For as long, every request failed without an answer from Savio or with a 5xx (an outage): stopped as
    /// for an interrupt; the same command resumes the run.
    Unavailable,
    /// The input became unreadable part way (I/O error): rows after it were not read.
    InputError,
    /// The reports could not be written (disk full, folder removed): the run stopped sending, since what it
    /// did could no longer be reported; the state file still records every outcome, and the same command
    /// resumes the run.
    ReportsFailed,
}

impl ExitReason {
    pub fn exit_code(self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            ExitReason::Completed => Exit::Ok,
            ExitReason::RowsFailed | ExitReason::UnknownOutcomes => Exit::RowsFailed,
            ExitReason::AuthRejected
            | ExitReason::Interrupted
            | ExitReason::Throttled
            | ExitReason::Unavailable
            | ExitReason::InputError
            | ExitReason::ReportsFailed => Exit::Aborted,
        }
    }
}

/// Counts of payloads by status, per entity.
pub type EntityCounts = BTreeMap<Entity, BTreeMap<Status, u64>>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncSummary {
    pub input: String,
    pub mapping: String,
    pub base_url: String,
    pub dry_run: bool,
    /// RFC 3339 times.
    pub started: String,
    pub finished: String,
    pub duration_secs: f64,
    /// Input rows read (blank rows not included), and rows by their final outcome.
    pub rows: u64,
    pub blank_rows: u64,
    pub rows_by_status: BTreeMap<Status, u64>,
    /// Payloads by entity and status (a row that produced no payload is counted under `rows_by_status` only).
    pub payloads: EntityCounts,
    /// The number of outcomes that are unknown: feedback that may or may not have been created.
    pub unknown: u64,
    /// HTTP requests written to a connection (every attempt and 307/308 hop; none when no connection could be
    /// made or a request was held back at a stop), retries scheduled, and 429 answers.
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    /// Rows finished per second of run time.
    pub rows_per_sec: f64,
    pub requests_per_sec: f64,
    pub failures: Groups,
    pub exit_reason: Option<ExitReason>,
    /// `None` (null) while the run is going: the summary written at its start.
    pub exit_code: Option<u8>,
    /// Why the run stopped early, when it did.
    pub abort_message: Option<String>,
    /// The last input line read, when reading stopped early.
    pub stopped_after_line: Option<u64>,
    pub results_file: Option<String>,
    pub failures_file: Option<String>,
    /// The reading flags a re-run of the failures file needs (` --encoding windows-1252`): what the file
    /// cannot tell by itself and the mapping does not say. Printed in the re-run hint, not in summary.json.
    #[serde(skip)]
    pub rerun_flags: String,
    /// Payloads not sent because Savio already has them (`--incremental`), and payloads a resumed run
    /// skipped because the run it continues had sent them.
    #[serde(default)]
    pub unchanged: u64,
    #[serde(default)]
    pub done_before_resume: u64,
    /// The state file and this run's place in it; absent with `--no-state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateInfo>,
    /// Extra facts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A run's place in its state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateInfo {
    pub file: String,
    pub run_id: i64,
    /// `incremental` or `full`.
    pub mode: String,
    /// This run continues an earlier one that did not finish (`resumes` times so far).
    pub resumed: bool,
    pub resumes: i64,
    /// `K/N` with `--shard`, and how many input rows belonged to other shards (not processed here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(default)]
    pub other_shard_rows: u64,
}

impl SyncSummary {
    pub fn add_payload(&mut self, entity: Entity, status: Status) {
        *self.payloads.entry(entity).or_default().entry(status).or_default() += 1;
        if status == Status::Unknown {
            self.unknown += 1;
        }
    }

    pub fn count(&self, entity: Entity, status: Status) -> u64 {
        self.payloads.get(&entity).and_then(|m| m.get(&status)).copied().unwrap_or(0)
    }

    pub fn rows_with(&self, status: Status) -> u64 {
        self.rows_by_status.get(&status).copied().unwrap_or(0)
    }

    /// Writes the summary atomically: a reader never sees half a file.
    pub fn write_atomic(&self, path: &Path) -> io::Result<()> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer_pretty(&mut tmp, self)?;
        tmp.write_all(b"\n")?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    pub fn read(path: &Path) -> io::Result<SyncSummary> {
        let text = std::fs::read(path)?;
        serde_json::from_slice(&text).map_err(io::Error::other)
    }

    /// The human summary printed at the end of `sync`.
    pub fn render(&self, out: &mut dyn Write, report_dir: Option<&PathBuf>) -> io::Result<()> {
        let verb = if self.dry_run { "would send" } else { "sent" };
        writeln!(out, "Input:     {} ({} rows{})", self.input, self.rows, blank_note(self.blank_rows))?;
        for entity in Entity::ALL {
            let Some(by) = self.payloads.get(&entity) else { continue };
            let parts: Vec<String> =
                Status::ALL.iter().filter_map(|s| by.get(s).map(|n| format!("{n} {}", s.as_str()))).collect();
            writeln!(out, "{:<10} {}", format!("{}:", plural_entity(entity)), parts.join(", "))?;
        }
        let rows: Vec<String> = Status::ALL
            .iter()
            .filter_map(|s| self.rows_by_status.get(s).map(|n| format!("{n} {}", s.as_str())))
            .collect();
        writeln!(out, "Rows:      {}", if rows.is_empty() { "none".into() } else { rows.join(", ") })?;
        if !self.dry_run {
            writeln!(
                out,
                "Requests:  {} {verb} ({} retries, {} throttled), {:.1} rows/s over {:.1} s",
                self.requests, self.retries, self.throttled, self.rows_per_sec, self.duration_secs
            )?;
        }
        for (reason, g) in self.failures.by_count().into_iter().take(10) {
            writeln!(out, "  {reason} ({}): {}", g.count, super::groups::describe_lines(g))?;
        }
        if self.unknown > 0 {
            writeln!(
                out,
                "Unknown:   {} feedback may or may not have been created (a timeout, a lost connection or a \
                 500/502/504 after sending); \
                 check in Savio before re-sending them, or re-run the failures file with --retry-unknown",
                self.unknown
            )?;
        }
        if self.unchanged + self.done_before_resume > 0 {
            let mut parts = Vec::new();
            if self.unchanged > 0 {
                parts.push(format!("{} unchanged since Savio accepted them", self.unchanged));
            }
            if self.done_before_resume > 0 {
                parts.push(format!("{} already sent before the resume", self.done_before_resume));
            }
            writeln!(out, "Not sent:  {}", parts.join(", "))?;
        }
        if let Some(st) = &self.state {
            let resumed = if st.resumed { format!(", resumed ({}x)", st.resumes) } else { String::new() };
            let shard = match &st.shard {
                Some(k) => format!(", shard {k} ({} rows left to other shards)", st.other_shard_rows),
                None => String::new(),
            };
            writeln!(out, "State:     {} (run {}, {}{resumed}{shard})", st.file, st.run_id, st.mode)?;
        }
        if let Some(m) = &self.abort_message {
            writeln!(out, "Stopped:   {m}")?;
        }
        if let Some(dir) = report_dir {
            writeln!(out, "Reports:   {}", dir.display())?;
        }
        if self.abort_message.is_some() && self.state.is_some() {
            // The run stopped: part of the input was never sent, and resuming also sends what is not in the
            // failures file yet (rows never read).
            writeln!(
                out,
                "Continue with the same command: it resumes this run (what was sent is skipped), then re-run \
                 its failures file"
            )?;
        } else if let Some(f) = &self.failures_file
            && self.rows_with(Status::Failed) + self.rows_with(Status::Blocked) + self.rows_with(Status::Unknown) > 0
        {
            writeln!(
                out,
                "Re-run the failed rows with: savio-sync sync {f} --mapping {}{}",
                self.mapping, self.rerun_flags
            )?;
        }
        Ok(())
    }
}

fn blank_note(n: u64) -> String {
    match n {
        0 => String::new(),
        1 => ", 1 blank row ignored".into(),
        n => format!(", {n} blank rows ignored"),
    }
}

fn plural_entity(e: Entity) -> &'static str {
    match e {
        Entity::Company => "Companies",
        Entity::Contact => "Contacts",
        Entity::Feedback => "Feedback",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        let mut s =
            SyncSummary { input: "x.csv".into(), exit_reason: Some(ExitReason::UnknownOutcomes), ..Default::default() };
        s.add_payload(Entity::Feedback, Status::Unknown);
        s.add_payload(Entity::Contact, Status::Ok);
        s.write_atomic(&path).unwrap();
        let back = SyncSummary::read(&path).unwrap();
        assert_eq!(back.unknown, 1);
        assert_eq!(back.count(Entity::Contact, Status::Ok), 1);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["exit_reason"], "unknown_outcomes");
        assert_eq!(v["payloads"]["feedback"]["unknown"], 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
    }
}
