//! The board tells its operators when events stop going out: a
//! subscription failing with nothing delivered for a minute is shown, with
//! its last error; a moment's hiccup, or one that delivered since, is not.

use crate::support::*;
use crate::*;

async fn checkpoint(
    t: &TestApp,
    name: &str,
    delivered_ago: Option<i64>,
    error_ago: Option<i64>,
    error: &str,
) {
    sqlx::query(
        "INSERT INTO subscription_checkpoints (name, kind, created_at, delivered_at, last_error, last_error_at) \
         VALUES ($1, 'nats', now() - interval '1 hour', now() - make_interval(secs => $2), $4, now() - make_interval(secs => $3))",
    )
    .bind(name)
    .bind(delivered_ago.map(|s| s as f64))
    .bind(error_ago.map(|s| s as f64))
    .bind(error)
    .execute(&t.app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_board_shows_a_subscription_that_cannot_deliver() {
    let t = TestApp::spawn().await;
    t.project().await;
    let token = login(&t, &t.keys.dispatcher).await;
    let board = get_page(&t, "/ui/board", Some(&token)).await;
    assert_eq!(board.status, 200);
    assert!(!board.body.contains("Events out"), "{}", board.body);

    // Failing for ten minutes, never delivered since: shown, its error escaped.
    checkpoint(
        &t,
        "nats",
        Some(600),
        Some(5),
        "cannot connect to <b>NATS</b>",
    )
    .await;
    // Failing, but it delivered 10 s ago: a hiccup.
    checkpoint(&t, "webhook:hiccup", Some(10), Some(2), "timed out").await;
    // Failed once, delivered since.
    checkpoint(&t, "webhook:recovered", Some(5), Some(600), "answered 500").await;
    // Never delivered, failing since it was created an hour ago.
    checkpoint(&t, "webhook:never", None, Some(1), "answered 503").await;

    let board = get_page(&t, "/ui/board", Some(&token)).await;
    assert_eq!(board.status, 200);
    assert!(
        board.body.contains(r#"data-subscription="nats""#),
        "{}",
        board.body
    );
    assert!(board
        .body
        .contains("cannot connect to &lt;b&gt;NATS&lt;/b&gt;"));
    assert!(board.body.contains(r#"data-subscription="webhook:never""#));
    assert!(!board.body.contains("webhook:hiccup"));
    assert!(!board.body.contains("webhook:recovered"));
}
