//! The Savio HTTP client: one request per call, typed outcomes, and a token that never leaves its origin.
//!
//! This module only talks HTTP. It sends one payload per [`SavioClient::send`] and reports exactly what
//! happened ([`Attempt`]); it never retries, waits or limits rates: the writer does that, consulting the pure
//! policy in [`classify`]. Listing ([`SavioClient::list_contacts`] and friends) follows Savio's
//! `next` links as given.
//!
//! Safety properties, each pinned by a test in `tests/client.rs`:
//! - the token travels only in the `Authorization` header, only to the configured origin (scheme, host and
//!   port): redirects and `next` links elsewhere are refused, plain `http://` is refused unless the host is
//!   loopback or `--allow-insecure-http` is given;
//! - no `Debug`/`Display` here shows the token, and error bodies from the server are scrubbed of it;
//! - a failed attempt says whether anything was sent and whether it may have been applied, so feedback (which
//!   Savio cannot de-duplicate) is never repeated blindly.
//!
//! The transport may replay a request that the server provably never processed (an HTTP/2 `REFUSED_STREAM`
//! or graceful `GOAWAY`, a pooled connection closed before the request was written): that is reqwest's
//! default and is safe even for feedback. Nothing else is repeated.

mod departure;
mod error;
mod lanes;
mod list;
mod retry;
mod token;

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Uri};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER, USER_AGENT,
};
use reqwest::{Response, Url, redirect};
use serde::Deserialize;

pub use departure::Departure;
pub use error::{ClientError, Endpoint, SendError, UrlParseError};
pub use lanes::BodyCut;
pub use list::{ListQuery, Listing};
pub use retry::{Backoff, RetryAction, RetryAfter, classify, classify_at, classify_status, idempotent};
pub use token::{ApiToken, TOKEN_ENV_VAR, TokenError, TokenOrigin};

use crate::model::{Entity, Payload, SavioId};
use error::scrubbed;
use lanes::{LaneError, Lanes, origin_form};

/// Savio's public API root.
pub const DEFAULT_BASE_URL: &str = "https://www.savio.io/app/api/";

/// The `User-Agent` sent unless configured otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("savio-sync/", env!("CARGO_PKG_VERSION"));

/// Redirects followed per request at most (all within the configured origin).
pub const MAX_REDIRECTS: usize = 5;

/// How much of an error body is kept, after collapsing whitespace.
const ERROR_BODY_KEEP: usize = 2048;
/// How much of an error body is read: enough for `ERROR_BODY_KEEP` after whitespace collapses.
const ERROR_BODY_READ: usize = 8 * 1024;
/// How much of a success body is read to find the new object's `id`.
const SUCCESS_BODY_READ: usize = 256 * 1024;
/// The largest list page accepted.
const PAGE_BODY_READ: usize = 64 * 1024 * 1024;

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// How to reach Savio. Build it with [`ClientConfig::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The API root; endpoints (`users/`, `companies/`, `create-feedback/`) are joined to it. A missing
    /// trailing slash is added.
    pub base_url: String,
    pub token: ApiToken,
    /// Time allowed to open a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time allowed for a request once it is handed to a connection, to the end of the answer (listing,
    /// through reqwest: from connecting).
    pub request_timeout: Duration,
    /// Allows plain `http://` to a host that is not loopback. The token then travels unencrypted.
    pub allow_insecure_http: bool,
    pub user_agent: String,
}

impl ClientConfig {
    /// The defaults: Savio's public API, 10 s to connect, 30 s per request, https only.
    pub fn new(token: ApiToken) -> ClientConfig {
        ClientConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            token,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            allow_insecure_http: false,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
        }
    }
}

/// A Savio API client. Cheap to clone (one `Arc`); clones share connection pools.
#[derive(Clone)]
pub struct SavioClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// How POSTs travel.
    post: PostTransport,
    /// For GETs: follows any same-origin redirect. Built on the first listing: loading the trusted roots
    /// costs a sync that never lists a few milliseconds.
    get: OnceLock<reqwest::Client>,
    /// What the reqwest clients are built from.
    config: HttpSettings,
    base: Url,
    /// The three POST endpoints (built once, not per request).
    companies: PostTarget,
    users: PostTarget,
    feedback: PostTarget,
    user_agent: HeaderValue,
    /// `Token <token>`, marked sensitive so hyper and reqwest never print it.
    auth: HeaderValue,
    token: ApiToken,
    request_timeout: Duration,
    connect_timeout: Duration,
}

/// The writer's own connections ([`lanes`]), or reqwest when a proxy is configured. Either follows only
/// same-origin 307/308, which keep method and body: a 301/302/303 would turn the POST into a GET, and a
/// 2xx listing would pass for a successful upsert.
enum PostTransport {
    Lanes(Lanes),
    Reqwest(reqwest::Client),
}

/// The reqwest clients' settings.
struct HttpSettings {
    connect_timeout: Duration,
    request_timeout: Duration,
    user_agent: String,
}

/// A POST endpoint: its URL, the same as shown in messages, and its request target (`/app/api/users/`).
struct PostTarget {
    url: Url,
    endpoint: Endpoint,
    uri: Uri,
}

/// TLS for the writer's connections: rustls with the platform's verifier (the system's trusted roots), as
/// reqwest uses, offering HTTP/1.1 only.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, ClientError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|source| ClientError::Tls { source })?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The result of one request, with how long it took (connect to end of answer) for the writer's statistics
/// and adaptive pacing.
#[derive(Debug)]
pub struct Attempt {
    pub outcome: Result<Accepted, SendError>,
    pub latency: Duration,
    /// Requests written to a connection: 0 when none could be made or the request was withheld, one per
    /// 307/308 hop followed. Through a proxy (reqwest), 1 unless connecting failed.
    pub written: u32,
}

/// Savio accepted the payload: any 2xx (the reference documents 201; 200 is accepted too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub status: u16,
    /// The `id` from the JSON answer, when there is one. A 2xx without a JSON body is still a success.
    pub id: Option<SavioId>,
    /// Why the answer's body is not whole (so there is no id), when it is not: the status alone says the
    /// payload was applied.
    pub cut: Option<BodyCut>,
}

impl SavioClient {
    /// Validates the configuration and builds the HTTP stack. Fails on a base URL that is not absolute
    /// http(s), carries credentials, a query or a fragment, or is plain http to a non-loopback host without
    /// `allow_insecure_http`.
    pub fn new(config: ClientConfig) -> Result<SavioClient, ClientError> {
        let base = base_url(&config.base_url, config.allow_insecure_http)?;
        let join = |path: &str| {
            base.join(path).map_err(|source| ClientError::InvalidBaseUrl { url: config.base_url.clone(), source })
        };
        let post_endpoint = |path: &str| {
            let url = join(path)?;
            let endpoint = Endpoint::new("POST", &url);
            let uri = origin_form(&url).ok_or_else(|| ClientError::UnsupportedBaseUrl {
                url: endpoint.url().to_string(),
                reason: "its path is not a valid request target",
            })?;
            Ok::<_, ClientError>(PostTarget { url, endpoint, uri })
        };
        let (companies, users, feedback) =
            (post_endpoint("companies/")?, post_endpoint("users/")?, post_endpoint("create-feedback/")?);
        let mut auth = HeaderValue::from_str(&format!("Token {}", config.token.expose()))
            .expect("an ApiToken is visible ASCII, always a valid header value");
        auth.set_sensitive(true);
        let user_agent = HeaderValue::from_str(&config.user_agent).map_err(|_| ClientError::UnsupportedBaseUrl {
            url: base.to_string(),
            reason: "the user agent is not a valid header value",
        })?;
        let http = HttpSettings {
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            user_agent: config.user_agent.clone(),
        };
        let lanes = if lanes::proxy_configured() {
            tracing::debug!("a proxy is configured: sending through reqwest");
            None
        } else {
            let tls = if base.scheme() == "https" { Some(tls_config()?) } else { None };
            Lanes::new(&base, tls, config.connect_timeout, config.request_timeout)
        };
        let post = match lanes {
            Some(lanes) => PostTransport::Lanes(lanes),
            None => PostTransport::Reqwest(http_client(&http, RedirectRule::PostSafe)?),
        };
        Ok(SavioClient {
            inner: Arc::new(Inner {
                post,
                get: OnceLock::new(),
                config: http,
                base,
                companies,
                users,
                feedback,
                user_agent,
                auth,
                token: config.token,
                request_timeout: config.request_timeout,
                connect_timeout: config.connect_timeout,
            }),
        })
    }

    /// The client for GETs, built on first use.
    fn get_client(&self) -> Result<&reqwest::Client, ClientError> {
        if let Some(client) = self.inner.get.get() {
            return Ok(client);
        }
        let client = http_client(&self.inner.config, RedirectRule::AnySameOrigin)?;
        Ok(self.inner.get.get_or_init(|| client))
    }

    /// The validated API root (always ends with `/`).
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// Sends one payload once: `POST companies/`, `users/` or `create-feedback/` with the payload as JSON.
    /// Never retries; see [`classify`] for what to do with a failure.
    pub async fn send(&self, payload: &Payload) -> Attempt {
        let target = self.endpoint(payload.entity());
        match serde_json::to_vec(payload) {
            Ok(body) => self.send_json(payload.entity(), Bytes::from(body)).await,
            Err(source) => Attempt {
                outcome: Err(SendError::Body { endpoint: target.endpoint.clone(), source }),
                latency: Duration::ZERO,
                written: 0,
            },
        }
    }

    /// [`SavioClient::send`] for a payload already serialised (`body` is its JSON): the writer serialises
    /// each payload once, for its content hash and every attempt.
    pub async fn send_json(&self, entity: Entity, body: Bytes) -> Attempt {
        self.send_json_with(entity, body, &()).await
    }

    /// [`SavioClient::send_json`], asking `departure` right before each write whether the request may still
    /// leave, and telling it each answer's status as soon as it arrives.
    pub async fn send_json_with<D: Departure>(&self, entity: Entity, body: Bytes, departure: &D) -> Attempt {
        let started = Instant::now();
        let target = self.endpoint(entity);
        let endpoint = &target.endpoint;
        let mut written = 0;
        let outcome = self.post(target, body, departure, &mut written).await;
        let latency = started.elapsed();
        match &outcome {
            Ok(accepted) => tracing::debug!(
                %endpoint, status = accepted.status, latency_ms = latency.as_millis() as u64, "sent"
            ),
            Err(err) => tracing::debug!(
                %endpoint, error = %err, latency_ms = latency.as_millis() as u64, "send failed"
            ),
        }
        Attempt { outcome, latency, written }
    }

    /// The endpoint a payload of `entity` is posted to, as messages show it.
    pub fn endpoint_of(&self, entity: Entity) -> &Endpoint {
        &self.endpoint(entity).endpoint
    }

    fn endpoint(&self, entity: Entity) -> &PostTarget {
        match entity {
            Entity::Company => &self.inner.companies,
            Entity::Contact => &self.inner.users,
            Entity::Feedback => &self.inner.feedback,
        }
    }

    async fn post<D: Departure>(
        &self,
        target: &PostTarget,
        body: Bytes,
        departure: &D,
        written: &mut u32,
    ) -> Result<Accepted, SendError> {
        let endpoint = &target.endpoint;
        match &self.inner.post {
            PostTransport::Lanes(lanes) => self.post_lanes(lanes, target, body, departure, written).await,
            // Boxed: reqwest's future is large and this path is the exception (a proxy is configured).
            PostTransport::Reqwest(client) => {
                Box::pin(self.post_reqwest(client, &target.url, endpoint, body, departure, written)).await
            }
        }
    }

    /// A POST over the writer's own connections ([`lanes`]), following same-origin 307/308 itself.
    async fn post_lanes<D: Departure>(
        &self,
        lanes: &Lanes,
        target: &PostTarget,
        body: Bytes,
        departure: &D,
        written: &mut u32,
    ) -> Result<Accepted, SendError> {
        let endpoint = &target.endpoint;
        // Feedback must not be repeated: see `lanes::UNREPEATABLE_IDLE`.
        let max_idle =
            if std::ptr::eq(target, &self.inner.feedback) { lanes::UNREPEATABLE_IDLE } else { Duration::MAX };
        let mut current = Cow::Borrowed(&target.url);
        let mut uri = target.uri.clone();
        for hop in 0..=MAX_REDIRECTS {
            let mut request = Request::new(Full::new(body.clone()));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = uri.clone();
            let headers = request.headers_mut();
            headers.insert(AUTHORIZATION, self.inner.auth.clone());
            headers.insert(ACCEPT, APPLICATION_JSON);
            headers.insert(CONTENT_TYPE, APPLICATION_JSON);
            headers.insert(USER_AGENT, self.inner.user_agent.clone());
            let answer = lanes
                .send(request, SUCCESS_BODY_READ, max_idle, departure, written)
                .await
                .map_err(|e| lane_error(endpoint, e))?;
            if answer.status.is_success() {
                let body = decoded(&answer.headers, &answer.body);
                not_an_api_page(endpoint, answer.status.as_u16(), &answer.headers, &body)?;
                let id = if answer.cut.is_none() { answer_id(&body) } else { None };
                return Ok(Accepted { status: answer.status.as_u16(), id, cut: answer.cut });
            }
            if matches!(answer.status.as_u16(), 307 | 308)
                && hop < MAX_REDIRECTS
                && let Some(next) =
                    answer.headers.get(LOCATION).and_then(|l| l.to_str().ok()).and_then(|l| current.join(l).ok())
                && next.origin() == target.url.origin()
                && let Some(next_uri) = origin_form(&next)
            {
                current = Cow::Owned(next);
                uri = next_uri;
                continue;
            }
            let reply = Reply {
                status: answer.status.as_u16(),
                headers: &answer.headers,
                url: &current,
                body: &decoded(&answer.headers, &answer.body),
                complete: answer.cut.is_none(),
            };
            return Err(self.status_error(endpoint, reply));
        }
        unreachable!("the loop returns on its last hop")
    }

    /// A POST through reqwest, used when a proxy is configured: [`lanes`] only connects directly.
    /// Through a proxy the connection is reqwest's: `departure` is asked before the request is handed to
    /// reqwest (which then connects), and each call counts as one request written unless connecting failed.
    async fn post_reqwest<D: Departure>(
        &self,
        client: &reqwest::Client,
        url: &Url,
        endpoint: &Endpoint,
        body: Bytes,
        departure: &D,
        written: &mut u32,
    ) -> Result<Accepted, SendError> {
        if !departure.cleared().await {
            return Err(SendError::Withheld { endpoint: endpoint.clone() });
        }
        *written += 1;
        let sent = client
            .post(url.clone())
            .header(AUTHORIZATION, self.inner.auth.clone())
            .header(ACCEPT, APPLICATION_JSON)
            .header(CONTENT_TYPE, APPLICATION_JSON)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(source) => {
                if source.is_connect() {
                    *written -= 1;
                }
                return Err(self.transport_error(endpoint, source));
            }
        };
        let status = response.status();
        departure.answered(status);
        if !status.is_success() {
            return Err(self.read_status_error(endpoint, response).await);
        }
        // The request was applied (unless the answer is an HTML page): whatever happens while reading the
        // answer, this is a success. An unreadable or non-JSON body only loses the id.
        let mut body = Vec::new();
        let (id, cut) = match read_capped(&mut response, SUCCESS_BODY_READ, &mut body).await {
            Ok(true) => (answer_id(&body), None),
            Ok(false) => (None, Some(BodyCut::TooLong(SUCCESS_BODY_READ))),
            Err(err) => {
                tracing::debug!(%endpoint, error = %err, "answer body unreadable after a success");
                let cut = if err.is_timeout() { BodyCut::TooSlow(self.inner.request_timeout) } else { BodyCut::Broken };
                (None, Some(cut))
            }
        };
        not_an_api_page(endpoint, status.as_u16(), response.headers(), &body)?;
        Ok(Accepted { status: status.as_u16(), id, cut })
    }

    /// Maps a transport failure by what it implies: connect errors (refused, DNS, TLS, connect timeout)
    /// mean nothing was sent; anything later may have reached the server.
    fn transport_error(&self, endpoint: &Endpoint, source: reqwest::Error) -> SendError {
        let endpoint = endpoint.clone();
        if source.is_connect() {
            SendError::Connect { endpoint, source: Box::new(source) }
        } else if source.is_timeout() {
            SendError::Timeout { endpoint, timeout: self.inner.request_timeout, source: Box::new(source) }
        } else {
            // Includes failures that reqwest reports as builder or redirect errors after the request went
            // out (an unparseable Location, say): treated as "may have been applied", the safe reading.
            SendError::Connection { endpoint, source: Box::new(source) }
        }
    }

    /// Reads a bounded piece of a non-2xx reqwest answer's body, then [`SavioClient::status_error`].
    async fn read_status_error(&self, endpoint: &Endpoint, mut response: Response) -> SendError {
        let mut raw = Vec::new();
        let complete = match read_capped(&mut response, ERROR_BODY_READ, &mut raw).await {
            Ok(complete) => complete,
            Err(err) => {
                tracing::debug!(%endpoint, status = response.status().as_u16(), error = %err, "error body unreadable");
                false
            }
        };
        let reply = Reply {
            status: response.status().as_u16(),
            headers: response.headers(),
            url: response.url(),
            body: &raw,
            complete,
        };
        self.status_error(endpoint, reply)
    }

    /// Turns a non-2xx answer into an error: a redirect that was not followed, or Savio's status with a
    /// bounded, scrubbed piece of the body for the message.
    fn status_error(&self, endpoint: &Endpoint, reply: Reply<'_>) -> SendError {
        let endpoint = endpoint.clone();
        let status = reply.status;
        if (300..400).contains(&status)
            && let Some(location) = reply.headers.get(LOCATION)
        {
            let location = location
                .to_str()
                .ok()
                .and_then(|loc| reply.url.join(loc).ok())
                .map_or_else(|| "an unreadable Location".to_owned(), |u| shown_location(&u));
            return SendError::Redirect { endpoint, status, location };
        }
        let retry_after = reply.headers.get(RETRY_AFTER).and_then(RetryAfter::from_header);
        let mut complete = reply.complete;
        let mut raw = reply.body;
        if raw.len() > ERROR_BODY_READ {
            raw = &raw[..ERROR_BODY_READ];
            complete = false;
        }
        if !complete {
            // The cut may have split an echoed token, which redaction could then not recognise.
            raw = &raw[..raw.len().saturating_sub(self.inner.token.expose().len())];
        }
        let html = html_page(reply.headers, raw);
        SendError::Status { endpoint, status, body: clean_body(raw, &self.inner.token, !complete, html), retry_after }
    }
}

/// An answer's body as sent, or decompressed when the server gzipped it anyway (the writer asks for no
/// compression, but a server or a proxy may compress regardless): at most [`SUCCESS_BODY_READ`] bytes of it.
/// A body that does not decompress is returned as it came.
fn decoded<'a>(headers: &HeaderMap, body: &'a [u8]) -> Cow<'a, [u8]> {
    let gzipped = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gzipped {
        return Cow::Borrowed(body);
    }
    let mut out = Vec::new();
    let mut decoder = std::io::Read::take(flate2::read::GzDecoder::new(body), SUCCESS_BODY_READ as u64);
    match std::io::Read::read_to_end(&mut decoder, &mut out) {
        Ok(_) => Cow::Owned(out),
        Err(_) => Cow::Borrowed(body),
    }
}

/// The `id` of a success's JSON body (already [`decoded`]).
fn answer_id(body: &[u8]) -> Option<SavioId> {
    serde_json::from_slice::<IdOnly>(body).ok().and_then(|a| a.id)
}

/// A 2xx answered with an HTML page is not the API's: a login page or a catch-all front end answering
/// for a base URL that does not point at the API. Nothing was created; the row fails and says what to check.
/// The content type alone does not say so: a server whose answers carry no body or JSON under its framework's
/// default `text/html` (Django's `HttpResponse(status=201)`) did apply the request, and failing the row would
/// invite a re-run that duplicates feedback. It is a page when its (decoded) body is markup.
fn not_an_api_page(endpoint: &Endpoint, status: u16, headers: &HeaderMap, body: &[u8]) -> Result<(), SendError> {
    if html_page(headers, body) { Err(SendError::NotApi { endpoint: endpoint.clone(), status }) } else { Ok(()) }
}

/// Whether an answer is an HTML page: labelled `text/html` and its (decoded) body is markup.
fn html_page(headers: &HeaderMap, body: &[u8]) -> bool {
    let html = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
    html && body.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(body).trim_ascii_start().starts_with(b"<")
}

/// A redirect's target as a message shows it: the whole URL, so the user sees the new base URL, but
/// without user info, query or fragment, any of which may carry a secret.
fn shown_location(url: &Url) -> String {
    let mut url = scrubbed(url);
    url.set_query(None);
    url.to_string()
}

/// What a failed exchange on the writer's connections means for a retry (see [`lanes`]).
fn lane_error(endpoint: &Endpoint, err: LaneError) -> SendError {
    let endpoint = endpoint.clone();
    match err {
        LaneError::Withheld => SendError::Withheld { endpoint },
        LaneError::Connect { .. } | LaneError::NotSent(_) => SendError::Connect { endpoint, source: Box::new(err) },
        LaneError::Timeout(timeout) => SendError::Timeout { endpoint, timeout, source: Box::new(err) },
        LaneError::Broken(_) => SendError::Connection { endpoint, source: Box::new(err) },
    }
}

/// A non-2xx answer, whichever transport brought it.
struct Reply<'a> {
    status: u16,
    headers: &'a HeaderMap,
    /// The URL that answered (after any redirects followed), to resolve a relative `Location`.
    url: &'a Url,
    body: &'a [u8],
    /// The whole body was read.
    complete: bool,
}

impl fmt::Debug for SavioClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavioClient")
            .field("base_url", &self.inner.base.as_str())
            .field("token", &self.inner.token)
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The part of a create/upsert answer the writer needs.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<SavioId>,
}

/// Validates the base URL (see [`SavioClient::new`]) and gives it a trailing slash.
fn base_url(raw: &str, allow_insecure_http: bool) -> Result<Url, ClientError> {
    let shown = || shown_raw(raw);
    let mut url = Url::parse(raw.trim()).map_err(|source| ClientError::InvalidBaseUrl { url: shown(), source })?;
    let unsupported = |url: &Url, reason| ClientError::UnsupportedBaseUrl {
        url: scrubbed(url).as_str().split('?').next().unwrap_or_default().to_owned(),
        reason,
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(unsupported(&url, "only http:// and https:// are supported"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(unsupported(
            &url,
            "it contains user info; pass the API token through SAVIO_API_TOKEN or a token file instead",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(unsupported(&url, "it has a query or fragment, which endpoint URLs would drop"));
    }
    let Some(host) = url.host_str().map(str::to_owned) else {
        return Err(unsupported(&url, "it has no host"));
    };
    if url.scheme() == "http" && !is_loopback(&host) {
        if !allow_insecure_http {
            return Err(ClientError::InsecureHttp { host });
        }
        tracing::warn!(
            %host,
            "sending the Savio API token over plain http:// (--allow-insecure-http)"
        );
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// An unparseable base URL as shown in a message: cut before any query or fragment, user info removed, since
/// either may hold a secret pasted by mistake.
fn shown_raw(raw: &str) -> String {
    let head = raw.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = head.split_once("://").unwrap_or(("", head));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    if scheme.is_empty() { rest.to_owned() } else { format!("{scheme}://{rest}") }
}

/// `localhost`, `127.0.0.0/8` or `::1`: traffic that never leaves the machine.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[derive(Clone, Copy)]
enum RedirectRule {
    /// Same origin, 307/308 only (method and body preserved).
    PostSafe,
    /// Same origin, any redirect status.
    AnySameOrigin,
}

/// Follows at most [`MAX_REDIRECTS`] redirects, never to another origin. A stopped redirect comes back as
/// the 3xx answer, which becomes [`SendError::Redirect`].
fn redirect_policy(rule: RedirectRule) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        // `previous` holds every URL requested so far, the original first.
        let previous = attempt.previous();
        let same_origin = previous.first().is_some_and(|first| first.origin() == attempt.url().origin());
        let status_ok = match rule {
            RedirectRule::PostSafe => matches!(attempt.status().as_u16(), 307 | 308),
            RedirectRule::AnySameOrigin => true,
        };
        if same_origin && status_ok && previous.len() <= MAX_REDIRECTS { attempt.follow() } else { attempt.stop() }
    })
}

/// Idle pooled connections are dropped after this long. Well under the keep-alive timeouts of common fronts
/// (60 s for cloud load balancers, 75 s for nginx; reqwest's default is 90 s): a request written onto a
/// connection the server is closing at that moment fails as [`SendError::Connection`], an unknown outcome
/// for feedback, so the client should not be the side that keeps idle connections longest.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

fn http_client(config: &HttpSettings, rule: RedirectRule) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .gzip(true)
        .user_agent(config.user_agent.as_str())
        .redirect(redirect_policy(rule))
        .referer(false)
        .build()
        .map_err(|source| ClientError::Build { source })
}

/// Reads the body into `buf`, at most `limit` bytes. `Ok(true)` when the whole body fit. On a transport error
/// `buf` keeps what arrived.
async fn read_capped(response: &mut Response, limit: usize, buf: &mut Vec<u8>) -> Result<bool, reqwest::Error> {
    while let Some(chunk) = response.chunk().await? {
        let room = limit - buf.len();
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            return Ok(false);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(true)
}

/// An error body fit for a message and a report: lossy UTF-8, an HTML page's text rather than its markup
/// (a framework's error page is mostly styles and tags: its message would not fit), whitespace collapsed,
/// token removed, cut to about [`ERROR_BODY_KEEP`] bytes on a character boundary.
fn clean_body(raw: &[u8], token: &ApiToken, cut: bool, html: bool) -> String {
    let mut text = String::from_utf8_lossy(raw);
    if html {
        // A space before each tag keeps the title and the heading that follows it apart.
        text = Cow::Owned(crate::mapping::html_to_text(&text.replace('<', " <")));
    }
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut body = collapsed.replace(token.expose(), "<redacted>");
    let mut cut = cut;
    if body.len() > ERROR_BODY_KEEP {
        let mut end = ERROR_BODY_KEEP;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
        cut = true;
    }
    if cut {
        body.push('…');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> ApiToken {
        ApiToken::new("tok-123".to_owned()).unwrap()
    }

    #[test]
    fn base_url_gets_a_trailing_slash_and_joins_endpoints() {
        let url = base_url("https://h.example/app/api", false).unwrap();
        assert_eq!(url.as_str(), "https://h.example/app/api/");
        assert_eq!(url.join("users/").unwrap().as_str(), "https://h.example/app/api/users/");
        assert_eq!(base_url(DEFAULT_BASE_URL, false).unwrap().as_str(), DEFAULT_BASE_URL);
    }

    #[test]
    fn plain_http_is_allowed_only_to_loopback_or_with_the_flag() {
        for ok in [
            "http://localhost:8080/api",
            "http://LOCALHOST/",
            "http://127.0.0.1:9/",
            "http://127.1.2.3/",
            "http://[::1]:8080/",
        ] {
            assert!(base_url(ok, false).is_ok(), "{ok}");
        }
        for refused in ["http://savio.example/", "http://10.0.0.1/", "http://[::2]/"] {
            let err = base_url(refused, false).unwrap_err();
            assert!(matches!(err, ClientError::InsecureHttp { .. }), "{refused}");
            assert!(err.to_string().contains("--allow-insecure-http"), "{err}");
            assert!(base_url(refused, true).is_ok(), "{refused}");
        }
    }

    #[test]
    fn unusable_base_urls_are_refused_without_echoing_secrets() {
        for bad in ["www.savio.io/app/api?token=hush", "https://user:hush@[bad/app", "hush@exa mple"] {
            let err = base_url(bad, false).unwrap_err();
            assert!(matches!(err, ClientError::InvalidBaseUrl { .. }), "{err:?}");
            assert!(!format!("{err} {err:?}").contains("hush"), "{err:?}");
        }
        for bad in [
            "ftp://h.example/",
            "https://user:hush@h.example/",
            "https://h.example/?token=hush",
            "https://h.example/#hush",
        ] {
            let err = base_url(bad, false).unwrap_err();
            assert!(matches!(err, ClientError::UnsupportedBaseUrl { .. }), "{bad}: {err:?}");
            assert!(!format!("{err} {err:?}").contains("hush"), "{err:?}");
        }
    }

    #[test]
    fn error_bodies_are_collapsed_scrubbed_and_cut() {
        let t = token();
        assert_eq!(clean_body(b"  {\"email\":\n\t[\"bad\"]}  ", &t, false, false), "{\"email\": [\"bad\"]}");
        assert_eq!(clean_body(b"got Token tok-123 here", &t, false, false), "got Token <redacted> here");
        let long = "é".repeat(3000);
        let body = clean_body(long.as_bytes(), &t, false, false);
        assert!(body.len() <= ERROR_BODY_KEEP + '…'.len_utf8());
        assert!(body.ends_with('…'));
        assert_eq!(clean_body(b"partial", &t, true, false), "partial…");
        let page = b"<!DOCTYPE html><html><head><title>Not Found</title><style>h1 { color: red }</style></head>\
            <body><h1>Not Found</h1><p>No &quot;users&quot; here.</p></body></html>";
        assert_eq!(clean_body(page, &t, false, true), "Not Found Not Found No \"users\" here.");
    }

    #[test]
    fn client_debug_hides_the_token() {
        let mut config = ClientConfig::new(token());
        config.base_url = "http://127.0.0.1:1/".into();
        let client = SavioClient::new(config).unwrap();
        let shown = format!("{client:?} {client:#?}");
        assert!(!shown.contains("tok-123"), "{shown}");
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }
}
