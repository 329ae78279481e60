//! Field-by-field validation of raw JSON bodies, with the messages Django REST Framework answers.
//!
//! The sandbox must answer 400 for a wrong type, so it cannot deserialize into the typed payloads of
//! [`crate::model`]: a failed serde parse names one field at best. Instead each endpoint walks the body with
//! [`Fields`], which collects every bad field into [`FieldErrors`] (DRF's `{"field": ["message"]}` shape) and
//! returns a placeholder for a bad value, so that the caller checks [`Fields::finish`] once before using any.
//!
//! The coercions follow DRF's fields: a `CharField` accepts numbers and turns them into strings, trims
//! whitespace and rejects booleans, lists and objects; an `IntegerField` accepts integral numbers and digit
//! strings; a `ChoiceField` compares exactly (case-sensitive).

use serde_json::{Map, Value};

use crate::model::JsonObject;

const REQUIRED: &str = "This field is required.";
const NOT_NULL: &str = "This field may not be null.";
const NOT_BLANK: &str = "This field may not be blank.";
const NOT_A_STRING: &str = "Not a valid string.";
const NOT_AN_INTEGER: &str = "A valid integer is required.";
const NULL_CHARACTERS: &str = "Null characters are not allowed.";
const INVALID_EMAIL: &str = "Enter a valid email address.";

/// Validation errors in DRF's shape: field name → list of messages (or, for a list field, index → list of
/// messages). Keys keep the order in which fields were checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldErrors(Map<String, Value>);

impl FieldErrors {
    /// Errors about the body as a whole (DRF's `non_field_errors`).
    pub(crate) fn non_field(message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::default();
        errors.add("non_field_errors", message);
        errors
    }

    pub(crate) fn add(&mut self, field: &str, message: impl Into<String>) {
        let entry = self.0.entry(field.to_owned()).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(messages) = entry {
            messages.push(Value::String(message.into()));
        }
    }

    fn add_nested(&mut self, field: &str, nested: Map<String, Value>) {
        self.0.insert(field.to_owned(), Value::Object(nested));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// Walks one JSON object, field by field, collecting errors.
pub(crate) struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: FieldErrors,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(body: &'a Map<String, Value>) -> Self {
        Fields { body, errors: FieldErrors::default() }
    }

    /// Records an error found by a rule outside this module (an unknown company, a conflicting email).
    pub(crate) fn reject(&mut self, field: &str, message: impl Into<String>) {
        self.errors.add(field, message);
    }

    /// Ok when no field was bad; the values returned so far are then all real.
    pub(crate) fn finish(self) -> Result<(), FieldErrors> {
        if self.errors.is_empty() { Ok(()) } else { Err(self.errors) }
    }

    /// A required, non-blank string. Returns an empty string when bad (the error is recorded).
    pub(crate) fn required_str(&mut self, field: &str) -> String {
        match self.body.get(field) {
            None => {
                self.errors.add(field, REQUIRED);
                String::new()
            }
            Some(value) => self.check_str(field, value).unwrap_or_default(),
        }
    }

    /// An optional string: absent or null means "not given". A blank string is an error, a deliberate
    /// sandbox strictness: a client must omit an empty optional field rather than send `""` (see the module
    /// doc of [`crate::sandbox`]).
    pub(crate) fn optional_str(&mut self, field: &str) -> Option<String> {
        match self.body.get(field) {
            None | Some(Value::Null) => None,
            Some(value) => self.check_str(field, value),
        }
    }

    /// An optional email address, validated like Django's `EmailValidator` and kept as given.
    pub(crate) fn optional_email(&mut self, field: &str) -> Option<String> {
        let email = self.optional_str(field)?;
        if is_valid_email(&email) {
            Some(email)
        } else {
            self.errors.add(field, INVALID_EMAIL);
            None
        }
    }

    /// An optional integer: a JSON integer, an integral float or a string of digits.
    pub(crate) fn optional_int(&mut self, field: &str) -> Option<i64> {
        let value = self.body.get(field)?;
        let parsed = match value {
            Value::Null => return None,
            Value::Number(n) => {
                n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
            }
            Value::String(s) => parse_int_str(s),
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => None,
        };
        if parsed.is_none() {
            self.errors.add(field, NOT_AN_INTEGER);
        }
        parsed
    }

    /// An optional JSON object (`filterable_attributes`).
    pub(crate) fn optional_object(&mut self, field: &str) -> Option<JsonObject> {
        match self.body.get(field)? {
            Value::Null => None,
            Value::Object(map) => Some(map.clone()),
            other => {
                let message = format!("Expected a dictionary of items but got type \"{}\".", python_type(other));
                self.errors.add(field, message);
                None
            }
        }
    }

    /// An optional list of non-blank strings; errors on items are reported by index, like DRF's `ListField`.
    pub(crate) fn optional_str_list(&mut self, field: &str) -> Vec<String> {
        let items = match self.body.get(field) {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                let message = format!("Expected a list of items but got type \"{}\".", python_type(other));
                self.errors.add(field, message);
                return Vec::new();
            }
        };
        let mut values = Vec::with_capacity(items.len());
        let mut nested = Map::new();
        for (index, item) in items.iter().enumerate() {
            match coerce_str(item) {
                Ok(s) => values.push(s),
                Err(message) => {
                    nested.insert(index.to_string(), Value::from(vec![message]));
                }
            }
        }
        if !nested.is_empty() {
            self.errors.add_nested(field, nested);
        }
        values
    }

    /// An optional value out of a fixed set, compared exactly (`"active"` is not `"ACTIVE"`).
    pub(crate) fn optional_choice(&mut self, field: &str, choices: &[&str]) -> Option<String> {
        let value = self.body.get(field)?;
        let text = match value {
            Value::Null => return None,
            Value::String(s) => s.clone(),
            Value::Bool(true) => "True".to_owned(),
            Value::Bool(false) => "False".to_owned(),
            other => other.to_string(),
        };
        if choices.contains(&text.as_str()) {
            Some(text)
        } else {
            self.errors.add(field, format!("\"{text}\" is not a valid choice."));
            None
        }
    }

    fn check_str(&mut self, field: &str, value: &Value) -> Option<String> {
        match coerce_str(value) {
            Ok(s) => Some(s),
            Err(message) => {
                self.errors.add(field, message);
                None
            }
        }
    }
}

/// DRF `CharField.to_internal_value` plus its blank and null checks, with whitespace trimmed.
fn coerce_str(value: &Value) -> Result<String, &'static str> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Null => return Err(NOT_NULL),
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => return Err(NOT_A_STRING),
    };
    if text.is_empty() {
        Err(NOT_BLANK)
    } else if text.contains('\0') {
        Err(NULL_CHARACTERS)
    } else {
        Ok(text)
    }
}

/// Python's `int()` after DRF strips a trailing `.0`: `" 12 "` and `"12.0"` are 12, `"1.5"` is not.
fn parse_int_str(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = match s.split_once('.') {
        Some((whole, zeros)) if zeros.bytes().all(|b| b == b'0') => whole,
        _ => s,
    };
    s.parse().ok()
}

/// The Python type name DRF puts in its messages, as `type(data).__name__` would print it.
pub(crate) fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Django's `EmailValidator`, simplified: a dot-atom local part (quoted local parts and IP-literal domains
/// are refused), `localhost` or a dotted domain whose labels are alphanumeric with inner hyphens, and a
/// top-level label of letters (or an `xn--` punycode label).
pub(crate) fn is_valid_email(email: &str) -> bool {
    if email.len() > 320 {
        return false;
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    is_valid_local_part(local) && is_valid_domain(domain)
}

fn is_valid_local_part(local: &str) -> bool {
    const SPECIALS: &str = "-!#$%&'*+/=?^_`{}|~";
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c)))
}

fn is_valid_domain(domain: &str) -> bool {
    if domain == "localhost" {
        return true;
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let labels: Vec<&str> = domain.split('.').collect();
    let Some((tld, rest)) = labels.split_last() else {
        return false;
    };
    if rest.is_empty() {
        return false;
    }
    let label_ok = |label: &str| {
        let chars = label.chars().count();
        (1..=63).contains(&chars)
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let tld_ok = if let Some(puny) = tld.strip_prefix("xn--") {
        (1..=59).contains(&puny.len()) && puny.chars().all(|c| c.is_ascii_alphanumeric())
    } else {
        (2..=63).contains(&tld.chars().count())
            && tld.chars().all(|c| c.is_alphabetic() || c == '-')
            && !tld.ends_with('-')
    };
    rest.iter().all(|label| label_ok(label)) && tld_ok
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn errors_of(check: impl FnOnce(&mut Fields<'_>), value: Value) -> Value {
        let map = body(value);
        let mut fields = Fields::new(&map);
        check(&mut fields);
        match fields.finish() {
            Ok(()) => Value::Null,
            Err(errors) => errors.into_value(),
        }
    }

    #[test]
    fn required_string_reports_missing_null_blank_and_wrong_type() {
        let check = |f: &mut Fields<'_>| {
            for name in ["a", "b", "c", "d", "e", "f"] {
                f.required_str(name);
            }
        };
        let errors = errors_of(check, json!({"b": null, "c": "   ", "d": true, "e": ["x"], "f": {"k": 1}}));
        assert_eq!(
            errors,
            json!({
                "a": ["This field is required."],
                "b": ["This field may not be null."],
                "c": ["This field may not be blank."],
                "d": ["Not a valid string."],
                "e": ["Not a valid string."],
                "f": ["Not a valid string."],
            })
        );
    }

    #[test]
    fn strings_are_trimmed_and_numbers_become_strings_like_drf() {
        let map = body(json!({"a": "  Acme  ", "b": 42, "c": 1.5}));
        let mut fields = Fields::new(&map);
        assert_eq!(fields.required_str("a"), "Acme");
        assert_eq!(fields.required_str("b"), "42");
        assert_eq!(fields.required_str("c"), "1.5");
        assert!(fields.finish().is_ok());
    }

    #[test]
    fn optional_fields_treat_null_as_absent_but_reject_blank() {
        let map = body(json!({"a": null, "b": ""}));
        let mut fields = Fields::new(&map);
        assert_eq!(fields.optional_str("a"), None);
        assert_eq!(fields.optional_str("missing"), None);
        assert_eq!(fields.optional_str("b"), None);
        let errors = fields.finish().map(|()| Value::Null).unwrap_or_else(FieldErrors::into_value);
        assert_eq!(errors, json!({"b": ["This field may not be blank."]}));
    }

    #[test]
    fn integers_accept_digit_strings_and_integral_floats_only() {
        let map = body(json!({"a": 7, "b": " 12 ", "c": 3.0, "d": "12.00", "e": 1.5, "f": "x", "g": true}));
        let mut fields = Fields::new(&map);
        assert_eq!(fields.optional_int("a"), Some(7));
        assert_eq!(fields.optional_int("b"), Some(12));
        assert_eq!(fields.optional_int("c"), Some(3));
        assert_eq!(fields.optional_int("d"), Some(12));
        assert_eq!(fields.optional_int("e"), None);
        assert_eq!(fields.optional_int("f"), None);
        assert_eq!(fields.optional_int("g"), None);
        let errors = fields.finish().map(|()| Value::Null).unwrap_or_else(FieldErrors::into_value);
        let bad = json!(["A valid integer is required."]);
        assert_eq!(errors, json!({"e": bad, "f": bad, "g": bad}));
    }

    #[test]
    fn objects_and_lists_name_the_python_type_they_got() {
        let errors = errors_of(
            |f| {
                f.optional_object("attrs");
                f.optional_str_list("tags");
            },
            json!({"attrs": [1], "tags": "red"}),
        );
        assert_eq!(
            errors,
            json!({
                "attrs": ["Expected a dictionary of items but got type \"list\"."],
                "tags": ["Expected a list of items but got type \"str\"."],
            })
        );
    }

    #[test]
    fn list_item_errors_are_keyed_by_index() {
        let errors = errors_of(
            |f| {
                f.optional_str_list("tags");
            },
            json!({"tags": ["ok", 5, {"x": 1}, ""]}),
        );
        assert_eq!(errors, json!({"tags": {"2": ["Not a valid string."], "3": ["This field may not be blank."]}}));
    }

    #[test]
    fn choices_are_exact_and_case_sensitive() {
        let map = body(json!({"a": "LOST DEAL", "b": "active", "c": 3}));
        let mut fields = Fields::new(&map);
        let choices = ["ACTIVE", "LOST DEAL"];
        assert_eq!(fields.optional_choice("a", &choices).as_deref(), Some("LOST DEAL"));
        assert_eq!(fields.optional_choice("b", &choices), None);
        assert_eq!(fields.optional_choice("c", &choices), None);
        let errors = fields.finish().map(|()| Value::Null).unwrap_or_else(FieldErrors::into_value);
        assert_eq!(errors, json!({"b": ["\"active\" is not a valid choice."], "c": ["\"3\" is not a valid choice."]}));
    }

    #[test]
    fn email_validation_accepts_common_addresses() {
        for ok in [
            "bob@example.com",
            "Bob.Smith+tag@Example.CO.uk",
            "o'neil@sub.example.org",
            "a@localhost",
            "x@xn--bcher-kva.example",
            "user@bücher.de",
        ] {
            assert!(is_valid_email(ok), "{ok} should be valid");
        }
    }

    #[test]
    fn email_validation_rejects_malformed_addresses() {
        for bad in [
            "",
            "plainaddress",
            "@example.com",
            "bob@",
            "bob@example",
            "bob@example.c",
            "bob@-example.com",
            "bob@example-.com",
            "bob@example.com-",
            "bob..smith@example.com",
            ".bob@example.com",
            "bob smith@example.com",
            "bob@exa mple.com",
            "bob@example.123",
            "bob@@example.com",
        ] {
            assert!(!is_valid_email(bad), "{bad:?} should be invalid");
        }
    }
}
