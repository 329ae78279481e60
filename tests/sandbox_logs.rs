//! The sandbox's logs never show a token. In its own test binary: tracing caches per-callsite interest
//! process-wide, so a test that captures logs with a scoped subscriber races every other test in the same
//! process that hits the same log lines first (it then sees no "sandbox request" lines at all).

use std::io::Write;

use reqwest::Client;
use reqwest::header;
use savio_sync::sandbox::{Sandbox, SandboxConfig};
use serde_json::json;

/// Collects log output in memory.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_appear_in_logs() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber =
        tracing_subscriber::fmt().with_max_level(tracing::Level::DEBUG).with_writer(move || writer.clone()).finish();
    // The default test runtime is single-threaded, so the server's tasks log through this subscriber too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        token: "very-secret-token-123".into(),
        state: Some(dir.path().join("state.json")),
        ..SandboxConfig::default()
    };
    tracing::info!(?config, "starting");
    let sandbox = Sandbox::start(config).await.unwrap();
    let client = Client::new();
    for token in ["very-secret-token-123", "wrong-token-456"] {
        client
            .post(format!("{}companies/", sandbox.base_url()))
            .header(header::AUTHORIZATION, format!("Token {token}"))
            .json(&json!({"name": "Acme", "internal_id": "c1"}))
            .send()
            .await
            .unwrap();
    }
    sandbox.shutdown().await.unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("sandbox listening"), "{text}");
    assert!(text.contains("sandbox request"), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
    assert!(!text.contains("very-secret-token-123"), "{text}");
    assert!(!text.contains("wrong-token-456"), "{text}");
}
