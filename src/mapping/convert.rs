//! Pure conversions used by the transforms: text case and whitespace, and typed attribute values
//! (integer, float, bool, date) from the many ways CRMs write them.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde_json::Value;

use super::spec::{AttrType, Case, DateOrder};

/// Collapses every run of whitespace (including newlines) to one space.
pub(crate) fn collapse_whitespace(s: &str) -> String {
    if !needs_collapse(s) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Whether collapsing would change anything: whitespace at either end, or any whitespace other than a single
/// space between words. Exact for non-ASCII text too, so a name such as "Zoë Müller" is not copied.
pub(crate) fn needs_collapse(s: &str) -> bool {
    let b = s.as_bytes();
    if b.first().is_some_and(u8::is_ascii_whitespace) || b.last().is_some_and(u8::is_ascii_whitespace) {
        return true;
    }
    if s.is_ascii() {
        return b.windows(2).any(|w| w[0] == b' ' && w[1] == b' ')
            || b.iter().any(|c| c.is_ascii_whitespace() && *c != b' ');
    }
    // `split_whitespace` splits on Unicode whitespace: a run of it is kept only as one ' ' between words.
    // Whitespace beyond ASCII starts with one of these bytes (U+0085 and U+00A0; U+1680; U+2000 to U+205F;
    // U+3000). Without any, every other non-ASCII byte belongs to a character that is not whitespace, and
    // the same scan runs on bytes, without decoding (accented names).
    if !b.iter().any(|c| matches!(c, 0xC2 | 0xE1 | 0xE2 | 0xE3)) {
        let mut prev_space = true;
        for &c in b {
            if matches!(c, b'\t'..=b'\r' | b' ') {
                if c != b' ' || prev_space {
                    return true;
                }
                prev_space = true;
            } else {
                prev_space = false;
            }
        }
        return prev_space;
    }
    let mut prev_space = true;
    for c in s.chars() {
        if c.is_whitespace() {
            if c != ' ' || prev_space {
                return true;
            }
            prev_space = true;
        } else {
            prev_space = false;
        }
    }
    prev_space && !s.is_empty()
}

/// Applies a case transform, copying only when it changes the text.
pub(crate) fn apply_case(s: Cow<'_, str>, case: Case) -> Cow<'_, str> {
    match case {
        Case::Keep => s,
        Case::Lower => {
            // One scan finds both whether there is anything to change and whether ASCII rules suffice.
            let Some(first) = s.bytes().position(|b| b.is_ascii_uppercase() || !b.is_ascii()) else {
                return s;
            };
            if !s.as_bytes()[first..].is_ascii() {
                return Cow::Owned(s.to_lowercase());
            }
            let mut o = s.into_owned();
            o[first..].make_ascii_lowercase();
            Cow::Owned(o)
        }
        Case::Upper if s.is_ascii() => {
            if !s.bytes().any(|b| b.is_ascii_lowercase()) {
                return s;
            }
            let mut o = s.into_owned();
            o.make_ascii_uppercase();
            Cow::Owned(o)
        }
        Case::Upper => Cow::Owned(s.to_uppercase()),
        Case::Title => Cow::Owned(title_case(&s)),
    }
}

/// "JOHN o'BRIEN-SMITH" → "John O'brien-Smith": first letter of each word (after space or hyphen) upper.
fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = c.is_whitespace() || c == '-';
    }
    out
}

/// The text of an HTML fragment, as a message body reads: tags dropped (`script` and `style` with their
/// content), `<br>` and the ends of blocks (`p`, `div`, `li`, headings, rows) as line breaks, character
/// references decoded (see [`push_text`]), at most one empty line in a row. A `<` that does not open a tag
/// (`a < b`) stays.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut skip_until: Option<&str> = None;
    while let Some(i) = rest.find('<') {
        if skip_until.is_none() {
            push_text(&mut out, &rest[..i]);
        }
        let at = &rest[i..];
        let opens_tag = at[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!');
        // An address or a link written in angle brackets in plain text (`Ada <ada@x.com>`, `<https://x.io>`)
        // is no tag: a body that mixes text and HTML keeps it.
        let address = |inner: &str| {
            !inner.contains([' ', '\t', '\n', '"', '\'']) && (inner.contains('@') || inner.contains("://"))
        };
        let Some(end) = at.find('>').filter(|&end| opens_tag && !address(&at[1..end])) else {
            if skip_until.is_none() {
                out.push('<');
            }
            rest = &at[1..];
            continue;
        };
        let tag = at[1..end].trim_start_matches('/').split([' ', '/', '\t', '\n']).next().unwrap_or("");
        let tag = tag.to_ascii_lowercase();
        let closing = at[1..].starts_with('/');
        match skip_until {
            Some(until) if closing && tag == until => skip_until = None,
            Some(_) => {}
            None if !closing && (tag == "script" || tag == "style") => {
                skip_until = Some(if tag == "script" { "script" } else { "style" })
            }
            None => {
                let breaks = tag == "br"
                    || (closing
                        && matches!(
                            tag.as_str(),
                            "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "blockquote" | "pre"
                        ));
                if breaks {
                    out.push('\n');
                }
            }
        }
        rest = &at[end + 1..];
    }
    if skip_until.is_none() {
        push_text(&mut out, rest);
    }
    // Lines trimmed at their end, and no more than one empty line in a row.
    let mut text = String::with_capacity(out.len());
    let mut empty_run = 0;
    for line in out.lines() {
        let line = line.trim_end();
        empty_run = if line.trim().is_empty() { empty_run + 1 } else { 0 };
        if empty_run <= 1 {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.trim().to_string()
}

/// Appends the text between two tags with its character references decoded as a browser decodes them in
/// text: every HTML5 named reference (`&rsquo;`, `&hellip;`, `&uuml;`), the legacy ones HTML5 still reads
/// without their `;` (`&copy 2024`), and numeric ones (`&#233;`, `&#xE9;`, `&#150;` as the windows-1252 dash
/// it means). A `&` that starts none stays (`AT&T`). Each run is decoded on its own, so that a reference
/// never spans a tag (`&am<b>p;` is no `&`).
fn push_text(out: &mut String, text: &str) {
    let decoded = htmlize::unescape(text);
    // `&nbsp;` is how editors keep a run of spaces from collapsing; in plain text it is a space, trimmed and
    // collapsed like one.
    if decoded.contains('\u{a0}') {
        out.extend(decoded.chars().map(|c| if c == '\u{a0}' { ' ' } else { c }));
    } else {
        out.push_str(&decoded);
    }
}

/// Options for typed conversion.
#[derive(Debug, Clone, Default)]
pub(crate) struct TypeOptions {
    pub date_order: DateOrder,
    /// Where `date_order` comes from, for the message when a date contradicts it.
    pub order_from: OrderFrom,
    pub date_format: Option<String>,
    pub decimal_comma: bool,
}

/// Where a date attribute's day/month order comes from. A numeric date is only ever read in that order:
/// `05/03/2024` and `25/03/2024` in one column are never read one month-first and the other day-first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum OrderFrom {
    /// `date_order` in the mapping.
    Given,
    /// Not given: the first rows settle it; `line` holds the first date that does.
    Detected { line: u64 },
    /// Not given, and the field's own first rows do not settle it, but another date field of the same input
    /// (`field`, its label) does, on `line`: one export writes all its dates one way.
    Borrowed { field: String, line: u64 },
    /// Not given, and the first rows do not settle it: month first.
    #[default]
    Assumed,
}

/// What a numeric `a/b/year` date says about the day/month order of its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrderEvidence {
    /// Only day first is possible (`25/03/2024`).
    DayFirst,
    /// Only month first is possible (`03/25/2024`).
    MonthFirst,
    /// Either is (`05/03/2024`), and they differ.
    Either,
}

/// The evidence of one value (trimmed text of a date attribute), `None` when it is not an `a/b/year` date or
/// reads the same both ways.
pub(crate) fn order_evidence(s: &str) -> Option<OrderEvidence> {
    let s = s.trim();
    let date = s.split([' ', ',', 'T']).next().unwrap_or(s);
    // `03-25-2024` is as ambiguous as `03/25/2024` (US exports write either).
    let sep = if date.contains('/') { '/' } else { '-' };
    let mut parts = date.split(sep);
    let (a, b, y) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |p: &str, max: usize| !p.is_empty() && p.len() <= max && p.bytes().all(|c| c.is_ascii_digit());
    if parts.next().is_some() || !digits(a, 2) || !digits(b, 2) || !(y.len() == 2 || y.len() == 4) || !digits(y, 4) {
        return None;
    }
    let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
    match (a, b) {
        (1..=12, 1..=12) if a != b => Some(OrderEvidence::Either),
        (13..=31, 1..=12) => Some(OrderEvidence::DayFirst),
        (1..=12, 13..=31) => Some(OrderEvidence::MonthFirst),
        _ => None,
    }
}

impl DateOrder {
    pub(super) fn describe(self) -> &'static str {
        match self {
            DateOrder::Mdy => "month/day/year",
            DateOrder::Dmy => "day/month/year",
        }
    }

    fn other(self) -> DateOrder {
        match self {
            DateOrder::Mdy => DateOrder::Dmy,
            DateOrder::Dmy => DateOrder::Mdy,
        }
    }

    fn key(self) -> &'static str {
        match self {
            DateOrder::Mdy => "mdy",
            DateOrder::Dmy => "dmy",
        }
    }
}

/// Why a numeric date that only reads in the other order fails: what the field's order is and how to change it.
fn wrong_order(opts: &TypeOptions) -> String {
    let (order, other) = (opts.date_order, opts.date_order.other());
    let why = match &opts.order_from {
        OrderFrom::Given => format!("date_order = \"{}\" reads dates {}", order.key(), order.describe()),
        OrderFrom::Detected { line } => {
            format!("this field's dates read {} (line {line} shows it), so the column mixes orders", order.describe())
        }
        OrderFrom::Borrowed { field, line } => format!(
            "this input's dates read {} ({field} on line {line} shows it; this field's first rows did not tell)",
            order.describe()
        ),
        OrderFrom::Assumed => {
            format!("this field's dates are read {} (the first rows do not tell the order)", order.describe())
        }
    };
    format!(
        "a {} date, but {why}; set date_order = \"{}\" on the field if the column is {}",
        other.describe(),
        other.key(),
        other.describe()
    )
}

/// Converts a non-empty, trimmed string to the attribute's type; `Err` carries a hint for the user.
pub(crate) fn convert(s: &str, ty: AttrType, opts: &TypeOptions) -> Result<Value, String> {
    match ty {
        AttrType::String => Ok(Value::String(s.to_string())),
        AttrType::Integer => parse_integer(s, opts.decimal_comma).map(Value::from),
        AttrType::Float => parse_float(s, opts.decimal_comma).and_then(|f| {
            serde_json::Number::from_f64(f).map(Value::Number).ok_or_else(|| "not a finite number".to_string())
        }),
        AttrType::Bool => parse_bool(s).map(Value::Bool),
        AttrType::Date => parse_date(s, opts).map(Value::String),
    }
}

/// A number without the currency a report writes around it: `$1,500.00`, `-€20`, `1.500,00 €`,
/// `USD 1,500,000.00`, `1 250 CHF` (a symbol, or a three-letter ISO code, before or after).
fn without_currency(s: &str) -> Cow<'_, str> {
    const SYMBOLS: &[char] = &['$', '€', '£', '¥', '₹', '₩', '₽', '₺', '₪', '฿', '¢'];
    let t = s.trim();
    let (sign, body) = match t.strip_prefix(['-', '+']) {
        Some(rest) => (&t[..1], rest.trim_start()),
        None => ("", t),
    };
    let code = |w: &str| w.len() == 3 && w.bytes().all(|b| b.is_ascii_uppercase());
    let stripped = if let Some(rest) = body.strip_prefix(SYMBOLS) {
        rest
    } else if let Some(rest) = body.strip_suffix(SYMBOLS) {
        rest
    } else if let Some((head, rest)) = body.split_once(' ')
        && code(head)
    {
        rest
    } else if let Some((rest, tail)) = body.rsplit_once(' ')
        && code(tail)
    {
        rest
    } else {
        return Cow::Borrowed(s);
    };
    let stripped = stripped.trim();
    // A sign written after the symbol: `$-20`.
    if sign.is_empty() { Cow::Owned(stripped.to_string()) } else { Cow::Owned(format!("{sign}{stripped}")) }
}

/// A number's text as Rust reads it (`-1234.5`, `1.5E+06`), from the ways exports write one: a currency
/// around it (`$1,500.00`, `1.500,00 €`), a sign, or accounting parentheses for a negative (`(1,234.56)`),
/// and digit groups. Of `.` and `,`, the declared decimal separator is the decimal one and the other only
/// ever separates groups of exactly three digits (`1,234,567.8`; with `decimal_comma`, `1.234.567,8`): a
/// value where it does not (`1234.56` or `0.5` in a decimal-comma column) reads as `None` rather than as the
/// other convention, so a column mixing the two fails instead of coming out a thousand times off. Spaces
/// (non-breaking ones too) and `_` group digits freely; apostrophes (Swiss `1'234.50`) in threes.
fn plain_number(s: &str, decimal_comma: bool) -> Option<String> {
    let s = without_currency(s);
    let t = s.trim();
    // Accounting negatives: `(1,234.56)`, `($1,234.56)` (and `$(1,234.56)`, its currency already gone).
    let (parenthesised, t) = match t.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        Some(inner) => (true, without_currency(inner)),
        None => (false, Cow::Borrowed(t)),
    };
    let cleaned: String = t.chars().filter(|c| !matches!(c, '_' | ' ' | '\u{a0}' | '\u{202f}')).collect();
    let (minus, body) = match cleaned.strip_prefix(['-', '+']) {
        // `(-5)` says nothing clear: no sign inside parentheses.
        Some(_) if parenthesised => return None,
        Some(rest) => (cleaned.starts_with('-'), rest),
        None => (parenthesised, cleaned.as_str()),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if let Some(e) = exponent {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let (group, decimal) = if decimal_comma { ('.', ',') } else { (',', '.') };
    let (int, fraction) = match mantissa.split_once(decimal) {
        Some((int, fraction)) => (int, Some(fraction)),
        None => (mantissa, None),
    };
    if let Some(f) = fraction
        && (!f.bytes().all(|b| b.is_ascii_digit()) || (f.is_empty() && int.is_empty()))
    {
        return None;
    }
    let digits = ungroup(int, group)?;
    if digits.is_empty() && fraction.is_none_or(str::is_empty) {
        return None;
    }
    let mut out = String::with_capacity(body.len() + 2);
    if minus {
        out.push('-');
    }
    out.push_str(if digits.is_empty() { "0" } else { &digits });
    if let Some(f) = fraction.filter(|f| !f.is_empty()) {
        out.push('.');
        out.push_str(f);
    }
    if let Some(e) = exponent {
        out.push('e');
        out.push_str(e);
    }
    Some(out)
}

/// The digits of an integer part: plain (`1234`), or in groups of three after a first of one to three,
/// separated by one kind of separator: the thousands one (`group`) or an apostrophe (`1'234'567`).
fn ungroup(int: &str, group: char) -> Option<Cow<'_, str>> {
    let is_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let Some(sep) = int.chars().find(|c| *c == group || matches!(c, '\'' | '\u{2019}')) else {
        return is_digits(int).then_some(Cow::Borrowed(int));
    };
    let mut groups = int.split(sep);
    let first = groups.next()?;
    let mut digits = String::with_capacity(int.len());
    if !(1..=3).contains(&first.len()) || !is_digits(first) {
        return None;
    }
    digits.push_str(first);
    for g in groups {
        if g.len() != 3 || !is_digits(g) {
            return None;
        }
        digits.push_str(g);
    }
    Some(Cow::Owned(digits))
}

/// An integer: `1234`, `+7`, `-42`, `(42)`, grouped `1,234` / `1 234` / `1'234` (with `decimal_comma`,
/// `1.234`), and whole numbers written with a fraction of zeros (`12.0`; with `decimal_comma`, `12,0`).
fn parse_integer(s: &str, decimal_comma: bool) -> Result<i64, String> {
    if let Ok(i) = s.parse::<i64>() {
        return Ok(i);
    }
    let Some(plain) = plain_number(s, decimal_comma) else {
        return Err(integer_hint(s, decimal_comma));
    };
    if plain.contains('e') {
        let large = plain.parse::<f64>().is_ok_and(|f| f.abs() >= 9.223_372_036_854_776e18);
        return Err(if large {
            "not an integer: too large for one (beyond 64 bits), and in floating-point notation, which has lost \
             its last digits (a JSON number beyond 2^64 reads so); export it as text, or use type = \"float\""
        } else {
            "not an integer: in scientific notation, which a spreadsheet writes for long numbers (their last digits \
             are lost); format the column as a number before saving, or use type = \"float\""
        }
        .into());
    }
    let (int, fraction) = plain.split_once('.').unwrap_or((&plain, ""));
    if fraction.bytes().any(|b| b != b'0') {
        return Err(integer_hint(s, decimal_comma));
    }
    int.parse::<i64>().map_err(|_| {
        "not an integer: beyond the 64-bit range (±9,223,372,036,854,775,807); use type = \"float\"".into()
    })
}

/// Why a value is no integer, and what would read it: a whole number in the other decimal convention
/// (`1.200` is 1200 with `decimal = ","`) says so; a plainly fractional one (`0.5`, `1234.56`) says that.
fn integer_hint(s: &str, decimal_comma: bool) -> String {
    let fraction = "not an integer: it has a fraction; use type = \"float\" for such values";
    match plain_number(s, !decimal_comma) {
        // The declared decimal separator is a thousands one in the other convention.
        Some(p) if !p.contains(['.', 'e']) => {
            if decimal_comma {
                "not an integer (for a thousands comma such as 1,200 leave decimal = \",\" out)".into()
            } else {
                "not an integer (for a thousands dot such as 1.200 set decimal = \",\")".into()
            }
        }
        Some(_) if decimal_comma => stray_dot(),
        Some(p) if p.split_once('.').is_some_and(|(_, f)| f.bytes().any(|b| b != b'0')) => fraction.into(),
        Some(_) => "not an integer (for decimal commas set decimal = \",\")".into(),
        None if plain_number(s, decimal_comma).is_some() => fraction.into(),
        None => "not an integer".into(),
    }
}

/// Why a value fails with `decimal = ","` when a decimal point reads it (`1234.56`, `0.5`, `1,234,567`): the
/// column mixes the two ways of writing numbers, and guessing per value would put both in one attribute.
fn stray_dot() -> String {
    "not a number with decimal = \",\": it only reads with \".\" as the decimal point (with decimal = \",\" a \
     \".\" only separates groups of three digits, as in 1.234.567,8); the column mixes the two ways of writing \
     numbers"
        .into()
}

fn parse_float(s: &str, decimal_comma: bool) -> Result<f64, String> {
    match plain_number(s, decimal_comma) {
        Some(plain) => match plain.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(f),
            _ => Err("not a finite number".into()),
        },
        None if plain_number(s, !decimal_comma).is_some() => Err(if decimal_comma {
            stray_dot()
        } else {
            "not a number (for decimal commas set decimal = \",\")".into()
        }),
        None => Err("not a number".into()),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" | "on" | "x" | "checked" => Ok(true),
        "false" | "f" | "no" | "n" | "0" | "off" | "unchecked" => Ok(false),
        _ => Err("not a boolean (expected true/false, yes/no, 1/0, on/off)".into()),
    }
}

/// Normalises a date to ISO-8601: `YYYY-MM-DD` when the input has no time, `YYYY-MM-DDTHH:MM:SS` (with
/// the fraction of a second the input gives, and the offset, or `Z`, when it gives one) when it has. Unix
/// timestamps in seconds or milliseconds (as HubSpot's API exports write them) become UTC date-times.
pub(crate) fn parse_date(s: &str, opts: &TypeOptions) -> Result<String, String> {
    let s = s.trim();
    if opts.date_format.is_none()
        && let Some(fast) = fast_numeric_date(s, opts.date_order)
    {
        return Ok(fast);
    }
    if let Some(fmt) = &opts.date_format {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Ok(fmt_offset(dt, s));
        }
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(fmt_naive(dt, s));
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, fmt) {
            return Ok(d.format("%Y-%m-%d").to_string());
        }
    }
    if let Some((dt, written)) = unix_timestamp(s) {
        let mut out = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
        push_fraction(&mut out, written, dt.nanosecond());
        out.push('Z');
        return Ok(out);
    }
    // "2024-03-05 14:22:10 UTC": the wall time is UTC.
    if let Some(rest) = [" UTC", " GMT", " utc", " gmt"].iter().find_map(|z| s.strip_suffix(z)) {
        let wall = parse_date(rest, opts)?;
        let zoned = wall.len() > 10 && (wall.ends_with('Z') || wall[10..].contains(['+', '-']));
        return Ok(if wall.len() > 10 && !zoned { wall + "Z" } else { wall });
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(fmt_offset(dt, s));
    }
    if let Ok(dt) = DateTime::parse_from_rfc2822(s) {
        return Ok(fmt_offset(dt, s));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M%:z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Ok(fmt_offset(dt, s));
        }
    }
    // An offset after a space ("14:22:10 +01", "14:22 -0500"): the space goes.
    if let Some(space) = s.rfind(' ')
        && s[..space].contains(':')
        && s[space + 1..].starts_with(['+', '-'])
        && s.len() > space + 3
        && s[space + 2..].bytes().all(|b| b.is_ascii_digit() || b == b':')
    {
        return parse_date(&format!("{}{}", &s[..space], &s[space + 1..]), opts);
    }
    // PostgreSQL writes whole-hour offsets as "+01": chrono wants "+01:00".
    let b = s.as_bytes();
    if b.len() > 16
        && matches!(b[b.len() - 3], b'+' | b'-')
        && b[b.len() - 2..].iter().all(u8::is_ascii_digit)
        && b[b.len() - 4].is_ascii_digit()
        && s.contains(':')
    {
        return parse_date(&format!("{s}:00"), opts);
    }
    let (date_part, time_part) = split_date_time(s);
    let date = parse_date_only(date_part, opts.date_order).ok_or_else(|| {
        if parse_date_only(date_part, opts.date_order.other()).is_some() {
            return wrong_order(opts);
        }
        "not a recognised date (use ISO 2024-03-31, 03/31/2024, 31.03.2024, 31 Mar 2024, or set format = \"...\")"
            .to_string()
    })?;
    match time_part {
        None => Ok(date.format("%Y-%m-%d").to_string()),
        Some(t) => {
            let time = parse_time(t).ok_or_else(|| format!("date has an unrecognised time part '{t}'"))?;
            Ok(fmt_naive(NaiveDateTime::new(date, time), t))
        }
    }
}

/// Unix time as CRM APIs export it: seconds (9 or 10 digits, from 1973 on, possibly with a fraction) or
/// milliseconds (12 or 13 digits, possibly with a fraction of zeros: pandas writes `1709633000123.0` for an
/// integer column with a gap). With the fraction of a second as written, for seconds.
fn unix_timestamp(s: &str) -> Option<(DateTime<chrono::Utc>, Option<&str>)> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) || (s.contains('.') && fraction.is_empty()) {
        return None;
    }
    let n: i64 = whole.parse().ok()?;
    match whole.len() {
        9 | 10 => {
            let nanos = format!("{fraction:0<9}").get(..9)?.parse().ok()?;
            Some((DateTime::from_timestamp(n, nanos)?, s.split_once('.').map(|(_, f)| f)))
        }
        12 | 13 if fraction.bytes().all(|b| b == b'0') => Some((DateTime::from_timestamp_millis(n)?, None)),
        _ => None,
    }
}

/// The common all-numeric shapes, parsed by hand (chrono's format-string machinery costs microseconds per
/// value, which dominates a million-row import): `YYYY-MM-DD`, optionally followed by ` ` or `T`,
/// `HH:MM[:SS[.fff]]` and `Z` / `±HH:MM` / `±HHMM`; and `M/D/YYYY` (or `D/M/YYYY`), `DD.MM.YYYY`, optionally
/// followed by ` HH:MM[:SS]`. Anything else (or anything odd) returns `None` and goes the general way, so the
/// results are the same either way.
fn fast_numeric_date(s: &str, order: DateOrder) -> Option<String> {
    let b = s.as_bytes();
    let num = |r: &[u8]| -> Option<u32> {
        if r.is_empty() || r.len() > 4 || !r.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(r.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let (y, m, d, rest) = if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        (num(&b[..4])?, num(&b[5..7])?, num(&b[8..10])?, &b[10..])
    } else {
        let sep = *b.iter().find(|c| **c == b'/' || **c == b'.')?;
        let end = b.iter().position(|c| *c == b' ').unwrap_or(b.len());
        let mut parts = b[..end].split(|c| *c == sep);
        let (p1, p2, p3) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || p3.len() != 4 || p1.len() > 2 || p2.len() > 2 {
            return None;
        }
        let (a, bb, y) = (num(p1)?, num(p2)?, num(p3)?);
        let (m, d) = match (sep, order) {
            (b'.', _) | (_, DateOrder::Dmy) => (bb, a),
            _ => (a, bb),
        };
        (y, m, d, &b[end..])
    };
    NaiveDate::from_ymd_opt(y as i32, m, d)?;
    let mut out = String::with_capacity(25);
    push_digits(&mut out, y, 4);
    out.push('-');
    push_digits(&mut out, m, 2);
    out.push('-');
    push_digits(&mut out, d, 2);
    if rest.is_empty() {
        return Some(out);
    }
    if !(rest[0] == b' ' || (rest[0] == b'T' && b[4] == b'-')) || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let (hh, mm) = (num(&rest[1..3])?, num(&rest[4..6])?);
    let mut i = 6;
    let mut ss = 0;
    let mut fraction: &[u8] = &[];
    if rest.len() >= 9 && rest[6] == b':' {
        ss = num(&rest[7..9])?;
        i = 9;
        if rest.len() > i && rest[i] == b'.' {
            i += 1;
            let digits = rest[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            fraction = &rest[i..i + digits];
            i += digits;
        }
    }
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    out.push('T');
    push_digits(&mut out, hh, 2);
    out.push(':');
    push_digits(&mut out, mm, 2);
    out.push(':');
    push_digits(&mut out, ss, 2);
    push_fraction(&mut out, std::str::from_utf8(fraction).ok(), 0);
    match &rest[i..] {
        [] => {}
        [b'Z'] if b[4] == b'-' => out.push('Z'),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] if b[4] == b'-' => {
            let (oh, om) = (num(&[*h1, *h2])?, num(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            if oh == 0 && om == 0 {
                out.push('Z');
            } else {
                out.push(*sign as char);
                push_digits(&mut out, oh, 2);
                out.push(':');
                push_digits(&mut out, om, 2);
            }
        }
        _ => return None,
    }
    Some(out)
}

/// Appends `n` zero-padded to `width` digits (`n` has at most `width` digits here, `width` at most 4).
fn push_digits(out: &mut String, n: u32, width: u32) {
    let width = (width as usize).min(4);
    let mut digits = [b'0'; 4];
    let mut n = n;
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    for &d in &digits[..width] {
        out.push(char::from(d));
    }
}

/// A date-time with its offset (`Z` for UTC), keeping the fraction of a second `source` gives.
fn fmt_offset(dt: DateTime<chrono::FixedOffset>, source: &str) -> String {
    let mut out = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    push_fraction(&mut out, written_fraction(source), dt.nanosecond());
    if dt.offset().local_minus_utc() == 0 {
        out.push('Z');
    } else {
        out.push_str(&dt.format("%:z").to_string());
    }
    out
}

/// A date-time without an offset, keeping the fraction of a second `source` gives.
fn fmt_naive(dt: NaiveDateTime, source: &str) -> String {
    let mut out = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    push_fraction(&mut out, written_fraction(source), dt.nanosecond());
    out
}

/// The digits of the fraction of a second written after `HH:MM:SS.` in `s` (`123456` of
/// `10:00:00.123456+00:00`).
fn written_fraction(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let at = b.windows(5).position(|w| {
        w[0] == b':' && w[1].is_ascii_digit() && w[2].is_ascii_digit() && w[3] == b'.' && w[4].is_ascii_digit()
    })?;
    let digits = &s[at + 4..];
    Some(&digits[..digits.bytes().take_while(u8::is_ascii_digit).count()])
}

/// Appends `.` and the fraction of a second: as written (ISO-8601 allows any number of digits, and a
/// timestamp's precision is the source's to give), else from the parsed value, without trailing zeros. A
/// fraction of zeros only (`.000`, which Salesforce writes on every value) says nothing and is left out, so
/// those values stay what earlier runs sent.
fn push_fraction(out: &mut String, written: Option<&str>, nanos: u32) {
    match written {
        Some(w) if w.bytes().any(|b| b != b'0') => {
            out.push('.');
            out.push_str(w);
        }
        Some(_) => {}
        None => {
            // A leap second holds its second in the nanoseconds: only the fraction counts.
            let nanos = nanos % 1_000_000_000;
            if nanos != 0 {
                let digits = format!("{nanos:09}");
                out.push('.');
                out.push_str(digits.trim_end_matches('0'));
            }
        }
    }
}

/// Splits "2024-03-05 14:22" / "2024-03-05T14:22" / "3/5/2024 2:22 PM" into date and time text.
fn split_date_time(s: &str) -> (&str, Option<&str>) {
    if let Some((d, t)) = s.split_once('T')
        && d.len() == 10
        && t.starts_with(|c: char| c.is_ascii_digit())
    {
        return (d, Some(t));
    }
    // A time starts at the first space-separated token that contains ':'.
    if let Some(pos) = s.find(':') {
        let before = &s[..pos];
        if let Some(space) = before.rfind([' ', ',']) {
            let date = s[..space].trim().trim_end_matches(',');
            return (date, Some(s[space + 1..].trim()));
        }
    }
    (s, None)
}

fn parse_date_only(s: &str, order: DateOrder) -> Option<NaiveDate> {
    let fixed = [
        "%Y-%m-%d",
        "%Y/%m/%d",
        "%Y.%m.%d",
        "%Y%m%d",
        "%d %b %Y",
        "%d %B %Y",
        "%b %d %Y",
        "%B %d %Y",
        "%b %d, %Y",
        "%B %d, %Y",
        "%a, %d %b %Y",
        "%A, %B %d, %Y",
    ];
    let year_first = s.len() >= 4 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit);
    for fmt in fixed {
        if fmt.starts_with("%Y") && !year_first {
            continue;
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, fmt) {
            return Some(d);
        }
    }
    // Numeric day/month dates: the year is the last part; two digits mean %y (chrono's %Y would read "24"
    // as the year 24).
    let short_year = s.rsplit(['/', '.', '-']).next().is_some_and(|y| y.len() == 2);
    let y = if short_year { "%y" } else { "%Y" };
    // Dashes as slashes: `03-05-2024` is May 3 in a day-first export and March 5 in a US one.
    let (slashed, dashed) = match order {
        DateOrder::Mdy => (format!("%m/%d/{y}"), format!("%m-%d-{y}")),
        DateOrder::Dmy => (format!("%d/%m/{y}"), format!("%d-%m-{y}")),
    };
    // Never the other order: a column read both ways would hold silently wrong dates (see [`OrderFrom`]).
    for fmt in [slashed, format!("%d.%m.{y}"), dashed, format!("%d-%b-{y}")] {
        if let Ok(d) = NaiveDate::parse_from_str(s, &fmt) {
            return Some(d);
        }
    }
    None
}

fn parse_time(t: &str) -> Option<NaiveTime> {
    let t = t.trim();
    for fmt in ["%H:%M:%S%.f", "%H:%M", "%I:%M:%S %p", "%I:%M %p", "%I:%M:%S%p", "%I:%M%p"] {
        if let Ok(time) = NaiveTime::parse_from_str(t, fmt) {
            return Some(time);
        }
    }
    // A trailing "Z" or "UTC" without a parseable offset: keep the wall time.
    let stripped = t.trim_end_matches('Z').trim_end_matches(" UTC").trim_end_matches(" GMT");
    (stripped != t).then(|| parse_time(stripped)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Result<String, String> {
        parse_date(s, &TypeOptions::default())
    }

    #[test]
    fn dates_from_common_export_formats() {
        assert_eq!(date("2024-03-05").unwrap(), "2024-03-05");
        assert_eq!(date("2024-03-05 14:22").unwrap(), "2024-03-05T14:22:00");
        assert_eq!(date("2024-03-05T14:22:10.123Z").unwrap(), "2024-03-05T14:22:10.123Z");
        assert_eq!(date("2024-03-05T14:22:10+02:00").unwrap(), "2024-03-05T14:22:10+02:00");
        assert_eq!(date("03/05/2024").unwrap(), "2024-03-05");
        assert_eq!(date("3/5/2024 2:22 PM").unwrap(), "2024-03-05T14:22:00");
        assert!(date("31/12/2024").unwrap_err().contains("set date_order = \"dmy\""), "never read the other way");
        assert_eq!(date("05.03.2024").unwrap(), "2024-03-05");
        assert_eq!(date("05.03.2024 08:15:00").unwrap(), "2024-03-05T08:15:00");
        assert_eq!(date("5 Mar 2024").unwrap(), "2024-03-05");
        assert_eq!(date("March 5, 2024").unwrap(), "2024-03-05");
        assert_eq!(date("Tue, 05 Mar 2024 10:00:00 +0000").unwrap(), "2024-03-05T10:00:00Z");
        assert_eq!(date("1709633000000").unwrap(), "2024-03-05T10:03:20Z");
        assert_eq!(date("1709633000").unwrap(), "2024-03-05T10:03:20Z");
        assert_eq!(date("1709633000.5").unwrap(), "2024-03-05T10:03:20.5Z");
        assert_eq!(date("946684800").unwrap(), "2000-01-01T00:00:00Z", "nine digits: before 2001");
        assert_eq!(date("2024-03-05 14:22:10 UTC").unwrap(), "2024-03-05T14:22:10Z");
        assert_eq!(date("2024-03-05 UTC").unwrap(), "2024-03-05");
        assert_eq!(date("2024-03-05 14:22:10+01").unwrap(), "2024-03-05T14:22:10+01:00", "PostgreSQL");
        assert_eq!(date("2024-03-05 14:22:10.5-05").unwrap(), "2024-03-05T14:22:10.5-05:00");
        assert_eq!(date("2024-03-05 14:22:10 +01").unwrap(), "2024-03-05T14:22:10+01:00", "a space before");
        assert_eq!(date("2024-03-05 14:22 -0500").unwrap(), "2024-03-05T14:22:00-05:00");
        assert!(date("12345678").is_err(), "eight digits are no timestamp");
        assert_eq!(date("03/05/24").unwrap(), "2024-03-05");
        assert!(date("next tuesday").is_err());
        assert!(date("2024-13-45").is_err());
    }

    #[test]
    fn fractional_seconds_are_kept_as_written() {
        // The QA report: `.123456` was cut, and two events a millisecond apart became one instant.
        assert_eq!(date("2024-03-05T10:00:00.123456+00:00").unwrap(), "2024-03-05T10:00:00.123456Z");
        assert_eq!(date("2024-03-05T10:00:00.120+02:00").unwrap(), "2024-03-05T10:00:00.120+02:00", "as written");
        assert_eq!(date("2024-03-05 10:00:00.5").unwrap(), "2024-03-05T10:00:00.5");
        assert_eq!(date("2024-03-05T10:00:00.1234567891Z").unwrap(), "2024-03-05T10:00:00.1234567891Z");
        assert_eq!(date("2024-03-05 10:00:00.25 UTC").unwrap(), "2024-03-05T10:00:00.25Z");
        assert_eq!(date("2024-03-05 10:00:00.25 +01").unwrap(), "2024-03-05T10:00:00.25+01:00");
        assert_eq!(date("2024-03-05 10:00:00.75+01").unwrap(), "2024-03-05T10:00:00.75+01:00");
        assert_eq!(date("3/5/2024 10:00:00.5").unwrap(), "2024-03-05T10:00:00.5");
        assert_eq!(date("Tue, 5 Mar 2024 10:00:00 GMT").unwrap(), "2024-03-05T10:00:00Z");
        // Salesforce writes `.000` on every value: nothing to keep, and the values stay what earlier runs sent.
        assert_eq!(date("2024-03-05T10:00:00.000+0000").unwrap(), "2024-03-05T10:00:00Z");
        assert_eq!(date("1709633000.000").unwrap(), "2024-03-05T10:03:20Z");
        assert_eq!(date("1709633000123").unwrap(), "2024-03-05T10:03:20.123Z", "milliseconds");
        assert_eq!(date("1709633000120").unwrap(), "2024-03-05T10:03:20.12Z");
        // pandas writes an integer column with a gap as floats: these milliseconds failed as no date.
        assert_eq!(date("1709633000123.0").unwrap(), "2024-03-05T10:03:20.123Z");
        assert_eq!(date("1709633000000.0").unwrap(), "2024-03-05T10:03:20Z");
        assert!(date("1709633000123.5").is_err(), "a fraction of a millisecond is no export's");
        // A format of the mapping's own keeps the fraction it reads.
        let opts = TypeOptions { date_format: Some("%d/%m/%Y %H:%M:%S%.f".into()), ..Default::default() };
        assert_eq!(parse_date("05/03/2024 10:00:00.042", &opts).unwrap(), "2024-03-05T10:00:00.042");
        let opts = TypeOptions { date_format: Some("%Y%m%d%H%M%S%.3f".into()), ..Default::default() };
        assert_eq!(
            parse_date("20240305100000.042", &opts).unwrap(),
            "2024-03-05T10:00:00.042",
            "not written after `:`"
        );
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_one() {
        let samples = [
            "2024-03-05",
            "2024-03-05 14:22",
            "2024-03-05 14:22:09",
            "2024-03-05T14:22:09.5",
            "2024-03-05T14:22:09Z",
            "2024-03-05T14:22:09.123+02:00",
            "2024-03-05T14:22:09.000Z",
            "2024-03-05 14:22:09.123456789",
            "05.03.2024 08:15:00.25",
            "2024-03-05T14:22:09-0530",
            "2024-03-05T14:22:09+00:00",
            "3/5/2024",
            "03/05/2024 14:22",
            "12/31/2024",
            "05.03.2024",
            "05.03.2024 08:15:00",
            "2024-02-30",
            "2024-03-05 25:00",
            "2024-03-05T14:22:09.Z",
            "1/2/3/2024",
            "2024-03-05 14:22 PM",
        ];
        for order in [DateOrder::Mdy, DateOrder::Dmy] {
            let opts = TypeOptions { date_order: order, ..Default::default() };
            for s in samples {
                if let Some(fast) = fast_numeric_date(s, order) {
                    let slow = {
                        let mut o = opts.clone();
                        o.date_format = Some("\u{0}never".into());
                        parse_date(s, &o)
                    };
                    assert_eq!(Ok(fast), slow, "{s} ({order:?})");
                }
            }
        }
        assert!(fast_numeric_date("2024-02-30", DateOrder::Mdy).is_none());
        assert!(fast_numeric_date("31/12/2024", DateOrder::Mdy).is_none(), "left to the general path's message");
    }

    #[test]
    fn day_first_dates_when_asked() {
        let opts = TypeOptions { date_order: DateOrder::Dmy, order_from: OrderFrom::Given, ..Default::default() };
        assert_eq!(parse_date("03/05/2024", &opts).unwrap(), "2024-05-03");
        let err = parse_date("03/25/2024", &opts).unwrap_err();
        assert!(err.starts_with("a month/day/year date, but date_order = \"dmy\""), "{err}");
        let detected = TypeOptions { order_from: OrderFrom::Detected { line: 7 }, ..opts.clone() };
        assert!(parse_date("03/25/2024 10:00", &detected).unwrap_err().contains("line 7 shows it"));
        let borrowed = TypeOptions {
            order_from: OrderFrom::Borrowed { field: "contact.filterable_attributes.created".into(), line: 4 },
            ..opts.clone()
        };
        assert_eq!(
            parse_date("03/25/2024", &borrowed).unwrap_err(),
            "a month/day/year date, but this input's dates read day/month/year (contact.filterable_attributes.created \
             on line 4 shows it; this field's first rows did not tell); set date_order = \"mdy\" on the field if the \
             column is month/day/year"
        );
        let opts = TypeOptions { date_format: Some("%Y%j".into()), ..Default::default() };
        assert_eq!(parse_date("2024065", &opts).unwrap(), "2024-03-05");
    }

    #[test]
    fn dashed_numeric_dates_follow_the_date_order() {
        // A US export's `03-05-2024` (March 5) was read day first whatever date_order said, and `03-25-2024`
        // failed as no date at all.
        let mdy = TypeOptions { date_order: DateOrder::Mdy, order_from: OrderFrom::Given, ..Default::default() };
        assert_eq!(parse_date("03-05-2024", &mdy).unwrap(), "2024-03-05");
        assert_eq!(parse_date("03-25-2024 2:22 PM", &mdy).unwrap(), "2024-03-25T14:22:00");
        assert!(parse_date("25-03-2024", &mdy).unwrap_err().starts_with("a day/month/year date, but date_order"));
        let dmy = TypeOptions { date_order: DateOrder::Dmy, ..mdy.clone() };
        assert_eq!(parse_date("03-05-2024", &dmy).unwrap(), "2024-05-03");
        assert_eq!(parse_date("25-03-24", &dmy).unwrap(), "2024-03-25");
        assert_eq!(parse_date("05-Mar-2024", &mdy).unwrap(), "2024-03-05", "a month name tells");
        assert_eq!(parse_date("2024-03-05", &dmy).unwrap(), "2024-03-05");
    }

    #[test]
    fn html_bodies_become_their_text() {
        assert_eq!(
            html_to_text("<p>Need <b>SSO</b> &amp; SCIM</p><p>Thanks,<br/>Ada</p>"),
            "Need SSO & SCIM\nThanks,\nAda"
        );
        assert_eq!(html_to_text("<div>a &lt; b &#8212; c&#x2019;s&nbsp;x</div>"), "a < b \u{2014} c\u{2019}s x");
        assert_eq!(html_to_text("x < y and AT&T; 1<2"), "x < y and AT&T; 1<2", "no tags, no entities");
        assert_eq!(html_to_text("<style>p {color: red}</style><p>hi</p><script>alert(1)</script>"), "hi");
        assert_eq!(html_to_text("<p>one</p>\n\n\n<p>two</p>"), "one\n\ntwo");
        assert_eq!(html_to_text("&ééééééé; <é>"), "&ééééééé; <é>", "multi-byte text after & and <");
        assert_eq!(html_to_text("<p unclosed"), "<p unclosed");
        // Addresses and links in angle brackets are text, in plain text and in HTML alike.
        assert_eq!(
            html_to_text("From: Ada <ada@x.com>\nSee <https://x.io/a?b=1>"),
            "From: Ada <ada@x.com>\nSee <https://x.io/a?b=1>"
        );
        assert_eq!(
            html_to_text("<p>Ada &lt;ada@x.com&gt; <a href=\"mailto:ada@x.com\">mail</a></p>"),
            "Ada <ada@x.com> mail"
        );
    }

    #[test]
    fn strip_html_decodes_every_html5_named_entity() {
        // The QA report's Intercom body: only the six entities of the old table were decoded.
        assert_eq!(
            html_to_text(
                "<p>It&rsquo;s broken&hellip; &uuml;ber &#233;t&#xE9; &#39;q&#39; &quot;x&quot; &copy; &euro;5 \
                 &mdash; &ndash; &apos;a&apos; &Auml;</p>"
            ),
            "It\u{2019}s broken\u{2026} \u{fc}ber \u{e9}t\u{e9} 'q' \"x\" \u{a9} \u{20ac}5 \u{2014} \u{2013} 'a' \u{c4}"
        );
        // Names past the old 12-byte window, and ones that map to two code points.
        assert_eq!(html_to_text("&CounterClockwiseContourIntegral; &NotEqualTilde;"), "\u{2233} \u{2242}\u{338}");
        // HTML5 reads the legacy names without `;` in text (as browsers show them), and no others.
        assert_eq!(html_to_text("&copy 2024 &eacute;t&eacute;"), "\u{a9} 2024 \u{e9}t\u{e9}");
        assert_eq!(html_to_text("&hellip and &rsquo"), "&hellip and &rsquo", "no legacy form: left as written");
        assert_eq!(
            html_to_text("I'm &notit; I tell you &zzz;"),
            "I'm \u{ac}it; I tell you &zzz;",
            "as the spec's example"
        );
        // Numeric references in the C1 range mean the windows-1252 character (Outlook's dashes and quotes).
        assert_eq!(html_to_text("a &#150; b &#147;c&#148;"), "a \u{2013} b \u{201c}c\u{201d}");
        assert_eq!(html_to_text("&nbsp;x&#160;y"), "x y", "non-breaking spaces are spaces");
        assert_eq!(html_to_text("<b>&lt;b&gt;</b>"), "<b>", "a decoded `<` opens no tag");
        assert_eq!(html_to_text("&am<b>p;</b>"), "&amp;", "a reference never spans a tag");
        assert_eq!(html_to_text("<script>x = '&hellip;'</script>&hellip;"), "\u{2026}");
    }

    #[test]
    fn order_evidence_of_numeric_dates() {
        use OrderEvidence::*;
        assert_eq!(order_evidence("25/03/2024"), Some(DayFirst));
        assert_eq!(order_evidence("03/25/2024 2:22 PM"), Some(MonthFirst));
        assert_eq!(order_evidence(" 5/3/24"), Some(Either));
        assert_eq!(order_evidence("05/05/2024"), None, "the same both ways");
        assert_eq!(order_evidence("2024/03/05"), None);
        assert_eq!(order_evidence("05.03.2024"), None, "dotted dates are day first by convention");
        assert_eq!(order_evidence("32/01/2024"), None);
        assert_eq!(order_evidence("5/3"), None);
        assert_eq!(order_evidence("25-03-2024"), Some(DayFirst), "dashes as slashes");
        assert_eq!(order_evidence("03-25-2024 14:22"), Some(MonthFirst));
        assert_eq!(order_evidence("2024-03-05"), None);
        assert_eq!(order_evidence("05-Mar-2024"), None);
    }

    #[test]
    fn numbers() {
        let int = |s| parse_integer(s, false);
        assert_eq!(int("1,234,567").unwrap(), 1234567);
        assert_eq!(int("-42").unwrap(), -42);
        assert_eq!(int("+7").unwrap(), 7);
        assert_eq!(int("12.0").unwrap(), 12);
        assert_eq!(int("1 000").unwrap(), 1000);
        assert!(int("12a").is_err());
        assert!(int("1,23").is_err());
        assert!(int("12.5").is_err());
        assert!(int("1.200").unwrap_err().contains("decimal = \",\""), "a hint for European thousands");
        let eu = |s| parse_integer(s, true);
        assert_eq!(eu("1.200").unwrap(), 1200);
        assert_eq!(eu("1.234.567").unwrap(), 1234567);
        assert_eq!(eu("-1.200,00").unwrap(), -1200);
        assert_eq!(eu("12,0").unwrap(), 12);
        assert_eq!(eu("250").unwrap(), 250);
        assert!(eu("1,5").is_err());
        assert!(eu("1,200").is_err(), "a decimal comma: 1.2 is no integer");
        assert!(eu("1.20").is_err());
        assert_eq!(parse_float("1,234.5", false).unwrap(), 1234.5);
        assert_eq!(parse_float("1.234,5", true).unwrap(), 1234.5);
        assert_eq!(parse_float("0,75", true).unwrap(), 0.75);
        assert!(parse_float("0,75", false).unwrap_err().contains("decimal"));
        assert!(parse_float("NaN", false).is_err());
        assert!(parse_float("inf", false).is_err());
    }

    #[test]
    fn numbers_in_a_currency() {
        let float = |s| parse_float(s, false);
        assert_eq!(float("$1,500,000.00"), Ok(1_500_000.0));
        assert_eq!(float("USD 1,500,000.00"), Ok(1_500_000.0));
        assert_eq!(float("-€20.5"), Ok(-20.5));
        assert_eq!(float("$-20"), Ok(-20.0));
        assert_eq!(parse_float("1.500,50 €", true), Ok(1500.5));
        assert_eq!(parse_float("1 250 CHF", true), Ok(1250.0));
        assert_eq!(parse_integer("£1,200", false), Ok(1200));
        assert!(float("USD").is_err());
        assert!(float("12 apples").is_err(), "not a currency code");
    }

    #[test]
    fn a_decimal_comma_column_reads_a_dot_only_between_groups_of_three() {
        let eu = |s| parse_float(s, true);
        assert_eq!(eu("1.234.567,8"), Ok(1_234_567.8));
        assert_eq!(eu("2.125"), Ok(2125.0), "what decimal = \",\" declares");
        assert_eq!(eu("-1.234,56"), Ok(-1234.56));
        assert_eq!(eu("1 234,56"), Ok(1234.56));
        // The QA report's column: these came out as dot decimals, a thousand times off their neighbours.
        for dot_decimal in ["1234.56", "0.5", "1,234.56", "12.0", "1.2345", "1.5E+06", "1,234,567"] {
            let err = eu(dot_decimal).unwrap_err();
            assert!(err.contains("it only reads with \".\" as the decimal point"), "{dot_decimal}: {err}");
            assert!(err.contains("the column mixes the two ways"), "{dot_decimal}: {err}");
        }
        assert_eq!(eu("N/A"), Err("not a number".into()), "no hint where no convention reads it");
        // The same rule the other way round.
        assert_eq!(parse_float("2,125", false), Ok(2125.0));
        assert!(parse_float("1234,56", false).unwrap_err().contains("set decimal = \",\""));
        assert!(parse_float("1,23,456", false).is_err(), "groups of three only");
    }

    #[test]
    fn swiss_apostrophes_and_accounting_parentheses() {
        let float = |s| parse_float(s, false);
        assert_eq!(float("1'234.50"), Ok(1234.5));
        assert_eq!(float("CHF 1'234.50"), Ok(1234.5));
        assert_eq!(float("1\u{2019}234\u{2019}567"), Ok(1_234_567.0), "a typographic apostrophe");
        assert_eq!(parse_integer("1'234'567", false), Ok(1_234_567));
        assert_eq!(parse_float("1'234,50", true), Ok(1234.5));
        assert!(float("12'34.5").is_err(), "apostrophes group in threes");
        assert!(float("1'234,567.5").is_err(), "one kind of separator");
        assert_eq!(float("(1,234.56)"), Ok(-1234.56));
        assert_eq!(float("($1,234.56)"), Ok(-1234.56));
        assert_eq!(float("$(1,234.56)"), Ok(-1234.56));
        assert_eq!(parse_float("(1.234,56 €)", true), Ok(-1234.56));
        assert_eq!(parse_integer("(42)", false), Ok(-42));
        assert!(float("(-5)").is_err(), "a sign inside parentheses says nothing clear");
        assert!(float("()").is_err());
        assert!(float("(5").is_err());
    }

    #[test]
    fn integer_hints_fit_the_value() {
        let hint = |s, comma| parse_integer(s, comma).unwrap_err();
        let fraction = "not an integer: it has a fraction; use type = \"float\" for such values";
        // Plainly fractional values were told to set decimal = ",".
        for s in ["0.5", "1234.56", "12.5", "1,234.56", "-0.25"] {
            assert_eq!(hint(s, false), fraction, "{s}");
        }
        assert_eq!(hint("1,5", true), fraction);
        assert_eq!(hint("1,5", false), fraction, "a decimal comma fraction is a fraction too");
        assert!(hint("1.200", false).contains("for a thousands dot such as 1.200 set decimal = \",\""));
        assert!(hint("1.234.567", false).contains("set decimal = \",\""));
        assert!(hint("12,0", false).contains("for decimal commas set decimal = \",\""));
        assert!(hint("1,200", true).contains("for a thousands comma such as 1,200 leave decimal = \",\" out"));
        assert!(hint("1234.56", true).contains("it only reads with \".\" as the decimal point"));
        assert_eq!(hint("12a", false), "not an integer");
        assert!(hint("99999999999999999999", false).contains("beyond the 64-bit range"));
        assert!(hint("1.5E+06", false).contains("scientific notation"));
        // A JSON integer beyond 2^64 is read as a float: its text is serde_json's, not a spreadsheet's.
        let huge = serde_json::from_str::<Value>("12345678901234567890123").unwrap().to_string();
        let err = hint(&huge, false);
        assert!(err.contains("beyond 64 bits") && err.contains("JSON number") && !err.contains("spreadsheet"), "{err}");
        assert_eq!(parse_integer("18446744073709551615", false).unwrap_err(), hint("99999999999999999999", false));
    }

    #[test]
    fn bools() {
        for t in ["true", "Yes", "Y", "1", "on", "TRUE"] {
            assert!(parse_bool(t).unwrap(), "{t}");
        }
        for f in ["false", "no", "N", "0", "off"] {
            assert!(!parse_bool(f).unwrap(), "{f}");
        }
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn text_helpers() {
        assert_eq!(collapse_whitespace("  a \n\t b  "), "a b");
        assert_eq!(apply_case("JOHN o'BRIEN-SMITH".into(), Case::Title), "John O'brien-Smith");
        assert_eq!(apply_case("ÉCOLE".into(), Case::Lower), "école");
        assert!(matches!(apply_case("already lower".into(), Case::Lower), Cow::Borrowed(_)), "no copy");
        assert_eq!(apply_case("MiXed".into(), Case::Upper), "MIXED");
    }

    #[test]
    fn needs_collapse_is_exact() {
        for s in [
            "",
            " ",
            "a",
            "a b",
            "a  b",
            " a",
            "a ",
            "a\tb",
            "Zoë Müller",
            "Zoë  Müller",
            "Zoë\u{a0}Müller",
            "é ",
            " é",
            "é\u{2003}",
            "\u{2003}é",
            "a \u{85}b",
            "ü ü ü",
            "ü\nü",
        ] {
            let changes = collapse_whitespace(s) != s;
            assert_eq!(needs_collapse(s), changes, "{s:?}");
        }
    }
}
