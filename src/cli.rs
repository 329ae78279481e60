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
    /// Send an export to Savio: upsert companies and contacts, create feedback.
    ///
    /// Rows stream through the mapping to a rate-limited concurrent writer. Every run writes results.csv,
    /// failures.csv (or .jsonl: the failed rows, ready to be fed back in) and summary.json to its report
    /// folder. Exit code 0: every row landed; 1: some rows failed or have an unknown outcome; 2: unusable
    /// input, mapping or flags (nothing sent); 3: aborted (token rejected, interrupted); 4: another run holds
    /// the state file (nothing done).
    ///
    /// The API token comes from SAVIO_API_TOKEN or --token-file; it is never printed.
    Sync(Box<SyncArgs>),
    /// Run a local emulator of the documented Savio API, to rehearse a migration with no account.
    ///
    /// Prints the base URL to pass as --base-url as its first line, then serves until Ctrl-C. Data lives in
    /// memory unless --state is given. Faults (--rate-limit, --fail-rate, --latency-ms) are seeded, so a
    /// rehearsal can be repeated exactly.
    Sandbox(SandboxArgs),
    /// Sync the bundled example exports into an in-process sandbox and show what landed: no account, no
    /// token, no network.
    ///
    /// HubSpot, Salesforce and Pipedrive exports and an Intercom-style feedback file, each with its preset
    /// mapping, companies before contacts. Some rows are invalid on purpose and are shown failing. Exit code
    /// 0 when everything valid landed; 1 when the sandbox refused something valid; 3 when interrupted.
    Demo(DemoArgs),
    /// Write every contact or company in Savio to a CSV or JSONL file: the backup before a migration and the
    /// check after it.
    ///
    /// Streams page after page into a temporary file renamed over FILE only when complete, so a failed
    /// export never leaves a file that looks whole. The format comes from FILE's extension (.csv, .jsonl,
    /// .ndjson, each optionally .gz). Exit code 0: written; 2: unusable flags or output (nothing requested);
    /// 3: aborted (token rejected, a page kept failing, the file could not be written, interrupted), nothing
    /// written.
    ///
    /// The API token comes from SAVIO_API_TOKEN or --token-file; it is never printed.
    Export(ExportArgs),
    /// List past sync runs from a state file: start, input, mapping, mode, counts by status, how each ended.
    ///
    /// Without --state, lists every *.state.sqlite in savio-reports/ (where sync keeps them by default).
    Runs(RunsArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the reports and the bundled inputs [default: savio-reports/demo-<time>/]
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
}

/// What `export` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportWhat {
    Contacts,
    Companies,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// What to export.
    #[arg(value_enum)]
    pub what: ExportWhat,
    /// The file to write: .csv, .jsonl or .ndjson, optionally .gz (see --format).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Only records matching this (contacts: email or name; companies: name), passed to Savio's `search`.
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// Order by this field, `-` first for descending (e.g. -updated), passed to Savio's `ordering` as given.
    #[arg(long, value_name = "FIELD", allow_hyphen_values = true)]
    pub ordering: Option<String>,
    /// Output format when the extension does not tell (or to override it).
    #[arg(long, value_parser = parse_export_format, value_name = "csv|jsonl")]
    pub format: Option<savio_sync::export::ExportFormat>,
    /// Replace FILE if it exists (it is only replaced once the new export is complete).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Requests per second at most.
    #[arg(long, value_name = "N", default_value = "10")]
    pub rate: std::num::NonZeroU32,
    /// Retries of a failed page request (connection errors, timeouts, 429, 5xx) before the export gives up.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub max_retries: u32,
    /// The longest a Retry-After (or a backoff) may pause the export; a larger value is capped to this.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub max_retry_after: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The state file to read [default: every savio-reports/*.state.sqlite]
    #[arg(long, value_name = "FILE")]
    pub state: Vec<PathBuf>,
    /// Show at most N runs per state file, newest first.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Print the runs as JSON (one array) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The export to send: a CSV or JSONL file (optionally .gz), or - for stdin.
    pub input: String,
    /// The mapping file (TOML). Presets for common CRMs are in mappings/.
    #[arg(short, long, value_name = "FILE")]
    pub mapping: PathBuf,
    #[command(flatten)]
    pub input_args: InputArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub writer: WriterArgs,
    /// Where to write results.csv, failures.csv and summary.json [default: savio-reports/<time>-<input>/]
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Validate and print every request that would be sent, without sending anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Send to an in-process sandbox instead of Savio (no token, no network), then print what landed.
    /// Runs without a state file unless --state is given.
    /// (A base URL, from --base-url or SAVIO_BASE_URL, is ignored then, with a warning.)
    #[arg(long, conflicts_with_all = ["token_file"])]
    pub sandbox: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// The state file: resume, incremental sync, one run at a time, shards.
#[derive(Debug, Args, Clone)]
pub struct StateArgs {
    /// The state file (SQLite) that makes runs resumable and incremental and lets only one run use it at a
    /// time [default: <report folders' parent>/<mapping name>.state.sqlite, e.g.
    /// savio-reports/hubspot-contacts.state.sqlite]
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Run without a state file: no resume, no incremental sync, no lock against a second run.
    #[arg(long, conflicts_with_all = ["state", "resume", "incremental"])]
    pub no_state: bool,
    /// Continue the last run on this input and mapping that did not finish, skipping what it sent; refuse
    /// when there is none, or when the input or the mapping changed since. (Without this flag such a run is
    /// continued automatically when nothing changed, and said so.)
    #[arg(long, conflicts_with = "no_resume")]
    pub resume: bool,
    /// Start a new run even when the last one on this input did not finish.
    #[arg(long)]
    pub no_resume: bool,
    /// Send only what changed: skip every payload identical to the last one Savio accepted for its key
    /// (company internal_id, contact internal_id or email, feedback content). The nightly mode.
    #[arg(long, conflicts_with = "full")]
    pub incremental: bool,
    /// Send every payload, changed or not (the default; the twin of --incremental).
    #[arg(long)]
    pub full: bool,
    /// Process only shard K of N: the rows whose key hashes to K (rows of one company stay together).
    /// Run K = 1..N on N machines or cron entries; each uses 1/N of --rate, so --rate stays the total.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<savio_sync::sync::Shard>,
}

/// How to reach Savio.
#[derive(Debug, Args, Clone)]
pub struct ConnArgs {
    /// Savio's API root.
    #[arg(long, env = "SAVIO_BASE_URL", value_name = "URL", default_value = savio_sync::client::DEFAULT_BASE_URL)]
    pub base_url: String,
    /// Read the API token from this file (instead of the SAVIO_API_TOKEN environment variable). Whitespace
    /// around the token is ignored; the file holds the token alone, without "Token " in front.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Allow plain http:// to a host that is not loopback (the token then travels unencrypted).
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Time allowed to connect.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: std::time::Duration,
    /// Time allowed for one request, connect to answer.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: std::time::Duration,
}

/// How hard to push.
#[derive(Debug, Args, Clone)]
pub struct WriterArgs {
    /// Requests per second, all endpoints together. Savio documents no limit: 10/s is a polite default;
    /// raise it if your account allows (a 429 pauses the run for its Retry-After either way).
    #[arg(long, value_name = "N", default_value = "10")]
    pub rate: std::num::NonZeroU32,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value = "8")]
    pub concurrency: std::num::NonZeroUsize,
    /// Retries of a failed request (connection errors, timeouts, 429, 5xx) before its row fails.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub max_retries: u32,
    /// The longest a Retry-After (or a backoff) may pause the run; a larger value is capped to this. When
    /// Savio answers nothing but 429 for longer than this x (--max-retries + 1), the run stops (exit 3).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub max_retry_after: std::time::Duration,
    /// Re-send feedback whose outcome is unknown (timeout after sending). May create duplicates.
    #[arg(long)]
    pub retry_unknown: bool,
    /// After Ctrl-C, how long requests in flight may take to finish before they are abandoned (counted from
    /// the Ctrl-C).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub grace: std::time::Duration,
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

/// Parses `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration; use e.g. 500ms, 30s, 2m"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit '{other}' in '{s}'; use ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("'{s}' is not a duration"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn parse_export_format(s: &str) -> Result<savio_sync::export::ExportFormat, String> {
    savio_sync::export::ExportFormat::parse(s).ok_or_else(|| format!("'{s}' is not an export format; use csv or jsonl"))
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

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
