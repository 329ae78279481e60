//! `savio-sync export`: every contact or company Savio lists, written to a CSV or JSONL file.
//!
//! It is the backup a user takes before a migration and the check after it, so it must never leave a file
//! that looks complete but is not: records stream into a temporary file next to the output, which is
//! renamed over it only after the last page was written and synced to disk. Any failure (token rejected,
//! a page that keeps failing, Ctrl-C, a full disk) removes the temporary file and leaves an existing output
//! untouched.
//!
//! ```text
//! pages (async, paced, retried) ──pages (bounded)──▶ writer thread (CSV/JSONL, optional gzip) ──▶ temp file ──rename──▶ FILE
//! ```
//!
//! Pages are read one at a time, following Savio's `next` links as given (see [`crate::client`]): the
//! same client, token handling and origin checks as `sync`. Each page request is paced by `rate` and
//! retried by the client's retry table ([`classify`], page reads are idempotent) with full-jitter backoff
//! and `Retry-After` honoured up to a cap. Pacing is a simple slot clock rather than the writer's shared
//! limiter: requests here are strictly sequential, so there is nothing for a shared limiter to arbitrate.
//!
//! Formats:
//! - **JSONL** (`.jsonl`, `.ndjson`): one object per line, exactly as the API returned it (every field, in
//!   the API's key order). The lossless format.
//! - **CSV** (`.csv`): a header and fixed columns, so it can stream without knowing every attribute key up
//!   front. Contacts: `id, internal_id, name, email, company, company_name, created, updated,
//!   filterable_attributes`; companies: `id, internal_id, name, created, updated, filterable_attributes`.
//!   `filterable_attributes` is one column holding the attributes as a JSON object (empty when there are
//!   none). Text cells a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab or
//!   carriage return) are prefixed with `'`, as in `results.csv`. Fields the API returns beyond these
//!   columns are only in JSONL.
//! - Either may end in `.gz` to be gzip-compressed.

use std::collections::HashSet;
use std::io::{self, Write};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant as TokioInstant;

use crate::client::{Backoff, ClientConfig, ClientError, ListQuery, RetryAction, SavioClient, SendError, classify};
use crate::exit::Exit;
use crate::model::Page;
use crate::progress::{ListCounters, Progress, ProgressMode};
use crate::report::output::OutputFile;
use crate::report::results::escape_formula;

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Contacts,
    Companies,
}

impl ExportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportKind::Contacts => "contacts",
            ExportKind::Companies => "companies",
        }
    }

    /// The CSV columns, in order: top-level fields of the listed objects.
    pub fn csv_columns(self) -> &'static [&'static str] {
        match self {
            ExportKind::Contacts => &[
                "id",
                "internal_id",
                "name",
                "email",
                "company",
                "company_name",
                "created",
                "updated",
                "filterable_attributes",
            ],
            ExportKind::Companies => &["id", "internal_id", "name", "created", "updated", "filterable_attributes"],
        }
    }
}

impl std::fmt::Display for ExportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

impl ExportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Csv => "CSV",
            ExportFormat::Jsonl => "JSONL",
        }
    }

    /// `csv`, `jsonl` or `ndjson` (any case).
    pub fn parse(s: &str) -> Option<ExportFormat> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Some(ExportFormat::Csv),
            "jsonl" | "ndjson" => Some(ExportFormat::Jsonl),
            _ => None,
        }
    }

    /// The format an output name asks for (`.csv`, `.jsonl`, `.ndjson`, each optionally `.gz`), and whether
    /// it ends in `.gz`.
    pub fn from_path(path: &Path) -> (Option<ExportFormat>, bool) {
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let (name, gzip) = match name.strip_suffix(".gz") {
            Some(stem) => (stem.to_owned(), true),
            None => (name, false),
        };
        let format = Path::new(&name).extension().and_then(|e| e.to_str()).and_then(ExportFormat::parse);
        (format, gzip)
    }
}

/// How page requests are paced and retried (the same knobs as `sync`'s writer).
#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// Requests per second at most.
    pub rate: NonZeroU32,
    /// Retries of a failed page request before the export gives up.
    pub max_retries: u32,
    /// The longest one wait (a `Retry-After` or a backoff) may be.
    pub max_retry_after: Duration,
    pub backoff: Backoff,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            rate: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            max_retries: 6,
            max_retry_after: Duration::from_secs(60),
            backoff: Backoff::default(),
        }
    }
}

/// Everything an export needs, validated by the binary before anything starts.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    pub client: ClientConfig,
    pub kind: ExportKind,
    pub output: PathBuf,
    pub format: ExportFormat,
    /// Gzip the output.
    pub gzip: bool,
    /// `search` and `ordering`, passed through to the first page.
    pub query: ListQuery,
    pub retry: RetrySettings,
    /// Replace an existing output file (otherwise an existing file is refused before any request).
    pub overwrite: bool,
    pub progress: ProgressMode,
}

/// What a finished export did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOutcome {
    pub kind: ExportKind,
    pub path: PathBuf,
    pub format: ExportFormat,
    pub gzip: bool,
    pub records: u64,
    pub pages: u64,
    /// `count` from the first page, when Savio sent one.
    pub announced: Option<u64>,
    /// HTTP requests made (every attempt), retries among them, and 429 answers.
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub duration: Duration,
}

impl ExportOutcome {
    /// The one-line summary printed at the end.
    pub fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let plural = |n: u64, one: &str, many: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {many}") };
        let pages = plural(self.pages, "page", "pages");
        let requests = plural(self.requests, "request", "requests");
        let gz = if self.gzip { ", gzip" } else { "" };
        let mut extra = Vec::new();
        if self.retries > 0 {
            extra.push(plural(self.retries, "retry", "retries"));
        }
        if self.throttled > 0 {
            extra.push(format!("{} throttled", self.throttled));
        }
        let extra = if extra.is_empty() { String::new() } else { format!("; {}", extra.join(", ")) };
        writeln!(
            out,
            "Exported {} {} ({pages}, {requests}{extra}) to {} ({}{gz}) in {:.1} s",
            self.records,
            self.kind,
            self.path.display(),
            self.format.as_str(),
            self.duration.as_secs_f64()
        )
    }
}

/// Why an export did not complete. In every case no output file was written (an existing one is untouched).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Client(ClientError),
    #[error("'{}' already exists; pass --force to replace it", path.display())]
    Exists { path: PathBuf },
    #[error("cannot create the export next to '{}'", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the export to '{}'; nothing was written", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Savio rejected the token; nothing was written")]
    AuthRejected(#[source] SendError),
    #[error("a page kept failing after {attempts} attempts; nothing was written")]
    GaveUp {
        attempts: u32,
        #[source]
        source: SendError,
    },
    #[error("Savio refused a page request; nothing was written")]
    Refused(#[source] SendError),
    #[error("reading the {kind} list failed after {records} records; nothing was written")]
    Listing {
        kind: ExportKind,
        records: u64,
        #[source]
        source: ClientError,
    },
    #[error("interrupted after {records} records; nothing was written")]
    Interrupted { records: u64 },
    #[error("the export writer failed")]
    Task(#[source] tokio::task::JoinError),
}

impl ExportError {
    /// The exit code (see the README's `export` section): 2 when the export could not start (nothing was
    /// requested), 3 when it was aborted part way.
    pub fn exit_code(&self) -> Exit {
        match self {
            ExportError::Client(_) | ExportError::Exists { .. } | ExportError::Create { .. } => Exit::Unusable,
            ExportError::Write { .. }
            | ExportError::Task(_)
            | ExportError::AuthRejected(_)
            | ExportError::GaveUp { .. }
            | ExportError::Refused(_)
            | ExportError::Listing { .. }
            | ExportError::Interrupted { .. } => Exit::Aborted,
        }
    }
}

/// Runs one export. `interrupt` flips to `true` on Ctrl-C: the request in flight is abandoned (a GET is
/// safe to abandon) and nothing is written.
pub async fn run(settings: ExportSettings, mut interrupt: watch::Receiver<bool>) -> Result<ExportOutcome, ExportError> {
    let started = Instant::now();
    if settings.output.exists() && !settings.overwrite {
        return Err(ExportError::Exists { path: settings.output });
    }
    let client = SavioClient::new(settings.client.clone()).map_err(ExportError::Client)?;
    let output = settings.output.clone();
    let temp = temp_file(&output)?;
    let (pages_tx, pages_rx) = mpsc::channel::<Vec<Map<String, Value>>>(4);
    let writer = {
        let (kind, format, gzip, out) = (settings.kind, settings.format, settings.gzip, output.clone());
        std::thread::spawn(move || write_all(temp, pages_rx, kind, format, gzip, &out))
    };

    let counters = Arc::new(ListCounters::default());
    let progress = Progress::listing(settings.progress, settings.kind.as_str(), Arc::clone(&counters));
    let mut reader = PageReader::new(&client, &settings.retry);
    let first = match settings.kind {
        ExportKind::Contacts => client.contacts_url(&settings.query),
        ExportKind::Companies => client.companies_url(&settings.query),
    };
    let read = tokio::select! {
        biased;
        Ok(_) = interrupt.wait_for(|i| *i) => Err(ExportError::Interrupted { records: counters.done.load(Ordering::Relaxed) }),
        r = reader.read_all(first, settings.kind, &pages_tx, &counters) => r,
    };
    progress.finish();
    drop(pages_tx);
    // The writer ends when the channel closes; its result is only kept when every page was read.
    let written = tokio::task::spawn_blocking(move || writer.join()).await.map_err(ExportError::Task)?;
    let announced = read?;
    let temp = match written {
        Ok(result) => result?,
        Err(_) => return Err(ExportError::Write { path: output, source: io::Error::other("the writer panicked") }),
    };
    // Without --force, a file that appeared while the export ran is not replaced either.
    let persisted = if settings.overwrite { temp.persist(&output) } else { temp.persist_noclobber(&output) };
    persisted.map_err(|e| ExportError::Write { path: output.clone(), source: e.error })?;
    let records = counters.done.load(Ordering::Relaxed);
    if let Some(n) = announced
        && n != records
    {
        tracing::warn!(
            "Savio announced {n} {} but listed {records}: records were added or removed while the export ran",
            settings.kind
        );
    }
    Ok(ExportOutcome {
        kind: settings.kind,
        path: output,
        format: settings.format,
        gzip: settings.gzip,
        records,
        pages: reader.pages,
        announced,
        requests: reader.requests,
        retries: reader.retries,
        throttled: reader.throttled,
        duration: started.elapsed(),
    })
}

/// A hidden temporary file in the output's folder (so the final rename stays on one file system).
fn temp_file(output: &Path) -> Result<tempfile::NamedTempFile, ExportError> {
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "export".into());
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|source| ExportError::Create { path: output.to_path_buf(), source })
}

/// Reads pages one after the other: paced, retried, following `next`.
struct PageReader<'a> {
    client: &'a SavioClient,
    retry: &'a RetrySettings,
    pacer: Pacer,
    pages: u64,
    requests: u64,
    retries: u64,
    throttled: u64,
}

impl<'a> PageReader<'a> {
    fn new(client: &'a SavioClient, retry: &'a RetrySettings) -> PageReader<'a> {
        PageReader { client, retry, pacer: Pacer::new(retry.rate), pages: 0, requests: 0, retries: 0, throttled: 0 }
    }

    /// Every page from `first` on, handed to the writer; returns the `count` of the first page.
    async fn read_all(
        &mut self,
        first: Url,
        kind: ExportKind,
        pages: &mpsc::Sender<Vec<Map<String, Value>>>,
        counters: &ListCounters,
    ) -> Result<Option<u64>, ExportError> {
        let mut seen = HashSet::new();
        let mut announced = None;
        let mut next = Some(first);
        let listing = |source, counters: &ListCounters| ExportError::Listing {
            kind,
            records: counters.done.load(Ordering::Relaxed),
            source,
        };
        while let Some(url) = next.take() {
            seen.insert(url.as_str().to_owned());
            let (page, answered_from) = self.fetch(&url).await.map_err(|e| match e {
                Fetch::Fatal(e) => e,
                Fetch::Client(source) => listing(source, counters),
            })?;
            self.pages += 1;
            if self.pages == 1 {
                announced = page.count;
                counters.total.store(page.count.unwrap_or(0), Ordering::Relaxed);
            }
            let n = page.results.len() as u64;
            if pages.send(page.results).await.is_err() {
                // The writer stopped: its error is reported when it is joined.
                return Ok(announced);
            }
            counters.done.fetch_add(n, Ordering::Relaxed);
            next = match page.next.as_deref() {
                None | Some("") => None,
                Some(link) => {
                    // Relative to where the page came from, after any redirect.
                    let resolved = answered_from.join(link).map_err(|source| {
                        listing(
                            ClientError::InvalidPageUrl {
                                endpoint: crate::client::Endpoint::new("GET", &url),
                                link: link.chars().take(200).collect(),
                                source,
                            },
                            counters,
                        )
                    })?;
                    if seen.contains(resolved.as_str()) {
                        return Err(listing(
                            ClientError::PageLoop { endpoint: crate::client::Endpoint::new("GET", &url) },
                            counters,
                        ));
                    }
                    Some(resolved)
                }
            };
        }
        Ok(announced)
    }

    /// One page and the URL it came from, with retries as the client's table says (page reads are idempotent).
    async fn fetch(&mut self, url: &Url) -> Result<(Page<Map<String, Value>>, Url), Fetch> {
        let mut attempts = 0u32;
        loop {
            self.pacer.ready().await;
            attempts += 1;
            self.requests += 1;
            let err = match self.client.list_page_from::<Map<String, Value>>(url.as_str()).await {
                Ok(page) => return Ok(page),
                Err(ClientError::Request(err)) => err,
                Err(other) => return Err(Fetch::Client(other)),
            };
            match classify(&err, true) {
                RetryAction::Retry { after } if attempts <= self.retry.max_retries => {
                    self.retries += 1;
                    let backoff = self.retry.backoff.delay(attempts - 1, &mut rand::rng());
                    let wait = after.unwrap_or(backoff).min(self.retry.max_retry_after);
                    if err.status() == Some(429) {
                        self.throttled += 1;
                        tracing::warn!("Savio is throttling (429): pausing for {wait:?}");
                        self.pacer.pause_for(wait);
                    } else {
                        tracing::warn!("retrying in {wait:?} (attempt {attempts}): {err}");
                        tokio::time::sleep(wait).await;
                    }
                }
                RetryAction::Retry { .. } => return Err(Fetch::Fatal(ExportError::GaveUp { attempts, source: err })),
                RetryAction::AbortAuth => return Err(Fetch::Fatal(ExportError::AuthRejected(err))),
                RetryAction::Fail | RetryAction::Unknown => return Err(Fetch::Fatal(ExportError::Refused(err))),
            }
        }
    }
}

enum Fetch {
    Fatal(ExportError),
    Client(ClientError),
}

/// Spaces requests at least `1/rate` apart; a 429 pushes the next slot past its `Retry-After`.
struct Pacer {
    period: Duration,
    next: Option<TokioInstant>,
}

impl Pacer {
    fn new(rate: NonZeroU32) -> Pacer {
        Pacer { period: Duration::from_secs(1) / rate.get(), next: None }
    }

    async fn ready(&mut self) {
        let now = TokioInstant::now();
        let slot = self.next.filter(|t| *t > now).unwrap_or(now);
        tokio::time::sleep_until(slot).await;
        self.next = Some(slot + self.period);
    }

    fn pause_for(&mut self, d: Duration) {
        let until = TokioInstant::now() + d;
        if self.next.is_none_or(|t| t < until) {
            self.next = Some(until);
        }
    }
}

/// The writer thread: every page into the temp file, then flush, finish gzip and sync to disk. Returns the
/// temp file, ready to be renamed, only when all of it is on disk.
fn write_all(
    temp: tempfile::NamedTempFile,
    mut pages: mpsc::Receiver<Vec<Map<String, Value>>>,
    kind: ExportKind,
    format: ExportFormat,
    gzip: bool,
    output: &Path,
) -> Result<tempfile::NamedTempFile, ExportError> {
    let err = |source| ExportError::Write { path: output.to_path_buf(), source };
    let file = temp.reopen().map_err(err)?;
    let sink = OutputFile::new(file, gzip);
    let mut records = Records::new(sink, kind, format).map_err(err)?;
    while let Some(page) = pages.blocking_recv() {
        for item in &page {
            records.write(item).map_err(err)?;
        }
    }
    records.finish().map_err(err)?;
    Ok(temp)
}

/// Records in the chosen format, onto any byte stream.
enum Records<W: Write> {
    Csv { writer: Box<csv::Writer<W>>, columns: &'static [&'static str] },
    Jsonl(W),
}

impl Records<OutputFile> {
    fn finish(self) -> io::Result<()> {
        match self {
            Records::Csv { writer, .. } => writer.into_inner().map_err(|e| e.into_error())?.finish(),
            Records::Jsonl(sink) => sink.finish(),
        }
    }
}

impl<W: Write> Records<W> {
    /// Starts the output (the CSV header).
    fn new(out: W, kind: ExportKind, format: ExportFormat) -> io::Result<Records<W>> {
        Ok(match format {
            ExportFormat::Jsonl => Records::Jsonl(out),
            ExportFormat::Csv => {
                let columns = kind.csv_columns();
                let mut writer = csv::WriterBuilder::new().from_writer(out);
                writer.write_record(columns)?;
                Records::Csv { writer: Box::new(writer), columns }
            }
        })
    }

    fn write(&mut self, item: &Map<String, Value>) -> io::Result<()> {
        match self {
            Records::Jsonl(out) => {
                serde_json::to_writer(&mut *out, item)?;
                out.write_all(b"\n")
            }
            Records::Csv { writer, columns } => {
                let cells: Vec<String> = columns.iter().map(|c| csv_cell(item.get(*c))).collect();
                Ok(writer.write_record(&cells)?)
            }
        }
    }
}

/// One CSV cell: text as is (defused against formulas), numbers and booleans as JSON writes them, objects
/// and arrays as compact JSON, nothing for a missing or null value or an empty object.
fn csv_cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => escape_formula(s).into_owned(),
        Some(Value::Object(m)) if m.is_empty() => String::new(),
        Some(v @ (Value::Object(_) | Value::Array(_))) => v.to_string(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn format_comes_from_the_extension_with_optional_gzip() {
        let f = |p: &str| ExportFormat::from_path(Path::new(p));
        assert_eq!(f("backup.csv"), (Some(ExportFormat::Csv), false));
        assert_eq!(f("dir/Backup.CSV.GZ"), (Some(ExportFormat::Csv), true));
        assert_eq!(f("b.jsonl"), (Some(ExportFormat::Jsonl), false));
        assert_eq!(f("b.ndjson.gz"), (Some(ExportFormat::Jsonl), true));
        assert_eq!(f("b.json"), (None, false));
        assert_eq!(f("b.gz"), (None, true));
        assert_eq!(f("backup"), (None, false));
    }

    #[test]
    fn csv_cells_are_plain_text_json_or_empty_and_defused() {
        assert_eq!(csv_cell(None), "");
        assert_eq!(csv_cell(Some(&Value::Null)), "");
        assert_eq!(csv_cell(Some(&json!(12))), "12");
        assert_eq!(csv_cell(Some(&json!(-1.5))), "-1.5", "numbers are not formulas");
        assert_eq!(csv_cell(Some(&json!(true))), "true");
        assert_eq!(csv_cell(Some(&json!("Ada"))), "Ada");
        assert_eq!(csv_cell(Some(&json!("=HYPERLINK(\"x\")"))), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_cell(Some(&json!("-5 off"))), "'-5 off");
        assert_eq!(csv_cell(Some(&json!({}))), "");
        assert_eq!(csv_cell(Some(&json!({"b": 1, "a": "=x"}))), r#"{"b":1,"a":"=x"}"#, "key order kept");
        assert_eq!(csv_cell(Some(&json!(["x", 1]))), r#"["x",1]"#);
    }

    #[test]
    fn csv_has_the_fixed_header_then_one_line_per_record() {
        let mut out = Vec::new();
        {
            let mut r = Records::new(&mut out, ExportKind::Companies, ExportFormat::Csv).unwrap();
            let item = json!({"id": 1, "name": "Acme, Inc.", "internal_id": "c1", "extra": "dropped",
                "filterable_attributes": {"tier": "gold"}, "created": "t0", "updated": "t1"});
            r.write(item.as_object().unwrap()).unwrap();
            let Records::Csv { writer, .. } = r else { unreachable!() };
            writer.into_inner().unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id,internal_id,name,created,updated,filterable_attributes\n\
             1,c1,\"Acme, Inc.\",t0,t1,\"{\"\"tier\"\":\"\"gold\"\"}\"\n"
        );
    }

    #[test]
    fn jsonl_is_each_object_as_given_on_its_own_line() {
        let mut out = Vec::new();
        let mut r = Records::new(&mut out, ExportKind::Contacts, ExportFormat::Jsonl).unwrap();
        for item in [json!({"z": 1, "a": null}), json!({"name": "Zoë\nline"})] {
            r.write(item.as_object().unwrap()).unwrap();
        }
        drop(r);
        assert_eq!(String::from_utf8(out).unwrap(), "{\"z\":1,\"a\":null}\n{\"name\":\"Zoë\\nline\"}\n");
    }

    #[test]
    fn summary_line_counts_records_pages_and_retries() {
        let outcome = ExportOutcome {
            kind: ExportKind::Contacts,
            path: PathBuf::from("b.csv.gz"),
            format: ExportFormat::Csv,
            gzip: true,
            records: 250,
            pages: 3,
            announced: Some(250),
            requests: 4,
            retries: 1,
            throttled: 1,
            duration: Duration::from_millis(1234),
        };
        let mut out = Vec::new();
        outcome.render(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Exported 250 contacts (3 pages, 4 requests; 1 retry, 1 throttled) to b.csv.gz (CSV, gzip) in 1.2 s\n"
        );
        let one = ExportOutcome { pages: 1, requests: 1, retries: 0, throttled: 0, gzip: false, ..outcome };
        let mut out = Vec::new();
        one.render(&mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().starts_with("Exported 250 contacts (1 page, 1 request) to"));
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_requests_and_a_pause_pushes_the_next_slot() {
        let mut p = Pacer::new(NonZeroU32::new(4).unwrap());
        let start = TokioInstant::now();
        for _ in 0..5 {
            p.ready().await;
        }
        assert_eq!(TokioInstant::now() - start, Duration::from_secs(1), "5 requests at 4/s span 1 s");
        p.pause_for(Duration::from_secs(3));
        let paused = TokioInstant::now();
        p.ready().await;
        assert_eq!(TokioInstant::now() - paused, Duration::from_secs(3));
    }
}
