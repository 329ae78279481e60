//! `savio-sync validate` from the outside, against real-looking CRM exports (`fixtures/`) and the presets
//! written for them (`mappings/`): exact counts, failure reasons with their lines, previews, the failures
//! file and its round trip, exit codes, stdin, gzip and text encodings.
//!
//! Tests named after a bug pin its fix; none is ignored (every bug they were written for is fixed).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

// ------------------------------------------------------------------------------------------------ helpers

/// One export with its preset, how to read it and which rows must fail (line, full reason).
struct Case {
    fixture: &'static str,
    preset: &'static str,
    flags: &'static [&'static str],
    enc: Enc,
    delimiter: u8,
    failed: &'static [(u64, &'static str)],
}

impl Case {
    fn input(&self) -> PathBuf {
        fixture(self.fixture)
    }

    fn mapping(&self) -> PathBuf {
        preset(self.preset)
    }

    /// The failures file name, with the export's extension (without `.gz`).
    fn failures_name(&self, stem: &str) -> String {
        let ext = self.fixture.trim_end_matches(".gz").rsplit('.').next().expect("an extension");
        format!("{stem}.{ext}")
    }

    /// Validates with `--failures` and returns the failures file's path after checking the exit code.
    fn write_failures(&self, sb: &Sandbox) -> PathBuf {
        let out = sb.path(&self.failures_name("failures"));
        let mut args: Vec<String> = vec![
            self.input().display().to_string(),
            "-m".into(),
            self.mapping().display().to_string(),
            "--failures".into(),
            out.display().to_string(),
        ];
        args.extend(self.flags.iter().map(|s| s.to_string()));
        let run = sb.validate(&args);
        assert_eq!(run.code, 1, "some rows are invalid: {run:?}");
        out
    }

    fn expected_reasons(&self) -> Vec<(u64, String)> {
        self.failed.iter().map(|(l, r)| (*l, r.to_string())).collect()
    }

    fn lines(&self) -> Vec<u64> {
        self.failed.iter().map(|(l, _)| *l).collect()
    }
}

/// The failures file has the export's header plus the two columns, the failed rows' fields unchanged, the
/// reasons, and the export's byte-order mark, line ending, delimiter and encoding.
fn assert_failures_file_keeps_the_rows(case: &Case) {
    let sb = Sandbox::new();
    let out = case.write_failures(&sb);
    let raw = RawExport::read(&case.input(), case.enc);
    let got = FailuresCsv::read(&out, case.enc, case.delimiter);

    let mut header = parse_csv(&format!("{}\n", raw.header), case.delimiter).header;
    header.extend(["_savio_line".to_string(), "_savio_error".to_string()]);
    assert_eq!(got.header, header, "header plus the two columns");
    assert_eq!(got.reasons(), case.expected_reasons(), "lines and reasons");
    assert_eq!(
        got.original_fields(),
        export_fields(&raw, case.delimiter, &case.lines()),
        "the failed rows' fields are unchanged"
    );

    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.starts_with(&raw.bom), "same byte-order mark as the export");
    if raw.bom.is_empty() {
        assert!(
            !bytes.starts_with(b"\xEF\xBB\xBF") && !bytes.starts_with(b"\xFF\xFE"),
            "no byte-order mark the export did not have"
        );
    }
    let text = case.enc.decode(&bytes[raw.bom.len()..]);
    let crlf = text.matches("\r\n").count();
    let lf = text.matches('\n').count();
    let inner = case.lines().iter().map(|l| raw.record(*l).matches('\n').count()).sum::<usize>();
    if raw.eol == "\r\n" {
        assert_eq!(crlf, lf - inner, "every record ends in CRLF, like the export");
    } else {
        assert_eq!(crlf, 0, "records end in LF, like the export");
    }
    let header_line = text.split(raw.eol).next().unwrap();
    let d = case.delimiter as char;
    let added = if raw.header_all_quoted(d) { format!("{d}\"_savio_line\"") } else { format!("{d}_savio_line") };
    assert!(header_line.contains(&added), "the export's delimiter and quoting: {header_line:?}");
}

/// The failures file is the header and each failed row byte for byte as in the export, plus the two
/// columns.
fn assert_failures_file_is_byte_for_byte(case: &Case) {
    let sb = Sandbox::new();
    let out = case.write_failures(&sb);
    let raw = RawExport::read(&case.input(), case.enc);
    let expected = raw.expected_failures(case.delimiter as char, &case.expected_reasons());
    let got = std::fs::read(&out).unwrap();
    if got != expected {
        panic!(
            "failures file differs from the export's rows\n--- expected\n{}\n--- got\n{}",
            case.enc.decode(&expected[raw.bom.len()..]),
            case.enc.decode(&got[raw.bom.len().min(got.len())..])
        );
    }
}

/// Fed back in with the same mapping, the failures file fails again: the same rows, the same reasons.
fn assert_failures_file_fails_again(case: &Case) {
    let sb = Sandbox::new();
    let first = case.write_failures(&sb);
    let second = sb.path(&case.failures_name("failures-again"));
    let mut extra: Vec<&str> = vec!["--failures", second.to_str().unwrap()];
    extra.extend(case.flags);
    let (run, summary) = sb.summary(&first, &case.mapping(), &extra);
    assert_eq!(run.code, 1, "{run:?}");
    let n = case.failed.len() as u64;
    assert_eq!(
        Counts::of(&summary),
        Counts { rows: n, failed_rows: n, ..Default::default() },
        "only the failed rows, failing again"
    );
    let again = FailuresCsv::read(&second, case.enc, case.delimiter);
    let reasons: Vec<String> = again.reasons().into_iter().map(|(_, r)| r).collect();
    let expected: Vec<String> = case.failed.iter().map(|(_, r)| r.to_string()).collect();
    assert_eq!(reasons, expected, "the same reasons, in the same order");
    assert_eq!(
        again.original_fields(),
        FailuresCsv::read(&first, case.enc, case.delimiter).original_fields(),
        "the same rows"
    );
}

fn preview_at<'a>(previews: &'a [Preview], line: u64, entity: &str) -> &'a Value {
    &previews
        .iter()
        .find(|p| p.line == line && p.entity == entity)
        .unwrap_or_else(|| panic!("no {entity} preview for line {line}"))
        .payload
}

/// Runs `validate --preview 1000` and returns every payload, checking each is pretty-printed JSON.
fn all_previews(sb: &Sandbox, input: &Path, mapping: &Path, flags: &[&str]) -> Vec<Preview> {
    let mut args = vec![input.to_str().unwrap(), "-m", mapping.to_str().unwrap(), "--preview", "1000"];
    args.extend(flags);
    let run = sb.validate(&args);
    assert_ne!(run.code, 2, "{run:?}");
    let (previews, rest) = previews(&run.stdout);
    for p in &previews {
        assert_eq!(
            p.text,
            serde_json::to_string_pretty(&p.payload).unwrap(),
            "line {}: a preview is pretty JSON",
            p.line
        );
    }
    assert!(rest.starts_with("Input:"), "the text summary follows: {rest}");
    previews
}

fn entities_by_line(previews: &[Preview]) -> Vec<(u64, &str)> {
    previews.iter().map(|p| (p.line, p.entity.as_str())).collect()
}

// ------------------------------------------------------------------------------------ HubSpot contacts

const HUBSPOT_CONTACTS: Case = Case {
    fixture: "hubspot-contacts.csv",
    preset: "hubspot-contacts",
    flags: &[],
    enc: Enc::Utf8,
    delimiter: b',',
    failed: &[
        (10, "contact.internal_id is required but empty (from column 'Record ID')"),
        (11, "contact.email \"sarah.connor@cyberdyne\" is not a valid email address"),
        (20, "contact.email \"tom.jones@gmail,com\" is not a valid email address"),
    ],
};

#[test]
fn hubspot_contacts_counts_and_failures_by_reason_with_lines() {
    let sb = Sandbox::new();
    let (run, s) = sb.summary(&fixture("hubspot-contacts.csv"), &preset("hubspot-contacts"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        Counts::of(&s),
        Counts {
            rows: 24,
            valid_rows: 21,
            companies: 13,
            contacts: 20,
            duplicate_rows: 1,
            failed_rows: 3,
            ..Default::default()
        },
        "line 8 repeats line 2 exactly: a valid row with nothing new to send"
    );
    assert_eq!(groups(&s["duplicates"]), expect_groups(&[("contact identical to an earlier one", 1, &[8])]));
    assert_eq!(
        groups(&s["failures"]),
        expect_groups(&[
            ("contact.email: invalid email address", 2, &[11, 20]),
            ("contact.internal_id: required but empty", 1, &[10]),
        ])
    );
    assert_eq!(s["encoding"], "UTF-8 (BOM)");
    assert_eq!(s["delimiter"], ",");
    assert_eq!(s["delimiter_detected"], true);
    assert_eq!(
        s["company_name_conflicts"], 1,
        "company 8765432102 is 'Navy Systems, Inc.' on line 3 and 'Navy Systems Inc' on line 15"
    );
}

#[test]
fn hubspot_contacts_preview_sends_each_company_once_before_its_first_contact() {
    let sb = Sandbox::new();
    let p = all_previews(&sb, &fixture("hubspot-contacts.csv"), &preset("hubspot-contacts"), &[]);
    assert_eq!(p.len(), 33, "13 companies and 20 contacts");
    // Line 9 has an email and no name: the preset names the contact by its email (Savio requires a name).
    assert_eq!(preview_at(&p, 9, "contact")["name"], "noname@example.com");
    assert_eq!(
        entities_by_line(&p[..6]),
        vec![(2, "company"), (2, "contact"), (3, "company"), (3, "contact"), (4, "company"), (4, "contact")]
    );
    assert_eq!(preview_at(&p, 2, "company"), &json!({"name": "Analytical Engines Ltd", "internal_id": "8765432101"}));
    // Line 8 repeats line 2 (same record twice in the export): neither its company nor its contact is sent
    // again.
    assert!(!p.iter().any(|x| x.line == 8), "line 8 sends nothing");
    // The company of line 15 already went with line 3 (under its first name).
    assert_eq!(preview_at(&p, 15, "contact")["company_internal_id"], "8765432102");
    assert!(!p.iter().any(|x| x.line == 15 && x.entity == "company"));
    assert_eq!(preview_at(&p, 3, "company")["name"], "Navy Systems, Inc.", "a quoted comma");
}

#[test]
fn hubspot_contacts_with_several_associated_companies_link_the_primary_one_and_derive_no_mixed_company() {
    let sb = Sandbox::new();
    let input = sb.write(
        "contacts.csv",
        "\u{feff}\"Record ID\",\"First Name\",\"Last Name\",\"Email\",\"Primary Associated Company ID\",\"Associated Company\"\n\
         \"101\",\"Ada\",\"Lovelace\",\"ada@x.com\",\"9001\",\"Analytical Engines\"\n\
         \"102\",\"Grace\",\"Hopper\",\"grace@navy.mil\",\"9002\",\"Navy Systems, Inc.;US Navy\"\n",
    );
    let p = all_previews(&sb, &input, &preset("hubspot-contacts"), &[]);
    assert_eq!(entities_by_line(&p), vec![(2, "company"), (2, "contact"), (3, "contact")]);
    assert_eq!(preview_at(&p, 3, "contact")["company_internal_id"], "9002");
    assert_eq!(preview_at(&p, 2, "contact")["company_internal_id"], "9001");
}

#[test]
fn validate_shows_each_mapping_warning_once() {
    let sb = Sandbox::new();
    let input = sb.write("contacts.csv", "Record ID,First Name,Email\n1,Ada,ada@x.com\n");
    let mapping = sb.write(
        "m.toml",
        "[input]\nmissing_columns = \"empty\"\n[contact]\ninternal_id = \"Record ID\"\nname = \"First Name\"\n\
         email = \"Email\"\n[contact.filterable_attributes]\ncity = \"City\"\n",
    );
    let out = sb.savio().arg("validate").arg(&input).arg("-m").arg(&mapping).output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(all.matches("no column 'City' in the input").count(), 1, "{all}");
}

#[test]
fn hubspot_contacts_preview_values_are_cleaned() {
    let sb = Sandbox::new();
    let p = all_previews(&sb, &fixture("hubspot-contacts.csv"), &preset("hubspot-contacts"), &[]);
    assert_eq!(
        preview_at(&p, 2, "contact"),
        &json!({
            "name": "Ada Lovelace",
            "internal_id": "51234567801",
            "email": "ada.lovelace@analytical-engines.co.uk",
            "company_internal_id": "8765432101",
            "filterable_attributes": {
                "city": "London",
                "country": "United Kingdom",
                "created": "2024-03-05T14:22:00",
                "customer_type": "ACTIVE",
                "job_title": "CTO",
                "last_activity": "2024-06-11T09:03:00",
                "lead_status": "Connected",
                "lifecycle_stage": "Customer",
                "owner": "Maya Patel"
            }
        })
    );
    let grace = preview_at(&p, 3, "contact");
    assert_eq!(grace["email"], "grace.hopper@navy-systems.com", "padded, mixed-case email trimmed and lowercased");
    assert_eq!(grace["filterable_attributes"]["customer_type"], "PROSPECT");
    assert_eq!(preview_at(&p, 4, "contact")["name"], "José Álvarez-Núñez");
    assert_eq!(preview_at(&p, 4, "contact")["filterable_attributes"]["created"], "2024-02-29T11:45:00");
    assert_eq!(preview_at(&p, 6, "contact")["name"], "美咲 田中", "the row after a quoted line break keeps its line");
    assert_eq!(preview_at(&p, 6, "company")["name"], "さくらロボティクス株式会社");
    assert_eq!(preview_at(&p, 7, "contact")["name"], "Chloé Dubois 🌸");
    assert_eq!(preview_at(&p, 12, "contact")["email"], "marcus.aurelius@roma-imperium.it");
    assert_eq!(preview_at(&p, 17, "contact")["name"], "지민 박");
    assert_eq!(preview_at(&p, 18, "contact")["name"], "Дмитрий Иванов");
    assert_eq!(
        preview_at(&p, 19, "contact")["filterable_attributes"]["job_title"],
        "Head of \"Customer Happiness\"",
        "doubled quotes inside a quoted field"
    );
    assert_eq!(preview_at(&p, 16, "contact")["filterable_attributes"]["customer_type"], "OTHER", "map_default");
    let keanu = preview_at(&p, 22, "contact");
    assert_eq!(keanu["name"], "Keanu", "no trailing space without a last name");
    assert!(keanu.get("company_internal_id").is_none());
    let reeves = preview_at(&p, 23, "contact");
    assert_eq!(reeves["name"], "Reeves");
    assert!(reeves.get("email").is_none(), "an empty email is not sent");
    assert!(reeves["filterable_attributes"].get("city").is_none(), "empty cells are not sent");
}

#[test]
fn hubspot_contacts_failures_file_keeps_bom_header_and_rows() {
    assert_failures_file_keeps_the_rows(&HUBSPOT_CONTACTS);
}

#[test]
fn hubspot_contacts_failures_file_is_byte_for_byte() {
    assert_failures_file_is_byte_for_byte(&HUBSPOT_CONTACTS);
}

#[test]
fn hubspot_contacts_failures_file_fails_again_with_the_same_reasons() {
    assert_failures_file_fails_again(&HUBSPOT_CONTACTS);
}

// ------------------------------------------------------------------------ HubSpot contacts, Excel (EU)

const HUBSPOT_CONTACTS_EU: Case = Case {
    fixture: "hubspot-contacts-eu.csv",
    preset: "hubspot-contacts-eu",
    flags: &[],
    enc: Enc::Utf8,
    delimiter: b';',
    failed: &[
        (6, "contact.filterable_attributes.annual_revenue \"ca. 2 Mio\": not a number"),
        (11, "contact.email \"ole.hansen@fjord-fisk\" is not a valid email address"),
    ],
};

#[test]
fn hubspot_contacts_eu_semicolons_and_trailing_empty_rows() {
    let sb = Sandbox::new();
    let (run, s) = sb.summary(&fixture("hubspot-contacts-eu.csv"), &preset("hubspot-contacts-eu"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        Counts::of(&s),
        Counts {
            rows: 15,
            blank_rows: 3,
            valid_rows: 13,
            companies: 11,
            contacts: 13,
            failed_rows: 2,
            ..Default::default()
        },
        "the three ';;;;' rows Excel leaves at the end are blank, not failures"
    );
    assert_eq!(
        groups(&s["failures"]),
        expect_groups(&[
            ("contact.email: invalid email address", 1, &[11]),
            ("contact.filterable_attributes.annual_revenue: not a valid float", 1, &[6]),
        ])
    );
    assert_eq!(s["delimiter"], ";");
    assert_eq!(s["delimiter_detected"], true);
    assert_eq!(s["encoding"], "UTF-8 (BOM)");
}

#[test]
fn hubspot_contacts_eu_decimal_commas_and_day_first_dates() {
    let sb = Sandbox::new();
    let p = all_previews(&sb, &fixture("hubspot-contacts-eu.csv"), &preset("hubspot-contacts-eu"), &[]);
    assert_eq!(
        preview_at(&p, 2, "contact")["filterable_attributes"],
        json!({
            "annual_revenue": 1250000.5,
            "city": "München",
            "country": "Deutschland",
            "created": "2024-03-05T14:22:00",
            "employees": 250,
            "lifecycle_stage": "Customer"
        })
    );
    let anna = preview_at(&p, 3, "contact");
    assert_eq!(anna["email"], "anna.schmidt@baeckerei-schulz.de");
    assert_eq!(anna["filterable_attributes"]["created"], "2024-02-29T08:00:00");
    assert_eq!(anna["filterable_attributes"]["annual_revenue"], 87500.0, "dots group thousands");
    assert_eq!(preview_at(&p, 3, "company")["name"], "Bäckerei Schulz; Filiale Nord", "a quoted delimiter");
    assert_eq!(preview_at(&p, 5, "contact")["email"], "emilie.laurent@chocolaterie-lyon.fr");
    assert_eq!(preview_at(&p, 12, "contact")["filterable_attributes"]["annual_revenue"], 0.5);
}

#[test]
fn hubspot_contacts_eu_failures_file_is_byte_for_byte() {
    assert_failures_file_keeps_the_rows(&HUBSPOT_CONTACTS_EU);
    assert_failures_file_is_byte_for_byte(&HUBSPOT_CONTACTS_EU);
}

#[test]
fn hubspot_contacts_eu_failures_file_fails_again_with_the_same_reasons() {
    assert_failures_file_fails_again(&HUBSPOT_CONTACTS_EU);
}

#[test]
fn integer_attribute_reads_a_thousands_dot_with_decimal_comma() {
    let sb = Sandbox::new();
    let input = sb.write("eu.csv", "Record ID;Name;Number of Employees\r\n1;Bergmann AG;1.200\r\n");
    let mapping = sb.write(
        "eu.toml",
        "[company]\ninternal_id = \"Record ID\"\nname = \"Name\"\n\
         [company.filterable_attributes]\n\
         employees = { column = \"Number of Employees\", type = \"integer\", decimal = \",\" }\n",
    );
    let p = all_previews(&sb, &input, &mapping, &[]);
    assert_eq!(preview_at(&p, 2, "company")["filterable_attributes"]["employees"], 1200);
}

// ----------------------------------------------------------------------------------- HubSpot companies

const HUBSPOT_COMPANIES: Case = Case {
    fixture: "hubspot-companies.csv",
    preset: "hubspot-companies",
    flags: &[],
    enc: Enc::Utf8,
    delimiter: b',',
    failed: &[
        (16, "company.name is required but empty (from columns 'Company name', 'Company Domain Name')"),
        (17, "company.internal_id is required but empty (from column 'Record ID')"),
    ],
};

fn hubspot_companies_counts() -> Counts {
    Counts { rows: 18, valid_rows: 16, companies: 15, duplicate_company_rows: 1, failed_rows: 2, ..Default::default() }
}

#[test]
fn hubspot_companies_counts_a_repeated_company_once() {
    let sb = Sandbox::new();
    let (run, s) = sb.summary(&fixture("hubspot-companies.csv"), &preset("hubspot-companies"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(Counts::of(&s), hubspot_companies_counts(), "line 13 repeats line 3");
    assert_eq!(
        groups(&s["failures"]),
        expect_groups(&[
            ("company.internal_id: required but empty", 1, &[17]),
            ("company.name: required but empty", 1, &[16]),
        ])
    );
    assert_eq!(s["encoding"], "UTF-8");
}

#[test]
fn hubspot_companies_unmapped_columns_become_attributes() {
    let sb = Sandbox::new();
    let p = all_previews(&sb, &fixture("hubspot-companies.csv"), &preset("hubspot-companies"), &[]);
    assert_eq!(p.len(), 15);
    assert_eq!(
        preview_at(&p, 2, "company"),
        &json!({
            "name": "Analytical Engines Ltd",
            "internal_id": "8765432101",
            "filterable_attributes": {
                "annual_revenue": 15000000.0,
                "created": "2023-02-14T10:00:00",
                "customer_type": "ACTIVE",
                "number_of_employees": 120,
                "about_us": "Difference engines, analytical engines, and the software that runs on them.",
                "city": "London",
                "company_domain_name": "analytical-engines.co.uk",
                "company_owner": "Maya Patel",
                "country_region": "United Kingdom",
                "industry": "Computer Software",
                "last_activity_date": "2024-06-11 09:03",
                "lifecycle_stage": "Customer",
                "type": "Customer"
            }
        }),
        "typed and mapped attributes, every other column under a normalised key, no phone number"
    );
    assert_eq!(
        preview_at(&p, 3, "company")["filterable_attributes"]["about_us"],
        "Compilers for \"mission-critical\" systems.\nHeadquartered in the Navy Yard.",
        "quotes and a line break inside a quoted field"
    );
    assert_eq!(preview_at(&p, 5, "company")["filterable_attributes"]["annual_revenue"], 950000.5);
    assert_eq!(preview_at(&p, 15, "company")["name"], "desert-rose.ae", "no name: the domain");
    assert_eq!(
        preview_at(&p, 12, "company")["filterable_attributes"]["about_us"],
        "Customer happiness 😊, as a service."
    );
    assert!(!p.iter().any(|x| x.line == 13), "line 13 repeats the company of line 3");
}

#[test]
fn hubspot_companies_failures_file_keeps_the_rows() {
    assert_failures_file_keeps_the_rows(&HUBSPOT_COMPANIES);
}

#[test]
fn hubspot_companies_failures_file_is_byte_for_byte() {
    assert_failures_file_is_byte_for_byte(&HUBSPOT_COMPANIES);
}

#[test]
fn hubspot_companies_failures_file_fails_again_with_the_same_reasons() {
    assert_failures_file_fails_again(&HUBSPOT_COMPANIES);
}

#[test]
fn gzipped_export_validates_like_the_plain_one() {
    let sb = Sandbox::new();
    let plain_failures = sb.path("plain-failures.csv");
    let gz_failures = sb.path("gz-failures.csv");
    let (run, plain) = sb.summary(
        &fixture("hubspot-companies.csv"),
        &preset("hubspot-companies"),
        &["--failures", plain_failures.to_str().unwrap()],
    );
    assert_eq!(run.code, 1);
    let (run, gz) = sb.summary(
        &fixture("hubspot-companies.csv.gz"),
        &preset("hubspot-companies"),
        &["--failures", gz_failures.to_str().unwrap()],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(Counts::of(&gz), hubspot_companies_counts());
    assert_eq!(gz["failures"], plain["failures"]);
    assert_eq!(gz["format"], "csv", "the format is read through the .gz");
    assert_eq!(
        std::fs::read(&gz_failures).unwrap(),
        std::fs::read(&plain_failures).unwrap(),
        "the same failures file (uncompressed)"
    );
}

// ----------------------------------------------------------------------- Salesforce contacts (report)

const SALESFORCE_CONTACTS: Case = Case {
    fixture: "salesforce-contacts.csv",
    preset: "salesforce-contacts",
    flags: &[],
    enc: Enc::Utf8,
    delimiter: b',',
    failed: &[
        (9, "contact.email \"milton@initech..com\" is not a valid email address"),
        (21, "contact.email \"miles.dyson@cyberdyne\" is not a valid email address"),
    ],
};

#[test]
fn salesforce_contacts_without_email_are_skipped_but_their_account_is_sent() {
    let sb = Sandbox::new();
    let (run, s) = sb.summary(&fixture("salesforce-contacts.csv"), &preset("salesforce-contacts"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        Counts::of(&s),
        Counts {
            rows: 20,
            valid_rows: 17,
            companies: 12,
            contacts: 15,
            duplicate_company_rows: 2,
            skipped_rows: 1,
            failed_rows: 2,
            ..Default::default()
        },
        "lines 5 and 20 only repeat Globex (their contact has no email); line 6 has neither"
    );
    assert_eq!(
        groups(&s["skipped"]),
        expect_groups(&[("contact filter: 'Email' is empty", 3, &[5, 6, 20])]),
        "the row skipped as a whole (6) and the contacts skipped in rows that repeat their account (5, 20)"
    );
    assert_eq!(groups(&s["skipped_entities"]), expect_groups(&[("contact filter: 'Email' is empty", 2, &[5, 20])]));
    assert_eq!(
        groups(&s["failures"]),
        expect_groups(&[("contact.email: invalid email address", 2, &[9, 21])]),
        "line 9 starts after a two-line street address (CRLF file, LF inside the field)"
    );
}

#[test]
fn salesforce_contacts_summary_counts_every_contact_the_filter_skipped() {
    let sb = Sandbox::new();
    let (_, s) = sb.summary(&fixture("salesforce-contacts.csv"), &preset("salesforce-contacts"), &[]);
    assert_eq!(
        groups(&s["skipped"]),
        expect_groups(&[("contact filter: 'Email' is empty", 3, &[5, 6, 20])]),
        "Homer (line 5) and Marge (line 20) have no email either"
    );
}

#[test]
fn salesforce_contacts_preview_links_contacts_to_accounts() {
    let sb = Sandbox::new();
    let p = all_previews(&sb, &fixture("salesforce-contacts.csv"), &preset("salesforce-contacts"), &[]);
    assert_eq!(p.len(), 27);
    assert_eq!(preview_at(&p, 2, "company"), &json!({"name": "Acme, Inc.", "internal_id": "0015g00000Qx7bZ"}));
    assert_eq!(
        preview_at(&p, 2, "contact"),
        &json!({
            "name": "Wile E. Coyote",
            "internal_id": "0035g00000AbCdE",
            "email": "wile.coyote@acme.com",
            "company_internal_id": "0015g00000Qx7bZ",
            "filterable_attributes": {
                "created": "2024-03-05",
                "lead_source": "Web",
                "mailing_city": "Phoenix",
                "mailing_country": "United States",
                "owner": "Dana Scully",
                "title": "Chief Engineer"
            }
        })
    );
    let road = preview_at(&p, 3, "contact");
    assert_eq!(road["email"], "road.runner@acme.com");
    assert_eq!(road["filterable_attributes"]["title"], "Head of Speed, R&D");
    assert_eq!(preview_at(&p, 4, "contact")["filterable_attributes"]["created"], "2023-12-31");
    assert!(!p.iter().any(|x| x.line == 5 || x.line == 6 || x.line == 20), "nothing to send");
    assert_eq!(preview_at(&p, 16, "contact")["name"], "芳 王");
    assert_eq!(preview_at(&p, 16, "company")["name"], "上海云帆科技有限公司");
    assert_eq!(preview_at(&p, 14, "company")["name"], "Müller & Söhne KG");
    let pat = preview_at(&p, 19, "contact");
    assert!(pat.get("company_internal_id").is_none(), "a private contact has no account");
    assert_eq!(preview_at(&p, 23, "contact")["name"], "Rachael Tyrell 🦉");
}

#[test]
fn salesforce_contacts_failures_file_keeps_crlf_and_inner_line_breaks() {
    assert_failures_file_keeps_the_rows(&SALESFORCE_CONTACTS);
    let sb = Sandbox::new();
    let out = SALESFORCE_CONTACTS.write_failures(&sb);
    let got = FailuresCsv::read(&out, Enc::Utf8, b',');
    assert_eq!(got.rows[0][8], "4120 Freidrich Lane\nBasement");
}

#[test]
fn salesforce_contacts_failures_file_is_byte_for_byte() {
    assert_failures_file_is_byte_for_byte(&SALESFORCE_CONTACTS);
}

#[test]
fn salesforce_contacts_failures_file_fails_again_with_the_same_reasons() {
    assert_failures_file_fails_again(&SALESFORCE_CONTACTS);
}

// ------------------------------------------------------------------ Salesforce contacts (Data Export)

#[test]
fn salesforce_api_export_skips_deleted_rows_and_keeps_18_character_ids() {
    let sb = Sandbox::new();
    let input = fixture("salesforce-contacts-api.csv");
    let mapping = preset("salesforce-contacts-api");
    let (run, s) = sb.summary(&input, &mapping, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        Counts::of(&s),
        Counts { rows: 15, valid_rows: 12, contacts: 12, skipped_rows: 2, failed_rows: 1, ..Default::default() }
    );
    assert_eq!(groups(&s["skipped"]), expect_groups(&[("filter: 'IsDeleted' is \"true\" or \"1\"", 2, &[9, 15])]));
    assert_eq!(groups(&s["failures"]), expect_groups(&[("contact.email: invalid email address", 1, &[8])]));
    let p = all_previews(&sb, &input, &mapping, &[]);
    assert_eq!(
        preview_at(&p, 2, "contact"),
        &json!({
            "name": "Wile E. Coyote",
            "internal_id": "0035g00000AbCdEAAV",
            "email": "wile.coyote@acme.com",
            "company_internal_id": "0015g00000Qx7bZAAR",
            "filterable_attributes": {
                "created": "2024-03-05T14:22:10Z",
                "lead_source": "Web",
                "mailing_city": "Phoenix",
                "mailing_country": "United States",
                "owner_id": "0055g00000Ds1AbAAJ",
                "title": "Chief Engineer"
            }
        })
    );
    assert!(preview_at(&p, 6, "contact").get("company_internal_id").is_none());
    assert_eq!(preview_at(&p, 12, "contact")["name"], "芳 王");
}

// ---------------------------------------------------------------------------------- Salesforce accounts

#[test]
fn salesforce_accounts_all_valid_exit_zero_with_an_empty_failures_file() {
    let sb = Sandbox::new();
    let out = sb.path("failures.csv");
    let (run, s) = sb.summary(
        &fixture("salesforce-accounts.csv"),
        &preset("salesforce-accounts"),
        &["--failures", out.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        Counts::of(&s),
        Counts { rows: 16, valid_rows: 16, companies: 15, duplicate_company_rows: 1, ..Default::default() }
    );
    assert!(groups(&s["failures"]).is_empty());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "\"Account ID\",\"Account Name\",\"Type\",\"Industry\",\"Annual Revenue\",\"Employees\",\"Billing City\",\
         \"Billing Country\",\"Account Owner\",\"Website\",\"Created Date\",\"_savio_line\",\"_savio_error\"\r\n",
        "the export's header as it was read (every field quoted) and the two columns, quoted like it"
    );
}

#[test]
fn a_salesforce_report_footer_is_skipped_not_failed() {
    // A report exported from Salesforce ("Details Only", CSV) ends with a blank row, then one-cell rows:
    // the copyright, "Confidential Information - Do Not Distribute", who generated it and when, and the
    // organisation. They are not data: the same export without them is all valid, so this one is too.
    let sb = Sandbox::new();
    let (run, s) = sb.summary(&fixture("salesforce-accounts-report.csv"), &preset("salesforce-accounts"), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        Counts::of(&s),
        Counts {
            rows: 20,
            blank_rows: 1,
            valid_rows: 16,
            companies: 15,
            duplicate_company_rows: 1,
            skipped_rows: 4,
            ..Default::default()
        }
    );
    assert_eq!(
        groups(&s["skipped"]),
        expect_groups(&[("a line of the report's footer (Salesforce), not data", 4, &[19, 20, 21, 22])])
    );
    // A one-cell row that does not open a footer is still a broken row.
    let broken =
        sb.write("accounts.csv", "\"Account ID\",\"Account Name\"\r\n\"001\",\"Acme\"\r\n\"Acme Holdings\"\r\n");
    let mapping = sb.write("m.toml", "[company]\ninternal_id = \"Account ID\"\nname = \"Account Name\"\n");
    let (run, s) = sb.summary(&broken, &mapping, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(s["skipped_rows"], 0);
    assert_eq!(groups(&s["failures"]), expect_groups(&[("wrong number of fields (header has 2)", 1, &[3])]));
}

#[test]
fn salesforce_accounts_type_becomes_a_savio_customer_type() {
    let sb = Sandbox::new();
    let p = all_previews(&sb, &fixture("salesforce-accounts.csv"), &preset("salesforce-accounts"), &[]);
    assert_eq!(
        preview_at(&p, 2, "company"),
        &json!({
            "name": "Acme, Inc.",
            "internal_id": "0015g00000Qx7bZ",
            "filterable_attributes": {
                "annual_revenue": 15000000.0,
                "billing_city": "Phoenix",
                "billing_country": "United States",
                "created": "2022-01-10",
                "customer_type": "ACTIVE",
                "employees": 120,
                "industry": "Manufacturing",
                "owner": "Dana Scully",
                "type": "Customer - Direct",
                "website": "www.acme.com"
            }
        })
    );
    let attrs = |line| preview_at(&p, line, "company")["filterable_attributes"].clone();
    assert_eq!(attrs(3)["customer_type"], "PROSPECT");
    assert_eq!(attrs(4)["customer_type"], "ACTIVE");
    assert_eq!(attrs(5)["customer_type"], "CHURNED");
    assert_eq!(attrs(7)["customer_type"], "OTHER");
    assert_eq!(attrs(6)["annual_revenue"], 120000000000.0);
    assert_eq!(attrs(8)["annual_revenue"], 7800000.5);
    let tyrell = attrs(15);
    assert!(
        tyrell.get("type").is_none() && tyrell.get("customer_type").is_none(),
        "an empty Type sends neither: {tyrell}"
    );
    assert!(!p.iter().any(|x| x.line == 12), "line 12 repeats Acme");
}

#[test]
fn a_sep_line_for_excel_gives_the_delimiter_and_every_line_number_counts_it() {
    // Files written "for Excel" may begin with `sep=;`: the same export behind such a line reads the same,
    // one line further down, with `,` as the cells' decimal and thousands marks left alone.
    let sb = Sandbox::new();
    let export = std::fs::read(fixture("hubspot-contacts-eu.csv")).unwrap();
    let body = export.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap();
    let input = sb.write("contacts-for-excel.csv", [&b"\xEF\xBB\xBFsep=;\r\n"[..], body].concat());
    let (run, s) = sb.summary(&input, &preset("hubspot-contacts-eu"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(s["delimiter"], ";");
    assert_eq!(s["rows"], 15);
    assert_eq!(
        groups(&s["failures"]),
        expect_groups(&[
            ("contact.email: invalid email address", 1, &[12]),
            ("contact.filterable_attributes.annual_revenue: not a valid float", 1, &[7]),
        ])
    );
}

// --------------------------------------------------------------------- windows-1252 (Excel on Windows)

const WINDOWS_1252_FAILURES: &[(u64, &str)] = &[
    (2, "invalid UTF-8 in column 'Account Name' (byte 0xE9 at offset 3)"),
    (3, "invalid UTF-8 in column 'Account Name' (byte 0xE8 at offset 13)"),
    (4, "invalid UTF-8 in column 'Billing City' (byte 0xF6 at offset 4)"),
    (5, "invalid UTF-8 in column 'Account Name' (byte 0xD8 at offset 0)"),
    (7, "invalid UTF-8 in column 'Account Name' (byte 0xF1 at offset 2)"),
    (8, "invalid UTF-8 in column 'Account Name' (byte 0xFC at offset 1)"),
    (10, "invalid UTF-8 in column 'Account Name' (byte 0x80 at offset 0)"),
    (11, "invalid UTF-8 in column 'Account Name' (byte 0xDC at offset 14)"),
    (12, "invalid UTF-8 in column 'Account Name' (byte 0xE8 at offset 2)"),
    (14, "invalid UTF-8 in column 'Account Name' (byte 0xE4 at offset 2)"),
];

const ENCODING_HINT: &str = "; the file is probably not UTF-8: pass --encoding (e.g. --encoding windows-1252 for Excel on Windows, or latin1, utf-16)";

#[test]
fn windows_1252_export_without_encoding_fails_its_accented_rows_with_a_hint() {
    let sb = Sandbox::new();
    let out = sb.path("failures.csv");
    let (run, s) = sb.summary(
        &fixture("salesforce-accounts-excel.csv"),
        &preset("salesforce-accounts"),
        &["--failures", out.to_str().unwrap()],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        Counts::of(&s),
        Counts { rows: 14, valid_rows: 4, companies: 4, failed_rows: 10, ..Default::default() },
        "the four all-ASCII rows are fine"
    );
    assert_eq!(groups(&s["failures"]), expect_groups(&[("invalid UTF-8 (wrong --encoding?)", 10, &[2, 3, 4, 5, 7])]));
    let got = FailuresCsv::read(&out, Enc::Windows1252, b',');
    let expected: Vec<(u64, String)> =
        WINDOWS_1252_FAILURES.iter().map(|(l, r)| (*l, format!("{r}{ENCODING_HINT}"))).collect();
    assert_eq!(got.reasons(), expected);
    // The rows are written back as they were: windows-1252 bytes, CRLF, no BOM.
    let raw = RawExport::read(&fixture("salesforce-accounts-excel.csv"), Enc::Windows1252);
    assert_eq!(std::fs::read(&out).unwrap(), raw.expected_failures(',', &expected));
}

#[test]
fn windows_1252_export_validates_cleanly_with_its_encoding() {
    let sb = Sandbox::new();
    let input = fixture("salesforce-accounts-excel.csv");
    let mapping = preset("salesforce-accounts");
    let (run, s) = sb.summary(&input, &mapping, &["--encoding", "windows-1252"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(Counts::of(&s), Counts { rows: 14, valid_rows: 14, companies: 14, ..Default::default() });
    assert_eq!(s["encoding"], "windows-1252");
    let p = all_previews(&sb, &input, &mapping, &["--encoding", "windows-1252"]);
    let name = |line| preview_at(&p, line, "company")["name"].clone();
    assert_eq!(name(2), "Café Müller GmbH");
    assert_eq!(name(5), "Ørsted Vindkraft A/S");
    assert_eq!(name(10), "€uro Components B.V.", "0x80 is the euro sign");
    assert_eq!(name(12), "Crème de la Crème – Pâtisserie", "0x96 is an en dash");
    assert_eq!(preview_at(&p, 4, "company")["filterable_attributes"]["billing_city"], "Malmö");
}

#[test]
fn windows_1252_failures_file_fixed_by_the_encoding_flag() {
    let sb = Sandbox::new();
    let first = sb.path("failures.csv");
    let (run, _) = sb.summary(
        &fixture("salesforce-accounts-excel.csv"),
        &preset("salesforce-accounts"),
        &["--failures", first.to_str().unwrap()],
    );
    assert_eq!(run.code, 1);
    // Fed back as it is, the same rows fail for the same reason.
    let second = sb.path("failures-again.csv");
    let (run, s) = sb.summary(&first, &preset("salesforce-accounts"), &["--failures", second.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert_eq!(s["failed_rows"], 10);
    let reasons = |p: &Path| -> Vec<String> {
        FailuresCsv::read(p, Enc::Windows1252, b',').reasons().into_iter().map(|(_, r)| r).collect()
    };
    assert_eq!(reasons(&second), reasons(&first));
    // With the right encoding, every one of them is valid.
    let (run, s) = sb.summary(&first, &preset("salesforce-accounts"), &["--encoding", "windows-1252"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(s["valid_rows"], 10);
    assert_eq!(s["payloads"]["company"], 10);
}

#[test]
fn windows_1252_failures_file_is_written_back_in_windows_1252() {
    let sb = Sandbox::new();
    // A mapping every row fails (employees are not booleans), so each accented row goes to the failures
    // file through the encoder.
    let mapping = sb.write(
        "strict.toml",
        "[company]\ninternal_id = \"Account ID\"\nname = \"Account Name\"\n\
         [company.filterable_attributes]\nemployees = { column = \"Employees\", type = \"bool\" }\n",
    );
    let input = fixture("salesforce-accounts-excel.csv");
    let out = sb.path("failures.csv");
    let run = sb.validate([
        input.as_os_str(),
        "-m".as_ref(),
        mapping.as_os_str(),
        "--encoding".as_ref(),
        "windows-1252".as_ref(),
        "--failures".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let got = FailuresCsv::read(&out, Enc::Windows1252, b',');
    let reasons = got.reasons();
    assert_eq!(reasons.len(), 14);
    assert_eq!(
        reasons[0],
        (
            2,
            "company.filterable_attributes.employees \"38\": not a boolean (expected true/false, yes/no, 1/0, on/off)"
                .to_string()
        )
    );
    let raw = RawExport::read(&input, Enc::Windows1252);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        raw.expected_failures(',', &reasons),
        "windows-1252 bytes, CRLF, rows as read"
    );
}

// ------------------------------------------------------------------------------------- Pipedrive people

const PIPEDRIVE_PEOPLE: Case = Case {
    fixture: "pipedrive-people.csv",
    preset: "pipedrive-people",
    flags: &[],
    enc: Enc::Utf8,
    delimiter: b',',
    failed: &[
        (7, "contact.email \"info(at)kaffeehaus-wien.at\" is not a valid email address"),
        (19, "contact.email \"grace.kim@seoulsoft\" is not a valid email address"),
    ],
};

#[test]
fn pipedrive_people_spam_is_skipped_in_any_case() {
    let sb = Sandbox::new();
    let (run, s) = sb.summary(&fixture("pipedrive-people.csv"), &preset("pipedrive-people"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        Counts::of(&s),
        Counts {
            rows: 20,
            valid_rows: 15,
            companies: 12,
            contacts: 15,
            skipped_rows: 3,
            failed_rows: 2,
            ..Default::default()
        }
    );
    assert_eq!(
        groups(&s["skipped"]),
        expect_groups(&[("filter: 'Person - Label' contains \"Spam\"", 3, &[5, 10, 20])]),
        "line 20 is labelled 'spam'"
    );
    assert_eq!(groups(&s["failures"]), expect_groups(&[("contact.email: invalid email address", 2, &[7, 19])]));
}

#[test]
fn pipedrive_people_email_and_phone_come_from_the_first_filled_column() {
    let sb = Sandbox::new();
    let p = all_previews(&sb, &fixture("pipedrive-people.csv"), &preset("pipedrive-people"), &[]);
    assert_eq!(
        preview_at(&p, 2, "contact"),
        &json!({
            "name": "Ana Lima",
            "internal_id": "1001",
            "email": "ana@limacafe.com.br",
            "company_internal_id": "301",
            "filterable_attributes": {
                "created": "2024-03-05T14:22:10",
                "job_title": "Owner",
                "label": "Customer",
                "owner": "Bruno Costa",
                "phone": "+55 11 3456-7890"
            }
        })
    );
    let jakob = preview_at(&p, 3, "contact");
    assert_eq!(jakob["email"], "jakob.eriksson@gmail.com", "the home email");
    assert_eq!(jakob["filterable_attributes"]["phone"], "+47 912 34 567", "the mobile");
    assert_eq!(preview_at(&p, 12, "contact")["email"], "ahmed.hassan@niletextiles.eg", "the other email");
    assert_eq!(preview_at(&p, 6, "contact")["email"], "emile.zola@rougon-editions.fr");
    assert_eq!(preview_at(&p, 6, "company")["name"], "Éditions Rougon, Macquart & Cie");
    assert_eq!(preview_at(&p, 4, "contact")["name"], "陈静");
    assert_eq!(preview_at(&p, 9, "contact")["name"], "Raj Patel 🚀");
    assert!(preview_at(&p, 8, "contact").get("company_internal_id").is_none());
    assert_eq!(preview_at(&p, 14, "contact")["filterable_attributes"]["job_title"], "Chief \"Fun\" Officer");
}

#[test]
fn pipedrive_people_failures_file_is_byte_for_byte() {
    assert_failures_file_keeps_the_rows(&PIPEDRIVE_PEOPLE);
    assert_failures_file_is_byte_for_byte(&PIPEDRIVE_PEOPLE);
}

#[test]
fn pipedrive_people_failures_file_fails_again_with_the_same_reasons() {
    assert_failures_file_fails_again(&PIPEDRIVE_PEOPLE);
}

// --------------------------------------------------- Pipedrive people, Excel "Unicode Text" (UTF-16LE)

const PIPEDRIVE_UNICODE: Case = Case {
    fixture: "pipedrive-people-unicode.txt",
    preset: "pipedrive-people",
    flags: &[],
    enc: Enc::Utf16Le,
    delimiter: b'\t',
    failed: &[
        (7, "contact.email \"oleg.smirnov@sib-les\" is not a valid email address"),
        (11, "contact.email \"mei.chen@@gmail.com\" is not a valid email address"),
    ],
};

#[test]
fn utf16_tab_export_is_detected_without_flags() {
    let sb = Sandbox::new();
    let input = fixture("pipedrive-people-unicode.txt");
    let mapping = preset("pipedrive-people");
    let (run, s) = sb.summary(&input, &mapping, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        Counts::of(&s),
        Counts {
            rows: 12,
            valid_rows: 9,
            companies: 8,
            contacts: 9,
            skipped_rows: 1,
            failed_rows: 2,
            ..Default::default()
        }
    );
    assert_eq!(s["encoding"], "UTF-16LE (BOM)");
    assert_eq!(s["delimiter"], "\t");
    assert_eq!(s["delimiter_detected"], true);
    assert_eq!(groups(&s["failures"]), expect_groups(&[("contact.email: invalid email address", 2, &[7, 11])]));
    let p = all_previews(&sb, &input, &mapping, &[]);
    assert_eq!(
        preview_at(&p, 2, "contact")["filterable_attributes"]["created"],
        "2024-03-05T14:22:00",
        "Excel's 3/5/2024 14:22"
    );
    assert_eq!(preview_at(&p, 3, "contact")["name"], "李小龙");
    assert_eq!(preview_at(&p, 4, "contact")["name"], "فاطمة الزهراء");
    assert_eq!(preview_at(&p, 5, "contact")["email"], "sophie@winterfell-wool.co.uk");
    assert_eq!(preview_at(&p, 9, "contact")["name"], "Jonas \"Joe\" Meyer");
    assert_eq!(preview_at(&p, 9, "company")["name"], "Meyer, Meyer & Partner");
}

#[test]
fn utf16_failures_file_is_utf16_with_bom_tabs_and_crlf() {
    assert_failures_file_keeps_the_rows(&PIPEDRIVE_UNICODE);
    assert_failures_file_is_byte_for_byte(&PIPEDRIVE_UNICODE);
}

#[test]
fn utf16_failures_file_fails_again_with_the_same_reasons() {
    assert_failures_file_fails_again(&PIPEDRIVE_UNICODE);
}

// ------------------------------------------------------------------------------------- feedback JSONL

const FEEDBACK_FAILED: &[(u64, &str)] = &[
    (5, "not valid JSON at column "),
    (
        6,
        "line is a JSON array, expected an object ({...}); if the file is one JSON array rather than JSON Lines, convert it first: jq -c '.[]' export.json > export.jsonl",
    ),
    (7, "feedback.problem is required but empty (from path 'text')"),
    (
        8,
        "feedback.state \"spam\" is not an accepted value (ACTIVE, PENDING, ARCHIVED); translate it with `map` or add it under [checks]",
    ),
    (
        9,
        "contact.email \"mario.rossi@pizzeria\" is not a valid email address; feedback.person_email \"mario.rossi@pizzeria\" is not a valid email address",
    ),
];

/// The `_savio_line` and `_savio_error` of each line of a JSONL failures file.
fn jsonl_reasons(path: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("each failures line is JSON");
            (
                v["_savio_line"].as_u64().expect("_savio_line"),
                v["_savio_error"].as_str().expect("_savio_error").to_string(),
            )
        })
        .collect()
}

fn assert_feedback_reasons(got: &[(u64, String)], lines: bool) {
    assert_eq!(got.len(), FEEDBACK_FAILED.len(), "{got:#?}");
    for ((line, reason), (want_line, want)) in got.iter().zip(FEEDBACK_FAILED) {
        if lines {
            assert_eq!(line, want_line);
        }
        if *want_line == 5 {
            assert!(reason.starts_with(want) && reason.contains("EOF while parsing a string"), "{reason}");
        } else {
            assert_eq!(reason, want);
        }
    }
}

#[test]
fn feedback_jsonl_counts_bad_lines_as_failures() {
    let sb = Sandbox::new();
    let (run, s) = sb.summary(&fixture("feedback.jsonl"), &preset("feedback"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        Counts::of(&s),
        Counts {
            rows: 19,
            blank_rows: 1,
            valid_rows: 14,
            companies: 9,
            contacts: 12,
            feedback: 13,
            duplicate_rows: 1,
            failed_rows: 5,
            ..Default::default()
        },
        "line 18 (an anonymous visitor) gives feedback without a contact; line 20 repeats line 1: its feedback is \
         not created twice"
    );
    assert_eq!(
        groups(&s["duplicates"]),
        expect_groups(&[
            ("contact identical to an earlier one", 1, &[20]),
            ("feedback identical to an earlier one", 1, &[20]),
        ])
    );
    assert_eq!(
        groups(&s["failures"]),
        expect_groups(&[
            ("JSON array instead of an object", 1, &[6]),
            ("contact.email: invalid email address", 1, &[9]),
            ("feedback.person_email: invalid email address", 1, &[9]),
            ("feedback.problem: required but empty", 1, &[7]),
            ("feedback.state: not an accepted value", 1, &[8]),
            ("not valid JSON", 1, &[5]),
        ])
    );
    assert_eq!(s["format"], "jsonl");
    assert!(s["delimiter"].is_null());
}

#[test]
fn feedback_jsonl_preview_maps_segments_states_and_tags() {
    let sb = Sandbox::new();
    let p = all_previews(&sb, &fixture("feedback.jsonl"), &preset("feedback"), &[]);
    assert_eq!(p.len(), 9 + 12 + 13);
    assert!(!p.iter().any(|x| x.line == 20), "line 20 repeats line 1");
    assert_eq!(entities_by_line(&p[..3]), vec![(1, "company"), (1, "contact"), (1, "feedback")]);
    assert_eq!(
        preview_at(&p, 1, "feedback"),
        &json!({
            "problem": "We need to export the monthly report as PDF, the CSV is not enough for our board.",
            "feedback_type": "ACTIVE",
            "state": "ACTIVE",
            "source_url": "https://app.intercom.com/a/inbox/abc123/inbox/conversation/215468331120001",
            "source_username": "Maya Patel",
            "person_email": "ada.lovelace@analytical-engines.co.uk",
            "person_name": "Ada Lovelace",
            "company_name": "Analytical Engines Ltd",
            "feature_request_title": "Export reports to PDF",
            "tags": ["export", "pdf"]
        })
    );
    assert_eq!(
        preview_at(&p, 1, "contact"),
        &json!({
            "name": "Ada Lovelace",
            "internal_id": "65e6f1a2b3c4d5e6f7a80001",
            "email": "ada.lovelace@analytical-engines.co.uk",
            "company_internal_id": "8765432101",
            "filterable_attributes": {"segment": "customer"}
        })
    );
    assert_eq!(
        preview_at(&p, 1, "company"),
        &json!({"name": "Analytical Engines Ltd", "internal_id": "8765432101", "filterable_attributes": {"plan": "Enterprise"}})
    );
    let wechat = preview_at(&p, 2, "feedback");
    assert_eq!(wechat["problem"], "请支持微信登录，我们的团队都用微信。");
    assert_eq!(wechat["feedback_type"], "PROSPECT");
    assert_eq!(wechat["state"], "PENDING");
    assert_eq!(preview_at(&p, 2, "contact")["name"], "王芳");
    let dark = preview_at(&p, 3, "feedback");
    assert_eq!(dark["problem"], "Dark mode please 🌙🙏 my eyes hurt at night");
    assert_eq!(dark["person_email"], "zoe@example.com");
    assert_eq!(dark["person_name"], "ZOE@Example.COM", "no name: the email, as written");
    assert_eq!(dark["tags"], json!(["ui", "dark mode"]));
    assert_eq!(
        preview_at(&p, 10, "feedback")["problem"],
        "Two things: 1. The calendar sync is slow 2. It drops recurring events"
    );
    let churned = preview_at(&p, 11, "contact");
    assert_eq!(churned["internal_id"], "peter.gibbons@initech.com", "no author id: the email");
    assert_eq!(preview_at(&p, 11, "feedback")["feedback_type"], "CHURNED");
    assert_eq!(preview_at(&p, 12, "feedback")["feedback_type"], "INTERNAL");
    assert!(!p.iter().any(|x| x.line == 12 && x.entity == "company"));
    assert_eq!(preview_at(&p, 14, "feedback")["feedback_type"], "OTHER");
    assert_eq!(preview_at(&p, 15, "feedback")["problem"], "نحتاج إلى تكامل مع سلاك لإرسال التنبيهات");
    let cafe = preview_at(&p, 16, "feedback");
    assert_eq!(cafe["problem"], "Café menu sync should keep accents 😀");
    assert_eq!(cafe["person_name"], "Amélie Poulain");
    let split = preview_at(&p, 17, "feedback");
    assert_eq!(split["state"], "PENDING");
    assert_eq!(split["tags"], json!(["billing", "invoices"]), "lowercased, trimmed, repeats dropped");
    assert_eq!(
        preview_at(&p, 18, "feedback"),
        &json!({
            "problem": "Is there a student discount?",
            "feedback_type": "PROSPECT",
            "state": "PENDING",
            "source_url": "https://www.example-website.com/pricing",
            "tags": ["pricing"]
        }),
        "an anonymous visitor: no person, no contact"
    );
    assert!(!p.iter().any(|x| x.line == 18 && x.entity != "feedback"));
}

#[test]
fn feedback_jsonl_failures_file_keeps_each_line_and_adds_two_keys() {
    let sb = Sandbox::new();
    let out = sb.path("failures.jsonl");
    let run = sb.validate([
        fixture("feedback.jsonl").as_os_str(),
        "-m".as_ref(),
        preset("feedback").as_os_str(),
        "--failures".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let reasons = jsonl_reasons(&out);
    assert_feedback_reasons(&reasons, true);
    let original: Vec<String> =
        std::fs::read_to_string(fixture("feedback.jsonl")).unwrap().lines().map(str::to_string).collect();
    let written = std::fs::read_to_string(&out).unwrap();
    for (text, (line, reason)) in written.lines().zip(&reasons) {
        let source = &original[*line as usize - 1];
        let extra = format!(",\"_savio_line\":{line},\"_savio_error\":{}}}", serde_json::to_string(reason).unwrap());
        match serde_json::from_str::<Value>(source) {
            Ok(Value::Object(_)) => {
                assert_eq!(text, format!("{}{extra}", &source[..source.len() - 1]), "an object keeps its bytes")
            }
            _ => {
                let v: Value = serde_json::from_str(text).unwrap();
                assert_eq!(v["_savio_raw"], source.as_str(), "anything else is wrapped");
            }
        }
    }
}

#[test]
fn feedback_jsonl_failures_file_revalidates_with_the_same_mapping() {
    let sb = Sandbox::new();
    let first = sb.path("failures.jsonl");
    let (run, _) =
        sb.summary(&fixture("feedback.jsonl"), &preset("feedback"), &["--failures", first.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    let run = sb.validate([first.as_os_str(), "-m".as_ref(), preset("feedback").as_os_str(), "--json".as_ref()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.json()["failed_rows"], 5);
}

#[test]
fn feedback_jsonl_failures_file_fails_again_with_the_same_reasons() {
    let sb = Sandbox::new();
    let first = sb.path("failures.jsonl");
    let (run, _) =
        sb.summary(&fixture("feedback.jsonl"), &preset("feedback"), &["--failures", first.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    // Paths are checked leniently here, so this test pins only the reasons (see the test above).
    let preset_text = std::fs::read_to_string(preset("feedback")).unwrap();
    let lenient = sb.write("lenient.toml", format!("[input]\nstrict_paths = false\n{preset_text}"));
    let second = sb.path("failures-again.jsonl");
    let (run, s) = sb.summary(&first, &lenient, &["--failures", second.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(s["failed_rows"], 5);
    assert_feedback_reasons(&jsonl_reasons(&second), false);
}

// -------------------------------------------------------------------------------------------- stdin

#[test]
fn stdin_input_gives_the_same_summary_as_the_file() {
    let sb = Sandbox::new();
    let (_, from_file) = sb.summary(&fixture("pipedrive-people.csv"), &preset("pipedrive-people"), &[]);
    let mapping = preset("pipedrive-people");
    let out = sb
        .savio()
        .args(["-q", "validate", "-", "-m", mapping.to_str().unwrap(), "--json"])
        .write_stdin(std::fs::read(fixture("pipedrive-people.csv")).unwrap())
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 1, "{run:?}");
    let from_stdin = run.json();
    assert_eq!(from_stdin["input"], "<stdin>");
    assert_eq!(Counts::of(&from_stdin), Counts::of(&from_file));
    assert_eq!(from_stdin["failures"], from_file["failures"]);
    assert_eq!(from_stdin["skipped"], from_file["skipped"]);
}

#[test]
fn stdin_input_may_be_gzipped_jsonl_and_is_sniffed() {
    let sb = Sandbox::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &std::fs::read(fixture("feedback.jsonl")).unwrap()).unwrap();
    let mapping = preset("feedback");
    let out = sb
        .savio()
        .args(["-q", "validate", "-", "-m", mapping.to_str().unwrap(), "--json"])
        .write_stdin(gz.finish().unwrap())
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 1, "{run:?}");
    let s = run.json();
    assert_eq!(s["format"], "jsonl", "sniffed from the first byte");
    assert_eq!(s["rows"], 19);
    assert_eq!(s["payloads"]["feedback"], 13, "line 20 repeats line 1");
}

// ----------------------------------------------------------------------------------------- exit codes

#[test]
fn unknown_columns_exit_2_with_did_you_mean() {
    let sb = Sandbox::new();
    let mapping = sb.write(
        "typo.toml",
        "[contact]\ninternal_id = \"RecordID\"\nname = \"{First Name} {Last Name}\"\nemail = \"E-mail\"\n",
    );
    let run = sb.validate([fixture("hubspot-contacts.csv").as_os_str(), "-m".as_ref(), mapping.as_os_str()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.is_empty(), "nothing processed: {}", run.stdout);
    assert!(run.stderr.contains("(2 problems)"), "every problem at once: {}", run.stderr);
    assert!(
        run.stderr.contains("contact.internal_id: no column 'RecordID' in the input; did you mean 'Record ID'?"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("contact.email: no column 'E-mail' in the input; did you mean 'Email'?"),
        "{}",
        run.stderr
    );
}

#[test]
fn unknown_jsonl_path_exits_2_with_did_you_mean() {
    let sb = Sandbox::new();
    let mapping = sb.write("typo.toml", "[feedback]\nproblem = \"txt\"\nperson_email = \"author.mail\"\n");
    let run = sb.validate([fixture("feedback.jsonl").as_os_str(), "-m".as_ref(), mapping.as_os_str()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("did you mean 'text'?"), "{}", run.stderr);
    assert!(run.stderr.contains("did you mean 'author.email'?"), "{}", run.stderr);
}

#[test]
fn bad_delimiter_flag_exits_2() {
    let sb = Sandbox::new();
    let run = sb.validate([
        fixture("hubspot-contacts.csv").as_os_str(),
        "-m".as_ref(),
        preset("hubspot-contacts").as_os_str(),
        "--delimiter".as_ref(),
        ";;".as_ref(),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("';;' is not a delimiter"), "{}", run.stderr);
}

#[test]
fn wrong_delimiter_flag_is_explained() {
    let sb = Sandbox::new();
    let run = sb.validate([
        fixture("hubspot-contacts.csv").as_os_str(),
        "-m".as_ref(),
        preset("hubspot-contacts").as_os_str(),
        "--delimiter".as_ref(),
        ";".as_ref(),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("delimiter"), "the message points at the delimiter: {}", run.stderr);
    assert!(!run.stderr.contains("did you mean 'Record ID,"), "the whole header line is no suggestion: {}", run.stderr);
}

#[test]
fn unknown_encoding_flag_exits_2() {
    let sb = Sandbox::new();
    let run = sb.validate([
        fixture("salesforce-accounts-excel.csv").as_os_str(),
        "-m".as_ref(),
        preset("salesforce-accounts").as_os_str(),
        "--encoding".as_ref(),
        "windows-1252x".as_ref(),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("'windows-1252x' is not a known encoding"), "{}", run.stderr);
}

#[test]
fn missing_input_file_exits_2() {
    let sb = Sandbox::new();
    let run =
        sb.validate([sb.path("no-such-export.csv").as_os_str(), "-m".as_ref(), preset("hubspot-contacts").as_os_str()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("cannot open input"), "{}", run.stderr);
    assert!(run.stderr.contains("no-such-export.csv"), "{}", run.stderr);
}

#[test]
fn broken_toml_exits_2_with_its_line() {
    let sb = Sandbox::new();
    let mapping = sb.write(
        "broken.toml",
        "[contact]\ninternal_id = \"Record ID\"\nname = \"{First Name} {Last Name}\nemail = \"Email\"\n",
    );
    let run = sb.validate([fixture("hubspot-contacts.csv").as_os_str(), "-m".as_ref(), mapping.as_os_str()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("broken.toml"), "{}", run.stderr);
    assert!(run.stderr.contains("line 3"), "the line of the error: {}", run.stderr);
}

#[test]
fn misspelt_mapping_key_exits_2_naming_the_valid_keys() {
    let sb = Sandbox::new();
    let mapping =
        sb.write("typo.toml", "[contact]\ninternal_id = \"Record ID\"\nname = \"Email\"\nemial = \"Email\"\n");
    let run = sb.validate([fixture("hubspot-contacts.csv").as_os_str(), "-m".as_ref(), mapping.as_os_str()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("emial") && run.stderr.contains("line 4"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------- text output

#[test]
fn text_summary_lists_reasons_with_lines() {
    let sb = Sandbox::new();
    let run = sb.validate([
        fixture("pipedrive-people.csv").as_os_str(),
        "-m".as_ref(),
        preset("pipedrive-people").as_os_str(),
    ]);
    assert_eq!(run.code, 1);
    for needle in [
        "Rows:     20",
        "Valid:    15 rows → 12 companies, 15 contacts",
        "Skipped:  3 rows",
        "filter: 'Person - Label' contains \"Spam\" (3): lines 5, 10, 20",
        "Failed:   2 rows",
        "contact.email: invalid email address (2): lines 7, 19",
    ] {
        assert!(run.stdout.contains(needle), "missing {needle:?} in:\n{}", run.stdout);
    }
}

#[test]
fn text_summary_uses_the_singular_for_one_row() {
    let sb = Sandbox::new();
    let run = sb.validate([
        fixture("salesforce-accounts.csv").as_os_str(),
        "-m".as_ref(),
        preset("salesforce-accounts").as_os_str(),
    ]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("(1 row only repeated a company already listed)"), "{}", run.stdout);
}

#[test]
fn closed_stdout_is_not_an_error() {
    use std::process::{Command, Stdio};
    let sb = Sandbox::new();
    // Enough valid rows that the previews overflow any pipe buffer, so the write fails whenever the reader
    // goes away.
    let mut csv = String::from("Account ID,Account Name\n");
    for i in 0..5000 {
        csv.push_str(&format!("0015g{i:010},Company number {i}\n"));
    }
    let input = sb.write("accounts.csv", csv);
    let mapping = sb.write("accounts.toml", "[company]\ninternal_id = \"Account ID\"\nname = \"Account Name\"\n");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("savio-sync"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["-q", "validate", "--preview", "5000", "-m"])
        .arg(&mapping)
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // like `| head -0`
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "every row is valid: {stderr}");
}

// ----------------------------------------------------------------------------- --json --preview, gzip

#[test]
fn json_summary_with_previews_is_one_document() {
    let sb = Sandbox::new();
    let (run, s) = sb.summary(&fixture("hubspot-contacts.csv"), &preset("hubspot-contacts"), &["--preview", "3"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        s["preview"][0],
        json!({"line": 2, "entity": "company", "payload": {"name": "Analytical Engines Ltd", "internal_id": "8765432101"}})
    );
    let (from_json, rest) = previews(&run.stdout);
    assert_eq!(from_json.len(), 3);
    let text = all_previews(&sb, &fixture("hubspot-contacts.csv"), &preset("hubspot-contacts"), &[]);
    for (j, t) in from_json.iter().zip(&text) {
        assert_eq!((j.line, &j.entity, &j.payload), (t.line, &t.entity, &t.payload), "the same payloads as in text");
    }
    let summary: Value = serde_json::from_str(&rest).unwrap();
    assert_eq!(Counts::of(&summary), Counts::of(&s), "the summary around them is the usual one");
    let (_, without) = sb.summary(&fixture("hubspot-contacts.csv"), &preset("hubspot-contacts"), &[]);
    assert!(without.get("preview").is_none(), "no preview asked, no preview key");
}

#[test]
fn failures_file_ending_in_gz_is_gzipped_and_reads_back() {
    use std::io::Read;
    for (fixture_name, preset_name, ext, failed) in
        [("hubspot-contacts.csv", "hubspot-contacts", "csv", 3), ("feedback.jsonl", "feedback", "jsonl", 5)]
    {
        let sb = Sandbox::new();
        let plain = sb.path(&format!("failures.{ext}"));
        let gz = sb.path(&format!("failures.{ext}.gz"));
        for out in [&plain, &gz] {
            let (run, s) =
                sb.summary(&fixture(fixture_name), &preset(preset_name), &["--failures", out.to_str().unwrap()]);
            assert_eq!(run.code, 1, "{run:?}");
            assert_eq!(s["failures_file"], out.display().to_string());
        }
        let bytes = std::fs::read(&gz).unwrap();
        assert!(bytes.starts_with(&[0x1f, 0x8b]), "gzip magic");
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut unzipped).unwrap();
        assert_eq!(unzipped, std::fs::read(&plain).unwrap(), "{ext}: the plain file, compressed");
        let (run, s) = sb.summary(&gz, &preset(preset_name), &[]);
        assert_eq!(run.code, 1, "{run:?}");
        assert_eq!(s["failed_rows"], failed, "{ext}: fed back, the same rows fail");
    }
}

#[test]
fn failures_file_of_a_quoted_export_fed_back_keeps_its_quoting() {
    let sb = Sandbox::new();
    let first = HUBSPOT_CONTACTS.write_failures(&sb);
    let second = sb.path("failures-again.csv");
    let (run, _) = sb.summary(&first, &preset("hubspot-contacts"), &["--failures", second.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    let first_text = String::from_utf8(std::fs::read(&first).unwrap()).unwrap();
    let second_text = String::from_utf8(std::fs::read(&second).unwrap()).unwrap();
    let first_lines: Vec<&str> = first_text.lines().collect();
    let second_lines: Vec<&str> = second_text.lines().collect();
    assert_eq!(first_lines[0], second_lines[0], "the header is not extended twice");
    assert_eq!(first_lines.len(), second_lines.len());
    for (a, b) in first_lines.iter().zip(&second_lines).skip(1) {
        // Only _savio_line changes: it is the row's line in the file that was run.
        let cut = |l: &str| l.rsplitn(3, "\",\"").nth(2).unwrap().to_string();
        assert_eq!(cut(a), cut(b), "every field still quoted, values unchanged");
        assert!(b.starts_with('"') && b.ends_with('"'), "{b}");
    }
}

#[test]
fn day_first_dates_are_read_day_first_from_the_first_row_once_a_later_row_shows_it() {
    let sb = Sandbox::new();
    // A UK export: line 2 reads either way, line 4 only day first; past the rows read ahead to settle the
    // order, line 1005 only month first (a mixed column).
    let mut text = "Account ID,Account Name,Customer Since\n1,Acme,05/03/2024\n2,Globex,\n3,Initech,25/03/2024 09:15\n"
        .to_string();
    for i in 4..1004 {
        text.push_str(&format!("{i},Company {i},\n"));
    }
    text.push_str("1004,Umbrella,03/25/2024\n");
    let input = sb.write("accounts.csv", text);
    let mapping = sb.write(
        "m.toml",
        "[company]\ninternal_id = \"Account ID\"\nname = \"Account Name\"\n\
         [company.filterable_attributes]\nsince = { column = \"Customer Since\", type = \"date\" }\n",
    );
    let failures = sb.path("failures.csv");
    let run = sb.validate([
        input.to_str().unwrap(),
        "-m",
        mapping.to_str().unwrap(),
        "--preview",
        "2000",
        "--failures",
        failures.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let (previews, rest) = previews(&run.stdout);
    assert!(
        rest.contains("Warning:  company.filterable_attributes.since: dates read day/month/year, as line 4"),
        "{rest}"
    );
    assert_eq!(preview_at(&previews, 2, "company")["filterable_attributes"]["since"], "2024-03-05");
    assert_eq!(preview_at(&previews, 4, "company")["filterable_attributes"]["since"], "2024-03-25T09:15:00");
    let failed = std::fs::read_to_string(&failures).unwrap();
    assert!(
        failed.contains(
            "1004,Umbrella,03/25/2024,1005,\"company.filterable_attributes.since \"\"03/25/2024\"\": a month/day/year \
             date, but this field's dates read day/month/year (line 4 shows it)"
        ),
        "{failed}"
    );

    // Said in the mapping, the order needs no guess and no warning.
    let given = sb.write(
        "given.toml",
        std::fs::read_to_string(&mapping).unwrap().replace("type = \"date\"", "type = \"date\", date_order = \"dmy\""),
    );
    let run =
        sb.validate([input.to_str().unwrap(), "-m", given.to_str().unwrap(), "--failures", failures.to_str().unwrap()]);
    assert!(!run.stdout.contains("Warning:"), "{}", run.stdout);
    let failed = std::fs::read_to_string(&failures).unwrap();
    assert!(
        failed.contains("a month/day/year date, but date_order = \"\"dmy\"\" reads dates day/month/year"),
        "{failed}"
    );
}

#[test]
fn a_date_column_that_reads_either_way_is_read_in_the_order_another_column_proves() {
    let sb = Sandbox::new();
    // The QA report's UK export: `Create Date` proves day first on line 2; `Last Activity Date` only reads
    // either way among the rows read ahead, and was read month first (5 April became May 4). Past those rows,
    // line 1005 holds a month-first date in it.
    let mut text = "Record ID,First Name,Last Name,Email,Create Date,Last Activity Date\n\
                    1,A,B,a@x.com,25/03/2024,05/04/2024\n2,C,D,c@x.com,13/01/2024,01/02/2024\n"
        .to_string();
    for i in 3..1004 {
        text.push_str(&format!("{i},E,F,e{i}@x.com,,\n"));
    }
    text.push_str("1004,G,H,g@x.com,,04/25/2024\n");
    let input = sb.write("uk-dates.csv", text);
    let mapping = sb.write(
        "uk.toml",
        "[contact]\ninternal_id = \"Record ID\"\nname = \"{First Name} {Last Name}\"\nemail = \"Email\"\n\
         [contact.filterable_attributes]\ncreated = { column = \"Create Date\", type = \"date\" }\n\
         last_activity = { column = \"Last Activity Date\", type = \"date\" }\n",
    );
    let failures = sb.path("failures.csv");
    let run = sb.validate([
        input.to_str().unwrap(),
        "-m",
        mapping.to_str().unwrap(),
        "--preview",
        "2",
        "--failures",
        failures.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let (previews, rest) = previews(&run.stdout);
    let attrs = |line| &preview_at(&previews, line, "contact")["filterable_attributes"];
    assert_eq!(attrs(2)["created"], "2024-03-25");
    assert_eq!(attrs(2)["last_activity"], "2024-04-05");
    assert_eq!(attrs(3)["last_activity"], "2024-02-01");
    assert!(
        rest.contains(
            "Warning:  contact.filterable_attributes.last_activity: dates such as '05/04/2024' (line 2) read either \
             way; reading day/month/year, as contact.filterable_attributes.created shows on line 2 ('25/03/2024')"
        ),
        "{rest}"
    );
    let failed = std::fs::read_to_string(&failures).unwrap();
    assert!(
        failed.contains(
            "1004,G,H,g@x.com,,04/25/2024,1005,\"contact.filterable_attributes.last_activity \"\"04/25/2024\"\": a \
             month/day/year date, but this input's dates read day/month/year (contact.filterable_attributes.created \
             on line 2 shows it"
        ),
        "{failed}"
    );
    assert!(!rest.contains("prove different"), "{rest}");
}

#[test]
fn named_html_entities_fractional_seconds_and_mixed_decimal_formats_from_the_qa_report() {
    let sb = Sandbox::new();
    let input = sb.write(
        "tickets.jsonl",
        concat!(
            r#"{"id":1,"text":"<p>It&rsquo;s broken&hellip; &uuml;ber &copy; &euro;5 &mdash; ok</p>","at":"2024-03-05T10:00:00.123456+00:00","rev":"1.234,5","author":{"email":"a@x.com"}}"#,
            "\n",
            r#"{"id":2,"text":"x","at":"2024-03-05T10:00:00.000Z","rev":"1234.56","author":{"email":"a@x.com"}}"#,
            "\n",
        ),
    );
    let mapping = sb.write(
        "m.toml",
        "[feedback]\nproblem = { column = \"text\", strip_html = true }\nperson_email = \"author.email\"\n\
         source_url = { template = \"https://x/{id}\" }\n\
         [contact]\ninternal_id = \"id\"\nname = \"author.email\"\n[contact.filterable_attributes]\n\
         at = { column = \"at\", type = \"date\" }\nrev = { column = \"rev\", type = \"float\", decimal = \",\" }\n",
    );
    let failures = sb.path("failures.jsonl");
    let run = sb.validate([
        input.to_str().unwrap(),
        "-m",
        mapping.to_str().unwrap(),
        "--preview",
        "10",
        "--failures",
        failures.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let (previews, _) = previews(&run.stdout);
    assert_eq!(
        preview_at(&previews, 1, "feedback")["problem"],
        "It\u{2019}s broken\u{2026} \u{fc}ber \u{a9} \u{20ac}5 \u{2014} ok"
    );
    let contact = &preview_at(&previews, 1, "contact")["filterable_attributes"];
    assert_eq!(contact["at"], "2024-03-05T10:00:00.123456Z");
    assert_eq!(contact["rev"], 1234.5);
    // `1234.56` in a decimal-comma column was read as a dot decimal; now its row fails and says why.
    let failed = std::fs::read_to_string(&failures).unwrap();
    assert!(
        failed.contains(
            r#"contact.filterable_attributes.rev \"1234.56\": not a number with decimal = \",\": it only reads with \".\" as the decimal point"#
        ),
        "{failed}"
    );
}

#[test]
fn a_json_document_that_is_not_json_lines_is_refused_with_the_command_that_converts_it() {
    let sb = Sandbox::new();
    let mapping = preset("feedback");
    // Pretty-printed, as an API dump or `jq .` writes it.
    let pretty = sb.write("tickets.jsonl", "[\n  {\n    \"text\": \"Need SSO\"\n  }\n]\n");
    let run = sb.validate([pretty.to_str().unwrap(), "-m", mapping.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is one JSON document written over several lines (line 1 is '[')"), "{}", run.stderr);
    assert!(run.stderr.contains("jq -c '.[]' export.json > export.jsonl"), "{}", run.stderr);
    // One object that wraps the records: mapped as it is, it would be one feedback joining every text.
    let wrapped = sb.write(
        "wrapped.jsonl",
        "{\"tickets\": [{\"text\": \"Need SSO\"}, {\"text\": \"Dark mode\"}], \"count\": 2, \"next_page\": null}\n",
    );
    let run = sb.validate([wrapped.to_str().unwrap(), "-m", mapping.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("holds one object whose 'tickets' is a list of 2 objects (an API page)")
            && run.stderr.contains("jq -c '.tickets[]' export.json > export.jsonl"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_one_record_export_with_a_list_of_objects_and_its_failures_file_are_records_not_api_pages() {
    // A Close lead with its `contacts` was refused as "an API page", and so was the failures file of one failed
    // line of it: the failures file could not be fed back.
    let sb = Sandbox::new();
    let mapping = sb.write(
        "close.toml",
        "[company]\ninternal_id = \"id\"\nname = \"display_name\"\n[contact]\ninternal_id = \"contacts.0.id\"\n\
         name = \"contacts.0.name\"\nemail = \"contacts.0.emails.0.email\"\n",
    );
    let lead = sb.write(
        "lead.jsonl",
        "{\"id\": \"lead_1\", \"display_name\": \"Acme\", \"contacts\": [{\"id\": \"cont_1\", \"name\": \"Ada\", \
         \"emails\": [{\"email\": \"ada@@acme.com\", \"type\": \"office\"}]}]}\n",
    );
    let failures = sb.path("failures.jsonl");
    let run = sb.validate([
        lead.to_str().unwrap(),
        "-m",
        mapping.to_str().unwrap(),
        "--failures",
        failures.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "the invalid email only: {run:?}");
    assert!(run.stdout.contains("contact.email: invalid email address"), "{}", run.stdout);
    let again = sb.validate([failures.to_str().unwrap(), "-m", mapping.to_str().unwrap()]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stdout.contains("contact.email: invalid email address"), "{}", again.stdout);
}

#[test]
fn a_zipped_export_or_a_workbook_is_refused_with_what_to_do() {
    let sb = Sandbox::new();
    // HubSpot and Salesforce's Data Export download as .zip; the first bytes tell.
    let zip = sb.write("hubspot-crm-exports-all-contacts.zip", b"PK\x03\x04\x14\x00\x08\x00contacts.csv");
    let run = sb.validate([zip.to_str().unwrap(), "-m", preset("hubspot-contacts").to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is a ZIP archive (a zipped export, or an .xlsx workbook)"), "{}", run.stderr);
    assert!(run.stderr.contains("unzip it and pass the CSV inside"), "{}", run.stderr);
    let utf16: Vec<u8> = "Record ID,Email\n1,a@x.io\n".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let bare = sb.write("people.txt", utf16);
    let run = sb.validate([bare.to_str().unwrap(), "-m", preset("hubspot-contacts").to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("pass --encoding utf-16"), "{}", run.stderr);
}

#[test]
fn with_json_logs_a_fatal_error_is_one_json_line_too() {
    let sb = Sandbox::new();
    let input = fixture("hubspot-contacts.csv");
    let run = Run::from(
        sb.savio()
            .args(["--log-format", "json", "validate", input.to_str().unwrap(), "-m", "nope.toml"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 2, "{run:?}");
    for line in run.stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["fields"]["message"], "cannot read mapping file 'nope.toml'");
    }
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}
