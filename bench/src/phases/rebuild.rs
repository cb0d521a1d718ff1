//! Phase 4, `rebuild`: every read model rebuilt, together and each alone,
//! over generated events, against a plain scan of the events table.

use super::Ctx;
use crate::databases::{migrated, Databases};
use crate::rebuild;
use crate::report::{Bar, Row};

/// The phase: bulk-loads its own database, then measures the rebuilds.
pub(super) async fn rebuild(ctx: &mut Ctx, dbs: &mut Databases) -> anyhow::Result<()> {
    let n = ctx.sizes.rebuild_events;
    ctx.progress.say(format!("rebuild: generating {n} events"));
    let rb_url = dbs.create("rebuild").await?;
    let rb = migrated(&rb_url, 4).await?;
    ctx.gen.register_technicians(&rb).await?;
    let g = super::generate_jobs(ctx, &rb, n, "rebuild: generating").await?;
    ctx.progress.say(format!(
        "rebuild: generated {} events ({} jobs) in {:.1} s ({:.0} events/s)",
        g.events,
        g.jobs,
        g.seconds,
        g.events as f64 / g.seconds
    ));
    let _ = sqlx::query("VACUUM ANALYZE").execute(&rb).await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&rb)
        .await?;
    let rt = rebuild::runtime(&rb, ctx.sops.clone()).await?;
    let res = {
        let p = &ctx.progress;
        rebuild::measure(&rb, &rt, total as u64, |m| p.say(format!("rebuild: {m}"))).await?
    };
    ctx.rows.push(Row {
        figure: format!(
            "read-model rebuild, all {} models, {} events",
            res.per_model.len(),
            total
        ),
        value: Some(res.all_rate),
        unit: "events/s",
        baseline: Some(res.scan_rate),
        baseline_label: "plain SELECT * FROM events, rows/s".into(),
        bar: Bar::ValueAtLeast(50_000.0),
        note: format!(
            "{:.1} s; store events per second with every model rebuilt; goal ≥ 0.25× the scan",
            res.all_seconds
        ),
    });
    for (name, rate) in &res.per_model {
        ctx.rows.push(Row {
            figure: format!("read-model rebuild, {name} alone"),
            value: Some(*rate),
            unit: "events/s",
            baseline: Some(res.scan_rate),
            baseline_label: "plain SELECT * FROM events, rows/s".into(),
            bar: Bar::None,
            note: String::new(),
        });
    }
    rb.close().await;
    dbs.drop_one("rebuild").await?;
    Ok(())
}
