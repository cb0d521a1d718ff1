//! The job's event timeline: the chain banner and each event with its mark.

use cqrs_es::Aggregate;
use maud::{html, Markup};
use serde_json::Value;

use crate::domain::job::{Job, JobEvent};
use crate::http::pages::layout;
use crate::store::{AuditCheck, AuditReport, RawRow};

/// One timeline entry's chain mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Verified,
    Broken,
    AfterBreak,
    NotChecked,
}

fn mark_of(sequence: i64, report: Option<&AuditReport>) -> Mark {
    match report {
        None => Mark::NotChecked,
        Some(r) => match r.first_bad_sequence {
            None => Mark::Verified,
            Some(bad) if sequence < bad => Mark::Verified,
            Some(bad) if sequence == bad => Mark::Broken,
            Some(_) => Mark::AfterBreak,
        },
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The chain banner and the events, each marked.
pub(super) fn timeline(
    job_id: &str,
    rows: &[RawRow],
    report: Option<&AuditReport>,
    states: &[Option<String>],
) -> Markup {
    html! {
        @match report {
            Some(r) if r.verified => {
                p.chain.chain-ok #chain-status role="status" data-verified="true" {
                    span aria-hidden="true" { "✓ " } "Hash chain verified: all " (r.events) " events are intact and in order."
                    @if r.unkeyed_events > 0 {
                        " " (r.unkeyed_events) " of them predate the keyed chain and are vouched for by a signed checkpoint."
                    }
                }
            }
            Some(r) => {
                @let bad = r.first_bad_sequence.unwrap_or(0);
                @let check = r.check.map_or("", AuditCheck::as_str);
                p.chain.chain-broken #chain-status role="alert" data-verified="false" data-first-bad=(bad) data-check=(check) {
                    span aria-hidden="true" { "✗ " }
                    @if bad as usize > rows.len() {
                        @if r.check == Some(AuditCheck::Checkpoint) {
                            "Hash chain broken: a signed checkpoint saw more events than are stored; events from sequence " (bad) " on are missing."
                        } @else {
                            "Hash chain broken: the stream head records more events than are stored; events from sequence " (bad) " on are missing."
                        }
                    } @else {
                        "Hash chain broken at sequence " (bad) ": that event was altered, removed, moved or forged. Events after it cannot be trusted."
                    }
                    " " span.small { "Found by the " code { (check) } " check." }
                }
            }
            None => {
                p.muted { "Your role may read the events but not their verification." }
            }
        }
        (layout::table(
            Some("timeline"),
            Some("Every event of the job, oldest first, with its hash-chain mark"),
            &[("#", false), ("Chain", false), ("Event", false), ("When", false), ("Actor", false), ("Command and tool call", false), ("SOP", false), ("Payload", false)],
            html! {
                @for (i, row) in rows.iter().enumerate() {
                    @let seq = row.sequence();
                    @let mark = mark_of(seq, report);
                    @let (class, symbol, label) = match mark {
                        Mark::Verified => ("event chain-ok", "✓", "verified"),
                        Mark::Broken => ("event chain-broken", "✗", "chain breaks here"),
                        Mark::AfterBreak => ("event chain-after", "?", "after the break: not verifiable"),
                        Mark::NotChecked => ("event", "·", "not checked"),
                    };
                    tr class=(class) id=(format!("event-{seq}")) data-sequence=(seq)
                        data-chain=(match mark { Mark::Verified => "verified", Mark::Broken => "broken", Mark::AfterBreak => "after-break", Mark::NotChecked => "unchecked" }) {
                        td.num { (seq) }
                        td.mark { span aria-hidden="true" { (symbol) } " " span.mark-label { (label) } }
                        @match row.envelope(Job::TYPE, job_id) {
                            Ok(e) => {
                                td {
                                    strong.event-type { (e.event_type) }
                                    " " span.muted.small { "v" (e.event_version) }
                                    @if let Some(Some(st)) = states.get(i) { br; span.transition { "→ " (layout::state_badge(st)) } }
                                    br; span.muted.small { "position " (e.global_position) " · " code title=(e.hash) { (e.hash.chars().take(10).collect::<String>()) "…" } }
                                }
                                td.small { (layout::time(Some(e.meta.occurred_at))) }
                                td.small { (layout::actor(&serde_json::to_value(&e.meta.actor).unwrap_or(Value::Null))) }
                                td.small {
                                    @match &e.meta.command { Some(c) => code { (c) }, None => span.none { "—" } }
                                    br;
                                    @match e.meta.tool_invocation_id {
                                        Some(t) => { "tool call " code.tool-call title=(t) { (t.to_string().chars().take(8).collect::<String>()) "…" } },
                                        None => span.none { "not through a tool" },
                                    }
                                }
                                td.small {
                                    @match &e.meta.sop {
                                        Some(sop) => { (sop.id) " v" (sop.version) br; code title=(sop.sha256) { (sop.sha256.chars().take(8).collect::<String>()) } },
                                        None => span.none { "—" },
                                    }
                                }
                                td {
                                    details {
                                        summary { "Payload" (layout::sr(&format!(" of event {seq}"))) }
                                        pre.payload { (pretty(&e.payload)) }
                                    }
                                }
                            }
                            Err(err) => {
                                td colspan="6" { strong { "Unreadable event: " } (err.to_string()) }
                            }
                        }
                    }
                }
            },
        ))
    }
}

/// The state after each event, where it changed (`None` where it did not).
pub(super) fn state_changes(rows: &[RawRow]) -> Option<Vec<Option<String>>> {
    let mut job = Job::default();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let before = job.state();
        job.apply(r.decode::<JobEvent>().ok()?);
        let after = job.state();
        out.push(
            (before != after)
                .then(|| after.map(|s| s.as_str().to_string()))
                .flatten(),
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_follow_the_first_bad_sequence() {
        let r = AuditReport {
            verified: false,
            events: 5,
            first_bad_sequence: Some(3),
            check: Some(AuditCheck::Hash),
            unkeyed_events: 0,
        };
        let marks: Vec<Mark> = (1..=5).map(|i| mark_of(i, Some(&r))).collect();
        assert_eq!(
            marks,
            vec![
                Mark::Verified,
                Mark::Verified,
                Mark::Broken,
                Mark::AfterBreak,
                Mark::AfterBreak
            ]
        );
        let ok = AuditReport {
            verified: true,
            events: 2,
            first_bad_sequence: None,
            check: None,
            unkeyed_events: 0,
        };
        assert_eq!(mark_of(2, Some(&ok)), Mark::Verified);
        assert_eq!(mark_of(2, None), Mark::NotChecked);
    }
}
