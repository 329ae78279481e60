//! Reading values out of a record: CSV columns by index, JSONL values by dotted path, and templates.

use std::borrow::Cow;

use serde_json::Value;

use crate::source::{Record, RecordData};

/// How to find one value in a record, resolved once against the input's header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Accessor {
    Column(usize),
    Path(JsonPath),
    /// A column the input lacks, read as empty (`missing_columns = "empty"`).
    Absent,
}

/// A dotted path into a JSON object: `author.email`, `tags`, `items.0.name`. A key that itself contains dots
/// is found too: the whole path is tried as a key before it is split. Where the path meets an array and the
/// next segment is not an index, the rest of the path is taken in every element and the values found make a
/// list: `tags.name` over `{"tags": [{"name": "sso"}, {"name": "beta"}]}` is `["sso", "beta"]` (Intercom's
/// `tags.tags.name`, HubSpot's associations).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonPath {
    pub full: String,
    segments: Vec<String>,
}

impl JsonPath {
    pub fn new(path: &str) -> JsonPath {
        JsonPath { full: path.to_string(), segments: path.split('.').map(str::to_string).collect() }
    }

    /// When the path leads to one object, or to a non-empty list of objects, what it is, its keys (of the
    /// first) and a path to map instead: a field given it would send its JSON text. `None` for values,
    /// lists of values, nothing.
    pub(crate) fn object_at(&self, object: &serde_json::Map<String, Value>) -> Option<ObjectFound> {
        let v = match object.get(&self.full) {
            Some(v) => v,
            None if self.segments.len() < 2 => return None,
            None => walk(object.get(&self.segments[0])?, &self.segments[1..], &mut Vec::new())?,
        };
        let (shape, first) = match v {
            Value::Object(o) => ("an object", o),
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                ("a list of objects", items[0].as_object()?)
            }
            _ => return None,
        };
        Some(ObjectFound {
            shape,
            keys: first.keys().cloned().collect(),
            example: format!("{}.{}", self.full, inner_key(first)),
        })
    }

    /// Whether the path leads to one JSON number (`1.5`, not `"1,5"`): its text is read with a decimal point
    /// whatever the field's `decimal`, which is about how text writes numbers.
    pub(crate) fn is_number(&self, object: &serde_json::Map<String, Value>) -> bool {
        if let Some(v) = object.get(&self.full) {
            return v.is_number();
        }
        let [head, rest @ ..] = self.segments.as_slice() else { return false };
        match object.get(head) {
            Some(first) if !rest.is_empty() => matches!(walk(first, rest, &mut Vec::new()), Some(v) if v.is_number()),
            _ => false,
        }
    }

    pub(crate) fn resolve<'a>(&self, object: &'a serde_json::Map<String, Value>) -> Raw<'a> {
        if let Some(v) = object.get(&self.full) {
            return json_to_raw(v);
        }
        if self.segments.len() < 2 {
            return Raw::Missing;
        }
        let Some(first) = object.get(&self.segments[0]) else { return Raw::Missing };
        let mut found = Vec::new();
        let single = walk(first, &self.segments[1..], &mut found);
        match single {
            Some(v) => json_to_raw(v),
            None if found.is_empty() => Raw::Missing,
            None => Raw::List(found),
        }
    }
}

/// An object met where a value was expected (see [`JsonPath::object_at`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ObjectFound {
    pub shape: &'static str,
    pub keys: Vec<String>,
    /// A path inside that leads to a value: `tags.tags.name` for Intercom's `tags`.
    pub example: String,
}

/// The key path inside `o` most likely meant: `name` or `email`, else such a key one level down (Intercom's
/// `{"type": "tag.list", "tags": [{"name": ...}]}` gives `tags.name`), else the first key.
fn inner_key(o: &serde_json::Map<String, Value>) -> String {
    let wanted = |m: &serde_json::Map<String, Value>| ["name", "email"].into_iter().find(|k| m.contains_key(*k));
    if let Some(k) = wanted(o) {
        return k.to_string();
    }
    for (k, v) in o {
        let inner = match v {
            Value::Object(m) => Some(m),
            Value::Array(items) => items.first().and_then(Value::as_object),
            _ => None,
        };
        if let Some(found) = inner.and_then(wanted) {
            return format!("{k}.{found}");
        }
    }
    o.keys().next().cloned().unwrap_or_default()
}

/// Follows `path` from `cur`. `Some` when it leads to one value; `None` when it leads nowhere or, past an
/// array taken element by element, to many, whose scalars are pushed to `found`.
fn walk<'a>(mut cur: &'a Value, path: &[String], found: &mut Vec<Cow<'a, str>>) -> Option<&'a Value> {
    for (i, seg) in path.iter().enumerate() {
        cur = match cur {
            Value::Object(o) => o.get(seg)?,
            Value::Array(a) => match seg.parse::<usize>() {
                Ok(index) => a.get(index)?,
                Err(_) => {
                    for item in a {
                        if let Some(v) = walk(item, &path[i..], found) {
                            match json_to_raw(v) {
                                Raw::Text(t) => found.push(t),
                                Raw::List(items) => found.extend(items),
                                Raw::Missing => {}
                            }
                        }
                    }
                    return None;
                }
            },
            _ => return None,
        };
    }
    Some(cur)
}

/// A value as found in the record, before any transform.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw<'a> {
    Missing,
    Text(Cow<'a, str>),
    /// A JSON array.
    List(Vec<Cow<'a, str>>),
}

impl<'a> Raw<'a> {
    /// Flattens to text: a list is joined with ", ".
    pub fn into_text(self) -> Cow<'a, str> {
        match self {
            Raw::Missing => Cow::Borrowed(""),
            Raw::Text(t) => t,
            Raw::List(items) => Cow::Owned(items.join(", ")),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Raw::Missing => true,
            Raw::Text(t) => trim(t).is_empty(),
            Raw::List(items) => items.iter().all(|i| trim(i).is_empty()),
        }
    }
}

impl Accessor {
    pub fn get<'a>(&self, record: &'a Record) -> Raw<'a> {
        match (self, &record.data) {
            (Accessor::Column(i), RecordData::Csv { fields, .. }) => match fields.get(*i) {
                Some(s) => Raw::Text(Cow::Borrowed(s)),
                None => Raw::Missing,
            },
            (Accessor::Path(p), RecordData::Json { object, .. }) => p.resolve(object),
            (Accessor::Absent, _) => Raw::Missing,
            // A mapping is compiled for one input format; the other combination cannot occur.
            _ => Raw::Missing,
        }
    }
}

pub(crate) fn json_to_raw(v: &Value) -> Raw<'_> {
    match v {
        Value::Null => Raw::Missing,
        Value::Array(items) => Raw::List(items.iter().filter_map(json_scalar_text).collect()),
        other => json_scalar_text(other).map_or(Raw::Missing, Raw::Text),
    }
}

fn json_scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// A piece of a template as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TemplatePart<T> {
    Literal(String),
    Placeholder(T),
}

/// Whether a short-form field string is a template rather than a column name.
pub(crate) fn looks_like_template(s: &str) -> bool {
    s.contains(['{', '}'])
}

/// Parses `"{First Name} {Last Name}"`; `{{` and `}}` are literal braces.
pub(crate) fn parse_template(s: &str) -> Result<Vec<TemplatePart<String>>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed {
                    return Err(format!(
                        "'{{' at character {} is never closed (write '{{{{' for a literal brace)",
                        i + 1
                    ));
                }
                let name = name.trim();
                if name.is_empty() {
                    return Err(format!("empty placeholder '{{}}' at character {}", i + 1));
                }
                if !lit.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
                }
                parts.push(TemplatePart::Placeholder(name.to_string()));
            }
            '}' => {
                return Err(format!("unmatched '}}' at character {} (write '}}}}' for a literal brace)", i + 1));
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Literal(lit));
    }
    Ok(parts)
}

/// Renders a compiled template: placeholders are trimmed, lists joined with ", ".
/// A template's text; empty when every placeholder is, so that `"{Last}, {First}"` of a row without names is
/// empty (its `default` applies, a required field fails) rather than `", "`.
pub(crate) fn render(parts: &[TemplatePart<Accessor>], record: &Record) -> String {
    let mut out = String::with_capacity(32);
    let mut any = false;
    for part in parts {
        match part {
            TemplatePart::Literal(l) => out.push_str(l),
            TemplatePart::Placeholder(acc) => {
                let v = acc.get(record).into_text();
                let v = trim(&v);
                any |= !v.is_empty();
                out.push_str(v);
            }
        }
    }
    let placeholders = parts.iter().any(|p| matches!(p, TemplatePart::Placeholder(_)));
    if placeholders && !any {
        out.clear();
    }
    out
}

/// `str::trim` with a fast path: most values start and end with a visible ASCII character, and trimming
/// ASCII whitespace needs no decoding. Unicode whitespace at either end goes the general way.
#[inline]
pub(crate) fn trim(s: &str) -> &str {
    // The ASCII characters `char::is_whitespace` accepts: TAB, LF, VT, FF, CR and space.
    let ws = |c: &u8| matches!(*c, b' ' | b'\t'..=b'\r');
    let b = s.as_bytes();
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |i| i + 1);
    let t = &b[start..end];
    if t.first().is_none_or(u8::is_ascii) && t.last().is_none_or(u8::is_ascii) {
        // Cut at ASCII bytes only, so still on char boundaries.
        &s[start..end]
    } else {
        s[start..end].trim()
    }
}

/// Every dotted path present in a JSON object: objects are descended, and so are the objects in arrays.
pub(crate) fn collect_paths(object: &serde_json::Map<String, Value>, prefix: &str, out: &mut SeenPaths) {
    for (k, v) in object {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Object(inner) => {
                out.objects.insert(path.clone());
                collect_paths(inner, &path, out);
            }
            // The keys of an array's objects, without an index: `tags.name`, as [`JsonPath`] reads it
            // (an index in a mapping's path is dropped before it is looked up, see [`path_known`]).
            Value::Array(items) => {
                for item in items.iter().take(SAMPLED_ELEMENTS) {
                    match item {
                        Value::Object(inner) => {
                            out.object_lists.insert(path.clone());
                            collect_paths(inner, &path, out);
                        }
                        Value::Array(_) | Value::Null => {}
                        _ => {
                            out.values.insert(path.clone());
                        }
                    }
                }
            }
            Value::Null => {}
            _ => {
                out.values.insert(path.clone());
            }
        }
        out.paths.insert(path);
    }
}

/// The paths seen in the sampled JSONL objects (array indices left out), by what they held: a path that
/// only ever held objects, or lists of objects, would be sent as JSON text if mapped to a field as it is.
#[derive(Debug, Default)]
pub(crate) struct SeenPaths {
    pub paths: std::collections::BTreeSet<String>,
    /// Held a text, number or boolean (or a list of them) somewhere in the sample.
    pub values: std::collections::BTreeSet<String>,
    pub objects: std::collections::BTreeSet<String>,
    pub object_lists: std::collections::BTreeSet<String>,
}

impl SeenPaths {
    /// "an object" or "a list of objects" when `path` held only those in the sample: mapped to a field, it
    /// would be sent as JSON text.
    pub fn only_objects(&self, path: &str) -> Option<&'static str> {
        let path = without_indices(path);
        if self.values.contains(&path) {
            None
        } else if self.object_lists.contains(&path) {
            Some("a list of objects")
        } else if self.objects.contains(&path) {
            Some("an object")
        } else {
            None
        }
    }

    /// The keys seen in the objects of the list at `path`, for a message.
    pub fn keys_under(&self, path: &str) -> Vec<&str> {
        let prefix = format!("{path}.");
        self.paths.iter().filter_map(|p| p.strip_prefix(&prefix)).filter(|rest| !rest.contains('.')).collect()
    }
}

/// How many elements of each array the path sample looks into.
const SAMPLED_ELEMENTS: usize = 20;

/// Whether a mapping's path is among the paths [`collect_paths`] saw, its array indices ignored
/// (`items.0.name` is known when `items.name` was seen).
pub(crate) fn path_known(seen: &std::collections::BTreeSet<String>, path: &str) -> bool {
    seen.contains(path) || seen.contains(&without_indices(path))
}

pub(crate) fn without_indices(path: &str) -> String {
    path.split('.').filter(|s| s.parse::<usize>().is_err()).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        let Value::Object(object) = v else { panic!() };
        Record { line: 1, data: RecordData::Json { raw: String::new(), object } }
    }

    #[test]
    fn trim_matches_str_trim() {
        for s in
            ["", " ", "a", " a ", "\t a b \r\n", "\u{a0}x\u{a0}", " \u{3000}é ", "é", " ü", "\u{2003}", "\x0b a \x0c"]
        {
            assert_eq!(trim(s), s.trim(), "{s:?}");
        }
    }

    #[test]
    fn dotted_paths_nested_arrays_and_literal_dotted_keys() {
        let r = rec(
            json!({"author": {"email": "a@b.co", "n": 3}, "tags": ["x", 2, null], "a.b": "lit", "items": [{"name": "i0"}]}),
        );
        let get = |p: &str| Accessor::Path(JsonPath::new(p)).get(&r);
        assert_eq!(get("author.email"), Raw::Text("a@b.co".into()));
        assert_eq!(get("author.n"), Raw::Text("3".into()));
        assert_eq!(get("tags"), Raw::List(vec!["x".into(), "2".into()]));
        assert_eq!(get("a.b"), Raw::Text("lit".into()));
        assert_eq!(get("items.0.name"), Raw::Text("i0".into()));
        assert_eq!(get("author.missing"), Raw::Missing);
        assert_eq!(get("tags.x"), Raw::Missing);
    }

    #[test]
    fn the_path_sample_sees_inside_arrays_of_objects() {
        let Value::Object(o) = json!({"tags": {"tags": [{"name": "sso"}]}, "items": [{"sku": 1}], "n": [1, 2]}) else {
            panic!()
        };
        let mut seen = SeenPaths::default();
        collect_paths(&o, "", &mut seen);
        for known in ["tags.tags.name", "tags.tags.0.name", "items.sku", "items.0.sku", "n", "tags"] {
            assert!(path_known(&seen.paths, known), "{known}: {seen:?}");
        }
        for unknown in ["tags.name", "items.price", "n.0.x"] {
            assert!(!path_known(&seen.paths, unknown), "{unknown}");
        }
        assert_eq!(seen.only_objects("items"), Some("a list of objects"));
        assert_eq!(seen.only_objects("tags.tags"), Some("a list of objects"));
        assert_eq!(seen.only_objects("tags"), Some("an object"));
        assert_eq!(seen.only_objects("n"), None);
        assert_eq!(seen.only_objects("items.0.sku"), None);
        assert_eq!(seen.keys_under("tags.tags"), ["name"]);
        // A path that is an object in one row and a text in another is left to the mapping (a coalesced
        // column can read both shapes).
        let Value::Object(o2) = json!({"tags": "sso"}) else { panic!() };
        collect_paths(&o2, "", &mut seen);
        assert_eq!(seen.only_objects("tags"), None);
    }

    #[test]
    fn a_path_past_an_array_takes_every_element() {
        // Intercom: {"tags": {"type": "tag.list", "tags": [{"id": "1", "name": "sso"}, ...]}}.
        let r = rec(json!({
            "tags": {"type": "tag.list", "tags": [{"id": "1", "name": "sso"}, {"id": "2", "name": "beta"}, {"id": "3"}]},
            "parts": [{"author": {"emails": ["a@b.co", "c@d.co"]}}, {"author": {"emails": ["e@f.co"]}}],
            "empty": [],
        }));
        let get = |p: &str| Accessor::Path(JsonPath::new(p)).get(&r);
        assert_eq!(get("tags.tags.name"), Raw::List(vec!["sso".into(), "beta".into()]));
        assert_eq!(get("tags.tags.1.name"), Raw::Text("beta".into()));
        assert_eq!(get("parts.author.emails"), Raw::List(vec!["a@b.co".into(), "c@d.co".into(), "e@f.co".into()]));
        assert_eq!(get("tags.tags.missing"), Raw::Missing);
        assert_eq!(get("empty.name"), Raw::Missing);
    }

    #[test]
    fn templates_parse_with_escapes_and_errors() {
        assert_eq!(
            parse_template("{First} {{x}} {Last}").unwrap(),
            vec![
                TemplatePart::Placeholder("First".into()),
                TemplatePart::Literal(" {x} ".into()),
                TemplatePart::Placeholder("Last".into())
            ]
        );
        assert!(parse_template("{First").unwrap_err().contains("never closed"));
        assert!(parse_template("a}").unwrap_err().contains("unmatched"));
        assert!(parse_template("{ }").unwrap_err().contains("empty"));
    }

    #[test]
    fn render_trims_placeholders() {
        let r = rec(json!({"f": "  Ada ", "l": "Lovelace"}));
        let parts = vec![
            TemplatePart::Placeholder(Accessor::Path(JsonPath::new("f"))),
            TemplatePart::Literal(" ".into()),
            TemplatePart::Placeholder(Accessor::Path(JsonPath::new("l"))),
        ];
        assert_eq!(render(&parts, &r), "Ada Lovelace");
    }
}
