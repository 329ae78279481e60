//! The `savio-sync` binary: parses flags, sets up logging, runs a command and maps the outcome to an exit
//! code. Everything else lives in the library.

mod cli;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use savio_sync::exit::Exit;
use savio_sync::mapping::Mapping;
use savio_sync::pipeline::Pipeline;
use savio_sync::{settings, validate};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, GlobalArgs, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.global);
    match run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            report_error(&err);
            Exit::Unusable.into()
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Validate(args) => cmd_validate(args),
    }
}

fn cmd_validate(args: cli::ValidateArgs) -> anyhow::Result<Exit> {
    let mapping = Mapping::load(&args.mapping)?;
    let spec = settings::input_spec(&args.input, &(&args.input_args).into(), &mapping)?;
    let mut pipeline = Pipeline::open(&spec, &mapping)?;
    for w in pipeline.warnings() {
        tracing::warn!("{w}");
    }
    let opts = validate::ValidateOptions { preview: args.preview, failures: args.failures.clone() };
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr).with_target(false);
    match g.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.without_time().init(),
    }
}
