//! The domain path of the canonical end-to-end story (shared/spec/e2e.md):
//! an IFM work order, an automatic sliding door stuck open after hours, NTE
//! $500. Every step is a given/when/then on the history so far.

use crate::support::*;

#[test]
fn canonical_story_domain_path() {
    let mut h = History::new();

    // 2. open_job, then triage too early.
    h.step(agent(), t0(), open(open_body()), vec![opened_event()]);
    h.refused(
        agent(),
        at(1),
        triage(None),
        JobError::MissingIntakeFields {
            missing: [
                "anyone_hurt_or_trapped",
                "opening_can_be_secured",
                "after_hours",
                "access_hours",
                "symptom",
                "mode_switch_position",
                "power_cycled",
            ]
            .map(String::from)
            .to_vec(),
        },
    );

    // 3. record_intake; triage → P1, SLA due in 4 h, make-safe required.
    h.step(
        agent(),
        at(3),
        record_intake(p1_intake()),
        vec![JobEvent::IntakeRecorded {
            fields: p1_intake(),
        }],
    );
    h.step(agent(), at(5), triage(None), vec![triaged_p1_event()]);
    assert_eq!(h.data().priority, Some(Priority::P1));
    assert_eq!(
        h.data().sla_due_at,
        Some(h.data().opened_at + chrono::Duration::hours(4))
    );
    assert!(h.data().flags.make_safe_required);

    // 4. B lacks AAADM, C is off shift, A is offered.
    h.refused(agent(), at(6), offer(no_aaadm(TECH_B)), lacks_aaadm());
    h.refused(
        agent(),
        at(7),
        offer(off_shift(TECH_C)),
        JobError::TechnicianUnavailable {
            shift: Shift::Off,
            active: true,
        },
    );
    h.step(
        agent(),
        at(8),
        offer(qualified(TECH_A)),
        vec![job_offered(1, TECH_A, at(8), at(23), false)],
    );

    // 5. A declines; back in triaged; D is offered and accepts inside the SLA.
    let reason = "Already on a P1 across town";
    h.step(
        tech(TECH_A),
        at(10),
        decline(reason),
        vec![offer_declined(TECH_A, reason)],
    );
    assert_eq!(h.state(), JobState::Triaged);
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        (agent(),      at(11), offer(qualified(TECH_D)), vec![job_offered(2, TECH_D, at(11), at(26), false)]),
        (tech(TECH_D), at(12), accept(at(60)),           vec![offer_accepted(TECH_D, at(60), false)]),
        // 6. Travel, check in, the AAADM checklist, the before photo.
        (tech(TECH_D), at(20), start_travel(),           vec![travel_started(TECH_D, at(20))]),
    ];
    h.steps(steps);
    h.step(
        tech(TECH_D),
        at(60),
        check_in(CheckInMethod::App, Some(39.7817), Some(-89.6501)),
        vec![JobEvent::CheckedIn {
            technician_id: TECH_D.into(),
            method: CheckInMethod::App,
            lat: Some(39.7817),
            lon: Some(-89.6501),
            at: at(60),
            geofence: None,
            reason: None,
            accuracy_m: None,
        }],
    );
    for (i, item) in required_items(INCIDENT).iter().enumerate() {
        h.step(
            tech(TECH_D),
            at(61 + i as i64),
            checklist_item(item, ChecklistResult::Pass),
            vec![JobEvent::ChecklistItemCompleted {
                item_id: item.clone(),
                result: ChecklistResult::Pass,
                note: None,
            }],
        );
    }
    assert!(required_items(INCIDENT)
        .iter()
        .any(|i| i.starts_with("aaadm_")));
    h.attach(TECH_D, at(80), EvidenceKind::PhotoBefore, 1);
    h.attach(TECH_D, at(81), EvidenceKind::ChecklistForm, 2);
    let done = || completed(vec![motor()]);
    h.refused(
        tech(TECH_D),
        at(175),
        done(),
        JobError::MissingFieldEvidence {
            missing: vec!["photo_after".into(), "signature".into()],
        },
    );
    h.attach(TECH_D, at(176), EvidenceKind::PhotoAfter, 3);
    h.attach(TECH_D, at(177), EvidenceKind::Signature, 4);
    h.step(
        tech(TECH_D),
        at(180),
        done(),
        vec![completed_event(vec![motor()], at(180), 120)],
    );

    // e2e.md step 7: mark_billing_ready before closeout verification reports
    // the NTE blocker first (it needs a person's approval).
    h.refused(
        agent(),
        at(185),
        mark_billing_ready(),
        JobError::NteExceeded {
            total_cents: 53_500,
            nte_cents: 50_000,
        },
    );

    // 7./8. Verify closeout; labor + parts + trip exceed the NTE.
    let items = closeout_items(INCIDENT, ChecklistResult::Pass);
    h.step(
        agent(),
        at(190),
        verify_closeout(items.clone()),
        vec![JobEvent::CloseoutVerified { items }],
    );
    h.refused(
        agent(),
        at(195),
        mark_billing_ready(),
        JobError::NteExceeded {
            total_cents: 53_500,
            nte_cents: 50_000,
        },
    );
    let id = h.next_approval_id();
    h.step(
        agent(),
        at(196),
        nte_increase(65_000, "Operator motor replaced"),
        vec![JobEvent::ApprovalRequested {
            approval_id: id.clone(),
            action: ApprovalAction::NteIncrease {
                amount_cents: 65_000,
            },
            reason: "Operator motor replaced".into(),
            requested_by: agent(),
            at: at(196),
        }],
    );
    h.refused(agent(), at(197), approve(&id), JobError::Forbidden);
    h.refused(
        agent(),
        at(198),
        mark_billing_ready(),
        JobError::NteExceeded {
            total_cents: 53_500,
            nte_cents: 50_000,
        },
    );
    h.step(
        dispatcher(),
        at(200),
        approve_because(&id, "Motor confirmed by photos"),
        vec![
            approval_granted_because(id.clone(), dispatcher(), "Motor confirmed by photos"),
            JobEvent::NteIncreased {
                from_cents: Some(50_000),
                to_cents: 65_000,
                approval_id: id,
            },
        ],
    );
    let invoice = Invoice {
        lines: vec![
            trip_line("Trip charge, visit 2"),
            labor_line("Labor, visit 2 (120 min)", 120, 24_000),
            part_line("MOTOR-1 Operator motor", 1, 20_000, 20_000),
        ],
        total_cents: 53_500,
    };
    assert!(invoice.total_cents > 50_000 && invoice.total_cents <= 65_000);
    h.step(
        agent(),
        at(205),
        mark_billing_ready(),
        vec![JobEvent::BillingReadyMarked {
            invoice,
            nte_cents: Some(65_000),
        }],
    );
    assert_eq!(h.state(), JobState::BillingReady);

    // 10. Replaying the stream gives the same job, at every prefix too.
    assert_eq!(Job::from_events(h.events.clone()), h.job);
    assert_eq!(h.job.version as usize, h.events.len());
    let states: Vec<JobState> = (1..=h.events.len())
        .map(|n| Job::from_events(h.events[..n].to_vec()).state().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&JobState::Intake));
    for s in [
        JobState::Triaged,
        JobState::Offered,
        JobState::Confirmed,
        JobState::EnRoute,
        JobState::OnSite,
        JobState::WorkCompleted,
        JobState::CloseoutVerified,
        JobState::BillingReady,
    ] {
        assert!(states.contains(&s), "the story passes through {s:?}");
    }
}
