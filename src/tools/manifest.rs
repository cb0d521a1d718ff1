//! What a caller sees of the toolset, derived from the allowlist and the
//! schema files: the manifest of `GET /v1/tools`, the MCP tool list, and the
//! tool table of `docs/06_tool_surface.md`.

use serde_json::{json, Map, Value};

use super::allowlist::{Allowlist, Risk, ToolKind};
use super::schemas::ToolSchemas;
use crate::app::registry::wire;
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

/// Where a kind of tool comes in the docs' tables: queries, job commands,
/// registry commands.
fn kind_order(kind: ToolKind) -> u8 {
    match kind {
        ToolKind::Query => 0,
        ToolKind::Command => 1,
        ToolKind::Registry => 2,
    }
}

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
    // Queries, then job commands, then registry commands, each by name.
    tools.sort_by_key(|(name, t)| (kind_order(t.kind), (*name).clone()));
    for (name, t) in tools {
        let kind = t.kind.as_str();
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

/// What a tool wraps: the one command or query behind it.
pub fn wraps(name: &str, kind: ToolKind) -> String {
    match (kind, name) {
        (ToolKind::Command, "open_job") => "`POST /v1/jobs`".into(),
        (ToolKind::Command, n) => format!("`POST /v1/jobs/{{job_id}}/commands/{n}`"),
        (ToolKind::Query, "get_sop") => "`GET /v1/sops/{incident_type}`".into(),
        (ToolKind::Query, "get_job") => "`GET /v1/jobs/{job_id}`".into(),
        (ToolKind::Query, "search_board") => "`GET /v1/board`".into(),
        (ToolKind::Query, "find_technicians") => "`GET /v1/technicians`".into(),
        (ToolKind::Query, "get_billing_status") => "`GET /v1/billing/readiness`".into(),
        (ToolKind::Query, "find_site") => "`GET /v1/sites?q=`".into(),
        (ToolKind::Query, "get_door") => "`GET /v1/doors/{door_id}`".into(),
        (ToolKind::Query, "get_door_history") => "`GET /v1/doors/{door_id}/history`".into(),
        (ToolKind::Query, n) => format!("query `{n}`"),
        (ToolKind::Registry, n) => match wire::command_kind(n) {
            Some(kind) if wire::registers(n) => format!("`POST {}`", wire::collection(kind)),
            Some(kind) => format!(
                "`POST {}/{{{}}}/commands/{n}`",
                wire::collection(kind),
                wire::id_field(kind)
            ),
            None => format!("registry command `{n}`"),
        },
    }
}

/// A schema in a few characters: `string`, `P1|P2`, `{id, name}`, `[{…}]`.
fn shorthand(schema: &Value) -> String {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\\|");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => match schema.get("additionalProperties") {
            Some(Value::Object(_)) => "{field → string\\|boolean\\|integer}".into(),
            _ => format!("{{{}}}", argument_list(schema)),
        },
        Some("array") => format!(
            "[{}]",
            schema.get("items").map(shorthand).unwrap_or_default()
        ),
        Some("string") if schema.get("format").and_then(Value::as_str) == Some("uuid") => {
            "uuid".into()
        }
        Some("string") if schema.get("format").and_then(Value::as_str) == Some("date-time") => {
            "date-time".into()
        }
        Some("string") if schema.get("maxLength") == Some(&json!(4096)) => "text".into(),
        Some("string") if schema.get("maxLength") == Some(&json!(200)) => "id".into(),
        Some(t) => t.to_string(),
        None => "any".into(),
    }
}

fn argument_list(schema: &Value) -> String {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut names: Vec<(&String, &Value)> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    // job_id first, then required, then optional, each by name.
    names.sort_by_key(|(n, _)| {
        (
            n.as_str() != "job_id",
            !required.contains(&n.as_str()),
            (*n).clone(),
        )
    });
    names
        .iter()
        .map(|(n, sub)| {
            let opt = if required.contains(&n.as_str()) {
                ""
            } else {
                "?"
            };
            let short = shorthand(sub);
            if matches!(
                short.as_str(),
                "text" | "id" | "uuid" | "integer" | "boolean" | "number" | "date-time"
            ) {
                format!("{n}{opt}")
            } else {
                format!("{n}{opt}: {short}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The argument table of `docs/06_tool_surface.md`, from the schema files.
pub fn docs_arguments(allowlist: &Allowlist, schemas: &ToolSchemas) -> String {
    let mut out =
        String::from("| tool | wraps | arguments (`?` optional) |\n| --- | --- | --- |\n");
    let mut tools: Vec<_> = allowlist.tools.iter().collect();
    tools.sort_by_key(|(name, t)| (kind_order(t.kind), (*name).clone()));
    for (name, t) in tools {
        let args = schemas
            .document(name)
            .map(|d| argument_list(d))
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{name}` | {} | {} |\n",
            wraps(name, t.kind),
            if args.is_empty() {
                "—".into()
            } else {
                format!("`{args}`")
            }
        ));
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
