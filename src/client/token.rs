//! The Savio API token as a type that cannot leak by accident.
//!
//! The token grants write access to a customer's whole Savio account, so it must never reach a log line, an
//! error message, a report or a panic. [`ApiToken`] prints as `<redacted>` in every format, validation errors
//! name the position and class of a bad character but never the character itself, and the only way to read
//! the value is the explicit [`ApiToken::expose`].

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable [`ApiToken::from_env`] reads.
pub const TOKEN_ENV_VAR: &str = "SAVIO_API_TOKEN";

/// A validated Savio API token: non-empty, visible ASCII only (`!` to `~`), so it is always a valid HTTP
/// header value and never carries stray whitespace from a copy-paste.
#[derive(Clone)]
pub struct ApiToken(String);

/// Where a token came from, so an error can say which input to fix without showing the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    /// Passed in directly (a flag or a config value).
    Given,
    /// Read from an environment variable.
    Env(&'static str),
    /// Read from a file.
    File(PathBuf),
}

impl fmt::Display for TokenOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenOrigin::Given => f.write_str("given"),
            TokenOrigin::Env(var) => write!(f, "in ${var}"),
            TokenOrigin::File(path) => write!(f, "in {}", path.display()),
        }
    }
}

/// Why a token could not be obtained. No variant ever holds the token or a piece of it.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the Savio API token {origin} is empty")]
    Empty { origin: TokenOrigin },
    #[error(
        "the Savio API token {origin} contains {what} at byte {position}; a token is visible ASCII only \
         (copy it again from Savio's API Settings page)"
    )]
    InvalidChar {
        origin: TokenOrigin,
        what: &'static str,
        /// 1-based byte position of the first bad character.
        position: usize,
    },
    #[error(
        "the Savio API token {origin} starts with \"{scheme} \", the Authorization header's scheme: keep only \
         the token itself (savio-sync sends \"Authorization: Token ...\" on its own)"
    )]
    Prefixed {
        origin: TokenOrigin,
        /// `Token` or `Bearer`, as written.
        scheme: String,
    },
    #[error("${var} is not set; export the Savio API token there or read it from a file")]
    EnvMissing { var: &'static str },
    #[error("cannot read the Savio API token file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ApiToken {
    /// Validates a token given directly. One trailing line break (`\n` or `\r\n`) is dropped, as left by
    /// `echo` or a here-string; anything else that is not visible ASCII is refused.
    pub fn new(token: String) -> Result<ApiToken, TokenError> {
        Self::validated(token, TokenOrigin::Given)
    }

    /// Reads the token from `$SAVIO_API_TOKEN`.
    pub fn from_env() -> Result<ApiToken, TokenError> {
        Self::from_env_value(TOKEN_ENV_VAR, std::env::var_os(TOKEN_ENV_VAR))
    }

    /// Reads the token from a file, ignoring whitespace around it (an editor's final newline, a pasted
    /// indent). On unix a file readable by group or others is accepted with a warning, since refusing would
    /// break existing setups but the user should know.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ApiToken, TokenError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| TokenError::Read { path: path.to_path_buf(), source })?;
        warn_if_shared(path);
        let origin = TokenOrigin::File(path.to_path_buf());
        Self::from_bytes(bytes.trim_ascii(), origin)
    }

    /// The token itself, for the `Authorization` header. Every call site is a place the secret leaves this
    /// type: keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// An environment variable's value, whitespace around it ignored as in a file.
    pub(crate) fn from_env_value(var: &'static str, value: Option<OsString>) -> Result<ApiToken, TokenError> {
        let value = value.ok_or(TokenError::EnvMissing { var })?;
        Self::from_bytes(value.as_encoded_bytes().trim_ascii(), TokenOrigin::Env(var))
    }

    fn validated(mut token: String, origin: TokenOrigin) -> Result<ApiToken, TokenError> {
        if token.ends_with('\n') {
            token.pop();
            if token.ends_with('\r') {
                token.pop();
            }
        }
        check(token.as_bytes(), &origin)?;
        Ok(ApiToken(token))
    }

    fn from_bytes(bytes: &[u8], origin: TokenOrigin) -> Result<ApiToken, TokenError> {
        let token = String::from_utf8(bytes.to_vec()).map_err(|e| TokenError::InvalidChar {
            what: "a non-UTF-8 byte",
            position: e.utf8_error().valid_up_to() + 1,
            origin: origin.clone(),
        })?;
        Self::validated(token, origin)
    }
}

/// The schemes of an `Authorization` header, which a token copied from a curl example carries in front.
const SCHEMES: [&str; 2] = ["Token", "Bearer"];

fn check(bytes: &[u8], origin: &TokenOrigin) -> Result<(), TokenError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(TokenError::Empty { origin: origin.clone() });
    }
    // Refused rather than stripped: a token that really starts that way cannot hold a space, so nothing valid
    // is refused, and the file (or variable) gets fixed instead of a warning repeated every night.
    for scheme in SCHEMES {
        if let Some(head) = bytes.get(..=scheme.len())
            && head[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
            && head[scheme.len()].is_ascii_whitespace()
        {
            let scheme = String::from_utf8_lossy(&head[..scheme.len()]).into_owned();
            return Err(TokenError::Prefixed { origin: origin.clone(), scheme });
        }
    }
    match bytes.iter().position(|b| !b.is_ascii_graphic()) {
        None => Ok(()),
        Some(i) => Err(TokenError::InvalidChar { what: describe(bytes[i]), position: i + 1, origin: origin.clone() }),
    }
}

/// Names the class of a refused byte; the byte itself could be part of the secret.
fn describe(byte: u8) -> &'static str {
    match byte {
        b' ' => "a space",
        b'\t' => "a tab",
        b'\n' | b'\r' => "a line break",
        b if b.is_ascii_control() => "a control character",
        _ => "a non-ASCII character",
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o044 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "the Savio API token file is readable by other users; consider `chmod 600`"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl fmt::Display for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-T0ken_value";

    fn shows_no_secret(err: &TokenError) {
        let text = format!("{err} {err:?}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let token = ApiToken::new(SECRET.to_owned()).unwrap();
        assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
        assert_eq!(format!("{token}"), "<redacted>");
        assert_eq!(format!("{token:#?}"), "ApiToken(<redacted>)");
        assert_eq!(token.expose(), SECRET);
    }

    #[test]
    fn one_trailing_line_break_is_dropped() {
        assert_eq!(ApiToken::new(format!("{SECRET}\n")).unwrap().expose(), SECRET);
        assert_eq!(ApiToken::new(format!("{SECRET}\r\n")).unwrap().expose(), SECRET);
    }

    #[test]
    fn empty_and_blank_tokens_are_refused() {
        for value in ["", "\n", "   ", "\t\r\n"] {
            let err = ApiToken::new(value.to_owned()).unwrap_err();
            assert!(matches!(err, TokenError::Empty { .. }), "{value:?}: {err:?}");
        }
    }

    #[test]
    fn bad_characters_are_refused_by_class_and_position_only() {
        let cases = [
            (format!(" {SECRET}"), "a space", 1),
            (format!("{SECRET} "), "a space", SECRET.len() + 1),
            ("s3cr3t\nT0ken".to_owned(), "a line break", 7),
            (format!("{SECRET}\n\n"), "a line break", SECRET.len() + 1),
            ("s3cr3t\u{7f}x".to_owned(), "a control character", 7),
            ("s3cr3t\u{e9}x".to_owned(), "a non-ASCII character", 7),
        ];
        for (value, what, position) in cases {
            let err = ApiToken::new(value.clone()).unwrap_err();
            match &err {
                TokenError::InvalidChar { what: w, position: p, .. } => {
                    assert_eq!((*w, *p), (what, position), "{value:?}");
                }
                other => panic!("{value:?}: {other:?}"),
            }
            shows_no_secret(&err);
        }
    }

    #[test]
    fn env_value_is_validated_and_missing_var_is_named() {
        let err = ApiToken::from_env_value("SAVIO_TEST_TOKEN", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "$SAVIO_TEST_TOKEN is not set; export the Savio API token there or read it from a file"
        );
        let token = ApiToken::from_env_value("SAVIO_TEST_TOKEN", Some(format!("{SECRET}\n").into())).unwrap();
        assert_eq!(token.expose(), SECRET);
        let err = ApiToken::from_env_value("SAVIO_TEST_TOKEN", Some("a b".into())).unwrap_err();
        assert!(err.to_string().contains("in $SAVIO_TEST_TOKEN"), "{err}");
    }

    #[test]
    fn file_token_ignores_trailing_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("{SECRET}  \n\n")).unwrap();
        assert_eq!(ApiToken::from_file(&path).unwrap().expose(), SECRET);

        std::fs::write(&path, b"s3cr3t\xffx").unwrap();
        let err = ApiToken::from_file(&path).unwrap_err();
        assert!(matches!(err, TokenError::InvalidChar { what: "a non-UTF-8 byte", position: 7, .. }), "{err:?}");
        shows_no_secret(&err);
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn file_and_env_tokens_ignore_surrounding_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("  {SECRET} \r\n")).unwrap();
        assert_eq!(ApiToken::from_file(&path).unwrap().expose(), SECRET);
        std::fs::write(&path, format!("\n\t{SECRET}\n")).unwrap();
        assert_eq!(ApiToken::from_file(&path).unwrap().expose(), SECRET);
        let token = ApiToken::from_env_value("SAVIO_TEST_TOKEN", Some(format!(" {SECRET} ").into())).unwrap();
        assert_eq!(token.expose(), SECRET);
    }

    #[test]
    fn a_token_copied_with_its_header_scheme_is_refused_saying_to_drop_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        for (text, scheme) in [
            (format!("Token {SECRET}\n"), "Token"),
            (format!(" token  {SECRET}"), "token"),
            (format!("Bearer\t{SECRET}"), "Bearer"),
        ] {
            std::fs::write(&path, &text).unwrap();
            let err = ApiToken::from_file(&path).unwrap_err();
            assert!(matches!(&err, TokenError::Prefixed { scheme: s, .. } if s == scheme), "{text:?}: {err:?}");
            let shown = err.to_string();
            assert!(shown.contains(&format!("starts with \"{scheme} \"")), "{shown}");
            assert!(shown.contains("keep only the token itself"), "{shown}");
            assert!(shown.contains(&path.display().to_string()), "{shown}");
            shows_no_secret(&err);
        }
        let err = ApiToken::from_env_value("SAVIO_TEST_TOKEN", Some(format!("Token {SECRET}").into())).unwrap_err();
        assert!(matches!(err, TokenError::Prefixed { .. }), "{err:?}");
        shows_no_secret(&err);
        // A token that merely starts with those letters is a token.
        for plain in ["Tokenizer-abc", "bearer_xyz"] {
            assert_eq!(ApiToken::new(plain.to_owned()).unwrap().expose(), plain);
        }
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing");
        let err = ApiToken::from_file(&path).unwrap_err();
        assert!(matches!(err, TokenError::Read { .. }));
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
