//! With a proxy configured in the environment, the writer's POSTs go through it: the client's own
//! connections do not implement proxies, so it sends through reqwest, which does.
//!
//! Its own test binary: the proxy variables are process-wide and would reroute every other test's client.

use std::time::Duration;

use mockito::Matcher;
use savio_sync::client::{ApiToken, ClientConfig, SavioClient};
use savio_sync::model::{Feedback, Payload, SavioId};

#[tokio::test]
async fn posts_go_through_the_proxy_named_by_http_proxy() {
    let mut proxy = mockito::Server::new_async().await;
    let relayed = proxy
        .mock("POST", Matcher::Any)
        .match_header("authorization", "Token pr0xy-test-token")
        .with_status(201)
        .with_body(r#"{"id": 5}"#)
        .expect(1)
        .create_async()
        .await;
    // SAFETY: this test binary has a single test, so no other thread reads the environment meanwhile.
    unsafe {
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
        std::env::set_var("HTTP_PROXY", proxy.url());
    }
    // Nothing listens on the discard port: a request that bypassed the proxy would be refused.
    let mut config = ClientConfig::new(ApiToken::new("pr0xy-test-token".into()).unwrap());
    config.base_url = "http://127.0.0.1:9/app/api/".into();
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(5);
    let client = SavioClient::new(config).unwrap();
    let feedback = Feedback { problem: "Export to CSV".into(), ..Default::default() };
    let accepted = client.send(&Payload::Feedback(feedback)).await.outcome.expect("accepted through the proxy");
    assert_eq!(accepted.id, Some(SavioId::Int(5)));
    relayed.assert_async().await;
}
