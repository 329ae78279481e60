//! Applying a compiled mapping to records: filters, payload building, Savio's per-row checks, and the
//! once-per-run de-duplication of what a row would send again (see `dedup`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde_json::Value;

use super::check::{Choices, is_valid_email};
use super::dedup::{self, Seen, Sighting};
use super::error::{FieldError, FieldProblem};
use super::field::Field;
use super::value::{Accessor, JsonPath, trim};
use crate::model::{Attributes, Company, Contact, Entity, Feedback, Payload, intern};
use crate::source::{Record, RecordData};

/// What a row became.
#[derive(Debug, Clone, PartialEq)]
pub enum MapOutcome {
    /// Payloads to send, in dependency order (a company before the contact that links to it), and the
    /// entities of the row that are not sent, with why. `payloads` may be empty when every entity of the
    /// row was dropped.
    Mapped { payloads: Vec<Payload>, dropped: Vec<Dropped> },
    /// A row filter matched, or no entity has data in the row; the reason says which.
    Skipped(String),
    /// One or more fields are unusable; nothing of the row is sent.
    Failed(Vec<FieldError>),
}

/// An entity of a mapped row that is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub entity: Entity,
    /// The entity's `internal_id`, `sha:...` for feedback (as [`Payload::key`]), or `""` when unknown (a
    /// filtered feedback, which is never built).
    pub key: String,
    pub reason: DropReason,
}

/// Why an entity of a row is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// An entity filter matched: `contact filter: 'Email' is empty`.
    Filter(String),
    /// The same entity was already sent by the row on `first_line` this run: a company derived from an
    /// earlier row, or a contact or feedback identical to an earlier one.
    Duplicate { first_line: u64 },
    /// A company derived from a contact or feedback row lacks its id or its name (say what and where
    /// from): the row's other entities are still sent.
    Incomplete(String),
    /// A failures file fed back in says (`_savio_sent`) that the run which wrote it sent this entity, or,
    /// `unknown`, that it may have (feedback whose outcome is unknown): it is not sent again.
    Sent { unknown: bool },
}

/// The column (CSV) or key (JSONL) of a failures file that names the entities of a row its run already sent:
/// `company, feedback`, and `feedback (unknown)` for feedback whose outcome is unknown. A re-run of the file
/// does not send them again (feedback is not idempotent: a re-run would create it twice).
pub const SENT_COLUMN: &str = "_savio_sent";

/// The summary group (and the mark in the results) of an entity not sent again because a failures file
/// says it was.
pub const SENT_GROUP: &str = "sent by the run that wrote the failures file";

/// The mark in the results of feedback not sent because an earlier row of the run holds the same: that row
/// creates it (or, in its failures file row, creates it again), so a failures file lists it as sent for the
/// repeating row too, lest a re-run create it a second time.
pub const REPEATED_FEEDBACK_GROUP: &str = "feedback identical to an earlier row's";

/// A `_savio_sent` cell as written for `entity`.
pub fn sent_marker(entity: Entity, unknown: bool) -> String {
    if unknown { format!("{entity} (unknown)") } else { entity.to_string() }
}

/// The entities a `_savio_sent` cell names, each with whether its outcome is unknown.
fn parse_sent(cell: &str) -> Vec<(Entity, bool)> {
    cell.split([',', ';'])
        .filter_map(|item| {
            let item = item.trim().to_ascii_lowercase();
            let entity = Entity::ALL.into_iter().find(|e| item.starts_with(e.as_str()))?;
            Some((entity, item.contains("unknown")))
        })
        .collect()
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.reason, self.entity) {
            (DropReason::Filter(reason) | DropReason::Incomplete(reason), _) => f.write_str(reason),
            (DropReason::Sent { unknown: false }, _) => {
                write!(f, "already sent by the run that wrote this failures file ({SENT_COLUMN})")
            }
            (DropReason::Sent { unknown: true }, _) => write!(
                f,
                "its creation is unknown since the run that wrote this failures file: it may exist in Savio, so \
                 it is not sent again (remove it from {SENT_COLUMN}, or pass --retry-unknown, to send it)"
            ),
            (DropReason::Duplicate { first_line }, Entity::Company) => {
                write!(f, "company '{}' already sent with line {first_line}", self.key)
            }
            (DropReason::Duplicate { first_line }, Entity::Contact) => {
                write!(f, "contact '{}' identical to the one of line {first_line}", self.key)
            }
            (DropReason::Duplicate { first_line }, Entity::Feedback) => {
                write!(f, "feedback identical to the one of line {first_line}")
            }
        }
    }
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
    /// `values` are lowercased when not `case_sensitive`.
    Equals {
        acc: Accessor,
        values: Vec<String>,
        case_sensitive: bool,
        negate: bool,
    },
    /// `values` are lowercased when not `case_sensitive`.
    Contains {
        acc: Accessor,
        values: Vec<String>,
        case_sensitive: bool,
    },
}

impl Skip {
    fn matches(&self, record: &Record) -> bool {
        match &self.cond {
            Cond::Empty(acc) => acc.get(record).is_empty(),
            Cond::Equals { acc, values, case_sensitive, negate } => {
                let v = acc.get(record).into_text();
                let v = trim(&v);
                let hit = if *case_sensitive {
                    values.iter().any(|x| x == v)
                } else if v.is_ascii() {
                    values.iter().any(|x| x.eq_ignore_ascii_case(v))
                } else {
                    let lower = v.to_lowercase();
                    values.contains(&lower)
                };
                hit != *negate
            }
            Cond::Contains { acc, values, case_sensitive } => {
                let v = acc.get(record).into_text();
                if *case_sensitive {
                    values.iter().any(|x| v.contains(x.as_str()))
                } else {
                    let lower = v.to_lowercase();
                    values.iter().any(|x| lower.contains(x.as_str()))
                }
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
    /// (column index, attribute key), resolved against the header; keys interned.
    Csv(Vec<(usize, &'static str)>),
    /// JSONL objects vary per line, so their leaves are found per row.
    Json { skip_paths: HashSet<String>, taken_keys: HashSet<String> },
}

impl Unmapped {
    fn add_to(&self, record: &Record, attrs: &mut Attributes) {
        match (self, &record.data) {
            (Unmapped::Csv(cols), RecordData::Csv { fields, .. }) => {
                // The compiled keys are distinct, and distinct from every mapped attribute's: no lookup needed
                // (a wide export carries hundreds of columns).
                for (i, key) in cols {
                    if let Some(v) = fields.get(*i).map(trim).filter(|v| !v.is_empty()) {
                        attrs.push_new(key, Value::String(v.to_string()));
                    }
                }
            }
            (Unmapped::Json { skip_paths, taken_keys }, RecordData::Json { object, .. }) => {
                let mut leaves = Vec::new();
                json_leaves(object, "", skip_paths, &mut leaves);
                // `attrs` holds only mapped attributes here, whose keys are all in `taken_keys`. Two paths can
                // normalise to one key ("a.b", "a_b"): the first wins. Sets, not scans of `attrs`, so a wide
                // object costs linear time.
                let mut seen = HashSet::with_capacity(leaves.len());
                for (path, v) in leaves {
                    let key = normalise_key(&path);
                    if key.is_empty() || taken_keys.contains(&key) || !seen.insert(key.clone()) {
                        continue;
                    }
                    attrs.push_unique(Cow::Owned(key), v);
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
    /// Keys (interned: a row's attributes copy no key) and their fields, keys distinct.
    pub fields: Vec<(&'static str, Field)>,
    pub unmapped: Option<Unmapped>,
}

impl Attrs {
    pub fn new(fields: Vec<(String, Field)>) -> Attrs {
        Attrs { fields: fields.into_iter().map(|(k, f)| (intern(&k), f)).collect(), unmapped: None }
    }

    /// Whether no attribute is mapped or carried.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.unmapped.is_none()
    }

    fn build(&self, record: &Record, errors: &mut Vec<FieldError>) -> Attributes {
        let unmapped = match &self.unmapped {
            Some(Unmapped::Csv(cols)) => cols.len(),
            _ => 0,
        };
        let mut attrs = Attributes::with_capacity(self.fields.len() + unmapped);
        for (key, field) in &self.fields {
            match field.attribute(record) {
                Ok(Some(v)) => attrs.push_new(key, v),
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
    /// Rows naming a company id already sent with a different name (the first name is kept; the first few
    /// are logged).
    pub company_name_conflicts: u64,
    /// Rows giving a company already sent other attributes (a company is sent once per run, with its first
    /// row's; the first few are logged).
    pub company_attribute_conflicts: u64,
    /// Rows whose contact has the `internal_id` of a contact already sent this run with other values (the
    /// later row wins, as the upsert would; the first few are logged).
    pub contact_conflicts: u64,
}

/// How many conflicts of each kind are logged one by one; the rest are only counted.
const LOGGED_CONFLICTS: u64 = 10;

/// Counts a conflict, and logs it with `log` while there have been no more than [`LOGGED_CONFLICTS`].
fn conflict(count: &mut u64, log: impl FnOnce()) {
    *count += 1;
    if *count <= LOGGED_CONFLICTS {
        log();
    }
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
    /// Companies sent this run: id → name.
    pub(crate) seen_companies: Seen,
    /// Contacts sent this run: id → content (the last sent).
    pub(crate) seen_contacts: Seen,
    /// Feedback sent this run, by content.
    pub(crate) seen_feedback: Seen,
    pub(crate) stats: MapperStats,
    /// JSONL: the paths fields send, with the field, to refuse a line where one holds an object.
    pub(crate) value_paths: Vec<(String, JsonPath)>,
    /// A failures file's `_savio_sent` column, when the input has one.
    pub(crate) sent: Option<Accessor>,
    /// Whether feedback a failures file marks as unknown is sent anyway (`--retry-unknown`).
    pub(crate) retry_unknown: bool,
}

/// A company already sent this run, met again on a row.
struct SeenCompany<'a> {
    id: String,
    id_hash: u64,
    name: Cow<'a, str>,
    /// Its name and attributes on this row ([`dedup::company_hash`]).
    content: u64,
}

impl Mapper {
    pub fn stats(&self) -> &MapperStats {
        &self.stats
    }

    /// Sends feedback a failures file marks as of unknown outcome (`--retry-unknown`), instead of
    /// reporting it unknown again.
    pub fn retry_unknown(&mut self, yes: bool) {
        self.retry_unknown = yes;
    }

    /// Whether a failures file says this row's `entity` was sent (or, `Some(true)`, may have been).
    fn already_sent(&self, sent: &[(Entity, bool)], entity: Entity) -> Option<DropReason> {
        let (_, unknown) = sent.iter().find(|(e, _)| *e == entity)?;
        (!(*unknown && self.retry_unknown)).then_some(DropReason::Sent { unknown: *unknown })
    }

    /// Maps one record. Call in input order: what was sent is remembered across the run.
    pub fn map(&mut self, record: &Record) -> MapOutcome {
        if let Some(s) = first_skip(&self.row_skips, record) {
            return MapOutcome::Skipped(format!("filter: {}", s.describe));
        }
        // On a large run the contact's slot in `seen_contacts` is a cache miss: start loading it now, while
        // the row's payloads are built, and keep the key's hash for the sighting at the end.
        let contact_key = self.contact.as_ref().map(|m| {
            let h = dedup::key_hash(&m.internal_id.single(record).unwrap_or_default());
            self.seen_contacts.prefetch(h);
            h
        });
        let mut errors = Vec::new();
        let mut dropped = Vec::new();
        let filtered = |entity: Entity, what: &str, skip: &Skip, key: String| Dropped {
            entity,
            key,
            reason: DropReason::Filter(format!("{what} filter: {}", skip.describe)),
        };

        // A company already sent this run is not built again (only its name is read, to warn on a
        // conflict); its contacts still link to it by internal_id.
        let mut seen_company: Option<SeenCompany<'_>> = None;
        let mut company = None;
        let mut unsent_link = None;
        if let Some(m) = &self.company {
            if let Some(s) = first_skip(&m.skips, record) {
                dropped.push(filtered(Entity::Company, "company", s, m.internal_id.text(record)));
            } else {
                let id = single(&m.internal_id, record, &mut errors);
                let id_hash = dedup::key_hash(&id);
                if !id.is_empty() && self.seen_companies.contains(id_hash) {
                    let name = m.name.value(record);
                    if name.is_empty() && m.optional {
                        // Sent already, with its name: this row only links to it.
                        unsent_link = Some(id.into_owned());
                    } else {
                        if name.is_empty() {
                            errors.push(m.name.required_error());
                        }
                        // Its attributes only to compare (their problems were the first row's to report).
                        let attrs =
                            if m.attrs.is_empty() { Attributes::new() } else { m.attrs.build(record, &mut Vec::new()) };
                        let content = dedup::company_hash(&name, &attrs);
                        seen_company = Some(SeenCompany { id: id.into_owned(), id_hash, name, content });
                    }
                } else if let Some(why) = incomplete_company(m, &id, record) {
                    // The contact still links to it by id: Savio may have it from a companies import.
                    unsent_link = (!id.is_empty()).then(|| id.clone().into_owned());
                    dropped.push(Dropped { entity: Entity::Company, key: id.into_owned(), reason: why });
                } else {
                    company = build_company(m, id.into_owned(), record, &mut errors).map(|c| (c, id_hash));
                }
            }
        }
        let link = company
            .as_ref()
            .map(|(c, _)| c.internal_id.as_str())
            .or(seen_company.as_ref().map(|s| s.id.as_str()))
            .or(unsent_link.as_deref());
        let mut contact = None;
        if let Some(m) = &self.contact {
            if let Some(s) = first_skip(&m.skips, record) {
                dropped.push(filtered(Entity::Contact, "contact", s, m.internal_id.text(record)));
            } else {
                contact = build_contact(m, record, link, &mut errors);
            }
        }
        let mut feedback = None;
        if let Some(m) = &self.feedback {
            if let Some(s) = first_skip(&m.skips, record) {
                dropped.push(filtered(Entity::Feedback, "feedback", s, String::new()));
            } else {
                feedback = build_feedback(m, record, &self.feedback_types, &self.states, &mut errors);
            }
        }

        if let RecordData::Json { object, .. } = &record.data {
            for (field, path) in &self.value_paths {
                if let Some(found) = path.object_at(object) {
                    let (shape, keys, example) = (found.shape, found.keys, found.example);
                    let problem = FieldProblem::NotAValue { path: path.full.clone(), shape, keys, example };
                    errors.push(FieldError { field: field.clone(), problem });
                }
            }
        }
        if !errors.is_empty() {
            return MapOutcome::Failed(errors);
        }
        let line = record.line;
        let sent = match &self.sent {
            Some(acc) => parse_sent(&acc.get(record).into_text()),
            None => Vec::new(),
        };
        let mut payloads = Vec::with_capacity(3);
        if let Some((c, id_hash)) = company {
            let content = dedup::company_hash(&c.name, &c.filterable_attributes);
            sight_company(&mut self.seen_companies, &mut self.stats, id_hash, &c.internal_id, &c.name, content, line);
            match self.already_sent(&sent, Entity::Company) {
                Some(reason) => dropped.push(Dropped { entity: Entity::Company, key: c.internal_id, reason }),
                None => payloads.push(Payload::Company(c)),
            }
        } else if let Some(seen) = seen_company
            && let Some(first_line) = sight_company(
                &mut self.seen_companies,
                &mut self.stats,
                seen.id_hash,
                &seen.id,
                &seen.name,
                seen.content,
                line,
            )
        {
            let repeat =
                Dropped { entity: Entity::Company, key: seen.id, reason: DropReason::Duplicate { first_line } };
            dropped.insert(0, repeat);
        }
        let contact = contact.and_then(|c| match self.already_sent(&sent, Entity::Contact) {
            Some(reason) => {
                dropped.push(Dropped { entity: Entity::Contact, key: c.internal_id, reason });
                None
            }
            None => Some(c),
        });
        if let Some(c) = contact {
            let key = contact_key.unwrap_or_else(|| dedup::key_hash(&c.internal_id));
            match self.seen_contacts.sight(key, dedup::contact_hash(&c), line, true) {
                Sighting::Same { first_line } => dropped.push(Dropped {
                    entity: Entity::Contact,
                    key: c.internal_id,
                    reason: DropReason::Duplicate { first_line },
                }),
                Sighting::New => payloads.push(Payload::Contact(c)),
                Sighting::Other { first_line, .. } => {
                    conflict(&mut self.stats.contact_conflicts, || {
                        tracing::warn!(
                            contact = %c.internal_id,
                            line,
                            first_line,
                            "contact '{}' on line {line} has other values than on line {first_line}; both are sent, the later wins",
                            c.internal_id
                        )
                    });
                    payloads.push(Payload::Contact(c));
                }
            }
        }
        let feedback = feedback.and_then(|f| match self.already_sent(&sent, Entity::Feedback) {
            Some(reason) => {
                dropped.push(Dropped { entity: Entity::Feedback, key: Payload::Feedback(f).key(), reason });
                None
            }
            None => Some(f),
        });
        if let Some(f) = feedback {
            match self.seen_feedback.sight(dedup::feedback_hash(&f), 0, line, false) {
                Sighting::New => payloads.push(Payload::Feedback(f)),
                Sighting::Same { first_line } | Sighting::Other { first_line, .. } => {
                    let key = Payload::Feedback(f).key();
                    dropped.push(Dropped {
                        entity: Entity::Feedback,
                        key,
                        reason: DropReason::Duplicate { first_line },
                    });
                }
            }
        }
        if payloads.is_empty() && dropped.is_empty() {
            return MapOutcome::Skipped("no entity has data in this row".into());
        }
        MapOutcome::Mapped { payloads, dropped }
    }
}

/// Records a company sent on `line`; if it was already sent this run, returns the line that sent it (and
/// counts a conflict when its name or attributes differ: the first row's are kept).
fn sight_company(
    seen: &mut Seen,
    stats: &mut MapperStats,
    id_hash: u64,
    id: &str,
    name: &str,
    content: u64,
    line: u64,
) -> Option<u64> {
    match seen.sight(id_hash, content, line, false) {
        Sighting::New => None,
        Sighting::Same { first_line } => Some(first_line),
        Sighting::Other { first_line, recorded } => {
            let (other_name, other_attributes) = dedup::company_parts_differ(content, recorded);
            if other_name {
                conflict(&mut stats.company_name_conflicts, || {
                    tracing::warn!(
                        company = %id,
                        line,
                        first_line,
                        "company '{id}' appears with another name (\"{name}\") than on line {first_line}; the first is kept"
                    )
                });
            }
            if other_attributes {
                conflict(&mut stats.company_attribute_conflicts, || {
                    tracing::warn!(
                        company = %id,
                        line,
                        first_line,
                        "company '{id}' has other attributes on line {line} than on line {first_line}, which sent it; \
                         a company is sent once per run, with its first row's attributes"
                    )
                });
            }
            Some(first_line)
        }
    }
}

/// Why a company derived from another entity's row is not sent, when it has only one of its id and name.
/// (Neither: the row simply has no company. A company mapped on its own fails the row instead.)
fn incomplete_company(m: &CompanyMap, id: &str, record: &Record) -> Option<DropReason> {
    if !m.optional {
        return None;
    }
    let name = m.name.value(record);
    let why = match (id.is_empty(), name.is_empty()) {
        (false, true) => format!(
            "company '{id}' not sent: its name is empty (from {}); the contact still links to it by id, which \
             Savio accepts if it has the company (sync your companies export first)",
            m.name.describe
        ),
        (true, false) => {
            format!("company '{name}' not sent: its internal_id is empty (from {})", m.internal_id.describe)
        }
        _ => return None,
    };
    Some(DropReason::Incomplete(why))
}

fn build_company(
    m: &CompanyMap,
    internal_id: String,
    record: &Record,
    errors: &mut Vec<FieldError>,
) -> Option<Company> {
    if internal_id.is_empty() && m.optional {
        return None;
    }
    let before = errors.len();
    let name = m.name.text(record);
    if internal_id.is_empty() {
        errors.push(m.internal_id.required_error());
    }
    check_id(&m.internal_id, &internal_id, errors);
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
    let before = errors.len();
    let internal_id = single(&m.internal_id, record, errors).into_owned();
    if internal_id.is_empty() && m.optional && errors.len() == before {
        return None;
    }
    let name = m.name.text(record);
    if internal_id.is_empty() && errors.len() == before {
        errors.push(m.internal_id.required_error());
    }
    check_id(&m.internal_id, &internal_id, errors);
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
        Some(f) => Some(single(f, record, errors).into_owned())
            .filter(|id| !id.is_empty())
            .inspect(|id| check_id(f, id, errors)),
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

/// A field that takes one value (see [`Field::single`]); its problem goes to `errors` and the value is then
/// empty.
fn single<'a>(f: &'a Field, record: &'a Record, errors: &mut Vec<FieldError>) -> Cow<'a, str> {
    f.single(record).unwrap_or_else(|e| {
        errors.push(e);
        Cow::Borrowed("")
    })
}

fn checked_email(field: Option<&Field>, record: &Record, errors: &mut Vec<FieldError>) -> Option<String> {
    let f = field?;
    let v = single(f, record, errors);
    if v.is_empty() {
        return None;
    }
    let v = clean_email_owned(v.into_owned());
    if is_valid_email(&v) {
        Some(v)
    } else {
        errors.push(FieldError { field: f.label.clone(), problem: FieldProblem::InvalidEmail { value: v } });
        None
    }
}

/// An address as people paste it: `Ada Lovelace <ada@example.com>` is `ada@example.com`, of several
/// (`a@x.com, b@y.com`, `a@x.com | b@y.com`, `a@x.com b@y.com`) the first counts, a separator left at the
/// end (`a@x.com;`), a `mailto:` link's scheme and a trailing comment (`a@x.com (work)`) are dropped, and
/// so are characters that show as nothing (a zero-width space copied from a web page, a BOM).
fn clean_email(v: &str) -> Cow<'_, str> {
    const SEPARATORS: [char; 6] = [',', ';', '|', ' ', '\t', '\n'];
    // Several addresses in one cell (Pipedrive, hand-kept sheets): the first is the contact's, cut at the
    // first separator with an address on each side (`Lovelace, Ada <ada@x.com>` is one address, and
    // `tom@gmail,com` one mistyped address, reported as it is).
    let several =
        v.match_indices(SEPARATORS).map(|(i, _)| i).find(|&i| v[..i].contains('@') && v[i + 1..].contains('@'));
    let v = match several {
        Some(cut) => v[..cut].trim(),
        None => v,
    };
    let v = v.trim_end_matches([',', ';', '|']).trim_end();
    // A comment after the address: `ada@x.com (work)`.
    let v = match (v.rfind(" ("), v.ends_with(')')) {
        (Some(open), true) if v[..open].contains('@') && !v[open..].contains('@') => v[..open].trim_end(),
        _ => v,
    };
    let v = match (v.rfind('<'), v.ends_with('>')) {
        (Some(open), true) if v[open + 1..].contains('@') => v[open + 1..v.len() - 1].trim(),
        _ => v,
    };
    // A link copied from a page: `mailto:ada@x.com`, `<mailto:ada@x.com>`.
    let v = match v.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("mailto:") => &v[7..],
        _ => v,
    };
    // Printable ASCII (nearly every address) holds none: one byte pass.
    let plain = v.bytes().all(|b| (0x20..0x7f).contains(&b));
    if plain || !v.chars().any(super::error::invisible) {
        Cow::Borrowed(v)
    } else {
        Cow::Owned(v.chars().filter(|c| !super::error::invisible(*c)).collect())
    }
}

/// [`clean_email`], without a copy when there is nothing to clean (nearly every address).
fn clean_email_owned(v: String) -> String {
    match clean_email(&v) {
        Cow::Borrowed(same) if same.len() == v.len() => v,
        cleaned => cleaned.into_owned(),
    }
}

/// Fails an id that a spreadsheet rewrote in scientific notation (`5,12346E+11`, `1.2E+15`): CRM ids are
/// digits or letters, never that, and the rounding merges distinct records.
fn check_id(field: &Field, id: &str, errors: &mut Vec<FieldError>) {
    check_decimal_id(field, id, errors);
    let b = id.as_bytes();
    let Some(e) = b.iter().position(|c| *c == b'E' || *c == b'e') else { return };
    let (mantissa, exponent) = (&b[..e], &b[e + 1..]);
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let mantissa_ok = match mantissa.iter().position(|c| *c == b'.' || *c == b',') {
        Some(p) => p == 1 && digits(&mantissa[..p]) && digits(&mantissa[p + 1..]),
        None => mantissa.len() == 1 && digits(mantissa),
    };
    if mantissa_ok && exponent.first() == Some(&b'+') && digits(&exponent[1..]) {
        errors
            .push(FieldError { field: field.label.clone(), problem: FieldProblem::ScientificId { value: id.into() } });
    }
}

/// Fails a whole-number id written as a decimal (`9001.0`, pandas' float columns): digits, a point, zeros.
fn check_decimal_id(field: &Field, id: &str, errors: &mut Vec<FieldError>) {
    let Some((whole, fraction)) = id.split_once('.') else { return };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if digits(whole) && !fraction.is_empty() && fraction.bytes().all(|c| c == b'0') {
        errors.push(FieldError { field: field.label.clone(), problem: FieldProblem::DecimalId { value: id.into() } });
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
