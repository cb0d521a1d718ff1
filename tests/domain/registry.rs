//! The registry's aggregates: customers, sites, doors and maintenance
//! plans — their rules, decided on the facts the application resolves, and
//! a plan's schedule.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use cqrs_es::Aggregate;
use dispatch_api::domain::policy::Priority;
use dispatch_api::domain::registry::customer::{Billing, RegisterCustomer, Retire};
use dispatch_api::domain::registry::door::{MoveDoor, RecordDoorLabel, RegisterDoor, UpdateDoor};
use dispatch_api::domain::registry::plan::{Change, ChangeOccurrence, CreatePlan, PlanDetails};
use dispatch_api::domain::registry::site::{RegisterSite, SiteDetails, UpdateSite};
use dispatch_api::domain::registry::{
    Customer, CustomerCommand, Door, DoorCommand, DoorEvent, DoorKind, Entry, Facts, Kind,
    MaintenancePlan, Occurrence, PlanCommand, PlanEvent, RegistryError, Site, SiteCommand,
};
use dispatch_api::domain::Issued;

use crate::support::*;

fn issued<C>(command: C) -> Issued<C> {
    Issued::new(dispatcher(), t0(), command)
}

fn entry(id: &str, customer: &str) -> Entry {
    Entry {
        id: id.into(),
        retired: false,
        customer_id: customer.into(),
        site_id: None,
    }
}

fn with_parent(parent: Entry) -> Facts {
    Facts {
        parent: Some(parent),
        ..Facts::default()
    }
}

fn register_door(serial: Option<&str>) -> RegisterDoor {
    RegisterDoor {
        door_id: Some("door-1".into()),
        site_id: "site-1".into(),
        kind: DoorKind::SwingingFire,
        location: "Stair B, level 2".into(),
        manufacturer: Some("Ceco".into()),
        model: None,
        serial: serial.map(str::to_string),
        installed_on: Some(date(2019, 4, 1)),
        fire_rating: Some("90 min".into()),
        tag: Some("FD-2B".into()),
    }
}

fn registered_door() -> Door {
    let mut door = Door::default();
    let events = door
        .decide(
            &issued(DoorCommand::Register(register_door(Some("SN-1")))),
            &with_parent(entry("site-1", "cust-1")),
        )
        .unwrap();
    for e in events {
        door.apply(e);
    }
    door
}

#[test]
fn a_door_registers_at_an_active_site_only() {
    let cmd = issued(DoorCommand::Register(register_door(None)));
    let none = Door::default().decide(&cmd, &Facts::default());
    assert_eq!(
        none,
        Err(RegistryError::NotFound {
            kind: Kind::Site,
            id: "site-1".into()
        })
    );
    let mut retired = entry("site-1", "cust-1");
    retired.retired = true;
    let r = Door::default().decide(&cmd, &with_parent(retired));
    assert_eq!(r.unwrap_err().code(), "site_retired");
    let ok = Door::default()
        .decide(&cmd, &with_parent(entry("site-1", "cust-1")))
        .unwrap();
    assert!(matches!(&ok[..], [DoorEvent::DoorRegistered { door_id, .. }] if door_id == "door-1"));
}

#[test]
fn a_serial_is_registered_once() {
    let cmd = issued(DoorCommand::Register(register_door(Some("SN-1"))));
    let mut facts = with_parent(entry("site-1", "cust-1"));
    facts.serial_taken_by = Some("door-9".into());
    let r = Door::default().decide(&cmd, &facts).unwrap_err();
    assert_eq!(r.code(), "duplicate_serial");
    assert_eq!(r.status(), 409);
    // Changing a door's serial to a taken one is refused too; leaving it is not.
    let door = registered_door();
    let to_taken = issued(DoorCommand::Update(UpdateDoor {
        serial: Some("SN-2".into()),
        ..UpdateDoor::default()
    }));
    assert_eq!(
        door.decide(&to_taken, &facts).unwrap_err().code(),
        "duplicate_serial"
    );
    let location = issued(DoorCommand::Update(UpdateDoor {
        location: Some("Stair B, level 3".into()),
        ..UpdateDoor::default()
    }));
    assert_eq!(door.decide(&location, &facts).unwrap().len(), 1);
}

#[test]
fn an_unchanged_update_records_nothing() {
    let door = registered_door();
    let same = issued(DoorCommand::Update(UpdateDoor {
        location: Some("Stair B, level 2".into()),
        serial: Some("SN-1".into()),
        ..UpdateDoor::default()
    }));
    assert_eq!(door.decide(&same, &Facts::default()).unwrap(), vec![]);
}

#[test]
fn only_fire_doors_carry_a_label() {
    let mut body = register_door(None);
    body.kind = DoorKind::Overhead;
    let r = Door::default()
        .decide(
            &issued(DoorCommand::Register(body)),
            &with_parent(entry("site-1", "cust-1")),
        )
        .unwrap_err();
    assert_eq!(r.code(), "validation_error");
    let label = issued(DoorCommand::RecordLabel(RecordDoorLabel {
        fire_rating: "3 hr".into(),
        legible: false,
        note: None,
    }));
    let events = registered_door().decide(&label, &Facts::default()).unwrap();
    assert!(matches!(
        &events[..],
        [DoorEvent::DoorLabelRecorded { legible: false, .. }]
    ));
}

#[test]
fn a_retired_door_takes_no_command() {
    let mut door = registered_door();
    door.apply(DoorEvent::DoorRetired {
        reason: "demolished".into(),
    });
    let r = door
        .decide(
            &issued(DoorCommand::Update(UpdateDoor::default())),
            &Facts::default(),
        )
        .unwrap_err();
    assert_eq!(r.code(), "door_retired");
    assert_eq!(r.status(), 422);
}

#[test]
fn a_door_moves_within_its_customer_only() {
    let door = registered_door();
    let cmd = issued(DoorCommand::Move(MoveDoor {
        site_id: "site-2".into(),
        location: "Dock 4".into(),
    }));
    let mut facts = with_parent(entry("site-2", "cust-2"));
    facts.doors = vec![entry("door-1", "cust-1")];
    assert_eq!(
        door.decide(&cmd, &facts).unwrap_err().code(),
        "door_of_another_customer"
    );
    facts.parent = Some(entry("site-2", "cust-1"));
    assert!(matches!(
        &door.decide(&cmd, &facts).unwrap()[..],
        [DoorEvent::DoorMoved { to_site_id, .. }] if to_site_id == "site-2"
    ));
}

#[test]
fn entries_with_active_children_do_not_retire() {
    let mut customer = Customer::default();
    let reg = issued(CustomerCommand::Register(RegisterCustomer {
        customer_id: Some("cust-1".into()),
        name: "Mercy Health".into(),
        billing: Billing::Ifm,
        ifm_account: None,
        contacts: vec![],
    }));
    // IFM billing needs the account.
    assert_eq!(
        customer.decide(&reg, &Facts::default()).unwrap_err(),
        RegistryError::Validation {
            field: "ifm_account".into(),
            problem: "required when billing is ifm"
        }
    );
    let reg = issued(CustomerCommand::Register(RegisterCustomer {
        customer_id: Some("cust-1".into()),
        name: "Mercy Health".into(),
        billing: Billing::Direct,
        ifm_account: None,
        contacts: vec![],
    }));
    for e in customer.decide(&reg, &Facts::default()).unwrap() {
        customer.apply(e);
    }
    let retire = issued(CustomerCommand::Retire(Retire {
        reason: "contract ended".into(),
    }));
    let busy = Facts {
        active_children: 2,
        ..Facts::default()
    };
    assert_eq!(
        customer.decide(&retire, &busy).unwrap_err().code(),
        "has_active_entries"
    );
    assert_eq!(
        customer.decide(&retire, &Facts::default()).unwrap().len(),
        1
    );
}

#[test]
fn a_site_needs_a_real_time_zone_and_an_active_customer() {
    let body = |tz: &str| RegisterSite {
        site_id: Some("site-1".into()),
        customer_id: "cust-1".into(),
        name: "Mercy East".into(),
        address: "1 Main St".into(),
        latitude: Some(41.9),
        longitude: Some(-87.6),
        geofence_radius_m: None,
        time_zone: tz.into(),
        access_notes: None,
        contacts: vec![],
        reference: Some("ME-01".into()),
    };
    let facts = with_parent(entry("cust-1", "cust-1"));
    let bad = Site::default().decide(&issued(SiteCommand::Register(body("Mars/Olympus"))), &facts);
    assert_eq!(bad.unwrap_err().code(), "validation_error");
    let none = Site::default().decide(
        &issued(SiteCommand::Register(body("America/Chicago"))),
        &Facts::default(),
    );
    assert_eq!(none.unwrap_err().status(), 404);
    let ok = Site::default().decide(
        &issued(SiteCommand::Register(body("America/Chicago"))),
        &facts,
    );
    assert_eq!(ok.unwrap().len(), 1);
}

#[test]
fn a_sites_geofence_radius_is_25_to_5000_metres_and_updates_alone() {
    let body = |radius: Option<u32>| RegisterSite {
        site_id: Some("site-1".into()),
        customer_id: "cust-1".into(),
        name: "Mercy East".into(),
        address: "1 Main St".into(),
        latitude: Some(41.846),
        longitude: Some(-87.6236),
        geofence_radius_m: radius,
        time_zone: "America/Chicago".into(),
        access_notes: None,
        contacts: vec![],
        reference: None,
    };
    let facts = with_parent(entry("cust-1", "cust-1"));
    for bad in [0, 24, 5001, u32::MAX] {
        let r = Site::default().decide(&issued(SiteCommand::Register(body(Some(bad)))), &facts);
        match r {
            Err(RegistryError::Validation { field, .. }) => assert_eq!(field, "geofence_radius_m"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    let mut site = Site::default();
    for e in site
        .decide(&issued(SiteCommand::Register(body(Some(25)))), &facts)
        .unwrap()
    {
        site.apply(e);
    }
    assert_eq!(site.details.as_ref().unwrap().geofence_radius_m, Some(25));
    // An update naming only the radius keeps the coordinates; one without
    // it keeps the radius.
    let update = |radius: Option<u32>, name: Option<&str>| {
        issued(SiteCommand::Update(UpdateSite {
            geofence_radius_m: radius,
            name: name.map(str::to_string),
            ..UpdateSite::default()
        }))
    };
    for e in site.decide(&update(Some(5000), None), &facts).unwrap() {
        site.apply(e);
    }
    for e in site
        .decide(&update(None, Some("Mercy East Wing")), &facts)
        .unwrap()
    {
        site.apply(e);
    }
    let d = site.details.as_ref().unwrap();
    assert_eq!(
        (d.geofence_radius_m, d.latitude),
        (Some(5000), Some(41.846))
    );
    assert!(site.decide(&update(Some(5001), None), &facts).is_err());
    // Recorded only when given: a site registered without one shows none.
    let plain = SiteDetails {
        geofence_radius_m: None,
        ..d.clone()
    };
    assert!(!serde_json::to_string(&plain).unwrap().contains("geofence"));
}

fn plan_body(doors: &[&str]) -> CreatePlan {
    CreatePlan {
        plan_id: Some("plan-1".into()),
        customer_id: "cust-1".into(),
        name: "Annual NFPA 80 inspection".into(),
        door_ids: doors.iter().map(|d| d.to_string()).collect(),
        incident_type: "fire_door_inspection".into(),
        every_months: 12,
        starts_on: date(2027, 1, 15),
        lead_days: 30,
        priority: Priority::P4,
    }
}

fn plan_facts(doors: Vec<Entry>) -> Facts {
    Facts {
        parent: Some(entry("cust-1", "cust-1")),
        doors,
        incident_type_known: true,
        ..Facts::default()
    }
}

#[test]
fn a_plan_names_its_customers_registered_doors_only() {
    let cmd = issued(PlanCommand::Create(plan_body(&["door-1", "door-2"])));
    let other = MaintenancePlan::default()
        .decide(
            &cmd,
            &plan_facts(vec![entry("door-1", "cust-1"), entry("door-2", "cust-2")]),
        )
        .unwrap_err();
    assert_eq!(
        other,
        RegistryError::DoorOfAnotherCustomer {
            door_id: "door-2".into()
        }
    );
    let missing = MaintenancePlan::default()
        .decide(&cmd, &plan_facts(vec![entry("door-1", "cust-1")]))
        .unwrap_err();
    assert_eq!(missing.status(), 404);
    let mut unknown_type = plan_facts(vec![entry("door-1", "cust-1"), entry("door-2", "cust-1")]);
    unknown_type.incident_type_known = false;
    let refused = MaintenancePlan::default()
        .decide(&cmd, &unknown_type)
        .unwrap_err();
    // As open_job refuses one (422).
    assert_eq!(
        (refused.code(), refused.status()),
        ("unknown_incident_type", 422)
    );
    let ok = MaintenancePlan::default()
        .decide(
            &cmd,
            &plan_facts(vec![entry("door-1", "cust-1"), entry("door-2", "cust-1")]),
        )
        .unwrap();
    assert!(
        matches!(&ok[..], [PlanEvent::PlanCreated { created_on, .. }] if *created_on == t0().date_naive())
    );
}

fn details(every_months: u32, starts_on: NaiveDate, lead_days: u32) -> PlanDetails {
    PlanDetails {
        customer_id: "cust-1".into(),
        name: "PM".into(),
        door_ids: vec!["door-1".into()],
        incident_type: "preventive_maintenance".into(),
        every_months,
        starts_on,
        lead_days,
        priority: Priority::P4,
    }
}

#[test]
fn occurrences_open_their_lead_before_they_are_due() {
    let d = details(3, date(2027, 1, 31), 14);
    let none = BTreeMap::new();
    let through = |y, m, dd| d.occurrences("door-1", date(2027, 1, 1), &none, date(y, m, dd));
    assert!(through(2027, 1, 16).is_empty());
    let first = through(2027, 1, 17);
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].due_on, first[0].opens_on),
        (date(2027, 1, 31), date(2027, 1, 17))
    );
    // Month ends clamp (Apr 30, Jul 31, Oct 31) and a year holds four.
    let year: Vec<NaiveDate> = through(2027, 12, 31).iter().map(|o| o.due_on).collect();
    assert_eq!(
        year,
        vec![
            date(2027, 1, 31),
            date(2027, 4, 30),
            date(2027, 7, 31),
            date(2027, 10, 31)
        ]
    );
}

#[test]
fn a_plan_does_not_make_up_for_the_time_before_it() {
    let d = details(12, date(2020, 3, 1), 30);
    let got = d.occurrences(
        "door-1",
        date(2026, 12, 6),
        &BTreeMap::new(),
        date(2028, 12, 31),
    );
    let due: Vec<NaiveDate> = got.iter().map(|o| o.due_on).collect();
    assert_eq!(due, vec![date(2027, 3, 1), date(2028, 3, 1)]);
}

#[test]
fn skipped_and_moved_occurrences() {
    let d = details(3, date(2027, 1, 31), 14);
    let mut changes = BTreeMap::new();
    changes.insert(
        Occurrence::key("door-1", date(2027, 4, 30)),
        Change::Skipped {
            reason: "site closed for renovation".into(),
        },
    );
    changes.insert(
        Occurrence::key("door-1", date(2027, 7, 31)),
        Change::Moved {
            to: date(2027, 9, 15),
            reason: "tenant asked".into(),
        },
    );
    let got = d.occurrences("door-1", date(2027, 1, 1), &changes, date(2027, 8, 31));
    let view: Vec<(NaiveDate, bool)> = got
        .iter()
        .map(|o| (o.due_on, o.skipped.is_some()))
        .collect();
    // The moved one opens on Sep 1 (Sep 15 − 14 days): not yet on Aug 31.
    assert_eq!(
        view,
        vec![(date(2027, 1, 31), false), (date(2027, 4, 30), true)]
    );
    let later = d.occurrences("door-1", date(2027, 1, 1), &changes, date(2027, 9, 1));
    assert_eq!(
        later.last().map(|o| (o.due_on, o.due)),
        Some((date(2027, 7, 31), date(2027, 9, 15)))
    );
    // Each occurrence has one job id, whoever computes it.
    assert_eq!(got[0].job_id("plan-1"), later[0].job_id("plan-1"));
    assert_ne!(got[0].job_id("plan-1"), got[1].job_id("plan-1"));
}

#[test]
fn an_opened_or_unscheduled_occurrence_is_not_changed() {
    let mut plan = MaintenancePlan::default();
    let created = MaintenancePlan::default()
        .decide(
            &issued(PlanCommand::Create(plan_body(&["door-1"]))),
            &plan_facts(vec![entry("door-1", "cust-1")]),
        )
        .unwrap();
    for e in created {
        plan.apply(e);
    }
    let skip = |due_on| {
        issued(PlanCommand::Skip(ChangeOccurrence {
            door_id: "door-1".into(),
            due_on,
            to: None,
            reason: "closed".into(),
        }))
    };
    assert_eq!(
        plan.decide(&skip(date(2027, 2, 15)), &Facts::default())
            .unwrap_err()
            .code(),
        "invalid_occurrence"
    );
    let opened = Facts {
        opened: vec![Occurrence::key("door-1", date(2027, 1, 15))],
        ..Facts::default()
    };
    assert_eq!(
        plan.decide(&skip(date(2027, 1, 15)), &opened)
            .unwrap_err()
            .code(),
        "invalid_occurrence"
    );
    let events = plan
        .decide(&skip(date(2027, 1, 15)), &Facts::default())
        .unwrap();
    for e in events {
        plan.apply(e);
    }
    // Skipping it again records nothing.
    assert_eq!(
        plan.decide(&skip(date(2027, 1, 15)), &Facts::default())
            .unwrap(),
        vec![]
    );
}
