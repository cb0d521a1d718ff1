//! The service as a process the suite can kill, terminate and restart on the
//! same port, and a private PostgreSQL cluster the suite can really stop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary Cargo built for this package.
pub const BINARY: &str = env!("CARGO_BIN_EXE_dispatch-api");

/// One chain keyring for every service and CLI run of the suite: replicas of
/// one store key their events with the same secrets, as they would when the
/// keyring comes from a secret store (README, "Chain keys"); each replica's
/// own data folder would otherwise get a keyring of its own.
pub fn suite_keyring() -> &'static str {
    static KEYRING: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEYRING.get_or_init(|| dispatch_api::store::chain::ChainKeys::generate().to_toml())
}

/// A free loopback port.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// One `dispatch-api serve` on a fixed port; restarts keep the port, the
/// database, the data folder and the log (appended).
pub struct Service {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its name in messages (`replica 2`, …).
    pub name: String,
    port: u16,
    database_url: String,
    dir: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Times started.
    pub starts: u32,
}

impl Service {
    /// A service on `database_url` with its files under `dir` (not started).
    pub fn new(
        name: &str,
        database_url: &str,
        dir: &Path,
        env: &[(&str, String)],
    ) -> Result<Service, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_port()?;
        Ok(Service {
            base: format!("http://127.0.0.1:{port}"),
            name: name.to_string(),
            port,
            database_url: database_url.to_string(),
            dir: dir.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            child: None,
            starts: 0,
        })
    }

    /// Sets (or replaces) one variable of its environment for the next start.
    pub fn set_env(&mut self, key: &str, value: String) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value));
    }

    /// The service's log (JSON lines, every start appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir
            .join(format!("{}.log", self.name.replace(' ', "-")))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process (does not wait for it to be ready).
    pub fn spawn(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Err(format!("{} is already running", self.name));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(BINARY);
        cmd.arg("serve")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DATABASE_URL", &self.database_url)
            .env("DISPATCH_DATA_DIR", &self.dir)
            .env("DISPATCH_CHAIN_KEYRING", suite_keyring())
            .env("DISPATCH_EVIDENCE_STORE", self.dir.join("evidence"))
            .env("DISPATCH_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("DISPATCH_LOG_FORMAT", "json")
            .env("DISPATCH_CLOCK", "system")
            // The load drives thousands of calls per key: the gate's budget
            // is not what these cases test.
            .env("DISPATCH_TOOL_RATE_PER_MINUTE", "0")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = super::server::spawn_logging_to(&mut cmd, log)?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// Starts the process and waits until `/readyz` answers 200; returns how
    /// long that took.
    pub async fn start(&mut self) -> Result<Duration, String> {
        let t = Instant::now();
        self.spawn()?;
        self.wait_ready(Duration::from_secs(60)).await?;
        Ok(t.elapsed())
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "{} exited ({status}) before it was ready:\n{}",
                        self.name,
                        self.log_tail(15)
                    ));
                }
            }
            if super::server::is_ready(&http, &self.base, Duration::from_secs(2)).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} was not ready within {} s:\n{}",
                    self.name,
                    limit.as_secs(),
                    self.log_tail(15)
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `kill -9`, and reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (the process keeps running until it has drained).
    pub fn sigterm(&self) -> Result<(), String> {
        let pid = self.pid().ok_or("not running")?;
        let ok = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map_err(|e| e.to_string())?
            .success();
        if ok {
            Ok(())
        } else {
            Err(format!("kill -TERM {pid} failed"))
        }
    }

    /// Waits up to `limit` for the process to exit; `None` if it did not.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM, then SIGKILL after 15 s.
    pub async fn stop(&mut self) {
        if self.sigterm().is_ok() && self.wait_exit(Duration::from_secs(15)).await.is_some() {
            return;
        }
        self.kill9();
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Lines of its log that report a panic (none may).
    pub fn log_panics(&self) -> Vec<String> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("panicked"))
            .map(|l| l.chars().take(400).collect())
            .collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `dispatch-api ARGS…` against `database_url`: (exit code, stdout, stderr).
pub async fn cli(database_url: &str, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BINARY);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", database_url)
        .env("DISPATCH_DATA_DIR", dir)
        .env("DISPATCH_CHAIN_KEYRING", suite_keyring())
        .env("DISPATCH_LOG_FORMAT", "json")
        .args(args)
        .stdin(Stdio::null());
    match tokio::task::spawn_blocking(move || cmd.output()).await {
        Ok(Ok(out)) => (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Ok(Err(e)) => (-1, String::new(), format!("cannot run {BINARY}: {e}")),
        Err(e) => (-1, String::new(), e.to_string()),
    }
}

/// A private PostgreSQL cluster (the service's own embedded default, on a
/// free port), which the outage case stops and starts for real.
pub struct Cluster {
    dir: PathBuf,
    /// `postgres://postgres@127.0.0.1:PORT/dispatch_api` (the service creates it).
    pub admin_url: String,
}

impl Cluster {
    /// Initialises and starts a cluster under `dir`.
    pub fn start(dir: &Path) -> Result<Cluster, String> {
        if !dispatch_api::embedded_pg::available() {
            return Err("PostgreSQL's server programs are not installed".into());
        }
        // PostgreSQL runs as an unprivileged user when we are root: it must
        // be able to reach its folder.
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        for d in [dir, dir.parent().unwrap_or(dir)] {
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
        }
        let port = free_port()?;
        let url = dispatch_api::embedded_pg::start_on(dir, port)
            .map_err(|e| format!("private cluster: {e:#}"))?;
        Ok(Cluster {
            dir: dir.to_path_buf(),
            admin_url: url,
        })
    }

    /// The cluster's URL for database `name`.
    pub fn url(&self, name: &str) -> String {
        let base = self
            .admin_url
            .rsplit_once('/')
            .map_or(self.admin_url.as_str(), |x| x.0);
        format!("{base}/{name}")
    }

    /// Stops PostgreSQL (fast shutdown: every session is cut).
    pub fn stop(&self) -> Result<(), String> {
        dispatch_api::embedded_pg::stop(&self.dir).map_err(|e| format!("{e:#}"))
    }

    /// Starts it again.
    pub fn restart(&self) -> Result<(), String> {
        let port: u16 = self
            .admin_url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .ok_or("the cluster's URL has no port")?;
        dispatch_api::embedded_pg::start_on(&self.dir, port)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
