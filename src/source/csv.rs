//! CSV per RFC 4180 (quoted fields with delimiters, quotes and newlines; CRLF, LF or a lone CR), on the `csv`
//! crate.
//!
//! Records are read as bytes and checked for UTF-8 one by one, so a single mis-encoded row becomes a row
//! failure with its line number instead of stopping the run.

use std::io::Read;
use std::sync::Arc;

use csv::ByteRecord;

use super::fields::CsvFields;
use super::{
    BadRow, Delimiter, Header, InputPath, LineEnd, RawRow, ReadError, ReadItem, Record, RecordData, RowReadError,
};

pub(super) struct CsvSource {
    reader: csv::Reader<LineTracker<Box<dyn Read + Send>>>,
    header: Arc<Header>,
    path: InputPath,
    /// The record the parser fills, reused: a record keeps a copy of its fields in one buffer.
    scratch: ByteRecord,
    /// Inside a report footer ([`ReadItem::Footer`]): its one-cell rows are not data.
    in_footer: bool,
}

impl CsvSource {
    /// `sep_line`: Excel's `sep=` line, already taken off the front of `input`; line numbers still count it
    /// (the header is then line 2).
    pub(super) fn new(
        input: Box<dyn Read + Send>,
        delimiter: Delimiter,
        path: InputPath,
        sep_line: Option<Vec<u8>>,
    ) -> Result<Self, ReadError> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter.0)
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(64 * 1024)
            .from_reader(LineTracker::new(input, u64::from(sep_line.is_some())));
        let mut raw = ByteRecord::new();
        let found = reader.read_byte_record(&mut raw).map_err(|e| to_read_error(e, &path))?;
        if !found {
            return Err(ReadError::NoHeader { path });
        }
        let end = reader.position().byte();
        let tracker = reader.get_mut();
        let line_end = tracker.line_end_at(end);
        let (_, line) = tracker.take_record(end);
        let header = Header { line: line.to_vec(), line_end, sep_line, ..parse_header(&raw, &path)? };
        Ok(CsvSource { reader, header: Arc::new(header), path, scratch: raw, in_footer: false })
    }

    pub(super) fn header(&self) -> Arc<Header> {
        Arc::clone(&self.header)
    }

    pub(super) fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    pub(super) fn next_item(&mut self) -> Result<Option<ReadItem>, ReadError> {
        if !self.reader.read_byte_record(&mut self.scratch).map_err(|e| to_read_error(e, &self.path))? {
            return Ok(None);
        }
        let end = self.reader.position().byte();
        let (line, raw) = self.reader.get_mut().take_record(end);
        let fields = &self.scratch;
        // A record of only empty (or blank) fields: its fields, one after the other, are all whitespace.
        if fields.as_slice().iter().all(u8::is_ascii_whitespace) {
            return Ok(Some(ReadItem::Blank { line }));
        }
        let expected = self.header.names.len();
        // `cat` of two exports: the second one's header row, which would otherwise map as a record.
        if repeats_header(fields, &self.header) {
            self.in_footer = false;
            return Ok(Some(ReadItem::RepeatedHeader { line }));
        }
        // Salesforce's grand totals row is not data, whatever its other cells hold (a report sums its
        // numeric columns there), and the footer may follow it.
        if grand_totals(&fields[0]) {
            self.in_footer = true;
            return Ok(Some(ReadItem::Footer { line }));
        }
        // One cell where the header has several (or only the first filled: Excel pads rows it saves): the start
        // of a report footer, or a line inside one.
        let one_cell = fields.len() == 1 || fields.iter().skip(1).all(|f| f.trim_ascii().is_empty());
        self.in_footer = one_cell && expected > 1 && (self.in_footer || salesforce_copyright(&fields[0]));
        if self.in_footer {
            return Ok(Some(ReadItem::Footer { line }));
        }
        let error = if fields.len() != expected {
            RowReadError::FieldCount { expected, found: fields.len() }
        } else {
            match CsvFields::from_byte_record(fields) {
                Some(checked) => {
                    return Ok(Some(ReadItem::Record(Record {
                        line,
                        data: RecordData::Csv { fields: checked, raw: raw.to_vec() },
                    })));
                }
                None => utf8_error(fields, &self.header),
            }
        };
        Ok(Some(ReadItem::Bad(BadRow {
            line,
            raw: RawRow::Csv { bytes: raw.to_vec(), fields: fields.clone() },
            error,
        })))
    }
}

/// Whether a one-cell row opens the footer of a Salesforce report export
/// (`"Copyright (c) 2000-2024 salesforce.com, inc. All rights reserved."`).
fn salesforce_copyright(cell: &[u8]) -> bool {
    let cell = cell.trim_ascii();
    let starts = cell.get(..9).is_some_and(|s| s.eq_ignore_ascii_case(b"copyright"));
    starts && memchr::memmem::find(&cell.to_ascii_lowercase(), b"salesforce.com").is_some()
}

/// Whether a first cell is exactly the one a Salesforce report's grand-totals row starts with:
/// `Grand Totals (16 records)`, `Grand Total (1 record)`, the count grouped as the user's locale writes it
/// (`1,234`, `1.234`, `1 234`). Anything else that looks like a total (`Total`, `Grand Totals for EMEA
/// (3 records)`, a subtotal) is left to fail or map as the row it is.
fn grand_totals(cell: &[u8]) -> bool {
    let cell = cell.trim_ascii();
    let Some(rest) = strip_prefix_ignore_case(cell, b"grand total") else { return false };
    let rest = rest.strip_prefix(b"s").or_else(|| rest.strip_prefix(b"S")).unwrap_or(rest);
    let Some(rest) = rest.strip_prefix(b" (") else { return false };
    let Some(count) =
        strip_suffix_ignore_case(rest, b" records)").or_else(|| strip_suffix_ignore_case(rest, b" record)"))
    else {
        return false;
    };
    // Digits, grouped by `,` `.` `'`, a space, or a no-break space (U+00A0, U+202F) in UTF-8; a digit first and last.
    let grouped = std::str::from_utf8(count).is_ok_and(|c| {
        c.chars().all(|ch| ch.is_ascii_digit() || matches!(ch, ',' | '.' | '\'' | ' ' | '\u{a0}' | '\u{202f}'))
    });
    grouped && count.first().is_some_and(u8::is_ascii_digit) && count.last().is_some_and(u8::is_ascii_digit)
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

fn strip_suffix_ignore_case<'a>(s: &'a [u8], suffix: &[u8]) -> Option<&'a [u8]> {
    let at = s.len().checked_sub(suffix.len())?;
    s[at..].eq_ignore_ascii_case(suffix).then(|| &s[..at])
}

/// Whether a record is the header again: the same number of fields, each the header's name once trimmed,
/// ignoring case. The header of a second export joined with `cat` may carry that export's UTF-8 byte-order
/// mark, which the parser sees as data, in front of its first field (quotes then included).
fn repeats_header(fields: &ByteRecord, header: &Header) -> bool {
    if fields.len() != header.names.len() {
        return false;
    }
    fields.iter().zip(&header.names).enumerate().all(|(i, (field, name))| {
        let mut field = field.trim_ascii();
        if i == 0
            && let Some(rest) = field.strip_prefix(b"\xEF\xBB\xBF")
        {
            field = rest.trim_ascii();
            if let Some(inner) = field.strip_prefix(b"\"").and_then(|f| f.strip_suffix(b"\"")) {
                field = inner.trim_ascii();
            }
        }
        same_name(field, name)
    })
}

/// `field` (trimmed) is `name`, ignoring case: ASCII without allocating (the check runs on every row, and
/// almost always fails on the first field's length), any other text by its lowercase characters.
fn same_name(field: &[u8], name: &str) -> bool {
    if field.is_ascii() && name.is_ascii() {
        return field.eq_ignore_ascii_case(name.as_bytes());
    }
    std::str::from_utf8(field)
        .is_ok_and(|f| f.chars().flat_map(char::to_lowercase).eq(name.chars().flat_map(char::to_lowercase)))
}

/// Sees every byte the parser reads, to give each record its exact bytes and its true first line.
///
/// The csv crate's positions are not enough on their own: a record's position is where the previous one
/// ended, before the `\n` of a CRLF and before any blank lines the parser skips. This wrapper keeps a window
/// of the bytes passed to the parser, from the end of the last record handed out to the end of the
/// read-ahead; when the parser finishes a record at byte `end`, the record is the window up to `end` without
/// the line endings in front of it (the rest of the previous line's ending and blank lines) nor its own.
/// Lines are counted once per byte, and what was handed out is dropped from the window only when it is at
/// least half of it, so keeping the window costs amortised O(1) per byte, never a move of the buffer per row.
///
/// A line ends at a `\n`, a `\r\n`, or a lone `\r` (Excel for Mac's "CSV (Macintosh)"), as the parser ends
/// records, so that such a file's rows are not all line 1.
struct LineTracker<R> {
    inner: R,
    window: Vec<u8>,
    /// The offset of `window[0]` in the stream.
    window_start: u64,
    /// The end of the last record handed out, and the number of line ends before it.
    cursor: u64,
    line_ends: u64,
    /// Whether the byte before `cursor` is a `\r`: a `\n` right after it ends no second line.
    after_cr: bool,
}

impl<R: Read> LineTracker<R> {
    fn new(inner: R, skipped_lines: u64) -> Self {
        LineTracker {
            inner,
            window: Vec::with_capacity(128 * 1024),
            window_start: 0,
            cursor: 0,
            line_ends: skipped_lines,
            after_cr: false,
        }
    }

    /// How the record the parser finished at byte `end` ends: the parser stops after a record's first line
    /// end byte, so a `\r` is a CRLF when the byte after it (read ahead) is a `\n`. A `\r` that is the last
    /// byte read so far (the end of the input, or of a read) is taken for a CRLF, the more common.
    fn line_end_at(&self, end: u64) -> LineEnd {
        let at = |offset: u64| {
            let i = usize::try_from(offset.checked_sub(self.window_start)?).ok()?;
            self.window.get(i).copied()
        };
        match (end.checked_sub(1).and_then(at), at(end)) {
            (Some(b'\r'), Some(b'\n') | None) => LineEnd::CrLf,
            (Some(b'\r'), Some(_)) => LineEnd::Cr,
            _ => LineEnd::Lf,
        }
    }

    /// The record the parser finished at byte `end`: its 1-based first line and its exact bytes (without
    /// its line ending).
    fn take_record(&mut self, end: u64) -> (u64, &[u8]) {
        let from = usize::try_from(self.cursor - self.window_start).unwrap_or(usize::MAX).min(self.window.len());
        let to = usize::try_from(end - self.window_start).unwrap_or(usize::MAX).clamp(from, self.window.len());
        let bytes = &self.window[from..to];
        let lead = bytes.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(bytes.len());
        let lead_ends = count_line_ends(&bytes[..lead], self.after_cr);
        let line = 1 + self.line_ends + lead_ends;
        // The record itself starts with neither byte: nothing to carry over from the lead.
        self.line_ends += lead_ends + count_line_ends(&bytes[lead..], false);
        self.after_cr = bytes.last().map_or(self.after_cr, |&b| b == b'\r');
        self.cursor = end;
        let mut record = &bytes[lead..];
        if let Some(rest) = record.strip_suffix(b"\n") {
            record = rest;
        }
        if let Some(rest) = record.strip_suffix(b"\r") {
            record = rest;
        }
        (line, record)
    }
}

/// The line ends in `bytes`: every `\r`, and every `\n` but one right after a `\r` (a CRLF is one line end).
/// `after_cr`: whether the byte before `bytes` is a `\r`.
fn count_line_ends(bytes: &[u8], after_cr: bool) -> u64 {
    // Nearly every record is one line, its only line end byte the last: one search settles it, where an
    // iterator would be set up for every record.
    let mut ends = 0;
    let mut from = 0;
    while from < bytes.len()
        && let Some(i) = memchr::memchr2(b'\r', b'\n', &bytes[from..])
    {
        let at = from + i;
        let crlf = bytes[at] == b'\n' && if at == 0 { after_cr } else { bytes[at - 1] == b'\r' };
        ends += u64::from(!crlf);
        from = at + 1;
    }
    ends
}

impl<R: Read> Read for LineTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let done = usize::try_from(self.cursor - self.window_start).unwrap_or(usize::MAX).min(self.window.len());
        if done > 0 && done >= self.window.len() / 2 {
            self.window.drain(..done);
            self.window_start += done as u64;
        }
        self.window.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Whether every field of a CSV line is enclosed in double quotes.
pub(super) fn all_fields_quoted(line: &[u8], delimiter: u8) -> bool {
    let mut i = 0;
    loop {
        if line.get(i) != Some(&b'"') {
            return false;
        }
        i += 1;
        loop {
            let Some(k) = memchr::memchr(b'"', &line[i..]) else { return false };
            i += k + 1;
            if line.get(i) == Some(&b'"') {
                i += 1;
            } else {
                break;
            }
        }
        match line.get(i) {
            None => return true,
            Some(&d) if d == delimiter => i += 1,
            Some(_) => return false,
        }
    }
}

fn utf8_error(raw: &ByteRecord, header: &Header) -> RowReadError {
    for (i, field) in raw.iter().enumerate() {
        if let Err(e) = std::str::from_utf8(field) {
            let offset = e.valid_up_to();
            return RowReadError::InvalidUtf8 {
                column: header.names.get(i).cloned().unwrap_or_else(|| format!("#{}", i + 1)),
                byte: field[offset],
                offset,
            };
        }
    }
    RowReadError::InvalidUtf8 { column: String::new(), byte: 0, offset: 0 }
}

/// The header's names, checked; as if read from a line of its own (the caller knows the line's bytes).
fn parse_header(raw: &ByteRecord, path: &InputPath) -> Result<Header, ReadError> {
    let mut names: Vec<String> = Vec::with_capacity(raw.len());
    for (i, field) in raw.iter().enumerate() {
        let name = std::str::from_utf8(field).map_err(|_| ReadError::HeaderNotUtf8 { path: path.clone() })?;
        let name = name.trim();
        if name.is_empty() {
            return Err(ReadError::EmptyHeaderName { path: path.clone(), column: i + 1 });
        }
        if let Some(first) = names.iter().position(|n| n == name) {
            return Err(ReadError::DuplicateHeader {
                path: path.clone(),
                name: name.to_string(),
                first: first + 1,
                second: i + 1,
            });
        }
        names.push(name.to_string());
    }
    Ok(Header { names, raw: raw.clone(), line: Vec::new(), line_end: LineEnd::Lf, sep_line: None })
}

fn to_read_error(e: csv::Error, path: &InputPath) -> ReadError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(source) => ReadError::Io { path: path.clone(), line, source },
        // With byte records and `flexible`, the csv crate reports nothing but I/O errors; keep the message anyway.
        other => ReadError::Io { path: path.clone(), line, source: std::io::Error::other(format!("{other:?}")) },
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::open_bytes;
    use super::super::*;
    use super::all_fields_quoted;

    fn records(bytes: &[u8]) -> Vec<ReadItem> {
        let mut s = open_bytes(bytes, Some(Format::Csv)).unwrap();
        std::iter::from_fn(|| s.next_item().unwrap()).collect()
    }

    fn fields(item: &ReadItem) -> (u64, Vec<String>) {
        match item {
            ReadItem::Record(Record { line, data: RecordData::Csv { fields, .. } }) => {
                (*line, fields.iter().map(str::to_string).collect())
            }
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[test]
    fn quoted_newlines_keep_the_starting_line() {
        let items = records(b"Name,Notes\r\nAda,\"multi\r\nline\"\r\nBob,x\r\n");
        assert_eq!(fields(&items[0]), (2, vec!["Ada".into(), "multi\r\nline".into()]));
        assert_eq!(fields(&items[1]), (4, vec!["Bob".into(), "x".into()]));
    }

    #[test]
    fn bom_is_stripped_from_the_first_header_name() {
        let s = open_bytes(b"\xEF\xBB\xBFEmail,Name\na@b.co,A\n", None).unwrap();
        assert_eq!(s.info().header.as_ref().unwrap().names, vec!["Email", "Name"]);
    }

    #[test]
    fn invalid_utf8_is_a_row_failure_naming_the_column() {
        let items = records(b"Name,City\nA,Z\xfcrich\nB,Bern\n");
        match &items[0] {
            ReadItem::Bad(BadRow {
                line: 2,
                error: RowReadError::InvalidUtf8 { column, byte: 0xFC, offset: 1 },
                raw,
            }) => {
                assert_eq!(column, "City");
                assert_eq!(
                    raw,
                    &RawRow::Csv {
                        bytes: b"A,Z\xfcrich".to_vec(),
                        fields: csv::ByteRecord::from(vec![&b"A"[..], &b"Z\xfcrich"[..]])
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fields(&items[1]).0, 3);
        let msg = match &items[0] {
            ReadItem::Bad(b) => b.error.to_string(),
            _ => unreachable!(),
        };
        assert!(msg.contains("--encoding"), "{msg}");
    }

    #[test]
    fn wrong_field_count_is_a_row_failure() {
        let items = records(b"a,b\n1,2,3\n4\n5,6\n");
        assert!(matches!(
            &items[0],
            ReadItem::Bad(BadRow { line: 2, error: RowReadError::FieldCount { expected: 2, found: 3 }, .. })
        ));
        assert!(matches!(
            &items[1],
            ReadItem::Bad(BadRow { line: 3, error: RowReadError::FieldCount { expected: 2, found: 1 }, .. })
        ));
        assert_eq!(fields(&items[2]).0, 4);
    }

    #[test]
    fn line_numbers_survive_crlf_blank_lines_and_quoted_newlines() {
        for eol in ["\n", "\r\n", "\r"] {
            let text = "h\n1\n\n\n\"a\nb\nc\"\n2\n\"\nz\"\n3".replace('\n', eol);
            let lines: Vec<u64> = records(text.as_bytes()).iter().map(|i| fields(i).0).collect();
            assert_eq!(lines, vec![2, 5, 8, 9, 11], "eol {eol:?}");
        }
    }

    #[test]
    fn a_mac_export_ending_lines_in_a_lone_cr_counts_each_line() {
        // Excel for Mac's "CSV (Macintosh)": before the fix every row was line 1.
        let items = records(b"Record ID,Email\r1,ann@x.com\r2,bad@@x\r3,cy@x.com\r");
        let lines: Vec<u64> = items.iter().map(|i| fields(i).0).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        assert_eq!(raw_bytes(&items[1]), (3, b"2,bad@@x".to_vec()), "the line ending is not part of the row");
        // Every kind of line end in one file, a CRLF counted once, blank lines of each kind counted too.
        let items = records(b"h\r\n1\r2\n\r\r\n\n3\r\n\"a\rb\r\nc\"\r4");
        let lines: Vec<u64> = items.iter().map(|i| fields(i).0).collect();
        assert_eq!(lines, vec![2, 3, 7, 8, 11]);
    }

    #[test]
    fn the_header_tells_how_the_file_ends_its_lines() {
        for (text, end) in [
            (&b"a,b\n1,2\n"[..], LineEnd::Lf),
            (b"a,b\r\n1,2\r\n", LineEnd::CrLf),
            (b"a,b\r1,2\r", LineEnd::Cr),
            (b"\"a\rx\",b\r\n1,2\r\n", LineEnd::CrLf),
        ] {
            let s = open_bytes(text, Some(Format::Csv)).unwrap();
            assert_eq!(s.info().header.as_ref().unwrap().line_end, end, "{:?}", String::from_utf8_lossy(text));
            assert_eq!(s.info().crlf, end == LineEnd::CrLf);
        }
    }

    fn raw_bytes(item: &ReadItem) -> (u64, Vec<u8>) {
        match item {
            ReadItem::Record(r) => match r.raw() {
                RawRow::Csv { bytes, .. } => (r.line, bytes),
                other => panic!("{other:?}"),
            },
            ReadItem::Bad(BadRow { line, raw: RawRow::Csv { bytes, .. }, .. }) => (*line, bytes.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn records_keep_their_exact_bytes_quotes_and_inner_line_breaks() {
        let text = "\"Name\",\"Notes\"\r\n\"Ada\",\"multi\r\nline \"\"q\"\"\"\r\n\r\n\r\nBob , x \r\n\"Cy\",\"\"\r\n\"Di\",\"z\"";
        let items = records(text.as_bytes());
        let got: Vec<(u64, Vec<u8>)> = items.iter().map(raw_bytes).collect();
        assert_eq!(
            got,
            vec![
                (2, b"\"Ada\",\"multi\r\nline \"\"q\"\"\"".to_vec()),
                (6, b"Bob , x ".to_vec()),
                (7, b"\"Cy\",\"\"".to_vec()),
                (8, b"\"Di\",\"z\"".to_vec()),
            ]
        );
        let s = open_bytes(text.as_bytes(), Some(Format::Csv)).unwrap();
        let header = s.info().header.clone().unwrap();
        assert_eq!(header.line, b"\"Name\",\"Notes\"");
        assert!(header.all_quoted(b','));
    }

    #[test]
    fn exact_bytes_survive_the_window_across_many_reads() {
        // Enough rows, and one long multi-line record, to cross the parser's 64 KiB reads many times.
        let mut text = String::from("id;note\n");
        let mut expected = Vec::new();
        let mut line = 2;
        for i in 0..20_000u64 {
            let rec = if i == 7_000 {
                format!("{i};\"{}\"", "long\nvalue;".repeat(20_000))
            } else if i % 3 == 0 {
                format!("\"{i}\";\"a \"\"quoted\"\" ; value\"")
            } else {
                format!("{i};plain value {i}")
            };
            expected.push((line, rec.clone().into_bytes()));
            line += 1 + rec.matches('\n').count() as u64;
            text.push_str(&rec);
            text.push_str(["\r\n", "\n", "\r"][(i / 2 % 3) as usize]);
        }
        let got: Vec<(u64, Vec<u8>)> = records(text.as_bytes()).iter().map(raw_bytes).collect();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g, e, "line {}", e.0);
        }
    }

    #[test]
    fn quoting_of_a_header_line() {
        assert!(all_fields_quoted(b"\"a\",\"b\"\"c\"", b','));
        assert!(all_fields_quoted(b"\"a;b\";\"\"", b';'));
        assert!(!all_fields_quoted(b"\"a\",b", b','));
        assert!(!all_fields_quoted(b"a,\"b\"", b','));
        assert!(!all_fields_quoted(b"\"a\"x,\"b\"", b','));
        assert!(!all_fields_quoted(b"\"a", b','));
        assert!(!all_fields_quoted(b"", b','));
    }

    #[test]
    fn all_empty_rows_are_blank() {
        let items = records(b"a;b;c\n1;2;3\n;;\n");
        assert!(matches!(items[1], ReadItem::Blank { line: 3 }));
    }

    #[test]
    fn a_salesforce_footer_is_footer_and_a_lone_cell_elsewhere_is_a_bad_row() {
        let items = records(
            b"a,b\n1,2\nstray\n\n\"Copyright (c) 2000-2024 salesforce.com, inc. All rights reserved.\"\n\"Confidential\"\n",
        );
        assert!(matches!(items[1], ReadItem::Bad(BadRow { line: 3, .. })));
        assert!(matches!(items[2], ReadItem::Footer { line: 5 }));
        assert!(matches!(items[3], ReadItem::Footer { line: 6 }));
        // The same report re-saved by Excel pads every row to the header's width; it may end in grand totals.
        let items = records(
            b"a;b;c\n1;2;3\nGrand Totals (1 record);;\n;;\nCopyright (c) 2000-2024 salesforce.com, inc.;;\nConfidential;;\n",
        );
        assert!(matches!(items[0], ReadItem::Record(_)));
        assert!(matches!(items[1], ReadItem::Footer { line: 3 }));
        assert!(matches!(items[2], ReadItem::Blank { line: 4 }));
        assert!(matches!(items[3], ReadItem::Footer { line: 5 }));
        assert!(matches!(items[4], ReadItem::Footer { line: 6 }));
        // A row with only its first cell filled is data (and fails later if incomplete) outside a footer.
        assert!(matches!(records(b"a;b\nAcme;\n")[0], ReadItem::Record(_)));
    }

    #[test]
    fn a_grand_totals_row_with_sums_is_footer_but_other_totals_are_rows() {
        // Salesforce sums the numeric columns on its grand-totals row; Excel then pads the footer below it.
        let items = records(
            b"Id,Name,Type,Revenue,Created\n1,A,x,2400000,2/2/2023\nGrand Totals (2 records),,,3270000,\n,,,,\n\
              \"Copyright (c) 2000-2024 salesforce.com, inc. All rights reserved.\",,,,\nConfidential,,,,\n",
        );
        assert!(matches!(items[0], ReadItem::Record(_)));
        assert!(matches!(items[1], ReadItem::Footer { line: 3 }));
        assert!(matches!(items[2], ReadItem::Blank { line: 4 }));
        assert!(matches!(items[3], ReadItem::Footer { line: 5 }));
        assert!(matches!(items[4], ReadItem::Footer { line: 6 }));
        for cell in ["Grand Total (1 record)", " grand totals (1,234 records) ", "Grand Totals (1\u{a0}234 records)"] {
            let text = format!("Id,Revenue\n1,5\n\"{cell}\",5\n");
            assert!(matches!(records(text.as_bytes())[1], ReadItem::Footer { line: 3 }), "{cell:?}");
        }
        // Totals of any other shape are rows like any other (they fail or map on their own merits).
        for cell in [
            "Total",
            "Total (2 records)",
            "Subtotal (2 records)",
            "Grand Totals for EMEA (3 records)",
            "Grand Totals (records)",
            "Grand Totals (2 records) EMEA",
            "Grand Totals 2 records",
        ] {
            let text = format!("Id,Revenue\n1,5\n\"{cell}\",5\n");
            assert!(matches!(records(text.as_bytes())[1], ReadItem::Record(_)), "{cell:?}");
        }
        // Not a footer in a one-column file either: the rows after a grand total are still read.
        let items = records(b"Id\nGrand Totals (1 record)\nx\n");
        assert!(matches!(items[0], ReadItem::Footer { line: 2 }));
        assert!(matches!(items[1], ReadItem::Record(_)));
    }

    #[test]
    fn a_header_repeated_by_joining_two_exports_is_recognised() {
        let items = records(
            "\"Record ID\",\"Número\"\n1,a\n record id ,NÚMERO\n2,b\n\u{feff}\"Record ID\",\"Número\"\n3,c\nRecord ID,Número,x\nRecord ID\n"
                .as_bytes(),
        );
        assert_eq!(fields(&items[0]).0, 2);
        assert!(matches!(items[1], ReadItem::RepeatedHeader { line: 3 }), "trimmed, any case: {:?}", items[1]);
        assert_eq!(fields(&items[2]).0, 4);
        assert!(matches!(items[3], ReadItem::RepeatedHeader { line: 5 }), "behind the second file's BOM");
        assert_eq!(fields(&items[4]).0, 6);
        // The names plus a cell, or only some of them, are not the header.
        assert!(matches!(items[5], ReadItem::Bad(BadRow { line: 7, .. })));
        assert!(matches!(items[6], ReadItem::Bad(BadRow { line: 8, .. })));
        // A row whose cells merely resemble the names is data.
        assert!(matches!(records(b"Id,Name\nId,Names\n")[0], ReadItem::Record(_)));
    }

    #[test]
    fn header_problems_are_fatal_and_explained() {
        let err = open_bytes(b"Email,,Name\n", Some(Format::Csv)).err().unwrap();
        assert!(matches!(err, ReadError::EmptyHeaderName { column: 2, .. }), "{err}");
        let err = open_bytes(b"Email,Name,Email\n", Some(Format::Csv)).err().unwrap();
        assert!(err.to_string().contains("column 1 and column 3 both 'Email'"), "{err}");
        let err = open_bytes(b"", Some(Format::Csv)).err().unwrap();
        assert!(matches!(err, ReadError::NoHeader { .. }));
    }
}
