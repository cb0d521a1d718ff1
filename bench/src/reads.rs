//! Strong read (`GET /v1/jobs/{id}`) and audit (`GET /v1/jobs/{id}/audit`)
//! over HTTP, each against a raw `SELECT` of the same rows.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::clients::Identity;
use crate::mix::{intake_body, open_body};
use crate::stats::Samples;

/// The store's own stream query (what the service reads for a job).
const RAW_SELECT: &str = "SELECT sequence, global_position, event_id, event_type, event_version, \
     payload, metadata, prev_hash, hash FROM events \
     WHERE aggregate_type = 'job' AND aggregate_id = $1 ORDER BY sequence";

/// Builds a job with `events` events over HTTP: on site, then notes.
pub async fn build_long_job(
    base: &str,
    id: &Identity,
    events: usize,
    tag: &str,
) -> anyhow::Result<String> {
    let http = reqwest::Client::new();
    let post = |url: String, key: &str, idem: String, body: serde_json::Value| {
        let req = http
            .post(url)
            .bearer_auth(key)
            .header("idempotency-key", idem)
            .json(&body);
        async move {
            let r = req.send().await?;
            let status = r.status();
            let v: serde_json::Value = r.json().await?;
            anyhow::ensure!(status.is_success(), "{status}: {v}");
            Ok::<_, anyhow::Error>(v)
        }
    };
    let opened = post(
        format!("{base}/v1/jobs"),
        &id.agent,
        format!("{tag}-open"),
        open_body(&format!("{tag}-site")),
    )
    .await?;
    let job = opened["job_id"].as_str().unwrap_or_default().to_string();
    let eta = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let steps: Vec<(&str, &str, serde_json::Value)> = vec![
        ("record_intake", &id.agent, intake_body()),
        ("triage_job", &id.agent, serde_json::json!({})),
        (
            "offer_job",
            &id.agent,
            serde_json::json!({"technician_id": id.tech_id}),
        ),
        ("accept_offer", &id.tech, serde_json::json!({"eta": eta})),
        ("start_travel", &id.tech, serde_json::json!({})),
        ("check_in", &id.tech, serde_json::json!({"method": "app"})),
    ];
    for (i, (cmd, key, body)) in steps.into_iter().enumerate() {
        post(
            format!("{base}/v1/jobs/{job}/commands/{cmd}"),
            key,
            format!("{tag}-{i}"),
            body,
        )
        .await?;
    }
    for n in 7..=events {
        post(
            format!("{base}/v1/jobs/{job}/commands/add_note"),
            &id.agent,
            format!("{tag}-note-{n}"),
            serde_json::json!({"text": format!("update {n}: customer asked for the ETA; technician on site")}),
        )
        .await?;
    }
    Ok(job)
}

/// `GET /v1/jobs/{id}` latencies, and the raw SELECT's, interleaved.
pub async fn strong_read(
    base: &str,
    key: &str,
    pool: &PgPool,
    job: &str,
    samples: usize,
) -> anyhow::Result<(Samples, Samples)> {
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let (mut ours, mut raw) = (Samples::new(), Samples::new());
    for i in 0..samples + samples / 10 {
        let t = Instant::now();
        let r = http
            .get(format!("{base}/v1/jobs/{job}"))
            .bearer_auth(key)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "GET job: {}", r.status());
        let _ = r.bytes().await?;
        let ours_t = t.elapsed();
        let t = Instant::now();
        let rows = sqlx::query(RAW_SELECT).bind(job).fetch_all(pool).await?;
        let raw_t = t.elapsed();
        anyhow::ensure!(!rows.is_empty(), "no rows");
        if i >= samples / 10 {
            ours.push(ours_t);
            raw.push(raw_t);
        }
    }
    Ok((ours, raw))
}

/// `GET /v1/jobs/{id}/audit` times (must verify), and the raw SELECT's.
pub async fn audit(
    base: &str,
    key: &str,
    pool: &PgPool,
    job: &str,
    expected: u64,
    runs: usize,
) -> anyhow::Result<(Samples, Samples)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let (mut ours, mut raw) = (Samples::new(), Samples::new());
    for i in 0..runs + 1 {
        let t = Instant::now();
        let r = http
            .get(format!("{base}/v1/jobs/{job}/audit"))
            .bearer_auth(key)
            .send()
            .await?;
        let status = r.status();
        let v: serde_json::Value = r.json().await?;
        let ours_t = t.elapsed();
        anyhow::ensure!(
            status.is_success() && v["verified"] == true && v["events"].as_u64() == Some(expected),
            "the generated job does not verify: {status} {v}"
        );
        let t = Instant::now();
        let rows = sqlx::query(RAW_SELECT).bind(job).fetch_all(pool).await?;
        let raw_t = t.elapsed();
        anyhow::ensure!(
            rows.len() as u64 == expected,
            "raw select saw {} rows",
            rows.len()
        );
        if i > 0 {
            ours.push(ours_t);
            raw.push(raw_t);
        }
    }
    Ok((ours, raw))
}
