//! The failures file: every failed input row exactly as it was read, plus `_savio_line` and `_savio_error`
//! (and, from `sync`, `_savio_sent`: the entities of the row that run did send, so that a re-run of the file
//! does not create its feedback twice), in the input's own format, quoting, delimiter, line ending (a lone CR too) and encoding, under the input's
//! own `sep=` line if it has one, so it can be fixed by hand, opened by Excel as the input was, and fed
//! straight back in with the same mapping (which ignores the two extra columns). A path ending in `.gz` is
//! written gzip-compressed.
//!
//! A CSV row is written as its exact bytes (HubSpot and Salesforce quote every field; a re-quoted row would
//! not be the row that was read) followed by the two values, quoted when the header's fields are all quoted.
//! A failures file fed back in already has the two columns: its rows are rewritten field by field in the
//! header's quote style, with the two values replaced instead of added again.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use csv::ByteRecord;

use super::output::OutputFile;
use crate::source::{Format, LineEnd, RawRow, SourceInfo, TextEncoding};

pub const LINE_COLUMN: &str = "_savio_line";
pub const ERROR_COLUMN: &str = "_savio_error";
pub use crate::mapping::SENT_COLUMN;

#[derive(Debug, thiserror::Error)]
#[error("cannot write failures file '{}'", path.display())]
pub struct FailuresError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Writes failed rows as they come; flushed on [`FailuresWriter::flush`] and [`FailuresWriter::finish`].
pub struct FailuresWriter {
    path: PathBuf,
    eol: &'static [u8],
    kind: Kind,
    rows: u64,
}

enum Kind {
    /// Each row's exact bytes, then the two values (three with `_savio_sent`).
    Csv { out: EncodeWriter<OutputFile>, delimiter: u8, quote_all: bool, with_sent: bool },
    /// The input already has `_savio_line` / `_savio_error` (a failures file fed back in): fields are
    /// rewritten in the header's quote style, with those two replaced (and `_savio_sent`, when written).
    CsvRewrite {
        writer: Box<csv::Writer<EncodeWriter<OutputFile>>>,
        line_at: usize,
        error_at: usize,
        sent_at: Option<usize>,
        width: usize,
        /// How many of the input header's last columns are the two (three) columns, when all of them are
        /// there: a row with more or fewer fields than the header has its own values in its last fields.
        tail: Option<usize>,
        /// The input header's width.
        header_width: usize,
    },
    /// Each line in the input's encoding (its byte-order mark is the file's).
    Jsonl(EncodeWriter<OutputFile>),
}

impl FailuresWriter {
    /// Creates the file (gzip-compressed when the name ends in `.gz`) and writes the header (CSV).
    /// `with_sent`: the rows say which of their entities were sent (`sync`); without it (`validate`, which
    /// sends nothing), a `_savio_sent` column of the input is kept as it is.
    pub fn create(path: &Path, info: &SourceInfo, with_sent: bool) -> Result<FailuresWriter, FailuresError> {
        let err = |source| FailuresError { path: path.to_path_buf(), source };
        let mut sink = OutputFile::create(path).map_err(err)?;
        sink.write_all(info.encoding.bom_bytes()).map_err(err)?;
        // A JSONL reader splits lines at `\n` only: a lone CR is no line end there.
        let mut eol: &'static [u8] = if info.crlf { b"\r\n" } else { b"\n" };
        let kind = match (info.format, &info.header) {
            (Format::Csv, Some(header)) => {
                eol = header.line_end.as_bytes();
                let mut out = EncodeWriter::new(sink, info.encoding);
                let delimiter = info.delimiter.map_or(b',', |d| d.0);
                let quote_all = header.all_quoted(delimiter);
                let find = |name: &str| header.names.iter().position(|n| n == name);
                // Excel reads the delimiter from the input's `sep=` line, so the file keeps it above the header.
                let mut head = match &header.sep_line {
                    Some(sep) => [sep.as_slice(), eol].concat(),
                    None => Vec::new(),
                };
                head.extend_from_slice(&header.line);
                // Any of the three makes it a failures file (one whose other columns were deleted by hand too).
                let (line_at, error_at, sent_at) = match (find(LINE_COLUMN), find(ERROR_COLUMN), find(SENT_COLUMN)) {
                    (None, None, None) => (None, None, None),
                    (line_at, error_at, _) => {
                        let mut width = header.names.len();
                        let mut at = |found: Option<usize>, name: &str| {
                            found.unwrap_or_else(|| {
                                head.push(delimiter);
                                push_field(&mut head, name.as_bytes(), delimiter, quote_all);
                                width += 1;
                                width - 1
                            })
                        };
                        let (line_at, error_at) = (at(line_at, LINE_COLUMN), at(error_at, ERROR_COLUMN));
                        let sent_at = with_sent.then(|| at(find(SENT_COLUMN), SENT_COLUMN));
                        (Some(line_at), Some(error_at), sent_at)
                    }
                };
                if line_at.is_none() {
                    let names: &[&str] = if with_sent {
                        &[LINE_COLUMN, ERROR_COLUMN, SENT_COLUMN]
                    } else {
                        &[LINE_COLUMN, ERROR_COLUMN]
                    };
                    for name in names {
                        head.push(delimiter);
                        push_field(&mut head, name.as_bytes(), delimiter, quote_all);
                    }
                }
                head.extend_from_slice(eol);
                out.write_all(&head).map_err(err)?;
                match (line_at, error_at) {
                    (Some(line_at), Some(error_at)) => {
                        let terminator = match header.line_end {
                            LineEnd::CrLf => csv::Terminator::CRLF,
                            LineEnd::Lf => csv::Terminator::Any(b'\n'),
                            LineEnd::Cr => csv::Terminator::Any(b'\r'),
                        };
                        let writer = csv::WriterBuilder::new()
                            .delimiter(delimiter)
                            .terminator(terminator)
                            .quote_style(if quote_all { csv::QuoteStyle::Always } else { csv::QuoteStyle::Necessary })
                            .flexible(true)
                            .from_writer(out);
                        let width =
                            header.names.len().max(line_at + 1).max(error_at + 1).max(sent_at.map_or(0, |s| s + 1));
                        let header_width = header.names.len();
                        let ours = |n: &String| [LINE_COLUMN, ERROR_COLUMN, SENT_COLUMN].contains(&n.as_str());
                        let tail = header.names.iter().rev().take_while(|n| ours(n)).count();
                        let tail = (tail == header.names.iter().filter(|n| ours(n)).count()).then_some(tail);
                        Kind::CsvRewrite {
                            writer: Box::new(writer),
                            line_at,
                            error_at,
                            sent_at,
                            width,
                            tail,
                            header_width,
                        }
                    }
                    _ => Kind::Csv { out, delimiter, quote_all, with_sent },
                }
            }
            _ => Kind::Jsonl(EncodeWriter::new(sink, info.encoding)),
        };
        Ok(FailuresWriter { path: path.to_path_buf(), eol, kind, rows: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends one failed row; `sent` is its `_savio_sent` cell (ignored unless the file was created with
    /// it).
    pub fn write(&mut self, line: u64, raw: &RawRow, reason: &str, sent: &str) -> Result<(), FailuresError> {
        let path = self.path.clone();
        let err = move |source| FailuresError { path, source };
        let line_text = line.to_string();
        match (&mut self.kind, raw) {
            (Kind::Csv { out, delimiter, quote_all, with_sent }, RawRow::Csv { bytes, .. }) => {
                let mut row = Vec::with_capacity(bytes.len() + reason.len() + 32);
                row.extend_from_slice(bytes);
                let values = [line_text.as_bytes(), reason.as_bytes(), sent.as_bytes()];
                for value in &values[..if *with_sent { 3 } else { 2 }] {
                    row.push(*delimiter);
                    push_field(&mut row, value, *delimiter, *quote_all);
                }
                row.extend_from_slice(self.eol);
                out.write_all(&row).map_err(err)?;
            }
            (
                Kind::CsvRewrite { writer, line_at, error_at, sent_at, width, tail, header_width },
                RawRow::Csv { fields, .. },
            ) => {
                let mut out = ByteRecord::with_capacity(fields.as_slice().len() + reason.len() + 16, *width);
                // A row with a stray delimiter, or a field too few, that this file's columns were appended to:
                // its own values are all but its last fields, and stay as they are (else a short row would take
                // the old line number as a value, and a long one lose a field).
                let ragged = tail.filter(|&t| fields.len() != *header_width && fields.len() >= t);
                if let Some(t) = ragged {
                    for field in fields.iter().take(fields.len() - t) {
                        out.push_field(field);
                    }
                }
                let from = ragged.map_or(0, |t| *header_width - t);
                let to = ragged.map_or((*width).max(fields.len()), |_| *width);
                // The row's own value in column `i` (a ragged row's own `_savio_sent` is among its last fields).
                let own = |i: usize| {
                    let at = match ragged {
                        Some(t) => (i < *header_width).then(|| i - from + fields.len() - t),
                        None => Some(i),
                    };
                    at.and_then(|at| fields.get(at)).unwrap_or(b"")
                };
                for i in from..to {
                    if i == *line_at {
                        out.push_field(line_text.as_bytes());
                    } else if i == *error_at {
                        out.push_field(reason.as_bytes());
                    } else if Some(i) == *sent_at && !sent.is_empty() {
                        out.push_field(sent.as_bytes());
                    } else {
                        // Nothing sent (a row that now fails before sending anything): what the run that wrote
                        // the file sent still is, and must not be sent again.
                        out.push_field(own(i));
                    }
                }
                writer.write_byte_record(&out).map_err(|e| err(e.into()))?;
            }
            (Kind::Jsonl(w), RawRow::Json(bytes)) => {
                let text = annotate_json_line(bytes, line, reason, sent);
                w.write_all(&text).and_then(|()| w.write_all(self.eol)).map_err(err)?;
            }
            // A row's raw form always matches the input format; nothing else reaches here.
            _ => {}
        }
        self.rows += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), FailuresError> {
        let r = match &mut self.kind {
            Kind::Csv { out, .. } => out.flush(),
            Kind::CsvRewrite { writer, .. } => writer.flush(),
            Kind::Jsonl(w) => w.flush(),
        };
        r.map_err(|source| FailuresError { path: self.path.clone(), source })
    }

    /// Flushes, ends the gzip stream if any, and syncs the file to disk.
    pub fn finish(mut self) -> Result<(), FailuresError> {
        self.flush()?;
        let path = self.path.clone();
        let sink = match self.kind {
            Kind::Csv { out, .. } => Ok(out.inner),
            Kind::CsvRewrite { writer, .. } => writer.into_inner().map_err(|e| e.into_error()).map(|w| w.inner),
            Kind::Jsonl(w) => Ok(w.inner),
        };
        sink.and_then(OutputFile::finish).map_err(|source| FailuresError { path, source })
    }
}

/// Appends a CSV field, in quotes when `quote_all` or when it holds a delimiter, a quote or a line break
/// (inner quotes doubled).
fn push_field(out: &mut Vec<u8>, value: &[u8], delimiter: u8, quote_all: bool) {
    if quote_all || value.iter().any(|&b| b == delimiter || matches!(b, b'"' | b'\r' | b'\n')) {
        out.push(b'"');
        for &b in value {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(value);
    }
}

/// Adds `_savio_line` and `_savio_error` (and `_savio_sent` when `sent` is not empty) to a JSONL line,
/// keeping the original bytes when it is an object (invalid UTF-8 too: read with the right `--encoding`, it
/// is the object it was); anything else (not JSON, not an object) is wrapped as `{"_savio_raw": "..."}`.
fn annotate_json_line(bytes: &[u8], line: u64, reason: &str, sent: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut extra =
        format!("\"{LINE_COLUMN}\":{line},\"{ERROR_COLUMN}\":{}", serde_json::Value::String(reason.to_string()));
    if !sent.is_empty() {
        extra.push_str(&format!(",\"{SENT_COLUMN}\":{}", serde_json::Value::String(sent.to_string())));
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(mut obj)) => {
            if obj.contains_key(LINE_COLUMN) || obj.contains_key(ERROR_COLUMN) || obj.contains_key(SENT_COLUMN) {
                // A failures file's line: its own keys are replaced, every other byte stays (a re-serialised
                // line would round big numbers to floats, drop `1.50`'s zero and decode escapes). A
                // `_savio_sent` stays when there is none to write (`validate`).
                if let Some(kept) = without_savio_keys(bytes, !sent.is_empty()) {
                    return append_members(&kept, &extra);
                }
                obj.insert(LINE_COLUMN.into(), line.into());
                obj.insert(ERROR_COLUMN.into(), reason.into());
                if !sent.is_empty() {
                    obj.insert(SENT_COLUMN.into(), sent.into());
                }
                return serde_json::Value::Object(obj).to_string().into_bytes();
            }
            append_members(bytes, &extra)
        }
        _ => format!("{{\"_savio_raw\":{},{extra}}}", serde_json::Value::String(text.into_owned())).into_bytes(),
    }
}

/// `object` (the bytes of a JSON object) with `members` added before its closing brace.
fn append_members(object: &[u8], members: &str) -> Vec<u8> {
    let trimmed = object.trim_ascii_end();
    let body = &trimmed[..trimmed.len() - 1];
    let sep: &[u8] = if body.trim_ascii_end().ends_with(b"{") { b"" } else { b"," };
    [body, sep, members.as_bytes(), b"}"].concat()
}

/// `text`, a JSON object, without its top-level `_savio_line` and `_savio_error` members (and `_savio_sent`
/// with `drop_sent`), nor the commas that set them apart, every other byte as it was. `None` when it does not
/// scan as an object.
fn without_savio_keys(b: &[u8], drop_sent: bool) -> Option<Vec<u8>> {
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    // The end of the string whose opening quote is at `i` (just past its closing quote).
    let string_end = |mut i: usize| {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    };
    let mut i = skip_ws(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(i + 1);
    // (start, end, whether it is one of ours) of every member, `end` just past its value.
    let mut members = Vec::new();
    while b.get(i) == Some(&b'"') {
        let key_end = string_end(i)?;
        let key: String = serde_json::from_slice(&b[i..key_end]).ok()?;
        let mut j = skip_ws(key_end);
        if b.get(j) != Some(&b':') {
            return None;
        }
        j += 1;
        let (mut depth, mut end) = (0usize, None);
        while j < b.len() {
            match b[j] {
                b'"' => {
                    j = string_end(j)?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth > 0 => depth -= 1,
                b',' | b'}' if depth == 0 => {
                    end = Some(j);
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let mut end = end?;
        let next = end;
        while end > 0 && b[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        let ours = key == LINE_COLUMN || key == ERROR_COLUMN || (drop_sent && key == SENT_COLUMN);
        members.push((i, end, ours));
        i = if b[next] == b',' { skip_ws(next + 1) } else { next };
    }
    let (first, last) = (members.first()?.0, members.last()?.1);
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..first]);
    let mut kept_one = false;
    for (k, &(start, end, ours)) in members.iter().enumerate() {
        if ours {
            continue;
        }
        // A member keeps the separator before it (from the end of the member before), unless it is the first
        // one kept.
        let from = if kept_one { members[k - 1].1 } else { start };
        out.extend_from_slice(&b[from..end]);
        kept_one = true;
    }
    out.extend_from_slice(&b[last..]);
    Some(out)
}

/// Re-encodes UTF-8 written through it into the input's encoding (identity for UTF-8, so invalid bytes of
/// a UTF-8 row pass through untouched).
pub(crate) struct EncodeWriter<W: Write> {
    inner: W,
    encoding: TextEncoding,
    pending: Vec<u8>,
}

impl<W: Write> EncodeWriter<W> {
    pub(crate) fn new(inner: W, encoding: TextEncoding) -> Self {
        EncodeWriter { inner, encoding, pending: Vec::new() }
    }
}

impl<W: Write> Write for EncodeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.encoding.is_utf8() {
            return self.inner.write(buf);
        }
        self.pending.extend_from_slice(buf);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Not UTF-8 at all: cannot come from a decoded input; write it as is rather than lose it.
            Err(_) => {
                self.inner.write_all(&self.pending)?;
                self.pending.clear();
                return Ok(buf.len());
            }
        };
        let text = std::str::from_utf8(&self.pending[..valid]).unwrap_or_default();
        let bytes = self.encoding.encode(text);
        self.inner.write_all(&bytes)?;
        self.pending.drain(..valid);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(bytes: &[u8], line: u64, reason: &str, sent: &str) -> String {
        String::from_utf8(annotate_json_line(bytes, line, reason, sent)).unwrap()
    }

    #[test]
    fn json_lines_keep_their_bytes_and_gain_two_keys() {
        assert_eq!(
            annotated(br#"{ "a" : 1.50 }"#, 3, "bad \"x\"", ""),
            r#"{ "a" : 1.50 ,"_savio_line":3,"_savio_error":"bad \"x\""}"#
        );
        assert_eq!(annotated(b"{}", 1, "r", ""), r#"{"_savio_line":1,"_savio_error":"r"}"#);
        assert_eq!(
            annotated(br#"{"a":1,"_savio_line":9,"_savio_error":"old"}"#, 2, "new", ""),
            r#"{"a":1,"_savio_line":2,"_savio_error":"new"}"#
        );
        // A failures file's line fed back: its keys are replaced, every other byte kept.
        assert_eq!(
            annotated(
                br#"{"id": "a1", "n": 123456789012345678901234567890, "p": 1.50, "t": "\u00e9","_savio_line":3,"_savio_error":"old","_savio_sent":"contact"}"#,
                2,
                "new",
                "contact"
            ),
            r#"{"id": "a1", "n": 123456789012345678901234567890, "p": 1.50, "t": "\u00e9","_savio_line":2,"_savio_error":"new","_savio_sent":"contact"}"#
        );
        assert_eq!(
            annotated(br#"{ "_savio_line" : 3 , "a" : [1, {"b": "}"}] , "_savio_error": "x,}" }"#, 2, "r", ""),
            r#"{ "a" : [1, {"b": "}"}] ,"_savio_line":2,"_savio_error":"r"}"#
        );
        assert_eq!(
            annotated(br#"{"_savio_line":3,"_savio_error":"x"}"#, 2, "r", ""),
            r#"{"_savio_line":2,"_savio_error":"r"}"#
        );
        // Nothing to say of what was sent (`validate`): the line's own `_savio_sent` stays.
        assert_eq!(
            annotated(br#"{"a":1.0,"_savio_line":3,"_savio_error":"x","_savio_sent":"feedback"}"#, 2, "r", ""),
            r#"{"a":1.0,"_savio_sent":"feedback","_savio_line":2,"_savio_error":"r"}"#
        );
        assert_eq!(annotated(b"{broken", 4, "r", ""), r#"{"_savio_raw":"{broken","_savio_line":4,"_savio_error":"r"}"#);
    }

    /// The failures file written for `input` when every row fails with reason "r".
    fn failures_of(input: &[u8]) -> Vec<u8> {
        use crate::source::{InputPath, InputSpec, ReadItem, Source};
        let spec = InputSpec { path: InputPath::Stdin, format: None, delimiter: None, encoding: TextEncoding::UTF8 };
        let mut source = Source::from_reader(&spec, Box::new(io::Cursor::new(input.to_vec()))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failures.csv");
        let mut w = FailuresWriter::create(&path, source.info(), false).unwrap();
        while let Some(item) = source.next_item().unwrap() {
            match item {
                ReadItem::Record(r) => w.write(r.line, &r.raw(), "r", "").unwrap(),
                ReadItem::Bad(b) => w.write(b.line, &b.raw, "r", "").unwrap(),
                _ => {}
            }
        }
        w.finish().unwrap();
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn a_mac_export_gets_its_lone_cr_line_ends_back() {
        assert_eq!(
            failures_of(b"Id,Name\r1,Ann\r2,Bob\r"),
            b"Id,Name,_savio_line,_savio_error\r1,Ann,2,r\r2,Bob,3,r\r"
        );
        // Fed back in: the rewrite keeps them too.
        assert_eq!(
            failures_of(b"Id,Name,_savio_line,_savio_error\r1,Ann,2,old\r"),
            b"Id,Name,_savio_line,_savio_error\r1,Ann,2,r\r"
        );
    }

    /// The failures file written for a JSONL `input` read as `encoding` when every line fails with "r".
    fn jsonl_failures_of(input: Vec<u8>, encoding: &str) -> Vec<u8> {
        use crate::source::{InputPath, InputSpec, ReadItem, Source};
        let encoding = TextEncoding::from_label(encoding).unwrap();
        let spec = InputSpec { path: InputPath::Stdin, format: Some(Format::Jsonl), delimiter: None, encoding };
        let mut source = Source::from_reader(&spec, Box::new(io::Cursor::new(input))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failures.jsonl");
        let mut w = FailuresWriter::create(&path, source.info(), false).unwrap();
        while let Some(item) = source.next_item().unwrap() {
            if let ReadItem::Record(r) = item {
                w.write(r.line, &r.raw(), "r", "").unwrap();
            }
        }
        w.finish().unwrap();
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn a_jsonl_failures_file_is_in_the_inputs_encoding() {
        let utf16 = |text: &str| -> Vec<u8> {
            b"\xFF\xFE".iter().copied().chain(text.encode_utf16().flat_map(u16::to_le_bytes)).collect()
        };
        assert_eq!(
            jsonl_failures_of(utf16("{\"a\":\"\u{e9}\"}\r\n"), "utf-8"),
            utf16("{\"a\":\"\u{e9}\",\"_savio_line\":1,\"_savio_error\":\"r\"}\r\n")
        );
        assert_eq!(
            jsonl_failures_of(b"{\"a\":\"\xE9\"}\n".to_vec(), "windows-1252"),
            b"{\"a\":\"\xE9\",\"_savio_line\":1,\"_savio_error\":\"r\"}\n"
        );
    }

    #[test]
    fn a_json_line_that_is_not_utf8_keeps_its_bytes() {
        // Read without --encoding: the row fails; its bytes must survive for a re-run with the encoding.
        assert_eq!(
            annotate_json_line(b"{\"a\":\"caf\xE9\"}", 1, "r", ""),
            b"{\"a\":\"caf\xE9\",\"_savio_line\":1,\"_savio_error\":\"r\"}"
        );
        assert_eq!(
            annotate_json_line(b"{\"a\":\"caf\xE9\",\"_savio_line\":1,\"_savio_error\":\"r\"}", 2, "s", ""),
            b"{\"a\":\"caf\xE9\",\"_savio_line\":2,\"_savio_error\":\"s\"}"
        );
    }

    #[test]
    fn a_row_that_sent_nothing_keeps_what_its_failures_file_says_was_sent() {
        let dir = tempfile::tempdir().unwrap();
        let input = b"Id,_savio_line,_savio_error,_savio_sent\n1,2,old,\"company, feedback\"\n2,3,old,feedback\n";
        use crate::source::{InputPath, InputSpec, ReadItem, Source};
        let spec = InputSpec { path: InputPath::Stdin, format: None, delimiter: None, encoding: TextEncoding::UTF8 };
        let mut source = Source::from_reader(&spec, Box::new(io::Cursor::new(input.to_vec()))).unwrap();
        let path = dir.path().join("failures.csv");
        let mut w = FailuresWriter::create(&path, source.info(), true).unwrap();
        let mut sent = ["", "contact, feedback"].into_iter();
        while let Some(item) = source.next_item().unwrap() {
            if let ReadItem::Record(r) = item {
                w.write(r.line, &r.raw(), "r", sent.next().unwrap()).unwrap();
            }
        }
        w.finish().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "Id,_savio_line,_savio_error,_savio_sent\n1,2,r,\"company, feedback\"\n2,3,r,\"contact, feedback\"\n"
        );
    }

    #[test]
    fn a_failures_file_left_with_only_its_sent_column_gets_no_second_one() {
        let dir = tempfile::tempdir().unwrap();
        use crate::source::{InputPath, InputSpec, ReadItem, Source};
        let spec = InputSpec { path: InputPath::Stdin, format: None, delimiter: None, encoding: TextEncoding::UTF8 };
        let input = b"Id,_savio_sent\n1,feedback\n".to_vec();
        let mut source = Source::from_reader(&spec, Box::new(io::Cursor::new(input))).unwrap();
        let path = dir.path().join("failures.csv");
        let mut w = FailuresWriter::create(&path, source.info(), true).unwrap();
        while let Some(item) = source.next_item().unwrap() {
            if let ReadItem::Record(r) = item {
                w.write(r.line, &r.raw(), "r", "").unwrap();
            }
        }
        w.finish().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "Id,_savio_sent,_savio_line,_savio_error\n1,feedback,2,r\n"
        );
    }

    #[test]
    fn a_ragged_row_fed_back_keeps_its_values_and_gets_new_ones_at_its_end() {
        // A field too few, a stray one: the row's own values stay, only the last two are replaced (a short row
        // must not take its old line number as a value, which would make it a valid row).
        assert_eq!(
            failures_of(b"Id,Name,Text,_savio_line,_savio_error\n1,Ann,2,old\n2,Bob,hi,extra,3,old\n"),
            b"Id,Name,Text,_savio_line,_savio_error\n1,Ann,2,r\n2,Bob,hi,extra,3,r\n"
        );
        // Its own `_savio_sent` too (kept by `validate`).
        assert_eq!(
            failures_of(b"Id,Text,_savio_line,_savio_error,_savio_sent\n1,4,old,contact\n"),
            b"Id,Text,_savio_line,_savio_error,_savio_sent\n1,2,r,contact\n"
        );
    }

    #[test]
    fn the_inputs_sep_line_stays_above_the_header() {
        assert_eq!(
            failures_of(b"\xEF\xBB\xBFsep=;\r\nId;Name\r\n1;Ann\r\n"),
            b"\xEF\xBB\xBFsep=;\r\nId;Name;_savio_line;_savio_error\r\n1;Ann;3;r\r\n"
        );
        assert_eq!(
            failures_of(b"SEP=|\nId|Name|_savio_line|_savio_error\n1|Ann|3|old\n"),
            b"SEP=|\nId|Name|_savio_line|_savio_error\n1|Ann|3|r\n"
        );
    }

    #[test]
    fn encode_writer_handles_split_sequences() {
        let enc = TextEncoding::from_label("windows-1252").unwrap();
        let mut w = EncodeWriter::new(Vec::new(), enc);
        let bytes = "café €".as_bytes();
        for b in bytes {
            w.write_all(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(w.inner, b"caf\xE9 \x80");
    }
}
