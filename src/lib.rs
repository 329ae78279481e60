//! savio-sync moves customer data from CRM exports (CSV or JSONL) into Savio through its public HTTP API.
//!
//! # Layout
//!
//! The pipeline is a chain of stages, each a module you can find by name:
//!
//! - [`source`]: the reader stage. Streams records out of CSV or JSONL (optionally gzip, any encoding),
//!   each with its line number and original fields.
//! - [`mapping`]: the TOML column map, compiled against the input's header, turning records into typed
//!   [`model`] payloads (companies, contacts, feedback) or row failures.
//! - [`model`]: the payloads Savio accepts and the objects it answers with.
//! - [`pipeline`]: reader + mapping joined, one [`pipeline::Row`] per input row.
//! - [`client`]: the Savio HTTP client (redacted token, one attempt per call, the retry table as data).
//! - [`sink`]: the writer stage: one shared rate limiter, bounded concurrency, retries, companies before
//!   the contacts that link to them.
//! - [`report`]: `results.csv`, the failures file (the failed rows as read), `summary.json`.
//! - [`state`]: the SQLite state file: run journal, resume, incremental sync, one run at a time.
//! - [`sync`] and [`validate`]: the commands, stage by stage.
//! - [`sandbox`]: a local emulator of the documented Savio API, for rehearsals and tests.
//! - [`export`]: every contact or company Savio lists, streamed into a CSV or JSONL file (a backup before a
//!   migration, the check after it).
//! - [`demo`]: the bundled exports synced into an in-process sandbox and read back, for a first look.
//!
//! The binary (`src/main.rs`) is a thin layer over these: it parses flags, sets up logging and maps errors to
//! exit codes.

pub mod client;
pub mod demo;
pub mod exit;
pub mod export;
pub mod mapping;
pub mod model;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod sandbox;
pub mod settings;
pub mod sink;
pub mod source;
pub mod state;
pub mod sync;
pub mod validate;
