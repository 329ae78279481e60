//! Guessing what the user did not say: the input's format and its CSV delimiter.
//!
//! European Excel writes `;`, some CRMs write TAB or `|`; operations people should not need to know which.
//! The guess looks only at a sample from the front of the file and is quote-aware, so a delimiter inside a
//! quoted field does not count.

/// Delimiters tried, in order of preference when two fit equally well.
pub const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Excel's delimiter line (see [`excel_sep_line`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SepLine<'a> {
    pub delimiter: u8,
    /// The line as written (`sep=;`, `SEP=|`), without its line ending.
    pub line: &'a [u8],
    /// The length of the line with its line ending, counted from the start of the sample (a UTF-8
    /// byte-order mark included): what to take off the input before its header.
    pub len: usize,
}

/// Excel's delimiter line: a CSV saved for Excel may begin with `sep=;` (any one character), which Excel
/// reads as "the delimiter is `;`" and does not show. The line is not part of the data.
pub fn excel_sep_line(sample: &[u8]) -> Option<SepLine<'_>> {
    let bom = if sample.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let line = &sample[bom..];
    let (prefix, rest) = (line.get(..4)?, &line[4..]);
    let delimiter = *rest.first()?;
    let ending = match &rest[1..] {
        [b'\n', ..] => 1,
        [b'\r', b'\n', ..] => 2,
        // A lone CR: Excel for Mac's "CSV (Macintosh)".
        [b'\r', ..] => 1,
        _ => return None,
    };
    let usable = delimiter.is_ascii() && !matches!(delimiter, b'"' | b'\r' | b'\n');
    (prefix.eq_ignore_ascii_case(b"sep=") && usable).then_some(SepLine {
        delimiter,
        line: &line[..5],
        len: bom + 5 + ending,
    })
}

/// Picks the delimiter among [`CANDIDATES`] that splits the sample's records most consistently.
///
/// A candidate must occur in the header record; among those, the one whose per-record count most often equals
/// the header's wins. `None` when no candidate appears in the header (a one-column file).
pub fn sniff_delimiter(sample: &[u8], complete: bool) -> Option<u8> {
    let records = split_records(sample, complete, 50);
    let header = records.first()?;
    let mut best: Option<(usize, u8)> = None;
    for (i, &cand) in CANDIDATES.iter().enumerate() {
        let header_count = header[i];
        if header_count == 0 {
            continue;
        }
        let consistent = records.iter().filter(|counts| counts[i] == header_count).count();
        if best.is_none_or(|(score, _)| consistent > score) {
            best = Some((consistent, cand));
        }
    }
    best.map(|(_, d)| d)
}

/// Counts each candidate outside quotes, per record, for up to `max` records. The last record is dropped
/// when the sample was cut short (`complete == false`), since it may be partial.
fn split_records(sample: &[u8], complete: bool, max: usize) -> Vec<[usize; 4]> {
    let mut out = Vec::new();
    let mut counts = [0usize; 4];
    let mut in_quotes = false;
    let mut any = false;
    for &b in sample {
        match b {
            b'"' => {
                in_quotes = !in_quotes;
                any = true;
            }
            b'\n' if !in_quotes => {
                if any {
                    out.push(counts);
                    if out.len() == max {
                        return out;
                    }
                }
                counts = [0; 4];
                any = false;
            }
            b'\r' if !in_quotes => {}
            _ => {
                any = true;
                if !in_quotes && let Some(i) = CANDIDATES.iter().position(|&c| c == b) {
                    counts[i] += 1;
                }
            }
        }
    }
    if any && complete {
        out.push(counts);
    }
    out
}

/// What the first meaningful byte of a sample suggests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    JsonObject,
    JsonArray,
    Other,
}

/// What the input starts with. An array is `[` and then `{`, `[` or `]`: a CSV header may open with a
/// bracketed name (`[Id],[Name]`, as SQL Server writes them).
pub fn sniff_shape(sample: &[u8]) -> Shape {
    let mut bytes = sample.iter().filter(|b| !b.is_ascii_whitespace());
    match (bytes.next(), bytes.next()) {
        (Some(b'{'), _) => Shape::JsonObject,
        (Some(b'['), Some(b'{' | b'[' | b']')) => Shape::JsonArray,
        _ => Shape::Other,
    }
}

/// What the start of an input is when it is no text this reader can read, with what to do: a ZIP archive
/// (HubSpot and Salesforce's Data Export download as .zip; an .xlsx workbook is one too), a legacy .xls
/// workbook, or UTF-16 read as UTF-8 (no byte-order mark, so every other byte is NUL).
pub fn not_text(sample: &[u8], read_as_utf8: bool) -> Option<(&'static str, &'static str)> {
    if sample.starts_with(b"PK\x03\x04") {
        return Some((
            "a ZIP archive (a zipped export, or an .xlsx workbook)",
            "unzip it and pass the CSV inside, or save the sheet as CSV UTF-8",
        ));
    }
    if sample.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        return Some(("a legacy Excel workbook (.xls)", "save the sheet as CSV UTF-8"));
    }
    let head = &sample[..sample.len().min(4096)];
    let nuls = head.iter().filter(|b| **b == 0).count();
    if read_as_utf8 && head.len() >= 16 && nuls * 3 >= head.len() {
        return Some((
            "UTF-16 text without a byte-order mark (every other byte is 0)",
            "pass --encoding utf-16 (or utf-16be)",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_workbooks_and_bare_utf16_are_named() {
        assert!(not_text(b"PK\x03\x04\x14\x00rest", true).unwrap().0.starts_with("a ZIP archive"));
        assert!(not_text(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1], true).unwrap().0.contains(".xls"));
        let utf16: Vec<u8> = "Record ID,Email\n1,a@x.io\n".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert!(not_text(&utf16, true).unwrap().1.contains("--encoding utf-16"));
        assert_eq!(not_text(&utf16, false), None, "already decoded as asked");
        assert_eq!(not_text(b"Record ID,Email\n", true), None);
    }

    #[test]
    fn excel_sep_line_gives_the_delimiter_and_its_length() {
        let found = |s| excel_sep_line(s).map(|l| (l.delimiter, l.len, l.line));
        assert_eq!(found(b"sep=;\r\nId;Name\r\n"), Some((b';', 7, &b"sep=;"[..])));
        assert_eq!(found(b"SEP=|\nId|Name\n"), Some((b'|', 6, &b"SEP=|"[..])));
        assert_eq!(found(b"\xEF\xBB\xBFsep=\t\nId\tName\n"), Some((b'\t', 9, &b"sep=\t"[..])));
        assert_eq!(found(b"sep=;\rId;Name\r"), Some((b';', 6, &b"sep=;"[..])), "a lone CR ends it too");
        // Not a delimiter line: a header that starts with "sep", or no line ending after one character.
        assert_eq!(excel_sep_line(b"sep=;x\nId;Name\n"), None);
        assert_eq!(excel_sep_line(b"separator,name\n"), None);
        assert_eq!(excel_sep_line(b"sep=;"), None);
        assert_eq!(excel_sep_line(b"sep=\"\n"), None);
    }

    #[test]
    fn comma_semicolon_tab_pipe() {
        assert_eq!(sniff_delimiter(b"a,b,c\n1,2,3\n", true), Some(b','));
        assert_eq!(sniff_delimiter(b"a;b;c\n1,5;2,5;3\n", true), Some(b';'));
        assert_eq!(sniff_delimiter(b"a\tb\n1\t2\n", true), Some(b'\t'));
        assert_eq!(sniff_delimiter(b"a|b\n1|2\n", true), Some(b'|'));
    }

    #[test]
    fn quoted_delimiters_do_not_count() {
        let s = b"Name;Notes\n\"Smith, John\";\"a, b, c\"\n\"Doe, Jane\";x\n";
        assert_eq!(sniff_delimiter(s, true), Some(b';'));
    }

    #[test]
    fn quoted_newlines_do_not_split_records() {
        let s = b"a,b\n\"line1\nline2; with; semis\",2\n3,4\n";
        assert_eq!(sniff_delimiter(s, true), Some(b','));
    }

    #[test]
    fn prefers_the_consistent_candidate() {
        // Header has both a comma and a semicolon, but only ';' is consistent across rows.
        let s = b"Name;Address, City\nA;x\nB;y\nC;z\n";
        assert_eq!(sniff_delimiter(s, true), Some(b';'));
    }

    #[test]
    fn single_column_has_no_delimiter() {
        assert_eq!(sniff_delimiter(b"email\na@b.co\n", true), None);
        assert_eq!(sniff_delimiter(b"", true), None);
    }

    #[test]
    fn shape() {
        assert_eq!(sniff_shape(b"  \n{\"a\":1}"), Shape::JsonObject);
        assert_eq!(sniff_shape(b"[{}]"), Shape::JsonArray);
        assert_eq!(sniff_shape(b"[\n  {\n    \"id\": 1"), Shape::JsonArray);
        assert_eq!(sniff_shape(b"[Id],[Name]\n1,Ann\n"), Shape::Other);
        assert_eq!(sniff_shape(b"a,b"), Shape::Other);
    }
}
