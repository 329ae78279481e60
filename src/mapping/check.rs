//! Checks Savio would otherwise make on its side, made here so a bad row fails before it costs a request:
//! email syntax and the enumerated values of `feedback_type` and `state`.

/// A practical email syntax check: what a CRM would hold for a deliverable address.
///
/// `local@domain` with one `@`; no whitespace, control characters or `<>()[],;:"\` in the local part (quoted
/// local parts are not accepted: no CRM exports them); no leading, trailing or double dot; the domain has at
/// least two labels of letters, digits and hyphens (any script), none starting or ending with a hyphen, and
/// the last label is at least two characters. At most 254 characters in all, 64 before the `@`.
pub(crate) fn is_valid_email(s: &str) -> bool {
    // One pass over each side instead of a dozen `contains`/`split`/`chars` scans: this runs on every row.
    if s.len() > 254 {
        return false;
    }
    let Some(at) = memchr::memchr(b'@', s.as_bytes()) else {
        return false;
    };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    !local.is_empty() && local.len() <= 64 && local_ok(local) && domain_ok(domain)
}

/// No whitespace, control or `<>()[],;:"\` characters; no leading, trailing or double dot.
fn local_ok(local: &str) -> bool {
    let b = local.as_bytes();
    if b[0] == b'.' || b[b.len() - 1] == b'.' {
        return false;
    }
    let mut prev_dot = false;
    if local.is_ascii() {
        // The same rules as below, on bytes.
        for &c in b {
            let bad = c.is_ascii_control()
                || matches!(c, b' ' | b'<' | b'>' | b'(' | b')' | b'[' | b']' | b',' | b';' | b':' | b'"' | b'\\');
            if bad || (c == b'.' && prev_dot) {
                return false;
            }
            prev_dot = c == b'.';
        }
        return true;
    }
    for c in local.chars() {
        let bad = if c.is_ascii() {
            // ASCII whitespace other than the space is a control character.
            c.is_ascii_control() || matches!(c, ' ' | '<' | '>' | '(' | ')' | '[' | ']' | ',' | ';' | ':' | '"' | '\\')
        } else {
            c.is_whitespace() || c.is_control()
        };
        if bad || (c == '.' && prev_dot) {
            return false;
        }
        prev_dot = c == '.';
    }
    true
}

/// At least two labels of letters, digits and hyphens (any script), none empty, longer than 63 bytes, or
/// starting or ending with a hyphen; the last at least two characters and not all digits.
fn domain_ok(domain: &str) -> bool {
    let Some(dot) = memchr::memrchr(b'.', domain.as_bytes()) else {
        return false;
    };
    let tld = &domain[dot + 1..];
    if !domain.is_ascii() {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        return domain.split('.').all(label_ok) && tld.chars().count() >= 2 && !tld.bytes().all(|b| b.is_ascii_digit());
    }
    let label_ok = |l: &[u8]| {
        !l.is_empty()
            && l.len() <= 63
            && l[0] != b'-'
            && l[l.len() - 1] != b'-'
            && l.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    domain.as_bytes().split(|c| *c == b'.').all(label_ok) && tld.len() >= 2 && !tld.bytes().all(|b| b.is_ascii_digit())
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

    /// The check as first written (several passes), kept as the oracle for the one-pass version.
    fn reference_email(s: &str) -> bool {
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

    #[test]
    fn one_pass_email_check_agrees_with_the_reference() {
        let pieces = [
            "a", "b", "Z", "ë", "é", ".", "..", "@", "-", "_", "+", "'", " ", "\u{a0}", "\u{2003}", "\t", "\u{85}",
            "<", ",", "\\", "\"", "1", "23", "co", "de", "x-y", "ü", "\u{1}", "\u{7f}", "ß", "\u{300}",
        ];
        let mut n = 0;
        // Every string of up to 4 pieces around an '@' (and without one), plus longer labels.
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        for s in [
                            format!("{a}{b}@{c}.{d}"),
                            format!("{a}@{b}{c}{d}"),
                            format!("{a}{b}{c}@{d}"),
                            format!("{a}.{b}@{c}{d}.{a}"),
                            format!("{a}{b}{c}{d}"),
                        ] {
                            assert_eq!(is_valid_email(&s), reference_email(&s), "{s:?}");
                            n += 1;
                        }
                    }
                }
            }
        }
        assert!(n > 100_000);
        for s in [
            format!("{}@b.co", "a".repeat(64)),
            format!("a@{}.co", "b".repeat(63)),
            format!("a@{}.co", "b".repeat(64)),
            format!("a@b.{}", "c".repeat(300)),
            "zoë.müller3@example.com".to_string(),
            "a@bü.ç".to_string(),
            "a@b.1ü".to_string(),
        ] {
            assert_eq!(is_valid_email(&s), reference_email(&s), "{s:?}");
        }
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
