//! The Technician aggregate, given/when/then.

use cqrs_es::test::TestFramework;
use dispatch_api::domain::technician::{
    Certification, RegisterTechnician, SetShift, Technician, TechnicianCommand, TechnicianError,
    TechnicianEvent, UpdateSkills,
};

use crate::support::*;

fn fw() -> TestFramework<Technician> {
    TestFramework::<Technician>::with(())
}

fn aaadm() -> Certification {
    Certification {
        name: "AAADM".into(),
        expires_on: date(2027, 12, 31),
    }
}

fn register_body() -> RegisterTechnician {
    RegisterTechnician {
        technician_id: Some(TECH_D.into()),
        name: "Dana Diaz".into(),
        skills: vec!["automatic_doors".into(), "overhead_doors".into()],
        certifications: vec![aaadm()],
        territory: "springfield".into(),
        shift: Shift::Available,
        labor_rate_cents: RATE,
    }
}

fn register(body: RegisterTechnician) -> TechnicianCommand {
    TechnicianCommand::RegisterTechnician(body)
}

/// What registering [`register_body`] records.
fn registered_event() -> TechnicianEvent {
    let body = register_body();
    TechnicianEvent::TechnicianRegistered {
        technician_id: TECH_D.into(),
        name: body.name,
        skills: body.skills,
        certifications: body.certifications,
        territory: body.territory,
        shift: body.shift,
        labor_rate_cents: body.labor_rate_cents,
    }
}

fn set_shift(shift: Shift) -> TechnicianCommand {
    TechnicianCommand::SetShift(SetShift { shift })
}

fn tcmd(by: Actor, command: TechnicianCommand) -> Issued<TechnicianCommand> {
    Issued::new(by, t0(), command)
}

#[track_caller]
fn assert_tech_validation(result: Result<Vec<TechnicianEvent>, TechnicianError>, field: &str) {
    match result {
        Err(TechnicianError::Validation { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected Validation on `{field}`, got {other:?}"),
    }
}

#[test]
fn a_dispatcher_or_admin_registers_a_technician() {
    for by in [dispatcher(), admin()] {
        fw().given_no_previous_events()
            .when(tcmd(by, register(register_body())))
            .then_expect_events(vec![registered_event()]);
    }
}

#[test]
fn nobody_else_registers_technicians() {
    for by in [agent(), auditor(), system(), tech(TECH_D)] {
        fw().given_no_previous_events()
            .when(tcmd(by, register(register_body())))
            .then_expect_error(TechnicianError::Forbidden);
    }
}

#[test]
fn registering_twice_is_refused() {
    fw().given(vec![registered_event()])
        .when(tcmd(dispatcher(), register(register_body())))
        .then_expect_error(TechnicianError::AlreadyRegistered);
}

#[test]
fn registration_is_validated() {
    let cases: Vec<(RegisterTechnician, &str)> = vec![
        (
            RegisterTechnician {
                technician_id: None,
                ..register_body()
            },
            "technician_id",
        ),
        (
            RegisterTechnician {
                technician_id: Some("x".repeat(201)),
                ..register_body()
            },
            "technician_id",
        ),
        (
            RegisterTechnician {
                name: "  ".into(),
                ..register_body()
            },
            "name",
        ),
        (
            RegisterTechnician {
                territory: "north\nsouth".into(),
                ..register_body()
            },
            "territory",
        ),
        (
            RegisterTechnician {
                skills: vec!["automatic_doors".into(), "".into()],
                ..register_body()
            },
            "skills[1]",
        ),
        (
            RegisterTechnician {
                skills: (0..101).map(|i| format!("skill_{i}")).collect(),
                ..register_body()
            },
            "skills",
        ),
        (
            RegisterTechnician {
                certifications: vec![Certification {
                    name: "".into(),
                    expires_on: date(2027, 1, 1),
                }],
                ..register_body()
            },
            "certifications[0].name",
        ),
        (
            RegisterTechnician {
                labor_rate_cents: -1,
                ..register_body()
            },
            "labor_rate_cents",
        ),
        (
            RegisterTechnician {
                labor_rate_cents: 1_000_001,
                ..register_body()
            },
            "labor_rate_cents",
        ),
    ];
    for (body, field) in cases {
        let result = fw()
            .given_no_previous_events()
            .when(tcmd(dispatcher(), register(body)))
            .inspect_result();
        assert_tech_validation(result, field);
    }
}

#[test]
fn update_skills_replaces_skills_and_certifications() {
    let update = UpdateSkills {
        skills: vec!["glazing".into()],
        certifications: vec![],
    };
    fw().given(vec![registered_event()])
        .when(tcmd(
            dispatcher(),
            TechnicianCommand::UpdateSkills(update.clone()),
        ))
        .then_expect_events(vec![TechnicianEvent::SkillsUpdated {
            skills: vec!["glazing".into()],
            certifications: vec![],
        }]);
    // Only supervisors: not even the technician themself.
    for by in [tech(TECH_D), agent()] {
        fw().given(vec![registered_event()])
            .when(tcmd(by, TechnicianCommand::UpdateSkills(update.clone())))
            .then_expect_error(TechnicianError::Forbidden);
    }
    fw().given_no_previous_events()
        .when(tcmd(dispatcher(), TechnicianCommand::UpdateSkills(update)))
        .then_expect_error(TechnicianError::NotFound);
    let result = fw()
        .given(vec![registered_event()])
        .when(tcmd(
            dispatcher(),
            TechnicianCommand::UpdateSkills(UpdateSkills {
                skills: vec!["ok".into(), "bad\u{1b}".into()],
                certifications: vec![],
            }),
        ))
        .inspect_result();
    assert_tech_validation(result, "skills[1]");
}

#[test]
fn set_shift_by_the_technician_themself_or_a_supervisor() {
    for by in [tech(TECH_D), dispatcher(), admin()] {
        fw().given(vec![registered_event()])
            .when(tcmd(by, set_shift(Shift::Off)))
            .then_expect_events(vec![TechnicianEvent::ShiftSet { shift: Shift::Off }]);
    }
}

#[test]
fn set_shift_of_another_technician_is_forbidden() {
    for by in [
        tech(TECH_A),
        agent(),
        auditor(),
        Actor::new(Role::Technician, "key-unbound"),
    ] {
        fw().given(vec![registered_event()])
            .when(tcmd(by, set_shift(Shift::OnCall)))
            .then_expect_error(TechnicianError::Forbidden);
    }
    fw().given_no_previous_events()
        .when(tcmd(tech(TECH_D), set_shift(Shift::OnCall)))
        .then_expect_error(TechnicianError::NotFound);
}

#[test]
fn the_profile_the_job_checks_offers_against_follows_the_events() {
    use cqrs_es::Aggregate;
    let mut t = Technician::default();
    for e in [
        registered_event(),
        TechnicianEvent::ShiftSet {
            shift: Shift::OnCall,
        },
        TechnicianEvent::SkillsUpdated {
            skills: vec!["automatic_doors".into()],
            certifications: vec![Certification {
                name: "AAADM".into(),
                expires_on: date(2026, 5, 1),
            }],
        },
    ] {
        t.apply(e);
    }
    assert_eq!(t.version, 3);
    let profile = t.data.as_ref().unwrap().profile();
    assert_eq!(
        profile,
        TechnicianProfile {
            certifications: vec![("AAADM".into(), date(2026, 5, 1))],
            shift: Shift::OnCall,
            ..qualified(TECH_D)
        }
    );
    // The lapsed certification makes the job refuse the offer.
    triaged().refused(agent(), at(10), offer(profile), lacks_aaadm());
}

#[test]
fn error_codes_match_the_contract() {
    assert_eq!(TechnicianError::Forbidden.code(), "forbidden");
    assert_eq!(TechnicianError::NotFound.code(), "not_found");
    assert_eq!(
        TechnicianError::AlreadyRegistered.code(),
        "technician_already_exists"
    );
}
