//! `savio-sync demo` from the outside: the real binary, with an empty environment, run from a folder that
//! holds no fixtures (the demo carries its own), writing its reports where it says.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

/// The demo's exports in order, with the rows each has and how many fail on purpose (as `validate` says).
const FILES: &[(&str, &str, u64, u64)] = &[
    ("hubspot-companies.csv", "hubspot-companies", 18, 2),
    ("hubspot-contacts.csv", "hubspot-contacts", 24, 3),
    ("salesforce-accounts.csv", "salesforce-accounts", 16, 0),
    ("salesforce-contacts.csv", "salesforce-contacts", 20, 2),
    ("pipedrive-people.csv", "pipedrive-people", 20, 2),
    ("feedback.jsonl", "feedback", 19, 5),
];

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn demo(dir: &Path, args: &[&str]) -> Out {
    let out = Command::cargo_bin("savio-sync")
        .unwrap()
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir)
        .arg("demo")
        .args(args)
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn repo(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn demo_runs_anywhere_with_no_token_and_shows_what_landed() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo(dir.path(), &["--report-dir", "out"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let stdout = &out.stdout;

    // One line per export, in the demo's order, with its rows and its failures.
    let mut at = 0;
    for (fixture, _, rows, failed) in FILES {
        let line = stdout.lines().find(|l| l.trim_start().starts_with(fixture)).unwrap_or_else(|| panic!("{stdout}"));
        let numbers: Vec<u64> = line.split_whitespace().skip(1).take(4).map(|n| n.parse().unwrap()).collect();
        assert_eq!((numbers[0], numbers[2]), (*rows, *failed), "{line}");
        let pos = stdout.find(line).unwrap();
        assert!(pos > at, "{fixture} comes after the exports before it");
        at = pos;
    }
    // The same counts tests/roundtrip.rs computes for the demo's sequence.
    assert!(
        stdout.contains(
            "Landed in the sandbox (read back through the list endpoints): 45 companies, 53 contacts, 13 feedback"
        ),
        "{stdout}"
    );
    for heading in ["A few contacts as Savio lists them:", "A few companies:", "A few pieces of feedback:"] {
        let after = stdout.split(heading).nth(1).unwrap_or_else(|| panic!("no {heading:?} in {stdout}"));
        let shown = after.lines().skip(1).take_while(|l| l.starts_with("  ")).count();
        assert_eq!(shown, 3, "{heading}\n{stdout}");
    }
    assert!(
        stdout.contains("Ada Lovelace <ada.lovelace@analytical-engines.co.uk> · company Analytical Engines Ltd"),
        "{stdout}"
    );
    assert!(stdout.contains("Reports:   out "), "{stdout}");
    assert!(!stdout.contains("Problem:"), "{stdout}");

    // The reports of each export, and the inputs the demo used: the repository's files, byte for byte.
    let out_dir = dir.path().join("out");
    for (fixture, preset, rows, failed) in FILES {
        let stem = fixture.split('.').next().unwrap();
        let summary: Value =
            serde_json::from_slice(&std::fs::read(out_dir.join(stem).join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["rows"], *rows, "{fixture}");
        assert_eq!(summary["rows_by_status"]["failed"].as_u64().unwrap_or(0), *failed, "{fixture}");
        assert!(out_dir.join(stem).join("results.csv").is_file());
        let failures = if fixture.ends_with(".jsonl") { "failures.jsonl" } else { "failures.csv" };
        assert!(out_dir.join(stem).join(failures).is_file(), "{fixture}");
        assert_eq!(std::fs::read(out_dir.join("inputs").join(fixture)).unwrap(), repo(&format!("fixtures/{fixture}")));
        assert_eq!(
            std::fs::read(out_dir.join("inputs").join(format!("{preset}.toml"))).unwrap(),
            repo(&format!("mappings/{preset}.toml"))
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing written outside the report folder");
}

#[test]
fn demo_output_is_the_same_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let first = demo(dir.path(), &["-q", "--report-dir", "a"]);
    let second = demo(dir.path(), &["-q", "--report-dir", "b"]);
    assert_eq!((first.code, second.code), (0, 0), "{}", second.stderr);
    assert_eq!(first.stdout.replace(" a ", " b ").replace("a/inputs", "b/inputs"), second.stdout);
    assert_eq!(first.stderr, "", "-q: nothing on stderr");
}

#[test]
fn demo_reports_go_to_a_new_folder_under_savio_reports_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo(dir.path(), &["-q"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let folders: Vec<String> = std::fs::read_dir(dir.path().join("savio-reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    assert!(folders[0].starts_with("demo-"), "{folders:?}");
    assert!(out.stdout.contains(&format!("Reports:   savio-reports/{} ", folders[0])), "{}", out.stdout);
    let again = demo(dir.path(), &["-q"]);
    assert_eq!(again.code, 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("savio-reports")).unwrap().count(),
        2,
        "a second run never reuses the folder"
    );
}
