//! A database that cannot be reached: 503 `unavailable` with Retry-After, fast.

use std::time::{Duration, Instant};

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
    // All of it: the requests' pool and the writer's connections (a note on
    // a cached job takes no pooled connection: the writer's is the one it
    // needs).
    let mut app = t.app.clone();
    app.writer = dispatch_api::store::Writer::start(&dead, 1);
    app.pool = dead;
    let down = TestApp {
        router: router_for(app),
        ..t
    };
    let started = Instant::now();
    let r = down.note(&job, &down.keys.agent, "x").await;
    assert_eq!((r.status, r.code()), (503, "unavailable"), "{:?}", r.json);
    assert!(r.headers.contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(10));
    let r = down.get("/readyz", "").await;
    assert_eq!(r.status, 503);
    let r = down.get("/healthz", "").await;
    assert_eq!(r.status, 200);
}

/// Regression (fault suite, `outage_terminate`): while the database refuses
/// connections (`ALLOW_CONNECTIONS false`, as an operator or a failover does)
/// and its sessions are terminated, a new connection fails with SQLSTATE
/// 55000; that was answered `500 internal`. It is `503 unavailable` with
/// Retry-After, and the service recovers once connections are allowed.
#[tokio::test]
async fn database_refusing_connections_answers_503_then_recovers() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("site-refusing").await;
    let name = t.db_url.rsplit_once('/').unwrap().1.to_string();
    // The service's own pool and writer, with connections opened on demand only.
    let mut app = t.app.clone();
    app.pool = dispatch_api::db::connect(&t.db_url, 2).await.unwrap();
    app.writer = dispatch_api::store::Writer::start(&app.pool, 1);
    let svc = TestApp {
        router: router_for(app),
        ..t
    };
    let admin = sqlx::PgPool::connect(&admin_url()).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&admin)
        .await
        .unwrap();
    let mut answers = Vec::new();
    for i in 0..3 {
        let r = svc
            .cmd(
                &job,
                "add_note",
                &svc.keys.agent,
                serde_json::json!({"text": format!("during {i}")}),
            )
            .await;
        answers.push((
            r.status,
            r.code().to_string(),
            r.headers.contains_key("retry-after"),
        ));
    }
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&admin)
        .await
        .unwrap();
    for a in &answers {
        assert_eq!(a, &(503, "unavailable".to_string(), true), "{answers:?}");
    }
    // Recovered within 5 s of the database's return (quality.md), as a
    // client that honours Retry-After sees it: a connection that was idle
    // for under a second when the sessions were terminated is found broken
    // by the first request that uses it, which is answered 503.
    let back = Instant::now();
    loop {
        let r = svc.note(&job, &svc.keys.agent, "after").await;
        if (200..300).contains(&r.status) {
            break;
        }
        assert_eq!((r.status, r.code()), (503, "unavailable"), "{:?}", r.json);
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not recovered in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
