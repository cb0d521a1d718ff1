//! The decisions: which command may happen in which state, under which SOP,
//! and which events it leaves behind.

use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::*;
use super::decide::{any_state, closeout, field, intake, Ctx};
use super::errors::JobError;
use super::events::{ApprovalAction, JobEvent};
use super::state::{JobData, JobState};
use crate::domain::actor::{Issued, Role};
use crate::domain::policy::DispatchPolicy;
use crate::domain::sop::{SopLibrary, SopStage};

/// What the job aggregate consults: the SOP library and the dispatch policy.
#[derive(Debug, Clone)]
pub struct JobServices {
    /// The validated SOP library.
    pub sops: Arc<SopLibrary>,
    /// SLA hours and acknowledgement windows.
    pub policy: Arc<DispatchPolicy>,
}

/// The job aggregate: `None` until opened.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Job {
    /// Events applied so far (the stream's last sequence).
    pub version: u64,
    /// Everything known, once opened.
    pub data: Option<JobData>,
}

impl JobCommand {
    /// Which SOP document guards this command (recorded on its events).
    pub fn sop_stage(&self) -> Option<SopStage> {
        // Every job command runs under its incident type's SOPs; the stage
        // names the document whose rules (or data) apply to it, so every job
        // event records the SOP version it happened under.
        Some(match self {
            JobCommand::OpenJob(_)
            | JobCommand::RecordIntake(_)
            | JobCommand::TriageJob(_)
            | JobCommand::SetPriority(_)
            | JobCommand::ResolveDuplicate(_)
            | JobCommand::AddNote(_)
            | JobCommand::FlagSlaBreach(_) => SopStage::Intake,
            JobCommand::OfferJob(_)
            | JobCommand::AcceptOffer(_)
            | JobCommand::DeclineOffer(_)
            | JobCommand::ExpireOffer(_)
            | JobCommand::StartTravel(_)
            | JobCommand::CheckIn(_)
            | JobCommand::CompleteChecklistItem(_)
            | JobCommand::AttachEvidence(_)
            | JobCommand::CheckOut(_)
            | JobCommand::ScheduleReturnVisit(_) => SopStage::Field,
            JobCommand::VerifyCloseout(_)
            | JobCommand::ReopenUnsatisfactory(_)
            | JobCommand::MarkBillingReady(_)
            | JobCommand::CloseJob(_)
            | JobCommand::CancelJob(_)
            | JobCommand::RequestNteIncrease(_)
            | JobCommand::DecideApproval(_) => SopStage::Closeout,
        })
    }
}

impl Job {
    /// The job's data, if opened.
    pub fn data(&self) -> Option<&JobData> {
        self.data.as_ref()
    }

    /// The state, if opened.
    pub fn state(&self) -> Option<JobState> {
        self.data.as_ref().map(|d| d.state)
    }

    /// Rebuilds a job from its events.
    pub fn from_events(events: impl IntoIterator<Item = JobEvent>) -> Job {
        let mut job = Job::default();
        for e in events {
            job.apply(e);
        }
        job
    }

    fn next_approval_id(&self, job: &JobData) -> String {
        let name = format!("{}/approval/{}", job.job_id, self.version + 1);
        Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
    }

    pub(super) fn request_approval(
        &self,
        job: &JobData,
        cmd: &Issued<JobCommand>,
        action: ApprovalAction,
        reason: String,
    ) -> Vec<JobEvent> {
        vec![JobEvent::ApprovalRequested {
            approval_id: self.next_approval_id(job),
            action,
            reason,
            requested_by: cmd.by.clone(),
            at: cmd.at,
        }]
    }

    /// Decides a command: the events it yields, or why it is refused. Pure.
    ///
    /// Every command is decided on its own rules first; then **the
    /// destructive rule** (`Job::person_decides`) looks at what it would
    /// do: an agent's command whose events would end the job or discard
    /// recorded work yields only an `ApprovalRequested`, and a person decides.
    pub fn decide(
        &self,
        cmd: &Issued<JobCommand>,
        svc: &JobServices,
    ) -> Result<Vec<JobEvent>, JobError> {
        let events = self.decide_command(cmd, svc)?;
        self.person_decides(cmd, events)
    }

    /// The destructive rule, stated once for every command: when the agent's
    /// command would yield an event of [`DESTRUCTIVE_EVENTS`] (it ends the
    /// job or discards recorded work) on a job that was ever offered to a
    /// technician — or would dismiss a possible duplicate, which the agent
    /// never does alone — nothing but an `ApprovalRequested` for that effect
    /// happens, and a dispatcher or admin decides (`decide_approval`). An
    /// effect no approval can carry out is refused outright.
    fn person_decides(
        &self,
        cmd: &Issued<JobCommand>,
        events: Vec<JobEvent>,
    ) -> Result<Vec<JobEvent>, JobError> {
        let Some(job) = self.data.as_ref() else {
            return Ok(events);
        };
        if cmd.by.role != Role::Agent {
            return Ok(events);
        }
        let ever_offered = !job.visits.is_empty();
        let Some(effect) = events.iter().find(|e| {
            e.is_destructive() && (ever_offered || matches!(e, JobEvent::DuplicateDismissed { .. }))
        }) else {
            return Ok(events);
        };
        let (action, reason) = match effect {
            JobEvent::JobCancelled { reason, .. } => (
                ApprovalAction::CancelJob {
                    reason: reason.clone(),
                },
                reason.clone(),
            ),
            JobEvent::DuplicateDismissed {
                possible_duplicate_of,
                ..
            } => (
                ApprovalAction::DismissDuplicate {
                    possible_duplicate_of: possible_duplicate_of.clone(),
                },
                format!("agent asks to dismiss possible duplicate of {possible_duplicate_of}"),
            ),
            JobEvent::JobLinkedAsDuplicate { duplicate_of } => (
                ApprovalAction::LinkDuplicate {
                    duplicate_of: duplicate_of.clone(),
                },
                format!("agent asks to link as a duplicate of {duplicate_of}"),
            ),
            _ => return Err(JobError::Forbidden),
        };
        Ok(self.request_approval(job, cmd, action, reason))
    }

    /// Decides a command on its own rules (before the destructive rule).
    fn decide_command(
        &self,
        cmd: &Issued<JobCommand>,
        svc: &JobServices,
    ) -> Result<Vec<JobEvent>, JobError> {
        if let JobCommand::OpenJob(c) = &cmd.command {
            if self.data.is_some() {
                return Err(JobError::JobAlreadyExists);
            }
            return intake::open_job(c, cmd, svc);
        }
        let job = self.data.as_ref().ok_or(JobError::JobNotFound)?;
        if cmd.by.role == Role::Technician
            && !job.is_technicians_now(cmd.by.technician_id.as_deref())
        {
            return Err(JobError::NotYourJob);
        }
        let sop = svc
            .sops
            .get(&job.incident_type)
            .ok_or_else(|| JobError::UnknownIncidentType(job.incident_type.clone()))?;
        let cx = Ctx {
            job,
            sop,
            cmd,
            svc,
            at: cmd.at,
            aggregate: self,
        };
        match &cmd.command {
            JobCommand::OpenJob(_) => unreachable!("handled above"),
            JobCommand::RecordIntake(c) => intake::record_intake(&cx, c),
            JobCommand::TriageJob(c) => intake::triage_job(&cx, c),
            JobCommand::SetPriority(c) => intake::set_priority(&cx, c),
            JobCommand::ResolveDuplicate(c) => intake::resolve_duplicate(&cx, c),
            JobCommand::OfferJob(c) => field::offer_job(&cx, c),
            JobCommand::AcceptOffer(c) => field::accept_offer(&cx, c),
            JobCommand::DeclineOffer(c) => field::decline_offer(&cx, c),
            JobCommand::ExpireOffer(_) => field::expire_offer(&cx),
            JobCommand::StartTravel(_) => field::start_travel(&cx),
            JobCommand::CheckIn(c) => field::check_in(&cx, c),
            JobCommand::CompleteChecklistItem(c) => field::complete_checklist_item(&cx, c),
            JobCommand::AttachEvidence(c) => field::attach_evidence(&cx, c),
            JobCommand::CheckOut(c) => field::check_out(&cx, c),
            JobCommand::ScheduleReturnVisit(c) => field::schedule_return_visit(&cx, c),
            JobCommand::VerifyCloseout(c) => closeout::verify_closeout(&cx, c),
            JobCommand::ReopenUnsatisfactory(c) => closeout::reopen_unsatisfactory(&cx, c),
            JobCommand::MarkBillingReady(_) => closeout::mark_billing_ready(&cx),
            JobCommand::CloseJob(c) => closeout::close_job(&cx, c),
            JobCommand::CancelJob(c) => any_state::cancel_job(&cx, c),
            JobCommand::AddNote(c) => any_state::add_note(&cx, c),
            JobCommand::RequestNteIncrease(c) => any_state::request_nte_increase(&cx, c),
            JobCommand::DecideApproval(c) => any_state::decide_approval(&cx, c),
            JobCommand::FlagSlaBreach(c) => any_state::flag_sla_breach(&cx, c),
        }
    }
}

impl Aggregate for Job {
    const TYPE: &'static str = "job";
    type Command = Issued<JobCommand>;
    type Event = JobEvent;
    type Error = JobError;
    type Services = JobServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), JobError> {
        let events = self.decide(&command, services)?;
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    /// Applies one event: its effect is written beside the decision of
    /// the command that yields it, in the same phase's file
    /// (`OfferAccepted`: `decide/field.rs`, next to `accept_offer`).
    fn apply(&mut self, event: JobEvent) {
        use JobEvent as E;
        self.version += 1;
        let Some(job) = self.data.as_mut() else {
            self.data = intake::opened(&event);
            return;
        };
        match event {
            e @ (E::JobOpened { .. }
            | E::IntakeRecorded { .. }
            | E::JobTriaged { .. }
            | E::PriorityChanged { .. }
            | E::JobLinkedAsDuplicate { .. }
            | E::DuplicateDismissed { .. }) => intake::apply(job, e),
            e @ (E::JobOffered { .. }
            | E::OfferAccepted { .. }
            | E::OfferDeclined { .. }
            | E::OfferExpired { .. }
            | E::TravelStarted { .. }
            | E::CheckedIn { .. }
            | E::ChecklistItemCompleted { .. }
            | E::EvidenceAttached { .. }
            | E::CheckedOut { .. }
            | E::ReturnVisitScheduled { .. }) => field::apply(job, e),
            e @ (E::CloseoutVerified { .. }
            | E::JobReopened { .. }
            | E::BillingReadyMarked { .. }
            | E::JobClosed { .. }) => closeout::apply(job, e),
            e @ (E::JobCancelled { .. }
            | E::NoteAdded { .. }
            | E::ApprovalRequested { .. }
            | E::ApprovalGranted { .. }
            | E::ApprovalRejected { .. }
            | E::NteIncreased { .. }
            | E::SlaBreached { .. }) => any_state::apply(job, e),
        }
    }
}
