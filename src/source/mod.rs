//! The reader stage: streams records out of a CSV or JSONL export.
//!
//! Every record keeps the line it starts on and its original fields, so a row that fails later can be
//! reported by line and written back, unchanged, to the failures file. A row the reader cannot make sense of
//! (invalid UTF-8, wrong field count, broken JSON) is not an error of the run: it comes out as a [`BadRow`]
//! and flows on to the reports like any other failed row. Only what makes the whole input unusable (cannot
//! open, no header, I/O error) is a [`ReadError`].
//!
//! Memory does not grow with the input: records are produced one at a time from a buffered stream.

mod csv;
pub mod decode;
mod fields;
mod jsonl;
pub mod sniff;

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use decode::TextEncoding;
pub use fields::CsvFields;

/// The input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" | "tsv" | "txt" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" | "jsonlines" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CSV field delimiter: one ASCII byte.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Delimiter(pub u8);

impl Delimiter {
    /// Parses `,` `;` `|` `tab` `\t` or any single ASCII punctuation character.
    pub fn parse(s: &str) -> Option<Delimiter> {
        match s {
            "tab" | "TAB" | "\\t" | "\t" => Some(Delimiter(b'\t')),
            "comma" => Some(Delimiter(b',')),
            "semicolon" => Some(Delimiter(b';')),
            "pipe" => Some(Delimiter(b'|')),
            _ if s.len() == 1 && s.as_bytes()[0].is_ascii() && s != "\"" && s != "\n" && s != "\r" => {
                Some(Delimiter(s.as_bytes()[0]))
            }
            _ => None,
        }
    }
}

impl fmt::Debug for Delimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Delimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b'\t' => f.write_str("TAB"),
            b => write!(f, "'{}'", b as char),
        }
    }
}

/// Where the input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPath {
    Stdin,
    File(PathBuf),
}

impl InputPath {
    pub fn from_arg(arg: &str) -> InputPath {
        if arg == "-" { InputPath::Stdin } else { InputPath::File(PathBuf::from(arg)) }
    }

    /// The file's format by its extension (after `.gz`), if it tells.
    pub fn format_from_extension(&self) -> Option<Format> {
        let InputPath::File(path) = self else {
            return None;
        };
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = Path::new(name).extension()?.to_str()?;
        Format::parse(ext)
    }

    fn is_tsv(&self) -> bool {
        match self {
            InputPath::File(p) => p.to_string_lossy().to_ascii_lowercase().trim_end_matches(".gz").ends_with(".tsv"),
            InputPath::Stdin => false,
        }
    }
}

impl fmt::Display for InputPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputPath::Stdin => f.write_str("<stdin>"),
            InputPath::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What the user asked for; `None` means "detect".
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub path: InputPath,
    pub format: Option<Format>,
    pub delimiter: Option<Delimiter>,
    pub encoding: TextEncoding,
}

/// How the lines of an input end, so that a file written for it (the failures file) ends its lines the same
/// way: Excel for Mac's "CSV (Macintosh)" ends them with a lone `\r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    Lf,
    CrLf,
    Cr,
}

impl LineEnd {
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            LineEnd::Lf => b"\n",
            LineEnd::CrLf => b"\r\n",
            LineEnd::Cr => b"\r",
        }
    }
}

/// The column names of a CSV input, in order, and the header line as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Trimmed names, as the mapping refers to them.
    pub names: Vec<String>,
    /// The header's fields as parsed (quotes removed).
    pub raw: ::csv::ByteRecord,
    /// The header line exactly as read (quotes included, without its line ending), for the failures file.
    pub line: Vec<u8>,
    /// How the header line ends: the file's line ending, which the failures file repeats.
    pub line_end: LineEnd,
    /// Excel's `sep=X` line above the header, exactly as read (without its line ending), if the file has one:
    /// the failures file keeps it, so Excel still splits that file's columns.
    pub sep_line: Option<Vec<u8>>,
}

impl Header {
    /// A header built from names alone (tests, benchmarks): as if read from an unquoted comma-separated line.
    pub fn from_names(names: &[&str]) -> Header {
        Header {
            names: names.iter().map(|s| s.trim().to_string()).collect(),
            raw: ::csv::ByteRecord::from(names.to_vec()),
            line: names.join(",").into_bytes(),
            line_end: LineEnd::Lf,
            sep_line: None,
        }
    }

    /// The column named `name`: exactly, or else the one column whose name differs only in letter case
    /// (Salesforce's Data Loader writes `ACCOUNTID` where the API name is `AccountId`).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return Some(i);
        }
        let mut folded = self.names.iter().enumerate().filter(|(_, n)| n.to_lowercase() == name.to_lowercase());
        match (folded.next(), folded.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    }

    /// Whether every field of the header line is written in double quotes (HubSpot, Salesforce), so files
    /// written for this input quote every field too.
    pub fn all_quoted(&self, delimiter: u8) -> bool {
        csv::all_fields_quoted(&self.line, delimiter)
    }
}

/// What was resolved when the input was opened.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub path: InputPath,
    pub format: Format,
    /// CSV only.
    pub delimiter: Option<Delimiter>,
    /// Whether the delimiter was guessed from the sample (not given, nor read from a `sep=` line: see
    /// [`SourceInfo::delimiter_origin`]).
    pub delimiter_detected: bool,
    pub encoding: TextEncoding,
    /// CSV only.
    pub header: Option<Arc<Header>>,
    /// Whether lines end in CRLF (seen on the first line), so files written for this input match it. A CSV
    /// header also tells a lone CR apart ([`Header::line_end`]).
    pub crlf: bool,
}

/// Where a CSV input's delimiter came from, for what the summary says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DelimiterOrigin {
    /// `--delimiter`, the mapping's `[input] delimiter`, or a `.tsv` name.
    Given,
    /// The file's own `sep=X` first line.
    SepLine,
    /// Guessed from the first 64 KiB.
    Detected,
}

impl SourceInfo {
    /// Where the delimiter came from (`None` for JSONL). A flag that says what the `sep=` line says counts
    /// as the line: both name the same delimiter.
    pub fn delimiter_origin(&self) -> Option<DelimiterOrigin> {
        let delimiter = self.delimiter?;
        let sep_line = self.header.as_ref().and_then(|h| h.sep_line.as_deref());
        Some(if self.delimiter_detected {
            DelimiterOrigin::Detected
        } else if sep_line.and_then(<[u8]>::last) == Some(&delimiter.0) {
            DelimiterOrigin::SepLine
        } else {
            DelimiterOrigin::Given
        })
    }
}

/// One input row that the reader understood.
#[derive(Debug, Clone)]
pub struct Record {
    /// The line where the record starts (1-based; the CSV header is line 1).
    pub line: u64,
    pub data: RecordData,
}

#[derive(Debug, Clone)]
pub enum RecordData {
    Csv {
        /// The fields, checked to be UTF-8.
        fields: CsvFields,
        /// The record exactly as read (quotes included, without its line ending), for the failures file.
        raw: Vec<u8>,
    },
    Json {
        object: serde_json::Map<String, serde_json::Value>,
        /// The line exactly as read (without its line ending), for the failures file. For a line of a
        /// failures file that wraps an unreadable line (`{"_savio_raw": "..."}`), the wrapper line; `object`
        /// is then what the wrapped text parses to.
        raw: String,
    },
}

impl Record {
    /// The row as read, to write to the failures file.
    pub fn raw(&self) -> RawRow {
        match &self.data {
            RecordData::Csv { fields, raw } => RawRow::Csv { bytes: raw.clone(), fields: fields.to_byte_record() },
            RecordData::Json { raw, .. } => RawRow::Json(raw.as_bytes().to_vec()),
        }
    }
}

/// An input row as it was read, byte for byte (as decoded to UTF-8 for non-UTF-8 encodings).
#[derive(Debug, Clone, PartialEq)]
pub enum RawRow {
    Csv {
        /// The record's exact bytes: quotes as written, inner line breaks included, without its line ending.
        bytes: Vec<u8>,
        /// The same record split into fields (quotes removed), for files that rewrite fields.
        fields: ::csv::ByteRecord,
    },
    Json(Vec<u8>),
}

/// A row the reader could not turn into a record. It is a row failure, not a failure of the run.
#[derive(Debug, Clone)]
pub struct BadRow {
    pub line: u64,
    pub raw: RawRow,
    pub error: RowReadError,
}

/// Why a row could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowReadError {
    #[error(
        "invalid UTF-8 in column '{column}' (byte 0x{byte:02X} at offset {offset}); the file is probably not UTF-8: \
         pass --encoding (e.g. --encoding windows-1252 for Excel on Windows, or latin1, utf-16)"
    )]
    InvalidUtf8 { column: String, byte: u8, offset: usize },
    #[error("row has {found} fields but the header has {expected} (a stray delimiter or an unclosed quote?)")]
    FieldCount { expected: usize, found: usize },
    #[error("invalid UTF-8 at byte {offset} of the line; pass --encoding if the file is not UTF-8")]
    JsonNotUtf8 { offset: usize },
    #[error("not valid JSON at column {column}: {message}{}", if *starts_array { JSON_ARRAY_HINT } else { "" })]
    InvalidJson { column: usize, message: String, starts_array: bool },
    #[error("line is a JSON {found}, expected an object ({{...}}){}", array_hint(found))]
    NotAnObject { found: &'static str },
}

const JSON_ARRAY_HINT: &str = "; if the file is one JSON array rather than JSON Lines, convert it first: \
                               jq -c '.[]' export.json > export.jsonl";

fn array_hint(found: &str) -> &'static str {
    if found == "array" { JSON_ARRAY_HINT } else { "" }
}

impl RowReadError {
    /// A short, value-free description used to group failures in summaries.
    pub fn kind(&self) -> String {
        match self {
            RowReadError::InvalidUtf8 { .. } | RowReadError::JsonNotUtf8 { .. } => {
                "invalid UTF-8 (wrong --encoding?)".into()
            }
            RowReadError::FieldCount { expected, .. } => {
                format!("wrong number of fields (header has {expected})")
            }
            RowReadError::InvalidJson { .. } => "not valid JSON".into(),
            RowReadError::NotAnObject { found } => format!("JSON {found} instead of an object"),
        }
    }
}

/// What the reader yields for each input row.
#[derive(Debug)]
pub enum ReadItem {
    Record(Record),
    Bad(BadRow),
    /// A row with no content (a blank JSONL line, or a CSV row whose fields are all empty, such as the
    /// `;;;;` rows Excel leaves at the end). Counted, never mapped.
    Blank {
        line: u64,
    },
    /// A line of the footer a CRM writes after the data: Salesforce's report exports end with a copyright
    /// line, "Confidential Information - Do Not Distribute", who generated the report and when, and the
    /// organisation's name, each a one-cell row, and may have a grand-totals row before them. Counted as
    /// skipped, never mapped.
    Footer {
        line: u64,
    },
    /// A CSV row that is the header again (its fields are the header's names): two exports joined with `cat`.
    /// Counted as skipped, never mapped.
    RepeatedHeader {
        line: u64,
    },
}

/// Failures that make the input unusable as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open input '{path}'")]
    Open {
        path: InputPath,
        #[source]
        source: io::Error,
    },
    #[error("cannot read '{path}' near line {line}")]
    Io {
        path: InputPath,
        line: u64,
        #[source]
        source: io::Error,
    },
    #[error("'{path}' is empty: a CSV input needs a header row")]
    NoHeader { path: InputPath },
    #[error(
        "'{path}': header column {column} has no name; every column needs a name (remove the empty column or name it)"
    )]
    EmptyHeaderName { path: InputPath, column: usize },
    #[error("'{path}': header names column {first} and column {second} both '{name}'; rename one so each is unique")]
    DuplicateHeader { path: InputPath, name: String, first: usize, second: usize },
    #[error("'{path}': the header is not valid UTF-8; pass --encoding (e.g. windows-1252, latin1, utf-16)")]
    HeaderNotUtf8 { path: InputPath },
    #[error(
        "'{path}' is one JSON document written over several lines (line {line} is '{opening}'), not JSON Lines \
         (one object per line); convert it first: jq -c '.[]' export.json > export.jsonl for an array of \
         objects, jq -c '.tickets[]' ... when the objects are in a list under a key"
    )]
    JsonDocument { path: InputPath, line: u64, opening: char },
    #[error(
        "'{path}' holds one object whose '{key}' is a list of {count} objects (an API page): the records are \
         inside it; convert it first: jq -c '.{key}[]' export.json > export.jsonl"
    )]
    JsonWrapper { path: InputPath, key: String, count: usize },
    #[error(
        "'{path}': line {line} is a JSON array of {count} objects (as curl or jq -s write it), not JSON Lines \
         (one object per line); convert it first: jq -c '.[]' export.json > export.jsonl"
    )]
    JsonArrayLine { path: InputPath, line: u64, count: usize },
    #[error("'{path}' is {what}, not CSV or JSON Lines: {fix}")]
    NotText { path: InputPath, what: &'static str, fix: &'static str },
}

/// An open input: call [`Source::next`] until it returns `None`.
pub struct Source {
    info: SourceInfo,
    inner: Inner,
    /// What looks wrong with how the input is read, without stopping it (shown with the mapping's warnings).
    warnings: Vec<String>,
}

enum Inner {
    Csv(csv::CsvSource),
    Jsonl(jsonl::JsonlSource),
}

impl Source {
    /// Opens the input: detects gzip, byte-order mark, format and (CSV) delimiter, and reads the header.
    pub fn open(spec: &InputSpec) -> Result<Source, ReadError> {
        let raw: Box<dyn Read + Send> = match &spec.path {
            InputPath::Stdin => Box::new(io::stdin()),
            InputPath::File(p) => {
                Box::new(std::fs::File::open(p).map_err(|source| ReadError::Open { path: spec.path.clone(), source })?)
            }
        };
        Source::from_reader(spec, raw)
    }

    /// Like [`Source::open`], over any reader (tests, benchmarks).
    pub fn from_reader(spec: &InputSpec, raw: Box<dyn Read + Send>) -> Result<Source, ReadError> {
        let io_err = |source| ReadError::Io { path: spec.path.clone(), line: 1, source };
        let unzipped = decode::maybe_gunzip(raw).map_err(io_err)?;
        let (text, encoding) = decode::decode(unzipped, spec.encoding).map_err(io_err)?;
        let (sample, complete, replay) = sample(text, 64 * 1024).map_err(io_err)?;
        if let Some((what, fix)) = sniff::not_text(&sample, encoding.is_utf8()) {
            return Err(ReadError::NotText { path: spec.path.clone(), what, fix });
        }
        let mut warnings = Vec::new();
        let decoded = match std::str::from_utf8(&sample) {
            Ok(t) => t,
            Err(e) => std::str::from_utf8(&sample[..e.valid_up_to()]).unwrap_or_default(),
        };
        if let Some((c, garbled)) = encoding.misread_utf8(decoded) {
            let name = encoding.name();
            warnings.push(format!(
                "the input looks like UTF-8 (it holds '{c}' written as UTF-8), but it is read as {name}, which turns \
                 '{c}' into '{garbled}': if the file is UTF-8, remove the {name} setting (--encoding, or encoding \
                 under [input])"
            ));
        }
        let shape = sniff::sniff_shape(&sample);
        // JSON of any shape is read as JSON Lines, whose reader then says what a JSON document needs.
        let format = spec.format.or_else(|| spec.path.format_from_extension()).unwrap_or(match shape {
            sniff::Shape::JsonObject | sniff::Shape::JsonArray => Format::Jsonl,
            sniff::Shape::Other => Format::Csv,
        });
        let mut info = SourceInfo {
            path: spec.path.clone(),
            format,
            delimiter: None,
            delimiter_detected: false,
            encoding,
            header: None,
            crlf: memchr::memchr(b'\n', &sample).is_some_and(|i| i > 0 && sample[i - 1] == b'\r'),
        };
        let inner = match format {
            Format::Csv => {
                // Excel's `sep=;` line says the delimiter (a flag still wins) and is skipped; the header is
                // then line 2.
                let sep_line = sniff::excel_sep_line(&sample);
                let delimiter = match (spec.delimiter, &sep_line) {
                    (Some(d), _) => d,
                    (None, Some(sep)) => Delimiter(sep.delimiter),
                    (None, None) if spec.path.is_tsv() => Delimiter(b'\t'),
                    (None, None) => {
                        info.delimiter_detected = true;
                        Delimiter(sniff::sniff_delimiter(&sample, complete).unwrap_or(b','))
                    }
                };
                info.delimiter = Some(delimiter);
                let mut replay = replay;
                if let Some(sep) = &sep_line {
                    io::copy(&mut (&mut replay).take(sep.len as u64), &mut io::sink()).map_err(io_err)?;
                }
                let sep_line = sep_line.map(|sep| sep.line.to_vec());
                let csv = csv::CsvSource::new(replay, delimiter, spec.path.clone(), sep_line)?;
                let header = csv.header();
                info.crlf = header.line_end == LineEnd::CrLf;
                info.header = Some(header);
                Inner::Csv(csv)
            }
            Format::Jsonl => Inner::Jsonl(jsonl::JsonlSource::new(replay, spec.path.clone())),
        };
        Ok(Source { info, inner, warnings })
    }

    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// Warnings about how the input is read (an encoding that garbles it).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The next row, `Ok(None)` at the end of the input.
    pub fn next_item(&mut self) -> Result<Option<ReadItem>, ReadError> {
        match &mut self.inner {
            Inner::Csv(c) => c.next_item(),
            Inner::Jsonl(j) => j.next_item(),
        }
    }

    /// Bytes consumed so far (of the decoded stream), for progress reporting.
    pub fn bytes_read(&self) -> u64 {
        match &self.inner {
            Inner::Csv(c) => c.bytes_read(),
            Inner::Jsonl(j) => j.bytes_read(),
        }
    }
}

/// Reads up to `n` bytes for sniffing, and returns them with a reader that replays them.
fn sample(mut text: Box<dyn Read + Send>, n: usize) -> io::Result<(Vec<u8>, bool, Box<dyn Read + Send>)> {
    let mut buf = Vec::with_capacity(n);
    (&mut text).take(n as u64).read_to_end(&mut buf)?;
    let complete = buf.len() < n;
    let replay: Box<dyn Read + Send> = Box::new(io::Cursor::new(buf.clone()).chain(text));
    Ok((buf, complete, replay))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn open_bytes(bytes: &[u8], format: Option<Format>) -> Result<Source, ReadError> {
        let spec = InputSpec { path: InputPath::Stdin, format, delimiter: None, encoding: TextEncoding::UTF8 };
        Source::from_reader(&spec, Box::new(io::Cursor::new(bytes.to_vec())))
    }

    #[test]
    fn format_from_extension_sees_through_gz() {
        assert_eq!(InputPath::from_arg("a/b.CSV").format_from_extension(), Some(Format::Csv));
        assert_eq!(InputPath::from_arg("x.jsonl.gz").format_from_extension(), Some(Format::Jsonl));
        assert_eq!(InputPath::from_arg("x.ndjson").format_from_extension(), Some(Format::Jsonl));
        assert_eq!(InputPath::from_arg("x.tsv.gz").format_from_extension(), Some(Format::Csv));
        assert_eq!(InputPath::from_arg("x").format_from_extension(), None);
        assert_eq!(InputPath::from_arg("-"), InputPath::Stdin);
    }

    #[test]
    fn delimiter_parse() {
        assert_eq!(Delimiter::parse("tab"), Some(Delimiter(b'\t')));
        assert_eq!(Delimiter::parse(";"), Some(Delimiter(b';')));
        assert_eq!(Delimiter::parse("\""), None);
        assert_eq!(Delimiter::parse(",,"), None);
        assert_eq!(Delimiter::parse("é"), None);
    }

    #[test]
    fn stdin_format_is_sniffed() {
        let s = open_bytes(b"{\"a\":1}\n", None).unwrap();
        assert_eq!(s.info().format, Format::Jsonl);
        let s = open_bytes(b"a;b\n1;2\n", None).unwrap();
        assert_eq!(s.info().format, Format::Csv);
        assert_eq!(s.info().delimiter, Some(Delimiter(b';')));
        assert!(s.info().delimiter_detected);
        assert_eq!(s.info().delimiter_origin(), Some(DelimiterOrigin::Detected));
        let s = open_bytes(b"{\"a\":1}\n", None).unwrap();
        assert_eq!(s.info().delimiter_origin(), None);
    }

    #[test]
    fn excels_sep_line_sets_the_delimiter_and_is_not_the_header() {
        for input in [&b"sep=;\r\nId;Name\r\n1;Ann, Jr.\r\n"[..], &b"\xEF\xBB\xBFsep=;\nId;Name\n1;Ann, Jr.\n"[..]] {
            let mut s = open_bytes(input, None).unwrap();
            assert_eq!(s.info().delimiter, Some(Delimiter(b';')));
            let header = s.info().header.clone().unwrap();
            assert_eq!(header.names, ["Id", "Name"]);
            let Some(ReadItem::Record(r)) = s.next_item().unwrap() else { panic!("a record") };
            // Lines count from the top of the file: the sep line is 1, the header 2.
            assert_eq!(r.line, 3);
            let RecordData::Csv { fields, .. } = &r.data else { panic!("a CSV record") };
            assert_eq!(fields.get(1), Some("Ann, Jr."));
        }
        // A delimiter given by flag wins; the line is still skipped.
        let spec = InputSpec {
            path: InputPath::Stdin,
            format: None,
            delimiter: Some(Delimiter(b',')),
            encoding: TextEncoding::UTF8,
        };
        let s = Source::from_reader(&spec, Box::new(io::Cursor::new(b"sep=;\nId,Name\n".to_vec()))).unwrap();
        assert_eq!(s.info().header.clone().unwrap().names, ["Id", "Name"]);
        assert_eq!(s.info().delimiter_origin(), Some(DelimiterOrigin::Given));
    }

    #[test]
    fn a_sep_line_is_kept_for_the_failures_file_and_not_called_detected() {
        for (input, end) in [
            (&b"sep=;\r\nId;Name\r\n1;Ann\r\n"[..], LineEnd::CrLf),
            (b"\xEF\xBB\xBFSEP=;\nId;Name\n1;Ann\n", LineEnd::Lf),
            (b"sep=;\rId;Name\r1;Ann\r", LineEnd::Cr),
        ] {
            let mut s = open_bytes(input, None).unwrap();
            let header = s.info().header.clone().unwrap();
            assert_eq!(header.names, ["Id", "Name"]);
            assert_eq!(header.sep_line.as_deref().map(<[u8]>::to_ascii_lowercase), Some(b"sep=;".to_vec()));
            assert_eq!(header.line_end, end);
            assert!(!s.info().delimiter_detected, "the file says it: nothing was guessed");
            assert_eq!(s.info().delimiter_origin(), Some(DelimiterOrigin::SepLine));
            let Some(ReadItem::Record(r)) = s.next_item().unwrap() else { panic!("a record") };
            assert_eq!(r.line, 3);
        }
        let s = open_bytes(b"Id;Name\n1;Ann\n", None).unwrap();
        assert_eq!(s.info().header.clone().unwrap().sep_line, None);
    }

    #[test]
    fn a_json_array_document_fails_its_rows_with_a_hint() {
        for doc in [&b"[\n{\"a\":1},\n]\n"[..], &b"[{\"a\":1}]"[..]] {
            let mut s = open_bytes(doc, Some(Format::Jsonl)).unwrap();
            let Some(ReadItem::Bad(first)) = s.next_item().unwrap() else { panic!() };
            assert!(first.error.to_string().contains("jq -c"), "{}", first.error);
        }
    }
}
