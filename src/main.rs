//! The `savio-sync` binary: parses flags, sets up logging, runs a command and maps the outcome to an exit
//! code. Everything else lives in the library.

mod cli;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use savio_sync::exit::Exit;
use savio_sync::mapping::Mapping;
use savio_sync::pipeline::Pipeline;
use savio_sync::sandbox::SandboxConfig;
use savio_sync::{settings, validate};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, GlobalArgs, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.global);
    match run(cli) {
        Ok(code) => code.into(),
        // The reader of stdout went away (`savio-sync validate ... | head`): not an error, as for xsv or ripgrep.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            report_error(&err);
            Exit::Unusable.into()
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Validate(args) => cmd_validate(args),
        Command::Sandbox(args) => runtime()?.block_on(cmd_sandbox(args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

async fn cmd_sandbox(args: cli::SandboxArgs) -> anyhow::Result<Exit> {
    let mut config = SandboxConfig {
        bind: args.bind,
        state: args.state,
        rate_limit: args.rate_limit,
        fail_rate: args.fail_rate,
        latency: std::time::Duration::from_millis(args.latency_ms),
        seed: args.seed,
        page_size: args.page_size,
        ..SandboxConfig::default()
    };
    if let Some(token) = args.token {
        config.token = token;
    }
    if !args.bind.ip().is_loopback() {
        tracing::warn!("the sandbox listens on {} (not loopback) without TLS", args.bind);
    }
    let mut stdout = io::stdout();
    savio_sync::sandbox::serve_until(config, &mut stdout, shutdown_signal()).await?;
    Ok(Exit::Ok)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn cmd_validate(args: cli::ValidateArgs) -> anyhow::Result<Exit> {
    let mapping = Mapping::load(&args.mapping)?;
    let spec = settings::input_spec(&args.input, &(&args.input_args).into(), &mapping)?;
    let mut pipeline = Pipeline::open(&spec, &mapping)?;
    for w in pipeline.warnings() {
        tracing::warn!("{w}");
    }
    let opts = validate::ValidateOptions { preview: args.preview, failures: args.failures.clone(), json: args.json };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let summary = validate::run(&mut pipeline, &args.mapping.display().to_string(), &opts, &mut out)?;
    if args.json {
        serde_json::to_writer_pretty(&mut out, &summary).context("cannot write the summary")?;
        writeln!(out).context("cannot write the summary")?;
    } else {
        summary.render(&mut out).context("cannot write the summary")?;
    }
    Ok(if summary.failed_rows > 0 { Exit::RowsFailed } else { Exit::Ok })
}

/// Whether an error comes from writing to a pipe whose reader is gone, anywhere in its chain.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind)
                == Some(io::ErrorKind::BrokenPipe)
    })
}

/// Prints an error and its causes once, on stderr.
fn report_error(err: &anyhow::Error) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "error: {err}");
    for cause in err.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
}

fn init_tracing(g: &GlobalArgs) {
    let default = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false);
    match g.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.without_time().init(),
    }
}
