//! The job state machine as a table: which command, from which states, with
//! which events, to which state. It is the documentation's source (the state
//! diagram in docs/02 is generated from it) and tests hold the aggregate to it.

use super::state::JobState;
use JobState::*;

/// Where a transition leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// A fixed state.
    State(JobState),
    /// The state it was in.
    Same,
    /// Whatever the approved effect does (decide_approval).
    PerEffect,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The command's wire name.
    pub command: &'static str,
    /// A variant of the command (`link`, `completed`, …), where rows differ by it.
    pub variant: Option<&'static str>,
    /// The states it is allowed in.
    pub from: &'static [JobState],
    /// The events it yields.
    pub events: &'static [&'static str],
    /// Where it leads.
    pub to: To,
    /// Who may do it, where the domain restricts it beyond the allowlist.
    pub guard: &'static str,
}

const OPEN: &[JobState] = &[
    Intake,
    Triaged,
    Offered,
    Confirmed,
    EnRoute,
    OnSite,
    OnHold,
    WorkCompleted,
    CloseoutVerified,
    BillingReady,
];
const BEFORE_WORK_COMPLETED: &[JobState] =
    &[Intake, Triaged, Offered, Confirmed, EnRoute, OnSite, OnHold];

const fn row(
    command: &'static str,
    from: &'static [JobState],
    events: &'static [&'static str],
    to: To,
    guard: &'static str,
) -> Transition {
    Transition {
        command,
        variant: None,
        from,
        events,
        to,
        guard,
    }
}

const fn variant(
    command: &'static str,
    variant: &'static str,
    from: &'static [JobState],
    events: &'static [&'static str],
    to: To,
    guard: &'static str,
) -> Transition {
    Transition {
        command,
        variant: Some(variant),
        from,
        events,
        to,
        guard,
    }
}

/// The table (lifecycle.md, with docs/decisions.md where it is silent).
pub const TRANSITIONS: &[Transition] = &[
    row(
        "open_job",
        &[],
        &["JobOpened"],
        To::State(Intake),
        "incident type known; IFM jobs carry WO and NTE",
    ),
    row(
        "record_intake",
        &[Intake],
        &["IntakeRecorded"],
        To::Same,
        "fields defined by the SOP, typed",
    ),
    row(
        "triage_job",
        &[Intake],
        &["JobTriaged"],
        To::State(Triaged),
        "required intake present; no unresolved duplicate",
    ),
    variant(
        "resolve_duplicate",
        "link",
        &[Intake, Triaged],
        &["JobLinkedAsDuplicate"],
        To::State(Duplicate),
        "other job open, and flagged as this one's possible duplicate or at the same site and door; agent on an ever-offered job: ApprovalRequested only",
    ),
    variant(
        "resolve_duplicate",
        "not_duplicate",
        &[Intake],
        &["DuplicateDismissed"],
        To::Same,
        "agent: ApprovalRequested only",
    ),
    row(
        "offer_job",
        &[Triaged],
        &["JobOffered"],
        To::State(Offered),
        "technician qualified and available",
    ),
    row(
        "accept_offer",
        &[Offered],
        &["OfferAccepted"],
        To::State(Confirmed),
        "the offered technician; ETA",
    ),
    row(
        "decline_offer",
        &[Offered],
        &["OfferDeclined"],
        To::State(Triaged),
        "the offered technician; reason",
    ),
    row(
        "expire_offer",
        &[Offered],
        &["OfferExpired"],
        To::State(Triaged),
        "system; acknowledgement window passed",
    ),
    row(
        "start_travel",
        &[Confirmed],
        &["TravelStarted"],
        To::State(EnRoute),
        "the assigned technician",
    ),
    row(
        "check_in",
        &[Confirmed, EnRoute],
        &["CheckedIn"],
        To::State(OnSite),
        "the assigned technician; `app` at a located site: inside its radius, or a reason",
    ),
    row(
        "complete_checklist_item",
        &[OnSite],
        &["ChecklistItemCompleted"],
        To::Same,
        "item from the field SOP",
    ),
    row(
        "attach_evidence",
        OPEN,
        &["EvidenceAttached"],
        To::Same,
        "kind from the SOP; content uploaded",
    ),
    variant(
        "check_out",
        "completed",
        &[OnSite],
        &["CheckedOut"],
        To::State(WorkCompleted),
        "checklist, evidence, make-safe, door state",
    ),
    variant(
        "check_out",
        "parts_on_order|return_visit|needs_quote",
        &[OnSite],
        &["CheckedOut"],
        To::State(OnHold),
        "unsafe door secured or locked out",
    ),
    row(
        "schedule_return_visit",
        &[OnHold],
        &["ReturnVisitScheduled"],
        To::State(Triaged),
        "needs-quote: quote approved",
    ),
    row(
        "verify_closeout",
        &[WorkCompleted],
        &["CloseoutVerified"],
        To::State(CloseoutVerified),
        "closeout items and sign-off",
    ),
    row(
        "reopen_unsatisfactory",
        &[WorkCompleted, CloseoutVerified],
        &["JobReopened"],
        To::State(Triaged),
        "reason",
    ),
    row(
        "mark_billing_ready",
        &[CloseoutVerified],
        &["BillingReadyMarked"],
        To::State(BillingReady),
        "WO for IFM; total within NTE",
    ),
    row(
        "close_job",
        &[BillingReady],
        &["JobClosed"],
        To::State(Closed),
        "invoice number",
    ),
    row(
        "cancel_job",
        BEFORE_WORK_COMPLETED,
        &["JobCancelled"],
        To::State(Cancelled),
        "agent on an ever-offered job: ApprovalRequested only",
    ),
    row("add_note", OPEN, &["NoteAdded"], To::Same, ""),
    row(
        "request_nte_increase",
        OPEN,
        &["ApprovalRequested"],
        To::Same,
        "above the current NTE",
    ),
    row(
        "decide_approval",
        OPEN,
        &[
            "ApprovalGranted|ApprovalRejected",
            "NteIncreased|JobCancelled|DuplicateDismissed|JobLinkedAsDuplicate",
        ],
        To::PerEffect,
        "dispatcher or admin; not the requester",
    ),
    row(
        "flag_sla_breach",
        OPEN,
        &["SlaBreached"],
        To::Same,
        "system; due time passed; once per kind",
    ),
    row(
        "set_priority",
        &[Triaged],
        &["PriorityChanged"],
        To::Same,
        "SLA recomputed from the call time",
    ),
];

/// The states a command (variant) is allowed in.
pub fn allowed_states(command: &str, variant: Option<&str>) -> Vec<JobState> {
    TRANSITIONS
        .iter()
        .filter(|t| t.command == command && (variant.is_none() || t.variant == variant))
        .flat_map(|t| t.from.iter().copied())
        .collect()
}

/// The state diagram as Mermaid (state-changing rows; self-loops are in the table).
pub fn mermaid() -> String {
    let mut out = String::from("stateDiagram-v2\n");
    for t in TRANSITIONS {
        let label = match t.variant {
            Some(v) => format!("{} ({})", t.command, v.replace('|', ", ")),
            None => t.command.to_string(),
        };
        match t.to {
            To::State(to) if t.from.is_empty() => {
                out.push_str(&format!("    [*] --> {}: {label}\n", to.as_str()))
            }
            To::State(to) => {
                for from in t.from {
                    out.push_str(&format!(
                        "    {} --> {}: {label}\n",
                        from.as_str(),
                        to.as_str()
                    ));
                }
            }
            To::Same | To::PerEffect => {}
        }
    }
    for s in [Closed, Cancelled, Duplicate] {
        out.push_str(&format!("    {} --> [*]\n", s.as_str()));
    }
    out
}

/// The table as Markdown.
pub fn markdown_table() -> String {
    let mut out =
        String::from("| command | from | events | to | guard |\n| --- | --- | --- | --- | --- |\n");
    for t in TRANSITIONS {
        let command = match t.variant {
            Some(v) => format!("`{}` ({})", t.command, v.replace('|', ", ")),
            None => format!("`{}`", t.command),
        };
        let from = if t.from.is_empty() {
            "—".to_string()
        } else if t.from == OPEN {
            "any open".to_string()
        } else if t.from == BEFORE_WORK_COMPLETED {
            "any before `work_completed`".to_string()
        } else {
            t.from
                .iter()
                .map(|s| format!("`{}`", s.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let to = match t.to {
            To::State(s) => format!("`{}`", s.as_str()),
            To::Same => "same".to_string(),
            To::PerEffect => "per effect".to_string(),
        };
        let events = t
            .events
            .iter()
            .map(|e| format!("`{}`", e.replace('|', "` / `")))
            .collect::<Vec<_>>()
            .join(" + ");
        out.push_str(&format!(
            "| {command} | {from} | {events} | {to} | {} |\n",
            t.guard
        ));
    }
    out
}
