//! `ApiError`: every refusal and failure, mapped once to the contract's
//! problem+json (RFC 9457) with its stable `code`.

use serde_json::{json, Value};

use crate::domain::job::JobError;
use crate::domain::registry::RegistryError;
use crate::domain::technician::TechnicianError;

mod from;

/// Everything a request can end in other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `validation_error`: malformed body, unknown field, bad parameter.
    #[error("{detail}")]
    Validation {
        /// What is wrong.
        detail: String,
        /// The offending field, where known.
        field: Option<String>,
    },
    /// 400 `idempotency_key_required`: a REST mutation without a usable
    /// `Idempotency-Key` header.
    #[error("Idempotency-Key header is required (1-200 printable characters)")]
    IdempotencyKeyRequired,
    /// 400 `idempotency_key_required`: a tool call without its
    /// `idempotency_key`, which travels in the call, not in a header — the
    /// envelope's field on `POST /v1/tools/{tool}`, an argument on MCP.
    #[error("{}", idempotency_argument_required(*.0))]
    IdempotencyArgumentRequired(crate::tools::log::Transport),
    /// 401 `unauthorized`.
    #[error("missing, unknown or revoked API key")]
    Unauthorized,
    /// 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// 403 `tool_not_allowed`: the caller's role may not call this tool (or no such tool).
    #[error("{0}")]
    ToolNotAllowed(String),
    /// 429 `rate_limited`: the key's tool-call budget is spent; retry after the given seconds.
    #[error("too many tool calls for this key; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a call would be admitted.
        retry_after_secs: u64,
    },
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 409 `version_conflict`.
    #[error("{}", version_conflict(*expected, *current))]
    VersionConflict {
        /// The version the caller expected.
        expected: Option<i64>,
        /// The current version, if known.
        current: Option<i64>,
    },
    /// 409 `idempotency_key_reused`.
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    /// 413 `payload_too_large`.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// 415 `unsupported_media_type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 405 `method_not_allowed`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A job command refused by the domain (422 mostly). An unknown
    /// incident type becomes [`ApiError::UnknownIncidentType`] (see the
    /// `From<JobError>`), as the queries answer it.
    #[error(transparent)]
    Job(JobError),
    /// A technician command refused by the domain.
    #[error(transparent)]
    Technician(#[from] TechnicianError),
    /// A registry command refused by the domain.
    #[error(transparent)]
    Registry(RegistryError),
    /// 422 `unknown_incident_type`: a request names an incident type the
    /// SOP library does not have — `open_job`'s `incident_type`, `get_sop`'s
    /// (and `GET /v1/sops/{incident_type}`), `find_technicians`'
    /// `eligible_for`. Every transport and tool answers this one code
    /// (docs/06, "Error codes per transport").
    #[error(
        "unknown incident type `{value}`: not one of the SOP library's (GET /v1/sops lists them)"
    )]
    UnknownIncidentType {
        /// What the caller named (control characters dropped, bounded).
        value: String,
        /// The field or parameter that named it.
        field: String,
    },
    /// 422 `unknown_evidence`: `attach_evidence` names content never uploaded.
    #[error("no evidence with sha256 {0} was uploaded")]
    UnknownEvidence(String),
    /// 422 `technician_has_no_key`: a sign-in link is bound to one of the
    /// technician's keys, and the technician has none that is active.
    #[error("technician `{0}` has no active technician key; make one with `dispatch-api keys create --role technician --name NAME --technician {0}`")]
    TechnicianHasNoKey(String),
    /// 410 `signin_link_expired`: the sign-in link is unknown, already used,
    /// expired, or its key was revoked.
    #[error(
        "this sign-in link has expired or was already used; ask your dispatcher for a new one"
    )]
    SigninLinkExpired,
    /// 403 `csrf_rejected`: a page's script posted without this session's
    /// token or from another origin (a page made for an earlier session:
    /// reload it).
    #[error("this request did not come from a page of this session: reload the page")]
    CsrfRejected,
    /// 422 `webhook_url_refused`: a webhook URL that is not `https://`, or
    /// whose host is (or resolves to) a loopback, private or other
    /// non-public address, while local endpoints are not allowed.
    #[error("{0}")]
    WebhookUrlRefused(String),
    /// 422 `unknown_event_type`: a webhook's event type filter names an
    /// event type (or aggregate type) the service does not record.
    #[error("{0}")]
    UnknownEventType(String),
    /// 409 `webhook_already_registered`: a live endpoint has this URL.
    #[error("an endpoint with this url is registered already ({0})")]
    WebhookAlreadyRegistered(uuid::Uuid),
    /// 503 `projection_behind`: the read model has not applied `min_position` in time.
    #[error("the read model has not reached position {wanted} yet (it is at {position})")]
    ProjectionBehind {
        /// The position asked for.
        wanted: i64,
        /// The position the read model reflects.
        position: i64,
    },
    /// 503 `unavailable`: the database cannot be reached.
    #[error("the service's database is unavailable; retry shortly")]
    Unavailable,
    /// 500: a bug. Logged with its cause; answered opaquely.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The detail of a missing tool-call key: where that transport carries it.
fn idempotency_argument_required(transport: crate::tools::log::Transport) -> &'static str {
    match transport {
        crate::tools::log::Transport::Mcp => {
            "the `idempotency_key` argument is required (1-200 printable ASCII characters; reuse it only to retry the same call)"
        }
        _ => {
            "the envelope's `idempotency_key` is required (1-200 printable ASCII characters; reuse it only to retry the same call)"
        }
    }
}

/// The detail of a `version_conflict`, from what is known of it.
fn version_conflict(expected: Option<i64>, current: Option<i64>) -> String {
    match (expected, current) {
        (Some(e), Some(c)) => {
            format!("version {e} is no longer current (the current version is {c}); read it again and retry")
        }
        (Some(e), None) => format!(
            "version {e} is no longer current (another write came first); read it again and retry"
        ),
        (None, _) => "another write came first; read it again and retry".to_string(),
    }
}

impl ApiError {
    /// [`ApiError::UnknownIncidentType`] for what a caller named in `field`.
    pub fn unknown_incident_type(value: &str, field: &str) -> ApiError {
        ApiError::UnknownIncidentType {
            value: bounded_field(value).chars().take(QUOTED_CHARS).collect(),
            field: field.to_string(),
        }
    }
}

/// `Result` with [`ApiError`].
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Whether a database error means "the database cannot serve us right now"
/// (`503` with `Retry-After`) rather than a fault of ours: class 08
/// (connection), 53 (insufficient resources), 57 (operator intervention:
/// shutdown, terminated sessions, the server starting up), and the database
/// refusing connections (`ALLOW_CONNECTIONS false` while an operator works on
/// it, 55000) or being gone (3D000) when the pool opens a connection. Found by
/// the fault suite's `outage_terminate` case, which saw them answered `500`.
pub fn database_unavailable(code: &str, message: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || code == "3D000"
        || (code == "55000" && message.contains("not currently accepting connections"))
}

/// Whether a database error means the database cannot be reached or is not
/// serving (503), rather than that it refused this request.
pub fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => database_unavailable(
            &d.code().map(|c| c.to_string()).unwrap_or_default(),
            d.message(),
        ),
        _ => false,
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Validation { .. }
            | ApiError::IdempotencyKeyRequired
            | ApiError::IdempotencyArgumentRequired(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) | ApiError::ToolNotAllowed(_) => 403,
            ApiError::RateLimited { .. } => 429,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::VersionConflict { .. } | ApiError::IdempotencyKeyReused => 409,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Job(e) => match e {
                JobError::JobNotFound | JobError::ApprovalNotFound(_) => 404,
                JobError::NotYourJob | JobError::Forbidden | JobError::SelfApproval => 403,
                JobError::JobAlreadyExists => 409,
                JobError::Validation { .. } => 400,
                _ => 422,
            },
            ApiError::Technician(e) => match e {
                TechnicianError::NotFound => 404,
                TechnicianError::Forbidden => 403,
                TechnicianError::AlreadyRegistered => 409,
                TechnicianError::Validation { .. } => 400,
            },
            ApiError::Registry(e) => e.status(),
            ApiError::UnknownEvidence(_)
            | ApiError::UnknownIncidentType { .. }
            | ApiError::TechnicianHasNoKey(_)
            | ApiError::WebhookUrlRefused(_)
            | ApiError::UnknownEventType(_) => 422,
            ApiError::WebhookAlreadyRegistered(_) => 409,
            ApiError::SigninLinkExpired => 410,
            ApiError::CsrfRejected => 403,
            ApiError::Unavailable | ApiError::ProjectionBehind { .. } => 503,
            ApiError::Internal(_) => 500,
        }
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "validation_error",
            ApiError::IdempotencyKeyRequired | ApiError::IdempotencyArgumentRequired(_) => {
                "idempotency_key_required"
            }
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::ToolNotAllowed(_) => "tool_not_allowed",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::VersionConflict { .. } => "version_conflict",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Job(e) => e.code(),
            ApiError::Technician(e) => e.code(),
            ApiError::Registry(e) => e.code(),
            ApiError::UnknownEvidence(_) => "unknown_evidence",
            ApiError::UnknownIncidentType { .. } => crate::domain::job::UNKNOWN_INCIDENT_TYPE,
            ApiError::TechnicianHasNoKey(_) => "technician_has_no_key",
            ApiError::SigninLinkExpired => "signin_link_expired",
            ApiError::CsrfRejected => "csrf_rejected",
            ApiError::WebhookUrlRefused(_) => "webhook_url_refused",
            ApiError::UnknownEventType(_) => "unknown_event_type",
            ApiError::WebhookAlreadyRegistered(_) => "webhook_already_registered",
            ApiError::ProjectionBehind { .. } => "projection_behind",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// Whether the answer is final for its idempotency key: domain decisions
    /// are replayed; conflicts, outages and bugs are not (a retry re-executes).
    pub fn is_final_answer(&self) -> bool {
        matches!(
            self,
            ApiError::Job(_)
                | ApiError::Technician(_)
                | ApiError::Registry(_)
                | ApiError::UnknownEvidence(_)
                | ApiError::UnknownIncidentType { .. }
        )
    }

    /// The problem+json document.
    pub fn problem(&self) -> Value {
        let status = self.status();
        let detail = match self {
            ApiError::Internal(_) => "an unexpected error occurred; it has been logged".to_string(),
            // Whoever made it, a refusal's text may carry pieces of the input
            // (field names from a hostile body): bounded here, once for all.
            ApiError::Validation { detail, .. }
            | ApiError::WebhookUrlRefused(detail)
            | ApiError::UnknownEventType(detail) => bounded_text(detail, DETAIL_BYTES),
            other => other.to_string(),
        };
        let mut doc = json!({
            "type": format!("https://dispatch-api.dev/problems/{}", self.code()),
            "title": title(self.code()),
            "status": status,
            "detail": detail,
            "code": self.code(),
        });
        let obj = doc.as_object_mut().expect("object literal");
        match self {
            ApiError::Validation { field: Some(f), .. }
            | ApiError::UnknownIncidentType { field: f, .. } => {
                obj.insert("field".into(), bounded_field(f).into());
            }
            ApiError::IdempotencyArgumentRequired(_) => {
                obj.insert("field".into(), "idempotency_key".into());
            }
            ApiError::ProjectionBehind { position, .. } => {
                obj.insert("position".into(), (*position).into());
            }
            ApiError::VersionConflict {
                current: Some(v), ..
            } => {
                obj.insert("current_version".into(), (*v).into());
            }
            ApiError::Job(e) => {
                if let Some(m) = e.missing() {
                    obj.insert("missing".into(), m.into());
                }
                if let Some(s) = e.current_state() {
                    obj.insert("current_state".into(), s.as_str().into());
                }
                if let JobError::Validation { field, .. } = e {
                    obj.insert("field".into(), field.clone().into());
                }
                if let JobError::CheckInReasonRequired {
                    distance_m,
                    radius_m,
                } = e
                {
                    obj.insert("distance_m".into(), json!(distance_m));
                    obj.insert("radius_m".into(), (*radius_m).into());
                }
            }
            ApiError::Technician(TechnicianError::Validation { field, .. })
            | ApiError::Registry(RegistryError::Validation { field, .. }) => {
                obj.insert("field".into(), field.clone().into());
            }
            ApiError::WebhookAlreadyRegistered(id) => {
                obj.insert("webhook_id".into(), id.to_string().into());
            }
            ApiError::RateLimited { retry_after_secs } => {
                obj.insert("retry_after".into(), (*retry_after_secs).into());
            }
            _ => {}
        }
        doc
    }

    /// Builds a validation error from a serde decoding error, naming the
    /// field serde names (an unknown, missing or duplicate one).
    pub fn from_serde(e: &serde_json::Error) -> ApiError {
        let msg = e.to_string();
        ApiError::Validation {
            detail: bounded_detail(&msg),
            field: named_field(&msg).map(|f| bounded_field(&f)),
        }
    }

    /// Builds a validation error from a command body that does not decode,
    /// naming the offending field by its path as the tool schemas do
    /// (`site.name`, `parts.0.quantity`; for an unknown or missing field, the
    /// field itself).
    pub fn from_body(e: &crate::domain::BodyError) -> ApiError {
        use serde_path_to_error::Segment;
        let msg = e.inner().to_string();
        let path = e
            .path()
            .iter()
            .map(|segment| match segment {
                Segment::Seq { index } => index.to_string(),
                Segment::Map { key } => key.clone(),
                Segment::Enum { variant } => variant.clone(),
                Segment::Unknown => "?".to_string(),
            })
            .collect::<Vec<_>>()
            .join(".");
        let field = match (path.as_str(), named_field(&msg)) {
            // A missing field: serde points at the object that lacks it.
            ("", named) => named,
            (path, Some(named)) if msg.starts_with("missing field") => {
                Some(format!("{path}.{named}"))
            }
            // An unknown field's path ends with its name; a bad value's is its field.
            (path, _) => Some(path.to_string()),
        };
        ApiError::Validation {
            detail: bounded_detail(&msg),
            field: field.map(|f| bounded_field(&f)),
        }
    }
}

/// At most this many characters of one quoted piece of input in a refusal.
const QUOTED_CHARS: usize = 64;
/// At most this many bytes of detail in a refusal.
const DETAIL_BYTES: usize = 512;
/// At most this many characters of a field path in a refusal.
const FIELD_CHARS: usize = 200;

/// Whether serde's message is about a field by name (rather than a value).
fn is_field_error(msg: &str) -> bool {
    ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .any(|p| msg.starts_with(p))
}

/// The field an unknown/missing/duplicate-field message names.
fn named_field(msg: &str) -> Option<String> {
    if !is_field_error(msg) {
        return None;
    }
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

/// serde's message as a refusal may carry it. The message quotes the
/// caller's input (an unknown field's name, a bad value) between backticks
/// or double quotes, and a hostile body makes that anything: each quoted
/// piece is clipped, control characters are dropped, the whole is bounded.
fn bounded_detail(msg: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut quoted = 0;
    for c in msg.chars().filter(|c| !c.is_control()) {
        match quote {
            Some(q) if c == q => {
                quote = None;
                out.push(c);
            }
            Some(_) => {
                quoted += 1;
                if quoted <= QUOTED_CHARS {
                    out.push(c);
                } else if quoted == QUOTED_CHARS + 1 {
                    out.push('…');
                }
            }
            None => {
                if c == '`' || c == '"' {
                    quote = Some(c);
                    quoted = 0;
                }
                out.push(c);
            }
        }
        if out.len() >= DETAIL_BYTES {
            out.push('…');
            break;
        }
    }
    out
}

/// Text with control characters dropped, at most `max` bytes (cut at a
/// character boundary and marked with `…`).
fn bounded_text(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

/// A field path as a refusal may name it: control characters dropped, bounded.
fn bounded_field(field: &str) -> String {
    field
        .chars()
        .filter(|c| !c.is_control())
        .take(FIELD_CHARS)
        .collect()
}

fn title(code: &str) -> String {
    let mut t = code.replace('_', " ");
    if let Some(first) = t.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    t
}
