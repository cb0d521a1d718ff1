//! The service under test, started the way the README starts it: the real
//! `dispatch-api serve` binary with `DATABASE_URL` pointing at a fresh database
//! on the local PostgreSQL server, and the CLI against the same database.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// The binary Cargo built for this package.
pub const BINARY: &str = env!("CARGO_BIN_EXE_dispatch-api");

/// The server the scenarios create their databases on.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A running service on its own database.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `DATABASE_URL` of the scenario's database.
    pub database_url: String,
    /// The database's name (dropped when the scenario passes).
    pub database: String,
    /// Data directory (evidence files) and the service's log.
    pub dir: tempfile::TempDir,
    child: KillOnDrop,
}

/// The service's process, killed if the harness unwinds past it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn apply_env(cmd: &mut Command, database_url: &str, dir: &std::path::Path) {
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", database_url)
        .env("DISPATCH_DATA_DIR", dir)
        .env("DISPATCH_LOG_FORMAT", "json")
        // The scenarios make many calls with one key: no rate limit unless a
        // scenario sets one (`[server] env`, applied after this).
        .env("DISPATCH_TOOL_RATE_PER_MINUTE", "0")
        .env_remove("DISPATCH_LISTEN")
        .env_remove("DISPATCH_CLOCK");
}

impl Server {
    /// The service's log file (JSON lines).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    /// The NATS stream and subject prefix of the run on `database` (a
    /// scenario that sets `DISPATCH_NATS_URL` publishes there).
    pub fn nats_names(database: &str) -> (String, String) {
        let tag: String = database
            .chars()
            .rev()
            .take(16)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        (format!("E2E_{tag}"), format!("e2e.{tag}"))
    }

    /// Starts `dispatch-api serve` on `database` (made by [`create_database`])
    /// on a free loopback port and waits until `/readyz` answers 200.
    pub async fn start(
        database: &Database,
        clock: &str,
        extra_env: &std::collections::BTreeMap<String, String>,
    ) -> Result<Server, String> {
        let database_url = database.url.clone();
        let database = database.name.clone();
        let dir = tempfile::Builder::new()
            .prefix("dispatch-e2e-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let mut last_error = String::new();
        let mut dir = Some(dir);
        for _attempt in 0..3 {
            let Some(d) = dir.take() else { break };
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let log =
                std::fs::File::create(d.path().join("serve.log")).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(BINARY);
            cmd.arg("serve");
            apply_env(&mut cmd, &database_url, d.path());
            cmd.env("DISPATCH_LISTEN", format!("127.0.0.1:{port}"))
                .env("DISPATCH_CLOCK", clock)
                .envs(extra_env);
            // Each run publishes to a stream and subjects of its own.
            let (stream, prefix) = Server::nats_names(&database);
            cmd.env("DISPATCH_NATS_STREAM", stream)
                .env("DISPATCH_NATS_SUBJECT_PREFIX", prefix);
            let child = spawn_logging_to(&mut cmd, log)?;
            let mut server = Server {
                base: format!("http://127.0.0.1:{port}"),
                database_url: database_url.clone(),
                database: database.clone(),
                dir: d,
                child: KillOnDrop(child),
            };
            match server.wait_ready().await {
                Ok(()) => return Ok(server),
                Err(e) => {
                    // Perhaps another process took the port: try another.
                    last_error = e;
                    let Server { dir: d, child, .. } = server;
                    drop(child);
                    dir = Some(d);
                }
            }
        }
        Err(last_error)
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                return Err(format!(
                    "dispatch-api serve exited ({status}) before it was ready:\n{}",
                    self.log_tail(20)
                ));
            }
            if is_ready(&client, &self.base, Duration::from_secs(2)).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "dispatch-api serve was not ready within 30 s:\n{}",
                    self.log_tail(20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the service's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Runs `dispatch-api ARGS…` against the scenario's database:
    /// (exit code, stdout, stderr).
    pub async fn cli(&self, args: &[String]) -> Result<(i32, String, String), String> {
        let mut cmd = Command::new(BINARY);
        apply_env(&mut cmd, &self.database_url, self.dir.path());
        cmd.args(args).stdin(Stdio::null());
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot run {BINARY}: {e}"))?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Stops the service (SIGTERM, then SIGKILL after 10 s); with `keep`, keeps
    /// its log and evidence directory.
    pub async fn stop(mut self, keep: bool) {
        let pid = self.child.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        if keep {
            // For whoever reads the failure.
            let _ = self.dir.keep();
        }
    }
}

/// Starts `cmd` (the service binary) with no stdin or stdout and its
/// stderr, the log, into `log`.
pub fn spawn_logging_to(cmd: &mut Command, log: std::fs::File) -> Result<Child, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {BINARY}: {e}"))
}

/// Whether the service at `base` answers `GET /readyz` with 200 within
/// `timeout`.
pub async fn is_ready(http: &reqwest::Client, base: &str, timeout: Duration) -> bool {
    let answer = http
        .get(format!("{base}/readyz"))
        .timeout(timeout)
        .send()
        .await;
    matches!(answer, Ok(r) if r.status().as_u16() == 200)
}

/// A scenario's database.
#[derive(Debug, Clone)]
pub struct Database {
    /// Its name.
    pub name: String,
    /// `DATABASE_URL` for it.
    pub url: String,
}

async fn admin_connection() -> Result<sqlx::PgConnection, String> {
    let admin = admin_url();
    let opts = PgConnectOptions::from_str(&admin).map_err(|e| format!("TEST_DATABASE_URL: {e}"))?;
    opts.connect().await.map_err(|e| {
        format!("PostgreSQL must be reachable at {admin} (set TEST_DATABASE_URL): {e}")
    })
}

/// Creates a fresh database for a scenario on the test server.
///
/// The harness creates every database before any scenario starts and drops
/// them after all have finished: CREATE and DROP DATABASE hold a transaction
/// id for seconds, and the projectors of every database on the server wait
/// for the oldest running transaction (they read below the cluster-wide
/// snapshot xmin), so doing either while a scenario runs stalls its read models.
pub async fn create_database(scenario: &str) -> Result<Database, String> {
    let admin = admin_url();
    let name = format!(
        "dispatch_e2e_{}_{}",
        scenario.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        uuid::Uuid::new_v4().simple()
    );
    let mut conn = admin_connection().await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
    conn.close().await.ok();
    let url = format!(
        "{}/{name}",
        admin.rsplit_once('/').map_or(admin.as_str(), |x| x.0)
    );
    Ok(Database { name, url })
}

/// Drops a scenario's database.
pub async fn drop_database(name: &str) {
    if let Ok(mut conn) = admin_connection().await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
        conn.close().await.ok();
    }
}
