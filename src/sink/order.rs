//! Ordering without loading the file: a contact waits for the company it links to (and for an earlier
//! upsert of the same contact), nothing else waits for anything.
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
    /// The company already failed this run: the contact is blocked without waiting.
    pub blocked_by: Option<(String, String)>,
}

/// Handed to the payload's job; completing it wakes whoever waits.
pub(crate) struct Completion {
    key: Option<(Kind, String)>,
    tx: watch::Sender<Option<Done>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Company,
    Contact,
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
        let (tx, rx) = watch::channel(None);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut waits = Waits { company: None, previous: None, blocked_by: None };
        let key = match payload {
            Payload::Company(c) => Some((Kind::Company, c.internal_id.clone())),
            Payload::Contact(c) => {
                if let Some(company) = &c.company_internal_id {
                    if let Some(reason) = inner.failed_companies.get(company) {
                        waits.blocked_by = Some((company.clone(), reason.clone()));
                    } else if let Some(sig) = inner.in_flight.get(&(Kind::Company, company.clone())) {
                        waits.company = Some((company.clone(), sig.clone()));
                    }
                }
                waits.previous = inner.in_flight.get(&(Kind::Contact, c.internal_id.clone())).cloned();
                Some((Kind::Contact, c.internal_id.clone()))
            }
            Payload::Feedback(_) => None,
        };
        if let Some(k) = &key {
            inner.in_flight.insert(k.clone(), rx);
        }
        (waits, Completion { key, tx })
    }

    /// Marks a payload done: wakes its waiters, forgets it, and remembers a failed company.
    pub(crate) fn complete(&self, completion: Completion, done: Done) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = &completion.key {
            if let Some(sig) = inner.in_flight.get(key)
                && sig.same_channel(&completion.tx.subscribe())
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
        let _ = completion.tx.send(Some(done));
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
