//! Command-line types only (clap derive). Turning these into settings happens in `main.rs` and
//! [`savio_sync::settings`]; no command logic lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use savio_sync::source::{Delimiter, Format, TextEncoding};

/// Move CRM exports (CSV or JSONL) into Savio: companies, contacts and feedback.
///
/// Typical jobs: a one-off migration of a whole customer database, a nightly sync from cron, and
/// re-running only the rows that failed (every run writes a failures file that can be fed back in).
#[derive(Debug, Parser)]
#[command(name = "savio-sync", version, propagate_version = true, max_term_width = 110)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr: no progress, no info logs.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an input against a mapping without sending anything: counts, failures by reason, previews.
    ///
    /// Exit code 0 when every row is valid, 1 when some rows are invalid, 2 when the input, mapping or
    /// flags are unusable.
    Validate(ValidateArgs),
    /// Run a local emulator of the documented Savio API, to rehearse a migration with no account.
    ///
    /// Prints the base URL to pass as --base-url as its first line, then serves until Ctrl-C. Data lives in
    /// memory unless --state is given. Faults (--rate-limit, --fail-rate, --latency-ms) are seeded, so a
    /// rehearsal can be repeated exactly.
    Sandbox(SandboxArgs),
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR:PORT")]
    pub bind: std::net::SocketAddr,
    /// Token clients must send (`Authorization: Token <token>`) [default: sandbox-token]
    #[arg(long, value_name = "TOKEN", hide_default_value = true)]
    pub token: Option<String>,
    /// Keep the data in this JSON file across restarts (written atomically).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Answer 429 (with Retry-After) beyond N requests per second.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Answer 500 or 503 to this fraction of requests (0.0 to 1.0), before applying them.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Add this much latency to every request.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Seed for the injected faults.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Default page size of the list endpoints.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub page_size: usize,
}

/// How to read the input; each overrides the mapping's [input] section, which overrides detection.
#[derive(Debug, Args, Clone)]
pub struct InputArgs {
    /// Input format [default: from the extension (.csv .tsv .jsonl .ndjson, optionally .gz), else sniffed]
    #[arg(long, value_parser = parse_format, value_name = "csv|jsonl")]
    pub format: Option<Format>,
    /// CSV delimiter: , ; | tab or another single character [default: detected among , ; TAB |]
    #[arg(long, value_parser = parse_delimiter, value_name = "CHAR")]
    pub delimiter: Option<Delimiter>,
    /// Text encoding of the input, e.g. windows-1252, latin1, utf-16 [default: utf-8; a byte-order mark wins]
    #[arg(long, value_parser = parse_encoding, value_name = "LABEL")]
    pub encoding: Option<TextEncoding>,
}

impl From<&InputArgs> for savio_sync::settings::InputFlags {
    fn from(a: &InputArgs) -> Self {
        savio_sync::settings::InputFlags { format: a.format, delimiter: a.delimiter, encoding: a.encoding }
    }
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The export to check: a CSV or JSONL file (optionally .gz), or - for stdin.
    pub input: String,
    /// The mapping file (TOML). Presets for common CRMs are in mappings/.
    #[arg(short, long, value_name = "FILE")]
    pub mapping: PathBuf,
    /// Print the first N payloads as pretty JSON.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preview: usize,
    /// Write the invalid rows (as read, plus _savio_line and _savio_error) to this file; gzip when it ends in .gz.
    #[arg(long, value_name = "FILE")]
    pub failures: Option<PathBuf>,
    /// Print the summary as JSON on stdout instead of text; with --preview, the payloads are in its "preview".
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub input_args: InputArgs,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| format!("'{s}' is not a format; use csv or jsonl"))
}

fn parse_delimiter(s: &str) -> Result<Delimiter, String> {
    Delimiter::parse(s).ok_or_else(|| format!("'{s}' is not a delimiter; use one character such as , ; | or tab"))
}

fn parse_encoding(s: &str) -> Result<TextEncoding, String> {
    TextEncoding::from_label(s)
        .ok_or_else(|| format!("'{s}' is not a known encoding; try utf-8, windows-1252, latin1, utf-16, shift_jis"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
