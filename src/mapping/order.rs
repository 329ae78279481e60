//! Settling the day/month order of date attributes whose mapping does not give `date_order`.
//!
//! `05/03/2024` is 5 March in London and May 3 in New York, and an export says nothing about its locale.
//! Reading each value in whichever order works would put both readings in one column without a word, so a
//! field has one order for the whole run: the one its first rows show (a day over 12 settles it), month
//! first when they show none. A later date that only reads the other way fails its row, naming the order
//! and how to set it (see `convert::wrong_order`). A warning says when the order was guessed.

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

impl Mapper {
    /// Whether a date attribute's order is still to be settled from the first rows.
    pub(crate) fn needs_order_sample(&self) -> bool {
        self.date_fields().next().is_some()
    }

    /// Settles the order of each date attribute with none given, from `sample` (the first records);
    /// returns the warnings to show.
    pub(crate) fn settle_date_orders<'r>(&mut self, sample: impl Iterator<Item = &'r Record> + Clone) -> Vec<String> {
        let mut warnings = Vec::new();
        for field in self.date_fields_mut() {
            if let Some(w) = settle(field, sample.clone()) {
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

fn settle<'r>(field: &mut Field, sample: impl Iterator<Item = &'r Record>) -> Option<String> {
    let (mut day_first, mut month_first, mut either) = (None::<First>, None::<First>, None::<First>);
    for record in sample {
        let value = field.value(record);
        let slot = match order_evidence(&value) {
            Some(OrderEvidence::DayFirst) => &mut day_first,
            Some(OrderEvidence::MonthFirst) => &mut month_first,
            Some(OrderEvidence::Either) => &mut either,
            None => continue,
        };
        match slot {
            Some(first) => first.count += 1,
            None => *slot = Some(First { line: record.line, value: value.into_owned(), count: 1 }),
        }
    }
    let label = &field.label;
    let opts = &mut field.type_opts;
    match (day_first, month_first) {
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
            let read = if order == DateOrder::Dmy { "day/month/year" } else { "month/day/year" };
            Some(format!(
                "{label}: the first rows hold dates in both orders (day first: line {} '{}'; month first: line {} \
                 '{}'); reading {read}, as most do: rows with a date only the other order reads fail. Set date_order \
                 on the field if that is wrong",
                d.line, d.value, m.line, m.value
            ))
        }
        (None, None) => either.map(|e| {
            format!(
                "{label}: dates such as '{}' (line {}) read either way, and the first rows hold none that tells: \
                 reading month/day/year; set date_order = \"dmy\" on the field if the column is day first",
                e.value, e.line
            )
        }),
    }
}
