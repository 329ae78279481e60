//! Helpers for the CLI tests: a hermetic `savio-sync` command, the fixtures and presets by name, readers
//! for what `validate` prints (previews, the `--json` summary) and writes (the failures file), and the
//! expected failures file built from the original export's own bytes.
//!
//! Fixtures live in `fixtures/`, presets in `mappings/`; each preset is named after the export it reads.
//! What each fixture stands for (the tests pin the rest):
//!
//! | fixture | export | byte-level traits |
//! |---|---|---|
//! | hubspot-contacts.csv | HubSpot contacts view | UTF-8 BOM, every field quoted, LF |
//! | hubspot-contacts-eu.csv | the same, re-saved by Excel (German settings) | BOM, `;`, CRLF, `;;;` tail rows |
//! | hubspot-companies.csv(.gz) | HubSpot companies view | every field quoted, LF; gzip copy |
//! | salesforce-contacts.csv | "Contacts & Accounts" report, Details Only | every field quoted, CRLF, 15-char ids |
//! | salesforce-contacts-api.csv | weekly Data Export, Contact.csv | API names, 18-char ids, quoted, LF |
//! | salesforce-accounts.csv | "Accounts" report, Details Only | every field quoted, CRLF |
//! | salesforce-accounts-excel.csv | an accounts report re-saved by Excel on Windows | windows-1252, CRLF |
//! | pipedrive-people.csv | Pipedrive people export | minimal quoting, LF |
//! | pipedrive-people-unicode.txt | the same kind, Excel "Unicode Text" | UTF-16LE BOM, TAB, CRLF |
//! | feedback.jsonl | Intercom-style conversations | a blank, a cut-off and an array line |

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// The repository root (fixtures and presets are found from here, never from the working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

/// A preset by name: `preset("hubspot-contacts")` is `mappings/hubspot-contacts.toml`.
pub fn preset(name: &str) -> PathBuf {
    root().join("mappings").join(format!("{name}.toml"))
}

/// Every preset with the fixtures it is written for. A new preset or fixture must be added here (a test
/// checks that nothing in `mappings/` or `fixtures/` is left out).
pub const PRESETS: &[(&str, &[&str])] = &[
    ("hubspot-contacts", &["hubspot-contacts.csv"]),
    ("hubspot-contacts-eu", &["hubspot-contacts-eu.csv"]),
    ("hubspot-companies", &["hubspot-companies.csv", "hubspot-companies.csv.gz"]),
    ("salesforce-contacts", &["salesforce-contacts.csv"]),
    ("salesforce-contacts-api", &["salesforce-contacts-api.csv"]),
    ("salesforce-accounts", &["salesforce-accounts.csv"]),
    ("pipedrive-people", &["pipedrive-people.csv"]),
    ("feedback", &["feedback.jsonl"]),
];

/// Fixtures that need a flag besides the preset to validate cleanly (they are checked by their own tests).
pub const FIXTURES_WITH_FLAGS: &[(&str, &str, &[&str])] = &[
    ("salesforce-accounts", "salesforce-accounts-excel.csv", &["--encoding", "windows-1252"]),
    ("pipedrive-people", "pipedrive-people-unicode.txt", &[]),
];

/// A scratch directory that is also the working directory of every command run from it.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox { dir: tempfile::tempdir().expect("a temporary directory") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).expect("write a scratch file");
        p
    }

    /// `savio-sync` with an empty environment (only PATH), run in the sandbox.
    pub fn savio(&self) -> Command {
        let mut cmd = Command::cargo_bin("savio-sync").expect("the savio-sync binary");
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// Runs `savio-sync -q validate <args>`.
    pub fn validate<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.savio();
        cmd.arg("-q").arg("validate").args(args);
        Run::from(cmd.output().expect("run savio-sync"))
    }

    /// Runs `savio-sync -q validate <input> -m <mapping> --json <extra>` and parses the summary.
    pub fn summary(&self, input: &Path, mapping: &Path, extra: &[&str]) -> (Run, Value) {
        let mut args: Vec<&OsStr> =
            vec![input.as_os_str(), OsStr::new("-m"), mapping.as_os_str(), OsStr::new("--json")];
        args.extend(extra.iter().map(OsStr::new));
        let run = self.validate(args);
        let summary = run.json();
        (run, summary)
    }
}

/// What a command did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Run {
    fn from(o: std::process::Output) -> Run {
        Run {
            code: o.status.code().expect("savio-sync exited (not killed by a signal)"),
            stdout: String::from_utf8(o.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(o.stderr).expect("stderr is UTF-8"),
        }
    }
}

impl Run {
    /// stdout as one JSON document (a `--json` run; previews, if any, are in its `preview`).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

/// One `--preview` payload: `# line N: entity` followed by the payload as pretty JSON.
#[derive(Debug, Clone)]
pub struct Preview {
    pub line: u64,
    pub entity: String,
    pub payload: Value,
    /// The payload's text exactly as printed.
    pub text: String,
}

/// Splits the stdout of `validate --preview N` into the previews and what follows them (the summary). With
/// `--json`, stdout is one JSON document whose `preview` array holds them: they are returned with the
/// document (without `preview`) as what follows.
pub fn previews(stdout: &str) -> (Vec<Preview>, String) {
    if stdout.starts_with('{') {
        let mut doc: Value = serde_json::from_str(stdout).expect("stdout is one JSON document");
        let items = doc.as_object_mut().expect("an object").remove("preview").expect("a preview array");
        let out = items
            .as_array()
            .expect("preview is an array")
            .iter()
            .map(|p| Preview {
                line: p["line"].as_u64().expect("line"),
                entity: p["entity"].as_str().expect("entity").to_string(),
                payload: p["payload"].clone(),
                text: serde_json::to_string_pretty(&p["payload"]).unwrap(),
            })
            .collect();
        return (out, serde_json::to_string_pretty(&doc).unwrap());
    }
    let mut out = Vec::new();
    let mut rest = stdout;
    while let Some(after) = rest.strip_prefix("# line ") {
        let (head, body) = after.split_once('\n').expect("a preview header line");
        let (line, entity) = head.split_once(": ").expect("'# line N: entity'");
        let mut stream = serde_json::Deserializer::from_str(body).into_iter::<Value>();
        let payload = stream.next().expect("a payload after the header").expect("the payload is valid JSON");
        let end = stream.byte_offset();
        out.push(Preview {
            line: line.parse().expect("a line number"),
            entity: entity.to_string(),
            payload,
            text: body[..end].to_string(),
        });
        rest = body[end..].strip_prefix('\n').unwrap_or(&body[end..]);
    }
    (out, rest.to_string())
}

/// The counts of a `--json` summary that every test checks, in one comparable value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub rows: u64,
    pub blank_rows: u64,
    pub valid_rows: u64,
    pub companies: u64,
    pub contacts: u64,
    pub feedback: u64,
    pub duplicate_company_rows: u64,
    pub duplicate_rows: u64,
    pub skipped_rows: u64,
    pub failed_rows: u64,
}

impl Counts {
    pub fn of(summary: &Value) -> Counts {
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        Counts {
            rows: n(&summary["rows"]),
            blank_rows: n(&summary["blank_rows"]),
            valid_rows: n(&summary["valid_rows"]),
            companies: n(&summary["payloads"]["company"]),
            contacts: n(&summary["payloads"]["contact"]),
            feedback: n(&summary["payloads"]["feedback"]),
            duplicate_company_rows: n(&summary["duplicate_company_rows"]),
            duplicate_rows: n(&summary["duplicate_rows"]),
            skipped_rows: n(&summary["skipped_rows"]),
            failed_rows: n(&summary["failed_rows"]),
        }
    }
}

/// A `--json` summary's `failures` or `skipped` groups: reason → (count, first lines).
pub fn groups(v: &Value) -> BTreeMap<String, (u64, Vec<u64>)> {
    v.as_object()
        .expect("groups are an object")
        .iter()
        .map(|(reason, g)| {
            let lines = g["first_lines"]
                .as_array()
                .expect("first_lines")
                .iter()
                .map(|l| l.as_u64().expect("a line number"))
                .collect();
            (reason.clone(), (g["count"].as_u64().expect("a count"), lines))
        })
        .collect()
}

/// Builds the expected groups from `(reason, count, lines)` triples.
pub fn expect_groups(items: &[(&str, u64, &[u64])]) -> BTreeMap<String, (u64, Vec<u64>)> {
    items.iter().map(|(r, c, l)| (r.to_string(), (*c, l.to_vec()))).collect()
}

/// How the bytes of an export are text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enc {
    Utf8,
    Utf16Le,
    Windows1252,
}

impl Enc {
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Enc::Utf8 => String::from_utf8(bytes.to_vec()).expect("UTF-8 text"),
            Enc::Utf16Le => {
                assert!(bytes.len().is_multiple_of(2), "UTF-16 text has an even length");
                let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                String::from_utf16(&units).expect("UTF-16LE text")
            }
            Enc::Windows1252 => {
                let (text, _, bad) = encoding_rs::WINDOWS_1252.decode(bytes);
                assert!(!bad, "windows-1252 text");
                text.into_owned()
            }
        }
    }

    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Enc::Utf8 => text.as_bytes().to_vec(),
            Enc::Utf16Le => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            Enc::Windows1252 => {
                let (bytes, _, bad) = encoding_rs::WINDOWS_1252.encode(text);
                assert!(!bad, "text fits windows-1252");
                bytes.into_owned()
            }
        }
    }
}

/// An export as text, split into its header and records exactly as they are written (quotes, inner line
/// breaks and all), each with the line it starts on.
#[derive(Debug, Clone)]
pub struct RawExport {
    pub bom: Vec<u8>,
    pub enc: Enc,
    pub eol: &'static str,
    pub header: String,
    /// (first line, the record's text without its line ending)
    pub records: Vec<(u64, String)>,
}

impl RawExport {
    /// Reads a (possibly gzipped) CSV export. A UTF-8 or UTF-16LE byte-order mark is kept aside.
    pub fn read(path: &Path, enc: Enc) -> RawExport {
        let mut bytes = std::fs::read(path).expect("read the export");
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out).expect("gunzip");
            bytes = out;
        }
        let bom_len = if bytes.starts_with(b"\xEF\xBB\xBF") {
            3
        } else if bytes.starts_with(b"\xFF\xFE") {
            2
        } else {
            0
        };
        let bom = bytes[..bom_len].to_vec();
        let text = enc.decode(&bytes[bom_len..]);
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        // A record goes on over line breaks while a quote is open; a doubled quote opens and closes.
        let mut records = Vec::new();
        let mut current: Option<(u64, String)> = None;
        for (i, line) in text.split('\n').enumerate() {
            let line_no = i as u64 + 1;
            match current.as_mut() {
                Some((_, acc)) => {
                    acc.push('\n');
                    acc.push_str(line);
                }
                None => current = Some((line_no, line.to_string())),
            }
            let (_, acc) = current.as_ref().expect("a record in progress");
            if acc.matches('"').count().is_multiple_of(2) {
                let (start, mut rec) = current.take().expect("a record in progress");
                if rec.ends_with('\r') {
                    rec.pop();
                }
                records.push((start, rec));
            }
        }
        assert!(current.is_none(), "the export ends inside a quoted field");
        if records.last().is_some_and(|(_, r)| r.is_empty()) {
            records.pop(); // after the final line ending
        }
        let (_, header) = records.remove(0);
        RawExport { bom, enc, eol, header, records }
    }

    /// The record starting on `line`, as written.
    pub fn record(&self, line: u64) -> &str {
        &self.records.iter().find(|(l, _)| *l == line).unwrap_or_else(|| panic!("no record starts on line {line}")).1
    }

    /// Whether every field of the export's header is in double quotes (HubSpot, Salesforce).
    pub fn header_all_quoted(&self, delimiter: char) -> bool {
        all_quoted(&self.header, delimiter)
    }

    /// The failures file `validate --failures` should write for these failed rows: the header and each
    /// row byte for byte as in the export, plus `_savio_line` and `_savio_error`, in the export's
    /// delimiter, line ending, encoding and byte-order mark. The two added names and values are quoted
    /// like the header: always when its every field is quoted, else only when needed.
    pub fn expected_failures(&self, delimiter: char, failed: &[(u64, String)]) -> Vec<u8> {
        let d = delimiter;
        let field = |s: &str| {
            if self.header_all_quoted(d) { format!("\"{}\"", s.replace('"', "\"\"")) } else { csv_field(s, d) }
        };
        let mut text = format!("{}{d}{}{d}{}{}", self.header, field("_savio_line"), field("_savio_error"), self.eol);
        for (line, reason) in failed {
            let record = self.record(*line);
            text.push_str(&format!("{record}{d}{}{d}{}{}", field(&line.to_string()), field(reason), self.eol));
        }
        let mut out = self.bom.clone();
        out.extend(self.enc.encode(&text));
        out
    }
}

/// Whether every field of a CSV line is in double quotes (a quote inside a field is doubled).
pub fn all_quoted(line: &str, delimiter: char) -> bool {
    let fields = parse_csv(&format!("{line}\n"), delimiter as u8).header;
    let rebuilt: Vec<String> = fields.iter().map(|f| format!("\"{}\"", f.replace('"', "\"\""))).collect();
    rebuilt.join(&delimiter.to_string()) == line
}

/// A field as a CSV writer that quotes only when needed writes it.
pub fn csv_field(s: &str, delimiter: char) -> String {
    if s.contains([delimiter, '"', '\r', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// A failures file (CSV) parsed: its header and its rows as fields.
#[derive(Debug, Clone)]
pub struct FailuresCsv {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl FailuresCsv {
    pub fn read(path: &Path, enc: Enc, delimiter: u8) -> FailuresCsv {
        let bytes = std::fs::read(path).expect("read the failures file");
        let bom_len =
            [&b"\xEF\xBB\xBF"[..], &b"\xFF\xFE"[..]].iter().find(|b| bytes.starts_with(b)).map_or(0, |b| b.len());
        parse_csv(&enc.decode(&bytes[bom_len..]), delimiter)
    }

    /// `(_savio_line, _savio_error)` of every row.
    pub fn reasons(&self) -> Vec<(u64, String)> {
        let at = |name: &str| {
            self.header
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("no column {name} in {:?}", self.header))
        };
        let (l, e) = (at("_savio_line"), at("_savio_error"));
        self.rows.iter().map(|r| (r[l].parse().expect("_savio_line is a number"), r[e].clone())).collect()
    }

    /// The rows without the two columns `validate` adds.
    pub fn original_fields(&self) -> Vec<Vec<String>> {
        let keep: Vec<usize> = (0..self.header.len()).filter(|&i| !self.header[i].starts_with("_savio_")).collect();
        self.rows.iter().map(|r| keep.iter().map(|&i| r[i].clone()).collect()).collect()
    }
}

/// Parses CSV text with the csv crate (no header handling: the first record is the header).
pub fn parse_csv(text: &str, delimiter: u8) -> FailuresCsv {
    let mut rdr =
        csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut all: Vec<Vec<String>> =
        rdr.records().map(|r| r.expect("valid CSV").iter().map(str::to_string).collect()).collect();
    let header = all.remove(0);
    FailuresCsv { header, rows: all }
}

/// The fields of the records starting on `lines` in an export, parsed.
pub fn export_fields(raw: &RawExport, delimiter: u8, lines: &[u64]) -> Vec<Vec<String>> {
    lines
        .iter()
        .map(|l| {
            let text = format!("h\n{}\n", raw.record(*l));
            parse_csv(&text, delimiter).rows.remove(0)
        })
        .collect()
}
