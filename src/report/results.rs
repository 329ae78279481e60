//! `results.csv`: one line per payload (and one per row that produced none), written as outcomes arrive.
//!
//! A person opens it in a spreadsheet, so any cell a spreadsheet would read as a formula (`=`, `+`, `-`, `@`,
//! tab, carriage return at the start) is prefixed with `'`, as OWASP recommends against CSV injection.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{Entity, SavioId};

/// What became of one payload (or of a row that produced none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Savio accepted it.
    Ok,
    /// Savio refused it, retries were exhausted, or the row is invalid.
    Failed,
    /// Not sent because the company it links to failed.
    Blocked,
    /// Not sent on purpose: a filter matched, or it repeats an earlier row.
    Skipped,
    /// Feedback whose request may or may not have been applied (timeout, lost connection): not re-sent.
    Unknown,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Ok, Status::Failed, Status::Blocked, Status::Skipped, Status::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Blocked => "blocked",
            Status::Skipped => "skipped",
            Status::Unknown => "unknown",
        }
    }

    /// Whether a row with this outcome belongs in the failures file (it needs another run).
    pub fn needs_rerun(self) -> bool {
        matches!(self, Status::Failed | Status::Blocked | Status::Unknown)
    }

    /// Severity, to pick the outcome of a row from those of its payloads: a row that sent something and
    /// skipped the rest (an unchanged company, a repeated one) is `ok`; only a row that sent nothing is
    /// `skipped`.
    pub fn severity(self) -> u8 {
        match self {
            Status::Skipped => 0,
            Status::Ok => 1,
            Status::Unknown => 2,
            Status::Blocked => 3,
            Status::Failed => 4,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of `results.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultLine {
    pub line: u64,
    /// `None` for a row that produced no payload (invalid, or skipped by a row filter).
    pub entity: Option<Entity>,
    pub key: String,
    pub status: Status,
    pub http_status: Option<u16>,
    pub savio_id: Option<SavioId>,
    pub attempts: u32,
    pub latency: Duration,
    pub reason: String,
    /// The reason without row-specific values, to group failures in the summary (not written to the file).
    pub group: String,
    /// The payload's content hash when it went to the writer and a state journal records it (not written to
    /// the file); empty otherwise.
    pub hash: String,
}

pub const HEADER: [&str; 9] =
    ["line", "entity", "key", "status", "http_status", "savio_id", "attempts", "latency_ms", "reason"];

#[derive(Debug, thiserror::Error)]
#[error("cannot write results file '{}'", path.display())]
pub struct ResultsError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

pub struct ResultsWriter {
    path: PathBuf,
    writer: csv::Writer<BufWriter<File>>,
}

impl ResultsWriter {
    pub fn create(path: &Path) -> Result<ResultsWriter, ResultsError> {
        let err = |source| ResultsError { path: path.to_path_buf(), source };
        let file = File::create(path).map_err(err)?;
        let mut writer = csv::Writer::from_writer(BufWriter::new(file));
        writer.write_record(HEADER).map_err(|e| err(e.into()))?;
        Ok(ResultsWriter { path: path.to_path_buf(), writer })
    }

    pub fn write(&mut self, r: &ResultLine) -> Result<(), ResultsError> {
        let line = r.line.to_string();
        let http = r.http_status.map(|s| s.to_string()).unwrap_or_default();
        let id = r.savio_id.as_ref().map(|s| s.to_string()).unwrap_or_default();
        let attempts = r.attempts.to_string();
        let latency = if r.attempts == 0 { String::new() } else { r.latency.as_millis().to_string() };
        let fields = [
            line.as_str(),
            r.entity.map_or("row", Entity::as_str),
            &escape_formula(&r.key),
            r.status.as_str(),
            &http,
            &escape_formula(&id),
            &attempts,
            &latency,
            &escape_formula(&r.reason),
        ];
        self.writer
            .write_record(fields.iter().map(|s| s.as_bytes()))
            .map_err(|e| ResultsError { path: self.path.clone(), source: e.into() })
    }

    pub fn flush(&mut self) -> Result<(), ResultsError> {
        self.writer.flush().map_err(|source| ResultsError { path: self.path.clone(), source })
    }

    pub fn finish(mut self) -> Result<(), ResultsError> {
        self.flush()?;
        let path = self.path.clone();
        let file = self.writer.into_inner().map_err(|e| e.into_error());
        file.and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| f.sync_all())
            .map_err(|source| ResultsError { path, source })
    }
}

/// Prefixes a cell a spreadsheet would evaluate as a formula with `'`.
pub fn escape_formula(s: &str) -> std::borrow::Cow<'_, str> {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => std::borrow::Cow::Owned(format!("'{s}")),
        _ => std::borrow::Cow::Borrowed(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused() {
        assert_eq!(escape_formula("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(escape_formula("+1"), "'+1");
        assert_eq!(escape_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(escape_formula("-2"), "'-2");
        assert_eq!(escape_formula("plain"), "plain");
        assert_eq!(escape_formula(""), "");
    }

    #[test]
    fn writes_a_header_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.csv");
        let mut w = ResultsWriter::create(&path).unwrap();
        w.write(&ResultLine {
            line: 2,
            entity: Some(Entity::Contact),
            key: "=1+1".into(),
            status: Status::Failed,
            http_status: Some(400),
            savio_id: None,
            attempts: 1,
            latency: Duration::from_millis(12),
            reason: "contact.email: \"x\" invalid".into(),
            group: String::new(),
            hash: String::new(),
        })
        .unwrap();
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "line,entity,key,status,http_status,savio_id,attempts,latency_ms,reason\n\
             2,contact,'=1+1,failed,400,,1,12,\"contact.email: \"\"x\"\" invalid\"\n"
        );
    }
}
