//! `kaon db migrate`, and the `--db` option verbs that open a database
//! share.

use std::process::ExitCode;

use anyhow::{Context, Result};
use kaon_store::{AnyStore, Durability};

use super::common::{self, DataArgs};

/// Which database: SQLite in the data directory, or PostgreSQL.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// The database: `postgres://user@host/db` (password from
    /// `PGPASSWORD` or the URL), or a SQLite file (default:
    /// `<data-dir>/kaon.db`).
    #[arg(long, env = "KAON_DB", value_name = "URL", hide_env_values = true)]
    pub db: Option<String>,
}

impl DbArgs {
    /// Opens the database and brings its schema up to date.
    pub async fn open(&self, data: &DataArgs) -> Result<AnyStore> {
        let url = self.url(data);
        AnyStore::open(&url, Durability::Full)
            .await
            .with_context(|| format!("cannot open the database {}", self.describe(data)))
    }

    fn url(&self, data: &DataArgs) -> String {
        self.db
            .clone()
            .unwrap_or_else(|| data.db().display().to_string())
    }

    /// The database, for messages: a PostgreSQL URL without its password.
    pub fn describe(&self, data: &DataArgs) -> String {
        let url = self.url(data);
        match url::Url::parse(&url) {
            Ok(mut u) if kaon_store::is_postgres(&url) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                // Options may carry a password too (`?password=`): none
                // is shown.
                if u.query().is_some() {
                    u.set_query(Some("..."));
                }
                u.to_string()
            }
            _ => url,
        }
    }
}

/// kaon's database.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Brings the database's schema up to date (creating it when empty).
    /// Servers do this when they start; run it first to upgrade a shared
    /// database while servers are stopped.
    Migrate,
}

pub fn run(args: Args) -> Result<ExitCode> {
    common::block_on(async move {
        match args.verb {
            Verb::Migrate => {
                let store = args.db.open(&args.data).await?;
                kaon::outln!(
                    "{} ({}) is up to date",
                    args.db.describe(&args.data),
                    store.backend()
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_password_is_never_shown() {
        let data = DataArgs {
            data_dir: ".kaon".into(),
            artifacts: None,
        };
        for url in [
            "postgres://kaon:s3cretA@db.internal/kaon",
            "postgresql://kaon@db.internal/kaon?sslmode=require&password=s3cretB",
        ] {
            let shown = DbArgs {
                db: Some(url.into()),
            }
            .describe(&data);
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("db.internal"), "{shown}");
        }
    }
}
