//! Phase 2, `reads`: the strong read of a long job and the audit of a very
//! long one, each against a raw SELECT of the same rows.

use super::{ms, Ctx, Main};
use crate::reads;
use crate::report::{Bar, Row};

/// The phase: builds a job over HTTP for the strong read, generates one for
/// the audit, and measures both.
pub(super) async fn reads(ctx: &mut Ctx, main: &Main) -> anyhow::Result<()> {
    let (svc, ids) = (&main.svc, &main.ids);
    ctx.progress.say(format!(
        "strong read: building a {}-event job over HTTP",
        ctx.sizes.read_events
    ));
    let read_job = reads::build_long_job(&svc.base, &ids[0], ctx.sizes.read_events, "read").await?;
    let (ours, raw) = reads::strong_read(
        &svc.base,
        &ids[0].desk,
        &main.pool,
        &read_job,
        ctx.sizes.read_samples,
    )
    .await?;
    let (o, r) = (ours.summary(), raw.summary());
    ctx.progress
        .say(format!("strong read: {} vs raw select {}", ms(&o), ms(&r)));
    ctx.rows.push(Row {
        figure: format!("strong read p99, {}-event job", ctx.sizes.read_events),
        value: Some(o.p99),
        unit: "ms",
        baseline: Some(r.p99),
        baseline_label: "raw SELECT of the same rows p99, ms".into(),
        bar: Bar::ValueAtMost(20.0),
        note: format!(
            "GET /v1/jobs/{{id}}, p50 {:.2} ms, n={}; goal ≤ 5 ms",
            o.p50, o.count
        ),
    });
    let g = ctx.gen.long_job(&main.pool, ctx.sizes.audit_events).await?;
    let audit_job = g.job_id.clone().unwrap_or_default();
    ctx.progress.say(format!(
        "audit: generated a {}-event job in {:.2} s",
        g.events, g.seconds
    ));
    let (ours, raw) = reads::audit(
        &svc.base,
        &ids[0].desk,
        &main.pool,
        &audit_job,
        ctx.sizes.audit_events,
        ctx.sizes.audit_runs,
    )
    .await?;
    let (o, r) = (ours.summary(), raw.summary());
    ctx.progress
        .say(format!("audit: {} vs raw select {}", ms(&o), ms(&r)));
    ctx.rows.push(Row {
        figure: format!("audit of a {}-event job", ctx.sizes.audit_events),
        value: Some(o.p50),
        unit: "ms",
        baseline: Some(r.p50),
        baseline_label: "raw SELECT of the same rows, ms".into(),
        bar: Bar::ValueAtMost(200.0),
        note: format!(
            "GET …/audit verified; median of {} (max {:.1} ms); goal ≤ 50 ms",
            o.count, o.max
        ),
    });
    Ok(())
}
