//! The SOP library as data: intake scripts, field checklists, closeout rules.
//!
//! Files live under `sops/{intake,field,closeout}/<incident_type>.toml` (see
//! `docs/sop-format.md`). [`SopLibrary::load`] validates every file and names
//! the file and field of the first problem; the service refuses to start on one.

mod loader;
mod model;

pub use loader::{SopError, SopLibrary};
pub use model::{
    ChecklistItem, CloseoutItem, CloseoutSop, Condition, FieldSop, FieldSpec, FieldType,
    IncidentSop, IntakeSop, ScriptStep, SopRef, SopStage, OPEN_JOB_FIELDS,
};
