//! Loads and validates `allowlist.toml`: tool × role, endpoint × role.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::app::registry::REGISTRY_COMMANDS;
use crate::domain::job::transitions::TRANSITIONS;
use crate::domain::job::{DESTRUCTIVE_EVENTS, JOB_COMMANDS};
use crate::domain::Role;

/// The allowlist as shipped with the service.
pub const ALLOWLIST_TOML: &str = include_str!("allowlist.toml");

/// How risky a tool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Reads only.
    Read,
    /// Changes state.
    Write,
    /// The agent's call only requests; a person decides.
    NeedsApproval,
}

/// Job command, registry command or query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    /// Wraps the job command of the same name.
    Command,
    /// Wraps a query.
    Query,
    /// Wraps the registry command of the same name (customers, sites,
    /// doors, maintenance plans: `crate::app::registry`).
    Registry,
}

impl ToolKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolKind::Command => "command",
            ToolKind::Query => "query",
            ToolKind::Registry => "registry",
        }
    }
}

/// One tool's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolEntry {
    /// Command or query.
    pub kind: ToolKind,
    /// Risk.
    pub risk: Risk,
    /// What it does (shown to the agent).
    pub description: String,
    /// Who may call it.
    pub roles: BTreeSet<Role>,
    /// Whether it can end a job or undo recorded progress (MCP's
    /// `destructiveHint`); only meaningful for commands.
    #[serde(default)]
    pub destructive: bool,
}

/// One endpoint's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointEntry {
    /// Who may call it.
    pub roles: BTreeSet<Role>,
}

/// The whole allowlist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowlist {
    /// By tool name.
    pub tools: BTreeMap<String, ToolEntry>,
    /// By `METHOD /path/{param}`.
    pub endpoints: BTreeMap<String, EndpointEntry>,
}

/// An allowlist that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    /// Not valid TOML or not the expected shape.
    #[error("allowlist: {0}")]
    Parse(#[from] toml::de::Error),
    /// A rule the service refuses to start with.
    #[error("allowlist: {0}")]
    Invalid(String),
}

/// Whether any row of the state machine for `command` yields an event of
/// [`DESTRUCTIVE_EVENTS`]: the allowlist's `destructive` flag must say the
/// same, so the flag shown to MCP clients and the domain's destructive rule
/// are one fact.
fn yields_destructive(command: &str) -> bool {
    TRANSITIONS
        .iter()
        .filter(|t| t.command == command)
        .flat_map(|t| t.events.iter())
        .flat_map(|e| e.split('|'))
        .any(|e| DESTRUCTIVE_EVENTS.contains(&e))
}

impl Allowlist {
    /// Parses and validates.
    pub fn parse(text: &str) -> Result<Allowlist, AllowlistError> {
        let list: Allowlist = toml::from_str(text)?;
        for (name, tool) in &list.tools {
            if tool.kind == ToolKind::Command && !JOB_COMMANDS.contains(&name.as_str()) {
                return Err(AllowlistError::Invalid(format!(
                    "tool `{name}` is a command, but no job command has that name"
                )));
            }
            if tool.kind == ToolKind::Registry && !REGISTRY_COMMANDS.iter().any(|(n, _)| n == name)
            {
                return Err(AllowlistError::Invalid(format!(
                    "tool `{name}` is a registry command, but no registry command has that name"
                )));
            }
            // Retiring an entry cannot be undone; nothing else in the
            // registry removes anything.
            if tool.kind == ToolKind::Registry && tool.destructive != name.starts_with("retire_") {
                return Err(AllowlistError::Invalid(format!(
                    "registry tool `{name}`: only the retire commands are destructive"
                )));
            }
            if tool.kind == ToolKind::Registry && tool.risk != Risk::Write {
                return Err(AllowlistError::Invalid(format!(
                    "registry tool `{name}` must have risk `write`"
                )));
            }
            if tool.kind == ToolKind::Query && tool.risk != Risk::Read {
                return Err(AllowlistError::Invalid(format!(
                    "query tool `{name}` must have risk `read`"
                )));
            }
            if tool.kind == ToolKind::Query && tool.destructive {
                return Err(AllowlistError::Invalid(format!(
                    "query tool `{name}` cannot be destructive"
                )));
            }
            if tool.kind == ToolKind::Command && tool.destructive != yields_destructive(name) {
                return Err(AllowlistError::Invalid(format!(
                    "tool `{name}`: `destructive = {}` disagrees with the state machine, whose events for it {} one that ends a job or discards recorded work",
                    tool.destructive,
                    if tool.destructive { "include no" } else { "include" }
                )));
            }
            if tool.roles.is_empty() {
                return Err(AllowlistError::Invalid(format!(
                    "tool `{name}` names no role"
                )));
            }
        }
        for forbidden in ["decide_approval", "close_job"] {
            if list
                .tools
                .get(forbidden)
                .is_some_and(|t| t.roles.contains(&Role::Agent))
            {
                return Err(AllowlistError::Invalid(format!(
                    "the agent may never hold `{forbidden}`"
                )));
            }
        }
        for command in JOB_COMMANDS {
            if !list.tools.contains_key(*command) {
                return Err(AllowlistError::Invalid(format!(
                    "job command `{command}` has no entry"
                )));
            }
        }
        for (command, _) in REGISTRY_COMMANDS {
            if list.tools.get(*command).map(|t| t.kind) != Some(ToolKind::Registry) {
                return Err(AllowlistError::Invalid(format!(
                    "registry command `{command}` has no entry of kind `registry`"
                )));
            }
        }
        Ok(list)
    }

    /// The shipped allowlist.
    pub fn builtin() -> Result<Allowlist, AllowlistError> {
        Allowlist::parse(ALLOWLIST_TOML)
    }

    /// Whether a role may call a tool (or the job command of that name).
    pub fn tool_allowed(&self, tool: &str, role: Role) -> bool {
        self.tools
            .get(tool)
            .is_some_and(|t| t.roles.contains(&role))
    }

    /// Whether a role may call an endpoint (`METHOD /path/{param}`).
    pub fn endpoint_allowed(&self, endpoint: &str, role: Role) -> bool {
        self.endpoints
            .get(endpoint)
            .is_some_and(|e| e.roles.contains(&role))
    }

    /// The tools a role may call, by name.
    pub fn tools_for(&self, role: Role) -> impl Iterator<Item = (&String, &ToolEntry)> {
        self.tools
            .iter()
            .filter(move |(_, t)| t.roles.contains(&role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_allowlist_is_valid() {
        let list = Allowlist::builtin().unwrap();
        assert!(list.tool_allowed("open_job", Role::Agent));
        assert!(!list.tool_allowed("decide_approval", Role::Agent));
        assert!(!list.tool_allowed("close_job", Role::Agent));
    }

    #[test]
    fn destructive_flags_follow_the_state_machine() {
        let list = Allowlist::builtin().unwrap();
        for (name, tool) in &list.tools {
            if tool.kind == ToolKind::Command {
                assert_eq!(tool.destructive, yields_destructive(name), "{name}");
            }
        }
        assert!(yields_destructive("cancel_job") && yields_destructive("resolve_duplicate"));
        assert!(!yields_destructive("add_note"));
        let text = ALLOWLIST_TOML.replacen(
            "roles = [\"agent\", \"dispatcher\", \"admin\"]\ndestructive = true",
            "roles = [\"agent\", \"dispatcher\", \"admin\"]",
            1,
        );
        assert_ne!(text, ALLOWLIST_TOML);
        assert!(matches!(
            Allowlist::parse(&text),
            Err(AllowlistError::Invalid(_))
        ));
    }

    #[test]
    fn registry_entries_name_registry_commands() {
        let list = Allowlist::builtin().unwrap();
        for (name, _) in REGISTRY_COMMANDS {
            assert_eq!(list.tools[*name].kind, ToolKind::Registry, "{name}");
        }
        assert!(list.tool_allowed("register_door", Role::Agent));
        assert!(!list.tool_allowed("register_customer", Role::Agent));
        assert!(list.tool_allowed("update_door", Role::Technician));
        assert!(!list.tool_allowed("set_door_status", Role::Technician));
        let renamed = ALLOWLIST_TOML.replacen(
            "[tools.register_customer]",
            "[tools.register_everything]",
            1,
        );
        assert!(matches!(
            Allowlist::parse(&renamed),
            Err(AllowlistError::Invalid(_))
        ));
        let loose = ALLOWLIST_TOML.replacen(
            "[tools.move_door]\nkind = \"registry\"",
            "[tools.move_door]\nkind = \"command\"",
            1,
        );
        assert_ne!(loose, ALLOWLIST_TOML);
        assert!(matches!(
            Allowlist::parse(&loose),
            Err(AllowlistError::Invalid(_))
        ));
    }

    #[test]
    fn agent_may_never_decide_approvals() {
        let text = ALLOWLIST_TOML.replace(
            "roles = [\"dispatcher\", \"admin\"]\n\n[tools.schedule_return_visit]",
            "roles = [\"agent\", \"dispatcher\", \"admin\"]\n\n[tools.schedule_return_visit]",
        );
        let text = text.replacen(
            "description = \"Approve (carrying out the requested effect) or reject a pending approval. People only; never your own request.\"\nroles = [\"dispatcher\", \"admin\"]",
            "description = \"x\"\nroles = [\"agent\"]",
            1,
        );
        assert!(matches!(
            Allowlist::parse(&text),
            Err(AllowlistError::Invalid(_))
        ));
    }
}
