//! The writer's transport: plain HTTP/1.1 connections to the one Savio origin, each carrying one request at
//! a time, kept open between requests.
//!
//! Why not reqwest for the POSTs: its pooled client spends about twice the CPU per request of a bare hyper
//! connection (a general pool keyed by origin, URL re-parsing, redirect and decompression layers, a boxed
//! future per call); measured in BENCHMARKS.md, it capped the writer at a fraction of what a load generator
//! reaches against the same server. The writer only ever talks to one origin with at most `--concurrency`
//! requests in flight, so the pool it needs is a stack of idle connections: take one (or connect), send,
//! read the answer, put it back. Listing (`GET`) keeps using reqwest.
//!
//! What a failure means is kept exact, since feedback must never be sent twice:
//! - [`LaneError::Connect`]: no connection could be made (DNS, refused, TLS, connect timeout); nothing sent;
//! - [`LaneError::NotSent`]: the connection was found closed before the request was written (hyper hands the
//!   request back); nothing sent. On a reused connection this is the keep-alive race, and the request is
//!   sent once more on a fresh connection;
//! - [`LaneError::Timeout`] and [`LaneError::Broken`]: the request was handed to the connection; it may
//!   have been applied. Feedback therefore never rides a connection idle for [`UNREPEATABLE_IDLE`] or more,
//!   the window in which a server's own idle close races the request;
//! - [`LaneError::Withheld`]: the caller's [`Departure`] withheld the request once a connection was ready;
//!   nothing sent;
//! - an answer whose status arrived but whose body was cut off, or did not arrive within the request
//!   timeout, is an answer (with [`BodyCut`]): the server handled the request.
//!
//! Every request written to a connection is counted (`written`), so a run's request count is what actually
//! left: a hop of a 307/308 counts, a connection that could not be made or a request withheld does not.
//!
//! Proxies: when `HTTPS_PROXY`, `HTTP_PROXY` or `ALL_PROXY` is set, the client sends its POSTs through
//! reqwest instead, whose proxy support (`NO_PROXY` included) is complete (see [`proxy_configured`];
//! pinned by `tests/proxy.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use tokio::net::TcpStream;
use tokio::time::Instant as Deadline;

use super::departure::Departure;

/// Idle connections older than this are closed rather than reused (see `POOL_IDLE_TIMEOUT` in the client).
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// A request that must not be repeated (feedback) reuses no connection idle longer than this. Servers close
/// idle connections on their own clock (gunicorn after 2 s, Apache, uvicorn and Node after 5 s), often without
/// saying so; a request written as the server closes is lost on the way, and since nothing tells that apart
/// from a server that applied it and died, its outcome is unknown. A fresh connection costs a handshake.
pub(crate) const UNREPEATABLE_IDLE: Duration = Duration::from_secs(1);

/// Why an exchange failed, by what it implies for a retry.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaneError {
    #[error("cannot connect to {origin}: {source}")]
    Connect {
        origin: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the connection closed before the request was written: {0}")]
    NotSent(#[source] hyper::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the connection broke: {0}")]
    Broken(#[source] hyper::Error),
    #[error("withheld before it was written (the run is stopping)")]
    Withheld,
}

/// Why an answer's body is not whole. Its status arrived, so the server handled the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCut {
    /// The connection broke while the body arrived.
    Broken,
    /// The body had not all arrived when the request timeout ran out.
    TooSlow(Duration),
    /// The body is longer than the client reads (this many bytes).
    TooLong(usize),
}

impl std::fmt::Display for BodyCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyCut::Broken => f.write_str("the answer's body was cut off"),
            BodyCut::TooSlow(d) => write!(f, "the answer's body did not arrive within {d:?} (--request-timeout)"),
            BodyCut::TooLong(n) => write!(f, "the answer's body was longer than the {n} bytes read"),
        }
    }
}

/// An answer, its body read up to the caller's limit.
pub(crate) struct LaneResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Why the body is not whole, when it is not.
    pub cut: Option<BodyCut>,
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
    /// How long it may stay idle: [`IDLE_TIMEOUT`], or half of what the server's `Keep-Alive: timeout=`
    /// announced when that is less.
    keep: Duration,
}

impl Idle {
    fn stale(&self, now: Instant) -> bool {
        now.duration_since(self.since) >= self.keep || self.sender.is_closed()
    }
}

/// Connections to one origin (scheme, host, port).
pub(crate) struct Lanes {
    host: String,
    port: u16,
    /// `Host` header: `host[:port]` as in the base URL.
    authority: HeaderValue,
    tls: Option<tokio_rustls::TlsConnector>,
    connect_timeout: Duration,
    request_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

impl Lanes {
    /// For the origin of `base` (http or https, already validated by the client); `tls` is needed for https.
    pub(crate) fn new(
        base: &Url,
        tls: Option<Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Option<Lanes> {
        let host = base.host_str()?.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = base.port_or_known_default()?;
        let authority = match base.port() {
            Some(p) => format!("{}:{p}", base.host_str()?),
            None => base.host_str()?.to_owned(),
        };
        let tls = match (base.scheme(), tls) {
            ("https", Some(config)) => Some(tokio_rustls::TlsConnector::from(config)),
            ("https", None) => return None,
            _ => None,
        };
        Some(Lanes {
            host,
            port,
            authority: HeaderValue::from_str(&authority).ok()?,
            tls,
            connect_timeout,
            request_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `request` (its URI in origin form, `/path?query`; `Host` is added) and reads the answer's body,
    /// at most `limit` bytes, on a connection idle for less than `max_idle` (or a new one). Connecting is
    /// bounded by the connect timeout (a failure there sent nothing); once a connection is ready, `departure`
    /// may withhold the request; the exchange, from handing the request to the connection to the end of the
    /// answer, is bounded by the request timeout. A timeout before the status arrived drops the exchange,
    /// which closes its connection; a body cut off or too slow after the status arrived is returned as far as
    /// it came, with its [`BodyCut`]. `written` counts the requests written to a connection.
    pub(crate) async fn send<D: Departure>(
        &self,
        mut request: Request<Full<Bytes>>,
        limit: usize,
        max_idle: Duration,
        departure: &D,
        written: &mut u32,
    ) -> Result<LaneResponse, LaneError> {
        request.headers_mut().insert(HOST, self.authority.clone());
        let (mut sender, mut idle_since, mut reused) = match self.checkout(max_idle).await {
            Some((sender, since)) => (sender, since, true),
            // Boxed: the connect future (TCP, TLS, handshake) is large, and inline it would be copied with every
            // request's future although most requests reuse a connection.
            None => (Box::pin(self.connect()).await?, Instant::now(), false),
        };
        loop {
            if !departure.cleared().await {
                return Err(LaneError::Withheld);
            }
            // Clearing can take a while (a 429's pause began meanwhile): a request that must not be repeated
            // still rides no connection idle for `max_idle` or more.
            if idle_since.elapsed() < max_idle {
                break;
            }
            sender = Box::pin(self.connect()).await?;
            (idle_since, reused) = (Instant::now(), false);
        }
        self.exchange(sender, reused, request, limit, departure, written).await
    }

    async fn exchange<D: Departure>(
        &self,
        mut sender: SendRequest<Full<Bytes>>,
        reused: bool,
        request: Request<Full<Bytes>>,
        limit: usize,
        departure: &D,
        written: &mut u32,
    ) -> Result<LaneResponse, LaneError> {
        let timeout = self.request_timeout;
        let mut deadline = Deadline::now() + timeout;
        // hyper queues the request to the connection when `try_send_request` is called, and hands it back
        // when the connection closed before writing it.
        *written += 1;
        let sent = tokio::time::timeout_at(deadline, sender.try_send_request(request)).await;
        let response = match sent {
            Err(_) => return Err(LaneError::Timeout(timeout)),
            Ok(Ok(response)) => response,
            Ok(Err(mut err)) => match err.take_message() {
                // The keep-alive race: the server closed an idle connection as we took it. Nothing was
                // written, so a fresh connection gets the request (if the caller still clears it).
                Some(request) if reused => {
                    *written -= 1;
                    sender = Box::pin(self.connect()).await?;
                    if !departure.cleared().await {
                        return Err(LaneError::Withheld);
                    }
                    deadline = Deadline::now() + timeout;
                    *written += 1;
                    match tokio::time::timeout_at(deadline, sender.try_send_request(request)).await {
                        Err(_) => return Err(LaneError::Timeout(timeout)),
                        Ok(sent) => sent.map_err(|e| classify_send(e, written))?,
                    }
                }
                Some(_) => {
                    *written -= 1;
                    return Err(LaneError::NotSent(err.into_error()));
                }
                None => return Err(LaneError::Broken(err.into_error())),
            },
        };
        departure.answered(response.status());
        let (parts, mut body) = response.into_parts();
        let mut buf = Vec::new();
        let mut cut = None;
        // The status has arrived: the server handled the request, whatever becomes of the body.
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::debug!(status = parts.status.as_u16(), "the answer's body was cut off: {e}");
                    cut = Some(BodyCut::Broken);
                    break;
                }
                Err(_) => {
                    tracing::debug!(status = parts.status.as_u16(), "the answer's body was too slow: {timeout:?}");
                    cut = Some(BodyCut::TooSlow(timeout));
                    break;
                }
            };
            if let Ok(data) = frame.into_data() {
                let room = limit - buf.len();
                if data.len() > room {
                    buf.extend_from_slice(&data[..room]);
                    cut = Some(BodyCut::TooLong(limit));
                    break;
                }
                buf.extend_from_slice(&data);
            }
        }
        // An answer read to its end leaves the connection ready for the next request; one cut short does not.
        if cut.is_none() {
            self.checkin(sender, keep_alive(&parts.headers));
        }
        Ok(LaneResponse { status: parts.status, headers: parts.headers, body: buf, cut })
    }

    /// The most recently used idle connection, if it is still open and has been idle for less than
    /// `max_idle` (the others are older still: they stay for requests that may reuse them).
    /// Returned with the moment it was last used.
    async fn checkout(&self, max_idle: Duration) -> Option<(SendRequest<Full<Bytes>>, Instant)> {
        loop {
            let idle = {
                let mut stack = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let top = stack.last()?;
                if top.stale(now) {
                    stack.pop();
                    continue;
                }
                if now.duration_since(top.since) >= max_idle {
                    return None;
                }
                stack.pop()?
            };
            let mut sender = idle.sender;
            // Ready at once unless the connection is still finishing the previous answer.
            if sender.ready().await.is_ok() {
                return Some((sender, idle.since));
            }
        }
    }

    fn checkin(&self, sender: SendRequest<Full<Bytes>>, keep: Duration) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        idle.retain(|i| !i.stale(now));
        idle.push(Idle { sender, since: now, keep });
    }

    /// A new connection (TCP, then TLS for https, then the HTTP/1.1 handshake), within the connect timeout.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, LaneError> {
        let origin = || format!("{}:{}", self.host, self.port);
        let connect = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
            tcp.set_nodelay(true)?;
            let sender = match &self.tls {
                None => handshake(tcp).await?,
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::try_from(self.host.clone())?;
                    handshake(tls.connect(name, tcp).await?).await?
                }
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(sender)
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(sender)) => Ok(sender),
            Ok(Err(source)) => Err(LaneError::Connect { origin: origin(), source }),
            Err(_) => Err(LaneError::Connect {
                origin: origin(),
                source: format!("no connection within {:?}", self.connect_timeout).into(),
            }),
        }
    }
}

async fn handshake<S>(io: S) -> Result<SendRequest<Full<Bytes>>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::trace!("connection to Savio ended: {e}");
        }
    });
    Ok(sender)
}

/// How long a connection may stay idle after this answer: half of the `Keep-Alive: timeout=N` the server
/// announced (it closes at N on its own clock), at most [`IDLE_TIMEOUT`].
fn keep_alive(headers: &HeaderMap) -> Duration {
    let announced = headers
        .get("keep-alive")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|p| p.trim().strip_prefix("timeout=")?.trim().parse::<u64>().ok()));
    announced.map_or(IDLE_TIMEOUT, |secs| (Duration::from_secs(secs) / 2).min(IDLE_TIMEOUT))
}

fn classify_send(mut err: hyper::client::conn::TrySendError<Request<Full<Bytes>>>, written: &mut u32) -> LaneError {
    match err.take_message() {
        Some(_) => {
            *written -= 1;
            LaneError::NotSent(err.into_error())
        }
        None => LaneError::Broken(err.into_error()),
    }
}

/// The origin-form target (`/path?query`) of an absolute URL.
pub(crate) fn origin_form(url: &Url) -> Option<Uri> {
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    target.parse().ok()
}

/// Whether the environment configures a proxy, which this transport does not implement (reqwest does).
pub(crate) fn proxy_configured() -> bool {
    ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}
