//! The fields of one CSV record, checked to be UTF-8, in one buffer.
//!
//! Why not `csv::StringRecord`: every record of an import becomes one of these, and a `StringRecord` costs
//! three allocations (its box and two vectors) and a UTF-8 check per field. Here the reader parses into one
//! reused `ByteRecord`, checks the record's bytes once (the whole buffer, then that every field boundary
//! falls between characters, which together mean every field is UTF-8), and copies them into one string;
//! fields are slices of it.

use std::fmt;

use csv::ByteRecord;

/// The fields of a CSV record as text.
#[derive(Clone, PartialEq, Eq)]
pub struct CsvFields {
    /// Every field, one after the other.
    text: Box<str>,
    /// Where each field ends in `text`.
    ends: Box<[u32]>,
}

impl CsvFields {
    /// The fields of `record` when they are all UTF-8 (`None` when one is not). Records beyond 4 GiB are
    /// refused too, as if not UTF-8: their offsets would not fit.
    pub fn from_byte_record(record: &ByteRecord) -> Option<CsvFields> {
        // SIMD validation: several times faster than `str::from_utf8` on text with accents or CJK.
        let text = simdutf8::basic::from_utf8(record.as_slice()).ok()?;
        u32::try_from(text.len()).ok()?;
        let mut ends = Vec::with_capacity(record.len());
        let mut end = 0;
        for field in record {
            end += field.len();
            if !text.is_char_boundary(end) {
                return None;
            }
            ends.push(end as u32);
        }
        Some(CsvFields { text: text.into(), ends: ends.into_boxed_slice() })
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `i`, `None` past the last.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..end)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }

    /// The same fields as bytes, for the failures file.
    pub fn to_byte_record(&self) -> ByteRecord {
        let mut out = ByteRecord::with_capacity(self.text.len(), self.len());
        for f in self.iter() {
            out.push_field(f.as_bytes());
        }
        out
    }
}

impl From<csv::StringRecord> for CsvFields {
    fn from(record: csv::StringRecord) -> CsvFields {
        CsvFields::from_byte_record(record.as_byte_record()).expect("a StringRecord is UTF-8")
    }
}

impl fmt::Debug for CsvFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_slices_of_one_checked_text() {
        let r = ByteRecord::from(vec!["a", "", "zoë", "東京"]);
        let f = CsvFields::from_byte_record(&r).unwrap();
        assert_eq!(f.iter().collect::<Vec<_>>(), vec!["a", "", "zoë", "東京"]);
        assert_eq!(f.get(4), None);
        assert_eq!(f.to_byte_record(), r);
        assert!(CsvFields::from_byte_record(&ByteRecord::new()).unwrap().is_empty());
    }

    #[test]
    fn a_character_split_across_two_fields_is_not_utf8() {
        // Together the bytes are "é"; each field alone is invalid.
        let r = ByteRecord::from(vec![&b"x\xC3"[..], &b"\xA9"[..]]);
        assert!(std::str::from_utf8(r.as_slice()).is_ok());
        assert_eq!(CsvFields::from_byte_record(&r), None);
        assert_eq!(CsvFields::from_byte_record(&ByteRecord::from(vec![&b"Z\xfcrich"[..]])), None);
    }
}
