//! `savio-sync demo`: the whole tool in one command, with no account, no token and no network.
//!
//! It syncs the bundled CRM exports (`fixtures/`) with their preset mappings (`mappings/`) into an
//! in-process sandbox, then reads back what landed through the list endpoints with the real client. Both
//! the exports and the presets are compiled into the binary (`include_bytes!`), so the demo works from any
//! directory, not only from a clone; at run time they are written next to the reports, where a user can
//! open them and re-run any step by hand.
//!
//! The exports are synced companies first, then the contacts that link to them, then feedback, as a real
//! migration would be. Some fixture rows are invalid on purpose (an empty name, a broken email, a cut-off
//! JSON line): they fail in the mapping, are shown per file, and do not make the demo fail. What does is
//! anything the sandbox refuses or that cannot be sent: with the bundled data that means the mapping and
//! the API disagree, a real bug (see [`DemoReport::exit_code`]).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::sync::watch;

use crate::client::{ApiToken, ClientConfig, ClientError, ListQuery, SavioClient, TokenError};
use crate::exit::Exit;
use crate::mapping::{Mapping, MappingError};
use crate::model::{Entity, Page, SavioCompany, SavioContact};
use crate::progress::ProgressMode;
use crate::report::results::Status;
use crate::report::summary::{ExitReason, SyncSummary};
use crate::sandbox::{Sandbox, SandboxConfig, SandboxError};
use crate::settings::{InputFlags, SettingsError};
use crate::sink::SinkConfig;
use crate::sync::{SyncError, SyncSettings};

/// One bundled export and the preset written for it.
#[derive(Debug, Clone, Copy)]
pub struct Bundled {
    /// The fixture's file name, as in `fixtures/`.
    pub fixture: &'static str,
    pub bytes: &'static [u8],
    /// The preset's name, as in `mappings/<preset>.toml`.
    pub preset: &'static str,
    pub mapping: &'static str,
}

macro_rules! bundled {
    ($fixture:literal, $preset:literal) => {
        Bundled {
            fixture: $fixture,
            bytes: include_bytes!(concat!("../fixtures/", $fixture)),
            preset: $preset,
            mapping: include_str!(concat!("../mappings/", $preset, ".toml")),
        }
    };
}

/// What the demo syncs, in order: each CRM's companies before the contacts that link to them, feedback last.
pub const BUNDLED: &[Bundled] = &[
    bundled!("hubspot-companies.csv", "hubspot-companies"),
    bundled!("hubspot-contacts.csv", "hubspot-contacts"),
    bundled!("salesforce-accounts.csv", "salesforce-accounts"),
    bundled!("salesforce-contacts.csv", "salesforce-contacts"),
    bundled!("pipedrive-people.csv", "pipedrive-people"),
    bundled!("feedback.jsonl", "feedback"),
];

/// How many records of each kind the demo shows.
const SHOWN: usize = 3;

/// How the demo runs. [`DemoSettings::new`] gives the defaults for a folder.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// The demo's folder: `inputs/` (the bundled exports and presets) and one report folder per export.
    pub dir: PathBuf,
    pub sink: SinkConfig,
    pub grace: Duration,
    pub progress: ProgressMode,
}

impl DemoSettings {
    /// The defaults: no progress display, and a rate the in-process sandbox takes easily (there is no
    /// account quota to be polite to), so the demo takes about a second.
    pub fn new(dir: PathBuf) -> DemoSettings {
        let sink = SinkConfig {
            rate: std::num::NonZeroU32::new(1000).unwrap_or(std::num::NonZeroU32::MIN),
            ..SinkConfig::default()
        };
        DemoSettings { dir, sink, grace: Duration::from_secs(5), progress: ProgressMode::Quiet }
    }
}

/// The default demo folder: `savio-reports/demo-<UTC time>/` under the current directory.
pub fn default_dir() -> PathBuf {
    PathBuf::from("savio-reports").join(format!("demo-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")))
}

/// Why the demo could not run at all (row failures are not errors: they are in the report).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot write '{}'", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the in-process sandbox")]
    Sandbox(#[from] SandboxError),
    #[error("the bundled preset {preset} does not load")]
    Mapping {
        preset: &'static str,
        #[source]
        source: Box<MappingError>,
    },
    #[error("the bundled preset {preset} has unusable input settings")]
    Settings {
        preset: &'static str,
        #[source]
        source: SettingsError,
    },
    #[error("syncing {fixture} failed")]
    Sync {
        fixture: &'static str,
        #[source]
        source: Box<SyncError>,
    },
    #[error("cannot read back what landed in the sandbox")]
    ReadBack(#[from] ClientError),
    #[error("the sandbox token is not a valid API token")]
    Token(#[from] TokenError),
}

/// One export's run.
#[derive(Debug, Clone)]
pub struct FileRun {
    pub fixture: &'static str,
    pub preset: &'static str,
    pub report_dir: PathBuf,
    pub summary: SyncSummary,
}

impl FileRun {
    /// Rows that need another run: invalid, refused, blocked or unknown.
    pub fn failed_rows(&self) -> u64 {
        [Status::Failed, Status::Blocked, Status::Unknown].iter().map(|s| self.summary.rows_with(*s)).sum()
    }

    /// Payloads the sandbox refused or that were not sent (blocked, unknown): never expected in the demo.
    pub fn payloads_not_landed(&self) -> u64 {
        Entity::ALL
            .iter()
            .flat_map(|e| [Status::Failed, Status::Blocked, Status::Unknown].map(|s| self.summary.count(*e, s)))
            .sum()
    }
}

/// What the list endpoints report: `count` of each list (`None` when a server does not send one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Landed {
    pub companies: Option<u64>,
    pub contacts: Option<u64>,
    /// From the sandbox's own `_sandbox/feedback/` list (Savio has no feedback list).
    pub feedback: Option<u64>,
}

impl Landed {
    /// One line: `N companies, M contacts, K feedback`.
    pub fn describe(&self) -> String {
        let n = |c: Option<u64>| c.map_or_else(|| "?".to_owned(), |n| n.to_string());
        format!("{} companies, {} contacts, {} feedback", n(self.companies), n(self.contacts), n(self.feedback))
    }
}

/// Reads the totals of a sandbox's lists through the API (one small page each).
pub async fn landed(client: &SavioClient) -> Result<Landed, ClientError> {
    let one = ListQuery { page_size: Some(1), ..ListQuery::default() };
    let companies = client.list_page::<Value>(client.companies_url(&one).as_str()).await?.count;
    let contacts = client.list_page::<Value>(client.contacts_url(&one).as_str()).await?.count;
    let feedback = client.list_page::<Value>("_sandbox/feedback/?page_size=1").await?.count;
    Ok(Landed { companies, contacts, feedback })
}

/// A few records read back, to show what a synced record looks like in Savio.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub contacts: Vec<SavioContact>,
    pub companies: Vec<SavioCompany>,
    /// As the sandbox's feedback list shows them (links resolved to names).
    pub feedback: Vec<Value>,
}

/// Everything the demo did, for [`DemoReport::render`].
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub dir: PathBuf,
    pub files: Vec<FileRun>,
    /// Whether Ctrl-C stopped the demo before every export was synced.
    pub interrupted: bool,
    pub landed: Landed,
    pub samples: Samples,
}

impl DemoReport {
    /// 0 when every export was synced and everything valid landed (the fixtures' invalid rows are expected);
    /// 1 when the sandbox refused a payload or one could not be sent (the bundled mappings and the API
    /// disagree); 3 when a run was aborted or interrupted.
    pub fn exit_code(&self) -> Exit {
        let aborted = self.interrupted
            || self.files.iter().any(|f| {
                matches!(
                    f.summary.exit_reason,
                    Some(
                        ExitReason::AuthRejected
                            | ExitReason::Interrupted
                            | ExitReason::Throttled
                            | ExitReason::Unavailable
                            | ExitReason::InputError
                            | ExitReason::ReportsFailed,
                    ) | None
                )
            });
        if aborted {
            Exit::Aborted
        } else if self.files.iter().any(|f| f.payloads_not_landed() > 0) {
            Exit::RowsFailed
        } else {
            Exit::Ok
        }
    }

    /// The human report printed on stdout.
    pub fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "savio-sync demo: {} bundled CRM exports synced with their preset mappings into an in-process Savio \
             sandbox (no account, no token, no network).",
            self.files.len()
        )?;
        writeln!(out, "Some rows of the exports are invalid on purpose: they fail, and each report says why.")?;
        writeln!(out)?;
        let width = self.files.iter().map(|f| f.fixture.len()).max().unwrap_or(0).max("export".len());
        writeln!(out, "  {:<width$}  {:>4}  {:>4}  {:>6}  {:>7}  landed", "export", "rows", "ok", "failed", "skipped")?;
        for f in &self.files {
            let s = &f.summary;
            let landed: Vec<String> = Entity::ALL
                .iter()
                .filter_map(|e| match s.count(*e, Status::Ok) {
                    0 => None,
                    n => Some(format!("{n} {}", entity_plural(*e, n))),
                })
                .collect();
            writeln!(
                out,
                "  {:<width$}  {:>4}  {:>4}  {:>6}  {:>7}  {}",
                f.fixture,
                s.rows,
                s.rows_with(Status::Ok),
                f.failed_rows(),
                s.rows_with(Status::Skipped),
                if landed.is_empty() { "nothing".to_owned() } else { landed.join(", ") }
            )?;
            for (reason, g) in s.failures.by_count().into_iter().take(6) {
                writeln!(
                    out,
                    "  {:<width$}      {reason} ({}): {}",
                    "",
                    g.count,
                    crate::report::groups::describe_lines(g)
                )?;
            }
        }
        writeln!(out)?;
        writeln!(out, "Landed in the sandbox (read back through the list endpoints): {}", self.landed.describe())?;
        if !self.samples.contacts.is_empty() {
            writeln!(out, "A few contacts as Savio lists them:")?;
            for c in &self.samples.contacts {
                writeln!(out, "  {}", describe_contact(c))?;
            }
        }
        if !self.samples.companies.is_empty() {
            writeln!(out, "A few companies:")?;
            for c in &self.samples.companies {
                writeln!(out, "  {}", describe_company(c))?;
            }
        }
        if !self.samples.feedback.is_empty() {
            writeln!(out, "A few pieces of feedback:")?;
            for f in &self.samples.feedback {
                writeln!(out, "  {}", describe_feedback(f))?;
            }
        }
        writeln!(out)?;
        writeln!(
            out,
            "Reports:   {} (one folder per export: results.csv, failures file, summary.json; inputs/ holds the \
             exports and presets used)",
            self.dir.display()
        )?;
        if self.interrupted {
            writeln!(out, "Stopped:   interrupted before every export was synced")?;
        }
        let refused: u64 = self.files.iter().map(FileRun::payloads_not_landed).sum();
        if refused > 0 {
            writeln!(
                out,
                "Problem:   {refused} valid payloads did not land (refused by the sandbox or not sent): the bundled \
                 presets and the API disagree; see the results.csv of the exports above"
            )?;
        }
        if let Some(first) = self.files.first() {
            let inputs = self.dir.join("inputs");
            writeln!(
                out,
                "Next:      savio-sync validate {} --mapping {} --preview 2   (check an export of your own the same way)",
                inputs.join(first.fixture).display(),
                inputs.join(format!("{}.toml", first.preset)).display()
            )?;
            writeln!(
                out,
                "           savio-sync export contacts --output contacts.csv   (a backup of your Savio contacts)"
            )?;
        }
        Ok(())
    }
}

/// Runs the demo. `interrupt` flips to `true` on Ctrl-C: the export being synced drains, the others are
/// not started, and what landed is still read back.
pub async fn run(settings: DemoSettings, interrupt: watch::Receiver<bool>) -> Result<DemoReport, DemoError> {
    let inputs = settings.dir.join("inputs");
    create_dir(&inputs)?;
    let sandbox_config = SandboxConfig::default();
    let token = ApiToken::new(sandbox_config.token.clone())?;
    let sandbox = Sandbox::start(sandbox_config).await?;
    let client = ClientConfig { base_url: sandbox.base_url(), ..ClientConfig::new(token) };

    let mut files = Vec::new();
    let mut interrupted = false;
    for b in BUNDLED {
        if *interrupt.borrow() {
            interrupted = true;
            break;
        }
        files.push(sync_one(b, &inputs, &settings, &client, interrupt.clone()).await?);
    }
    let reader = SavioClient::new(client)?;
    let landed = landed(&reader).await?;
    let samples = samples(&reader).await?;
    sandbox.shutdown().await?;
    Ok(DemoReport { dir: settings.dir, files, interrupted, landed, samples })
}

async fn sync_one(
    b: &Bundled,
    inputs: &Path,
    settings: &DemoSettings,
    client: &ClientConfig,
    interrupt: watch::Receiver<bool>,
) -> Result<FileRun, DemoError> {
    let input = inputs.join(b.fixture);
    let mapping_path = inputs.join(format!("{}.toml", b.preset));
    write(&input, b.bytes)?;
    write(&mapping_path, b.mapping.as_bytes())?;
    let mapping = Mapping::parse(b.mapping, &mapping_path)
        .map_err(|e| DemoError::Mapping { preset: b.preset, source: Box::new(e) })?;
    let spec = crate::settings::input_spec(&input.display().to_string(), &InputFlags::default(), &mapping)
        .map_err(|source| DemoError::Settings { preset: b.preset, source })?;
    let stem = b.fixture.split('.').next().unwrap_or(b.fixture);
    let report_dir = settings.dir.join(stem);
    let sync = SyncSettings {
        input: spec,
        mapping,
        client: client.clone(),
        sink: settings.sink.clone(),
        report_dir,
        grace: settings.grace,
        progress: settings.progress,
        // The sandbox lives only as long as the demo: nothing to resume, nothing to compare with.
        state: None,
        shard: None,
    };
    let outcome = crate::sync::run(sync, interrupt)
        .await
        .map_err(|source| DemoError::Sync { fixture: b.fixture, source: Box::new(source) })?;
    Ok(FileRun { fixture: b.fixture, preset: b.preset, report_dir: outcome.report_dir, summary: outcome.summary })
}

/// The first contacts (by name) that are linked to a company, the first companies (by name), the first
/// pieces of feedback (by text).
async fn samples(client: &SavioClient) -> Result<Samples, ClientError> {
    let by_name = ListQuery { ordering: Some("name".into()), ..ListQuery::default() };
    let contacts: Vec<SavioContact> = client
        .list_contacts(&by_name)
        .try_filter(|c| std::future::ready(c.company_name.is_some()))
        .take(SHOWN)
        .try_collect()
        .await?;
    let companies: Vec<SavioCompany> = client.list_companies(&by_name).take(SHOWN).try_collect().await?;
    // Feedback ids follow the order requests completed in, which concurrency varies: sort by text so the
    // demo shows the same pieces every run.
    let page: Page<Value> = client.list_page("_sandbox/feedback/?page_size=1000").await?;
    let mut feedback = page.results;
    feedback.sort_by(|a, b| a["problem"].as_str().cmp(&b["problem"].as_str()));
    feedback.truncate(SHOWN);
    Ok(Samples { contacts, companies, feedback })
}

fn create_dir(dir: &Path) -> Result<(), DemoError> {
    std::fs::create_dir_all(dir).map_err(|source| DemoError::Write { path: dir.to_path_buf(), source })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    std::fs::write(path, bytes).map_err(|source| DemoError::Write { path: path.to_path_buf(), source })
}

fn entity_plural(e: Entity, n: u64) -> &'static str {
    match (e, n) {
        (Entity::Company, 1) => "company",
        (Entity::Company, _) => "companies",
        (Entity::Contact, 1) => "contact",
        (Entity::Contact, _) => "contacts",
        (Entity::Feedback, _) => "feedback",
    }
}

fn describe_contact(c: &SavioContact) -> String {
    let mut parts = vec![c.name.clone().unwrap_or_default()];
    if let Some(email) = &c.email {
        parts[0].push_str(&format!(" <{email}>"));
    }
    if let Some(company) = &c.company_name {
        parts.push(format!("company {company}"));
    }
    if let Some(id) = &c.internal_id {
        parts.push(format!("internal_id {id}"));
    }
    parts.extend(describe_attributes(c.filterable_attributes.as_ref()));
    parts.join(" · ")
}

fn describe_company(c: &SavioCompany) -> String {
    let mut parts = vec![c.name.clone().unwrap_or_default()];
    if let Some(id) = &c.internal_id {
        parts.push(format!("internal_id {id}"));
    }
    parts.extend(describe_attributes(c.filterable_attributes.as_ref()));
    parts.join(" · ")
}

/// `N attributes (a=1, b=x, …)`, the first three shown.
fn describe_attributes(attrs: Option<&crate::model::JsonObject>) -> Option<String> {
    let attrs = attrs.filter(|a| !a.is_empty())?;
    let shown: Vec<String> = attrs
        .iter()
        .take(3)
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={}", clip(s, 30)),
            v => format!("{k}={v}"),
        })
        .collect();
    let more = if attrs.len() > 3 { ", …" } else { "" };
    Some(format!("{} attributes ({}{more})", attrs.len(), shown.join(", ")))
}

fn describe_feedback(f: &Value) -> String {
    let text = |k: &str| f.get(k).and_then(Value::as_str);
    let mut parts = vec![format!("\"{}\"", clip(text("problem").unwrap_or_default(), 60))];
    if let Some(person) = text("person_name").or(text("person_email")) {
        let company = text("company_name").map(|c| format!(" ({c})")).unwrap_or_default();
        parts.push(format!("from {person}{company}"));
    }
    if let Some(kind) = text("feedback_type") {
        parts.push(kind.to_owned());
    }
    if let Some(title) = text("feature_request_title") {
        parts.push(format!("feature request \"{title}\""));
    }
    let tags: Vec<&str> =
        f.get("tags").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    if !tags.is_empty() {
        parts.push(format!("tags {}", tags.join(", ")));
    }
    parts.join(" · ")
}

/// At most `n` characters, with `…` when cut.
fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companies_come_before_the_contacts_that_link_to_them() {
        let pos = |f: &str| BUNDLED.iter().position(|b| b.fixture == f).unwrap();
        assert!(pos("hubspot-companies.csv") < pos("hubspot-contacts.csv"));
        assert!(pos("salesforce-accounts.csv") < pos("salesforce-contacts.csv"));
        assert_eq!(BUNDLED.last().map(|b| b.fixture), Some("feedback.jsonl"), "feedback last");
    }

    #[test]
    fn the_bundled_copies_are_the_files_in_the_repository() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for b in BUNDLED {
            assert_eq!(std::fs::read(root.join("fixtures").join(b.fixture)).unwrap(), b.bytes, "{}", b.fixture);
            let preset = std::fs::read_to_string(root.join("mappings").join(format!("{}.toml", b.preset))).unwrap();
            assert_eq!(preset, b.mapping, "{}", b.preset);
        }
    }

    #[test]
    fn records_are_described_on_one_line() {
        let contact: SavioContact = serde_json::from_value(serde_json::json!({
            "id": 1, "name": "Ada", "email": "ada@x.io", "internal_id": "u1", "company": 2, "company_name": "Acme",
            "filterable_attributes": {"a": 1, "b": "x", "c": true, "d": null}
        }))
        .unwrap();
        assert_eq!(
            describe_contact(&contact),
            "Ada <ada@x.io> · company Acme · internal_id u1 · 4 attributes (a=1, b=x, c=true, …)"
        );
        let feedback = serde_json::json!({"problem": "x".repeat(70), "person_name": "Ada", "company_name": "Acme",
            "feedback_type": "ACTIVE", "tags": ["a", "b"], "feature_request_title": "PDF"});
        assert_eq!(
            describe_feedback(&feedback),
            format!("\"{}…\" · from Ada (Acme) · ACTIVE · feature request \"PDF\" · tags a, b", "x".repeat(60))
        );
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hé", 2), "hé");
    }
}
