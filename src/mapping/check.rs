//! Checks Savio would otherwise make on its side, made here so a bad row fails before it costs a request:
//! email syntax and the enumerated values of `feedback_type` and `state`.

/// A practical email syntax check: what a CRM would hold for a deliverable address.
///
/// `local@domain` with one `@`; no whitespace, control characters or `<>()[],;:"\` in the local part (quoted
/// local parts are not accepted: no CRM exports them); no leading, trailing or double dot; the domain has at
/// least two labels of letters, digits and hyphens (any script), none starting or ending with a hyphen, and
/// the last label is at least two characters. At most 254 characters in all, 64 before the `@`.
pub(crate) fn is_valid_email(s: &str) -> bool {
    if s.len() > 254 {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.contains('@') {
        return false;
    }
    let bad_local = |c: char| c.is_whitespace() || c.is_control() || "<>()[],;:\"\\".contains(c);
    if local.chars().any(bad_local) || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    let Some((_, tld)) = domain.rsplit_once('.') else { return false };
    domain.split('.').all(label_ok) && tld.chars().count() >= 2 && !tld.chars().all(|c| c.is_ascii_digit())
}

/// The accepted values of an enumerated field, matched leniently: case, and `_`/`-`/space, do not matter, so
/// `lost_deal`, `Lost Deal` and `LOST-DEAL` all become Savio's `LOST DEAL`.
#[derive(Debug, Clone)]
pub(crate) struct Choices {
    canonical: Vec<String>,
}

impl Choices {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(values: I) -> Choices {
        let mut canonical: Vec<String> = Vec::new();
        for v in values {
            let v = v.as_ref().trim().to_string();
            if !v.is_empty() && !canonical.iter().any(|c| fold(c) == fold(&v)) {
                canonical.push(v);
            }
        }
        Choices { canonical }
    }

    /// The canonical spelling of `value`, if it is one of the choices.
    pub fn resolve(&self, value: &str) -> Option<&str> {
        let f = fold(value);
        self.canonical.iter().find(|c| fold(c) == f).map(String::as_str)
    }

    pub fn list(&self) -> String {
        self.canonical.join(", ")
    }
}

fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split(|c: char| c.is_whitespace() || c == '_' || c == '-').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FEEDBACK_TYPES;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@sub.example.com", "zoë@exämple.de", "o'brien@x.io", "a_b-c@d-e.fr"] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@b.co",
            "a@b",
            "a@@b.co",
            "a b@c.co",
            "a@b..co",
            ".a@b.co",
            "a.@b.co",
            "a..b@c.co",
            "a@-b.co",
            "a@b-.co",
            "a@b.c",
            "a@b.123",
            "<a@b.co>",
            "a,b@c.co",
            "a@b.co ",
        ] {
            assert!(!is_valid_email(bad), "{bad:?}");
        }
        assert!(!is_valid_email(&format!("{}@b.co", "a".repeat(65))));
    }

    #[test]
    fn choices_fold_case_and_separators() {
        let c = Choices::new(FEEDBACK_TYPES);
        assert_eq!(c.resolve("lost_deal"), Some("LOST DEAL"));
        assert_eq!(c.resolve(" Lost-Deal "), Some("LOST DEAL"));
        assert_eq!(c.resolve("active"), Some("ACTIVE"));
        assert_eq!(c.resolve("customer"), None);
        let extended = Choices::new(FEEDBACK_TYPES.iter().copied().chain(["BETA"]));
        assert_eq!(extended.resolve("beta"), Some("BETA"));
    }
}
