//! What can be wrong with a mapping (fatal, before any row) and with a mapped row (a row failure).

use std::fmt;
use std::path::PathBuf;

use super::spec::AttrType;

/// A mapping that cannot be used. Nothing is processed when this happens.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read mapping file '{}'", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mapping file '{}' is not valid", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{}", ShapeProblems { path, problems })]
    Shape { path: PathBuf, problems: Vec<super::shape::ShapeProblem> },
    #[error("{}", Problems { path, input, problems, warnings, hint: hint.as_deref() })]
    Invalid {
        path: PathBuf,
        input: String,
        problems: Vec<Problem>,
        /// Found along the way; shown with the problems, so everything can be fixed in one go.
        warnings: Vec<String>,
        /// What is probably wrong besides the mapping (a wrong CSV delimiter).
        hint: Option<String>,
    },
}

struct ShapeProblems<'a> {
    path: &'a PathBuf,
    problems: &'a [super::shape::ShapeProblem],
}

impl fmt::Display for ShapeProblems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "mapping file '{}' is not valid ({n} problem{}):",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

struct Problems<'a> {
    path: &'a PathBuf,
    input: &'a str,
    problems: &'a [Problem],
    warnings: &'a [String],
    hint: Option<&'a str>,
}

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "mapping '{}' cannot be used with input '{}' ({n} problem{}):",
            self.path.display(),
            self.input,
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.problems {
            write!(f, "\n  - {p}")?;
        }
        for w in self.warnings {
            write!(f, "\n  warning: {w}")?;
        }
        if let Some(hint) = self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// One problem found while compiling a mapping, with the field (`contact.email`) it is about.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {kind}")]
pub struct Problem {
    pub field: String,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProblemKind {
    #[error("no column '{column}' in the input{}", suggest(suggestion.as_deref()))]
    UnknownColumn { column: String, suggestion: Option<String> },
    #[error(
        "no column '{column}' in the input{}; Savio matches people by email, so this column must exist even \
         with missing_columns = \"empty\" (if the export has no email, remove the field; of several possible \
         columns write column = [\"Email\", \"Email Address\"])",
        suggest(suggestion.as_deref())
    )]
    MissingIdentityColumn { column: String, suggestion: Option<String> },
    #[error(
        "no object among the first {sampled} has the path '{column}'{}; \
         if it only appears later in the file, set strict_paths = false under [input]",
        suggest(suggestion.as_deref())
    )]
    UnknownPath { column: String, sampled: usize, suggestion: Option<String> },
    #[error(
        "'{column}' holds {shape} (keys: {keys}), which would be sent as JSON text; map a key inside, e.g. '{example}'"
    )]
    NotAValue { column: String, shape: &'static str, keys: String, example: String },
    #[error("Savio requires this field; map it, e.g. {example}")]
    MissingRequired { example: String },
    #[error("{0}")]
    Invalid(String),
    #[error("invalid template \"{template}\": {reason}")]
    Template { template: String, reason: String },
    #[error("\"{value}\" is not an accepted value (accepted: {allowed}); add it under [checks] if Savio accepts it")]
    InvalidChoice { value: String, allowed: String },
    #[error("the mapping maps no entity: add a [company], [contact] or [feedback] table")]
    NoEntity,
}

fn suggest(s: Option<&str>) -> String {
    match s {
        Some(s) => format!("; did you mean '{s}'?"),
        None => String::new(),
    }
}

/// Why one field of one row is unusable. The row fails; the run goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// `contact.email`, `company.filterable_attributes.employees`, ...
    pub field: String,
    pub problem: FieldProblem,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldProblem {
    /// A required field is empty; `from` says where it was read.
    Required {
        from: String,
    },
    InvalidEmail {
        value: String,
    },
    InvalidChoice {
        value: String,
        allowed: String,
    },
    Conversion {
        value: String,
        ty: AttrType,
        reason: String,
    },
    /// A JSONL path that holds an object (or a list of objects) on this line, past the sample the mapping
    /// was checked against: its JSON text would be sent as the value.
    NotAValue {
        path: String,
        shape: &'static str,
        keys: Vec<String>,
        example: String,
    },
    /// An id a spreadsheet rewrote in scientific notation (`5,12346E+11`), or a JSON integer too large for
    /// 64 bits, read as a float (`1.2345678901234568e+22`): its digits are gone, and rows that shared the
    /// rounding would overwrite one another in Savio.
    ScientificId {
        value: String,
    },
    /// A whole-number id written as a decimal (`9001.0`): a spreadsheet or pandas read the id column as
    /// numbers. Sent as it is, it would be another record than `9001`.
    DecimalId {
        value: String,
    },
    /// A JSON list of several values where one is expected (an id, an email): joined, they would make up an
    /// id for all of them.
    SeveralValues {
        values: Vec<String>,
    },
}

impl FieldError {
    /// The error without the row's value, to group failures in a summary.
    pub fn kind(&self) -> String {
        let what = match &self.problem {
            FieldProblem::Required { .. } => "required but empty".to_string(),
            FieldProblem::InvalidEmail { .. } => "invalid email address".to_string(),
            FieldProblem::InvalidChoice { .. } => "not an accepted value".to_string(),
            FieldProblem::Conversion { ty, .. } => format!("not a valid {}", ty.as_str()),
            FieldProblem::ScientificId { .. } => "an id in scientific notation".to_string(),
            FieldProblem::DecimalId { .. } => "an id written as a decimal number".to_string(),
            FieldProblem::SeveralValues { .. } => "several values where one is expected".to_string(),
            FieldProblem::NotAValue { shape, .. } => format!("{shape}, not a value"),
        };
        format!("{}: {what}", self.field)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        match &self.problem {
            FieldProblem::Required { from } => {
                write!(f, "{field} is required but empty (from {from})")
            }
            FieldProblem::InvalidEmail { value } => {
                write!(f, "{field} \"{}\" is not a valid email address", clip(value))
            }
            FieldProblem::InvalidChoice { value, allowed } => write!(
                f,
                "{field} \"{}\" is not an accepted value ({allowed}); translate it with `map` or add it under [checks]",
                clip(value)
            ),
            FieldProblem::Conversion { value, reason, .. } => {
                write!(f, "{field} \"{}\": {reason}", clip(value))
            }
            FieldProblem::NotAValue { path, shape, keys, example } => write!(
                f,
                "{field}: '{path}' holds {shape} on this line (keys: {}), not a value; map a key inside, e.g. '{example}'",
                clip(&keys.join(", "))
            ),
            // Spreadsheets write an exponent with `E`; programs writing a float (serde_json, for a JSON integer
            // beyond 2^64 that it reads as one; Python) with `e`. Blaming a spreadsheet for those misleads.
            FieldProblem::ScientificId { value } if !value.contains('e') => write!(
                f,
                "{field} \"{}\" is an id a spreadsheet rewrote in scientific notation, and its digits are lost: \
                 export again, or format the column as Text before saving",
                clip(value)
            ),
            FieldProblem::ScientificId { value } => write!(
                f,
                "{field} \"{}\" is an id written as a floating-point number, and its last digits are lost (a JSON \
                 integer beyond 2^64 is read as one): export the ids as text (in JSON, as strings)",
                clip(value)
            ),
            FieldProblem::DecimalId { value } => write!(
                f,
                "{field} \"{}\" is a whole-number id written as a decimal (a spreadsheet or pandas read the ids as \
                 numbers), which would be another record than \"{}\": export again keeping ids as text (pandas: \
                 dtype=str)",
                clip(value),
                clip(value.split('.').next().unwrap_or(value))
            ),
            FieldProblem::SeveralValues { values } => write!(
                f,
                "{field} holds {} values on this line ({}) where one is expected; map one of them (a path with \
                 an index such as 'items.0.id'), or split = \"...\" to take the first",
                values.len(),
                clip(&values.join(", "))
            ),
        }
    }
}

impl std::error::Error for FieldError {}

/// Keeps messages readable when a cell holds a whole essay.
/// A value for a message: at most 80 characters, and characters that show as nothing (a zero-width space
/// pasted into an email, a control character) written as `\u{200b}`, so the reader sees what is wrong.
fn clip(s: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::with_capacity(s.len().min(4 * MAX));
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if invisible(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that print as nothing or move the text: controls, zero-width and direction marks, BOM.
pub(crate) fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}' | '\u{00ad}')
}
