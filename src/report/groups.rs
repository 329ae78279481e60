//! Failures grouped by reason ("contact.email: invalid email address") with a count and the first few line
//! numbers of each: what a person needs to find and fix a class of bad rows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many example line numbers each group keeps.
pub const EXAMPLE_LINES: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub count: u64,
    pub first_lines: Vec<u64>,
}

/// Reason → group, in a stable order. Memory is bounded by the number of distinct reasons, not rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Groups(BTreeMap<String, Group>);

impl Groups {
    pub fn add(&mut self, reason: String, line: u64) {
        let g = self.0.entry(reason).or_default();
        g.count += 1;
        if g.first_lines.len() < EXAMPLE_LINES {
            g.first_lines.push(line);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sum of every group's count.
    pub fn total(&self) -> u64 {
        self.0.values().map(|g| g.count).sum()
    }

    /// Groups, most frequent first.
    pub fn by_count(&self) -> Vec<(&str, &Group)> {
        let mut v: Vec<(&str, &Group)> = self.0.iter().map(|(k, g)| (k.as_str(), g)).collect();
        v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        v
    }
}

/// "line 4" / "lines 4, 9, 17, …".
pub fn describe_lines(g: &Group) -> String {
    let shown: Vec<String> = g.first_lines.iter().map(u64::to_string).collect();
    let more = if g.count as usize > g.first_lines.len() { ", …" } else { "" };
    if g.count == 1 { format!("line {}", shown.join(", ")) } else { format!("lines {}{more}", shown.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_counts_and_first_lines() {
        let mut g = Groups::default();
        for line in 1..=8 {
            g.add("a".into(), line);
        }
        g.add("b".into(), 3);
        let v = g.by_count();
        assert_eq!(v[0].0, "a");
        assert_eq!(v[0].1.count, 8);
        assert_eq!(describe_lines(v[0].1), "lines 1, 2, 3, 4, 5, …");
        assert_eq!(describe_lines(v[1].1), "line 3");
    }
}
