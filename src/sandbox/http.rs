//! The HTTP face of the sandbox: routing, authentication, faults, bodies, and DRF-shaped answers.
//!
//! One fallback handler routes every request itself rather than through axum's router, so that unknown
//! paths, wrong methods and both spellings of a path (with and without the trailing slash) get exactly the
//! answers Savio's Django REST Framework gives, and so that every request, whatever its fate, is counted and
//! logged in one place. The checks run in DRF's order (see the module doc of [`crate::sandbox`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use reqwest::Url;
use serde_json::{Map, Value, json};

use super::faults::Fault;
use super::list::ListQuery;
use super::store::{Listing, Store};
use super::validate::{FieldErrors, python_type};
use super::{Shared, lock};

/// The largest request body accepted.
const BODY_LIMIT: usize = 1 << 20;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

/// The paths the sandbox answers, under `/app/api/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    CreateFeedback,
    Users,
    Companies,
    SandboxFeedback,
    SandboxStats,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Endpoint> {
        let rest = path.strip_prefix("/app/api/")?;
        match rest.strip_suffix('/').unwrap_or(rest) {
            "create-feedback" => Some(Endpoint::CreateFeedback),
            "users" => Some(Endpoint::Users),
            "companies" => Some(Endpoint::Companies),
            "_sandbox/feedback" => Some(Endpoint::SandboxFeedback),
            "_sandbox/stats" => Some(Endpoint::SandboxStats),
            _ => None,
        }
    }

    /// The documented spelling, used as the counters' key.
    fn path(self) -> &'static str {
        match self {
            Endpoint::CreateFeedback => "/app/api/create-feedback/",
            Endpoint::Users => "/app/api/users/",
            Endpoint::Companies => "/app/api/companies/",
            Endpoint::SandboxFeedback => "/app/api/_sandbox/feedback/",
            Endpoint::SandboxStats => "/app/api/_sandbox/stats/",
        }
    }

    /// The `Allow` header of a 405.
    fn allow(self) -> &'static str {
        match self {
            Endpoint::CreateFeedback => "POST",
            Endpoint::Users | Endpoint::Companies => "GET, POST",
            Endpoint::SandboxFeedback | Endpoint::SandboxStats => "GET",
        }
    }

    /// The sandbox's own inspection endpoints are never throttled nor failed: a test reading the counters
    /// must not be disturbed by the faults it is measuring.
    fn faults_apply(self) -> bool {
        !matches!(self, Endpoint::SandboxFeedback | Endpoint::SandboxStats)
    }
}

/// Every answer that is not a success, in DRF's words.
#[derive(Debug)]
enum Rejection {
    NotFound,
    NotAuthenticated,
    BadAuthorizationHeader(&'static str),
    InvalidToken,
    Fault(Fault),
    MethodNotAllowed { method: Method, allow: &'static str },
    UnsupportedMediaType(String),
    TooLarge,
    JsonParse(String),
    Invalid(FieldErrors),
    InvalidPage,
    InvalidHost,
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn detail(status: StatusCode, message: &str) -> Response {
    json_response(status, json!({ "detail": message }))
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let unauthorized = |message: &str| {
            let mut response = detail(StatusCode::UNAUTHORIZED, message);
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
            response
        };
        match self {
            Rejection::NotFound => detail(StatusCode::NOT_FOUND, "Not found."),
            Rejection::NotAuthenticated => unauthorized("Authentication credentials were not provided."),
            Rejection::BadAuthorizationHeader(message) => unauthorized(message),
            Rejection::InvalidToken => unauthorized("Invalid token."),
            Rejection::Fault(Fault::Throttled { wait_secs }) => {
                let unit = if wait_secs == 1 { "second" } else { "seconds" };
                let message = format!("Request was throttled. Expected available in {wait_secs} {unit}.");
                let mut response = detail(StatusCode::TOO_MANY_REQUESTS, &message);
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(wait_secs));
                response
            }
            Rejection::Fault(Fault::Failed(status)) => {
                let message = if status == StatusCode::SERVICE_UNAVAILABLE {
                    "Service temporarily unavailable, try again later."
                } else {
                    "A server error occurred."
                };
                detail(status, message)
            }
            Rejection::MethodNotAllowed { method, allow } => {
                let mut response = detail(StatusCode::METHOD_NOT_ALLOWED, &format!("Method \"{method}\" not allowed."));
                response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
                response
            }
            Rejection::UnsupportedMediaType(media_type) => detail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("Unsupported media type \"{media_type}\" in request."),
            ),
            Rejection::TooLarge => detail(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Request body too large: the sandbox accepts up to {BODY_LIMIT} bytes."),
            ),
            Rejection::JsonParse(message) => detail(StatusCode::BAD_REQUEST, &format!("JSON parse error - {message}")),
            Rejection::Invalid(errors) => json_response(StatusCode::BAD_REQUEST, errors.into_value()),
            Rejection::InvalidPage => detail(StatusCode::NOT_FOUND, "Invalid page."),
            Rejection::InvalidHost => detail(StatusCode::BAD_REQUEST, "Invalid Host header."),
        }
    }
}

/// Answers, counts and logs one request.
async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let endpoint = Endpoint::from_path(&path);
    let response = match endpoint {
        Some(endpoint) => handle(&shared, endpoint, request).await,
        None => Err(Rejection::NotFound),
    }
    .unwrap_or_else(IntoResponse::into_response);
    let status = response.status().as_u16();
    lock(&shared.counters).record(counter_key(&method, endpoint), status);
    tracing::debug!(
        method = %method,
        path = %path,
        status,
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "sandbox request"
    );
    response
}

fn counter_key(method: &Method, endpoint: Option<Endpoint>) -> String {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    // Bounded keys: a client inventing methods or paths must not grow the counters without end.
    let method = if KNOWN.contains(method) { method.as_str() } else { "OTHER" };
    let path = endpoint.map_or("(unknown path)", Endpoint::path);
    format!("{method} {path}")
}

async fn handle(shared: &Shared, endpoint: Endpoint, request: Request) -> Result<Response, Rejection> {
    authenticate(request.headers(), &shared.token)?;
    if endpoint.faults_apply() {
        lock(&shared.faults).check(Instant::now()).map_err(Rejection::Fault)?;
    }
    let method = request.method().clone();
    let (get, post) = (method == Method::GET, method == Method::POST);
    match endpoint {
        Endpoint::Companies if get => list(shared, &request, Listing::Companies),
        Endpoint::Users if get => list(shared, &request, Listing::Contacts),
        Endpoint::SandboxFeedback if get => list(shared, &request, Listing::Feedback),
        Endpoint::SandboxStats if get => {
            let counters = lock(&shared.counters).clone();
            Ok((StatusCode::OK, axum::Json(counters)).into_response())
        }
        Endpoint::Companies if post => apply(shared, request, Store::upsert_company).await,
        Endpoint::Users if post => apply(shared, request, Store::upsert_contact).await,
        Endpoint::CreateFeedback if post => apply(shared, request, Store::create_feedback).await,
        _ => Err(Rejection::MethodNotAllowed { method, allow: endpoint.allow() }),
    }
}

/// DRF `TokenAuthentication.authenticate`: `Token <key>`, keyword case-insensitive, exactly two words.
fn authenticate(headers: &HeaderMap, expected: &blake3::Hash) -> Result<(), Rejection> {
    let Some(header) = headers.get(AUTHORIZATION) else {
        return Err(Rejection::NotAuthenticated);
    };
    let words: Vec<&[u8]> = header.as_bytes().split(u8::is_ascii_whitespace).filter(|word| !word.is_empty()).collect();
    let token = match words.as_slice() {
        [keyword, ..] if !keyword.eq_ignore_ascii_case(b"token") => {
            return Err(Rejection::NotAuthenticated);
        }
        [] => return Err(Rejection::NotAuthenticated),
        [_] => {
            return Err(Rejection::BadAuthorizationHeader("Invalid token header. No credentials provided."));
        }
        [_, token] => *token,
        [..] => {
            return Err(Rejection::BadAuthorizationHeader(
                "Invalid token header. Token string should not contain spaces.",
            ));
        }
    };
    if std::str::from_utf8(token).is_err() {
        return Err(Rejection::BadAuthorizationHeader(
            "Invalid token header. Token string should not contain invalid characters.",
        ));
    }
    // blake3::Hash compares in constant time, and hashing first hides the token's length too.
    if blake3::hash(token) == *expected { Ok(()) } else { Err(Rejection::InvalidToken) }
}

type Rule = fn(&mut Store, &Map<String, Value>) -> Result<Value, FieldErrors>;

/// Reads the body and applies a rule to it under the store lock; 201 with the rule's answer.
async fn apply(shared: &Shared, request: Request, rule: Rule) -> Result<Response, Rejection> {
    let body = read_object(request).await?;
    let answer = {
        let mut store = lock(&shared.store);
        rule(&mut store, &body).map_err(Rejection::Invalid)?
    };
    shared.changed.notify_one();
    Ok(json_response(StatusCode::CREATED, answer))
}

/// DRF's `JSONParser` and the serializer's first check: the body must be a JSON object.
async fn read_object(request: Request) -> Result<Map<String, Value>, Rejection> {
    let media_type =
        request.headers().get(CONTENT_TYPE).map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    if let Some(media_type) = &media_type {
        let essence = media_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(Rejection::UnsupportedMediaType(media_type.clone()));
        }
    }
    let bytes = axum::body::to_bytes(request.into_body(), BODY_LIMIT).await.map_err(|_| Rejection::TooLarge)?;
    // DRF: no media type, or no content, parses as empty data.
    if media_type.is_none() || bytes.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Err(Rejection::Invalid(FieldErrors::non_field("No data provided"))),
        Ok(other) => Err(Rejection::Invalid(FieldErrors::non_field(format!(
            "Invalid data. Expected a dictionary, but got {}.",
            python_type(&other)
        )))),
        Err(error) => Err(Rejection::JsonParse(error.to_string())),
    }
}

fn list(shared: &Shared, request: &Request, listing: Listing) -> Result<Response, Rejection> {
    let url = request_url(request, shared.addr).ok_or(Rejection::InvalidHost)?;
    let query = ListQuery::from_pairs(url.query_pairs(), shared.page_size);
    let page = lock(&shared.store).list(listing, &query).map_err(|_| Rejection::InvalidPage)?;
    let window = page.window;
    let next = window.has_next.then(|| page_link(&url, Some(window.number + 1)));
    // As DRF does, the link to page 1 drops the `page` parameter.
    let previous = (window.number > 1).then(|| page_link(&url, Some(window.number - 1).filter(|n| *n > 1)));
    Ok(json_response(
        StatusCode::OK,
        json!({
            "count": window.count,
            "next": next,
            "previous": previous,
            "results": page.results,
        }),
    ))
}

/// The absolute URL of the request, from its `Host` header (the listening address without one), as
/// Django's `build_absolute_uri` makes it. `None` for a `Host` that is not a plain host and port.
fn request_url(request: &Request, addr: SocketAddr) -> Option<Url> {
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let authority = match request.headers().get(HOST) {
        None => addr.to_string(),
        Some(host) => {
            let host = host.to_str().ok()?;
            let plain = !host.is_empty()
                && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if !plain {
                return None;
            }
            host.to_owned()
        }
    };
    Url::parse(&format!("http://{authority}{path_and_query}")).ok()
}

/// The request's URL for another page: `page` replaced (or removed), other parameters kept, sorted by name
/// as Django's `replace_query_param` leaves them.
fn page_link(url: &Url, page: Option<usize>) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != "page")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    if let Some(page) = page {
        pairs.push(("page".to_owned(), page.to_string()));
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut link = url.clone();
    link.set_query(None);
    if !pairs.is_empty() {
        link.query_pairs_mut().extend_pairs(&pairs);
    }
    link.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_bytes(authorization).unwrap());
        headers
    }

    fn auth(authorization: Option<&[u8]>) -> Result<(), String> {
        let expected = blake3::hash(b"secret");
        let headers = authorization.map(headers).unwrap_or_default();
        authenticate(&headers, &expected).map_err(|r| format!("{r:?}"))
    }

    #[test]
    fn authentication_follows_drf_token_authentication() {
        assert_eq!(auth(Some(b"Token secret")), Ok(()));
        assert_eq!(auth(Some(b"token   secret")), Ok(()));
        assert_eq!(auth(None), Err("NotAuthenticated".into()));
        assert_eq!(auth(Some(b"Bearer secret")), Err("NotAuthenticated".into()));
        assert_eq!(auth(Some(b"Token wrong")), Err("InvalidToken".into()));
        assert!(auth(Some(b"Token")).is_err_and(|e| e.contains("No credentials provided")));
        assert!(auth(Some(b"Token a b")).is_err_and(|e| e.contains("should not contain spaces")));
        assert!(auth(Some(b"Token s\xffcret")).is_err_and(|e| e.contains("invalid characters")));
    }

    #[test]
    fn paths_match_with_or_without_trailing_slash_only_under_the_prefix() {
        assert_eq!(Endpoint::from_path("/app/api/users/"), Some(Endpoint::Users));
        assert_eq!(Endpoint::from_path("/app/api/users"), Some(Endpoint::Users));
        assert_eq!(Endpoint::from_path("/app/api/_sandbox/stats"), Some(Endpoint::SandboxStats));
        for unknown in ["/users/", "/app/api/users//", "/app/api/Users/", "/app/api/", "/app/api/contacts/"] {
            assert_eq!(Endpoint::from_path(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn page_links_replace_page_and_sort_the_other_parameters() {
        let url = Url::parse("http://h:1/app/api/users/?search=a+b&page=2&ordering=-name").unwrap();
        assert_eq!(page_link(&url, Some(3)), "http://h:1/app/api/users/?ordering=-name&page=3&search=a+b");
        assert_eq!(page_link(&url, None), "http://h:1/app/api/users/?ordering=-name&search=a+b");
        let bare = Url::parse("http://h:1/app/api/users/?page=2").unwrap();
        assert_eq!(page_link(&bare, None), "http://h:1/app/api/users/");
    }

    #[test]
    fn counter_keys_stay_bounded() {
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(counter_key(&odd, None), "OTHER (unknown path)");
        assert_eq!(counter_key(&Method::POST, Some(Endpoint::Users)), "POST /app/api/users/");
    }
}
