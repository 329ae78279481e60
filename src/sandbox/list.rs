//! The list endpoints' query rules: DRF's `SearchFilter`, `OrderingFilter` and `PageNumberPagination`.
//!
//! Kept apart from the HTTP layer so the rules (which page numbers are valid, how unknown ordering fields are
//! ignored, how nulls sort) are pure functions with unit tests.

use std::cmp::Ordering;

use super::store::Timestamp;

/// The largest `page_size` a client may ask for; larger values are cut to it, as DRF's `max_page_size` does.
pub(crate) const MAX_PAGE_SIZE: usize = 1000;

/// A list request's parameters, read from the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListQuery {
    /// The raw `page` value; checked against the result count by [`paginate`].
    pub(crate) page: Option<String>,
    pub(crate) page_size: usize,
    /// Lowercased search terms; every term must match one of the searched fields.
    pub(crate) search: Vec<String>,
    /// The raw `ordering` value; resolved against each entity's fields by [`parse_ordering`].
    pub(crate) ordering: Option<String>,
}

impl ListQuery {
    /// Reads the parameters; a repeated parameter takes its last value, as Django's `QueryDict.get` does.
    pub(crate) fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>, default_page_size: usize) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut query = ListQuery { page: None, page_size: default_page_size, search: Vec::new(), ordering: None };
        for (key, value) in pairs {
            let value = value.as_ref();
            match key.as_ref() {
                "page" => query.page = Some(value.to_owned()),
                "page_size" => query.page_size = parse_page_size(value, default_page_size),
                "search" => query.search = search_terms(value),
                "ordering" => query.ordering = Some(value.to_owned()),
                _ => {}
            }
        }
        query
    }
}

/// DRF `_positive_int(strict=True, cutoff=max_page_size)`: zero, negative or garbage falls back to the default.
fn parse_page_size(value: &str, default: usize) -> usize {
    match value.trim().parse::<usize>() {
        Ok(0) | Err(_) => default,
        Ok(n) => n.min(MAX_PAGE_SIZE),
    }
}

/// DRF `SearchFilter.get_search_terms`: terms split on whitespace and commas.
fn search_terms(value: &str) -> Vec<String> {
    value
        .replace('\0', "")
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|term| !term.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// One sort key of an ordering: a field name from the entity's allowed list, and whether it is descending.
pub(crate) type SortKey = (&'static str, bool);

/// DRF `OrderingFilter`: comma-separated fields, `-` for descending; fields not in `allowed` are dropped, and
/// when none is left the default (`id`) applies.
pub(crate) fn parse_ordering(raw: Option<&str>, allowed: &[&'static str]) -> Vec<SortKey> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    raw.split(',')
        .filter_map(|term| {
            let term = term.trim();
            let (name, descending) = match term.strip_prefix('-') {
                Some(name) => (name, true),
                None => (term, false),
            };
            allowed.iter().find(|field| **field == name).map(|field| (*field, descending))
        })
        .collect()
}

/// A value a record is sorted by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SortValue<'a> {
    Int(i64),
    Text(Option<&'a str>),
    Time(Timestamp),
}

impl SortValue<'_> {
    /// Ascending order; a missing text sorts after every present one, as PostgreSQL's `NULLS LAST` does
    /// (so descending puts it first, as PostgreSQL does too).
    fn compare(&self, other: &Self) -> Ordering {
        match (self, other) {
            (SortValue::Int(a), SortValue::Int(b)) => a.cmp(b),
            (SortValue::Time(a), SortValue::Time(b)) => a.cmp(b),
            (SortValue::Text(a), SortValue::Text(b)) => match (a, b) {
                (Some(a), Some(b)) => a.cmp(b),
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
            },
            _ => Ordering::Equal,
        }
    }
}

/// A record a list endpoint can filter and sort.
pub(crate) trait Listed {
    /// The fields `ordering` may name.
    const ORDERING_FIELDS: &'static [&'static str];
    fn id(&self) -> i64;
    /// Whether one lowercased search term is a substring of one of the searched fields.
    fn matches(&self, term: &str) -> bool;
    /// The value of one of [`Self::ORDERING_FIELDS`].
    fn sort_value(&self, field: &str) -> SortValue<'_>;
}

/// Filters, sorts (ties broken by id, so pages are stable) and cuts out the requested page.
pub(crate) fn select<'a, T: Listed>(rows: &'a [T], query: &ListQuery) -> Result<(Vec<&'a T>, PageWindow), InvalidPage> {
    let mut hits: Vec<&T> = rows.iter().filter(|row| query.search.iter().all(|term| row.matches(term))).collect();
    let keys = parse_ordering(query.ordering.as_deref(), T::ORDERING_FIELDS);
    if !keys.is_empty() {
        hits.sort_by(|a, b| {
            keys.iter()
                .map(|(field, descending)| {
                    let order = a.sort_value(field).compare(&b.sort_value(field));
                    if *descending { order.reverse() } else { order }
                })
                .find(|order| order.is_ne())
                .unwrap_or_else(|| a.id().cmp(&b.id()))
        });
    }
    let window = paginate(hits.len(), query.page_size, query.page.as_deref())?;
    let page = hits.get(window.start..window.end).map(<[&T]>::to_vec).unwrap_or_default();
    Ok((page, window))
}

/// The requested page does not exist (DRF answers 404 `{"detail": "Invalid page."}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidPage;

/// Where a page sits in the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageWindow {
    pub(crate) count: usize,
    pub(crate) number: usize,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) has_next: bool,
}

/// Django's `Paginator` with `allow_empty_first_page`: page 1 of nothing exists; `last` names the last page;
/// anything else must be an integer from 1 to the page count.
pub(crate) fn paginate(count: usize, page_size: usize, page: Option<&str>) -> Result<PageWindow, InvalidPage> {
    let page_size = page_size.max(1);
    let pages = count.div_ceil(page_size).max(1);
    let number = match page.map(str::trim) {
        None => 1,
        Some("last") => pages,
        Some(raw) => raw.parse::<usize>().map_err(|_| InvalidPage)?,
    };
    if number == 0 || number > pages {
        return Err(InvalidPage);
    }
    let start = (number - 1) * page_size;
    Ok(PageWindow { count, number, start, end: (start + page_size).min(count), has_next: number < pages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_keeps_known_fields_in_order_and_drops_unknown_ones() {
        let allowed = ["id", "name", "email", "created", "updated"];
        assert_eq!(
            parse_ordering(Some("-updated, name,bogus,-password,"), &allowed),
            vec![("updated", true), ("name", false)]
        );
        assert!(parse_ordering(Some("bogus"), &allowed).is_empty());
        assert!(parse_ordering(None, &allowed).is_empty());
    }

    #[test]
    fn page_size_falls_back_on_garbage_and_is_capped() {
        let q = |raw: &str| ListQuery::from_pairs([("page_size", raw)], 100).page_size;
        assert_eq!(q("5"), 5);
        assert_eq!(q("0"), 100);
        assert_eq!(q("-3"), 100);
        assert_eq!(q("many"), 100);
        assert_eq!(q("5000"), MAX_PAGE_SIZE);
    }

    #[test]
    fn repeated_parameters_take_the_last_value_and_search_splits_terms() {
        let q = ListQuery::from_pairs([("page", "1"), ("page", "2"), ("search", "Acme, corp  Inc")], 100);
        assert_eq!(q.page.as_deref(), Some("2"));
        assert_eq!(q.search, vec!["acme", "corp", "inc"]);
    }

    #[test]
    fn pagination_accepts_first_last_and_middle_pages() {
        assert_eq!(paginate(25, 10, None), Ok(PageWindow { count: 25, number: 1, start: 0, end: 10, has_next: true }));
        assert_eq!(
            paginate(25, 10, Some("3")),
            Ok(PageWindow { count: 25, number: 3, start: 20, end: 25, has_next: false })
        );
        assert_eq!(paginate(25, 10, Some("last")).map(|w| w.number), Ok(3));
        assert_eq!(paginate(0, 10, Some("1")).map(|w| (w.start, w.end)), Ok((0, 0)));
    }

    #[test]
    fn pagination_rejects_zero_beyond_last_and_garbage() {
        for page in ["0", "4", "-1", "two", "1.5", ""] {
            assert_eq!(paginate(25, 10, Some(page)), Err(InvalidPage), "page {page:?}");
        }
        assert_eq!(paginate(0, 10, Some("2")), Err(InvalidPage));
    }

    #[test]
    fn missing_text_sorts_last_ascending() {
        let a = SortValue::Text(None);
        let b = SortValue::Text(Some("a"));
        assert_eq!(a.compare(&b), Ordering::Greater);
        assert_eq!(b.compare(&a), Ordering::Less);
    }
}
