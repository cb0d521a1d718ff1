//! A database that cannot be reached: 503 `unavailable` with Retry-After, fast.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dispatch_api::http::{router, AppState};
use dispatch_api::tools::allowlist::Allowlist;
use sqlx::postgres::PgPoolOptions;

use crate::support::*;

#[tokio::test]
async fn database_down_answers_503_with_retry_after() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("site-down").await;
    // The same service pointed at a server that does not answer.
    let dead = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let mut app = t.app.clone();
    app.pool = dead;
    let state = AppState {
        app,
        allowlist: Arc::new(Allowlist::builtin().unwrap()),
        limits: Default::default(),
        metrics: None,
        tools: std::sync::Arc::new(dispatch_api::tools::Toolset::builtin().unwrap()),
    };
    let down = TestApp {
        router: router(state),
        ..t
    };
    let started = Instant::now();
    let r = down
        .cmd(
            &job,
            "add_note",
            &down.keys.agent,
            serde_json::json!({"text": "x"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (503, "unavailable"), "{:?}", r.json);
    assert!(r.headers.contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(10));
    let r = down.get("/readyz", "").await;
    assert_eq!(r.status, 503);
    let r = down.get("/healthz", "").await;
    assert_eq!(r.status, 200);
}
