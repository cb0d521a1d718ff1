//! Fast generation of realistic event streams for the bulk figures (rebuild
//! over 1 M events, audit of a 10,000-event job, the 10 M-event store).
//!
//! Each job's events come from the real domain: the command mix is decided
//! once by `Job::decide` with stand-in ids, and every event is turned into
//! three templates — the stored payload, the stored metadata, and the
//! canonical hash input of `store::hash_input` — whose slots (job id,
//! site, technician, event id, previous hash, sequence, correlation id) are
//! filled per generated event. The payloads therefore decode as our
//! `JobEvent`s, and every hash is the SHA-256 of the canonical envelope
//! chained to the previous one, exactly as `store::append` writes it (the
//! first instance of every template is checked against the store's own
//! hashing), keyed with the run's chain keyring as `store::append` keys it
//! (key id and MAC), so that the served binary verifies them. Rows go in
//! with `COPY`, interleaving `interleave` jobs at a time the way concurrent
//! work interleaves streams in the global order.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use rand::Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPoolCopyExt;
use sqlx::PgPool;
use uuid::Uuid;

use crate::mix::{MixSpec, Who};
use cqrs_es::Aggregate;

use dispatch_api::domain::job::{Job, JobEvent, JobServices};
use dispatch_api::domain::policy::DispatchPolicy;
use dispatch_api::domain::sop::SopLibrary;
use dispatch_api::domain::technician::{RegisterTechnician, Technician, TechnicianCommand};
use dispatch_api::domain::{Actor, Issued, Role};
use dispatch_api::store::chain::ChainKeys;
use dispatch_api::store::hash::{sha256_canonical, sha256_hex, GENESIS_HASH};
use dispatch_api::store::{self, EventMeta, NewEvent, StreamState};

mod template;

use template::{job_template, split_event, EventTemplate, JobTemplate, Vars};

/// What a generator run wrote.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// Events written.
    pub events: u64,
    /// Job streams.
    pub jobs: u64,
    /// Seconds.
    pub seconds: f64,
    /// The id of the last long job (for [`Generator::long_job`]).
    pub job_id: Option<String>,
}

/// Makes event streams.
pub struct Generator {
    templates: Vec<Arc<JobTemplate>>,
    long_prefix: Arc<JobTemplate>,
    note: EventTemplate,
    technicians: usize,
    keys: Arc<ChainKeys>,
}

const EVENT_COLUMNS: &str =
    "aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id, prev_hash, hash, key_id, mac";

fn fast_uuid(rng: &mut impl Rng) -> String {
    uuid::Builder::from_random_bytes(rng.gen())
        .into_uuid()
        .to_string()
}

impl Generator {
    /// Builds the templates: `variants` complete lifecycles decided at
    /// different times, and a long job (up to on site, then notes). Events
    /// are keyed with `keys` (the served binary must hold the same keyring).
    pub fn new(
        sops: Arc<SopLibrary>,
        mix: &MixSpec,
        variants: usize,
        technicians: usize,
        keys: Arc<ChainKeys>,
    ) -> anyhow::Result<Generator> {
        let services = JobServices {
            sops,
            policy: Arc::new(DispatchPolicy::default()),
        };
        let evidence: Vec<(String, String)> = mix
            .evidence
            .iter()
            .map(|k| (k.clone(), sha256_hex(k.as_bytes())))
            .collect();
        let base = Utc
            .with_ymd_and_hms(2026, 1, 5, 8, 0, 0)
            .single()
            .expect("date");
        let mut templates = Vec::new();
        for v in 0..variants.max(1) {
            let start = base + Duration::hours(7 * v as i64);
            let steps = mix.lifecycle(
                "@@SITE@@",
                "@@TECH@@",
                &evidence,
                &format!("INV-{v}-@@JOB@@"),
            );
            templates.push(Arc::new(job_template(&services, steps, start)?));
        }
        let mut prefix = mix.lifecycle("@@SITE@@", "@@TECH@@", &evidence, "INV");
        prefix.truncate(7); // open … check_in: on site
        prefix.push(crate::mix::Step {
            command: "add_note",
            who: Who::Agent,
            body: serde_json::json!({"text": "customer called back: door still holding open; technician on site"}),
        });
        // Decided just now: its SLAs lie ahead, so the service's timers leave it alone.
        let mut long = job_template(&services, prefix, Utc::now() - Duration::minutes(30))?;
        let note = long.events.pop().expect("the note");
        long.doors.pop();
        Ok(Generator {
            templates,
            long_prefix: Arc::new(long),
            note,
            technicians: technicians.max(1),
            keys,
        })
    }

    /// A typical stored event (payload, metadata) for pgbench's insert.
    pub fn sample_row(&self) -> (String, String) {
        let t = &self.templates[0];
        let e = t
            .events
            .iter()
            .find(|e| e.event_type == "ChecklistItemCompleted")
            .unwrap_or(&t.events[0]);
        let v = Vars {
            job: "3f6d2c4e-8a0b-4c1d-9e2f-1a2b3c4d5e6f",
            site: "gen-site-1",
            tech: "gen-tech-1",
            event_id: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
            prev: "0000000000000000000000000000000000000000000000000000000000000000",
            seq: 8,
            corr: "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
        };
        let (mut p, mut m) = (String::new(), String::new());
        e.payload_raw.render(&v, &mut p);
        e.metadata_raw.render(&v, &mut m);
        (p, m)
    }

    /// Registers the generator's technicians through the store (real hashes, heads).
    pub async fn register_technicians(&self, pool: &PgPool) -> anyhow::Result<()> {
        let mut conn = pool.acquire().await?;
        for k in 0..self.technicians {
            let id = format!("gen-tech-{k}");
            let exists: Option<i64> = sqlx::query_scalar("SELECT sequence FROM stream_heads WHERE aggregate_type = 'technician' AND aggregate_id = $1")
                .bind(&id)
                .fetch_optional(&mut *conn)
                .await?;
            if exists.is_some() {
                continue;
            }
            let cmd: RegisterTechnician = serde_json::from_value(crate::mix::technician_body(&id))?;
            let at = Utc
                .with_ymd_and_hms(2026, 1, 1, 8, 0, 0)
                .single()
                .expect("date");
            let by = Actor::new(Role::Dispatcher, "gen-desk");
            let events = Technician::default()
                .decide(&Issued::new(
                    by.clone(),
                    at,
                    TechnicianCommand::RegisterTechnician(cmd),
                ))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let mut new = Vec::new();
            for e in &events {
                use cqrs_es::DomainEvent;
                let (event_type, payload) = split_event(e)?;
                new.push(NewEvent {
                    event_type,
                    event_version: e.event_version(),
                    payload,
                    meta: EventMeta {
                        occurred_at: at,
                        actor: by.clone(),
                        tool_invocation_id: None,
                        idempotency_key: Some(format!("gen-register-{id}")),
                        correlation_id: Some(Uuid::new_v4()),
                        trace_id: None,
                        causation_id: None,
                        sop: None,
                        command: Some("register_technician".into()),
                    },
                });
            }
            let mut tx = pool.begin().await?;
            store::append(
                &mut tx,
                &self.keys,
                Technician::TYPE,
                &id,
                &StreamState::default(),
                new,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Writes `events` events of complete job lifecycles (the last jobs may
    /// stop part-way), `interleave` jobs at a time, `per_tx` events per COPY
    /// transaction. `progress` gets the running count after each transaction.
    pub async fn jobs(
        self: &Arc<Self>,
        pool: &PgPool,
        events: u64,
        interleave: usize,
        per_tx: u64,
        progress: impl Fn(u64) + Send,
    ) -> anyhow::Result<Generated> {
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(4);
        let gen = self.clone();
        let producer =
            tokio::task::spawn_blocking(move || gen.produce(events, interleave, per_tx, tx));
        let mut written = 0u64;
        let mut tail = None;
        let mut copy: Option<sqlx::postgres::PgCopyIn<sqlx::pool::PoolConnection<sqlx::Postgres>>> =
            None;
        let result: anyhow::Result<()> = async {
            while let Some(chunk) = rx.recv().await {
                match chunk {
                    Chunk::Events(bytes, n) => {
                        let c = match copy.as_mut() {
                            Some(c) => c,
                            None => copy.insert(
                                pool.copy_in_raw(&format!(
                                    "COPY events ({EVENT_COLUMNS}) FROM STDIN"
                                ))
                                .await?,
                            ),
                        };
                        c.send(bytes).await?;
                        written += n;
                    }
                    Chunk::Commit => {
                        if let Some(c) = copy.take() {
                            c.finish().await?;
                        }
                        progress(written);
                    }
                    Chunk::Heads(h, d) => tail = Some((h, d)),
                }
            }
            if let Some(c) = copy.take() {
                c.finish().await?;
            }
            Ok(())
        }
        .await;
        drop(rx);
        let generated = producer.await??;
        result?;
        if let Some((heads, doors)) = tail {
            let mut c = pool
                .copy_in_raw(
                    "COPY stream_heads (aggregate_type, aggregate_id, sequence, hash) FROM STDIN",
                )
                .await?;
            c.send(heads).await?;
            c.finish().await?;
            let mut c = pool
                .copy_in_raw("COPY job_doors (job_id, site_id, door_id, state, technician_id, completed_at, updated_at) FROM STDIN")
                .await?;
            c.send(doors).await?;
            c.finish().await?;
        }
        Ok(Generated {
            events: written,
            seconds: started.elapsed().as_secs_f64(),
            ..generated
        })
    }

    /// One job of `events` events (on site, then notes), in one transaction.
    pub async fn long_job(
        self: &Arc<Self>,
        pool: &PgPool,
        events: u64,
    ) -> anyhow::Result<Generated> {
        let started = Instant::now();
        let mut rng = rand::thread_rng();
        let job = fast_uuid(&mut rng);
        let site = format!("gen-long-site-{}", &job[..8]);
        let tech = "gen-tech-0".to_string();
        let corr = fast_uuid(&mut rng);
        let mut buf = String::with_capacity(events as usize * 1200);
        let mut prev = GENESIS_HASH.to_string();
        let mut scratch = String::new();
        let mut seq = 0i64;
        let prefix = self.long_prefix.clone();
        let mut verified = 0;
        for i in 0..events as usize {
            let t = if i < prefix.events.len() {
                &prefix.events[i]
            } else {
                &self.note
            };
            seq += 1;
            let evid = fast_uuid(&mut rng);
            let v = Vars {
                job: &job,
                site: &site,
                tech: &tech,
                event_id: &evid,
                prev: &prev,
                seq,
                corr: &corr,
            };
            let hash = emit(&self.keys, t, &v, &mut buf, &mut scratch);
            if verified < prefix.events.len() + 1 {
                check(t, &v, &hash)?;
                verified += 1;
            }
            prev = hash;
        }
        let mut conn = pool.acquire().await?;
        let mut c = conn
            .copy_in_raw(&format!("COPY events ({EVENT_COLUMNS}) FROM STDIN"))
            .await?;
        c.send(buf.into_bytes()).await?;
        c.finish().await?;
        sqlx::query("INSERT INTO stream_heads (aggregate_type, aggregate_id, sequence, hash) VALUES ('job', $1, $2, $3)")
            .bind(&job)
            .bind(seq)
            .bind(&prev)
            .execute(&mut *conn)
            .await?;
        sqlx::query("INSERT INTO job_doors (job_id, site_id, door_id, state, technician_id, updated_at) VALUES ($1, $2, 'entrance-1', 'on_site', $3, now())")
            .bind(&job)
            .bind(&site)
            .bind(&tech)
            .execute(&mut *conn)
            .await?;
        Ok(Generated {
            events,
            jobs: 1,
            seconds: started.elapsed().as_secs_f64(),
            job_id: Some(job),
        })
    }

    fn produce(
        &self,
        events: u64,
        interleave: usize,
        per_tx: u64,
        tx: tokio::sync::mpsc::Sender<Chunk>,
    ) -> anyhow::Result<Generated> {
        use std::fmt::Write;
        struct Slot {
            template: usize,
            job: String,
            site: String,
            tech: String,
            corr: String,
            next: usize,
            prev: String,
        }
        let new_slot = |rng: &mut rand::rngs::ThreadRng, n: u64| Slot {
            template: n as usize % self.templates.len(),
            job: fast_uuid(rng),
            site: format!("gen-site-{n}"),
            tech: format!("gen-tech-{}", n as usize % self.technicians),
            corr: fast_uuid(rng),
            next: 0,
            prev: GENESIS_HASH.to_string(),
        };
        let close = |s: &Slot, heads: &mut String, doors: &mut String| {
            if s.next == 0 {
                return;
            }
            let t = &self.templates[s.template];
            let d = &t.doors[s.next - 1];
            let _ = writeln!(heads, "job\t{}\t{}\t{}", s.job, s.next, s.prev);
            let _ = writeln!(
                doors,
                "{}\t{}\tentrance-1\t{}\t{}\t{}\t{}",
                s.job,
                s.site,
                d.state,
                if d.has_tech { s.tech.as_str() } else { "\\N" },
                d.completed_at.as_deref().unwrap_or("\\N"),
                t.updated_at
            );
        };
        let send = |chunk: Chunk| {
            tx.blocking_send(chunk)
                .map_err(|_| anyhow::anyhow!("the COPY side stopped"))
        };
        let mut rng = rand::thread_rng();
        let mut jobs = 0u64;
        let mut slots: Vec<Slot> = Vec::new();
        let mut buf = String::with_capacity(4 << 20);
        let (mut heads, mut doors, mut scratch) = (String::new(), String::new(), String::new());
        let (mut written, mut in_tx) = (0u64, 0u64);
        let mut verified = std::collections::HashSet::new();
        let mut i = 0usize;
        while written < events {
            if slots.len() < interleave.max(1) {
                slots.push(new_slot(&mut rng, jobs));
                jobs += 1;
            }
            i = (i + 1) % slots.len();
            let s = &mut slots[i];
            let template = &self.templates[s.template];
            let t = &template.events[s.next];
            let evid = fast_uuid(&mut rng);
            let v = Vars {
                job: &s.job,
                site: &s.site,
                tech: &s.tech,
                event_id: &evid,
                prev: &s.prev,
                seq: s.next as i64 + 1,
                corr: &s.corr,
            };
            let hash = emit(&self.keys, t, &v, &mut buf, &mut scratch);
            if verified.insert((s.template, s.next)) {
                check(t, &v, &hash)?;
            }
            s.prev = hash;
            s.next += 1;
            written += 1;
            in_tx += 1;
            if s.next == template.events.len() {
                close(s, &mut heads, &mut doors);
                *s = new_slot(&mut rng, jobs);
                jobs += 1;
            }
            if buf.len() > (2 << 20) {
                let bytes =
                    std::mem::replace(&mut buf, String::with_capacity(4 << 20)).into_bytes();
                let lines = count_lines(&bytes);
                send(Chunk::Events(bytes, lines))?;
            }
            if in_tx >= per_tx {
                in_tx = 0;
                if !buf.is_empty() {
                    let bytes = std::mem::take(&mut buf).into_bytes();
                    let lines = count_lines(&bytes);
                    send(Chunk::Events(bytes, lines))?;
                }
                send(Chunk::Commit)?;
            }
        }
        for s in &slots {
            close(s, &mut heads, &mut doors);
        }
        if !buf.is_empty() {
            let bytes = std::mem::take(&mut buf).into_bytes();
            let lines = count_lines(&bytes);
            send(Chunk::Events(bytes, lines))?;
        }
        send(Chunk::Commit)?;
        send(Chunk::Heads(heads.into_bytes(), doors.into_bytes()))?;
        let started =
            slots.iter().filter(|s| s.next > 0).count() as u64 + jobs - slots.len() as u64;
        Ok(Generated {
            events: written,
            jobs: started,
            seconds: 0.0,
            job_id: None,
        })
    }
}

enum Chunk {
    Events(Vec<u8>, u64),
    Commit,
    Heads(Vec<u8>, Vec<u8>),
}

fn count_lines(b: &[u8]) -> u64 {
    b.iter().filter(|c| **c == b'\n').count() as u64
}

/// Appends one COPY line for the event (hashed, and keyed with `keys`);
/// returns its hash.
fn emit(
    keys: &ChainKeys,
    t: &EventTemplate,
    v: &Vars<'_>,
    buf: &mut String,
    scratch: &mut String,
) -> String {
    use std::fmt::Write;
    scratch.clear();
    t.envelope.render(v, scratch);
    let hash = hex::encode(Sha256::digest(scratch.as_bytes()));
    let _ = write!(
        buf,
        "job\t{}\t{}\t{}\t{}\t",
        v.job, v.seq, t.event_type, t.event_version
    );
    t.payload.render(v, buf);
    buf.push('\t');
    t.metadata.render(v, buf);
    let (key_id, mac) = keys.mac(Job::TYPE, v.job, v.seq, &hash);
    let _ = writeln!(
        buf,
        "\t{}\t{}\t{}\t{}\t{}",
        v.event_id, v.prev, hash, key_id, mac
    );
    hash
}

/// The fast path must hash exactly as the store does.
fn check(t: &EventTemplate, v: &Vars<'_>, hash: &str) -> anyhow::Result<()> {
    let (mut p, mut m) = (String::new(), String::new());
    t.payload_raw.render(v, &mut p);
    t.metadata_raw.render(v, &mut m);
    let payload: Value = serde_json::from_str(&p)?;
    let metadata: Value = serde_json::from_str(&m)?;
    let _: EventMeta = serde_json::from_value(metadata.clone())?;
    let mut tagged = serde_json::Map::new();
    tagged.insert(t.event_type.clone(), payload.clone());
    let _: JobEvent = serde_json::from_value(Value::Object(tagged))?;
    let envelope = store::Envelope {
        aggregate_type: Job::TYPE,
        aggregate_id: v.job,
        sequence: v.seq,
        event_id: v.event_id,
        event_type: &t.event_type,
        event_version: &t.event_version,
        prev_hash: v.prev,
    };
    let expected = sha256_canonical(&store::hash_input(&envelope, &payload, &metadata));
    anyhow::ensure!(
        expected == hash,
        "generated hash differs from the store's for {}",
        t.event_type
    );
    Ok(())
}

/// Marks every serving read-model table as having applied everything in the
/// store (bulk-loaded history the measured phase is not about).
pub async fn mark_projected(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE projection_checkpoints c SET last_tx = m.tx_id, last_pos = m.global_position, updated_at = now() \
         FROM (SELECT tx_id, global_position FROM events ORDER BY tx_id DESC, global_position DESC LIMIT 1) m \
         WHERE c.table_name IN (SELECT active_table FROM projection_registry)",
    )
    .execute(pool)
    .await?;
    Ok(())
}
