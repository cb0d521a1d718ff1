//! Approvals: who may decide, self-approval, what an approved NTE increase
//! does, and approvals that went stale while the job moved on.

use crate::support::*;

#[test]
fn the_agent_cannot_approve_its_own_request_nor_anyone_elses() {
    let h = closeout_verified().run(agent(), at(205), nte_increase(65_000, "Motor"));
    let own = h.last_approval_id();
    for d in [Decision::Approve, Decision::Reject] {
        h.refused(agent(), at(206), decide(&own, d, None), JobError::Forbidden);
    }
    let h = h.run(
        dispatcher(),
        at(207),
        nte_increase(70_000, "Motor and belt"),
    );
    let dispatchers = h.last_approval_id();
    h.refused(agent(), at(208), approve(&dispatchers), JobError::Forbidden);
    // Even an unknown approval id: the role is refused first.
    h.refused(agent(), at(208), approve("whatever"), JobError::Forbidden);
}

#[test]
fn nobody_decides_their_own_request() {
    let h = closeout_verified().run(dispatcher(), at(205), nte_increase(65_000, "Motor"));
    let id = h.last_approval_id();
    for d in [Decision::Approve, Decision::Reject] {
        h.refused(
            dispatcher(),
            at(206),
            decide(&id, d, None),
            JobError::SelfApproval,
        );
    }
    h.given()
        .when(cmd(dispatcher2(), at(206), approve(&id)))
        .then_expect_events(vec![
            approval_granted(id.clone(), dispatcher2()),
            JobEvent::NteIncreased {
                from_cents: Some(NTE),
                to_cents: 65_000,
                approval_id: id,
            },
        ]);
    let h = closeout_verified().run(admin(), at(205), nte_increase(65_000, "Motor"));
    let id = h.last_approval_id();
    h.refused(admin(), at(206), approve(&id), JobError::SelfApproval);
}

#[test]
fn the_agent_cannot_cancel_a_dispatched_job_alone() {
    let h = offered();
    let id = h.next_approval_id();
    h.given()
        .when(cmd(agent(), at(11), cancel("Caller says never mind")))
        .then_expect_events(vec![JobEvent::ApprovalRequested {
            approval_id: id.clone(),
            action: ApprovalAction::CancelJob {
                reason: "Caller says never mind".into(),
            },
            reason: "Caller says never mind".into(),
            requested_by: agent(),
            at: at(11),
        }]);
    let h = h.run(agent(), at(11), cancel("Caller says never mind"));
    assert_eq!(
        h.state(),
        JobState::Offered,
        "nothing but the request happened"
    );
    assert_eq!(
        h.data().approval(&id).unwrap().status,
        ApprovalStatus::Pending
    );
    h.given()
        .when(cmd(dispatcher(), at(12), approve(&id)))
        .then_expect_events(vec![
            approval_granted(id.clone(), dispatcher()),
            cancelled_on_approval("Caller says never mind", 0, id),
        ]);
}

#[test]
fn an_approved_nte_increase_replaces_the_nte() {
    let mut h = closeout_verified();
    let first = h.next_approval_id();
    h.exec(agent(), at(205), nte_increase(65_000, "Motor"));
    h.exec(dispatcher(), at(206), approve(&first));
    assert_eq!(
        h.data().nte_cents,
        Some(65_000),
        "replaced, not 50,000 + 65,000"
    );
    h.refused(
        agent(),
        at(207),
        nte_increase(65_000, "Again"),
        JobError::NteNotIncreased {
            current_cents: 65_000,
        },
    );
    h.given()
        .when(cmd(agent(), at(207), nte_increase(115_000, "Sum")))
        .inspect_result()
        .expect("115,000 is above the current 65,000");
    let second = h.next_approval_id();
    h.exec(agent(), at(208), nte_increase(70_000, "Belt too"));
    h.given()
        .when(cmd(dispatcher(), at(209), approve(&second)))
        .then_expect_events(vec![
            approval_granted(second.clone(), dispatcher()),
            JobEvent::NteIncreased {
                from_cents: Some(65_000),
                to_cents: 70_000,
                approval_id: second.clone(),
            },
        ]);
    h.exec(dispatcher(), at(209), approve(&second));
    assert_eq!(h.data().nte_cents, Some(70_000));
}

#[test]
fn approval_ids_are_distinct_and_derived_from_the_job_and_sequence() {
    let mut h = closeout_verified();
    let v = h.job.version;
    h.exec(agent(), at(205), nte_increase(60_000, "a"));
    h.exec(agent(), at(206), nte_increase(70_000, "b"));
    let ids: Vec<String> = h
        .data()
        .approvals
        .iter()
        .map(|a| a.approval_id.clone())
        .collect();
    assert_eq!(
        ids,
        vec![approval_id(JOB_ID, v + 1), approval_id(JOB_ID, v + 2)]
    );
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn a_cancel_approved_after_work_completed_is_stale() {
    let mut h = offered();
    let id = h.next_approval_id();
    h.exec(agent(), at(11), cancel("Caller says never mind"));
    // The job moves on while the approval waits.
    let mut moved = confirmed_from(h.clone());
    moved.exec(tech(TECH_D), at(180), completed(vec![]));
    assert_eq!(moved.state(), JobState::WorkCompleted);
    moved.refused(
        dispatcher(),
        at(190),
        approve(&id),
        stale(id.clone(), JobState::WorkCompleted),
    );
    // It can still be rejected, which clears it.
    moved
        .given()
        .when(cmd(dispatcher(), at(190), reject(&id, "Work done")))
        .then_expect_events(vec![approval_rejected(
            id.clone(),
            dispatcher(),
            "Work done",
        )]);
    // Before work completed, the same approval cancels with the trip charge owed then.
    h = confirmed_from(h);
    h.given()
        .when(cmd(dispatcher(), at(150), approve(&id)))
        .then_expect_events(vec![
            approval_granted(id.clone(), dispatcher()),
            cancelled_on_approval("Caller says never mind", TRIP, id),
        ]);
}

/// From `offered` (with a pending request) to on site and ready to check out.
fn confirmed_from(h: History) -> History {
    let mut h = h
        .run(tech(TECH_D), at(12), accept(at(60)))
        .run(tech(TECH_D), at(20), start_travel())
        .run(tech(TECH_D), at(60), check_in_app());
    h.do_the_work(TECH_D, at(61), 40);
    h
}

#[test]
fn a_smaller_nte_increase_approved_after_a_larger_one_is_stale() {
    let mut h = closeout_verified();
    let big = h.next_approval_id();
    h.exec(agent(), at(205), nte_increase(70_000, "Big"));
    let small = h.next_approval_id();
    h.exec(agent(), at(206), nte_increase(65_000, "Small"));
    h.exec(dispatcher(), at(207), approve(&big));
    h.refused(
        dispatcher(),
        at(208),
        approve(&small),
        stale(small, JobState::CloseoutVerified),
    );
}

#[test]
fn an_nte_increase_cannot_be_decided_after_the_job_closed() {
    let mut h = billing_ready();
    let id = h.next_approval_id();
    h.exec(agent(), at(220), nte_increase(90_000, "Late extra"));
    h.exec(dispatcher(), at(300), close("INV-9001"));
    h.refused(
        dispatcher(),
        at(301),
        approve(&id),
        JobError::InvalidTransition {
            command: "decide_approval",
            current_state: JobState::Closed,
        },
    );
}

#[test]
fn a_duplicate_dismissal_approved_after_the_flag_was_cleared_is_stale() {
    let mut h = possible_duplicate();
    let id = h.next_approval_id();
    h.exec(agent(), at(3), not_duplicate());
    h.exec(dispatcher(), at(4), not_duplicate());
    h.refused(
        dispatcher2(),
        at(5),
        approve(&id),
        stale(id.clone(), JobState::Intake),
    );
    h.exec(agent(), at(6), triage(None));
    h.refused(
        dispatcher2(),
        at(7),
        approve(&id),
        stale(id, JobState::Triaged),
    );
}

/// lifecycle.md lets `decide_approval` run in "any" state; so a pending
/// approval left on a final job can still be rejected (the only event a
/// final job can still take). See the report: this contradicts "no event
/// from a final state" if that is meant literally.
#[test]
fn a_pending_approval_on_a_final_job_cannot_be_decided() {
    // No command, approval decisions included, runs on a final job: its
    // pending approvals are moot (the approvals read model shows them so).
    let mut h = on_site();
    let id = h.next_approval_id();
    h.exec(tech(TECH_D), at(70), nte_increase(90_000, "Header"));
    h.exec(dispatcher(), at(80), cancel("Store closed permanently"));
    assert_eq!(h.state(), JobState::Cancelled);
    for decision in [Decision::Approve, Decision::Reject] {
        h.refused(
            dispatcher(),
            at(81),
            decide(&id, decision, None),
            JobError::InvalidTransition {
                command: "decide_approval",
                current_state: JobState::Cancelled,
            },
        );
    }
}
