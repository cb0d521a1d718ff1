//! One typed configuration, read once in `main` from flags and environment.
//! Secrets are never printed: `Debug` redacts the database password.

use std::net::SocketAddr;
use std::path::PathBuf;

/// The default database: the local server, database `dispatch_api`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/dispatch_api";

/// Settings shared by every subcommand.
#[derive(Clone, clap::Args)]
pub struct Config {
    /// PostgreSQL URL. Unset: the local default; if no server answers there and
    /// PostgreSQL's server programs are installed, a private cluster under
    /// `--data-dir` is started.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Folder for the private PostgreSQL cluster and local evidence files.
    #[arg(long, env = "DISPATCH_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,

    /// The SOP library.
    #[arg(long, env = "DISPATCH_SOPS_DIR", default_value = "sops", global = true)]
    pub sops_dir: PathBuf,

    /// Where evidence is stored: a directory path, or `s3://bucket/prefix`
    /// (credentials and endpoint from the AWS_* environment). Default: DATA_DIR/evidence.
    #[arg(long, env = "DISPATCH_EVIDENCE_STORE", global = true)]
    pub evidence_store: Option<String>,

    /// Database connections per process.
    #[arg(
        long,
        env = "DISPATCH_DB_POOL_SIZE",
        default_value_t = 16,
        global = true
    )]
    pub db_pool_size: u32,

    /// Connections (and tasks) that commit command writes together, beside
    /// the pool (group commit, docs/03). Fewer make larger batches; at least 1.
    #[arg(
        long,
        env = "DISPATCH_DB_WRITERS",
        default_value_t = crate::store::writer::DEFAULT_WRITERS,
        value_parser = clap::value_parser!(u32).range(1..=64),
        global = true
    )]
    pub db_writers: u32,

    /// A TOML dispatch policy (SLA hours per priority and per client, offer
    /// acknowledgement windows); default: the built-in policy (docs/decisions.md).
    #[arg(long, env = "DISPATCH_POLICY_FILE", global = true)]
    pub policy_file: Option<PathBuf>,

    /// Jobs whose state is kept in memory between commands (`0`: none; every
    /// command reads its job's stream). See docs/03.
    #[arg(
        long,
        env = "DISPATCH_JOB_CACHE_SIZE",
        default_value_t = crate::app::cache::DEFAULT_CAPACITY,
        global = true
    )]
    pub job_cache_size: usize,

    /// The chain keyring file (TOML: `active`, `checkpoint_seed`, `[hmac]`
    /// keys by id; README "Chain keys"). Unset, and DISPATCH_CHAIN_KEYRING
    /// unset: DATA_DIR/keys/chain-keyring.toml, made by the first `serve`.
    #[arg(long, env = "DISPATCH_CHAIN_KEYS_FILE", global = true)]
    pub chain_keys_file: Option<PathBuf>,

    /// The chain keyring document itself (for secret stores that inject
    /// environment variables); merged with DISPATCH_CHAIN_KEYS_FILE when both
    /// are set. Never printed.
    #[arg(
        long,
        env = "DISPATCH_CHAIN_KEYRING",
        hide_env_values = true,
        global = true
    )]
    pub chain_keyring: Option<String>,

    /// Log format: `json` (one object per line) or `pretty`.
    #[arg(
        long,
        env = "DISPATCH_LOG_FORMAT",
        default_value = "json",
        global = true
    )]
    pub log_format: String,
}

impl Config {
    /// The chain keyring: the configured one, else the one under the data
    /// folder; `create` (the server) makes one there when there is none.
    /// `None` only when nothing is configured or found and `create` is off.
    pub fn chain_keys(
        &self,
        create: bool,
    ) -> Result<
        Option<(
            crate::store::chain::ChainKeys,
            crate::store::chain::KeyringSource,
        )>,
        crate::store::chain::KeyringError,
    > {
        crate::store::chain::load_keyring(
            self.chain_keys_file.as_deref(),
            self.chain_keyring.as_deref(),
            &self.data_dir,
            create,
        )
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("data_dir", &self.data_dir)
            .field("sops_dir", &self.sops_dir)
            .field("evidence_store", &self.evidence_store)
            .field("db_pool_size", &self.db_pool_size)
            .field("db_writers", &self.db_writers)
            .field("job_cache_size", &self.job_cache_size)
            .field("chain_keys_file", &self.chain_keys_file)
            .field(
                "chain_keyring",
                &self.chain_keyring.as_ref().map(|_| "(set, not shown)"),
            )
            .finish()
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "DISPATCH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Largest JSON body, bytes.
    #[arg(long, env = "DISPATCH_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Largest evidence upload, bytes.
    #[arg(long, env = "DISPATCH_MAX_EVIDENCE_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_evidence_bytes: usize,

    /// Seconds one request may take.
    #[arg(long, env = "DISPATCH_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// The read models' pass spacing under load, ms: a pass starts at most
    /// this often while events keep coming (shorter: the board is more
    /// current; longer: fewer, larger passes). See docs/03.
    #[arg(long, env = "DISPATCH_PROJECTION_PASS_MS", default_value_t = 80,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub projection_pass_ms: u64,

    /// How often the system actor's timers look for due offers and SLAs, ms.
    #[arg(long, env = "DISPATCH_TIMER_INTERVAL_MS", default_value_t = 1000)]
    pub timer_interval_ms: u64,

    /// Calls each API key may make per minute, sustained, over every
    /// transport together (REST, `/v1/tools`, MCP, the pages' forms); 0
    /// turns the limit off. Counted per process: N replicas admit N times this.
    #[arg(long, env = "DISPATCH_TOOL_RATE_PER_MINUTE", default_value_t = 600)]
    pub tool_rate_per_minute: u32,

    /// Calls a key may make at once before the per-minute rate applies.
    #[arg(long, env = "DISPATCH_TOOL_RATE_BURST", default_value_t = 60)]
    pub tool_rate_burst: u32,

    /// `Host` header values `/mcp` accepts (comma-separated; `host` or
    /// `host:port`); `*` accepts any (only behind a proxy that checks it).
    #[arg(
        long,
        env = "DISPATCH_MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub mcp_allowed_hosts: Vec<String>,

    /// Seconds between signed checkpoints of the stream heads (also written
    /// at start-up and at graceful shutdown).
    #[arg(long, env = "DISPATCH_CHECKPOINT_INTERVAL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_interval_secs: u64,
    /// `Origin` header values `/mcp` accepts when a request carries one
    /// (comma-separated; `scheme://host` accepts any port, `scheme://host:port`
    /// only that one); any other is refused 403. `*` accepts any. A request
    /// without `Origin` (not from a browser) is not affected.
    #[arg(
        long,
        env = "DISPATCH_MCP_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = crate::tools::DEFAULT_MCP_ALLOWED_ORIGINS
    )]
    pub mcp_allowed_origins: Vec<String>,

    /// The clock: `system`, or `manual:<RFC 3339>` for deterministic scenarios
    /// (stands still until an admin calls `POST /v1/admin/clock`, which exists
    /// only in this mode). Never in production.
    #[arg(long, env = "DISPATCH_CLOCK", default_value = "system")]
    pub clock: crate::clock::ClockSetting,

    /// NATS server to publish every event to (JetStream), e.g.
    /// `nats://127.0.0.1:4222`. Unset: no events go to NATS.
    #[arg(long, env = "DISPATCH_NATS_URL")]
    pub nats_url: Option<String>,
    /// The JetStream stream the events go to (created if missing).
    #[arg(long, env = "DISPATCH_NATS_STREAM", default_value = crate::subscriptions::nats::DEFAULT_STREAM,
          value_parser = parse_stream_name)]
    pub nats_stream: String,
    /// The subjects' prefix: events go to `<prefix>.<aggregate type>.<event type>`.
    #[arg(long, env = "DISPATCH_NATS_SUBJECT_PREFIX", default_value = crate::subscriptions::nats::DEFAULT_SUBJECT_PREFIX,
          value_parser = parse_subject_prefix)]
    pub nats_subject_prefix: String,
    /// The CloudEvents `source` of every event sent out (a URI reference).
    #[arg(long, env = "DISPATCH_EVENT_SOURCE", default_value = crate::app::cloudevents::DEFAULT_SOURCE,
          value_parser = parse_event_source)]
    pub event_source: String,

    /// Accept webhook endpoints at `http://` URLs and at loopback, private
    /// and other non-public addresses (tests, a receiver beside the
    /// service). Off: `https://` on the public internet only.
    #[arg(long, env = "DISPATCH_WEBHOOKS_ALLOW_LOCAL", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub webhooks_allow_local: bool,
    /// One webhook delivery attempt's time limit, ms.
    #[arg(long, env = "DISPATCH_WEBHOOKS_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=120_000))]
    pub webhooks_timeout_ms: u64,
    /// The back-off before a failed webhook delivery's first retry, ms
    /// (doubling after each failure, with jitter).
    #[arg(long, env = "DISPATCH_WEBHOOKS_RETRY_BASE_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub webhooks_retry_base_ms: u64,
    /// The longest back-off between two attempts of one webhook delivery, ms.
    #[arg(long, env = "DISPATCH_WEBHOOKS_RETRY_MAX_MS", default_value_t = 3_600_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub webhooks_retry_max_ms: u64,
    /// Streams of one webhook endpoint delivered at once (each stream in order).
    #[arg(long, env = "DISPATCH_WEBHOOKS_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub webhooks_concurrency: u32,

    /// An OpenTelemetry collector's OTLP/HTTP base URL (`http://host:4318`):
    /// spans are sent to `<url>/v1/traces` (protobuf). Unset: no spans are
    /// exported (trace ids still reach the logs and the events; docs/08).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_otlp_endpoint)]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// Headers sent with every export, `name=value` pairs separated by commas
    /// (values percent-encoded), e.g. a collector's API key. Never printed.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_HEADERS", hide_env_values = true,
          value_parser = OtlpHeaders::parse)]
    pub otel_exporter_otlp_headers: Option<OtlpHeaders>,
    /// The `service.name` the spans are reported under.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "dispatch-api")]
    pub otel_service_name: String,
}

impl ServeConfig {
    /// Where events go on NATS, when `DISPATCH_NATS_URL` is set.
    pub fn nats(&self) -> Option<crate::subscriptions::nats::NatsConfig> {
        self.nats_url
            .as_ref()
            .map(|url| crate::subscriptions::nats::NatsConfig {
                url: url.clone(),
                stream: self.nats_stream.clone(),
                subject_prefix: self.nats_subject_prefix.clone(),
                source: self.event_source.clone(),
            })
    }
}

impl ServeConfig {
    /// Where spans go, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub fn traces(&self) -> Option<crate::telemetry::trace::TraceConfig> {
        self.otel_exporter_otlp_endpoint.as_ref().map(|endpoint| {
            crate::telemetry::trace::TraceConfig {
                endpoint: endpoint.clone(),
                service_name: self.otel_service_name.clone(),
                headers: self
                    .otel_exporter_otlp_headers
                    .as_ref()
                    .map(|h| h.0.clone())
                    .unwrap_or_default(),
            }
        })
    }

    /// Where webhook endpoints may point.
    pub fn webhook_urls(&self) -> crate::subscriptions::webhooks::UrlPolicy {
        crate::subscriptions::webhooks::UrlPolicy {
            allow_local: self.webhooks_allow_local,
        }
    }

    /// How webhooks are delivered (the retry and disabling windows are the
    /// specification's: 24 hours, 3 days, on the service's clock).
    pub fn webhooks(&self) -> crate::subscriptions::webhooks::WebhookConfig {
        use std::time::Duration;
        crate::subscriptions::webhooks::WebhookConfig {
            source: self.event_source.clone(),
            policy: self.webhook_urls(),
            timeout: Duration::from_millis(self.webhooks_timeout_ms),
            retry_base: Duration::from_millis(self.webhooks_retry_base_ms),
            retry_max: Duration::from_millis(
                self.webhooks_retry_max_ms.max(self.webhooks_retry_base_ms),
            ),
            concurrency: self.webhooks_concurrency as usize,
            ..Default::default()
        }
    }
}

/// A JetStream stream name: letters, digits, `_` and `-`, at most 64.
fn parse_stream_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    ok.then(|| s.to_string())
        .ok_or_else(|| "a stream name is 1 to 64 letters, digits, `_` or `-`".to_string())
}

/// A subject prefix: dot-separated tokens of letters, digits, `_` and `-`.
fn parse_subject_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    ok.then(|| s.to_string()).ok_or_else(|| {
        "a subject prefix is dot-separated tokens of letters, digits, `_` or `-` (no wildcards)"
            .to_string()
    })
}

/// A CloudEvents source: a URI reference without spaces or control characters.
fn parse_event_source(s: &str) -> Result<String, String> {
    let ok =
        !s.is_empty() && s.len() <= 500 && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| s.to_string())
        .ok_or_else(|| "the event source is a URI reference (no spaces)".to_string())
}

/// An OTLP/HTTP base URL: `http://` or `https://` with a host, no query.
fn parse_otlp_endpoint(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s.trim()).map_err(|e| format!("not a URL: {e}"))?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.query().is_none()
        && url.fragment().is_none();
    ok.then(|| s.trim().trim_end_matches('/').to_string())
        .ok_or_else(|| "an OTLP/HTTP endpoint is an http:// or https:// URL without a query, e.g. http://127.0.0.1:4318".to_string())
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: headers sent with every span export
/// (`Debug` shows their names only).
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpHeaders(pub Vec<(String, String)>);

impl std::fmt::Debug for OtlpHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| format!("{name}=(not shown)")))
            .finish()
    }
}

impl OtlpHeaders {
    /// As the OpenTelemetry specification writes them: `name=value` pairs
    /// separated by commas, values percent-encoded.
    pub fn parse(s: &str) -> Result<OtlpHeaders, String> {
        let mut out = Vec::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| "each header is name=value".to_string())?;
            let name = name.trim();
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .map_err(|_| "a header value is not UTF-8 once decoded".to_string())?
                .into_owned();
            let valid = axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && axum::http::HeaderValue::from_str(&value).is_ok();
            if !valid {
                return Err("a header name or value is not valid in HTTP".to_string());
            }
            out.push((name.to_string(), value));
        }
        Ok(OtlpHeaders(out))
    }
}

/// A URL with its password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparseable)".to_string(),
    }
}
