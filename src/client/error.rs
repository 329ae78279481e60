//! What can go wrong talking to Savio, as typed facts the writer can act on.
//!
//! [`SendError`] describes one failed HTTP attempt precisely enough to decide whether repeating it is safe
//! (see [`super::retry::classify`]): was anything sent, may the server have applied it, what did it answer.
//! [`ClientError`] covers everything else: an unusable configuration and listing problems. Every message names
//! the endpoint; none contains the API token (the token travels only in a header, URLs never hold it, and
//! server bodies are scrubbed of it before they are stored).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::retry::RetryAfter;

/// The error `Url::parse` returns, named without a direct dependency on the `url` crate.
pub type UrlParseError = <Url as std::str::FromStr>::Err;

/// A request's method and URL, as shown in messages: `POST /app/api/users/` (path and query only, the host is
/// the configured one). The URL never holds credentials or a fragment. Shared (an `Arc`) to keep errors small
/// and clones cheap: the writer builds one per endpoint and clones it into every error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    method: &'static str,
    url: Arc<Url>,
}

impl Endpoint {
    pub(crate) fn new(method: &'static str, url: &Url) -> Endpoint {
        Endpoint { method, url: Arc::new(scrubbed(url)) }
    }

    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The full URL requested (scheme and host included), without user info or fragment.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url.path())?;
        if let Some(query) = self.url.query() {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

/// A URL fit for messages: no user info, no fragment.
pub(crate) fn scrubbed(url: &Url) -> Url {
    let mut url = url.clone();
    // Both only fail for URLs that cannot have user info (cannot-be-a-base), where there is nothing to remove.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    url
}

/// `scheme://host[:port]` of a URL: what decides where the token may go.
pub(crate) fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// What the HTTP stack said about a failed exchange (reqwest's or the writer's own connections' error).
pub type TransportError = Box<dyn std::error::Error + Send + Sync>;

/// One HTTP attempt that did not end in a 2xx answer. The variants are chosen by what they imply for a retry:
/// whether the request reached the server and whether it may have been applied.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Savio (or something in front of it) answered with a non-2xx status. The body is whitespace-collapsed
    /// (an HTML page's text only), cut to about 2 KB and scrubbed of the token; it carries Savio's validation
    /// messages for a 400. A 404 or 405 says to check the base URL: it is what a base URL that does not point
    /// at the API gets.
    #[error("{endpoint}: Savio answered {}{}{}", status_line(*status), body_suffix(body), status_hint(*status))]
    Status { endpoint: Endpoint, status: u16, body: String, retry_after: Option<RetryAfter> },
    /// No connection could be made (refused, DNS failure, TLS handshake, connect timeout): nothing was sent,
    /// so repeating is safe even for feedback.
    #[error("{endpoint}: cannot connect to Savio (nothing was sent)")]
    Connect {
        endpoint: Endpoint,
        #[source]
        source: TransportError,
    },
    /// No complete answer within the request timeout. The request may have reached Savio and been applied.
    #[error("{endpoint}: no answer from Savio within {timeout:?}; the request may have been applied")]
    Timeout {
        endpoint: Endpoint,
        timeout: Duration,
        #[source]
        source: TransportError,
    },
    /// The connection broke after it was made (reset, closed before an answer). The request may have reached
    /// Savio and been applied.
    #[error("{endpoint}: the connection to Savio broke before an answer; the request may have been applied")]
    Connection {
        endpoint: Endpoint,
        #[source]
        source: TransportError,
    },
    /// A redirect that was not followed: to another origin (the token must not go there), a 301/302/303 on a
    /// POST (following would silently turn it into a GET), or more than 5 hops. `location` is the target's
    /// whole URL, so the user sees the new base URL, without user info, query or fragment (which could carry
    /// a secret).
    #[error(
        "{endpoint}: Savio answered {status} redirecting to {location}; not followed (redirects are \
         followed only within the configured origin, at most 5, and for POST only 307/308): check the base URL"
    )]
    Redirect { endpoint: Endpoint, status: u16, location: String },
    /// A 2xx answered with an HTML page, not the API's JSON (a login page, a catch-all front end): the base
    /// URL does not point at the API, and nothing was created.
    #[error(
        "{endpoint}: answered {} with an HTML page, not the API's JSON: check that the base URL is Savio's API \
         (https://www.savio.io/app/api/)",
        status_line(*status)
    )]
    NotApi { endpoint: Endpoint, status: u16 },
    /// The payload could not be serialised; nothing was sent.
    #[error("{endpoint}: cannot serialise the request body")]
    Body {
        endpoint: Endpoint,
        #[source]
        source: serde_json::Error,
    },
    /// The caller's [`super::Departure`] withheld the request once a connection was ready (the run is
    /// stopping): nothing was sent.
    #[error("{endpoint}: not sent (withheld before it was written)")]
    Withheld { endpoint: Endpoint },
}

impl SendError {
    /// The endpoint the failed attempt was for.
    pub fn endpoint(&self) -> &Endpoint {
        match self {
            SendError::Status { endpoint, .. }
            | SendError::Connect { endpoint, .. }
            | SendError::Timeout { endpoint, .. }
            | SendError::Connection { endpoint, .. }
            | SendError::Redirect { endpoint, .. }
            | SendError::NotApi { endpoint, .. }
            | SendError::Body { endpoint, .. }
            | SendError::Withheld { endpoint } => endpoint,
        }
    }

    /// The HTTP status Savio answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            SendError::Status { status, .. }
            | SendError::Redirect { status, .. }
            | SendError::NotApi { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn status_line(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()) {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

/// What a status suggests checking, when it points at the configuration rather than the row.
fn status_hint(status: u16) -> &'static str {
    match status {
        404 | 405 => {
            " (no such endpoint? if every request gets this, check the base URL: Savio's API is \
             https://www.savio.io/app/api/)"
        }
        _ => "",
    }
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() { String::new() } else { format!(": {body}") }
}

/// Everything but a failed send: configuration that cannot work, and listing problems.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the Savio base URL {url:?} is not a valid URL")]
    InvalidBaseUrl {
        /// As given, cut before any `?` so a query-string secret is not echoed.
        url: String,
        #[source]
        source: UrlParseError,
    },
    #[error("the Savio base URL {url} cannot be used: {reason}")]
    UnsupportedBaseUrl { url: String, reason: &'static str },
    #[error(
        "refusing to send the Savio API token over plain http:// to {host}: use https://, or pass \
         --allow-insecure-http if the network to this host is trusted"
    )]
    InsecureHttp { host: String },
    #[error("cannot set up TLS for the Savio connection")]
    Tls {
        #[source]
        source: rustls::Error,
    },
    #[error("cannot set up the HTTP client")]
    Build {
        #[source]
        source: reqwest::Error,
    },
    /// A page request failed; classify the inner error with `idempotent = true` to decide on a retry.
    #[error(transparent)]
    Request(#[from] SendError),
    #[error("{endpoint}: the answer is not a page of results")]
    Decode {
        endpoint: Endpoint,
        #[source]
        source: serde_json::Error,
    },
    #[error("{endpoint}: the page is larger than {limit} bytes")]
    PageTooLarge { endpoint: Endpoint, limit: usize },
    #[error("{endpoint}: page link to {found} refused: the Savio API token is only sent to {expected}")]
    ForeignPage {
        /// The page that linked to the foreign one, or the foreign page itself when it was requested directly.
        endpoint: Endpoint,
        found: String,
        expected: String,
    },
    #[error("{endpoint}: the next-page link {link:?} is not a valid URL")]
    InvalidPageUrl {
        endpoint: Endpoint,
        /// The link as Savio gave it, cut to 200 characters.
        link: String,
        #[source]
        source: UrlParseError,
    },
    #[error("{endpoint}: the next-page link leads back to a page already read; stopping to avoid a loop")]
    PageLoop { endpoint: Endpoint },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_shows_method_path_and_query_without_credentials() {
        let url = Url::parse("https://u:p@h.example/app/api/users/?page=2#frag").unwrap();
        let endpoint = Endpoint::new("GET", &url);
        assert_eq!(endpoint.to_string(), "GET /app/api/users/?page=2");
        assert_eq!(endpoint.url().as_str(), "https://h.example/app/api/users/?page=2");
    }

    #[test]
    fn status_display_names_reason_and_body() {
        let url = Url::parse("https://h.example/app/api/users/").unwrap();
        let err = SendError::Status {
            endpoint: Endpoint::new("POST", &url),
            status: 400,
            body: r#"{"email": ["Enter a valid email address."]}"#.into(),
            retry_after: None,
        };
        assert_eq!(
            err.to_string(),
            r#"POST /app/api/users/: Savio answered 400 Bad Request: {"email": ["Enter a valid email address."]}"#
        );
        let err = SendError::Status {
            endpoint: Endpoint::new("POST", &url),
            status: 599,
            body: String::new(),
            retry_after: None,
        };
        assert_eq!(err.to_string(), "POST /app/api/users/: Savio answered 599");
        let err = SendError::Status {
            endpoint: Endpoint::new("POST", &url),
            status: 404,
            body: "Not Found".into(),
            retry_after: None,
        };
        assert_eq!(
            err.to_string(),
            "POST /app/api/users/: Savio answered 404 Not Found: Not Found (no such endpoint? if every request gets \
             this, check the base URL: Savio's API is https://www.savio.io/app/api/)"
        );
    }
}
