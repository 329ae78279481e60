//! Reader + mapping joined: opens the input, compiles the mapping against it, and yields one [`Row`] per
//! input row with its outcome. `validate` consumes it directly; `sync` runs it on a blocking thread that
//! feeds the writer through a bounded channel.

use std::collections::VecDeque;
use std::fmt;

use crate::mapping::{self, FieldError, MapOutcome, Mapper, Mapping, MappingError};
pub use crate::mapping::{DropReason, Dropped};
use crate::model::Payload;
use crate::source::{self, RawRow, ReadError, ReadItem, Record, RowReadError, Source, SourceInfo};

/// Why a row is unusable: the reader could not read it, or fields of it are invalid.
#[derive(Debug, Clone, PartialEq)]
pub enum RowProblem {
    Read(RowReadError),
    Field(FieldError),
}

impl RowProblem {
    /// A description without the row's values, to group failures in a summary.
    pub fn kind(&self) -> String {
        match self {
            RowProblem::Read(e) => e.kind(),
            RowProblem::Field(e) => e.kind(),
        }
    }
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowProblem::Read(e) => e.fmt(f),
            RowProblem::Field(e) => e.fmt(f),
        }
    }
}

/// All problems of a row, as one reason line for reports.
pub fn reason_text(problems: &[RowProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// One input row and what became of it in the mapping stage.
#[derive(Debug)]
pub struct Row {
    pub line: u64,
    pub kind: RowKind,
    source: RowSource,
}

#[derive(Debug)]
enum RowOrigin {
    Record(Record),
    Raw(RawRow),
    Nothing,
}

/// Why a report footer's line is skipped (see [`ReadItem::Footer`]).
pub const FOOTER: &str = "a line of the report's footer (Salesforce), not data";

/// Why a row that is the header again is skipped (see [`ReadItem::RepeatedHeader`]).
pub const REPEATED_HEADER: &str = "repeats the header (two exports joined?)";

#[derive(Debug, Clone, PartialEq)]
pub enum RowKind {
    /// Payloads to send, and the entities of the row that are not sent (an entity filter matched, or the
    /// same entity was already sent this run), with why. A row with no payloads and only drops is still
    /// `Mapped`: nothing is wrong with it, there is just nothing new to send.
    Mapped {
        payloads: Vec<Payload>,
        dropped: Vec<Dropped>,
    },
    /// A row filter matched (or no entity has data in the row); the reason names it.
    Skipped(String),
    Failed(Vec<RowProblem>),
    /// No content; counted, not reported as a row.
    Blank,
}

impl Row {
    /// The row as it was read, for the failures file (`None` for blank rows).
    pub fn raw(&self) -> Option<RawRow> {
        self.source.raw()
    }

    /// The line, the outcome of mapping, and what the row was read from (kept as it is: most rows never
    /// need their raw form, which only the failures file writes).
    pub fn into_parts(self) -> (u64, RowKind, RowSource) {
        (self.line, self.kind, self.source)
    }
}

/// What a [`Row`] was read from, for the failures file.
#[derive(Debug)]
pub struct RowSource(RowOrigin);

impl RowSource {
    /// The row as it was read (`None` for blank rows).
    pub fn raw(&self) -> Option<RawRow> {
        match &self.0 {
            RowOrigin::Record(r) => Some(r.raw()),
            RowOrigin::Raw(r) => Some(r.clone()),
            RowOrigin::Nothing => None,
        }
    }
}

/// Errors that stop the pipeline before any row is processed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
}

/// An open input with its compiled mapping.
pub struct Pipeline {
    source: Source,
    mapper: Mapper,
    warnings: Vec<String>,
    lookahead: VecDeque<ReadItem>,
}

impl Pipeline {
    /// Opens the input and compiles the mapping against it. For JSONL the first objects are read ahead to
    /// check the mapping's paths; they are processed normally afterwards.
    pub fn open(spec: &source::InputSpec, mapping: &Mapping) -> Result<Pipeline, PrepareError> {
        Pipeline::from_source(Source::open(spec)?, mapping)
    }

    pub fn from_source(mut source: Source, mapping: &Mapping) -> Result<Pipeline, PrepareError> {
        let mut lookahead = VecDeque::new();
        if source.info().format == source::Format::Jsonl {
            read_ahead(&mut source, &mut lookahead, mapping::JSON_SAMPLE)?;
            not_a_json_document(source.info(), &lookahead)?;
        }
        let sample: Vec<Record> = records(&lookahead).cloned().collect();
        let compiled = mapping.compile(source.info(), &sample)?;
        let (mut mapper, mut warnings) = (compiled.mapper, compiled.warnings);
        warnings.splice(0..0, source.warnings().iter().cloned());
        // Date attributes without a day/month order take the one their first rows show (see `mapping::order`).
        if mapper.needs_order_sample() {
            let have = sample.len();
            read_ahead(&mut source, &mut lookahead, mapping::DATE_ORDER_SAMPLE.saturating_sub(have))?;
            warnings.extend(mapper.settle_date_orders(records(&lookahead)));
        }
        Ok(Pipeline { source, mapper, warnings, lookahead })
    }

    pub fn info(&self) -> &SourceInfo {
        self.source.info()
    }

    /// Warnings from compiling the mapping (shown, not fatal).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn mapper(&self) -> &Mapper {
        &self.mapper
    }

    /// `--retry-unknown`: feedback a failures file marks as of unknown outcome is sent (see
    /// [`Mapper::retry_unknown`]).
    pub fn retry_unknown(&mut self, yes: bool) {
        self.mapper.retry_unknown(yes);
    }

    pub fn bytes_read(&self) -> u64 {
        self.source.bytes_read()
    }

    /// The next row, `Ok(None)` at the end. An error here is an I/O failure of the input as a whole.
    pub fn next_row(&mut self) -> Result<Option<Row>, ReadError> {
        let item = match self.lookahead.pop_front() {
            Some(i) => i,
            None => match self.source.next_item()? {
                Some(i) => i,
                None => return Ok(None),
            },
        };
        Ok(Some(match item {
            ReadItem::Blank { line } => Row { line, kind: RowKind::Blank, source: RowSource(RowOrigin::Nothing) },
            ReadItem::Footer { line } => {
                Row { line, kind: RowKind::Skipped(FOOTER.into()), source: RowSource(RowOrigin::Nothing) }
            }
            ReadItem::RepeatedHeader { line } => {
                Row { line, kind: RowKind::Skipped(REPEATED_HEADER.into()), source: RowSource(RowOrigin::Nothing) }
            }
            ReadItem::Bad(bad) => Row {
                line: bad.line,
                kind: RowKind::Failed(vec![RowProblem::Read(bad.error)]),
                source: RowSource(RowOrigin::Raw(bad.raw)),
            },
            ReadItem::Record(record) => {
                let kind = match self.mapper.map(&record) {
                    MapOutcome::Mapped { payloads, dropped } => RowKind::Mapped { payloads, dropped },
                    MapOutcome::Skipped(reason) => RowKind::Skipped(reason),
                    MapOutcome::Failed(errors) => RowKind::Failed(errors.into_iter().map(RowProblem::Field).collect()),
                };
                Row { line: record.line, kind, source: RowSource(RowOrigin::Record(record)) }
            }
        }))
    }
}

/// Refuses JSON that is not JSON Lines, which would otherwise fail (or map) line by line: a document
/// pretty-printed over many lines (its first line is a lone `[` or `{`), an array of objects on one line
/// (`jq -c -s`, or an API answer saved by curl: the whole file would be one failed row), or one object that
/// wraps the records in a list (`{"tickets": [{...}, ...]}`), which would map as a single row.
fn not_a_json_document(info: &SourceInfo, items: &VecDeque<ReadItem>) -> Result<(), ReadError> {
    let path = || info.path.clone();
    let first = items.iter().find(|i| !matches!(i, ReadItem::Blank { .. }));
    if let Some(ReadItem::Bad(bad)) = first
        && let source::RawRow::Json(raw) = &bad.raw
    {
        if let opening @ ("[" | "{") = String::from_utf8_lossy(raw).trim() {
            return Err(ReadError::JsonDocument {
                path: path(),
                line: bad.line,
                opening: opening.chars().next().unwrap_or('{'),
            });
        }
        if bad.error == (RowReadError::NotAnObject { found: "array" })
            && let Some(count) = objects_in_array(raw)
        {
            return Err(ReadError::JsonArrayLine { path: path(), line: bad.line, count });
        }
    }
    let mut records = records(items);
    if let (Some(only), None) = (records.next(), records.next())
        && let source::RecordData::Json { object, .. } = &only.data
        && let Some((key, count)) = wrapped_list(object)
    {
        return Err(ReadError::JsonWrapper { path: path(), key: key.to_string(), count });
    }
    Ok(())
}

/// How many objects a JSON array holds, when it holds only objects and at least one; `None` for anything
/// else. Objects are walked, not built: the array may be a whole export.
fn objects_in_array(json: &[u8]) -> Option<usize> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

    /// An object whose entries are read and dropped.
    struct AnObject;

    impl<'de> serde::Deserialize<'de> for AnObject {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Entries;
            impl<'de> Visitor<'de> for Entries {
                type Value = AnObject;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnObject, A::Error> {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(AnObject)
                }
            }
            deserializer.deserialize_map(Entries)
        }
    }

    let objects: Vec<AnObject> = serde_json::from_slice(json).ok()?;
    (!objects.is_empty()).then_some(objects.len())
}

/// The key of the list of records an API page wraps, and its length: the object's only key, or a key APIs
/// name their records by (`{"tickets": [...], "count": 4, "next_page": null}`, Zendesk's), holding a
/// non-empty list of objects.
///
/// An object with an `id` of its own (a Close lead and its `contacts`), or a line of a failures file (it has
/// `_savio_line`), is a record, however it names its lists: a one-record export, or a failures file of one
/// failed row, was refused as an API page.
fn wrapped_list(object: &serde_json::Map<String, serde_json::Value>) -> Option<(&str, usize)> {
    let own_id =
        |(k, v): (&String, &serde_json::Value)| k.eq_ignore_ascii_case("id") && (v.is_string() || v.is_number());
    if object.contains_key("_savio_line") || object.iter().any(own_id) {
        return None;
    }
    const RECORDS: &[&str] = &[
        "tickets",
        "conversations",
        "results",
        "data",
        "items",
        "records",
        "users",
        "contacts",
        "companies",
        "organizations",
        "people",
        "persons",
        "entries",
        "value",
        "feedback",
        "responses",
        "requests",
    ];
    object.iter().find_map(|(key, v)| {
        let serde_json::Value::Array(list) = v else { return None };
        let named = object.len() == 1 || RECORDS.contains(&key.to_ascii_lowercase().as_str());
        (named && !list.is_empty() && list.iter().all(serde_json::Value::is_object))
            .then_some((key.as_str(), list.len()))
    })
}

/// Reads up to `records` more records (and what lies between them) into `lookahead`.
fn read_ahead(source: &mut Source, lookahead: &mut VecDeque<ReadItem>, records: usize) -> Result<(), ReadError> {
    let mut read = 0;
    while read < records {
        let Some(item) = source.next_item()? else { break };
        read += usize::from(matches!(item, ReadItem::Record(_)));
        lookahead.push_back(item);
    }
    Ok(())
}

fn records(items: &VecDeque<ReadItem>) -> impl Iterator<Item = &Record> + Clone {
    items.iter().filter_map(|i| match i {
        ReadItem::Record(r) => Some(r),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::Path;

    use super::*;
    use crate::source::{Format, InputPath, InputSpec, TextEncoding};

    fn open(input: &str, format: Format, mapping: &str) -> Result<Pipeline, PrepareError> {
        let spec =
            InputSpec { path: InputPath::Stdin, format: Some(format), delimiter: None, encoding: TextEncoding::UTF8 };
        let source = Source::from_reader(&spec, Box::new(io::Cursor::new(input.as_bytes().to_vec())))?;
        Pipeline::from_source(source, &Mapping::parse(mapping, Path::new("m.toml")).expect("a mapping"))
    }

    fn kinds(mut pipeline: Pipeline) -> Vec<(u64, RowKind)> {
        std::iter::from_fn(|| pipeline.next_row().expect("readable")).map(|r| (r.line, r.kind)).collect()
    }

    const FEEDBACK: &str = "[feedback]\nproblem = \"text\"\n";

    #[test]
    fn a_json_array_of_objects_on_the_first_line_is_refused_with_the_jq_command() {
        let input = "\n[{\"text\": \"Need SSO\"}, {\"text\": \"Dark mode\"}]\n";
        let Err(PrepareError::Read(err)) = open(input, Format::Jsonl, FEEDBACK) else { panic!("refused") };
        assert!(matches!(err, ReadError::JsonArrayLine { line: 2, count: 2, .. }), "{err}");
        assert!(err.to_string().contains("jq -c '.[]' export.json > export.jsonl"), "{err}");
    }

    #[test]
    fn other_arrays_stay_row_failures() {
        // Scalars on the first line, an empty array, or an array of objects further down: one failed row each.
        for input in
            ["[1, 2]\n{\"text\": \"a\"}\n", "[]\n{\"text\": \"a\"}\n", "{\"text\": \"a\"}\n[{\"text\": \"b\"}]\n"]
        {
            let rows = kinds(open(input, Format::Jsonl, FEEDBACK).expect("opened"));
            assert_eq!(rows.len(), 2, "{input:?}");
            assert!(
                rows.iter().any(|(_, k)| matches!(k, RowKind::Failed(p) if p[0].to_string().contains("jq -c '.[]'"))),
                "{input:?}: {rows:?}"
            );
        }
    }

    #[test]
    fn an_object_with_its_own_id_or_a_failures_file_line_is_a_record_whatever_its_lists_are_named() {
        let page = r#"{"results": [{"text": "a"}], "paging": {"next": null}}"#;
        let Err(PrepareError::Read(err)) = open(page, Format::Jsonl, FEEDBACK) else { panic!("refused") };
        assert!(matches!(err, ReadError::JsonWrapper { .. }), "{err}");
        for record in [
            r#"{"id": 7, "text": "a", "results": [{"text": "b"}]}"#,
            r#"{"text": "a", "data": [{"x": 1}], "_savio_line": 4, "_savio_error": "x"}"#,
        ] {
            let rows = kinds(open(record, Format::Jsonl, FEEDBACK).expect("a record"));
            assert!(matches!(rows[..], [(1, RowKind::Mapped { .. })]), "{record}: {rows:?}");
        }
    }

    #[test]
    fn objects_in_array_counts_only_arrays_of_objects() {
        assert_eq!(objects_in_array(br#"[{"a": [1, {"b": 2}]}, {}]"#), Some(2));
        assert_eq!(objects_in_array(b"[]"), None);
        assert_eq!(objects_in_array(br#"[{"a": 1}, 2]"#), None);
        assert_eq!(objects_in_array(br#"{"a": 1}"#), None);
        assert_eq!(objects_in_array(br#"[{"a": 1}"#), None);
    }

    #[test]
    fn a_repeated_header_is_skipped_with_why_never_mapped() {
        let mapping = "[company]\ninternal_id = \"Record ID\"\nname = \"Company name\"\n";
        let input = "Record ID,Company name\n1,Acme\nRecord ID,Company name\n2,Globex\n";
        let rows = kinds(open(input, Format::Csv, mapping).expect("opened"));
        assert_eq!(rows[1], (3, RowKind::Skipped(REPEATED_HEADER.into())));
        assert!(matches!(&rows[2], (4, RowKind::Mapped { payloads, .. }) if payloads.len() == 1));
        assert_eq!(rows.len(), 3);
    }
}
