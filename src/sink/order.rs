//! Ordering without loading the file: a contact waits for the company it links to (and for an earlier
//! upsert of the same contact, by id or by email); feedback waits for the company and the person it names; nothing else waits
//! for anything.
//!
//! Feedback has to wait because Savio resolves `company_name` and `person_email` when the feedback arrives,
//! creating a company (without `internal_id`) or a person when none matches: feedback sent while its row's
//! company upsert is still in flight would leave two companies of that name. It waits for the upserts in
//! flight whose company name (case-insensitively, as Savio matches) or contact email it names, but is sent
//! whatever their outcome: Savio creates what is missing, as it would without this tool.
//!
//! Each payload in flight registers a completion signal under its key. A contact whose
//! `company_internal_id` names a company still in flight waits for that signal; a company that failed this
//! run is remembered, so its later contacts are blocked at once instead of sent. Entries are removed as soon
//! as their payload completes, so memory is bounded by what is in flight (plus the failed companies).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::model::Payload;

/// How a payload ended, as far as payloads that wait for it care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Done {
    Ok,
    Failed(String),
}

type Signal = watch::Receiver<Option<Done>>;

/// What a payload must wait for before it is sent.
pub(crate) struct Waits {
    /// The company this contact links to, when it is in flight in this run.
    pub company: Option<(String, Signal)>,
    /// The previous upsert of the same contact, when it is still in flight (keeps file order per key).
    pub previous: Option<Signal>,
    /// Upserts to let finish first, whatever their outcome (feedback: the company and person it names).
    pub after: Vec<Signal>,
    /// The company already failed this run: the contact is blocked without waiting.
    pub blocked_by: Option<(String, String)>,
}

/// Handed to the payload's job; completing it wakes whoever waits.
pub(crate) struct Completion {
    keys: Vec<(Kind, String)>,
    /// `None` for a payload nothing can wait for (feedback).
    tx: Option<watch::Sender<Option<Done>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Company,
    Contact,
    /// A company by its lowercased name, for feedback's `company_name`.
    CompanyName,
    /// A contact by its lowercased email, for feedback's `person_email`.
    ContactEmail,
}

#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    in_flight: HashMap<(Kind, String), Signal>,
    failed_companies: HashMap<String, String>,
}

impl Registry {
    /// Registers a payload about to be dispatched (in input order) and says what it must wait for.
    pub(crate) fn register(&self, payload: &Payload) -> (Waits, Completion) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut waits = Waits { company: None, previous: None, after: Vec::new(), blocked_by: None };
        let keys = match payload {
            Payload::Company(c) => {
                vec![(Kind::Company, c.internal_id.clone()), (Kind::CompanyName, c.name.to_lowercase())]
            }
            Payload::Contact(c) => {
                if let Some(company) = &c.company_internal_id {
                    if let Some(reason) = inner.failed_companies.get(company) {
                        waits.blocked_by = Some((company.clone(), reason.clone()));
                    } else if let Some(sig) = inner.in_flight.get(&(Kind::Company, company.clone())) {
                        waits.company = Some((company.clone(), sig.clone()));
                    }
                }
                waits.previous = inner.in_flight.get(&(Kind::Contact, c.internal_id.clone())).cloned();
                let mut keys = vec![(Kind::Contact, c.internal_id.clone())];
                if let Some(email) = &c.email {
                    let key = (Kind::ContactEmail, email.to_lowercase());
                    // Savio matches a contact by email too: two rows with one email and different ids are one
                    // person there, updated by each in turn. In file order, the later row wins every time.
                    waits.after.extend(inner.in_flight.get(&key).cloned());
                    keys.push(key);
                }
                keys
            }
            Payload::Feedback(_) if inner.in_flight.is_empty() => Vec::new(),
            Payload::Feedback(f) => {
                let named = [
                    f.company_name.as_ref().map(|n| (Kind::CompanyName, n.to_lowercase())),
                    f.person_email.as_ref().map(|e| (Kind::ContactEmail, e.to_lowercase())),
                ];
                waits.after = named.iter().flatten().filter_map(|k| inner.in_flight.get(k).cloned()).collect();
                Vec::new()
            }
        };
        let tx = (!keys.is_empty()).then(|| {
            let (tx, rx) = watch::channel(None);
            for k in &keys {
                inner.in_flight.insert(k.clone(), rx.clone());
            }
            tx
        });
        (waits, Completion { keys, tx })
    }

    /// Marks a payload done: wakes its waiters, forgets it, and remembers a failed company.
    pub(crate) fn complete(&self, completion: Completion, done: Done) {
        let Some(tx) = &completion.tx else { return };
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for key in &completion.keys {
            // A later payload with the same key may have taken the entry over: leave it then.
            if let Some(sig) = inner.in_flight.get(key)
                && sig.same_channel(&tx.subscribe())
            {
                inner.in_flight.remove(key);
            }
            if key.0 == Kind::Company
                && let Done::Failed(reason) = &done
            {
                inner.failed_companies.insert(key.1.clone(), reason.clone());
            }
        }
        drop(inner);
        // Waiters may be gone (nobody waited): that is fine.
        let _ = tx.send(Some(done));
    }

    /// How many payloads are registered as in flight (for tests).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).in_flight.len()
    }
}

/// Waits for a signal; a dropped sender (a job that vanished) counts as a failure.
pub(crate) async fn wait(mut sig: Signal) -> Done {
    match sig.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or(Done::Failed("unknown".into())),
        Err(_) => Done::Failed("its job ended without an outcome".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Company, Contact};

    fn company(id: &str) -> Payload {
        Payload::Company(Company {
            name: "n".into(),
            internal_id: id.into(),
            filterable_attributes: Default::default(),
        })
    }

    fn contact(id: &str, company: &str) -> Payload {
        Payload::Contact(Contact {
            name: "n".into(),
            internal_id: id.into(),
            email: None,
            company: None,
            company_internal_id: Some(company.into()),
            filterable_attributes: Default::default(),
        })
    }

    #[tokio::test]
    async fn contact_waits_for_its_company_and_later_ones_go_straight() {
        let r = Registry::default();
        let (_, c1) = r.register(&company("c1"));
        let (w, k1) = r.register(&contact("p1", "c1"));
        let (_, sig) = w.company.expect("waits for c1");
        r.complete(c1, Done::Ok);
        assert_eq!(wait(sig).await, Done::Ok);
        r.complete(k1, Done::Ok);
        let (w, _) = r.register(&contact("p2", "c1"));
        assert!(w.company.is_none() && w.blocked_by.is_none(), "company done: no wait");
    }

    #[tokio::test]
    async fn contacts_of_a_failed_company_are_blocked() {
        let r = Registry::default();
        let (_, c1) = r.register(&company("c1"));
        let (w, _) = r.register(&contact("p1", "c1"));
        r.complete(c1, Done::Failed("HTTP 400".into()));
        assert_eq!(wait(w.company.unwrap().1).await, Done::Failed("HTTP 400".into()));
        let (w, _) = r.register(&contact("p2", "c1"));
        assert_eq!(w.blocked_by, Some(("c1".into(), "HTTP 400".into())));
    }

    fn feedback(company_name: Option<&str>, person_email: Option<&str>) -> Payload {
        Payload::Feedback(crate::model::Feedback {
            problem: "p".into(),
            company_name: company_name.map(String::from),
            person_email: person_email.map(String::from),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn feedback_waits_for_the_company_and_person_it_names_whatever_their_outcome() {
        let r = Registry::default();
        let (_, c1) = r.register(&Payload::Company(Company {
            name: "Acme Corp".into(),
            internal_id: "c1".into(),
            filterable_attributes: Default::default(),
        }));
        let (_, p1) = r.register(&Payload::Contact(Contact {
            name: "Ada".into(),
            internal_id: "p1".into(),
            email: Some("Ada@X.io".into()),
            company: None,
            company_internal_id: Some("c1".into()),
            filterable_attributes: Default::default(),
        }));
        let (w, _) = r.register(&feedback(Some("ACME corp"), Some("ada@x.io")));
        assert_eq!(w.after.len(), 2, "the company by name and the person by email, case-insensitively");
        assert!(w.company.is_none() && w.blocked_by.is_none(), "never blocked by them");
        let (w, _) = r.register(&feedback(Some("Other"), Some("bob@x.io")));
        assert!(w.after.is_empty(), "nothing in flight by those names");
        r.complete(c1, Done::Failed("HTTP 400".into()));
        r.complete(p1, Done::Ok);
        assert_eq!(r.in_flight(), 0, "name and email entries are freed with the payload");
        let (w, _) = r.register(&feedback(Some("Acme Corp"), Some("ada@x.io")));
        assert!(w.after.is_empty() && w.blocked_by.is_none(), "done: no wait, and a failed company does not block");
    }

    #[tokio::test]
    async fn a_contact_waits_for_an_earlier_contact_with_the_same_email_whatever_its_id() {
        let r = Registry::default();
        let with_email = |id: &str, email: &str| {
            Payload::Contact(Contact {
                name: "n".into(),
                internal_id: id.into(),
                email: Some(email.into()),
                company: None,
                company_internal_id: None,
                filterable_attributes: Default::default(),
            })
        };
        let (_, a) = r.register(&with_email("a1", "dup@x.com"));
        let (w, b) = r.register(&with_email("b1", "DUP@x.com"));
        assert!(w.previous.is_none(), "another id");
        assert_eq!(w.after.len(), 1, "the same email: Savio's same person");
        let (w, _) = r.register(&with_email("c1", "other@x.com"));
        assert!(w.after.is_empty());
        r.complete(a, Done::Failed("HTTP 400".into()));
        r.complete(b, Done::Ok);
        let (w, _) = r.register(&with_email("d1", "dup@x.com"));
        assert!(w.after.is_empty(), "nothing with that email in flight any more");
    }

    #[tokio::test]
    async fn the_same_contact_waits_for_its_previous_upsert_and_entries_are_freed() {
        let r = Registry::default();
        let (_, a) = r.register(&contact("p1", "zz"));
        let (w, b) = r.register(&contact("p1", "zz"));
        let prev = w.previous.expect("second upsert of p1 waits for the first");
        r.complete(a, Done::Ok);
        assert_eq!(wait(prev).await, Done::Ok);
        assert_eq!(r.in_flight(), 1, "the first is forgotten, the second still in flight");
        r.complete(b, Done::Ok);
        assert_eq!(r.in_flight(), 0);
    }
}
