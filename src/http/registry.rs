//! The registry over REST: `/v1/customers`, `/v1/sites`, `/v1/doors` and
//! `/v1/maintenance-plans` — register one (`POST` on the collection), run
//! any other registry command on one by its wire name (`POST
//! …/{id}/commands/{command}`), read one (`GET …/{id}`), and find sites
//! (`GET /v1/sites?q=`, `find_site`). The gate (`super::gate`) named each
//! request after its command or query and checked its allowlist entry;
//! the application ([`App::registry_command`](crate::app::App::registry_command))
//! runs the command, idempotent under its key.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::decode;
use super::extract::{mutation_meta, read_json};
use super::gate::{Asked, Operation, OwnedAccess};
use super::{query_params, reply_response, AppState};
use crate::app::registry::{wire, REGISTRY_COMMANDS};
use crate::app::Caller;
use crate::domain::registry::Kind;
use crate::error::{ApiError, Result};

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/customers", post(register_customer))
        .route("/v1/customers/{customer_id}", get(get_customer))
        .route(
            "/v1/customers/{customer_id}/commands/{command}",
            post(customer_command),
        )
        .route("/v1/sites", post(register_site).get(find_site))
        .route("/v1/sites/{site_id}", get(get_site))
        .route("/v1/sites/{site_id}/commands/{command}", post(site_command))
        .route("/v1/doors", post(register_door))
        .route("/v1/doors/{door_id}", get(get_door))
        .route("/v1/doors/{door_id}/commands/{command}", post(door_command))
        .route("/v1/maintenance-plans", post(create_plan))
        .route("/v1/maintenance-plans/{plan_id}", get(get_plan))
        .route(
            "/v1/maintenance-plans/{plan_id}/commands/{command}",
            post(plan_command),
        )
}

/// The operation the gate (`super::gate`) names a registry request after,
/// or `None` for a route outside the registry: a registry command is the
/// tool of its wire name (`POST /v1/doors` is `register_door`, `POST
/// /v1/doors/{door_id}/commands/update_door` is `update_door`), admitted by
/// its `[tools.…]` entry; `GET /v1/sites` is `find_site` and `GET
/// /v1/doors/{door_id}` is `get_door`; the other reads are endpoints. A
/// command path naming no command of its kind is the handler's (404).
pub(super) fn operation(
    get: bool,
    post: bool,
    route: &str,
    command: Option<&str>,
) -> Option<Operation> {
    let kind = Kind::ALL.into_iter().find(|k| {
        let collection = wire::collection(*k);
        route == collection || route.starts_with(&format!("{collection}/"))
    })?;
    let tool = |name: &str| Operation {
        name: name.to_string(),
        access: OwnedAccess::Tool(name.to_string()),
        fast_path: false,
    };
    let by = |access: OwnedAccess, name: String| Operation {
        name,
        access,
        fast_path: false,
    };
    let id = wire::id_field(kind);
    let collection = wire::collection(kind);
    let entry = format!("{collection}/{{{id}}}");
    if route == collection && post {
        let (name, _) = REGISTRY_COMMANDS
            .iter()
            .find(|(n, k)| *k == kind && wire::registers(n))?;
        Some(tool(name))
    } else if route == collection && get && kind == Kind::Site {
        Some(tool("find_site"))
    } else if route == entry && get && kind == Kind::Door {
        Some(tool("get_door"))
    } else if route == format!("{entry}/history") && get && kind == Kind::Door {
        // `get_door_history`'s route (`src/http/doors_history.rs`): the
        // tool's roles, as `GET /v1/board` has `search_board`'s.
        Some(tool("get_door_history"))
    } else if route == entry && get {
        let key = format!("GET {route}");
        Some(by(OwnedAccess::Endpoint(key.clone()), key))
    } else if route == format!("{entry}/commands/{{command}}") && post {
        Some(match command {
            Some(c) if wire::is_entry_command(kind, c) => tool(c),
            _ => by(OwnedAccess::Handler, format!("POST {route}")),
        })
    } else {
        None
    }
}

/// Runs registry command `name` with the request's body on entry `id`
/// (`None`: it registers one), answering as every mutation does.
#[allow(clippy::too_many_arguments)]
async fn run(
    state: &AppState,
    caller: &Caller,
    asked: &Asked,
    name: &str,
    id: Option<&str>,
    path: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let value = read_json(headers, body, state.limits.max_body_bytes).await?;
    asked.body(&value);
    let meta = mutation_meta(headers, "POST", path, &value)?;
    let command = decode::registry_command(name, value)?;
    let reply = state
        .app
        .registry_command(caller, &meta, id, command)
        .await?;
    Ok(reply_response(reply))
}

/// `POST {collection}`: the kind's registering command.
async fn register(
    state: AppState,
    caller: Caller,
    asked: Asked,
    name: &str,
    kind: Kind,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let path = wire::collection(kind);
    run(&state, &caller, &asked, name, None, path, &headers, body).await
}

/// `POST {collection}/{id}/commands/{command}`: a command of that kind on
/// an existing entry; any other name is 404.
#[allow(clippy::too_many_arguments)]
async fn entry_command(
    state: AppState,
    caller: Caller,
    asked: Asked,
    kind: Kind,
    id: String,
    command: String,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    if !wire::is_entry_command(kind, &command) {
        return Err(ApiError::NotFound(format!(
            "no {} command named `{}`",
            kind.as_str(),
            decode::echo(&command)
        )));
    }
    let path = format!("{}/{id}/commands/{command}", wire::collection(kind));
    run(
        &state,
        &caller,
        &asked,
        &command,
        Some(&id),
        &path,
        &headers,
        body,
    )
    .await
}

async fn register_customer(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let name = "register_customer";
    register(state, caller, asked, name, Kind::Customer, headers, body).await
}

async fn register_site(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    register(
        state,
        caller,
        asked,
        "register_site",
        Kind::Site,
        headers,
        body,
    )
    .await
}

async fn register_door(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    register(
        state,
        caller,
        asked,
        "register_door",
        Kind::Door,
        headers,
        body,
    )
    .await
}

async fn create_plan(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let kind = Kind::MaintenancePlan;
    register(state, caller, asked, "create_plan", kind, headers, body).await
}

async fn customer_command(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    Path((id, command)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let kind = Kind::Customer;
    entry_command(state, caller, asked, kind, id, command, headers, body).await
}

async fn site_command(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    Path((id, command)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let kind = Kind::Site;
    entry_command(state, caller, asked, kind, id, command, headers, body).await
}

async fn door_command(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    Path((id, command)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let kind = Kind::Door;
    entry_command(state, caller, asked, kind, id, command, headers, body).await
}

async fn plan_command(
    State(state): State<AppState>,
    caller: Caller,
    asked: Asked,
    Path((id, command)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let kind = Kind::MaintenancePlan;
    entry_command(state, caller, asked, kind, id, command, headers, body).await
}

async fn get_customer(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(state.app.registry_entry(Kind::Customer, &id).await?))
}

async fn get_site(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(state.app.registry_entry(Kind::Site, &id).await?))
}

async fn get_door(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(state.app.registry_entry(Kind::Door, &id).await?))
}

async fn get_plan(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let kind = Kind::MaintenancePlan;
    Ok(Json(state.app.registry_entry(kind, &id).await?))
}

/// `GET /v1/sites?q=TEXT&limit=N`: `find_site`.
async fn find_site(
    State(state): State<AppState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    let params = query_params(query.as_deref(), &["q", "limit"])?;
    let q = params.get("q").ok_or_else(|| ApiError::Validation {
        detail: "q (what to look for: a site's name, address or reference) is required".into(),
        field: Some("q".into()),
    })?;
    let limit = params
        .get("limit")
        .map(|s| {
            s.parse::<i64>().map_err(|_| ApiError::Validation {
                detail: "limit must be a whole number from 1 to 50".into(),
                field: Some("limit".into()),
            })
        })
        .transpose()?;
    Ok(Json(state.app.find_site(q, limit).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(post: bool, route: &str, command: Option<&str>) -> Option<(String, OwnedAccess)> {
        operation(!post, post, route, command).map(|o| (o.name, o.access))
    }

    fn tool(name: &str) -> Option<(String, OwnedAccess)> {
        Some((name.into(), OwnedAccess::Tool(name.into())))
    }

    #[test]
    fn the_gate_names_each_registry_request_by_its_wire_name() {
        let door = "/v1/doors/{door_id}/commands/{command}";
        assert_eq!(op(true, door, Some("update_door")), tool("update_door"));
        for (route, command) in [
            (door, "update_site"),
            (door, "register_door"),
            (
                "/v1/sites/{site_id}/commands/{command}",
                "approve_everything",
            ),
        ] {
            assert_eq!(
                op(true, route, Some(command)),
                Some((format!("POST {route}"), OwnedAccess::Handler)),
                "{route} {command}"
            );
        }
        for (route, name) in [
            ("/v1/customers", "register_customer"),
            ("/v1/sites", "register_site"),
            ("/v1/doors", "register_door"),
            ("/v1/maintenance-plans", "create_plan"),
        ] {
            assert_eq!(op(true, route, None), tool(name));
        }
        assert_eq!(op(false, "/v1/sites", None), tool("find_site"));
        assert_eq!(op(false, "/v1/doors/{door_id}", None), tool("get_door"));
        assert_eq!(
            op(false, "/v1/doors/{door_id}/history", None),
            tool("get_door_history")
        );
        for route in [
            "/v1/customers/{customer_id}",
            "/v1/sites/{site_id}",
            "/v1/maintenance-plans/{plan_id}",
        ] {
            let key = format!("GET {route}");
            assert_eq!(
                op(false, route, None),
                Some((key.clone(), OwnedAccess::Endpoint(key)))
            );
        }
        assert_eq!(op(false, "/v1/customers", None), None);
        assert_eq!(op(false, "/v1/sites/{site_id}/history", None), None);
        assert_eq!(op(true, "/v1/jobs", None), None);
    }
}
