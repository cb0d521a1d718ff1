//! One-time sign-in links on the pages (issue 19): the technicians page's
//! button (through the gate, recorded with transport `ui`), the link shown
//! once, the phone's page that only looks on GET and redeems once on POST
//! into a session bound to the technician's key; and the phone's last
//! contact and pending actions on the board and the job page.

use chrono::Duration;
use dispatch_api::app::field;

use crate::support::*;
use crate::*;

/// The dispatcher presses "Sign-in link" for `technician`: the answer page.
async fn press_link(t: &TestApp, desk: &str, technician: &str) -> Page {
    let roster = get_page(t, "/ui/technicians", Some(desk)).await;
    assert_eq!(roster.status, 200, "{}", roster.body);
    let csrf = roster.hidden("csrf");
    let path = format!("/ui/technicians/{technician}/signin-link");
    post_form(t, &path, Some(desk), &[("csrf", &csrf)], Some(ORIGIN)).await
}

/// The link the answer page shows, and its token.
fn shown_link(page: &Page) -> (String, String) {
    let needle = "id=\"signin-url\" type=\"text\" readonly value=\"";
    let start = page
        .body
        .find(needle)
        .unwrap_or_else(|| panic!("no link in {}", page.body))
        + needle.len();
    let url = page.body[start..].split('"').next().unwrap().to_string();
    let token = url.rsplit('/').next().unwrap().to_string();
    (url, token)
}

/// The session token a redeeming answer sets.
fn session_of(page: &Page) -> String {
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("dispatch_session=")
        .unwrap()
        .to_string()
}

async fn redeem(t: &TestApp, token: &str, origin: Option<&str>) -> Page {
    post_form(t, &format!("/ui/field/signin/{token}"), None, &[], origin).await
}

#[tokio::test]
async fn a_dispatcher_makes_a_link_that_signs_the_phone_in_once_as_that_technician() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    t.project().await;
    let desk = login(&t, &t.keys.dispatcher).await;
    let roster = get_page(&t, "/ui/technicians", Some(&desk)).await;
    assert!(
        roster
            .body
            .contains("action=\"/ui/technicians/tech-d/signin-link\""),
        "{}",
        roster.body
    );
    let page = press_link(&t, &desk, "tech-d").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let (url, token) = shown_link(&page);
    assert_eq!(url, format!("http://ui.test/ui/field/signin/{token}"));
    assert!(page.body.contains("It works <strong>once</strong>"));
    assert!(page.body.contains("2026-11-20 22:15"), "expiry shown");
    // The press went through the gate as the person, over the pages.
    t.app.invocations.flush().await;
    let recorded: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT transport, outcome, http_status FROM tool_invocations \
         WHERE tool = 'POST /v1/technicians/{technician_id}/signin-links' AND actor->>'id' = 'dispatcher-1'",
    )
    .fetch_all(&t.app.pool)
    .await
    .unwrap();
    assert_eq!(recorded, vec![("ui".into(), "ok".into(), 201)]);

    // The phone opens it: a button, and looking spends nothing (link
    // previewers fetch GETs).
    for _ in 0..2 {
        let p = get_page(&t, &format!("/ui/field/signin/{token}"), None).await;
        assert_eq!(p.status, 200, "{}", p.body);
        assert!(
            p.body.contains("Sign in as Technician tech-d"),
            "{}",
            p.body
        );
    }
    // A post from another site is refused and spends nothing either.
    let p = redeem(&t, &token, Some("http://evil.example")).await;
    assert_eq!(p.status, 403);
    assert_eq!(
        t.count("SELECT count(*) FROM signin_links WHERE used_at IS NULL")
            .await,
        1
    );

    // Pressing the button: a session for the technician's key, then "My work".
    let p = redeem(&t, &token, Some(ORIGIN)).await;
    assert_eq!((p.status, p.location()), (303, "/ui/field"), "{}", p.body);
    let phone = session_of(&p);
    let bound: String =
        sqlx::query_scalar("SELECT key_name FROM ui_sessions WHERE token_hash = $1")
            .bind(dispatch_api::store::hash::sha256_hex(phone.as_bytes()))
            .fetch_one(&t.app.pool)
            .await
            .unwrap();
    assert_eq!(bound, "tech-d");
    let visits = get_page(&t, "/ui/technicians/tech-d/schedule", Some(&phone)).await;
    assert_eq!(visits.status, 200, "{}", visits.body);
    assert!(visits.body.contains("tech-d") && visits.body.contains("(technician)"));
    assert_eq!(get_page(&t, "/ui/board", Some(&phone)).await.status, 403);
    assert_eq!(
        get_page(&t, "/ui/technicians/tech-a/schedule", Some(&phone))
            .await
            .status,
        403
    );

    // Once only: a second press, or opening it again, is a clear 410.
    let again = redeem(&t, &token, Some(ORIGIN)).await;
    assert_eq!(again.status, 410);
    assert!(again.headers.get("set-cookie").is_none());
    assert!(again.body.contains(
        "This sign-in link has expired or was already used; ask your dispatcher for a new one."
    ));
    assert_eq!(
        get_page(&t, &format!("/ui/field/signin/{token}"), None)
            .await
            .status,
        410
    );
    // Revoking the key ends the session the link started.
    dispatch_api::app::keys::revoke_key(&t.app.pool, "tech-d")
        .await
        .unwrap();
    let p = get_page(&t, "/ui/technicians/tech-d/schedule", Some(&phone)).await;
    assert_eq!(p.status, 303);
}

#[tokio::test]
async fn expired_links_and_technicians_without_a_key_are_told_plainly() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    t.project().await;
    let desk = login(&t, &t.keys.dispatcher).await;
    let (_, token) = shown_link(&press_link(&t, &desk, "tech-a").await);
    t.clock
        .advance(Duration::minutes(field::SIGNIN_LINK_TTL_MINUTES) + Duration::seconds(1));
    let p = get_page(&t, &format!("/ui/field/signin/{token}"), None).await;
    assert_eq!(p.status, 410);
    assert!(p.body.contains("expired or was already used"));
    let p = redeem(&t, &token, Some(ORIGIN)).await;
    assert_eq!(p.status, 410);
    assert!(p.headers.get("set-cookie").is_none());
    assert_eq!(
        t.count("SELECT count(*) FROM ui_sessions").await,
        1,
        "the desk's only"
    );
    // Not a token at all: the same page.
    assert_eq!(
        get_page(&t, "/ui/field/signin/not-a-token", None)
            .await
            .status,
        410
    );

    // A technician with no key: the page says how to make one, no link is made.
    let p = press_link(&t, &desk, "tech-b").await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert!(p
        .body
        .contains("dispatch-api keys create --role technician --name NAME --technician tech-b"));
    assert_eq!(
        t.count("SELECT count(*) FROM signin_links WHERE technician_id = 'tech-b'")
            .await,
        0
    );
    // A technician's session has no button, and the form is refused by the gate.
    let tech = login(&t, &t.keys.tech_d).await;
    let schedule = get_page(&t, "/ui/technicians/tech-d/schedule", Some(&tech)).await;
    let csrf = schedule.hidden("csrf");
    let p = post_form(
        &t,
        "/ui/technicians/tech-d/signin-link",
        Some(&tech),
        &[("csrf", &csrf)],
        Some(ORIGIN),
    )
    .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert_eq!(
        t.count("SELECT count(*) FROM signin_links WHERE technician_id = 'tech-d'")
            .await,
        0
    );
}

#[tokio::test]
async fn the_board_and_the_job_page_show_the_phones_last_contact_and_pending_actions() {
    let (t, job) = spawn_with_job_on_site("harbor-mall").await;
    let quiet = open_named(&t, "quiet-plaza").await;
    let pool = &t.app.pool;
    field::touch(
        pool,
        "tech-d",
        &job,
        2,
        Some(t0() - Duration::minutes(9)),
        t0() - Duration::minutes(4),
    )
    .await
    .unwrap();
    // A job not under way shows no phone, whatever was stored.
    field::touch(pool, "tech-a", &quiet, 5, None, t0())
        .await
        .unwrap();
    t.project().await;
    let desk = login(&t, &t.keys.dispatcher).await;

    let board = get_page(&t, "/ui/board", Some(&desk)).await;
    assert_eq!(board.status, 200);
    assert!(
        board
            .body
            .contains("phone: last contact <time datetime=\"2026-11-20T21:56:00+00:00\""),
        "{}",
        board.body
    );
    assert!(board.body.contains(">4 min ago</time>"));
    assert!(board.body.contains(
        "<span class=\"badge flag-phone-pending\" data-pending=\"2\">2 actions pending on the phone since <time datetime=\"2026-11-20T21:51:00+00:00\">2026-11-20 21:51</time></span>"
    ), "{}", board.body);
    assert_eq!(board.body.matches("phone-contact").count(), 1);

    let page = job_page(&t, &job, &desk).await;
    assert!(page.body.contains("id=\"phone-contact\""), "{}", page.body);
    assert!(page.body.contains("id=\"phone-pending\""));
    assert!(page.body.contains("2 actions pending on the phone"));
    let quiet_page = job_page(&t, &quiet, &desk).await;
    assert!(!quiet_page.body.contains("phone-contact"));

    // Everything sent: the badge goes, the contact stays.
    field::touch(pool, "tech-d", &job, 0, None, t0())
        .await
        .unwrap();
    let page = job_page(&t, &job, &desk).await;
    assert!(page.body.contains(">just now</time>") && !page.body.contains("phone-pending"));
}
