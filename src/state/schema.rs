//! The state file's schema and its migrations.
//!
//! The version lives in SQLite's `user_version`. Opening a file runs the migrations it lacks, in one
//! transaction each; a file from a newer savio-sync (a higher version than [`VERSION`]) is refused rather
//! than guessed at, and a file that is not a savio-sync state is never touched.

use rusqlite::Connection;

/// The schema version this build writes.
pub const VERSION: i64 = 1;

/// Identifies a savio-sync state file (SQLite's `application_id`: "SVIO").
pub const APPLICATION_ID: i64 = 0x5356_494f;

/// Migration `n` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: [&str; VERSION as usize] = [
    // 0 -> 1
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started TEXT NOT NULL,
        finished TEXT,
        input TEXT NOT NULL,
        input_fingerprint TEXT,
        mapping TEXT NOT NULL,
        mapping_fingerprint TEXT NOT NULL,
        mode TEXT NOT NULL,
        shard TEXT,
        pid INTEGER NOT NULL,
        report_dir TEXT,
        resumes INTEGER NOT NULL DEFAULT 0,
        exit_reason TEXT,
        summary TEXT
     );
     CREATE INDEX runs_by_input ON runs (input, mapping, shard);
     -- Every payload's outcome in a run: write-ahead 'pending' for feedback, then ok/failed/blocked/unknown.
     CREATE TABLE journal (
        run_id INTEGER NOT NULL REFERENCES runs (id),
        line INTEGER NOT NULL,
        entity TEXT NOT NULL,
        key TEXT NOT NULL,
        hash TEXT NOT NULL,
        status TEXT NOT NULL,
        savio_id TEXT,
        reason TEXT,
        at TEXT NOT NULL,
        PRIMARY KEY (run_id, line, entity)
     ) WITHOUT ROWID;
     -- Per entity key, the last payload Savio accepted.
     CREATE TABLE accepted (
        entity TEXT NOT NULL,
        key TEXT NOT NULL,
        hash TEXT NOT NULL,
        savio_id TEXT,
        at TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        PRIMARY KEY (entity, key)
     ) WITHOUT ROWID;
     -- Feedback whose creation is unknown (in flight at a crash, or timed out): not re-sent blindly.
     CREATE TABLE unsure_feedback (
        key TEXT PRIMARY KEY,
        run_id INTEGER NOT NULL,
        line INTEGER NOT NULL,
        at TEXT NOT NULL
     ) WITHOUT ROWID;",
];

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("it is not a savio-sync state file (application id {0:#x}); pass another --state")]
    Foreign(i64),
    #[error(
        "it was written by a newer savio-sync (schema version {found}, this build knows up to {VERSION}); \
         upgrade savio-sync or pass another --state"
    )]
    Newer { found: i64 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Brings the schema up to [`VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if app != APPLICATION_ID && (app != 0 || version != 0 || has_tables(conn)?) {
        return Err(SchemaError::Foreign(app));
    }
    if version > VERSION {
        return Err(SchemaError::Newer { found: version });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", n as i64 + 1)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
    }
    Ok(())
}

fn has_tables(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).map(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_new_file_and_is_idempotent() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, VERSION);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        c.pragma_update(None, "user_version", VERSION + 1).unwrap();
        assert!(matches!(migrate(&mut c), Err(SchemaError::Newer { .. })));
    }

    #[test]
    fn refuses_someone_elses_database() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE customers (id INTEGER)").unwrap();
        assert!(matches!(migrate(&mut c), Err(SchemaError::Foreign(0))));
    }
}
