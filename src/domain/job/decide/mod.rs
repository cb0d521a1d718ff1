//! The decision of every job command on its own rules, one function per
//! command named after its wire name, grouped by phase; `Job::decide`
//! (`super::aggregate`) dispatches to them and then applies the destructive
//! rule. Each phase's file also holds how its events change the job (its
//! `apply`, to which `Job::apply` routes them), so a command's decision and
//! its event's effect are read in one file. The checks they share are here.

pub(in crate::domain::job) mod any_state;
pub(in crate::domain::job) mod closeout;
pub(in crate::domain::job) mod field;
pub(in crate::domain::job) mod intake;

use chrono::{DateTime, Utc};

use super::aggregate::{Job, JobServices};
use super::commands::{DuplicateTarget, JobCommand};
use super::errors::JobError;
use super::events::JobEvent;
use super::state::{JobData, JobState};
use crate::domain::actor::Issued;
use crate::domain::policy::{DispatchPolicy, Priority};
use crate::domain::sop::IncidentSop;

/// What a decision yields: the events, or why the command is refused.
pub(super) type Decided = Result<Vec<JobEvent>, JobError>;

/// What every decision may consult.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    /// The job as it stands.
    pub job: &'a JobData,
    /// Its incident type's SOPs.
    pub sop: &'a IncidentSop,
    /// The command, who issued it and when.
    pub cmd: &'a Issued<JobCommand>,
    /// The SOP library and the dispatch policy.
    pub svc: &'a JobServices,
    /// When it was issued.
    pub at: DateTime<Utc>,
    /// The aggregate (for the ids it derives).
    pub aggregate: &'a Job,
}

/// Longest id accepted (client, site, door, technician, invoice numbers).
pub(super) const MAX_ID_BYTES: usize = 200;
/// Longest free text accepted.
pub(super) const MAX_TEXT_BYTES: usize = 4096;
/// Largest NTE or amount accepted: $100,000,000.00.
pub(super) const MAX_CENTS: i64 = 10_000_000_000;

pub(super) fn check_text(field: &str, s: &str, max: usize) -> Result<(), JobError> {
    let bad = |problem| {
        Err(JobError::Validation {
            field: field.to_string(),
            problem,
        })
    };
    if s.trim().is_empty() {
        return bad("must not be blank");
    }
    if s.len() > max {
        return bad("too long");
    }
    if s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return bad("control characters are not allowed");
    }
    Ok(())
}

pub(super) fn check_opt_text(field: &str, s: &Option<String>) -> Result<(), JobError> {
    s.as_deref()
        .map_or(Ok(()), |s| check_text(field, s, MAX_TEXT_BYTES))
}

pub(super) fn check_cents(field: &str, v: i64) -> Result<(), JobError> {
    if !(0..=MAX_CENTS).contains(&v) {
        return Err(JobError::Validation {
            field: field.to_string(),
            problem: "amount out of range",
        });
    }
    Ok(())
}

pub(super) fn require(
    job: &JobData,
    command: &'static str,
    allowed: &[JobState],
) -> Result<(), JobError> {
    if allowed.contains(&job.state) {
        Ok(())
    } else {
        Err(JobError::InvalidTransition {
            command,
            current_state: job.state,
        })
    }
}

pub(super) fn require_open(job: &JobData, command: &'static str) -> Result<(), JobError> {
    if job.state.is_open() {
        Ok(())
    } else {
        Err(JobError::InvalidTransition {
            command,
            current_state: job.state,
        })
    }
}

/// The priority the SOP's rules give the intake, with the reasons for P1.
pub(super) fn sop_priority(sop: &IncidentSop, job: &JobData) -> (Priority, Vec<String>) {
    let reasons: Vec<String> = sop
        .intake
        .p1_when
        .iter()
        .filter(|r| r.matches(&job.intake))
        .map(|r| r.reason.clone())
        .collect();
    if reasons.is_empty() {
        (sop.intake.default_priority, reasons)
    } else {
        (Priority::P1, reasons)
    }
}

pub(super) fn sla_dues(
    policy: &DispatchPolicy,
    job: &JobData,
    p: Priority,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    (
        policy
            .response_window(&job.client_id, p)
            .map(|w| job.opened_at + w),
        policy
            .completion_window(&job.client_id, p)
            .map(|w| job.opened_at + w),
    )
}

/// Trip charges owed when a job is cancelled: one per visit that travelled.
pub(super) fn cancel_trip_charge(sop: &IncidentSop, job: &JobData) -> i64 {
    let travelled = job
        .visits
        .iter()
        .filter(|v| v.travel_started_at.is_some() || v.checked_in_at.is_some())
        .count() as i64;
    travelled * sop.closeout.trip_charge_cents
}

/// `link` accepts the job's own flagged possible duplicate, or another open
/// job at the same site and door; the target must exist and be open.
pub(super) fn check_link_target(
    job: &JobData,
    target: &str,
    found: Option<&DuplicateTarget>,
) -> Result<(), JobError> {
    let open = found.filter(|t| t.open);
    let Some(t) = open.filter(|_| target != job.job_id) else {
        return Err(JobError::DuplicateTargetNotOpen {
            duplicate_of: target.to_string(),
        });
    };
    let flagged = job.flags.possible_duplicate_of.as_deref() == Some(target);
    let same_door = t.site_id == job.site.id && t.door_id == job.door.id;
    if flagged || same_door {
        Ok(())
    } else {
        Err(JobError::DuplicateTargetUnrelated {
            duplicate_of: target.to_string(),
        })
    }
}

pub(super) fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
