//! Evidence files: content-addressed in an object store (a local directory by
//! default, S3-compatible by configuration), described in `evidence_objects`.
//! The same store keeps the chain's signed checkpoints under `checkpoints/`
//! (see `app::checkpoints`): outside the database, like the evidence.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};

use crate::domain::job::Upload;
use crate::error::{ApiError, Result};
use crate::store::hash::sha256_hex;

/// The object store evidence lives in.
#[derive(Debug, Clone)]
pub struct EvidenceStore {
    store: Arc<dyn ObjectStore>,
}

/// What an upload answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct EvidenceInfo {
    /// SHA-256 of the content, hex: its address (`GET /v1/evidence/{sha256}`,
    /// `attach_evidence`).
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// Bytes.
    #[schemars(range(min = 1))]
    pub size: i64,
    /// Media type as uploaded.
    pub content_type: String,
}

impl EvidenceStore {
    /// A local directory (created if absent).
    pub fn local(dir: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(EvidenceStore {
            store: Arc::new(LocalFileSystem::new_with_prefix(dir)?),
        })
    }

    /// An `s3://bucket/prefix` URL; credentials and endpoint from the AWS_* environment.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url)?;
        let opts: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
        let (store, _) = object_store::parse_url_opts(&parsed, opts)?;
        Ok(EvidenceStore {
            store: Arc::from(store),
        })
    }

    /// The configured store: `s3://…`, a directory, or DATA_DIR/evidence.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        match &config.evidence_store {
            Some(s) if s.starts_with("s3://") => Self::from_url(s),
            Some(dir) => Self::local(std::path::Path::new(dir)),
            None => Self::local(&config.data_dir.join("evidence")),
        }
    }

    /// In memory (tests).
    pub fn in_memory() -> Self {
        EvidenceStore {
            store: Arc::new(InMemory::new()),
        }
    }

    fn path(sha256: &str) -> ObjectPath {
        ObjectPath::from(format!("evidence/{}/{}", &sha256[..2], sha256))
    }

    /// Stores content (idempotent: the same bytes are the same object).
    pub async fn put(
        &self,
        pool: &PgPool,
        bytes: bytes::Bytes,
        content_type: &str,
        uploaded_by: &str,
    ) -> Result<EvidenceInfo> {
        if content_type.is_empty()
            || content_type.len() > 127
            || !content_type.contains('/')
            || content_type.chars().any(|c| c.is_control())
        {
            return Err(ApiError::Validation {
                detail: "a valid Content-Type is required".into(),
                field: Some("content_type".into()),
            });
        }
        if bytes.is_empty() {
            return Err(ApiError::Validation {
                detail: "the file is empty".into(),
                field: Some("file".into()),
            });
        }
        let sha256 = sha256_hex(&bytes);
        let size = bytes.len() as i64;
        self.store
            .put(&Self::path(&sha256), PutPayload::from(bytes))
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("object store: {e}")))?;
        // The object is stored once (its first upload's row stays as it
        // was); every upload — the same bytes with another type, or by
        // another key — is recorded on its own and answered with its own type.
        sqlx::query(
            "WITH object AS ( \
               INSERT INTO evidence_objects (sha256, size_bytes, content_type, uploaded_by) VALUES ($1, $2, $3, $4) \
               ON CONFLICT (sha256) DO NOTHING) \
             INSERT INTO evidence_uploads (sha256, content_type, uploaded_by) VALUES ($1, $3, $4) \
             ON CONFLICT (sha256, uploaded_by, content_type) DO UPDATE SET uploaded_at = now()",
        )
        .bind(&sha256)
        .bind(size)
        .bind(content_type)
        .bind(uploaded_by)
        .execute(pool)
        .await?;
        Ok(EvidenceInfo {
            sha256,
            size,
            content_type: content_type.to_string(),
        })
    }

    /// Reads content back.
    pub async fn get(&self, sha256: &str) -> Result<Option<bytes::Bytes>> {
        if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        match self.store.get(&Self::path(sha256)).await {
            Ok(r) => Ok(Some(
                r.bytes().await.map_err(|e| ApiError::Internal(e.into()))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(ApiError::Internal(e.into())),
        }
    }
}

const CHECKPOINTS: &str = "checkpoints";

impl EvidenceStore {
    /// Writes a checkpoint object `checkpoints/<name>`.
    pub async fn put_checkpoint(&self, name: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.store
            .put(
                &ObjectPath::from(format!("{CHECKPOINTS}/{name}")),
                PutPayload::from(bytes),
            )
            .await?;
        Ok(())
    }

    /// The names of every checkpoint object, in name order.
    pub async fn checkpoint_names(&self) -> anyhow::Result<Vec<String>> {
        let prefix = ObjectPath::from(CHECKPOINTS);
        let mut names: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
            .try_collect()
            .await?;
        names.retain(|n| n.ends_with(".json"));
        names.sort();
        Ok(names)
    }

    /// Reads checkpoint object `checkpoints/<name>`.
    pub async fn get_checkpoint(&self, name: &str) -> anyhow::Result<bytes::Bytes> {
        Ok(self
            .store
            .get(&ObjectPath::from(format!("{CHECKPOINTS}/{name}")))
            .await?
            .bytes()
            .await?)
    }
}

/// The upload an attachment of `sha256` by `uploader` stands for: their own
/// latest upload of those bytes, else the latest by anyone; `None` when the
/// bytes were never uploaded. Objects stored before uploads were recorded one
/// by one answer with the object's first upload.
pub async fn upload_for(
    conn: &mut PgConnection,
    sha256: &str,
    uploader: &str,
) -> Result<Option<Upload>> {
    let row = sqlx::query(
        "SELECT content_type, uploaded_by FROM ( \
           SELECT content_type, uploaded_by, uploaded_at FROM evidence_uploads WHERE sha256 = $1 \
           UNION ALL \
           SELECT content_type, uploaded_by, '-infinity'::timestamptz FROM evidence_objects WHERE sha256 = $1) u \
         ORDER BY (uploaded_by = $2) DESC, uploaded_at DESC LIMIT 1",
    )
    .bind(sha256)
    .bind(uploader)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(Upload {
            content_type: r.try_get("content_type")?,
            uploaded_by: r.try_get("uploaded_by")?,
        })
    })
    .transpose()
}

/// The media type each stored object was first uploaded with, by sha256
/// (what the job page shows for evidence recorded before uploads kept their
/// own types).
pub async fn object_types(
    pool: &PgPool,
    shas: &[String],
) -> Result<std::collections::HashMap<String, String>> {
    let rows =
        sqlx::query("SELECT sha256, content_type FROM evidence_objects WHERE sha256 = ANY($1)")
            .bind(shas)
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("sha256")?, r.try_get("content_type")?)))
        .collect()
}

/// The media type a stored object was first uploaded with.
pub async fn object_type(pool: &PgPool, sha256: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT content_type FROM evidence_objects WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(pool)
            .await?,
    )
}

impl super::App {
    /// Stores an evidence upload under the idempotency rules of every
    /// mutation (its key claimed first, in one transaction).
    pub async fn upload_evidence(
        &self,
        caller: &super::Caller,
        meta: &super::RequestMeta,
        content: bytes::Bytes,
        content_type: String,
    ) -> Result<super::Reply> {
        let app = self.clone();
        let by = caller.key_name.clone();
        self.idempotent(caller, meta, move |_conn| {
            Box::pin(async move {
                let info = app
                    .evidence
                    .put(&app.pool, content, &content_type, &by)
                    .await?;
                Ok((
                    201,
                    serde_json::to_value(info).map_err(|e| ApiError::Internal(e.into()))?,
                ))
            })
        })
        .await
    }
}
