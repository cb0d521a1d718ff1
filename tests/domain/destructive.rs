//! The destructive rule (issue 16): an agent's command that would end a job
//! or discard recorded work on a job that was ever offered yields only an
//! `ApprovalRequested`; a person decides. And `link` points only at the
//! job's own possible duplicate or an open job at the same site and door.

use crate::support::*;

/// `triaged` again after D declined the offer: the job was offered once.
fn declined_back_to_triaged() -> History {
    offered().run(tech(TECH_D), at(12), decline("Too far"))
}

#[test]
fn the_agent_cannot_link_an_ever_offered_job_alone() {
    let h = declined_back_to_triaged();
    assert_eq!(h.state(), JobState::Triaged);
    let approval_id = h.next_approval_id();
    h.given()
        .when(cmd(agent(), at(20), link_to_open("job-7")))
        .then_expect_events(vec![JobEvent::ApprovalRequested {
            approval_id,
            action: ApprovalAction::LinkDuplicate {
                duplicate_of: "job-7".into(),
            },
            reason: "agent asks to link as a duplicate of job-7".into(),
            requested_by: agent(),
            at: at(20),
        }]);
}

#[test]
fn a_dispatcher_links_at_once_and_approves_the_agents_link() {
    let h = declined_back_to_triaged();
    h.given()
        .when(cmd(dispatcher(), at(20), link_to_open("job-7")))
        .then_expect_events(vec![linked_as_duplicate_of("job-7")]);
    let h = h.run(agent(), at(20), link_to_open("job-7"));
    let id = h.last_approval_id();
    h.given()
        .when(cmd(
            dispatcher(),
            at(21),
            decide_link(&id, Decision::Approve, Some(true)),
        ))
        .then_expect_events(vec![
            approval_granted(id.clone(), dispatcher()),
            linked_as_duplicate_of("job-7"),
        ]);
    // The target closed meanwhile, or is gone: the approval is stale.
    for target in [Some(false), None] {
        h.refused(
            dispatcher(),
            at(21),
            decide_link(&id, Decision::Approve, target),
            stale(id.clone(), JobState::Triaged),
        );
    }
}

#[test]
fn the_agent_cannot_cancel_an_ever_offered_job_alone_in_any_state() {
    for h in [
        declined_back_to_triaged(),
        offered(),
        confirmed(),
        en_route(),
        on_site(),
    ] {
        let events = h
            .clone()
            .exec(agent(), at(300), cancel("customer called it off"));
        assert_eq!(events.len(), 1, "{:?}", h.state());
        assert!(
            matches!(
                &events[0],
                JobEvent::ApprovalRequested {
                    action: ApprovalAction::CancelJob { .. },
                    ..
                }
            ),
            "{:?}: {events:?}",
            h.state()
        );
    }
}

#[test]
fn link_refuses_an_open_job_at_another_door() {
    for h in [triaged(), declined_back_to_triaged()] {
        for by in [agent(), dispatcher(), admin()] {
            h.refused(
                by,
                at(20),
                link_duplicate_at(Some("job-9"), Some(true), "site-17", "another-door"),
                JobError::DuplicateTargetUnrelated {
                    duplicate_of: "job-9".into(),
                },
            );
            h.refused(
                admin(),
                at(20),
                link_duplicate_at(Some("job-9"), Some(true), "site-99", &door().id),
                JobError::DuplicateTargetUnrelated {
                    duplicate_of: "job-9".into(),
                },
            );
        }
    }
}

#[test]
fn link_accepts_the_flagged_possible_duplicate_wherever_it_is() {
    possible_duplicate()
        .given()
        .when(cmd(
            agent(),
            at(3),
            link_duplicate_at(Some(OTHER_JOB), Some(true), "site-99", "door-99"),
        ))
        .then_expect_events(vec![linked_as_duplicate_of(OTHER_JOB)]);
}
