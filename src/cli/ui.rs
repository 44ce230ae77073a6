//! `kaon ui`: the web UI over this machine's runs, for one person.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kaon_runtime::Capacity;
use kaon_server::ServerConfig;
use kaon_server::auth::Role;

use super::common::DataArgs;
use super::db::DbArgs;

/// Open the web UI on the runs of `kaon run`: watch them live, read
/// their logs and artifacts, cancel, signal and retry them (and start
/// runs of deployed workflows).
///
/// It serves kaon's server over the data directory `kaon run` uses,
/// without tokens: whoever reaches the address may read and operate (not
/// administer), so it only listens on a loopback address. It drives the
/// runs started from the UI, and carries on runs whose `kaon run` died.
/// Stop it with Ctrl-C; running steps go on and are picked up at the
/// next start. For a team, use `kaon server` (with tokens).
///
/// Examples:
///   kaon ui
///   kaon ui --data ~/project/.kaon --listen 127.0.0.1:9000
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Address to listen on: a loopback address (`127.0.0.1:0` picks a
    /// free port; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:8484", value_parser = parse_listen)]
    listen: SocketAddr,
    /// kaon's data directory (the one `kaon run` uses).
    #[arg(
        long,
        visible_alias = "data-dir",
        value_name = "DIR",
        env = "KAON_DATA_DIR",
        default_value = ".kaon"
    )]
    data: PathBuf,
    /// Where artifacts are kept (as for `kaon run`). Default:
    /// `<data>/artifacts`.
    #[arg(long, env = "KAON_ARTIFACTS", value_name = "URL")]
    artifacts: Option<String>,
}

/// A socket address; `localhost:PORT` is 127.0.0.1.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{port}` is not a port"))?;
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    s.parse()
        .map_err(|e| format!("{e}: give an address and a port, e.g. 127.0.0.1:8484"))
}

pub fn run(args: Args) -> Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "kaon ui will not listen on {}: it serves without tokens, so anyone on the network could read and operate your runs; listen on a loopback address (127.0.0.1:PORT, reach it from elsewhere through an SSH tunnel), or run `kaon server`, whose calls need tokens",
            args.listen
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> Result<ExitCode> {
    let data = DataArgs {
        data_dir: args.data.clone(),
        artifacts: args.artifacts.clone(),
    };
    kaon_exec::files::create_private_dir(&data.data_dir).with_context(|| {
        format!(
            "cannot create kaon's data directory {}",
            data.data_dir.display()
        )
    })?;
    // The data directory's own SQLite, whatever `KAON_DB` says.
    let store = Arc::new(DbArgs { db: None }.open(&data).await?);
    let config = kaon::config::Config::load()?;
    let mut cfg = ServerConfig::new(data.data_dir.clone());
    cfg.artifacts = data.artifacts.clone();
    cfg.capacity = Capacity::detect();
    cfg.spark = config.spark.clone();
    cfg.anonymous = Some(Role::Operate);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    kaon::outln!("kaon ui: http://{addr}/");
    eprintln!(
        "kaon ui: the runs of {} (Ctrl-C to stop)",
        data.data_dir.display()
    );
    kaon_server::serve(cfg, store, listener, super::server::stop_signal("kaon ui")).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_is_the_loopback_address() {
        assert_eq!(
            parse_listen("localhost:0"),
            Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        );
        assert!(parse_listen("[::1]:8484").is_ok_and(|a| a.ip().is_loopback()));
        assert!(parse_listen("0.0.0.0:1").is_ok_and(|a| !a.ip().is_loopback()));
        assert!(parse_listen("localhost").is_err());
    }
}
