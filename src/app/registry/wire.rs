//! How registry commands appear on the wire beyond their bodies: the REST
//! path of each kind, the argument a tool call names its entry by, and each
//! command body's JSON Schema (for the OpenAPI document and the check that
//! `schemas/tools/<command>.json` has exactly the body's fields).

use schemars::{Schema, SchemaGenerator};

use super::REGISTRY_COMMANDS;
use crate::domain::registry::customer::{RegisterCustomer, Retire, UpdateCustomer};
use crate::domain::registry::door::{
    MoveDoor, RecordDoorLabel, RegisterDoor, SetDoorStatus, UpdateDoor,
};
use crate::domain::registry::plan::{ChangeOccurrence, CreatePlan};
use crate::domain::registry::site::{RegisterSite, UpdateSite};
use crate::domain::registry::Kind;

/// The REST collection of a kind: `/v1/customers`, `/v1/sites`,
/// `/v1/doors`, `/v1/maintenance-plans`.
pub fn collection(kind: Kind) -> &'static str {
    match kind {
        Kind::Customer => "/v1/customers",
        Kind::Site => "/v1/sites",
        Kind::Door => "/v1/doors",
        Kind::MaintenancePlan => "/v1/maintenance-plans",
    }
}

/// The field that names an entry of a kind: its path parameter, and the
/// argument a tool call on an existing entry names it by.
pub fn id_field(kind: Kind) -> &'static str {
    match kind {
        Kind::Customer => "customer_id",
        Kind::Site => "site_id",
        Kind::Door => "door_id",
        Kind::MaintenancePlan => "plan_id",
    }
}

/// The kind a registry command acts on, by wire name (`None`: no such
/// registry command).
pub fn command_kind(name: &str) -> Option<Kind> {
    REGISTRY_COMMANDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
}

/// Whether the command registers a new entry (it has the collection's
/// `POST` route and no entry id argument).
pub fn registers(name: &str) -> bool {
    name.starts_with("register_") || name == "create_plan"
}

/// The registry command of `kind` named `name` that runs on an existing
/// entry (`POST {collection}/{id}/commands/{name}`), if there is one.
pub fn is_entry_command(kind: Kind, name: &str) -> bool {
    command_kind(name) == Some(kind) && !registers(name)
}

/// The JSON Schema of a registry command's wire body.
pub fn body_schema(name: &str, generator: &mut SchemaGenerator) -> Option<Schema> {
    Some(match name {
        "register_customer" => generator.subschema_for::<RegisterCustomer>(),
        "update_customer" => generator.subschema_for::<UpdateCustomer>(),
        "register_site" => generator.subschema_for::<RegisterSite>(),
        "update_site" => generator.subschema_for::<UpdateSite>(),
        "register_door" => generator.subschema_for::<RegisterDoor>(),
        "update_door" => generator.subschema_for::<UpdateDoor>(),
        "move_door" => generator.subschema_for::<MoveDoor>(),
        "record_door_label" => generator.subschema_for::<RecordDoorLabel>(),
        "set_door_status" => generator.subschema_for::<SetDoorStatus>(),
        "create_plan" => generator.subschema_for::<CreatePlan>(),
        "skip_occurrence" | "move_occurrence" => generator.subschema_for::<ChangeOccurrence>(),
        "retire_customer" | "retire_site" | "retire_door" | "retire_plan" => {
            generator.subschema_for::<Retire>()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_command_has_a_body_schema_and_one_register_per_kind() {
        let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
        for (name, kind) in REGISTRY_COMMANDS {
            assert!(body_schema(name, &mut generator).is_some(), "{name}");
            assert_eq!(command_kind(name), Some(*kind));
        }
        for kind in Kind::ALL {
            let registering: Vec<_> = REGISTRY_COMMANDS
                .iter()
                .filter(|(n, k)| *k == kind && registers(n))
                .collect();
            assert_eq!(registering.len(), 1, "{kind:?}");
        }
        assert!(is_entry_command(Kind::Door, "update_door"));
        assert!(!is_entry_command(Kind::Door, "register_door"));
        assert!(!is_entry_command(Kind::Site, "update_door"));
        assert!(!is_entry_command(Kind::Door, "approve_everything"));
    }
}
