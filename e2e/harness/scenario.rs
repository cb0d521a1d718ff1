//! The scenario file format (`e2e/scenarios/*.toml`; see `e2e/README.md`).
//!
//! A scenario is a list of steps; a step is a titled group of calls; a call is
//! exactly one action (a tool call, an HTTP request, an evidence upload, a
//! clock move, a key made through the CLI, another CLI command, or a built-in
//! check) with what it must answer and what to save from the answer.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// One scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The name printed on every line (default: the file's stem).
    #[serde(default)]
    pub name: String,
    /// One sentence: what the scenario proves.
    pub title: String,
    /// How the service is started.
    #[serde(default)]
    pub server: ServerSettings,
    /// The actor whose key reads jobs for the harness's own bookkeeping
    /// (snapshots for `replay_matches_history`, envelopes for the audit checks).
    #[serde(default = "default_observer")]
    pub observer: String,
    /// The steps, in order.
    #[serde(rename = "step", default)]
    pub steps: Vec<Step>,
}

fn default_observer() -> String {
    "auditor".into()
}

/// How the service is started for this scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `DISPATCH_CLOCK` (default `manual:2026-11-20T22:00:00Z`).
    #[serde(default = "default_clock")]
    pub clock: String,
    /// Other environment variables for `dispatch-api serve`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            clock: default_clock(),
            env: BTreeMap::new(),
        }
    }
}

fn default_clock() -> String {
    "manual:2026-11-20T22:00:00Z".into()
}

/// A titled group of calls (the canonical scenario's steps are e2e.md's twelve).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the step does, in words.
    pub title: String,
    /// The calls, in order.
    #[serde(rename = "call", default)]
    pub calls: Vec<Call>,
}

/// One action and its expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// The printed label (default: the tool, the request, the check…).
    pub label: Option<String>,
    /// Who acts: a name given to a key by `create_key` (no key: no Authorization header).
    pub actor: Option<String>,

    /// `POST /v1/tools/{tool}` with `{invocation_id, idempotency_key, arguments}`.
    pub tool: Option<String>,
    /// The tool's arguments (default `{}`).
    pub arguments: Option<Value>,
    /// The tool envelope's `invocation_id` (default: a UUIDv5 of the scenario
    /// and the call's id, so runs are repeatable); `"none"` leaves it out.
    pub invocation_id: Option<String>,

    /// `"METHOD /path?query"`.
    pub http: Option<String>,
    /// The JSON body of `http` (none: an empty body).
    pub body: Option<Value>,
    /// Extra request headers of `http`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,

    /// `POST /v1/evidence` with a raw body.
    pub upload: Option<Upload>,
    /// `POST /v1/admin/clock` (the actor must be an admin).
    pub clock: Option<Value>,
    /// `dispatch-api keys create …` through the CLI; the key (stdout) is saved for `actor`.
    pub create_key: Option<CreateKey>,
    /// Any other `dispatch-api` subcommand, against the scenario's database.
    pub cli: Option<Vec<String>>,
    /// A built-in check (see `checks.rs`), with its arguments.
    pub check: Option<String>,
    /// The check's arguments.
    pub args: Option<Value>,

    /// The idempotency key (tools: in the envelope; mutating HTTP calls: the
    /// `Idempotency-Key` header). Default: `<scenario>/<call id>`; `""`: none.
    pub idempotency_key: Option<String>,
    /// Repeat the call once per item, with `${item}` bound to it.
    pub for_each: Option<Vec<Value>>,

    /// What the answer must be.
    #[serde(default)]
    pub expect: Expect,
    /// Variables to save: name → path into the answer (`/a/b/0`, `/rows/[job_id=…]/state`).
    #[serde(default)]
    pub save: BTreeMap<String, String>,
}

/// An evidence upload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// The `Content-Type` of the raw body.
    pub content_type: String,
    /// The content (UTF-8 text; the service stores bytes).
    pub content: String,
}

/// A key made through the CLI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The name the scenario's calls use for this actor (default: `name`).
    pub actor: Option<String>,
    /// `--role`.
    pub role: String,
    /// `--name` (recorded as the actor id on every event).
    pub name: String,
    /// `--technician`.
    pub technician: Option<String>,
}

/// Expectations on an answer. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The HTTP status (or the CLI's exit code for `cli`).
    pub status: Option<u16>,
    /// A tool answer's `outcome`.
    pub outcome: Option<String>,
    /// The problem code (`/error/code` of a tool answer, `/code` of an HTTP one).
    pub code: Option<String>,
    /// The job state after a command (`/result/state` or `/state`).
    pub state: Option<String>,
    /// The `missing` list of a refusal, exactly.
    pub missing: Option<Vec<Value>>,
    /// The event types the call appended, exactly and in order.
    pub events: Option<Vec<String>>,
    /// Response headers, exactly (names case-insensitive); `"(absent)"` for none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Path → value equalities on the answer's JSON.
    #[serde(default)]
    pub json: BTreeMap<String, Value>,
    /// Strings stdout must contain (`cli`).
    #[serde(default)]
    pub stdout_contains: Vec<String>,
}

impl Scenario {
    /// Reads and checks one file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut s: Scenario =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if s.name.is_empty() {
            s.name = path
                .file_stem()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        for (i, step) in s.steps.iter().enumerate() {
            for (j, call) in step.calls.iter().enumerate() {
                let kinds = [
                    call.tool.is_some(),
                    call.http.is_some(),
                    call.upload.is_some(),
                    call.clock.is_some(),
                    call.create_key.is_some(),
                    call.cli.is_some(),
                    call.check.is_some(),
                ]
                .iter()
                .filter(|k| **k)
                .count();
                if (call.tool.is_some() || call.http.is_some()) && call.expect.status.is_none() {
                    return Err(format!(
                        "{}: step {} call {}: every tool and HTTP call states its expected status",
                        path.display(),
                        i + 1,
                        j + 1
                    ));
                }
                if kinds != 1 {
                    return Err(format!(
                        "{}: step {} call {}: give exactly one of tool, http, upload, clock, create_key, cli, check",
                        path.display(),
                        i + 1,
                        j + 1
                    ));
                }
            }
        }
        Ok(s)
    }
}
