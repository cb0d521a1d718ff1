//! The service under test: the real `dispatch-api` binary (`serve`) on a
//! free loopback port, its own database, projectors and timers running.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

/// A running `dispatch-api serve` child.
pub struct Service {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its process id.
    pub pid: u32,
    log: PathBuf,
}

/// Resident memory of a process, in kB: (current, high-water mark).
pub fn memory_kb(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces): state is #3.
    let rest = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of the children a process has waited for (cutime + cstime).
fn children_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let rest = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(13) + ticks(14)) / 100.0
}

/// CPU seconds used so far by every process named `name` (e.g. `postgres`),
/// and by the children they reaped (backends that have exited).
pub fn cpu_seconds_of(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .map(|pid| cpu_seconds(pid) + children_cpu_seconds(pid))
        .sum()
}

/// CPU used by the service, PostgreSQL, nats-server (the fan-out's broker,
/// when it runs on this machine) and this process over an interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuMeter {
    service: f64,
    postgres: f64,
    driver: f64,
    nats: f64,
}

/// Milliseconds of CPU per operation of each process.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuPerOp {
    /// The service under test.
    pub service: f64,
    /// Every PostgreSQL process.
    pub postgres: f64,
    /// This process: the load driver, the stock framework, the receivers.
    pub driver: f64,
    /// nats-server (zero when it did not run).
    pub nats: f64,
}

impl CpuMeter {
    /// Reads the counters now (`service`: the service's pid, if any).
    pub fn now(service: Option<u32>) -> CpuMeter {
        CpuMeter {
            service: service.map_or(0.0, cpu_seconds),
            postgres: cpu_seconds_of("postgres"),
            driver: cpu_seconds(std::process::id()),
            nats: cpu_seconds_of("nats-server"),
        }
    }

    /// Milliseconds of CPU per operation since `start`.
    pub fn per_op_ms(&self, start: &CpuMeter, ops: usize) -> CpuPerOp {
        let n = ops.max(1) as f64;
        let per = |now: f64, then: f64| (now - then) * 1000.0 / n;
        CpuPerOp {
            service: per(self.service, start.service),
            postgres: per(self.postgres, start.postgres),
            driver: per(self.driver, start.driver),
            nats: per(self.nats, start.nats),
        }
    }
}

/// The `dispatch-api` binary to measure: `explicit` (`--service-bin`,
/// `DISPATCH_BENCH_SERVICE_BIN`) if given, else `dispatch-api` beside this
/// executable — where cargo puts it when it builds the workspace (`cargo
/// build --release --workspace` builds both; `cargo build -p dispatch-bench`
/// alone does not rebuild the service).
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("cannot find the running binary")?
            .with_file_name(format!("dispatch-api{}", std::env::consts::EXE_SUFFIX)),
    };
    anyhow::ensure!(
        path.is_file(),
        "no service binary at {}: build it with `cargo build --release --workspace`, or name it with --service-bin",
        path.display()
    );
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Service {
    /// Starts the binary `exe` against `database_url` (events keyed with the
    /// keyring in file `keyring`, and the settings `env` besides) and waits
    /// until `/readyz` answers.
    pub async fn start(
        exe: &Path,
        database_url: &str,
        sops_dir: &Path,
        work_dir: &Path,
        keyring: &Path,
        (pool_size, writers): (u32, u32),
        env: &[(String, String)],
    ) -> anyhow::Result<Service> {
        let port = free_port()?;
        std::fs::create_dir_all(work_dir)?;
        let log = work_dir.join(format!("service-{port}.log"));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = Command::new(exe)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("DISPATCH_LISTEN", format!("127.0.0.1:{port}"))
            .env("DISPATCH_DATA_DIR", work_dir)
            .env("DISPATCH_EVIDENCE_STORE", work_dir.join("evidence"))
            .env("DISPATCH_SOPS_DIR", sops_dir)
            .env("DISPATCH_CHAIN_KEYS_FILE", keyring)
            .env_remove("DISPATCH_CHAIN_KEYRING")
            .env("DISPATCH_DB_POOL_SIZE", pool_size.to_string())
            .env("DISPATCH_DB_WRITERS", writers.to_string())
            .env("DISPATCH_CLOCK", "system")
            .env("DISPATCH_LOG_FORMAT", "json")
            // Thousands of calls a second per key: the gate still checks the
            // allowlist and records every call, but spends no budget.
            .env("DISPATCH_TOOL_RATE_PER_MINUTE", "0")
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVICE_LOG").unwrap_or_else(|_| "info".into()),
            )
            // Events go to NATS only where `env` says so (never to a stream
            // named in the bench's own environment).
            .env_remove("DISPATCH_NATS_URL")
            .env_remove("DISPATCH_NATS_STREAM")
            .env_remove("DISPATCH_NATS_SUBJECT_PREFIX")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start `{} serve`", exe.display()))?;
        let pid = child.id().unwrap_or_default();
        let mut svc = Service {
            child,
            base: format!("http://127.0.0.1:{port}"),
            pid,
            log,
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Some(status) = svc.child.try_wait()? {
                anyhow::bail!(
                    "the service exited at start ({status}):\n{}",
                    svc.log_tail()
                );
            }
            if let Ok(r) = client.get(format!("{}/readyz", svc.base)).send().await {
                if r.status().is_success() {
                    return Ok(svc);
                }
            }
            if started.elapsed() > Duration::from_secs(90) {
                anyhow::bail!("the service did not become ready:\n{}", svc.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Lines of its log that are warnings or errors (for diagnostics).
    pub fn log_problems(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains("\"level\":\"WARN\""))
            .take(5)
            .map(|l| l.chars().take(400).collect())
            .collect()
    }

    /// (VmRSS, VmHWM) in kB.
    pub fn memory_kb(&self) -> Option<(u64, u64)> {
        memory_kb(self.pid)
    }

    /// SIGTERM (drains in-flight requests), then waits; kills after 20 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(self.pid.to_string())
                .status();
            if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
                .await
                .is_err()
            {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}
