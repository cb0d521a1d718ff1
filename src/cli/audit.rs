//! `dispatch-api audit verify JOB_ID | --all [--verbose] [--json]`: one
//! job's chain through the per-stream audit, or the whole store at scan
//! speed (`store::scan`), both against the chain keyring and every signed
//! checkpoint in the evidence store, read by the CLI itself.
//!
//! People get only what failed and a summary (`--verbose`: every stream);
//! scripts get one JSON document (`schemas/cli/audit_verify.schema.json`).
//! Exit 0 all verified, 1 something failed, 2 could not run.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::{json, Value};

use super::progress::Progress;
use super::{keyring, local_evidence_missing, pool_of, EXIT_FAILED};
use crate::app::checkpoints::{load_index, Loaded};
use crate::app::evidence::EvidenceStore;
use crate::app::queries::audit_stream;
use crate::config::Config;
use crate::store::scan::{verify_store, ScanOptions, StreamAudit};
use crate::store::AuditReport;

/// What `audit verify` was asked.
#[derive(Debug, Clone, Default)]
pub struct VerifyArgs {
    /// One job.
    pub job_id: Option<String>,
    /// Every stream in the store.
    pub all: bool,
    /// Every stream listed, not only the failures.
    pub verbose: bool,
    /// One JSON document on stdout.
    pub json: bool,
    /// Scanning connections for `--all` (default: one per four cores).
    pub connections: Option<usize>,
}

/// One stream's verdict; `found: false` for a job that never existed.
struct Verdict {
    aggregate_type: String,
    aggregate_id: String,
    found: bool,
    report: AuditReport,
}

/// What a run found.
struct Outcome {
    scope: &'static str,
    verdicts: Vec<Verdict>,
    /// Rows read (what the rate counts).
    rows_read: u64,
    loaded: Loaded,
    seconds: f64,
}

impl Outcome {
    fn failed(&self) -> usize {
        self.verdicts.iter().filter(|v| !v.report.verified).count()
    }

    fn verified(&self) -> bool {
        self.failed() == 0 && self.loaded.rejected.is_empty()
    }

    fn events(&self) -> i64 {
        self.verdicts.iter().map(|v| v.report.events).sum()
    }

    fn unkeyed(&self) -> i64 {
        self.verdicts.iter().map(|v| v.report.unkeyed_events).sum()
    }

    fn rate(&self) -> f64 {
        self.rows_read as f64 / self.seconds.max(1e-9)
    }
}

/// `dispatch-api audit verify`.
pub async fn audit_verify(config: &Config, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if args.job_id.is_none() && !args.all {
        anyhow::bail!("name a JOB_ID or pass --all");
    }
    let keys = Arc::new(keyring(config)?);
    // The checkpoints are read before the store's snapshot is taken: every
    // event a loaded checkpoint records was committed before it was
    // written, so the snapshot sees it (the other order could see a
    // checkpoint of events the snapshot does not).
    let (index, loaded) = match local_evidence_missing(config) {
        true => Default::default(),
        false => load_index(&EvidenceStore::from_config(config)?, &keys)
            .await
            .context("cannot read the checkpoints from the evidence store")?,
    };
    let (scope, verdicts, rows_read) = match &args.job_id {
        Some(id) => {
            let (pool, _database) = pool_of(config, 1).await?;
            let mut conn = pool.acquire().await?;
            let found = audit_stream(&mut conn, &keys, &index.get("job", id), "job", id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let verdict = Verdict {
                aggregate_type: "job".into(),
                aggregate_id: id.clone(),
                found: found.is_some(),
                report: found.unwrap_or(AuditReport {
                    verified: false,
                    events: 0,
                    first_bad_sequence: None,
                    check: None,
                    unkeyed_events: 0,
                }),
            };
            let rows = verdict.report.events as u64;
            ("stream", vec![verdict], rows)
        }
        None => {
            let mut opts = ScanOptions::default();
            if let Some(n) = args.connections {
                opts.connections = n.max(1);
            }
            let (pool, _database) = pool_of(config, opts.connections as u32 + 1).await?;
            let progress = Progress::new("verifying every chain", "events");
            let audit = verify_store(&pool, keys.clone(), &index, opts, &progress)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            progress.finish();
            let verdicts = audit.streams.into_iter().map(Verdict::from).collect();
            ("all", verdicts, audit.rows_read)
        }
    };
    let outcome = Outcome {
        scope,
        verdicts,
        rows_read,
        loaded,
        seconds: started.elapsed().as_secs_f64(),
    };
    if args.json {
        println!("{}", to_json(&outcome, args.verbose));
    } else {
        print_human(&outcome, args.verbose || scope == "stream");
    }
    Ok(if outcome.verified() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

impl From<StreamAudit> for Verdict {
    fn from(s: StreamAudit) -> Verdict {
        Verdict {
            aggregate_type: s.aggregate_type,
            aggregate_id: s.aggregate_id,
            found: true,
            report: s.report,
        }
    }
}

/// One line per rejected checkpoint and failed stream (every stream if
/// `every`), then the summary.
fn print_human(o: &Outcome, every: bool) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for name in &o.loaded.rejected {
        let _ = writeln!(out, "checkpoint {name}: signature does not verify");
    }
    for v in &o.verdicts {
        let (kind, id, r) = (&v.aggregate_type, &v.aggregate_id, &v.report);
        if !v.found {
            let _ = writeln!(out, "{kind} {id}: not found");
        } else if !r.verified {
            let _ = writeln!(
                out,
                "{kind} {id}: FAILED at sequence {} (check {}) ({} events)",
                r.first_bad_sequence.unwrap_or(0),
                r.check.map_or("?", |c| c.as_str()),
                r.events
            );
        } else if every && r.unkeyed_events > 0 {
            let _ = writeln!(
                out,
                "{kind} {id}: verified ({} events, {} unkeyed vouched by a checkpoint)",
                r.events, r.unkeyed_events
            );
        } else if every {
            let _ = writeln!(out, "{kind} {id}: verified ({} events)", r.events);
        }
    }
    let failed = o.failed();
    let _ = writeln!(
        out,
        "{} stream(s), {} events: {} verified, {} failed; {} checkpoint(s) read, {} rejected; {} unkeyed event(s) accepted; {:.2} s, {:.0} events/s",
        o.verdicts.len(),
        o.events(),
        o.verdicts.len() - failed,
        failed,
        o.loaded.verified,
        o.loaded.rejected.len(),
        o.unkeyed(),
        o.seconds,
        o.rate()
    );
}

/// The document of `schemas/cli/audit_verify.schema.json`.
fn to_json(o: &Outcome, every: bool) -> Value {
    let stream = |v: &Verdict| {
        json!({
            "aggregate_type": v.aggregate_type,
            "aggregate_id": v.aggregate_id,
            "found": v.found,
            "verified": v.report.verified,
            "events": v.report.events,
            "first_bad_sequence": v.report.first_bad_sequence,
            "check": v.report.check,
            "unkeyed_events": v.report.unkeyed_events,
        })
    };
    let failed = o.failed();
    let mut doc = json!({
        "scope": o.scope,
        "verified": o.verified(),
        "streams": o.verdicts.len(),
        "events": o.events(),
        "verified_streams": o.verdicts.len() - failed,
        "failed_streams": failed,
        "unkeyed_events": o.unkeyed(),
        "checkpoints": {"read": o.loaded.verified, "rejected": o.loaded.rejected},
        "seconds": o.seconds,
        "events_per_second": o.rate(),
        "failures": o.verdicts.iter().filter(|v| !v.report.verified).map(stream).collect::<Vec<_>>(),
    });
    if every {
        doc["results"] = o.verdicts.iter().map(stream).collect();
    }
    doc
}
