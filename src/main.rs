//! The `savio-sync` binary: parses flags, sets up logging, runs a command and maps the outcome to an exit
//! code. Everything else lives in the library.

mod cli;

/// mimalloc: glibc malloc spent ~13% of a sync's CPU (rows are mapped on the reader thread and freed on the
/// writer's, which glibc's arenas handle poorly).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use savio_sync::client::{ApiToken, ClientConfig, SavioClient};
use savio_sync::exit::Exit;
use savio_sync::mapping::Mapping;
use savio_sync::pipeline::Pipeline;
use savio_sync::progress::ProgressMode;
use savio_sync::sandbox::{Sandbox, SandboxConfig};
use savio_sync::sink::SinkConfig;
use savio_sync::state::{Mode, RunListing, StateStore};
use savio_sync::sync::{ResumeChoice, StateSettings, SyncSettings};
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
            use savio_sync::state::LockError;
            use savio_sync::sync::SyncError;
            let busy = err.chain().any(|e| {
                matches!(e.downcast_ref::<LockError>(), Some(LockError::Held { .. }))
                    || matches!(e.downcast_ref::<SyncError>(), Some(SyncError::Lock(LockError::Held { .. })))
            });
            if busy { Exit::Busy.into() } else { Exit::Unusable.into() }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Exit> {
    let quiet = cli.global.quiet;
    match cli.command {
        Command::Validate(args) => cmd_validate(args),
        Command::Sandbox(args) => runtime()?.block_on(cmd_sandbox(args)),
        Command::Sync(args) => cmd_sync(*args, quiet),
        Command::Demo(args) => cmd_demo(args),
        Command::Export(args) => cmd_export(args, quiet),
        Command::Runs(args) => cmd_runs(&args),
    }
}

/// `sync`'s runtime: one thread. Reading, mapping and the state journal run on their own threads; what is
/// left is I/O, and with two workers the runtime spent more CPU handing tasks between cores than sending
/// (BENCHMARKS.md, writer (a)).
fn writer_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
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
    // The mapping's warnings are in the summary (text or JSON): not logged as well.
    let mut pipeline = Pipeline::open(&spec, &mapping)?;
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

fn cmd_sync(args: cli::SyncArgs, quiet: bool) -> anyhow::Result<Exit> {
    let mapping = Mapping::load(&args.mapping)?;
    let input = settings::input_spec(&args.input, &(&args.input_args).into(), &mapping)?;
    if args.dry_run {
        return dry_run(&args, &mapping, &input);
    }
    let sink = SinkConfig {
        concurrency: args.writer.concurrency,
        rate: args.writer.rate,
        rate_shares: args.state.shard.and_then(|s| std::num::NonZeroU32::new(s.n)).unwrap_or(std::num::NonZeroU32::MIN),
        max_retries: args.writer.max_retries,
        max_retry_after: args.writer.max_retry_after,
        retry_unknown: args.writer.retry_unknown,
        ..SinkConfig::default()
    };
    // A run that stops before writing anything (no token; another run holds the state: exit 4) leaves no
    // empty folder of its own behind, nor the `savio-reports` it created; `remove_dir` removes only an empty one.
    let mut reserved = Vec::new();
    let report_dir = match &args.report_dir {
        Some(d) => d.clone(),
        None => {
            let dir = savio_sync::sync::default_report_dir(&input.path);
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
                reserved.push(parent.to_path_buf());
            }
            let dir = unique_dir(dir);
            reserved.insert(0, dir.clone());
            dir
        }
    };
    let state = state_settings(&args, &report_dir);
    if let Some(shard) = args.state.shard {
        tracing::info!(
            "shard {shard}: this process paces at {:.2} requests/s, its 1/{} share of --rate {}",
            f64::from(args.writer.rate.get()) / f64::from(shard.n),
            shard.n,
            args.writer.rate
        );
    }
    let rt = writer_runtime()?;
    let result = rt.block_on(async move {
        if args.sandbox && args.conn.base_url != savio_sync::client::DEFAULT_BASE_URL {
            tracing::warn!(
                "--sandbox: ignoring the base URL {} (from --base-url or SAVIO_BASE_URL)",
                args.conn.base_url
            );
        }
        let sandbox = if args.sandbox { Some(Sandbox::start(SandboxConfig::default()).await?) } else { None };
        let (base_url, token) = match &sandbox {
            Some(sb) => (sb.base_url(), ApiToken::new(SandboxConfig::default().token)?),
            None => (args.conn.base_url.clone(), load_token(args.conn.token_file.as_deref())?),
        };
        let client = ClientConfig {
            base_url,
            connect_timeout: args.conn.connect_timeout,
            request_timeout: args.conn.request_timeout,
            allow_insecure_http: args.conn.allow_insecure_http,
            ..ClientConfig::new(token)
        };
        let settings = SyncSettings {
            input,
            mapping,
            client,
            sink,
            report_dir,
            grace: args.writer.grace,
            progress: ProgressMode::detect(quiet),
            state,
            shard: args.state.shard,
        };
        let interrupt = interrupt_flag("finishing requests in flight and writing the reports");
        let outcome = savio_sync::sync::run(settings, interrupt).await?;
        let mut out = io::stdout().lock();
        outcome.summary.render(&mut out, Some(&outcome.report_dir)).context("cannot write the summary")?;
        if let Some(sb) = sandbox {
            drop(out);
            print_landed(&sb).await?;
            sb.shutdown().await?;
        }
        let code = outcome.summary.exit_reason.map_or(Exit::Unusable, |r| r.exit_code());
        Ok(code)
    });
    if result.is_err() {
        for dir in reserved {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

/// How this run uses its state file: none with `--no-state` (or `--sandbox` without `--state`, whose data
/// lives only as long as the run), else `--state` or the default file next to the report folders.
fn state_settings(args: &cli::SyncArgs, report_dir: &std::path::Path) -> Option<StateSettings> {
    let a = &args.state;
    if a.no_state || (args.sandbox && a.state.is_none()) {
        return None;
    }
    let path = a.state.clone().unwrap_or_else(|| {
        savio_sync::state::default_state_path(report_dir, &args.mapping, a.shard.map(|s| (s.k, s.n)))
    });
    let mode = if a.incremental { Mode::Incremental } else { Mode::Full };
    let resume = match (a.resume, a.no_resume) {
        (true, _) => ResumeChoice::Required,
        (_, true) => ResumeChoice::Never,
        _ => ResumeChoice::Auto,
    };
    Some(StateSettings { path, mode, resume })
}

/// `savio-sync runs`: past runs from one or more state files.
fn cmd_runs(args: &cli::RunsArgs) -> anyhow::Result<Exit> {
    let files = if args.state.is_empty() {
        let dir = std::path::Path::new("savio-reports");
        let mut found: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.to_string_lossy().ends_with(".state.sqlite"))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        if found.is_empty() {
            anyhow::bail!(
                "no state file in savio-reports/ (sync keeps one there by default); pass --state FILE to read another"
            );
        }
        found
    } else {
        args.state.clone()
    };
    let mut all = Vec::new();
    for f in &files {
        all.extend(RunListing::read(&StateStore::open_existing(f)?, args.limit)?);
    }
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &all).context("cannot write the runs")?;
        writeln!(out).context("cannot write the runs")?;
    } else {
        savio_sync::state::render_runs(&mut out, &all).context("cannot write the runs")?;
    }
    Ok(Exit::Ok)
}

/// `--dry-run`: the pipeline with no network; every request that would be sent, one JSON object per line.
fn dry_run(args: &cli::SyncArgs, mapping: &Mapping, input: &savio_sync::source::InputSpec) -> anyhow::Result<Exit> {
    // The mapping's warnings are in the summary on stderr: not logged as well.
    let mut pipeline = Pipeline::open(input, mapping)?;
    pipeline.retry_unknown(args.writer.retry_unknown);
    let opts = validate::ValidateOptions { preview: usize::MAX, failures: None, json: false };
    let mut out = io::stdout().lock();
    let summary = validate::run(&mut pipeline, &args.mapping.display().to_string(), &opts, &mut out)?;
    summary.render(&mut io::stderr().lock()).context("cannot write the summary")?;
    Ok(if summary.failed_rows > 0 { Exit::RowsFailed } else { Exit::Ok })
}

/// What landed in the in-process sandbox, read back through the list endpoints.
async fn print_landed(sb: &Sandbox) -> anyhow::Result<()> {
    let client = SavioClient::new(ClientConfig {
        base_url: sb.base_url(),
        ..ClientConfig::new(ApiToken::new(SandboxConfig::default().token)?)
    })?;
    let landed = savio_sync::demo::landed(&client).await?;
    let mut out = io::stdout().lock();
    writeln!(out, "Landed in the sandbox (read back through the list endpoints): {}", landed.describe())?;
    Ok(())
}

/// `savio-sync demo`: the bundled exports into an in-process sandbox, then what landed.
fn cmd_demo(args: cli::DemoArgs) -> anyhow::Result<Exit> {
    let dir = args.report_dir.unwrap_or_else(|| unique_dir(savio_sync::demo::default_dir()));
    let settings = savio_sync::demo::DemoSettings::new(dir);
    runtime()?.block_on(async move {
        let report =
            savio_sync::demo::run(settings, interrupt_flag("finishing requests in flight and writing the reports"))
                .await?;
        report.render(&mut io::stdout().lock()).context("cannot write the demo report")?;
        Ok(report.exit_code())
    })
}

/// `savio-sync export`: one list into a file. An export that started and was aborted exits 3, as `sync` does.
fn cmd_export(args: cli::ExportArgs, quiet: bool) -> anyhow::Result<Exit> {
    use savio_sync::export::{self, ExportFormat, ExportKind, ExportSettings, RetrySettings};
    let (from_extension, gzip) = ExportFormat::from_path(&args.output);
    let Some(format) = args.format.or(from_extension) else {
        anyhow::bail!(
            "cannot tell the format of '{}' from its name: end it in .csv, .jsonl or .ndjson (optionally .gz), or \
             pass --format csv|jsonl",
            args.output.display()
        );
    };
    let client = ClientConfig {
        base_url: args.conn.base_url.clone(),
        connect_timeout: args.conn.connect_timeout,
        request_timeout: args.conn.request_timeout,
        allow_insecure_http: args.conn.allow_insecure_http,
        ..ClientConfig::new(load_token(args.conn.token_file.as_deref())?)
    };
    let settings = ExportSettings {
        client,
        kind: match args.what {
            cli::ExportWhat::Contacts => ExportKind::Contacts,
            cli::ExportWhat::Companies => ExportKind::Companies,
        },
        output: args.output,
        format,
        gzip,
        query: savio_sync::client::ListQuery { search: args.search, ordering: args.ordering, page_size: None },
        retry: RetrySettings {
            rate: args.rate,
            max_retries: args.max_retries,
            max_retry_after: args.max_retry_after,
            ..RetrySettings::default()
        },
        overwrite: args.force,
        progress: ProgressMode::detect(quiet),
    };
    runtime()?.block_on(async move {
        match export::run(settings, interrupt_flag("stopping the export; the output file is not written")).await {
            Ok(outcome) => {
                outcome.render(&mut io::stdout().lock()).context("cannot write the summary")?;
                Ok(Exit::Ok)
            }
            Err(err) => {
                let code = err.exit_code();
                report_error(&err.into());
                Ok(code)
            }
        }
    })
}

/// The API token: from --token-file, else SAVIO_API_TOKEN. Never printed.
fn load_token(file: Option<&std::path::Path>) -> anyhow::Result<ApiToken> {
    let token = match file {
        Some(f) => ApiToken::from_file(f)?,
        None => ApiToken::from_env().context(
            "no API token: set SAVIO_API_TOKEN or pass --token-file (or try --sandbox / --dry-run, which need none)",
        )?,
    };
    Ok(token)
}

/// `dir`, or `dir-2`, `dir-3`... if it already exists (two runs in the same second), created here so that
/// two runs starting at once (two cron lines, one export, two mappings) cannot both pick the same folder and
/// overwrite each other's reports. When the folder cannot be created, `dir` is returned as is: the command
/// then fails on it with its own message.
fn unique_dir(dir: std::path::PathBuf) -> std::path::PathBuf {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
        && std::fs::create_dir_all(parent).is_err()
    {
        return dir;
    }
    let candidates = std::iter::once(dir.clone())
        .chain((2..10_000).map(|n| std::path::PathBuf::from(format!("{}-{n}", dir.display()))));
    for candidate in candidates {
        match std::fs::create_dir(&candidate) {
            Ok(()) => return candidate,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => return dir,
        }
    }
    dir
}

/// A flag that flips on the first Ctrl-C / SIGTERM; a second one exits at once. `finishing` says what the
/// command does before it stops ("writing the reports").
fn interrupt_flag(finishing: &'static str) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::warn!("interrupted: {finishing} (Ctrl-C again to quit at once)");
        let _ = tx.send(true);
        shutdown_signal().await;
        tracing::error!("interrupted twice: quitting without waiting");
        std::process::exit(Exit::Aborted as i32);
    });
    rx
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
/// Whether `--log-format json` was asked: a fatal error is then one JSON line too, so that a log shipper
/// reading stderr line by line parses every line.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn report_error(err: &anyhow::Error) {
    let mut stderr = io::stderr().lock();
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        let causes: Vec<String> = err.chain().skip(1).map(ToString::to_string).collect();
        let line = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": "ERROR",
            "fields": { "message": err.to_string(), "causes": causes },
        });
        let _ = writeln!(stderr, "{line}");
        return;
    }
    if !io::stderr().is_terminal() {
        // Cron appends night after night to one log: the error is one line with its UTC time, as every
        // other log line there, so that a monitor (or a person) can tell which night it belongs to.
        let mut line =
            format!("{} ERROR error: {err}", chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        for cause in err.chain().skip(1) {
            line.push_str(&format!(" (caused by: {cause})"));
        }
        // A message of several lines (a mapping's list of problems) keeps them, indented under the first,
        // so the list stays readable and every line of it visibly belongs to this one.
        let lines: Vec<&str> = line.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
        let _ = writeln!(stderr, "{}", lines.join("\n  "));
        return;
    }
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
        .with_writer(savio_sync::progress::StderrWriter)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false);
    match g.log_format {
        LogFormat::Json => {
            JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
            builder.json().init()
        }
        // A terminal shows the time already; a log file appended night after night needs it on each line.
        LogFormat::Text if io::stderr().is_terminal() => builder.without_time().init(),
        LogFormat::Text => builder.init(),
    }
}
