//! Pages for people, served by the service itself under `/ui`: a login form
//! that turns an API key into a server-side session, the live dispatch board
//! (server-sent events fed by the board projector's progress), approvals with
//! approve/reject, billing readiness, a job's page with its verified event
//! timeline, a registered door's details and history, the roster and
//! schedules, and one-time sign-in links for technicians' phones.
//!
//! Server-rendered HTML (maud escapes every interpolated value: stored text
//! is data, never markup), one small script and one style sheet embedded in
//! the binary; no external fonts or CDNs. Roles apply exactly as in the API:
//! every page runs the allowlist check of the endpoint it mirrors, and
//! buttons appear only for what the role may do. The session cookie is
//! scoped to `/ui`, so the JSON API under `/v1` stays bearer-only.

mod approvals;
mod assets;
mod billing;
mod board;
mod command;
mod doors;
mod events_out;
mod field;
mod job;
mod layout;
mod phone;
mod session;
mod signin;
mod technicians;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use super::AppState;

pub use session::{SESSION_COOKIE, SESSION_TTL_HOURS};
pub use signin::signin_path;

/// The routes of the pages.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/ui", get(root))
        .route("/ui/", get(root))
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/board", get(board::page))
        .route("/ui/board/stream", get(board::stream))
        .route("/ui/approvals", get(approvals::page))
        .route(
            "/ui/approvals/{approval_id}/decide",
            post(approvals::decide),
        )
        .route("/ui/billing", get(billing::page))
        .route("/ui/technicians", get(technicians::page))
        .route(
            "/ui/technicians/{technician_id}/schedule",
            get(technicians::schedule),
        )
        .route(
            "/ui/technicians/{technician_id}/signin-link",
            post(signin::create),
        )
        .route(
            "/ui/field/signin/{token}",
            get(signin::show).post(signin::redeem),
        )
        .route("/ui/jobs/{job_id}", get(job::page))
        .route("/ui/doors/{door_id}", get(doors::page))
        .route("/ui/evidence/{sha256}", get(job::evidence))
        .route("/ui/static/{file}", get(assets::file))
        .route("/ui/field-sw.js", get(assets::field_worker))
        .merge(field::router())
        .layer(Extension(board::Hub::new()))
        .layer(middleware::from_fn(security_headers))
}

async fn root() -> Redirect {
    Redirect::to("/ui/board")
}

/// Headers on every page answer: a strict content security policy (scripts,
/// styles, images and connections from this origin only; no inline script),
/// no framing, no sniffing, and no caching of pages that show live data.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: header::HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::CACHE_CONTROL, "no-store");
    resp
}

/// A page answer that is not the page: the login form, a refusal, an error.
#[derive(Debug)]
pub(crate) struct PageError {
    status: StatusCode,
    title: &'static str,
    detail: String,
    session: Option<Box<session::UiSession>>,
}

impl PageError {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        PageError {
            status,
            title,
            detail: detail.into(),
            session: None,
        }
    }

    /// Renders the error inside the signed-in layout.
    fn within(mut self, s: &session::UiSession) -> Self {
        self.session = Some(Box::new(s.clone()));
        self
    }
}

impl From<crate::error::ApiError> for PageError {
    fn from(e: crate::error::ApiError) -> Self {
        use crate::error::ApiError;
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let title = match status.as_u16() {
            400 | 422 => "That request could not be used",
            401 => "Please log in",
            403 => "Not allowed for your role",
            404 => "Not found",
            409 => "Conflict",
            503 => "Temporarily unavailable",
            _ => "Something went wrong",
        };
        let detail = match &e {
            ApiError::Internal(cause) => {
                tracing::error!(error = ?cause, "page failed");
                "An internal error occurred; it has been logged.".to_string()
            }
            other => other.to_string(),
        };
        PageError::new(status, title, detail)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = maud::html! {
            p.notice.error role="alert" { (self.detail) }
            @if self.session.is_none() {
                p { a href="/ui/login" { "Log in" } }
            }
        };
        layout::render(
            self.status,
            self.session.as_deref(),
            self.title,
            layout::Nav::None,
            body,
        )
    }
}

/// `Result` for page handlers.
pub(crate) type PageResult<T = Response> = Result<T, PageError>;

/// Maps an application error onto a page error shown inside the layout.
pub(crate) trait Within<T> {
    /// Shows the error inside the signed-in layout.
    fn within(self, s: &session::UiSession) -> PageResult<T>;
}

impl<T> Within<T> for crate::error::Result<T> {
    fn within(self, s: &session::UiSession) -> PageResult<T> {
        self.map_err(|e| PageError::from(e).within(s))
    }
}
