//! Every operation's `operationId`, which generated clients name their
//! functions by: the wire name where the operation has one (a command's,
//! at `…/commands/{name}` and at the routes that register; a query tool's
//! at its route), otherwise a verb and a noun.

use serde_json::{json, Map, Value};

use crate::app::registry::{wire, REGISTRY_COMMANDS};
use crate::http::decode;

/// The operations without a wire name, and the query tools' routes.
const NAMED: &[(&str, &str, &str)] = &[
    ("post", "/v1/jobs", "open_job"),
    ("get", "/v1/jobs/{job_id}", "get_job"),
    ("get", "/v1/jobs/{job_id}/events", "list_job_events"),
    ("get", "/v1/jobs/{job_id}/audit", "verify_job_chain"),
    ("get", "/v1/jobs/{job_id}/replay", "replay_job"),
    (
        "get",
        "/v1/jobs/{job_id}/transitions",
        "list_job_transitions",
    ),
    ("post", "/v1/technicians", decode::REGISTER_TECHNICIAN),
    ("get", "/v1/technicians", "find_technicians"),
    (
        "get",
        "/v1/technicians/{technician_id}/schedule",
        "get_technician_schedule",
    ),
    (
        "post",
        "/v1/technicians/{technician_id}/signin-links",
        "create_signin_link",
    ),
    ("get", "/v1/board", "search_board"),
    ("get", "/v1/billing/readiness", "get_billing_status"),
    ("get", "/v1/approvals", "list_approvals"),
    ("get", "/v1/projections", "list_projections"),
    ("get", "/v1/subscriptions", "list_subscriptions"),
    ("post", "/v1/evidence", "upload_evidence"),
    ("get", "/v1/evidence/{sha256}", "download_evidence"),
    ("get", "/v1/sops", "list_sops"),
    ("get", "/v1/sops/{incident_type}", "get_sop"),
    ("get", "/v1/customers/{customer_id}", "get_customer"),
    ("get", "/v1/sites", "find_site"),
    ("get", "/v1/sites/{site_id}", "get_site"),
    ("get", "/v1/doors/{door_id}", "get_door"),
    ("get", "/v1/doors/{door_id}/history", "get_door_history"),
    ("get", "/v1/maintenance-plans/{plan_id}", "get_plan"),
    ("get", "/v1/tools", "list_tools"),
    ("post", "/v1/tools/{tool}", "call_tool"),
    ("get", "/v1/tool-invocations", "list_tool_invocations"),
    ("post", "/mcp", "mcp"),
    ("post", "/v1/webhooks", "register_webhook"),
    ("get", "/v1/webhooks", "list_webhooks"),
    ("get", "/v1/webhooks/{webhook_id}", "get_webhook"),
    ("delete", "/v1/webhooks/{webhook_id}", "delete_webhook"),
    (
        "get",
        "/v1/webhooks/{webhook_id}/attempts",
        "list_webhook_attempts",
    ),
    (
        "get",
        "/v1/webhooks/{webhook_id}/dead-letters",
        "list_webhook_dead_letters",
    ),
    (
        "post",
        "/v1/webhooks/{webhook_id}/dead-letters/replay",
        "replay_webhook_dead_letters",
    ),
    ("post", "/v1/webhooks/{webhook_id}/replay", "replay_webhook"),
    ("post", "/v1/webhooks/{webhook_id}/enable", "enable_webhook"),
    ("get", "/healthz", "get_health"),
    ("get", "/readyz", "get_readiness"),
    ("get", "/metrics", "get_metrics"),
    ("get", "/openapi.json", "get_openapi_document"),
];

/// The operationId of `method path`, if it has one.
fn operation_id(method: &str, path: &str) -> Option<String> {
    if let Some((_, command)) = path.rsplit_once("/commands/") {
        return Some(command.to_string());
    }
    if method == "post" {
        if let Some((name, _)) = REGISTRY_COMMANDS
            .iter()
            .find(|(name, kind)| wire::registers(name) && wire::collection(*kind) == path)
        {
            return Some(name.to_string());
        }
    }
    NAMED
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, id)| id.to_string())
}

/// Gives every operation of `paths` its operationId.
///
/// # Panics
///
/// On an operation without one, or two with the same: the document's own
/// test (`tests/api/openapi.rs`) serves it.
pub(super) fn assign(paths: &mut Map<String, Value>) {
    let mut seen = std::collections::BTreeSet::new();
    for (path, item) in paths.iter_mut() {
        for (method, op) in item.as_object_mut().expect("a path item").iter_mut() {
            let id = operation_id(method, path)
                .unwrap_or_else(|| panic!("no operationId for {method} {path}"));
            assert!(seen.insert(id.clone()), "operationId {id} twice");
            op["operationId"] = json!(id);
        }
    }
}
