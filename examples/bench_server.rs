//! A minimal HTTP server for the writer benchmarks (`scripts/bench-http.sh`): answers every POST under
//! `/app/api/` with `201 {"id": 1}`, optionally after a fixed delay, and records each request's arrival time
//! so the script can check a rate limit over every one-second window.
//!
//! Usage: `bench_server [--delay-ms N] [--log FILE]`. Prints its base URL on the first line of stdout and
//! serves until stdin closes (or SIGTERM); then writes one arrival time per line (nanoseconds since start)
//! to FILE.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let delay = Duration::from_millis(flag("--delay-ms").map_or(Ok(0), |v| v.parse())?);
    let log_path = flag("--log");
    let start = Instant::now();
    let arrivals: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::with_capacity(1 << 16)));
    let log = Arc::clone(&arrivals);
    let handler = move || {
        let log = Arc::clone(&log);
        async move {
            let at = start.elapsed().as_nanos() as u64;
            if let Ok(mut l) = log.lock() {
                l.push(at);
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            (StatusCode::CREATED, [("content-type", "application/json")], "{\"id\": 1}")
        }
    };
    let app = axum::Router::new()
        .route("/app/api/create-feedback/", post(handler.clone()))
        .route("/app/api/users/", post(handler.clone()))
        .route("/app/api/companies/", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("http://{}/app/api/", listener.local_addr()?);
    let stop = async {
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
        tokio::select! {
            _ = stdin_closed => {}
            _ = term.recv() => {}
        }
    };
    axum::serve(listener, app).with_graceful_shutdown(stop).await?;
    if let Some(path) = log_path {
        let text: String = arrivals.lock().map(|l| l.iter().map(|t| format!("{t}\n")).collect()).unwrap_or_default();
        std::fs::write(path, text)?;
    }
    Ok(())
}
