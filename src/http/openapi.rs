//! The OpenAPI 3.1 document, generated from the code (see `document`).

use serde_json::{json, Value};

use crate::tools::allowlist::Allowlist;

/// The OpenAPI document the service serves at `/openapi.json`.
pub fn document(_allowlist: &Allowlist) -> Value {
    json!({"openapi": "3.1.0", "info": {"title": "dispatch-api", "version": env!("CARGO_PKG_VERSION")}, "paths": {}})
}
