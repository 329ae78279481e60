//! The `filterable_attributes` of a payload: a short ordered list of (key, value), serialised as a JSON
//! object.
//!
//! Why not a `serde_json::Map`: the mapper builds one for every row of an import, and a map costs a hash
//! table and a `String` per key on every row, where a mapping's keys are the same few on every row. Here
//! the keys of a compiled mapping are interned once (`&'static str`, see [`intern`]) and a row's attributes
//! are one `Vec`. The JSON is the same, byte for byte, as the map's was (same keys in the same order, the
//! same values), so payload hashes kept in state files stay valid.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// An attribute's name: interned for the keys of a mapping, owned for keys read from JSON.
pub type AttrKey = Cow<'static, str>;

/// User-defined attributes of a company or contact (`filterable_attributes` in the API), in insertion
/// order. Keys are unique: inserting a key again replaces its value in place, as a JSON map would.
#[derive(Clone, Default)]
pub struct Attributes {
    entries: Vec<(AttrKey, Value)>,
}

impl Attributes {
    pub fn new() -> Attributes {
        Attributes::default()
    }

    pub fn with_capacity(n: usize) -> Attributes {
        Attributes { entries: Vec::with_capacity(n) }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`: in place when the key is there (returning the old value), else at the end.
    pub fn insert(&mut self, key: AttrKey, value: Value) -> Option<Value> {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Appends a key the caller knows is not there yet (the distinct keys of a compiled mapping).
    pub(crate) fn push_new(&mut self, key: &'static str, value: Value) {
        self.push_unique(Cow::Borrowed(key), value);
    }

    /// Appends a key the caller has checked is not there yet, without a search.
    pub(crate) fn push_unique(&mut self, key: AttrKey, value: Value) {
        debug_assert!(!self.contains_key(&key), "attribute '{key}' pushed twice");
        self.entries.push((key, value));
    }

    /// The attributes in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a AttrKey, &'a Value);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (AttrKey, Value)>, fn(&'a (AttrKey, Value)) -> Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl std::ops::Index<&str> for Attributes {
    type Output = Value;

    /// The value of `key`, or `null` when there is none (as `serde_json::Map` indexing a `Value` does).
    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

/// Equal when they hold the same keys with equal values, in any order (as JSON objects compare).
impl PartialEq for Attributes {
    fn eq(&self, other: &Attributes) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<AttrKey>> FromIterator<(K, Value)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Attributes {
        let mut out = Attributes::new();
        for (k, v) in iter {
            out.insert(k.into(), v);
        }
        out
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Attributes, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Attributes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of attributes")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Attributes, A::Error> {
                let mut out = Attributes::with_capacity(access.size_hint().unwrap_or(0));
                while let Some((k, v)) = access.next_entry::<String, Value>()? {
                    out.insert(Cow::Owned(k), v);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// The one `&'static` copy of an attribute key. Mappings name few keys and a process compiles few
/// mappings, so the set stays small; it is never emptied.
pub(crate) fn intern(key: &str) -> &'static str {
    static KEYS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut keys = KEYS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    match keys.get(key) {
        Some(k) => k,
        None => {
            let k: &'static str = Box::leak(key.to_owned().into_boxed_str());
            keys.insert(k);
            k
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialises_like_a_json_map_in_insertion_order() {
        let mut a = Attributes::new();
        a.insert("zeta".into(), json!("x"));
        a.push_new(intern("alpha"), json!(1.5));
        a.insert("n".into(), json!(12));
        a.insert("zeta".into(), json!(["a", true, null]));
        let mut m = serde_json::Map::new();
        m.insert("zeta".into(), json!("x"));
        m.insert("alpha".into(), json!(1.5));
        m.insert("n".into(), json!(12));
        m.insert("zeta".into(), json!(["a", true, null]));
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&m).unwrap());
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"zeta":["a",true,null],"alpha":1.5,"n":12}"#);
        let back: Attributes = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        assert_eq!(a["n"], 12);
        assert_eq!(a["missing"], Value::Null);
    }

    #[test]
    fn equality_ignores_order_like_json_objects() {
        let a: Attributes = [("a", json!(1)), ("b", json!(2))].into_iter().collect();
        let b: Attributes = [("b", json!(2)), ("a", json!(1))].into_iter().collect();
        let c: Attributes = [("a", json!(1))].into_iter().collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(std::ptr::eq(intern("k"), intern(&String::from("k"))), "one copy per key");
    }
}
