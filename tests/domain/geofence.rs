//! The geofenced check-in: every method × a site located or not × a
//! position inside, outside or absent × a reason given or not, against the
//! rule written out once here; the validation of the position, the
//! accuracy and the reason; what the job keeps (the visit's geofence and
//! reason, the `checked_in_off_site` flag) and that events recorded before
//! the geofence decode and re-encode unchanged.

use dispatch_api::domain::geo::{Geofence, SiteLocation, Verdict, DEFAULT_RADIUS_M};

use crate::support::*;

/// Site 17's registered coordinates (Springfield, IL), default radius.
fn located() -> SiteLocation {
    SiteLocation {
        site_id: "site-17".into(),
        latitude: 39.7817,
        longitude: -89.6501,
        radius_m: DEFAULT_RADIUS_M,
    }
}

/// Where the technician's phone says it is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Position {
    /// 44 m north of the site.
    Inside,
    /// 500 m north of the site.
    Outside,
    /// No position (location refused).
    Absent,
}

impl Position {
    fn coordinates(self) -> (Option<f64>, Option<f64>) {
        match self {
            Position::Inside => (Some(39.7821), Some(-89.6501)),
            Position::Outside => (Some(39.7862), Some(-89.6501)),
            Position::Absent => (None, None),
        }
    }

    /// The geofence a located site gives this position.
    fn geofence(self) -> Geofence {
        let (verdict, distance_m) = match self {
            Position::Inside => (Verdict::Inside, Some(44)),
            Position::Outside => (Verdict::Outside, Some(500)),
            Position::Absent => (Verdict::NoLocation, None),
        };
        Geofence {
            verdict,
            distance_m,
            radius_m: 150,
            site_id: "site-17".into(),
        }
    }
}

fn check_in_with(
    method: CheckInMethod,
    position: Position,
    reason: Option<&str>,
    site: Option<SiteLocation>,
) -> JobCommand {
    let (lat, lon) = position.coordinates();
    JobCommand::CheckIn(CheckIn {
        method,
        lat,
        lon,
        accuracy_m: lat.map(|_| 12.5),
        reason: reason.map(str::to_string),
        site_location: site,
    })
}

#[test]
fn the_rule_over_every_method_site_position_and_reason() {
    let methods = [
        CheckInMethod::App,
        CheckInMethod::Ivr,
        CheckInMethod::AgentRelay,
    ];
    let positions = [Position::Inside, Position::Outside, Position::Absent];
    let mut cases = 0;
    for method in methods {
        for site in [Some(located()), None] {
            for position in positions {
                for reason in [Some("gate locked, checked in from the street"), None] {
                    let by = if method == CheckInMethod::AgentRelay {
                        agent()
                    } else {
                        tech(TECH_D)
                    };
                    let command = check_in_with(method, position, reason, site.clone());
                    // The rule: only the app at a located site is geofenced;
                    // a geofence not shown inside needs a reason.
                    let geofence = (method == CheckInMethod::App && site.is_some())
                        .then(|| position.geofence());
                    let off_site = geofence.as_ref().is_some_and(|g| g.off_site());
                    let what = format!("{method:?} {:?} {position:?} {reason:?}", site.is_some());
                    let result = en_route()
                        .given()
                        .when(cmd(by.clone(), at(60), command.clone()))
                        .inspect_result();
                    if off_site && reason.is_none() {
                        let g = position.geofence();
                        assert_eq!(
                            result,
                            Err(JobError::CheckInReasonRequired {
                                distance_m: g.distance_m,
                                radius_m: 150,
                            }),
                            "{what}"
                        );
                        let err = result.unwrap_err();
                        assert_eq!(err.code(), "check_in_reason_required");
                        cases += 1;
                        continue;
                    }
                    let (lat, lon) = position.coordinates();
                    let expected = JobEvent::CheckedIn {
                        technician_id: TECH_D.into(),
                        method,
                        lat,
                        lon,
                        at: at(60),
                        geofence: geofence.clone(),
                        reason: reason.map(str::to_string),
                        accuracy_m: lat.map(|_| 12.5),
                    };
                    assert_eq!(result, Ok(vec![expected]), "{what}");
                    // What the job keeps.
                    let h = en_route().run(by, at(60), command);
                    let d = h.data();
                    assert_eq!(d.state, JobState::OnSite);
                    assert_eq!(d.flags.checked_in_off_site, off_site, "{what}");
                    let visit = d.current_visit().unwrap();
                    assert_eq!(visit.check_in_geofence, geofence, "{what}");
                    assert_eq!(visit.check_in_reason.as_deref(), reason, "{what}");
                    assert_eq!(d.last_check_in().map(|v| v.number), Some(visit.number));
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 3 * 2 * 3 * 2);
}

#[test]
fn the_radius_is_the_sites_and_its_edge_is_inside() {
    // 150.1 m north: rounds to 150, inside the default radius.
    let edge = (Some(39.78305), Some(-89.6501));
    let at_edge = |site: SiteLocation| {
        JobCommand::CheckIn(CheckIn {
            method: CheckInMethod::App,
            lat: edge.0,
            lon: edge.1,
            accuracy_m: Some(80.0),
            reason: None,
            site_location: Some(site),
        })
    };
    let h = en_route().run(tech(TECH_D), at(60), at_edge(located()));
    let g = h.data().current_visit().unwrap().check_in_geofence.clone();
    assert_eq!(
        g.map(|g| (g.verdict, g.distance_m)),
        Some((Verdict::Inside, Some(150)))
    );
    assert!(!h.data().flags.checked_in_off_site);
    // A site with a narrower radius: the same position is outside, and
    // the accuracy (80 m) does not widen the fence.
    let narrow = SiteLocation {
        radius_m: 100,
        ..located()
    };
    en_route().refused(
        tech(TECH_D),
        at(60),
        at_edge(narrow),
        JobError::CheckInReasonRequired {
            distance_m: Some(150),
            radius_m: 100,
        },
    );
}

#[test]
fn the_position_the_accuracy_and_the_reason_are_validated() {
    let site = Some(located());
    let body = |lat, lon, accuracy_m, reason: Option<&str>| {
        JobCommand::CheckIn(CheckIn {
            method: CheckInMethod::App,
            lat,
            lon,
            accuracy_m,
            reason: reason.map(str::to_string),
            site_location: site.clone(),
        })
    };
    for (command, field) in [
        (body(Some(39.78), None, None, Some("x")), "lon"),
        (body(None, Some(-89.65), None, Some("x")), "lat"),
        (body(Some(90.0001), Some(0.0), None, Some("x")), "lat"),
        (body(Some(0.0), Some(180.5), None, Some("x")), "lon"),
        (
            body(Some(39.78), Some(-89.65), Some(-1.0), None),
            "accuracy_m",
        ),
        (
            body(Some(39.78), Some(-89.65), Some(100_000.5), None),
            "accuracy_m",
        ),
        (body(None, None, None, Some("   ")), "reason"),
        (body(None, None, None, Some("gate\u{1b}[2J")), "reason"),
        (body(None, None, None, Some(&"x".repeat(4097))), "reason"),
    ] {
        let result = en_route()
            .given()
            .when(cmd(tech(TECH_D), at(60), command))
            .inspect_result();
        assert_validation(result, field);
    }
    // The accuracy's bounds are inclusive; the check-in's state guard
    // comes first.
    let ok = body(Some(39.7821), Some(-89.6501), Some(100_000.0), None);
    en_route().run(tech(TECH_D), at(60), ok.clone());
    let r = on_site()
        .given()
        .when(cmd(
            tech(TECH_D),
            at(61),
            body(Some(39.78), None, None, None),
        ))
        .inspect_result();
    assert!(
        matches!(r, Err(JobError::InvalidTransition { .. })),
        "{r:?}"
    );
}

#[test]
fn the_flag_follows_the_latest_check_in() {
    // Visit 1 checks in off site with a reason, ends on hold; visit 2
    // checks in inside: the flag clears, visit 1 keeps its record.
    let off = check_in_with(
        CheckInMethod::App,
        Position::Outside,
        Some("site closed, met the manager next door"),
        Some(located()),
    );
    let mut h = en_route().run(tech(TECH_D), at(60), off);
    assert!(h.data().flags.checked_in_off_site);
    h.exec(
        tech(TECH_D),
        at(90),
        JobCommand::CheckOut(CheckOut {
            outcome: CheckOutcome::ReturnVisit,
            door_left_state: DoorLeftState::Secured,
            make_safe_confirmed: Some(true),
            resolution: "come back with the manager".into(),
            parts: vec![],
            deficiencies: vec![],
        }),
    );
    assert!(
        h.data().flags.checked_in_off_site,
        "until the next check-in"
    );
    h.exec(
        dispatcher(),
        at(100),
        JobCommand::ScheduleReturnVisit(ScheduleReturnVisit::default()),
    );
    h.exec(agent(), at(101), offer(qualified(TECH_D)));
    h.exec(tech(TECH_D), at(102), accept(at(160)));
    let inside = check_in_with(CheckInMethod::App, Position::Inside, None, Some(located()));
    h.exec(tech(TECH_D), at(150), inside);
    let d = h.data();
    assert!(!d.flags.checked_in_off_site);
    assert_eq!(
        d.visits[0].check_in_geofence.as_ref().map(|g| g.verdict),
        Some(Verdict::Outside)
    );
    assert_eq!(
        d.visits[1].check_in_geofence.as_ref().map(|g| g.verdict),
        Some(Verdict::Inside)
    );
    assert_eq!(d.last_check_in().map(|v| v.number), Some(2));
}

#[test]
fn events_and_states_recorded_before_the_geofence_decode_and_encode_unchanged() {
    let old = serde_json::json!({"CheckedIn": {
        "technician_id": "tech-d", "method": "app", "lat": 39.7817, "lon": -89.6501,
        "at": "2026-05-02T22:00:00Z"}});
    let event: JobEvent = serde_json::from_value(old.clone()).unwrap();
    assert!(matches!(
        &event,
        JobEvent::CheckedIn {
            geofence: None,
            reason: None,
            accuracy_m: None,
            ..
        }
    ));
    // Re-encoded byte for byte alike: the stored payload's hash holds.
    assert_eq!(serde_json::to_value(&event).unwrap(), old);
    // A folded job stored before (read models keep them) decodes with the
    // flag off and no geofence on its visits.
    let mut state = serde_json::to_value(on_site().data()).unwrap();
    state["flags"]
        .as_object_mut()
        .unwrap()
        .remove("checked_in_off_site");
    let data: JobData = serde_json::from_value(state).unwrap();
    assert!(!data.flags.checked_in_off_site);
    assert_eq!(data.visits[0].check_in_geofence, None);
    // The new fields' wire shape.
    let g = Position::Absent.geofence();
    assert_eq!(
        serde_json::to_value(&g).unwrap(),
        serde_json::json!({"verdict": "no_location", "distance_m": null, "radius_m": 150, "site_id": "site-17"})
    );
}
