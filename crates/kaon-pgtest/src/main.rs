//! `kaon-pgtest start DIR`: starts a PostgreSQL server for a test run in
//! `DIR` and prints its superuser URL (for `KAON_TEST_PG_URL`) once it
//! accepts connections; the server keeps running after this returns.
//! `kaon-pgtest stop DIR`: stops it. `scripts/test` calls both.

use std::path::Path;

use anyhow::{Context, bail};
use kaon_pgtest::Server;

const USAGE: &str = "usage: kaon-pgtest start DIR | kaon-pgtest stop DIR";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [verb, dir] if verb == "start" => {
            let server = Server::start_in(Path::new(dir))
                .with_context(|| format!("starting PostgreSQL in {dir}"))?;
            println!("{}", server.url());
            eprintln!(
                "PostgreSQL listens on 127.0.0.1:{} (data and log in {}); stop it with `kaon-pgtest stop {dir}`",
                server.port(),
                server.dir().display()
            );
            server.keep();
        }
        [verb, dir] if verb == "stop" => {
            Server::stop_in(Path::new(dir))
                .with_context(|| format!("stopping PostgreSQL in {dir}"))?;
        }
        _ => bail!("{USAGE}"),
    }
    Ok(())
}
