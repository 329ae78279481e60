//! Settling the day/month order of date attributes whose mapping does not give `date_order`.
//!
//! `05/03/2024` is 5 March in London and May 3 in New York, and an export says nothing about its locale.
//! Reading each value in whichever order works would put both readings in one column without a word, so a
//! field has one order for the whole run: the one its first rows show (a day over 12 settles it), month
//! first when they show none. A later date that only reads the other way fails its row, naming the order
//! and how to set it (see `convert::wrong_order`). A warning says when the order was guessed.
//!
//! An export writes all its dates one way: a CRM formats every date column with the same locale. So a
//! field whose first rows only hold dates that read either way (`05/04/2024`) takes the order another date
//! field of the same input proves (`25/03/2024` in `Create Date`), instead of a guess that would read one
//! column of a UK export day first and the next month first. When fields prove different orders, the input
//! is no such export: each keeps its own, and a warning says so.

use std::fmt::Write as _;

use super::convert::{OrderEvidence, OrderFrom, order_evidence};
use super::field::Field;
use super::mapper::Mapper;
use super::spec::{AttrType, DateOrder};
use crate::source::Record;

/// How many records are read ahead to settle the order, when a field needs it.
pub const SAMPLE: usize = 1000;

/// The first value of one kind, for the warning.
struct First {
    line: u64,
    value: String,
    count: usize,
}

/// What one field's first rows say about its order.
#[derive(Default)]
struct Evidence {
    day_first: Option<First>,
    month_first: Option<First>,
    either: Option<First>,
}

impl Evidence {
    fn gather<'r>(field: &Field, sample: impl Iterator<Item = &'r Record>) -> Evidence {
        let mut e = Evidence::default();
        for record in sample {
            let value = field.value(record);
            let slot = match order_evidence(&value) {
                Some(OrderEvidence::DayFirst) => &mut e.day_first,
                Some(OrderEvidence::MonthFirst) => &mut e.month_first,
                Some(OrderEvidence::Either) => &mut e.either,
                None => continue,
            };
            match slot {
                Some(first) => first.count += 1,
                None => *slot = Some(First { line: record.line, value: value.into_owned(), count: 1 }),
            }
        }
        e
    }

    /// The order these rows prove, and the first date that does: one order only, never both.
    fn proof(&self) -> Option<(DateOrder, &First)> {
        match (&self.day_first, &self.month_first) {
            (Some(d), None) => Some((DateOrder::Dmy, d)),
            (None, Some(m)) => Some((DateOrder::Mdy, m)),
            _ => None,
        }
    }
}

/// A field whose first rows prove an order, for the other fields of the input and the warnings.
struct Proof {
    label: String,
    order: DateOrder,
    line: u64,
    value: String,
}

impl Mapper {
    /// Whether a date attribute's order is still to be settled from the first rows.
    pub(crate) fn needs_order_sample(&self) -> bool {
        self.date_fields().next().is_some()
    }

    /// Settles the order of each date attribute with none given, from `sample` (the first records);
    /// returns the warnings to show.
    pub(crate) fn settle_date_orders<'r>(&mut self, sample: impl Iterator<Item = &'r Record> + Clone) -> Vec<String> {
        let evidence: Vec<Evidence> = self.date_fields().map(|f| Evidence::gather(f, sample.clone())).collect();
        let proofs: Vec<Proof> = self
            .date_fields()
            .zip(&evidence)
            .filter_map(|(f, e)| {
                let (order, first) = e.proof()?;
                Some(Proof { label: f.label.clone(), order, line: first.line, value: first.value.clone() })
            })
            .collect();
        // The input's order: the one every proving field shows. Fields that show only a mix of both orders
        // prove nothing for the others.
        let agreed = match proofs.split_first() {
            Some((first, rest)) if rest.iter().all(|p| p.order == first.order) => Some(first),
            _ => None,
        };
        let mut warnings = Vec::new();
        if agreed.is_none() && !proofs.is_empty() {
            warnings.push(disagreement(&proofs));
        }
        for (field, e) in self.date_fields_mut().zip(evidence) {
            if let Some(w) = settle(field, e, agreed) {
                warnings.push(w);
            }
        }
        warnings
    }

    fn date_fields(&self) -> impl Iterator<Item = &Field> {
        let company = self.company.iter().flat_map(|c| c.attrs.fields.iter());
        let contact = self.contact.iter().flat_map(|c| c.attrs.fields.iter());
        company.chain(contact).map(|(_, f)| f).filter(|f| unsettled(f))
    }

    fn date_fields_mut(&mut self) -> impl Iterator<Item = &mut Field> {
        let company = self.company.iter_mut().flat_map(|c| c.attrs.fields.iter_mut());
        let contact = self.contact.iter_mut().flat_map(|c| c.attrs.fields.iter_mut());
        company.chain(contact).map(|(_, f)| f).filter(|f| unsettled(f))
    }
}

fn unsettled(f: &Field) -> bool {
    f.ty == Some(AttrType::Date) && f.type_opts.order_from == OrderFrom::Assumed
}

/// The warning for proving fields that disagree: the input holds dates written both ways.
fn disagreement(proofs: &[Proof]) -> String {
    let mut out = String::from("the input's date fields prove different day/month orders (");
    for (i, p) in proofs.iter().enumerate() {
        let sep = if i == 0 { "" } else { "; " };
        let _ = write!(out, "{sep}{}: {}, line {} '{}'", p.label, p.order.describe(), p.line, p.value);
    }
    out.push_str(
        "): each reads its own, and a date field whose first rows read either way is read month/day/year. Set \
         date_order on each date field to make them explicit",
    );
    out
}

fn settle(field: &mut Field, e: Evidence, agreed: Option<&Proof>) -> Option<String> {
    let label = &field.label;
    let opts = &mut field.type_opts;
    match (e.day_first, e.month_first) {
        (Some(d), None) => {
            opts.date_order = DateOrder::Dmy;
            opts.order_from = OrderFrom::Detected { line: d.line };
            Some(format!(
                "{label}: dates read day/month/year, as line {} ('{}') shows; set date_order = \"dmy\" on the field to \
                 make it explicit (a re-run of the failures file may hold no date that shows it)",
                d.line, d.value
            ))
        }
        (None, Some(m)) => {
            opts.date_order = DateOrder::Mdy;
            opts.order_from = OrderFrom::Detected { line: m.line };
            None
        }
        (Some(d), Some(m)) => {
            let (order, first) = if d.count > m.count { (DateOrder::Dmy, &d) } else { (DateOrder::Mdy, &m) };
            opts.date_order = order;
            opts.order_from = OrderFrom::Detected { line: first.line };
            Some(format!(
                "{label}: the first rows hold dates in both orders (day first: line {} '{}'; month first: line {} \
                 '{}'); reading {}, as most do: rows with a date only the other order reads fail. Set date_order \
                 on the field if that is wrong",
                d.line,
                d.value,
                m.line,
                m.value,
                order.describe()
            ))
        }
        (None, None) => match agreed {
            // Nothing of its own tells, another field of the input does: its order (a month-first one, like
            // one detected, without a warning; a day-first one announced, naming where it comes from).
            Some(p) => {
                opts.date_order = p.order;
                opts.order_from = OrderFrom::Borrowed { field: p.label.clone(), line: p.line };
                let either = e.either.filter(|_| p.order == DateOrder::Dmy)?;
                Some(format!(
                    "{label}: dates such as '{}' (line {}) read either way; reading day/month/year, as {} shows on \
                     line {} ('{}'), since an export writes all its dates one way. Set date_order = \"dmy\" on the \
                     field to make it explicit (a re-run of the failures file may hold no date that shows it)",
                    either.value, either.line, p.label, p.line, p.value
                ))
            }
            None => e.either.map(|e| {
                format!(
                    "{label}: dates such as '{}' (line {}) read either way, and the first rows hold none that tells: \
                     reading month/day/year; set date_order = \"dmy\" on the field if the column is day first",
                    e.value, e.line
                )
            }),
        },
    }
}
