//! The sandbox's data and the rules Savio applies to it: upserts, feedback creation, lists.
//!
//! [`Store`] is plain data behind one `std::sync::Mutex` (held by the HTTP layer for the few microseconds a
//! rule takes, never across an await). Each rule validates the raw JSON body itself, checks everything that
//! can fail (types, unknown companies, email conflicts) before it changes anything, then applies the change
//! and bumps [`Store::generation`] so the persister knows there is something to save.
//!
//! Records live in vectors sorted by id (ids are handed out in increasing order and never deleted), and
//! hash indexes map the keys the rules look up (internal ids, lowercased emails and names, titles) to
//! positions in those vectors, so a long import does not slow down as the data grows.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use super::list::{self, InvalidPage, ListQuery, Listed, PageWindow, SortValue};
use super::validate::{FieldErrors, Fields};
use crate::model::{FEEDBACK_STATES, FEEDBACK_TYPES, JsonObject};

/// A point in time with microsecond precision (as Savio's database keeps it), written in the API as
/// ISO-8601 UTC: `2026-12-03T19:44:00.123456Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text).map(|t| Timestamp(t.with_timezone(&Utc))).map_err(serde::de::Error::custom)
    }
}

/// A company. `internal_id` is `None` for a company created by feedback (`company_name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompanyRecord {
    pub id: i64,
    pub name: String,
    pub internal_id: Option<String>,
    pub filterable_attributes: JsonObject,
    pub created: Timestamp,
    pub updated: Timestamp,
}

/// A contact. `internal_id` is `None` for a contact created by feedback; `company` is a company id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactRecord {
    pub id: i64,
    pub email: Option<String>,
    pub name: String,
    pub internal_id: Option<String>,
    pub company: Option<i64>,
    pub filterable_attributes: JsonObject,
    pub created: Timestamp,
    pub updated: Timestamp,
}

/// A piece of feedback, linked by id to the contact, company, feature request and tags it was filed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    pub id: i64,
    pub problem: String,
    pub feedback_type: Option<String>,
    pub state: String,
    pub source_url: Option<String>,
    pub source_username: Option<String>,
    pub person: Option<i64>,
    pub company: Option<i64>,
    pub feature_request: Option<i64>,
    pub tags: Vec<i64>,
    pub created: Timestamp,
}

/// A feature request, created by feedback naming a title no existing one has (case-insensitively).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureRequestRecord {
    pub id: i64,
    pub title: String,
    pub created: Timestamp,
}

/// A tag, created by feedback naming a title no existing one has (exactly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagRecord {
    pub id: i64,
    pub title: String,
    pub created: Timestamp,
}

/// Every table, each sorted by id: what a snapshot shows and the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Data {
    pub(crate) companies: Vec<CompanyRecord>,
    pub(crate) contacts: Vec<ContactRecord>,
    pub(crate) feedback: Vec<FeedbackRecord>,
    pub(crate) feature_requests: Vec<FeatureRequestRecord>,
    pub(crate) tags: Vec<TagRecord>,
}

/// Why a state file's content cannot be used, although it parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateProblem {
    #[error("unsupported state file version {found} (this sandbox reads version {expected})")]
    UnsupportedVersion { found: u32, expected: u32 },
    #[error("{table} id {id} appears more than once")]
    DuplicateId { table: &'static str, id: i64 },
    #[error("{table} {id} has internal_id {internal_id:?}, which {table} {other} has too")]
    DuplicateInternalId { table: &'static str, id: i64, other: i64, internal_id: String },
    #[error("contact {id} has email {email:?}, which contact {other} has too (case-insensitively)")]
    DuplicateEmail { id: i64, other: i64, email: String },
    #[error("{table} {id} refers to {target} {target_id}, which does not exist")]
    DanglingReference { table: &'static str, id: i64, target: &'static str, target_id: i64 },
}

/// Keys → positions in the tables. Rebuilt on load, kept in step by the setters below.
#[derive(Debug, Default, PartialEq)]
struct Index {
    company_by_internal_id: HashMap<String, usize>,
    companies_by_name: HashMap<String, BTreeSet<usize>>,
    contact_by_internal_id: HashMap<String, usize>,
    contact_by_email: HashMap<String, usize>,
    contacts_by_name: HashMap<String, BTreeSet<usize>>,
    feature_request_by_title: HashMap<String, usize>,
    tag_by_title: HashMap<String, usize>,
}

fn add_to(multi: &mut HashMap<String, BTreeSet<usize>>, key: String, pos: usize) {
    multi.entry(key).or_default().insert(pos);
}

fn remove_from(multi: &mut HashMap<String, BTreeSet<usize>>, key: &str, pos: usize) {
    if let Some(set) = multi.get_mut(key) {
        set.remove(&pos);
        if set.is_empty() {
            multi.remove(key);
        }
    }
}

/// The lowest position (so the oldest record) filed under a key.
fn first_of(multi: &HashMap<String, BTreeSet<usize>>, key: &str) -> Option<usize> {
    multi.get(key).and_then(|set| set.first().copied())
}

fn position<T>(rows: &[T], id: i64, id_of: impl Fn(&T) -> i64) -> Option<usize> {
    rows.binary_search_by_key(&id, id_of).ok()
}

fn next_id<T>(rows: &[T], id_of: impl Fn(&T) -> i64) -> i64 {
    rows.last().map_or(1, |row| id_of(row) + 1)
}

/// Merges given attributes into existing ones: a key given replaces, a key not given stays.
fn merge(into: &mut JsonObject, given: Option<JsonObject>) {
    if let Some(given) = given {
        into.extend(given);
    }
}

/// One page of a list, rendered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PageOut {
    pub(crate) window: PageWindow,
    pub(crate) results: Vec<Value>,
}

/// What a list endpoint lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    Companies,
    Contacts,
    Feedback,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    data: Data,
    index: Index,
    last_tick: Option<DateTime<Utc>>,
    generation: u64,
}

impl Store {
    /// Builds a store from loaded data, checking the invariants the rules rely on.
    pub(crate) fn from_data(mut data: Data) -> Result<Store, StateProblem> {
        fn sort_unique<T>(rows: &mut [T], table: &'static str, id_of: impl Fn(&T) -> i64) -> Result<(), StateProblem> {
            rows.sort_by_key(&id_of);
            match rows.windows(2).find(|pair| id_of(&pair[0]) == id_of(&pair[1])) {
                Some(pair) => Err(StateProblem::DuplicateId { table, id: id_of(&pair[0]) }),
                None => Ok(()),
            }
        }
        sort_unique(&mut data.companies, "company", |r| r.id)?;
        sort_unique(&mut data.contacts, "contact", |r| r.id)?;
        sort_unique(&mut data.feedback, "feedback", |r| r.id)?;
        sort_unique(&mut data.feature_requests, "feature request", |r| r.id)?;
        sort_unique(&mut data.tags, "tag", |r| r.id)?;

        let mut store = Store { data, ..Store::default() };
        store.check_references()?;
        store.rebuild_index()?;
        let d = &store.data;
        store.last_tick = d
            .companies
            .iter()
            .map(|r| r.updated)
            .chain(d.contacts.iter().map(|r| r.updated))
            .chain(d.feedback.iter().map(|r| r.created))
            .chain(d.feature_requests.iter().map(|r| r.created))
            .chain(d.tags.iter().map(|r| r.created))
            .max()
            .map(|t| t.0);
        Ok(store)
    }

    fn check_references(&self) -> Result<(), StateProblem> {
        let d = &self.data;
        let dangling = |table, id, target, target_id| StateProblem::DanglingReference { table, id, target, target_id };
        for contact in &d.contacts {
            if let Some(company) = contact.company
                && self.company_pos(company).is_none()
            {
                return Err(dangling("contact", contact.id, "company", company));
            }
        }
        for feedback in &d.feedback {
            let missing = feedback
                .person
                .filter(|id| position(&d.contacts, *id, |r| r.id).is_none())
                .map(|id| ("contact", id))
                .or_else(|| {
                    let company = feedback.company.filter(|id| self.company_pos(*id).is_none());
                    company.map(|id| ("company", id))
                })
                .or_else(|| {
                    let request =
                        feedback.feature_request.filter(|id| position(&d.feature_requests, *id, |r| r.id).is_none());
                    request.map(|id| ("feature request", id))
                })
                .or_else(|| {
                    let tag = feedback.tags.iter().copied().find(|id| position(&d.tags, *id, |r| r.id).is_none());
                    tag.map(|id| ("tag", id))
                });
            if let Some((target, target_id)) = missing {
                return Err(dangling("feedback", feedback.id, target, target_id));
            }
        }
        Ok(())
    }

    fn rebuild_index(&mut self) -> Result<(), StateProblem> {
        let mut index = Index::default();
        let d = &self.data;
        for (pos, company) in d.companies.iter().enumerate() {
            if let Some(internal_id) = &company.internal_id
                && let Some(other) = index.company_by_internal_id.insert(internal_id.clone(), pos)
            {
                return Err(StateProblem::DuplicateInternalId {
                    table: "company",
                    id: company.id,
                    other: d.companies[other].id,
                    internal_id: internal_id.clone(),
                });
            }
            add_to(&mut index.companies_by_name, company.name.to_lowercase(), pos);
        }
        for (pos, contact) in d.contacts.iter().enumerate() {
            if let Some(internal_id) = &contact.internal_id
                && let Some(other) = index.contact_by_internal_id.insert(internal_id.clone(), pos)
            {
                return Err(StateProblem::DuplicateInternalId {
                    table: "contact",
                    id: contact.id,
                    other: d.contacts[other].id,
                    internal_id: internal_id.clone(),
                });
            }
            if let Some(email) = &contact.email
                && let Some(other) = index.contact_by_email.insert(email.to_lowercase(), pos)
            {
                return Err(StateProblem::DuplicateEmail {
                    id: contact.id,
                    other: d.contacts[other].id,
                    email: email.clone(),
                });
            }
            add_to(&mut index.contacts_by_name, contact.name.clone(), pos);
        }
        for (pos, request) in d.feature_requests.iter().enumerate() {
            index.feature_request_by_title.entry(request.title.to_lowercase()).or_insert(pos);
        }
        for (pos, tag) in d.tags.iter().enumerate() {
            index.tag_by_title.entry(tag.title.clone()).or_insert(pos);
        }
        self.index = index;
        Ok(())
    }

    pub(crate) fn data(&self) -> &Data {
        &self.data
    }

    /// Counts successful mutations; the persister saves when it differs from what it last wrote.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Now, truncated to microseconds, and strictly after every earlier tick: two upserts within one
    /// microsecond still get different `updated` values.
    fn tick(&mut self) -> Timestamp {
        let now = Utc::now();
        let now = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        let next = match self.last_tick {
            Some(last) if now <= last => last + TimeDelta::microseconds(1),
            _ => now,
        };
        self.last_tick = Some(next);
        Timestamp(next)
    }

    fn company_pos(&self, id: i64) -> Option<usize> {
        position(&self.data.companies, id, |r| r.id)
    }

    // ---- companies -------------------------------------------------------------------------------

    /// `POST /companies/`: creates or updates the company with this `internal_id`.
    pub(crate) fn upsert_company(&mut self, body: &Map<String, Value>) -> Result<Value, FieldErrors> {
        let mut fields = Fields::new(body);
        let name = fields.required_str("name");
        let internal_id = fields.required_str("internal_id");
        let attributes = fields.optional_object("filterable_attributes");
        fields.finish()?;

        let now = self.tick();
        let pos = match self.index.company_by_internal_id.get(&internal_id).copied() {
            Some(pos) => {
                self.set_company_name(pos, name);
                let company = &mut self.data.companies[pos];
                merge(&mut company.filterable_attributes, attributes);
                company.updated = now;
                pos
            }
            None => self.insert_company(name, Some(internal_id), attributes.unwrap_or_default(), now),
        };
        self.generation += 1;
        Ok(render_company(&self.data.companies[pos]))
    }

    fn insert_company(
        &mut self,
        name: String,
        internal_id: Option<String>,
        filterable_attributes: JsonObject,
        now: Timestamp,
    ) -> usize {
        let pos = self.data.companies.len();
        let id = next_id(&self.data.companies, |r| r.id);
        if let Some(internal_id) = &internal_id {
            self.index.company_by_internal_id.insert(internal_id.clone(), pos);
        }
        add_to(&mut self.index.companies_by_name, name.to_lowercase(), pos);
        self.data.companies.push(CompanyRecord {
            id,
            name,
            internal_id,
            filterable_attributes,
            created: now,
            updated: now,
        });
        pos
    }

    fn set_company_name(&mut self, pos: usize, name: String) {
        let company = &mut self.data.companies[pos];
        if company.name != name {
            remove_from(&mut self.index.companies_by_name, &company.name.to_lowercase(), pos);
            add_to(&mut self.index.companies_by_name, name.to_lowercase(), pos);
            company.name = name;
        }
    }

    // ---- contacts --------------------------------------------------------------------------------

    /// `POST /users/`: creates or updates the contact with this `internal_id`, or else with this email.
    pub(crate) fn upsert_contact(&mut self, body: &Map<String, Value>) -> Result<Value, FieldErrors> {
        let mut fields = Fields::new(body);
        let email = fields.optional_email("email");
        let internal_id = fields.required_str("internal_id");
        let name = fields.required_str("name");
        let company_id = fields.optional_int("company");
        let company_internal_id = fields.optional_str("company_internal_id");
        let attributes = fields.optional_object("filterable_attributes");

        let by_id = company_id.and_then(|id| {
            let pos = self.company_pos(id);
            if pos.is_none() {
                fields.reject("company", format!("Invalid pk \"{id}\" - object does not exist."));
            }
            pos
        });
        let by_internal_id = company_internal_id.as_deref().and_then(|key| {
            let pos = self.index.company_by_internal_id.get(key).copied();
            if pos.is_none() {
                fields.reject("company_internal_id", format!("No company with internal_id \"{key}\"."));
            }
            pos
        });
        let company = match (by_id, by_internal_id) {
            (Some(a), Some(b)) if a != b => {
                let message = format!(
                    "Company {} is not the company with internal_id \"{}\".",
                    self.data.companies[a].id,
                    company_internal_id.as_deref().unwrap_or_default()
                );
                fields.reject("company", message);
                None
            }
            (a, b) => a.or(b),
        };

        let matched_by_id = self.index.contact_by_internal_id.get(&internal_id).copied();
        let matched_by_email =
            email.as_deref().and_then(|e| self.index.contact_by_email.get(&e.to_lowercase()).copied());
        let target = match (matched_by_id, matched_by_email) {
            (Some(a), Some(b)) if a != b => {
                fields.reject("email", "A contact with this email already exists.");
                None
            }
            (a, b) => a.or(b),
        };
        fields.finish()?;

        let now = self.tick();
        let company = company.map(|pos| self.data.companies[pos].id);
        let pos = match target {
            Some(pos) => {
                self.set_contact_name(pos, name);
                if email.is_some() {
                    self.set_contact_email(pos, email);
                }
                self.set_contact_internal_id(pos, Some(internal_id));
                let contact = &mut self.data.contacts[pos];
                if company.is_some() {
                    contact.company = company;
                }
                merge(&mut contact.filterable_attributes, attributes);
                contact.updated = now;
                pos
            }
            None => self.insert_contact(ContactRecord {
                id: next_id(&self.data.contacts, |r| r.id),
                email,
                name,
                internal_id: Some(internal_id),
                company,
                filterable_attributes: attributes.unwrap_or_default(),
                created: now,
                updated: now,
            }),
        };
        self.generation += 1;
        Ok(self.render_contact(&self.data.contacts[pos]))
    }

    fn insert_contact(&mut self, contact: ContactRecord) -> usize {
        let pos = self.data.contacts.len();
        if let Some(internal_id) = &contact.internal_id {
            self.index.contact_by_internal_id.insert(internal_id.clone(), pos);
        }
        if let Some(email) = &contact.email {
            self.index.contact_by_email.insert(email.to_lowercase(), pos);
        }
        add_to(&mut self.index.contacts_by_name, contact.name.clone(), pos);
        self.data.contacts.push(contact);
        pos
    }

    fn set_contact_name(&mut self, pos: usize, name: String) {
        let contact = &mut self.data.contacts[pos];
        if contact.name != name {
            remove_from(&mut self.index.contacts_by_name, &contact.name, pos);
            add_to(&mut self.index.contacts_by_name, name.clone(), pos);
            contact.name = name;
        }
    }

    fn set_contact_email(&mut self, pos: usize, email: Option<String>) {
        let contact = &mut self.data.contacts[pos];
        if let Some(old) = &contact.email {
            self.index.contact_by_email.remove(&old.to_lowercase());
        }
        if let Some(new) = &email {
            self.index.contact_by_email.insert(new.to_lowercase(), pos);
        }
        contact.email = email;
    }

    fn set_contact_internal_id(&mut self, pos: usize, internal_id: Option<String>) {
        let contact = &mut self.data.contacts[pos];
        if let Some(old) = &contact.internal_id {
            self.index.contact_by_internal_id.remove(old);
        }
        if let Some(new) = &internal_id {
            self.index.contact_by_internal_id.insert(new.clone(), pos);
        }
        contact.internal_id = internal_id;
    }

    // ---- feedback --------------------------------------------------------------------------------

    /// `POST /create-feedback/`: always creates a new piece of feedback (no de-duplication), finding or
    /// creating the person, their company, the feature request and the tags it names.
    pub(crate) fn create_feedback(&mut self, body: &Map<String, Value>) -> Result<Value, FieldErrors> {
        let mut fields = Fields::new(body);
        let problem = fields.required_str("problem");
        let feedback_type = fields.optional_choice("feedback_type", &FEEDBACK_TYPES);
        let state = fields.optional_choice("state", &FEEDBACK_STATES);
        let source_url = fields.optional_str("source_url");
        let source_username = fields.optional_str("source_username");
        let person_email = fields.optional_email("person_email");
        let person_name = fields.optional_str("person_name");
        let company_name = fields.optional_str("company_name");
        let feature_request_title = fields.optional_str("feature_request_title");
        let tag_titles = fields.optional_str_list("tags");
        fields.finish()?;

        let now = self.tick();
        let person = self.find_or_create_person(person_email, person_name, now);
        let company = match (person, company_name) {
            (Some(person), Some(name)) => {
                let company_id = self.find_or_create_company_named(name, now);
                let contact = &mut self.data.contacts[person];
                if contact.company != Some(company_id) {
                    contact.company = Some(company_id);
                    contact.updated = now;
                }
                Some(company_id)
            }
            _ => None,
        };
        let feature_request = feature_request_title.map(|title| self.find_or_create_feature_request(title, now));
        let mut tags: Vec<i64> = Vec::with_capacity(tag_titles.len());
        for title in tag_titles {
            let tag = self.find_or_create_tag(title, now);
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }

        let id = next_id(&self.data.feedback, |r| r.id);
        self.data.feedback.push(FeedbackRecord {
            id,
            problem,
            feedback_type,
            state: state.unwrap_or_else(|| "ACTIVE".to_owned()),
            source_url,
            source_username,
            person: person.map(|pos| self.data.contacts[pos].id),
            company,
            feature_request,
            tags,
            created: now,
        });
        self.generation += 1;
        Ok(json!({ "id": id }))
    }

    /// The person a piece of feedback comes from: by email (case-insensitive) when one is given, else by
    /// exact name; created when not found. A given name renames an existing person.
    fn find_or_create_person(&mut self, email: Option<String>, name: Option<String>, now: Timestamp) -> Option<usize> {
        let found = match (&email, &name) {
            (Some(email), _) => self.index.contact_by_email.get(&email.to_lowercase()).copied(),
            (None, Some(name)) => first_of(&self.index.contacts_by_name, name),
            (None, None) => return None,
        };
        match found {
            Some(pos) => {
                if let Some(name) = name
                    && self.data.contacts[pos].name != name
                {
                    self.set_contact_name(pos, name);
                    self.data.contacts[pos].updated = now;
                }
                Some(pos)
            }
            None => {
                let name = name.or_else(|| email.clone()).unwrap_or_default();
                Some(self.insert_contact(ContactRecord {
                    id: next_id(&self.data.contacts, |r| r.id),
                    email,
                    name,
                    internal_id: None,
                    company: None,
                    filterable_attributes: JsonObject::new(),
                    created: now,
                    updated: now,
                }))
            }
        }
    }

    fn find_or_create_company_named(&mut self, name: String, now: Timestamp) -> i64 {
        let pos = match first_of(&self.index.companies_by_name, &name.to_lowercase()) {
            Some(pos) => pos,
            None => self.insert_company(name, None, JsonObject::new(), now),
        };
        self.data.companies[pos].id
    }

    fn find_or_create_feature_request(&mut self, title: String, now: Timestamp) -> i64 {
        let key = title.to_lowercase();
        if let Some(&pos) = self.index.feature_request_by_title.get(&key) {
            return self.data.feature_requests[pos].id;
        }
        let id = next_id(&self.data.feature_requests, |r| r.id);
        self.index.feature_request_by_title.insert(key, self.data.feature_requests.len());
        self.data.feature_requests.push(FeatureRequestRecord { id, title, created: now });
        id
    }

    fn find_or_create_tag(&mut self, title: String, now: Timestamp) -> i64 {
        if let Some(&pos) = self.index.tag_by_title.get(&title) {
            return self.data.tags[pos].id;
        }
        let id = next_id(&self.data.tags, |r| r.id);
        self.index.tag_by_title.insert(title.clone(), self.data.tags.len());
        self.data.tags.push(TagRecord { id, title, created: now });
        id
    }

    // ---- lists and rendering ---------------------------------------------------------------------

    /// One page of a list, filtered, sorted and rendered as the API shows it.
    pub(crate) fn list(&self, listing: Listing, query: &ListQuery) -> Result<PageOut, InvalidPage> {
        let d = &self.data;
        let (window, results) = match listing {
            Listing::Companies => {
                let (rows, window) = list::select(&d.companies, query)?;
                (window, rows.into_iter().map(render_company).collect())
            }
            Listing::Contacts => {
                let (rows, window) = list::select(&d.contacts, query)?;
                (window, rows.into_iter().map(|r| self.render_contact(r)).collect())
            }
            Listing::Feedback => {
                let (rows, window) = list::select(&d.feedback, query)?;
                (window, rows.into_iter().map(|r| self.render_feedback(r)).collect())
            }
        };
        Ok(PageOut { window, results })
    }

    fn company_name(&self, id: Option<i64>) -> Option<&str> {
        let pos = self.company_pos(id?)?;
        Some(self.data.companies[pos].name.as_str())
    }

    fn render_contact(&self, c: &ContactRecord) -> Value {
        json!({
            "id": c.id,
            "email": c.email,
            "name": c.name,
            "internal_id": c.internal_id,
            "company": c.company,
            "company_name": self.company_name(c.company),
            "filterable_attributes": c.filterable_attributes,
            "created": c.created,
            "updated": c.updated,
        })
    }

    /// The sandbox-only view of feedback: its links resolved to names, for people reading a rehearsal.
    fn render_feedback(&self, f: &FeedbackRecord) -> Value {
        let d = &self.data;
        let person = f.person.and_then(|id| position(&d.contacts, id, |r| r.id)).map(|pos| &d.contacts[pos]);
        let feature_request = f
            .feature_request
            .and_then(|id| position(&d.feature_requests, id, |r| r.id))
            .map(|pos| d.feature_requests[pos].title.as_str());
        let tags: Vec<&str> = f
            .tags
            .iter()
            .filter_map(|id| position(&d.tags, *id, |r| r.id))
            .map(|pos| d.tags[pos].title.as_str())
            .collect();
        json!({
            "id": f.id,
            "problem": f.problem,
            "feedback_type": f.feedback_type,
            "state": f.state,
            "source_url": f.source_url,
            "source_username": f.source_username,
            "person": f.person,
            "person_email": person.and_then(|p| p.email.as_deref()),
            "person_name": person.map(|p| p.name.as_str()),
            "company": f.company,
            "company_name": self.company_name(f.company),
            "feature_request": f.feature_request,
            "feature_request_title": feature_request,
            "tags": tags,
            "created": f.created,
        })
    }
}

fn render_company(c: &CompanyRecord) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "internal_id": c.internal_id,
        "filterable_attributes": c.filterable_attributes,
        "created": c.created,
        "updated": c.updated,
    })
}

fn contains_lowercase(haystack: &str, term: &str) -> bool {
    haystack.to_lowercase().contains(term)
}

impl Listed for CompanyRecord {
    const ORDERING_FIELDS: &'static [&'static str] = &["id", "name", "internal_id", "created", "updated"];

    fn id(&self) -> i64 {
        self.id
    }

    fn matches(&self, term: &str) -> bool {
        contains_lowercase(&self.name, term)
    }

    fn sort_value(&self, field: &str) -> SortValue<'_> {
        match field {
            "name" => SortValue::Text(Some(&self.name)),
            "internal_id" => SortValue::Text(self.internal_id.as_deref()),
            "created" => SortValue::Time(self.created),
            "updated" => SortValue::Time(self.updated),
            _ => SortValue::Int(self.id),
        }
    }
}

impl Listed for ContactRecord {
    const ORDERING_FIELDS: &'static [&'static str] = &["id", "name", "email", "created", "updated"];

    fn id(&self) -> i64 {
        self.id
    }

    fn matches(&self, term: &str) -> bool {
        contains_lowercase(&self.name, term) || self.email.as_deref().is_some_and(|e| contains_lowercase(e, term))
    }

    fn sort_value(&self, field: &str) -> SortValue<'_> {
        match field {
            "name" => SortValue::Text(Some(&self.name)),
            "email" => SortValue::Text(self.email.as_deref()),
            "created" => SortValue::Time(self.created),
            "updated" => SortValue::Time(self.updated),
            _ => SortValue::Int(self.id),
        }
    }
}

impl Listed for FeedbackRecord {
    const ORDERING_FIELDS: &'static [&'static str] = &["id", "created"];

    fn id(&self) -> i64 {
        self.id
    }

    fn matches(&self, term: &str) -> bool {
        contains_lowercase(&self.problem, term)
    }

    fn sort_value(&self, field: &str) -> SortValue<'_> {
        match field {
            "created" => SortValue::Time(self.created),
            _ => SortValue::Int(self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn ok(result: Result<Value, FieldErrors>) -> Value {
        match result {
            Ok(value) => value,
            Err(errors) => panic!("unexpected errors: {}", errors.into_value()),
        }
    }

    fn err(result: Result<Value, FieldErrors>) -> Value {
        match result {
            Ok(value) => panic!("unexpected success: {value}"),
            Err(errors) => errors.into_value(),
        }
    }

    /// The index after a series of rules must equal one rebuilt from scratch.
    fn assert_index_consistent(store: &Store) {
        let rebuilt = Store::from_data(store.data.clone()).expect("data stays valid");
        assert_eq!(store.index, rebuilt.index);
    }

    #[test]
    fn timestamps_print_microseconds_in_utc_and_read_back() {
        let t = Timestamp(DateTime::from_timestamp_micros(1_796_327_040_123_456).unwrap_or_default());
        let text = t.to_string();
        assert_eq!(text, "2026-12-03T19:44:00.123456Z");
        let back: Timestamp = serde_json::from_value(Value::String(text)).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn ticks_strictly_increase() {
        let mut store = Store::default();
        let ticks: Vec<Timestamp> = (0..1000).map(|_| store.tick()).collect();
        assert!(ticks.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn company_upsert_merges_attributes_and_renames() {
        let mut store = Store::default();
        ok(store.upsert_company(&obj(json!({
            "name": "Acme", "internal_id": "c1", "filterable_attributes": {"plan": "pro", "region": "eu"}
        }))));
        let updated = ok(store.upsert_company(&obj(json!({
            "name": "Acme Corp", "internal_id": "c1", "filterable_attributes": {"plan": "enterprise"}
        }))));
        assert_eq!(store.data.companies.len(), 1);
        assert_eq!(updated["name"], "Acme Corp");
        assert_eq!(updated["filterable_attributes"], json!({"plan": "enterprise", "region": "eu"}));
        assert_eq!(store.generation(), 2);
        assert_index_consistent(&store);
    }

    #[test]
    fn failed_rule_changes_nothing() {
        let mut store = Store::default();
        let errors = err(store.upsert_contact(&obj(json!({
            "name": "Ada", "internal_id": "u1", "company_internal_id": "nope"
        }))));
        assert_eq!(errors, json!({"company_internal_id": ["No company with internal_id \"nope\"."]}));
        assert!(store.data.contacts.is_empty());
        assert_eq!(store.generation(), 0);
    }

    #[test]
    fn contact_found_by_email_takes_the_new_internal_id() {
        let mut store = Store::default();
        ok(store.create_feedback(&obj(json!({"problem": "p", "person_email": "Ada@Example.com"}))));
        let contact = ok(store.upsert_contact(&obj(json!({
            "name": "Ada Lovelace", "internal_id": "u1", "email": "ada@example.COM"
        }))));
        assert_eq!(store.data.contacts.len(), 1);
        assert_eq!(contact["internal_id"], "u1");
        assert_eq!(contact["email"], "ada@example.COM");
        assert_index_consistent(&store);
    }

    #[test]
    fn contact_email_owned_by_another_contact_is_rejected() {
        let mut store = Store::default();
        ok(store.upsert_contact(&obj(json!({"name": "A", "internal_id": "a", "email": "a@x.io"}))));
        ok(store.upsert_contact(&obj(json!({"name": "B", "internal_id": "b", "email": "b@x.io"}))));
        let errors = err(store.upsert_contact(&obj(json!({"name": "A", "internal_id": "a", "email": "B@x.io"}))));
        assert_eq!(errors, json!({"email": ["A contact with this email already exists."]}));
    }

    #[test]
    fn contact_company_id_and_internal_id_must_agree() {
        let mut store = Store::default();
        ok(store.upsert_company(&obj(json!({"name": "A", "internal_id": "a"}))));
        ok(store.upsert_company(&obj(json!({"name": "B", "internal_id": "b"}))));
        let errors = err(store.upsert_contact(&obj(json!({
            "name": "Ada", "internal_id": "u", "company": 1, "company_internal_id": "b"
        }))));
        assert_eq!(errors, json!({"company": ["Company 1 is not the company with internal_id \"b\"."]}));
    }

    #[test]
    fn feedback_person_by_name_when_no_email_and_company_by_name_case_insensitively() {
        let mut store = Store::default();
        ok(store.upsert_company(&obj(json!({"name": "Acme", "internal_id": "c1"}))));
        ok(store.create_feedback(&obj(json!({"problem": "p", "person_name": "Bob", "company_name": "ACME"}))));
        ok(store.create_feedback(&obj(json!({"problem": "q", "person_name": "Bob"}))));
        assert_eq!(store.data.contacts.len(), 1);
        assert_eq!(store.data.companies.len(), 1);
        assert_eq!(store.data.contacts[0].company, Some(1));
        assert_eq!(store.data.feedback[0].company, Some(1));
        assert_eq!(store.data.feedback[1].company, None);
        assert_index_consistent(&store);
    }

    #[test]
    fn feedback_tags_are_deduplicated_and_matched_exactly() {
        let mut store = Store::default();
        ok(store.create_feedback(&obj(json!({"problem": "p", "tags": ["red", "Red", "red"]}))));
        assert_eq!(store.data.tags.len(), 2);
        assert_eq!(store.data.feedback[0].tags, vec![1, 2]);
    }

    #[test]
    fn loading_rejects_duplicate_ids_emails_and_dangling_links() {
        let mut store = Store::default();
        ok(store.upsert_company(&obj(json!({"name": "A", "internal_id": "a"}))));
        ok(store.upsert_contact(&obj(json!({"name": "X", "internal_id": "x", "email": "x@a.io", "company": 1}))));
        ok(store.upsert_contact(&obj(json!({"name": "Y", "internal_id": "y", "email": "y@a.io"}))));

        let mut dup_id = store.data.clone();
        dup_id.contacts[1].id = 1;
        assert_eq!(Store::from_data(dup_id).err(), Some(StateProblem::DuplicateId { table: "contact", id: 1 }));

        let mut dup_email = store.data.clone();
        dup_email.contacts[1].email = Some("X@A.io".into());
        assert!(matches!(Store::from_data(dup_email), Err(StateProblem::DuplicateEmail { .. })));

        let mut dangling = store.data.clone();
        dangling.companies.clear();
        assert_eq!(
            Store::from_data(dangling).err(),
            Some(StateProblem::DanglingReference { table: "contact", id: 1, target: "company", target_id: 1 })
        );
    }

    #[test]
    fn ticks_continue_after_the_latest_loaded_timestamp() {
        let mut store = Store::default();
        ok(store.upsert_company(&obj(json!({"name": "A", "internal_id": "a"}))));
        let mut data = store.data.clone();
        let future = Timestamp(Utc::now() + TimeDelta::days(1));
        data.companies[0].updated = future;
        let mut loaded = Store::from_data(data).unwrap();
        assert!(loaded.tick() > future);
    }
}
