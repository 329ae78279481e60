//! The mapping file's shape, checked before it is deserialised: every unknown key, value of the wrong type
//! and unknown choice in the file, each with its line, in one message.
//!
//! Why not only serde: `deny_unknown_fields` stops at the first problem, so a mapping with three typos took
//! three runs to fix. This walks the parsed document against the same schema as [`super::spec`] (which
//! stays the source of truth: a file this accepts is then deserialised, and anything it missed is still
//! reported, one at a time).

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem: where (1-based line), which key (`contact.filterable_attributes.score.type`), and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeProblem {
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ShapeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.key, self.message)
    }
}

/// What a value must be.
#[derive(Clone, Copy)]
enum Shape {
    Str,
    Bool,
    /// A string or a non-empty list of strings.
    StrOrList,
    StrList,
    Choice(&'static [&'static str]),
    /// Anything (a constant's value is checked when the mapping is compiled).
    Any,
    /// A table of string → string (`map = { ... }`).
    StrMap,
    /// A string (column or template) or a field table.
    Field,
    /// A table of attribute name → field.
    Fields,
    /// A list of filter tables.
    Skips,
    Table(&'static [(&'static str, Shape)]),
}

const ORDERS: &[&str] = &["mdy", "dmy"];

const INPUT: &[(&str, Shape)] = &[
    ("format", Shape::Str),
    ("delimiter", Shape::Str),
    ("encoding", Shape::Str),
    ("strict_paths", Shape::Bool),
    ("date_order", Shape::Choice(ORDERS)),
    ("missing_columns", Shape::Choice(&["error", "empty"])),
];

const CHECKS: &[(&str, Shape)] = &[("feedback_types", Shape::StrList), ("states", Shape::StrList)];

const SKIP: &[(&str, Shape)] = &[
    ("if_empty", Shape::Str),
    ("column", Shape::Str),
    ("equals", Shape::StrOrList),
    ("not_equals", Shape::StrOrList),
    ("contains", Shape::StrOrList),
    ("case_sensitive", Shape::Bool),
];

const FIELD: &[(&str, Shape)] = &[
    ("column", Shape::StrOrList),
    ("path", Shape::StrOrList),
    ("template", Shape::Str),
    ("value", Shape::Any),
    ("trim", Shape::Bool),
    ("strip_html", Shape::Bool),
    ("collapse_whitespace", Shape::Bool),
    ("case", Shape::Choice(&["lower", "upper", "title", "keep"])),
    ("map", Shape::StrMap),
    ("map_default", Shape::Str),
    ("default", Shape::Str),
    ("split", Shape::Str),
    ("type", Shape::Choice(&["string", "integer", "float", "bool", "date"])),
    ("date_order", Shape::Choice(ORDERS)),
    ("format", Shape::Str),
    ("decimal", Shape::Str),
];

const UNMAPPED: Shape = Shape::Choice(&["ignore", "attributes"]);

const COMPANY: &[(&str, Shape)] = &[
    ("name", Shape::Field),
    ("internal_id", Shape::Field),
    ("filterable_attributes", Shape::Fields),
    ("unmapped", UNMAPPED),
    ("unmapped_exclude", Shape::StrList),
    ("skip", Shape::Skips),
    ("optional", Shape::Bool),
];

const CONTACT: &[(&str, Shape)] = &[
    ("name", Shape::Field),
    ("internal_id", Shape::Field),
    ("email", Shape::Field),
    ("company", Shape::Field),
    ("company_internal_id", Shape::Field),
    ("filterable_attributes", Shape::Fields),
    ("unmapped", UNMAPPED),
    ("unmapped_exclude", Shape::StrList),
    ("skip", Shape::Skips),
    ("optional", Shape::Bool),
];

const FEEDBACK: &[(&str, Shape)] = &[
    ("problem", Shape::Field),
    ("feedback_type", Shape::Field),
    ("state", Shape::Field),
    ("source_url", Shape::Field),
    ("source_username", Shape::Field),
    ("person_email", Shape::Field),
    ("person_name", Shape::Field),
    ("company_name", Shape::Field),
    ("feature_request_title", Shape::Field),
    ("tags", Shape::Field),
    ("skip", Shape::Skips),
    ("optional", Shape::Bool),
];

const ROOT: &[(&str, Shape)] = &[
    ("input", Shape::Table(INPUT)),
    ("checks", Shape::Table(CHECKS)),
    ("skip", Shape::Skips),
    ("company", Shape::Table(COMPANY)),
    ("contact", Shape::Table(CONTACT)),
    ("feedback", Shape::Table(FEEDBACK)),
];

/// Every shape problem of a mapping file, in file order; empty when the file is not even valid TOML (its
/// syntax error is then reported by the deserialiser).
pub(crate) fn check(text: &str) -> Vec<ShapeProblem> {
    let Ok(doc) = DeTable::parse(text) else { return Vec::new() };
    let mut walk = Walk { lines: LineIndex::new(text), problems: Vec::new() };
    walk.table(doc.get_ref(), ROOT, "");
    walk.problems.sort_by_key(|p| p.line);
    walk.problems
}

struct Walk {
    lines: LineIndex,
    problems: Vec<ShapeProblem>,
}

impl Walk {
    fn problem(&mut self, at: usize, key: &str, message: String) {
        self.problems.push(ShapeProblem { line: self.lines.line_of(at), key: key.to_string(), message });
    }

    fn table(&mut self, table: &DeTable<'_>, keys: &[(&str, Shape)], prefix: &str) {
        for (k, v) in table.iter() {
            let name = k.get_ref().as_ref();
            let path = join(prefix, name);
            match keys.iter().find(|(known, _)| *known == name) {
                Some((_, shape)) => self.value(v, *shape, &path),
                None => {
                    let valid: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                    let hint = match super::compile::closest(name, valid.iter().copied()) {
                        Some(s) => format!("did you mean '{s}'? "),
                        None => String::new(),
                    };
                    let message = format!("unknown key; {hint}(valid here: {})", valid.join(", "));
                    self.problem(k.span().start, &path, message);
                }
            }
        }
    }

    fn value(&mut self, v: &Spanned<DeValue<'_>>, shape: Shape, path: &str) {
        let at = v.span().start;
        match (shape, v.get_ref()) {
            (Shape::Any, _)
            | (Shape::Str, DeValue::String(_))
            | (Shape::Bool, DeValue::Boolean(_))
            | (Shape::StrOrList, DeValue::String(_))
            | (Shape::Field, DeValue::String(_)) => {}
            (Shape::StrOrList, DeValue::Array(items)) if !items.is_empty() => self.strings(items, path),
            (Shape::StrOrList, DeValue::Array(_)) => {
                self.problem(at, path, "an empty list; give at least one string".into())
            }
            (Shape::StrList, DeValue::Array(items)) => self.strings(items, path),
            (Shape::Choice(choices), DeValue::String(s)) => {
                if !choices.contains(&s.as_ref()) {
                    let message = format!("\"{s}\" is not one of {}", quoted(choices));
                    self.problem(at, path, message);
                }
            }
            (Shape::StrMap, DeValue::Table(t)) => {
                for (k, item) in t.iter() {
                    if !matches!(item.get_ref(), DeValue::String(_)) {
                        let message = format!("a map's values are strings, not {}", kind(item.get_ref()));
                        self.problem(item.span().start, &join(path, k.get_ref()), message);
                    }
                }
            }
            (Shape::Field, DeValue::Table(t)) => self.table(t, FIELD, path),
            (Shape::Fields, DeValue::Table(t)) => {
                for (k, item) in t.iter() {
                    self.value(item, Shape::Field, &join(path, k.get_ref()));
                }
            }
            (Shape::Skips, DeValue::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.value(item, Shape::Table(SKIP), &format!("{path}[{}]", i + 1));
                }
            }
            (Shape::Table(keys), DeValue::Table(t)) => self.table(t, keys, path),
            (shape, other) => {
                let message = format!("expected {}, found {}", expected(shape), kind(other));
                self.problem(at, path, message);
            }
        }
    }

    fn strings(&mut self, items: &[Spanned<DeValue<'_>>], path: &str) {
        for item in items {
            if !matches!(item.get_ref(), DeValue::String(_)) {
                let message = format!("a list of strings cannot hold {}", kind(item.get_ref()));
                self.problem(item.span().start, path, message);
            }
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }
}

fn quoted(choices: &[&str]) -> String {
    choices.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
}

fn expected(shape: Shape) -> &'static str {
    match shape {
        Shape::Str | Shape::Choice(_) => "a string",
        Shape::Bool => "true or false",
        Shape::StrOrList => "a string or a list of strings",
        Shape::StrList => "a list of strings",
        Shape::Any => "a value",
        Shape::StrMap => "a table such as { \"from\" = \"to\" }",
        Shape::Field => "a column name, a template, or a table such as { column = \"Email\" }",
        Shape::Fields => "a table of attribute = field",
        Shape::Skips => "a list of [[skip]] tables",
        Shape::Table(_) => "a table",
    }
}

fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// Byte offset → 1-based line.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { starts }
    }

    fn line_of(&self, at: usize) -> usize {
        self.starts.partition_point(|s| *s <= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        check(text).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_problem_of_the_file_at_once_with_its_line() {
        let text = "[company]\ninternal_id = \"Id\"\nname = \"Name\"\n[contact]\ninternal_id = \"RecordID\"\n\
                    emial = \"Email\"\n[contact.filterable_attributes]\ncreated = { column = \"Create date\", typ = \"date\" }\n\
                    score = { column = \"Stage\", type = \"number\" }\nx = { colum = \"City\", trim = \"yes\" }\n";
        let m = messages(text);
        assert_eq!(m.len(), 5, "{m:#?}");
        assert!(
            m[0].starts_with("line 6: contact.emial: unknown key; did you mean 'email'? (valid here: name,"),
            "{m:#?}"
        );
        assert!(
            m[1].starts_with("line 8: contact.filterable_attributes.created.typ: unknown key; did you mean 'type'?")
        );
        assert_eq!(
            m[2],
            "line 9: contact.filterable_attributes.score.type: \"number\" is not one of \"string\", \"integer\", \
             \"float\", \"bool\", \"date\""
        );
        assert!(
            m[3].starts_with("line 10: contact.filterable_attributes.x.colum: unknown key; did you mean 'column'?")
        );
        assert_eq!(m[4], "line 10: contact.filterable_attributes.x.trim: expected true or false, found a string");
    }

    #[test]
    fn the_shapes_serde_accepts_pass() {
        let text = r#"
            [input]
            delimiter = ";"
            strict_paths = false
            date_order = "dmy"
            missing_columns = "empty"
            [checks]
            feedback_types = ["PARTNER"]
            [[skip]]
            column = "Stage"
            equals = ["Other", "Spam"]
            case_sensitive = true
            [company]
            internal_id = { column = ["A", "B"] }
            name = "{First} {Last}"
            unmapped = "attributes"
            unmapped_exclude = ["Phone"]
            [feedback]
            problem = { path = "body", strip_html = true }
            feedback_type = { column = "plan", map = { paying = "ACTIVE" }, map_default = "OTHER" }
            tags = { column = "tags", split = "," }
            state = { value = "PENDING" }
            [[feedback.skip]]
            if_empty = "body"
            [contact]
            internal_id = "id"
            name = "name"
            optional = true
            [contact.filterable_attributes]
            n = { value = 5 }
            on = { value = true }
            l = { value = ["a", 1] }
            d = { column = "Created", type = "date", format = "%d/%m/%Y", date_order = "dmy" }
            f = { column = "Revenue", type = "float", decimal = "," }
        "#;
        assert_eq!(messages(text), Vec::<String>::new());
        assert!(toml::from_str::<super::super::spec::MappingSpec>(text).is_ok(), "serde agrees");
    }

    #[test]
    fn wrong_types_and_invalid_toml() {
        let m = messages("[contact]\nskip = { if_empty = \"x\" }\n[contact.filterable_attributes]\na = 5\n");
        assert_eq!(m, vec![
            "line 2: contact.skip: expected a list of [[skip]] tables, found a table".to_string(),
            "line 4: contact.filterable_attributes.a: expected a column name, a template, or a table such as { column = \"Email\" }, found an integer".to_string(),
        ]);
        assert!(messages("[contact\nname = 1").is_empty(), "a syntax error is the deserialiser's to report");
    }
}
