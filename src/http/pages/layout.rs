//! The page shell (landmarks, navigation by role, the signed-in person) and
//! the small formatting helpers every page shares.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::assets;
use super::session::UiSession;
use crate::app::Caller;
use crate::domain::Role;
use crate::http::AppState;

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The dispatch board.
    Board,
    /// Approvals.
    Approvals,
    /// Billing readiness.
    Billing,
    /// The roster.
    Technicians,
    /// The technician's own visits.
    Schedule,
    /// The technician's field app: offers and visits to work from a phone.
    Field,
    /// None of them (a job page, an error).
    None,
}

impl Nav {
    /// The entries a caller's role may open: label, which, link. Each mirrors
    /// the allowlist check of the API endpoint the page reads.
    pub fn items(state: &AppState, caller: &Caller) -> Vec<(&'static str, Nav, String)> {
        let list = &state.allowlist;
        let role = caller.role;
        let mut out = Vec::new();
        if list.tool_allowed("search_board", role) {
            out.push(("Board", Nav::Board, "/ui/board".to_string()));
        }
        if list.endpoint_allowed("GET /v1/approvals", role) {
            out.push(("Approvals", Nav::Approvals, "/ui/approvals".to_string()));
        }
        if list.tool_allowed("get_billing_status", role) {
            out.push(("Billing", Nav::Billing, "/ui/billing".to_string()));
        }
        if list.tool_allowed("find_technicians", role) {
            out.push((
                "Technicians",
                Nav::Technicians,
                "/ui/technicians".to_string(),
            ));
        }
        if role == Role::Technician
            && list.endpoint_allowed("GET /v1/technicians/{technician_id}/schedule", role)
        {
            if let Some(t) = &caller.technician_id {
                out.push(("My work", Nav::Field, "/ui/field".to_string()));
                out.push((
                    "My visits",
                    Nav::Schedule,
                    format!("/ui/technicians/{}/schedule", seg(t)),
                ));
            }
        }
        out
    }
}

/// Percent-encodes one path segment.
pub fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The whole page.
pub fn render(
    status: StatusCode,
    session: Option<&UiSession>,
    title: &str,
    active: Nav,
    body: Markup,
) -> Response {
    shell(status, session, title, active, body, false)
}

/// A page of the technician's field app: the same shell with the field
/// app's style sheet and script (the offline queue), and the connection
/// status under the header.
pub fn render_field(s: &UiSession, title: &str, body: Markup) -> Response {
    let mut resp = shell(StatusCode::OK, Some(s), title, Nav::Field, body, true);
    // The pages' policy, with the photos the phone shows from its own
    // memory (`blob:` URLs of photos not yet sent).
    resp.headers_mut().insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; worker-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    resp
}

fn shell(
    status: StatusCode,
    session: Option<&UiSession>,
    title: &str,
    active: Nav,
    body: Markup,
    field: bool,
) -> Response {
    let state_nav = session.map(|s| s.nav.clone()).unwrap_or_default();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light";
                title { (title) " · dispatch" }
                link rel="icon" href="/ui/static/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href=(assets::css_href());
                script src=(assets::js_href()) defer {}
                @if field {
                    meta name="theme-color" content="#ffffff";
                    link rel="stylesheet" href=(assets::field_css_href());
                    script src=(assets::field_js_href()) defer {}
                }
            }
            body.field[field] {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "dispatch" }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            ul {
                                @for (label, which, href) in &state_nav {
                                    li {
                                        a href=(href) aria-current=[(*which == active).then_some("page")] { (label) }
                                    }
                                }
                            }
                        }
                        div.who {
                            span { (s.caller.key_name) " " span.role { "(" (s.caller.role.as_str()) ")" } }
                            form.inline method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                @if let (true, Some(s)) = (field, session) {
                    div #field-sync.sync role="status" aria-live="polite" data-csrf=(s.csrf)
                        data-technician=(s.caller.technician_id.as_deref().unwrap_or("")) {
                        span #sync-text { "Connecting…" }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
                footer {
                    p { "dispatch-api " (env!("CARGO_PKG_VERSION")) " · times in UTC" }
                }
            }
        }
    };
    (status, axum::response::Html(markup.into_string())).into_response()
}

/// A 200 page.
pub fn ok(s: &UiSession, title: &str, active: Nav, body: Markup) -> Response {
    render(StatusCode::OK, Some(s), title, active, body)
}

/// Parses a timestamp as a read model or view serialises it.
pub fn ts(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A time for people, in a `<time>` element.
pub fn time(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M")) } },
        None => html! { span.none { "—" } },
    }
}

/// A JSON timestamp for people.
pub fn time_v(v: &Value) -> Markup {
    time(ts(v))
}

/// Cents as dollars.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}${}.{:02}", c / 100, c % 100)
}

/// Optional cents (no cap when absent).
pub fn money_v(v: &Value, none: &str) -> String {
    v.as_i64().map(money).unwrap_or_else(|| none.to_string())
}

/// A JSON string or a dash.
pub fn text_v(v: &Value) -> Markup {
    match v.as_str() {
        Some(s) if !s.is_empty() => html! { (s) },
        _ => html! { span.none { "—" } },
    }
}

/// A state as a heading: `en_route` → `En route`.
pub fn title_case(s: &str) -> String {
    let w = words(s);
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => w,
    }
}

/// A check-in's geofence (a visit's `check_in_geofence`, a board row's) in
/// words: how far from the site against its radius, or that no location
/// was given; `None` for a check-in without one.
pub fn geofence_text(g: &Value) -> Option<String> {
    let radius = g["radius_m"].as_u64()?;
    let distance = g["distance_m"].as_u64();
    Some(match (g["verdict"].as_str()?, distance) {
        ("inside", Some(d)) => format!("at the site: {d} m away, within its {radius} m radius"),
        ("outside", Some(d)) => format!("off site: {d} m away, outside its {radius} m radius"),
        _ => format!("no location given (site radius {radius} m)"),
    })
}

/// `snake_case` words for people.
pub fn words(s: &str) -> String {
    s.replace('_', " ")
}

/// A state badge.
pub fn state_badge(state: &str) -> Markup {
    html! { span class=(format!("badge state state-{}", css_token(state))) { (words(state)) } }
}

/// A priority badge (colour and text: never colour alone).
pub fn priority_badge(p: Option<&str>) -> Markup {
    match p {
        Some(p) => {
            html! { span class=(format!("badge prio prio-{}", css_token(p))) title=(priority_name(p)) { (p) } }
        }
        None => html! { span.badge.prio.prio-none { "untriaged" } },
    }
}

fn priority_name(p: &str) -> &'static str {
    match p {
        "P1" => "P1 emergency",
        "P2" => "P2 urgent",
        "P3" => "P3 routine",
        "P4" => "P4 planned",
        _ => "priority",
    }
}

/// Keeps a class name to safe characters.
pub fn css_token(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(40)
        .collect()
}

/// An actor as recorded on events and approvals.
pub fn actor(v: &Value) -> Markup {
    if v.is_null() {
        return html! { span.none { "—" } };
    }
    let id = v["id"].as_str().unwrap_or("?");
    let role = v["role"].as_str().unwrap_or("?");
    let kind = v["kind"].as_str().unwrap_or("?");
    html! {
        span.actor {
            strong { (id) }
            " " span.muted { "(" (role) ", " (kind)
                @if let Some(t) = v["technician_id"].as_str() { ", technician " (t) }
                ")" }
        }
    }
}

/// A data table as every page draws one: the scrolling wrapper, `class`
/// on the table, a caption for screen readers, the column headings
/// (`(title, numeric)`; numeric columns are right-aligned) and `rows`, the
/// `tr`s of its body.
pub fn table(
    class: Option<&str>,
    caption: Option<&str>,
    cols: &[(&str, bool)],
    rows: Markup,
) -> Markup {
    html! {
        div.table-wrap {
            table class=[class] {
                @if let Some(caption) = caption {
                    caption.sr-only { (caption) }
                }
                thead { tr {
                    @for (title, numeric) in cols {
                        @if *numeric {
                            th scope="col" class="num" { (title) }
                        } @else {
                            th scope="col" { (title) }
                        }
                    }
                } }
                tbody { (rows) }
            }
        }
    }
}

/// Text that marks something for screen readers only.
pub fn sr(text: &str) -> Markup {
    html! { span.sr-only { (text) } }
}

/// An HTML fragment for a server-sent event: maud escapes markup, and
/// carriage returns (which SSE cannot carry) become character references.
pub fn fragment_for_sse(m: Markup) -> String {
    m.into_string().replace('\r', "&#13;")
}

/// The nonce a form carries as its idempotency key: fresh per rendered
/// form, so a double submit of one form is one command.
pub fn form_nonce() -> String {
    format!("ui-{}", uuid::Uuid::new_v4())
}
