//! `savio-sync export` from the outside: the real binary against a sandbox started in this process on
//! 127.0.0.1, with an empty environment. Pagination, search and ordering, formats and gzip, the
//! all-or-nothing output file, retries, throttling, the token's hygiene and the exit codes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use savio_sync::sandbox::{Sandbox, SandboxConfig};
use serde_json::{Map, Value, json};

const TOKEN: &str = "sandbox-token";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A sandbox, a scratch folder, and the binary run in it.
struct Env {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start(config: SandboxConfig) -> Env {
        Env { sandbox: Sandbox::start(config).await.expect("sandbox"), dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `savio-sync export <args>` with the sandbox's URL and `token` in the environment.
    async fn export_with_token(&self, token: &str, args: &[&str]) -> Out {
        let (dir, base, token) = (self.dir.path().to_path_buf(), self.sandbox.base_url(), token.to_string());
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::cargo_bin("savio-sync").unwrap();
            cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
            if !token.is_empty() {
                cmd.env("SAVIO_API_TOKEN", token);
            }
            let out = cmd.env("SAVIO_BASE_URL", base).current_dir(dir).arg("export").args(&args).output().unwrap();
            Out {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .await
        .unwrap()
    }

    async fn export(&self, args: &[&str]) -> Out {
        self.export_with_token(TOKEN, args).await
    }

    async fn post(&self, path: &str, body: Value) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.sandbox.base_url()))
            .header("Authorization", format!("Token {TOKEN}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{path} {body}");
    }

    async fn contacts(&self, n: usize) {
        for i in 1..=n {
            self.post(
                "users/",
                json!({"name": format!("Person {i}"), "internal_id": format!("u{i}"),
                "email": format!("p{i}@example.com"), "filterable_attributes": {"n": i}}),
            )
            .await;
        }
    }

    /// The files in the scratch folder, sorted (to see that no temporary file is left behind).
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn list_requests(&self) -> u64 {
        let r = self.sandbox.snapshot().requests;
        r.count("GET", "/app/api/users/") + r.count("GET", "/app/api/companies/")
    }
}

fn jsonl(path: &Path) -> Vec<Map<String, Value>> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn names(records: &[Map<String, Value>]) -> Vec<&str> {
    records.iter().map(|r| r["name"].as_str().unwrap()).collect()
}

fn paged(page_size: usize) -> SandboxConfig {
    SandboxConfig { page_size, ..SandboxConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_holds_every_record_of_every_page_as_the_api_returns_it() {
    let env = Env::start(paged(2)).await;
    env.contacts(7).await;
    env.post("companies/", json!({"name": "Acme", "internal_id": "c1"})).await;
    env.post("users/", json!({"name": "Person 3", "internal_id": "u3", "company_internal_id": "c1"})).await;
    let out = env.export(&["contacts", "--output", "contacts.jsonl"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("Exported 7 contacts (4 pages, 4 requests) to contacts.jsonl (JSONL) in "),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().count(), 1, "one summary line: {}", out.stdout);
    let records = jsonl(&env.path("contacts.jsonl"));
    assert_eq!(names(&records), (1..=7).map(|i| format!("Person {i}")).collect::<Vec<_>>());
    let keys: Vec<&str> = records[2].keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "email",
            "name",
            "internal_id",
            "company",
            "company_name",
            "filterable_attributes",
            "created",
            "updated"
        ],
        "every field, in the API's order"
    );
    assert_eq!(records[2]["company_name"], "Acme");
    assert_eq!(records[2]["filterable_attributes"], json!({"n": 3}));
    assert_eq!(env.list_requests(), 4, "one request per page");
    assert_eq!(env.files(), ["contacts.jsonl"], "no temporary file left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_has_fixed_columns_attributes_as_json_and_defused_formulas() {
    let env = Env::start(paged(100)).await;
    env.post(
        "companies/",
        json!({"name": "=HYPERLINK(\"http://evil\")", "internal_id": "c1",
        "filterable_attributes": {"tier": "gold", "seats": 12}}),
    )
    .await;
    env.post("companies/", json!({"name": "Globex, Inc.", "internal_id": "-2"})).await;
    let out = env.export(&["companies", "--output", "companies.csv"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(env.path("companies.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["id", "internal_id", "name", "created", "updated", "filterable_attributes"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][0], "1");
    assert_eq!(&rows[0][2], "'=HYPERLINK(\"http://evil\")", "a formula is defused");
    assert_eq!(serde_json::from_str::<Value>(&rows[0][5]).unwrap(), json!({"tier": "gold", "seats": 12}));
    assert_eq!(&rows[1][1], "'-2");
    assert_eq!(&rows[1][2], "Globex, Inc.");
    assert_eq!(&rows[1][5], "", "no attributes: an empty cell");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_ordering_are_passed_to_savio() {
    let env = Env::start(paged(2)).await;
    for (id, name) in [("c1", "Acme Corp"), ("c2", "Globex"), ("c3", "Acme Labs"), ("c4", "Acme Bank")] {
        env.post("companies/", json!({"name": name, "internal_id": id})).await;
    }
    let out = env.export(&["companies", "-o", "a.jsonl", "--search", "acme", "--ordering", "-name"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(names(&jsonl(&env.path("a.jsonl"))), ["Acme Labs", "Acme Corp", "Acme Bank"]);
    assert!(out.stdout.starts_with("Exported 3 companies (2 pages,"), "{}", out.stdout);
    let out = env.export(&["companies", "-o", "b.ndjson", "--ordering=name"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(names(&jsonl(&env.path("b.ndjson"))), ["Acme Bank", "Acme Corp", "Acme Labs", "Globex"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gz_outputs_are_gzip_and_format_overrides_the_extension() {
    let env = Env::start(paged(3)).await;
    env.contacts(4).await;
    let out = env.export(&["contacts", "--output", "c.csv.gz"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("(CSV, gzip)"), "{}", out.stdout);
    let gz = std::fs::read(env.path("c.csv.gz")).unwrap();
    assert_eq!(&gz[..2], [0x1f, 0x8b], "gzip magic");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
    assert!(text.starts_with("id,internal_id,name,email,company,company_name,created,updated,filterable_attributes\n"));
    assert_eq!(text.lines().count(), 5);

    let out = env.export(&["contacts", "--output", "c.txt", "--format", "jsonl"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(jsonl(&env.path("c.txt")).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_extension_exits_2_before_any_request() {
    let env = Env::start(paged(100)).await;
    let out = env.export(&["contacts", "--output", "contacts.json"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("cannot tell the format of 'contacts.json'") && out.stderr.contains("--format"),
        "{}",
        out.stderr
    );
    let out = env.export(&["contacts", "--output", "c.csv", "--format", "xml"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(env.sandbox.snapshot().requests.total, 0);
    assert!(env.files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_file_is_refused_without_force_and_replaced_with_it() {
    let env = Env::start(paged(100)).await;
    env.contacts(2).await;
    std::fs::write(env.path("c.csv"), "old backup\n").unwrap();
    let out = env.export(&["contacts", "--output", "c.csv"]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("'c.csv' already exists; pass --force"), "{}", out.stderr);
    assert_eq!(env.list_requests(), 0, "refused before any request");
    assert_eq!(std::fs::read_to_string(env.path("c.csv")).unwrap(), "old backup\n");
    let out = env.export(&["contacts", "--output", "c.csv", "--force"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(env.path("c.csv")).unwrap().lines().count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_folder_that_does_not_exist_exits_2_before_any_request() {
    let env = Env::start(paged(100)).await;
    let out = env.export(&["contacts", "--output", "no/such/folder/c.csv"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("cannot create the export next to 'no/such/folder/c.csv'"), "{}", out.stderr);
    assert_eq!(env.sandbox.snapshot().requests.total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_exits_3_writes_nothing_and_is_never_printed() {
    let env = Env::start(paged(100)).await;
    env.contacts(3).await;
    let secret = "tok-Zq8-very-secret-4711";
    let out = env.export_with_token(secret, &["-v", "contacts", "--output", "c.jsonl"]).await;
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("Savio rejected the token; nothing was written"), "{}", out.stderr);
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret), "the token is never printed");
    assert!(env.files().is_empty(), "no file, no temporary file: {:?}", env.files());
    assert_eq!(env.list_requests(), 1, "a 401 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_exits_2_before_any_request() {
    let env = Env::start(paged(100)).await;
    let out = env.export_with_token("", &["contacts", "--output", "c.jsonl"]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("SAVIO_API_TOKEN"), "{}", out.stderr);
    assert_eq!(env.sandbox.snapshot().requests.total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_the_export_completes() {
    let env = Env::start(SandboxConfig { page_size: 2, fail_rate: 0.4, seed: 3, ..SandboxConfig::default() }).await;
    // Seeding through the faults: retry each upsert until it lands.
    let client = reqwest::Client::new();
    for i in 1..=9 {
        loop {
            let r = client
                .post(format!("{}users/", env.sandbox.base_url()))
                .header("Authorization", format!("Token {TOKEN}"))
                .json(&json!({"name": format!("P{i}"), "internal_id": format!("u{i}")}))
                .send()
                .await
                .unwrap();
            if r.status() == 201 {
                break;
            }
        }
    }
    let out = env.export(&["contacts", "-o", "c.jsonl", "--max-retries", "20", "--max-retry-after", "50ms"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let retried = out.stdout.split("; ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse::<u32>().ok());
    assert!(retried.is_some_and(|n| n > 0), "the summary counts retries: {}", out.stdout);
    assert_eq!(names(&jsonl(&env.path("c.jsonl"))), (1..=9).map(|i| format!("P{i}")).collect::<Vec<_>>());
    let served = env.sandbox.snapshot().requests;
    assert!(served.with_status(500) + served.with_status(503) > 0, "faults were injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaginated_list_a_bare_array_is_exported_whole() {
    // Regression: a list answered as a bare JSON array (pagination off) failed as "not a page of results".
    let mut server = mockito::Server::new_async().await;
    let list = server
        .mock("GET", "/app/api/companies/")
        .with_status(200)
        .with_header("content-type", "application/json")
        .with_body(json!([{"id": 1, "name": "Acme"}, {"id": 2, "name": "Globex", "internal_id": "g"}]).to_string())
        .expect(1)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("savio-sync")
        .unwrap()
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SAVIO_API_TOKEN", TOKEN)
        .env("SAVIO_BASE_URL", format!("{}/app/api", server.url()))
        .current_dir(dir.path())
        .args(["export", "companies", "-o", "c.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("Exported 2 companies (1 page, "), "{stdout}");
    assert_eq!(names(&jsonl(&dir.path().join("c.jsonl"))), ["Acme", "Globex"]);
    list.assert_async().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_keeps_failing_exits_3_and_keeps_the_old_file() {
    let env = Env::start(SandboxConfig { fail_rate: 1.0, ..SandboxConfig::default() }).await;
    std::fs::write(env.path("c.csv"), "old backup\n").unwrap();
    let out =
        env.export(&["contacts", "-o", "c.csv", "--force", "--max-retries", "2", "--max-retry-after", "10ms"]).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("a page kept failing after 3 attempts; nothing was written"), "{}", out.stderr);
    assert_eq!(env.list_requests(), 3);
    assert_eq!(std::fs::read_to_string(env.path("c.csv")).unwrap(), "old backup\n", "the old file is untouched");
    assert_eq!(env.files(), ["c.csv"], "no temporary file left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_for_its_retry_after_then_the_export_completes() {
    let env = Env::start(SandboxConfig { page_size: 1, rate_limit: Some(2), ..SandboxConfig::default() }).await;
    // Seed below the limit (the sandbox's window is one second).
    for i in 1..=4 {
        env.post("companies/", json!({"name": format!("C{i}"), "internal_id": format!("c{i}")})).await;
        tokio::time::sleep(Duration::from_millis(550)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let out = env.export(&["companies", "-o", "c.jsonl", "--rate", "1000"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("throttled"), "{}", out.stdout);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited for Retry-After: {:?}", started.elapsed());
    assert_eq!(jsonl(&env.path("c.jsonl")).len(), 4);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_exits_3_and_writes_nothing() {
    let env =
        Env::start(SandboxConfig { page_size: 1, latency: Duration::from_millis(500), ..SandboxConfig::default() })
            .await;
    for i in 1..=3 {
        env.post("companies/", json!({"name": format!("C{i}"), "internal_id": format!("c{i}")})).await;
    }
    let (dir, base) = (env.dir.path().to_path_buf(), env.sandbox.base_url());
    let out = tokio::task::spawn_blocking(move || {
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("savio-sync"))
            .env_clear()
            .env("SAVIO_API_TOKEN", TOKEN)
            .env("SAVIO_BASE_URL", base)
            .current_dir(dir)
            .args(["export", "companies", "-o", "c.csv"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("interrupted after") && stderr.contains("nothing was written"), "{stderr}");
    assert!(env.files().is_empty(), "{:?}", env.files());
}
