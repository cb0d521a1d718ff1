//! What a technician's phone last told the service about a job
//! (`crate::app::field`), as the board and the job page show it to
//! dispatchers: the last contact, and the actions the phone still holds
//! (queued in a dead zone, not yet sent) — for a visit under way only
//! (`confirmed`, `en_route`, `on_site`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::layout;
use crate::app::field::{self, FieldContact};
use crate::app::App;
use crate::domain::job::JobState;

/// Whether a job in `state` shows its phone's contact: a visit under way.
fn shown(state: &str) -> bool {
    matches!(
        JobState::parse(state),
        Some(JobState::Confirmed | JobState::EnRoute | JobState::OnSite)
    )
}

/// The phones' last contacts of `job_ids` (none while the table cannot be
/// read: the pages still render).
pub(super) async fn contacts(app: &App, job_ids: Vec<String>) -> HashMap<String, FieldContact> {
    match field::contacts_for_jobs(&app.pool, &job_ids).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "phone contacts unavailable");
            HashMap::new()
        }
    }
}

/// `just now`, `4 min ago`, `2 h 05 min ago`, `3 d ago`.
pub(super) fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds().max(0);
    let (d, h, m) = (secs / 86_400, (secs % 86_400) / 3600, (secs % 3600) / 60);
    if secs < 60 {
        "just now".to_string()
    } else if d > 0 {
        format!("{d} d ago")
    } else if h > 0 {
        format!("{h} h {m:02} min ago")
    } else {
        format!("{m} min ago")
    }
}

fn last_contact(c: &FieldContact, now: DateTime<Utc>) -> Markup {
    html! {
        "phone: last contact "
        time datetime=(c.last_contact_at.to_rfc3339()) title=(c.last_contact_at.format("%Y-%m-%d %H:%M:%S UTC")) {
            (ago(now, c.last_contact_at))
        }
    }
}

fn pending_text(c: &FieldContact) -> Markup {
    html! {
        (c.pending) @if c.pending == 1 { " action" } @else { " actions" } " pending on the phone"
        @if let Some(since) = c.oldest_pending_at {
            " since " (layout::time(Some(since)))
        }
    }
}

/// The board's line under a job's technician: `span.phone-contact`, and
/// `span.badge.flag-phone-pending` when the phone holds actions.
pub(super) fn board_cell(c: Option<&FieldContact>, state: &str, now: DateTime<Utc>) -> Markup {
    let Some(c) = c.filter(|_| shown(state)) else {
        return html! {};
    };
    html! {
        br; span.phone-contact.small { (last_contact(c, now)) }
        @if c.pending > 0 {
            br; span.badge.flag-phone-pending data-pending=(c.pending) { (pending_text(c)) }
        }
    }
}

/// The job page's line: `p#phone-contact.phone-contact`, with
/// `span#phone-pending.badge.flag-phone-pending` when the phone holds actions.
pub(super) fn job_line(c: Option<&FieldContact>, state: &str, now: DateTime<Utc>) -> Markup {
    let Some(c) = c.filter(|_| shown(state)) else {
        return html! {};
    };
    html! {
        p #phone-contact.phone-contact role="status" {
            (last_contact(c, now)) " (" (c.technician_id) ")"
            @if c.pending > 0 {
                " " span #phone-pending.badge.flag-phone-pending data-pending=(c.pending) { (pending_text(c)) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn contacts_read_as_time_ago() {
        let now = Utc::now();
        assert_eq!(ago(now, now - Duration::seconds(20)), "just now");
        assert_eq!(ago(now, now + Duration::seconds(20)), "just now");
        assert_eq!(ago(now, now - Duration::minutes(4)), "4 min ago");
        assert_eq!(ago(now, now - Duration::minutes(125)), "2 h 05 min ago");
        assert_eq!(ago(now, now - Duration::hours(80)), "3 d ago");
    }

    #[test]
    fn only_a_visit_under_way_shows_its_phone() {
        let now = Utc::now();
        let c = FieldContact {
            technician_id: "tech-d".into(),
            last_contact_at: now,
            pending: 2,
            oldest_pending_at: Some(now),
        };
        for state in ["confirmed", "en_route", "on_site"] {
            let html = board_cell(Some(&c), state, now).into_string();
            assert!(
                html.contains("2 actions pending on the phone since"),
                "{html}"
            );
        }
        for state in ["triaged", "work_completed", "nonsense"] {
            assert!(board_cell(Some(&c), state, now).into_string().is_empty());
        }
        let one = FieldContact { pending: 1, ..c };
        assert!(job_line(Some(&one), "on_site", now)
            .into_string()
            .contains("1 action pending"));
    }
}
