//! `kaon tokens create|list|revoke`: API tokens.

use std::process::ExitCode;

use anyhow::{Result, bail};
use kaon_server::auth::{Role, make_token};
use kaon_store::ServiceStore;

use super::common::{self, DataArgs};
use super::db::DbArgs;

/// API tokens of a kaon server: make, list, revoke.
///
/// They are written straight to the server's database (run this where
/// the database is reachable: the first admin token is made this way).
/// A token is shown once, when made; kaon keeps only its digest.
///
/// Examples:
///   kaon tokens create ana --role operate
///   kaon tokens create ci --role read --db postgres://kaon@db/kaon
///   kaon tokens list
///   kaon tokens revoke 3f2a9c01b7de
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
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
    /// Makes a token and prints it (once).
    Create {
        /// Who or what it is for.
        name: String,
        /// `read`, `operate` or `admin`.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Lists tokens (never their secrets).
    List,
    /// Revokes a token: the server refuses it from now on.
    Revoke {
        /// The token's id (`kaon tokens list`).
        id: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Read,
    Operate,
    Admin,
}

pub fn run(args: Args) -> Result<ExitCode> {
    common::block_on(async move {
        let store = args.db.open(&args.data).await?;
        let now = kaon_runtime::now_ms() as i64;
        match args.verb {
            Verb::Create { name, role } => {
                let role = match role {
                    RoleArg::Read => Role::Read,
                    RoleArg::Operate => Role::Operate,
                    RoleArg::Admin => Role::Admin,
                };
                let t = make_token(&name, role, now).map_err(|e| anyhow::anyhow!(e.message))?;
                store.create_token(&t.row).await?;
                eprintln!(
                    "token {} ({role}) for {name}; it is shown once, keep it somewhere safe:",
                    t.row.id
                );
                kaon::outln!("{}", t.token);
            }
            Verb::List => {
                let tokens = store.tokens().await?;
                if tokens.is_empty() {
                    eprintln!("no tokens (`kaon tokens create NAME --role admin` makes one)");
                }
                for t in tokens {
                    let state = match t.revoked_ms {
                        Some(ms) => format!("revoked {}", common::fmt_time(ms)),
                        None => "active".into(),
                    };
                    kaon::outln!(
                        "{}  {:<8} {:<20} {}  {state}",
                        t.id,
                        t.role,
                        t.name,
                        common::fmt_time(t.created_ms)
                    );
                }
            }
            Verb::Revoke { id } => {
                if !store.revoke_token(&id, now).await? {
                    bail!("no token {id}, or it was revoked before (`kaon tokens list`)");
                }
                kaon::outln!("revoked token {id}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })?
}
