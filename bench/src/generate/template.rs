//! The generator's templates: a job's events as decided by the domain once,
//! each turned into strings with slots (`@@JOB@@`, `@@PREV@@`, …) that
//! [`super::Generator`] fills per generated event.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::mix::{Who, INCIDENT};
use cqrs_es::Aggregate;

use dispatch_api::domain::job::{Job, JobCommand, JobEvent, JobServices, TechnicianProfile};
use dispatch_api::domain::sop::SopRef;
use dispatch_api::domain::technician::Shift;
use dispatch_api::domain::{Actor, Issued, Role};
use dispatch_api::store::hash::canonical_json;
use dispatch_api::store::{self, EventMeta};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Var {
    Job,
    Site,
    Tech,
    EventId,
    Prev,
    Seq,
    Corr,
}

#[derive(Debug, Clone)]
pub(super) enum Seg {
    Lit(String),
    Var(Var),
}

/// A string with slots.
#[derive(Debug, Clone)]
pub(super) struct Tmpl(Vec<Seg>);

pub(super) struct Vars<'a> {
    pub(super) job: &'a str,
    pub(super) site: &'a str,
    pub(super) tech: &'a str,
    pub(super) event_id: &'a str,
    pub(super) prev: &'a str,
    pub(super) seq: i64,
    pub(super) corr: &'a str,
}

impl Tmpl {
    /// Splits `s` at `@@NAME@@` tokens; `"@@SEQN@@"` (quoted) is the bare sequence number.
    pub(super) fn parse(s: &str) -> Tmpl {
        let mut segs = Vec::new();
        let mut rest = s;
        let mut lit = String::new();
        while let Some(i) = rest.find("@@") {
            let after = &rest[i + 2..];
            let Some(j) = after.find("@@") else { break };
            let name = &after[..j];
            let var = match name {
                "JOB" => Some(Var::Job),
                "SITE" => Some(Var::Site),
                "TECH" => Some(Var::Tech),
                "EVID" => Some(Var::EventId),
                "PREV" => Some(Var::Prev),
                "SEQ" | "SEQN" => Some(Var::Seq),
                "CORR" => Some(Var::Corr),
                _ => None,
            };
            match var {
                Some(v) => {
                    lit.push_str(&rest[..i]);
                    let mut next = &after[j + 2..];
                    if name == "SEQN" {
                        lit.pop(); // the opening quote
                        next = &next[1..]; // the closing quote
                    }
                    if !lit.is_empty() {
                        segs.push(Seg::Lit(std::mem::take(&mut lit)));
                    }
                    segs.push(Seg::Var(v));
                    rest = next;
                }
                None => {
                    lit.push_str(&rest[..i + 2]);
                    rest = after;
                }
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit));
        }
        Tmpl(segs)
    }

    pub(super) fn render(&self, v: &Vars<'_>, out: &mut String) {
        use std::fmt::Write;
        for s in &self.0 {
            match s {
                Seg::Lit(l) => out.push_str(l),
                Seg::Var(Var::Job) => out.push_str(v.job),
                Seg::Var(Var::Site) => out.push_str(v.site),
                Seg::Var(Var::Tech) => out.push_str(v.tech),
                Seg::Var(Var::EventId) => out.push_str(v.event_id),
                Seg::Var(Var::Prev) => out.push_str(v.prev),
                Seg::Var(Var::Seq) => {
                    let _ = write!(out, "{}", v.seq);
                }
                Seg::Var(Var::Corr) => out.push_str(v.corr),
            }
        }
    }
}

/// COPY text format: backslash, tab, newline and carriage return escaped.
pub(super) fn copy_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// One event of a template job.
#[derive(Debug, Clone)]
pub(super) struct EventTemplate {
    pub(super) event_type: String,
    pub(super) event_version: String,
    pub(super) payload: Tmpl,
    pub(super) metadata: Tmpl,
    pub(super) envelope: Tmpl,
    // Unescaped, for checking the fast path against the store's hashing.
    pub(super) payload_raw: Tmpl,
    pub(super) metadata_raw: Tmpl,
}

/// The job's row in `job_doors` after an event.
#[derive(Debug, Clone)]
pub(super) struct DoorState {
    pub(super) state: &'static str,
    pub(super) has_tech: bool,
    pub(super) completed_at: Option<String>,
}

/// A job's events from the domain, with slots.
#[derive(Debug, Clone)]
pub(super) struct JobTemplate {
    pub(super) events: Vec<EventTemplate>,
    pub(super) doors: Vec<DoorState>,
    pub(super) updated_at: String,
}

pub(super) fn actor(who: Who) -> Actor {
    match who {
        Who::Agent => Actor::new(Role::Agent, "gen-agent"),
        Who::Tech => Actor::technician("@@TECH@@", "@@TECH@@"),
        Who::Desk => Actor::new(Role::Dispatcher, "gen-desk"),
    }
}

pub(super) fn profile() -> TechnicianProfile {
    TechnicianProfile {
        technician_id: "@@TECH@@".into(),
        active: true,
        skills: vec!["automatic_doors".into()],
        certifications: vec![(
            "AAADM".into(),
            chrono::NaiveDate::from_ymd_opt(2030, 6, 30).expect("date"),
        )],
        shift: Shift::Available,
        labor_rate_cents: 9000,
    }
}

pub(super) fn split_event<E: serde::Serialize>(event: &E) -> anyhow::Result<(String, Value)> {
    match serde_json::to_value(event)? {
        Value::Object(m) if m.len() == 1 => Ok(m.into_iter().next().expect("one entry")),
        other => anyhow::bail!("event is not a tagged object: {other}"),
    }
}

pub(super) fn event_template(
    event: &JobEvent,
    at: DateTime<Utc>,
    by: &Actor,
    command: &str,
    sop: Option<SopRef>,
) -> anyhow::Result<EventTemplate> {
    use cqrs_es::DomainEvent;
    let (event_type, payload) = split_event(event)?;
    let event_version = event.event_version();
    let meta = EventMeta {
        occurred_at: at,
        actor: by.clone(),
        tool_invocation_id: None,
        idempotency_key: Some("gen-@@JOB@@-@@SEQ@@".into()),
        correlation_id: Some(Uuid::nil()),
        trace_id: None,
        causation_id: None,
        sop,
        command: Some(command.to_string()),
    };
    let mut metadata = serde_json::to_value(&meta)?;
    metadata["correlation_id"] = "@@CORR@@".into();
    let slots = store::Envelope {
        aggregate_type: Job::TYPE,
        aggregate_id: "@@JOB@@",
        sequence: 0,
        event_id: "@@EVID@@",
        event_type: &event_type,
        event_version: &event_version,
        prev_hash: "@@PREV@@",
    };
    let mut env = store::hash_input(&slots, &payload, &metadata);
    env["sequence"] = "@@SEQN@@".into();
    let payload_c = canonical_json(&payload);
    let metadata_c = canonical_json(&metadata);
    Ok(EventTemplate {
        event_type,
        event_version,
        payload: Tmpl::parse(&copy_escape(&payload_c)),
        payload_raw: Tmpl::parse(&payload_c),
        metadata: Tmpl::parse(&copy_escape(&metadata_c)),
        metadata_raw: Tmpl::parse(&metadata_c),
        envelope: Tmpl::parse(&canonical_json(&env)),
    })
}

/// Decides `steps` for a stand-in job; returns the templates.
pub(super) fn job_template(
    services: &JobServices,
    steps: Vec<crate::mix::Step>,
    start: DateTime<Utc>,
) -> anyhow::Result<JobTemplate> {
    let sop = services
        .sops
        .get(INCIDENT)
        .ok_or_else(|| anyhow::anyhow!("no SOP {INCIDENT}"))?;
    let mut job = Job::default();
    let mut out = JobTemplate {
        events: Vec::new(),
        doors: Vec::new(),
        updated_at: String::new(),
    };
    let mut completed_at: Option<String> = None;
    for (i, step) in steps.into_iter().enumerate() {
        let at = start + Duration::minutes(2 * i as i64);
        let mut command = JobCommand::decode(step.command, step.body)?
            .ok_or_else(|| anyhow::anyhow!("unknown command {}", step.command))?;
        match &mut command {
            JobCommand::OpenJob(o) => o.job_id = "@@JOB@@".into(),
            JobCommand::OfferJob(o) => o.technician = Some(profile()),
            _ => {}
        }
        let name = command.wire_name();
        let sop_ref = command.sop_stage().map(|s| sop.reference(s).clone());
        let by = actor(step.who);
        let events = job
            .decide(&Issued::new(by.clone(), at, command), services)
            .map_err(|e| anyhow::anyhow!("the generator's {name} was refused: {e:?}"))?;
        for e in events {
            out.events
                .push(event_template(&e, at, &by, name, sop_ref.clone())?);
            if matches!(e, JobEvent::CheckedOut { .. }) {
                completed_at = Some(at.to_rfc3339());
            }
            job.apply(e);
            let data = job.data().ok_or_else(|| anyhow::anyhow!("no job data"))?;
            out.doors.push(DoorState {
                state: data.state.as_str(),
                has_tech: data.current_visit().is_some(),
                completed_at: completed_at.clone(),
            });
        }
        out.updated_at = at.to_rfc3339();
    }
    anyhow::ensure!(!out.events.is_empty(), "empty template");
    Ok(out)
}
