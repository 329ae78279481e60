//! What was already emitted this run, so a repeated row does not send the same thing twice.
//!
//! - A company derived from contact (or feedback) rows is sent once per `internal_id`; a different name for
//!   the same id is a conflict (the first is kept).
//! - A contact identical to the last one sent with the same `internal_id` is not sent again; with the same
//!   id but other content it is sent (the later row wins, as an upsert would) and counted as a conflict.
//! - Feedback identical to feedback already sent is not sent again: create-feedback is not idempotent, so a
//!   line repeated in an export would otherwise create the feedback twice in Savio.
//!
//! Memory matters on million-row runs, so nothing here keeps a string: each table maps a 64-bit hash of the
//! key to one 64-bit word (a 32-bit hash of the content and the 32-bit line that sent it), 16 bytes an
//! entry. Keys are told apart by a 64-bit hash: two different ids colliding is about a one in ten million
//! chance over a million ids, and would only merge a warning; feedback is told apart by a 64-bit content
//! hash, where a collision (as unlikely) would drop a piece of feedback, which the summary lists.

use std::hash::{BuildHasher, Hash, Hasher};

use serde_json::Value;

use crate::model::{Attributes, Contact, Feedback};

/// The hasher of keys and contents: fixed seed (the same every run), good distribution on short strings.
const STATE: foldhash::quality::FixedState = foldhash::quality::FixedState::with_seed(0x5a71_0e5c_2024_0001);

/// A 64-bit hash of a text key (an id).
pub(crate) fn key_hash(s: &str) -> u64 {
    let mut h = STATE.build_hasher();
    write_str(&mut h, s);
    h.finish()
}

/// A company's content for its table: the name's hash in the top 16 bits of the recorded 32, its
/// attributes' in the low 16, so that a conflict says which of the two differs ([`company_parts_differ`]).
pub(crate) fn company_hash(name: &str, attrs: &Attributes) -> u64 {
    let mut h = STATE.build_hasher();
    write_attrs(&mut h, attrs);
    (key_hash(name) >> 48) << 48 | (h.finish() >> 48) << 32
}

/// Of a company's content now and the 32 bits recorded for it: (the name differs, the attributes differ).
pub(crate) fn company_parts_differ(now: u64, recorded: u32) -> (bool, bool) {
    let now = (now >> 32) as u32;
    (now >> 16 != recorded >> 16, now & 0xffff != recorded & 0xffff)
}

/// A hash of a contact exactly as it would be sent.
pub(crate) fn contact_hash(c: &Contact) -> u64 {
    let mut h = STATE.build_hasher();
    write_str(&mut h, &c.name);
    write_str(&mut h, &c.internal_id);
    write_opt(&mut h, c.email.as_deref());
    match c.company {
        Some(id) => {
            h.write_u8(1);
            h.write_i64(id);
        }
        None => h.write_u8(0),
    }
    write_opt(&mut h, c.company_internal_id.as_deref());
    write_attrs(&mut h, &c.filterable_attributes);
    h.finish()
}

/// A hash of a piece of feedback exactly as it would be sent.
pub(crate) fn feedback_hash(f: &Feedback) -> u64 {
    let mut h = STATE.build_hasher();
    write_str(&mut h, &f.problem);
    for field in [
        &f.feedback_type,
        &f.state,
        &f.source_url,
        &f.source_username,
        &f.person_email,
        &f.person_name,
        &f.company_name,
        &f.feature_request_title,
    ] {
        write_opt(&mut h, field.as_deref());
    }
    h.write_usize(f.tags.len());
    for t in &f.tags {
        write_str(&mut h, t);
    }
    h.finish()
}

fn write_str(h: &mut impl Hasher, s: &str) {
    h.write_usize(s.len());
    h.write(s.as_bytes());
}

fn write_opt(h: &mut impl Hasher, s: Option<&str>) {
    match s {
        Some(s) => {
            h.write_u8(1);
            write_str(h, s);
        }
        None => h.write_u8(0),
    }
}

/// Attributes in their order, which is the order they are serialised in (the same mapping inserts the same
/// keys in the same order).
fn write_attrs(h: &mut impl Hasher, attrs: &Attributes) {
    write_entries(h, attrs.len(), attrs.iter());
}

fn write_entries<'a>(h: &mut impl Hasher, len: usize, entries: impl Iterator<Item = (&'a str, &'a Value)>) {
    h.write_usize(len);
    for (k, v) in entries {
        write_str(h, k);
        write_value(h, v);
    }
}

fn write_value(h: &mut impl Hasher, v: &Value) {
    match v {
        Value::Null => h.write_u8(0),
        Value::Bool(b) => {
            h.write_u8(1);
            h.write_u8(u8::from(*b));
        }
        Value::Number(n) => {
            h.write_u8(2);
            n.hash(h);
        }
        Value::String(s) => {
            h.write_u8(3);
            write_str(h, s);
        }
        Value::Array(items) => {
            h.write_u8(4);
            h.write_usize(items.len());
            for i in items {
                write_value(h, i);
            }
        }
        Value::Object(o) => {
            h.write_u8(5);
            write_entries(h, o.len(), o.iter().map(|(k, v)| (k.as_str(), v)));
        }
    }
}

/// Lines are kept in 32 bits (a line beyond 4,294,967,295 is remembered as that).
fn line32(line: u64) -> u64 {
    line.min(u64::from(u32::MAX))
}

/// What a table says about an entity seen again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sighting {
    /// Not seen before this run: it is sent.
    New,
    /// Seen with the same content on `first_line`.
    Same { first_line: u64 },
    /// Seen on `first_line` with other content (`recorded`: the top 32 bits of the content recorded then).
    Other { first_line: u64, recorded: u32 },
}

/// key hash → (32-bit content hash << 32 | line).
///
/// An open-addressing table of `(key, word)` pairs with linear probing, rather than a `HashMap`: the contacts
/// table of a million-row run is tens of megabytes, so every lookup is a cache miss, and owning the layout lets
/// the mapper [`prefetch`](Seen::prefetch) a row's slot before it builds the row's payloads. The keys are
/// already hashes, so they are only scattered (multiplied), never hashed again.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    /// `(key, word)`; a slot whose key is 0 is empty.
    slots: Vec<(u64, u64)>,
    len: usize,
    /// The word of key 0, which cannot live in `slots` since 0 marks an empty slot there.
    zero: Option<u64>,
}

/// Fibonacci hashing: spreads any key bits over the top bits that pick the slot.
const SCATTER: u64 = 0x9E37_79B9_7F4A_7C15;

impl Seen {
    fn slot_of(&self, key: u64) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (key.wrapping_mul(SCATTER) >> (64 - bits)) as usize
    }

    /// Asks the CPU to start loading `key`'s slot, so that a [`sight`](Seen::sight) a little later finds it in
    /// cache. Only a hint: it changes no state and costs nothing when the slot is already cached.
    #[inline]
    pub(crate) fn prefetch(&self, key: u64) {
        if self.slots.is_empty() {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let p = self.slots.as_ptr().wrapping_add(self.slot_of(key)).cast::<i8>();
            // SAFETY: a prefetch is a hint that never faults, whatever the address; `p` is in `slots` anyway.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p) };
        }
    }

    /// Looks `key` up; a new key is recorded with `content` and `line`. With `replace`, other content
    /// replaces the recorded one (the later row wins).
    pub(crate) fn sight(&mut self, key: u64, content: u64, line: u64, replace: bool) -> Sighting {
        let word = (content >> 32) << 32 | line32(line);
        let entry = if key == 0 {
            match self.zero.as_mut() {
                Some(old) => old,
                None => {
                    self.zero = Some(word);
                    return Sighting::New;
                }
            }
        } else {
            if self.len + 1 > self.slots.len() / 4 * 3 {
                self.grow();
            }
            let mask = self.slots.len() - 1;
            let mut i = self.slot_of(key);
            loop {
                let k = self.slots[i].0;
                if k == 0 {
                    self.slots[i] = (key, word);
                    self.len += 1;
                    return Sighting::New;
                }
                if k == key {
                    break &mut self.slots[i].1;
                }
                i = (i + 1) & mask;
            }
        };
        let old = *entry;
        let first_line = old & u64::from(u32::MAX);
        if old >> 32 == word >> 32 {
            Sighting::Same { first_line }
        } else {
            if replace {
                *entry = word;
            }
            Sighting::Other { first_line, recorded: (old >> 32) as u32 }
        }
    }

    /// Doubles the table (at three quarters full: linear probing stays short below that).
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(64);
        let old = std::mem::replace(&mut self.slots, vec![(0, 0); size]);
        let mask = size - 1;
        for (k, w) in old.into_iter().filter(|(k, _)| *k != 0) {
            let mut i = self.slot_of(k);
            while self.slots[i].0 != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = (k, w);
        }
    }

    /// Whether `key` was recorded.
    pub(crate) fn contains(&self, key: u64) -> bool {
        if key == 0 {
            return self.zero.is_some();
        }
        if self.slots.is_empty() {
            return false;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.slot_of(key);
        loop {
            match self.slots[i].0 {
                0 => return false,
                k if k == key => return true,
                _ => {}
            }
            i = (i + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sightings() {
        let mut s = Seen::default();
        assert_eq!(s.sight(1, 10 << 32, 2, true), Sighting::New);
        assert_eq!(s.sight(1, 10 << 32, 5, true), Sighting::Same { first_line: 2 });
        assert_eq!(s.sight(1, 11 << 32, 7, true), Sighting::Other { first_line: 2, recorded: 10 });
        assert_eq!(s.sight(1, 11 << 32, 9, true), Sighting::Same { first_line: 7 }, "the later row won");
        assert_eq!(s.sight(1, 12 << 32, 10, false), Sighting::Other { first_line: 7, recorded: 11 });
        assert_eq!(
            s.sight(1, 12 << 32, 11, false),
            Sighting::Other { first_line: 7, recorded: 11 },
            "the first is kept"
        );
        assert!(s.contains(1) && !s.contains(2));
    }

    #[test]
    fn the_table_agrees_with_a_hash_map_through_growth() {
        let mut s = Seen::default();
        let mut m = std::collections::HashMap::new();
        for i in 0..50_000u64 {
            // Few distinct keys (repeats), key 0 among them, contents that change now and then.
            let key = (i * 7919) % 20_011;
            let content = ((i / 3) % 4) << 32;
            let line = i;
            let replace = i % 2 == 0;
            let expected = match m.get(&key).copied() {
                None => {
                    m.insert(key, (content, line));
                    Sighting::New
                }
                Some((c, first_line)) if c == content => Sighting::Same { first_line },
                Some((c, first_line)) => {
                    if replace {
                        m.insert(key, (content, line));
                    }
                    Sighting::Other { first_line, recorded: (c >> 32) as u32 }
                }
            };
            assert_eq!(s.sight(key, content, line, replace), expected, "key {key} at {i}");
            s.prefetch(key);
        }
        for key in 0..21_000 {
            assert_eq!(s.contains(key), m.contains_key(&key), "{key}");
        }
        assert!(s.contains(0));
    }

    #[test]
    fn hashes_see_every_field() {
        let c = Contact {
            name: "Ada".into(),
            internal_id: "1".into(),
            email: None,
            company: None,
            company_internal_id: None,
            filterable_attributes: Default::default(),
        };
        let mut d = c.clone();
        d.email = Some(String::new());
        assert_ne!(contact_hash(&c), contact_hash(&d), "no email is not an empty email");
        let mut e = c.clone();
        e.filterable_attributes.insert("n".into(), 1.into());
        let mut f = c.clone();
        f.filterable_attributes.insert("n".into(), "1".into());
        assert_ne!(contact_hash(&e), contact_hash(&f), "a number is not a string");
        assert_eq!(contact_hash(&c), contact_hash(&c.clone()));
        let a = Feedback { problem: "ab".into(), tags: vec!["c".into()], ..Default::default() };
        let b = Feedback { problem: "a".into(), tags: vec!["bc".into()], ..Default::default() };
        assert_ne!(feedback_hash(&a), feedback_hash(&b), "lengths separate the fields");
    }
}
