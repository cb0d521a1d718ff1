//! The declarative transition table (`domain::job::transitions`) is what the
//! aggregate does: allowed states agree with the lifecycle grid, every
//! successful command lands where the table says, and docs/02 shows the
//! diagram and table generated from it.

use dispatch_api::domain::job::transitions::{
    allowed_states, markdown_table, mermaid, To, TRANSITIONS,
};

use crate::invalid_transitions::matrix;
use crate::support::*;

/// The table row variant a grid entry stands for.
fn split_label<'a>(label: &'a str, command: &JobCommand) -> (&'a str, Option<&'a str>) {
    match (label.split_once('('), command) {
        (Some((c, v)), _) => (c, Some(v.trim_end_matches(')'))),
        (None, JobCommand::CheckOut(c)) if c.outcome == CheckOutcome::Completed => {
            (label, Some("completed"))
        }
        (None, JobCommand::CheckOut(_)) => (label, Some("parts_on_order|return_visit|needs_quote")),
        (None, _) => (label, None),
    }
}

#[test]
fn the_table_allows_exactly_the_lifecycle_states() {
    for (label, _, command_value, allowed) in matrix() {
        let (command, variant) = split_label(label, &command_value);
        let mut table: Vec<JobState> = allowed_states(command, variant);
        // mark_billing_ready is evaluated in work_completed only to report the
        // NTE blocker first (docs/decisions.md); it never transitions there.
        let mut grid: Vec<JobState> = allowed
            .iter()
            .copied()
            .filter(|s| !(command == "mark_billing_ready" && *s == JobState::WorkCompleted))
            .collect();
        table.sort();
        table.dedup();
        grid.sort();
        assert_eq!(table, grid, "{label}");
    }
}

#[test]
fn every_success_lands_where_the_table_says() {
    let mut checked = 0;
    for (label, by, command, _) in matrix() {
        let (name, variant) = split_label(label, &command);
        for state in JobState::ALL {
            let h = history_in(state);
            let Ok(events) = h
                .given()
                .when(cmd(by.clone(), hours(200), command.clone()))
                .inspect_result()
            else {
                continue;
            };
            let row = TRANSITIONS
                .iter()
                .find(|t| {
                    t.command == name
                        && (variant.is_none() || t.variant == variant)
                        && t.from.contains(&state)
                })
                .unwrap_or_else(|| panic!("{label} succeeded in {state:?} but no row allows it"));
            let after = Job::from_events(h.events.iter().cloned().chain(events.iter().cloned()))
                .state()
                .unwrap();
            match row.to {
                To::State(s) => assert_eq!(after, s, "{label} from {state:?}"),
                To::Same => assert_eq!(after, state, "{label} from {state:?}"),
                To::PerEffect => {}
            }
            let types: Vec<String> = events.iter().map(|e| e.type_name().to_string()).collect();
            if events.len() == 1 && types[0] == "ApprovalRequested" {
                continue; // the agent's risky commands only ask
            }
            for (i, ty) in types.iter().enumerate() {
                let expected = row
                    .events
                    .get(i)
                    .unwrap_or_else(|| panic!("{label}: extra event {ty}"));
                assert!(
                    expected.split('|').any(|e| e == ty),
                    "{label}: {ty} not in {expected}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} successes checked");
}

#[test]
fn docs_show_the_generated_diagram_and_table() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/02_workflows_and_state_machine.md"
    );
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let generated = format!(
        "<!-- BEGIN GENERATED: state machine (cargo test --test domain regenerates with DISPATCH_WRITE_DOCS=1) -->\n```mermaid\n{}```\n\n{}<!-- END GENERATED -->",
        mermaid(),
        markdown_table()
    );
    let begin = doc.find("<!-- BEGIN GENERATED: state machine");
    let end = doc
        .find("<!-- END GENERATED -->")
        .map(|i| i + "<!-- END GENERATED -->".len());
    if std::env::var("DISPATCH_WRITE_DOCS").is_ok() {
        if let (Some(b), Some(e)) = (begin, end) {
            let updated = format!("{}{}{}", &doc[..b], generated, &doc[e..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
    }
    let (b, e) = (
        begin.expect("docs/02 has the generated block"),
        end.expect("docs/02 closes the generated block"),
    );
    assert_eq!(&doc[b..e], generated, "docs/02 differs from the transition table: regenerate with DISPATCH_WRITE_DOCS=1 cargo test --test domain");
    assert_eq!(TRANSITIONS.len(), 26);
}
