//! Behaviour of the mapping stage through its public surface: compile against a header, map records.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::model::{Company, Contact, Entity, Feedback, Payload};
use crate::source::{Delimiter, Header, InputPath, Record, RecordData, SourceInfo, TextEncoding};

fn csv_info(headers: &[&str]) -> SourceInfo {
    SourceInfo {
        path: InputPath::from_arg("export.csv"),
        format: Format::Csv,
        delimiter: Some(Delimiter(b',')),
        delimiter_detected: false,
        encoding: TextEncoding::UTF8,
        crlf: false,
        header: Some(Arc::new(Header::from_names(headers))),
    }
}

fn json_info() -> SourceInfo {
    SourceInfo {
        path: InputPath::from_arg("export.jsonl"),
        format: Format::Jsonl,
        delimiter: None,
        delimiter_detected: false,
        encoding: TextEncoding::UTF8,
        crlf: false,
        header: None,
    }
}

fn row(line: u64, fields: &[&str]) -> Record {
    Record { line, data: RecordData::Csv { fields: csv::StringRecord::from(fields.to_vec()).into(), raw: Vec::new() } }
}

fn jrow(line: u64, v: serde_json::Value) -> Record {
    let raw = v.to_string();
    let serde_json::Value::Object(object) = v else { panic!() };
    Record { line, data: RecordData::Json { object, raw } }
}

fn mapper(toml: &str, headers: &[&str]) -> Mapper {
    Mapping::parse(toml, Path::new("m.toml")).unwrap().compile(&csv_info(headers), &[]).unwrap().mapper
}

fn compile_err(toml: &str, headers: &[&str]) -> String {
    match Mapping::parse(toml, Path::new("m.toml")).unwrap().compile(&csv_info(headers), &[]) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn dropped(o: MapOutcome) -> Vec<Dropped> {
    match o {
        MapOutcome::Mapped { dropped, .. } => dropped,
        other => panic!("expected a mapped row, got {other:?}"),
    }
}

fn payloads(o: MapOutcome) -> Vec<Payload> {
    match o {
        MapOutcome::Mapped { payloads, .. } => payloads,
        other => panic!("expected payloads, got {other:?}"),
    }
}

fn failures(o: MapOutcome) -> Vec<String> {
    match o {
        MapOutcome::Failed(errs) => errs.iter().map(|e| e.to_string()).collect(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

const CONTACTS: &[&str] =
    &["Record ID", "First Name", "Last Name", "Email", "Company ID", "Company", "Stage", "Score", "Created"];

const CONTACT_MAPPING: &str = r#"
[company]
internal_id = "Company ID"
name = "Company"

[contact]
internal_id = "Record ID"
name = "{First Name} {Last Name}"
email = "Email"

[contact.filterable_attributes]
stage = { column = "Stage", case = "lower" }
score = { column = "Score", type = "integer" }
created = { column = "Created", type = "date" }
"#;

#[test]
fn contact_row_yields_company_then_linked_contact() {
    let mut m = mapper(CONTACT_MAPPING, CONTACTS);
    let r = row(2, &["101", " Ada ", "Lovelace", " ADA@Example.COM ", "c1", "Acme", "Customer", "1,200", "03/05/2024"]);
    let p = payloads(m.map(&r));
    assert_eq!(
        p[0],
        Payload::Company(Company {
            name: "Acme".into(),
            internal_id: "c1".into(),
            filterable_attributes: Default::default()
        })
    );
    let Payload::Contact(c) = &p[1] else { panic!() };
    assert_eq!(c.name, "Ada Lovelace");
    assert_eq!(c.email.as_deref(), Some("ada@example.com"), "emails are trimmed and lowercased by default");
    assert_eq!(c.company_internal_id.as_deref(), Some("c1"), "linked to the company of the same row");
    assert_eq!(
        serde_json::to_value(&c.filterable_attributes).unwrap(),
        json!({"stage": "customer", "score": 1200, "created": "2024-03-05"})
    );
}

#[test]
fn company_is_emitted_once_per_run_and_name_conflicts_are_counted() {
    let mut m = mapper(CONTACT_MAPPING, CONTACTS);
    let p1 = payloads(m.map(&row(2, &["1", "A", "B", "", "c1", "Acme", "", "", ""])));
    let o2 = m.map(&row(3, &["2", "C", "D", "", "c1", "Acme", "", "", ""]));
    let p3 = payloads(m.map(&row(4, &["3", "E", "F", "", "c1", "ACME Inc", "", "", ""])));
    assert_eq!(p1.len(), 2);
    assert_eq!(
        dropped(o2.clone()),
        vec![Dropped { entity: Entity::Company, key: "c1".into(), reason: DropReason::Duplicate { first_line: 2 } }],
        "company c1 already emitted, by line 2"
    );
    let p2 = payloads(o2);
    assert_eq!(p2.len(), 1);
    assert!(matches!(&p2[0], Payload::Contact(c) if c.company_internal_id.as_deref() == Some("c1")));
    assert_eq!(p3.len(), 1);
    assert_eq!(m.stats().company_name_conflicts, 1);
}

#[test]
fn a_failed_row_does_not_claim_its_company() {
    let mut m = mapper(CONTACT_MAPPING, CONTACTS);
    // Row 2 fails (no name), so its company was never sent; row 3 must carry it.
    failures(m.map(&row(2, &["1", "", "", "", "c1", "Acme", "", "", ""])));
    let p = payloads(m.map(&row(3, &["2", "A", "B", "", "c1", "Acme", "", "", ""])));
    assert!(matches!(p[0], Payload::Company(_)));
}

#[test]
fn contact_without_company_is_fine_when_company_is_secondary() {
    let mut m = mapper(CONTACT_MAPPING, CONTACTS);
    let p = payloads(m.map(&row(2, &["1", "A", "B", "", "", "", "", "", ""])));
    assert_eq!(p.len(), 1);
    assert!(matches!(&p[0], Payload::Contact(c) if c.company_internal_id.is_none()));
}

#[test]
fn a_derived_company_with_only_its_id_or_its_name_is_not_sent_and_the_contact_still_is() {
    let mut m = mapper(CONTACT_MAPPING, CONTACTS);
    let contact_link = |p: &[Payload]| match p.last() {
        Some(Payload::Contact(c)) => c.company_internal_id.clone(),
        other => panic!("{other:?}"),
    };
    // HubSpot exports a company without a name with its id only.
    let MapOutcome::Mapped { payloads: first, dropped } = m.map(&row(2, &["1", "Ada", "L", "", "c9", "", "", "", ""]))
    else {
        panic!()
    };
    assert_eq!(first.len(), 1);
    assert_eq!(contact_link(&first).as_deref(), Some("c9"), "Savio may have it from a companies import");
    assert_eq!(
        dropped[0].to_string(),
        "company 'c9' not sent: its name is empty (from column 'Company'); the contact still links to it by id, \
         which Savio accepts if it has the company (sync your companies export first)"
    );
    // A later row names it: it is sent then, once.
    let p = payloads(m.map(&row(3, &["2", "Bob", "K", "", "c9", "Acme", "", "", ""])));
    assert!(matches!(&p[0], Payload::Company(c) if c.internal_id == "c9" && c.name == "Acme"));
    // Rows after that without its name just link to it.
    let p = payloads(m.map(&row(4, &["3", "Cy", "M", "", "c9", "", "", "", ""])));
    assert_eq!((p.len(), contact_link(&p).as_deref()), (1, Some("c9")));
    // A name without an id: no company, no link, and the report says why.
    let MapOutcome::Mapped { payloads: last, dropped } =
        m.map(&row(5, &["4", "Di", "N", "", "", "Globex", "", "", ""]))
    else {
        panic!()
    };
    assert_eq!((last.len(), contact_link(&last)), (1, None));
    assert_eq!(
        dropped[0].to_string(),
        "company 'Globex' not sent: its internal_id is empty (from column 'Company ID')"
    );
}

#[test]
fn missing_columns_read_as_empty_when_the_mapping_says_so_except_required_ones() {
    let toml = "[input]\nmissing_columns = \"empty\"\n[contact]\ninternal_id = \"Record ID\"\n\
                name = \"{First Name} {Last Name}\"\nemail = \"Email\"\n[contact.filterable_attributes]\n\
                city = \"City\"\ntitle = \"Job Title\"\n";
    // HubSpot's "properties in the view" export: no City column.
    let headers = ["Record ID", "First Name", "Last Name", "Email", "Job Title"];
    let compiled = Mapping::parse(toml, Path::new("m.toml")).unwrap().compile(&csv_info(&headers), &[]).unwrap();
    let warnings = compiled.warnings.join("\n");
    assert!(
        warnings.contains("contact.filterable_attributes.city: no column 'City' in the input; read as empty"),
        "{warnings}"
    );
    let mut m = compiled.mapper;
    let p = payloads(m.map(&row(2, &["7", "Ada", "Lovelace", "ada@x.io", "CTO"])));
    let Payload::Contact(c) = &p[0] else { panic!() };
    assert_eq!(c.filterable_attributes.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["title"]);
    // A field Savio requires must still have its columns, and so must a row filter.
    let err = compile_err(&toml.replace("\"Record ID\"\n", "\"Contact ID\"\n"), &headers);
    assert!(err.contains("no column 'Contact ID'"), "{err}");
    let err = compile_err(toml, &["Record ID", "First Name", "Email", "Job Title"]);
    assert!(err.contains("contact.name: no column 'Last Name'"), "{err}");
    let err = compile_err(&format!("{toml}[[skip]]\nif_empty = \"Lifecycle Stage\"\n"), &headers);
    assert!(err.contains("no column 'Lifecycle Stage'"), "{err}");
    let err = compile_err(&format!("{toml}[[skip]]\ncolumn = \"Status\"\nnot_equals = \"active\"\n"), &headers);
    assert!(err.contains("no column 'Status'"), "it would skip every row: {err}");
    // Any filter: silently off, it would let through what it was written to stop (spam, deleted records).
    let err = compile_err(&format!("{toml}[[skip]]\ncolumn = \"Label\"\ncontains = \"Spam\"\n"), &headers);
    assert!(err.contains("no column 'Label'"), "{err}");
    // Without the setting, a missing column refuses the mapping.
    let err = compile_err(&toml.replace("missing_columns = \"empty\"", ""), &headers);
    assert!(err.contains("no column 'City'"), "{err}");
}

#[test]
fn a_header_differing_only_in_letter_case_is_the_column_when_there_is_one() {
    let toml = "[company]\ninternal_id = \"Id\"\nname = \"Name\"\n";
    let mut m = mapper(toml, &["ID", "NAME"]);
    assert!(matches!(&payloads(m.map(&row(2, &["001", "Acme"])))[0], Payload::Company(c) if c.internal_id == "001"));
    let err = compile_err(toml, &["ID", "id", "NAME"]);
    assert!(err.contains("no column 'Id'"), "two candidates: no guess: {err}");
}

#[test]
fn ids_a_spreadsheet_rewrote_in_scientific_notation_fail_their_row() {
    let mut m = mapper(CONTACT_MAPPING, CONTACTS);
    let err = failures(m.map(&row(4, &["5,12346E+11", "Ada", "L", "", "", "", "", "", ""])));
    assert_eq!(
        err,
        ["contact.internal_id \"5,12346E+11\" is an id a spreadsheet rewrote in scientific notation, and its digits \
          are lost: export again, or format the column as Text before saving"]
    );
    let err = failures(m.map(&row(5, &["7", "Ada", "L", "", "1.2E+15", "Acme", "", "", ""])));
    assert!(err[0].starts_with("company.internal_id \"1.2E+15\" is an id a spreadsheet rewrote"), "{err:?}");
    // Ids with an "e" in them are ids.
    for id in ["0015e00000AbCdE", "1e5", "E+12", "12E+3x"] {
        assert!(matches!(m.map(&row(6, &[id, "Ada", "L", "", "", "", "", "", ""])), MapOutcome::Mapped { .. }), "{id}");
    }
}

#[test]
fn a_json_integer_beyond_64_bits_fails_its_row_without_blaming_a_spreadsheet() {
    // serde_json reads 12345678901234567890123 as a float: its digits are gone, but no spreadsheet took them.
    let line: serde_json::Value =
        serde_json::from_str(r#"{"id": 12345678901234567890123, "name": "Huge", "n": 12345678901234567890123}"#)
            .unwrap();
    let first = jrow(2, line);
    let toml = "[contact]\ninternal_id = \"id\"\nname = \"name\"\n[contact.filterable_attributes]\n\
                n = { column = \"n\", type = \"integer\" }\n";
    let mapping = Mapping::parse(toml, Path::new("m.toml")).unwrap();
    let mut m = mapping.compile(&json_info(), std::slice::from_ref(&first)).unwrap().mapper;
    let err = failures(m.map(&first));
    assert_eq!(
        err[0],
        "contact.internal_id \"1.2345678901234568e+22\" is an id written as a floating-point number, and its last \
         digits are lost (a JSON integer beyond 2^64 is read as one): export the ids as text (in JSON, as strings)"
    );
    assert!(
        err[1].starts_with("contact.filterable_attributes.n \"1.2345678901234568e+22\": not an integer: too large")
    );
    assert!(err.iter().all(|e| !e.contains("spreadsheet")), "{err:?}");
    // The same id as a string is an id.
    let quoted = jrow(3, json!({"id": "12345678901234567890123", "name": "Huge", "n": 7}));
    assert!(matches!(&payloads(m.map(&quoted))[0], Payload::Contact(c) if c.internal_id == "12345678901234567890123"));
}

#[test]
fn emails_as_people_paste_them_are_cleaned_and_invisible_characters_are_shown() {
    let mut m = mapper(CONTACT_MAPPING, CONTACTS);
    let email = |o: MapOutcome| match &payloads(o)[0] {
        Payload::Contact(c) => c.email.clone(),
        other => panic!("{other:?}"),
    };
    let r = |e: &str| row(2, &["1", "Ada", "L", e, "", "", "", "", ""]);
    assert_eq!(email(m.map(&r("Ada Lovelace <Ada@Example.com>"))).as_deref(), Some("ada@example.com"));
    assert_eq!(email(m.map(&r("\u{feff}zed@x.com\u{200b}"))).as_deref(), Some("zed@x.com"));
    assert_eq!(email(m.map(&r("ana@lima.br, ana.lima@lima.br"))).as_deref(), Some("ana@lima.br"));
    assert_eq!(email(m.map(&r("Bea <bea@lima.br>; other@x.io"))).as_deref(), Some("bea@lima.br"));
    for pasted in [
        "ada@example.com,",
        "ada@example.com ;",
        "mailto:ada@example.com",
        "Ada <MAILTO:ada@example.com>",
        "ada@example.com (work)",
        "ada@example.com | ada.l@example.org",
        "ada@example.com ada.l@example.org",
        "Lovelace, Ada <ada@example.com>",
        "Ada Lovelace <ada@example.com>; Bob <bob@example.com>",
    ] {
        // A new mapper each time: the same contact twice is not sent twice.
        let mut m = mapper(CONTACT_MAPPING, CONTACTS);
        assert_eq!(email(m.map(&r(pasted))).as_deref(), Some("ada@example.com"), "{pasted}");
    }
    // A mistyped address stays as it is and fails.
    let err = failures(m.map(&r("tom@gmail,com")));
    assert!(err[0].contains("\"tom@gmail,com\""), "{err:?}");
    // A value that is wrong is shown with what cannot be seen spelt out.
    let err = failures(m.map(&row(3, &["2", "Bo", "K", "", "", "", "", "12\u{200b}", ""])));
    assert!(err[0].starts_with("contact.filterable_attributes.score \"12\\u{200b}\": not an integer"), "{err:?}");
}

#[test]
fn a_template_whose_placeholders_are_all_empty_is_empty() {
    let toml = "[contact]\ninternal_id = \"ID\"\nname = { template = \"{Last}, {First}\", default = \"{Email}\" }\n";
    let mut m = mapper(toml, &["ID", "First", "Last", "Email"]);
    let name = |o: MapOutcome| match &payloads(o)[0] {
        Payload::Contact(c) => c.name.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(name(m.map(&row(2, &["1", "", "", "ann@x.io"]))), "ann@x.io", "the default, not \", \"");
    assert_eq!(name(m.map(&row(3, &["2", "Ada", "Lovelace", ""]))), "Lovelace, Ada");
    let err = failures(m.map(&row(4, &["3", "", "", ""])));
    assert!(err[0].starts_with("contact.name is required but empty"), "{err:?}");
}

#[test]
fn every_bad_field_of_a_row_is_reported() {
    let mut m = mapper(CONTACT_MAPPING, CONTACTS);
    let errs = failures(m.map(&row(7, &["", " ", "", "bob@", "c1", "", "", "12a", "someday"])));
    let all = errs.join("\n");
    for needle in [
        "contact.internal_id is required",
        "contact.name is required but empty (from template \"{First Name} {Last Name}\")",
        "contact.email \"bob@\" is not a valid email address",
        "contact.filterable_attributes.score \"12a\": not an integer",
        "contact.filterable_attributes.created \"someday\": not a recognised date",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn unknown_columns_are_refused_with_a_suggestion_and_all_problems_listed() {
    let toml = r#"
        [contact]
        internal_id = "RecordID"
        name = "{Firstname} {Last Name}"
        email = "E-mail"
    "#;
    let err = compile_err(toml, CONTACTS);
    assert!(err.contains("3 problems"), "{err}");
    assert!(err.contains("contact.internal_id: no column 'RecordID' in the input; did you mean 'Record ID'?"), "{err}");
    assert!(err.contains("did you mean 'First Name'?"), "{err}");
    assert!(err.contains("contact.email: no column 'E-mail' in the input; did you mean 'Email'?"), "{err}");
}

#[test]
fn missing_required_fields_and_bad_options_are_refused() {
    let err = compile_err("[contact]\nname = \"Email\"\n", CONTACTS);
    assert!(err.contains("contact.internal_id: Savio requires this field"), "{err}");
    let err = compile_err(
        "[contact]\nname = \"Email\"\ninternal_id = { column = \"Email\", type = \"integer\" }\n",
        CONTACTS,
    );
    assert!(err.contains("type applies only to filterable_attributes"), "{err}");
    let err =
        compile_err("[contact]\nname = \"Email\"\ninternal_id = { column = \"Email\", value = \"x\" }\n", CONTACTS);
    assert!(err.contains("exactly one source"), "{err}");
    let err = compile_err("[feedback]\nproblem = \"Email\"\nfeedback_type = { value = \"CUSTOMER\" }\n", CONTACTS);
    assert!(err.contains("\"CUSTOMER\" is not an accepted value"), "{err}");
    let err = compile_err(
        "[feedback]\nproblem = \"Email\"\nfeedback_type = { column = \"Stage\", map = { customer = \"ACTIV\" } }\n",
        CONTACTS,
    );
    assert!(err.contains("\"ACTIV\" is not an accepted value"), "{err}");
    let err = compile_err("[feedback]\nproblem = \"{Email\"\n", CONTACTS);
    assert!(err.contains("never closed"), "{err}");
    let err =
        compile_err("[[skip]]\nif_empty = \"Email\"\ncolumn = \"Stage\"\n[feedback]\nproblem = \"Email\"\n", CONTACTS);
    assert!(err.contains("a filter is either"), "{err}");
    let err = compile_err("[input]\n", CONTACTS);
    assert!(err.contains("maps no entity"), "{err}");
}

#[test]
fn feedback_with_value_map_default_split_tags_and_choices() {
    let headers = &["Body", "Segment", "Tags", "Email", "Name", "State"];
    let toml = r#"
        [feedback]
        problem = { column = "Body", collapse_whitespace = true }
        feedback_type = { column = "Segment", map = { customer = "ACTIVE", lead = "PROSPECT" }, map_default = "OTHER" }
        tags = { column = "Tags", split = ";", case = "lower" }
        person_email = "Email"
        person_name = { column = "Name", default = "{Email}" }
        state = { column = "State", default = "PENDING" }
    "#;
    let mut m = mapper(toml, headers);
    let p = payloads(m.map(&row(2, &["Needs  SSO\n please", "Customer", "SSO; Security;;sso", "", "", ""])));
    assert_eq!(
        p,
        vec![Payload::Feedback(Feedback {
            problem: "Needs SSO please".into(),
            feedback_type: Some("ACTIVE".into()),
            state: Some("PENDING".into()),
            tags: vec!["sso".into(), "security".into()],
            ..Default::default()
        })]
    );
    let p = payloads(m.map(&row(3, &["x", "partner", "", "Bo@X.io", "", "archived"])));
    let Payload::Feedback(f) = &p[0] else { panic!() };
    assert_eq!(f.feedback_type.as_deref(), Some("OTHER"), "unmatched values take map_default");
    assert_eq!(f.person_name.as_deref(), Some("Bo@X.io"), "default template");
    assert_eq!(f.state.as_deref(), Some("ARCHIVED"), "choices are matched case-insensitively");
    assert!(f.tags.is_empty());
    let errs = failures(m.map(&row(4, &["x", "", "", "", "", "Closed"])));
    assert!(errs[0].contains("feedback.state \"Closed\" is not an accepted value"), "{errs:?}");
}

#[test]
fn an_accepted_value_written_as_a_column_says_how_to_write_a_constant() {
    let err = compile_err("[feedback]\nproblem = \"Text\"\nstate = \"PENDING\"\n", &["Text", "Status"]);
    assert!(
        err.contains(
            "feedback.state: 'PENDING' is one of the accepted values, not a column of the input: for a constant \
             write state = { value = \"PENDING\" }"
        ),
        "{err}"
    );
    // A column that happens to be named like a value is that column.
    let m = mapper("[feedback]\nproblem = \"Text\"\nstate = \"Active\"\n", &["Text", "Active"]);
    assert!(m.feedback.as_ref().unwrap().state.is_some());
}

#[test]
fn checks_extend_the_accepted_values() {
    let toml = "[checks]\nfeedback_types = [\"BETA\"]\n[feedback]\nproblem = \"Body\"\nfeedback_type = \"Type\"\n";
    let mut m = mapper(toml, &["Body", "Type"]);
    let p = payloads(m.map(&row(2, &["x", "beta"])));
    assert!(matches!(&p[0], Payload::Feedback(f) if f.feedback_type.as_deref() == Some("BETA")));
}

#[test]
fn row_and_entity_filters_skip_with_a_reason() {
    let toml = r#"
        [[skip]]
        column = "Stage"
        equals = ["other", "Unqualified"]

        [company]
        internal_id = "Company ID"
        name = "Company"

        [contact]
        internal_id = "Record ID"
        name = "First Name"
        [[contact.skip]]
        if_empty = "Email"
    "#;
    let mut m = mapper(toml, CONTACTS);
    assert_eq!(
        m.map(&row(2, &["1", "A", "", "a@b.co", "", "", "unqualified", "", ""])),
        MapOutcome::Skipped("filter: 'Stage' is \"other\" or \"Unqualified\"".into())
    );
    // Contact filtered, no company: nothing to send, the entity filter is the reason.
    let contact_filtered = Dropped {
        entity: Entity::Contact,
        key: "1".into(),
        reason: DropReason::Filter("contact filter: 'Email' is empty".into()),
    };
    assert_eq!(
        m.map(&row(3, &["1", "A", "", "", "", "", "", "", ""])),
        MapOutcome::Mapped { payloads: vec![], dropped: vec![contact_filtered.clone()] }
    );
    // Contact filtered but the company still goes; the skipped contact is listed.
    let o = m.map(&row(4, &["1", "A", "", "", "c9", "Nine", "", "", ""]));
    assert_eq!(dropped(o.clone()), vec![contact_filtered.clone()]);
    assert!(matches!(&payloads(o)[..], [Payload::Company(_)]));
    // Contact filtered and the company already sent: both are listed, the company first.
    let o = m.map(&row(5, &["1", "A", "", "", "c9", "Nine", "", "", ""]));
    assert_eq!(
        dropped(o),
        vec![
            Dropped { entity: Entity::Company, key: "c9".into(), reason: DropReason::Duplicate { first_line: 4 } },
            contact_filtered
        ]
    );
}

#[test]
fn a_contains_filter_skips_a_row_holding_one_label_among_several() {
    let toml = "[[skip]]\ncolumn = \"Labels\"\ncontains = [\"spam\", \"Do not contact\"]\n\
                [company]\ninternal_id = \"ID\"\nname = \"Name\"\n";
    let mut m = mapper(toml, &["ID", "Name", "Labels"]);
    assert_eq!(
        m.map(&row(2, &["1", "Acme", "Hot lead, SPAM"])),
        MapOutcome::Skipped("filter: 'Labels' contains \"spam\" or \"Do not contact\"".into())
    );
    assert!(matches!(m.map(&row(3, &["2", "Globex", "do not contact"])), MapOutcome::Skipped(_)));
    assert!(matches!(m.map(&row(4, &["3", "Initech", "Hot lead"])), MapOutcome::Mapped { .. }));
    let err = compile_err(&toml.replace("[\"spam\", \"Do not contact\"]", "\" \""), &["ID", "Name", "Labels"]);
    assert!(err.contains("contains needs a non-empty string"), "{err}");
}

#[test]
fn an_html_body_is_sent_as_its_text() {
    let toml = "[feedback]\nproblem = { column = \"body\", strip_html = true }\n";
    let mut m = mapper(toml, &["body"]);
    let p = payloads(m.map(&row(2, &["<p>Need SSO &amp; SCIM</p><p>Thanks!</p>"])));
    let Payload::Feedback(f) = &p[0] else { panic!() };
    assert_eq!(f.problem, "Need SSO & SCIM\nThanks!");
}

#[test]
fn unmapped_columns_become_attributes_with_normalised_keys() {
    let headers =
        &["ID", "Name", "Lifecycle Stage", "Annual Revenue ($)", "Phone", "_savio_line", "_savio_error", "stage"];
    let toml = r#"
        [company]
        internal_id = "ID"
        name = "Name"
        unmapped = "attributes"
        unmapped_exclude = ["Phone"]
        [company.filterable_attributes]
        lifecycle_stage = "stage"
    "#;
    let mut m = mapper(toml, headers);
    let p = payloads(m.map(&row(2, &["1", "Acme", "Lead", "", "555", "9", "old error", "x"])));
    let Payload::Company(c) = &p[0] else { panic!() };
    assert_eq!(
        serde_json::to_value(&c.filterable_attributes).unwrap(),
        json!({"lifecycle_stage": "x", "lifecycle_stage_2": "Lead"}),
        "explicit keys win, collisions get a suffix, empty cells, excluded and _savio_ columns are left out"
    );
}

#[test]
fn jsonl_paths_lists_and_unmapped_leaves() {
    let toml = r#"
        [feedback]
        problem = "text"
        person_email = "author.email"
        person_name = "author.name"
        tags = "tags"
        source_url = "url"
        [contact]
        internal_id = "author.id"
        name = "author.name"
        email = "author.email"
        unmapped = "attributes"
    "#;
    let first = jrow(
        1,
        json!({"text": "Export to PDF", "author": {"email": "A@B.co", "name": "Ann", "id": 7, "plan": "pro"}, "tags": ["pdf", "export"], "url": "https://x.io/1", "meta": {"score": 9}}),
    );
    let mapping = Mapping::parse(toml, Path::new("m.toml")).unwrap();
    let mut m = mapping.compile(&json_info(), std::slice::from_ref(&first)).unwrap().mapper;
    let p = payloads(m.map(&first));
    assert_eq!(
        p[0],
        Payload::Contact(Contact {
            name: "Ann".into(),
            internal_id: "7".into(),
            email: Some("a@b.co".into()),
            company: None,
            company_internal_id: None,
            filterable_attributes: serde_json::from_value(json!({"author_plan": "pro", "meta_score": 9})).unwrap(),
        })
    );
    let Payload::Feedback(f) = &p[1] else { panic!() };
    assert_eq!(f.tags, vec!["pdf", "export"]);
    assert_eq!(f.person_email.as_deref(), Some("a@b.co"));
}

#[test]
fn jsonl_unknown_paths_are_checked_against_the_sample() {
    let sample = [jrow(1, json!({"text": "x", "author": {"email": "a@b.co"}}))];
    let mapping =
        Mapping::parse("[feedback]\nproblem = \"txt\"\nperson_email = \"author.mail\"\n", Path::new("m.toml")).unwrap();
    let err = mapping.compile(&json_info(), &sample).err().unwrap().to_string();
    assert!(
        err.contains("feedback.problem: no object among the first 1 has the path 'txt'; did you mean 'text'?"),
        "{err}"
    );
    // The email a person is matched by must be found too: read as empty, every feedback would go out without
    // its person, and feedback cannot be taken back.
    assert!(err.contains("(2 problems)"), "{err}");
    assert!(
        err.contains("feedback.person_email: no object among the first 1 has the path 'author.mail'; did you mean 'author.email'?"),
        "{err}"
    );
    // An optional path that is merely absent from the sample is a warning, shown with the errors.
    let mapping =
        Mapping::parse("[feedback]\nproblem = \"txt\"\nsource_url = \"link\"\n", Path::new("m.toml")).unwrap();
    let err = mapping.compile(&json_info(), &sample).err().unwrap().to_string();
    assert!(err.contains("(1 problem)"), "{err}");
    assert!(err.contains("\n  warning: feedback.source_url: no object among the first 1 has the path 'link'"), "{err}");
    let lenient = Mapping::parse(
        "[input]\nstrict_paths = false\n[feedback]\nproblem = \"txt\"\nperson_email = \"author.mail\"\n",
        Path::new("m.toml"),
    )
    .unwrap();
    let compiled = lenient.compile(&json_info(), &sample).unwrap();
    assert_eq!(compiled.warnings.len(), 2, "strict_paths = false: warnings only");
}

#[test]
fn jsonl_optional_paths_that_look_misspelt_are_errors_and_strict_paths_makes_every_one_an_error() {
    let sample = [jrow(1, json!({"description": "x", "requester": {"email": "a@b.co", "name": "A"}, "url": "u"}))];
    let compile = |toml: &str| Mapping::parse(toml, Path::new("m.toml")).unwrap().compile(&json_info(), &sample);
    // Two edits from a path of the sample: a typo, refused before anything is sent.
    let err = compile("[feedback]\nproblem = \"description\"\nperson_name = \"requester.nmae\"\n").err().unwrap();
    assert!(err.to_string().contains("did you mean 'requester.name'?"), "{err}");
    // Further from every sampled path: a key the first objects lack, a warning.
    let ok = compile("[feedback]\nproblem = \"description\"\nsource_username = \"assignee.name\"\n").unwrap();
    assert_eq!(ok.warnings.len(), 1, "{:?}", ok.warnings);
    // strict_paths = true: every path must be in the sample.
    let err = compile(
        "[input]\nstrict_paths = true\n[feedback]\nproblem = \"description\"\nsource_username = \"assignee.name\"\n",
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("feedback.source_username: no object among the first 1"), "{err}");
    // A fallback never is: one of several columns seen, or a default.
    let ok = compile(
        "[input]\nstrict_paths = true\n[feedback]\nproblem = \"description\"\n\
         person_name = { column = [\"requester.full_name\", \"requester.name\"], default = \"{requester.nick}\" }\n",
    )
    .unwrap();
    assert!(ok.warnings.iter().any(|w| w.contains("requester.full_name")), "{:?}", ok.warnings);
}

#[test]
fn an_identity_email_column_must_exist_even_when_missing_columns_read_as_empty() {
    let headers = ["Record ID", "First Name", "Email Address", "Phone"];
    let toml = "[input]\nmissing_columns = \"empty\"\n[contact]\ninternal_id = \"Record ID\"\nname = \"First Name\"\n\
                email = \"Email\"\n[contact.filterable_attributes]\nphone = \"Phone Number\"\n";
    let err = compile_err(toml, &headers);
    assert!(err.contains("(1 problem)"), "the attribute's column reads as empty: {err}");
    assert!(
        err.contains("contact.email: no column 'Email' in the input; did you mean 'Email Address'?; Savio matches people by email"),
        "{err}"
    );
    // Of several columns, one is enough.
    let toml = toml.replace("email = \"Email\"", "email = { column = [\"Email\", \"Email Address\"] }");
    let compiled = Mapping::parse(&toml, Path::new("m.toml")).unwrap().compile(&csv_info(&headers), &[]).unwrap();
    assert!(
        !compiled.warnings.iter().any(|w| w.contains("contact.email")),
        "one may be missing: {:?}",
        compiled.warnings
    );
}

#[test]
fn objects_and_lists_of_objects_are_refused_with_a_key_to_map_and_paths_inside_work() {
    // Intercom's tags: {"type": "tag.list", "tags": [{"id": "7", "name": "sso"}, ...]}.
    let row = json!({"body": "SSO please", "tags": {"type": "tag.list", "tags": [{"id": "7", "name": "sso"}]}});
    let sample = [jrow(1, row)];
    let parse = |t: &str| Mapping::parse(t, Path::new("m.toml")).unwrap();
    let err = parse("[feedback]\nproblem = \"body\"\ntags = \"tags.tags\"\n")
        .compile(&json_info(), &sample)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(
            "feedback.tags: 'tags.tags' holds a list of objects (keys: id, name), which would be sent as JSON text; \
             map a key inside, e.g. 'tags.tags.name'"
        ),
        "{err}"
    );
    let row = json!({"body": "x", "author": {"name": "Ann", "email": "ann@example.com"}});
    let err = parse("[feedback]\nproblem = \"body\"\nperson_email = \"author\"\n")
        .compile(&json_info(), &[jrow(1, row)])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("'author' holds an object (keys: email, name)"), "{err}");
    assert!(err.contains("e.g. 'author.email'"), "{err}");
    // Skipping rows without tags names the list without sending it: fine.
    let mut m = parse(
        "[[feedback.skip]]\nif_empty = \"tags.tags\"\n[feedback]\nproblem = \"body\"\ntags = \"tags.tags.name\"\n",
    )
    .compile(&json_info(), &sample)
    .unwrap()
    .mapper;
    let p = payloads(m.map(&sample[0]));
    let Payload::Feedback(f) = &p[0] else { panic!() };
    assert_eq!(f.tags, vec!["sso"]);
}

#[test]
fn a_line_past_the_sample_whose_path_holds_an_object_fails_instead_of_sending_its_json() {
    // The first lines have tags as a list of names; a later one has Intercom's tag.list object.
    let sample = [jrow(1, json!({"body": "SSO please", "tags": ["sso"]}))];
    let mut m = Mapping::parse("[feedback]\nproblem = \"body\"\ntags = \"tags\"\n", Path::new("m.toml"))
        .unwrap()
        .compile(&json_info(), &sample)
        .unwrap()
        .mapper;
    assert!(matches!(m.map(&sample[0]), MapOutcome::Mapped { .. }));
    let later = jrow(1500, json!({"body": "Dark mode", "tags": {"type": "tag.list", "tags": [{"name": "ui"}]}}));
    assert_eq!(
        failures(m.map(&later)),
        ["feedback.tags: 'tags' holds an object on this line (keys: type, tags), not a value; map a key inside, \
          e.g. 'tags.tags.name'"]
    );
    let list = jrow(1501, json!({"body": "Dark mode", "tags": [{"id": 1, "name": "ui"}]}));
    assert!(failures(m.map(&list))[0].contains("'tags' holds a list of objects on this line (keys: id, name)"));
}

#[test]
fn coalescing_columns_and_typed_constants() {
    let headers = &["ID", "Name", "Legal Name", "Employees"];
    let toml = r#"
        [company]
        internal_id = "ID"
        name = { column = ["Name", "Legal Name"] }
        [company.filterable_attributes]
        source = { value = "hubspot" }
        migrated = { value = true }
        employees = { column = "Employees", type = "integer", default = "0" }
    "#;
    let mut m = mapper(toml, headers);
    let p = payloads(m.map(&row(2, &["1", "", "Acme GmbH", ""])));
    let Payload::Company(c) = &p[0] else { panic!() };
    assert_eq!(c.name, "Acme GmbH");
    assert_eq!(
        serde_json::to_value(&c.filterable_attributes).unwrap(),
        json!({"employees": 0, "migrated": true, "source": "hubspot"})
    );
}

#[test]
fn companies_only_mapping_reports_duplicates() {
    let mut m = mapper("[company]\ninternal_id = \"ID\"\nname = \"Name\"\n", &["ID", "Name"]);
    payloads(m.map(&row(2, &["1", "Acme"])));
    assert_eq!(
        m.map(&row(3, &["1", "Acme"])),
        MapOutcome::Mapped {
            payloads: vec![],
            dropped: vec![Dropped {
                entity: Entity::Company,
                key: "1".into(),
                reason: DropReason::Duplicate { first_line: 2 }
            }]
        }
    );
}

#[test]
fn identical_contact_is_dropped_and_a_changed_one_is_sent_and_counted() {
    let mut m = mapper(CONTACT_MAPPING, CONTACTS);
    let ada = ["1", "Ada", "L", "ada@x.io", "", "", "Lead", "", ""];
    assert_eq!(payloads(m.map(&row(2, &ada))).len(), 1);
    let again = m.map(&row(3, &ada));
    assert_eq!(
        again,
        MapOutcome::Mapped {
            payloads: vec![],
            dropped: vec![Dropped {
                entity: Entity::Contact,
                key: "1".into(),
                reason: DropReason::Duplicate { first_line: 2 }
            }]
        }
    );
    let changed = ["1", "Ada", "L", "ada@x.io", "", "", "Customer", "", ""];
    assert_eq!(payloads(m.map(&row(4, &changed))).len(), 1, "same id, other values: the later row wins");
    assert_eq!(m.stats().contact_conflicts, 1);
    assert_eq!(dropped(m.map(&row(5, &changed)))[0].reason, DropReason::Duplicate { first_line: 4 });
    assert_eq!(payloads(m.map(&row(6, &ada))).len(), 1, "back to the first values: sent again");
    assert_eq!(m.stats().contact_conflicts, 2);
    let other = ["2", "Ada", "L", "ada@x.io", "", "", "Lead", "", ""];
    assert_eq!(payloads(m.map(&row(7, &other))).len(), 1, "another id");
}

#[test]
fn identical_feedback_is_dropped_with_its_content_key() {
    let headers = &["Body", "Email"];
    let mut m = mapper("[feedback]\nproblem = \"Body\"\nperson_email = \"Email\"\n", headers);
    let first = payloads(m.map(&row(2, &["Slow export", "a@b.co"])));
    assert_eq!(payloads(m.map(&row(3, &["Slow export", "c@d.co"]))).len(), 1, "another person");
    let d = dropped(m.map(&row(4, &[" Slow export ", "A@B.co"])));
    assert_eq!(
        d,
        vec![Dropped {
            entity: Entity::Feedback,
            key: first[0].key(),
            reason: DropReason::Duplicate { first_line: 2 }
        }],
        "identical once cleaned"
    );
    assert!(d[0].key.starts_with("sha:"));
    assert_eq!(d[0].to_string(), "feedback identical to the one of line 2");
}

#[test]
fn a_failed_row_claims_no_duplicate() {
    let headers = &["Body", "Email"];
    let mut m = mapper("[feedback]\nproblem = \"Body\"\nperson_email = \"Email\"\n", headers);
    failures(m.map(&row(2, &["Slow export", "not-an-email"])));
    failures(m.map(&row(3, &["Slow export", "not-an-email"])));
    assert_eq!(payloads(m.map(&row(4, &["Slow export", ""]))).len(), 1);
}

#[test]
fn a_date_column_has_one_day_month_order_settled_by_its_first_rows() {
    let toml = "[company]\ninternal_id = \"ID\"\nname = \"Name\"\n[company.filterable_attributes]\n\
                since = { column = \"Since\", type = \"date\" }\n";
    let headers = ["ID", "Name", "Since"];
    let since = |o: MapOutcome| {
        let Payload::Company(c) = &payloads(o)[0] else { panic!() };
        c.filterable_attributes["since"].clone()
    };
    // A UK export: line 3 can only be day first, so line 2 is 5 March, not May 3.
    let sample = [row(2, &["1", "A", "05/03/2024"]), row(3, &["2", "B", "25/03/2024"])];
    let mut m = mapper(toml, &headers);
    assert!(m.needs_order_sample());
    let warnings = m.settle_date_orders(sample.iter());
    assert!(!m.needs_order_sample());
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("dates read day/month/year, as line 3 ('25/03/2024') shows"), "{warnings:?}");
    assert_eq!(since(m.map(&sample[0])), "2024-03-05");
    assert_eq!(since(m.map(&sample[1])), "2024-03-25");
    // A later month-first date is not read the other way: its row fails and says how to settle it.
    let err = failures(m.map(&row(9, &["3", "C", "03/25/2024"])));
    assert!(
        err[0].contains("a month/day/year date, but this field's dates read day/month/year (line 3 shows it)"),
        "{err:?}"
    );

    // A US export: month first, no warning.
    let mut m = mapper(toml, &headers);
    assert!(
        m.settle_date_orders([row(2, &["1", "A", "05/03/2024"]), row(3, &["2", "B", "12/31/2024"])].iter()).is_empty()
    );
    assert_eq!(since(m.map(&row(2, &["1", "A", "05/03/2024"]))), "2024-05-03");
    let err = failures(m.map(&row(4, &["3", "C", "31/12/2024"])));
    assert!(err[0].contains("set date_order = \"dmy\" on the field"), "{err:?}");

    // Nothing tells: month first, with a warning naming a value that reads either way.
    let mut m = mapper(toml, &headers);
    let warnings = m.settle_date_orders([row(2, &["1", "A", "2024-01-09"]), row(3, &["2", "B", "05/03/2024"])].iter());
    assert!(warnings[0].contains("dates such as '05/03/2024' (line 3) read either way"), "{warnings:?}");

    // Both orders among the first rows: the more frequent wins, and the warning shows one of each.
    let mut m = mapper(toml, &headers);
    let mixed =
        [row(2, &["1", "A", "25/03/2024"]), row(3, &["2", "B", "03/25/2024"]), row(4, &["3", "C", "26/03/2024"])];
    let warnings = m.settle_date_orders(mixed.iter());
    assert!(
        warnings[0].contains(
            "both orders (day first: line 2 '25/03/2024'; month first: line 3 '03/25/2024'); reading day/month/year"
        ),
        "{warnings:?}"
    );
    assert!(failures(m.map(&mixed[1]))[0].contains("a month/day/year date"));

    // An order the mapping gives is never second-guessed, and needs no sample.
    let given = toml.replace("type = \"date\"", "type = \"date\", date_order = \"mdy\"");
    let m = mapper(&given, &headers);
    assert!(!m.needs_order_sample());
}

#[test]
fn a_date_column_that_reads_either_way_takes_the_order_another_column_of_the_input_proves() {
    // The QA report's UK export: `Create Date` proves day first, `Last Activity Date` holds only dates that
    // read either way, and was read month first: one file, two orders.
    let toml = "[company]\ninternal_id = \"ID\"\nname = \"Name\"\n[company.filterable_attributes]\n\
                since = { column = \"Since\", type = \"date\" }\n\
                [contact]\ninternal_id = \"CID\"\nname = \"Name\"\n[contact.filterable_attributes]\n\
                created = { column = \"Create Date\", type = \"date\" }\n\
                last_activity = { column = \"Last Activity Date\", type = \"date\" }\n";
    let headers = ["ID", "CID", "Name", "Since", "Create Date", "Last Activity Date"];
    let attrs = |o: MapOutcome| {
        let p = payloads(o);
        let Payload::Company(c) = &p[0] else { panic!() };
        let Payload::Contact(k) = &p[1] else { panic!() };
        let (c, k) = (&c.filterable_attributes, &k.filterable_attributes);
        [&c["since"], &k["created"], &k["last_activity"]].map(|v| v.as_str().unwrap_or_default().to_string())
    };
    let sample = [
        row(2, &["1", "a", "A", "", "25/03/2024", "05/04/2024"]),
        row(3, &["2", "b", "B", "2024-01-09", "13/01/2024", "01/02/2024"]),
    ];
    let mut m = mapper(toml, &headers);
    let warnings = m.settle_date_orders(sample.iter());
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("contact.filterable_attributes.created: dates read day/month/year, as line 2"));
    assert_eq!(
        warnings[1],
        "contact.filterable_attributes.last_activity: dates such as '05/04/2024' (line 2) read either way; reading \
         day/month/year, as contact.filterable_attributes.created shows on line 2 ('25/03/2024'), since an export \
         writes all its dates one way. Set date_order = \"dmy\" on the field to make it explicit (a re-run of the \
         failures file may hold no date that shows it)"
    );
    assert_eq!(attrs(m.map(&sample[0])), ["", "2024-03-25", "2024-04-05"]);
    assert_eq!(attrs(m.map(&sample[1])), ["2024-01-09", "2024-01-13", "2024-02-01"]);
    // A field with no numeric date among the first rows (here the company's) takes the order too, silently:
    // the input's warning was given.
    assert_eq!(attrs(m.map(&row(4, &["3", "c", "C", "05/04/2024", "", ""]))), ["2024-04-05", "", ""]);
    // A later date only the other order reads fails, naming the field that settled the order.
    let err = failures(m.map(&row(5, &["4", "d", "D", "", "", "04/25/2024"])));
    assert_eq!(
        err,
        ["contact.filterable_attributes.last_activity \"04/25/2024\": a month/day/year date, but this input's dates \
          read day/month/year (contact.filterable_attributes.created on line 2 shows it; this field's first rows did \
          not tell); set date_order = \"mdy\" on the field if the column is month/day/year"]
    );

    // Month first proved by one column: the others follow, and nothing is guessed, so nothing is warned.
    let mut m = mapper(toml, &headers);
    let us = [row(2, &["1", "a", "A", "", "03/25/2024", "05/04/2024"])];
    assert!(m.settle_date_orders(us.iter()).is_empty());
    assert_eq!(attrs(m.map(&us[0])), ["", "2024-03-25", "2024-05-04"]);
    let err = failures(m.map(&row(3, &["2", "b", "B", "", "", "25/04/2024"])));
    assert!(err[0].contains("this input's dates read month/day/year (contact.filterable_attributes.created on line 2"));

    // Fields proving different orders keep their own, and the input is warned about once; a field that
    // reads either way is then read month first, as before, with its own warning.
    let mut m = mapper(toml, &headers);
    let mixed = [row(2, &["1", "a", "A", "25/03/2024", "03/25/2024", "05/04/2024"])];
    let warnings = m.settle_date_orders(mixed.iter());
    assert_eq!(
        warnings[0],
        "the input's date fields prove different day/month orders (company.filterable_attributes.since: \
         day/month/year, line 2 '25/03/2024'; contact.filterable_attributes.created: month/day/year, line 2 \
         '03/25/2024'): each reads its own, and a date field whose first rows read either way is read \
         month/day/year. Set date_order on each date field to make them explicit"
    );
    assert!(warnings[1].starts_with("company.filterable_attributes.since: dates read day/month/year"), "{warnings:?}");
    assert!(warnings[2].contains("'05/04/2024' (line 2) read either way, and the first rows hold none that tells"));
    assert_eq!(warnings.len(), 3);
    assert_eq!(attrs(m.map(&mixed[0])), ["2024-03-25", "2024-03-25", "2024-05-04"]);

    // A column holding both orders itself keeps its majority, and lends it to no other.
    let mut m = mapper(toml, &headers);
    let both = [
        row(2, &["1", "a", "A", "25/03/2024", "", "05/04/2024"]),
        row(3, &["2", "b", "B", "03/25/2024", "", ""]),
        row(4, &["3", "c", "C", "26/03/2024", "", ""]),
    ];
    let warnings = m.settle_date_orders(both.iter());
    assert!(warnings[0].contains("both orders"), "{warnings:?}");
    assert!(warnings[1].contains("the first rows hold none that tells: reading month/day/year"), "{warnings:?}");
    assert_eq!(attrs(m.map(&both[0])), ["2024-03-25", "", "2024-05-04"]);

    // An order given in the mapping stays, whatever other columns show.
    let given = toml.replace(
        "last_activity = { column = \"Last Activity Date\", type = \"date\" }",
        "last_activity = { column = \"Last Activity Date\", type = \"date\", date_order = \"mdy\" }",
    );
    let mut m = mapper(&given, &headers);
    m.settle_date_orders(sample.iter());
    assert_eq!(attrs(m.map(&sample[0])), ["", "2024-03-25", "2024-05-04"]);
}

#[test]
fn european_integers_with_decimal_comma() {
    let toml = "[company]\ninternal_id = \"ID\"\nname = \"Name\"\n[company.filterable_attributes]\n\
                employees = { column = \"N\", type = \"integer\", decimal = \",\" }\n";
    let mut m = mapper(toml, &["ID", "Name", "N"]);
    let p = payloads(m.map(&row(2, &["1", "Bergmann AG", "1.200"])));
    let Payload::Company(c) = &p[0] else { panic!() };
    assert_eq!(c.filterable_attributes["employees"], 1200);
    let err = compile_err(
        "[company]\ninternal_id = \"ID\"\nname = \"Name\"\n[company.filterable_attributes]\n\
         n = { column = \"N\", type = \"bool\", decimal = \",\" }\n",
        &["ID", "Name", "N"],
    );
    assert!(err.contains("decimal applies only with type = \"float\" or type = \"integer\""), "{err}");
}

#[test]
fn a_one_column_header_holding_a_delimiter_hints_at_the_delimiter() {
    let line = "Record ID;First Name;Last Name;Email";
    let err = compile_err("[contact]\ninternal_id = \"Record ID\"\nname = \"First Name\"\n", &[line]);
    assert!(err.contains("hint: the header has one column 'Record ID;First Name;Last Name;Email'"), "{err}");
    assert!(err.contains("The delimiter was given ','; try --delimiter ';'"), "{err}");
    assert!(!err.contains("did you mean"), "{err}");
    let err = compile_err("[contact]\ninternal_id = \"ID\"\nname = \"Name\"\n", &["Email"]);
    assert!(!err.contains("hint"), "{err}");
}

#[test]
fn jsonl_paths_of_optional_fields_are_warnings_and_required_ones_errors() {
    let sample = [jrow(1, json!({"text": "x", "author": {"email": "a@b.co", "id": "7"}}))];
    let toml = r#"
        [feedback]
        problem = "text"
        source_username = "assignee.name"
        person_name = { column = "author.name", default = "{author.nick}" }
        [contact]
        internal_id = { column = ["author.uid", "author.id"] }
        name = "author.fullname"
        [[contact.skip]]
        if_empty = "author.banned"
    "#;
    let compiled = Mapping::parse(toml, Path::new("m.toml")).unwrap().compile(&json_info(), &sample).unwrap();
    let warnings = compiled.warnings.join("\n");
    for path in ["assignee.name", "author.name", "author.nick", "author.uid", "author.fullname", "author.banned"] {
        assert!(warnings.contains(&format!("the path '{path}'")), "{path} in:\n{warnings}");
    }
    assert!(!warnings.contains("strict_paths"), "{warnings}");
    // The contact is the main entity here: its required paths must be in the sample.
    let toml = "[contact]\ninternal_id = \"author.id\"\nname = \"author.fullname\"\nemail = \"author.email\"\n";
    let err = Mapping::parse(toml, Path::new("m.toml")).unwrap().compile(&json_info(), &sample).err().unwrap();
    let err = err.to_string();
    assert!(err.contains("(1 problem)") && err.contains("contact.name: no object among the first 1"), "{err}");
    // So must the feedback's problem, even among alternatives: one seen path is enough.
    let toml = "[feedback]\nproblem = { column = [\"body\", \"text\"] }\n";
    assert!(Mapping::parse(toml, Path::new("m.toml")).unwrap().compile(&json_info(), &sample).is_ok());
    let toml = "[feedback]\nproblem = \"{subject} {body}\"\n";
    let err = Mapping::parse(toml, Path::new("m.toml")).unwrap().compile(&json_info(), &sample).err().unwrap();
    assert!(err.to_string().contains("(2 problems)"), "{err}");
}

#[test]
fn jsonl_messages_say_path() {
    let sample = [jrow(1, json!({"text": "", "author": {"email": "a@b.co", "name": "A"}}))];
    let toml = "[feedback]\nproblem = \"text\"\n[contact]\noptional = false\n\
                internal_id = { column = [\"author.id\", \"author.email\"] }\nname = \"author.name\"\n";
    let mut m = Mapping::parse(toml, Path::new("m.toml")).unwrap().compile(&json_info(), &sample).unwrap().mapper;
    let errs = failures(m.map(&jrow(1, json!({"text": " ", "author": {"email": "a@b.co"}}))));
    assert!(errs.contains(&"feedback.problem is required but empty (from path 'text')".to_string()), "{errs:?}");
    assert!(errs.contains(&"contact.name is required but empty (from path 'author.name')".to_string()), "{errs:?}");
    let errs = failures(m.map(&jrow(2, json!({"text": "x", "author": {"name": "Bo"}}))));
    assert!(
        errs.contains(
            &"contact.internal_id is required but empty (from paths 'author.id', 'author.email')".to_string()
        ),
        "{errs:?}"
    );
}

#[test]
fn a_json_list_of_several_values_for_an_id_or_an_email_fails_the_row_and_one_value_is_taken_as_it_is() {
    let toml = "[feedback]\nproblem = \"body\"\nperson_email = \"emails\"\n\
                [contact]\ninternal_id = \"contacts.id\"\nname = \"name\"\nemail = \"emails\"\n";
    let sample = [jrow(1, json!({"body": "b", "name": "A", "contacts": [{"id": "c1"}], "emails": ["a@x.com"]}))];
    let mut m = Mapping::parse(toml, Path::new("m.toml")).unwrap().compile(&json_info(), &sample).unwrap().mapper;
    let p = payloads(m.map(&sample[0]));
    let Payload::Contact(c) = &p[0] else { panic!("{p:?}") };
    assert_eq!((c.internal_id.as_str(), c.email.as_deref()), ("c1", Some("a@x.com")));
    // Joined, two ids would make up one contact "c1, c2" for both people.
    let two =
        jrow(2, json!({"body": "b", "name": "A", "contacts": [{"id": "c1"}, {"id": "c2"}], "emails": ["a@x.com"]}));
    let errs = failures(m.map(&two));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("contact.internal_id holds 2 values on this line (c1, c2) where one is expected"),
        "{errs:?}"
    );
    // The same value twice is one value.
    let same = jrow(
        3,
        json!({"body": "c", "name": "B", "contacts": [{"id": "c3"}, {"id": "c3"}], "emails": ["b@x.com", "b@x.com"]}),
    );
    assert_eq!(payloads(m.map(&same)).len(), 2);
}

#[test]
fn split_on_a_field_that_takes_one_value_keeps_the_first_item() {
    // HubSpot's several associated companies: "9002;9003" and "Navy Systems, Inc.;US Navy".
    let headers = ["ID", "Name", "Company IDs", "Companies"];
    let toml = "[company]\ninternal_id = { column = \"Company IDs\", split = \";\" }\n\
                name = { column = \"Companies\", split = \";\" }\n[contact]\ninternal_id = \"ID\"\nname = \"Name\"\n";
    let mut m = mapper(toml, &headers);
    let p = payloads(m.map(&row(2, &["7", "Grace", " 9002 ; 9003", "Navy Systems, Inc.;US Navy"])));
    let Payload::Company(c) = &p[0] else { panic!("{p:?}") };
    assert_eq!((c.internal_id.as_str(), c.name.as_str()), ("9002", "Navy Systems, Inc."));
    let Payload::Contact(c) = &p[1] else { panic!("{p:?}") };
    assert_eq!(c.company_internal_id.as_deref(), Some("9002"));
    let err = compile_err("[contact]\ninternal_id = \"ID\"\nname = { column = \"Name\", split = \";\" }\n", &headers);
    assert!(
        err.contains("split applies only to feedback.tags, filterable_attributes, and the fields that take one value"),
        "{err}"
    );
}

#[test]
fn an_id_written_as_a_decimal_fails_its_row_and_other_ids_with_a_point_do_not() {
    let headers = ["ID", "Name", "Company ID", "Company"];
    let toml = "[company]\ninternal_id = \"Company ID\"\nname = \"Company\"\n[contact]\ninternal_id = \"ID\"\nname = \"Name\"\n";
    let mut m = mapper(toml, &headers);
    let errs = failures(m.map(&row(2, &["101.0", "Ada", "9001.00", "Acme"])));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs.iter().any(|e| e.starts_with("company.internal_id \"9001.00\" is a whole-number id written as a decimal"))
    );
    assert!(errs.iter().any(|e| e.contains("which would be another record than \"101\"")), "{errs:?}");
    for id in ["1.5", "v1.0.0", "A.0", "12."] {
        assert_eq!(payloads(m.map(&row(3, &[id, "Ada", "", ""]))).len(), 1, "{id} is no decimal number");
    }
}

#[test]
fn a_company_seen_again_with_other_attributes_is_counted_apart_from_another_name() {
    let headers = ["User ID", "Name", "Company ID", "Company", "Plan", "Size"];
    let toml = "[company]\ninternal_id = \"Company ID\"\nname = \"Company\"\n\
                [company.filterable_attributes]\nplan = \"Plan\"\nsize = { column = \"Size\", type = \"integer\" }\n\
                [contact]\ninternal_id = \"User ID\"\nname = \"Name\"\n";
    let mut m = mapper(toml, &headers);
    assert_eq!(payloads(m.map(&row(2, &["u1", "Ann", "c1", "Acme", "", ""]))).len(), 2);
    // The same company, sent already: its other attributes are not sent, but counted (and logged).
    assert_eq!(payloads(m.map(&row(3, &["u2", "Bob", "c1", "Acme", "Enterprise", "250"]))).len(), 1);
    assert_eq!(payloads(m.map(&row(4, &["u3", "Cy", "c1", "Acme", "", ""]))).len(), 1, "as the first: no conflict");
    assert_eq!(payloads(m.map(&row(5, &["u4", "Di", "c1", "Acme Inc", "", ""]))).len(), 1);
    // An attribute that does not convert on a later row does not fail it: that company is not sent from it.
    assert_eq!(payloads(m.map(&row(6, &["u5", "Ed", "c1", "Acme", "", "many"]))).len(), 1);
    assert_eq!(m.stats().company_attribute_conflicts, 1, "line 3");
    assert_eq!(m.stats().company_name_conflicts, 1, "line 5");
}

#[test]
fn a_failures_file_row_does_not_send_again_what_its_run_sent() {
    let headers = ["ID", "Name", "Company ID", "Company", "Text", "_savio_line", "_savio_error", SENT_COLUMN];
    let toml = "[company]\ninternal_id = \"Company ID\"\nname = \"Company\"\n[contact]\ninternal_id = \"ID\"\n\
                name = \"Name\"\n[feedback]\nproblem = \"Text\"\n";
    let mut m = mapper(toml, &headers);
    let r = row(2, &["p1", "Ann", "c1", "Acme", "SSO", "7", "contact failed", "company, feedback (unknown)"]);
    let o = m.map(&r);
    let reasons: Vec<(Entity, DropReason)> = dropped(o.clone()).into_iter().map(|d| (d.entity, d.reason)).collect();
    assert_eq!(
        reasons,
        vec![
            (Entity::Company, DropReason::Sent { unknown: false }),
            (Entity::Feedback, DropReason::Sent { unknown: true })
        ]
    );
    let p = payloads(o);
    assert!(matches!(&p[..], [Payload::Contact(c)] if c.company_internal_id.as_deref() == Some("c1")), "{p:?}");
    // --retry-unknown: the feedback whose outcome is unknown is sent; what was sent still is not.
    let mut m = mapper(toml, &headers);
    m.retry_unknown(true);
    let p = payloads(m.map(&r));
    assert_eq!(p.iter().map(Payload::entity).collect::<Vec<_>>(), vec![Entity::Contact, Entity::Feedback]);
    // An empty cell sends everything.
    let mut m = mapper(toml, &headers);
    assert_eq!(payloads(m.map(&row(3, &["p2", "Bo", "c2", "Bee", "Dark", "8", "x", ""]))).len(), 3);
}

#[test]
fn decimal_comma_reads_text_and_leaves_json_numbers_as_they_are() {
    let toml = "[company]\ninternal_id = \"id\"\nname = \"name\"\n[company.filterable_attributes]\n\
                arr = { column = \"deal.arr\", type = \"float\", decimal = \",\" }\n\
                seats = { column = \"seats\", type = \"integer\", decimal = \",\" }\n";
    let first = jrow(2, json!({"id": "1", "name": "Bergmann AG", "deal": {"arr": 1.234}, "seats": 12.0}));
    let mapping = Mapping::parse(toml, Path::new("m.toml")).unwrap();
    let mut m = mapping.compile(&json_info(), std::slice::from_ref(&first)).unwrap().mapper;
    let company = |o: MapOutcome| match payloads(o).remove(0) {
        Payload::Company(c) => c.filterable_attributes,
        other => panic!("{other:?}"),
    };
    // A JSON number is a number: 1.234 is not the 1234 that the text "1.234" is with decimal = ",".
    let attrs = company(m.map(&first));
    assert_eq!((attrs["arr"].as_f64(), attrs["seats"].as_i64()), (Some(1.234), Some(12)));
    let text = jrow(3, json!({"id": "2", "name": "Kessler GmbH", "deal": {"arr": "1.234,5"}, "seats": "1.200"}));
    let attrs = company(m.map(&text));
    assert_eq!((attrs["arr"].as_f64(), attrs["seats"].as_i64()), (Some(1234.5), Some(1200)));
}
