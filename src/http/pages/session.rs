//! Logging in with an API key, the server-side session behind the cookie,
//! and the checks every form post passes (same origin, per-session CSRF token).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use rand::RngCore;

use super::layout::{self, Nav};
use super::{PageError, PageResult};
use crate::app::{keys, sessions, Caller};
use crate::domain::Role;
use crate::error::ApiError;
use crate::http::AppState;
use crate::store::hash::sha256_hex;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "dispatch_session";
/// How long a session lasts after logging in (absolute, not sliding).
pub use crate::app::sessions::SESSION_TTL_HOURS;
/// A technician's first page (the phone's "My work").
pub(super) const FIELD_HOME: &str = "/ui/field";
/// The largest form body a page accepts.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// A signed-in person: the key's caller and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct UiSession {
    /// Who, as the API would resolve their key.
    pub caller: Caller,
    /// The token forms must echo (derived from the session token).
    pub csrf: String,
    /// The pages this role may open (for the navigation).
    pub nav: Vec<(&'static str, Nav, String)>,
    token_hash: String,
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn csrf_for(token: &str) -> String {
    sha256_hex(format!("dispatch-ui-csrf\n{token}").as_bytes())
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Resolves a session token to its caller: unknown, expired, logged-out
/// sessions and sessions of revoked keys are `None`.
async fn resolve(state: &AppState, token: &str) -> Result<Option<UiSession>, ApiError> {
    let token_hash = sha256_hex(token.as_bytes());
    let Some(caller) = sessions::resolve(&state.app.pool, &token_hash).await? else {
        return Ok(None);
    };
    Ok(Some(UiSession {
        nav: Nav::items(state, &caller),
        caller,
        csrf: csrf_for(token),
        token_hash,
    }))
}

/// Where a request without a session goes: pages to the login form (coming
/// back afterwards), everything else is refused 401.
fn to_login(parts: &Parts) -> Response {
    if parts.method == Method::GET && !parts.uri.path().ends_with("/stream") {
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/ui/board");
        let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
        Redirect::to(&format!("/ui/login?next={next}")).into_response()
    } else {
        PageError::new(
            StatusCode::UNAUTHORIZED,
            "Please log in",
            "Your session has ended; log in again.",
        )
        .into_response()
    }
}

impl FromRequestParts<AppState> for UiSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie_token(&parts.headers) else {
            return Err(to_login(parts));
        };
        match resolve(state, &token).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(to_login(parts)),
            Err(e) => Err(PageError::from(e).into_response()),
        }
    }
}

/// Reads an `application/x-www-form-urlencoded` body.
pub(super) async fn read_form(
    headers: &HeaderMap,
    body: Body,
) -> PageResult<HashMap<String, String>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(PageError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "That request could not be used",
            "Forms are sent as application/x-www-form-urlencoded.",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            PageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "That request could not be used",
                "The form is too large.",
            )
        })?;
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

/// Whether a post comes from a page of this origin: the `Origin` header,
/// when the browser sends one (every current browser does on POST), must
/// name the host the request was sent to; `Sec-Fetch-Site`, when sent, must
/// be `same-origin` (or `none`: typed by the user).
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let Ok(url) = url::Url::parse(origin) else {
            return false;
        };
        let authority = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return false,
        };
        if !authority.eq_ignore_ascii_case(host) {
            return false;
        }
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin") | Some("none") => true,
        Some(_) => false,
    }
}

/// The check of a form posted before there is a session (logging in,
/// redeeming a sign-in link): it comes from a page of this site.
pub(super) fn require_same_origin(headers: &HeaderMap) -> PageResult<()> {
    if same_origin(headers) {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "This form did not come from this site.",
        ))
    }
}

/// The checks of a signed-in form post: same origin and the session's CSRF token.
pub(super) fn check_post(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    s: &UiSession,
) -> PageResult<()> {
    let token_ok = form.get("csrf").is_some_and(|t| same(t, &s.csrf));
    if !same_origin(headers) || !token_ok {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "This form did not come from a page of this session (it may be stale: reload the page and try again).",
        )
        .within(s));
    }
    Ok(())
}

/// The checks of a signed-in script's post (the field app's actions): same
/// origin and the session's CSRF token in the `X-CSRF-Token` header.
pub(super) fn check_script_post(headers: &HeaderMap, s: &UiSession) -> Result<(), ApiError> {
    let token_ok = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| same(t, &s.csrf));
    if same_origin(headers) && token_ok {
        Ok(())
    } else {
        Err(ApiError::CsrfRejected)
    }
}

/// A login destination that stays on this site's pages.
fn safe_next(next: Option<&String>) -> Option<String> {
    let n = next?;
    let ok = n.starts_with("/ui/")
        && !n.starts_with("/ui/login")
        && !n.contains("//")
        && !n.contains('\\')
        && n.len() <= 500
        && n.bytes().all(|b| (0x21..0x7f).contains(&b));
    ok.then(|| n.clone())
}

/// The first page a role may see: a technician's is their phone's
/// "My work" (`/ui/field`).
pub(super) fn landing(state: &AppState, caller: &Caller) -> String {
    if caller.role == Role::Technician {
        return FIELD_HOME.to_string();
    }
    Nav::items(state, caller)
        .into_iter()
        .map(|(_, _, href)| href)
        .next()
        .unwrap_or_else(|| "/ui/login".to_string())
}

fn login_page(status: StatusCode, next: Option<&str>, error: Option<&str>) -> Response {
    let body = html! {
        @if let Some(e) = error {
            p.notice.error role="alert" id="login-error" { (e) }
        }
        form.login method="post" action="/ui/login" {
            @if let Some(n) = next {
                input type="hidden" name="next" value=(n);
            }
            label for="key" { "API key" }
            input #key type="password" name="key" autocomplete="current-password" required
                spellcheck="false" aria-describedby=[error.map(|_| "login-error")];
            p.hint { "The key you were given (" code { "dak_…" } "). It is checked, not kept: the browser holds only a session." }
            button type="submit" { "Log in" }
        }
    };
    let mut resp = layout::render(status, None, "Log in", Nav::None, body);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /ui/login`.
pub(super) async fn login_form(Query(q): Query<HashMap<String, String>>) -> Response {
    login_page(StatusCode::OK, safe_next(q.get("next")).as_deref(), None)
}

fn session_cookie(token: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}"
    ))
    .expect("hex token")
}

/// `POST /ui/login`: checks the key like a bearer key, makes a session.
pub(super) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    require_same_origin(&headers)?;
    let form = read_form(&headers, body).await?;
    let next = safe_next(form.get("next"));
    let key = form.get("key").map(|k| k.trim()).unwrap_or("");
    let caller = match keys::authenticate(&state.app.pool, key).await {
        Ok(c) if c.role != Role::System => c,
        Ok(_) | Err(ApiError::Unauthorized) => {
            return Ok(login_page(
                StatusCode::UNAUTHORIZED,
                next.as_deref(),
                Some("That key is unknown or revoked."),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(key = %caller.key_name, role = caller.role.as_str(), "ui login");
    let target = next.unwrap_or_else(|| landing(&state, &caller));
    Ok(start_session(&state, &caller.key_name, &target).await?)
}

/// Starts a session for the key `key_name` (a random token; the database
/// keeps its hash) and answers with its cookie and a redirect to `target`:
/// how a login and a redeemed sign-in link (`super::signin`) both end.
pub(super) async fn start_session(
    state: &AppState,
    key_name: &str,
    target: &str,
) -> Result<Response, ApiError> {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = hex::encode(raw);
    sessions::start(&state.app.pool, &sha256_hex(token.as_bytes()), key_name).await?;
    let mut resp = Redirect::to(target).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&token, SESSION_TTL_HOURS * 3600),
    );
    Ok(resp)
}

/// `POST /ui/logout`: ends the session server-side and clears the cookie.
pub(super) async fn logout(
    State(state): State<AppState>,
    s: UiSession,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let form = read_form(&headers, body).await?;
    check_post(&headers, &form, &s)?;
    sessions::end(&state.app.pool, &s.token_hash)
        .await
        .map_err(|e| PageError::from(e).within(&s))?;
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_pages() {
        let ok = |s: &str| safe_next(Some(&s.to_string()));
        assert_eq!(ok("/ui/jobs/abc?x=1"), Some("/ui/jobs/abc?x=1".into()));
        assert_eq!(ok("//evil.example/ui/"), None);
        assert_eq!(ok("https://evil.example/ui/"), None);
        assert_eq!(ok("/ui//evil.example"), None);
        assert_eq!(ok("/ui/\\evil"), None);
        assert_eq!(ok("/ui/login"), None);
        assert_eq!(ok("/v1/jobs"), None);
    }

    #[test]
    fn origin_must_be_this_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        assert!(same(&csrf_for("a"), &csrf_for("a")));
        assert!(!same(&csrf_for("a"), &csrf_for("b")));
        assert!(!same("abc", "ab"));
    }
}
