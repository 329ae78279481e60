//! The process exit codes, in one place: cron wrappers and monitors branch on them.

/// Exit codes of every command. Documented in the README ("Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every row ok (or valid, for `validate`).
    Ok = 0,
    /// Some rows failed, are invalid, or have an unknown outcome; reports were written. `summary.json` tells
    /// unknown outcomes apart (`"unknown"` count and `"exit_reason": "unknown_outcomes"`).
    RowsFailed = 1,
    /// The input, mapping or flags are unusable; nothing was processed or sent.
    Unusable = 2,
    /// Aborted: the token was rejected, or the run was interrupted; reports were written.
    Aborted = 3,
    /// Another run holds the state file (`sync` from cron while last night's run is still going); nothing was
    /// done. Not a failure of this run: the other one is doing the work.
    Busy = 4,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}
