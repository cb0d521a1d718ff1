//! `/v1/evidence`: upload a file (raw body or multipart with one file field)
//! into the content-addressed object store, and read it back.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use super::extract::{mutation_meta, read_body};
use super::gate::Asked;
use super::{reply_response, AppState};
use crate::app::Caller;
use crate::error::{ApiError, Result};
use crate::store::hash::sha256_hex;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/evidence", post(upload))
        .route("/v1/evidence/{sha256}", get(download))
}

async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    req: Request,
) -> Result<Response> {
    let headers = req.headers().clone();
    let limit = state.limits.max_evidence_bytes;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // Check the key before reading a large body.
    super::extract::idempotency_key(&headers)?;
    let (bytes, file_type) = if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        let mut multipart =
            Multipart::from_request(req, &state)
                .await
                .map_err(|e| ApiError::Validation {
                    detail: format!("malformed multipart body: {}", e.body_text()),
                    field: None,
                })?;
        let mut found = None;
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) if e.status().as_u16() == 413 => {
                    return Err(ApiError::PayloadTooLarge { limit })
                }
                Err(e) => {
                    return Err(ApiError::Validation {
                        detail: format!("malformed multipart body: {}", e.body_text()),
                        field: None,
                    })
                }
            };
            // One part, named `file`, as the document says; anything else is
            // an unknown field (it would otherwise be taken for the file).
            let name = field.name().unwrap_or("");
            if name != "file" {
                return Err(ApiError::Validation {
                    detail: format!(
                        "unexpected part `{}`: the body has one part, `file`",
                        super::decode::echo(name)
                    ),
                    field: Some(super::decode::echo(name)),
                });
            }
            if found.is_some() {
                return Err(ApiError::Validation {
                    detail: "exactly one file field is accepted".into(),
                    field: Some("file".into()),
                });
            }
            let ct = field
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_string();
            let data = field.bytes().await.map_err(|e| {
                if e.status().as_u16() == 413 {
                    ApiError::PayloadTooLarge { limit }
                } else {
                    ApiError::Validation {
                        detail: format!("malformed multipart body: {}", e.body_text()),
                        field: None,
                    }
                }
            })?;
            found = Some((data, ct));
        }
        found.ok_or(ApiError::Validation {
            detail: "no file field in the multipart body".into(),
            field: Some("file".into()),
        })?
    } else {
        let (_, body): (_, Body) = req.into_parts();
        (read_body(&headers, body, limit).await?, content_type)
    };
    if bytes.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let digest = json!({"sha256": sha256_hex(&bytes), "content_type": file_type});
    asked.body(&digest);
    let meta = mutation_meta(&headers, "POST", "/v1/evidence", &digest)?;
    let reply = state
        .app
        .upload_evidence(&caller, &meta, bytes, file_type)
        .await?;
    Ok(reply_response(reply))
}

async fn download(
    State(state): State<AppState>,
    _caller: Caller,
    Path(sha256): Path<String>,
) -> Result<Response> {
    let bytes = state
        .app
        .evidence
        .get(&sha256)
        .await?
        .ok_or_else(|| ApiError::NotFound("no evidence with that sha256".into()))?;
    let mut resp = bytes.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}
