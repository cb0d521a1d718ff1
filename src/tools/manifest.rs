//! What a caller sees of the toolset, derived from the allowlist and the
//! schema files: the manifest of `GET /v1/tools`, the MCP tool list, and the
//! tool table of `docs/06_tool_surface.md`.

use serde_json::{json, Map, Value};

use super::allowlist::{Allowlist, Risk, ToolKind};
use super::schemas::ToolSchemas;
use crate::domain::Role;

/// The MCP argument that carries the idempotency key (the HTTP envelope has
/// its own field).
pub const MCP_IDEMPOTENCY_ARGUMENT: &str = "idempotency_key";

impl Risk {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Read => "read",
            Risk::Write => "write",
            Risk::NeedsApproval => "needs_approval",
        }
    }
}

/// The manifest for a role: `name`, `description`, `input_schema`, `risk`, by name.
pub fn manifest(allowlist: &Allowlist, schemas: &ToolSchemas, role: Role) -> Vec<Value> {
    allowlist
        .tools_for(role)
        .map(|(name, entry)| {
            json!({
                "name": name,
                "description": entry.description,
                "input_schema": schemas.document(name).map(|d| (**d).clone()).unwrap_or(Value::Null),
                "risk": entry.risk.as_str(),
            })
        })
        .collect()
}

/// A tool's MCP input schema: its schema file plus the required
/// `idempotency_key` argument.
pub fn mcp_input_schema(schemas: &ToolSchemas, tool: &str) -> Map<String, Value> {
    let mut doc = schemas
        .document(tool)
        .and_then(|d| d.as_object().cloned())
        .unwrap_or_default();
    doc.remove("$id");
    if let Some(Value::Object(props)) = doc.get_mut("properties") {
        props.insert(
            MCP_IDEMPOTENCY_ARGUMENT.into(),
            json!({
                "description": "Your idempotency key for this call (1-200 printable ASCII characters): a retry with the same key and arguments returns the first answer and changes nothing; derive it from your run and tool-call ids.",
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "pattern": "^[ -~]+$"
            }),
        );
    }
    let required = doc.entry("required").or_insert_with(|| json!([]));
    if let Value::Array(r) = required {
        r.push(MCP_IDEMPOTENCY_ARGUMENT.into());
    }
    doc
}

/// The roles shown in the docs table, in column order.
const DOC_ROLES: [Role; 6] = [
    Role::Agent,
    Role::Dispatcher,
    Role::Technician,
    Role::Auditor,
    Role::Admin,
    Role::System,
];

/// The tool table of `docs/06_tool_surface.md` (markdown), from the allowlist.
pub fn docs_table(allowlist: &Allowlist) -> String {
    let mut out = String::from("| tool | kind | risk | destructive |");
    for r in DOC_ROLES {
        out.push_str(&format!(" {} |", r.as_str()));
    }
    out.push_str(" what it does |\n| --- | --- | --- | --- |");
    for _ in DOC_ROLES {
        out.push_str(" :-: |");
    }
    out.push_str(" --- |\n");
    let mut tools: Vec<_> = allowlist.tools.iter().collect();
    // Queries first, then commands, each by name: the order the manifest uses within a kind.
    tools.sort_by_key(|(name, t)| (t.kind == ToolKind::Command, (*name).clone()));
    for (name, t) in tools {
        let kind = match t.kind {
            ToolKind::Command => "command",
            ToolKind::Query => "query",
        };
        out.push_str(&format!(
            "| `{name}` | {kind} | `{}` | {} |",
            t.risk.as_str(),
            if t.destructive { "yes" } else { "" }
        ));
        for r in DOC_ROLES {
            out.push_str(if t.roles.contains(&r) { " ✓ |" } else { " |" });
        }
        out.push_str(&format!(" {} |\n", t.description));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_never_sees_decide_approval_or_close_job() {
        let list = Allowlist::builtin().unwrap();
        let schemas = ToolSchemas::load(&list).unwrap();
        let names: Vec<String> = manifest(&list, &schemas, Role::Agent)
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        assert!(names.contains(&"open_job".to_string()));
        assert!(!names.contains(&"decide_approval".to_string()));
        assert!(!names.contains(&"close_job".to_string()));
        for t in manifest(&list, &schemas, Role::Agent) {
            assert!(t["input_schema"].is_object());
        }
    }

    #[test]
    fn mcp_schema_requires_the_idempotency_key() {
        let list = Allowlist::builtin().unwrap();
        let schemas = ToolSchemas::load(&list).unwrap();
        let s = mcp_input_schema(&schemas, "get_sop");
        assert!(s["required"]
            .as_array()
            .unwrap()
            .contains(&json!("idempotency_key")));
        assert_eq!(s["additionalProperties"], false);
        assert!(s["properties"]["incident_type"].is_object());
    }
}
