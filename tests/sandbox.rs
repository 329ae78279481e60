//! The sandbox's contract, tested the way a client meets it: a real server on 127.0.0.1 (port 0), driven
//! over HTTP with reqwest. Each test starts its own sandbox, so tests run in parallel without sharing data.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::header::{self, HeaderMap};
use reqwest::{Client, Method, StatusCode};
use savio_sync::sandbox::{Sandbox, SandboxConfig, SandboxError, serve_until};
use serde_json::{Value, json};

const TOKEN: &str = "sandbox-token";

/// A sandbox and a client that talks to it.
struct Api {
    sandbox: Sandbox,
    client: Client,
}

/// One answer: status, headers and the JSON body (`Null` when there is none).
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    async fn from(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body readable");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("body is JSON") };
        Reply { status, headers, body }
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Api {
    async fn start() -> Api {
        Api::with(SandboxConfig::default()).await
    }

    async fn with(config: SandboxConfig) -> Api {
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        Api { sandbox, client: Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.sandbox.base_url(), path)
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request =
            self.client.request(method, self.url(path)).header(header::AUTHORIZATION, format!("Token {TOKEN}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::from(request.send().await.expect("request sent")).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    /// GET of an absolute URL, as a client following `next` does.
    async fn get_absolute(&self, url: &str) -> Reply {
        let request = self.client.get(url).header(header::AUTHORIZATION, format!("Token {TOKEN}"));
        Reply::from(request.send().await.expect("request sent")).await
    }

    async fn company(&self, internal_id: &str, name: &str) -> Value {
        let reply = self.post("companies/", json!({"name": name, "internal_id": internal_id})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body
    }

    async fn contact(&self, body: Value) -> Value {
        let reply = self.post("users/", body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body
    }

    /// Every object of a list, following `next` until it is null.
    async fn all(&self, first: &str) -> Vec<Value> {
        let mut results = Vec::new();
        let mut reply = self.get(first).await;
        loop {
            assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
            results.extend(reply.body["results"].as_array().cloned().unwrap_or_default());
            match reply.body["next"].as_str() {
                Some(next) => reply = self.get_absolute(next).await,
                None => return results,
            }
        }
    }
}

fn field(values: &[Value], name: &str) -> Vec<Value> {
    values.iter().map(|v| v[name].clone()).collect()
}

// ---- authentication, routing, methods ------------------------------------------------------------

#[tokio::test]
async fn missing_token_is_401_credentials_not_provided() {
    let api = Api::start().await;
    let reply = Reply::from(api.client.get(api.url("users/")).send().await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, json!({"detail": "Authentication credentials were not provided."}));
    assert_eq!(reply.header(header::WWW_AUTHENTICATE), Some("Token"));
}

#[tokio::test]
async fn wrong_token_is_401_invalid_token() {
    let api = Api::start().await;
    let request = api
        .client
        .post(api.url("companies/"))
        .header(header::AUTHORIZATION, "Token not-the-token")
        .json(&json!({"name": "Acme", "internal_id": "c1"}));
    let reply = Reply::from(request.send().await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, json!({"detail": "Invalid token."}));
    assert_eq!(reply.header(header::WWW_AUTHENTICATE), Some("Token"));
    assert!(api.sandbox.snapshot().companies.is_empty(), "nothing applied");
}

#[tokio::test]
async fn malformed_authorization_headers_are_401_with_drf_messages() {
    let api = Api::start().await;
    for (value, message) in [
        ("Bearer sandbox-token", "Authentication credentials were not provided."),
        (TOKEN, "Authentication credentials were not provided."),
        ("Token", "Invalid token header. No credentials provided."),
        ("Token sandbox token", "Invalid token header. Token string should not contain spaces."),
    ] {
        let request = api.client.get(api.url("users/")).header(header::AUTHORIZATION, value);
        let reply = Reply::from(request.send().await.unwrap()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{value}");
        assert_eq!(reply.body["detail"], message, "{value}");
    }
    let lowercase = api.client.get(api.url("users/")).header(header::AUTHORIZATION, "token sandbox-token");
    assert_eq!(lowercase.send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_path_is_404_json_even_without_a_token() {
    let api = Api::start().await;
    assert_eq!(api.get("contacts/").await.body, json!({"detail": "Not found."}));
    let outside = format!("http://{}/api/users/", api.sandbox.addr());
    let reply = Reply::from(api.client.get(outside).send().await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn wrong_method_is_405_with_allow_header() {
    let api = Api::start().await;
    let reply = api.get("create-feedback/").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.body, json!({"detail": "Method \"GET\" not allowed."}));
    assert_eq!(reply.header(header::ALLOW), Some("POST"));

    let reply = api.send(Method::DELETE, "users/", None).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.body, json!({"detail": "Method \"DELETE\" not allowed."}));
    assert_eq!(reply.header(header::ALLOW), Some("GET, POST"));
}

#[tokio::test]
async fn paths_without_trailing_slash_are_the_same_endpoints() {
    let api = Api::start().await;
    let reply = api.post("companies", json!({"name": "Acme", "internal_id": "c1"})).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let reply = api.get("companies").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["count"], 1);
    let counters = api.sandbox.snapshot().requests;
    assert_eq!(counters.count("POST", "/app/api/companies/"), 1);
    assert_eq!(counters.count("GET", "/app/api/companies/"), 1);
}

// ---- bodies --------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_is_400_json_parse_error() {
    let api = Api::start().await;
    let request = api
        .client
        .post(api.url("companies/"))
        .header(header::AUTHORIZATION, format!("Token {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body("{\"name\": ");
    let reply = Reply::from(request.send().await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("JSON parse error - "), "{detail}");
}

#[tokio::test]
async fn non_object_body_is_400_non_field_errors() {
    let api = Api::start().await;
    let reply = api.post("users/", json!([{"name": "Ada"}])).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body, json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}));
    let reply = api.post("users/", Value::Null).await;
    assert_eq!(reply.body, json!({"non_field_errors": ["No data provided"]}));
}

#[tokio::test]
async fn non_json_content_type_is_415_and_missing_content_type_is_an_empty_body() {
    let api = Api::start().await;
    let auth = format!("Token {TOKEN}");
    let form = api
        .client
        .post(api.url("companies/"))
        .header(header::AUTHORIZATION, &auth)
        .header(header::CONTENT_TYPE, "text/plain")
        .body("name=Acme");
    let reply = Reply::from(form.send().await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(reply.body, json!({"detail": "Unsupported media type \"text/plain\" in request."}));

    let bare = api
        .client
        .post(api.url("companies/"))
        .header(header::AUTHORIZATION, &auth)
        .body(r#"{"name": "Acme", "internal_id": "c1"}"#);
    let reply = Reply::from(bare.send().await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body, json!({"name": ["This field is required."], "internal_id": ["This field is required."]}));
}

#[tokio::test]
async fn unknown_extra_fields_are_ignored() {
    let api = Api::start().await;
    let reply = api.post("companies/", json!({"name": "Acme", "internal_id": "c1", "website": "acme.test"})).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert!(reply.body.get("website").is_none());
}

#[tokio::test]
async fn body_over_one_mebibyte_is_413() {
    let api = Api::start().await;
    let big = "x".repeat(1 << 20);
    let reply = api.post("create-feedback/", json!({"problem": big})).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.body["detail"].as_str().unwrap_or_default().contains("1048576 bytes"));
    assert!(api.sandbox.snapshot().feedback.is_empty());
}

// ---- companies -----------------------------------------------------------------------------------

#[tokio::test]
async fn company_upsert_creates_then_updates_without_duplicate() {
    let api = Api::start().await;
    let created = api
        .post(
            "companies/",
            json!({"name": "Acme", "internal_id": "c1", "filterable_attributes": {"plan": "pro", "region": "eu"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let keys: Vec<&str> = created.body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "name", "internal_id", "filterable_attributes", "created", "updated"]);
    let stamp = created.body["created"].as_str().unwrap();
    assert_eq!(stamp.len(), "2026-12-03T19:44:00.123456Z".len(), "{stamp}");
    assert!(stamp.ends_with('Z'), "{stamp}");

    let updated = api
        .post(
            "companies/",
            json!({"name": "Acme Corp", "internal_id": "c1", "filterable_attributes": {"plan": "enterprise", "seats": 40}}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::CREATED);
    assert_eq!(updated.body["id"], created.body["id"]);
    assert_eq!(updated.body["name"], "Acme Corp");
    assert_eq!(
        updated.body["filterable_attributes"],
        json!({"plan": "enterprise", "region": "eu", "seats": 40}),
        "given keys replace, other keys stay"
    );
    assert_eq!(updated.body["created"], created.body["created"]);
    assert!(updated.body["updated"].as_str() > created.body["updated"].as_str());

    let list = api.get("companies/").await;
    assert_eq!(list.body["count"], 1);
    assert_eq!(list.body["results"][0], updated.body);
}

#[tokio::test]
async fn company_validation_names_every_bad_field() {
    let api = Api::start().await;
    let reply = api.post("companies/", json!({"internal_id": "  ", "filterable_attributes": ["region"]})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.body,
        json!({
            "name": ["This field is required."],
            "internal_id": ["This field may not be blank."],
            "filterable_attributes": ["Expected a dictionary of items but got type \"list\"."],
        })
    );
    let reply = api.post("companies/", json!({"name": true, "internal_id": null})).await;
    assert_eq!(reply.body, json!({"name": ["Not a valid string."], "internal_id": ["This field may not be null."]}));
    assert!(api.sandbox.snapshot().companies.is_empty());
}

// ---- contacts ------------------------------------------------------------------------------------

#[tokio::test]
async fn contact_is_matched_by_internal_id_and_omitted_fields_keep_their_value() {
    let api = Api::start().await;
    api.company("c1", "Acme").await;
    let first = api
        .contact(json!({
            "name": "Ada", "internal_id": "u1", "email": "ada@example.com",
            "company_internal_id": "c1", "filterable_attributes": {"role": "cto"}
        }))
        .await;
    let second =
        api.contact(json!({"name": "Ada Lovelace", "internal_id": "u1", "filterable_attributes": {"tier": 1}})).await;
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["name"], "Ada Lovelace");
    assert_eq!(second["email"], "ada@example.com");
    assert_eq!(second["company_name"], "Acme");
    assert_eq!(second["filterable_attributes"], json!({"role": "cto", "tier": 1}));
    assert!(second["updated"].as_str() > first["updated"].as_str());
    assert_eq!(api.sandbox.snapshot().contacts.len(), 1);
}

#[tokio::test]
async fn contact_is_matched_by_email_case_insensitively_and_keeps_the_email_as_given() {
    let api = Api::start().await;
    let first = api.contact(json!({"name": "Ada", "internal_id": "u1", "email": "Ada@Example.com"})).await;
    let second = api.contact(json!({"name": "Ada", "internal_id": "crm-9", "email": "ada@EXAMPLE.com"})).await;
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["internal_id"], "crm-9");
    assert_eq!(second["email"], "ada@EXAMPLE.com");
    let keys: Vec<&str> = second.as_object().unwrap().keys().map(String::as_str).collect();
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
        ]
    );
    assert_eq!(api.sandbox.snapshot().contacts.len(), 1);
}

#[tokio::test]
async fn contact_whose_email_belongs_to_another_contact_is_400() {
    let api = Api::start().await;
    api.contact(json!({"name": "Ada", "internal_id": "u1", "email": "ada@example.com"})).await;
    api.contact(json!({"name": "Bob", "internal_id": "u2", "email": "bob@example.com"})).await;
    let reply = api.post("users/", json!({"name": "Ada", "internal_id": "u1", "email": "BOB@example.com"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body, json!({"email": ["A contact with this email already exists."]}));
}

#[tokio::test]
async fn contact_links_to_a_company_by_internal_id_or_by_savio_id() {
    let api = Api::start().await;
    let acme = api.company("c1", "Acme").await;
    let by_internal = api.contact(json!({"name": "Ada", "internal_id": "u1", "company_internal_id": "c1"})).await;
    assert_eq!(by_internal["company"], acme["id"]);
    assert_eq!(by_internal["company_name"], "Acme");
    let by_id = api.contact(json!({"name": "Bob", "internal_id": "u2", "company": acme["id"]})).await;
    assert_eq!(by_id["company"], acme["id"]);
    assert_eq!(by_id["company_name"], "Acme");
    let unlinked = api.contact(json!({"name": "Cy", "internal_id": "u3"})).await;
    assert_eq!(unlinked["company"], Value::Null);
    assert_eq!(unlinked["company_name"], Value::Null);
}

#[tokio::test]
async fn contact_with_unknown_company_is_400_naming_the_field() {
    let api = Api::start().await;
    let reply = api.post("users/", json!({"name": "Ada", "internal_id": "u1", "company_internal_id": "nope"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body, json!({"company_internal_id": ["No company with internal_id \"nope\"."]}));
    let reply = api.post("users/", json!({"name": "Ada", "internal_id": "u1", "company": 99})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body, json!({"company": ["Invalid pk \"99\" - object does not exist."]}));
    assert!(api.sandbox.snapshot().contacts.is_empty());
}

#[tokio::test]
async fn contact_validation_names_every_bad_field() {
    let api = Api::start().await;
    let reply = api
        .post("users/", json!({"email": "not an email", "name": "", "company": "seven", "filterable_attributes": "x"}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.body,
        json!({
            "email": ["Enter a valid email address."],
            "internal_id": ["This field is required."],
            "name": ["This field may not be blank."],
            "company": ["A valid integer is required."],
            "filterable_attributes": ["Expected a dictionary of items but got type \"str\"."],
        })
    );
}

// ---- feedback ------------------------------------------------------------------------------------

#[tokio::test]
async fn feedback_creates_and_links_person_company_feature_request_and_tags() {
    let api = Api::start().await;
    let reply = api
        .post(
            "create-feedback/",
            json!({
                "problem": "You need a Zapier integration so I can wire up Google Forms.",
                "feedback_type": "ACTIVE",
                "person_email": "bob@example.com",
                "person_name": "Bob",
                "company_name": "Acme",
                "state": "ACTIVE",
                "feature_request_title": "Feedback API",
                "tags": ["red", "green"],
                "source_url": "https://crm.test/notes/1"
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.body, json!({"id": 1}));

    let snap = api.sandbox.snapshot();
    assert_eq!(snap.contacts.len(), 1);
    let bob = &snap.contacts[0];
    assert_eq!(
        (bob.name.as_str(), bob.email.as_deref(), bob.internal_id.as_deref()),
        ("Bob", Some("bob@example.com"), None)
    );
    assert_eq!(snap.companies.len(), 1);
    assert_eq!(snap.companies[0].name, "Acme");
    assert_eq!(snap.companies[0].internal_id, None);
    assert_eq!(bob.company, Some(snap.companies[0].id));
    assert_eq!(snap.feature_requests.len(), 1);
    assert_eq!(snap.feature_requests[0].title, "Feedback API");
    let tags: Vec<&str> = snap.tags.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(tags, ["red", "green"]);
    let feedback = &snap.feedback[0];
    assert_eq!(feedback.person, Some(bob.id));
    assert_eq!(feedback.company, Some(snap.companies[0].id));
    assert_eq!(feedback.feature_request, Some(snap.feature_requests[0].id));
    assert_eq!(feedback.tags, vec![snap.tags[0].id, snap.tags[1].id]);
    assert_eq!(feedback.state, "ACTIVE");
    assert_eq!(feedback.source_url.as_deref(), Some("https://crm.test/notes/1"));
}

#[tokio::test]
async fn feedback_reuses_existing_person_feature_request_and_tags() {
    let api = Api::start().await;
    api.contact(json!({"name": "Bob", "internal_id": "u1", "email": "bob@example.com"})).await;
    for body in [
        json!({"problem": "a", "person_email": "BOB@example.com", "feature_request_title": "Feedback API", "tags": ["red"]}),
        json!({"problem": "b", "person_email": "bob@example.com", "person_name": "Robert", "feature_request_title": "feedback api", "tags": ["red", "blue"]}),
    ] {
        assert_eq!(api.post("create-feedback/", body).await.status, StatusCode::CREATED);
    }
    let snap = api.sandbox.snapshot();
    assert_eq!(snap.contacts.len(), 1, "person found by email, case-insensitively");
    assert_eq!(snap.contacts[0].name, "Robert", "a given person_name renames the person");
    assert_eq!(snap.contacts[0].internal_id.as_deref(), Some("u1"));
    assert_eq!(snap.feature_requests.len(), 1, "feature request title matched case-insensitively");
    let tags: Vec<&str> = snap.tags.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(tags, ["red", "blue"]);
    assert!(snap.feedback.iter().all(|f| f.person == Some(snap.contacts[0].id)));
    assert!(snap.feedback.iter().all(|f| f.state == "ACTIVE"), "state defaults to ACTIVE");
}

#[tokio::test]
async fn identical_feedback_sent_twice_is_two_pieces_of_feedback() {
    let api = Api::start().await;
    let body = json!({"problem": "Export is slow", "person_email": "bob@example.com"});
    let first = api.post("create-feedback/", body.clone()).await;
    let second = api.post("create-feedback/", body).await;
    assert_eq!(first.body, json!({"id": 1}));
    assert_eq!(second.body, json!({"id": 2}));
    let snap = api.sandbox.snapshot();
    assert_eq!(snap.feedback.len(), 2);
    assert_eq!(snap.contacts.len(), 1);
}

#[tokio::test]
async fn feedback_company_name_is_ignored_without_a_person() {
    let api = Api::start().await;
    let reply = api.post("create-feedback/", json!({"problem": "p", "company_name": "Acme"})).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let snap = api.sandbox.snapshot();
    assert!(snap.companies.is_empty());
    assert!(snap.contacts.is_empty());
    assert_eq!(snap.feedback[0].company, None);
}

#[tokio::test]
async fn feedback_validation_names_every_bad_field() {
    let api = Api::start().await;
    let reply = api
        .post(
            "create-feedback/",
            json!({
                "problem": "",
                "feedback_type": "active",
                "state": "DONE",
                "person_email": "bob-at-example.com",
                "person_name": "",
                "tags": ["ok", 3, false]
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.body,
        json!({
            "problem": ["This field may not be blank."],
            "feedback_type": ["\"active\" is not a valid choice."],
            "state": ["\"DONE\" is not a valid choice."],
            "person_email": ["Enter a valid email address."],
            "person_name": ["This field may not be blank."],
            "tags": {"2": ["Not a valid string."]},
        })
    );
    let reply = api.post("create-feedback/", json!({"tags": "red"})).await;
    assert_eq!(
        reply.body,
        json!({
            "problem": ["This field is required."],
            "tags": ["Expected a list of items but got type \"str\"."],
        })
    );
    let reply = api.post("create-feedback/", json!({"problem": "p", "feedback_type": "LOST DEAL"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(api.sandbox.snapshot().feedback.len(), 1);
}

#[tokio::test]
async fn sandbox_feedback_list_shows_feedback_with_names_resolved() {
    let api = Api::start().await;
    api.post(
        "create-feedback/",
        json!({"problem": "p1", "person_name": "Bob", "company_name": "Acme", "tags": ["red"]}),
    )
    .await;
    api.post("create-feedback/", json!({"problem": "p2", "feature_request_title": "SSO"})).await;
    let reply = api.get("_sandbox/feedback/?ordering=-id").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["count"], 2);
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!(results[0]["problem"], "p2");
    assert_eq!(results[0]["feature_request_title"], "SSO");
    assert_eq!(results[1]["person_name"], "Bob");
    assert_eq!(results[1]["company_name"], "Acme");
    assert_eq!(results[1]["tags"], json!(["red"]));
}

// ---- lists ---------------------------------------------------------------------------------------

#[tokio::test]
async fn following_next_yields_every_object_once_with_absolute_links() {
    let api = Api::start().await;
    for i in 1..=25 {
        api.company(&format!("c{i:02}"), &format!("Company {i:02}")).await;
    }
    let first = api.get("companies/?page_size=10").await;
    assert_eq!(first.body["count"], 25);
    assert_eq!(first.body["previous"], Value::Null);
    let base = format!("http://{}/app/api/companies/", api.sandbox.addr());
    assert_eq!(first.body["next"], format!("{base}?page=2&page_size=10"));

    let second = api.get_absolute(first.body["next"].as_str().unwrap()).await;
    assert_eq!(second.body["previous"], format!("{base}?page_size=10"), "page 1 has no page parameter");
    assert_eq!(second.body["next"], format!("{base}?page=3&page_size=10"));
    let third = api.get_absolute(second.body["next"].as_str().unwrap()).await;
    assert_eq!(third.body["results"].as_array().unwrap().len(), 5);
    assert_eq!(third.body["next"], Value::Null);
    assert_eq!(third.body["previous"], format!("{base}?page=2&page_size=10"));

    let all = api.all("companies/?page_size=10").await;
    let ids: Vec<i64> = all.iter().filter_map(|c| c["id"].as_i64()).collect();
    assert_eq!(ids, (1..=25).collect::<Vec<i64>>(), "every company once, in id order");
}

#[tokio::test]
async fn default_page_size_comes_from_the_config() {
    let api = Api::with(SandboxConfig { page_size: 3, ..SandboxConfig::default() }).await;
    for i in 0..7 {
        api.contact(json!({"name": format!("P{i}"), "internal_id": format!("u{i}")})).await;
    }
    let page = api.get("users/").await;
    assert_eq!(page.body["results"].as_array().unwrap().len(), 3);
    assert_eq!(page.body["count"], 7);
    let page = api.get("users/?page_size=5").await;
    assert_eq!(page.body["results"].as_array().unwrap().len(), 5);
    let page = api.get("users/?page_size=zero").await;
    assert_eq!(page.body["results"].as_array().unwrap().len(), 3, "garbage falls back to the default");
    assert_eq!(api.all("users/").await.len(), 7);
    let last = api.get("users/?page=last").await;
    assert_eq!(field(last.body["results"].as_array().unwrap(), "name"), [json!("P6")]);
}

#[tokio::test]
async fn invalid_page_is_404() {
    let api = Api::start().await;
    api.company("c1", "Acme").await;
    for page in ["0", "2", "-1", "x"] {
        let reply = api.get(&format!("companies/?page={page}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "page {page}");
        assert_eq!(reply.body, json!({"detail": "Invalid page."}));
    }
    let empty = Api::start().await;
    let reply = empty.get("users/?page=1").await;
    assert_eq!(reply.status, StatusCode::OK, "page 1 of nothing exists");
    assert_eq!(reply.body, json!({"count": 0, "next": null, "previous": null, "results": []}));
}

#[tokio::test]
async fn next_links_use_the_host_header_and_keep_other_parameters() {
    let api = Api::start().await;
    for i in 0..3 {
        api.company(&format!("c{i}"), &format!("Acme {i}")).await;
    }
    let request = api
        .client
        .get(api.url("companies/?search=acme&page_size=1&ordering=-name"))
        .header(header::AUTHORIZATION, format!("Token {TOKEN}"))
        .header(header::HOST, "savio.example:8443");
    let reply = Reply::from(request.send().await.unwrap()).await;
    assert_eq!(
        reply.body["next"],
        "http://savio.example:8443/app/api/companies/?ordering=-name&page=2&page_size=1&search=acme"
    );
}

#[tokio::test]
async fn search_filters_contacts_by_email_or_name_and_companies_by_name() {
    let api = Api::start().await;
    api.contact(json!({"name": "Ada Lovelace", "internal_id": "u1", "email": "ada@example.com"})).await;
    api.contact(json!({"name": "Bob", "internal_id": "u2", "email": "bob@other.org"})).await;
    api.contact(json!({"name": "Example Person", "internal_id": "u3"})).await;
    let names = |reply: Reply| field(reply.body["results"].as_array().unwrap(), "name");

    assert_eq!(names(api.get("users/?search=EXAMPLE").await), [json!("Ada Lovelace"), json!("Example Person")]);
    assert_eq!(names(api.get("users/?search=other.org").await), [json!("Bob")]);
    assert_eq!(names(api.get("users/?search=ada%20example.com").await), [json!("Ada Lovelace")]);
    assert_eq!(api.get("users/?search=nobody").await.body["count"], 0);

    api.company("c1", "Acme Corp").await;
    api.company("c2", "Globex").await;
    assert_eq!(names(api.get("companies/?search=acme").await), [json!("Acme Corp")]);
    assert_eq!(api.get("companies/?search=c2").await.body["count"], 0, "internal_id is not searched");
}

#[tokio::test]
async fn ordering_sorts_ascending_descending_and_by_several_fields() {
    let api = Api::start().await;
    api.contact(json!({"name": "Bob", "internal_id": "u1", "email": "b2@x.io"})).await;
    api.contact(json!({"name": "Ada", "internal_id": "u2", "email": "a@x.io"})).await;
    api.contact(json!({"name": "Bob", "internal_id": "u3", "email": "b1@x.io"})).await;
    api.contact(json!({"name": "Cy", "internal_id": "u4"})).await;
    let ids = |reply: Reply| field(reply.body["results"].as_array().unwrap(), "id");

    assert_eq!(ids(api.get("users/").await), [json!(1), json!(2), json!(3), json!(4)]);
    assert_eq!(ids(api.get("users/?ordering=name").await), [json!(2), json!(1), json!(3), json!(4)]);
    assert_eq!(ids(api.get("users/?ordering=-name").await), [json!(4), json!(1), json!(3), json!(2)]);
    assert_eq!(ids(api.get("users/?ordering=name,-email").await), [json!(2), json!(1), json!(3), json!(4)]);
    assert_eq!(ids(api.get("users/?ordering=name,email").await), [json!(2), json!(3), json!(1), json!(4)]);
    assert_eq!(
        ids(api.get("users/?ordering=email").await),
        [json!(2), json!(3), json!(1), json!(4)],
        "a missing email sorts last"
    );
    assert_eq!(ids(api.get("users/?ordering=password,-bogus").await), [json!(1), json!(2), json!(3), json!(4)]);

    api.contact(json!({"name": "Ada", "internal_id": "u2"})).await;
    assert_eq!(ids(api.get("users/?ordering=-updated").await)[0], json!(2), "the last updated first");

    api.company("z", "Zeta").await;
    api.company("a", "Alpha").await;
    let companies = api.get("companies/?ordering=-internal_id").await;
    assert_eq!(field(companies.body["results"].as_array().unwrap(), "name"), [json!("Zeta"), json!("Alpha")]);
}

#[tokio::test]
async fn search_and_ordering_hold_across_pages() {
    let api = Api::start().await;
    for i in 0..23 {
        let domain = if i % 3 == 0 { "other.org" } else { "acme.io" };
        let name = format!("{} {i:02}", ["Cy", "Ada", "Bob"][i % 3]);
        api.contact(json!({"name": name, "internal_id": format!("u{i}"), "email": format!("p{i}@{domain}")})).await;
    }
    let walked = api.all("users/?search=acme.io&ordering=-name&page_size=4").await;
    let names: Vec<String> = walked.iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    let mut expected: Vec<String> =
        (0..23).filter(|i| i % 3 != 0).map(|i| format!("{} {i:02}", ["Cy", "Ada", "Bob"][i % 3])).collect();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(names, expected, "every match once, sorted across page boundaries");
    let first = api.get("users/?search=acme.io&ordering=-name&page_size=4").await;
    assert_eq!(first.body["count"], 15, "count is the filtered total, not the page");
    assert_eq!(first.body["results"].as_array().unwrap().len(), 4);
}

// ---- faults --------------------------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_beyond_the_limit() {
    let api = Api::with(SandboxConfig { rate_limit: Some(5), ..SandboxConfig::default() }).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let reply = api.post("companies/", json!({"name": "Acme", "internal_id": format!("c{i}")})).await;
        statuses.push(reply.status);
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(reply.header(header::RETRY_AFTER), Some("1"));
            assert_eq!(reply.body, json!({"detail": "Request was throttled. Expected available in 1 second."}));
        }
    }
    assert_eq!(statuses[..5], [StatusCode::CREATED; 5]);
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(api.get("_sandbox/stats/").await.status, StatusCode::OK, "inspection is never throttled");
    assert_eq!(api.sandbox.snapshot().companies.len(), 5, "the throttled request was not applied");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(api.get("users/").await.status, StatusCode::OK, "a new window admits again");
    let counters = api.sandbox.snapshot().requests;
    assert_eq!(counters.with_status(429), 1);
}

async fn statuses_under_faults(seed: u64) -> (Vec<u16>, usize) {
    let api = Api::with(SandboxConfig { fail_rate: 0.5, seed, ..SandboxConfig::default() }).await;
    let mut statuses = Vec::new();
    for i in 0..40 {
        let reply = api.post("companies/", json!({"name": "Acme", "internal_id": format!("c{i}")})).await;
        if reply.status.is_server_error() {
            assert!(reply.body["detail"].is_string());
        }
        statuses.push(reply.status.as_u16());
    }
    let applied = api.sandbox.snapshot().companies.len();
    api.sandbox.shutdown().await.unwrap();
    (statuses, applied)
}

#[tokio::test]
async fn fail_rate_is_reproducible_with_a_seed_and_failures_are_not_applied() {
    let (first, applied) = statuses_under_faults(11).await;
    let (again, _) = statuses_under_faults(11).await;
    let (other, _) = statuses_under_faults(12).await;
    assert_eq!(first, again, "same seed, same faults");
    assert_ne!(first, other, "another seed, other faults");
    assert!(first.contains(&500) && first.contains(&503), "{first:?}");
    let successes = first.iter().filter(|s| **s == 201).count();
    assert!((8..=32).contains(&successes), "about half fail: {first:?}");
    assert_eq!(applied, successes, "a failed request changes nothing");
}

#[tokio::test]
async fn latency_delays_every_request() {
    let api = Api::with(SandboxConfig { latency: Duration::from_millis(150), ..SandboxConfig::default() }).await;
    for path in ["users/", "no-such-path/"] {
        let started = Instant::now();
        api.get(path).await;
        assert!(started.elapsed() >= Duration::from_millis(150), "{path}");
    }
}

// ---- counters ------------------------------------------------------------------------------------

#[tokio::test]
async fn snapshot_and_stats_count_requests_by_endpoint_and_status() {
    let api = Api::start().await;
    api.company("c1", "Acme").await;
    api.company("c1", "Acme").await;
    api.get("users/").await;
    api.get("nowhere/").await;
    api.post("users/", json!({})).await;
    let unauthenticated = api.client.get(api.url("companies/")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    let counters = api.sandbox.snapshot().requests;
    assert_eq!(counters.total, 6);
    assert_eq!(counters.count("POST", "/app/api/companies/"), 2);
    assert_eq!(counters.count("GET", "/app/api/users/"), 1);
    assert_eq!(counters.count("POST", "/app/api/users/"), 1);
    assert_eq!(counters.count("GET", "/app/api/companies/"), 1);
    assert_eq!(counters.count("GET", "(unknown path)"), 1);
    assert_eq!((counters.with_status(201), counters.with_status(200), counters.with_status(400)), (2, 1, 1));
    assert_eq!((counters.with_status(401), counters.with_status(404)), (1, 1));

    let stats = api.get("_sandbox/stats").await;
    assert_eq!(stats.status, StatusCode::OK);
    assert_eq!(stats.body["total"], 6);
    assert_eq!(stats.body["by_endpoint"]["POST /app/api/companies/"], 2);
    assert_eq!(stats.body["by_status"]["201"], 2);
}

// ---- concurrency ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_upserts_of_the_same_ids_make_no_duplicates() {
    let api = Api::start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = api.client.clone();
        let url = api.url("companies/");
        tasks.spawn(async move {
            let body = json!({
                "name": format!("Company {}", i % 50),
                "internal_id": format!("c{}", i % 50),
                "filterable_attributes": {format!("k{i}"): i}
            });
            let response = client
                .post(url)
                .header(header::AUTHORIZATION, format!("Token {TOKEN}"))
                .json(&body)
                .send()
                .await
                .expect("request sent");
            response.status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::CREATED);
    }
    let snap = api.sandbox.snapshot();
    assert_eq!(snap.companies.len(), 50);
    let ids: BTreeSet<i64> = snap.companies.iter().map(|c| c.id).collect();
    assert_eq!(ids, (1..=50).collect());
    let attributes: usize = snap.companies.iter().map(|c| c.filterable_attributes.len()).sum();
    assert_eq!(attributes, 200, "no update was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_feedback_gets_unique_ids() {
    let api = Api::start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let client = api.client.clone();
        let url = api.url("create-feedback/");
        tasks.spawn(async move {
            let body = json!({"problem": format!("p{i}"), "person_email": "same@example.com", "tags": ["t"]});
            let response = client
                .post(url)
                .header(header::AUTHORIZATION, format!("Token {TOKEN}"))
                .json(&body)
                .send()
                .await
                .expect("request sent");
            response.json::<Value>().await.expect("JSON")["id"].as_i64()
        });
    }
    let mut ids = BTreeSet::new();
    while let Some(id) = tasks.join_next().await {
        assert!(ids.insert(id.unwrap().expect("an id")));
    }
    assert_eq!(ids, (1..=100).collect());
    let snap = api.sandbox.snapshot();
    assert_eq!((snap.contacts.len(), snap.tags.len()), (1, 1));
}

// ---- persistence ---------------------------------------------------------------------------------

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox.json");
    let config = SandboxConfig { state: Some(path.clone()), ..SandboxConfig::default() };

    let api = Api::with(config.clone()).await;
    api.company("c1", "Acme").await;
    api.contact(json!({"name": "Ada", "internal_id": "u1", "email": "ada@example.com", "company_internal_id": "c1"}))
        .await;
    api.post("create-feedback/", json!({"problem": "p", "person_email": "ada@example.com", "tags": ["red"]})).await;
    let before = api.sandbox.snapshot();
    api.sandbox.shutdown().await.unwrap();

    let api = Api::with(config).await;
    let after = api.sandbox.snapshot();
    assert_eq!(after.companies, before.companies);
    assert_eq!(after.contacts, before.contacts);
    assert_eq!(after.feedback, before.feedback);
    assert_eq!(after.tags, before.tags);
    assert_eq!(after.requests.total, 0, "counters are per run");

    let next = api.company("c2", "Globex").await;
    assert_eq!(next["id"], 2, "ids continue after the loaded ones");
    let matched = api.contact(json!({"name": "Ada L", "internal_id": "x", "email": "ADA@example.com"})).await;
    assert_eq!(matched["id"], 1, "indexes are rebuilt on load");
    api.sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn state_is_saved_shortly_after_a_change_without_waiting_for_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox.json");
    let api = Api::with(SandboxConfig { state: Some(path.clone()), ..SandboxConfig::default() }).await;
    assert!(path.exists(), "created at start");
    api.company("crm-77", "Acme").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("crm-77") {
            break;
        }
        assert!(Instant::now() < deadline, "state not saved within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");
}

#[tokio::test]
async fn corrupt_state_file_is_an_error_naming_it_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox.json");
    std::fs::write(&path, "{\"version\": 1, \"companies\": [tru").unwrap();
    let config = SandboxConfig { state: Some(path.clone()), ..SandboxConfig::default() };
    let error = Sandbox::start(config).await.expect_err("a corrupt file is refused");
    assert!(matches!(&error, SandboxError::StateCorrupt { path: p, .. } if p == &path), "{error:?}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"version\": 1, \"companies\": [tru");
}

// ---- lifecycle -----------------------------------------------------------------------------------

#[tokio::test]
async fn binding_a_busy_address_is_an_error_naming_it() {
    let api = Api::start().await;
    let busy = api.sandbox.addr();
    let error =
        Sandbox::start(SandboxConfig { bind: busy, ..SandboxConfig::default() }).await.expect_err("address in use");
    assert!(matches!(&error, SandboxError::Bind { addr, .. } if *addr == busy), "{error:?}");
    assert!(error.to_string().contains(&busy.to_string()));
}

#[tokio::test]
async fn invalid_config_is_refused_before_binding() {
    let error = Sandbox::start(SandboxConfig { fail_rate: 1.5, ..SandboxConfig::default() })
        .await
        .expect_err("fail rate above 1");
    assert!(matches!(error, SandboxError::Config(_)), "{error:?}");
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    let api = Api::with(SandboxConfig { latency: Duration::from_millis(300), ..SandboxConfig::default() }).await;
    let client = api.client.clone();
    let url = api.url("companies/");
    let in_flight = tokio::spawn(async move {
        client
            .post(url)
            .header(header::AUTHORIZATION, format!("Token {TOKEN}"))
            .json(&json!({"name": "Acme", "internal_id": "c1"}))
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.sandbox.shutdown().await.unwrap();
    assert_eq!(in_flight.await.unwrap().unwrap(), StatusCode::CREATED);
}

/// A writer that hands each write to the test while `serve_until` runs.
struct ChannelWriter(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf.to_vec()).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn serve_until_prints_the_base_url_first_and_stops_on_the_signal() {
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let mut out = ChannelWriter(lines_tx);
        serve_until(SandboxConfig::default(), &mut out, async {
            let _ = stop_rx.await;
        })
        .await
    });
    let mut printed = String::new();
    while printed.matches('\n').count() < 2 {
        let chunk = lines_rx.recv().await.expect("serve_until writes two lines");
        printed.push_str(&String::from_utf8(chunk).unwrap());
    }
    let mut lines = printed.lines();
    let base_url = lines.next().unwrap().to_owned();
    assert!(base_url.starts_with("http://127.0.0.1:") && base_url.ends_with("/app/api/"), "{base_url}");
    assert!(lines.next().unwrap().contains(TOKEN));

    let reply = Client::new()
        .get(format!("{base_url}users/"))
        .header(header::AUTHORIZATION, format!("Token {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(Client::new().get(format!("{base_url}users/")).send().await.is_err(), "stopped listening");
}
