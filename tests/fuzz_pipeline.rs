//! Property tests: arbitrary bytes through reader + mapping never panic, and every row gets exactly one
//! outcome. Inputs are both raw random bytes and CSV/JSONL-shaped noise (quotes, delimiters, newlines,
//! invalid UTF-8, BOMs), which reaches far deeper into the parsers than uniform bytes do.

use std::io::Cursor;
use std::path::Path;

use proptest::prelude::*;
use savio_sync::mapping::Mapping;
use savio_sync::model::Entity;
use savio_sync::pipeline::{DropReason, Pipeline, RowKind};
use savio_sync::report::failures::FailuresWriter;
use savio_sync::source::{Format, InputPath, InputSpec, RawRow, Source, TextEncoding};

/// A mapping that uses every kind of source and transform, built against whatever header the input has.
fn mapping_for(columns: &[String], format: Format) -> String {
    let col = |i: usize| -> String {
        match format {
            Format::Csv if columns.is_empty() => "x".into(),
            Format::Csv => {
                columns[i % columns.len()].replace('\\', "\\\\").replace('"', "\\\"").replace(['{', '}'], "")
            }
            Format::Jsonl => ["a", "b.c", "tags", "d"][i % 4].into(),
        }
    };
    format!(
        r#"
[input]
strict_paths = false
[[skip]]
column = "{c3}"
equals = ["skip", "x"]
[company]
internal_id = "{c0}"
name = {{ column = "{c1}", default = "n/a" }}
unmapped = "attributes"
[contact]
internal_id = {{ column = ["{c0}", "{c2}"] }}
name = {{ column = "{c1}", case = "title", collapse_whitespace = true }}
email = "{c2}"
[contact.filterable_attributes]
n = {{ column = "{c3}", type = "integer" }}
f = {{ column = "{c1}", type = "float", decimal = "," }}
b = {{ column = "{c2}", type = "bool" }}
d = {{ column = "{c0}", type = "date", date_order = "dmy" }}
l = {{ column = "{c3}", split = ";", type = "date" }}
[feedback]
problem = {{ column = "{c1}", default = "{{{c0}}}" }}
feedback_type = {{ column = "{c2}", map = {{ a = "ACTIVE", b = "CHURNED" }} }}
state = "{c3}"
tags = {{ column = "{c0}", split = "," }}
person_email = "{c2}"
"#,
        c0 = col(0),
        c1 = col(1),
        c2 = col(2),
        c3 = col(3),
    )
}

/// Runs the whole pipeline; asserts each row's outcome is exactly one of the kinds, and no panic. Every row
/// is written to a failures file; the exact bytes of every CSV row but the last (whose unclosed quote may
/// run to the end of the input) parse back to its fields.
fn run(bytes: &[u8], format: Format, encoding: &str) {
    let spec = InputSpec {
        path: InputPath::Stdin,
        format: Some(format),
        delimiter: None,
        encoding: TextEncoding::from_label(encoding).unwrap(),
    };
    let Ok(source) = Source::from_reader(&spec, Box::new(Cursor::new(bytes.to_vec()))) else { return };
    let columns = source.info().header.as_ref().map(|h| h.names.clone()).unwrap_or_default();
    let Ok(mapping) = Mapping::parse(&mapping_for(&columns, format), Path::new("fuzz.toml")) else {
        return;
    };
    let Ok(mut pipeline) = Pipeline::from_source(source, &mapping) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut failures = FailuresWriter::create(&dir.path().join("failures.gz"), pipeline.info(), true).unwrap();
    let delimiter = pipeline.info().delimiter.map_or(b',', |d| d.0);
    let mut raws = Vec::new();
    let mut last_line = 0;
    while let Ok(Some(row)) = pipeline.next_row() {
        assert!(row.line >= last_line, "lines go forward");
        last_line = row.line;
        if let Some(raw) = row.raw() {
            failures.write(row.line, &raw, "reason, \"quoted\"\nand multi-line", "feedback").unwrap();
            raws.push(raw);
        }
        match &row.kind {
            RowKind::Mapped { payloads, dropped } => {
                for p in payloads {
                    serde_json::to_vec(p).expect("payloads serialise");
                }
                for d in dropped {
                    match &d.reason {
                        DropReason::Filter(reason) => assert!(reason.contains("filter")),
                        DropReason::Duplicate { first_line } => assert!(*first_line < row.line),
                        DropReason::Incomplete(reason) => {
                            assert!(d.entity == Entity::Company && reason.contains(" not sent: "), "{reason}")
                        }
                        // Only from a failures file's _savio_sent column.
                        DropReason::Sent { .. } => {}
                    }
                }
            }
            RowKind::Failed(problems) => {
                assert!(!problems.is_empty());
                assert!(row.raw().is_some(), "a failed row keeps its raw form for the failures file");
            }
            RowKind::Skipped(reason) => assert!(!reason.is_empty()),
            RowKind::Blank => {}
        }
    }
    failures.finish().unwrap();
    raws.pop();
    for raw in raws {
        if let RawRow::Csv { bytes, fields } = raw {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .has_headers(false)
                .flexible(true)
                // A blank line first: the csv crate drops a byte-order mark at the very start of its input.
                .from_reader(std::io::Cursor::new(b"\n".iter().chain(&bytes).copied().collect::<Vec<u8>>()));
            let mut parsed = csv::ByteRecord::new();
            reader.read_byte_record(&mut parsed).unwrap();
            assert_eq!(parsed.iter().collect::<Vec<_>>(), fields.iter().collect::<Vec<_>>(), "{bytes:?}");
        }
    }
}

fn noisy(alphabet: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(alphabet), 0..300).prop_map(|parts| parts.concat())
}

const CSV_PIECES: &[&[u8]] = &[
    b"a",
    b"Email",
    b"x@y.co",
    b",",
    b";",
    b"\t",
    b"|",
    b"\"",
    b"\"\"",
    b"\n",
    b"\r\n",
    b"\r",
    b" ",
    b"12",
    b"3/4/2024",
    b"\xff",
    b"\xc3\xa9",
    b"\xef\xbb\xbf",
    b"\xe2\x82",
    b"{",
    b"}",
    b"skip",
    b"1,5",
    b"\x00",
];

const JSON_PIECES: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"a\"",
    b"\"b\"",
    b"\"c\"",
    b"\"tags\"",
    b":",
    b",",
    b"1",
    b"-0.5e9",
    b"null",
    b"true",
    b"\"x@y.co\"",
    b"\n",
    b"\r\n",
    b" ",
    b"\\",
    b"\"\\u00e9\"",
    b"\xff",
    b"\"\xc3\xa9\"",
    b"{\"a\":",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        run(&bytes, Format::Csv, "utf-8");
        run(&bytes, Format::Jsonl, "utf-8");
        run(&bytes, Format::Csv, "windows-1252");
        run(&bytes, Format::Csv, "utf-16le");
    }

    #[test]
    fn csv_shaped_noise_never_panics(bytes in noisy(CSV_PIECES)) {
        run(&bytes, Format::Csv, "utf-8");
        run(&bytes, Format::Csv, "shift_jis");
    }

    #[test]
    fn jsonl_shaped_noise_never_panics(bytes in noisy(JSON_PIECES)) {
        run(&bytes, Format::Jsonl, "utf-8");
    }
}
