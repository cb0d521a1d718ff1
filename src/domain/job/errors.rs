//! Every way a job command can be refused. One variant per guard; each carries
//! what the contract's problem+json needs. These are domain errors only: no
//! technical failure is ever a `JobError`.

use super::events::EvidenceKind;
use super::state::JobState;
use crate::domain::policy::Priority;
use crate::domain::technician::Shift;

/// A refused job command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The job does not exist (any command but `open_job`).
    #[error("job not found")]
    JobNotFound,
    /// `open_job` on an id that is already a job.
    #[error("job already exists")]
    JobAlreadyExists,
    /// The command is not allowed in the job's current state.
    #[error("`{command}` is not allowed in state `{}`", current_state.as_str())]
    InvalidTransition {
        /// The command's wire name.
        command: &'static str,
        /// The state the job is in.
        current_state: JobState,
    },
    /// A field is malformed (blank, too long, out of range, control characters).
    #[error("invalid `{field}`: {problem}")]
    Validation {
        /// The field.
        field: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The SOP library does not know the incident type.
    #[error("unknown incident type `{0}`")]
    UnknownIncidentType(String),
    /// Intake fields the SOP does not define, or values of the wrong type.
    #[error("invalid intake fields: {}", fields.join(", "))]
    InvalidIntakeFields {
        /// The offending field names.
        fields: Vec<String>,
    },
    /// Triage before every required intake field is present.
    #[error("missing intake fields: {}", missing.join(", "))]
    MissingIntakeFields {
        /// The missing field names.
        missing: Vec<String>,
    },
    /// Triage while a possible duplicate is unresolved.
    #[error("possible duplicate of job {possible_duplicate_of} is unresolved")]
    UnresolvedDuplicate {
        /// The other job.
        possible_duplicate_of: String,
    },
    /// `resolve_duplicate` when there is nothing to resolve or no target given.
    #[error("no possible duplicate to resolve")]
    NoDuplicateToResolve,
    /// `link` to a job that does not exist or is not open.
    #[error("job {duplicate_of} does not exist or is not open")]
    DuplicateTargetNotOpen {
        /// The other job.
        duplicate_of: String,
    },
    /// `link` to an open job that is neither this job's flagged possible
    /// duplicate nor at the same site and door.
    #[error(
        "job {duplicate_of} is neither this job's possible duplicate nor at the same site and door"
    )]
    DuplicateTargetUnrelated {
        /// The other job.
        duplicate_of: String,
    },
    /// The agent asked for a priority less urgent than the SOP's rules give.
    #[error("priority {} is below the SOP's {}", requested.as_str(), sop_priority.as_str())]
    PriorityBelowSop {
        /// Asked for.
        requested: Priority,
        /// What the SOP gives.
        sop_priority: Priority,
    },
    /// The technician is not on the roster.
    #[error("unknown technician {0}")]
    UnknownTechnician(String),
    /// Missing skills or unexpired certifications.
    #[error("technician lacks: {}", missing.join(", "))]
    TechnicianNotQualified {
        /// Missing skills and certifications.
        missing: Vec<String>,
    },
    /// Shift `off` or deactivated.
    #[error("{}", unavailable(*shift, *active))]
    TechnicianUnavailable {
        /// Their shift.
        shift: Shift,
        /// Whether still on the roster.
        active: bool,
    },
    /// A technician acting on a job not offered or assigned to them.
    #[error("this job is not offered or assigned to you")]
    NotYourJob,
    /// The actor's role may not do this (for example, decide approvals).
    #[error("role may not do this")]
    Forbidden,
    /// Nobody approves their own request.
    #[error("an approval cannot be decided by its requester")]
    SelfApproval,
    /// `expire_offer` before the acknowledgement window passed.
    #[error("the offer's acknowledgement window has not passed")]
    OfferNotExpired,
    /// `check_in` through the app at a located site, outside its radius or
    /// without a position, and no `reason` given.
    #[error("{}", reason_required(*distance_m, *radius_m))]
    CheckInReasonRequired {
        /// How far from the site, whole metres (`None`: no position given).
        distance_m: Option<u32>,
        /// The site's radius, metres.
        radius_m: u32,
    },
    /// A checklist item id the field SOP does not define.
    #[error("unknown checklist item `{0}`")]
    UnknownChecklistItem(String),
    /// An evidence kind the field SOP does not list.
    #[error("evidence kind `{}` is not allowed for this incident type", .0.as_str())]
    EvidenceKindNotAllowed(EvidenceKind),
    /// `check_out completed` without what the field SOP needs.
    #[error("missing field evidence: {}", missing.join(", "))]
    MissingFieldEvidence {
        /// Checklist ids, evidence kinds, `make_safe_confirmed`, `door_left_state`.
        missing: Vec<String>,
    },
    /// A door needing make-safe left `operational` on a non-completed check-out.
    #[error("an unsafe door must be left secured or locked out")]
    DoorNotSecured,
    /// A needs-quote job's return visit before the quote (an NTE increase) was approved.
    #[error("the quote has not been approved")]
    QuoteNotApproved,
    /// `verify_closeout` with closeout items or the sign-off missing.
    #[error("closeout incomplete: {}", missing.join(", "))]
    CloseoutIncomplete {
        /// Item ids and `signature`.
        missing: Vec<String>,
    },
    /// The invoice total is over the current NTE.
    #[error("invoice total {total_cents} exceeds NTE {nte_cents}")]
    NteExceeded {
        /// Total.
        total_cents: i64,
        /// Current NTE.
        nte_cents: i64,
    },
    /// Billing data missing (IFM work-order number, itemized lines).
    #[error("missing billing data: {}", missing.join(", "))]
    MissingBillingData {
        /// What is missing.
        missing: Vec<String>,
    },
    /// An NTE "increase" not above the current NTE.
    #[error("the new NTE must be above the current NTE of {current_cents} cents")]
    NteNotIncreased {
        /// Current NTE.
        current_cents: i64,
    },
    /// No such approval on this job.
    #[error("approval {0} not found")]
    ApprovalNotFound(String),
    /// The approval was already decided.
    #[error("approval {0} is not pending")]
    ApprovalNotPending(String),
    /// The job moved on: the approved effect no longer applies.
    #[error("approval {approval_id} is stale: the job is in state `{}`", current_state.as_str())]
    ApprovalStale {
        /// Which.
        approval_id: String,
        /// Where the job is now.
        current_state: JobState,
    },
    /// `flag_sla_breach` when that SLA is not (or not yet) breached, or already flagged.
    #[error("no {0} SLA breach to flag")]
    SlaNotBreached(&'static str),
}

/// The code of an incident type the SOP library does not have, whoever
/// names it: `open_job`, `get_sop`, `find_technicians`' `eligible_for`, on
/// every transport (`crate::error::ApiError::UnknownIncidentType`).
pub const UNKNOWN_INCIDENT_TYPE: &str = "unknown_incident_type";

impl JobError {
    /// The stable machine code of the contract.
    pub fn code(&self) -> &'static str {
        match self {
            JobError::JobNotFound | JobError::ApprovalNotFound(_) => "not_found",
            JobError::JobAlreadyExists => "job_already_exists",
            JobError::InvalidTransition { .. } => "invalid_transition",
            JobError::Validation { .. } => "validation_error",
            JobError::UnknownIncidentType(_) => UNKNOWN_INCIDENT_TYPE,
            JobError::InvalidIntakeFields { .. } => "invalid_intake_fields",
            JobError::MissingIntakeFields { .. } => "missing_intake_fields",
            JobError::UnresolvedDuplicate { .. } => "unresolved_duplicate",
            JobError::NoDuplicateToResolve => "no_duplicate_to_resolve",
            JobError::DuplicateTargetNotOpen { .. } => "duplicate_target_not_open",
            JobError::DuplicateTargetUnrelated { .. } => "duplicate_target_unrelated",
            JobError::PriorityBelowSop { .. } => "priority_below_sop",
            JobError::UnknownTechnician(_) => "unknown_technician",
            JobError::TechnicianNotQualified { .. } => "technician_not_qualified",
            JobError::TechnicianUnavailable { .. } => "technician_unavailable",
            JobError::NotYourJob | JobError::Forbidden | JobError::SelfApproval => "forbidden",
            JobError::OfferNotExpired => "offer_not_expired",
            JobError::CheckInReasonRequired { .. } => "check_in_reason_required",
            JobError::UnknownChecklistItem(_) => "unknown_checklist_item",
            JobError::EvidenceKindNotAllowed(_) => "evidence_kind_not_allowed",
            JobError::MissingFieldEvidence { .. } => "missing_field_evidence",
            JobError::DoorNotSecured => "door_not_secured",
            JobError::QuoteNotApproved => "quote_not_approved",
            JobError::CloseoutIncomplete { .. } => "closeout_incomplete",
            JobError::NteExceeded { .. } => "nte_exceeded",
            JobError::MissingBillingData { .. } => "missing_billing_data",
            JobError::NteNotIncreased { .. } => "nte_not_increased",
            JobError::ApprovalNotPending(_) => "approval_not_pending",
            JobError::ApprovalStale { .. } => "approval_stale",
            JobError::SlaNotBreached(_) => "sla_not_breached",
        }
    }

    /// The `missing` list of the problem document, where the guard has one.
    pub fn missing(&self) -> Option<&[String]> {
        match self {
            JobError::MissingIntakeFields { missing }
            | JobError::TechnicianNotQualified { missing }
            | JobError::MissingFieldEvidence { missing }
            | JobError::CloseoutIncomplete { missing }
            | JobError::MissingBillingData { missing } => Some(missing),
            JobError::InvalidIntakeFields { fields } => Some(fields),
            _ => None,
        }
    }

    /// The state the job is in, where the refusal is about state.
    pub fn current_state(&self) -> Option<JobState> {
        match self {
            JobError::InvalidTransition { current_state, .. }
            | JobError::ApprovalStale { current_state, .. } => Some(*current_state),
            _ => None,
        }
    }
}

/// The detail of [`JobError::CheckInReasonRequired`].
fn reason_required(distance_m: Option<u32>, radius_m: u32) -> String {
    match distance_m {
        Some(d) => format!(
            "checked in {d} m from the site, outside its {radius_m} m radius: give a reason"
        ),
        None => format!("no location given for a site with a {radius_m} m radius: give a reason"),
    }
}

/// The detail of [`JobError::TechnicianUnavailable`], in the wire's words.
fn unavailable(shift: Shift, active: bool) -> String {
    if active {
        format!(
            "the technician is unavailable: their shift is `{}`",
            shift.as_str()
        )
    } else {
        "the technician is unavailable: no longer on the roster".to_string()
    }
}
