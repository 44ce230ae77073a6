//! A real PostgreSQL for kaon's tests.
//!
//! [`database`] gives a test a database of its own (`CREATE DATABASE
//! t_<random>`), dropped when the [`TestDb`] is. The server it lives on is:
//!
//! - the one `KAON_TEST_PG_URL` names, a superuser URL of a running server
//!   (`postgres://postgres@127.0.0.1:PORT/postgres`): `scripts/test` starts
//!   one for the whole test run with `kaon-pgtest start DIR`;
//! - otherwise one this process starts the first time it is asked (about a
//!   second: `initdb`, `pg_ctl start`) and that stops when it ends.
//!
//! [`Server`] starts a whole server of a test's own, for tests that stop or
//! restart it.
//!
//! PostgreSQL must be installed (Debian's `postgresql`): without it the
//! tests that need it fail, saying so. They are never skipped.

mod server;

use std::hash::{BuildHasher, RandomState};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Connection;

pub use server::Server;

/// The variable naming a running server to use instead of starting one.
pub const URL_VAR: &str = "KAON_TEST_PG_URL";

/// What went wrong getting a PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server's programs are not installed.
    #[error(
        "PostgreSQL's initdb and pg_ctl were not found (in `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin or PATH). kaon's tests run against a real PostgreSQL: \
         install Debian's `postgresql` package (apt-get install postgresql), or set \
         {URL_VAR} to a superuser URL of a running server"
    )]
    Missing,
    /// Running as root, with no user to run the server as.
    #[error(
        "PostgreSQL refuses to run as root, and there is no `postgres` user to run it as: \
         install Debian's `postgresql` package (it creates the user), or run the tests as \
         another user"
    )]
    NoPostgresUser,
    /// A server program failed.
    #[error("{what} failed ({status}):\n{output}")]
    Failed {
        /// Which (`initdb`, `pg_ctl start`).
        what: String,
        /// How it ended.
        status: ExitStatus,
        /// What it printed (and the end of the server's log).
        output: String,
    },
    /// The folder given for a server holds one already.
    #[error("{} holds a PostgreSQL cluster already (data/): stop it (kaon-pgtest stop) and remove the folder, or give another", dir.display())]
    Exists {
        /// The folder.
        dir: std::path::PathBuf,
    },
    /// Every free port found was taken before the server could bind it.
    #[error("the server could not bind a port on 127.0.0.1 in several tries")]
    NoPort,
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// `KAON_TEST_PG_URL` is not a URL.
    #[error(
        "{URL_VAR}={url} is not a URL ({source}); give a superuser URL such as postgres://postgres@127.0.0.1:5433/postgres"
    )]
    BadUrl {
        /// The value.
        url: String,
        /// Why.
        source: url::ParseError,
    },
    /// The server said no.
    #[error("PostgreSQL at {url}: {source}")]
    Database {
        /// The server's (superuser) URL.
        url: String,
        /// What it said.
        source: sqlx::Error,
    },
    /// Getting a server failed before in this process (the first error).
    #[error("{0}")]
    Earlier(String),
}

impl Error {
    /// Adds the end of the server's log to a failure of a server program.
    fn with_log(self, log: &str) -> Error {
        match self {
            Error::Failed {
                what,
                status,
                mut output,
            } => {
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(20)..];
                if !tail.is_empty() {
                    output.push_str("\nthe server's log ends:\n");
                    output.push_str(&tail.join("\n"));
                }
                Error::Failed {
                    what,
                    status,
                    output,
                }
            }
            other => other,
        }
    }
}

/// A database of a test's own, on the test server.
///
/// Dropping it drops the database (best effort: a database left behind
/// goes with its server). On a server of this process's own, it is left
/// for the server's end, which is sooner than dropping it would be.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    name: String,
    admin: String,
    drop_on_drop: bool,
}

impl TestDb {
    /// Its URL, as the superuser.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name (`t_` and 16 hex digits).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A superuser URL of the server's `postgres` database, for what a
    /// test does beside its database.
    pub fn admin_url(&self) -> &str {
        &self.admin
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.drop_on_drop {
            return;
        }
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // A thread with a runtime of its own: `drop` may run inside a
        // runtime, which cannot be blocked on from within.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(10), async {
                    let mut conn = sqlx::PgConnection::connect(&admin).await?;
                    sqlx::raw_sql(&sql).execute(&mut conn).await?;
                    conn.close().await
                })
                .await;
            });
        });
        let _ = dropper.join();
    }
}

/// A fresh database on the test server (see the crate's doc for which).
///
/// The first call of a process without `KAON_TEST_PG_URL` starts the
/// server and blocks its thread meanwhile (about a second).
///
/// # Panics
/// When there is no server to be had; the message says why and what to
/// install. A test that needs PostgreSQL fails rather than passing
/// without it.
pub async fn database() -> TestDb {
    match try_database().await {
        Ok(db) => db,
        Err(e) => panic!("no PostgreSQL for this test: {e}"),
    }
}

/// [`database`], with the error returned.
pub async fn try_database() -> Result<TestDb, Error> {
    let shared = shared()?;
    let name = fresh_name();
    let mut url = url::Url::parse(&shared.admin).map_err(|source| Error::BadUrl {
        url: shared.admin.clone(),
        source,
    })?;
    url.set_path(&format!("/{name}"));
    let db_err = |source| Error::Database {
        url: shared.admin.clone(),
        source,
    };
    let mut conn = sqlx::PgConnection::connect(&shared.admin)
        .await
        .map_err(db_err)?;
    // A name cannot be a bound parameter; this one is ours, letters and
    // digits only.
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .map_err(db_err)?;
    conn.close().await.map_err(db_err)?;
    Ok(TestDb {
        url: url.into(),
        name,
        admin: shared.admin.clone(),
        drop_on_drop: shared.server.is_none(),
    })
}

/// The server of this process's tests.
struct Shared {
    /// Its superuser URL.
    admin: String,
    /// The server, when this process started it. Never dropped (a static):
    /// its watchdog stops it when the process ends.
    server: Option<Server>,
}

fn shared() -> Result<&'static Shared, Error> {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if let Some(url) = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()) {
                url::Url::parse(&url).map_err(|source| {
                    Error::BadUrl {
                        url: url.clone(),
                        source,
                    }
                    .to_string()
                })?;
                return Ok(Shared {
                    admin: url,
                    server: None,
                });
            }
            let server = Server::try_start().map_err(|e| e.to_string())?;
            Ok(Shared {
                admin: server.url(),
                server: Some(server),
            })
        })
        .as_ref()
        .map_err(|e| Error::Earlier(e.clone()))
}

/// `t_` and 16 hex digits: random (the standard library's hasher keys
/// are), and unique in this process by a counter.
fn fresh_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let bits = RandomState::new().hash_one((std::process::id(), n));
    format!("t_{bits:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_postgres_names_the_package_to_install() {
        let text = Error::Missing.to_string();
        assert!(text.contains("`postgresql` package"), "{text}");
        assert!(text.contains(URL_VAR), "{text}");
    }

    #[test]
    fn names_are_fresh_identifiers() {
        let (a, b) = (fresh_name(), fresh_name());
        assert_ne!(a, b);
        for name in [a, b] {
            assert_eq!(name.len(), 18, "{name}");
            assert!(name.starts_with("t_"), "{name}");
            assert!(
                name[2..]
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{name}"
            );
        }
    }
}
