//! The `system` actor: expires unanswered offers and flags SLA breaches,
//! through the same command path as everyone else. Each action's idempotency
//! key names the offer or the due time it is about, so a restart, a second
//! replica or a retry never repeats it.

use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use tokio::sync::watch;
use uuid::Uuid;

use crate::app::{App, Caller, RequestMeta};
use crate::domain::job::{ExpireOffer, FlagSlaBreach, JobCommand, SlaKind};
use crate::domain::Role;
use crate::store::hash::sha256_hex;

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Offers expired.
    pub expired: usize,
    /// SLA breaches flagged.
    pub breaches: usize,
    /// Maintenance-plan occurrences whose job opened.
    pub opened: usize,
    /// Deficiency follow-up actions taken (follow-up jobs opened, doors
    /// marked impaired or back in service).
    pub follow_ups: usize,
}

/// The `system` actor's caller.
pub(crate) fn system() -> Caller {
    Caller {
        key_name: "system".into(),
        role: Role::System,
        technician_id: None,
    }
}

/// A request under `key` (its hash: the key's, so a retry matches).
pub(crate) fn meta(key: String) -> RequestMeta {
    RequestMeta {
        request_hash: sha256_hex(key.as_bytes()),
        idempotency_key: key,
        if_match: None,
        correlation_id: Uuid::new_v4(),
        // Set when a request ran the tick (the test clock), else none.
        trace_id: crate::telemetry::trace::current_trace_id(),
        causation_id: None,
        tool_invocation_id: None,
    }
}

impl TickReport {
    /// What the tick did, for the test clock's answer.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "expired": self.expired,
            "breaches": self.breaches,
            "occurrences_opened": self.opened,
            "follow_ups": self.follow_ups,
        })
    }
}

/// Finds due offers and breached SLAs on the board and acts on each once.
pub async fn tick(app: &App) -> anyhow::Result<TickReport> {
    let mut report = TickReport {
        opened: crate::app::registry::schedule::tick(app).await?,
        follow_ups: crate::app::registry::followups::tick(app).await?,
        ..TickReport::default()
    };
    let now = app.clock.now();
    let (table, _) = app.read_model("board").await?;
    let rows = sqlx::query(&format!(
        "SELECT job_id, state, ack_due_at, sla_due_at, completion_due_at, checked_in, flags FROM {table} \
         WHERE state NOT IN ('closed', 'cancelled', 'duplicate') AND ( \
            (state = 'offered' AND ack_due_at <= $1) \
         OR (sla_due_at <= $1 AND NOT checked_in AND NOT (flags->'sla_breached' ? 'response')) \
         OR (completion_due_at <= $1 AND state IN ('intake','triaged','offered','confirmed','en_route','on_site','on_hold') AND NOT (flags->'sla_breached' ? 'completion')))"
    ))
    .bind(now)
    .fetch_all(&app.pool)
    .await?;
    let caller = system();
    for r in rows {
        let job: String = r.try_get("job_id")?;
        let state: String = r.try_get("state")?;
        let flags: Value = r.try_get("flags")?;
        let breached = |k: &str| {
            flags["sla_breached"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == k))
        };
        let ack: Option<chrono::DateTime<chrono::Utc>> = r.try_get("ack_due_at")?;
        if let (true, Some(ack)) = (state == "offered", ack) {
            if ack <= now {
                let key = format!("timer:expire_offer:{job}:{}", ack.to_rfc3339());
                let reply = app
                    .execute_job(
                        &caller,
                        &meta(key),
                        Some(&job),
                        JobCommand::ExpireOffer(ExpireOffer {}),
                    )
                    .await?;
                if !reply.is_problem() && !reply.replayed {
                    report.expired += 1;
                }
            }
        }
        let checked_in: bool = r.try_get("checked_in")?;
        for (kind, label, due, applies) in [
            (
                SlaKind::Response,
                "response",
                r.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>("sla_due_at")?,
                !checked_in,
            ),
            (
                SlaKind::Completion,
                "completion",
                r.try_get("completion_due_at")?,
                true,
            ),
        ] {
            let Some(due) = due else { continue };
            if due > now || !applies || breached(label) {
                continue;
            }
            let key = format!("timer:sla:{job}:{label}:{}", due.to_rfc3339());
            let reply = app
                .execute_job(
                    &caller,
                    &meta(key),
                    Some(&job),
                    JobCommand::FlagSlaBreach(FlagSlaBreach { kind }),
                )
                .await?;
            if !reply.is_problem() && !reply.replayed {
                report.breaches += 1;
            }
        }
    }
    if report.expired + report.breaches + report.opened + report.follow_ups > 0 {
        tracing::info!(
            expired = report.expired,
            breaches = report.breaches,
            opened = report.opened,
            follow_ups = report.follow_ups,
            "timers acted"
        );
    }
    Ok(report)
}

/// Ticks every `interval` until `shutdown` turns true.
pub async fn run(app: App, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = tick(&app).await {
            tracing::warn!(error = %e, "timer tick failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}
