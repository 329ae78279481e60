//! `savio-sync sync` end to end, as a user runs it: the real binary against HTTP servers on 127.0.0.1
//! (mockito for scripted answers, the project's sandbox for a faithful API, and small purpose-built servers
//! for timing and ordering). Each test reads the reports a user would read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::{Value, json};

const TOKEN: &str = "tok-Zq8-very-secret-4711";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    dir: PathBuf,
}

impl Run {
    fn summary(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("reports/summary.json")).expect("summary.json"))
            .expect("summary is JSON")
    }

    /// `results.csv` as (line, entity, key, status, http_status, attempts, reason) rows, sorted by line.
    fn results(&self) -> Vec<[String; 7]> {
        let mut r = csv::Reader::from_path(self.dir.join("reports/results.csv")).expect("results.csv");
        let mut rows: Vec<[String; 7]> = r
            .records()
            .map(|rec| {
                let rec = rec.expect("a results line");
                [0, 1, 2, 3, 4, 6, 8].map(|i| rec[i].to_string())
            })
            .collect();
        rows.sort_by_key(|r| (r[0].parse::<u64>().unwrap_or(0), r[1].clone()));
        rows
    }

    fn failures(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("reports").join(name)).expect("failures file")
    }
}

/// Runs the binary hermetically (empty environment but PATH) in `dir`, with the token in the environment.
async fn sync(dir: &Path, base_url: &str, args: &[&str]) -> Run {
    let dir = dir.to_path_buf();
    let base = base_url.to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::cargo_bin("savio-sync")
            .expect("binary")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SAVIO_API_TOKEN", TOKEN)
            .env("SAVIO_BASE_URL", &base)
            .current_dir(&dir)
            .arg("sync")
            .args(&args)
            .args(["--report-dir", "reports"])
            .output()
            .expect("runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            dir,
        }
    })
    .await
    .expect("join")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

const CONTACTS_MAPPING: &str = r#"
[company]
internal_id = "Company ID"
name = "Company"
[contact]
internal_id = "ID"
name = "Name"
email = "Email"
"#;

const FEEDBACK_MAPPING: &str = "[feedback]\nproblem = \"Text\"\nperson_email = \"Email\"\n";

fn api(server: &mockito::ServerGuard) -> String {
    format!("{}/app/api/", server.url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_the_token_and_each_payload_to_its_endpoint() {
    let mut server = mockito::Server::new_async().await;
    let company = server
        .mock("POST", "/app/api/companies/")
        .match_header("authorization", format!("Token {TOKEN}").as_str())
        .match_header("content-type", "application/json")
        .match_body(mockito::Matcher::Json(json!({"name": "Acme", "internal_id": "c1"})))
        .with_status(201)
        .with_body(r#"{"id": 7}"#)
        .expect(1)
        .create_async()
        .await;
    let contact = server
        .mock("POST", "/app/api/users/")
        .match_header("authorization", format!("Token {TOKEN}").as_str())
        .match_body(mockito::Matcher::Json(
            json!({"name": "Ada", "internal_id": "1", "email": "ada@x.io", "company_internal_id": "c1"}),
        ))
        .with_status(201)
        .with_body(r#"{"id": 70}"#)
        .expect(1)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "ID,Name,Email,Company ID,Company\n1,Ada, ADA@x.io ,c1,Acme\n");
    write(dir.path(), "m.toml", CONTACTS_MAPPING);
    let run = sync(dir.path(), &api(&server), &["in.csv", "-m", "m.toml"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    company.assert_async().await;
    contact.assert_async().await;
    let results = run.results();
    assert_eq!(results[0][..6], ["2", "company", "c1", "ok", "201", "1"].map(String::from));
    assert_eq!(results[1][..6], ["2", "contact", "1", "ok", "201", "1"].map(String::from));
    let s = run.summary();
    assert_eq!(s["exit_reason"], "completed");
    assert_eq!(s["payloads"]["contact"]["ok"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_stops_the_run_sends_nothing_more_and_still_writes_the_reports() {
    let mut server = mockito::Server::new_async().await;
    let refused = server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(401)
        .with_body(r#"{"detail": "Invalid token."}"#)
        .expect(1)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("Text,Email\n");
    for i in 0..50 {
        input.push_str(&format!("idea {i},a{i}@x.io\n"));
    }
    write(dir.path(), "in.csv", &input);
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let run =
        sync(dir.path(), &api(&server), &["in.csv", "-m", "m.toml", "--concurrency", "1", "--rate", "1000"]).await;
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    refused.assert_async().await; // exactly one request reached the server
    let s = run.summary();
    assert_eq!(s["exit_reason"], "auth_rejected");
    assert!(s["abort_message"].as_str().unwrap().contains("rejected the token"), "{s}");
    assert_eq!(s["requests"], 1);
    let results = run.results();
    assert!(results.iter().all(|r| r[3] == "failed"), "every row read is reported failed");
    // Exactly one row reached the server (whichever task won the single slot); every other was held back.
    let rejected: Vec<_> = results.iter().filter(|r| r[4] == "401").collect();
    assert_eq!(rejected.len(), 1, "{results:?}");
    assert_eq!((rejected[0][5].as_str(), rejected[0][6].starts_with("token rejected")), ("1", true));
    let held_back = results.iter().filter(|r| r[5] == "0" && r[6].starts_with("not sent")).count();
    assert_eq!(held_back, results.len() - 1, "{results:?}");
    let failures = run.failures("failures.csv");
    assert_eq!(failures.lines().count(), results.len() + 1, "every reported row is in the failures file");
    assert!(run.stdout.contains("Stopped:"), "{}", run.stdout);
    // "Rows after line N were not read" only when some were not: here the reader is usually done before
    // the 401 comes back, and then every row has its outcome and nothing is said to be unread.
    let rows: std::collections::BTreeSet<u64> = results.iter().map(|r| r[0].parse().unwrap()).collect();
    let message = s["abort_message"].as_str().unwrap();
    if rows.len() == 50 {
        assert!(s["stopped_after_line"].is_null() && !message.contains("not read"), "{s}");
    } else {
        assert_eq!(s["stopped_after_line"].as_u64(), rows.last().copied(), "{s}");
        assert!(message.contains("were not read"), "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_fails_only_its_row_with_savios_message() {
    let mut server = mockito::Server::new_async().await;
    let _bad = server
        .mock("POST", "/app/api/create-feedback/")
        .match_body(mockito::Matcher::PartialJson(json!({"problem": "bad one"})))
        .with_status(400)
        .with_body(r#"{"feedback_type": ["\"X\" is not a valid choice."]}"#)
        .expect(1)
        .create_async()
        .await;
    let _good = server
        .mock("POST", "/app/api/create-feedback/")
        .match_body(mockito::Matcher::PartialJson(json!({"person_email": "ok@x.io"})))
        .with_status(201)
        .with_body(r#"{"id": 1}"#)
        .expect(2)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "Text,Email\ngood one,ok@x.io\nbad one,\ngood two,ok@x.io\n");
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let run = sync(dir.path(), &api(&server), &["in.csv", "-m", "m.toml"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let results = run.results();
    let bad = results.iter().find(|r| r[0] == "3").unwrap();
    assert_eq!(bad[3], "failed");
    assert_eq!(bad[4], "400");
    assert_eq!(bad[5], "1", "a 400 is not retried");
    assert!(bad[6].contains("is not a valid choice"), "{bad:?}");
    let failures = run.failures("failures.csv");
    assert!(failures.starts_with("Text,Email,_savio_line,_savio_error,_savio_sent\n"), "{failures}");
    assert!(failures.contains("bad one,,3,"), "{failures}");
    assert_eq!(failures.lines().count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_base_path_fails_rows_with_the_pages_text_and_says_to_check_the_base_url() {
    // Regression: the reason was the 404 page's raw markup (for a framework's debug page, 2 KB of styles)
    // with nothing pointing at the base URL.
    let mut server = mockito::Server::new_async().await;
    let page = format!(
        "<!DOCTYPE html><html><head><title>Page not found</title><style>{}</style></head>\
         <body><h1>Page not found (404)</h1><p>No route for POST /api/create-feedback/</p></body></html>",
        "html * { padding: 0; margin: 0; } ".repeat(100)
    );
    let _any = server
        .mock("POST", mockito::Matcher::Any)
        .with_status(404)
        .with_header("content-type", "text/html; charset=utf-8")
        .with_body(page)
        .expect(2)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "Text,Email
idea one,a@x.io
idea two,b@x.io
",
    );
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let run = sync(dir.path(), &format!("{}/api", server.url()), &["in.csv", "-m", "m.toml"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    for r in run.results() {
        assert_eq!((r[3].as_str(), r[4].as_str(), r[5].as_str()), ("failed", "404", "1"), "{r:?}");
        assert!(
            r[6].starts_with(
                "POST /api/create-feedback/: Savio answered 404 Not Found: Page not found Page not found (404) \
                 No route for POST /api/create-feedback/ (no such endpoint? if every request gets this, check \
                 the base URL"
            ),
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_for_its_retry_after_then_the_row_lands() {
    let mut server = mockito::Server::new_async().await;
    let throttled = server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(429)
        .with_header("retry-after", "2")
        .with_body(r#"{"detail": "Request was throttled."}"#)
        .expect(1)
        .create_async()
        .await;
    let ok = server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(201)
        .with_body(r#"{"id": 5}"#)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "Text,Email\nidea,a@x.io\nidea 2,b@x.io\n");
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let started = Instant::now();
    let run = sync(dir.path(), &api(&server), &["in.csv", "-m", "m.toml", "--concurrency", "1", "--rate", "100"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After: 2 was honoured ({:?})", started.elapsed());
    throttled.assert_async().await;
    ok.expect(2).assert_async().await;
    let s = run.summary();
    assert_eq!(s["throttled"], 1);
    assert_eq!(s["retries"], 1);
    assert_eq!(s["requests"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_is_capped() {
    let mut server = mockito::Server::new_async().await;
    let _throttled = server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(429)
        .with_header("retry-after", "86400")
        .expect(1)
        .create_async()
        .await;
    let _ok = server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(201)
        .with_body(r#"{"id": 5}"#)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "Text,Email\nidea,a@x.io\n");
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let started = Instant::now();
    let run = sync(dir.path(), &api(&server), &["in.csv", "-m", "m.toml", "--max-retry-after", "1s"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(30), "a day-long Retry-After was capped to 1 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_the_row_lands() {
    let mut server = mockito::Server::new_async().await;
    let failing = server.mock("POST", "/app/api/users/").with_status(503).expect(2).create_async().await;
    let ok = server.mock("POST", "/app/api/users/").with_status(201).with_body(r#"{"id": 9}"#).create_async().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "ID,Name,Email,Company ID,Company\n1,Ada,ada@x.io,,\n");
    write(dir.path(), "m.toml", CONTACTS_MAPPING);
    let run = sync(dir.path(), &api(&server), &["in.csv", "-m", "m.toml"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    failing.assert_async().await;
    ok.expect(1).assert_async().await;
    let results = run.results();
    assert_eq!(results[0][..6], ["2", "contact", "1", "ok", "201", "3"].map(String::from));
    assert_eq!(run.summary()["retries"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_give_up_after_max_retries_and_the_row_fails() {
    let mut server = mockito::Server::new_async().await;
    let failing = server.mock("POST", "/app/api/users/").with_status(502).expect(3).create_async().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "ID,Name,Email,Company ID,Company\n1,Ada,ada@x.io,,\n");
    write(dir.path(), "m.toml", CONTACTS_MAPPING);
    let run = sync(dir.path(), &api(&server), &["in.csv", "-m", "m.toml", "--max-retries", "2"]).await;
    assert_eq!(run.code, 1);
    failing.assert_async().await;
    let r = &run.results()[0];
    assert_eq!(r[3], "failed");
    assert!(r[6].starts_with("gave up after 3 attempts"), "{r:?}");
}

/// A server that reads a request and never answers: a timeout after the request was sent.
async fn silent_server() -> (String, Arc<Mutex<u32>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(0u32));
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"}") {
                        *counter.lock().unwrap() += 1;
                        // Hold the connection open, never answer.
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        break;
                    }
                }
            });
        }
    });
    (format!("http://{addr}/app/api/"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feedback_timeout_is_unknown_and_never_resent() {
    let (url, seen) = silent_server().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "Text,Email\nidea,a@x.io\n");
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let run = sync(dir.path(), &url, &["in.csv", "-m", "m.toml", "--request-timeout", "500ms"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(*seen.lock().unwrap(), 1, "the feedback was sent once and never again");
    let r = &run.results()[0];
    assert_eq!(r[3], "unknown");
    assert!(r[6].contains("may or may not have been created"), "{r:?}");
    let s = run.summary();
    assert_eq!(s["exit_reason"], "unknown_outcomes", "a cron wrapper can tell unknown outcomes apart");
    assert_eq!(s["unknown"], 1);
    assert!(run.failures("failures.csv").contains("idea,a@x.io,2,"), "unknown rows go to the failures file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feedback_answered_500_is_unknown_and_never_resent() {
    // A server may fail after it saved (Django runs without a request transaction by default).
    let mut server = mockito::Server::new_async().await;
    let failing = server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(500)
        .with_body("<h1>Server Error (500)</h1>")
        .expect(1)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "Text,Email\nidea,a@x.io\n");
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let run = sync(dir.path(), &api(&server), &["in.csv", "-m", "m.toml"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    failing.assert_async().await;
    let r = &run.results()[0];
    assert_eq!((r[3].as_str(), r[4].as_str(), r[5].as_str()), ("unknown", "500", "1"), "{r:?}");
    assert_eq!(run.summary()["exit_reason"], "unknown_outcomes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feedback_retried_by_retry_unknown_that_never_lands_stays_unknown_in_the_failures_file() {
    // --retry-unknown re-sends it; each 500 may have created it, so giving up is no "failed": a re-run of
    // the failures file without the flag must not create it yet again.
    let mut server = mockito::Server::new_async().await;
    let failing = server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(500)
        .with_body("<h1>Server Error (500)</h1>")
        .expect(2)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "Text,Email\nidea,a@x.io\n");
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let args = ["in.csv", "-m", "m.toml", "--no-state", "--retry-unknown", "--max-retries", "1"];
    let run = sync(dir.path(), &api(&server), &args).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    failing.assert_async().await;
    let r = &run.results()[0];
    assert_eq!((r[3].as_str(), r[4].as_str(), r[5].as_str()), ("unknown", "500", "2"), "{r:?}");
    assert_eq!(run.summary()["exit_reason"], "unknown_outcomes");
    let failures = run.failures("failures.csv");
    assert!(failures.lines().nth(1).unwrap().ends_with(",feedback (unknown)"), "{failures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_timeout_is_retried() {
    let (url, seen) = silent_server().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "ID,Name,Email,Company ID,Company\n1,Ada,ada@x.io,,\n");
    write(dir.path(), "m.toml", CONTACTS_MAPPING);
    let run =
        sync(dir.path(), &url, &["in.csv", "-m", "m.toml", "--request-timeout", "300ms", "--max-retries", "2"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(*seen.lock().unwrap(), 3, "idempotent upserts are retried after a timeout");
    assert_eq!(run.results()[0][3], "failed");
}

/// A server that records when each request started and ended, answering companies slowly.
/// (kind, company id, started, answered) of every request.
type RequestLog = Arc<Mutex<Vec<(String, String, Instant, Instant)>>>;

async fn recording_server() -> (String, RequestLog) {
    use axum::routing::post;
    let log: RequestLog = Arc::default();
    let company_log = Arc::clone(&log);
    let contact_log = Arc::clone(&log);
    let app = axum::Router::new()
        .route(
            "/app/api/companies/",
            post(move |body: axum::Json<Value>| {
                let log = Arc::clone(&company_log);
                async move {
                    let start = Instant::now();
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    let id = body["internal_id"].as_str().unwrap_or_default().to_string();
                    log.lock().unwrap().push(("company".into(), id, start, Instant::now()));
                    (axum::http::StatusCode::CREATED, axum::Json(json!({"id": 1})))
                }
            }),
        )
        .route(
            "/app/api/users/",
            post(move |body: axum::Json<Value>| {
                let log = Arc::clone(&contact_log);
                async move {
                    let start = Instant::now();
                    let company = body["company_internal_id"].as_str().unwrap_or_default().to_string();
                    log.lock().unwrap().push(("contact".into(), company, start, Instant::now()));
                    (axum::http::StatusCode::CREATED, axum::Json(json!({"id": 2})))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/app/api/"), log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_contact_is_sent_after_its_company_has_landed() {
    let (url, log) = recording_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("ID,Name,Email,Company ID,Company\n");
    for i in 0..40 {
        input.push_str(&format!("{i},P{i},p{i}@x.io,c{},Co {}\n", i % 5, i % 5));
    }
    write(dir.path(), "in.csv", &input);
    write(dir.path(), "m.toml", CONTACTS_MAPPING);
    let run = sync(dir.path(), &url, &["in.csv", "-m", "m.toml", "--concurrency", "16", "--rate", "1000"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let log = log.lock().unwrap();
    assert_eq!(log.iter().filter(|e| e.0 == "company").count(), 5, "each company once");
    assert_eq!(log.iter().filter(|e| e.0 == "contact").count(), 40);
    for contact in log.iter().filter(|e| e.0 == "contact") {
        let company = log.iter().find(|e| e.0 == "company" && e.1 == contact.1).expect("its company was sent");
        assert!(contact.2 >= company.3, "contact of {} started before its company was answered", contact.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_of_a_failed_company_are_blocked_and_never_sent() {
    let mut server = mockito::Server::new_async().await;
    let _bad_company = server
        .mock("POST", "/app/api/companies/")
        .match_body(mockito::Matcher::PartialJson(json!({"internal_id": "bad"})))
        .with_status(400)
        .with_body(r#"{"name": ["This field may not be blank."]}"#)
        .create_async()
        .await;
    let _good_company = server
        .mock("POST", "/app/api/companies/")
        .match_body(mockito::Matcher::PartialJson(json!({"internal_id": "good"})))
        .with_status(201)
        .with_body(r#"{"id": 1}"#)
        .create_async()
        .await;
    let blocked_contacts = server
        .mock("POST", "/app/api/users/")
        .match_body(mockito::Matcher::PartialJson(json!({"company_internal_id": "bad"})))
        .with_status(201)
        .expect(0)
        .create_async()
        .await;
    let good_contacts = server
        .mock("POST", "/app/api/users/")
        .match_body(mockito::Matcher::PartialJson(json!({"company_internal_id": "good"})))
        .with_status(201)
        .with_body(r#"{"id": 2}"#)
        .expect(2)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "ID,Name,Email,Company ID,Company\n1,A,a@x.io,bad,Bad Co\n2,B,b@x.io,good,Good Co\n3,C,c@x.io,bad,Bad Co\n4,D,d@x.io,good,Good Co\n",
    );
    write(dir.path(), "m.toml", CONTACTS_MAPPING);
    let run = sync(dir.path(), &api(&server), &["in.csv", "-m", "m.toml"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    blocked_contacts.assert_async().await;
    good_contacts.assert_async().await;
    let results = run.results();
    let contact = |line: &str| results.iter().find(|r| r[0] == line && r[1] == "contact").unwrap().clone();
    assert_eq!(contact("2")[3], "blocked");
    assert!(contact("2")[6].starts_with("company bad failed: "), "{:?}", contact("2"));
    assert_eq!(contact("4")[3], "blocked");
    assert_eq!(contact("3")[3], "ok");
    let failures = run.failures("failures.csv");
    assert!(failures.contains("\n1,A,a@x.io,bad,Bad Co,2,"), "{failures}");
    assert!(failures.contains("\n3,C,c@x.io,bad,Bad Co,4,"), "{failures}");
    assert_eq!(failures.lines().count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_any_output_or_report() {
    let mut server = mockito::Server::new_async().await;
    // The server even echoes the token back in an error body.
    let _m = server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(400)
        .with_body(format!(r#"{{"detail": "bad request from Token {TOKEN}"}}"#))
        .create_async()
        .await;
    let _n = server.mock("POST", "/app/api/users/").with_status(401).create_async().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "Text,Email\nidea,a@x.io\n");
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let mut outputs = Vec::new();
    for extra in [&["-vv"][..], &["--log-format", "json", "-vv"], &["--max-retries", "0"]] {
        let mut args = vec!["in.csv", "-m", "m.toml"];
        args.extend_from_slice(extra);
        let run = sync(dir.path(), &api(&server), &args).await;
        outputs.push(run.stdout.clone());
        outputs.push(run.stderr.clone());
        for f in ["results.csv", "failures.csv", "summary.json"] {
            outputs.push(std::fs::read_to_string(dir.path().join("reports").join(f)).unwrap_or_default());
        }
    }
    // A contact run that is refused with 401.
    write(dir.path(), "c.csv", "ID,Name,Email,Company ID,Company\n1,A,a@x.io,,\n");
    write(dir.path(), "c.toml", CONTACTS_MAPPING);
    let run = sync(dir.path(), &api(&server), &["c.csv", "-m", "c.toml", "-vv"]).await;
    assert_eq!(run.code, 3);
    outputs.extend([run.stdout, run.stderr]);
    let help = Command::cargo_bin("savio-sync")
        .unwrap()
        .env("SAVIO_API_TOKEN", TOKEN)
        .args(["sync", "--help"])
        .output()
        .unwrap();
    outputs.push(String::from_utf8_lossy(&help.stdout).into_owned());
    for (i, o) in outputs.iter().enumerate() {
        assert!(!o.contains(TOKEN), "output #{i} shows the token:\n{o}");
    }
    assert!(outputs.iter().any(|o| o.contains("bad request from Token")), "the error body itself is reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "Text,Email\nidea,a@x.io\n");
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let out = Command::cargo_bin("savio-sync")
        .unwrap()
        .env_clear()
        .current_dir(dir.path())
        .args(["sync", "in.csv", "-m", "m.toml", "--base-url", "http://127.0.0.1:9/app/api/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SAVIO_API_TOKEN") && err.contains("--token-file"), "{err}");
    assert!(!dir.path().join("savio-reports").exists(), "nothing was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_remote_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "Text,Email\nidea,a@x.io\n");
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let run = sync(dir.path(), "http://savio.example.com/app/api/", &["in.csv", "-m", "m.toml"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--allow-insecure-http"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_file_round_trip_lands_everything_once() {
    use savio_sync::sandbox::{Sandbox, SandboxConfig};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("savio-state.json");
    let mut input = String::from("Text,Email\n");
    for i in 0..60 {
        input.push_str(&format!("feedback number {i},p{i}@x.io\n"));
    }
    write(dir.path(), "in.csv", &input);
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    // A flaky server: a third of the requests fail before being applied, half with 503 (refused: failed, as
    // no retries are allowed) and half with 500 (which a server may raise after saving: unknown).
    let flaky = Sandbox::start(SandboxConfig {
        token: TOKEN.into(),
        state: Some(state.clone()),
        fail_rate: 0.35,
        seed: 7,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let first =
        sync(dir.path(), &flaky.base_url(), &["in.csv", "-m", "m.toml", "--max-retries", "0", "--rate", "500"]).await;
    assert_eq!(first.code, 1, "{}", first.stderr);
    let failed = first.summary()["rows_by_status"]["failed"].as_u64().unwrap();
    let unknown = first.summary()["rows_by_status"]["unknown"].as_u64().unwrap();
    assert!(failed > 3 && unknown > 3, "some rows failed ({failed}), some are unknown ({unknown})");
    let landed_first = flaky.snapshot().feedback.len() as u64;
    assert_eq!(landed_first + failed + unknown, 60);
    flaky.shutdown().await.unwrap();
    std::fs::rename(dir.path().join("reports"), dir.path().join("first")).unwrap();

    // The server is fixed, and Savio shows the unknown ones were not created: feed the failures file back in
    // with the same mapping, and --retry-unknown (the state file otherwise refuses to re-send them blindly).
    let fixed = Sandbox::start(SandboxConfig { token: TOKEN.into(), state: Some(state), ..SandboxConfig::default() })
        .await
        .unwrap();
    let args = ["first/failures.csv", "-m", "m.toml", "--rate", "500", "--retry-unknown"];
    let second = sync(dir.path(), &fixed.base_url(), &args).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.summary()["rows"].as_u64().unwrap(), failed + unknown, "exactly those rows were re-run");
    let feedback = fixed.snapshot().feedback;
    assert_eq!(feedback.len(), 60, "everything landed");
    let mut problems: Vec<_> = feedback.iter().map(|f| f.problem.clone()).collect();
    problems.sort();
    problems.dedup();
    assert_eq!(problems.len(), 60, "nothing was sent twice");
    fixed.shutdown().await.unwrap();
}

/// Starts a sandbox and syncs `input` (ID, Name, Email, Company ID, Text) into it, contacts and their
/// feedback, with `feedback_extra` added to the `[feedback]` table, and no state file: a run where some
/// rows fail (exit 1).
async fn first_run_with_contacts_and_feedback(
    dir: &Path,
    input: &str,
    feedback_extra: &str,
) -> (savio_sync::sandbox::Sandbox, Run) {
    use savio_sync::sandbox::{Sandbox, SandboxConfig};
    let sb = Sandbox::start(SandboxConfig { token: TOKEN.into(), ..SandboxConfig::default() }).await.unwrap();
    write(dir, "in.csv", input);
    let mapping = format!(
        "[contact]\ninternal_id = \"ID\"\nname = \"Name\"\nemail = \"Email\"\ncompany_internal_id = \"Company ID\"\n\
         [feedback]\nproblem = \"Text\"\nperson_email = \"Email\"\n{feedback_extra}"
    );
    write(dir, "m.toml", &mapping);
    let first = sync(dir, &sb.base_url(), &["in.csv", "-m", "m.toml", "--no-state"]).await;
    assert_eq!(first.code, 1, "{}", first.stderr);
    (sb, first)
}

/// Syncs company c9 (whose absence failed the first run's contacts), then re-runs `first/failures.csv`
/// with `m.toml` and no state file: the second run, which must succeed.
async fn sync_company_c9_then_rerun_failures(dir: &Path, base_url: &str) -> Run {
    write(dir, "companies.csv", "Company ID,Company\nc9,Acme\n");
    write(dir, "companies.toml", "[company]\ninternal_id = \"Company ID\"\nname = \"Company\"\n");
    let companies = sync(dir, base_url, &["companies.csv", "-m", "companies.toml", "--no-state"]).await;
    assert_eq!(companies.code, 0, "{}", companies.stderr);
    std::fs::remove_dir_all(dir.join("reports")).unwrap();
    let second = sync(dir, base_url, &["first/failures.csv", "-m", "m.toml", "--no-state"]).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    second
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_a_failures_file_never_creates_the_feedback_its_run_already_created() {
    let dir = tempfile::tempdir().unwrap();
    // p1's company c9 is not in Savio yet: the contact fails (400), its row's feedback is created anyway.
    let input = "ID,Name,Email,Company ID,Text\np1,Ann,ann@x.io,c9,Need SSO\np2,Bo,bo@x.io,,Dark mode\n";
    let (sb, first) = first_run_with_contacts_and_feedback(dir.path(), input, "person_name = \"Name\"\n").await;
    assert_eq!(sb.snapshot().feedback.len(), 2);
    let failures = first.failures("failures.csv");
    assert_eq!(failures.lines().count(), 2, "{failures}");
    assert!(failures.lines().nth(1).unwrap().ends_with(",feedback"), "its feedback was sent: {failures}");
    std::fs::rename(dir.path().join("reports"), dir.path().join("first")).unwrap();

    // The company is synced; the failures file goes back in, with no state file to remember anything.
    let second = sync_company_c9_then_rerun_failures(dir.path(), &sb.base_url()).await;
    let results = second.results();
    let status = |entity: &str| results.iter().find(|r| r[1] == entity).map(|r| (r[3].clone(), r[6].clone())).unwrap();
    assert_eq!(status("contact").0, "ok");
    let (feedback, reason) = status("feedback");
    assert_eq!(feedback, "skipped");
    assert!(reason.contains("already sent by the run that wrote this failures file"), "{reason}");
    let snapshot = sb.snapshot();
    assert_eq!(snapshot.feedback.len(), 2, "not created twice");
    assert!(snapshot.contacts.iter().any(|c| c.internal_id.as_deref() == Some("p1")));
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_a_failures_file_never_creates_a_feedback_an_earlier_row_of_its_run_created() {
    let dir = tempfile::tempdir().unwrap();
    // Two tickets of one person with the same text: one feedback, created by line 2. Line 3's contact
    // fails (its company c9 is not in Savio yet), so line 3, whose feedback was a repeat, is a failed row.
    let input = "ID,Name,Email,Company ID,Text\np1,Ann,ann@x.io,,Need SSO\np2,Ann B,ann@x.io,c9,Need SSO\n";
    let (sb, first) = first_run_with_contacts_and_feedback(dir.path(), input, "").await;
    assert_eq!(sb.snapshot().feedback.len(), 1);
    let failures = first.failures("failures.csv");
    assert!(failures.lines().nth(1).unwrap().ends_with(",feedback"), "line 2 created it: {failures}");
    std::fs::rename(dir.path().join("reports"), dir.path().join("first")).unwrap();

    let second = sync_company_c9_then_rerun_failures(dir.path(), &sb.base_url()).await;
    let snapshot = sb.snapshot();
    assert_eq!(snapshot.feedback.len(), 1, "not created twice: {:?}", second.results());
    assert!(snapshot.contacts.iter().any(|c| c.internal_id.as_deref() == Some("p2")));
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rerun_command_printed_reads_a_windows_1252_failures_file_as_its_run_read_the_input() {
    use savio_sync::sandbox::{Sandbox, SandboxConfig};
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::start(SandboxConfig { token: TOKEN.into(), ..SandboxConfig::default() }).await.unwrap();
    // A European Excel export: windows-1252 (no byte-order mark to tell), ';' given by hand.
    let input = "ID;Name;Email;Company ID;Company\r\n1;Ren\u{e9};rene@x.io;c1;Caf\u{e9} \u{20ac}\r\n\
                 2;J\u{fc}rgen;not-an-email;c1;Caf\u{e9} \u{20ac}\r\n";
    let bytes: Vec<u8> = input.chars().map(|c| if c == '\u{20ac}' { 0x80 } else { c as u32 as u8 }).collect();
    std::fs::write(dir.path().join("in.csv"), &bytes).unwrap();
    write(dir.path(), "m.toml", CONTACTS_MAPPING);
    let first = sync(
        dir.path(),
        &sb.base_url(),
        &["in.csv", "-m", "m.toml", "--no-state", "--encoding", "windows-1252", "--delimiter", ";"],
    )
    .await;
    assert_eq!(first.code, 1, "{}", first.stderr);
    let hint = first.stdout.lines().find_map(|l| l.strip_prefix("Re-run the failed rows with: savio-sync sync "));
    let hint = hint.unwrap_or_else(|| panic!("{}", first.stdout));
    assert_eq!(hint, "reports/failures.csv --mapping m.toml --encoding windows-1252 --delimiter ';'");
    std::fs::rename(dir.path().join("reports"), dir.path().join("first")).unwrap();

    // The command as printed (the shell's quotes removed) reads the file as the first run read the input.
    let args: Vec<String> =
        hint.replace("reports/", "first/").split(' ').map(|a| a.trim_matches('\'').to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).chain(["--no-state"]).collect();
    let second = sync(dir.path(), &sb.base_url(), &args).await;
    assert_eq!(second.code, 1, "{}", second.stderr);
    let results = second.results();
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(results[0][6].contains("\"not-an-email\" is not a valid email"), "{results:?}");
    // A mapping that says how to read the input needs no flag.
    write(dir.path(), "m2.toml", &format!("[input]\nencoding = \"latin1\"\ndelimiter = \";\"\n{CONTACTS_MAPPING}"));
    std::fs::remove_dir_all(dir.path().join("reports")).unwrap();
    let third = sync(dir.path(), &sb.base_url(), &["in.csv", "-m", "m2.toml", "--no-state"]).await;
    assert!(third.stdout.contains("savio-sync sync reports/failures.csv --mapping m2.toml\n"), "{}", third.stdout);
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feedback_the_state_file_says_savio_has_is_listed_as_sent_in_the_failures_file() {
    use savio_sync::sandbox::{Sandbox, SandboxConfig};
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::start(SandboxConfig { token: TOKEN.into(), ..SandboxConfig::default() }).await.unwrap();
    let mapping = "[contact]\ninternal_id = \"ID\"\nname = \"Name\"\nemail = \"Email\"\n\
                   company_internal_id = \"Company ID\"\n\
                   [feedback]\nproblem = \"Text\"\nperson_email = \"Email\"\n";
    write(dir.path(), "m.toml", mapping);
    write(dir.path(), "monday.csv", "ID,Name,Email,Company ID,Text\np1,Ann,ann@x.io,,Need SSO\n");
    let state = ["--state", "jobs.sqlite"];
    let monday = sync(dir.path(), &sb.base_url(), &[&["monday.csv", "-m", "m.toml"][..], &state].concat()).await;
    assert_eq!(monday.code, 0, "{}", monday.stderr);
    std::fs::remove_dir_all(dir.path().join("reports")).unwrap();
    // Tuesday's export links Ann to a company Savio does not have yet: her contact fails, and the state file
    // keeps her feedback from being created again.
    write(dir.path(), "tuesday.csv", "ID,Name,Email,Company ID,Text\np1,Ann,ann@x.io,c9,Need SSO\n");
    let tuesday = sync(dir.path(), &sb.base_url(), &[&["tuesday.csv", "-m", "m.toml"][..], &state].concat()).await;
    assert_eq!(tuesday.code, 1, "{}", tuesday.stderr);
    assert_eq!(sb.snapshot().feedback.len(), 1);
    let failures = tuesday.failures("failures.csv");
    assert!(failures.lines().nth(1).unwrap().ends_with(",feedback"), "Savio has it: {failures}");
    std::fs::rename(dir.path().join("reports"), dir.path().join("tuesday")).unwrap();

    // Its failures file re-run elsewhere (no state file), once the company is there: the contact only.
    write(dir.path(), "companies.csv", "Company ID,Company\nc9,Acme\n");
    write(dir.path(), "companies.toml", "[company]\ninternal_id = \"Company ID\"\nname = \"Company\"\n");
    let companies = sync(dir.path(), &sb.base_url(), &["companies.csv", "-m", "companies.toml", "--no-state"]).await;
    assert_eq!(companies.code, 0, "{}", companies.stderr);
    std::fs::remove_dir_all(dir.path().join("reports")).unwrap();
    let rerun = sync(dir.path(), &sb.base_url(), &["tuesday/failures.csv", "-m", "m.toml", "--no-state"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!(sb.snapshot().feedback.len(), 1, "not created twice: {:?}", rerun.results());
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_flag_runs_the_job_in_process_and_reports_what_landed() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "ID,Name,Email,Company ID,Company\n1,A,a@x.io,c1,Acme\n2,B,b@x.io,c1,Acme\n");
    write(dir.path(), "m.toml", CONTACTS_MAPPING);
    let out = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || {
            Command::cargo_bin("savio-sync")
                .unwrap()
                .env_clear()
                .current_dir(d)
                .args(["sync", "in.csv", "-m", "m.toml", "--sandbox", "--report-dir", "r"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Landed in the sandbox"), "{stdout}");
    assert!(stdout.contains("1 companies, 2 contacts"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_data_export_lands_accounts_then_their_contacts() {
    use savio_sync::sandbox::{Sandbox, SandboxConfig};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for f in ["fixtures/salesforce-accounts-api.csv", "fixtures/salesforce-contacts-api.csv"] {
        std::fs::copy(root.join(f), dir.path().join(Path::new(f).file_name().unwrap())).unwrap();
    }
    let preset = |name: &str| root.join("mappings").join(format!("{name}.toml")).display().to_string();
    let sb = Sandbox::start(SandboxConfig { token: TOKEN.into(), ..SandboxConfig::default() }).await.unwrap();
    // Account.csv first: the contacts link to these ids.
    let accounts =
        sync(dir.path(), &sb.base_url(), &["salesforce-accounts-api.csv", "-m", &preset("salesforce-accounts-api")])
            .await;
    assert_eq!(accounts.code, 0, "{}", accounts.stderr);
    assert_eq!(sb.snapshot().companies.len(), 11, "12 accounts, one in the recycle bin");
    std::fs::rename(dir.path().join("reports"), dir.path().join("accounts")).unwrap();
    let contacts =
        sync(dir.path(), &sb.base_url(), &["salesforce-contacts-api.csv", "-m", &preset("salesforce-contacts-api")])
            .await;
    let results = contacts.results();
    let not_ok: Vec<_> = results.iter().filter(|r| r[3] != "ok" && r[3] != "skipped").collect();
    assert!(
        not_ok.iter().all(|r| r[6].contains("not a valid email address")),
        "only the invalid email fails: {not_ok:?}"
    );
    let snapshot = sb.snapshot();
    let linked = snapshot.contacts.iter().filter(|c| c.company.is_some()).count();
    assert!(linked >= 10, "contacts land linked to their accounts: {linked} of {}", snapshot.contacts.len());
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feedback_answered_408_is_sent_again_and_lands() {
    // 408: the server stopped waiting for the request before processing it; nothing was created.
    let mut server = mockito::Server::new_async().await;
    let timed_out = server.mock("POST", "/app/api/create-feedback/").with_status(408).expect(1).create_async().await;
    let ok = server
        .mock("POST", "/app/api/create-feedback/")
        .with_status(201)
        .with_body(r#"{"id": 5}"#)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "Text,Email\nidea,a@x.io\n");
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let run = sync(dir.path(), &api(&server), &["in.csv", "-m", "m.toml"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    timed_out.assert_async().await;
    ok.expect(1).assert_async().await;
    let r = &run.results()[0];
    assert_eq!((r[3].as_str(), r[4].as_str(), r[5].as_str()), ("ok", "201", "2"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_is_trimmed_and_one_copied_with_its_scheme_is_refused() {
    let mut server = mockito::Server::new_async().await;
    let created = server
        .mock("POST", "/app/api/create-feedback/")
        .match_header("authorization", format!("Token {TOKEN}").as_str())
        .with_status(201)
        .with_body(r#"{"id": 5}"#)
        .expect(1)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "Text,Email\nidea,a@x.io\n");
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let with_token_file = |contents: String| {
        write(dir.path(), "token", &contents);
        Command::cargo_bin("savio-sync")
            .unwrap()
            .env_clear()
            .current_dir(dir.path())
            .args(["sync", "in.csv", "-m", "m.toml", "--token-file", "token", "--no-state", "--report-dir", "r"])
            .args(["--base-url", &api(&server)])
            .output()
            .unwrap()
    };
    let out = with_token_file(format!("  {TOKEN} \r\n"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    created.assert_async().await;
    for copied in [format!("Token {TOKEN}\n"), format!("Bearer {TOKEN}")] {
        let out = with_token_file(copied);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("keep only the token itself"), "{err}");
        assert!(!err.contains(TOKEN) && !String::from_utf8_lossy(&out.stdout).contains(TOKEN), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Timings mockito cannot script

/// A request as a raw server saw it: when its head arrived, and when the answer's first bytes were written.
#[derive(Debug, Clone)]
struct Seen {
    arrived: Instant,
    answered: Option<Instant>,
}

type SeenLog = Arc<Mutex<Vec<Seen>>>;

/// What a raw server answers to request `n` (from 1): pieces of the raw answer, each written after its delay.
type Script = fn(usize) -> Vec<(Duration, String)>;

/// A raw HTTP/1.1 server on 127.0.0.1 (kept-alive connections), answering each request as `script` says and
/// logging every request: for timings mockito cannot script (a status line well before its body).
async fn raw_server(script: Script) -> (String, SeenLog) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: SeenLog = Arc::default();
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let arrived = Instant::now();
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
                    let n = {
                        let mut log = seen.lock().unwrap();
                        log.push(Seen { arrived, answered: None });
                        log.len()
                    };
                    for (i, (delay, piece)) in script(n).into_iter().enumerate() {
                        tokio::time::sleep(delay).await;
                        if i == 0 {
                            seen.lock().unwrap()[n - 1].answered = Some(Instant::now());
                        }
                        if socket.write_all(piece.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}/app/api/"), log)
}

fn created() -> String {
    "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{\"id\": 1}".into()
}

fn feedback_rows(n: usize) -> String {
    let mut s = String::from("Text,Email\n");
    for i in 0..n {
        s.push_str(&format!("idea {i},p{i}@x.io\n"));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_201_whose_body_is_too_slow_is_ok_without_an_id() {
    // Regression: the status said Savio created it, but a body trickling past --request-timeout made it
    // `unknown` (and the feedback would have been held back as possibly created).
    let (url, seen) = raw_server(|_| {
        vec![
            (Duration::ZERO, "HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"id\r\n".into()),
            (Duration::from_millis(1500), "4\r\n\": 7\r\n1\r\n}\r\n0\r\n\r\n".into()),
        ]
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "Text,Email\nidea,a@x.io\n");
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let run = sync(dir.path(), &url, &["in.csv", "-m", "m.toml", "--request-timeout", "500ms"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "sent once");
    assert!(seen[0].answered.is_some_and(|at| at >= seen[0].arrived), "its status was answered at once");
    let r = &run.results()[0];
    assert_eq!((r[3].as_str(), r[4].as_str(), r[5].as_str()), ("ok", "201", "1"), "{r:?}");
    assert!(r[6].contains("did not arrive within 500ms") && r[6].contains("no Savio id"), "{r:?}");
    assert_eq!(run.summary()["unknown"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_count_is_what_was_written_to_a_connection() {
    // Nothing listening: no request ever left, whatever the retries.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}/app/api/", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "ID,Name,Email,Company ID,Company\n1,Ada,ada@x.io,,\n");
    write(dir.path(), "m.toml", CONTACTS_MAPPING);
    let run = sync(dir.path(), &refused, &["in.csv", "-m", "m.toml", "--max-retries", "2"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.summary()["requests"], 0);
    assert_eq!(run.summary()["retries"], 2);
    assert!(run.stdout.contains("Requests:  0 sent"), "{}", run.stdout);
    // A same-origin 307 is followed: two requests, both written.
    let mut server = mockito::Server::new_async().await;
    server
        .mock("POST", "/app/api/users/")
        .with_status(307)
        .with_header("location", "/app/api/v2/users/")
        .create_async()
        .await;
    server.mock("POST", "/app/api/v2/users/").with_status(201).with_body(r#"{"id": 3}"#).create_async().await;
    let run = sync(dir.path(), &api(&server), &["in.csv", "-m", "m.toml"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary()["requests"], 2, "the 307 hop is a request too");
}

// ---------------------------------------------------------------------------------------------------------
// Stopping: nothing new leaves after Ctrl-C

/// Starts the binary as [`sync`] does, without waiting for it.
fn spawn_sync(dir: &Path, base_url: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("savio-sync"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SAVIO_API_TOKEN", TOKEN)
        .env("SAVIO_BASE_URL", base_url)
        .current_dir(dir)
        .arg("sync")
        .args(args)
        .args(["--report-dir", "reports"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts")
}

/// Sends SIGINT to `child` after `after`; returns the moment it was sent, the run, and how long the process
/// took to exit from then.
#[cfg(unix)]
async fn interrupt_after(dir: &Path, child: std::process::Child, after: Duration) -> (Instant, Run, Duration) {
    tokio::time::sleep(after).await;
    let signalled = Instant::now();
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let took = signalled.elapsed();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        dir: dir.to_path_buf(),
    };
    (signalled, run, took)
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_sends_nothing_more_once_every_row_is_read_and_grace_starts_at_the_signal() {
    // Regression: once the whole (small) input was read, the writer no longer looked at Ctrl-C: every row
    // was still sent, the grace period never started, and the run ended "rows_failed" (exit 1).
    let (url, seen) = raw_server(|_| vec![(Duration::from_secs(3), created())]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &feedback_rows(20));
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let args = ["in.csv", "-m", "m.toml", "--concurrency", "4", "--rate", "100", "--grace", "1s"];
    let child = spawn_sync(dir.path(), &url, &args);
    let (signalled, run, took) = interrupt_after(dir.path(), child, Duration::from_millis(800)).await;
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(took < Duration::from_millis(2500), "exited {took:?} after Ctrl-C with --grace 1s");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "only the requests in flight at Ctrl-C reached the server: {seen:?}");
    assert!(seen.iter().all(|s| s.arrived < signalled), "nothing arrived after Ctrl-C");
    let s = run.summary();
    assert_eq!(s["exit_reason"], "interrupted");
    assert_eq!(s["requests"], 4);
    let results = run.results();
    assert_eq!(results.len(), 20, "every row read is reported");
    let in_flight = results.iter().filter(|r| r[3] == "unknown" && r[6].starts_with("interrupted while")).count();
    let not_sent = results.iter().filter(|r| r[3] == "failed" && r[6] == "not sent: run stopped (interrupted)").count();
    assert_eq!((in_flight, not_sent), (4, 16), "{results:?}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_wait_ends_at_ctrl_c_whether_a_429_pause_or_a_503_backoff() {
    // Regression: a payload waiting to retry (a 503's backoff sleep) only woke up at the hard stop, and a
    // Ctrl-C during a 429's pause was never seen at all once the input was read.
    for status in ["429 Too Many Requests", "503 Service Unavailable"] {
        let (url, seen) = match status {
            "429 Too Many Requests" => raw_server(|_| vec![(Duration::ZERO, refusal("429 Too Many Requests"))]).await,
            _ => raw_server(|_| vec![(Duration::ZERO, refusal("503 Service Unavailable"))]).await,
        };
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", "ID,Name,Email,Company ID,Company\n1,Ada,ada@x.io,,\n");
        write(dir.path(), "m.toml", CONTACTS_MAPPING);
        let args = ["in.csv", "-m", "m.toml", "--max-retry-after", "60s", "--grace", "10s"];
        let child = spawn_sync(dir.path(), &url, &args);
        let (_, run, took) = interrupt_after(dir.path(), child, Duration::from_millis(800)).await;
        assert_eq!(run.code, 3, "{status}: {}", run.stderr);
        assert!(took < Duration::from_secs(3), "{status}: the 20 s wait ended at Ctrl-C, not after {took:?}");
        assert_eq!(seen.lock().unwrap().len(), 1, "{status}: sent once, never again");
        let r = &run.results()[0];
        assert_eq!(r[3], "failed");
        assert!(r[6].starts_with("not sent again: run stopped (interrupted); last attempt:"), "{status}: {r:?}");
        assert_eq!(run.summary()["exit_reason"], "interrupted");
    }
}

fn refusal(status: &str) -> String {
    format!("HTTP/1.1 {status}\r\nretry-after: 20\r\ncontent-length: 2\r\n\r\n{{}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_stops_the_run_when_its_status_arrives_not_when_its_body_has() {
    // Regression: the stop waited for the 401's body; a server writing its status line and body apart (Nagle
    // and a delayed ACK: 40 ms) still received requests after it had answered 401.
    let (url, seen) = raw_server(|n| match n {
        3 => vec![
            (Duration::ZERO, "HTTP/1.1 401 Unauthorized\r\ncontent-length: 30\r\n\r\n".into()),
            (Duration::from_millis(400), r#"{"detail": "Invalid token."}  "#.into()),
        ],
        _ => vec![(Duration::ZERO, created())],
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &feedback_rows(40));
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let run = sync(dir.path(), &url, &["in.csv", "-m", "m.toml", "--concurrency", "4", "--rate", "50"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.summary()["exit_reason"], "auth_rejected");
    let seen = seen.lock().unwrap().clone();
    let status_sent = seen[2].answered.expect("the 401 was answered");
    let after: Vec<_> = seen.iter().filter(|s| s.arrived > status_sent + Duration::from_millis(15)).collect();
    assert!(after.is_empty(), "{} requests arrived after the 401's status line: {after:?}", after.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savio_answering_nothing_but_429_stops_the_run_and_the_same_command_resumes() {
    // Regression: a permanent 429 paused the whole writer for the capped Retry-After once per attempt, one
    // attempt after another, for as long as the file lasted; nothing gave up.
    let (url, seen) = raw_server(|_| {
        vec![(Duration::ZERO, "HTTP/1.1 429 Too Many Requests\r\nretry-after: 120\r\ncontent-length: 0\r\n\r\n".into())]
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &feedback_rows(30));
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    let args = ["in.csv", "-m", "m.toml", "--rate", "100", "--max-retries", "1", "--max-retry-after", "1s"];
    let started = Instant::now();
    let run = sync(dir.path(), &url, &args).await;
    let took = started.elapsed();
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(took < Duration::from_secs(8), "stopped after 2 s of nothing but 429, not {took:?}");
    let s = run.summary();
    assert_eq!(s["exit_reason"], "throttled");
    let message = s["abort_message"].as_str().unwrap();
    assert!(message.contains("nothing but 429") && message.contains("resumes"), "{message}");
    assert!(run.stdout.contains("Stopped:") && run.stdout.contains("429"), "{}", run.stdout);
    assert_eq!(s["requests"].as_u64().unwrap(), seen.lock().unwrap().len() as u64);
    let results = run.results();
    assert_eq!(results.len(), 30, "every row read is reported");
    assert!(
        results.iter().all(|r| r[3] == "failed" && r[6].contains("Savio kept answering 429")),
        "every row reported not sent because of the 429s: {results:?}"
    );
    // Savio's quota is back: the same command resumes the run and sends every row.
    let (url, _) = raw_server(|_| vec![(Duration::ZERO, created())]).await;
    let again = sync(dir.path(), &url, &args).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("resuming run"), "{}", again.stderr);
    assert_eq!(again.summary()["payloads"]["feedback"]["ok"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_stops_the_run_instead_of_failing_every_row_through_its_retries() {
    // Regression: with Savio down, every payload spent its retries failing, a few rows a second: a nightly
    // run over a large file would still be failing rows (holding its lock) the next night.
    let (url, seen) =
        raw_server(|_| vec![(Duration::ZERO, "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".into())])
            .await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &feedback_rows(100));
    write(dir.path(), "m.toml", FEEDBACK_MAPPING);
    // 200 attempts at 20/s would take 10 s; the limit is 1 s x (1 + 1).
    let args =
        ["in.csv", "-m", "m.toml", "--rate", "20", "--max-retries", "1", "--max-retry-after", "1s", "--no-state"];
    for (base, last) in [(url.as_str(), "HTTP 503"), (closed.as_str(), "cannot connect")] {
        let started = Instant::now();
        let run = sync(dir.path(), base, &args).await;
        let took = started.elapsed();
        assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
        assert!(took < Duration::from_secs(7), "stopped after 2 s of failures, not {took:?}");
        let s = run.summary();
        assert_eq!(s["exit_reason"], "unavailable", "{s}");
        let message = s["abort_message"].as_str().unwrap();
        assert!(message.contains(&format!("last: {last}")) && message.contains("resumes"), "{message}");
        let results = run.results();
        // Every row read is reported; the reader may have been stopped before the end of the file.
        let read = s["stopped_after_line"].as_u64().map_or(100, |line| line as usize - 1);
        assert_eq!(results.len(), read, "{s}");
        let not_sent = results.iter().filter(|r| r[6].contains("Savio was unavailable for")).count();
        assert!(not_sent > 0 && not_sent + 50 > read, "most rows read were never tried: {results:?}");
        assert!(results.iter().all(|r| r[3] == "failed"), "{results:?}");
    }
    assert!(!seen.lock().unwrap().is_empty());
}
