//! The closed toolset: the declarative allowlist every access check derives
//! from, the tools' input schemas, the manifest, the invocation log and the
//! per-key rate limit. The transports (HTTP `POST /v1/tools/{tool}` and MCP at
//! `/mcp`) live in `crate::http` and share one invocation path
//! (`crate::http::tools`).

pub mod allowlist;
pub mod log;
pub mod manifest;
pub mod rate_limit;
pub mod schemas;

use std::sync::Arc;

use allowlist::{Allowlist, ToolKind};
use rate_limit::ToolRateLimiter;
use schemas::{SchemaError, ToolSchemas};

/// The query tools the invocation path knows how to run; a query tool in the
/// allowlist outside this list refuses start-up.
pub const QUERY_TOOLS: &[&str] = &[
    "get_sop",
    "get_job",
    "search_board",
    "find_technicians",
    "get_billing_status",
];

/// Tool settings (from `ServeConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolsConfig {
    /// Sustained tool calls per key per minute (0: no limit).
    pub rate_per_minute: u32,
    /// Calls a key may make at once before the rate applies.
    pub rate_burst: u32,
    /// `Host` values `/mcp` accepts (DNS-rebinding protection); `*` accepts any.
    pub mcp_allowed_hosts: Vec<String>,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            rate_per_minute: 600,
            rate_burst: 60,
            mcp_allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        }
    }
}

/// A toolset the service refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ToolsetError {
    /// A schema file is missing, stray or not strict.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The allowlist names a query tool nothing implements.
    #[error("allowlist: query tool `{0}` has no implementation")]
    UnknownQuery(String),
}

/// Everything the tool transports share: built once at start-up.
#[derive(Debug)]
pub struct Toolset {
    /// The allowlist.
    pub allowlist: Arc<Allowlist>,
    /// Every tool's compiled input schema.
    pub schemas: ToolSchemas,
    /// The per-key call budget.
    pub limiter: ToolRateLimiter,
    /// The settings.
    pub config: ToolsConfig,
}

impl Toolset {
    /// Loads and checks the schemas against the allowlist.
    pub fn new(allowlist: Arc<Allowlist>, config: ToolsConfig) -> Result<Toolset, ToolsetError> {
        if let Some((name, _)) = allowlist
            .tools
            .iter()
            .find(|(n, t)| t.kind == ToolKind::Query && !QUERY_TOOLS.contains(&n.as_str()))
        {
            return Err(ToolsetError::UnknownQuery(name.clone()));
        }
        let schemas = ToolSchemas::load(&allowlist)?;
        Ok(Toolset {
            limiter: ToolRateLimiter::new(config.rate_per_minute, config.rate_burst),
            allowlist,
            schemas,
            config,
        })
    }

    /// The shipped allowlist and default settings (tests, tools).
    pub fn builtin() -> Result<Toolset, anyhow::Error> {
        Ok(Toolset::new(
            Arc::new(Allowlist::builtin()?),
            ToolsConfig::default(),
        )?)
    }
}
