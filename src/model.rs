//! The typed payloads savio-sync sends to Savio, and the objects Savio answers with.
//!
//! These are the contract between the mapping stage (which builds them), the writer (which sends them) and
//! the sandbox (which receives them). Optional fields that are empty are `None` and are never serialised, so
//! a blank cell in an export never wipes data that already exists in Savio.

use serde::{Deserialize, Serialize};

mod attributes;

pub(crate) use attributes::intern;
pub use attributes::{AttrKey, Attributes};

/// A JSON object as Savio answers it (the `filterable_attributes` of a listed company or contact), or as the
/// sandbox receives and stores it.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// The three kinds of record Savio accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entity {
    Company,
    Contact,
    Feedback,
}

impl Entity {
    pub const ALL: [Entity; 3] = [Entity::Company, Entity::Contact, Entity::Feedback];

    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Company => "company",
            Entity::Contact => "contact",
            Entity::Feedback => "feedback",
        }
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Body of `POST /companies/` (upsert by `internal_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Company {
    pub name: String,
    pub internal_id: String,
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub filterable_attributes: Attributes,
}

/// Body of `POST /users/` (upsert by `internal_id` or `email`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    pub internal_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Savio's own id of the company, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<i64>,
    /// The company's id in the customer's system; the company must exist (or be upserted first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_internal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub filterable_attributes: Attributes,
}

/// Body of `POST /create-feedback/` (always creates: not idempotent).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Feedback {
    pub problem: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_request_title: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// One request's worth of data, ready to send.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Payload {
    Company(Company),
    Contact(Contact),
    Feedback(Feedback),
}

impl Payload {
    pub fn entity(&self) -> Entity {
        match self {
            Payload::Company(_) => Entity::Company,
            Payload::Contact(_) => Entity::Contact,
            Payload::Feedback(_) => Entity::Feedback,
        }
    }

    /// The key a report and the state store use for this payload: the company's or contact's
    /// `internal_id`, or for feedback (which has no key in Savio) a content hash.
    pub fn key(&self) -> String {
        match self {
            Payload::Company(c) => c.internal_id.clone(),
            Payload::Contact(c) => c.internal_id.clone(),
            Payload::Feedback(_) => feedback_key(&self.content_hash()),
        }
    }

    /// [`Payload::report_key`] when the content hash is already known (a feedback's key is made from it).
    pub fn report_key_with_hash(&self, hash: &str) -> String {
        match self {
            Payload::Feedback(_) => feedback_key(hash),
            _ => self.report_key(),
        }
    }

    /// The key shown in reports and kept in the state: [`Payload::key`], or a contact's email when it has no
    /// `internal_id`.
    pub fn report_key(&self) -> String {
        match self {
            Payload::Contact(c) if c.internal_id.is_empty() => c.email.clone().unwrap_or_default(),
            _ => self.key(),
        }
    }

    /// A stable hash of the serialised payload (hex, BLAKE3): equal payloads hash equal, whatever the row.
    pub fn content_hash(&self) -> String {
        json_hash(&serde_json::to_vec(self).expect("payloads always serialise"))
    }
}

/// [`Payload::content_hash`] of a payload already serialised (`json` is exactly what `serde_json::to_vec`
/// gives, which is also the request body).
pub fn json_hash(json: &[u8]) -> String {
    blake3::hash(json).to_hex().to_string()
}

/// A feedback's key: the start of its content hash (Savio has no id for it before it exists).
fn feedback_key(hash: &str) -> String {
    format!("sha:{}", &hash[..16])
}

/// Savio's id for a created or updated object. Accepts a JSON number or string, since the reference only
/// says "integer" and tolerance costs nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SavioId {
    Int(i64),
    Str(String),
}

impl std::fmt::Display for SavioId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SavioId::Int(i) => write!(f, "{i}"),
            SavioId::Str(s) => f.write_str(s),
        }
    }
}

/// A company as Savio lists it. Every field but `id` is optional so an answer with fewer fields still parses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavioCompany {
    pub id: SavioId,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub internal_id: Option<String>,
    #[serde(default)]
    pub filterable_attributes: Option<JsonObject>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub updated: Option<String>,
}

/// A contact as Savio lists it. `internal_id` is not in the published contact model; it is read when present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavioContact {
    pub id: SavioId,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub internal_id: Option<String>,
    #[serde(default)]
    pub company: Option<SavioId>,
    #[serde(default)]
    pub company_name: Option<String>,
    #[serde(default)]
    pub filterable_attributes: Option<JsonObject>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub updated: Option<String>,
}

/// A page of a list endpoint: `{count, next, previous, results}`. A bare JSON array (what a Django REST
/// Framework list view answers when pagination is off) reads as the one and only page: its items, no `next`,
/// `count` the number of items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub count: Option<u64>,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub results: Vec<T>,
}

/// The paginated shape of [`Page`], as documented.
#[derive(Deserialize)]
struct PageObject<T> {
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    previous: Option<String>,
    results: Vec<T>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Page<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};

        // A visitor rather than an untagged enum: a page that fails to parse keeps serde's precise message
        // (which field, which line and column) instead of "did not match any variant".
        struct PageVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for PageVisitor<T> {
            type Value = Page<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a page of results ({\"results\": [...], \"next\": ...}) or an array of results")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Page<T>, A::Error> {
                let page = PageObject::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Page { count: page.count, next: page.next, previous: page.previous, results: page.results })
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Page<T>, A::Error> {
                let results = Vec::<T>::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(Page { count: Some(results.len() as u64), next: None, previous: None, results })
            }
        }

        deserializer.deserialize_any(PageVisitor(std::marker::PhantomData))
    }
}

/// Documented `feedback_type` values (see API-NOTES.md); a mapping may extend the set.
pub const FEEDBACK_TYPES: [&str; 6] = ["ACTIVE", "CHURNED", "INTERNAL", "LOST DEAL", "PROSPECT", "OTHER"];

/// Documented `state` values; `ACTIVE` is Savio's default.
pub const FEEDBACK_STATES: [&str; 3] = ["ACTIVE", "PENDING", "ARCHIVED"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_optional_fields_are_omitted() {
        let c = Contact {
            name: "Ada".into(),
            internal_id: "1".into(),
            email: None,
            company: None,
            company_internal_id: None,
            filterable_attributes: Attributes::new(),
        };
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"name":"Ada","internal_id":"1"}"#);
        let f = Feedback { problem: "slow".into(), ..Default::default() };
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"problem":"slow"}"#);
    }

    #[test]
    fn savio_id_accepts_number_or_string() {
        let a: SavioId = serde_json::from_str("12").unwrap();
        let b: SavioId = serde_json::from_str("\"ab\"").unwrap();
        assert_eq!(a.to_string(), "12");
        assert_eq!(b.to_string(), "ab");
    }
}
