//! What may be asked of a job, by wire name.
//!
//! Each command struct is the wire body of `POST /v1/jobs/{id}/commands/{name}`
//! (unknown fields refused). Fields marked "resolved" are not read from the
//! wire: the application looks them up (another aggregate, a read model)
//! before the aggregate decides, so the decision itself stays pure.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::{Channel, EvidenceKind};
use crate::domain::geo::SiteLocation;
use crate::domain::policy::Priority;
use crate::domain::technician::Shift;

pub use super::at_door::{Deficiency, PlannedWork, RegisterAtCall};

/// A site.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The client's site id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Street address.
    pub address: String,
}

/// The onsite contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// Name.
    pub name: String,
    /// Phone.
    pub phone: String,
}

/// The door.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Door {
    /// The site's door id.
    pub id: String,
    /// Where it is.
    pub location: String,
}

/// An IFM work order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IfmOrder {
    /// The client's work-order number.
    pub work_order_number: String,
    /// Not-to-exceed, cents.
    pub nte_cents: i64,
}

/// A recently completed job at the same site and door (resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct RecallOf {
    /// The earlier job.
    pub job_id: String,
    /// Its technician, preferred for the recall.
    pub technician_id: Option<String>,
}

/// Jobs at the same site and door (resolved by the application at open).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct RelatedJobs {
    /// An open job at the same site and door.
    pub open_duplicate_of: Option<String>,
    /// A job there completed in the last 30 days.
    pub recall_of: Option<RecallOf>,
}

/// `open_job`: at a registered door (`door_id`), at a new caller's door
/// registered in the same call (`register`), or — as before the registry —
/// at a site and door given as text (`client_id`, `site`, `door`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenJob {
    /// Assigned by the service (resolved).
    #[serde(skip_deserializing, default)]
    #[schemars(skip)]
    pub job_id: String,
    /// A SOP library incident type.
    pub incident_type: String,
    /// How it came in.
    pub channel: Channel,
    /// The client (with `door_id`: the door's customer when absent).
    #[serde(default)]
    pub client_id: String,
    /// Where (with `door_id`: from the registry).
    #[serde(default)]
    pub site: Site,
    /// Onsite contact.
    pub contact: Contact,
    /// Which door (with `door_id`: from the registry).
    #[serde(default)]
    pub door: Door,
    /// A registered door: the job's site, door and client are the
    /// registry's, and duplicates and recalls are found by this id.
    #[serde(default)]
    pub door_id: Option<String>,
    /// A new caller's site and door, registered in the same call.
    #[serde(default)]
    pub register: Option<RegisterAtCall>,
    /// What the caller said.
    pub description: String,
    /// IFM work order.
    #[serde(default)]
    pub ifm: Option<IfmOrder>,
    /// Related jobs (resolved).
    #[serde(skip_deserializing, default)]
    #[schemars(skip)]
    pub related: RelatedJobs,
    /// The maintenance plan's occurrence this job does (resolved).
    #[serde(skip_deserializing, default)]
    #[schemars(skip)]
    pub planned: Option<PlannedWork>,
    /// The job whose finding this job follows up (resolved: the system
    /// actor's deficiency follow-up).
    #[serde(skip_deserializing, default)]
    #[schemars(skip)]
    pub follow_up_of: Option<String>,
}

/// `record_intake`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordIntake {
    /// SOP field name → value.
    pub fields: BTreeMap<String, Value>,
}

/// `triage_job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriageJob {
    /// Explicit priority; default from the SOP and its raising rules.
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// `set_priority`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPriority {
    /// New priority.
    pub priority: Priority,
    /// Why.
    pub reason: String,
}

/// How a possible duplicate is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateResolution {
    /// It is a duplicate of `duplicate_of`.
    Link,
    /// It is not a duplicate.
    NotDuplicate,
}

/// `resolve_duplicate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveDuplicate {
    /// Link or dismiss.
    pub resolution: DuplicateResolution,
    /// The job it duplicates (for `link`; default the possible duplicate).
    #[serde(default)]
    pub duplicate_of: Option<String>,
    /// The job `link` would point at, as the store knows it: `None` when it
    /// does not exist (resolved by the application).
    #[serde(skip_deserializing, default)]
    #[schemars(skip)]
    pub target: Option<DuplicateTarget>,
}

/// Another job as a duplicate link sees it (resolved by the application):
/// whether it is open, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateTarget {
    /// Not in a final state.
    pub open: bool,
    /// Its site.
    pub site_id: String,
    /// Its door.
    pub door_id: String,
}

/// A technician as the job sees it at offer time (resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TechnicianProfile {
    /// Id.
    pub technician_id: String,
    /// Still on the roster.
    pub active: bool,
    /// Skills.
    pub skills: Vec<String>,
    /// Certifications and their expiry dates.
    pub certifications: Vec<(String, NaiveDate)>,
    /// Shift state.
    pub shift: Shift,
    /// Cents per hour.
    pub labor_rate_cents: i64,
}

/// `offer_job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferJob {
    /// Who.
    pub technician_id: String,
    /// The technician's profile, `None` if unknown (resolved).
    #[serde(skip_deserializing, default)]
    #[schemars(skip)]
    pub technician: Option<TechnicianProfile>,
}

/// `accept_offer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptOffer {
    /// Promised arrival.
    pub eta: DateTime<Utc>,
}

/// `decline_offer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclineOffer {
    /// Why.
    pub reason: String,
}

/// `expire_offer` (system).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpireOffer {}

/// `start_travel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartTravel {}

/// How a check-in was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckInMethod {
    /// The technician app.
    App,
    /// Phone IVR.
    Ivr,
    /// Relayed by the agent.
    AgentRelay,
}

/// `check_in`. Through the `app` at a job whose registered door's site has
/// coordinates, the position is compared with the site's radius
/// ([`crate::domain::geo`]): outside it, or without a position, a `reason`
/// is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckIn {
    /// How.
    pub method: CheckInMethod,
    /// Latitude, degrees (with `lon`).
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude, degrees (with `lat`).
    #[serde(default)]
    pub lon: Option<f64>,
    /// The position's accuracy as the device reported it, metres
    /// (0..100000): recorded only.
    #[serde(default)]
    pub accuracy_m: Option<f64>,
    /// Why the check-in is away from the site, or without a position.
    #[serde(default)]
    pub reason: Option<String>,
    /// The job's site as the geofence sees it: `None` for a job at a
    /// free-text door or a site without coordinates (resolved).
    #[serde(skip_deserializing, default)]
    #[schemars(skip)]
    pub site_location: Option<SiteLocation>,
}

/// A checklist result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChecklistResult {
    /// Passed.
    Pass,
    /// Failed.
    Fail,
    /// Not applicable.
    Na,
}

/// `complete_checklist_item`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteChecklistItem {
    /// SOP checklist item id.
    pub item_id: String,
    /// Result.
    pub result: ChecklistResult,
    /// Remark.
    #[serde(default)]
    pub note: Option<String>,
}

/// `attach_evidence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachEvidence {
    /// Kind.
    pub kind: EvidenceKind,
    /// SHA-256 of content uploaded through `POST /v1/evidence`.
    pub sha256: String,
    /// Remark.
    #[serde(default)]
    pub note: Option<String>,
    /// The upload this attachment stands for: the caller's own latest upload
    /// of these bytes, else the latest by anyone (resolved by the application).
    #[serde(skip_deserializing, default)]
    #[schemars(skip)]
    pub upload: Option<Upload>,
}

/// One upload of evidence bytes: the media type it was sent with and who
/// sent it. The same bytes uploaded twice are two uploads of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The `Content-Type` of that upload.
    pub content_type: String,
    /// The key name that uploaded it.
    pub uploaded_by: String,
}

/// The outcome of a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// Work done.
    Completed,
    /// Waiting for parts.
    PartsOnOrder,
    /// Needs another visit.
    ReturnVisit,
    /// Needs a quote approved.
    NeedsQuote,
}

/// How the door was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DoorLeftState {
    /// Working.
    Operational,
    /// Not working, but the opening is secure.
    Secured,
    /// Locked out / tagged out.
    LockedOut,
}

/// A part used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// Part number.
    pub part_number: String,
    /// Description.
    pub description: String,
    /// Quantity (≥ 1).
    pub quantity: i64,
    /// Unit price, cents (≥ 0).
    pub unit_price_cents: i64,
}

/// `check_out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckOut {
    /// Outcome.
    pub outcome: CheckOutcome,
    /// How the door was left.
    pub door_left_state: DoorLeftState,
    /// Whether the make-safe was done.
    #[serde(default)]
    pub make_safe_confirmed: Option<bool>,
    /// What was done.
    pub resolution: String,
    /// Parts used.
    #[serde(default)]
    pub parts: Vec<Part>,
    /// Deficiencies found (an inspection's findings): each is recorded at
    /// the door, and a finding on a registered door opens a follow-up job
    /// and marks the door impaired until that job is completed.
    #[serde(default)]
    pub deficiencies: Vec<Deficiency>,
}

/// `schedule_return_visit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleReturnVisit {
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One closeout item's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseoutItemResult {
    /// SOP closeout item id.
    pub id: String,
    /// Result (`pass` or `na` count as verified).
    pub result: ChecklistResult,
}

/// `verify_closeout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyCloseout {
    /// Results for the SOP's closeout items.
    pub items: Vec<CloseoutItemResult>,
}

/// `mark_billing_ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkBillingReady {}

/// `close_job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseJob {
    /// The downstream invoice number.
    pub invoice_number: String,
}

/// `cancel_job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelJob {
    /// Why.
    pub reason: String,
}

/// `add_note`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNote {
    /// The note (data, never interpreted).
    pub text: String,
}

/// `request_nte_increase`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestNteIncrease {
    /// The new NTE (replaces, not adds).
    pub amount_cents: i64,
    /// Why.
    pub reason: String,
}

/// An approval decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Carry it out.
    Approve,
    /// Refuse it.
    Reject,
}

/// `decide_approval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideApproval {
    /// Which.
    pub approval_id: String,
    /// Approve or reject.
    pub decision: Decision,
    /// Remark.
    #[serde(default)]
    pub reason: Option<String>,
    /// For an approval that links the job as a duplicate: the target as the
    /// store knows it now (resolved by the application).
    #[serde(skip_deserializing, default)]
    #[schemars(skip)]
    pub link_target: Option<DuplicateTarget>,
}

/// `flag_sla_breach` (system).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagSlaBreach {
    /// Which SLA.
    pub kind: super::events::SlaKind,
}

/// `reopen_unsatisfactory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReopenUnsatisfactory {
    /// Why.
    pub reason: String,
}

macro_rules! job_commands {
    ($($wire:literal => $variant:ident($ty:ty)),+ $(,)?) => {
        /// Every job command.
        // One command exists at a time, briefly: boxing `OpenJob` would buy nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum JobCommand {
            $(
                #[doc = concat!("`", $wire, "`")]
                $variant($ty),
            )+
        }

        /// Every job command's wire name, in lifecycle order.
        pub const JOB_COMMANDS: &[&str] = &[$($wire),+];

        impl JobCommand {
            /// The wire name.
            pub fn wire_name(&self) -> &'static str {
                match self {
                    $(JobCommand::$variant(_) => $wire,)+
                }
            }

            /// The JSON Schema of a command's wire body (for OpenAPI and tool manifests).
            pub fn body_schema(name: &str, generator: &mut schemars::SchemaGenerator) -> Option<schemars::Schema> {
                match name {
                    $($wire => Some(generator.subschema_for::<$ty>()),)+
                    _ => None,
                }
            }

            /// Decodes a wire body for a command name. `Ok(None)`: no such command.
            pub fn decode(name: &str, body: Value) -> Result<Option<JobCommand>, crate::domain::BodyError> {
                match name {
                    $($wire => serde_path_to_error::deserialize::<_, $ty>(body).map(|c| Some(JobCommand::$variant(c))),)+
                    _ => Ok(None),
                }
            }
        }
    };
}

job_commands! {
    "open_job" => OpenJob(OpenJob),
    "record_intake" => RecordIntake(RecordIntake),
    "triage_job" => TriageJob(TriageJob),
    "set_priority" => SetPriority(SetPriority),
    "resolve_duplicate" => ResolveDuplicate(ResolveDuplicate),
    "offer_job" => OfferJob(OfferJob),
    "accept_offer" => AcceptOffer(AcceptOffer),
    "decline_offer" => DeclineOffer(DeclineOffer),
    "expire_offer" => ExpireOffer(ExpireOffer),
    "start_travel" => StartTravel(StartTravel),
    "check_in" => CheckIn(CheckIn),
    "complete_checklist_item" => CompleteChecklistItem(CompleteChecklistItem),
    "attach_evidence" => AttachEvidence(AttachEvidence),
    "check_out" => CheckOut(CheckOut),
    "schedule_return_visit" => ScheduleReturnVisit(ScheduleReturnVisit),
    "verify_closeout" => VerifyCloseout(VerifyCloseout),
    "reopen_unsatisfactory" => ReopenUnsatisfactory(ReopenUnsatisfactory),
    "mark_billing_ready" => MarkBillingReady(MarkBillingReady),
    "close_job" => CloseJob(CloseJob),
    "cancel_job" => CancelJob(CancelJob),
    "add_note" => AddNote(AddNote),
    "request_nte_increase" => RequestNteIncrease(RequestNteIncrease),
    "decide_approval" => DecideApproval(DecideApproval),
    "flag_sla_breach" => FlagSlaBreach(FlagSlaBreach),
}
