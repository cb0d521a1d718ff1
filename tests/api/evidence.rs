//! Evidence uploads: raw or multipart, content-addressed; attach only what was uploaded.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn raw_and_multipart_uploads_are_content_addressed() {
    let t = TestApp::spawn().await;
    let raw = t
        .upload(&t.keys.tech_a, Some("u1"), "PNGDATA", "image/png")
        .await;
    assert_eq!(raw.status, 201, "{:?}", raw.json);
    let sha = raw.json["sha256"].as_str().unwrap().to_string();
    assert_eq!(raw.json["size"], 7);
    let boundary = "XyZ";
    let body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--{boundary}--\r\n");
    let ct = format!("multipart/form-data; boundary={boundary}");
    let mp = t.upload(&t.keys.tech_a, Some("u2"), &body, &ct).await;
    assert_eq!(mp.status, 201, "{:?}", mp.json);
    assert_eq!(mp.json["sha256"], json!(sha));
    let r = t.upload(&t.keys.tech_a, None, "PNGDATA", "image/png").await;
    assert_eq!(r.code(), "idempotency_key_required");
    let r = t
        .upload(&t.keys.auditor, Some("u3"), "PNGDATA", "image/png")
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

/// Issue 16, attack 5: the same bytes uploaded again with another type keep
/// two types and two uploaders; an attachment records its own upload's.
#[tokio::test]
async fn the_same_bytes_uploaded_twice_keep_two_types_and_uploaders() {
    let t = TestApp::spawn().await;
    let upload = |key: String, idem: &'static str, ct: &'static str| {
        let t = &t;
        async move {
            let r = t.upload(&key, Some(idem), "SAME-BYTES", ct).await;
            assert_eq!(r.status, 201, "{:?}", r.json);
            r
        }
    };
    let first = upload(t.keys.dispatcher.clone(), "u1", "image/jpeg").await;
    let second = upload(t.keys.admin.clone(), "u2", "application/pdf").await;
    assert_eq!(first.json["sha256"], second.json["sha256"]);
    assert_eq!(first.json["content_type"], "image/jpeg");
    assert_eq!(
        second.json["content_type"], "application/pdf",
        "its own type"
    );
    let sha = first.json["sha256"].as_str().unwrap().to_string();

    let job = t.open_ifm_job("site-ev2").await;
    for (key, expect_type, expect_by) in [
        (&t.keys.admin, "application/pdf", "admin-1"),
        (&t.keys.dispatcher, "image/jpeg", "dispatcher-1"),
    ] {
        let r = t
            .cmd(
                &job,
                "attach_evidence",
                key,
                json!({"kind": "other", "sha256": sha}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        let events = t.events(&job).await;
        let payload = &events.last().unwrap()["payload"];
        assert_eq!(payload["content_type"], expect_type, "{payload}");
        assert_eq!(payload["uploaded_by"], expect_by, "{payload}");
    }
    let view = t.get(&format!("/v1/jobs/{job}"), &t.keys.dispatcher).await;
    let types: Vec<&str> = strings(&view.json["evidence"], "content_type");
    assert_eq!(types, ["application/pdf", "image/jpeg"]);
}
