//! One-time sign-in links for technicians' phones (`crate::app::field`).
//!
//! A dispatcher presses "Sign-in link" on the technicians page: the form
//! passes the one gate like every page command (the key's budget, the
//! allowlist's `POST /v1/technicians/{technician_id}/signin-links`, a record
//! with transport `ui`), and the answer shows the whole link once. The
//! phone opens `GET /ui/field/signin/{token}`, which only looks (a link
//! previewer that fetches it spends nothing) and shows one button; its
//! `POST` (same origin, as the login form) redeems the link once and starts
//! a session for the bound key exactly as `/ui/login` does.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::json;
use uuid::Uuid;

use super::layout::{self, Nav};
use super::session::{
    check_post, read_form, require_same_origin, start_session, UiSession, FIELD_HOME,
};
use super::{PageError, PageResult};
use crate::app::field::{self, SIGNIN_LINK_TTL_MINUTES};
use crate::error::ApiError;
use crate::http::technicians::SIGNIN_LINKS;
use crate::http::AppState;
use crate::tools::gate::{self, Access, Call};
use crate::tools::log::Transport;

/// The path of a sign-in link on this service.
pub fn signin_path(token: &str) -> String {
    format!("/ui/field/signin/{token}")
}

/// What the page says of a link that cannot sign anyone in.
const GONE: &str =
    "This sign-in link has expired or was already used; ask your dispatcher for a new one.";

/// The "Sign-in link" button of one technician on the technicians page.
pub(super) fn link_form(s: &UiSession, technician_id: &str, name: &str) -> Markup {
    html! {
        form.once method="post" action=(format!("/ui/technicians/{}/signin-link", layout::seg(technician_id))) {
            input type="hidden" name="csrf" value=(s.csrf);
            button.button.secondary type="submit" data-technician-id=(technician_id) {
                "Sign-in link" (layout::sr(&format!(" for {name}")))
            }
        }
    }
}

/// `scheme://host[:port]` of this page as the browser sees it: the form's
/// `Origin` (checked to name this host), else the `Host` header, over
/// https unless it is this machine or a proxy says `X-Forwarded-Proto: http`.
fn site(headers: &HeaderMap) -> Option<String> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(url) = text(header::ORIGIN).and_then(|o| url::Url::parse(o).ok()) {
        if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() {
            return Some(url.origin().ascii_serialization());
        }
    }
    let host = text(header::HOST).filter(|h| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    })?;
    let local = ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .any(|l| host == *l || host.starts_with(&format!("{l}:")));
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        Some("http") => "http",
        _ if local => "http",
        _ => "https",
    };
    Some(format!("{scheme}://{host}"))
}

/// `POST /ui/technicians/{technician_id}/signin-link`: makes a link and
/// shows it once.
pub(super) async fn create(
    State(state): State<AppState>,
    s: UiSession,
    Path(technician_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let form = read_form(&headers, body).await.map_err(|e| e.within(&s))?;
    check_post(&headers, &form, &s)?;
    let now = state.app.clock.now();
    // The same digest as the REST call's: path parameters, no query, no body.
    let asked = json!({"path": {"technician_id": technician_id}, "query": {}, "body": null});
    let call = Call {
        invocation_id: Uuid::new_v4(),
        transport: Transport::Ui,
        operation: SIGNIN_LINKS.into(),
        actor: s.caller.actor(),
        idempotency_key: None,
        argument_digest: gate::digest(&asked),
        job_id: None,
        approval_id: None,
        at: now,
    };
    let access = Access::Endpoint(SIGNIN_LINKS);
    let made = match state.tools.gate.admit(&s.caller, access) {
        Err(refusal) => Err(refusal.rest_error(s.caller.role, access)),
        Ok(()) => field::create_signin_link(&state.app.pool, &s.caller, &technician_id, now).await,
    };
    let link = match made {
        Ok(link) => link,
        Err(e) => {
            let doc = json!({"code": e.code()});
            let record = call.finish(e.status(), &doc, false);
            state.tools.gate.record(&state.app.invocations, record);
            return Err(PageError::from(e).within(&s));
        }
    };
    let record = call.finish(201, &json!({}), false);
    state.tools.gate.record(&state.app.invocations, record);
    let path = signin_path(&link.token);
    let url = site(&headers).map_or(path.clone(), |site| format!("{site}{path}"));
    let body = html! {
        p.notice.ok role="status" {
            "A sign-in link for " strong { (link.technician_name) } " (" code { (link.technician_id) } ") was made."
        }
        div.field.signin-link {
            label for="signin-url" { "Sign-in link" }
            input #signin-url type="text" readonly value=(url) spellcheck="false" autocomplete="off";
        }
        p {
            "Send it to the technician's phone. It works " strong { "once" } ", until "
            span #signin-expires { (layout::time(Some(link.expires_at))) }
            " (" (SIGNIN_LINK_TTL_MINUTES) " minutes), and signs in as key " code { (link.key_name) }
            ": revoking that key ends it and the session it starts."
        }
        p.muted { "This page is the only place the link is shown; if it is lost, make a new one." }
        p { a href="/ui/technicians" { "Back to technicians" } }
    };
    Ok(layout::ok(&s, "Sign-in link", Nav::Technicians, body))
}

/// The page of a link that cannot sign anyone in: 410.
fn gone() -> Response {
    let body = html! {
        p.notice.error role="alert" #signin-gone { (GONE) }
        p { "Or " a href="/ui/login" { "log in with your key" } "." }
    };
    layout::render(
        StatusCode::GONE,
        None,
        "Sign-in link expired",
        Nav::None,
        body,
    )
}

/// `GET /ui/field/signin/{token}`: what the link would do, and its one
/// button. Looking spends nothing.
pub(super) async fn show(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let now = state.app.clock.now();
    let pending = match field::peek_signin_link(&state.app.pool, &token, now).await {
        Ok(p) => p,
        Err(ApiError::SigninLinkExpired) => return gone(),
        Err(e) => return PageError::from(e).into_response(),
    };
    let name = &pending.technician_name;
    let body = html! {
        p { "This link signs this phone in as " strong { (name) } " (" code { (pending.technician_id) } ")." }
        form.signin.once method="post" action=(signin_path(&token)) {
            button #signin-button type="submit" { "Sign in as " (name) }
        }
        p.hint { "It works once, until " (layout::time(Some(pending.expires_at))) "." }
    };
    layout::render(StatusCode::OK, None, "Sign in", Nav::None, body)
}

/// `POST /ui/field/signin/{token}`: redeems the link once and starts the
/// session, then "My work".
pub(super) async fn redeem(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    require_same_origin(&headers)?;
    let now = state.app.clock.now();
    match field::redeem_signin_link(&state.app.pool, &token, now).await {
        Ok(key_name) => Ok(start_session(&state, &key_name, FIELD_HOME).await?),
        Err(ApiError::SigninLinkExpired) => Ok(gone()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_link_names_this_site_as_the_browser_sees_it() {
        let h = headers(&[
            ("host", "dispatch.example"),
            ("origin", "https://dispatch.example"),
        ]);
        assert_eq!(site(&h).as_deref(), Some("https://dispatch.example"));
        let h = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(site(&h).as_deref(), Some("http://127.0.0.1:8080"));
        let h = headers(&[("host", "dispatch.example")]);
        assert_eq!(site(&h).as_deref(), Some("https://dispatch.example"));
        let h = headers(&[("host", "a.example"), ("x-forwarded-proto", "http")]);
        assert_eq!(site(&h).as_deref(), Some("http://a.example"));
        let h = headers(&[("host", "evil.example/x?")]);
        assert_eq!(site(&h), None);
    }
}
