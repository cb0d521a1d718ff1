//! Evidence uploads: raw or multipart, content-addressed; attach only what was uploaded.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn raw_and_multipart_uploads_are_content_addressed() {
    let t = TestApp::spawn().await;
    let raw = t
        .post_raw(
            "/v1/evidence",
            Some(&t.keys.tech_a),
            Some("u1"),
            "PNGDATA",
            &[("content-type", "image/png")],
        )
        .await;
    assert_eq!(raw.status, 201, "{:?}", raw.json);
    let sha = raw.json["sha256"].as_str().unwrap().to_string();
    assert_eq!(raw.json["size"], 7);
    let boundary = "XyZ";
    let body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--{boundary}--\r\n");
    let ct = format!("multipart/form-data; boundary={boundary}");
    let mp = t
        .post_raw(
            "/v1/evidence",
            Some(&t.keys.tech_a),
            Some("u2"),
            &body,
            &[("content-type", &ct)],
        )
        .await;
    assert_eq!(mp.status, 201, "{:?}", mp.json);
    assert_eq!(mp.json["sha256"], json!(sha));
    let r = t
        .post_raw(
            "/v1/evidence",
            Some(&t.keys.tech_a),
            None,
            "PNGDATA",
            &[("content-type", "image/png")],
        )
        .await;
    assert_eq!(r.code(), "idempotency_key_required");
    let r = t
        .post_raw(
            "/v1/evidence",
            Some(&t.keys.auditor),
            Some("u3"),
            "PNGDATA",
            &[("content-type", "image/png")],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = t
        .get(&format!("/v1/evidence/{sha}"), &t.keys.dispatcher)
        .await;
    assert_eq!(r.body, b"PNGDATA");
}

#[tokio::test]
async fn attaching_content_never_uploaded_is_refused() {
    let t = TestApp::spawn().await;
    let job = t.open_ifm_job("site-ev").await;
    let r = t
        .cmd(
            &job,
            "attach_evidence",
            &t.keys.dispatcher,
            json!({"kind": "photo_before", "sha256": "a".repeat(64)}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "unknown_evidence"));
}
