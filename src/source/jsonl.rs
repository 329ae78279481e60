//! JSON Lines: one JSON object per line, as Intercom, Zendesk and most APIs export.
//!
//! Blank lines are skipped; a line that is not JSON, or not an object, becomes a row failure with its line
//! number. serde_json's recursion limit keeps hostile nesting from overflowing the stack.

use std::io::{BufRead, BufReader, Read};

use super::{BadRow, InputPath, RawRow, ReadError, ReadItem, Record, RecordData, RowReadError};

pub(super) struct JsonlSource {
    reader: BufReader<Box<dyn Read + Send>>,
    path: InputPath,
    line: u64,
    bytes: u64,
    buf: Vec<u8>,
}

impl JsonlSource {
    pub(super) fn new(input: Box<dyn Read + Send>, path: InputPath) -> Self {
        JsonlSource {
            reader: BufReader::with_capacity(64 * 1024, input),
            path,
            line: 0,
            bytes: 0,
            buf: Vec::with_capacity(4096),
        }
    }

    pub(super) fn bytes_read(&self) -> u64 {
        self.bytes
    }

    pub(super) fn next_item(&mut self) -> Result<Option<ReadItem>, ReadError> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf).map_err(|source| ReadError::Io {
            path: self.path.clone(),
            line: self.line + 1,
            source,
        })?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        self.bytes += n as u64;
        let mut content: &[u8] = &self.buf;
        if let Some(rest) = content.strip_suffix(b"\n") {
            content = rest;
        }
        if let Some(rest) = content.strip_suffix(b"\r") {
            content = rest;
        }
        Ok(Some(parse_line(self.line, content)))
    }
}

/// Parses one line into a record, a blank, or a row failure.
pub(super) fn parse_line(line: u64, content: &[u8]) -> ReadItem {
    if content.iter().all(u8::is_ascii_whitespace) {
        return ReadItem::Blank { line };
    }
    let bad = |error| ReadItem::Bad(BadRow { line, raw: RawRow::Json(content.to_vec()), error });
    let text = match std::str::from_utf8(content) {
        Ok(t) => t,
        Err(e) => {
            return bad(RowReadError::JsonNotUtf8 { offset: e.valid_up_to() });
        }
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => {
            ReadItem::Record(Record { line, data: RecordData::Json { object, raw: text.to_string() } })
        }
        Ok(other) => bad(RowReadError::NotAnObject { found: json_kind(&other) }),
        Err(e) => bad(RowReadError::InvalidJson {
            column: e.column(),
            message: strip_position(&e.to_string()),
            starts_array: text.trim_start().starts_with('['),
        }),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// serde_json appends " at line L column C"; the row failure carries its own line, so drop it.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::open_bytes;
    use super::super::*;

    fn items(bytes: &[u8]) -> Vec<ReadItem> {
        let mut s = open_bytes(bytes, Some(Format::Jsonl)).unwrap();
        std::iter::from_fn(|| s.next_item().unwrap()).collect()
    }

    #[test]
    fn objects_blank_lines_and_failures_keep_their_line_numbers() {
        let got = items(b"{\"a\":1}\r\n\n  \n{broken\n[1,2]\n{\"b\":{\"c\":\"x\"}}");
        assert!(matches!(&got[0], ReadItem::Record(Record { line: 1, .. })));
        assert!(matches!(got[1], ReadItem::Blank { line: 2 }));
        assert!(matches!(got[2], ReadItem::Blank { line: 3 }));
        assert!(matches!(&got[3], ReadItem::Bad(BadRow { line: 4, error: RowReadError::InvalidJson { .. }, .. })));
        assert!(matches!(
            &got[4],
            ReadItem::Bad(BadRow { line: 5, error: RowReadError::NotAnObject { found: "array" }, .. })
        ));
        match &got[5] {
            ReadItem::Record(Record { line: 6, data: RecordData::Json { raw, object } }) => {
                assert_eq!(raw, "{\"b\":{\"c\":\"x\"}}");
                assert_eq!(object["b"]["c"], "x");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn raw_line_is_kept_byte_for_byte() {
        let line = "{ \"text\" : \"caf\u{e9} \u{1F600}\",  \"n\": 1.50 }";
        let got = items(format!("{line}\n").as_bytes());
        match &got[0] {
            ReadItem::Record(r) => assert_eq!(r.raw(), RawRow::Json(line.as_bytes().to_vec())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_utf8_is_a_row_failure() {
        let got = items(b"{\"a\":\"\xff\"}\n{\"a\":1}\n");
        assert!(matches!(
            &got[0],
            ReadItem::Bad(BadRow { line: 1, error: RowReadError::JsonNotUtf8 { offset: 6 }, .. })
        ));
        assert!(matches!(&got[1], ReadItem::Record(_)));
    }

    #[test]
    fn deep_nesting_is_a_failure_not_a_stack_overflow() {
        let deep = format!("{{\"a\":{}{}}}\n", "[".repeat(100_000), "]".repeat(100_000));
        let got = items(deep.as_bytes());
        assert!(matches!(&got[0], ReadItem::Bad(_)));
    }
}
