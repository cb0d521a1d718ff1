//! The closed toolset: the declarative allowlist every access check derives
//! from, the tools' input schemas, the manifest, the one gate (allowlist and
//! per-key rate limit, [`gate`]) and the invocation log. The transports (REST
//! under `/v1`, `POST /v1/tools/{tool}`, MCP at `/mcp`, the pages' forms)
//! live in `crate::http`; every one of them passes [`gate::Gate`].

pub mod allowlist;
pub mod gate;
pub mod log;
pub mod manifest;
pub mod rate_limit;
pub mod schemas;

use std::sync::Arc;

use allowlist::{Allowlist, ToolKind};
use gate::Gate;
use schemas::{SchemaError, ToolSchemas};

/// The query tools the invocation path knows how to run; a query tool in the
/// allowlist outside this list refuses start-up.
pub const QUERY_TOOLS: &[&str] = &[
    "get_sop",
    "get_job",
    "search_board",
    "find_technicians",
    "get_billing_status",
    "find_site",
    "get_door",
    "get_door_history",
];

/// Tool settings (from `ServeConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolsConfig {
    /// Sustained calls per key per minute, every transport together (0: no limit).
    pub rate_per_minute: u32,
    /// Calls a key may make at once before the rate applies.
    pub rate_burst: u32,
    /// `Host` values `/mcp` accepts (DNS-rebinding protection); `*` accepts any.
    pub mcp_allowed_hosts: Vec<String>,
    /// `Origin` values `/mcp` accepts when a request carries one
    /// (`scheme://host` accepts any port, `scheme://host:port` that port
    /// only); `*` accepts any.
    pub mcp_allowed_origins: Vec<String>,
}

/// The `Origin` values `/mcp` accepts by default: this machine, any port.
pub const DEFAULT_MCP_ALLOWED_ORIGINS: &str = "http://localhost,https://localhost,http://127.0.0.1,https://127.0.0.1,http://[::1],https://[::1]";

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            rate_per_minute: 600,
            rate_burst: 60,
            mcp_allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            mcp_allowed_origins: DEFAULT_MCP_ALLOWED_ORIGINS
                .split(',')
                .map(str::to_string)
                .collect(),
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
    /// The one gate: the allowlist and the per-key call budget, for every transport.
    pub gate: Gate,
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
            gate: Gate::new(allowlist.clone(), config.rate_per_minute, config.rate_burst),
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
