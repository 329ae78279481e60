//! Compiling a mapping against the input's header: every column resolved to an index (or JSON path), every
//! option checked, and every problem collected, so the user fixes them all in one go before any row is read.

use std::collections::HashSet;

use super::check::Choices;
use super::convert::{OrderFrom, TypeOptions};
use super::error::{Problem, ProblemKind};
use super::field::{Field, Origin, ValueMap};
use super::mapper::{
    Attrs, CompanyMap, Cond, ContactMap, FeedbackMap, Mapper, SENT_COLUMN, Skip, Unmapped, normalise_key,
};
use super::spec::{self, Case, DateOrder, FieldSpec, FieldTable, MappingSpec, MissingColumns, SkipSpec};
use super::value::{Accessor, JsonPath, TemplatePart, looks_like_template, parse_template};
use crate::model::{FEEDBACK_STATES, FEEDBACK_TYPES, intern};
use crate::source::Header;

/// What the input offers to map from.
pub(crate) enum Schema<'a> {
    Csv(&'a Header),
    /// JSONL has no header: the paths seen in the first objects stand in for one.
    Json {
        seen: super::value::SeenPaths,
        sampled: usize,
        paths: PathCheck,
    },
}

/// How a JSONL path no sampled object has is treated (`[input] strict_paths`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathCheck {
    /// `strict_paths = true`: an error for every path a field reads (a fallback aside).
    Strict,
    /// Not set: an error for the fields Savio requires and for the emails people are matched by, and for
    /// any path two edits from one in the sample (a typo, not a key the first objects happen to lack);
    /// otherwise a warning.
    Default,
    /// `strict_paths = false`: a warning.
    Lenient,
}

impl PathCheck {
    pub(crate) fn from_setting(strict_paths: Option<bool>) -> PathCheck {
        match strict_paths {
            Some(true) => PathCheck::Strict,
            None => PathCheck::Default,
            Some(false) => PathCheck::Lenient,
        }
    }
}

/// The result of compiling: the mapper, plus warnings worth showing (not errors).
pub struct Compiled {
    pub mapper: Mapper,
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Text,
    Email,
    List,
    Attr,
}

struct Ctx<'a> {
    schema: &'a Schema<'a>,
    problems: Vec<Problem>,
    warnings: Vec<String>,
    /// `[input] date_order`, when given.
    date_order: Option<DateOrder>,
    /// `[input] missing_columns`.
    missing_columns: MissingColumns,
    /// Whether the field being compiled is one Savio requires (its columns must exist).
    in_required: bool,
    /// Whether the field being compiled is an email people are matched by (`contact.email`,
    /// `feedback.person_email`): its column must exist even with `missing_columns = "empty"`, since read as
    /// empty it would send every contact or feedback without its person, which no later run can undo for
    /// feedback.
    in_identity: bool,
    /// JSONL paths whose value a field sends (not those a filter only tests), with the field: checked on
    /// every line for objects, which the sample may not have shown.
    value_paths: Vec<(String, JsonPath)>,
    /// Whether the column being resolved must exist whatever `missing_columns` says: a row filter's (a
    /// filter silently off would let through what it was written to stop).
    must_exist: bool,
    /// Whether a JSONL path no sampled object has is an error here (the source of a field Savio requires,
    /// of an entity every row must have, or an identity email) rather than a warning.
    strict_here: bool,
    /// Whether the path being resolved is a fallback (a `default`, or one of several `column`s of which
    /// another is in the sample): its absence from the sample is expected, never an error.
    fallback: bool,
    /// Whether the column being resolved is one of several `column = [...]` of which another exists: a CSV
    /// export may lack it without a word (that is what the list is for).
    alternative: bool,
    /// Whether the path being resolved only names a value (a row filter on emptiness, an exclusion), so an
    /// object or a list of objects is fine there.
    naming_only: bool,
}

/// The problems that make the mapping unusable, with the warnings found along the way.
pub(crate) type Refused = (Vec<Problem>, Vec<String>);

pub(crate) fn compile(spec: &MappingSpec, schema: &Schema<'_>) -> Result<Compiled, Refused> {
    let mut cx = Ctx {
        schema,
        problems: Vec::new(),
        warnings: Vec::new(),
        date_order: spec.input.date_order,
        missing_columns: spec.input.missing_columns.unwrap_or_default(),
        in_required: false,
        in_identity: false,
        must_exist: false,
        value_paths: Vec::new(),
        strict_here: false,
        fallback: false,
        alternative: false,
        naming_only: false,
    };
    if spec.company.is_none() && spec.contact.is_none() && spec.feedback.is_none() {
        return Err((vec![Problem { field: "mapping".into(), kind: ProblemKind::NoEntity }], Vec::new()));
    }
    let primary_is = |e: &str| match e {
        "feedback" => true,
        "contact" => spec.feedback.is_none(),
        _ => spec.feedback.is_none() && spec.contact.is_none(),
    };
    let feedback_types =
        Choices::new(FEEDBACK_TYPES.iter().map(|s| s.to_string()).chain(spec.checks.feedback_types.clone()));
    let states = Choices::new(FEEDBACK_STATES.iter().map(|s| s.to_string()).chain(spec.checks.states.clone()));

    let row_skips = cx.skips("skip", &spec.skip);
    let company = spec.company.as_ref().map(|c| {
        let optional = c.optional.unwrap_or(!primary_is("company"));
        CompanyMap {
            name: cx.required("company.name", c.name.as_ref(), Target::Text, "name = \"Company Name\"", !optional),
            internal_id: cx.required(
                "company.internal_id",
                c.internal_id.as_ref(),
                Target::Text,
                "internal_id = \"Company ID\"",
                !optional,
            ),
            attrs: Attrs::new(cx.attributes("company", &c.filterable_attributes)),
            skips: cx.skips("company.skip", &c.skip),
            optional,
        }
    });
    let contact_optional = spec.contact.as_ref().map(|c| c.optional.unwrap_or(!primary_is("contact")));
    let contact = spec.contact.as_ref().map(|c| ContactMap {
        name: cx.required(
            "contact.name",
            c.name.as_ref(),
            Target::Text,
            "name = \"{First Name} {Last Name}\"",
            contact_optional == Some(false),
        ),
        internal_id: cx.required(
            "contact.internal_id",
            c.internal_id.as_ref(),
            Target::Text,
            "internal_id = \"Record ID\"",
            contact_optional == Some(false),
        ),
        email: cx.identity("contact.email", c.email.as_ref()),
        company: cx.optional("contact.company", c.company.as_ref(), Target::Text),
        company_internal_id: cx.optional("contact.company_internal_id", c.company_internal_id.as_ref(), Target::Text),
        attrs: Attrs::new(cx.attributes("contact", &c.filterable_attributes)),
        skips: cx.skips("contact.skip", &c.skip),
        optional: contact_optional == Some(true),
    });
    let feedback_optional = spec.feedback.as_ref().map(|f| f.optional.unwrap_or(!primary_is("feedback")));
    let feedback = spec.feedback.as_ref().map(|f| FeedbackMap {
        problem: cx.required(
            "feedback.problem",
            f.problem.as_ref(),
            Target::Text,
            "problem = \"Body\"",
            feedback_optional == Some(false),
        ),
        feedback_type: cx.choice("feedback.feedback_type", f.feedback_type.as_ref(), &feedback_types),
        state: cx.choice("feedback.state", f.state.as_ref(), &states),
        source_url: cx.optional("feedback.source_url", f.source_url.as_ref(), Target::Text),
        source_username: cx.optional("feedback.source_username", f.source_username.as_ref(), Target::Text),
        person_email: cx.identity("feedback.person_email", f.person_email.as_ref()),
        person_name: cx.optional("feedback.person_name", f.person_name.as_ref(), Target::Text),
        company_name: cx.optional("feedback.company_name", f.company_name.as_ref(), Target::Text),
        feature_request_title: cx.optional(
            "feedback.feature_request_title",
            f.feature_request_title.as_ref(),
            Target::Text,
        ),
        tags: cx.optional("feedback.tags", f.tags.as_ref(), Target::List),
        skips: cx.skips("feedback.skip", &f.skip),
        optional: feedback_optional == Some(true),
    });

    let mut mapper = Mapper {
        row_skips,
        company,
        contact,
        feedback,
        feedback_types,
        states,
        seen_companies: Default::default(),
        seen_contacts: Default::default(),
        seen_feedback: Default::default(),
        stats: Default::default(),
        value_paths: std::mem::take(&mut cx.value_paths),
        sent: match schema {
            Schema::Csv(header) => header.index_of(SENT_COLUMN).map(Accessor::Column),
            Schema::Json { .. } => Some(Accessor::Path(JsonPath::new(SENT_COLUMN))),
        },
        retry_unknown: false,
    };
    // Unmapped columns are resolved last: they are whatever no field above refers to.
    let used = used_accessors(&mapper);
    if let (Some(spec_c), Some(m)) = (&spec.company, &mut mapper.company) {
        m.attrs.unmapped = cx.unmapped("company", spec_c.unmapped, &spec_c.unmapped_exclude, &m.attrs, &used);
    }
    if let (Some(spec_c), Some(m)) = (&spec.contact, &mut mapper.contact) {
        m.attrs.unmapped = cx.unmapped("contact", spec_c.unmapped, &spec_c.unmapped_exclude, &m.attrs, &used);
    }
    if cx.problems.is_empty() {
        Ok(Compiled { mapper, warnings: cx.warnings })
    } else {
        Err((cx.problems, cx.warnings))
    }
}

fn used_accessors(m: &Mapper) -> Vec<Accessor> {
    let mut fields: Vec<&Field> = Vec::new();
    let mut skips: Vec<&Skip> = m.row_skips.iter().collect();
    if let Some(c) = &m.company {
        fields.extend([&c.name, &c.internal_id]);
        fields.extend(c.attrs.fields.iter().map(|(_, f)| f));
        skips.extend(&c.skips);
    }
    if let Some(c) = &m.contact {
        fields.extend([&c.name, &c.internal_id]);
        fields.extend([&c.email, &c.company, &c.company_internal_id].into_iter().flatten());
        fields.extend(c.attrs.fields.iter().map(|(_, f)| f));
        skips.extend(&c.skips);
    }
    if let Some(f) = &m.feedback {
        fields.push(&f.problem);
        fields.extend(
            [
                &f.feedback_type,
                &f.state,
                &f.source_url,
                &f.source_username,
                &f.person_email,
                &f.person_name,
                &f.company_name,
                &f.feature_request_title,
                &f.tags,
            ]
            .into_iter()
            .flatten(),
        );
        skips.extend(&f.skips);
    }
    let mut out: Vec<Accessor> = fields.iter().flat_map(|f| f.accessors()).cloned().collect();
    for s in skips {
        out.push(match &s.cond {
            Cond::Empty(a) => a.clone(),
            Cond::Equals { acc, .. } | Cond::Contains { acc, .. } => acc.clone(),
        });
    }
    out
}

/// The closest candidate to a misspelt name, if one is close enough to be a useful hint.
pub(crate) fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let wanted = name.trim().to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let lc = c.to_lowercase();
        // Containment is a strong hint ("Email" in "Email Address") only between names of similar length: a
        // whole header line read with the wrong delimiter contains every column name.
        let (short, long) = if lc.len() <= wanted.len() { (lc.len(), wanted.len()) } else { (wanted.len(), lc.len()) };
        let edits = strsim::normalized_damerau_levenshtein(&wanted, &lc);
        let score = if lc == wanted {
            2.0
        } else if short >= 3 && long <= 2 * short && (lc.contains(&wanted) || wanted.contains(&lc)) {
            // Of two containing names, the one nearer in length ("Associated Company IDs" for "... ID", not
            // "Associated Company"); a near-exact spelling still wins ("author.email" for "author.mail").
            edits.max(0.8 + 0.09 * short as f64 / long as f64)
        } else if short >= 3 && contains_words(&lc, &wanted) {
            // The whole name as words of a slightly longer one ("Email" in "Email Address", "Person - Email
            // - Work"): a likely rename, weaker than a near-exact spelling.
            edits.max(0.7)
        } else {
            edits
        };
        if score >= 0.6 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

impl Ctx<'_> {
    fn problem(&mut self, field: &str, kind: ProblemKind) {
        self.problems.push(Problem { field: field.to_string(), kind });
    }

    fn invalid(&mut self, field: &str, msg: impl Into<String>) {
        self.problem(field, ProblemKind::Invalid(msg.into()));
    }

    /// What the input's names are called in messages.
    fn noun(&self) -> &'static str {
        match self.schema {
            Schema::Csv(_) => "column",
            Schema::Json { .. } => "path",
        }
    }

    /// Whether the input has this column (CSV) or the sample this path (JSONL; true without a sample).
    fn has_column(&self, name: &str) -> bool {
        match self.schema {
            Schema::Csv(header) => header.index_of(name.trim()).is_some(),
            Schema::Json { .. } => self.path_seen(name),
        }
    }

    /// Whether a JSONL path appears in the sampled objects (always true for CSV and without a sample).
    fn path_seen(&self, name: &str) -> bool {
        match self.schema {
            Schema::Json { seen, sampled, .. } => *sampled == 0 || super::value::path_known(&seen.paths, name.trim()),
            Schema::Csv(_) => true,
        }
    }

    /// Resolves a column name (CSV) or dotted path (JSONL).
    fn column(&mut self, field: &str, name: &str) -> Option<Accessor> {
        match self.schema {
            Schema::Csv(header) => match header.index_of(name.trim()) {
                Some(i) => Some(Accessor::Column(i)),
                None if self.alternative => Some(Accessor::Absent),
                None => {
                    let suggestion = closest(name, header.names.iter().map(String::as_str));
                    let lenient = !(self.in_required || self.in_identity || self.naming_only || self.must_exist);
                    if self.missing_columns == MissingColumns::Empty && lenient {
                        let hint = suggestion.map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default();
                        self.warnings.push(format!(
                            "{field}: no column '{}' in the input{hint}; read as empty (missing_columns = \"empty\")",
                            name.trim()
                        ));
                        return Some(Accessor::Absent);
                    }
                    let kind = if self.in_identity && self.missing_columns == MissingColumns::Empty {
                        ProblemKind::MissingIdentityColumn { column: name.to_string(), suggestion }
                    } else {
                        ProblemKind::UnknownColumn { column: name.to_string(), suggestion }
                    };
                    self.problem(field, kind);
                    None
                }
            },
            Schema::Json { seen, sampled, paths } => {
                let path = name.trim();
                if *sampled > 0
                    && !self.naming_only
                    && let Some(shape) = seen.only_objects(path)
                {
                    let keys = seen.keys_under(&super::value::without_indices(path));
                    let key = keys.iter().find(|k| matches!(**k, "name" | "email")).or(keys.first()).unwrap_or(&"name");
                    let kind = ProblemKind::NotAValue {
                        column: path.to_string(),
                        shape,
                        keys: keys.join(", "),
                        example: format!("{path}.{key}"),
                    };
                    self.problem(field, kind);
                    return None;
                }
                if *sampled > 0 && !super::value::path_known(&seen.paths, path) {
                    let suggestion = closest(path, seen.paths.iter().map(String::as_str));
                    let refused = !self.fallback
                        && match paths {
                            PathCheck::Strict => true,
                            PathCheck::Default => self.strict_here || misspelt(path, &seen.paths),
                            PathCheck::Lenient => false,
                        };
                    if refused {
                        let kind = ProblemKind::UnknownPath { column: path.to_string(), sampled: *sampled, suggestion };
                        self.problem(field, kind);
                        return None;
                    }
                    let hint = suggestion.map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default();
                    self.warnings.push(format!(
                        "{field}: no object among the first {sampled} has the path '{path}'{hint}; it is empty \
                         wherever the path is missing"
                    ));
                }
                if !self.naming_only {
                    self.value_paths.push((field.to_string(), JsonPath::new(path)));
                }
                Some(Accessor::Path(JsonPath::new(path)))
            }
        }
    }

    fn template(&mut self, field: &str, template: &str) -> Option<Vec<TemplatePart<Accessor>>> {
        let parts = match parse_template(template) {
            Ok(p) => p,
            Err(reason) => {
                self.problem(field, ProblemKind::Template { template: template.to_string(), reason });
                return None;
            }
        };
        let mut out = Vec::with_capacity(parts.len());
        let mut ok = true;
        for p in parts {
            match p {
                TemplatePart::Literal(l) => out.push(TemplatePart::Literal(l)),
                TemplatePart::Placeholder(name) => match self.column(field, &name) {
                    Some(acc) => out.push(TemplatePart::Placeholder(acc)),
                    None => ok = false,
                },
            }
        }
        ok.then_some(out)
    }

    /// A short-form string or a `default`: a template when it has `{...}`, else `as_column` decides.
    fn text_origin(&mut self, field: &str, s: &str, as_column: bool) -> Option<(Origin, String)> {
        if looks_like_template(s) {
            let t = self.template(field, s)?;
            Some((Origin::Template(t), format!("template \"{s}\"")))
        } else if as_column {
            let acc = self.column(field, s)?;
            Some((Origin::Columns(vec![acc]), format!("{} '{s}'", self.noun())))
        } else {
            Some((Origin::Const(s.to_string()), "a constant".into()))
        }
    }

    /// A field Savio requires; `entity_required` when every row must have the entity (its paths must then be
    /// in the JSONL sample).
    fn required(
        &mut self,
        field: &str,
        spec: Option<&FieldSpec>,
        target: Target,
        example: &str,
        entity_required: bool,
    ) -> Field {
        match spec {
            Some(s) => {
                self.strict_here = entity_required;
                // Even for an entity rows may lack: read as empty, a missing key column would drop every
                // such entity (and a contact's company link) without a word.
                self.in_required = true;
                let f = self.field(field, s, target);
                self.strict_here = false;
                self.in_required = false;
                f
            }
            None => {
                self.problem(field, ProblemKind::MissingRequired { example: example.to_string() });
                None
            }
        }
        // A placeholder keeps the structure whole while problems are collected; it is never used, since
        // compile() returns the problems instead of the mapper.
        .unwrap_or_else(|| Field::new(field.to_string(), Origin::Const(String::new()), String::new()))
    }

    fn optional(&mut self, field: &str, spec: Option<&FieldSpec>, target: Target) -> Option<Field> {
        self.field(field, spec?, target)
    }

    /// An email people are matched by (see [`Ctx::in_identity`]): optional, but its column must exist.
    fn identity(&mut self, field: &str, spec: Option<&FieldSpec>) -> Option<Field> {
        let spec = spec?;
        (self.in_identity, self.strict_here) = (true, true);
        let f = self.field(field, spec, Target::Email);
        (self.in_identity, self.strict_here) = (false, false);
        f
    }

    fn choice(&mut self, field: &str, spec: Option<&FieldSpec>, choices: &Choices) -> Option<Field> {
        // `state = "PENDING"` reads a column named PENDING; the user meant the value.
        if let Some(FieldSpec::Short(s)) = spec
            && !looks_like_template(s)
            && !self.has_column(s)
            && let Some(value) = choices.resolve(s)
        {
            self.invalid(
                field,
                format!(
                    "'{s}' is one of the accepted values, not a {} of the input: for a constant write {} = {{ value = \"{value}\" }}",
                    self.noun(),
                    field.rsplit('.').next().unwrap_or(field)
                ),
            );
            return None;
        }
        let f = self.field(field, spec?, Target::Text)?;
        let mut fixed: Vec<String> = f.map.iter().flat_map(|m| m.outputs().cloned()).collect();
        if let Origin::Const(c) = &f.origin {
            fixed.push(c.clone());
        }
        for v in fixed {
            if choices.resolve(&v).is_none() {
                self.problem(field, ProblemKind::InvalidChoice { value: v, allowed: choices.list() });
            }
        }
        Some(f)
    }

    fn attributes(
        &mut self,
        entity: &str,
        attrs: &std::collections::BTreeMap<String, FieldSpec>,
    ) -> Vec<(String, Field)> {
        let mut out = Vec::new();
        for (key, spec) in attrs {
            let label = format!("{entity}.filterable_attributes.{key}");
            if key.trim().is_empty() {
                self.invalid(&label, "an attribute needs a non-empty name");
                continue;
            }
            if let Some(f) = self.field(&label, spec, Target::Attr) {
                out.push((key.clone(), f));
            }
        }
        out
    }

    fn field(&mut self, label: &str, spec: &FieldSpec, target: Target) -> Option<Field> {
        let mut f = match spec {
            FieldSpec::Short(s) => {
                let (origin, describe) = self.text_origin(label, s, true)?;
                let collapse = matches!(origin, Origin::Template(_));
                let mut f = Field::new(label.to_string(), origin, describe);
                f.collapse = collapse;
                f
            }
            FieldSpec::Full(t) => self.full_field(label, t, target)?,
        };
        if target == Target::Email && !matches!(spec, FieldSpec::Full(t) if t.case.is_some()) {
            f.case = Case::Lower;
        }
        Some(f)
    }

    fn full_field(&mut self, label: &str, t: &FieldTable, target: Target) -> Option<Field> {
        let sources = [t.column.is_some(), t.template.is_some(), t.value.is_some()].iter().filter(|b| **b).count();
        if sources != 1 {
            self.invalid(label, "give exactly one source: column = \"...\", template = \"...\" or value = ...");
            return None;
        }
        let (origin, describe) = if let Some(cols) = &t.column {
            // Of several paths, one in the sample is enough: the others are fallbacks.
            let (fallback, alternative) = (self.fallback, self.alternative);
            if cols.0.len() > 1 && cols.0.iter().any(|c| self.has_column(c)) {
                (self.fallback, self.alternative) = (true, true);
            }
            let accs: Vec<Accessor> = cols.0.iter().filter_map(|c| self.column(label, c)).collect();
            (self.fallback, self.alternative) = (fallback, alternative);
            if accs.len() != cols.0.len() {
                return None;
            }
            let names = cols.0.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ");
            let noun = self.noun();
            (
                Origin::Columns(accs),
                if cols.0.len() == 1 { format!("{noun} {names}") } else { format!("{noun}s {names}") },
            )
        } else if let Some(tpl) = &t.template {
            (Origin::Template(self.template(label, tpl)?), format!("template \"{tpl}\""))
        } else {
            let v = t.value.as_ref()?;
            (self.constant(label, v, target)?, "a constant".to_string())
        };
        let is_template = matches!(origin, Origin::Template(_));
        let mut f = Field::new(label.to_string(), origin, describe);
        f.trim = t.trim.unwrap_or(true);
        f.collapse = t.collapse_whitespace.unwrap_or(is_template);
        f.strip_html = t.strip_html.unwrap_or(false);
        f.case = t.case.unwrap_or(Case::Keep);
        if t.map_default.is_some() && t.map.is_none() {
            self.invalid(label, "map_default needs a map = { ... } table");
        }
        if let Some(map) = &t.map {
            f.map = Some(ValueMap::new(map.clone(), t.map_default.clone()));
        }
        if let Some(d) = &t.default {
            // A fallback: its paths may well be missing from the sample.
            let fallback = std::mem::replace(&mut self.fallback, true);
            f.default = self.text_origin(label, d, false).map(|(o, _)| o);
            self.fallback = fallback;
        }
        if let Some(sep) = &t.split {
            if sep.is_empty() {
                self.invalid(label, "split needs a separator, e.g. split = \";\"");
            } else if !matches!(target, Target::List | Target::Attr) && !single_valued(label) {
                self.invalid(
                    label,
                    "split applies only to feedback.tags, filterable_attributes, and the fields that take one value \
                     (ids, names, emails: the first item)",
                );
            }
            f.split = Some(sep.clone());
        }
        if let Some(ty) = t.ty {
            if target != Target::Attr {
                self.invalid(label, "type applies only to filterable_attributes (Savio's other fields are strings)");
            }
            f.ty = Some(ty);
        }
        let is_date = t.ty == Some(spec::AttrType::Date);
        if (t.date_order.is_some() || t.format.is_some()) && !is_date {
            self.invalid(label, "date_order and format apply only with type = \"date\"");
        }
        if let Some(fmt) = &t.format
            && fmt.trim().is_empty()
        {
            self.invalid(label, "format is empty; give a strftime format such as \"%d/%m/%Y %H:%M\"");
        }
        let date_order = t.date_order.or(self.date_order);
        f.type_opts = TypeOptions {
            date_order: date_order.unwrap_or_default(),
            order_from: if date_order.is_some() { OrderFrom::Given } else { OrderFrom::Assumed },
            date_format: t.format.clone(),
            decimal_comma: match t.decimal.as_deref() {
                None | Some(".") => false,
                Some(",") => true,
                Some(other) => {
                    self.invalid(label, format!("decimal must be \".\" or \",\", not \"{other}\""));
                    false
                }
            },
        };
        if t.decimal.is_some() && !matches!(t.ty, Some(spec::AttrType::Float | spec::AttrType::Integer)) {
            self.invalid(label, "decimal applies only with type = \"float\" or type = \"integer\"");
        }
        Some(f)
    }

    fn constant(&mut self, label: &str, v: &toml::Value, target: Target) -> Option<Origin> {
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        };
        match (v, target) {
            (toml::Value::Integer(i), Target::Attr) => Some(Origin::ConstJson((*i).into())),
            (toml::Value::Float(f), Target::Attr) => {
                serde_json::Number::from_f64(*f).map(|n| Origin::ConstJson(n.into()))
            }
            (toml::Value::Boolean(b), Target::Attr) => Some(Origin::ConstJson((*b).into())),
            (toml::Value::Array(items), Target::List | Target::Attr) => {
                let strings: Option<Vec<String>> = items.iter().map(scalar).collect();
                match strings {
                    Some(s) => Some(Origin::ConstList(s)),
                    None => {
                        self.invalid(label, "value = [...] must list strings or numbers");
                        None
                    }
                }
            }
            (other, _) => match scalar(other) {
                Some(s) => Some(Origin::Const(s)),
                None => {
                    self.invalid(label, "value must be a string, number or boolean");
                    None
                }
            },
        }
    }

    fn skips(&mut self, label: &str, specs: &[SkipSpec]) -> Vec<Skip> {
        specs.iter().filter_map(|s| self.skip(label, s)).collect()
    }

    fn skip(&mut self, label: &str, s: &SkipSpec) -> Option<Skip> {
        self.must_exist = true;
        let skip = self.skip_of(label, s);
        self.must_exist = false;
        skip
    }

    fn skip_of(&mut self, label: &str, s: &SkipSpec) -> Option<Skip> {
        let as_values = |v: &spec::OneOrMany| -> Vec<String> { v.0.iter().map(|x| x.trim().to_string()).collect() };
        match (&s.if_empty, &s.column, &s.equals, &s.not_equals, &s.contains) {
            (None, Some(col), None, None, Some(parts)) => {
                let mut values = as_values(parts);
                values.retain(|v| !v.is_empty());
                if values.is_empty() {
                    self.invalid(label, "contains needs a non-empty string");
                    return None;
                }
                let acc = self.column(label, col)?;
                let shown = values.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(" or ");
                if !s.case_sensitive {
                    values.iter_mut().for_each(|v| *v = v.to_lowercase());
                }
                let describe = format!("'{col}' contains {shown}");
                Some(Skip { cond: Cond::Contains { acc, values, case_sensitive: s.case_sensitive }, describe })
            }
            (Some(col), None, None, None, None) => {
                self.naming_only = true;
                let acc = self.column(label, col);
                self.naming_only = false;
                let acc = acc?;
                Some(Skip { cond: Cond::Empty(acc), describe: format!("'{col}' is empty") })
            }
            (None, Some(col), Some(eq), None, None) | (None, Some(col), None, Some(eq), None) => {
                let negate = s.not_equals.is_some();
                let mut values = as_values(eq);
                let acc = self.column(label, col)?;
                let shown = values.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(" or ");
                let describe = if negate { format!("'{col}' is not {shown}") } else { format!("'{col}' is {shown}") };
                if !s.case_sensitive {
                    values.iter_mut().for_each(|v| *v = v.to_lowercase());
                }
                Some(Skip { cond: Cond::Equals { acc, values, case_sensitive: s.case_sensitive, negate }, describe })
            }
            _ => {
                self.invalid(
                    label,
                    "a filter is either { if_empty = \"Column\" } or { column = \"Column\", equals = \"value\" } \
                     (or not_equals = ..., or contains = ...), one condition per [[skip]]",
                );
                None
            }
        }
    }

    fn unmapped(
        &mut self,
        entity: &str,
        mode: Option<spec::Unmapped>,
        exclude: &[String],
        attrs: &Attrs,
        used: &[Accessor],
    ) -> Option<Unmapped> {
        let label = format!("{entity}.unmapped");
        if mode != Some(spec::Unmapped::Attributes) {
            if !exclude.is_empty() {
                self.invalid(&label, "unmapped_exclude needs unmapped = \"attributes\"");
            }
            return None;
        }
        let taken: HashSet<String> = attrs.fields.iter().map(|(k, _)| k.to_string()).collect();
        self.naming_only = true;
        let excluded: Vec<Accessor> =
            exclude.iter().filter_map(|c| self.column(&format!("{entity}.unmapped_exclude"), c)).collect();
        self.naming_only = false;
        match self.schema {
            Schema::Csv(header) => {
                let mut keys = taken.clone();
                let mut cols = Vec::new();
                for (i, name) in header.names.iter().enumerate() {
                    let acc = Accessor::Column(i);
                    if name.starts_with("_savio_") || used.contains(&acc) || excluded.contains(&acc) {
                        continue;
                    }
                    let base = match normalise_key(name) {
                        k if k.is_empty() => format!("column_{}", i + 1),
                        k => k,
                    };
                    let mut key = base.clone();
                    let mut n = 2;
                    while keys.contains(&key) {
                        key = format!("{base}_{n}");
                        n += 1;
                    }
                    cols.push((i, intern(&key)));
                    keys.insert(key);
                }
                Some(Unmapped::Csv(cols))
            }
            Schema::Json { .. } => {
                let skip_paths = used
                    .iter()
                    .chain(excluded.iter())
                    .filter_map(|a| match a {
                        Accessor::Path(p) => Some(p.full.clone()),
                        Accessor::Column(_) | Accessor::Absent => None,
                    })
                    .collect();
                Some(Unmapped::Json { skip_paths, taken_keys: taken })
            }
        }
    }
}

/// The fields that take one value, where `split` keeps the first item (see `Field::single`).
fn single_valued(label: &str) -> bool {
    matches!(
        label,
        "company.internal_id"
            | "company.name"
            | "contact.internal_id"
            | "contact.email"
            | "contact.company_internal_id"
            | "feedback.person_email"
    )
}

/// Whether a JSONL path reads as a misspelling of one the sample has (`requester.emial`, `author.mail`): at
/// most two edits from it. A path merely absent from the first objects (`author.name` where only
/// `author.email` was seen) is further off.
fn misspelt(path: &str, seen: &std::collections::BTreeSet<String>) -> bool {
    let path = path.to_lowercase();
    path.chars().count() >= 6 && seen.iter().any(|p| strsim::damerau_levenshtein(&path, &p.to_lowercase()) <= 2)
}

/// Whether the words of one of `a` and `b` (letters and digits) run, in order, inside the other's, which has
/// at most two words more.
fn contains_words(a: &str, b: &str) -> bool {
    let words =
        |s: &str| s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_string).collect();
    let (wa, wb): (Vec<String>, Vec<String>) = (words(a), words(b));
    let (short, long) = if wa.len() <= wb.len() { (wa, wb) } else { (wb, wa) };
    !short.is_empty() && long.len() <= short.len() + 2 && long.windows(short.len()).any(|w| w == short.as_slice())
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggestions() {
        let headers = ["Email", "First Name", "Last Name", "Record ID"];
        assert_eq!(closest("email", headers), Some("Email".into()));
        assert_eq!(closest("E-mail", headers), Some("Email".into()));
        assert_eq!(closest("Firstname", headers), Some("First Name".into()));
        assert_eq!(closest("RecordID", headers), Some("Record ID".into()));
        assert_eq!(closest("Zip", headers), None);
        assert_eq!(closest("Email", ["Work Email"]), Some("Work Email".into()), "contained, similar length");
        let hubspot = ["Associated Company", "Associated Company IDs (Primary)", "Associated Company IDs"];
        assert_eq!(closest("Associated Company ID", hubspot), Some("Associated Company IDs".into()), "nearest length");
        let line = "Record ID,First Name,Last Name,Email,Phone Number";
        assert_eq!(closest("Email", [line]), None, "contained in a much longer name is no hint");
        assert_eq!(closest("Record ID", [line]), None);
        assert_eq!(
            closest("Email", ["Email Address", "Phone"]),
            Some("Email Address".into()),
            "a longer name, as words"
        );
        assert_eq!(closest("Email", ["Person - Email - Work"]), Some("Person - Email - Work".into()));
        assert_eq!(closest("Email", ["Emails"]), Some("Emails".into()));
        assert_eq!(closest("Email", ["Secondary Email Address Opt Out"]), None, "too many words more");
    }
}
