//! The style sheet and the script, embedded in the binary (the service works
//! offline: no fonts, no CDNs). Their links carry a content hash, so they can
//! be cached for long and still change with a new build.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::store::hash::sha256_hex;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
const ICON: &str = include_str!("assets/favicon.svg");
const FIELD_CSS: &str = include_str!("assets/field.css");
const FIELD_JS: &str = include_str!("assets/field.js");
const FIELD_SW: &str = include_str!("assets/field-sw.js");

static CSS_HREF: LazyLock<String> =
    LazyLock::new(|| format!("/ui/static/app.css?v={}", &sha256_hex(CSS.as_bytes())[..12]));
static JS_HREF: LazyLock<String> =
    LazyLock::new(|| format!("/ui/static/app.js?v={}", &sha256_hex(JS.as_bytes())[..12]));

static FIELD_CSS_HREF: LazyLock<String> = LazyLock::new(|| {
    format!(
        "/ui/static/field.css?v={}",
        &sha256_hex(FIELD_CSS.as_bytes())[..12]
    )
});
static FIELD_JS_HREF: LazyLock<String> = LazyLock::new(|| {
    format!(
        "/ui/static/field.js?v={}",
        &sha256_hex(FIELD_JS.as_bytes())[..12]
    )
});

/// The field app's style sheet's link.
pub fn field_css_href() -> &'static str {
    &FIELD_CSS_HREF
}

/// The field app's script's link.
pub fn field_js_href() -> &'static str {
    &FIELD_JS_HREF
}

/// `GET /ui/field-sw.js`: the field app's service worker. Served from
/// `/ui/` so that its scope can be `/ui/field` (the page and everything
/// under it), and never cached by HTTP, so a new build's worker replaces
/// the old one at the next visit.
pub(super) async fn field_worker() -> Response {
    let mut resp = FIELD_SW.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// The style sheet's link.
pub fn css_href() -> &'static str {
    &CSS_HREF
}

/// The script's link.
pub fn js_href() -> &'static str {
    &JS_HREF
}

/// `GET /ui/static/{file}` (no session needed: nothing in them is private).
pub(super) async fn file(Path(file): Path<String>) -> Response {
    let (body, ct) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (ICON, "image/svg+xml"),
        "field.css" => (FIELD_CSS, "text/css; charset=utf-8"),
        "field.js" => (FIELD_JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    resp
}
