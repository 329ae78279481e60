//! Applying a compiled mapping to records: filters, payload building, Savio's per-row checks, and the
//! once-per-run de-duplication of companies derived from contact rows.

use std::collections::HashSet;
use std::hash::BuildHasher;

use serde_json::Value;

use super::check::{Choices, is_valid_email};
use super::error::{FieldError, FieldProblem};
use super::field::Field;
use super::value::Accessor;
use crate::model::{Attributes, Company, Contact, Feedback, Payload};
use crate::source::{Record, RecordData};

/// What a row became.
#[derive(Debug, Clone, PartialEq)]
pub enum MapOutcome {
    /// Payloads to send, in dependency order (a company before the contact that links to it). May be empty
    /// when the row's only payload was a company already emitted by an earlier row: see `duplicate_of`.
    Mapped { payloads: Vec<Payload>, duplicate_of: Option<u64> },
    /// A filter matched; the reason names it.
    Skipped(String),
    /// One or more fields are unusable; nothing of the row is sent.
    Failed(Vec<FieldError>),
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub(crate) struct Skip {
    pub cond: Cond,
    pub describe: String,
}

#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Empty(Accessor),
    Equals { acc: Accessor, values: Vec<String>, case_sensitive: bool, negate: bool },
}

impl Skip {
    fn matches(&self, record: &Record) -> bool {
        match &self.cond {
            Cond::Empty(acc) => acc.get(record).is_empty(),
            Cond::Equals { acc, values, case_sensitive, negate } => {
                let v = acc.get(record).into_text();
                let v = v.trim();
                let hit =
                    values.iter().any(|x| if *case_sensitive { x == v } else { x.to_lowercase() == v.to_lowercase() });
                hit != *negate
            }
        }
    }
}

fn first_skip<'a>(skips: &'a [Skip], record: &Record) -> Option<&'a Skip> {
    skips.iter().find(|s| s.matches(record))
}

/// Columns carried as attributes because no field uses them.
#[derive(Debug, Clone)]
pub(crate) enum Unmapped {
    /// (column index, attribute key), resolved against the header.
    Csv(Vec<(usize, String)>),
    /// JSONL objects vary per line, so their leaves are found per row.
    Json { skip_paths: HashSet<String>, taken_keys: HashSet<String> },
}

impl Unmapped {
    fn add_to(&self, record: &Record, attrs: &mut Attributes) {
        match (self, &record.data) {
            (Unmapped::Csv(cols), RecordData::Csv(r)) => {
                for (i, key) in cols {
                    if let Some(v) = r.get(*i).map(str::trim).filter(|v| !v.is_empty())
                        && !attrs.contains_key(key)
                    {
                        attrs.insert(key.clone(), Value::String(v.to_string()));
                    }
                }
            }
            (Unmapped::Json { skip_paths, taken_keys }, RecordData::Json { object, .. }) => {
                let mut leaves = Vec::new();
                json_leaves(object, "", skip_paths, &mut leaves);
                for (path, v) in leaves {
                    let key = normalise_key(&path);
                    if key.is_empty() || taken_keys.contains(&key) || attrs.contains_key(&key) {
                        continue;
                    }
                    attrs.insert(key, v);
                }
            }
            _ => {}
        }
    }
}

fn json_leaves(
    object: &serde_json::Map<String, Value>,
    prefix: &str,
    skip: &HashSet<String>,
    out: &mut Vec<(String, Value)>,
) {
    for (k, v) in object {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        if skip.contains(&path) || path.starts_with("_savio_") {
            continue;
        }
        match v {
            Value::Object(inner) => json_leaves(inner, &path, skip, out),
            Value::Null => {}
            Value::String(s) if s.trim().is_empty() => {}
            Value::String(s) => out.push((path, Value::String(s.trim().to_string()))),
            Value::Array(a) if a.is_empty() => {}
            other => out.push((path, other.clone())),
        }
    }
}

/// The documented key normalisation for carried columns: lowercase; every run of characters other than
/// letters and digits becomes one `_`; no leading or trailing `_`. "Lifecycle Stage" → `lifecycle_stage`,
/// "Annual Revenue ($)" → `annual_revenue`, "author.plan" → `author_plan`.
pub fn normalise_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending_sep = false;
    for c in name.chars() {
        if c.is_alphanumeric() {
            if pending_sep && !out.is_empty() {
                out.push('_');
            }
            pending_sep = false;
            out.extend(c.to_lowercase());
        } else {
            pending_sep = true;
        }
    }
    out
}

#[derive(Debug, Clone)]
pub(crate) struct Attrs {
    pub fields: Vec<(String, Field)>,
    pub unmapped: Option<Unmapped>,
}

impl Attrs {
    fn build(&self, record: &Record, errors: &mut Vec<FieldError>) -> Attributes {
        let mut attrs = Attributes::new();
        for (key, field) in &self.fields {
            match field.attribute(record) {
                Ok(Some(v)) => {
                    attrs.insert(key.clone(), v);
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        if let Some(u) = &self.unmapped {
            u.add_to(record, &mut attrs);
        }
        attrs
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompanyMap {
    pub name: Field,
    pub internal_id: Field,
    pub attrs: Attrs,
    pub skips: Vec<Skip>,
    pub optional: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ContactMap {
    pub name: Field,
    pub internal_id: Field,
    pub email: Option<Field>,
    pub company: Option<Field>,
    pub company_internal_id: Option<Field>,
    pub attrs: Attrs,
    pub skips: Vec<Skip>,
    pub optional: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct FeedbackMap {
    pub problem: Field,
    pub feedback_type: Option<Field>,
    pub state: Option<Field>,
    pub source_url: Option<Field>,
    pub source_username: Option<Field>,
    pub person_email: Option<Field>,
    pub person_name: Option<Field>,
    pub company_name: Option<Field>,
    pub feature_request_title: Option<Field>,
    pub tags: Option<Field>,
    pub skips: Vec<Skip>,
    pub optional: bool,
}

/// Counters the mapper keeps across the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapperStats {
    /// Company ids seen again with a different name (the first name wins; each is logged once).
    pub company_name_conflicts: u64,
}

/// A mapping compiled against one input: call [`Mapper::map`] on each record, in input order.
#[derive(Debug, Clone)]
pub struct Mapper {
    pub(crate) row_skips: Vec<Skip>,
    pub(crate) company: Option<CompanyMap>,
    pub(crate) contact: Option<ContactMap>,
    pub(crate) feedback: Option<FeedbackMap>,
    pub(crate) feedback_types: Choices,
    pub(crate) states: Choices,
    /// company internal_id → (hash of the name first sent, line that emitted it).
    pub(crate) seen_companies: rustc_hash::FxHashMap<String, (u64, u64)>,
    pub(crate) warned_conflicts: HashSet<String>,
    pub(crate) stats: MapperStats,
}

impl Mapper {
    pub fn stats(&self) -> &MapperStats {
        &self.stats
    }

    /// Maps one record. Call in input order: companies are de-duplicated across the run.
    pub fn map(&mut self, record: &Record) -> MapOutcome {
        if let Some(s) = first_skip(&self.row_skips, record) {
            return MapOutcome::Skipped(format!("filter: {}", s.describe));
        }
        let mut errors = Vec::new();
        let mut skipped = Vec::new();

        // A company already emitted this run is not built again (only its name is read, to warn on a
        // conflict); its contacts still link to it by internal_id.
        let mut seen_company: Option<(String, String)> = None;
        let company = self.company.as_ref().and_then(|m| {
            if let Some(s) = first_skip(&m.skips, record) {
                skipped.push(format!("company filter: {}", s.describe));
                return None;
            }
            let id = m.internal_id.text(record);
            if !id.is_empty() && self.seen_companies.contains_key(&id) {
                let name = m.name.text(record);
                if name.is_empty() {
                    errors.push(m.name.required_error());
                }
                seen_company = Some((id, name));
                return None;
            }
            build_company(m, record, &mut errors)
        });
        let link =
            company.as_ref().map(|c| c.internal_id.as_str()).or(seen_company.as_ref().map(|(id, _)| id.as_str()));
        let contact = self.contact.as_ref().and_then(|m| {
            if let Some(s) = first_skip(&m.skips, record) {
                skipped.push(format!("contact filter: {}", s.describe));
                return None;
            }
            build_contact(m, record, link, &mut errors)
        });
        let feedback = self.feedback.as_ref().and_then(|m| {
            if let Some(s) = first_skip(&m.skips, record) {
                skipped.push(format!("feedback filter: {}", s.describe));
                return None;
            }
            build_feedback(m, record, &self.feedback_types, &self.states, &mut errors)
        });

        if !errors.is_empty() {
            return MapOutcome::Failed(errors);
        }
        let mut payloads = Vec::with_capacity(3);
        let mut duplicate_of = None;
        if let Some(c) = company {
            self.first_sight(&c.internal_id, &c.name, record.line);
            payloads.push(Payload::Company(c));
        } else if let Some((id, name)) = &seen_company {
            duplicate_of = self.first_sight(id, name, record.line);
        }
        payloads.extend(contact.map(Payload::Contact));
        payloads.extend(feedback.map(Payload::Feedback));
        if payloads.is_empty() && duplicate_of.is_none() {
            let reason =
                if skipped.is_empty() { "no entity has data in this row".to_string() } else { skipped.join("; ") };
            return MapOutcome::Skipped(reason);
        }
        MapOutcome::Mapped { payloads, duplicate_of }
    }

    /// Records a company; returns the line of its first occurrence if it was already emitted this run.
    fn first_sight(&mut self, id: &str, name: &str, line: u64) -> Option<u64> {
        let name_hash = rustc_hash::FxBuildHasher.hash_one(name);
        match self.seen_companies.get(id) {
            None => {
                self.seen_companies.insert(id.to_string(), (name_hash, line));
                None
            }
            Some(&(first_hash, first_line)) => {
                if first_hash != name_hash {
                    self.stats.company_name_conflicts += 1;
                    if self.warned_conflicts.insert(id.to_string()) {
                        tracing::warn!(
                            company = %id,
                            line,
                            first_line,
                            "company '{id}' appears with another name (\"{name}\") than on line {first_line}; the first is kept"
                        );
                    }
                }
                Some(first_line)
            }
        }
    }
}

fn build_company(m: &CompanyMap, record: &Record, errors: &mut Vec<FieldError>) -> Option<Company> {
    let internal_id = m.internal_id.text(record);
    if internal_id.is_empty() && m.optional {
        return None;
    }
    let before = errors.len();
    let name = m.name.text(record);
    if internal_id.is_empty() {
        errors.push(m.internal_id.required_error());
    }
    if name.is_empty() {
        errors.push(m.name.required_error());
    }
    let filterable_attributes = m.attrs.build(record, errors);
    (errors.len() == before).then_some(Company { name, internal_id, filterable_attributes })
}

fn build_contact(
    m: &ContactMap,
    record: &Record,
    company: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<Contact> {
    let internal_id = m.internal_id.text(record);
    if internal_id.is_empty() && m.optional {
        return None;
    }
    let before = errors.len();
    let name = m.name.text(record);
    if internal_id.is_empty() {
        errors.push(m.internal_id.required_error());
    }
    if name.is_empty() {
        errors.push(m.name.required_error());
    }
    let email = checked_email(m.email.as_ref(), record, errors);
    let company_id = match m.company.as_ref().and_then(|f| f.opt_text(record)) {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push(FieldError {
                    field: "contact.company".into(),
                    problem: FieldProblem::Conversion {
                        value: v,
                        ty: super::spec::AttrType::Integer,
                        reason: "Savio's company id must be an integer (use company_internal_id for your own ids)"
                            .into(),
                    },
                });
                None
            }
        },
    };
    let company_internal_id = match &m.company_internal_id {
        Some(f) => f.opt_text(record),
        None => company.map(str::to_string),
    };
    let filterable_attributes = m.attrs.build(record, errors);
    (errors.len() == before).then_some(Contact {
        name,
        internal_id,
        email,
        company: company_id,
        company_internal_id,
        filterable_attributes,
    })
}

fn checked_email(field: Option<&Field>, record: &Record, errors: &mut Vec<FieldError>) -> Option<String> {
    let f = field?;
    let v = f.opt_text(record)?;
    if is_valid_email(&v) {
        Some(v)
    } else {
        errors.push(FieldError { field: f.label.clone(), problem: FieldProblem::InvalidEmail { value: v } });
        None
    }
}

fn checked_choice(
    field: Option<&Field>,
    record: &Record,
    choices: &Choices,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let f = field?;
    let v = f.opt_text(record)?;
    match choices.resolve(&v) {
        Some(c) => Some(c.to_string()),
        None => {
            errors.push(FieldError {
                field: f.label.clone(),
                problem: FieldProblem::InvalidChoice { value: v, allowed: choices.list() },
            });
            None
        }
    }
}

fn build_feedback(
    m: &FeedbackMap,
    record: &Record,
    types: &Choices,
    states: &Choices,
    errors: &mut Vec<FieldError>,
) -> Option<Feedback> {
    let problem = m.problem.text(record);
    if problem.is_empty() && m.optional {
        return None;
    }
    let before = errors.len();
    if problem.is_empty() {
        errors.push(m.problem.required_error());
    }
    let opt = |f: &Option<Field>| f.as_ref().and_then(|f| f.opt_text(record));
    let feedback = Feedback {
        problem,
        feedback_type: checked_choice(m.feedback_type.as_ref(), record, types, errors),
        state: checked_choice(m.state.as_ref(), record, states, errors),
        source_url: opt(&m.source_url),
        source_username: opt(&m.source_username),
        person_email: checked_email(m.person_email.as_ref(), record, errors),
        person_name: opt(&m.person_name),
        company_name: opt(&m.company_name),
        feature_request_title: opt(&m.feature_request_title),
        tags: m.tags.as_ref().map(|f| f.list(record)).unwrap_or_default(),
    };
    (errors.len() == before).then_some(feedback)
}

#[cfg(test)]
mod tests {
    use super::normalise_key;

    #[test]
    fn key_normalisation() {
        assert_eq!(normalise_key("Lifecycle Stage"), "lifecycle_stage");
        assert_eq!(normalise_key("Annual Revenue ($)"), "annual_revenue");
        assert_eq!(normalise_key("  __Région / Pays__ "), "région_pays");
        assert_eq!(normalise_key("author.plan"), "author_plan");
        assert_eq!(normalise_key("NPS-Score2"), "nps_score2");
        assert_eq!(normalise_key("%%"), "");
    }
}
