//! The presets in `mappings/` cannot rot: each one compiles against the fixtures of the export it is
//! written for, each opens with the comment block users read first, and no preset or fixture is left
//! without the other.

mod common;

use std::collections::BTreeSet;

use common::*;

fn names_in(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("list {dir}/: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_preset_and_fixture_is_paired() {
    let presets: BTreeSet<String> = names_in("mappings");
    let listed: BTreeSet<String> = PRESETS.iter().map(|(name, _)| format!("{name}.toml")).collect();
    assert_eq!(presets, listed, "every file in mappings/ is listed in tests/common PRESETS");
    let fixtures = names_in("fixtures");
    let used: BTreeSet<String> = PRESETS
        .iter()
        .flat_map(|(_, f)| f.iter())
        .chain(FIXTURES_WITH_FLAGS.iter().map(|(_, f, _)| f))
        .map(|f| f.to_string())
        .collect();
    assert_eq!(fixtures, used, "every fixture is read by a preset");
}

#[test]
fn every_preset_compiles_against_its_fixtures() {
    let sb = Sandbox::new();
    let pairs = PRESETS
        .iter()
        .flat_map(|(p, fs)| fs.iter().map(move |f| (*p, *f, &[][..])))
        .chain(FIXTURES_WITH_FLAGS.iter().map(|(p, f, flags)| (*p, *f, *flags)));
    for (name, file, flags) in pairs {
        let mut args =
            vec![fixture(file).display().to_string(), "-m".into(), preset(name).display().to_string(), "--json".into()];
        args.extend(flags.iter().map(|s| s.to_string()));
        let run = sb.validate(&args);
        assert!(run.code == 0 || run.code == 1, "{name} cannot read {file}: {}", run.stderr);
        let s = run.json();
        assert!(s["warnings"].as_array().is_some_and(Vec::is_empty), "{name} on {file}: {}", s["warnings"]);
        assert!(s["valid_rows"].as_u64().unwrap() > 0, "{name} maps rows of {file}");
    }
}

#[test]
fn every_preset_opens_with_where_the_export_comes_from_what_it_maps_and_what_to_adjust() {
    for (name, _) in PRESETS {
        let text = std::fs::read_to_string(preset(name)).unwrap();
        let head: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        assert!(head.len() >= 8, "{name}.toml starts with a comment block ({} lines)", head.len());
        let head = head.join("\n");
        for needle in ["Export", "Maps:", "Adjust:"] {
            assert!(head.contains(needle), "{name}.toml: no {needle:?} in\n{head}");
        }
    }
}

#[test]
fn gz_fixture_is_the_companies_export_compressed() {
    let gz = std::fs::read(fixture("hubspot-companies.csv.gz")).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
    assert_eq!(plain, std::fs::read(fixture("hubspot-companies.csv")).unwrap());
}

#[test]
fn fixtures_have_the_byte_level_traits_they_stand_for() {
    let bytes = |f: &str| std::fs::read(fixture(f)).unwrap();
    let hubspot = bytes("hubspot-contacts.csv");
    assert!(hubspot.starts_with(b"\xEF\xBB\xBF\"Record ID\",\"First Name\""));
    assert!(!hubspot.windows(2).any(|w| w == b"\r\n"), "LF");
    let eu = bytes("hubspot-contacts-eu.csv");
    assert!(eu.starts_with(b"\xEF\xBB\xBFRecord ID;First Name;"));
    assert!(eu.ends_with(b";;;;;;;;;;;\r\n;;;;;;;;;;;\r\n;;;;;;;;;;;\r\n"));
    assert!(
        bytes("salesforce-contacts.csv").starts_with(b"\"Contact ID\",\"Account ID\",")
            && bytes("salesforce-contacts.csv").ends_with(b"\"\r\n")
    );
    let excel = bytes("salesforce-accounts-excel.csv");
    assert!(std::str::from_utf8(&excel).is_err(), "not UTF-8");
    assert!(excel.windows(4).any(|w| w == b"Caf\xE9"), "windows-1252 é");
    assert!(
        bytes("pipedrive-people-unicode.txt").starts_with(b"\xFF\xFEP\0e\0r\0s\0o\0n\0 \0-\0 \0I\0D\0\t\0"),
        "UTF-16LE with a BOM, TAB separated"
    );
    let jsonl = String::from_utf8(bytes("feedback.jsonl")).unwrap();
    let lines: Vec<&str> = jsonl.lines().collect();
    assert_eq!(lines[3], "", "a blank line");
    assert!(serde_json::from_str::<serde_json::Value>(lines[4]).is_err());
    assert!(serde_json::from_str::<serde_json::Value>(lines[5]).unwrap().is_array());
    assert_eq!(lines[0], lines[19], "the last line repeats the first");
}
