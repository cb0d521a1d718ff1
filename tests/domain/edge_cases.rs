//! lifecycle.md's "Edge cases that the tests must show", the domain ones
//! (races and idempotency are storage matters, tested elsewhere).

use chrono::Duration;

use crate::support::*;

// ------------------------------------------------------------------ offers

#[test]
fn a_technician_declines_the_agent_offers_another_who_accepts() {
    let mut h = triaged();
    h.step(
        agent(),
        at(10),
        offer(qualified(TECH_A)),
        vec![job_offered(1, TECH_A, at(10), at(25), false)],
    );
    h.step(
        tech(TECH_A),
        at(13),
        decline("Two hours away"),
        vec![offer_declined(TECH_A, "Two hours away")],
    );
    assert_eq!(h.state(), JobState::Triaged);
    h.step(
        agent(),
        at(15),
        offer(qualified(TECH_D)),
        vec![job_offered(2, TECH_D, at(15), at(30), false)],
    );
    // The first technician no longer has the offer.
    h.refused(tech(TECH_A), at(16), accept(at(60)), JobError::NotYourJob);
    h.step(
        tech(TECH_D),
        at(16),
        accept(at(60)),
        vec![offer_accepted(TECH_D, at(60), false)],
    );
    assert_eq!(h.state(), JobState::Confirmed);
    let statuses: Vec<_> = h.data().visits.iter().map(|v| v.status).collect();
    assert_eq!(
        statuses,
        vec![VisitStatus::Declined, VisitStatus::Confirmed]
    );
}

#[test]
fn an_offer_expires_unanswered_and_the_job_returns_to_triaged() {
    let mut h = offered(); // to D at t0+10, P1 window 15 min: due t0+25
    h.refused(
        system(),
        at(25) - Duration::seconds(1),
        expire(),
        JobError::OfferNotExpired,
    );
    for by in [agent(), dispatcher(), admin(), tech(TECH_D)] {
        h.refused(by, at(40), expire(), JobError::Forbidden);
    }
    h.step(system(), at(25), expire(), vec![offer_expired(TECH_D)]);
    assert_eq!(h.state(), JobState::Triaged);
    assert_eq!(h.data().visits[0].status, VisitStatus::Expired);
    // The expired technician has no rights on the job any more.
    h.refused(tech(TECH_D), at(26), accept(at(60)), JobError::NotYourJob);
    h.step(
        agent(),
        at(27),
        offer(qualified(TECH_A)),
        vec![job_offered(2, TECH_A, at(27), at(42), false)],
    );
}

#[test]
fn a_technician_acting_on_a_job_not_offered_to_them_is_refused() {
    // No offer at all yet.
    triaged().refused(tech(TECH_D), at(11), note("Mine?"), JobError::NotYourJob);
    // Offered to D: A may do nothing with it, not even notes or evidence.
    let h = offered();
    for command in [
        accept(at(60)),
        decline("no"),
        note("hi"),
        evidence(EvidenceKind::PhotoBefore, 3),
        nte_increase(90_000, "more"),
    ] {
        h.refused(tech(TECH_A), at(11), command, JobError::NotYourJob);
    }
    // A technician key bound to no technician.
    let unbound = Actor::new(Role::Technician, "key-unbound");
    on_site().refused(
        unbound,
        at(70),
        checklist_item("fault_repaired", ChecklistResult::Pass),
        JobError::NotYourJob,
    );
}

#[test]
fn a_technician_whose_offer_ended_no_longer_acts_on_the_job() {
    let declined = offered().run(tech(TECH_D), at(13), decline("Too far"));
    declined.refused(
        tech(TECH_D),
        at(14),
        note("still here"),
        JobError::NotYourJob,
    );
    declined.refused(
        tech(TECH_D),
        at(14),
        evidence(EvidenceKind::Other, 9),
        JobError::NotYourJob,
    );
    let expired = offered().run(system(), at(25), expire());
    expired.refused(
        tech(TECH_D),
        at(26),
        nte_increase(90_000, "more"),
        JobError::NotYourJob,
    );
}

// ------------------------------------------------------------ field evidence

#[test]
fn check_out_without_the_after_photo_is_refused_then_succeeds_once_attached() {
    let mut h = on_site();
    for (i, item) in required_items(INCIDENT).iter().enumerate() {
        h.exec(
            tech(TECH_D),
            at(61 + i as i64),
            checklist_item(item, ChecklistResult::Pass),
        );
    }
    h.exec(tech(TECH_D), at(80), evidence(EvidenceKind::PhotoBefore, 1));
    h.exec(tech(TECH_D), at(81), evidence(EvidenceKind::Signature, 2));
    h.exec(
        tech(TECH_D),
        at(82),
        evidence(EvidenceKind::ChecklistForm, 3),
    );
    let check_out_completed = || completed(vec![]);
    h.refused(
        tech(TECH_D),
        at(150),
        check_out_completed(),
        JobError::MissingFieldEvidence {
            missing: vec!["photo_after".into()],
        },
    );
    h.attach(TECH_D, at(151), EvidenceKind::PhotoAfter, 4);
    h.step(
        tech(TECH_D),
        at(152),
        check_out_completed(),
        vec![completed_event(vec![], at(152), 105)],
    );
    assert_eq!(h.state(), JobState::WorkCompleted);
}

// ---------------------------------------------------------- parts on order

#[test]
fn parts_on_order_hold_return_visit_and_labor_summing_both_visits() {
    let body = OpenJob {
        ifm: Some(ifm_order(100_000)),
        ..open_body()
    };
    let mut h = opened_with(body)
        .run(agent(), at(2), record_intake(p1_intake()))
        .run(agent(), at(5), triage(None))
        .run(agent(), at(10), offer(qualified(TECH_D)))
        .run(tech(TECH_D), at(12), accept(at(60)))
        .run(tech(TECH_D), at(20), start_travel())
        .run(tech(TECH_D), at(60), check_in_app());
    // First visit: 40 minutes on site, the belt must be ordered.
    h.step(
        tech(TECH_D),
        at(100),
        check_out(
            CheckOutcome::PartsOnOrder,
            DoorLeftState::Secured,
            Some(true),
            vec![],
        ),
        vec![checked_out_event(
            TECH_D,
            CheckOutcome::PartsOnOrder,
            DoorLeftState::Secured,
            true,
            vec![],
            at(100),
            45,
        )],
    );
    assert_eq!(h.state(), JobState::OnHold);
    h.step(
        dispatcher(),
        at(200),
        schedule_return(Some("Belt arrives tomorrow")),
        vec![return_visit_scheduled("Belt arrives tomorrow")],
    );
    assert_eq!(h.state(), JobState::Triaged);
    // Second visit, next day.
    h.step(
        agent(),
        hours(24),
        offer(qualified(TECH_D)),
        vec![job_offered(
            2,
            TECH_D,
            hours(24),
            hours(24) + Duration::minutes(15),
            false,
        )],
    );
    h.exec(
        tech(TECH_D),
        hours(24) + Duration::minutes(1),
        accept(hours(25)),
    );
    h.exec(
        tech(TECH_D),
        hours(24) + Duration::minutes(5),
        start_travel(),
    );
    h.exec(tech(TECH_D), hours(25), check_in_app());
    h.do_the_work(TECH_D, hours(25), 10);
    h.step(
        tech(TECH_D),
        hours(25) + Duration::minutes(90),
        completed(vec![belt()]),
        vec![completed_event(
            vec![belt()],
            hours(25) + Duration::minutes(90),
            90,
        )],
    );
    assert_eq!(h.state(), JobState::WorkCompleted);
    h.exec(
        agent(),
        hours(27),
        verify_closeout(closeout_items(INCIDENT, ChecklistResult::Pass)),
    );
    let expected_invoice = Invoice {
        lines: vec![
            trip_line("Trip charge, visit 1"),
            labor_line("Labor, visit 1 (45 min)", 45, 9_000),
            trip_line("Trip charge, visit 2"),
            labor_line("Labor, visit 2 (90 min)", 90, 18_000),
            part_line("BELT-42 Drive belt", 2, 3_500, 7_000),
        ],
        total_cents: 53_000,
    };
    h.step(
        agent(),
        hours(27) + Duration::minutes(5),
        mark_billing_ready(),
        vec![JobEvent::BillingReadyMarked {
            invoice: expected_invoice.clone(),
            nte_cents: Some(100_000),
        }],
    );
    let labor: i64 = expected_invoice
        .lines
        .iter()
        .filter(|l| l.kind == InvoiceLineKind::Labor)
        .map(|l| l.amount_cents)
        .sum();
    assert_eq!(labor, 9_000 + 18_000, "labor sums both visits");
    assert_eq!(h.data().invoice.as_ref(), Some(&expected_invoice));
}

// ------------------------------------------------------ duplicates, recalls

#[test]
fn a_possible_duplicate_blocks_triage_until_resolved() {
    let mut body = open_body();
    body.related.open_duplicate_of = Some(OTHER_JOB.into());
    let mut h = History::new();
    h.step(
        agent(),
        t0(),
        open(body),
        vec![opened_event_with(Some(OTHER_JOB), None, None, Some(NTE))],
    );
    h.exec(agent(), at(2), record_intake(p1_intake()));
    let blocked = JobError::UnresolvedDuplicate {
        possible_duplicate_of: OTHER_JOB.into(),
    };
    h.refused(agent(), at(3), triage(None), blocked.clone());
    // The agent cannot dismiss it alone: only an approval request happens.
    let id = h.next_approval_id();
    h.step(
        agent(),
        at(4),
        not_duplicate(),
        vec![JobEvent::ApprovalRequested {
            approval_id: id.clone(),
            action: ApprovalAction::DismissDuplicate {
                possible_duplicate_of: OTHER_JOB.into(),
            },
            reason: "agent asks to dismiss possible duplicate of job-0".into(),
            requested_by: agent(),
            at: at(4),
        }],
    );
    h.refused(agent(), at(5), triage(None), blocked);
    h.step(
        dispatcher(),
        at(6),
        approve_because(&id, "Different door"),
        vec![
            approval_granted_because(id.clone(), dispatcher(), "Different door"),
            duplicate_dismissed(Some(id)),
        ],
    );
    h.step(agent(), at(7), triage(None), vec![triaged_p1_event()]);
}

#[test]
fn a_recall_bills_at_nte_zero_prefers_the_original_technician_until_an_increase_is_approved() {
    let mut body = open_body();
    body.related.recall_of = Some(RecallOf {
        job_id: OTHER_JOB.into(),
        technician_id: Some(TECH_A.into()),
    });
    let mut h = History::new();
    // The IFM NTE of 50,000 does not apply: a recall bills at its own NTE, 0.
    h.step(
        agent(),
        t0(),
        open(body.clone()),
        vec![opened_event_with(
            None,
            Some(OTHER_JOB),
            Some(TECH_A),
            Some(0),
        )],
    );
    h.exec(agent(), at(2), record_intake(p1_intake()));
    h.exec(agent(), at(5), triage(None));
    // Another technician may be offered, but is not the preferred one.
    h.given()
        .when(cmd(agent(), at(10), offer(qualified(TECH_D))))
        .then_expect_events(vec![job_offered(1, TECH_D, at(10), at(25), false)]);
    h.step(
        agent(),
        at(10),
        offer(qualified(TECH_A)),
        vec![job_offered(1, TECH_A, at(10), at(25), true)],
    );
    assert!(h.data().visits[0].preferred);
    h.exec(tech(TECH_A), at(12), accept(at(60)));
    h.exec(tech(TECH_A), at(20), start_travel());
    h.exec(tech(TECH_A), at(60), check_in_app());
    h.do_the_work(TECH_A, at(61), 20);
    h.exec(tech(TECH_A), at(120), completed(vec![]));
    h.exec(
        agent(),
        at(130),
        verify_closeout(closeout_items(INCIDENT, ChecklistResult::Pass)),
    );
    // Trip 9,500 + 60 min labor 12,000.
    h.refused(
        agent(),
        at(131),
        mark_billing_ready(),
        JobError::NteExceeded {
            total_cents: 21_500,
            nte_cents: 0,
        },
    );
    let id = h.next_approval_id();
    h.exec(
        agent(),
        at(132),
        nte_increase(21_500, "Recall not covered by warranty"),
    );
    h.refused(
        agent(),
        at(133),
        mark_billing_ready(),
        JobError::NteExceeded {
            total_cents: 21_500,
            nte_cents: 0,
        },
    );
    h.step(
        dispatcher(),
        at(134),
        approve(&id),
        vec![
            approval_granted(id.clone(), dispatcher()),
            JobEvent::NteIncreased {
                from_cents: Some(0),
                to_cents: 21_500,
                approval_id: id,
            },
        ],
    );
    let result = h
        .given()
        .when(cmd(agent(), at(135), mark_billing_ready()))
        .inspect_result();
    match result {
        Ok(events) => match events.as_slice() {
            [JobEvent::BillingReadyMarked { invoice, nte_cents }] => {
                assert_eq!(invoice.total_cents, 21_500);
                assert_eq!(*nte_cents, Some(21_500));
            }
            other => panic!("unexpected events {other:?}"),
        },
        Err(e) => panic!("billing refused: {e:?}"),
    }
}

#[test]
fn a_recall_without_an_ifm_order_also_starts_at_nte_zero() {
    let mut body = OpenJob {
        channel: Channel::Phone,
        ifm: None,
        ..open_body()
    };
    body.related.recall_of = Some(RecallOf {
        job_id: OTHER_JOB.into(),
        technician_id: None,
    });
    framework()
        .given_no_previous_events()
        .when(cmd(agent(), t0(), open(body)))
        .then_expect_events(vec![opened_without_ifm(
            Channel::Phone,
            Some(OTHER_JOB),
            Some(0),
        )]);
}

// ------------------------------------------------------------------ IFM

#[test]
fn an_ifm_job_without_a_work_order_is_refused_at_open() {
    let body = OpenJob {
        ifm: None,
        ..open_body()
    };
    let result = framework()
        .given_no_previous_events()
        .when(cmd(agent(), t0(), open(body)))
        .inspect_result();
    assert_validation(result, "ifm");
}

// -------------------------------------------------------------- needs quote

#[test]
fn needs_quote_hold_waits_for_an_nte_increase_approved_while_on_hold() {
    let mut h = on_hold(CheckOutcome::NeedsQuote);
    h.refused(
        dispatcher(),
        at(130),
        schedule_return(None),
        JobError::QuoteNotApproved,
    );
    // A rejected quote does not count.
    let rejected = h.next_approval_id();
    h.exec(
        tech(TECH_D),
        at(131),
        nte_increase(90_000, "Quote: new header"),
    );
    h.exec(dispatcher(), at(132), reject(&rejected, "Too much"));
    h.refused(
        dispatcher(),
        at(133),
        schedule_return(None),
        JobError::QuoteNotApproved,
    );
    // An approved one does.
    let id = h.next_approval_id();
    h.exec(
        tech(TECH_D),
        at(134),
        nte_increase(80_000, "Quote: new belt and motor"),
    );
    h.refused(
        dispatcher(),
        at(135),
        schedule_return(None),
        JobError::QuoteNotApproved,
    );
    h.step(
        dispatcher(),
        at(136),
        approve(&id),
        vec![
            approval_granted(id.clone(), dispatcher()),
            JobEvent::NteIncreased {
                from_cents: Some(NTE),
                to_cents: 80_000,
                approval_id: id,
            },
        ],
    );
    assert!(h.data().flags.quote_approved);
    h.step(
        dispatcher(),
        at(137),
        schedule_return(Some("Quote approved")),
        vec![return_visit_scheduled("Quote approved")],
    );
    // A later needs-quote hold needs a new approval.
    h.exec(agent(), at(140), offer(qualified(TECH_D)));
    h.exec(tech(TECH_D), at(141), accept(at(200)));
    h.exec(tech(TECH_D), at(200), check_in_app());
    h.exec(
        tech(TECH_D),
        at(230),
        check_out(
            CheckOutcome::NeedsQuote,
            DoorLeftState::LockedOut,
            None,
            vec![],
        ),
    );
    h.refused(
        dispatcher(),
        at(231),
        schedule_return(None),
        JobError::QuoteNotApproved,
    );
}

#[test]
fn an_nte_increase_approved_before_the_hold_is_not_the_quote() {
    let mut h = on_site();
    let id = h.next_approval_id();
    h.exec(tech(TECH_D), at(70), nte_increase(70_000, "Extra hinge"));
    h.exec(dispatcher(), at(75), approve(&id));
    h.exec(
        tech(TECH_D),
        at(120),
        check_out(
            CheckOutcome::NeedsQuote,
            DoorLeftState::Secured,
            Some(true),
            vec![],
        ),
    );
    h.refused(
        dispatcher(),
        at(130),
        schedule_return(None),
        JobError::QuoteNotApproved,
    );
}

// -------------------------------------------------------------------- SLA

#[test]
fn a_completion_after_the_due_time_is_still_a_completion_breach() {
    // Completion due t0+24 h; the work is completed at t0+25 h and the timer
    // fires a minute later: the breach happened and must still be flagged, as
    // a late check-in still is for the response SLA
    // (transitions::flag_sla_breach_response_met_by_a_timely_check_in_not_by_a_late_one).
    ready_to_check_out()
        .run(tech(TECH_D), hours(25), completed(vec![]))
        .given()
        .when(cmd(
            system(),
            hours(25) + Duration::minutes(1),
            flag_sla(SlaKind::Completion),
        ))
        .then_expect_events(vec![JobEvent::SlaBreached {
            kind: SlaKind::Completion,
            due_at: hours(24),
        }]);
}
