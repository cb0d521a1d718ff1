//! The physical limit: `pgbench` running a one-row insert into an events
//! table identical to the service's (same migrations: indexes and triggers,
//! sessions set up as the service's are), with the same client count and
//! duration.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;

use crate::stats::Samples;
use dispatch_api::db::plain_loopback;
use dispatch_api::store::wake::WAKE_AFTER_COMMIT;

/// What pgbench reported.
#[derive(Debug, Clone, Default)]
pub struct PgbenchResult {
    /// Transactions per second (without initial connection time).
    pub tps: f64,
    /// Latency of a sample of transactions (`--log --sampling-rate`).
    pub latencies: Samples,
}

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Writes the one-statement script: a realistic event row (payload and
/// metadata as the service writes them), a unique aggregate id per insert.
pub fn write_script(
    dir: &Path,
    payload: &str,
    metadata: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("pgbench_insert.sql");
    let sql = format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id, prev_hash, hash) \
         VALUES ('job', gen_random_uuid()::text, 1, 'ChecklistItemCompleted', '1.0', {}, {}, gen_random_uuid(), {}, {});\n",
        sql_literal(payload),
        sql_literal(metadata),
        sql_literal(&"0".repeat(64)),
        sql_literal("5f1b5bd6a1f7a3c1d4e2f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9"),
    );
    std::fs::write(&path, sql)?;
    Ok(path)
}

/// Whether pgbench is installed.
pub fn available() -> bool {
    std::process::Command::new("pgbench")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `pgbench -n -c N -j 2 -T secs -f script` against `url`.
pub async fn run(
    url: &str,
    script: &Path,
    clients: usize,
    secs: u64,
    log_dir: &Path,
) -> anyhow::Result<PgbenchResult> {
    if log_dir.exists() {
        std::fs::remove_dir_all(log_dir)?;
    }
    std::fs::create_dir_all(log_dir)?;
    let mut cmd = tokio::process::Command::new("pgbench");
    if plain_loopback(url) {
        cmd.env("PGSSLMODE", "disable");
    }
    let out = cmd
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &secs.max(1).to_string(),
        ])
        .arg("-f")
        .arg(script)
        .args(["--log", "--sampling-rate", "0.05"])
        .arg(format!("--log-prefix={}", log_dir.join("pgb").display()))
        .arg(url)
        // Its sessions insert the way the service's do (db::connect): the
        // trigger leaves the wake-up to after commit (migration 0006).
        .env(
            "PGOPTIONS",
            format!("-c {}=on -c jit=off", WAKE_AFTER_COMMIT),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run pgbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "pgbench failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let tps = stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench's output: {stdout}"))?;
    let mut latencies = Samples::new();
    for entry in std::fs::read_dir(log_dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            // client_id transaction_no time script_no time_epoch time_us
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u32>().ok())
            {
                latencies.push_micros(us);
            }
        }
    }
    Ok(PgbenchResult { tps, latencies })
}
