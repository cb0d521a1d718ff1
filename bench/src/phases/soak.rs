//! Phase 3, `soak`: moderate paced load for a long while; the service's RSS
//! growth from the soak's start (after 5 % warm-up) to its end.

use std::time::Duration;

use super::{failed_commands, ms, Ctx, Main};
use crate::load::{self, LoadSpec};
use crate::report::{Bar, Row};
use crate::service;

/// The phase: the paced load with an RSS sampler beside it.
pub(super) async fn soak(ctx: &mut Ctx, main: &Main) -> anyhow::Result<()> {
    ctx.progress.say(format!(
        "soak: {} clients at {:.0} cmd/s for {:.0} s",
        ctx.sizes.soak_clients,
        ctx.sizes.soak_rate,
        ctx.sizes.soak.as_secs_f64()
    ));
    let pid = main.svc.pid;
    let soak_warm = ctx.sizes.soak.mul_f64(0.05);
    let (stop_sampler, sampler_rx) = tokio::sync::watch::channel(false);
    let every = (ctx.sizes.soak / 30).max(Duration::from_millis(100));
    let sampler = tokio::spawn(async move {
        let mut out = Vec::new();
        tokio::time::sleep(soak_warm).await;
        while !*sampler_rx.borrow() {
            if let Some((rss, _)) = service::memory_kb(pid) {
                out.push(rss as f64 / 1024.0);
            }
            tokio::time::sleep(every).await;
        }
        if let Some((rss, _)) = service::memory_kb(pid) {
            out.push(rss as f64 / 1024.0);
        }
        out
    });
    let spec = LoadSpec {
        tag: "soak".into(),
        clients: ctx.sizes.soak_clients,
        warmup: soak_warm,
        measure: ctx.sizes.soak - soak_warm,
        rate: Some(ctx.sizes.soak_rate),
    };
    let soak = ctx
        .progress
        .timed(
            "soak",
            ctx.sizes.soak,
            load::run(&main.svc.base, &main.ids, &ctx.mix, &spec, None),
        )
        .await?;
    let _ = stop_sampler.send(true);
    let rss = sampler.await?;
    let (first, last) = (rss.first().copied(), rss.last().copied());
    let max = rss.iter().copied().fold(0.0, f64::max);
    ctx.progress.say(format!(
        "soak: {:.0} cmd/s, {}, RSS {:.1} → {:.1} MB (max {:.1})",
        soak.throughput,
        ms(&soak.latencies.summary()),
        first.unwrap_or(0.0),
        last.unwrap_or(0.0),
        max
    ));
    failed_commands(ctx, "soak", &soak);
    let growth = match (first, last) {
        (Some(a), Some(b)) if a > 0.0 => Some((b - a) / a * 100.0),
        _ => None,
    };
    ctx.rows.push(Row {
        figure: format!(
            "RSS growth over a {:.0} s soak",
            ctx.sizes.soak.as_secs_f64()
        ),
        value: growth,
        unit: "%",
        baseline: first,
        baseline_label: "RSS at the soak's start, MB".into(),
        bar: Bar::ValueAtMost(10.0),
        note: format!(
            "{} clients at {:.0} cmd/s ({} commands); end {:.1} MB, max {:.1} MB; goal ≤ 2 %",
            ctx.sizes.soak_clients,
            ctx.sizes.soak_rate,
            soak.ok,
            last.unwrap_or(0.0),
            max
        ),
    });
    Ok(())
}
