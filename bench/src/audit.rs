//! The whole-store audit: the real binary's `dispatch-api audit verify
//! --all --json` over the generated store (every chain, MAC, head and
//! signed checkpoint), against a plain `SELECT * FROM events` of the same
//! rows in the same run (`rebuild::plain_scan`).

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::Context;
use serde_json::Value;
use sqlx::PgPool;
use tokio::process::Command;

use crate::rebuild::plain_scan;

/// Rates in events (rows) per second.
#[derive(Debug, Clone, Default)]
pub struct AuditResult {
    /// Events the audit verified.
    pub events: u64,
    /// Streams it verified.
    pub streams: u64,
    /// Wall time of the `audit verify --all` process, seconds.
    pub seconds: f64,
    /// Events per second of that wall time.
    pub rate: f64,
    /// The plain scan's rows per second.
    pub scan_rate: f64,
    /// Streams that failed and checkpoint objects rejected (must be 0).
    pub failures: u64,
}

/// Where the audited store and what vouches for it are.
pub struct AuditTarget<'a> {
    /// The `dispatch-api` binary.
    pub exe: &'a Path,
    /// The store's database.
    pub database_url: &'a str,
    /// A pool on it (the scans).
    pub pool: &'a PgPool,
    /// The keyring file the store's events were keyed with.
    pub keyring: &'a Path,
    /// The evidence store holding its signed checkpoints.
    pub evidence: &'a Path,
    /// The SOP library.
    pub sops_dir: &'a Path,
    /// A data folder for the CLI.
    pub data_dir: &'a Path,
}

/// One untimed scan (the cache as the audit will find it), the timed scan,
/// then the audit, timed from the outside.
pub async fn measure(
    target: &AuditTarget<'_>,
    progress: impl Fn(&str),
) -> anyhow::Result<AuditResult> {
    plain_scan(target.pool).await?;
    let (n, secs) = plain_scan(target.pool).await?;
    let scan_rate = n as f64 / secs;
    progress(&format!(
        "plain scan: {n} rows in {secs:.2} s ({scan_rate:.0} rows/s)"
    ));
    let started = Instant::now();
    let out = Command::new(target.exe)
        .args(["audit", "verify", "--all", "--json"])
        .env("DATABASE_URL", target.database_url)
        .env("DISPATCH_DATA_DIR", target.data_dir)
        .env("DISPATCH_EVIDENCE_STORE", target.evidence)
        .env("DISPATCH_SOPS_DIR", target.sops_dir)
        .env("DISPATCH_CHAIN_KEYS_FILE", target.keyring)
        .env_remove("DISPATCH_CHAIN_KEYRING")
        .env("DISPATCH_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run `{} audit verify`", target.exe.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let doc: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`audit verify --all --json` exited {} without a document: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let count = |k: &str| doc[k].as_u64().unwrap_or(0);
    let rejected = doc["checkpoints"]["rejected"]
        .as_array()
        .map_or(0, |a| a.len() as u64);
    let res = AuditResult {
        events: count("events"),
        streams: count("streams"),
        seconds,
        rate: count("events") as f64 / seconds,
        scan_rate,
        failures: count("failed_streams") + rejected,
    };
    progress(&format!(
        "audit verify --all: {} streams, {} events in {seconds:.2} s ({:.0} events/s, {:.2}x the scan); exit {}, {} failure(s)",
        res.streams,
        res.events,
        res.rate,
        res.rate / scan_rate,
        out.status.code().unwrap_or(-1),
        res.failures
    ));
    Ok(res)
}
