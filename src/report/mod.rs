//! The reports stage: what a run leaves behind for people and monitors.
//!
//! - [`failures`]: the failed input rows, re-runnable as they are.
//! - [`groups`]: failures grouped by reason, with the first line numbers of each, for summaries.
//! - [`output`]: a report or export file, plain or gzip, finished and synced.

pub mod failures;
pub mod groups;
pub mod output;
pub mod results;
pub mod summary;
