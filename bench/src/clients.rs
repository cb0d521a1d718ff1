//! The benchmark's clients: each one's keys (created in the database
//! before the service starts) and its technician and evidence files
//! (registered over HTTP). The fault suite drives the same clients: it
//! compiles this file and `mix.rs` into its own test target (see
//! `e2e/faults/mod.rs` and docs/decisions.md, "The benchmark in its own
//! crate"), so this file names the service only as `dispatch_api::…` and its
//! sibling only as `super::mix`.

use std::time::Duration;

use sqlx::PgPool;

use super::mix::{technician_body, MixSpec};
use dispatch_api::app::keys;
use dispatch_api::domain::Role;
use dispatch_api::store::hash::sha256_hex;

/// One client's identity: its keys and its technician.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Client index.
    pub index: usize,
    /// Agent key.
    pub agent: String,
    /// Technician key (bound to `tech_id`).
    pub tech: String,
    /// Dispatcher key.
    pub desk: String,
    /// The technician this client's jobs are offered to.
    pub tech_id: String,
    /// Uploaded evidence: (kind, sha256).
    pub evidence: Vec<(String, String)>,
}

/// Creates the keys of clients `0..n` in the database (before the service starts).
pub async fn create_identities(pool: &PgPool, n: usize) -> anyhow::Result<Vec<Identity>> {
    let mut out = Vec::with_capacity(n);
    for c in 0..n {
        let tech_id = format!("bench-tech-{c}");
        let make = |role, name: String, tech: Option<String>| async move {
            keys::create_key(pool, role, &name, tech.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("key {name}: {e}"))
        };
        out.push(Identity {
            index: c,
            agent: make(Role::Agent, format!("bench-agent-{c}"), None).await?,
            tech: make(Role::Technician, tech_id.clone(), Some(tech_id.clone())).await?,
            desk: make(Role::Dispatcher, format!("bench-desk-{c}"), None).await?,
            tech_id,
            evidence: Vec::new(),
        });
    }
    Ok(out)
}

/// The HTTP client every driver uses: keep-alive, no Nagle, a generous timeout.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(2)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Registers each client's technician and uploads its evidence files
/// (idempotent: safe to run again on the same database).
pub async fn prepare(base: &str, ids: &mut [Identity], mix: &MixSpec) -> anyhow::Result<()> {
    let http = client()?;
    for id in ids.iter_mut() {
        let r = http
            .post(format!("{base}/v1/technicians"))
            .bearer_auth(&id.desk)
            .header("idempotency-key", format!("setup-tech-{}", id.index))
            .json(&technician_body(&id.tech_id))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().as_u16() == 201,
            "registering {}: {} {}",
            id.tech_id,
            r.status(),
            r.text().await.unwrap_or_default()
        );
        id.evidence.clear();
        for kind in &mix.evidence {
            let content = format!("bench evidence {kind} of client {}", id.index);
            let r = http
                .post(format!("{base}/v1/evidence"))
                .bearer_auth(&id.tech)
                .header(
                    "idempotency-key",
                    format!("setup-evidence-{}-{kind}", id.index),
                )
                .header("content-type", "image/jpeg")
                .body(content.clone())
                .send()
                .await?;
            anyhow::ensure!(
                r.status().is_success(),
                "uploading evidence: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
            id.evidence
                .push((kind.clone(), sha256_hex(content.as_bytes())));
        }
    }
    Ok(())
}
