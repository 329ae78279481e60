//! `savio-sync validate`: the reader and mapping stages with no network. Counts what would be sent, groups
//! what would fail by reason, optionally previews payloads and writes the failed rows to a failures file.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

use crate::model::{Entity, Payload};
use crate::pipeline::{DropReason, Pipeline, RowKind, reason_text};
use crate::report::failures::{FailuresError, FailuresWriter};
use crate::report::groups::{Groups, describe_lines};
use crate::source::{DelimiterOrigin, ReadError};

#[derive(Debug, Default)]
pub struct ValidateOptions {
    /// Show this many payloads: printed as pretty JSON, or with `json` kept in [`ValidateSummary::preview`].
    pub preview: usize,
    /// Write failed rows here (gzip when the name ends in `.gz`).
    pub failures: Option<PathBuf>,
    /// The summary is printed as JSON: previews go into it instead of being printed.
    pub json: bool,
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
    /// Where the delimiter came from: `given` (a flag, the mapping, a `.tsv` name), `sep_line` (the file's
    /// `sep=` first line) or `detected`.
    pub delimiter_source: Option<DelimiterOrigin>,
    pub encoding: String,
    pub mapping: String,
    /// Rows read (blank rows not included).
    pub rows: u64,
    pub blank_rows: u64,
    /// Rows with nothing wrong: they send payloads, or everything in them was already sent this run.
    pub valid_rows: u64,
    pub payloads: BTreeMap<Entity, u64>,
    /// Valid rows that send nothing because their company was already sent by an earlier row (and their
    /// other entities, if any, are skipped by a filter).
    pub duplicate_company_rows: u64,
    /// Valid rows that send nothing because their contact or feedback is identical to one an earlier row
    /// sent (a row repeated in the export).
    pub duplicate_rows: u64,
    /// Contacts and feedback not sent because an identical one was already sent this run, by reason.
    pub duplicates: Groups,
    /// Rows that send nothing because a filter matched.
    pub skipped_rows: u64,
    /// Every filter match by reason: rows skipped as a whole, and single entities of rows that send the
    /// rest (those are also in `skipped_entities`).
    pub skipped: Groups,
    /// Entities skipped by an entity filter in rows that are otherwise valid, by reason.
    pub skipped_entities: Groups,
    pub failed_rows: u64,
    pub failures: Groups,
    /// Rows naming a company id already sent with another name (the first name is kept).
    pub company_name_conflicts: u64,
    /// Rows giving a company already sent other attributes (the first row's are kept).
    pub company_attribute_conflicts: u64,
    /// Rows whose contact has the id of a contact already sent with other values (both are sent; the later
    /// wins).
    pub contact_conflicts: u64,
    pub warnings: Vec<String>,
    pub failures_file: Option<String>,
    /// With `--json --preview N`: the first N payloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<Vec<PreviewItem>>,
    /// Rows skipped as a whole, by reason (the text summary lists them apart from skipped entities).
    #[serde(skip)]
    skipped_row_reasons: Groups,
}

/// One previewed payload with the line it comes from.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewItem {
    pub line: u64,
    pub entity: Entity,
    pub payload: Payload,
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
        delimiter_source: info.delimiter_origin(),
        encoding: format!("{:?}", info.encoding),
        mapping: mapping_name.to_string(),
        warnings: pipeline.warnings().to_vec(),
        preview: (opts.json && opts.preview > 0).then(Vec::new),
        ..Default::default()
    };
    let mut failures = match &opts.failures {
        Some(p) => Some(FailuresWriter::create(p, &info, false)?),
        None => None,
    };
    let mut previewed = 0;
    while let Some(row) = pipeline.next_row()? {
        match &row.kind {
            RowKind::Blank => {
                s.blank_rows += 1;
                continue;
            }
            RowKind::Mapped { payloads, dropped }
                if payloads.is_empty()
                    && dropped.iter().all(|d| {
                        matches!(d.reason, DropReason::Filter(_) | DropReason::Incomplete(_) | DropReason::Sent { .. })
                    }) =>
            {
                let reason = dropped.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                s.skip_row(reason, row.line);
            }
            RowKind::Mapped { payloads, dropped } => {
                s.valid_rows += 1;
                let repeated = dropped
                    .iter()
                    .any(|d| d.entity != Entity::Company && matches!(d.reason, DropReason::Duplicate { .. }));
                if payloads.is_empty() {
                    if repeated {
                        s.duplicate_rows += 1;
                    } else {
                        s.duplicate_company_rows += 1;
                    }
                }
                for d in dropped {
                    match &d.reason {
                        DropReason::Filter(reason) | DropReason::Incomplete(reason) => {
                            s.skipped.add(reason.clone(), row.line);
                            s.skipped_entities.add(reason.clone(), row.line);
                        }
                        DropReason::Sent { .. } => {
                            let reason = format!("{}: {d}", d.entity);
                            s.skipped.add(reason.clone(), row.line);
                            s.skipped_entities.add(reason, row.line);
                        }
                        DropReason::Duplicate { .. } if d.entity == Entity::Company => {}
                        DropReason::Duplicate { .. } => {
                            s.duplicates.add(format!("{} identical to an earlier one", d.entity), row.line);
                        }
                    }
                }
                for p in payloads {
                    *s.payloads.entry(p.entity()).or_default() += 1;
                    if previewed < opts.preview {
                        previewed += 1;
                        match &mut s.preview {
                            Some(items) => {
                                items.push(PreviewItem { line: row.line, entity: p.entity(), payload: p.clone() })
                            }
                            None => write_preview(preview, row.line, p).map_err(ValidateError::Output)?,
                        }
                    }
                }
            }
            RowKind::Skipped(reason) => s.skip_row(reason.clone(), row.line),
            RowKind::Failed(problems) => {
                s.failed_rows += 1;
                for p in problems {
                    s.failures.add(p.kind(), row.line);
                }
                if let (Some(w), Some(raw)) = (failures.as_mut(), row.raw()) {
                    w.write(row.line, &raw, &reason_text(problems), "")?;
                }
            }
        }
        s.rows += 1;
    }
    let stats = pipeline.mapper().stats();
    s.company_name_conflicts = stats.company_name_conflicts;
    s.company_attribute_conflicts = stats.company_attribute_conflicts;
    s.contact_conflicts = stats.contact_conflicts;
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
    fn skip_row(&mut self, reason: String, line: u64) {
        self.skipped_rows += 1;
        self.skipped.add(reason.clone(), line);
        self.skipped_row_reasons.add(reason, line);
    }

    /// The human-readable summary.
    pub fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let shown = |d: &str| {
            if d == "\t" { "TAB".to_string() } else { format!("'{d}'") }
        };
        let origin = match self.delimiter_source {
            Some(DelimiterOrigin::SepLine) => " (from the file's sep= line)",
            Some(DelimiterOrigin::Detected) => " (detected)",
            None if self.delimiter_detected => " (detected)",
            Some(DelimiterOrigin::Given) | None => "",
        };
        let delim = self.delimiter.as_deref().map_or(String::new(), |d| format!(", delimiter {}{origin}", shown(d)));
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
            writeln!(
                out,
                "          ({} only repeated a company already listed)",
                plural(self.duplicate_company_rows, "row")
            )?;
        }
        if self.duplicate_rows > 0 {
            let n = self.duplicate_rows;
            writeln!(
                out,
                "          ({} {} an earlier row: nothing new to send)",
                plural(n, "row"),
                verb(n, "repeats", "repeat")
            )?;
        }
        if !self.duplicates.is_empty() {
            let n = self.duplicates.total();
            writeln!(
                out,
                "Duplicates: {} identical to one sent earlier in this run, not sent again",
                plural(n, "entity")
            )?;
            write_groups(out, &self.duplicates)?;
        }
        writeln!(out, "Skipped:  {}", plural(self.skipped_rows, "row"))?;
        write_groups(out, &self.skipped_row_reasons)?;
        if !self.skipped_entities.is_empty() {
            let n = self.skipped_entities.total();
            writeln!(out, "Entities not sent: {} (filtered or incomplete, in rows whose other entities are sent)", n)?;
            write_groups(out, &self.skipped_entities)?;
        }
        writeln!(out, "Failed:   {}", plural(self.failed_rows, "row"))?;
        write_groups(out, &self.failures)?;
        if self.company_name_conflicts > 0 {
            let n = self.company_name_conflicts;
            writeln!(
                out,
                "Warning:  {} {} a company id with a different name than its first row (the first is kept)",
                plural(n, "row"),
                verb(n, "names", "name")
            )?;
        }
        if self.company_attribute_conflicts > 0 {
            let n = self.company_attribute_conflicts;
            writeln!(
                out,
                "Warning:  {} {} a company other attributes than the row that sent it (a company is sent once \
                 per run, with its first row's)",
                plural(n, "row"),
                verb(n, "gives", "give")
            )?;
        }
        if self.contact_conflicts > 0 {
            let n = self.contact_conflicts;
            writeln!(
                out,
                "Warning:  {} {} a contact id already sent with other values (both are sent; the later wins)",
                plural(n, "row"),
                verb(n, "repeats", "repeat")
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

fn write_groups(out: &mut dyn Write, groups: &Groups) -> io::Result<()> {
    for (reason, g) in groups.by_count() {
        writeln!(out, "  {reason} ({}): {}", g.count, describe_lines(g))?;
    }
    Ok(())
}

/// "1 row", "2 rows", "3 companies", "1 entity".
fn plural(n: u64, noun: &str) -> String {
    let noun = match (noun, n == 1) {
        (n, true) => n.to_string(),
        ("company", false) => "companies".into(),
        ("entity", false) => "entities".into(),
        ("feedback", false) => "feedback".into(),
        (n, false) => format!("{n}s"),
    };
    format!("{n} {noun}")
}

fn verb(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "row"), "1 row");
        assert_eq!(plural(0, "row"), "0 rows");
        assert_eq!(plural(2, "company"), "2 companies");
        assert_eq!(plural(3, "feedback"), "3 feedback");
        assert_eq!(plural(1, "blank row"), "1 blank row");
    }

    #[test]
    fn the_input_line_says_where_the_delimiter_came_from() {
        let line = |source: Option<DelimiterOrigin>, detected: bool| {
            let s = ValidateSummary {
                input: "in.csv".into(),
                format: "csv".into(),
                delimiter: Some(";".into()),
                delimiter_detected: detected,
                delimiter_source: source,
                encoding: "UTF-8".into(),
                ..Default::default()
            };
            let mut out = Vec::new();
            s.render(&mut out).unwrap();
            String::from_utf8(out).unwrap().lines().next().unwrap().to_string()
        };
        assert_eq!(
            line(Some(DelimiterOrigin::Detected), true),
            "Input:    in.csv (csv, delimiter ';' (detected), UTF-8)"
        );
        assert_eq!(
            line(Some(DelimiterOrigin::SepLine), false),
            "Input:    in.csv (csv, delimiter ';' (from the file's sep= line), UTF-8)"
        );
        assert_eq!(line(Some(DelimiterOrigin::Given), false), "Input:    in.csv (csv, delimiter ';', UTF-8)");
    }

    #[test]
    fn one_of_everything_is_singular() {
        let mut s = ValidateSummary {
            rows: 1,
            valid_rows: 1,
            duplicate_company_rows: 1,
            duplicate_rows: 1,
            skipped_rows: 1,
            failed_rows: 1,
            company_name_conflicts: 1,
            company_attribute_conflicts: 1,
            contact_conflicts: 1,
            ..Default::default()
        };
        s.payloads.insert(Entity::Company, 1);
        s.duplicates.add("contact identical to an earlier one".into(), 3);
        s.skipped_entities.add("contact filter: 'Email' is empty".into(), 4);
        let mut out = Vec::new();
        s.render(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for wrong in ["1 rows", "1 companies", "1 entities", " 1 row name ", "1 row repeat ", "1 row give "] {
            assert!(!text.contains(wrong), "{wrong:?} in\n{text}");
        }
        assert!(text.contains("(1 row only repeated a company already listed)"), "{text}");
        assert!(text.contains("Warning:  1 row names a company id"), "{text}");
    }
}
