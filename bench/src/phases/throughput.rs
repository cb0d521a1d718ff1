//! Phase 1, `throughput`: the whole HTTP stack with each client count,
//! against pgbench inserting one row into an identical events table and
//! against stock cqrs-es + postgres-es; projection lag under that load
//! against the NOTIFY round trip; subscription lag (the fan-out to NATS
//! JetStream, when NATS is reachable) and webhook lag (a receiver in this
//! process registered as an endpoint for every event) beside it; then the
//! service's peak RSS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{failed_commands, ms, Ctx, Main};
use crate::databases::{checkpoint, migrated, pool, Databases};
use crate::fanout::{self, SubscriptionLag};
use crate::load::{self, LagResult, LoadResult, LoadSpec};
use crate::pgbench::{self, PgbenchResult};
use crate::report::{Bar, Row};
use crate::service::CpuMeter;
use crate::stats::Samples;
use crate::stock;
use crate::webhook::Receiver;
use dispatch_api::domain::job::JobServices;
use dispatch_api::domain::policy::DispatchPolicy;

/// An events-out lag, or why it was not measured.
type Lagged = Result<SubscriptionLag, String>;

/// The baselines' databases and what they run.
struct Baselines {
    pgbench_url: String,
    /// pgbench's script: one row like the generator's into an identical table.
    script: PathBuf,
    have_pgbench: bool,
    stock_url: String,
    /// What stock cqrs-es decides with (the same domain as the service).
    services: JobServices,
}

/// What one client count measured.
struct Round {
    round: usize,
    clients: usize,
    ours: LoadResult,
    lag: LagResult,
    /// The subscription lag, or why it was not measured.
    sub: Lagged,
    /// The webhook lag, or why it was not measured.
    hook: Lagged,
    probe: Samples,
    pg: Option<PgbenchResult>,
    stock: LoadResult,
}

/// The phase: the baselines' databases, one round per client count (if
/// `--only` leaves the phase in), and the peak RSS row.
pub(super) async fn throughput(
    ctx: &mut Ctx,
    dbs: &mut Databases,
    main: &Main,
) -> anyhow::Result<()> {
    let base = baselines(ctx, dbs).await?;
    if ctx.sizes.wants("throughput") {
        let receiver = if ctx.sizes.no_webhooks {
            Err("not measured: --no-webhooks".to_string())
        } else {
            Receiver::start(&main.svc.base, &main.pool)
                .await
                .map_err(|why| format!("not measured: {why}"))
        };
        match &receiver {
            Ok(r) => ctx.progress.say(format!(
                "webhook receiver at {} registered (endpoint {}, events after {})",
                r.url, r.endpoint, r.after
            )),
            Err(why) => ctx.progress.say(format!("webhook lag {why}")),
        }
        for (round, clients) in ctx.sizes.clients.into_iter().enumerate() {
            let r = one_round(ctx, main, &base, &receiver, round, clients).await?;
            push_rows(ctx, &r);
        }
        if let Some(held) = stream_holds_every_event(ctx, main).await {
            note_last(ctx, "subscription lag p99", &held);
        }
        if let Ok(r) = &receiver {
            if let Some(got) = receiver_got_every_event(ctx, main, r).await {
                note_last(ctx, "webhook lag p99", &got);
            }
        }
    }
    let peak = main.svc.memory_kb().map(|m| m.1 as f64 / 1024.0);
    dbs.drop_one("stock").await?;
    dbs.drop_one("pgbench").await?;
    ctx.rows.push(Row {
        figure: "peak RSS under the throughput load".into(),
        value: peak,
        unit: "MB",
        baseline: main.idle_rss,
        baseline_label: "RSS idle after start, MB".into(),
        bar: Bar::ValueAtMost(200.0),
        note: "VmHWM of the service process; goal ≤ 80 MB".into(),
    });
    Ok(())
}

/// Appends `note` to the last row whose figure starts with `figure`.
fn note_last(ctx: &mut Ctx, figure: &str, note: &str) {
    if let Some(row) = ctx
        .rows
        .iter_mut()
        .rev()
        .find(|r| r.figure.starts_with(figure))
    {
        row.note.push_str(&format!("; {note}"));
    }
}

/// After the loads: whether the webhook receiver got every event stored
/// since its registration (up to 15 s); one missing is a failure of the run.
async fn receiver_got_every_event(ctx: &mut Ctx, main: &Main, r: &Receiver) -> Option<String> {
    match r.every_event(&main.pool, Duration::from_secs(15)).await {
        Ok((said, failures)) => {
            ctx.progress.say(&said);
            ctx.failures.extend(failures);
            Some(said)
        }
        Err(e) => {
            ctx.failures.push(format!("cannot list the events: {e}"));
            None
        }
    }
}

/// After the loads, with the fan-out on: whether the run's JetStream stream
/// holds exactly one message per stored event (waiting up to 15 s for the
/// subscription to catch up). A stream that does not is a failure of the
/// run; NATS becoming unreachable is only said.
async fn stream_holds_every_event(ctx: &mut Ctx, main: &Main) -> Option<String> {
    let f = ctx.fanout.as_ref().ok()?.clone();
    let started = std::time::Instant::now();
    loop {
        let events: i64 = match sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&main.pool)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                ctx.failures.push(format!("cannot count the events: {e}"));
                return None;
            }
        };
        let held = match f.messages().await {
            Ok(n) => n.unwrap_or(0),
            Err(e) => {
                ctx.progress
                    .say(format!("cannot read the NATS stream {}: {e}", f.stream));
                return None;
            }
        };
        if held == events as u64 {
            let said = format!("JetStream held each of the store's {events} events once");
            ctx.progress.say(&said);
            return Some(said);
        }
        if started.elapsed() > Duration::from_secs(15) {
            let said = format!(
                "JetStream held {held} messages for the store's {events} events after 15 s"
            );
            ctx.failures.push(said.clone());
            return Some(said);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates the pgbench and stock databases.
async fn baselines(ctx: &Ctx, dbs: &mut Databases) -> anyhow::Result<Baselines> {
    let pgbench_url = dbs.create("pgbench").await?;
    migrated(&pgbench_url, 1).await?.close().await;
    let (sample_payload, sample_meta) = ctx.gen.sample_row();
    let script = pgbench::write_script(&ctx.work, &sample_payload, &sample_meta)?;
    let have_pgbench = pgbench::available();
    let stock_url = dbs.create("stock").await?;
    {
        let p = pool(&stock_url, 1).await?;
        stock::create_schema(&p).await?;
        p.close().await;
    }
    Ok(Baselines {
        pgbench_url,
        script,
        have_pgbench,
        stock_url,
        services: JobServices {
            sops: ctx.sops.clone(),
            policy: Arc::new(DispatchPolicy::default()),
        },
    })
}

/// One client count: ours, then pgbench, then stock, each after a checkpoint.
async fn one_round(
    ctx: &mut Ctx,
    main: &Main,
    base: &Baselines,
    receiver: &Result<Receiver, String>,
    round: usize,
    clients: usize,
) -> anyhow::Result<Round> {
    let (ours, lag, (sub, hook), probe) = full_stack(ctx, main, receiver, round, clients).await?;
    let pg = if base.have_pgbench {
        pgbench_baseline(ctx, main, base, clients).await
    } else {
        ctx.failures.push("pgbench is not installed".into());
        None
    };
    let stock = stock_baseline(ctx, main, base, round, clients).await?;
    Ok(Round {
        round,
        clients,
        ours,
        lag,
        sub,
        hook,
        probe,
        pg,
        stock,
    })
}

/// Our service under `clients` unpaced clients, with the lag watchers
/// (projection, subscription when the fan-out is on, webhook when the
/// receiver is registered) and the NOTIFY probe running beside it.
async fn full_stack(
    ctx: &mut Ctx,
    main: &Main,
    receiver: &Result<Receiver, String>,
    round: usize,
    clients: usize,
) -> anyhow::Result<(LoadResult, LagResult, (Lagged, Lagged), Samples)> {
    let svc = &main.svc;
    checkpoint(&main.pool).await;
    ctx.progress.say(format!(
        "HTTP: {clients} clients, {:.0} s",
        ctx.sizes.measure.as_secs_f64()
    ));
    // Every answered command goes to every watcher.
    let (tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let (to_projection, rx) = tokio::sync::mpsc::unbounded_channel();
    let (to_subscription, sub_rx) = tokio::sync::mpsc::unbounded_channel();
    let (to_hook, hook_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(a) = answers.recv().await {
            let _ = to_projection.send(a);
            let _ = to_subscription.send(a);
            let _ = to_hook.send(a);
        }
    });
    let watcher = tokio::spawn(load::watch_lag(
        main.pool.clone(),
        rx,
        Duration::from_secs(15),
    ));
    let sub_watcher = watch_subscription(ctx, sub_rx).await;
    let hook_watcher = receiver.as_ref().map_err(Clone::clone).map(|r| {
        let mut arrivals = r.tap();
        let arrivals = futures::stream::poll_fn(move |cx| arrivals.poll_recv(cx));
        tokio::spawn(fanout::watch_arrivals(
            arrivals,
            hook_rx,
            Duration::from_secs(15),
        ))
    });
    let (stop_probe, probe_rx) = tokio::sync::watch::channel(false);
    let probe = tokio::spawn(load::notify_probe(main.pool.clone(), probe_rx));
    let spec = LoadSpec {
        tag: format!("t{round}"),
        clients,
        warmup: ctx.sizes.warmup,
        measure: ctx.sizes.measure,
        rate: None,
    };
    let cpu0 = CpuMeter::now(Some(svc.pid));
    let run = load::run(&svc.base, &main.ids, &ctx.mix, &spec, Some(tx));
    let ours = ctx.progress.timed("HTTP", spec.warmup + spec.measure, run);
    let ours = ours.await?;
    let ours_cpu = CpuMeter::now(Some(svc.pid)).per_op_ms(&cpu0, ours.all_ok);
    let _ = stop_probe.send(true);
    let lag = watcher.await??;
    let sub = match sub_watcher {
        Ok(w) => w.await?.map_err(|e| format!("not measured: {e:#}")),
        Err(why) => Err(why),
    };
    let hook = match hook_watcher {
        Ok(w) => w.await?.map_err(|e| format!("not measured: {e:#}")),
        Err(why) => Err(why),
    };
    if let Ok(r) = receiver {
        r.untap();
    }
    let probe = probe.await??;
    let s = ours.latencies.summary();
    ctx.progress.say(format!(
        "HTTP {clients}: {:.0} cmd/s, {}, {} errors{}",
        ours.throughput,
        ms(&s),
        ours.errors,
        if ours.first_errors.is_empty() {
            String::new()
        } else {
            format!(" (first: {})", ours.first_errors[0])
        }
    ));
    ctx.progress.say(format!(
        "HTTP {clients}: CPU per command: service {:.3} ms, postgres {:.3} ms, nats-server {:.3} ms, load driver (with the fan-out's receivers) {:.3} ms",
        ours_cpu.service, ours_cpu.postgres, ours_cpu.nats, ours_cpu.driver
    ));
    ctx.cpu_notes.push(format!(
        "{clients} clients, full stack: service {:.3} ms, PostgreSQL {:.3} ms, nats-server {:.3} ms, load driver (with the webhook receiver and the NATS subscriber) {:.3} ms of CPU per command",
        ours_cpu.service, ours_cpu.postgres, ours_cpu.nats, ours_cpu.driver
    ));
    if ours.errors > 0 {
        failed_commands(ctx, &format!("HTTP {clients} clients"), &ours);
        for p in svc.log_problems() {
            ctx.progress.say(format!("service: {p}"));
        }
    }
    ctx.progress.say(format!(
        "lag {clients}: {} ({} unresolved)",
        ms(&lag.lag.summary()),
        lag.unresolved
    ));
    match &sub {
        Ok(s) => ctx.progress.say(format!(
            "subscription lag {clients}: {} ({} unresolved, {} events arrived, {} twice)",
            ms(&s.lag.summary()),
            s.unresolved,
            s.arrived,
            s.duplicates
        )),
        Err(why) => ctx
            .progress
            .say(format!("subscription lag {clients}: {why}")),
    }
    match &hook {
        Ok(s) => ctx.progress.say(format!(
            "webhook lag {clients}: {} ({} unresolved, {} events arrived, {} twice)",
            ms(&s.lag.summary()),
            s.unresolved,
            s.arrived,
            s.duplicates
        )),
        Err(why) => ctx.progress.say(format!("webhook lag {clients}: {why}")),
    }
    Ok((ours, lag, (sub, hook), probe))
}

/// The subscription-lag watcher on a subscription taken now, or why there
/// is none.
async fn watch_subscription(
    ctx: &Ctx,
    answers: tokio::sync::mpsc::UnboundedReceiver<(i64, std::time::Instant)>,
) -> Result<tokio::task::JoinHandle<anyhow::Result<SubscriptionLag>>, String> {
    let f = ctx.fanout.as_ref().map_err(Clone::clone)?;
    let sub = f
        .subscribe()
        .await
        .map_err(|e| format!("not measured: cannot subscribe: {e}"))?;
    Ok(tokio::spawn(fanout::watch_subscription(
        sub,
        answers,
        Duration::from_secs(15),
    )))
}

/// pgbench inserting one row per transaction with as many clients; a
/// failure is the run's, not the phase's.
async fn pgbench_baseline(
    ctx: &mut Ctx,
    main: &Main,
    base: &Baselines,
    clients: usize,
) -> Option<PgbenchResult> {
    checkpoint(&main.pool).await;
    ctx.progress.say(format!("pgbench: {clients} clients"));
    match pgbench::run(
        &base.pgbench_url,
        &base.script,
        clients,
        ctx.sizes.measure.as_secs_f64().round() as u64,
        &ctx.work.join("pgblog"),
    )
    .await
    {
        Ok(r) => {
            ctx.progress.say(format!(
                "pgbench {clients}: {:.0} tps, {}",
                r.tps,
                ms(&r.latencies.summary())
            ));
            Some(r)
        }
        Err(e) => {
            ctx.failures.push(format!("pgbench {clients}: {e:#}"));
            None
        }
    }
}

/// Stock cqrs-es + postgres-es running the same mix in this process.
async fn stock_baseline(
    ctx: &mut Ctx,
    main: &Main,
    base: &Baselines,
    round: usize,
    clients: usize,
) -> anyhow::Result<LoadResult> {
    checkpoint(&main.pool).await;
    ctx.progress
        .say(format!("stock cqrs-es + postgres-es: {clients} clients"));
    // Its own pool for the run (closed after, so that pgbench can open all its connections).
    let stock_pool = pool(&base.stock_url, ctx.connections.0).await?;
    let cpu0 = CpuMeter::now(None);
    let st = stock::run(
        stock_pool.clone(),
        base.services.clone(),
        &ctx.mix,
        &format!("s{round}"),
        clients,
        ctx.sizes.warmup,
        ctx.sizes.measure,
    )
    .await?;
    let stock_cpu = CpuMeter::now(None).per_op_ms(&cpu0, st.all_ok);
    stock_pool.close().await;
    ctx.progress.say(format!(
        "stock {clients}: {:.0} cmd/s, {}, {} errors",
        st.throughput,
        ms(&st.latencies.summary()),
        st.errors
    ));
    ctx.progress.say(format!(
        "stock {clients}: CPU per command: postgres {:.3} ms, framework (in this process) {:.3} ms",
        stock_cpu.postgres, stock_cpu.driver
    ));
    ctx.cpu_notes.push(format!(
        "{clients} clients, stock cqrs-es: PostgreSQL {:.3} ms, framework {:.3} ms of CPU per command",
        stock_cpu.postgres, stock_cpu.driver
    ));
    failed_commands(ctx, &format!("stock {clients} clients"), &st);
    Ok(st)
}

/// The round's four rows; the first round's carry the bars.
fn push_rows(ctx: &mut Ctx, r: &Round) {
    let (round, clients) = (r.round, r.clients);
    let s = r.ours.latencies.summary();
    let l = r.lag.lag.summary();
    let pg_p99 = r.pg.as_ref().map(|p| p.latencies.summary());
    ctx.rows.push(Row {
        figure: format!("command throughput, {clients} clients, vs pgbench"),
        value: Some(r.ours.throughput),
        unit: "cmd/s",
        baseline: r.pg.as_ref().map(|p| p.tps),
        baseline_label: "pgbench one-row insert, tps".into(),
        bar: if round == 0 {
            Bar::RatioAtLeast(0.25)
        } else {
            Bar::None
        },
        note: format!(
            "{} commands in {:.0} s; goal ≥ 0.50×",
            r.ours.ok,
            ctx.sizes.measure.as_secs_f64()
        ),
    });
    ctx.rows.push(Row {
        figure: format!("command p99, {clients} clients"),
        value: Some(s.p99),
        unit: "ms",
        baseline: pg_p99.map(|p| p.p99),
        baseline_label: "pgbench insert p99, ms".into(),
        bar: if round == 0 {
            Bar::ValueAtMost(50.0)
        } else {
            Bar::None
        },
        note: format!(
            "p50 {:.1} / p95 {:.1} ms; stock p99 {:.1} ms",
            s.p50,
            s.p95,
            r.stock.latencies.summary().p99
        ),
    });
    ctx.rows.push(Row {
        figure: format!("command throughput, {clients} clients, vs stock cqrs-es"),
        value: Some(r.ours.throughput),
        unit: "cmd/s",
        baseline: Some(r.stock.throughput),
        baseline_label: "stock cqrs-es + postgres-es, cmd/s".into(),
        bar: Bar::RatioAtLeast(1.0),
        note: "same mix, stock without HTTP; goal ≥ 2×".into(),
    });
    ctx.rows.push(Row {
        figure: format!("projection lag p99, {clients} clients"),
        value: Some(l.p99),
        unit: "ms",
        baseline: Some(r.probe.summary().p99),
        baseline_label: "NOTIFY round trip p99 under the same load, ms".into(),
        bar: Bar::ValueAtMost(500.0),
        note: format!(
            "p50 {:.1} ms, n={}, unresolved {}; goal ≤ 100 ms",
            l.p50, l.count, r.lag.unresolved
        ),
    });
    ctx.rows.push(subscription_row(clients, r));
    ctx.rows.push(webhook_row(clients, r));
}

/// The subscription lag beside the projection lag: the same commands, the
/// same start (the answer), the end their last event's arrival on a NATS
/// subscriber; "n/a" with the reason when the fan-out was off.
fn subscription_row(clients: usize, r: &Round) -> Row {
    let (value, note) = match &r.sub {
        Ok(s) if !s.lag.is_empty() => {
            let l = s.lag.summary();
            (
                Some(l.p99),
                format!(
                    "p50 {:.1} ms, n={}, unresolved {}; answer → last event on a NATS subscriber; goal ≤ 100 ms",
                    l.p50, l.count, s.unresolved
                ),
            )
        }
        Ok(s) => (
            None,
            format!(
                "no command's events arrived on NATS ({} unresolved): see the service's log",
                s.unresolved
            ),
        ),
        Err(why) => (None, why.clone()),
    };
    Row {
        figure: format!("subscription lag p99, {clients} clients"),
        value,
        unit: "ms",
        baseline: Some(r.lag.lag.summary().p99).filter(|_| !r.lag.lag.is_empty()),
        baseline_label: "projection lag p99 in the same round, ms".into(),
        bar: Bar::ValueAtMost(1000.0),
        note,
    }
}

/// The webhook lag beside the subscription lag: the same commands, the same
/// start (the answer), the end their last event's arrival at the receiver
/// in this process; "n/a" with the reason when it was not registered.
fn webhook_row(clients: usize, r: &Round) -> Row {
    let (value, note) = match &r.hook {
        Ok(s) if !s.lag.is_empty() => {
            let l = s.lag.summary();
            (
                Some(l.p99),
                format!(
                    "p50 {:.1} ms, n={}, unresolved {}; answer → last event at a webhook receiver (204 at once); goal ≤ 100 ms",
                    l.p50, l.count, s.unresolved
                ),
            )
        }
        Ok(s) => (
            None,
            format!(
                "no command's events arrived at the webhook receiver ({} unresolved): see the service's log",
                s.unresolved
            ),
        ),
        Err(why) => (None, why.clone()),
    };
    let nats = r.sub.as_ref().ok().filter(|s| !s.lag.is_empty());
    Row {
        figure: format!("webhook lag p99, {clients} clients"),
        value,
        unit: "ms",
        baseline: nats.map(|s| s.lag.summary().p99),
        baseline_label: "subscription (NATS) lag p99 in the same round, ms".into(),
        bar: Bar::ValueAtMost(1000.0),
        note,
    }
}
