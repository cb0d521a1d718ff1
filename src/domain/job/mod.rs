//! The `Job` aggregate: one work order from first call to billing.
//!
//! `commands` holds what may be asked (by wire name), `events` what happened,
//! `errors` every guard that can refuse, `aggregate` the aggregate (it
//! routes commands and events by phase), `decide` each command's decision
//! and each event's effect, one file per phase, and `state` the state the
//! events build up.

mod aggregate;
mod at_door;
mod commands;
mod decide;
mod errors;
mod events;
mod invoice;
mod state;
pub mod transitions;

pub use aggregate::{Job, JobServices};
pub use commands::{
    AcceptOffer, AddNote, AttachEvidence, CancelJob, CheckIn, CheckInMethod, CheckOut,
    CheckOutcome, ChecklistResult, CloseJob, CloseoutItemResult, CompleteChecklistItem, Contact,
    DecideApproval, Decision, DeclineOffer, Deficiency, Door, DoorLeftState, DuplicateResolution,
    DuplicateTarget, ExpireOffer, FlagSlaBreach, IfmOrder, JobCommand, MarkBillingReady, OfferJob,
    OpenJob, Part, PlannedWork, RecallOf, RecordIntake, RegisterAtCall, RelatedJobs,
    ReopenUnsatisfactory, RequestNteIncrease, ResolveDuplicate, ScheduleReturnVisit, SetPriority,
    Site, StartTravel, TechnicianProfile, TriageJob, Upload, VerifyCloseout, JOB_COMMANDS,
};
pub use errors::{JobError, UNKNOWN_INCIDENT_TYPE};
pub use events::{
    ApprovalAction, Channel, EvidenceKind, InvoiceLine, InvoiceLineKind, JobEvent, SlaKind,
    DESTRUCTIVE_EVENTS,
};
pub use invoice::Invoice;
pub use state::{
    Approval, ApprovalStatus, ChecklistEntry, EvidenceRef, Flags, JobData, JobState, Missing, Note,
    Visit, VisitStatus,
};
