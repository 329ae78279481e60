//! The `state` file: loading it at start, and saving the data atomically after changes and at shutdown.
//!
//! A save writes a temporary file in the same directory, fsyncs it, renames it over the state file and
//! fsyncs the directory, so a crash leaves either the old file or the new one, never half of one. Saves are
//! debounced: the persister waits [`DEBOUNCE`] after a change, then saves everything changed meanwhile in
//! one write. A file that exists but cannot be used is an error naming it, and is never overwritten.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::store::{Data, StateProblem, Store};
use super::{SandboxError, Shared, lock};

/// The format version written into the file, checked when reading.
const VERSION: u32 = 1;

/// At most one save per this interval while requests keep changing the data.
const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    #[serde(flatten)]
    data: Data,
}

/// Reads the state file; when there is none yet, writes an empty one so an unwritable location fails now
/// rather than at the first save.
pub(crate) async fn load_or_create(path: PathBuf) -> Result<Store, SandboxError> {
    let task = tokio::task::spawn_blocking(move || match load(&path)? {
        Some(store) => Ok(store),
        None => {
            let store = Store::default();
            save(&path, store.data())?;
            Ok(store)
        }
    });
    task.await.map_err(|source| SandboxError::Task { task: "state loading", source })?
}

/// `None` when the file does not exist.
fn load(path: &Path) -> Result<Option<Store>, SandboxError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SandboxError::StateRead { path: path.to_owned(), source });
        }
    };
    let file: StateFile = serde_json::from_slice(&bytes)
        .map_err(|source| SandboxError::StateCorrupt { path: path.to_owned(), source })?;
    let invalid = |problem| SandboxError::StateInvalid { path: path.to_owned(), problem };
    if file.version != VERSION {
        return Err(invalid(StateProblem::UnsupportedVersion { found: file.version, expected: VERSION }));
    }
    Store::from_data(file.data).map(Some).map_err(invalid)
}

/// Replaces the state file atomically.
fn save(path: &Path, data: &Data) -> Result<(), SandboxError> {
    let failed = |source| SandboxError::StateWrite { path: path.to_owned(), source };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp =
        tempfile::Builder::new().prefix(".savio-sandbox-state-").suffix(".tmp").tempfile_in(dir).map_err(failed)?;
    let file = StateFile { version: VERSION, data: data.clone() };
    {
        let mut writer = BufWriter::new(temp.as_file_mut());
        serde_json::to_writer_pretty(&mut writer, &file).map_err(|e| failed(io::Error::from(e)))?;
        writer.write_all(b"\n").map_err(failed)?;
        writer.flush().map_err(failed)?;
    }
    temp.as_file().sync_all().map_err(failed)?;
    temp.persist(path).map_err(|e| failed(e.error))?;
    // The rename is durable only once the directory entry is; opening a directory works on Unix only.
    if cfg!(unix) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(failed)?;
    }
    Ok(())
}

/// The background task that saves the data after changes.
pub(crate) struct Persister {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), SandboxError>>,
}

impl Persister {
    pub(crate) fn spawn(shared: Arc<Shared>, path: PathBuf) -> Persister {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(shared, path, stopped));
        Persister { stop, task }
    }

    /// Stops the task after a last save of whatever changed since the previous one.
    pub(crate) async fn finish(self) -> Result<(), SandboxError> {
        let _ = self.stop.send(());
        self.task.await.map_err(|source| SandboxError::Task { task: "state saving", source })?
    }
}

async fn run(shared: Arc<Shared>, path: PathBuf, mut stopped: oneshot::Receiver<()>) -> Result<(), SandboxError> {
    // What was loaded (or just created) is on disk already.
    let mut saved = lock(&shared.store).generation();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            () = shared.changed.notified() => {}
        }
        tokio::select! {
            _ = &mut stopped => break,
            () = tokio::time::sleep(DEBOUNCE) => {}
        }
        if let Err(error) = save_if_changed(&shared, &path, &mut saved).await {
            // Keep serving; the next change or the shutdown tries again, and the shutdown reports it.
            tracing::error!(error = %error, source = ?std::error::Error::source(&error), "sandbox state not saved");
        }
    }
    save_if_changed(&shared, &path, &mut saved).await
}

/// Saves when the store changed since generation `saved`. The copy is taken under the lock (a clone, which
/// is fast); serializing and writing happen on a blocking thread, off the lock and off the runtime.
async fn save_if_changed(shared: &Shared, path: &Path, saved: &mut u64) -> Result<(), SandboxError> {
    let (generation, data) = {
        let store = lock(&shared.store);
        if store.generation() == *saved {
            return Ok(());
        }
        (store.generation(), store.data().clone())
    };
    let target = path.to_owned();
    tokio::task::spawn_blocking(move || save(&target, &data))
        .await
        .map_err(|source| SandboxError::Task { task: "state saving", source })??;
    *saved = generation;
    tracing::debug!(path = %path.display(), generation, "sandbox state saved");
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample_store() -> Store {
        let mut store = Store::default();
        let body = json!({"name": "Acme", "internal_id": "c1", "filterable_attributes": {"plan": "pro"}});
        if let serde_json::Value::Object(map) = body {
            store.upsert_company(&map).map_err(|e| e.into_value()).unwrap();
        }
        store
    }

    #[test]
    fn saved_state_loads_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = sample_store();
        save(&path, store.data()).unwrap();
        let loaded = load(&path).unwrap().expect("file exists");
        assert_eq!(loaded.data(), store.data());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn missing_file_is_no_state() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("absent.json")).unwrap().is_none());
    }

    #[test]
    fn corrupt_or_foreign_files_are_errors_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for (content, corrupt) in
            [("", true), ("{\"version\": 1, \"companies\": [", true), ("[1, 2]", true), ("{\"version\": 2}", false)]
        {
            std::fs::write(&path, content).unwrap();
            let error = load(&path).expect_err("an error");
            match (&error, corrupt) {
                (SandboxError::StateCorrupt { path: p, .. }, true)
                | (SandboxError::StateInvalid { path: p, .. }, false) => assert_eq!(p, &path),
                _ => panic!("unexpected error for {content:?}: {error:?}"),
            }
            assert!(error.to_string().contains(&path.display().to_string()));
        }
    }

    #[test]
    fn saving_into_a_missing_directory_fails_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("state.json");
        let error = save(&path, &Data::default()).expect_err("an error");
        assert!(matches!(&error, SandboxError::StateWrite { path: p, .. } if p == &path));
    }
}
