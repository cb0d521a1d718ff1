//! Keys: missing, unknown and revoked keys are 401; a role that may not do a
//! thing is 403.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn missing_wrong_revoked_and_wrong_role_keys() {
    let t = TestApp::spawn().await;
    let body = open_body("s").to_string();
    let r = t.post_raw("/v1/jobs", None, Some("a"), &body, &[]).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    let r = t.post_text("/v1/jobs", "dak_not_a_key", "a", &body).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    let r = t
        .post_raw(
            "/v1/jobs",
            None,
            Some("a"),
            &body,
            &[("authorization", "Basic abc")],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = t.post("/v1/jobs", &t.keys.auditor, open_body("s")).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = t.post("/v1/jobs", &t.keys.tech_a, open_body("s")).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let job = t.open_ifm_job("s2").await;
    let r = t
        .get(&format!("/v1/jobs/{job}/events"), &t.keys.agent)
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = t.post("/v1/technicians", &t.keys.agent, json!({})).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));

    dispatch_api::app::keys::revoke_key(&t.app.pool, "agent-1")
        .await
        .unwrap();
    let r = t.get(&format!("/v1/jobs/{job}"), &t.keys.agent).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    let stored: Vec<String> = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_all(&t.app.pool)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|h| h.len() == 64 && !h.starts_with("dak_")),
        "only hashes are stored"
    );
}

#[tokio::test]
async fn cli_creates_a_key_printed_alone_on_stdout() {
    let t = TestApp::spawn().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch-api"))
        .args(["keys", "create", "--role", "dispatcher", "--name", "desk-7"])
        .env("DATABASE_URL", &t.db_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.trim_end_matches('\n');
    assert!(!key.contains('\n') && key.starts_with("dak_"), "{stdout:?}");
    let r = t.get("/v1/sops", key).await;
    assert_eq!(r.status, 200);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch-api"))
        .args([
            "keys",
            "create",
            "--role",
            "technician",
            "--name",
            "no-tech",
        ])
        .env("DATABASE_URL", &t.db_url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch-api"))
        .args(["keys", "revoke", "desk-7"])
        .env("DATABASE_URL", &t.db_url)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(t.get("/v1/sops", key).await.status, 401);
}
