//! Flags, environment and the mapping file merged into validated settings, before any stage starts.
//!
//! Command-line flags win over the mapping's `[input]` section, which wins over detection.

use crate::mapping::Mapping;
use crate::source::{Delimiter, Format, InputPath, InputSpec, TextEncoding};

/// Input options given on the command line (already parsed into domain types by clap).
#[derive(Debug, Clone, Default)]
pub struct InputFlags {
    pub format: Option<Format>,
    pub delimiter: Option<Delimiter>,
    pub encoding: Option<TextEncoding>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("mapping '{mapping}': [input] format = \"{value}\" is not a format; use \"csv\" or \"jsonl\"")]
    Format { mapping: String, value: String },
    #[error(
        "mapping '{mapping}': [input] delimiter = \"{value}\" is not a delimiter; use one character such as \",\" \";\" \"|\" or \"tab\""
    )]
    Delimiter { mapping: String, value: String },
    #[error(
        "mapping '{mapping}': [input] encoding = \"{value}\" is not a known encoding; use a label such as \"utf-8\", \"windows-1252\", \"latin1\" or \"utf-16\""
    )]
    Encoding { mapping: String, value: String },
}

/// Resolves what to read and how.
pub fn input_spec(input: &str, flags: &InputFlags, mapping: &Mapping) -> Result<InputSpec, SettingsError> {
    let section = mapping.input();
    let name = || mapping.path().display().to_string();
    let format = match (flags.format, &section.format) {
        (Some(f), _) => Some(f),
        (None, Some(v)) => {
            Some(Format::parse(v).ok_or_else(|| SettingsError::Format { mapping: name(), value: v.clone() })?)
        }
        (None, None) => None,
    };
    let delimiter = match (flags.delimiter, &section.delimiter) {
        (Some(d), _) => Some(d),
        (None, Some(v)) => {
            Some(Delimiter::parse(v).ok_or_else(|| SettingsError::Delimiter { mapping: name(), value: v.clone() })?)
        }
        (None, None) => None,
    };
    let encoding = match (flags.encoding, &section.encoding) {
        (Some(e), _) => e,
        (None, Some(v)) => {
            TextEncoding::from_label(v).ok_or_else(|| SettingsError::Encoding { mapping: name(), value: v.clone() })?
        }
        (None, None) => TextEncoding::UTF8,
    };
    Ok(InputSpec { path: InputPath::from_arg(input), format, delimiter, encoding })
}
