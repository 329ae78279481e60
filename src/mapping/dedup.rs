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
/// An extendible hash table of `(key, word)` pairs: a directory, indexed by the top bits of the scattered
/// key, points at 4 KiB buckets of 256 slots, each an open-addressing table with linear probing. A full
/// bucket (three quarters) splits in two; nothing else moves. A table that doubled all at once would, for
/// a moment, hold the old and the new array: 48 MB for the contacts of a million-row run, the largest
/// allocation of a `validate` and enough to break its memory goal. Here memory grows a page at a time.
///
/// The contacts table of a million-row run is tens of megabytes, so every lookup is a cache miss; owning the
/// layout lets the mapper [`prefetch`](Seen::prefetch) a row's slot before it builds the row's payloads. The
/// keys are already hashes, so they are only scattered (multiplied), never hashed again.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    /// Bucket index for each value of the top `depth` bits of the scattered key; empty until the first key.
    dir: Vec<u32>,
    /// Bits of the scattered key that index `dir`.
    depth: u32,
    buckets: Vec<Bucket>,
    /// The word of key 0, which cannot live in a bucket since 0 marks an empty slot there.
    zero: Option<u64>,
}

/// Slots in a new bucket: 256 of 16 bytes, one 4 KiB page.
const BUCKET_BITS: u32 = 8;
/// The deepest a bucket splits (a directory of at most 4 MiB). A million random keys need about 16 bits;
/// keys that share more (only a crafted input could) make their bucket grow in place instead.
const MAX_DEPTH: u32 = 20;

/// Fibonacci hashing: spreads any key bits over the top bits that pick the bucket and the slot.
const SCATTER: u64 = 0x9E37_79B9_7F4A_7C15;

fn scatter(key: u64) -> u64 {
    key.wrapping_mul(SCATTER)
}

/// One page of the table: the keys whose scattered top `depth` bits are the same.
#[derive(Debug, Clone)]
struct Bucket {
    depth: u32,
    /// `slots.len()` is `1 << bits`: `BUCKET_BITS` but at `MAX_DEPTH`.
    bits: u32,
    len: usize,
    /// `(key, word)`; a slot whose key is 0 is empty.
    slots: Box<[(u64, u64)]>,
}

/// Where a key is, or would go, in its bucket.
enum Probe {
    Found(usize),
    Vacant(usize),
}

impl Bucket {
    fn new(depth: u32, bits: u32) -> Bucket {
        Bucket { depth, bits, len: 0, slots: vec![(0, 0); 1 << bits].into_boxed_slice() }
    }

    /// Whether one more key would make it more than three quarters full (linear probing stays short below).
    fn is_full(&self) -> bool {
        self.len + 1 > self.slots.len() / 4 * 3
    }

    /// The slot a key starts probing from: the scattered bits below the bucket's own.
    fn home(&self, scattered: u64) -> usize {
        ((scattered << self.depth) >> (64 - self.bits)) as usize
    }

    fn probe(&self, key: u64, scattered: u64) -> Probe {
        let mask = self.slots.len() - 1;
        let mut i = self.home(scattered);
        loop {
            match self.slots[i].0 {
                0 => return Probe::Vacant(i),
                k if k == key => return Probe::Found(i),
                // Never more than three quarters full, so an empty slot comes.
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Records a key known to be absent.
    fn insert(&mut self, key: u64, word: u64) {
        if let Probe::Vacant(i) = self.probe(key, scatter(key)) {
            self.slots[i] = (key, word);
            self.len += 1;
        }
    }
}

impl Seen {
    /// The bucket of a scattered key.
    fn bucket_of(&self, scattered: u64) -> usize {
        let i = if self.depth == 0 { 0 } else { (scattered >> (64 - self.depth)) as usize };
        self.dir[i] as usize
    }

    /// Asks the CPU to start loading `key`'s slot, so that a [`sight`](Seen::sight) a little later finds it in
    /// cache. Only a hint: it changes no state and costs nothing when the slot is already cached.
    #[inline]
    pub(crate) fn prefetch(&self, key: u64) {
        if self.dir.is_empty() {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let h = scatter(key);
            let bucket = &self.buckets[self.bucket_of(h)];
            let p = bucket.slots.as_ptr().wrapping_add(bucket.home(h)).cast::<i8>();
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
            if self.dir.is_empty() {
                self.dir.push(0);
                self.buckets.push(Bucket::new(0, BUCKET_BITS));
            }
            let h = scatter(key);
            loop {
                let b = self.bucket_of(h);
                let bucket = &mut self.buckets[b];
                match bucket.probe(key, h) {
                    Probe::Found(i) => break &mut self.buckets[b].slots[i].1,
                    Probe::Vacant(_) if bucket.is_full() => self.split(b, h),
                    Probe::Vacant(i) => {
                        bucket.slots[i] = (key, word);
                        bucket.len += 1;
                        return Sighting::New;
                    }
                }
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

    /// Splits bucket `b` (which scattered key `h` maps to) on its next bit: the keys with that bit set move
    /// to a new bucket, and so does the upper half of the directory entries that pointed at `b`. At
    /// `MAX_DEPTH` the bucket doubles in place instead.
    fn split(&mut self, b: usize, h: u64) {
        let depth = self.buckets[b].depth;
        if depth == MAX_DEPTH {
            let bits = self.buckets[b].bits + 1;
            let old = std::mem::replace(&mut self.buckets[b], Bucket::new(depth, bits));
            for &(key, word) in old.slots.iter().filter(|(k, _)| *k != 0) {
                self.buckets[b].insert(key, word);
            }
            return;
        }
        if depth == self.depth {
            self.dir = self.dir.iter().flat_map(|&i| [i, i]).collect();
            self.depth += 1;
        }
        let span = 1usize << (self.depth - depth);
        let prefix = if depth == 0 { 0 } else { (h >> (64 - depth)) as usize };
        let start = prefix << (self.depth - depth);
        let new = self.buckets.len();
        self.dir[start + span / 2..start + span].fill(new as u32);

        let old = std::mem::replace(&mut self.buckets[b], Bucket::new(depth + 1, BUCKET_BITS));
        self.buckets.push(Bucket::new(depth + 1, BUCKET_BITS));
        for &(key, word) in old.slots.iter().filter(|(k, _)| *k != 0) {
            let side = if (scatter(key) << depth) >> 63 == 1 { new } else { b };
            self.buckets[side].insert(key, word);
        }
    }

    /// Whether `key` was recorded.
    pub(crate) fn contains(&self, key: u64) -> bool {
        if key == 0 {
            return self.zero.is_some();
        }
        if self.dir.is_empty() {
            return false;
        }
        let h = scatter(key);
        matches!(self.buckets[self.bucket_of(h)].probe(key, h), Probe::Found(_))
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

    /// Sights every key twice (the second time with other content) and checks what the table answers.
    fn sights_each_key_twice(keys: &[u64]) -> Seen {
        let mut s = Seen::default();
        for (line, &key) in keys.iter().enumerate() {
            assert_eq!(s.sight(key, 1 << 32, line as u64, true), Sighting::New, "key {key:#x}");
        }
        for (line, &key) in keys.iter().enumerate() {
            let expected = Sighting::Other { first_line: line as u64, recorded: 1 };
            assert_eq!(s.sight(key, 2 << 32, 0, true), expected, "key {key:#x}");
            assert!(s.contains(key));
            assert!(!s.contains(key ^ 0x8000_0000_0000_0001) || keys.contains(&(key ^ 0x8000_0000_0000_0001)));
        }
        s
    }

    /// A key whose scattered value is `scattered` (scattering multiplies by an odd number: invertible).
    fn unscatter(scattered: u64) -> u64 {
        let mut inverse = SCATTER;
        for _ in 0..6 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(SCATTER.wrapping_mul(inverse)));
        }
        assert_eq!(scatter(scattered.wrapping_mul(inverse)), scattered);
        scattered.wrapping_mul(inverse)
    }

    #[test]
    fn many_random_keys_split_buckets_and_memory_stays_near_the_keys() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let keys: Vec<u64> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect();
        let s = sights_each_key_twice(&keys);
        let slots: usize = s.buckets.iter().map(|b| b.slots.len()).sum();
        assert!(slots < keys.len() * 3, "{slots} slots for {} keys", keys.len());
        assert!(s.depth < 16, "directory depth {}", s.depth);
    }

    #[test]
    fn keys_sharing_their_top_bits_grow_one_bucket_past_the_deepest_split() {
        // 2,000 keys whose scattered values share the top 40 bits: beyond MAX_DEPTH, one bucket takes them all.
        let keys: Vec<u64> = (1..=2_000u64).map(|i| unscatter(0xABCD_EF12_3400_0000 | i << 8)).collect();
        let s = sights_each_key_twice(&keys);
        assert_eq!(s.depth, MAX_DEPTH);
        assert!(s.buckets.iter().any(|b| b.bits > BUCKET_BITS));
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
