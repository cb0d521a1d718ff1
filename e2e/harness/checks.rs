//! The built-in checks a scenario invokes by name (`check = "…"`, `args = {…}`).
//! Each reads the service as an auditor or dispatcher would and compares it
//! with what the harness itself sent and saw.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::runner::{first_difference, get, nulls, Ctx, Kind, Record};

const ALL_STATES: &str = "intake,triaged,offered,confirmed,en_route,on_site,on_hold,work_completed,closeout_verified,billing_ready,closed,cancelled,duplicate";

/// The checks by name.
pub const NAMES: &[&str] = &[
    "audit_envelopes_valid",
    "audit_verified",
    "replay_matches_history",
    "read_models_match",
    "tool_log_complete",
    "no_new_events_since",
    "events_out",
];

/// Runs the check `name`: a one-line summary, or what is wrong.
pub async fn run(ctx: &mut Ctx, name: &str, args: &Value) -> Result<String, String> {
    match name {
        "audit_envelopes_valid" => audit_envelopes_valid(ctx, args).await,
        "audit_verified" => audit_verified(ctx, args).await,
        "replay_matches_history" => replay_matches_history(ctx, args).await,
        "read_models_match" => read_models_match(ctx, args).await,
        "tool_log_complete" => tool_log_complete(ctx, args).await,
        "no_new_events_since" => no_new_events_since(ctx, args).await,
        "events_out" => {
            let v = validator("cloudevent.schema.json")?;
            super::events_out::events_out(ctx, &v).await
        }
        other => Err(format!("no built-in check `{other}`; there are {NAMES:?}")),
    }
}

fn arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, String> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the check needs args.{name} (a string)"))
}

fn reader(ctx: &Ctx, args: &Value, default: &str) -> String {
    args.get("reader")
        .and_then(Value::as_str)
        .unwrap_or(if ctx.keys.contains_key(default) {
            default
        } else {
            ctx.observer.as_str()
        })
        .to_string()
}

/// A validator for a schema under `schemas/`.
fn validator(file: &str) -> Result<jsonschema::Validator, String> {
    let path = format!("{}/schemas/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let schema: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| format!("{path}: {e}"))
}

fn schema_errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

async fn job_events(ctx: &Ctx, job: &str) -> Result<Vec<Value>, String> {
    let r = get(ctx, &ctx.observer, &format!("/v1/jobs/{job}/events")).await?;
    r["events"]
        .as_array()
        .cloned()
        .ok_or_else(|| "GET /v1/jobs/{id}/events has no events list".into())
}

/// The job id an answer is about (`job_id` of the command answer).
fn record_job(r: &Record) -> Option<&str> {
    let d = match r.kind {
        Kind::Tool(_) => r.answer.json.get("result")?,
        _ => &r.answer.json,
    };
    d.get("job_id").and_then(Value::as_str)
}

/// Every envelope of the job validates against `schemas/audit_event.schema.json`,
/// forms one hash chain, and says who caused it: the actor of the call that
/// appended it, that call's idempotency key, its tool invocation id when a tool
/// call caused it (none otherwise), and the SOP on SOP-guarded commands.
async fn audit_envelopes_valid(ctx: &mut Ctx, args: &Value) -> Result<String, String> {
    let job = arg(args, "job")?;
    let events = job_events(ctx, job).await?;
    let view = get(ctx, &ctx.observer, &format!("/v1/jobs/{job}")).await?;
    let incident = view["incident_type"].as_str().unwrap_or("").to_string();
    let schema = validator("audit_event.schema.json")?;
    let mut caused: BTreeMap<String, &Record> = BTreeMap::new();
    let mut expected_ids = BTreeSet::new();
    for r in &ctx.records {
        for e in &r.events {
            if let Some(id) = e["event_id"].as_str() {
                caused.insert(id.to_string(), r);
                if record_job(r) == Some(job) {
                    expected_ids.insert(id.to_string());
                }
            }
        }
    }
    let mut problems = Vec::new();
    let (mut by_tool, mut by_http, mut by_system, mut guarded) = (0, 0, 0, 0);
    let mut unguarded = BTreeSet::new();
    let mut last_position = 0;
    for (i, e) in events.iter().enumerate() {
        let seq = e["sequence"].as_i64().unwrap_or(0);
        let at = format!("event {seq} ({})", e["event_type"].as_str().unwrap_or("?"));
        for err in schema_errors(&schema, e) {
            problems.push(format!("{at}: audit_event.schema.json: {err}"));
        }
        if seq != i as i64 + 1 {
            problems.push(format!("{at}: sequence {seq} at index {i}"));
        }
        if e["aggregate_type"] != "job" || e["aggregate_id"] != job {
            problems.push(format!(
                "{at}: belongs to {} {}",
                e["aggregate_type"], e["aggregate_id"]
            ));
        }
        let pos = e["global_position"].as_i64().unwrap_or(0);
        if pos <= last_position {
            problems.push(format!("{at}: global_position {pos} after {last_position}"));
        }
        last_position = pos;
        let prev = if i == 0 {
            json!("0".repeat(64))
        } else {
            events[i - 1]["hash"].clone()
        };
        if e["prev_hash"] != prev {
            problems.push(format!("{at}: prev_hash is not the previous event's hash"));
        }
        let id = e["event_id"].as_str().unwrap_or("");
        expected_ids.remove(id);
        match caused.get(id) {
            Some(r) => {
                if e["actor"]["id"].as_str() != r.actor.as_deref() {
                    problems.push(format!(
                        "{at}: actor {} but call {} was made by {:?}",
                        e["actor"], r.id, r.actor
                    ));
                }
                if e["idempotency_key"].as_str() != r.idempotency_key.as_deref() {
                    problems.push(format!(
                        "{at}: idempotency_key {} but call {} sent {:?}",
                        e["idempotency_key"], r.id, r.idempotency_key
                    ));
                }
                match &r.kind {
                    Kind::Tool(_) => {
                        by_tool += 1;
                        if e["tool_invocation_id"].as_str() != r.invocation_id() {
                            problems.push(format!(
                                "{at}: tool_invocation_id {} but tool call {} was invocation {:?}",
                                e["tool_invocation_id"],
                                r.id,
                                r.invocation_id()
                            ));
                        }
                    }
                    _ => {
                        by_http += 1;
                        if !e["tool_invocation_id"].is_null() {
                            problems.push(format!(
                                "{at}: tool_invocation_id {} on an event no tool caused (call {})",
                                e["tool_invocation_id"], r.id
                            ));
                        }
                    }
                }
            }
            None if e["actor"]["kind"] == "system" => by_system += 1,
            None => problems.push(format!(
                "{at}: by {} but no call of the scenario appended it",
                e["actor"]
            )),
        }
        // Every job command runs under its incident type's SOPs: every event
        // records the SOP document (intake, field or closeout) and version.
        let command = e["command"].as_str().unwrap_or("");
        let sop_id = e["sop"]["id"].as_str().unwrap_or("");
        let ok = ["intake", "field", "closeout"]
            .iter()
            .any(|stage| sop_id == format!("{stage}.{incident}"));
        if ok && e["sop"]["version"].is_string() {
            guarded += 1;
        } else {
            unguarded.insert(command.to_string());
            problems.push(format!(
                "{at}: command {command} did not record its SOP (sop is {})",
                e["sop"]
            ));
        }
    }
    for missing in &expected_ids {
        problems.push(format!(
            "event {missing} was reported to the scenario but is not in the stream"
        ));
    }
    if events.is_empty() {
        problems.push("the job has no events".into());
    }
    if problems.is_empty() {
        Ok(format!(
            "{} events valid: {by_tool} by tools, {by_http} by HTTP commands, {by_system} by the system; {guarded} carry their SOP{}",
            events.len(),
            if unguarded.is_empty() {
                String::new()
            } else {
                format!(
                    " (no SOP guards {})",
                    unguarded.into_iter().collect::<Vec<_>>().join(", ")
                )
            }
        ))
    } else {
        Err(problems.join("\n"))
    }
}

/// `GET /v1/jobs/{id}/audit` verifies the whole chain, and so does
/// `dispatch-api audit verify --all --verbose` on the same database.
async fn audit_verified(ctx: &mut Ctx, args: &Value) -> Result<String, String> {
    let job = arg(args, "job")?;
    let events = job_events(ctx, job).await?;
    let r = get(ctx, &ctx.observer, &format!("/v1/jobs/{job}/audit")).await?;
    let want = json!({"verified": true, "events": events.len(), "first_bad_sequence": null});
    for k in ["verified", "events", "first_bad_sequence"] {
        if r.get(k) != want.get(k) {
            return Err(format!(
                "GET /v1/jobs/{job}/audit answered {r}, expected {want}"
            ));
        }
    }
    let (code, stdout, stderr) = ctx
        .server
        .cli(&[
            "audit".into(),
            "verify".into(),
            "--all".into(),
            "--verbose".into(),
        ])
        .await?;
    if code != 0 || !stdout.contains(&format!("job {job}: verified")) {
        return Err(format!(
            "dispatch-api audit verify --all exited {code}:\n{stdout}\n{stderr}"
        ));
    }
    let last = stdout.lines().last().unwrap_or("").to_string();
    Ok(format!("verified ({} events); CLI: {last}", events.len()))
}

/// Replaying the job to each version the scenario saw gives exactly the job
/// it saw then; every other sequence replays too.
async fn replay_matches_history(ctx: &mut Ctx, args: &Value) -> Result<String, String> {
    let job = arg(args, "job")?;
    let seen = ctx.snapshots.get(job).cloned().unwrap_or_default();
    if seen.is_empty() {
        return Err(format!("the scenario never saw job {job}"));
    }
    let current = get(ctx, &ctx.observer, &format!("/v1/jobs/{job}")).await?;
    let last = current["version"].as_i64().unwrap_or(0);
    let mut problems = Vec::new();
    for seq in 1..=last {
        let r = get(
            ctx,
            &ctx.observer,
            &format!("/v1/jobs/{job}/replay?to_sequence={seq}"),
        )
        .await?;
        if r["to_sequence"] != json!(seq) || r["job"]["version"] != json!(seq) {
            problems.push(format!(
                "replay to {seq} answered version {}",
                r["job"]["version"]
            ));
        }
        if let Some(view) = seen.get(&seq) {
            if &r["job"] != view {
                problems.push(format!(
                    "replay to {seq} differs from the job the scenario saw at version {seq}: {}",
                    first_difference(view, &r["job"])
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{} states the scenario saw replayed exactly; {last} sequences replayed",
            seen.len()
        ))
    } else {
        Err(problems.join("\n"))
    }
}

/// Every read model's answer with `min_position`, without its `position`/`as_of`.
async fn read_models(ctx: &Ctx, who: &str, min: i64) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    let strip = |mut v: Value| {
        if let Some(m) = v.as_object_mut() {
            m.remove("position");
            m.remove("as_of");
        }
        v
    };
    let q = format!("min_position={min}");
    out.insert(
        "board".into(),
        strip(
            get(
                ctx,
                who,
                &format!("/v1/board?state={ALL_STATES}&limit=1000&{q}"),
            )
            .await?,
        ),
    );
    out.insert(
        "billing_readiness".into(),
        strip(
            get(
                ctx,
                who,
                &format!("/v1/billing/readiness?include_final=true&limit=1000&{q}"),
            )
            .await?,
        ),
    );
    let roster = strip(get(ctx, who, &format!("/v1/technicians?{q}")).await?);
    for row in roster["rows"].as_array().cloned().unwrap_or_default() {
        if let Some(t) = row["technician_id"].as_str() {
            out.insert(
                format!("technician_schedule {t}"),
                strip(get(ctx, who, &format!("/v1/technicians/{t}/schedule?{q}")).await?),
            );
        }
    }
    out.insert("technicians".into(), roster);
    out.insert(
        "approvals".into(),
        strip(get(ctx, who, &format!("/v1/approvals?limit=1000&{q}")).await?),
    );
    Ok(out)
}

/// Equal, or the same instant written two ways (`…Z` and `…+00:00`).
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    let instant = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    a == b || matches!((instant(a), instant(b)), (Some(x), Some(y)) if x == y)
}

/// Subset match: every field of `want` equals the row's.
fn subset(row: &Value, want: &Value, what: &str, problems: &mut Vec<String>) {
    for (k, v) in want.as_object().into_iter().flatten() {
        if !same(row.get(k), Some(v)) {
            problems.push(format!(
                "{what}.{k}: expected {v}, got {}",
                row.get(k).unwrap_or(&Value::Null)
            ));
        }
    }
}

/// The board and billing rows of the job, read with `min_position` = the last
/// position the scenario was told, show the job as the steps left it (and the
/// fields in `args.board` / `args.billing`); `dispatch-api projections rebuild
/// --all` then rebuilds every read model to identical answers.
async fn read_models_match(ctx: &mut Ctx, args: &Value) -> Result<String, String> {
    let job = arg(args, "job")?;
    let who = reader(ctx, args, "dispatcher");
    let min = ctx.max_position;
    let view = get(ctx, &ctx.observer, &format!("/v1/jobs/{job}")).await?;
    let before = read_models(ctx, &who, min).await?;
    let mut problems = Vec::new();
    let path = format!("/rows/[job_id={job}]");
    let board = super::runner::lookup(&before["board"], &path);
    let billing = super::runner::lookup(&before["billing_readiness"], &path);
    match &board {
        None => problems.push(format!("the board has no row for job {job}")),
        Some(row) => {
            for k in ["state", "priority", "sla_due_at", "nte_cents"] {
                if !same(row.get(k), view.get(k)) {
                    problems.push(format!(
                        "board.{k} is {} but the job's is {}",
                        row.get(k).unwrap_or(&Value::Null),
                        view.get(k).unwrap_or(&Value::Null)
                    ));
                }
            }
            subset(
                row,
                &nulls(args.get("board").cloned().unwrap_or(json!({}))),
                "board",
                &mut problems,
            );
        }
    }
    match &billing {
        None => problems.push(format!("billing readiness has no row for job {job}")),
        Some(row) => {
            if row.get("state").is_some() && row.get("state") != view.get("state") {
                problems.push(format!(
                    "billing_readiness.state is {} but the job's is {}",
                    row["state"], view["state"]
                ));
            }
            subset(
                row,
                &nulls(args.get("billing").cloned().unwrap_or(json!({}))),
                "billing_readiness",
                &mut problems,
            );
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "{}\nboard row: {}\nbilling row: {}",
            problems.join("\n"),
            board.unwrap_or(Value::Null),
            billing.unwrap_or(Value::Null)
        ));
    }
    let (code, stdout, stderr) = ctx
        .server
        .cli(&[
            "projections".into(),
            "rebuild".into(),
            "--all".into(),
            "--wait".into(),
        ])
        .await?;
    if code != 0 {
        return Err(format!(
            "dispatch-api projections rebuild --all --wait exited {code}:\n{stdout}\n{stderr}"
        ));
    }
    let status = get(ctx, &who, "/v1/projections").await?;
    for p in status["projections"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if p["status"] != "live" {
            problems.push(format!(
                "after the rebuild, {} is {}",
                p["name"], p["status"]
            ));
        }
    }
    let after = read_models(ctx, &who, min).await?;
    // `args.ignore = ["model/field", …]`: fields left out of the comparison
    // (each one a known defect named in the scenario file).
    let ignored: Vec<(String, String)> = args
        .get("ignore")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|x| {
            x.as_str()?
                .split_once('/')
                .map(|(m, f)| (m.to_string(), f.to_string()))
        })
        .collect();
    let without = |name: &str, v: &Value| {
        let mut v = v.clone();
        for (m, f) in &ignored {
            if name == m || name.starts_with(&format!("{m} ")) {
                for list in ["rows", "visits"] {
                    for row in v
                        .get_mut(list)
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(o) = row.as_object_mut() {
                            o.remove(f);
                        }
                    }
                }
            }
        }
        v
    };
    let mut ignored_differences = Vec::new();
    for (name, raw) in &before {
        if let Some(b) = after.get(name) {
            if raw != b && without(name, raw) == without(name, b) {
                ignored_differences.push(format!("{name} {}", first_difference(raw, b)));
            }
        }
        let a = &without(name, raw);
        match after.get(name).map(|b| without(name, b)).as_ref() {
            Some(b) if a == b => {}
            Some(b) => problems.push(format!(
                "{name} differs after the rebuild: {}",
                first_difference(a, b)
            )),
            None => problems.push(format!("{name} is gone after the rebuild")),
        }
    }
    if problems.is_empty() {
        let except = match (ignored.is_empty(), ignored_differences.is_empty()) {
            (true, _) => String::new(),
            (false, false) => format!(" except the ignored {}", ignored_differences.join("; ")),
            (false, true) => format!(
                " (the ignore list {} is no longer needed)",
                ignored
                    .iter()
                    .map(|(m, f)| format!("{m}/{f}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Ok(format!(
            "board and billing rows match the job at position {min}; {} read-model answers identical after projections rebuild --all{except}",
            before.len()
        ))
    } else {
        Err(problems.join("\n"))
    }
}

/// `GET /v1/tool-invocations?transport=tool` holds exactly the scenario's
/// tool calls — refused ones included — each once, with its actor, outcome,
/// status, code, idempotency key and events; every record of every
/// transport is valid against `schemas/tool_invocation.schema.json`, and
/// every REST mutation the scenario made with a key is there with transport
/// `rest`, its actor, idempotency key and status.
async fn tool_log_complete(ctx: &mut Ctx, args: &Value) -> Result<String, String> {
    let who = reader(ctx, args, "auditor");
    let schema = validator("tool_invocation.schema.json")?;
    let mut log = Vec::new();
    let mut after = 0;
    loop {
        let page = get(
            ctx,
            &who,
            &format!("/v1/tool-invocations?after={after}&limit=1000"),
        )
        .await?;
        log.extend(page["invocations"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    let mut problems = Vec::new();
    for r in &log {
        for err in schema_errors(&schema, r) {
            problems.push(format!(
                "record {}: tool_invocation.schema.json: {err}",
                r["position"]
            ));
        }
    }
    let rest = log.iter().filter(|r| r["transport"] == "rest").count();
    // Every REST mutation the scenario made with a key is in the log with
    // transport `rest`, its actor, idempotency key and status.
    for c in ctx
        .records
        .iter()
        .filter(|r| matches!(r.kind, Kind::Http) && r.answer.status != 401)
    {
        let (Some(actor), Some(key)) = (&c.actor, &c.idempotency_key) else {
            continue;
        };
        let found = log.iter().any(|r| {
            r["transport"] == "rest"
                && r["actor"]["id"] == actor.as_str()
                && r["idempotency_key"] == key.as_str()
                && r["http_status"] == c.answer.status
        });
        if !found {
            problems.push(format!(
                "call {}: no `rest` record for {actor}'s call with key {key} answered {}",
                c.id, c.answer.status
            ));
        }
    }
    log.retain(|r| r["transport"] == "tool");
    let calls: Vec<&Record> = ctx
        .records
        .iter()
        .filter(|r| matches!(r.kind, Kind::Tool(_)) && r.answer.status != 401)
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &calls {
        let Kind::Tool(tool) = &c.kind else { continue };
        let Some(inv) = c.invocation_id() else {
            problems.push(format!("call {}: the answer has no invocation_id", c.id));
            continue;
        };
        let found: Vec<&Value> = log.iter().filter(|r| r["invocation_id"] == inv).collect();
        if found.len() != 1 {
            problems.push(format!(
                "call {} ({tool}): {} log records for invocation {inv}",
                c.id,
                found.len()
            ));
            continue;
        }
        let r = found[0];
        let a = &c.answer.json;
        let outcome = a["outcome"].as_str().unwrap_or("?");
        *counts.entry(outcome).or_default() += 1;
        let want = json!({
            "tool": tool,
            "actor_id": c.actor,
            "outcome": outcome,
            "http_status": c.answer.status,
            "idempotency_key": c.idempotency_key,
            "error_code": a["error"]["code"],
            "replayed": a.get("replayed").cloned().unwrap_or(json!(false)),
            "events": c.events.iter().map(|e| e["event_id"].clone()).collect::<Vec<_>>(),
        });
        let got = json!({
            "tool": r["tool"],
            "actor_id": r["actor"]["id"],
            "outcome": r["outcome"],
            "http_status": r["http_status"],
            "idempotency_key": r["idempotency_key"],
            "error_code": r["error_code"],
            "replayed": r["replayed"],
            "events": r["events"].as_array().map(|a| a.iter().map(|e| e["event_id"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
        });
        if want != got {
            problems.push(format!(
                "call {} ({tool}): log record differs: {}",
                c.id,
                first_difference(&want, &got)
            ));
        }
    }
    if log.len() != calls.len() {
        problems.push(format!(
            "the log holds {} records; the scenario made {} tool calls",
            log.len(),
            calls.len()
        ));
    }
    if problems.is_empty() {
        let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        Ok(format!(
            "{} tool records, one per tool call ({}), and {rest} REST records, each valid",
            log.len(),
            parts.join(", ")
        ))
    } else {
        Err(problems.join("\n"))
    }
}

/// The job's stream has nothing after `args.position` (an idempotent replay appended nothing).
async fn no_new_events_since(ctx: &mut Ctx, args: &Value) -> Result<String, String> {
    let job = arg(args, "job")?;
    let position = match args.get("position") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or("the check needs args.position (a global_position)")?;
    let events = job_events(ctx, job).await?;
    let newer: Vec<String> = events
        .iter()
        .filter(|e| e["global_position"].as_i64().unwrap_or(0) > position)
        .map(|e| format!("{} at {}", e["event_type"], e["global_position"]))
        .collect();
    if newer.is_empty() {
        Ok(format!(
            "no event after position {position} ({} events)",
            events.len()
        ))
    } else {
        Err(format!(
            "events after position {position}: {}",
            newer.join(", ")
        ))
    }
}
