//! Opening the database: its folder and file (private to their owner), a
//! lock so that one process at a time creates and migrates it, and the
//! connection.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Durability, SqliteStore};
use crate::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Makes the database files of a data directory made by an older kaon
/// (0644) private, as new ones are: only what this user owns, errors
/// ignored. The folder itself is left as it is: `--data-dir` may name a
/// folder kaon did not create, whose mode is not kaon's to change.
fn tighten(db: &Path, me: u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let set = |p: &Path, mode: u32| {
        if let Ok(m) = std::fs::metadata(p)
            && m.uid() == me
            && m.mode() & 0o777 != mode
        {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
        }
    };
    set(db, 0o600);
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        set(Path::new(&p), 0o600);
    }
}

/// A write refused because the folder or file system is read-only (or not
/// ours to write) becomes [`StoreError::ReadOnly`]; other errors come back.
fn read_only(dir: &Path, source: std::io::Error) -> Result<StoreError, std::io::Error> {
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
    if matches!(source.kind(), ReadOnlyFilesystem | PermissionDenied) {
        Ok(StoreError::ReadOnly {
            dir: dir.to_path_buf(),
            source,
        })
    } else {
        Err(source)
    }
}

/// Read connections of a database file: enough for a server's API
/// handlers and its loop to read at once on a small machine.
const READERS: u32 = 4;

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and brings its
    /// schema up to date.
    pub async fn open(path: &Path, durability: Durability) -> Result<SqliteStore, StoreError> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        // Private to its owner: the database holds parameters and the logs
        // beside it hold what steps print.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| read_only(&dir, source).unwrap_or_else(open_err))?;
        // One process at a time creates and migrates the database: SQLite
        // has no lock for sqlx's migrator, and two fresh `kaon run`s would
        // both create the tables. The lock file is the first write, so a
        // read-only folder is reported as such here.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "kaon.db".into());
        let lock_path = dir.join(format!(".{name}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| read_only(&dir, source).unwrap_or_else(open_err))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| open_err(std::io::Error::other(e)))?
            .map_err(open_err)?;
        // Created 0600 before SQLite opens it (SQLite gives its -wal and
        // -shm files the database file's mode).
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| read_only(&dir, source).unwrap_or_else(open_err))?;
        let meta = std::fs::metadata(path).map_err(open_err)?;
        // The lock file was made by this process: its owner is this user.
        if let Ok(l) = std::fs::metadata(&lock_path) {
            tighten(path, l.uid());
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Process => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let mut store = Self::connect(opts.clone()).await?;
        store.read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(opts.read_only(true))
            .await?;
        drop(lock);
        store.file = Some((path.to_path_buf(), meta.dev(), meta.ino()));
        Ok(store)
    }

    /// A private in-memory database (tests).
    pub async fn in_memory() -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        Self::connect(opts).await
    }

    async fn connect(opts: SqliteConnectOptions) -> Result<SqliteStore, StoreError> {
        // One connection: the driver is the only heavy writer, and a single
        // connection keeps `:memory:` databases whole.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore {
            read: pool.clone(),
            pool,
            file: None,
        })
    }
}
