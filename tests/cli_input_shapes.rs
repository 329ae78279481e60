//! Shapes real exports come in that the reader must see through, from the outside: Excel for Mac's lone-CR
//! line ends. Each test is named after the bug it pins.

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
