//! One compiled field: where its value comes from and the transforms applied to it, in a fixed order:
//! extract → split (lists) → HTML to text → trim → collapse whitespace → case → value map → default when
//! empty → type.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;

use super::convert::{self, TypeOptions};
use super::error::{FieldError, FieldProblem};
use super::spec::{AttrType, Case};
use super::value::{Accessor, Raw, TemplatePart, render, trim};
use crate::source::{Record, RecordData};

/// Where a field's value comes from.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// The first non-empty of these columns / paths.
    Columns(Vec<Accessor>),
    Template(Vec<TemplatePart<Accessor>>),
    Const(String),
    ConstList(Vec<String>),
    /// A typed constant for an attribute (`value = 5`, `value = true`).
    ConstJson(Value),
}

impl Origin {
    /// Whether the value [`raw`](Origin::raw) gives is a JSON number.
    fn is_json_number(&self, record: &Record) -> bool {
        let (Origin::Columns(accs), RecordData::Json { object, .. }) = (self, &record.data) else { return false };
        match accs.iter().find(|acc| !acc.get(record).is_empty()) {
            Some(Accessor::Path(p)) => p.is_number(object),
            _ => false,
        }
    }

    fn raw<'a>(&'a self, record: &'a Record) -> Raw<'a> {
        match self {
            // One column (the common case): no emptiness check needed.
            Origin::Columns(accs) if accs.len() == 1 => accs[0].get(record),
            Origin::Columns(accs) => {
                let mut first = Raw::Missing;
                for (i, acc) in accs.iter().enumerate() {
                    let v = acc.get(record);
                    if !v.is_empty() {
                        return v;
                    }
                    if i == 0 {
                        first = v;
                    }
                }
                first
            }
            Origin::Template(parts) => Raw::Text(Cow::Owned(render(parts, record))),
            Origin::Const(s) => Raw::Text(Cow::Borrowed(s)),
            Origin::ConstList(items) => Raw::List(items.iter().map(|s| Cow::Borrowed(s.as_str())).collect()),
            Origin::ConstJson(v) => super::value::json_to_raw(v),
        }
    }
}

/// A `map = { ... }` table: exact keys first, then keys compared ignoring case, spaces and punctuation, so
/// that one table reads both a CRM's labels and its internal values ("Sales Qualified Lead" and HubSpot's
/// `salesqualifiedlead`, "Closed Won" and `closed_won`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ValueMap {
    exact: HashMap<String, String>,
    folded: HashMap<String, String>,
    other: Option<String>,
}

impl ValueMap {
    pub fn new(entries: impl IntoIterator<Item = (String, String)>, other: Option<String>) -> ValueMap {
        let mut m = ValueMap { other, ..Default::default() };
        for (k, v) in entries {
            m.folded.entry(fold(&k)).or_insert_with(|| v.clone());
            m.exact.insert(k, v);
        }
        m
    }

    fn apply<'a>(&'a self, s: Cow<'a, str>) -> Cow<'a, str> {
        if let Some(v) = self.exact.get(s.as_ref()) {
            return Cow::Borrowed(v);
        }
        if let Some(v) = self.folded.get(&fold(&s)) {
            return Cow::Borrowed(v);
        }
        match &self.other {
            Some(o) if !s.is_empty() => Cow::Borrowed(o),
            _ => s,
        }
    }

    /// Every value the map can produce (to check them against the accepted choices up front).
    pub fn outputs(&self) -> impl Iterator<Item = &String> {
        self.exact.values().chain(self.other.iter())
    }
}

/// A map key as compared second: lowercase letters and digits only.
fn fold(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    /// `contact.email`: names the field in errors.
    pub label: String,
    pub origin: Origin,
    /// Where the value comes from, for "required but empty" messages.
    pub describe: String,
    pub trim: bool,
    pub strip_html: bool,
    pub collapse: bool,
    pub case: Case,
    pub map: Option<ValueMap>,
    pub default: Option<Origin>,
    pub split: Option<String>,
    pub ty: Option<AttrType>,
    pub type_opts: TypeOptions,
}

impl Field {
    pub fn new(label: String, origin: Origin, describe: String) -> Field {
        Field {
            label,
            origin,
            describe,
            trim: true,
            strip_html: false,
            collapse: false,
            case: Case::Keep,
            map: None,
            default: None,
            split: None,
            ty: None,
            type_opts: TypeOptions::default(),
        }
    }

    /// The accessors this field reads (to know which columns are "mapped").
    pub fn accessors(&self) -> Vec<&Accessor> {
        let mut out = Vec::new();
        for origin in std::iter::once(&self.origin).chain(self.default.iter()) {
            match origin {
                Origin::Columns(a) => out.extend(a.iter()),
                Origin::Template(parts) => out.extend(parts.iter().filter_map(|p| match p {
                    TemplatePart::Placeholder(a) => Some(a),
                    TemplatePart::Literal(_) => None,
                })),
                _ => {}
            }
        }
        out
    }

    /// Applies trim, collapse, case and map, copying only when one of them changes the text.
    fn clean<'a>(&'a self, s: Cow<'a, str>) -> Cow<'a, str> {
        let s = if self.strip_html && s.contains(['<', '&']) { Cow::Owned(convert::html_to_text(&s)) } else { s };
        let mut v = if self.trim { trim_cow(s) } else { s };
        if self.collapse && convert::needs_collapse(&v) {
            v = Cow::Owned(convert::collapse_whitespace(&v));
        }
        v = convert::apply_case(v, self.case);
        if let Some(map) = &self.map {
            v = map.apply(v);
        }
        v
    }

    fn default_value<'a>(&'a self, record: &'a Record) -> Cow<'a, str> {
        match &self.default {
            Some(d) => trim_cow(d.raw(record).into_text()),
            None => Cow::Borrowed(""),
        }
    }

    /// The text of a field that reads one CSV column, straight from the record: the common case, which
    /// skips building a [`Raw`] and the `Cow` plumbing of the general path (same result).
    #[inline]
    fn single_column<'a>(&self, record: &'a Record) -> Option<&'a str> {
        match (&self.origin, &record.data) {
            (Origin::Columns(accs), RecordData::Csv { fields, .. }) => match accs.as_slice() {
                [Accessor::Column(i)] => Some(fields.get(*i).unwrap_or("")),
                _ => None,
            },
            _ => None,
        }
    }

    /// The field's text, borrowed from the record when no transform changes it (empty when there is none).
    /// With `split` (a field that takes one value), the first item.
    pub fn value<'a>(&'a self, record: &'a Record) -> Cow<'a, str> {
        if self.split.is_some() {
            return self.first_item(record);
        }
        let v = match self.single_column(record) {
            Some(s)
                if self.trim && !self.strip_html && !self.collapse && self.case == Case::Keep && self.map.is_none() =>
            {
                Cow::Borrowed(trim(s))
            }
            Some(s) => self.clean(Cow::Borrowed(s)),
            None => self.clean(self.origin.raw(record).into_text()),
        };
        if v.is_empty() { self.default_value(record) } else { v }
    }

    /// The value of a field that takes exactly one value, an id or an email: with `split`, the first item
    /// (`"9002;9003"`, HubSpot's several associated companies, gives `9002`); a JSON list of several distinct
    /// values is an error rather than their join, which would be one made-up id for them all.
    #[inline]
    pub fn single<'a>(&'a self, record: &'a Record) -> Result<Cow<'a, str>, FieldError> {
        // A CSV cell is never a list; `split` takes the first item (in `value`).
        if self.split.is_some() || matches!(record.data, RecordData::Csv { .. }) {
            return Ok(self.value(record));
        }
        if let Raw::List(items) = self.origin.raw(record) {
            let mut values: Vec<Cow<'_, str>> = Vec::new();
            for item in items.into_iter().map(|i| self.clean(i)).filter(|i| !i.is_empty()) {
                if !values.contains(&item) {
                    values.push(item);
                }
            }
            if values.len() > 1 {
                let values = values.iter().map(|v| v.to_string()).collect();
                return Err(FieldError { field: self.label.clone(), problem: FieldProblem::SeveralValues { values } });
            }
        }
        Ok(self.value(record))
    }

    /// With `split`, on a field that takes one value: the first item.
    #[cold]
    fn first_item<'a>(&'a self, record: &'a Record) -> Cow<'a, str> {
        Cow::Owned(self.list(record).into_iter().next().unwrap_or_default())
    }

    /// The field as one string (empty when there is nothing).
    pub fn text(&self, record: &Record) -> String {
        self.value(record).into_owned()
    }

    /// The field as a non-empty string, or `None`.
    pub fn opt_text(&self, record: &Record) -> Option<String> {
        let v = self.value(record);
        (!v.is_empty()).then(|| v.into_owned())
    }

    /// The field as a list (tags): JSON arrays as they are, text split on `split` when set; empty items are
    /// dropped and repeats removed.
    pub fn list(&self, record: &Record) -> Vec<String> {
        let mut out = self.items(self.origin.raw(record));
        if out.is_empty()
            && let Some(d) = &self.default
        {
            out = self.items(d.raw(record));
        }
        out
    }

    fn items(&self, raw: Raw<'_>) -> Vec<String> {
        let pieces: Vec<Cow<'_, str>> = match raw {
            Raw::Missing => Vec::new(),
            Raw::Text(t) => vec![t],
            Raw::List(items) => items,
        };
        let mut out: Vec<String> = Vec::new();
        for piece in &pieces {
            let parts: Box<dyn Iterator<Item = &str>> = match &self.split {
                Some(sep) => Box::new(piece.split(sep.as_str())),
                None => Box::new(std::iter::once(piece.as_ref())),
            };
            for part in parts {
                let v = self.clean(Cow::Borrowed(part));
                if !v.is_empty() && !out.iter().any(|o| o == v.as_ref()) {
                    out.push(v.into_owned());
                }
            }
        }
        out
    }

    /// The field as a typed attribute value, `Ok(None)` when empty.
    pub fn attribute(&self, record: &Record) -> Result<Option<Value>, FieldError> {
        if let Origin::ConstJson(v) = &self.origin
            && !v.is_string()
        {
            return Ok(Some(v.clone()));
        }
        if self.split.is_none() && self.single_column(record).is_some() {
            // A CSV column is never a list: the text path of below, without building a `Raw`.
            let text = self.value(record);
            if text.is_empty() {
                return Ok(None);
            }
            return self.typed(text).map(Some);
        }
        let raw = self.origin.raw(record);
        if self.split.is_some() || matches!(raw, Raw::List(_)) {
            let items = self.list(record);
            if items.is_empty() {
                return Ok(None);
            }
            let values = items.into_iter().map(|s| self.typed(Cow::Owned(s))).collect::<Result<Vec<_>, _>>()?;
            return Ok(Some(Value::Array(values)));
        }
        let text = {
            let v = self.clean(raw.into_text());
            if v.is_empty() { self.default_value(record) } else { v }
        };
        if text.is_empty() {
            return Ok(None);
        }
        if self.type_opts.decimal_comma && self.origin.is_json_number(record) {
            // `decimal = ","` is about text; a JSON number such as 1.234 is one and a quarter, never 1234.
            let point = TypeOptions { decimal_comma: false, ..self.type_opts.clone() };
            return self.typed_with(text, &point).map(Some);
        }
        self.typed(text).map(Some)
    }

    fn typed(&self, s: Cow<'_, str>) -> Result<Value, FieldError> {
        self.typed_with(s, &self.type_opts)
    }

    fn typed_with(&self, s: Cow<'_, str>, opts: &TypeOptions) -> Result<Value, FieldError> {
        match self.ty {
            None | Some(AttrType::String) => Ok(Value::String(s.into_owned())),
            Some(ty) => convert::convert(&s, ty, opts).map_err(|reason| FieldError {
                field: self.label.clone(),
                problem: FieldProblem::Conversion { value: s.to_string(), ty, reason },
            }),
        }
    }

    pub fn required_error(&self) -> FieldError {
        FieldError { field: self.label.clone(), problem: FieldProblem::Required { from: self.describe.clone() } }
    }
}

/// Trims a value, in place when it is already owned.
fn trim_cow(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(trim(b)),
        Cow::Owned(mut o) => {
            let t = trim(&o);
            if t.len() != o.len() {
                let start = t.as_ptr() as usize - o.as_ptr() as usize;
                let end = start + t.len();
                o.truncate(end);
                o.drain(..start);
            }
            Cow::Owned(o)
        }
    }
}
