//! The mapping file as written: the TOML schema, deserialised strictly.
//!
//! Every table denies unknown keys, so a typo (`emial = "Email"`) is an error that lists the valid keys
//! rather than a field silently left empty. The short form of a field is a string (a column name, or a
//! template when it contains `{...}`); the long form is a table with a source and transforms.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    #[serde(default)]
    pub input: InputSection,
    #[serde(default)]
    pub checks: ChecksSection,
    /// Row filters: a row matching any of these is skipped for every entity.
    #[serde(default)]
    pub skip: Vec<SkipSpec>,
    pub company: Option<CompanySpec>,
    pub contact: Option<ContactSpec>,
    pub feedback: Option<FeedbackSpec>,
}

/// How to read the input; command-line flags win over these.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    pub format: Option<String>,
    pub delimiter: Option<String>,
    pub encoding: Option<String>,
    /// JSONL: whether a path that appears in none of the first sampled objects is an error (default) or a warning.
    pub strict_paths: Option<bool>,
    /// Default order of day and month in dates like `03/04/2024`, for every date attribute.
    pub date_order: Option<DateOrder>,
    /// CSV: what a column that an optional field names, and the input lacks, means.
    pub missing_columns: Option<MissingColumns>,
}

/// `[input] missing_columns`: exports whose columns vary (HubSpot's "properties in the view", a Salesforce
/// report's chosen columns) need not refuse a preset over an optional column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingColumns {
    /// The mapping is refused, naming the closest header (the default: a typo is caught before any row).
    #[default]
    Error,
    /// The column reads as empty in every row, with a warning. Not for the fields Savio requires, nor row
    /// filters: those columns must exist.
    Empty,
}

/// Extra values accepted besides the documented ones (Savio may have added some).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksSection {
    #[serde(default)]
    pub feedback_types: Vec<String>,
    #[serde(default)]
    pub states: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanySpec {
    pub name: Option<FieldSpec>,
    pub internal_id: Option<FieldSpec>,
    #[serde(default)]
    pub filterable_attributes: BTreeMap<String, FieldSpec>,
    pub unmapped: Option<Unmapped>,
    #[serde(default)]
    pub unmapped_exclude: Vec<String>,
    #[serde(default)]
    pub skip: Vec<SkipSpec>,
    pub optional: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactSpec {
    pub name: Option<FieldSpec>,
    pub internal_id: Option<FieldSpec>,
    pub email: Option<FieldSpec>,
    pub company: Option<FieldSpec>,
    pub company_internal_id: Option<FieldSpec>,
    #[serde(default)]
    pub filterable_attributes: BTreeMap<String, FieldSpec>,
    pub unmapped: Option<Unmapped>,
    #[serde(default)]
    pub unmapped_exclude: Vec<String>,
    #[serde(default)]
    pub skip: Vec<SkipSpec>,
    pub optional: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackSpec {
    pub problem: Option<FieldSpec>,
    pub feedback_type: Option<FieldSpec>,
    pub state: Option<FieldSpec>,
    pub source_url: Option<FieldSpec>,
    pub source_username: Option<FieldSpec>,
    pub person_email: Option<FieldSpec>,
    pub person_name: Option<FieldSpec>,
    pub company_name: Option<FieldSpec>,
    pub feature_request_title: Option<FieldSpec>,
    pub tags: Option<FieldSpec>,
    #[serde(default)]
    pub skip: Vec<SkipSpec>,
    pub optional: Option<bool>,
}

/// What to do with columns no field refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmapped {
    /// Leave them out (the default).
    Ignore,
    /// Carry each as a string `filterable_attribute`, under a normalised key.
    Attributes,
}

/// A row filter. Exactly one condition: `if_empty = "Col"`, or `column` with `equals` / `not_equals` /
/// `contains`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipSpec {
    pub if_empty: Option<String>,
    pub column: Option<String>,
    pub equals: Option<OneOrMany>,
    pub not_equals: Option<OneOrMany>,
    /// Skip when the value contains one of these (a label among several: `"Spam, Cold lead"`).
    pub contains: Option<OneOrMany>,
    /// Compare case-sensitively (default: case-insensitive, after trimming).
    #[serde(default)]
    pub case_sensitive: bool,
}

/// Where a field's value comes from, as written.
#[derive(Debug, Clone)]
pub enum FieldSpec {
    /// `field = "Column"` or `field = "{First} {Last}"`.
    Short(String),
    Full(Box<FieldTable>),
}

/// The long form of a field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldTable {
    /// A column (CSV) or dotted path (JSONL); a list means "the first non-empty of these".
    #[serde(alias = "path")]
    pub column: Option<OneOrMany>,
    pub template: Option<String>,
    pub value: Option<toml::Value>,
    pub trim: Option<bool>,
    /// Read the value as HTML and keep its text (Intercom and Zendesk message bodies).
    pub strip_html: Option<bool>,
    pub collapse_whitespace: Option<bool>,
    pub case: Option<Case>,
    pub map: Option<BTreeMap<String, String>>,
    pub map_default: Option<String>,
    pub default: Option<String>,
    pub split: Option<String>,
    #[serde(rename = "type")]
    pub ty: Option<AttrType>,
    pub date_order: Option<DateOrder>,
    /// A chrono `strftime` format tried before the built-in date formats.
    pub format: Option<String>,
    /// Decimal separator for `type = "float"` and `type = "integer"`: "." (default) or "," (then "." groups
    /// thousands: `1.234,5`, `1.200`).
    pub decimal: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    Lower,
    Upper,
    Title,
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttrType {
    String,
    Integer,
    Float,
    Bool,
    Date,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Integer => "integer",
            AttrType::Float => "float",
            AttrType::Bool => "bool",
            AttrType::Date => "date",
        }
    }
}

/// How to read an all-numeric date such as `03/04/2024`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DateOrder {
    /// Month first (US; HubSpot and Salesforce in US locales). The default.
    #[default]
    Mdy,
    /// Day first (UK, most of Europe).
    Dmy,
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                if out.is_empty() {
                    return Err(de::Error::invalid_length(0, &"at least one string"));
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a column name, a template like \"{First Name} {Last Name}\", or a table such as \
                     { column = \"Email\", case = \"lower\" } or { value = \"ACTIVE\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldSpec, E> {
                Ok(FieldSpec::Short(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldSpec, A::Error> {
                FieldTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|t| FieldSpec::Full(Box::new(t)))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_forms() {
        let spec: MappingSpec = toml::from_str(
            r#"
            [contact]
            internal_id = "Record ID"
            name = "{First Name} {Last Name}"
            email = { column = "Email", case = "lower" }
            [contact.filterable_attributes]
            score = { column = ["Score", "Old Score"], type = "integer" }
            "#,
        )
        .unwrap();
        let c = spec.contact.unwrap();
        assert!(matches!(c.internal_id, Some(FieldSpec::Short(ref s)) if s == "Record ID"));
        let FieldSpec::Full(t) = c.email.unwrap() else { panic!() };
        assert_eq!(t.case, Some(Case::Lower));
        let FieldSpec::Full(t) = &c.filterable_attributes["score"] else { panic!() };
        assert_eq!(t.column, Some(OneOrMany(vec!["Score".into(), "Old Score".into()])));
        assert_eq!(t.ty, Some(AttrType::Integer));
    }

    #[test]
    fn typos_are_rejected_with_the_valid_keys() {
        let err = toml::from_str::<MappingSpec>("[contact]\nemial = \"Email\"\n").unwrap_err().to_string();
        assert!(err.contains("emial") && err.contains("email"), "{err}");
        let err = toml::from_str::<MappingSpec>("[contact]\nemail = { colum = \"Email\" }\n").unwrap_err().to_string();
        assert!(err.contains("colum") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn path_is_an_alias_of_column() {
        let spec: MappingSpec = toml::from_str("[feedback]\nproblem = { path = \"body.text\" }\n").unwrap();
        let FieldSpec::Full(t) = spec.feedback.unwrap().problem.unwrap() else { panic!() };
        assert_eq!(t.column, Some(OneOrMany(vec!["body.text".into()])));
    }
}
