//! A private PostgreSQL cluster under the data folder, for a machine that has
//! PostgreSQL's server programs but no running server. As root, the cluster
//! runs as an unprivileged user (`postgres`, else `nobody`): PostgreSQL
//! refuses to run as root, and it should not.
//!
//! The process that starts the cluster owns it: [`PrivateCluster`] stops it
//! (`pg_ctl stop -m fast`) when that process is done with it — `serve` at
//! shutdown, a CLI command when it ends, or on an error on the way. A
//! cluster that was running already when a process came is left running
//! by that process (docs/decisions.md, "The private cluster stops with
//! the process that started it").

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The port the private cluster listens on (loopback only).
pub const EMBEDDED_PORT: u16 = 5433;

fn find_bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return Some(dir);
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .collect();
    candidates.sort_by_key(|d| {
        d.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn unprivileged_user() -> Option<String> {
    ["postgres", "nobody"]
        .into_iter()
        .find(|u| {
            Command::new("id")
                .arg("-u")
                .arg(u)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .map(str::to_string)
}

fn run(
    bindir: &Path,
    user: Option<&str>,
    program: &str,
    args: &[&str],
) -> anyhow::Result<std::process::Output> {
    let exe = bindir.join(program);
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.arg("-u").arg(u).arg("--").arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.args(args)
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))
}

/// The private cluster a process uses: its URL, and whether this process
/// started it. Dropped (or [`released`](PrivateCluster::release)), it stops
/// the cluster if this process started it and leaves it running otherwise.
#[derive(Debug)]
pub struct PrivateCluster {
    data_dir: PathBuf,
    dir: PathBuf,
    url: String,
    port: u16,
    started_here: bool,
    released: bool,
    /// The command that stops it by hand (as its owner, with pg_ctl's path).
    stop_command: String,
}

/// What became of a private cluster when the process let it go.
#[derive(Debug)]
pub enum Release {
    /// This process started it and stopped it.
    Stopped {
        /// Its data directory.
        dir: PathBuf,
        /// Its port.
        port: u16,
    },
    /// It was running before this process came: left running.
    LeftRunning {
        /// Its data directory.
        dir: PathBuf,
        /// Its port.
        port: u16,
        /// How to stop it by hand.
        stop_command: String,
    },
    /// This process started it, and `pg_ctl stop` failed.
    StopFailed {
        /// Its data directory.
        dir: PathBuf,
        /// Why.
        error: String,
        /// How to stop it by hand.
        stop_command: String,
    },
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Release::Stopped { dir, port } => write!(
                f,
                "stopped the private PostgreSQL cluster under {} (port {port}), which this process had started",
                dir.display()
            ),
            Release::LeftRunning {
                dir,
                port,
                stop_command,
            } => write!(
                f,
                "left the private PostgreSQL cluster under {} (port {port}) running: it was running before this process started; stop it with `{stop_command}`",
                dir.display(),
            ),
            Release::StopFailed {
                dir,
                error,
                stop_command,
            } => write!(
                f,
                "could not stop the private PostgreSQL cluster under {} ({error}); stop it with `{stop_command}`",
                dir.display(),
            ),
        }
    }
}

impl PrivateCluster {
    /// The database URL (`…/dispatch_api`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this process started the cluster (and so stops it).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Stops the cluster if this process started it (fast shutdown:
    /// sessions are ended, nothing committed is lost), and says what became
    /// of it. Blocks while `pg_ctl` runs.
    pub fn release(mut self) -> Release {
        self.released = true;
        if !self.started_here {
            return Release::LeftRunning {
                dir: self.dir.clone(),
                port: self.port,
                stop_command: self.stop_command.clone(),
            };
        }
        match stop(&self.data_dir) {
            Ok(()) => Release::Stopped {
                dir: self.dir.clone(),
                port: self.port,
            },
            Err(e) => Release::StopFailed {
                dir: self.dir.clone(),
                error: format!("{e:#}"),
                stop_command: self.stop_command.clone(),
            },
        }
    }

    /// Gives up ownership: the cluster is left running whatever happens;
    /// its URL.
    pub fn detach(mut self) -> String {
        self.released = true;
        std::mem::take(&mut self.url)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.released || !self.started_here {
            return;
        }
        self.released = true;
        match stop(&self.data_dir) {
            Ok(()) => {
                tracing::info!(dir = %self.dir.display(), "stopped the private PostgreSQL cluster this process had started")
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %format!("{e:#}"), "could not stop the private PostgreSQL cluster this process had started")
            }
        }
    }
}

/// Starts (initialising if needed) the private cluster on its usual port.
pub fn start(data_dir: &Path) -> anyhow::Result<PrivateCluster> {
    start_private(data_dir, EMBEDDED_PORT)
}

/// Stops the private cluster under `data_dir` (fast shutdown).
pub fn stop(data_dir: &Path) -> anyhow::Result<()> {
    let bindir = find_bindir().context("PostgreSQL's server programs are not installed")?;
    let dir = std::fs::canonicalize(data_dir)?.join("pg");
    let user = if is_root() { unprivileged_user() } else { None };
    let out = run(
        &bindir,
        user.as_deref(),
        "pg_ctl",
        &["-D", &dir.to_string_lossy(), "-m", "fast", "-w", "stop"],
    )?;
    if !out.status.success() {
        bail!(
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Whether the private cluster under `data_dir` is running (`pg_ctl status`).
pub fn is_running(data_dir: &Path) -> bool {
    let (Some(bindir), Ok(base)) = (find_bindir(), std::fs::canonicalize(data_dir)) else {
        return false;
    };
    let user = if is_root() { unprivileged_user() } else { None };
    let dir = base.join("pg").to_string_lossy().to_string();
    run(&bindir, user.as_deref(), "pg_ctl", &["-D", &dir, "status"])
        .is_ok_and(|out| out.status.success())
}

/// Whether PostgreSQL's server programs are installed here.
pub fn available() -> bool {
    find_bindir().is_some()
}

/// [`start`] on a given port, left running whatever becomes of the caller
/// (the fault suite stops and starts it itself); its URL.
pub fn start_on(data_dir: &Path, port: u16) -> anyhow::Result<String> {
    Ok(start_private(data_dir, port)?.detach())
}

/// [`start`] on a given port.
pub fn start_private(data_dir: &Path, port: u16) -> anyhow::Result<PrivateCluster> {
    let bindir = find_bindir().context(
        "no PostgreSQL server answers at 127.0.0.1:5432 and PostgreSQL's server programs are not installed: \
         install PostgreSQL (e.g. `apt-get install postgresql`) or set DATABASE_URL",
    )?;
    std::fs::create_dir_all(data_dir)?;
    let base = std::fs::canonicalize(data_dir)?;
    let dir = base.join("pg");
    let user = if is_root() {
        Some(
            unprivileged_user()
                .context("running as root and no unprivileged user (postgres or nobody) exists")?,
        )
    } else {
        None
    };
    let dir_s = dir.to_string_lossy().to_string();
    if !dir.join("PG_VERSION").exists() {
        std::fs::create_dir_all(&dir)?;
        if let Some(u) = &user {
            let ok = Command::new("chown")
                .arg("-R")
                .arg(u)
                .arg(&dir)
                .status()?
                .success();
            if !ok {
                bail!("cannot give {} to user {u}", dir.display());
            }
        }
        let out = run(
            &bindir,
            user.as_deref(),
            "initdb",
            &[
                "-D",
                &dir_s,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let status = run(
        &bindir,
        user.as_deref(),
        "pg_ctl",
        &["-D", &dir_s, "status"],
    )?;
    let started_here = !status.status.success();
    if started_here {
        let opts = format!("-p {port} -k {dir_s} -c listen_addresses=127.0.0.1");
        let log = dir.join("server.log").to_string_lossy().to_string();
        let out = run(
            &bindir,
            user.as_deref(),
            "pg_ctl",
            &["-D", &dir_s, "-l", &log, "-o", &opts, "-w", "start"],
        )?;
        if !out.status.success() {
            bail!(
                "the private PostgreSQL cluster did not start (see {log}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let stop_command = format!(
        "{}{} -D {dir_s} stop -m fast",
        user.as_deref()
            .map(|u| format!("runuser -u {u} -- "))
            .unwrap_or_default(),
        bindir.join("pg_ctl").display()
    );
    Ok(PrivateCluster {
        stop_command,
        // Absolute: the process may change its directory meanwhile.
        data_dir: base,
        dir,
        url: format!("postgres://postgres@127.0.0.1:{port}/dispatch_api"),
        port,
        started_here,
        released: false,
    })
}
