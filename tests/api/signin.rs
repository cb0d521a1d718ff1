//! The technician's phone outside the event store (issue 19): one-time
//! sign-in links made over REST (`POST
//! /v1/technicians/{technician_id}/signin-links`, dispatcher and admin
//! only), redeemed exactly once within 15 minutes while their key lives; and
//! the phone's last contact per job (`touch`), shown on `GET /v1/jobs/{id}`.

use chrono::Duration;
use dispatch_api::app::field::{self, SIGNIN_LINK_TTL_MINUTES};
use dispatch_api::domain::Role;
use dispatch_api::error::ApiError;
use serde_json::Value;

use crate::support::*;
use crate::tools::invocations;

const LINKS: &str = "/v1/technicians/tech-d/signin-links";

/// `POST path` with no body and no idempotency key, as `key`.
async fn make_link(t: &TestApp, path: &str, key: &str) -> Resp {
    t.post_raw(path, Some(key), None, "", &[]).await
}

/// The token at the end of a link's url.
fn token_of(r: &Resp) -> String {
    let url = r.json["url"].as_str().unwrap();
    url.strip_prefix("/ui/field/signin/").unwrap().to_string()
}

#[tokio::test]
async fn the_desk_makes_one_time_links_bound_to_the_technicians_newest_key() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let r = make_link(&t, LINKS, &t.keys.dispatcher).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    assert_eq!(r.headers["cache-control"], "no-store");
    let token = token_of(&r);
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(r.json["technician_id"], "tech-d");
    assert_eq!(r.json["key_name"], "tech-d");
    let expires = t0() + Duration::minutes(SIGNIN_LINK_TTL_MINUTES);
    assert_eq!(
        r.json["expires_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        expires
    );
    // Only the token's hash is stored, with who made it and for which key.
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT token_hash, technician_id, key_name, created_by FROM signin_links")
            .fetch_all(&t.app.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![(
            dispatch_api::store::hash::sha256_hex(token.as_bytes()),
            "tech-d".into(),
            "tech-d".into(),
            "dispatcher-1".into()
        )]
    );
    let dump: String =
        sqlx::query_scalar("SELECT string_agg(to_jsonb(l)::text, ' ') FROM signin_links l")
            .fetch_one(&t.app.pool)
            .await
            .unwrap();
    assert!(!dump.contains(&token));

    // Each call makes a new link, even under one Idempotency-Key: an answer
    // carrying a token is never stored, so it cannot be replayed.
    let a = t
        .post_raw(LINKS, Some(&t.keys.admin), Some("same"), "", &[])
        .await;
    let b = t
        .post_raw(LINKS, Some(&t.keys.admin), Some("same"), "", &[])
        .await;
    assert_eq!((a.status, b.status), (201, 201));
    assert_ne!(token_of(&a), token_of(&b));
    assert!(b.headers.get("idempotent-replayed").is_none());

    // A newer key of the technician's is the one a new link is bound to;
    // once it is revoked, the older one again.
    dispatch_api::app::keys::create_key(
        &t.app.pool,
        Role::Technician,
        "tech-d-phone",
        Some("tech-d"),
    )
    .await
    .unwrap();
    let r = make_link(&t, LINKS, &t.keys.dispatcher).await;
    assert_eq!(r.json["key_name"], "tech-d-phone");
    let bound_to_revoked = token_of(&r);
    dispatch_api::app::keys::revoke_key(&t.app.pool, "tech-d-phone")
        .await
        .unwrap();
    let r = make_link(&t, LINKS, &t.keys.dispatcher).await;
    assert_eq!(r.json["key_name"], "tech-d");
    // Revoking the key ended the link made for it.
    let e = field::redeem_signin_link(&t.app.pool, &bound_to_revoked, t0()).await;
    assert!(matches!(e, Err(ApiError::SigninLinkExpired)), "{e:?}");

    // Each call is in the invocation log under the endpoint's name; the
    // token is not.
    let log = invocations(&t, "transport=rest").await;
    let made: Vec<&Value> = log
        .iter()
        .filter(|r| r["tool"] == "POST /v1/technicians/{technician_id}/signin-links")
        .collect();
    assert_eq!(made.len(), 5);
    assert!(made
        .iter()
        .all(|r| r["outcome"] == "ok" && r["http_status"] == 201));
    assert!(!serde_json::to_string(&log).unwrap().contains(&token));
}

#[tokio::test]
async fn only_the_desk_may_make_links_for_registered_technicians_with_a_key() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    // The agent, technicians and the auditor are refused by the allowlist.
    for key in [
        &t.keys.agent,
        &t.keys.tech_d,
        &t.keys.tech_a,
        &t.keys.auditor,
    ] {
        let r = make_link(&t, LINKS, key).await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{:?}", r.json);
    }
    let r = make_link(&t, "/v1/technicians/tech-d/signin-links", "dak_nope").await;
    assert_eq!(r.status, 401);
    // An unknown technician is not found; one on the roster without a key
    // is told how to make one.
    let r = make_link(
        &t,
        "/v1/technicians/tech-zz/signin-links",
        &t.keys.dispatcher,
    )
    .await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{:?}", r.json);
    let r = make_link(&t, "/v1/technicians/a%00b/signin-links", &t.keys.dispatcher).await;
    assert_eq!(r.status, 404, "{:?}", r.json);
    let r = make_link(
        &t,
        "/v1/technicians/tech-b/signin-links",
        &t.keys.dispatcher,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "technician_has_no_key"),
        "{:?}",
        r.json
    );
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .contains("dispatch-api keys create --role technician --name NAME --technician tech-b"),
        "{:?}",
        r.json
    );
    assert_eq!(t.count("SELECT count(*) FROM signin_links").await, 0);
    let log = invocations(&t, "transport=rest").await;
    let refused: Vec<&Value> = log
        .iter()
        .filter(|r| r["tool"] == "POST /v1/technicians/{technician_id}/signin-links")
        .filter(|r| r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 5, "four roles and the key-less technician");
}

#[tokio::test]
async fn a_link_is_redeemed_once_before_it_expires_however_many_phones_race() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let pool = &t.app.pool;
    let desk = desk_caller();
    let link = field::create_signin_link(pool, &desk, "tech-d", t0())
        .await
        .unwrap();
    assert_eq!(link.technician_name, "Technician tech-d");
    // Looking spends nothing.
    for _ in 0..3 {
        let p = field::peek_signin_link(pool, &link.token, t0())
            .await
            .unwrap();
        assert_eq!(
            (p.technician_id.as_str(), p.key_name.as_str()),
            ("tech-d", "tech-d")
        );
    }
    // Eight redemptions at once: one key name between them.
    let tries = (0..8).map(|_| field::redeem_signin_link(pool, &link.token, t0()));
    let results = futures::future::join_all(tries).await;
    let won: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won, vec!["tech-d"]);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, ApiError::SigninLinkExpired)));
    assert!(matches!(
        field::peek_signin_link(pool, &link.token, t0()).await,
        Err(ApiError::SigninLinkExpired)
    ));

    // Fifteen minutes, then no more.
    let late = field::create_signin_link(pool, &desk, "tech-d", t0())
        .await
        .unwrap();
    let at_expiry = t0() + Duration::minutes(SIGNIN_LINK_TTL_MINUTES);
    for when in [at_expiry, at_expiry + Duration::hours(1)] {
        assert!(matches!(
            field::redeem_signin_link(pool, &late.token, when).await,
            Err(ApiError::SigninLinkExpired)
        ));
    }
    let on_time = at_expiry - Duration::seconds(1);
    assert_eq!(
        field::redeem_signin_link(pool, &late.token, on_time)
            .await
            .unwrap(),
        "tech-d"
    );
    // Anything that is not a token names no link.
    for junk in [
        "",
        "abc",
        &"A".repeat(64),
        &"0".repeat(64),
        &format!("{}\0", "a".repeat(63)),
    ] {
        assert!(matches!(
            field::redeem_signin_link(pool, junk, t0()).await,
            Err(ApiError::SigninLinkExpired)
        ));
    }
}

#[tokio::test]
async fn a_phones_last_contact_is_kept_per_job_and_shown_on_the_job() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    let job = t.open_ifm_job("site-phone").await;
    let other = t.open_ifm_job("site-quiet").await;
    let pool = &t.app.pool;
    let view = t.get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher).await;
    assert!(view.json.get("phone").is_none(), "no contact yet");

    let at = t0() + Duration::minutes(5);
    let oldest = t0() + Duration::minutes(1);
    field::touch(pool, "tech-d", &job, 3, Some(oldest), at)
        .await
        .unwrap();
    let view = t.get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher).await;
    assert_eq!(view.json["phone"]["technician_id"], "tech-d");
    assert_eq!(view.json["phone"]["pending"], 3);
    assert_eq!(
        view.json["phone"]["last_contact_at"],
        at.to_rfc3339().replace("+00:00", "Z")
    );
    assert_eq!(
        view.json["phone"]["oldest_pending_at"],
        oldest.to_rfc3339().replace("+00:00", "Z")
    );

    // A contact that arrives late (made before the stored one) changes nothing.
    field::touch(pool, "tech-d", &job, 9, None, t0())
        .await
        .unwrap();
    let contacts = field::contacts_for_jobs(pool, &[job.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        (contacts[&job].pending, contacts[&job].last_contact_at),
        (3, at)
    );

    // Nothing pending: no "since".
    let later = at + Duration::minutes(2);
    field::touch(pool, "tech-d", &job, 0, Some(oldest), later)
        .await
        .unwrap();
    let c = &field::contacts_for_jobs(pool, std::slice::from_ref(&job))
        .await
        .unwrap()[&job];
    assert_eq!(
        (c.pending, c.oldest_pending_at, c.last_contact_at),
        (0, None, later)
    );

    // Another technician's phone, later: the latest contact stands for the job.
    field::touch(
        pool,
        "tech-a",
        &job,
        1,
        Some(later),
        later + Duration::minutes(1),
    )
    .await
    .unwrap();
    let c = &field::contacts_for_jobs(pool, std::slice::from_ref(&job))
        .await
        .unwrap()[&job];
    assert_eq!((c.technician_id.as_str(), c.pending), ("tech-a", 1));

    // Ids that cannot be stored are refused, writing nothing.
    let before = t.count("SELECT count(*) FROM field_contacts").await;
    for (tech, job_id) in [
        ("", job.as_str()),
        ("tech-d", "a\0b"),
        ("tech-d", &"j".repeat(201)),
    ] {
        let e = field::touch(pool, tech, job_id, 1, None, later).await;
        assert!(matches!(e, Err(ApiError::Validation { .. })), "{e:?}");
    }
    assert_eq!(t.count("SELECT count(*) FROM field_contacts").await, before);
    // Replays are the job's state at a version: no phone.
    let replay = t
        .get(&format!("/v1/jobs/{job}/replay"), &t.keys.auditor)
        .await;
    assert!(replay.json["job"].get("phone").is_none());
}
