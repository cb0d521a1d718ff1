//! The peer: the same command mix through stock cqrs-es + postgres-es
//! (`CqrsFramework::execute_with_metadata` over `PostgresEventRepository`),
//! in process, no HTTP, on its own database with postgres-es's own schema
//! (its README's `db/init.sql`). Our `Job` aggregate and `JobServices`; the
//! facts our application resolves (technician profile, job id) are filled in
//! here the same way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::load::LoadResult;
use crate::mix::{MixSpec, Who};
use dispatch_api::domain::job::{Job, JobCommand, JobServices, TechnicianProfile};
use dispatch_api::domain::technician::Shift;
use dispatch_api::domain::{Actor, Issued, Role};
use dispatch_api::store::hash::sha256_hex;

/// postgres-es 0.5's schema (`db/init.sql`: events and snapshots).
pub const SCHEMA: &str = "
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
)";

/// Creates postgres-es's tables.
pub async fn create_schema(pool: &PgPool) -> anyhow::Result<()> {
    for stmt in SCHEMA.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::query(stmt).execute(pool).await?;
    }
    Ok(())
}

fn profile(tech: &str) -> TechnicianProfile {
    TechnicianProfile {
        technician_id: tech.to_string(),
        active: true,
        skills: vec!["automatic_doors".into()],
        certifications: vec![(
            "AAADM".into(),
            NaiveDate::from_ymd_opt(2030, 6, 30).expect("date"),
        )],
        shift: Shift::Available,
        labor_rate_cents: 9000,
    }
}

/// Runs the mix with `clients` concurrent tasks, as fast as the framework answers.
pub async fn run(
    pool: PgPool,
    services: JobServices,
    mix: &MixSpec,
    tag: &str,
    clients: usize,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<LoadResult> {
    let cqrs = Arc::new(postgres_es::postgres_cqrs::<Job>(pool, vec![], services));
    let start = Instant::now();
    let warm_until = start + warmup;
    let end = warm_until + measure;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let cqrs = cqrs.clone();
        let mix = mix.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let tech = format!("bench-tech-{c}");
            let agent = Actor::new(Role::Agent, format!("bench-agent-{c}"));
            let desk = Actor::new(Role::Dispatcher, format!("bench-desk-{c}"));
            let tech_actor = Actor::technician(tech.clone(), tech.clone());
            let evidence: Vec<(String, String)> = mix
                .evidence
                .iter()
                .map(|k| (k.clone(), sha256_hex(format!("{k}{c}").as_bytes())))
                .collect();
            let mut res = LoadResult::default();
            let mut job_n = 0usize;
            'jobs: loop {
                let site = format!("{tag}-c{c}-j{job_n}");
                let job_id = Uuid::new_v4().to_string();
                let steps = mix.lifecycle(&site, &tech, &evidence, &format!("INV-{site}"));
                for (i, step) in steps.into_iter().enumerate() {
                    if Instant::now() >= end {
                        break 'jobs;
                    }
                    let mut command = match JobCommand::decode(step.command, step.body) {
                        Ok(Some(c)) => c,
                        other => {
                            res.errors += 1;
                            res.first_errors
                                .push(format!("{}: does not decode: {other:?}", step.command));
                            break 'jobs;
                        }
                    };
                    match &mut command {
                        JobCommand::OpenJob(o) => o.job_id = job_id.clone(),
                        JobCommand::OfferJob(o) => o.technician = Some(profile(&tech)),
                        _ => {}
                    }
                    let by = match step.who {
                        Who::Agent => agent.clone(),
                        Who::Tech => tech_actor.clone(),
                        Who::Desk => desk.clone(),
                    };
                    let metadata = HashMap::from([
                        ("actor".to_string(), by.id.clone()),
                        ("command".to_string(), step.command.to_string()),
                        (
                            "idempotency_key".to_string(),
                            format!("{tag}-{c}-{job_n}-{i}"),
                        ),
                        ("correlation_id".to_string(), Uuid::new_v4().to_string()),
                        ("occurred_at".to_string(), Utc::now().to_rfc3339()),
                    ]);
                    let sent = Instant::now();
                    let r = cqrs
                        .execute_with_metadata(
                            &job_id,
                            Issued::new(by, Utc::now(), command),
                            metadata,
                        )
                        .await;
                    let done = Instant::now();
                    match r {
                        Ok(()) => {
                            res.all_ok += 1;
                            if sent >= warm_until && done <= end {
                                res.ok += 1;
                                res.latencies.push(done - sent);
                            }
                        }
                        Err(e) => {
                            res.errors += 1;
                            if res.first_errors.len() < 3 {
                                res.first_errors.push(format!("{}: {e}", step.command));
                            }
                            job_n += 1;
                            continue 'jobs;
                        }
                    }
                }
                job_n += 1;
            }
            res
        }));
    }
    LoadResult::combine(tasks, measure, "stock").await
}
