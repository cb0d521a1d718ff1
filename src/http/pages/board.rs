//! The dispatch board: open jobs by state, live.
//!
//! The page renders the board read model's rows; a small script opens
//! `GET /ui/board/stream` (server-sent events) and swaps in freshly rendered
//! rows whenever the board projector's checkpoint moves. One task per
//! process polls that checkpoint (a one-row query) while anyone watches and
//! wakes every stream through a `watch` channel; each stream re-queries the
//! board with its own filters and sends the rows, with the position as the
//! event id (a reconnecting browser sends it back as `Last-Event-ID`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Extension;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde_json::Value;
use tokio::sync::watch;

use super::layout::{self, Nav};
use super::session::UiSession;
use super::{PageResult, Within};
use crate::app::field::FieldContact;
use crate::app::App;
use crate::domain::job::JobState;
use crate::http::extract::require_tool;
use crate::http::AppState;

/// How often the shared task reads the board's checkpoint while someone watches.
const POLL: Duration = Duration::from_millis(250);
/// How often a stream re-sends its rows anyway (SLA risk moves with time).
const REFRESH: Duration = Duration::from_secs(30);
/// The filters the board page offers (the board query's own parameters).
const FILTERS: [&str; 6] = [
    "state",
    "priority",
    "sla",
    "technician_id",
    "client_id",
    "incident_type",
];

/// Wakes the board streams of one router when the board projector moves.
#[derive(Clone, Default)]
pub struct Hub(Arc<HubInner>);

#[derive(Default)]
struct HubInner {
    /// The position channel while its polling task runs.
    slot: Mutex<Option<Arc<watch::Sender<i64>>>>,
    /// Turns true on SIGTERM or Ctrl-C, so open streams end and a graceful
    /// shutdown does not wait for them.
    shutdown: OnceLock<watch::Receiver<bool>>,
}

impl Hub {
    /// A hub with no watchers.
    pub fn new() -> Hub {
        Hub::default()
    }

    /// Subscribes to the board's position, starting the polling task if needed.
    fn subscribe(&self, app: &App) -> watch::Receiver<i64> {
        let mut slot = self.0.slot.lock().expect("hub lock");
        if let Some(tx) = slot.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(-1);
        let tx = Arc::new(tx);
        *slot = Some(tx.clone());
        tokio::spawn(self.clone().poll(app.clone(), tx));
        rx
    }

    async fn poll(self, app: App, tx: Arc<watch::Sender<i64>>) {
        loop {
            {
                let mut slot = self.0.slot.lock().expect("hub lock");
                if tx.receiver_count() == 0 {
                    *slot = None;
                    return;
                }
            }
            if let Ok((_, position)) = app.read_model("board").await {
                tx.send_if_modified(|v| {
                    let changed = *v != position;
                    *v = position;
                    changed
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn shutdown(&self) -> watch::Receiver<bool> {
        self.0
            .shutdown
            .get_or_init(|| {
                let (tx, rx) = watch::channel(false);
                tokio::spawn(async move {
                    terminated().await;
                    let _ = tx.send(true);
                });
                rx
            })
            .clone()
    }
}

/// Resolves on SIGTERM or Ctrl-C (the signals `serve` drains on).
async fn terminated() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The board filters of a query string (empty values dropped, others ignored).
fn filters(query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, v)| FILTERS.contains(&k.as_ref()) && !v.trim().is_empty())
        .map(|(k, v)| (k.into_owned(), v.trim().to_string()))
        .collect()
}

fn encode(params: &HashMap<String, String>) -> String {
    let mut keys: Vec<&String> = params.keys().collect();
    keys.sort();
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for k in keys {
        ser.append_pair(k, &params[k]);
    }
    ser.finish()
}

/// `3h 59m`, `12m 05s`, `overdue 1h 02m`.
fn countdown(secs: i64) -> String {
    let overdue = secs < 0;
    let s = secs.unsigned_abs();
    let (d, h, m, sec) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60);
    let text = if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else {
        format!("{m}m {sec:02}s")
    };
    if overdue {
        format!("overdue {text}")
    } else {
        text
    }
}

/// A job's flags as badges (text, not colour alone). `check_in`: the
/// latest check-in's `check_in_geofence` and `check_in_reason` (a board
/// row's, or the job's visit's), shown with the off-site badge.
pub(super) fn flags_of(f: &Value, check_in: (&Value, &Value)) -> Markup {
    let (geofence, reason) = check_in;
    let off_site = f["checked_in_off_site"].as_bool() == Some(true);
    let where_ = layout::geofence_text(geofence).unwrap_or_default();
    let reason = reason.as_str().unwrap_or("");
    let breached: Vec<&str> = f["sla_breached"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    html! {
        ul.flags {
            @if let Some(other) = f["possible_duplicate_of"].as_str() {
                li.badge.flag-duplicate title=(format!("possible duplicate of {other}")) { "possible duplicate" }
            }
            @if let Some(other) = f["duplicate_of"].as_str() {
                li.badge.flag-duplicate title=(format!("duplicate of {other}")) { "duplicate" }
            }
            @if let Some(other) = f["recall_of"].as_str() {
                li.badge.flag-recall title=(format!("recall of {other}")) { "recall" }
            }
            @if f["make_safe_required"].as_bool() == Some(true) {
                li.badge.flag-makesafe { "make-safe" }
            }
            @if !breached.is_empty() {
                li.badge.flag-breached { "SLA breached (" (breached.join(", ")) ")" }
            }
            @if f["eta_beyond_sla"].as_bool() == Some(true) {
                li.badge.flag-warn { "ETA after SLA" }
            }
            @if let Some(h) = f["hold_reason"].as_str() {
                li.badge.flag-hold { "hold: " (layout::words(h)) }
            }
            @if off_site {
                li.badge.flag-offsite title=(format!("{where_}; reason: {reason}")) { "off-site check-in" }
                li.offsite-reason.small { span.muted { (where_) } br; "reason: " span.free-text { (reason) } }
            }
        }
    }
}

fn sla_cell(row: &Value) -> Markup {
    let at_risk = row["sla_at_risk"].as_bool() == Some(true);
    html! {
        @match row["sla_remaining_seconds"].as_i64() {
            Some(secs) => {
                span class=(if secs < 0 { "countdown overdue" } else { "countdown" }) data-remaining=(secs) {
                    (countdown(secs))
                }
                @if at_risk && secs >= 0 {
                    " " span.badge.flag-risk { "at risk" }
                }
            }
            None => {
                @if row["checked_in"].as_bool() == Some(true) {
                    span.muted { "on site" }
                } @else {
                    span.none { "—" } (layout::sr("no response SLA running"))
                }
            }
        }
        @if let Some(due) = layout::ts(&row["sla_due_at"]) {
            br; span.muted.small { "due " (layout::time(Some(due))) }
        }
    }
}

/// A job's registered door (linked to its page, with its kind, location
/// and a badge when it is not in service) and, for planned work, its due date, marked overdue once it has passed with the work not completed.
fn door_cell(row: &Value, door: Option<&Value>, now: Option<DateTime<Utc>>) -> Markup {
    let Some(door) = door else {
        return html! {};
    };
    let planned = &door["planned"];
    let due = layout::ts(&row["completion_due_at"]).or_else(|| layout::ts(&planned["due_at"]));
    let open = JobState::parse(row["state"].as_str().unwrap_or(""))
        .is_some_and(|s| s.before_work_completed());
    let overdue = open && matches!((due, now), (Some(d), Some(n)) if d < n);
    html! {
        @if let Some(id) = door["door_id"].as_str() {
            br; a.small.door-link href=(super::doors::href(id)) { "door " (row["door_id"].as_str().unwrap_or(id)) }
        }
        @let registered = &door["door"];
        @if let Some(kind) = registered["kind"].as_str() {
            " " span.muted.small.door-kind { (layout::words(kind)) }
            @if let Some(location) = registered["location"].as_str() {
                ", " span.muted.small.door-location { (location) }
            }
        }
        @match registered["status"].as_str() {
            Some("impaired") => { " " span.badge.flag-risk.door-status { "door impaired" } }
            Some("out_of_service") => { " " span.badge.flag-risk.door-status { "door out of service" } }
            _ => {}
        }
        @if registered["retired"].as_bool() == Some(true) {
            " " span.badge.door-status { "door retired" }
        }
        @if planned.is_object() {
            br; span.badge.flag-planned title=(format!("plan {}", planned["plan_id"].as_str().unwrap_or(""))) { "planned" }
            " " span.small.planned-due { "due " (layout::time(due)) }
            @if overdue { " " span.badge.flag-overdue { "overdue" } }
        }
    }
}

/// What the rows show beside the read model's answer, read at render time:
/// the jobs' registered doors and planned work (from the door history's
/// opening rows) and their phones' last contacts ([`super::phone`]); none
/// of either while it cannot be read.
struct Beside {
    doors: HashMap<String, Value>,
    phones: HashMap<String, FieldContact>,
}

impl Beside {
    async fn read(app: &App, answer: &Value) -> Beside {
        let ids: Vec<String> = answer["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["job_id"].as_str().map(str::to_string))
            .collect();
        Beside {
            doors: app.jobs_at_doors(&ids).await.unwrap_or_default(),
            phones: super::phone::contacts(app, ids).await,
        }
    }
}

/// The rows, grouped by state in lifecycle order.
fn rows_fragment(answer: &Value, beside: &Beside) -> Markup {
    let doors = &beside.doors;
    let now = layout::ts(&answer["as_of"]);
    let rows: Vec<&Value> = answer["rows"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let position = answer["position"].as_i64().unwrap_or(0);
    html! {
        div.lanes data-position=(position) data-count=(rows.len()) {
            @if rows.is_empty() {
                p.empty { "No jobs match these filters." }
            }
            @for state in JobState::ALL {
                @let lane: Vec<&&Value> = rows.iter().filter(|r| r["state"].as_str() == Some(state.as_str())).collect();
                @if !lane.is_empty() {
                    section.lane aria-labelledby=(format!("lane-{}", state.as_str())) {
                        h2 id=(format!("lane-{}", state.as_str())) {
                            (layout::title_case(state.as_str())) " " span.count { "(" (lane.len()) ")" }
                        }
                        div.table-wrap {
                            table.board {
                                caption.sr-only { "Jobs in state " (layout::words(state.as_str())) }
                                thead {
                                    tr {
                                        th.c-prio scope="col" { "Priority" }
                                        th.c-job scope="col" { "Job" }
                                        th.c-type scope="col" { "Incident" }
                                        th.c-sla scope="col" { "Response SLA" }
                                        th.c-tech scope="col" { "Technician" }
                                        th.c-eta scope="col" { "ETA" }
                                        th.c-flags scope="col" { "Flags" }
                                    }
                                }
                                tbody {
                                    @for r in lane {
                                        @let job = r["job_id"].as_str().unwrap_or("");
                                        @let prio = r["priority"].as_str();
                                        tr class=(format!("prio-row-{}", layout::css_token(prio.unwrap_or("none")))) data-job-id=(job) {
                                            td { (layout::priority_badge(prio)) }
                                            td {
                                                a href=(format!("/ui/jobs/{}", layout::seg(job))) { (r["site_name"].as_str().unwrap_or("?")) }
                                                br; span.muted.small { (r["site_address"].as_str().unwrap_or("")) }
                                                br; code.small.jobid { (job.chars().take(8).collect::<String>()) }
                                                " " span.muted.small { (r["client_id"].as_str().unwrap_or("")) }
                                                (door_cell(r, doors.get(job), now))
                                            }
                                            td { (layout::words(r["incident_type"].as_str().unwrap_or(""))) br; span.muted.small { (r["channel"].as_str().unwrap_or("")) } }
                                            td { (sla_cell(r)) }
                                            td {
                                                @match r["technician_id"].as_str() {
                                                    Some(t) => { (t) br; span.muted.small { (layout::words(r["visit_status"].as_str().unwrap_or(""))) } }
                                                    None => { span.none { "unassigned" } }
                                                }
                                                (super::phone::board_cell(beside.phones.get(job), r["state"].as_str().unwrap_or(""), now.unwrap_or_else(Utc::now)))
                                            }
                                            td { (layout::time_v(&r["eta"])) }
                                            td { (flags_of(&r["flags"], (&r["check_in_geofence"], &r["check_in_reason"]))) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn filter_form(app: &App, f: &HashMap<String, String>) -> Markup {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let mut types: Vec<&str> = app.sops.incident_types().collect();
    types.sort_unstable();
    html! {
        form.filters method="get" action="/ui/board" role="search" aria-label="Filter the board" {
            div.field {
                label for="f-state" { "State" }
                select #f-state name="state" {
                    option value="" selected[get("state").is_empty()] { "All open" }
                    @for s in JobState::ALL {
                        option value=(s.as_str()) selected[get("state") == s.as_str()] { (layout::words(s.as_str())) }
                    }
                }
            }
            div.field {
                label for="f-priority" { "Priority" }
                select #f-priority name="priority" {
                    option value="" selected[get("priority").is_empty()] { "Any" }
                    @for p in ["P1", "P2", "P3", "P4"] {
                        option value=(p) selected[get("priority") == p] { (p) }
                    }
                }
            }
            div.field {
                label for="f-sla" { "SLA" }
                select #f-sla name="sla" {
                    option value="" selected[get("sla").is_empty()] { "Any" }
                    option value="at_risk" selected[get("sla") == "at_risk"] { "At risk" }
                    option value="breached" selected[get("sla") == "breached"] { "Breached" }
                }
            }
            div.field {
                label for="f-type" { "Incident type" }
                select #f-type name="incident_type" {
                    option value="" selected[get("incident_type").is_empty()] { "Any" }
                    @for t in types {
                        option value=(t) selected[get("incident_type") == t] { (layout::words(t)) }
                    }
                }
            }
            div.field {
                label for="f-tech" { "Technician id" }
                input #f-tech type="text" name="technician_id" value=(get("technician_id")) autocomplete="off";
            }
            div.field {
                label for="f-client" { "Client id" }
                input #f-client type="text" name="client_id" value=(get("client_id")) autocomplete="off";
            }
            div.actions {
                button type="submit" { "Apply filters" }
                a.button.secondary href="/ui/board" { "Clear" }
            }
        }
    }
}

/// `GET /ui/board`.
pub(super) async fn page(
    State(state): State<AppState>,
    s: UiSession,
    RawQuery(q): RawQuery,
) -> PageResult {
    require_tool(&state, &s.caller, "search_board").within(&s)?;
    let f = filters(q.as_deref());
    let answer = state.app.board(&f).await.within(&s)?;
    let beside = Beside::read(&state.app, &answer).await;
    let position = answer["position"].as_i64().unwrap_or(0);
    let stream = {
        let mut p = f.clone();
        p.insert("since".into(), position.to_string());
        format!("/ui/board/stream?{}", encode(&p))
    };
    let body = html! {
        (super::events_out::notice(&state.app).await)
        (filter_form(&state.app, &f))
        p #live-status.live role="status" aria-live="polite" data-state="connecting" {
            "Live updates connecting… (position " (position) ")"
        }
        div #board-live data-stream=(stream) {
            (rows_fragment(&answer, &beside))
        }
    };
    Ok(layout::ok(&s, "Dispatch board", Nav::Board, body))
}

struct Watch {
    app: App,
    filters: HashMap<String, String>,
    rx: watch::Receiver<i64>,
    shutdown: watch::Receiver<bool>,
    sent: Option<i64>,
    started: bool,
    primed: bool,
}

impl Watch {
    /// The rows now, as an event (`None` when nothing moved and `force` is off).
    async fn render(&mut self, force: bool) -> Option<Event> {
        match self.app.board(&self.filters).await {
            Ok(answer) => {
                let position = answer["position"].as_i64().unwrap_or(0);
                if !force && self.sent == Some(position) {
                    return None;
                }
                self.sent = Some(position);
                let beside = Beside::read(&self.app, &answer).await;
                let html = layout::fragment_for_sse(rows_fragment(&answer, &beside));
                Some(
                    Event::default()
                        .event("rows")
                        .id(position.to_string())
                        .data(html),
                )
            }
            Err(e) => Some(
                Event::default()
                    .event("trouble")
                    .data(e.to_string().replace(['\r', '\n'], " ")),
            ),
        }
    }

    async fn next(&mut self) -> Option<Event> {
        if !self.started {
            self.started = true;
            return Some(
                Event::default()
                    .retry(Duration::from_secs(2))
                    .comment("board stream"),
            );
        }
        if !self.primed {
            // Anything that moved between the page's render and this stream.
            self.primed = true;
            self.rx.mark_unchanged();
            if let Some(ev) = self.render(false).await {
                return Some(ev);
            }
        }
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            let force = tokio::select! {
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    false
                }
                _ = tokio::time::sleep(REFRESH) => true,
                _ = self.shutdown.changed() => return None,
            };
            if let Some(ev) = self.render(force).await {
                return Some(ev);
            }
        }
    }
}

/// `GET /ui/board/stream`: the board's rows as server-sent events.
pub(super) async fn stream(
    State(state): State<AppState>,
    Extension(hub): Extension<Hub>,
    s: UiSession,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> PageResult {
    require_tool(&state, &s.caller, "search_board").within(&s)?;
    let f = filters(q.as_deref());
    let since = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .or_else(|| {
            url::form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
                .find(|(k, _)| k == "since")
                .and_then(|(_, v)| v.parse::<i64>().ok())
        });
    // Refuse bad filters now, as the page would, rather than in the stream.
    state.app.board(&f).await.within(&s)?;
    let watch = Watch {
        rx: hub.subscribe(&state.app),
        shutdown: hub.shutdown(),
        app: state.app.clone(),
        filters: f,
        sent: since,
        started: false,
        primed: false,
    };
    let events = futures::stream::unfold(watch, |mut w| async move {
        let ev = w.next().await?;
        Some((Ok::<Event, Infallible>(ev), w))
    });
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdowns_read_well() {
        assert_eq!(countdown(4 * 3600 - 60), "3h 59m");
        assert_eq!(countdown(725), "12m 05s");
        assert_eq!(countdown(-3720), "overdue 1h 02m");
        assert_eq!(countdown(2 * 86_400 + 7200), "2d 2h");
    }

    #[test]
    fn only_board_filters_pass() {
        let f = filters(Some(
            "state=triaged&since=4&evil=1&priority=&client_id=%20c%20",
        ));
        assert_eq!(f.len(), 2);
        assert_eq!(f["state"], "triaged");
        assert_eq!(f["client_id"], "c");
    }
}
