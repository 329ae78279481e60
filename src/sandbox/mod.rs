//! A local emulator of the documented Savio API, for rehearsing an import and for testing the writer.
//!
//! [`Sandbox::start`] serves the three documented endpoints under `/app/api/` (as `https://www.savio.io/app/api/`
//! does) on a local port, with Django REST Framework's status codes and error shapes, and can inject the
//! faults a real import meets: a rate limit, random server errors, latency. [`serve_until`] runs it in the
//! foreground for the `savio-sync sandbox` subcommand.
//!
//! # Endpoints
//!
//! - `POST create-feedback/`, `GET|POST users/`, `GET|POST companies/`: Savio's, with or without the trailing
//!   slash. Lists are DRF page-number pages (`count`, `next`, `previous`, `results`) with `page`,
//!   `page_size` (at most 1000), `search` and `ordering`.
//! - `GET _sandbox/feedback/` (feedback has no list in Savio) and `GET _sandbox/stats/` (request counters):
//!   the sandbox's own, for inspection. They need the token too, but are never throttled nor failed.
//!
//! # Decisions the published reference leaves open
//!
//! - A request is checked in DRF's order: unknown path 404, then authentication 401, then the rate limit
//!   429, then an injected 500/503, then the method 405, then the body 415/400, then the rule.
//! - Authentication messages are DRF `TokenAuthentication`'s, word for word (keyword case-insensitive).
//! - A missing `Content-Type` makes the body `{}` (so required fields are reported missing, as DRF does);
//!   any type other than `application/json` is 415: the sandbox only speaks JSON.
//! - Strings are coerced like DRF `CharField`: trimmed, numbers accepted as text. An optional string that is
//!   blank is a 400 ("This field may not be blank."): a client must omit it, never send `""`. `null` for an
//!   optional field means "not given".
//! - Company upsert matches `internal_id` exactly; `filterable_attributes` are merged key by key on update,
//!   never replaced wholesale; `name` is overwritten.
//! - Contact upsert matches `internal_id` first, else `email` case-insensitively (stored as given). A
//!   contact found by email takes the request's `internal_id`. Omitted fields keep their value. Contacts
//!   show `internal_id`, which the published contact model lacks. Giving both `company` and
//!   `company_internal_id` for two different companies is a 400.
//! - Feedback finds its person by `person_email` (case-insensitive) when given, else by exact `person_name`
//!   (the oldest such contact), and creates one otherwise (named after the email when no name is given);
//!   a given name renames a found person. Its company is found by name case-insensitively (the oldest
//!   one) or created without an `internal_id`. Feature requests match titles case-insensitively, tags
//!   exactly. The answer is `{"id": n}`, as documented. Every call creates new feedback.
//! - Lists sort with ties broken by id, text in byte order (not a locale collation), missing values last
//!   when ascending. `next`/`previous` are built from the `Host` header with the other query parameters
//!   kept and sorted, as Django's `replace_query_param` does.
//! - Persistence is a pretty-printed JSON file (one document, easy to read and diff after a rehearsal)
//!   rather than SQLite: the data is small and held in memory anyway. It is written atomically, at most
//!   every 200 ms after a change and on shutdown; request counters are not persisted.
//! - No length limits are enforced on strings (Savio's are unknown); bodies are limited to 1 MiB (413).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod faults;
mod http;
mod list;
mod persist;
mod store;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use store::{
    CompanyRecord, ContactRecord, FeatureRequestRecord, FeedbackRecord, StateProblem, TagRecord, Timestamp,
};

use faults::Faults;
use list::MAX_PAGE_SIZE;
use store::Store;

/// The token a sandbox accepts unless told otherwise. Not a secret: the sandbox holds no real data.
const DEFAULT_TOKEN: &str = "sandbox-token";

/// How a sandbox is set up. Build it from [`Default`] and change what a run needs.
#[derive(Clone, PartialEq)]
pub struct SandboxConfig {
    /// Where to listen; port 0 picks a free port (see [`Sandbox::addr`]).
    pub bind: SocketAddr,
    /// The API token requests must send as `Authorization: Token <token>`.
    pub token: String,
    /// A JSON file to keep the data in across restarts; `None` keeps it in memory only.
    pub state: Option<PathBuf>,
    /// At most this many requests per second, all endpoints together; beyond it, 429 with `Retry-After`.
    pub rate_limit: Option<u32>,
    /// Probability (0 to 1) of answering 500 or 503 instead of applying a request.
    pub fail_rate: f64,
    /// Added to every request before it is answered.
    pub latency: Duration,
    /// Seeds the fault generator, so a run's faults can be replayed.
    pub seed: u64,
    /// The list endpoints' default page size (Savio's is 100).
    pub page_size: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            token: DEFAULT_TOKEN.to_owned(),
            state: None,
            rate_limit: None,
            fail_rate: 0.0,
            latency: Duration::ZERO,
            seed: 0,
            page_size: 100,
        }
    }
}

/// Redacts the token: configs get logged, tokens must not be.
impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("bind", &self.bind)
            .field("token", &"<redacted>")
            .field("state", &self.state)
            .field("rate_limit", &self.rate_limit)
            .field("fail_rate", &self.fail_rate)
            .field("latency", &self.latency)
            .field("seed", &self.seed)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl SandboxConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.token.is_empty() {
            return Err(ConfigError::EmptyToken);
        }
        if self.token.chars().any(char::is_whitespace) {
            return Err(ConfigError::TokenWhitespace);
        }
        if !(0.0..=1.0).contains(&self.fail_rate) {
            return Err(ConfigError::FailRate(self.fail_rate));
        }
        if self.rate_limit == Some(0) {
            return Err(ConfigError::ZeroRateLimit);
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(ConfigError::PageSize(self.page_size));
        }
        Ok(())
    }
}

/// A [`SandboxConfig`] value that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("the token is empty")]
    EmptyToken,
    #[error("the token contains whitespace, which an Authorization header cannot carry")]
    TokenWhitespace,
    #[error("fail rate {0} is not a probability between 0 and 1")]
    FailRate(f64),
    #[error("the rate limit must allow at least 1 request per second")]
    ZeroRateLimit,
    #[error("page size {0} is not between 1 and {MAX_PAGE_SIZE}")]
    PageSize(usize),
}

/// Why a sandbox could not start, serve or stop.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid sandbox configuration")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the sandbox state file {}", path.display())]
    StateRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the sandbox state file {} is not valid JSON state; fix or remove it (it was left untouched)", path.display())]
    StateCorrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the sandbox state file {} is inconsistent; fix or remove it (it was left untouched)", path.display())]
    StateInvalid {
        path: PathBuf,
        #[source]
        problem: StateProblem,
    },
    #[error("cannot write the sandbox state file {}", path.display())]
    StateWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the sandbox server failed")]
    Serve(#[source] io::Error),
    #[error("the sandbox {task} task panicked or was cancelled")]
    Task {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("cannot write the sandbox address to the output")]
    Output(#[source] io::Error),
}

/// How many requests the sandbox answered, including those it throttled or failed on purpose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounters {
    pub total: u64,
    /// By `"<METHOD> <path>"`, e.g. `"POST /app/api/users/"` (the path with its trailing slash; any
    /// unknown path counts as `(unknown path)` and any unusual method as `OTHER`).
    pub by_endpoint: BTreeMap<String, u64>,
    /// By HTTP status code.
    pub by_status: BTreeMap<u16, u64>,
}

impl RequestCounters {
    fn record(&mut self, endpoint: String, status: u16) {
        self.total += 1;
        *self.by_endpoint.entry(endpoint).or_default() += 1;
        *self.by_status.entry(status).or_default() += 1;
    }

    /// Requests to one endpoint: `count("POST", "/app/api/users/")`.
    pub fn count(&self, method: &str, path: &str) -> u64 {
        self.by_endpoint.get(&format!("{method} {path}")).copied().unwrap_or(0)
    }

    /// Requests answered with one status code.
    pub fn with_status(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }
}

/// A copy of everything the sandbox holds, each table sorted by id.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxSnapshot {
    pub companies: Vec<CompanyRecord>,
    pub contacts: Vec<ContactRecord>,
    pub feedback: Vec<FeedbackRecord>,
    pub feature_requests: Vec<FeatureRequestRecord>,
    pub tags: Vec<TagRecord>,
    pub requests: RequestCounters,
}

/// What the server task and the [`Sandbox`] handle share.
pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    pub(crate) counters: Mutex<RequestCounters>,
    pub(crate) faults: Mutex<Faults>,
    /// A hash of the token: compared in constant time (`blake3::Hash` equality), and the token itself is
    /// not kept where a debug print could show it.
    pub(crate) token: blake3::Hash,
    pub(crate) latency: Duration,
    pub(crate) page_size: usize,
    pub(crate) addr: SocketAddr,
    /// Signalled after every change, for the persister.
    pub(crate) changed: Notify,
}

/// Locks a sandbox mutex. A panic while holding one cannot leave a half-applied rule (rules check before
/// they change anything), so a poisoned lock is still usable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running sandbox. Dropping it stops the server too, but only [`Sandbox::shutdown`] waits for
/// in-flight requests and reports whether the final save worked.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop_server: oneshot::Sender<()>,
    server: JoinHandle<io::Result<()>>,
    persister: Option<persist::Persister>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Checks the config, loads the state file if there is one, binds, and spawns the server. The sandbox is
    /// accepting connections when this returns.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        config.validate()?;
        let store = match &config.state {
            Some(path) => persist::load_or_create(path.clone()).await?,
            None => Store::default(),
        };
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| SandboxError::Bind { addr: config.bind, source })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind { addr: config.bind, source })?;

        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            counters: Mutex::new(RequestCounters::default()),
            faults: Mutex::new(Faults::new(config.rate_limit, config.fail_rate, config.seed)),
            token: blake3::hash(config.token.as_bytes()),
            latency: config.latency,
            page_size: config.page_size,
            addr,
            changed: Notify::new(),
        });
        let (stop_server, stopped) = oneshot::channel::<()>();
        let app = http::router(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // A dropped handle stops the server as a shutdown does.
                    let _ = stopped.await;
                })
                .await
        });
        let persister = config.state.clone().map(|path| persist::Persister::spawn(Arc::clone(&shared), path));
        tracing::info!(
            %addr,
            state = ?config.state,
            rate_limit = ?config.rate_limit,
            fail_rate = config.fail_rate,
            latency_ms = config.latency.as_millis() as u64,
            seed = config.seed,
            page_size = config.page_size,
            "sandbox listening"
        );
        Ok(Sandbox { addr, shared, stop_server, server, persister })
    }

    /// The URL a client passes as its base URL, e.g. `http://127.0.0.1:41234/app/api/`. A sandbox bound to
    /// every interface is reached through loopback.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}/app/api/", SocketAddr::new(ip, self.addr.port()))
    }

    /// The address the sandbox listens on (with the real port when port 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The request counters alone (cheaper than a [`Sandbox::snapshot`] for a test that polls them).
    pub fn requests(&self) -> RequestCounters {
        lock(&self.shared.counters).clone()
    }

    /// A copy of all data and request counters, as they are now.
    pub fn snapshot(&self) -> SandboxSnapshot {
        let data = lock(&self.shared.store).data().clone();
        let requests = lock(&self.shared.counters).clone();
        SandboxSnapshot {
            companies: data.companies,
            contacts: data.contacts,
            feedback: data.feedback,
            feature_requests: data.feature_requests,
            tags: data.tags,
            requests,
        }
    }

    /// Stops accepting connections, waits for the requests in flight, then saves the state (if configured).
    pub async fn shutdown(self) -> Result<(), SandboxError> {
        let _ = self.stop_server.send(());
        let served = self.server.await;
        let saved = match self.persister {
            Some(persister) => persister.finish().await,
            None => Ok(()),
        };
        tracing::info!(addr = %self.addr, "sandbox stopped");
        served.map_err(|source| SandboxError::Task { task: "server", source })?.map_err(SandboxError::Serve)?;
        saved
    }
}

/// Runs a sandbox in the foreground for the `savio-sync sandbox` subcommand: starts it, writes its base URL
/// as the first line of `out` and a token hint as the second, serves until `shutdown` resolves, then shuts
/// down gracefully (saving the state if configured).
pub async fn serve_until(
    config: SandboxConfig,
    out: &mut (dyn io::Write + Send),
    shutdown: impl Future<Output = ()>,
) -> Result<(), SandboxError> {
    let token_hint = if config.token == DEFAULT_TOKEN {
        format!("token: {DEFAULT_TOKEN} (send it as `Authorization: Token {DEFAULT_TOKEN}`)")
    } else {
        "token: the one you configured (not shown; send it as `Authorization: Token <token>`)".to_owned()
    };
    let sandbox = Sandbox::start(config).await?;
    let written =
        writeln!(out, "{}", sandbox.base_url()).and_then(|()| writeln!(out, "{token_hint}")).and_then(|()| out.flush());
    if let Err(source) = written {
        sandbox.shutdown().await?;
        return Err(SandboxError::Output(source));
    }
    shutdown.await;
    tracing::info!("sandbox shutting down");
    sandbox.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_never_shows_the_token() {
        let config = SandboxConfig { token: "s3cr3t-value".into(), ..SandboxConfig::default() };
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cr3t-value"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }

    #[test]
    fn config_validation_rejects_what_cannot_work() {
        let bad = |change: fn(&mut SandboxConfig)| {
            let mut config = SandboxConfig::default();
            change(&mut config);
            config.validate().err()
        };
        assert_eq!(bad(|c| c.token.clear()), Some(ConfigError::EmptyToken));
        assert_eq!(bad(|c| c.token = "a b".into()), Some(ConfigError::TokenWhitespace));
        assert_eq!(bad(|c| c.fail_rate = 1.5), Some(ConfigError::FailRate(1.5)));
        assert!(matches!(bad(|c| c.fail_rate = f64::NAN), Some(ConfigError::FailRate(_))));
        assert_eq!(bad(|c| c.rate_limit = Some(0)), Some(ConfigError::ZeroRateLimit));
        assert_eq!(bad(|c| c.page_size = 0), Some(ConfigError::PageSize(0)));
        assert_eq!(bad(|c| c.page_size = 1001), Some(ConfigError::PageSize(1001)));
        assert_eq!(bad(|_| {}), None);
    }
}
