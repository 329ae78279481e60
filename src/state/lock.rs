//! One run at a time per state file: an advisory lock that the operating system releases when the process
//! ends, however it ends (a `kill -9` or a crash cannot leave a stale lock behind).
//!
//! The lock is an exclusive `flock`-style lock on `<state>.lock`, a file that also says who holds it, so
//! a second run can refuse with the first one's PID and start time instead of a bare "locked".

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Held for the whole run; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another savio-sync run is using the state file '{}' ({holder}); wait for it to finish, or pass \
         another --state",
        state.display()
    )]
    Held { state: PathBuf, holder: String },
    #[error("cannot lock '{}'", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RunLock {
    /// Takes the lock for the state file `state`, or says who holds it. `what` describes this run for a
    /// run that finds the lock taken (e.g. the input's name).
    pub fn acquire(state: &Path, what: &str) -> Result<RunLock, LockError> {
        let path = lock_path(state);
        let io = |source| LockError::Io { path: path.clone(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder =
                    if holder.is_empty() { "its PID is not recorded yet".to_string() } else { holder.to_string() };
                return Err(LockError::Held { state: state.to_path_buf(), holder });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let me = format!(
            "PID {}, started {}, {what}",
            std::process::id(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        file.set_len(0).and_then(|()| file.seek(SeekFrom::Start(0))).map_err(io)?;
        file.write_all(me.as_bytes()).and_then(|()| file.flush()).map_err(io)?;
        Ok(RunLock { _file: file })
    }
}

/// `<state>.lock`, next to the state file.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    state.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_holder_and_dropping_releases() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.sqlite");
        let first = RunLock::acquire(&state, "input a.csv").unwrap();
        let err = RunLock::acquire(&state, "input b.csv").unwrap_err().to_string();
        assert!(err.contains(&format!("PID {}", std::process::id())), "{err}");
        assert!(err.contains("input a.csv"), "{err}");
        drop(first);
        RunLock::acquire(&state, "input b.csv").unwrap();
    }
}
