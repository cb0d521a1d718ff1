//! A private PostgreSQL cluster under the data folder, for a machine that has
//! PostgreSQL's server programs but no running server. As root, the cluster
//! runs as an unprivileged user (`postgres`, else `nobody`): PostgreSQL
//! refuses to run as root, and it should not.

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

/// Starts (initialising if needed) the private cluster and returns its URL.
pub fn start(data_dir: &Path) -> anyhow::Result<String> {
    start_on(data_dir, EMBEDDED_PORT)
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

/// Whether PostgreSQL's server programs are installed here.
pub fn available() -> bool {
    find_bindir().is_some()
}

/// [`start`] on a given port.
pub fn start_on(data_dir: &Path, port: u16) -> anyhow::Result<String> {
    let bindir = find_bindir().context(
        "no PostgreSQL server answers at 127.0.0.1:5432 and PostgreSQL's server programs are not installed: \
         install PostgreSQL (e.g. `apt-get install postgresql`) or set DATABASE_URL",
    )?;
    std::fs::create_dir_all(data_dir)?;
    let dir = std::fs::canonicalize(data_dir)?.join("pg");
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
    if !status.status.success() {
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
    Ok(format!("postgres://postgres@127.0.0.1:{port}/dispatch_api"))
}
