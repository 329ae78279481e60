//! `savio-sync validate`: the reader and mapping stages with no network. Counts what would be sent, groups
//! what would fail by reason, optionally previews payloads and writes the failed rows to a failures file.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

use crate::model::{Entity, Payload};
use crate::pipeline::{Pipeline, RowKind, reason_text};
use crate::report::failures::{FailuresError, FailuresWriter};
use crate::report::groups::{Groups, describe_lines};
use crate::source::ReadError;

#[derive(Debug, Default)]
pub struct ValidateOptions {
    /// Print this many payloads as pretty JSON.
    pub preview: usize,
    /// Write failed rows here.
    pub failures: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Failures(#[from] FailuresError),
    #[error("cannot write the preview")]
    Output(#[source] io::Error),
}

/// What `validate` found; printed as text, or as JSON with `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ValidateSummary {
    pub input: String,
    pub format: String,
    pub delimiter: Option<String>,
    pub delimiter_detected: bool,
    pub encoding: String,
    pub mapping: String,
    /// Rows read (blank rows not included).
    pub rows: u64,
    pub blank_rows: u64,
    pub valid_rows: u64,
    pub payloads: BTreeMap<Entity, u64>,
    /// Rows whose only payload was a company already emitted by an earlier row.
    pub duplicate_company_rows: u64,
    pub skipped_rows: u64,
    pub skipped: Groups,
    pub failed_rows: u64,
    pub failures: Groups,
    pub company_name_conflicts: u64,
    pub warnings: Vec<String>,
    pub failures_file: Option<String>,
}

/// Runs the whole input through the pipeline.
pub fn run(
    pipeline: &mut Pipeline,
    mapping_name: &str,
    opts: &ValidateOptions,
    preview: &mut dyn Write,
) -> Result<ValidateSummary, ValidateError> {
    let info = pipeline.info().clone();
    let mut s = ValidateSummary {
        input: info.path.to_string(),
        format: info.format.to_string(),
        delimiter: info.delimiter.map(|d| (d.0 as char).to_string()),
        delimiter_detected: info.delimiter_detected,
        encoding: format!("{:?}", info.encoding),
        mapping: mapping_name.to_string(),
        warnings: pipeline.warnings().to_vec(),
        ..Default::default()
    };
    let mut failures = match &opts.failures {
        Some(p) => Some(FailuresWriter::create(p, &info)?),
        None => None,
    };
    let mut previewed = 0;
    while let Some(row) = pipeline.next_row()? {
        match &row.kind {
            RowKind::Blank => {
                s.blank_rows += 1;
                continue;
            }
            RowKind::Mapped { payloads, duplicate_of } => {
                s.valid_rows += 1;
                if payloads.is_empty() && duplicate_of.is_some() {
                    s.duplicate_company_rows += 1;
                }
                for p in payloads {
                    *s.payloads.entry(p.entity()).or_default() += 1;
                    if previewed < opts.preview {
                        previewed += 1;
                        write_preview(preview, row.line, p).map_err(ValidateError::Output)?;
                    }
                }
            }
            RowKind::Skipped(reason) => {
                s.skipped_rows += 1;
                s.skipped.add(reason.clone(), row.line);
            }
            RowKind::Failed(problems) => {
                s.failed_rows += 1;
                for p in problems {
                    s.failures.add(p.kind(), row.line);
                }
                if let (Some(w), Some(raw)) = (failures.as_mut(), row.raw()) {
                    w.write(row.line, &raw, &reason_text(problems))?;
                }
            }
        }
        s.rows += 1;
    }
    s.company_name_conflicts = pipeline.mapper().stats().company_name_conflicts;
    if let Some(w) = failures {
        s.failures_file = Some(w.path().display().to_string());
        w.finish()?;
    }
    Ok(s)
}

fn write_preview(out: &mut dyn Write, line: u64, p: &Payload) -> io::Result<()> {
    writeln!(out, "# line {line}: {}", p.entity())?;
    serde_json::to_writer_pretty(&mut *out, p)?;
    writeln!(out)
}

impl ValidateSummary {
    /// The human-readable summary.
    pub fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let shown = |d: &str| {
            if d == "\t" { "TAB".to_string() } else { format!("'{d}'") }
        };
        let delim = match (&self.delimiter, self.delimiter_detected) {
            (Some(d), true) => format!(", delimiter {} (detected)", shown(d)),
            (Some(d), false) => format!(", delimiter {}", shown(d)),
            (None, _) => String::new(),
        };
        writeln!(out, "Input:    {} ({}{delim}, {})", self.input, self.format, self.encoding)?;
        writeln!(out, "Mapping:  {}", self.mapping)?;
        let blank = if self.blank_rows > 0 {
            format!(" ({} ignored)", plural(self.blank_rows, "blank row"))
        } else {
            String::new()
        };
        writeln!(out, "Rows:     {}{blank}", self.rows)?;
        let payloads: Vec<String> =
            Entity::ALL.iter().filter_map(|e| self.payloads.get(e).map(|n| plural(*n, e.as_str()))).collect();
        let payloads = if payloads.is_empty() { "none".to_string() } else { payloads.join(", ") };
        writeln!(out, "Valid:    {} → {payloads}", plural(self.valid_rows, "row"))?;
        if self.duplicate_company_rows > 0 {
            writeln!(out, "          ({} rows only repeated a company already listed)", self.duplicate_company_rows)?;
        }
        writeln!(out, "Skipped:  {}", plural(self.skipped_rows, "row"))?;
        for (reason, g) in self.skipped.by_count() {
            writeln!(out, "  {reason} ({}): {}", g.count, describe_lines(g))?;
        }
        writeln!(out, "Failed:   {}", plural(self.failed_rows, "row"))?;
        for (reason, g) in self.failures.by_count() {
            writeln!(out, "  {reason} ({}): {}", g.count, describe_lines(g))?;
        }
        if self.company_name_conflicts > 0 {
            writeln!(
                out,
                "Warning:  {} rows name a company id with a different name than its first row (the first is kept)",
                self.company_name_conflicts
            )?;
        }
        for w in &self.warnings {
            writeln!(out, "Warning:  {w}")?;
        }
        if let Some(f) = &self.failures_file {
            writeln!(out, "Failed rows written to {f}")?;
        }
        Ok(())
    }
}

fn plural(n: u64, noun: &str) -> String {
    let noun = match (noun, n == 1) {
        (n, true) => n.to_string(),
        ("company", false) => "companies".into(),
        (n, false) => format!("{n}s"),
    };
    format!("{n} {noun}")
}
