//! CSV per RFC 4180 (quoted fields with delimiters, quotes and newlines; CRLF or LF), on the `csv` crate.
//!
//! Records are read as bytes and checked for UTF-8 one by one, so a single mis-encoded row becomes a row
//! failure with its line number instead of stopping the run.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;

use csv::{ByteRecord, StringRecord};

use super::{BadRow, Delimiter, Header, InputPath, RawRow, ReadError, ReadItem, Record, RecordData, RowReadError};

pub(super) struct CsvSource {
    reader: csv::Reader<LineTracker<Box<dyn Read + Send>>>,
    header: Arc<Header>,
    path: InputPath,
}

impl CsvSource {
    pub(super) fn new(input: Box<dyn Read + Send>, delimiter: Delimiter, path: InputPath) -> Result<Self, ReadError> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter.0)
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(64 * 1024)
            .from_reader(LineTracker::new(input));
        let mut raw = ByteRecord::new();
        let found = reader.read_byte_record(&mut raw).map_err(|e| to_read_error(e, &path))?;
        if !found {
            return Err(ReadError::NoHeader { path });
        }
        let header = parse_header(&raw, &path)?;
        Ok(CsvSource { reader, header: Arc::new(header), path })
    }

    pub(super) fn header(&self) -> Arc<Header> {
        Arc::clone(&self.header)
    }

    pub(super) fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    pub(super) fn next_item(&mut self) -> Result<Option<ReadItem>, ReadError> {
        let mut raw = ByteRecord::new();
        if !self.reader.read_byte_record(&mut raw).map_err(|e| to_read_error(e, &self.path))? {
            return Ok(None);
        }
        let start = raw.position().map_or(0, |p| p.byte());
        let line = self.reader.get_mut().start_line(start);
        Ok(Some(self.classify(raw, line)))
    }

    fn classify(&self, raw: ByteRecord, line: u64) -> ReadItem {
        if raw.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            return ReadItem::Blank { line };
        }
        let expected = self.header.names.len();
        if raw.len() != expected {
            let error = RowReadError::FieldCount { expected, found: raw.len() };
            return ReadItem::Bad(BadRow { line, raw: RawRow::Csv(raw), error });
        }
        match StringRecord::from_byte_record(raw) {
            Ok(record) => ReadItem::Record(Record { line, data: RecordData::Csv(record) }),
            Err(e) => {
                let raw = e.into_byte_record();
                let error = utf8_error(&raw, &self.header);
                ReadItem::Bad(BadRow { line, raw: RawRow::Csv(raw), error })
            }
        }
    }
}

/// Counts lines exactly, which the csv crate's positions do not: a record's position is where the previous
/// one ended, before the `\n` of a CRLF and before any blank lines that are skipped. This wrapper notes the
/// offset of every `\r` and `\n` it passes to the parser (only within the parser's read-ahead window), so the
/// true first line of a record can be found from that position.
struct LineTracker<R> {
    inner: R,
    offset: u64,
    terminators: VecDeque<(u64, u8)>,
    newlines_before: u64,
}

impl<R: Read> LineTracker<R> {
    fn new(inner: R) -> Self {
        LineTracker { inner, offset: 0, terminators: VecDeque::new(), newlines_before: 0 }
    }

    /// The 1-based line of the first byte of a record whose parse started at byte `start`.
    fn start_line(&mut self, start: u64) -> u64 {
        while let Some(&(off, b)) = self.terminators.front() {
            if off >= start {
                break;
            }
            self.newlines_before += u64::from(b == b'\n');
            self.terminators.pop_front();
        }
        let mut skipped = 0;
        for (pos, &(off, b)) in (start..).zip(self.terminators.iter()) {
            if off != pos {
                break;
            }
            skipped += u64::from(b == b'\n');
        }
        1 + self.newlines_before + skipped
    }
}

impl<R: Read> Read for LineTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for i in memchr::memchr2_iter(b'\r', b'\n', &buf[..n]) {
            self.terminators.push_back((self.offset + i as u64, buf[i]));
        }
        self.offset += n as u64;
        Ok(n)
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
    Ok(Header { names, raw: raw.clone() })
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

    fn records(bytes: &[u8]) -> Vec<ReadItem> {
        let mut s = open_bytes(bytes, Some(Format::Csv)).unwrap();
        std::iter::from_fn(|| s.next_item().unwrap()).collect()
    }

    fn fields(item: &ReadItem) -> (u64, Vec<String>) {
        match item {
            ReadItem::Record(Record { line, data: RecordData::Csv(r) }) => {
                (*line, r.iter().map(str::to_string).collect())
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
                assert_eq!(raw, &RawRow::Csv(csv::ByteRecord::from(vec![&b"A"[..], &b"Z\xfcrich"[..]])));
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
        for eol in ["\n", "\r\n"] {
            let text = "h\n1\n\n\n\"a\nb\nc\"\n2\n\"\nz\"\n3".replace('\n', eol);
            let lines: Vec<u64> = records(text.as_bytes()).iter().map(|i| fields(i).0).collect();
            assert_eq!(lines, vec![2, 5, 8, 9, 11], "eol {eol:?}");
        }
    }

    #[test]
    fn all_empty_rows_are_blank() {
        let items = records(b"a;b;c\n1;2;3\n;;\n");
        assert!(matches!(items[1], ReadItem::Blank { line: 3 }));
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
