//! The Savio HTTP client against real HTTP: mockito servers and tiny raw TCP servers on 127.0.0.1.
//!
//! These pin what the writer relies on: the exact request Savio receives, how every kind of failure is
//! reported and classified for retry, that paging follows `next` as given, and that the API token never
//! leaves the configured origin nor shows up in any message.

use std::error::Error as _;
use std::fmt::{Debug, Display};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use mockito::{Matcher, Server, ServerGuard};
use savio_sync::client::{
    Accepted, ApiToken, BodyCut, ClientConfig, ClientError, Departure, ListQuery, RetryAction, RetryAfter, SavioClient,
    SendError, classify, classify_at, idempotent,
};
use savio_sync::model::{Attributes, Company, Contact, Entity, Feedback, Page, Payload, SavioContact, SavioId};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const TOKEN: &str = "sekr3t-T0ken-8f3a9c";

fn token() -> ApiToken {
    ApiToken::new(TOKEN.to_owned()).unwrap()
}

/// A client for `base` (its trailing slash deliberately missing, the client adds it).
fn client_for(base: &str) -> SavioClient {
    let mut config = ClientConfig::new(token());
    config.base_url = base.to_owned();
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(5);
    SavioClient::new(config).unwrap()
}

fn client(server: &ServerGuard) -> SavioClient {
    client_for(&format!("{}/app/api", server.url()))
}

/// Fails when `value`'s Display, Debug or any source in its chain shows the token.
fn assert_no_token<E: Display + Debug + ?Sized>(value: &E) {
    let shown = format!("{value} | {value:?} | {value:#?}");
    assert!(!shown.contains(TOKEN), "token leaked: {shown}");
}

fn assert_error_hides_token(err: &(dyn std::error::Error + 'static)) {
    let mut current = Some(err);
    while let Some(e) = current {
        assert_no_token(e);
        current = e.source();
    }
}

fn contact() -> Contact {
    let mut attrs = Attributes::new();
    attrs.insert("region".into(), json!("na"));
    Contact {
        name: "New Contact".into(),
        internal_id: "1234567".into(),
        email: Some("new.contact@example.com".into()),
        company: None,
        company_internal_id: Some("6".into()),
        filterable_attributes: attrs,
    }
}

fn company() -> Company {
    Company { name: "Acme Corp".into(), internal_id: "1234567".into(), filterable_attributes: Attributes::new() }
}

fn feedback() -> Feedback {
    Feedback {
        problem: "You need a Zapier integration".into(),
        person_email: Some("bob@example.com".into()),
        tags: vec!["red".into(), "green".into()],
        ..Default::default()
    }
}

/// Sends and expects a failure, checking it hides the token.
async fn send_err(client: &SavioClient, payload: &Payload) -> SendError {
    let attempt = client.send(payload).await;
    let err = attempt.outcome.expect_err("expected a failed attempt");
    assert_error_hides_token(&err);
    err
}

// ---------------------------------------------------------------------------------------------------------
// What Savio receives

#[tokio::test]
async fn each_payload_is_posted_as_json_to_its_endpoint_with_the_token_header() {
    let mut server = Server::new_async().await;
    let cases = [
        (Payload::Company(company()), "/app/api/companies/"),
        (Payload::Contact(contact()), "/app/api/users/"),
        (Payload::Feedback(feedback()), "/app/api/create-feedback/"),
    ];
    let client = client(&server);
    for (i, (payload, path)) in cases.iter().enumerate() {
        let mock = server
            .mock("POST", *path)
            .match_header("authorization", format!("Token {TOKEN}").as_str())
            .match_header("accept", "application/json")
            .match_header("content-type", "application/json")
            .match_header("user-agent", Matcher::Regex("^savio-sync/".into()))
            .match_body(Matcher::Json(serde_json::to_value(payload).unwrap()))
            .with_status(201)
            .with_header("content-type", "application/json")
            .with_body(format!(r#"{{"id": {i}}}"#))
            .expect(1)
            .create_async()
            .await;
        let attempt = client.send(payload).await;
        assert_eq!(
            attempt.outcome.unwrap(),
            Accepted { status: 201, id: Some(SavioId::Int(i as i64)), cut: None },
            "{path}"
        );
        mock.assert_async().await;
    }
}

#[tokio::test]
async fn status_200_is_a_success_too_and_string_ids_parse() {
    let mut server = Server::new_async().await;
    server
        .mock("POST", "/app/api/users/")
        .with_status(200)
        .with_body(r#"{"id": "c-42", "name": "New Contact"}"#)
        .create_async()
        .await;
    let attempt = client(&server).send(&Payload::Contact(contact())).await;
    assert_eq!(attempt.outcome.unwrap(), Accepted { status: 200, id: Some(SavioId::Str("c-42".into())), cut: None });
    assert!(attempt.latency > Duration::ZERO);
}

#[tokio::test]
async fn success_without_a_json_body_is_accepted_without_an_id() {
    let mut server = Server::new_async().await;
    server.mock("POST", "/app/api/create-feedback/").with_status(201).with_body("Created").create_async().await;
    server.mock("POST", "/app/api/users/").with_status(204).create_async().await;
    let client = client(&server);
    let fb = client.send(&Payload::Feedback(feedback())).await;
    assert_eq!(fb.outcome.unwrap(), Accepted { status: 201, id: None, cut: None });
    let c = client.send(&Payload::Contact(contact())).await;
    assert_eq!(c.outcome.unwrap(), Accepted { status: 204, id: None, cut: None });
}

// ---------------------------------------------------------------------------------------------------------
// Answers that are failures

#[tokio::test]
async fn bad_request_body_is_carried_into_the_error_message() {
    let mut server = Server::new_async().await;
    server
        .mock("POST", "/app/api/users/")
        .with_status(400)
        .with_body("{\n  \"email\": [\n    \"Enter a valid email address.\"\n  ]\n}\n")
        .create_async()
        .await;
    let err = send_err(&client(&server), &Payload::Contact(contact())).await;
    assert_eq!(
        err.to_string(),
        r#"POST /app/api/users/: Savio answered 400 Bad Request: { "email": [ "Enter a valid email address." ] }"#
    );
    assert_eq!(err.status(), Some(400));
    assert_eq!(classify(&err, true), RetryAction::Fail);
}

#[tokio::test]
async fn unauthorized_aborts_the_run() {
    let mut server = Server::new_async().await;
    server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(401)
        .with_body(r#"{"detail": "Invalid token."}"#)
        .create_async()
        .await;
    let err = send_err(&client(&server), &Payload::Feedback(feedback())).await;
    assert!(matches!(err, SendError::Status { status: 401, .. }), "{err:?}");
    assert_eq!(classify(&err, false), RetryAction::AbortAuth);
    assert!(err.to_string().contains("401 Unauthorized"), "{err}");
}

#[tokio::test]
async fn too_many_requests_carries_retry_after_in_seconds() {
    let mut server = Server::new_async().await;
    server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(429)
        .with_header("retry-after", "3")
        .create_async()
        .await;
    let err = send_err(&client(&server), &Payload::Feedback(feedback())).await;
    match &err {
        SendError::Status { retry_after, .. } => {
            assert_eq!(*retry_after, Some(RetryAfter::Delay(Duration::from_secs(3))))
        }
        other => panic!("{other:?}"),
    }
    // 429 means "not processed": retried even for feedback.
    assert_eq!(classify(&err, false), RetryAction::Retry { after: Some(Duration::from_secs(3)) });
}

#[tokio::test]
async fn too_many_requests_carries_retry_after_as_an_http_date() {
    let mut server = Server::new_async().await;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    server
        .mock("POST", "/app/api/users/")
        .with_status(429)
        .with_header("retry-after", &httpdate::fmt_http_date(at))
        .create_async()
        .await;
    let err = send_err(&client(&server), &Payload::Contact(contact())).await;
    match &err {
        SendError::Status { retry_after, .. } => assert_eq!(*retry_after, Some(RetryAfter::At(at))),
        other => panic!("{other:?}"),
    }
    let now = at - Duration::from_secs(20);
    assert_eq!(classify_at(&err, true, now), RetryAction::Retry { after: Some(Duration::from_secs(20)) });
}

#[tokio::test]
async fn service_unavailable_is_retried_even_for_feedback() {
    let mut server = Server::new_async().await;
    server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(503)
        .with_header("retry-after", "not a number")
        .with_body("<html><body>Service Unavailable</body></html>")
        .create_async()
        .await;
    let err = send_err(&client(&server), &Payload::Feedback(feedback())).await;
    assert!(matches!(err, SendError::Status { status: 503, retry_after: None, .. }), "{err:?}");
    assert_eq!(classify(&err, idempotent(Entity::Feedback)), RetryAction::Retry { after: None });
}

#[tokio::test]
async fn server_error_page_echoing_the_token_is_scrubbed() {
    let mut server = Server::new_async().await;
    server
        .mock("POST", "/app/api/users/")
        .with_status(500)
        .with_body(format!("Traceback ... HTTP_AUTHORIZATION = 'Token {TOKEN}'"))
        .create_async()
        .await;
    let err = send_err(&client(&server), &Payload::Contact(contact())).await;
    assert!(err.to_string().contains("HTTP_AUTHORIZATION = 'Token <redacted>'"), "{err}");
}

#[tokio::test]
async fn long_error_bodies_are_cut_to_about_two_kilobytes() {
    let mut server = Server::new_async().await;
    server.mock("POST", "/app/api/users/").with_status(422).with_body("x ".repeat(50_000)).create_async().await;
    let err = send_err(&client(&server), &Payload::Contact(contact())).await;
    match &err {
        SendError::Status { body, .. } => {
            assert!(body.len() <= 2048 + 3, "{}", body.len());
            assert!(body.ends_with('…'));
        }
        other => panic!("{other:?}"),
    }
}

/// What the table in `client::retry` says, restated independently so a change to either shows up here.
fn expected_action(status: u16, idempotent: bool) -> RetryAction {
    let retry = RetryAction::Retry { after: None };
    let unless_unsafe = if idempotent { retry } else { RetryAction::Unknown };
    match status {
        401 | 403 | 407 => RetryAction::AbortAuth,
        408 | 429 | 503 => retry,
        500 | 502 | 504 => unless_unsafe,
        501 | 505 | 506 | 508 | 510 | 511 => RetryAction::Fail,
        500..=599 => unless_unsafe,
        _ => RetryAction::Fail,
    }
}

#[tokio::test]
async fn every_status_code_from_200_to_599_classifies_as_documented() {
    // 1xx are interim answers that the HTTP stack consumes itself; they never reach the client.
    let mut server = Server::new_async().await;
    let client = client(&server);
    let payload = Payload::Contact(contact());
    for status in 200u16..=599 {
        let mock = server.mock("POST", "/app/api/users/").with_status(usize::from(status)).create_async().await;
        let attempt = client.send(&payload).await;
        match attempt.outcome {
            Ok(accepted) => {
                assert!((200..300).contains(&status), "{status} accepted");
                assert_eq!(accepted.status, status);
            }
            Err(err) => {
                assert!(!(200..300).contains(&status), "{status} refused: {err}");
                assert!(matches!(err, SendError::Status { status: s, .. } if s == status), "{status}: {err:?}");
                for idempotent in [true, false] {
                    assert_eq!(
                        classify(&err, idempotent),
                        expected_action(status, idempotent),
                        "{status} idempotent={idempotent}"
                    );
                }
            }
        }
        mock.remove_async().await;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Transport failures

/// A server that accepts, reads the request and never answers.
async fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            held.push(socket);
        }
    });
    format!("http://{addr}/app/api")
}

/// A server that reads the request, then closes the connection without a word.
async fn hanging_up_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 8192];
            let _ = socket.read(&mut buf).await;
            drop(socket);
        }
    });
    format!("http://{addr}/app/api")
}

#[tokio::test]
async fn silent_server_times_out_unknown_for_feedback_retried_for_contacts() {
    let base = silent_server().await;
    let mut config = ClientConfig::new(token());
    config.base_url = base;
    config.request_timeout = Duration::from_millis(200);
    let client = SavioClient::new(config).unwrap();

    let err = send_err(&client, &Payload::Feedback(feedback())).await;
    assert!(matches!(err, SendError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().starts_with("POST /app/api/create-feedback/: no answer from Savio within 200ms"), "{err}");
    assert_eq!(classify(&err, idempotent(Entity::Feedback)), RetryAction::Unknown);

    let err = send_err(&client, &Payload::Contact(contact())).await;
    assert!(matches!(err, SendError::Timeout { .. }), "{err:?}");
    assert_eq!(classify(&err, idempotent(Entity::Contact)), RetryAction::Retry { after: None });
}

#[tokio::test]
async fn refused_connection_is_connect_and_retried_even_for_feedback() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client_for(&format!("http://{addr}/app/api"));
    let err = send_err(&client, &Payload::Feedback(feedback())).await;
    assert!(matches!(err, SendError::Connect { .. }), "{err:?}");
    assert!(err.source().is_some(), "the reqwest error is kept");
    assert_eq!(err.to_string(), "POST /app/api/create-feedback/: cannot connect to Savio (nothing was sent)");
    assert_eq!(classify(&err, false), RetryAction::Retry { after: None });
}

#[tokio::test]
async fn connection_closed_after_the_request_is_unknown_for_feedback() {
    let client = client_for(&hanging_up_server().await);
    let err = send_err(&client, &Payload::Feedback(feedback())).await;
    assert!(matches!(err, SendError::Connection { .. }), "{err:?}");
    assert_eq!(classify(&err, false), RetryAction::Unknown);
    let err = send_err(&client, &Payload::Company(company())).await;
    assert!(matches!(err, SendError::Connection { .. }), "{err:?}");
    assert_eq!(classify(&err, true), RetryAction::Retry { after: None });
}

/// A server that answers every request `201 {"id": n}` on kept-alive connections, counting connections
/// and requests.
async fn keep_alive_server()
-> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    scripted_server(|n| {
        let body = format!("{{\"id\": {n}}}");
        (format!("HTTP/1.1 201 Created\r\ncontent-length: {}\r\n\r\n{body}", body.len()), false)
    })
    .await
}

/// A server that answers request `n` (from 1) with `answer(n)`: the raw HTTP answer, and whether to close
/// the connection after it; counting connections and requests.
async fn scripted_server(
    answer: fn(usize) -> (String, bool),
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let r = Arc::clone(&r);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: headers, then a Content-Length body.
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < end + 4 + len {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + 4 + len);
                    let n = r.fetch_add(1, Ordering::SeqCst) + 1;
                    let (text, close) = answer(n);
                    if socket.write_all(text.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}/app/api"), connections, requests)
}

#[tokio::test]
async fn connections_are_kept_open_and_reused_between_requests() {
    use std::sync::atomic::Ordering;
    let (base, connections, requests) = keep_alive_server().await;
    let client = client_for(&base);
    for i in 1..=20 {
        let attempt = client.send(&Payload::Feedback(feedback())).await;
        let accepted = attempt.outcome.expect("accepted");
        assert_eq!(accepted.id, Some(SavioId::Int(i)));
    }
    // Four at once need four connections; afterwards they are all reused.
    let company = Payload::Company(company());
    let sends: Vec<_> = (0..4).map(|_| client.send(&company)).collect();
    for attempt in futures::future::join_all(sends).await {
        attempt.outcome.expect("accepted");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 24);
    let opened = connections.load(Ordering::SeqCst);
    assert!((1..=4).contains(&opened), "{opened} connections for 24 requests, at most 4 at once");
}

#[tokio::test]
async fn feedback_never_rides_a_connection_idle_for_a_second_upserts_do() {
    use std::sync::atomic::Ordering;
    let (base, connections, _) = keep_alive_server().await;
    let client = client_for(&base);
    client.send(&Payload::Feedback(feedback())).await.outcome.expect("accepted");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A server closing idle connections at about this age would race the request: a new connection.
    client.send(&Payload::Feedback(feedback())).await.outcome.expect("accepted");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // An upsert may be repeated if the race strikes: it reuses the idle connection.
    client.send(&Payload::Company(company())).await.outcome.expect("accepted");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

/// Answers that announce the end of their connection, each in its own way: `Connection: close`, HTTP/1.0
/// with its body delimited by the close, HTTP/1.1 likewise. (A close that an answer did not announce races the
/// next request on that connection: see `lanes::UNREPEATABLE_IDLE`.)
const CLOSING: [&str; 3] = [
    "HTTP/1.1 201 Created\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{\"id\": 1}",
    "HTTP/1.0 201 Created\r\ncontent-type: application/json\r\n\r\n{\"id\": 1}",
    "HTTP/1.1 201 Created\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\n\r\n{\"id\": 1}",
];

#[tokio::test]
async fn answers_that_close_their_connection_land_every_request_once() {
    use std::sync::atomic::Ordering;
    let servers = [
        scripted_server(|_| (CLOSING[0].into(), true)).await,
        scripted_server(|_| (CLOSING[1].into(), true)).await,
        scripted_server(|_| (CLOSING[2].into(), true)).await,
    ];
    for (i, (base, connections, requests)) in servers.into_iter().enumerate() {
        let client = client_for(&base);
        for n in 0..6 {
            let payload = if n % 2 == 0 { Payload::Feedback(feedback()) } else { Payload::Company(company()) };
            let accepted = client.send(&payload).await.outcome.unwrap_or_else(|e| panic!("{}: {e}", CLOSING[i]));
            assert_eq!(accepted, Accepted { status: 201, id: Some(SavioId::Int(1)), cut: None }, "{}", CLOSING[i]);
        }
        assert_eq!(requests.load(Ordering::SeqCst), 6, "each sent once: {}", CLOSING[i]);
        assert_eq!(connections.load(Ordering::SeqCst), 6, "a new connection each: {}", CLOSING[i]);
    }
}

#[tokio::test]
async fn a_servers_keep_alive_timeout_bounds_the_reuse_of_its_connections() {
    use std::sync::atomic::Ordering;
    let (base, connections, _) = scripted_server(|_| {
        ("HTTP/1.1 201 Created\r\nkeep-alive: timeout=1, max=100\r\ncontent-length: 9\r\n\r\n{\"id\": 1}".into(), false)
    })
    .await;
    let client = client_for(&base);
    client.send(&Payload::Company(company())).await.outcome.expect("accepted");
    client.send(&Payload::Company(company())).await.outcome.expect("accepted");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "reused while fresh");
    tokio::time::sleep(Duration::from_millis(600)).await;
    client.send(&Payload::Company(company())).await.outcome.expect("accepted");
    assert_eq!(connections.load(Ordering::SeqCst), 2, "not past half of what the server announced");
}

#[tokio::test]
async fn a_success_whose_body_is_cut_off_is_a_success_without_an_id() {
    // The status says Savio created it: re-sending (or reporting "unknown") would be wrong.
    let (base, _, requests) =
        scripted_server(|_| ("HTTP/1.1 201 Created\r\ncontent-length: 200\r\n\r\n{\"id\": 7, \"pro".into(), true))
            .await;
    let client = client_for(&base);
    for payload in [Payload::Feedback(feedback()), Payload::Company(company())] {
        let accepted = client.send(&payload).await.outcome.expect("accepted");
        assert_eq!(accepted, savio_sync::client::Accepted { status: 201, id: None, cut: Some(BodyCut::Broken) });
    }
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 2, "each sent once");
}

#[tokio::test]
async fn a_success_whose_body_is_too_slow_is_a_success_without_an_id() {
    // The status line and headers arrive, the chunked body trickles past the request timeout: the status says
    // Savio applied it, exactly as when the connection is cut mid-body.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = socket.read(&mut buf).await;
                let head = "HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"i\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = socket.write_all(b"6\r\nd\": 7}\r\n0\r\n\r\n").await;
            });
        }
    });
    let mut config = ClientConfig::new(token());
    config.base_url = format!("http://{addr}/app/api");
    config.request_timeout = Duration::from_millis(300);
    let client = SavioClient::new(config).unwrap();
    for payload in [Payload::Feedback(feedback()), Payload::Company(company())] {
        let attempt = client.send(&payload).await;
        let cut = Some(BodyCut::TooSlow(Duration::from_millis(300)));
        assert_eq!(attempt.outcome.expect("accepted"), Accepted { status: 201, id: None, cut });
        assert_eq!(attempt.written, 1);
        assert!(attempt.latency < Duration::from_secs(1), "{:?}", attempt.latency);
    }
}

/// A [`Departure`] that withholds every request, counting how often it was asked.
#[derive(Default)]
struct Withhold(std::sync::atomic::AtomicUsize);

impl Departure for Withhold {
    fn cleared(&self) -> impl std::future::Future<Output = bool> + Send {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::ready(false)
    }
}

#[tokio::test]
async fn a_request_withheld_at_its_departure_is_never_written() {
    use std::sync::atomic::Ordering;
    let (base, connections, requests) = keep_alive_server().await;
    let client = client_for(&base);
    let body = bytes::Bytes::from(serde_json::to_vec(&feedback()).unwrap());
    let withhold = Withhold::default();
    let attempt = client.send_json_with(Entity::Feedback, body.clone(), &withhold).await;
    let err = attempt.outcome.expect_err("withheld");
    assert!(matches!(err, SendError::Withheld { .. }), "{err:?}");
    assert_eq!(err.to_string(), "POST /app/api/create-feedback/: not sent (withheld before it was written)");
    assert_eq!((attempt.written, withhold.0.load(Ordering::SeqCst)), (0, 1), "asked once a connection was ready");
    tokio::time::sleep(Duration::from_millis(100)).await; // the server's accept loop may lag the handshake
    assert_eq!(connections.load(Ordering::SeqCst), 1, "asked once connected");
    assert_eq!(requests.load(Ordering::SeqCst), 0, "nothing reached the server");
    let attempt = client.send_json_with(Entity::Feedback, body, &()).await;
    attempt.outcome.expect("accepted");
    assert_eq!((attempt.written, requests.load(Ordering::SeqCst)), (1, 1));
}

/// A [`Departure`] that records the statuses it is told.
#[derive(Default)]
struct Told(std::sync::Mutex<Vec<u16>>);

impl Departure for Told {
    fn cleared(&self) -> impl std::future::Future<Output = bool> + Send {
        std::future::ready(true)
    }

    fn answered(&self, status: reqwest::StatusCode) {
        self.0.lock().unwrap().push(status.as_u16());
    }
}

#[tokio::test]
async fn an_answers_status_is_told_before_its_body_has_arrived() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 8192];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = socket.write_all(b"{}").await;
        }
    });
    let client = client_for(&format!("http://{addr}/app/api"));
    let told = std::sync::Arc::new(Told::default());
    let body = bytes::Bytes::from(serde_json::to_vec(&contact()).unwrap());
    let sending = {
        let (client, told) = (client.clone(), std::sync::Arc::clone(&told));
        tokio::spawn(async move { client.send_json_with(Entity::Contact, body, &*told).await })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(*told.0.lock().unwrap(), [401], "told while the body is still on its way");
    let err = sending.await.unwrap().outcome.expect_err("a 401");
    assert_eq!(classify(&err, true), RetryAction::AbortAuth);
}

#[tokio::test]
async fn a_gzipped_success_still_gives_its_id() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(br#"{"id": 41}"#).unwrap();
    let mut server = Server::new_async().await;
    server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(201)
        .with_header("content-encoding", "gzip")
        .with_body(gz.finish().unwrap())
        .create_async()
        .await;
    let accepted = client(&server).send(&Payload::Feedback(feedback())).await.outcome.expect("accepted");
    assert_eq!(accepted.id, Some(SavioId::Int(41)));
}

#[tokio::test]
async fn a_gzipped_error_body_is_carried_decompressed() {
    // Regression: the success's body was decompressed, an error's was not: a 400's reason was gzip bytes.
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(br#"{"name": ["This field is required."]}"#).unwrap();
    let mut server = Server::new_async().await;
    server
        .mock("POST", "/app/api/companies/")
        .with_status(400)
        .with_header("content-encoding", "gzip")
        .with_body(gz.finish().unwrap())
        .create_async()
        .await;
    let err = send_err(&client(&server), &Payload::Company(company())).await;
    assert!(
        err.to_string().ends_with(r#"Savio answered 400 Bad Request: {"name": ["This field is required."]}"#),
        "{err}"
    );
}

#[tokio::test]
async fn a_2xx_html_page_is_not_the_api_and_fails_the_row() {
    let mut server = Server::new_async().await;
    server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(200)
        .with_header("content-type", "text/html; charset=utf-8")
        .with_body("<html><body>Please log in</body></html>")
        .create_async()
        .await;
    let err = send_err(&client(&server), &Payload::Feedback(feedback())).await;
    assert!(err.to_string().contains("answered 200 OK with an HTML page, not the API's JSON"), "{err}");
    assert_eq!(classify(&err, false), RetryAction::Fail);
}

/// 2xx answers labelled `text/html` that are not pages: no body, none at all, and JSON.
const HTML_LABELLED: [&str; 3] = [
    "HTTP/1.1 201 Created\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: 0\r\n\r\n",
    "HTTP/1.1 204 No Content\r\ncontent-type: text/html; charset=utf-8\r\n\r\n",
    "HTTP/1.1 201 Created\r\ncontent-type: text/html\r\ncontent-length: 10\r\n\r\n {\"id\": 4}",
];

#[tokio::test]
async fn a_2xx_labelled_html_without_a_page_is_a_success() {
    // Regression: the content type alone made these "not the API" failures, though the server had applied
    // them (Django's `HttpResponse(status=201)` is `text/html` by default): a re-run would duplicate feedback.
    let servers = [
        scripted_server(|_| (HTML_LABELLED[0].into(), false)).await,
        scripted_server(|_| (HTML_LABELLED[1].into(), false)).await,
        scripted_server(|_| (HTML_LABELLED[2].into(), false)).await,
    ];
    let expected = [(201, None), (204, None), (201, Some(SavioId::Int(4)))];
    for ((base, _, requests), (status, id)) in servers.into_iter().zip(expected) {
        let client = client_for(&base);
        for payload in [Payload::Feedback(feedback()), Payload::Company(company())] {
            let accepted = client.send(&payload).await.outcome.expect("a success");
            assert_eq!(accepted, Accepted { status, id: id.clone(), cut: None });
        }
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 2, "each sent once");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Redirects and origins

/// Mocks on `server` that must never be hit, for any method used here.
async fn must_not_be_called(server: &mut ServerGuard) -> Vec<mockito::Mock> {
    let mut mocks = Vec::new();
    for method in ["GET", "POST"] {
        mocks.push(
            server
                .mock(method, Matcher::Any)
                .with_status(201)
                .with_body(r#"{"id": 666, "count": 1, "next": null, "results": []}"#)
                .expect(0)
                .create_async()
                .await,
        );
    }
    mocks
}

#[tokio::test]
async fn cross_origin_redirect_is_not_followed_and_the_token_never_reaches_the_target() {
    let mut savio = Server::new_async().await;
    let mut elsewhere = Server::new_async().await;
    let trap = must_not_be_called(&mut elsewhere).await;
    for status in [301, 302, 307, 308] {
        let mock = savio
            .mock("POST", "/app/api/users/")
            .with_status(status)
            .with_header("location", &format!("{}/app/api/users/?token=leak", elsewhere.url()))
            .create_async()
            .await;
        let err = send_err(&client(&savio), &Payload::Contact(contact())).await;
        match &err {
            SendError::Redirect { status: s, location, .. } => {
                assert_eq!(*s, status as u16);
                assert_eq!(*location, format!("{}/app/api/users/", elsewhere.url()), "all of it but the query");
            }
            other => panic!("{status}: {other:?}"),
        }
        assert!(!err.to_string().contains("leak"), "{err}");
        assert_eq!(classify(&err, true), RetryAction::Fail);
        mock.remove_async().await;
    }
    // The same for a list request.
    savio
        .mock("GET", "/app/api/users/")
        .with_status(302)
        .with_header("location", &format!("{}/users/", elsewhere.url()))
        .create_async()
        .await;
    let err = client(&savio).list_page::<SavioContact>("users/").await.unwrap_err();
    assert!(matches!(err, ClientError::Request(SendError::Redirect { .. })), "{err:?}");
    assert_error_hides_token(&err);
    for mock in trap {
        mock.assert_async().await;
    }
}

#[tokio::test]
async fn same_origin_307_is_followed_with_the_token_and_the_body() {
    let mut server = Server::new_async().await;
    let payload = Payload::Contact(contact());
    server
        .mock("POST", "/app/api/users/")
        .with_status(307)
        .with_header("location", "/app/api/v2/users/")
        .create_async()
        .await;
    let target = server
        .mock("POST", "/app/api/v2/users/")
        .match_header("authorization", format!("Token {TOKEN}").as_str())
        .match_body(Matcher::Json(serde_json::to_value(&payload).unwrap()))
        .with_status(201)
        .with_body(r#"{"id": 7}"#)
        .expect(1)
        .create_async()
        .await;
    let attempt = client(&server).send(&payload).await;
    assert_eq!(attempt.outcome.unwrap().id, Some(SavioId::Int(7)));
    assert_eq!(attempt.written, 2, "the request and its 307 hop were both written");
    target.assert_async().await;
}

#[tokio::test]
async fn post_answered_302_is_not_followed_even_within_the_origin() {
    // Following would turn the POST into a GET, and a 200 listing would pass for a successful upsert.
    let mut server = Server::new_async().await;
    server
        .mock("POST", "/app/api/users/")
        .with_status(302)
        .with_header("location", "/app/api/elsewhere/")
        .create_async()
        .await;
    let target = server.mock("GET", "/app/api/elsewhere/").with_status(200).expect(0).create_async().await;
    let err = send_err(&client(&server), &Payload::Contact(contact())).await;
    assert!(matches!(err, SendError::Redirect { status: 302, .. }), "{err:?}");
    // The whole new URL, so the user sees which base URL to use instead.
    let shown = format!("Savio answered 302 redirecting to {}/app/api/elsewhere/;", server.url());
    assert!(err.to_string().contains(&shown), "{err}");
    target.assert_async().await;
}

/// Mocks `/app/api/chain{n}/0` → `/1` → … → `/n`, which answers an empty page.
async fn redirect_chain(server: &mut ServerGuard, n: usize) -> Vec<mockito::Mock> {
    let mut mocks = Vec::new();
    for hop in 0..n {
        mocks.push(
            server
                .mock("GET", format!("/app/api/chain{n}/{hop}").as_str())
                .match_header("authorization", format!("Token {TOKEN}").as_str())
                .with_status(302)
                .with_header("location", &format!("/app/api/chain{n}/{}", hop + 1))
                .create_async()
                .await,
        );
    }
    mocks.push(
        server
            .mock("GET", format!("/app/api/chain{n}/{n}").as_str())
            .with_status(200)
            .with_body(r#"{"count": 0, "next": null, "previous": null, "results": []}"#)
            .create_async()
            .await,
    );
    mocks
}

#[tokio::test]
async fn get_follows_five_same_origin_redirects_but_not_six() {
    let mut server = Server::new_async().await;
    let _five = redirect_chain(&mut server, 5).await;
    let _six = redirect_chain(&mut server, 6).await;
    let client = client(&server);
    let page: Page<SavioContact> = client.list_page("chain5/0").await.unwrap();
    assert_eq!(page.count, Some(0));
    let err = client.list_page::<SavioContact>("chain6/0").await.unwrap_err();
    assert_error_hides_token(&err);
    assert!(matches!(err, ClientError::Request(SendError::Redirect { .. })), "{err:?}");
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused_naming_the_flag() {
    let mut config = ClientConfig::new(token());
    config.base_url = "http://savio.example.com/app/api/".into();
    let err = SavioClient::new(config.clone()).unwrap_err();
    assert!(matches!(err, ClientError::InsecureHttp { .. }), "{err:?}");
    assert!(err.to_string().contains("--allow-insecure-http"), "{err}");
    assert!(err.to_string().contains("savio.example.com"), "{err}");
    assert_error_hides_token(&err);

    config.allow_insecure_http = true;
    let client = SavioClient::new(config).unwrap();
    assert_eq!(client.base_url().as_str(), "http://savio.example.com/app/api/");
}

#[tokio::test]
async fn debug_of_client_config_and_token_never_shows_the_token() {
    let mut config = ClientConfig::new(token());
    config.base_url = "http://127.0.0.1:9/app/api".into();
    assert_no_token(&format!("{config:?}"));
    let client = SavioClient::new(config.clone()).unwrap();
    let token = token();
    assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
    assert_eq!(format!("{token}"), "<redacted>");
    assert_no_token(&format!("{client:?} {client:#?} {token:?} {token}"));
    assert_eq!(token.expose(), TOKEN);
}

// ---------------------------------------------------------------------------------------------------------
// Listing

fn contact_json(id: u32) -> serde_json::Value {
    json!({"id": id, "email": format!("c{id}@example.com"), "name": format!("C {id}")})
}

#[tokio::test]
async fn pagination_follows_next_across_three_pages_in_order() {
    let mut server = Server::new_async().await;
    let url = server.url();
    let first = server
        .mock("GET", "/app/api/users/")
        .match_header("authorization", format!("Token {TOKEN}").as_str())
        .match_header("accept", "application/json")
        .match_query(Matcher::AllOf(vec![
            Matcher::UrlEncoded("search".into(), "example.com".into()),
            Matcher::UrlEncoded("ordering".into(), "-updated".into()),
            Matcher::UrlEncoded("page_size".into(), "2".into()),
        ]))
        .with_status(200)
        .with_body(
            json!({
                "count": 5,
                "next": format!("{url}/app/api/users/?page=2"),
                "previous": null,
                "results": [contact_json(1), contact_json(2)],
            })
            .to_string(),
        )
        .expect(1)
        .create_async()
        .await;
    let second = server
        .mock("GET", "/app/api/users/")
        .match_header("authorization", format!("Token {TOKEN}").as_str())
        .match_query(Matcher::UrlEncoded("page".into(), "2".into()))
        .with_status(200)
        .with_body(
            json!({
                "count": 5,
                // A relative link resolves against the page it came from.
                "next": "/app/api/users/?page=3",
                "previous": format!("{url}/app/api/users/"),
                "results": [contact_json(3), contact_json(4)],
            })
            .to_string(),
        )
        .expect(1)
        .create_async()
        .await;
    let third = server
        .mock("GET", "/app/api/users/")
        .match_query(Matcher::UrlEncoded("page".into(), "3".into()))
        .with_status(200)
        .with_body(
            json!({
                "count": 5,
                "next": null,
                "previous": format!("{url}/app/api/users/?page=2"),
                "results": [contact_json(5)],
            })
            .to_string(),
        )
        .expect(1)
        .create_async()
        .await;

    let client = client(&server);
    let query = ListQuery { search: Some("example.com".into()), ordering: Some("-updated".into()), page_size: Some(2) };
    let contacts: Vec<SavioContact> = client.list_contacts(&query).try_collect().await.unwrap();
    let ids: Vec<SavioId> = contacts.into_iter().map(|c| c.id).collect();
    assert_eq!(ids, (1..=5).map(SavioId::Int).collect::<Vec<_>>());
    first.assert_async().await;
    second.assert_async().await;
    third.assert_async().await;
}

#[tokio::test]
async fn listing_with_total_reports_the_first_page_count_without_fetching_it_twice() {
    let mut server = Server::new_async().await;
    let url = server.url();
    let first = server
        .mock("GET", "/app/api/companies/")
        .match_query(Matcher::Missing)
        .with_status(200)
        .with_body(
            json!({
                "count": 3,
                "next": format!("{url}/app/api/companies/?page=2"),
                "previous": null,
                "results": [{"id": 1, "name": "A"}, {"id": 2, "name": "B"}],
            })
            .to_string(),
        )
        .expect(1)
        .create_async()
        .await;
    server
        .mock("GET", "/app/api/companies/")
        .match_query(Matcher::UrlEncoded("page".into(), "2".into()))
        .with_status(200)
        .with_body(json!({"count": 3, "next": null, "results": [{"id": 3}]}).to_string())
        .expect(1)
        .create_async()
        .await;
    let client = client(&server);
    let listing = client.list_companies_with_total(&ListQuery::default()).await.unwrap();
    assert_eq!(listing.total, Some(3));
    let names: Vec<Option<String>> = listing.items.map_ok(|c| c.name).try_collect().await.unwrap();
    assert_eq!(names, [Some("A".into()), Some("B".into()), None]);
    first.assert_async().await;
}

#[tokio::test]
async fn next_link_to_another_origin_is_refused_after_yielding_the_page() {
    let mut savio = Server::new_async().await;
    let mut elsewhere = Server::new_async().await;
    let trap = must_not_be_called(&mut elsewhere).await;
    savio
        .mock("GET", "/app/api/users/")
        .with_status(200)
        .with_body(
            json!({
                "count": 2,
                "next": format!("{}/app/api/users/?page=2", elsewhere.url()),
                "results": [contact_json(1)],
            })
            .to_string(),
        )
        .create_async()
        .await;
    let client = client(&savio);
    let items: Vec<Result<SavioContact, ClientError>> = client.list_contacts(&ListQuery::default()).collect().await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap().id, SavioId::Int(1));
    let err = items[1].as_ref().unwrap_err();
    assert!(matches!(err, ClientError::ForeignPage { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "GET /app/api/users/: page link to {} refused: the Savio API token is only sent to {}",
            elsewhere.url(),
            savio.url()
        )
    );
    assert_error_hides_token(err);

    // Asked for directly, a foreign page is refused the same way.
    let direct = format!("{}/app/api/users/?page=2", elsewhere.url());
    let err = client.list_page::<SavioContact>(&direct).await.unwrap_err();
    assert!(matches!(err, ClientError::ForeignPage { .. }), "{err:?}");
    assert_error_hides_token(&err);
    for mock in trap {
        mock.assert_async().await;
    }
}

#[tokio::test]
async fn page_errors_name_the_page_and_classify_as_idempotent() {
    let mut server = Server::new_async().await;
    let url = server.url();
    server
        .mock("GET", "/app/api/users/")
        .match_query(Matcher::Missing)
        .with_status(200)
        .with_body(
            json!({"count": 2, "next": format!("{url}/app/api/users/?page=2"), "results": [contact_json(1)]})
                .to_string(),
        )
        .create_async()
        .await;
    server
        .mock("GET", "/app/api/users/")
        .match_query(Matcher::UrlEncoded("page".into(), "2".into()))
        .with_status(502)
        .with_body("Bad Gateway")
        .create_async()
        .await;
    let client = client(&server);
    let items: Vec<Result<SavioContact, ClientError>> = client.list_contacts(&ListQuery::default()).collect().await;
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert_error_hides_token(err);
    assert_eq!(err.to_string(), "GET /app/api/users/?page=2: Savio answered 502 Bad Gateway: Bad Gateway");
    match err {
        ClientError::Request(send) => {
            assert_eq!(send.endpoint().url().as_str(), format!("{url}/app/api/users/?page=2"));
            assert_eq!(classify(send, true), RetryAction::Retry { after: None });
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_list_answered_with_a_bare_array_is_its_only_page() {
    // Regression: an unpaginated list (a bare JSON array, as a DRF list view answers with pagination off)
    // was "not a page of results", failing `export` and the demo.
    let mut server = Server::new_async().await;
    let list = server
        .mock("GET", "/app/api/companies/")
        .with_status(200)
        .with_header("content-type", "application/json; charset=utf-8")
        .with_body(json!([{"id": 1, "name": "A"}, {"id": "2", "name": "B", "extra": true}]).to_string())
        .expect(1)
        .create_async()
        .await;
    let client = client(&server);
    let listing = client.list_companies_with_total(&ListQuery::default()).await.unwrap();
    assert_eq!(listing.total, Some(2));
    let names: Vec<Option<String>> = listing.items.map_ok(|c| c.name).try_collect().await.unwrap();
    assert_eq!(names, [Some("A".to_owned()), Some("B".to_owned())]);
    list.assert_async().await;
    let page: Page<SavioContact> = serde_json::from_str("[]").unwrap();
    assert_eq!((page.count, page.next, page.results.len()), (Some(0), None, 0));
    // Neither shape: the message still says what was wrong.
    let err = serde_json::from_str::<Page<SavioContact>>(r#"{"results": [{"name": "no id"}]}"#).unwrap_err();
    assert!(err.to_string().contains("missing field `id`"), "{err}");
}

#[tokio::test]
async fn a_page_that_is_not_a_page_is_a_decode_error() {
    let mut server = Server::new_async().await;
    server.mock("GET", "/app/api/users/").with_status(200).with_body("<html>login</html>").create_async().await;
    let err = client(&server).list_page::<SavioContact>("users/").await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
    assert!(err.source().is_some());
    assert_error_hides_token(&err);
}

#[tokio::test]
async fn next_links_that_go_in_a_circle_stop_with_an_error() {
    let mut server = Server::new_async().await;
    let url = server.url();
    server
        .mock("GET", "/app/api/users/")
        .match_query(Matcher::Missing)
        .with_status(200)
        .with_body(json!({"next": format!("{url}/app/api/users/?page=2"), "results": [contact_json(1)]}).to_string())
        .expect(1)
        .create_async()
        .await;
    server
        .mock("GET", "/app/api/users/")
        .match_query(Matcher::UrlEncoded("page".into(), "2".into()))
        .with_status(200)
        .with_body(json!({"next": format!("{url}/app/api/users/"), "results": [contact_json(2)]}).to_string())
        .expect(1)
        .create_async()
        .await;
    let items: Vec<Result<SavioContact, ClientError>> =
        client(&server).list_contacts(&ListQuery::default()).collect().await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(matches!(items[2], Err(ClientError::PageLoop { .. })), "{items:?}");
    assert_error_hides_token(items[2].as_ref().unwrap_err());
}
