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

/// The key under which a failures file keeps a line that was not a JSON object (see `report::failures`).
pub(crate) const RAW_KEY: &str = "_savio_raw";

/// Parses one line into a record, a blank, or a row failure.
///
/// A line of a failures file that wraps an unreadable line (`{"_savio_raw": "...", ...}`) is read as the
/// wrapped text, so it fails again with its own reason (or, fixed by hand, becomes a record); its raw bytes
/// stay the wrapper line, so a failures file of a failures file keeps the wrapping instead of nesting it.
pub(super) fn parse_line(line: u64, content: &[u8]) -> ReadItem {
    match parse_text(line, content, None) {
        ReadItem::Record(Record { data: RecordData::Json { mut object, raw }, .. })
            if matches!(object.get(RAW_KEY), Some(serde_json::Value::String(_))) =>
        {
            let Some(serde_json::Value::String(inner)) = object.remove(RAW_KEY) else { unreachable!() };
            match parse_text(line, inner.as_bytes(), Some(&raw)) {
                ReadItem::Blank { .. } => bad(
                    line,
                    raw.as_bytes(),
                    RowReadError::InvalidJson {
                        column: 1,
                        message: "the wrapped line is blank".into(),
                        starts_array: false,
                    },
                ),
                item => item,
            }
        }
        item => item,
    }
}

fn bad(line: u64, raw: &[u8], error: RowReadError) -> ReadItem {
    ReadItem::Bad(BadRow { line, raw: RawRow::Json(raw.to_vec()), error })
}

/// Parses `content`; the row keeps `wrapper` as its bytes when `content` was wrapped, else `content`.
fn parse_text(line: u64, content: &[u8], wrapper: Option<&str>) -> ReadItem {
    let raw = wrapper.map_or(content, str::as_bytes);
    if content.iter().all(u8::is_ascii_whitespace) {
        return ReadItem::Blank { line };
    }
    let text = match std::str::from_utf8(content) {
        Ok(t) => t,
        Err(e) => return bad(line, raw, RowReadError::JsonNotUtf8 { offset: e.valid_up_to() }),
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => {
            let raw = wrapper.unwrap_or(text).to_string();
            ReadItem::Record(Record { line, data: RecordData::Json { object, raw } })
        }
        Ok(other) => bad(line, raw, RowReadError::NotAnObject { found: json_kind(&other) }),
        Err(e) => bad(
            line,
            raw,
            RowReadError::InvalidJson {
                column: e.column(),
                message: strip_position(&e.to_string()),
                starts_array: text.trim_start().starts_with('['),
            },
        ),
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
    fn a_wrapped_line_is_read_as_the_text_it_wraps_and_keeps_the_wrapper_as_its_bytes() {
        let wrapper = r#"{"_savio_raw":"{\"text\": \"cut","_savio_line":5,"_savio_error":"old"}"#;
        let fixed = r#"{"_savio_raw":"{\"text\": \"fixed\"}","_savio_line":6,"_savio_error":"old"}"#;
        let array = r#"{"_savio_raw":"[1]","_savio_line":7}"#;
        let got = items(format!("{wrapper}\n{fixed}\n{array}\n").as_bytes());
        match &got[0] {
            ReadItem::Bad(BadRow { line: 1, raw, error: RowReadError::InvalidJson { message, .. } }) => {
                assert!(message.contains("EOF while parsing a string"), "{message}");
                assert_eq!(raw, &RawRow::Json(wrapper.as_bytes().to_vec()));
            }
            other => panic!("{other:?}"),
        }
        match &got[1] {
            ReadItem::Record(Record { data: RecordData::Json { object, raw }, .. }) => {
                assert_eq!(object["text"], "fixed");
                assert!(object.get("_savio_line").is_none(), "the wrapped object alone");
                assert_eq!(raw, fixed);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&got[2], ReadItem::Bad(BadRow { error: RowReadError::NotAnObject { found: "array" }, .. })));
    }

    #[test]
    fn deep_nesting_is_a_failure_not_a_stack_overflow() {
        let deep = format!("{{\"a\":{}{}}}\n", "[".repeat(100_000), "]".repeat(100_000));
        let got = items(deep.as_bytes());
        assert!(matches!(&got[0], ReadItem::Bad(_)));
    }
}
