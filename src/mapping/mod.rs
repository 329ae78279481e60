//! The mapping stage: a TOML column map that turns records into typed Savio payloads.
//!
//! A mapping is loaded ([`Mapping::load`]), then compiled against the opened input ([`Mapping::compile`]):
//! that is where every column name is checked against the real header, so a typo stops the run before any
//! row is processed, with a "did you mean" hint. The compiled [`Mapper`] then maps each record to payloads,
//! a skip (a filter matched) or a row failure listing every unusable field.
//!
//! The format is documented in the README ("Mapping files"); `mappings/` holds presets for real exports.

mod check;
mod compile;
mod convert;
mod dedup;
mod error;
mod field;
mod mapper;
mod order;
mod shape;
pub mod spec;
mod value;

use std::path::{Path, PathBuf};

pub use compile::Compiled;
pub use error::{FieldError, FieldProblem, MappingError, Problem, ProblemKind};
pub use mapper::{
    DropReason, Dropped, MapOutcome, Mapper, MapperStats, REPEATED_FEEDBACK_GROUP, SENT_COLUMN, SENT_GROUP,
    normalise_key, sent_marker,
};
pub use shape::ShapeProblem;

pub(crate) use convert::html_to_text;

use crate::model::Entity;
use crate::source::{Format, Header, Record, RecordData, SourceInfo, sniff};

/// How many JSONL objects are sampled to check the mapping's paths.
pub const JSON_SAMPLE: usize = 1000;
/// How many records are read ahead to settle the day/month order of date attributes that do not give one.
pub use order::SAMPLE as DATE_ORDER_SAMPLE;

/// A parsed (not yet compiled) mapping file.
#[derive(Debug)]
pub struct Mapping {
    spec: spec::MappingSpec,
    path: PathBuf,
    fingerprint: String,
}

impl Mapping {
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| MappingError::Read { path: path.to_path_buf(), source })?;
        Mapping::parse(&text, path)
    }

    /// Parses mapping text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Mapping, MappingError> {
        let problems = shape::check(text);
        if !problems.is_empty() {
            return Err(MappingError::Shape { path: path.to_path_buf(), problems });
        }
        let spec = toml::from_str(text).map_err(|source| MappingError::Parse { path: path.to_path_buf(), source })?;
        Ok(Mapping { spec, path: path.to_path_buf(), fingerprint: blake3::hash(text.as_bytes()).to_hex().to_string() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// BLAKE3 of the file's text: a resumed run refuses a mapping that changed.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The `[input]` section (format, delimiter, encoding): defaults that flags override.
    pub fn input(&self) -> &spec::InputSection {
        &self.spec.input
    }

    /// The entities this mapping produces, in the order they are sent for a row.
    pub fn entities(&self) -> Vec<Entity> {
        let mut out = Vec::new();
        if self.spec.company.is_some() {
            out.push(Entity::Company);
        }
        if self.spec.contact.is_some() {
            out.push(Entity::Contact);
        }
        if self.spec.feedback.is_some() {
            out.push(Entity::Feedback);
        }
        out
    }

    /// Checks the mapping against the opened input and builds the mapper. For JSONL, `sample` (the first
    /// records of the input) stands in for a header.
    pub fn compile(&self, info: &SourceInfo, sample: &[Record]) -> Result<Compiled, MappingError> {
        let schema = match (info.format, &info.header) {
            (Format::Csv, Some(header)) => compile::Schema::Csv(header),
            _ => {
                let mut seen = value::SeenPaths::default();
                let mut sampled = 0;
                for r in sample {
                    if let RecordData::Json { object, .. } = &r.data {
                        value::collect_paths(object, "", &mut seen);
                        sampled += 1;
                    }
                }
                compile::Schema::Json {
                    seen,
                    sampled,
                    paths: compile::PathCheck::from_setting(self.spec.input.strict_paths),
                }
            }
        };
        compile::compile(&self.spec, &schema).map_err(|(problems, warnings)| {
            let unknown_column = problems.iter().any(|p| {
                matches!(p.kind, ProblemKind::UnknownColumn { .. } | ProblemKind::MissingIdentityColumn { .. })
            });
            let hint = match &info.header {
                Some(header) if unknown_column => delimiter_hint(header, info),
                _ => None,
            };
            MappingError::Invalid { path: self.path.clone(), input: info.path.to_string(), problems, warnings, hint }
        })
    }
}

/// When a CSV header came out as one column whose name holds a delimiter, the delimiter was probably
/// wrong: every column of the mapping is then unknown, and the fix is the delimiter, not the mapping.
fn delimiter_hint(header: &Header, info: &SourceInfo) -> Option<String> {
    let [name] = header.names.as_slice() else { return None };
    let count = |c: u8| name.bytes().filter(|b| *b == c).count();
    let best = sniff::CANDIDATES.iter().copied().filter(|c| count(*c) > 0).max_by_key(|c| count(*c))?;
    let shown = |c: u8| if c == b'\t' { "tab".to_string() } else { format!("'{}'", c as char) };
    let used = match (info.delimiter, info.delimiter_detected) {
        (Some(d), true) => format!("detected {}", shown(d.0)),
        (Some(d), false) => format!("given {}", shown(d.0)),
        (None, _) => "none".to_string(),
    };
    let clipped: String = name.chars().take(60).collect();
    let more = if clipped.len() < name.len() { "…" } else { "" };
    Some(format!(
        "the header has one column '{clipped}{more}': is the delimiter right? The delimiter was {used}; try --delimiter {}",
        shown(best)
    ))
}

#[cfg(test)]
mod tests;
