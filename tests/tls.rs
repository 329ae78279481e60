//! https through the writer's own connections (`client/lanes.rs`), against a local TLS server whose
//! self-signed certificate is made trusted through `SSL_CERT_FILE` (which the platform verifier reads on
//! Linux, as reqwest's does): the request arrives with the token; a server whose certificate is not trusted
//! gets no request at all, and the failure says nothing was sent.
//!
//! Its own test binary: `SSL_CERT_FILE` is process-wide.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use savio_sync::client::{ApiToken, ClientConfig, RetryAction, SavioClient, SendError, classify};
use savio_sync::model::{Feedback, Payload, SavioId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "tls-t0ken-31f9";

/// An https server on 127.0.0.1 (certificate for `localhost`) answering `201 {"id": 9}`; returns its port
/// and the request heads it received.
async fn tls_server(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.lock().unwrap().push(String::from_utf8_lossy(&buf).to_ascii_lowercase());
                let body = r#"{"id": 9}"#;
                let answer = format!(
                    "HTTP/1.1 201 Created\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, heads)
}

fn self_signed() -> (rcgen::CertifiedKey<rcgen::KeyPair>, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    (certified, der, key)
}

fn client(port: u16) -> SavioClient {
    let mut config = ClientConfig::new(ApiToken::new(TOKEN.into()).unwrap());
    config.base_url = format!("https://localhost:{port}/app/api/");
    config.connect_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(5);
    SavioClient::new(config).unwrap()
}

#[tokio::test]
async fn https_reaches_a_trusted_server_with_the_token_and_never_an_untrusted_one() {
    let (trusted, trusted_der, trusted_key) = self_signed();
    let (_other, other_der, other_key) = self_signed();
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, trusted.cert.pem()).unwrap();
    // SAFETY: this test binary has a single test, so no other thread reads the environment meanwhile.
    unsafe {
        std::env::set_var("SSL_CERT_FILE", &roots);
        for var in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
            std::env::remove_var(var);
        }
    }
    let feedback = Payload::Feedback(Feedback { problem: "Dark mode".into(), ..Default::default() });

    let (port, heads) = tls_server(trusted_der, trusted_key).await;
    let accepted = client(port).send(&feedback).await.outcome.expect("accepted over TLS");
    assert_eq!(accepted.id, Some(SavioId::Int(9)));
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("post /app/api/create-feedback/ http/1.1"), "{}", heads[0]);
    assert!(heads[0].contains(&format!("authorization: token {}", TOKEN.to_ascii_lowercase())), "{}", heads[0]);
    assert!(heads[0].contains(&format!("host: localhost:{port}")), "{}", heads[0]);

    let (port, heads) = tls_server(other_der, other_key).await;
    let err = client(port).send(&feedback).await.outcome.expect_err("an untrusted certificate is refused");
    assert!(matches!(err, SendError::Connect { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(TOKEN), "{err:?}");
    assert_eq!(classify(&err, false), RetryAction::Retry { after: None }, "nothing was sent: safe to retry");
    assert!(heads.lock().unwrap().is_empty(), "no request reached the untrusted server");
}
