//! Shapes real exports come in that the reader must see through, from the outside: Excel for Mac's lone-CR
//! line ends, two exports joined with `cat`, a Salesforce grand-totals row carrying sums, a JSON array saved
//! on one line, and Excel's `sep=` line. Each test is named after the bug it pins.

mod common;

use std::path::Path;

use common::*;

/// `savio-sync -q sync INPUT -m MAPPING --sandbox --no-state --report-dir reports`: the exit code, and the
/// results' rows as (line, entity, status) in line order (they are written as they complete).
fn sync_results(sb: &Sandbox, input: &Path, mapping: &Path) -> (i32, Vec<(u64, String, String)>) {
    let run = Run::from(
        sb.savio()
            .arg("-q")
            .arg("sync")
            .arg(input)
            .arg("-m")
            .arg(mapping)
            .args(["--sandbox", "--no-state", "--report-dir", "reports"])
            .output()
            .expect("run savio-sync"),
    );
    let results = std::fs::read_to_string(sb.path("reports/results.csv")).expect("results.csv");
    let mut reader = csv::Reader::from_reader(results.as_bytes());
    let mut rows = reader
        .records()
        .map(|r| {
            let r = r.expect("a results row");
            (r[0].parse().expect("a line"), r[1].to_string(), r[3].to_string())
        })
        .collect::<Vec<(u64, String, String)>>();
    rows.sort();
    (run.code, rows)
}

const CONTACTS: &str =
    "[contact]\ninternal_id = \"Record ID\"\nname = \"{First Name} {Last Name}\"\nemail = \"Email\"\n";

#[test]
fn a_mac_export_with_lone_cr_line_ends_reports_each_row_on_its_line() {
    // Excel for Mac's "CSV (Macintosh)": every row used to be reported as line 1, and the failures file
    // came back with LF line ends.
    let sb = Sandbox::new();
    let input = sb
        .write("mac.csv", "Record ID,First Name,Last Name,Email\r1,Ann,A,ann@x.com\r2,Bob,B,bad@@x\r3,Cy,C,cy@x.com\r");
    let mapping = sb.write("m.toml", CONTACTS);
    let failures = sb.path("failures.csv");
    let (run, s) = sb.summary(&input, &mapping, &["--failures", failures.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(groups(&s["failures"]), expect_groups(&[("contact.email: invalid email address", 1, &[3])]));
    assert_eq!(
        std::fs::read_to_string(&failures).unwrap(),
        "Record ID,First Name,Last Name,Email,_savio_line,_savio_error\r\
         2,Bob,B,bad@@x,3,\"contact.email \"\"bad@@x\"\" is not a valid email address\"\r"
    );
    let (code, rows) = sync_results(&sb, &input, &mapping);
    assert_eq!(code, 1);
    let lines: Vec<(u64, &str)> = rows.iter().map(|(l, _, status)| (*l, status.as_str())).collect();
    assert_eq!(lines, [(2, "ok"), (3, "failed"), (4, "ok")]);
}

#[test]
fn a_header_repeated_by_joining_two_exports_is_skipped_not_sent() {
    // `cat` of two HubSpot exports: the second header used to map as a company named "Company name".
    let sb = Sandbox::new();
    let export = std::fs::read_to_string(fixture("hubspot-companies.csv")).unwrap();
    let second_header = export.lines().count() as u64 + 1;
    let input = sb.write("joined.csv", format!("{export}{export}"));
    let (run, s) = sb.summary(&input, &preset("hubspot-companies"), &["--preview", "100"]);
    assert_eq!(run.code, 1, "the export's own invalid rows, twice: {run:?}");
    assert_eq!(s["skipped_rows"], 1);
    assert_eq!(
        groups(&s["skipped"]),
        expect_groups(&[("repeats the header (two exports joined?)", 1, &[second_header])])
    );
    let (single_run, single) = sb.summary(&fixture("hubspot-companies.csv"), &preset("hubspot-companies"), &[]);
    assert_eq!(single_run.code, 1);
    assert_eq!(s["payloads"], single["payloads"], "the second copy repeats companies already sent");
    assert_eq!(s["failed_rows"], 2 * single["failed_rows"].as_u64().unwrap());
    let (previews, _) = previews(&run.stdout);
    assert!(
        previews.iter().all(|p| p.line != second_header && p.payload["name"] != "Company name"),
        "the header is never a payload"
    );
    let (_, rows) = sync_results(&sb, &input, &preset("hubspot-companies"));
    let header_rows: Vec<_> = rows.iter().filter(|(l, _, _)| *l == second_header).collect();
    assert_eq!(header_rows, [&(second_header, "row".to_string(), "skipped".to_string())], "reported, never sent");
}

#[test]
fn a_grand_totals_row_carrying_sums_is_skipped_as_the_report_footer() {
    // A Salesforce report with a grand-totals row that sums Annual Revenue, re-saved by Excel in
    // windows-1252: the row used to fail ("company.name: required but empty").
    let sb = Sandbox::new();
    let report = b"Account ID,Account Name,Type,Annual Revenue,Created Date\r\n\
        0015g00000Qx7bZ,Caf\xE9 M\xFCller GmbH,Customer - Direct,2400000,2/2/2023\r\n\
        0015g00000Gn3rP,Brasserie Lef\xE8vre,Prospect,870000,3/14/2024\r\n\
        ,,,,\r\n\
        Grand Totals (2 records),,,3270000,\r\n\
        ,,,,\r\n\
        \"Copyright (c) 2000-2024 salesforce.com, inc. All rights reserved.\",,,,\r\n\
        Confidential Information - Do Not Distribute,,,,\r\n\
        Generated By:  Dana Scully  6/11/2024 9:03 AM,,,,\r\n\
        \"Acme, Inc.\",,,,\r\n";
    let input = sb.write("report.csv", report);
    let (run, s) = sb.summary(&input, &preset("salesforce-accounts"), &["--encoding", "windows-1252"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        Counts::of(&s),
        Counts { rows: 7, blank_rows: 2, valid_rows: 2, companies: 2, skipped_rows: 5, ..Default::default() }
    );
    assert_eq!(
        groups(&s["skipped"]),
        expect_groups(&[("a line of the report's footer (Salesforce), not data", 5, &[5, 7, 8, 9, 10])])
    );
    // A total of any other shape is no footer: it is a row, and here an incomplete one.
    let totals = sb.write("totals.csv", "Account ID,Account Name,Annual Revenue\r\n001,Acme,5\r\nTotal,,5\r\n");
    let (run, s) = sb.summary(&totals, &preset("salesforce-accounts"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(s["skipped_rows"], 0);
    assert_eq!(groups(&s["failures"]), expect_groups(&[("company.name: required but empty", 1, &[3])]));
}

#[test]
fn a_json_array_on_one_line_is_refused_with_the_jq_command() {
    // `jq -c -s` or curl output saved as .jsonl: it used to be one failed row (exit 1).
    let sb = Sandbox::new();
    let input = sb.write(
        "tickets.jsonl",
        "[{\"text\": \"Need SSO\", \"author\": {\"email\": \"ada@x.io\"}}, {\"text\": \"Dark mode\"}]\n",
    );
    let mapping = sb.write("m.toml", "[feedback]\nproblem = \"text\"\n");
    let failures = sb.path("failures.jsonl");
    let run = sb.validate([
        input.to_str().unwrap(),
        "-m",
        mapping.to_str().unwrap(),
        "--json",
        "--failures",
        failures.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("line 1 is a JSON array of 2 objects"), "{}", run.stderr);
    assert!(run.stderr.contains("jq -c '.[]' export.json > export.jsonl"), "{}", run.stderr);
    assert_eq!(run.stdout, "", "nothing processed");
    assert!(!failures.exists(), "nothing processed");
    // An array further down is that line's failure, as before.
    let later = sb.write("later.jsonl", "{\"text\": \"Need SSO\"}\n[{\"text\": \"Dark mode\"}]\n");
    let (run, s) = sb.summary(&later, &mapping, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(groups(&s["failures"]), expect_groups(&[("JSON array instead of an object", 1, &[2])]));
}

#[test]
fn a_json_array_on_stdin_is_refused_as_json_and_a_bracketed_csv_header_is_csv() {
    // On stdin there is no extension to go by: an array used to be read as a CSV whose header was `[{"text": ...`.
    let sb = Sandbox::new();
    let mapping = sb.write("m.toml", "[feedback]\nproblem = \"text\"\n");
    let stdin = |input: &str| {
        let out = sb
            .savio()
            .args(["-q", "validate", "-", "-m", mapping.to_str().unwrap(), "--json"])
            .write_stdin(input.to_string())
            .output()
            .unwrap();
        Run::from(out)
    };
    let run = stdin("[{\"text\": \"Need SSO\"}, {\"text\": \"Dark mode\"}]\n");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("line 1 is a JSON array of 2 objects"), "{}", run.stderr);
    let run = stdin("[\n  {\"text\": \"Need SSO\"}\n]\n");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("jq -c '.[]' export.json > export.jsonl"), "{}", run.stderr);
    // SQL Server brackets its column names: that is a CSV.
    let bracketed = sb.write("m2.toml", "[feedback]\nproblem = \"[text]\"\n");
    let out = sb
        .savio()
        .args(["-q", "validate", "-", "-m", bracketed.to_str().unwrap(), "--json"])
        .write_stdin("[id],[text]\n1,Need SSO\n")
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["format"], "csv", "{}", run.stdout);
}

#[test]
fn a_sep_line_is_kept_in_the_failures_file_and_not_called_detected() {
    // The failures file used to drop the input's `sep=;` line (Excel then opened it in one column), and the
    // summary called that delimiter "detected".
    let sb = Sandbox::new();
    let input = sb.write(
        "for-excel.csv",
        "\u{feff}sep=;\r\nRecord ID;First Name;Last Name;Email\r\n1;Ann;A;ann@x.com\r\n2;Bob;B;bad@@x\r\n",
    );
    let mapping = sb.write("m.toml", CONTACTS);
    let failures = sb.path("failures.csv");
    let run = sb.validate([input.to_str().unwrap(), "-m", mapping.to_str().unwrap()]);
    assert!(run.stdout.contains("(csv, delimiter ';' (from the file's sep= line), UTF-8 (BOM))"), "{}", run.stdout);
    assert!(!run.stdout.contains("detected"), "{}", run.stdout);
    let (run, s) = sb.summary(&input, &mapping, &["--failures", failures.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(s["delimiter_detected"], false);
    assert_eq!(s["delimiter_source"], "sep_line");
    let written = std::fs::read_to_string(&failures).unwrap();
    assert_eq!(
        written,
        "\u{feff}sep=;\r\nRecord ID;First Name;Last Name;Email;_savio_line;_savio_error\r\n\
         2;Bob;B;bad@@x;4;\"contact.email \"\"bad@@x\"\" is not a valid email address\"\r\n"
    );
    // Fed back in, its rows keep their line in the file (the sep line is line 1 there too).
    let again = sb.path("again.csv");
    let (run, s) = sb.summary(&failures, &mapping, &["--failures", again.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(groups(&s["failures"]), expect_groups(&[("contact.email: invalid email address", 1, &[3])]));
    assert!(std::fs::read_to_string(&again).unwrap().starts_with("\u{feff}sep=;\r\nRecord ID;"));
}
