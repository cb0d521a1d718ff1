//! Builders and fixtures shared by every module of the domain test binary.
//!
//! Times are fixed (`t0()` is the call, `at(min)` is minutes after it) so that
//! every event a test expects can be written out in full. The canonical job is
//! an IFM work order for an automatic sliding door stuck open after hours with
//! the opening unsecured: P1, make-safe required, NTE 50,000 cents.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use uuid::Uuid;

pub use dispatch_api::domain::job::*;
pub use dispatch_api::domain::policy::{DispatchPolicy, Priority};
pub use dispatch_api::domain::sop::{IncidentSop, SopError, SopLibrary};
pub use dispatch_api::domain::technician::Shift;
pub use dispatch_api::domain::{Actor, Issued, Role};

/// The real SOP library shipped with the service.
pub const SOP_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sops");

/// Loaded once per test binary.
pub static LIBRARY: LazyLock<Arc<SopLibrary>> = LazyLock::new(|| {
    Arc::new(SopLibrary::load(Path::new(SOP_DIR)).expect("the real SOP library loads"))
});

/// The services the job aggregate consults: the real SOPs and the default policy.
pub fn services() -> JobServices {
    JobServices {
        sops: LIBRARY.clone(),
        policy: Arc::new(DispatchPolicy::default()),
    }
}

/// A fresh given/when/then harness for the job aggregate.
pub fn framework() -> TestFramework<Job> {
    TestFramework::<Job>::with(services())
}

/// The SOPs of an incident type of the real library.
pub fn sop(incident_type: &str) -> &'static IncidentSop {
    LIBRARY
        .get(incident_type)
        .expect("incident type in the real library")
}

pub const JOB_ID: &str = "job-1";
pub const OTHER_JOB: &str = "job-0";
pub const INCIDENT: &str = "automatic_door_malfunction";
pub const NTE: i64 = 50_000;
/// `trip_charge_cents` of the automatic door closeout SOP.
pub const TRIP: i64 = 9_500;
/// Labor rate of every qualified technician in these tests, cents per hour.
pub const RATE: i64 = 12_000;

pub const TECH_A: &str = "tech-a";
pub const TECH_B: &str = "tech-b";
pub const TECH_C: &str = "tech-c";
pub const TECH_D: &str = "tech-d";

/// The call: Saturday 2026-05-02 21:00 UTC (after hours).
/// The nine incident types of the shipped SOP library, in order.
pub const INCIDENT_TYPES: [&str; 9] = [
    "automatic_door_malfunction",
    "dock_door_damage",
    "door_stuck_open",
    "fire_door_deficiency",
    "fire_door_inspection",
    "lock_or_access_control_failure",
    "overhead_door_off_track",
    "preventive_maintenance",
    "storefront_glass_breakage",
];

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 2, 21, 0, 0).unwrap()
}

/// `minutes` after the call.
pub fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

pub fn hours(h: i64) -> DateTime<Utc> {
    t0() + Duration::hours(h)
}

// ---------------------------------------------------------------- actors

pub fn agent() -> Actor {
    Actor::new(Role::Agent, "agent-1")
}

pub fn dispatcher() -> Actor {
    Actor::new(Role::Dispatcher, "dispatcher-1")
}

pub fn dispatcher2() -> Actor {
    Actor::new(Role::Dispatcher, "dispatcher-2")
}

pub fn admin() -> Actor {
    Actor::new(Role::Admin, "admin-1")
}

pub fn auditor() -> Actor {
    Actor::new(Role::Auditor, "auditor-1")
}

pub fn system() -> Actor {
    Actor::system()
}

/// A technician key bound to technician `id`.
pub fn tech(id: &str) -> Actor {
    Actor::technician(format!("key-{id}"), id)
}

// ---------------------------------------------------------- technicians

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The refusal of a technician without the AAADM certification.
pub fn lacks_aaadm() -> JobError {
    JobError::TechnicianNotQualified {
        missing: vec!["AAADM".into()],
    }
}

/// AAADM-certified automatic door technician, available.
pub fn qualified(id: &str) -> TechnicianProfile {
    TechnicianProfile {
        technician_id: id.to_string(),
        active: true,
        skills: vec!["automatic_doors".into()],
        certifications: vec![("AAADM".into(), date(2027, 12, 31))],
        shift: Shift::Available,
        labor_rate_cents: RATE,
    }
}

/// The e2e story's B: automatic doors, but no AAADM certification.
pub fn no_aaadm(id: &str) -> TechnicianProfile {
    TechnicianProfile {
        certifications: vec![],
        ..qualified(id)
    }
}

/// The e2e story's C: certified, but off shift.
pub fn off_shift(id: &str) -> TechnicianProfile {
    TechnicianProfile {
        shift: Shift::Off,
        ..qualified(id)
    }
}

// ------------------------------------------------------------- commands

pub fn cmd(by: Actor, when: DateTime<Utc>, command: JobCommand) -> Issued<JobCommand> {
    Issued::new(by, when, command)
}

pub fn site() -> Site {
    Site {
        id: "site-17".into(),
        name: "Acme Store 17".into(),
        address: "100 Main St, Springfield, IL 62701".into(),
    }
}

pub fn contact() -> Contact {
    Contact {
        name: "Pat Lee".into(),
        phone: "+1-555-0100".into(),
    }
}

pub fn door() -> Door {
    Door {
        id: "D-1".into(),
        location: "Main entrance".into(),
    }
}

pub fn ifm_order(nte: i64) -> IfmOrder {
    IfmOrder {
        work_order_number: "WO-1001".into(),
        nte_cents: nte,
    }
}

/// The canonical `open_job` body (IFM, NTE 50,000), with the resolved id set.
pub fn open_body() -> OpenJob {
    OpenJob {
        job_id: JOB_ID.into(),
        incident_type: INCIDENT.into(),
        channel: Channel::Ifm,
        client_id: "acme-retail".into(),
        site: site(),
        contact: contact(),
        door: door(),
        description: "Automatic sliding door stuck open".into(),
        ifm: Some(ifm_order(NTE)),
        related: RelatedJobs::default(),
        door_id: None,
        register: None,
        planned: None,
        follow_up_of: None,
    }
}

/// The `JobOpened` the canonical `open_body()` yields at `t0()`.
pub fn opened_event() -> JobEvent {
    JobEvent::JobOpened {
        job_id: JOB_ID.into(),
        incident_type: INCIDENT.into(),
        channel: Channel::Ifm,
        client_id: "acme-retail".into(),
        site: site(),
        contact: contact(),
        door: door(),
        description: "Automatic sliding door stuck open".into(),
        ifm: Some(ifm_order(NTE)),
        opened_at: t0(),
        possible_duplicate_of: None,
        recall_of: None,
        preferred_technician_id: None,
        nte_cents: Some(NTE),
        door_id: None,
        planned: None,
        follow_up_of: None,
    }
}

/// `JobOpened` for the canonical job opened on `channel` without an IFM
/// order, as a recall of `recall_of`, with `nte_cents`.
pub fn opened_without_ifm(
    channel: Channel,
    recall_of: Option<&str>,
    nte_cents: Option<i64>,
) -> JobEvent {
    JobEvent::JobOpened {
        job_id: JOB_ID.into(),
        incident_type: INCIDENT.into(),
        channel,
        client_id: "acme-retail".into(),
        site: site(),
        contact: contact(),
        door: door(),
        description: "Automatic sliding door stuck open".into(),
        ifm: None,
        opened_at: t0(),
        possible_duplicate_of: None,
        recall_of: recall_of.map(str::to_string),
        preferred_technician_id: None,
        nte_cents,
        door_id: None,
        planned: None,
        follow_up_of: None,
    }
}

pub fn open(body: OpenJob) -> JobCommand {
    JobCommand::OpenJob(body)
}

/// A JSON object literal as intake fields.
pub fn fields(v: Value) -> BTreeMap<String, Value> {
    serde_json::from_value(v).expect("a JSON object")
}

/// Every field of the automatic door intake SOP; after hours and the opening
/// cannot be secured: P1 (`opening_unsecured_after_hours`), make-safe required.
pub fn p1_intake() -> BTreeMap<String, Value> {
    fields(json!({
        "anyone_hurt_or_trapped": false,
        "opening_can_be_secured": false,
        "after_hours": true,
        "access_hours": "24/7, ask for the shift manager",
        "symptom": "stuck_open",
        "mode_switch_position": "automatic",
        "power_cycled": true,
    }))
}

/// The same, but secure and in business hours: the SOP's default P2, no make-safe.
pub fn routine_intake() -> BTreeMap<String, Value> {
    fields(json!({
        "anyone_hurt_or_trapped": false,
        "opening_can_be_secured": true,
        "after_hours": false,
        "access_hours": "Mon-Sat 8-20",
        "symptom": "noisy",
        "mode_switch_position": "automatic",
        "power_cycled": false,
    }))
}

pub fn record_intake(f: BTreeMap<String, Value>) -> JobCommand {
    JobCommand::RecordIntake(RecordIntake { fields: f })
}

pub fn triage(priority: Option<Priority>) -> JobCommand {
    JobCommand::TriageJob(TriageJob { priority })
}

pub fn set_priority(priority: Priority, reason: &str) -> JobCommand {
    JobCommand::SetPriority(SetPriority {
        priority,
        reason: reason.into(),
    })
}

/// `resolve_duplicate` `link`, with the target resolved as the application
/// would: `target_open` `None` when no such job exists, else a job at the
/// fixture's site and door, open or not.
pub fn link_duplicate(duplicate_of: Option<&str>, target_open: Option<bool>) -> JobCommand {
    link_duplicate_at(duplicate_of, target_open, &site().id, &door().id)
}

/// `link` to a target resolved at another site and door.
/// `resolve_duplicate`: link to `duplicate_of`, which is still open.
pub fn link_to_open(duplicate_of: &str) -> JobCommand {
    link_duplicate(Some(duplicate_of), Some(true))
}

pub fn link_duplicate_at(
    duplicate_of: Option<&str>,
    target_open: Option<bool>,
    site_id: &str,
    door_id: &str,
) -> JobCommand {
    JobCommand::ResolveDuplicate(ResolveDuplicate {
        resolution: DuplicateResolution::Link,
        duplicate_of: duplicate_of.map(str::to_string),
        target: target_open.map(|open| DuplicateTarget {
            open,
            site_id: site_id.into(),
            door_id: door_id.into(),
        }),
    })
}

pub fn not_duplicate() -> JobCommand {
    JobCommand::ResolveDuplicate(ResolveDuplicate {
        resolution: DuplicateResolution::NotDuplicate,
        duplicate_of: None,
        target: None,
    })
}

/// `offer_job` with the technician's profile resolved as the application would.
pub fn offer(profile: TechnicianProfile) -> JobCommand {
    JobCommand::OfferJob(OfferJob {
        technician_id: profile.technician_id.clone(),
        technician: Some(profile),
    })
}

/// `offer_job` to a technician the roster does not know.
pub fn offer_unknown(id: &str) -> JobCommand {
    JobCommand::OfferJob(OfferJob {
        technician_id: id.into(),
        technician: None,
    })
}

pub fn accept(eta: DateTime<Utc>) -> JobCommand {
    JobCommand::AcceptOffer(AcceptOffer { eta })
}

pub fn decline(reason: &str) -> JobCommand {
    JobCommand::DeclineOffer(DeclineOffer {
        reason: reason.into(),
    })
}

pub fn expire() -> JobCommand {
    JobCommand::ExpireOffer(ExpireOffer {})
}

pub fn start_travel() -> JobCommand {
    JobCommand::StartTravel(StartTravel {})
}

/// The technician checks in through the app, without a location.
pub fn check_in_app() -> JobCommand {
    check_in(CheckInMethod::App, None, None)
}

pub fn check_in(method: CheckInMethod, lat: Option<f64>, lon: Option<f64>) -> JobCommand {
    JobCommand::CheckIn(CheckIn {
        method,
        lat,
        lon,
        accuracy_m: None,
        reason: None,
        site_location: None,
    })
}

pub fn checklist_item(item_id: &str, result: ChecklistResult) -> JobCommand {
    JobCommand::CompleteChecklistItem(CompleteChecklistItem {
        item_id: item_id.into(),
        result,
        note: None,
    })
}

/// A distinct, valid SHA-256 (64 lowercase hex digits) per `n`.
pub fn sha(n: u64) -> String {
    format!("{n:064x}")
}

pub fn evidence(kind: EvidenceKind, n: u64) -> JobCommand {
    JobCommand::AttachEvidence(AttachEvidence {
        kind,
        sha256: sha(n),
        note: None,
        upload: None,
    })
}

pub fn evidence_event(kind: EvidenceKind, n: u64) -> JobEvent {
    JobEvent::EvidenceAttached {
        kind,
        sha256: sha(n),
        note: None,
        content_type: None,
        uploaded_by: None,
    }
}

/// The operator motor of the canonical story: 1 × 20,000 cents.
pub fn motor() -> Part {
    Part {
        part_number: "MOTOR-1".into(),
        description: "Operator motor".into(),
        quantity: 1,
        unit_price_cents: 20_000,
    }
}

pub fn belt() -> Part {
    Part {
        part_number: "BELT-42".into(),
        description: "Drive belt".into(),
        quantity: 2,
        unit_price_cents: 3_500,
    }
}

/// `check_out` with the work completed, the door operational and the
/// make-safe confirmed, fitting `parts`.
pub fn completed(parts: Vec<Part>) -> JobCommand {
    check_out(
        CheckOutcome::Completed,
        DoorLeftState::Operational,
        Some(true),
        parts,
    )
}

pub fn check_out(
    outcome: CheckOutcome,
    door_left_state: DoorLeftState,
    make_safe_confirmed: Option<bool>,
    parts: Vec<Part>,
) -> JobCommand {
    JobCommand::CheckOut(CheckOut {
        outcome,
        door_left_state,
        make_safe_confirmed,
        resolution: "Replaced the operator motor, adjusted sensors".into(),
        parts,
        deficiencies: vec![],
    })
}

/// The `CheckedOut` the `check_out(..)` above yields.
#[allow(clippy::too_many_arguments)]
pub fn checked_out_event(
    technician_id: &str,
    outcome: CheckOutcome,
    door_left_state: DoorLeftState,
    make_safe_confirmed: bool,
    parts: Vec<Part>,
    when: DateTime<Utc>,
    labor_minutes: i64,
) -> JobEvent {
    JobEvent::CheckedOut {
        technician_id: technician_id.into(),
        outcome,
        door_left_state,
        make_safe_confirmed,
        resolution: "Replaced the operator motor, adjusted sensors".into(),
        parts,
        at: when,
        labor_minutes,
        deficiencies: vec![],
    }
}

/// The `CheckedOut` of [`completed`] by technician D at `when`.
pub fn completed_event(parts: Vec<Part>, when: DateTime<Utc>, labor_minutes: i64) -> JobEvent {
    checked_out_event(
        TECH_D,
        CheckOutcome::Completed,
        DoorLeftState::Operational,
        true,
        parts,
        when,
        labor_minutes,
    )
}

pub fn schedule_return(reason: Option<&str>) -> JobCommand {
    JobCommand::ScheduleReturnVisit(ScheduleReturnVisit {
        reason: reason.map(str::to_string),
    })
}

/// Every closeout item of a SOP, with one result.
pub fn closeout_items(incident_type: &str, result: ChecklistResult) -> Vec<CloseoutItemResult> {
    sop(incident_type)
        .closeout
        .items
        .iter()
        .map(|i| CloseoutItemResult {
            id: i.id.clone(),
            result,
        })
        .collect()
}

pub fn verify_closeout(items: Vec<CloseoutItemResult>) -> JobCommand {
    JobCommand::VerifyCloseout(VerifyCloseout { items })
}

pub fn reopen(reason: &str) -> JobCommand {
    JobCommand::ReopenUnsatisfactory(ReopenUnsatisfactory {
        reason: reason.into(),
    })
}

pub fn mark_billing_ready() -> JobCommand {
    JobCommand::MarkBillingReady(MarkBillingReady {})
}

pub fn close(invoice_number: &str) -> JobCommand {
    JobCommand::CloseJob(CloseJob {
        invoice_number: invoice_number.into(),
    })
}

pub fn cancel(reason: &str) -> JobCommand {
    JobCommand::CancelJob(CancelJob {
        reason: reason.into(),
    })
}

pub fn note(text: &str) -> JobCommand {
    JobCommand::AddNote(AddNote { text: text.into() })
}

pub fn nte_increase(amount_cents: i64, reason: &str) -> JobCommand {
    JobCommand::RequestNteIncrease(RequestNteIncrease {
        amount_cents,
        reason: reason.into(),
    })
}

pub fn decide(approval_id: &str, decision: Decision, reason: Option<&str>) -> JobCommand {
    JobCommand::DecideApproval(DecideApproval {
        approval_id: approval_id.into(),
        decision,
        reason: reason.map(str::to_string),
        link_target: None,
    })
}

/// `decide_approval` of a duplicate link, with the link's target as the
/// application resolves it (a job at the fixture's site and door).
/// `decide_approval`: approve, without a reason.
pub fn approve(approval_id: &str) -> JobCommand {
    decide(approval_id, Decision::Approve, None)
}

/// `decide_approval`: reject, for `reason`.
pub fn reject(approval_id: &str, reason: &str) -> JobCommand {
    decide(approval_id, Decision::Reject, Some(reason))
}

/// `decide_approval`: approve, for `reason`.
pub fn approve_because(approval_id: &str, reason: &str) -> JobCommand {
    decide(approval_id, Decision::Approve, Some(reason))
}

pub fn decide_link(approval_id: &str, decision: Decision, target_open: Option<bool>) -> JobCommand {
    JobCommand::DecideApproval(DecideApproval {
        approval_id: approval_id.into(),
        decision,
        reason: None,
        link_target: target_open.map(|open| DuplicateTarget {
            open,
            site_id: site().id,
            door_id: door().id,
        }),
    })
}

pub fn flag_sla(kind: SlaKind) -> JobCommand {
    JobCommand::FlagSlaBreach(FlagSlaBreach { kind })
}

/// The approval id the aggregate derives for the approval requested as event
/// number `sequence` of job `job_id` (a UUIDv5, so tests can predict it).
pub fn approval_id(job_id: &str, sequence: u64) -> String {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("{job_id}/approval/{sequence}").as_bytes(),
    )
    .to_string()
}

/// The required checklist item ids of a SOP, in SOP order.
pub fn required_items(incident_type: &str) -> Vec<String> {
    sop(incident_type)
        .field
        .checklist
        .iter()
        .filter(|i| i.required)
        .map(|i| i.id.clone())
        .collect()
}

// ------------------------------------------------------------------ events

/// `JobOffered` at the canonical labor rate.
pub fn job_offered(
    visit: u32,
    technician_id: &str,
    offered_at: DateTime<Utc>,
    ack_due_at: DateTime<Utc>,
    preferred: bool,
) -> JobEvent {
    JobEvent::JobOffered {
        visit,
        technician_id: technician_id.into(),
        labor_rate_cents: RATE,
        offered_at,
        ack_due_at,
        preferred,
    }
}

/// `OfferExpired` for `technician_id`.
pub fn offer_expired(technician_id: &str) -> JobEvent {
    JobEvent::OfferExpired {
        technician_id: technician_id.into(),
    }
}

/// `DuplicateDismissed` for `OTHER_JOB`, by the decision on `approval_id`
/// (`None`: at once, by a dispatcher).
pub fn duplicate_dismissed(approval_id: Option<String>) -> JobEvent {
    JobEvent::DuplicateDismissed {
        possible_duplicate_of: OTHER_JOB.into(),
        approval_id,
    }
}

/// `OfferDeclined` by `technician_id` for `reason`.
pub fn offer_declined(technician_id: &str, reason: &str) -> JobEvent {
    JobEvent::OfferDeclined {
        technician_id: technician_id.into(),
        reason: reason.into(),
    }
}

/// `OfferAccepted` by `technician_id` with `eta`.
pub fn offer_accepted(technician_id: &str, eta: DateTime<Utc>, eta_beyond_sla: bool) -> JobEvent {
    JobEvent::OfferAccepted {
        technician_id: technician_id.into(),
        eta,
        eta_beyond_sla,
    }
}

/// `TravelStarted` by `technician_id` at `at`.
pub fn travel_started(technician_id: &str, at: DateTime<Utc>) -> JobEvent {
    JobEvent::TravelStarted {
        technician_id: technician_id.into(),
        at,
    }
}

/// `ApprovalGranted` by `decided_by`, for `reason`.
pub fn approval_granted_because(
    approval_id: impl Into<String>,
    decided_by: Actor,
    reason: &str,
) -> JobEvent {
    JobEvent::ApprovalGranted {
        approval_id: approval_id.into(),
        decided_by,
        reason: Some(reason.into()),
    }
}

/// `ApprovalRejected` by `decided_by`, for `reason`.
pub fn approval_rejected(
    approval_id: impl Into<String>,
    decided_by: Actor,
    reason: &str,
) -> JobEvent {
    JobEvent::ApprovalRejected {
        approval_id: approval_id.into(),
        decided_by,
        reason: Some(reason.into()),
    }
}

/// `ReturnVisitScheduled` for `reason`.
pub fn return_visit_scheduled(reason: &str) -> JobEvent {
    JobEvent::ReturnVisitScheduled {
        reason: Some(reason.into()),
    }
}

/// `JobCancelled` for `reason` once approval `approval_id` was granted.
pub fn cancelled_on_approval(
    reason: &str,
    trip_charge_cents: i64,
    approval_id: impl Into<String>,
) -> JobEvent {
    JobEvent::JobCancelled {
        reason: reason.into(),
        trip_charge_cents,
        approval_id: Some(approval_id.into()),
    }
}

/// The refusal of an approval that no longer fits the job in `current_state`.
pub fn stale(approval_id: impl Into<String>, current_state: JobState) -> JobError {
    JobError::ApprovalStale {
        approval_id: approval_id.into(),
        current_state,
    }
}

/// `JobLinkedAsDuplicate` of `duplicate_of`.
pub fn linked_as_duplicate_of(duplicate_of: &str) -> JobEvent {
    JobEvent::JobLinkedAsDuplicate {
        duplicate_of: duplicate_of.into(),
    }
}

/// `ApprovalGranted` by `decided_by`, without a reason.
pub fn approval_granted(approval_id: impl Into<String>, decided_by: Actor) -> JobEvent {
    JobEvent::ApprovalGranted {
        approval_id: approval_id.into(),
        decided_by,
        reason: None,
    }
}

// ---------------------------------------------------------- invoice lines

/// A trip charge line (one trip at the canonical charge).
pub fn trip_line(description: &str) -> InvoiceLine {
    InvoiceLine {
        kind: InvoiceLineKind::Trip,
        description: description.into(),
        quantity: 1,
        unit_cents: TRIP,
        amount_cents: TRIP,
    }
}

/// A labor line: `minutes` at the canonical rate, `amount_cents` in all.
pub fn labor_line(description: &str, minutes: i64, amount_cents: i64) -> InvoiceLine {
    InvoiceLine {
        kind: InvoiceLineKind::Labor,
        description: description.into(),
        quantity: minutes,
        unit_cents: RATE,
        amount_cents,
    }
}

/// A part line.
pub fn part_line(
    description: &str,
    quantity: i64,
    unit_cents: i64,
    amount_cents: i64,
) -> InvoiceLine {
    InvoiceLine {
        kind: InvoiceLineKind::Part,
        description: description.into(),
        quantity,
        unit_cents,
        amount_cents,
    }
}

// -------------------------------------------------------------- history

/// One step of a story: who, when, the command, and the events it must yield.
pub type Step = (Actor, DateTime<Utc>, JobCommand, Vec<JobEvent>);

/// A job's history built by running real commands through `Job::decide` and
/// applying what they yield; used as the `given` of the given/when/then tests.
#[derive(Clone)]
pub struct History {
    pub job: Job,
    pub events: Vec<JobEvent>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    pub fn new() -> Self {
        History {
            job: Job::default(),
            events: Vec::new(),
        }
    }

    /// Runs a command that must succeed; returns its events.
    pub fn exec(&mut self, by: Actor, when: DateTime<Utc>, command: JobCommand) -> Vec<JobEvent> {
        let issued = cmd(by, when, command);
        let events = self.job.decide(&issued, &services()).unwrap_or_else(|e| {
            panic!("setting up: {} refused: {e:?}", issued.command.wire_name())
        });
        for e in &events {
            self.job.apply(e.clone());
            self.events.push(e.clone());
        }
        events
    }

    /// Builder form of [`History::exec`].
    pub fn run(mut self, by: Actor, when: DateTime<Utc>, command: JobCommand) -> Self {
        self.exec(by, when, command);
        self
    }

    /// Appends events the test asserted (keeps `job` in step).
    pub fn push(&mut self, events: &[JobEvent]) {
        for e in events {
            self.job.apply(e.clone());
            self.events.push(e.clone());
        }
    }

    /// The given/when/then executor primed with this history.
    pub fn given(&self) -> AggregateTestExecutor<Job> {
        framework().given(self.events.clone())
    }

    pub fn state(&self) -> JobState {
        self.job.state().expect("job opened")
    }

    pub fn data(&self) -> &JobData {
        self.job.data().expect("job opened")
    }

    /// The id of the approval the next `ApprovalRequested` would carry.
    pub fn next_approval_id(&self) -> String {
        approval_id(&self.data().job_id, self.job.version + 1)
    }

    /// Given/when/then one step of a story, and append what it yielded.
    #[track_caller]
    pub fn step(
        &mut self,
        by: Actor,
        when: DateTime<Utc>,
        command: JobCommand,
        expected: Vec<JobEvent>,
    ) {
        self.given()
            .when(cmd(by, when, command))
            .then_expect_events(expected.clone());
        self.push(&expected);
    }

    /// Given/when/then each step of a story in order, appending what each
    /// yielded.
    #[track_caller]
    pub fn steps(&mut self, steps: Vec<Step>) {
        for (by, when, command, expected) in steps {
            self.step(by, when, command, expected);
        }
    }

    /// Given/when/then technician `tech_id` attaching evidence `kind` with
    /// contents `n` at `when`.
    #[track_caller]
    pub fn attach(&mut self, tech_id: &str, when: DateTime<Utc>, kind: EvidenceKind, n: u64) {
        self.step(
            tech(tech_id),
            when,
            evidence(kind, n),
            vec![evidence_event(kind, n)],
        );
    }

    /// Given/when/then one accepted step of a story: exactly `events`
    /// (nothing appended to `self`).
    #[track_caller]
    pub fn yields(
        &self,
        by: Actor,
        when: DateTime<Utc>,
        command: JobCommand,
        events: Vec<JobEvent>,
    ) {
        self.given()
            .when(cmd(by, when, command))
            .then_expect_events(events);
    }

    /// Given/when/then one step refused as a validation error naming
    /// `field` (see `assert_validation`).
    #[track_caller]
    pub fn invalid(&self, by: Actor, when: DateTime<Utc>, command: JobCommand, field: &str) {
        let result = self.given().when(cmd(by, when, command)).inspect_result();
        assert_validation(result, field);
    }

    /// Given/when/then one refused step of a story (nothing appended).
    #[track_caller]
    pub fn refused(&self, by: Actor, when: DateTime<Utc>, command: JobCommand, error: JobError) {
        self.given()
            .when(cmd(by, when, command))
            .then_expect_error(error);
    }

    /// The technician passes every required checklist item (from `from`, a
    /// minute apart) and attaches every required evidence kind (from `from`
    /// + 29 min, contents `sha_base`, `sha_base + 1`, …).
    pub fn do_the_work(&mut self, tech_id: &str, from: DateTime<Utc>, sha_base: u64) {
        for (i, item) in required_items(INCIDENT).iter().enumerate() {
            self.exec(
                tech(tech_id),
                from + Duration::minutes(i as i64),
                checklist_item(item, ChecklistResult::Pass),
            );
        }
        for (n, kind) in [
            EvidenceKind::PhotoBefore,
            EvidenceKind::PhotoAfter,
            EvidenceKind::Signature,
            EvidenceKind::ChecklistForm,
        ]
        .into_iter()
        .enumerate()
        {
            self.exec(
                tech(tech_id),
                from + Duration::minutes(29 + n as i64),
                evidence(kind, sha_base + n as u64),
            );
        }
    }

    /// The id of the last approval requested.
    pub fn last_approval_id(&self) -> String {
        self.data()
            .approvals
            .last()
            .expect("an approval")
            .approval_id
            .clone()
    }
}

// ------------------------------------- the canonical job, state by state

/// `intake`: opened by the agent at t0.
pub fn opened() -> History {
    opened_with(open_body())
}

pub fn opened_with(body: OpenJob) -> History {
    History::new().run(agent(), t0(), open(body))
}

/// `intake` with every intake field recorded (P1 answers).
pub fn intake_recorded() -> History {
    opened().run(agent(), at(2), record_intake(p1_intake()))
}

/// `triaged` at t0+5 min: P1, SLA due t0+4 h, make-safe required.
pub fn triaged() -> History {
    intake_recorded().run(agent(), at(5), triage(None))
}

/// `offered` to D at t0+10 min (acknowledgement due t0+25 min).
pub fn offered() -> History {
    triaged().run(agent(), at(10), offer(qualified(TECH_D)))
}

/// `confirmed`: D accepted at t0+12 with an ETA of t0+60.
pub fn confirmed() -> History {
    offered().run(tech(TECH_D), at(12), accept(at(60)))
}

/// `en_route` since t0+20.
pub fn en_route() -> History {
    confirmed().run(tech(TECH_D), at(20), start_travel())
}

/// `on_site` since t0+60.
pub fn on_site() -> History {
    en_route().run(tech(TECH_D), at(60), check_in_app())
}

/// `on_site` with every required checklist item passed (t0+61..) and every
/// required evidence kind attached (sha 1..4).
pub fn ready_to_check_out() -> History {
    let mut h = on_site();
    h.do_the_work(TECH_D, at(61), 1);
    h
}

/// `work_completed`: checked out at t0+180 (120 min of labor) with `parts`.
pub fn work_completed_with(parts: Vec<Part>) -> History {
    ready_to_check_out().run(tech(TECH_D), at(180), completed(parts))
}

/// `work_completed` with the motor: invoice 9,500 + 24,000 + 20,000 = 53,500 > NTE.
pub fn work_completed() -> History {
    work_completed_with(vec![motor()])
}

/// `closeout_verified` at t0+200 (invoice 53,500 > NTE 50,000).
pub fn closeout_verified() -> History {
    work_completed().run(
        agent(),
        at(200),
        verify_closeout(closeout_items(INCIDENT, ChecklistResult::Pass)),
    )
}

/// `closeout_verified` with no parts: invoice 33,500 ≤ NTE 50,000.
pub fn closeout_verified_within_nte() -> History {
    work_completed_with(vec![]).run(
        agent(),
        at(200),
        verify_closeout(closeout_items(INCIDENT, ChecklistResult::Pass)),
    )
}

/// `billing_ready` at t0+215.
pub fn billing_ready() -> History {
    closeout_verified_within_nte().run(agent(), at(215), mark_billing_ready())
}

/// `closed` at t0+300.
pub fn closed() -> History {
    billing_ready().run(dispatcher(), at(300), close("INV-9001"))
}

/// `cancelled` from `triaged` by a dispatcher.
pub fn cancelled() -> History {
    triaged().run(dispatcher(), at(30), cancel("Customer fixed it themselves"))
}

/// `duplicate`: opened as a possible duplicate of job-0 and linked.
pub fn duplicate() -> History {
    let mut body = open_body();
    body.related.open_duplicate_of = Some(OTHER_JOB.into());
    opened_with(body).run(agent(), at(3), link_duplicate(None, Some(true)))
}

/// `on_hold` after a visit checked out with `outcome` at t0+120 (door secured).
pub fn on_hold(outcome: CheckOutcome) -> History {
    on_site().run(
        tech(TECH_D),
        at(120),
        check_out(outcome, DoorLeftState::Secured, Some(true), vec![]),
    )
}

/// A history in each state of the lifecycle.
pub fn history_in(state: JobState) -> History {
    let h = match state {
        JobState::Intake => intake_recorded(),
        JobState::Triaged => triaged(),
        JobState::Offered => offered(),
        JobState::Confirmed => confirmed(),
        JobState::EnRoute => en_route(),
        JobState::OnSite => on_site(),
        JobState::OnHold => on_hold(CheckOutcome::PartsOnOrder),
        JobState::WorkCompleted => work_completed(),
        JobState::CloseoutVerified => closeout_verified(),
        JobState::BillingReady => billing_ready(),
        JobState::Closed => closed(),
        JobState::Cancelled => cancelled(),
        JobState::Duplicate => duplicate(),
    };
    assert_eq!(h.state(), state, "fixture for {state:?}");
    h
}

/// The `JobTriaged` of the canonical P1 intake.
pub fn triaged_p1_event() -> JobEvent {
    JobEvent::JobTriaged {
        priority: Priority::P1,
        p1_reasons: vec!["opening_unsecured_after_hours".into()],
        sla_due_at: Some(hours(4)),
        completion_due_at: Some(hours(24)),
        make_safe_required: true,
    }
}

/// Asserts a result is `JobError::Validation` for `field` (the problem text is not compared).
#[track_caller]
pub fn assert_validation<T: std::fmt::Debug>(result: Result<T, JobError>, field: &str) {
    match result {
        Err(JobError::Validation { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected Validation on `{field}`, got {other:?}"),
    }
}

/// `triaged` with the routine answers: P2, SLA due t0+24 h, no make-safe.
pub fn triaged_routine() -> History {
    opened()
        .run(agent(), at(2), record_intake(routine_intake()))
        .run(agent(), at(5), triage(None))
}

/// `intake` for a job opened as a possible duplicate of job-0 (intake recorded).
pub fn possible_duplicate() -> History {
    let mut body = open_body();
    body.related.open_duplicate_of = Some(OTHER_JOB.into());
    opened_with(body).run(agent(), at(2), record_intake(p1_intake()))
}

/// The canonical `JobOpened` with the resolved related-job facts and NTE changed.
pub fn opened_event_with(
    possible_duplicate: Option<&str>,
    recall: Option<&str>,
    preferred: Option<&str>,
    nte: Option<i64>,
) -> JobEvent {
    let mut e = opened_event();
    if let JobEvent::JobOpened {
        possible_duplicate_of,
        recall_of,
        preferred_technician_id,
        nte_cents,
        ..
    } = &mut e
    {
        *possible_duplicate_of = possible_duplicate.map(str::to_string);
        *recall_of = recall.map(str::to_string);
        *preferred_technician_id = preferred.map(str::to_string);
        *nte_cents = nte;
    }
    e
}
