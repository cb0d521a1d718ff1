//! Plays one scenario against its own service: every call, its expectations,
//! the variables it saves, and the bookkeeping the built-in checks read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use uuid::Uuid;

use super::checks;
use super::scenario::{Call, Scenario};
use super::server::{Database, Server};

/// A key made through the CLI, by the name the scenario gives its actor.
#[derive(Debug, Clone)]
pub struct ActorKey {
    /// The bearer key.
    pub key: String,
    /// The key's name (the actor id recorded on events).
    pub name: String,
    /// The key's role.
    pub role: String,
}

/// An answer: HTTP, or a CLI run (status = exit code, json = {stdout, stderr}).
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// HTTP status or exit code.
    pub status: i64,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body as JSON (`null` when it is not JSON).
    pub json: Value,
}

/// What the harness sent, for a failure report.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// `POST /v1/…`, or the command line.
    pub line: String,
    /// Who sent it.
    pub actor: String,
    /// Headers worth showing (never the key).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

/// What kind of call a record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `POST /v1/tools/{tool}`.
    Tool(String),
    /// A mutating HTTP request (command, registration, upload…).
    Http,
    /// Anything else.
    Other,
}

/// One call as made, for the checks.
#[derive(Debug, Clone)]
pub struct Record {
    /// `07.2`.
    pub id: String,
    /// Tool, HTTP or other.
    pub kind: Kind,
    /// The key name of the caller, if any.
    pub actor: Option<String>,
    /// The idempotency key sent.
    pub idempotency_key: Option<String>,
    /// The answer.
    pub answer: Answer,
    /// The events the answer reports (`{event_id, event_type, sequence, global_position}`).
    pub events: Vec<Value>,
}

impl Record {
    /// The tool answer's `invocation_id`.
    pub fn invocation_id(&self) -> Option<&str> {
        self.answer
            .json
            .get("invocation_id")
            .and_then(Value::as_str)
    }
}

/// A scenario's running state.
pub struct Ctx {
    /// The scenario's name.
    pub scenario: String,
    /// The service.
    pub server: Server,
    /// The HTTP client.
    pub client: reqwest::Client,
    /// Saved variables.
    pub vars: BTreeMap<String, Value>,
    /// Keys by actor name.
    pub keys: BTreeMap<String, ActorKey>,
    /// Every call made so far.
    pub records: Vec<Record>,
    /// Per job: version → the job as the observer read it after the call that made that version.
    pub snapshots: BTreeMap<String, BTreeMap<i64, Value>>,
    /// The highest `global_position` any answer reported.
    pub max_position: i64,
    /// The actor whose key reads jobs for the bookkeeping.
    pub observer: String,
}

/// The outcome of one scenario: its printed lines and counts.
pub struct Report {
    /// Lines to print, in order.
    pub lines: Vec<String>,
    /// Calls that met their expectations.
    pub passed: usize,
    /// Calls that did not.
    pub failed: usize,
    /// The database to drop once every scenario has finished (none: kept).
    pub drop_database: Option<String>,
}

/// One call's result.
struct Outcome {
    summary: String,
    /// Reads answered `503 projection_behind` and asked again after `Retry-After`.
    retries: u32,
    failures: Vec<String>,
    sent: Sent,
    answer: Answer,
}

/// Plays a whole scenario.
pub async fn run(scenario: Scenario, database: Result<Database, String>) -> Report {
    let mut report = Report {
        lines: Vec::new(),
        passed: 0,
        failed: 0,
        drop_database: None,
    };
    let name = scenario.name.clone();
    let started = match database {
        Ok(db) => Server::start(&db, &scenario.server.clock, &scenario.server.env)
            .await
            .map_err(|e| (e, Some(db.name))),
        Err(e) => Err((e, None)),
    };
    let server = match started {
        Ok(s) => s,
        Err((e, db)) => {
            report.failed += 1;
            report
                .lines
                .push(format!("FAIL {name}/00 start the service"));
            report.lines.push(indent(&e));
            report.drop_database = db;
            return report;
        }
    };
    let mut ctx = Ctx {
        scenario: name.clone(),
        server,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client"),
        vars: BTreeMap::from([("scenario".to_string(), json!(name))]),
        keys: BTreeMap::new(),
        records: Vec::new(),
        snapshots: BTreeMap::new(),
        max_position: 0,
        observer: scenario.observer.clone(),
    };
    let mut stopped = false;
    'steps: for (s, step) in scenario.steps.iter().enumerate() {
        // Expand for_each so each item is its own numbered call.
        let mut calls: Vec<(Call, Option<Value>)> = Vec::new();
        for call in &step.calls {
            match &call.for_each {
                Some(items) => calls.extend(items.iter().map(|i| (call.clone(), Some(i.clone())))),
                None => calls.push((call.clone(), None)),
            }
        }
        let many = calls.len() > 1;
        for (k, (call, item)) in calls.into_iter().enumerate() {
            let id = if many {
                format!("{:02}.{}", s + 1, k + 1)
            } else {
                format!("{:02}", s + 1)
            };
            if let Some(item) = &item {
                let value = substitute(&ctx.vars, item).unwrap_or_else(|_| item.clone());
                ctx.vars.insert("item".into(), value);
            }
            let label = label(&call, item.as_ref());
            let out = run_call(&mut ctx, &id, &call).await;
            if out.failures.is_empty() {
                report.passed += 1;
                report.lines.push(
                    format!("ok   {name}/{id} {label} {}", out.summary)
                        .trim_end()
                        .to_string(),
                );
            } else {
                report.failed += 1;
                report.lines.push(
                    format!("FAIL {name}/{id} {label} {}", out.summary)
                        .trim_end()
                        .to_string(),
                );
                report.lines.push(failure_text(&step.title, s + 1, &out));
                stopped = true;
                break 'steps;
            }
        }
    }
    if stopped {
        let left: usize = count_calls(&scenario) - report.passed - report.failed;
        if left > 0 {
            report.lines.push(format!(
                "     {name}: stopped at the failure; {left} later call(s) not run"
            ));
        }
        report.lines.push(format!(
            "     {name}: service log {}, database {} kept",
            ctx.server.log_path().display(),
            ctx.server.database
        ));
    }
    // E2E_KEEP_DATABASES=1 keeps every scenario's database (to compare runs).
    let keep = stopped || std::env::var_os("E2E_KEEP_DATABASES").is_some();
    if keep && !stopped {
        report.lines.push(format!(
            "     {name}: database {} kept",
            ctx.server.database
        ));
    }
    if !keep {
        report.drop_database = Some(ctx.server.database.clone());
    }
    ctx.server.stop(keep).await;
    report
}

fn count_calls(scenario: &Scenario) -> usize {
    scenario
        .steps
        .iter()
        .flat_map(|s| &s.calls)
        .map(|c| c.for_each.as_ref().map_or(1, Vec::len))
        .sum()
}

fn label(call: &Call, item: Option<&Value>) -> String {
    let base = if let Some(l) = &call.label {
        l.clone()
    } else if let Some(t) = &call.tool {
        t.clone()
    } else if let Some(h) = &call.http {
        h.clone()
    } else if call.upload.is_some() {
        "POST /v1/evidence".into()
    } else if let Some(c) = &call.clock {
        match (c.get("advance_seconds"), c.get("set")) {
            (Some(n), _) => format!("clock +{}s", n),
            (_, Some(t)) => format!("clock = {}", t.as_str().unwrap_or("?")),
            _ => "clock".into(),
        }
    } else if let Some(k) = &call.create_key {
        format!("keys create --role {} --name {}", k.role, k.name)
    } else if let Some(c) = &call.cli {
        format!("dispatch-api {}", c.join(" "))
    } else if let Some(c) = &call.check {
        format!("check {c}")
    } else {
        "?".into()
    };
    match item {
        Some(Value::String(s)) => format!("{base} {s}"),
        Some(Value::Object(m)) => match m.values().find_map(Value::as_str) {
            Some(s) => format!("{base} {s}"),
            None => format!("{base} {}", Value::Object(m.clone())),
        },
        Some(v) => format!("{base} {v}"),
        None => base,
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("     {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn failure_text(title: &str, step: usize, out: &Outcome) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "step {step}: {title}");
    for f in &out.failures {
        let lines: Vec<&str> = f.lines().collect();
        for (i, l) in lines.iter().take(25).enumerate() {
            let _ = writeln!(t, "  {} {l}", if i == 0 { "-" } else { " " });
        }
        if lines.len() > 25 {
            let _ = writeln!(t, "    … and {} more lines", lines.len() - 25);
        }
    }
    if !out.sent.line.is_empty() {
        let _ = writeln!(t, "request: {}   (actor {})", out.sent.line, out.sent.actor);
        for (h, v) in &out.sent.headers {
            let _ = writeln!(t, "  {h}: {v}");
        }
        if !out.sent.body.is_empty() {
            let _ = writeln!(t, "  {}", clip(&out.sent.body, 4000).replace('\n', "\n  "));
        }
        let _ = writeln!(t, "answer: {}", out.answer.status);
        for (h, v) in &out.answer.headers {
            if matches!(
                h.as_str(),
                "content-type" | "idempotent-replayed" | "retry-after"
            ) {
                let _ = writeln!(t, "  {h}: {}", v.to_str().unwrap_or("?"));
            }
        }
        let body = if out.answer.json.is_null() {
            out.answer.text.clone()
        } else {
            serde_json::to_string_pretty(&out.answer.json).unwrap_or_default()
        };
        let _ = writeln!(t, "  {}", clip(&body, 6000).replace('\n', "\n  "));
    }
    indent(t.trim_end())
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes in all)", &s[..end], s.len())
    }
}

// ---------------------------------------------------------------------------
// Variables and paths

/// Replaces `${name}` in a string with the variable's text.
pub fn interpolate(vars: &BTreeMap<String, Value>, s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
        let name = &after[..end];
        match var(vars, name)? {
            Value::String(v) => out.push_str(&v),
            other => out.push_str(&other.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A variable, or a field of one (`${item.kind}`).
fn var(vars: &BTreeMap<String, Value>, name: &str) -> Result<Value, String> {
    let mut parts = name.split('.');
    let first = parts.next().unwrap_or("");
    let mut v = vars.get(first).cloned().ok_or_else(|| {
        format!(
            "no variable `{first}` (saved so far: {:?})",
            vars.keys().collect::<Vec<_>>()
        )
    })?;
    for p in parts {
        v = v
            .get(p)
            .cloned()
            .ok_or_else(|| format!("variable `{first}` has no field `{p}` ({name})"))?;
    }
    Ok(v)
}

/// Substitutes variables through a JSON value: a string that is exactly
/// `${name}` becomes the variable's value (any JSON); other strings interpolate.
pub fn substitute(vars: &BTreeMap<String, Value>, v: &Value) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                if !name.contains("${") && !name.contains('}') {
                    return var(vars, name);
                }
            }
            Value::String(interpolate(vars, s)?)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| substitute(vars, x))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((interpolate(vars, k)?, substitute(vars, x)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Reads a path: `/a/b/0` (JSON pointer segments), `[key=value]` (the first
/// array element whose `key` renders as `value`), `#` (an array's length).
pub fn lookup(v: &Value, path: &str) -> Option<Value> {
    let mut cur = v.clone();
    if path.is_empty() || path == "/" {
        return Some(cur);
    }
    for seg in path.trim_start_matches('/').split('/') {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        cur = if seg == "#" {
            json!(cur.as_array()?.len())
        } else if let Some(sel) = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let (k, want) = sel.split_once('=')?;
            cur.as_array()?
                .iter()
                .find(|item| match item.get(k) {
                    Some(Value::String(s)) => s == want,
                    Some(other) => format!("{other}") == want,
                    None => false,
                })?
                .clone()
        } else {
            match &cur {
                Value::Object(m) => m.get(&seg)?.clone(),
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?.clone(),
                _ => return None,
            }
        };
    }
    Some(cur)
}

/// The part of an answer the expectations talk about: a tool answer's
/// `result` or `error`, an HTTP answer's body.
fn doc(kind: &Kind, answer: &Answer) -> Value {
    match kind {
        Kind::Tool(_) => answer
            .json
            .get("result")
            .or_else(|| answer.json.get("error"))
            .cloned()
            .unwrap_or(Value::Null),
        _ => answer.json.clone(),
    }
}

// ---------------------------------------------------------------------------
// Calls

async fn run_call(ctx: &mut Ctx, id: &str, call: &Call) -> Outcome {
    let mut out = Outcome {
        summary: String::new(),
        retries: 0,
        failures: Vec::new(),
        sent: Sent::default(),
        answer: Answer::default(),
    };
    match perform(ctx, id, call, &mut out).await {
        Ok(()) => {}
        Err(e) => out.failures.push(e),
    }
    if out.retries > 0 {
        out.summary = format!(
            "{} (after {} × 503 projection_behind)",
            out.summary, out.retries
        );
    }
    out
}

fn actor_key(ctx: &Ctx, call: &Call) -> Result<Option<ActorKey>, String> {
    match &call.actor {
        None => Ok(None),
        Some(a) => ctx
            .keys
            .get(a)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("actor `{a}` has no key yet (create_key it first)")),
    }
}

fn default_key(ctx: &Ctx, id: &str, call: &Call) -> Result<Option<String>, String> {
    match &call.idempotency_key {
        Some(k) if k.is_empty() => Ok(None),
        Some(k) => interpolate(&ctx.vars, k).map(Some),
        None => Ok(Some(format!("{}/{id}", ctx.scenario))),
    }
}

/// A deterministic UUID for a name within the scenario.
pub fn derived_uuid(scenario: &str, what: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("dispatch-api-e2e/{scenario}/{what}").as_bytes(),
    )
}

async fn perform(ctx: &mut Ctx, id: &str, call: &Call, out: &mut Outcome) -> Result<(), String> {
    let who = actor_key(ctx, call)?;
    let kind;
    let mut idem = None;
    if let Some(tool) = &call.tool {
        kind = Kind::Tool(tool.clone());
        idem = default_key(ctx, id, call)?;
        let arguments = substitute(&ctx.vars, call.arguments.as_ref().unwrap_or(&json!({})))?;
        let path = format!("/v1/tools/{tool}");
        for attempt in 0.. {
            let mut envelope = json!({"arguments": arguments});
            match call.invocation_id.as_deref() {
                Some("none") => {}
                Some(v) if attempt == 0 => {
                    envelope["invocation_id"] = json!(interpolate(&ctx.vars, v)?)
                }
                _ if attempt == 0 => {
                    envelope["invocation_id"] = json!(derived_uuid(&ctx.scenario, id).to_string())
                }
                _ => {
                    envelope["invocation_id"] = json!(derived_uuid(
                        &ctx.scenario,
                        &format!("{id}/retry-{attempt}")
                    )
                    .to_string())
                }
            }
            if let Some(k) = &idem {
                envelope["idempotency_key"] = json!(k);
            }
            out.sent = Sent::default();
            let body = envelope.to_string();
            send(
                ctx,
                id,
                "POST",
                &path,
                who.as_ref(),
                &[],
                Some(("application/json", body)),
                out,
            )
            .await?;
            if !should_retry(attempt, &out.answer).await {
                break;
            }
            // The refused attempt is a tool call of its own: the log holds it too.
            out.retries += 1;
            ctx.records.push(Record {
                id: format!("{id} (attempt {})", attempt + 1),
                kind: kind.clone(),
                actor: who.as_ref().map(|k| k.name.clone()),
                idempotency_key: idem.clone(),
                answer: out.answer.clone(),
                events: Vec::new(),
            });
        }
    } else if let Some(line) = &call.http {
        let line = interpolate(&ctx.vars, line)?;
        let (method, path) = line
            .split_once(' ')
            .ok_or_else(|| format!("http must be `METHOD /path`, not {line:?}"))?;
        // Reads append nothing; only mutations are bookkept as causes of events.
        kind = if method == "GET" {
            Kind::Other
        } else {
            Kind::Http
        };
        let mut headers = Vec::new();
        if method != "GET" {
            idem = default_key(ctx, id, call)?;
            if let Some(k) = &idem {
                headers.push(("idempotency-key".to_string(), k.clone()));
            }
        }
        for (h, v) in &call.headers {
            headers.push((h.to_ascii_lowercase(), interpolate(&ctx.vars, v)?));
        }
        let body = match &call.body {
            Some(b) => Some(("application/json", substitute(&ctx.vars, b)?.to_string())),
            None => None,
        };
        for attempt in 0.. {
            out.sent = Sent::default();
            send(
                ctx,
                id,
                method,
                path,
                who.as_ref(),
                &headers,
                body.clone(),
                out,
            )
            .await?;
            if method != "GET" || !should_retry(attempt, &out.answer).await {
                break;
            }
            out.retries += 1;
        }
    } else if let Some(up) = &call.upload {
        kind = Kind::Http;
        idem = default_key(ctx, id, call)?;
        let headers: Vec<(String, String)> = idem
            .iter()
            .map(|k| ("idempotency-key".to_string(), k.clone()))
            .collect();
        let content = interpolate(&ctx.vars, &up.content)?;
        send(
            ctx,
            id,
            "POST",
            "/v1/evidence",
            who.as_ref(),
            &headers,
            Some((up.content_type.as_str(), content)),
            out,
        )
        .await?;
    } else if let Some(c) = &call.clock {
        kind = Kind::Other;
        let body = substitute(&ctx.vars, c)?.to_string();
        send(
            ctx,
            id,
            "POST",
            "/v1/admin/clock",
            who.as_ref(),
            &[],
            Some(("application/json", body)),
            out,
        )
        .await?;
    } else if let Some(k) = &call.create_key {
        kind = Kind::Other;
        let mut args = vec![
            "keys".to_string(),
            "create".into(),
            "--role".into(),
            k.role.clone(),
            "--name".into(),
            k.name.clone(),
        ];
        if let Some(t) = &k.technician {
            args.extend(["--technician".to_string(), t.clone()]);
        }
        cli(ctx, &args, out).await?;
        if out.answer.status == 0 {
            let stdout = out.answer.json["stdout"].as_str().unwrap_or("").to_string();
            let lines: Vec<&str> = stdout.lines().collect();
            if lines.len() != 1 || lines[0].trim().is_empty() || lines[0].trim() != lines[0] {
                out.failures.push(format!("keys create must print the key alone on one line of stdout; printed {stdout:?}"));
            } else {
                let actor = k.actor.clone().unwrap_or_else(|| k.name.clone());
                ctx.keys.insert(
                    actor,
                    ActorKey {
                        key: lines[0].to_string(),
                        name: k.name.clone(),
                        role: k.role.clone(),
                    },
                );
            }
            out.summary = format!("key for {}", k.name);
        }
    } else if let Some(args) = &call.cli {
        kind = Kind::Other;
        let args: Vec<String> = args
            .iter()
            .map(|a| interpolate(&ctx.vars, a))
            .collect::<Result<_, _>>()?;
        cli(ctx, &args, out).await?;
        out.summary = format!("exit {}", out.answer.status);
    } else if let Some(name) = &call.check {
        let args = substitute(&ctx.vars, call.args.as_ref().unwrap_or(&json!({})))?;
        match checks::run(ctx, name, &args).await {
            Ok(summary) => out.summary = summary,
            Err(e) => {
                out.summary = "failed".into();
                out.failures.push(e);
            }
        }
        return Ok(());
    } else {
        return Err("the call names no action".into());
    }

    // Bookkeeping: events, positions, snapshots.
    let d = doc(&kind, &out.answer);
    // A replayed answer repeats the first call's events; this call appended none.
    let replayed = out.answer.headers.get("idempotent-replayed").is_some();
    let events: Vec<Value> = if out.answer.status < 400 && kind != Kind::Other && !replayed {
        d.get("events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    for e in &events {
        if let Some(p) = e.get("global_position").and_then(Value::as_i64) {
            ctx.max_position = ctx.max_position.max(p);
        }
    }
    let actor_name = who.as_ref().map(|k| k.name.clone());
    ctx.records.push(Record {
        id: id.to_string(),
        kind: kind.clone(),
        actor: actor_name,
        idempotency_key: idem.clone(),
        answer: out.answer.clone(),
        events: events.clone(),
    });
    if out.summary.is_empty() {
        out.summary = summarize(&kind, &out.answer);
    }
    if matches!(kind, Kind::Tool(_) | Kind::Http) && (200..300).contains(&out.answer.status) {
        if let (Some(job), Some(_)) = (d.get("job_id").and_then(Value::as_str), d.get("version")) {
            if let Err(e) = snapshot(ctx, job).await {
                out.failures.push(e);
            }
        }
    }
    expectations(ctx, call, &kind, out)?;
    for (var, path) in &call.save {
        let value = match path.as_str() {
            "@stdout" => Some(json!(out.answer.json["stdout"]
                .as_str()
                .unwrap_or("")
                .trim())),
            "@status" => Some(json!(out.answer.status)),
            p if p.starts_with("@header:") => out
                .answer
                .headers
                .get(&p["@header:".len()..])
                .and_then(|v| v.to_str().ok())
                .map(|v| json!(v)),
            p => lookup(&out.answer.json, &interpolate(&ctx.vars, p)?),
        };
        match value {
            Some(v) => {
                ctx.vars.insert(var.clone(), v);
            }
            None => out.failures.push(format!(
                "cannot save `{var}`: nothing at `{path}` in the answer"
            )),
        }
    }
    Ok(())
}

fn summarize(kind: &Kind, answer: &Answer) -> String {
    let d = doc(kind, answer);
    let code = d.get("code").and_then(Value::as_str);
    let state = d.get("state").and_then(Value::as_str);
    let first = match kind {
        Kind::Tool(_) => answer.json["outcome"].as_str().unwrap_or("?").to_string(),
        _ => answer.status.to_string(),
    };
    match (code, state) {
        (Some(c), _) => format!("{first} {c}"),
        (None, Some(s)) => format!("{first} {s}"),
        _ => first,
    }
}

#[allow(clippy::too_many_arguments)]
async fn send(
    ctx: &Ctx,
    id: &str,
    method: &str,
    path: &str,
    who: Option<&ActorKey>,
    headers: &[(String, String)],
    body: Option<(&str, String)>,
    out: &mut Outcome,
) -> Result<(), String> {
    let url = format!("{}{path}", ctx.server.base);
    let m = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|e| format!("method {method}: {e}"))?;
    let mut req = ctx.client.request(m, &url);
    out.sent.line = format!("{method} {path}");
    out.sent.actor = who.map_or("none".to_string(), |k| format!("{} ({})", k.name, k.role));
    if let Some(k) = who {
        req = req.header("authorization", format!("Bearer {}", k.key));
        out.sent.headers.push((
            "authorization".into(),
            format!("Bearer <key of {}>", k.name),
        ));
    }
    // Every request of a call carries the same correlation id, run after run.
    let correlation = derived_uuid(&ctx.scenario, &format!("correlation/{id}")).to_string();
    req = req.header("x-correlation-id", &correlation);
    for (h, v) in headers {
        req = req.header(h.as_str(), v.as_str());
        out.sent.headers.push((h.clone(), v.clone()));
    }
    if let Some((ct, b)) = body {
        req = req.header("content-type", ct).body(b.clone());
        out.sent
            .headers
            .push(("content-type".into(), ct.to_string()));
        out.sent.body = match serde_json::from_str::<Value>(&b) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or(b),
            Err(_) => b,
        };
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{method} {path}: no answer: {e}"))?;
    let status = resp.status().as_u16();
    let rh = resp.headers().clone();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    out.answer = Answer {
        status: i64::from(status),
        headers: rh,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    };
    Ok(())
}

async fn cli(ctx: &Ctx, args: &[String], out: &mut Outcome) -> Result<(), String> {
    out.sent.line = format!("dispatch-api {}", args.join(" "));
    out.sent.actor = "the operator (CLI)".into();
    let (code, stdout, stderr) = ctx.server.cli(args).await?;
    out.answer = Answer {
        status: i64::from(code),
        headers: HeaderMap::new(),
        text: format!("stdout:\n{stdout}\nstderr:\n{}", tail_lines(&stderr, 10)),
        json: json!({"stdout": stdout, "stderr": stderr}),
    };
    Ok(())
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How often a read answered `503 projection_behind` is asked again.
const READ_RETRIES: u32 = 5;

/// Whether to ask again: the answer is `503 projection_behind` (the read model
/// has not reached `min_position` within the service's bound), as a client
/// would after `Retry-After` (waits here, at most 2 s).
async fn should_retry(attempt: u32, answer: &Answer) -> bool {
    let code = answer
        .json
        .get("code")
        .or_else(|| answer.json.get("error").and_then(|e| e.get("code")));
    if attempt >= READ_RETRIES
        || answer.status != 503
        || code.and_then(Value::as_str) != Some("projection_behind")
    {
        return false;
    }
    let secs = answer
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1)
        .min(2);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    true
}

/// An authenticated GET as one of the scenario's actors.
pub async fn get(ctx: &Ctx, actor: &str, path: &str) -> Result<Value, String> {
    let key = ctx
        .keys
        .get(actor)
        .ok_or_else(|| format!("actor `{actor}` has no key"))?;
    let mut attempt = 0;
    let (status, text) = loop {
        let resp = ctx
            .client
            .get(format!("{}{path}", ctx.server.base))
            .header("authorization", format!("Bearer {}", key.key))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let answer = Answer {
            status: i64::from(status),
            headers,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text: String::new(),
        };
        if !should_retry(attempt, &answer).await {
            break (status, text);
        }
        attempt += 1;
    };
    if status != 200 {
        return Err(format!(
            "GET {path} as {actor}: {status} {}",
            clip(&text, 2000)
        ));
    }
    serde_json::from_str(&text).map_err(|e| format!("GET {path}: not JSON: {e}"))
}

/// Reads the job as the observer and keeps it as the state at its version.
async fn snapshot(ctx: &mut Ctx, job: &str) -> Result<(), String> {
    if !ctx.keys.contains_key(&ctx.observer) {
        return Ok(());
    }
    let mut view = get(ctx, &ctx.observer.clone(), &format!("/v1/jobs/{job}")).await?;
    // A registered door is shown as the registry knows it now, and a
    // phone's last contact as the phone last said: not the job's state at
    // its version (the door's status changes on its own stream, the phone
    // reports outside the event store), so not part of what a replay must
    // give back.
    if let Some(v) = view.as_object_mut() {
        v.remove("registered_door");
        v.remove("phone");
    }
    let version = view["version"]
        .as_i64()
        .ok_or("GET /v1/jobs/{id} has no version")?;
    let versions = ctx.snapshots.entry(job.to_string()).or_default();
    if let Some(before) = versions.get(&version) {
        if before != &view {
            return Err(format!(
                "job {job} read twice at version {version} with different contents: {}",
                first_difference(before, &view)
            ));
        }
    }
    versions.insert(version, view);
    Ok(())
}

/// Where two JSON values first differ, in words.
pub fn first_difference(a: &Value, b: &Value) -> String {
    fn walk(a: &Value, b: &Value, path: &str) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for k in x.keys().chain(y.keys()) {
                    let p = format!("{path}/{k}");
                    match (x.get(k), y.get(k)) {
                        (Some(u), Some(v)) => {
                            if let Some(d) = walk(u, v, &p) {
                                return Some(d);
                            }
                        }
                        (u, v) => return Some(format!("{p}: {u:?} vs {v:?}")),
                    }
                }
                None
            }
            (Value::Array(x), Value::Array(y)) => {
                for (i, (u, v)) in x.iter().zip(y).enumerate() {
                    if let Some(d) = walk(u, v, &format!("{path}/{i}")) {
                        return Some(d);
                    }
                }
                (x.len() != y.len()).then(|| format!("{path}: {} items vs {}", x.len(), y.len()))
            }
            _ => (a != b)
                .then(|| format!("{}: {a} vs {b}", if path.is_empty() { "/" } else { path })),
        }
    }
    walk(a, b, "").unwrap_or_else(|| "no difference".into())
}

fn expectations(ctx: &Ctx, call: &Call, kind: &Kind, out: &mut Outcome) -> Result<(), String> {
    let e = &call.expect;
    let a = &out.answer;
    let d = doc(kind, a);
    let mut fail = |msg: String| out.failures.push(msg);
    let default_status = match () {
        _ if call.clock.is_some() => Some(200),
        _ if call.upload.is_some() => Some(201),
        _ if call.create_key.is_some() || call.cli.is_some() => Some(0),
        _ => None,
    };
    if let Some(want) = e.status.or(default_status) {
        if a.status != i64::from(want) {
            fail(format!("expected status {want}, got {}", a.status));
        }
    }
    if let Some(want) = &e.outcome {
        let got = a
            .json
            .get("outcome")
            .and_then(Value::as_str)
            .unwrap_or("(none)");
        if got != want {
            fail(format!("expected outcome {want}, got {got}"));
        }
    }
    if let Some(want) = &e.code {
        let want = interpolate(&ctx.vars, want)?;
        let got = d.get("code").and_then(Value::as_str).unwrap_or("(none)");
        if got != want {
            fail(format!("expected code {want}, got {got}"));
        }
    }
    if let Some(want) = &e.state {
        let got = d.get("state").and_then(Value::as_str).unwrap_or("(none)");
        if got != want {
            fail(format!("expected state {want}, got {got}"));
        }
    }
    if let Some(want) = &e.missing {
        let want = substitute(&ctx.vars, &Value::Array(want.clone()))?;
        let got = d.get("missing").cloned().unwrap_or(Value::Null);
        if got != want {
            fail(format!("expected missing {want}, got {got}"));
        }
    }
    if let Some(want) = &e.events {
        let got: Vec<String> = d
            .get("events")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| x["event_type"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default();
        if &got != want {
            fail(format!("expected events {want:?}, got {got:?}"));
        }
    }
    for (h, want) in &e.headers {
        let got = a
            .headers
            .get(h.to_ascii_lowercase().as_str())
            .and_then(|v| v.to_str().ok());
        match (want.as_str(), got) {
            ("(absent)", None) => {}
            ("(absent)", Some(g)) => fail(format!("expected no header {h}, got {g:?}")),
            (w, Some(g)) if w == g => {}
            (w, g) => fail(format!("expected header {h}: {w:?}, got {g:?}")),
        }
    }
    for (path, want) in &e.json {
        let path = interpolate(&ctx.vars, path)?;
        let want = nulls(substitute(&ctx.vars, want)?);
        match lookup(&a.json, &path) {
            None if want == json!("(absent)") => {}
            Some(got) if want == json!("(absent)") => {
                fail(format!("expected nothing at {path}, got {got}"))
            }
            Some(got) if got == want => {}
            Some(got) => fail(format!("expected {path} = {want}, got {got}")),
            None => fail(format!(
                "expected {path} = {want}, but there is nothing at {path}"
            )),
        }
    }
    for want in &e.stdout_contains {
        let want = interpolate(&ctx.vars, want)?;
        if !a.json["stdout"].as_str().unwrap_or("").contains(&want) {
            fail(format!("expected stdout to contain {want:?}"));
        }
    }
    Ok(())
}

/// TOML has no null: the string `"(null)"` stands for it in expectations.
pub fn nulls(v: Value) -> Value {
    match v {
        Value::String(s) if s == "(null)" => Value::Null,
        Value::Array(a) => Value::Array(a.into_iter().map(nulls).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, x)| (k, nulls(x))).collect()),
        other => other,
    }
}
