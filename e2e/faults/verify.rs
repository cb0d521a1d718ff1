//! What must hold after every fault: each acknowledged command's events exist
//! exactly once, no command has two effects, every hash chain verifies (the
//! auditor's own `dispatch-api audit verify --all`), and every read model
//! equals a fresh rebuild from the event stream.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use dispatch_api::domain::sop::SopLibrary;
use dispatch_api::read_models::runtime::Runtime;
use dispatch_api::read_models::ProjectionContext;
use sqlx::{PgPool, Row};

use super::load::{Ledger, Outcome};

/// The store as the checks found it.
#[derive(Debug, Clone, Default)]
pub struct Store {
    /// Events in the store (all streams).
    pub events: i64,
    /// Commands of the run with events in the store.
    pub commands_with_events: usize,
    /// Commands with events from more than one transaction (applied twice).
    pub duplicates: usize,
    /// Acknowledged commands whose reported events are not exactly the
    /// stored ones.
    pub mismatched: usize,
    /// Streams verified by `audit verify --all`.
    pub streams_verified: usize,
}

/// Exactly-once: compares the ledger with the store. Returns the figures and
/// the problems found (empty: it holds).
pub async fn exactly_once(pool: &PgPool, ledger: &Ledger, tag: &str) -> (Store, Vec<String>) {
    let mut problems = Vec::new();
    let mut store = Store::default();
    match sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
    {
        Ok(n) => store.events = n,
        Err(e) => problems.push(format!("counting events: {e}")),
    }
    let rows = sqlx::query(
        "SELECT metadata->>'idempotency_key' AS k, array_agg(global_position ORDER BY global_position) AS pos, \
                count(DISTINCT tx_id)::bigint AS txs \
         FROM events WHERE starts_with(metadata->>'idempotency_key', $1) GROUP BY 1",
    )
    .bind(format!("{tag}-"))
    .fetch_all(pool)
    .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("reading the events by key: {e}"));
            return (store, problems);
        }
    };
    let mut stored: HashMap<String, Vec<i64>> = HashMap::new();
    for r in rows {
        let key: String = r.get("k");
        let txs: i64 = r.get("txs");
        let pos: Vec<i64> = r.get("pos");
        if txs > 1 {
            store.duplicates += 1;
            if problems.len() < 20 {
                problems.push(format!(
                    "command {key} was applied {txs} times: events at {pos:?}"
                ));
            }
        }
        stored.insert(key, pos);
    }
    store.commands_with_events = stored.len();
    let sent: HashMap<&str, &Outcome> = ledger
        .commands
        .iter()
        .map(|c| (c.key.as_str(), &c.outcome))
        .collect();
    for key in stored.keys() {
        if !sent.contains_key(key.as_str()) {
            problems.push(format!(
                "events in the store under key {key}, which nobody sent"
            ));
        }
    }
    for c in &ledger.commands {
        if let Outcome::Acked { positions, .. } = &c.outcome {
            let mut reported = positions.clone();
            reported.sort_unstable();
            let found = stored.get(&c.key).cloned().unwrap_or_default();
            if reported != found {
                store.mismatched += 1;
                if problems.len() < 20 {
                    problems.push(format!(
                        "{} ({}) was acknowledged with events at {reported:?}, the store holds {found:?}",
                        c.command, c.key
                    ));
                }
            }
        }
    }
    (store, problems)
}

/// `dispatch-api audit verify --all --verbose`: the number of streams verified, or why not.
pub async fn chains(database_url: &str, dir: &Path) -> Result<usize, String> {
    let (code, out, err) = super::proc::cli(
        database_url,
        dir,
        &["audit", "verify", "--all", "--verbose"],
    )
    .await;
    if code != 0 {
        let failed: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("FAILED"))
            .take(5)
            .collect();
        return Err(format!(
            "audit verify --all exited {code}: {}\n{}",
            failed.join("\n"),
            err.lines().last().unwrap_or_default()
        ));
    }
    Ok(out.lines().filter(|l| l.contains(": verified")).count())
}

async fn snapshot(pool: &PgPool) -> Result<BTreeMap<String, Vec<String>>, String> {
    let tables: Vec<(String, String)> =
        sqlx::query_as("SELECT name, active_table FROM projection_registry ORDER BY name")
            .fetch_all(pool)
            .await
            .map_err(|e| format!("projection_registry: {e}"))?;
    let mut out = BTreeMap::new();
    for (name, table) in tables {
        let mut rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT to_jsonb(t)::text FROM {table} t"))
                .fetch_all(pool)
                .await
                .map_err(|e| format!("{table}: {e}"))?;
        rows.sort();
        out.insert(name, rows);
    }
    Ok(out)
}

/// Lets the read models catch up with every committed event, snapshots them,
/// rebuilds every one from the event stream, and compares. Returns the
/// number of rows compared.
pub async fn read_models_equal_rebuild(pool: &PgPool) -> Result<usize, String> {
    let sops = SopLibrary::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/sops")))
        .map_err(|e| format!("the SOP library: {e}"))?;
    let rt = Runtime::new(
        pool.clone(),
        ProjectionContext {
            sops: Arc::new(sops),
        },
    );
    rt.register().await.map_err(|e| format!("register: {e}"))?;
    rt.catch_up().await.map_err(|e| format!("catch up: {e}"))?;
    let before = snapshot(pool).await?;
    let names = rt.names();
    for name in &names {
        rt.request_rebuild(name)
            .await
            .map_err(|e| format!("rebuild {name}: {e}"))?;
    }
    rt.catch_up().await.map_err(|e| format!("rebuild: {e}"))?;
    let after = snapshot(pool).await?;
    let mut problems = Vec::new();
    let mut rows = 0;
    for (name, a) in &before {
        let b = after.get(name).cloned().unwrap_or_default();
        rows += a.len();
        if *a != b {
            let only_live: Vec<&String> = a.iter().filter(|r| !b.contains(r)).take(2).collect();
            let only_rebuilt: Vec<&String> = b.iter().filter(|r| !a.contains(r)).take(2).collect();
            problems.push(format!(
                "read model {name}: {} live rows, {} rebuilt; live only: {only_live:?}; rebuilt only: {only_rebuilt:?}",
                a.len(),
                b.len()
            ));
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems.join("\n"))
    }
}

/// All three checks; the figures and every problem found.
pub async fn everything(
    database_url: &str,
    dir: &Path,
    ledger: &Ledger,
    tag: &str,
) -> (Store, usize, Vec<String>) {
    let pool = match PgPool::connect(database_url).await {
        Ok(p) => p,
        Err(e) => {
            return (
                Store::default(),
                0,
                vec![format!("connecting to check: {e}")],
            )
        }
    };
    let (mut store, mut problems) = exactly_once(&pool, ledger, tag).await;
    problems.extend(ledger.failures().into_iter().take(10));
    match chains(database_url, dir).await {
        Ok(n) => store.streams_verified = n,
        Err(e) => problems.push(e),
    }
    let rows = match read_models_equal_rebuild(&pool).await {
        Ok(n) => n,
        Err(e) => {
            problems.push(e);
            0
        }
    };
    pool.close().await;
    (store, rows, problems)
}
