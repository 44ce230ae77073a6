//! A PostgreSQL server of our own: `initdb` into a folder, `pg_ctl start`
//! on a free port of 127.0.0.1, `pg_ctl stop` when done.
//!
//! PostgreSQL refuses to run as root; tests often run as root in
//! containers. Then the server's programs run as the `postgres` user
//! (which Debian's package creates), in a folder given to that user.

use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use nix::unistd::{Uid, User};

use crate::Error;

/// Tries at binding a port: another process may take the free port found
/// before the server binds it.
const PORT_TRIES: usize = 5;

/// The folder layout of a server: `data/` (the cluster), `log` (what the
/// server says), and the Unix socket beside them.
const DATA: &str = "data";
const LOG: &str = "log";

/// A PostgreSQL server started by this process, listening on 127.0.0.1.
///
/// Dropping it stops it (`pg_ctl stop -m immediate`: the data is thrown
/// away anyway) and, for a server of [`Server::start`], removes its folder.
/// If this process dies without dropping it (a panic that aborts, a
/// SIGKILL from a test runner's timeout), a watchdog process started with
/// it notices, because the pipe to it closes, and does the same.
#[derive(Debug)]
pub struct Server {
    root: PathBuf,
    port: u16,
    programs: Programs,
    running: bool,
    /// Remove `root` when stopped (a temporary folder of ours).
    temporary: bool,
    /// Waits for its stdin to close, then stops the server and removes a
    /// temporary `root`. `None` for a server meant to outlive this process.
    watchdog: Option<Child>,
}

impl Server {
    /// Starts a server in a new temporary folder, stopped and removed when
    /// the `Server` is dropped or this process ends.
    ///
    /// # Panics
    /// When it cannot: the message says why (PostgreSQL not installed,
    /// say, and which package to install). A test that needs PostgreSQL
    /// fails rather than passing without it.
    pub fn start() -> Server {
        match Server::try_start() {
            Ok(s) => s,
            Err(e) => panic!("cannot start a PostgreSQL server for this test: {e}"),
        }
    }

    /// [`Server::start`], with the error returned.
    pub fn try_start() -> Result<Server, Error> {
        let programs = Programs::find()?;
        // Under /tmp (not $TMPDIR) when the server runs as `postgres`: that
        // user must reach the folder, and /tmp is open to all.
        let parent = if programs.as_postgres.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let root = tempfile::Builder::new()
            .prefix("kaon-pg-")
            .tempdir_in(&parent)
            .map_err(|e| Error::io(format!("creating a folder in {}", parent.display()), e))?
            .keep();
        let mut server = Server {
            root,
            port: 0,
            programs,
            running: false,
            temporary: true,
            watchdog: None,
        };
        server.prepare_root()?;
        // Before anything runs, so that whatever happens next is undone
        // when this process ends.
        server.watchdog = Some(server.spawn_watchdog()?);
        server.init_and_start()?;
        Ok(server)
    }

    /// Starts a server whose folder is `dir` (created if missing; it must
    /// not hold a server already), for a server that outlives this process
    /// (see [`Server::keep`] and [`Server::stop_in`]).
    pub fn start_in(dir: &Path) -> Result<Server, Error> {
        let programs = Programs::find()?;
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let root = dir
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?;
        if root.join(DATA).exists() {
            return Err(Error::Exists { dir: root });
        }
        let mut server = Server {
            root,
            port: 0,
            programs,
            running: false,
            temporary: false,
            watchdog: None,
        };
        server.prepare_root()?;
        server.init_and_start()?;
        Ok(server)
    }

    /// Stops the server whose folder is `dir` (started by
    /// [`Server::start_in`]); nothing when none runs there.
    pub fn stop_in(dir: &Path) -> Result<(), Error> {
        let data = dir.join(DATA);
        if !data.join("postmaster.pid").exists() {
            return Ok(());
        }
        let programs = Programs::find()?;
        let mut stop = programs.command("pg_ctl");
        stop.arg("-D")
            .arg(&data)
            .args(["stop", "-m", "immediate", "-w"])
            .current_dir(dir);
        run(stop, "pg_ctl stop").map(drop)
    }

    /// A superuser URL of the server's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its folder: the cluster in `data/`, the server's log in `log`.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Stops the server now (dropping it does too).
    pub fn stop(&mut self) -> Result<(), Error> {
        if !self.running {
            return Ok(());
        }
        let mut stop = self.programs.command("pg_ctl");
        stop.arg("-D")
            .arg(self.root.join(DATA))
            .args(["stop", "-m", "immediate", "-w"])
            .current_dir(&self.root);
        run(stop, "pg_ctl stop")?;
        self.running = false;
        Ok(())
    }

    /// Leaves the server running after this `Server` is gone: until this
    /// process ends, for a server of [`Server::start`]; until
    /// [`Server::stop_in`], for one of [`Server::start_in`].
    pub fn keep(mut self) {
        self.running = false;
        self.temporary = false;
        // Its stdin stays open, so the watchdog waits for this process to
        // end.
        if let Some(watchdog) = self.watchdog.take() {
            std::mem::forget(watchdog);
        }
    }

    /// Gives the folder to the user the server runs as, private to it (as
    /// `initdb` wants its parent to be reachable and the cluster private).
    fn prepare_root(&self) -> Result<(), Error> {
        if let Some(user) = &self.programs.as_postgres {
            nix::unistd::chown(&self.root, Some(user.uid), Some(user.gid)).map_err(|e| {
                Error::io(
                    format!("giving {} to the postgres user", self.root.display()),
                    e.into(),
                )
            })?;
        }
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("making {} private", self.root.display()), e))
    }

    /// A shell in a process group of its own (so that a test runner
    /// killing the test's group leaves it), reading its stdin until the
    /// pipe closes: when this process drops the [`Server`] or ends in any
    /// way. Then it stops the server and removes its (temporary) folder.
    fn spawn_watchdog(&self) -> Result<Child, Error> {
        let script = r#"cat >/dev/null; "$@" >/dev/null 2>&1; rm -rf -- "$0""#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).arg(&self.root);
        let stop = self.programs.command("pg_ctl");
        cmd.arg(stop.get_program()).args(stop.get_args());
        cmd.arg("-D")
            .arg(self.root.join(DATA))
            .args(["stop", "-m", "immediate", "-w"])
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        cmd.spawn()
            .map_err(|e| Error::io("starting the server's watchdog (sh)".into(), e))
    }

    fn init_and_start(&mut self) -> Result<(), Error> {
        let data = self.root.join(DATA);
        let mut initdb = self.programs.command("initdb");
        // No fsync anywhere: a test's data is thrown away.
        initdb
            .args([
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "-U",
                "postgres",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .current_dir(&self.root);
        run(initdb, "initdb")?;
        let log = self.root.join(LOG);
        for _ in 0..PORT_TRIES {
            let port = free_port()?;
            // pg_ctl hands `-o` to a shell: the socket folder is quoted.
            let options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off -c max_connections=200 -k {}",
                sh_quote(&self.root.to_string_lossy())
            );
            let mut start = self.programs.command("pg_ctl");
            start
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o"])
                .arg(&options)
                .arg("start")
                .current_dir(&self.root);
            match run(start, "pg_ctl start") {
                Ok(_) => {
                    self.port = port;
                    self.running = true;
                    return Ok(());
                }
                Err(e) => {
                    let said = fs::read_to_string(&log).unwrap_or_default();
                    if !said.contains("could not bind") {
                        return Err(e.with_log(&said));
                    }
                }
            }
        }
        Err(Error::NoPort)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Best effort: the watchdog stops the server too.
        let _ = self.stop();
        if self.temporary {
            let _ = fs::remove_dir_all(&self.root);
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

/// PostgreSQL's server programs, and whom they run as.
#[derive(Debug)]
struct Programs {
    bin: PathBuf,
    /// The `postgres` user, when this process is root (PostgreSQL refuses
    /// to run as root).
    as_postgres: Option<User>,
    /// `runuser`, when running as `postgres` and it is installed (else
    /// `su`).
    runuser: Option<PathBuf>,
}

impl Programs {
    fn find() -> Result<Programs, Error> {
        let bin = bindir()?;
        if !Uid::effective().is_root() {
            return Ok(Programs {
                bin,
                as_postgres: None,
                runuser: None,
            });
        }
        let user = User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or(Error::NoPostgresUser)?;
        Ok(Programs {
            bin,
            as_postgres: Some(user),
            runuser: on_path("runuser"),
        })
    }

    /// A command that runs the server program `name` as the server's user.
    /// Arguments added to it go to the program.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres.is_none() {
            return Command::new(program);
        }
        let mut cmd = match &self.runuser {
            Some(runuser) => {
                let mut c = Command::new(runuser);
                c.args(["-u", "postgres", "--"]);
                c
            }
            None => {
                // util-linux su hands the arguments after the user to the
                // shell: `exec "$0" "$@"` runs them as they are.
                let mut c = Command::new("su");
                c.args(["-s", "/bin/sh", "postgres", "-c", r#"exec "$0" "$@""#]);
                c
            }
        };
        cmd.arg(program);
        cmd
    }
}

/// Where `initdb` and `pg_ctl` are: `pg_config --bindir`, else Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest), else `PATH`.
fn bindir() -> Result<PathBuf, Error> {
    let has_programs = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    // Debian's pg_config without a server installed (libpq-dev) names
    // /usr/bin, which has no initdb: then look on.
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_programs(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_programs(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Some(initdb) = on_path("initdb")
        && let Some(dir) = initdb.parent()
        && has_programs(dir)
    {
        return Ok(dir.to_path_buf());
    }
    Err(Error::Missing)
}

/// `name` in a folder of `PATH` (or of the usual system folders, which a
/// non-root `PATH` may lack).
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A port of 127.0.0.1 that nothing listens on now.
fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("finding a free port".into(), e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port".into(), e))
}

/// Runs `cmd` to its end; an error with what it printed if it failed.
fn run(mut cmd: Command, what: &str) -> Result<Output, Error> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running {what}"), e))?;
    if out.status.success() {
        return Ok(out);
    }
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(Error::Failed {
        what: what.to_string(),
        status: out.status,
        output: said.trim().to_string(),
    })
}

/// `s` as one word for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r#"'\''"#))
}

impl Error {
    fn io(what: String, source: io::Error) -> Error {
        Error::Io { what, source }
    }
}

#[cfg(test)]
mod tests {
    use super::sh_quote;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(sh_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(sh_quote("it's"), r#"'it'\''s'"#);
    }
}
