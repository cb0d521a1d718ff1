//! Registry commands: customers, sites, doors and maintenance plans
//! (`src/domain/registry/`). Their way differs from a job command's in one
//! respect: they are few (people at a desk, an import, the agent taking a
//! new caller), and they check each other (a site's customer, a door's
//! site, a serial not taken twice), so each runs in one transaction that
//! first takes the registry's lock: the key claimed, the stream read, the
//! facts found in the index ([`index`]), the decision, the events appended
//! (hash chain and MAC, [`crate::store::append`]), the index row and the
//! answer stored — all or nothing. An import ([`import`]) runs many of
//! them in one transaction the same way.

pub mod import;
pub mod index;
pub mod jobs;
pub mod queries;
pub mod wire;

use cqrs_es::{Aggregate, DomainEvent};
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::commands::{derived_id, run, split_event};
use super::{App, Caller, RequestMeta};
use crate::domain::registry::customer::{RegisterCustomer, Retire, UpdateCustomer};
use crate::domain::registry::door::{
    MoveDoor, RecordDoorLabel, RegisterDoor, SetDoorStatus, UpdateDoor,
};
use crate::domain::registry::plan::{ChangeOccurrence, CreatePlan};
use crate::domain::registry::site::{RegisterSite, UpdateSite};
use crate::domain::registry::{
    Customer, CustomerCommand, Door, DoorCommand, Facts, Kind, MaintenancePlan, PlanCommand,
    RegistryError, Site, SiteCommand,
};
use crate::domain::{BodyError, Issued};
use crate::error::{ApiError, Result};
use crate::store::{self, NewEvent};

pub use super::commands::Reply;

/// Every registry command's wire name and the kind of entry it acts on.
/// The first of each kind registers (its body names no existing entry).
pub const REGISTRY_COMMANDS: &[(&str, Kind)] = &[
    ("register_customer", Kind::Customer),
    ("update_customer", Kind::Customer),
    ("retire_customer", Kind::Customer),
    ("register_site", Kind::Site),
    ("update_site", Kind::Site),
    ("retire_site", Kind::Site),
    ("register_door", Kind::Door),
    ("update_door", Kind::Door),
    ("move_door", Kind::Door),
    ("record_door_label", Kind::Door),
    ("set_door_status", Kind::Door),
    ("retire_door", Kind::Door),
    ("create_plan", Kind::MaintenancePlan),
    ("skip_occurrence", Kind::MaintenancePlan),
    ("move_occurrence", Kind::MaintenancePlan),
    ("retire_plan", Kind::MaintenancePlan),
];

/// A registry command.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryCommand {
    /// On a customer.
    Customer(CustomerCommand),
    /// On a site.
    Site(SiteCommand),
    /// On a door.
    Door(DoorCommand),
    /// On a maintenance plan.
    Plan(PlanCommand),
}

fn de<T: serde::de::DeserializeOwned>(body: Value) -> std::result::Result<T, BodyError> {
    serde_path_to_error::deserialize(body)
}

impl RegistryCommand {
    /// Decodes a wire body for a command name. `Ok(None)`: no such command.
    pub fn decode(name: &str, body: Value) -> std::result::Result<Option<Self>, BodyError> {
        use RegistryCommand as R;
        Ok(Some(match name {
            "register_customer" => {
                R::Customer(CustomerCommand::Register(de::<RegisterCustomer>(body)?))
            }
            "update_customer" => R::Customer(CustomerCommand::Update(de::<UpdateCustomer>(body)?)),
            "retire_customer" => R::Customer(CustomerCommand::Retire(de::<Retire>(body)?)),
            "register_site" => R::Site(SiteCommand::Register(de::<RegisterSite>(body)?)),
            "update_site" => R::Site(SiteCommand::Update(de::<UpdateSite>(body)?)),
            "retire_site" => R::Site(SiteCommand::Retire(de::<Retire>(body)?)),
            "register_door" => R::Door(DoorCommand::Register(de::<RegisterDoor>(body)?)),
            "update_door" => R::Door(DoorCommand::Update(de::<UpdateDoor>(body)?)),
            "move_door" => R::Door(DoorCommand::Move(de::<MoveDoor>(body)?)),
            "record_door_label" => R::Door(DoorCommand::RecordLabel(de::<RecordDoorLabel>(body)?)),
            "set_door_status" => R::Door(DoorCommand::SetStatus(de::<SetDoorStatus>(body)?)),
            "retire_door" => R::Door(DoorCommand::Retire(de::<Retire>(body)?)),
            "create_plan" => R::Plan(PlanCommand::Create(de::<CreatePlan>(body)?)),
            "skip_occurrence" => R::Plan(PlanCommand::Skip(de::<ChangeOccurrence>(body)?)),
            "move_occurrence" => R::Plan(PlanCommand::Move(de::<ChangeOccurrence>(body)?)),
            "retire_plan" => R::Plan(PlanCommand::Retire(de::<Retire>(body)?)),
            _ => return Ok(None),
        }))
    }

    /// The wire name.
    pub fn wire_name(&self) -> &'static str {
        use RegistryCommand as R;
        match self {
            R::Customer(CustomerCommand::Register(_)) => "register_customer",
            R::Customer(CustomerCommand::Update(_)) => "update_customer",
            R::Customer(CustomerCommand::Retire(_)) => "retire_customer",
            R::Site(SiteCommand::Register(_)) => "register_site",
            R::Site(SiteCommand::Update(_)) => "update_site",
            R::Site(SiteCommand::Retire(_)) => "retire_site",
            R::Door(DoorCommand::Register(_)) => "register_door",
            R::Door(DoorCommand::Update(_)) => "update_door",
            R::Door(DoorCommand::Move(_)) => "move_door",
            R::Door(DoorCommand::RecordLabel(_)) => "record_door_label",
            R::Door(DoorCommand::SetStatus(_)) => "set_door_status",
            R::Door(DoorCommand::Retire(_)) => "retire_door",
            R::Plan(PlanCommand::Create(_)) => "create_plan",
            R::Plan(PlanCommand::Skip(_)) => "skip_occurrence",
            R::Plan(PlanCommand::Move(_)) => "move_occurrence",
            R::Plan(PlanCommand::Retire(_)) => "retire_plan",
        }
    }

    /// The kind of entry it acts on.
    pub fn kind(&self) -> Kind {
        match self {
            RegistryCommand::Customer(_) => Kind::Customer,
            RegistryCommand::Site(_) => Kind::Site,
            RegistryCommand::Door(_) => Kind::Door,
            RegistryCommand::Plan(_) => Kind::MaintenancePlan,
        }
    }

    /// The id field of a registering command (`None`: another command),
    /// to fill in when the caller gave none.
    fn new_id(&mut self) -> Option<&mut Option<String>> {
        match self {
            RegistryCommand::Customer(CustomerCommand::Register(c)) => Some(&mut c.customer_id),
            RegistryCommand::Site(SiteCommand::Register(c)) => Some(&mut c.site_id),
            RegistryCommand::Door(DoorCommand::Register(c)) => Some(&mut c.door_id),
            RegistryCommand::Plan(PlanCommand::Create(c)) => Some(&mut c.plan_id),
            _ => None,
        }
    }

    /// Whether it registers a new entry (answered 201).
    pub fn registers(&self) -> bool {
        REGISTRY_COMMANDS
            .iter()
            .find(|(n, _)| *n == self.wire_name())
            .is_some_and(|(n, _)| n.starts_with("register_") || n.starts_with("create_"))
    }
}

/// What a registry decision leaves: the entry's index row and answer.
struct Outcome {
    entry: index::EntryRow,
    body: Value,
}

impl App {
    /// Runs a registry command for `caller` under its idempotency key: on
    /// the entry `id` (`None` to register one; its id is the body's, or
    /// derived from the caller and the key so retries agree).
    pub async fn registry_command(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        id: Option<&str>,
        command: RegistryCommand,
    ) -> Result<Reply> {
        let app = self.clone();
        let (caller2, meta2, id2) = (caller.clone(), meta.clone(), id.map(str::to_string));
        let reply = self
            .idempotent(caller, meta, move |conn| {
                Box::pin(async move {
                    index::lock(conn).await?;
                    app.registry_in(conn, &caller2, &meta2, id2.as_deref(), command)
                        .await
                })
            })
            .await?;
        if !reply.replayed && reply.status < 300 {
            store::wake_projectors(&self.pool);
        }
        Ok(reply)
    }

    /// Decides and writes one registry command inside the caller's
    /// transaction, which holds the registry's lock ([`index::lock`]).
    /// Answers `(status, body)`; a refusal is an error.
    pub async fn registry_in(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        meta: &RequestMeta,
        id: Option<&str>,
        mut command: RegistryCommand,
    ) -> Result<(u16, Value)> {
        let kind = command.kind();
        let id = match (command.new_id(), id) {
            (Some(given), _) => {
                let id = given
                    .clone()
                    .unwrap_or_else(|| derived_id(caller, meta, kind.as_str()));
                *given = Some(id.clone());
                id
            }
            (None, Some(id)) => id.to_string(),
            (None, None) => {
                return Err(RegistryError::NotFound {
                    kind,
                    id: String::new(),
                }
                .into())
            }
        };
        if !crate::app::storable_id(&id) {
            return Err(RegistryError::NotFound { kind, id }.into());
        }
        let name = command.wire_name();
        let status = if command.registers() { 201 } else { 200 };
        let facts = index::facts(conn, &self.sops, &id, &command).await?;
        let at = self.clock.now();
        let outcome = match command {
            RegistryCommand::Customer(c) => {
                self.decide::<Customer>(conn, caller, meta, &id, c, &facts, name)
                    .await?
            }
            RegistryCommand::Site(c) => {
                self.decide::<Site>(conn, caller, meta, &id, c, &facts, name)
                    .await?
            }
            RegistryCommand::Door(c) => {
                self.decide::<Door>(conn, caller, meta, &id, c, &facts, name)
                    .await?
            }
            RegistryCommand::Plan(c) => {
                self.decide::<MaintenancePlan>(conn, caller, meta, &id, c, &facts, name)
                    .await?
            }
        };
        index::upsert(conn, &outcome.entry, at).await?;
        Ok((status, outcome.body))
    }

    /// Reads the entry's stream, decides, appends the events and renders
    /// the entry's index row and the answer.
    #[allow(clippy::too_many_arguments)]
    async fn decide<A>(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        meta: &RequestMeta,
        id: &str,
        command: <A as index::Entry>::Command,
        facts: &Facts,
        name: &'static str,
    ) -> Result<Outcome>
    where
        A: Aggregate<
                Services = Facts,
                Error = RegistryError,
                Command = Issued<<A as index::Entry>::Command>,
            > + index::Entry,
    {
        let (events, head) = store::load_stream::<A::Event>(conn, A::TYPE, id).await?;
        let mut aggregate = events.into_iter().fold(A::default(), |mut a, e| {
            a.apply(e);
            a
        });
        if let Some(expected) = meta.if_match {
            if expected != aggregate.version() as i64 {
                return Err(ApiError::VersionConflict {
                    expected: Some(expected),
                    current: Some(aggregate.version() as i64),
                });
            }
        }
        let at = self.clock.now();
        let events = run(
            &mut aggregate,
            Issued::new(caller.actor(), at, command),
            facts,
        )
        .await?;
        let mut new_events = Vec::with_capacity(events.len());
        for e in &events {
            let (event_type, payload) = split_event(e)?;
            new_events.push(NewEvent {
                event_type,
                event_version: e.event_version(),
                payload,
                meta: self.event_meta(caller, meta, at, None, name),
            });
        }
        let appended = if new_events.is_empty() {
            Vec::new()
        } else {
            store::append(conn, &self.chain, A::TYPE, id, &head, new_events)
                .await
                .map_err(|e| match e {
                    store::StoreError::Conflict => ApiError::VersionConflict {
                        expected: meta.if_match,
                        current: None,
                    },
                    other => other.into(),
                })?
        };
        let entry = aggregate.row(id);
        let mut body = aggregate.view(id);
        body["version"] = aggregate.version().into();
        body["events"] = super::commands::events_json(&appended);
        Ok(Outcome { entry, body })
    }
}

/// The answer's `events` for what an import or a reactor appended.
pub fn event_types(body: &Value) -> Vec<String> {
    body["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["event_type"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The JSON an entry is shown as (answers, `GET /v1/{kind}s/{id}`).
pub(crate) fn entry_json(kind: Kind, id: &str, details: Value, extra: Value) -> Value {
    let mut v = json!({ format!("{}_id", if kind == Kind::MaintenancePlan { "plan" } else { kind.as_str() }): id, "kind": kind.as_str() });
    if let (Some(o), Value::Object(d)) = (v.as_object_mut(), details) {
        o.extend(d);
    }
    if let (Some(o), Value::Object(x)) = (v.as_object_mut(), extra) {
        o.extend(x);
    }
    v
}
