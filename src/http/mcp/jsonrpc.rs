//! JSON-RPC 2.0 error answers where rmcp gives none or the wrong one
//! (docs/06, "Error codes per transport").
//!
//! - A body that is not JSON at all: rmcp answers `415` with plain text
//!   ("fail to deserialize request body"). JSON-RPC says `-32700 Parse
//!   error`, and the streamable HTTP transport lets the HTTP error carry a
//!   JSON-RPC error without an id: [`parse_errors`] answers `400` with
//!   `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,…}}`; JSON that is
//!   no JSON-RPC message (an object without `jsonrpc`/`method`, a batch) is
//!   `-32600 Invalid Request` the same way, with its `id` when it has one.
//! - A request for a method the server serves whose `params` do not fit
//!   (`tools/call` without `name`, with `arguments` that is not an object):
//!   rmcp's typed decoding falls through to a custom request, which it
//!   would answer `-32601 Method not found`; [`invalid_params`] answers
//!   `-32602 Invalid params` naming the parameter.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestMethod, ConstString, CustomRequest, DiscoverRequestMethod, ErrorCode,
    InitializeRequestParams, InitializeResultMethod, ListToolsRequestMethod,
    PaginatedRequestParams, PingRequestMethod,
};
use rmcp::ErrorData;
use serde_json::{json, Value};

use crate::http::AppState;

/// The methods this server serves (the `tools` capability and the
/// lifecycle): a request for one of them that reached the handler as a
/// custom request had params that do not fit.
const SERVED_METHODS: &[&str] = &[
    InitializeResultMethod::VALUE,
    PingRequestMethod::VALUE,
    DiscoverRequestMethod::VALUE,
    ListToolsRequestMethod::VALUE,
    CallToolRequestMethod::VALUE,
];

/// The answer to a request rmcp could not decode into a typed one:
/// `-32602 Invalid params` for a method this server serves, `-32601 Method
/// not found` otherwise (as rmcp would answer).
pub fn invalid_params(request: &CustomRequest) -> ErrorData {
    let method = request.method.as_str();
    if !SERVED_METHODS.contains(&method) {
        return ErrorData::new(ErrorCode::METHOD_NOT_FOUND, method.to_string(), None);
    }
    let params = request.params.as_ref();
    let (message, field) = if method == CallToolRequestMethod::VALUE {
        call_tool_problem(params)
    } else {
        let problem = match method {
            m if m == InitializeResultMethod::VALUE => {
                typed_problem::<InitializeRequestParams>(params)
            }
            m if m == ListToolsRequestMethod::VALUE => {
                typed_problem::<PaginatedRequestParams>(params)
            }
            _ => None,
        };
        let detail = problem.unwrap_or_else(|| "they do not fit the method".to_string());
        (format!("Invalid params for `{method}`: {detail}"), None)
    };
    ErrorData::invalid_params(message, field.map(|f| json!({ "field": f })))
}

/// What is wrong with a `tools/call`'s params, and the parameter to blame.
fn call_tool_problem(params: Option<&Value>) -> (String, Option<&'static str>) {
    let Some(obj) = params.and_then(Value::as_object) else {
        return (
            "Invalid params: tools/call needs params {\"name\": the tool, \"arguments\": {…}}"
                .to_string(),
            None,
        );
    };
    match obj.get("name") {
        Some(Value::String(_)) => {}
        None | Some(Value::Null) => {
            return (
                "Invalid params: `name` is required (the tool to call, a string)".to_string(),
                Some("name"),
            )
        }
        Some(_) => {
            return (
                "Invalid params: `name` must be a string (the tool to call)".to_string(),
                Some("name"),
            )
        }
    }
    match obj.get("arguments") {
        None | Some(Value::Null | Value::Object(_)) => {}
        Some(_) => {
            return (
                "Invalid params: `arguments` must be an object (the tool's arguments by name)"
                    .to_string(),
                Some("arguments"),
            )
        }
    }
    let detail = typed_problem::<rmcp::model::CallToolRequestParams>(params)
        .unwrap_or_else(|| "they do not fit tools/call".to_string());
    (format!("Invalid params for `tools/call`: {detail}"), None)
}

/// serde's reason why `params` are not a `T`, bounded; `None` if they are.
fn typed_problem<T: serde::de::DeserializeOwned>(params: Option<&Value>) -> Option<String> {
    let value = params.cloned().unwrap_or_else(|| json!({}));
    serde_json::from_value::<T>(value)
        .err()
        .map(|e| e.to_string().chars().take(200).collect())
}

/// Whether a request's `Content-Type` is JSON as rmcp checks it (the
/// essence `application/json`; rmcp refuses anything else `415` itself).
fn json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
}

/// Reads a POST's JSON body (within the body limit, as rmcp would), hands
/// it on, and turns rmcp's `415` for a body that would not decode into
/// the JSON-RPC error the body earns: `-32700` when it is not JSON,
/// `-32600` when it is JSON but no JSON-RPC message.
pub async fn parse_errors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST || !json_content_type(request.headers()) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let limit = state.limits.max_body_bytes;
    let Ok(bytes) = to_bytes(body, limit).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("Payload Too Large: request body exceeds {limit} bytes"),
        )
            .into_response();
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    if response.status() != StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return response;
    }
    let mut response = (StatusCode::BAD_REQUEST, jsonrpc_error(&bytes).to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The JSON-RPC error for a body rmcp could not decode.
fn jsonrpc_error(bytes: &[u8]) -> Value {
    let (id, code, message) = match serde_json::from_slice::<Value>(bytes) {
        Err(e) => (
            Value::Null,
            ErrorCode::PARSE_ERROR,
            format!(
                "Parse error: the body is not JSON ({})",
                e.to_string().chars().take(200).collect::<String>()
            ),
        ),
        Ok(value) => {
            let id = match value.get("id") {
                Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
                _ => Value::Null,
            };
            let message = if value.is_array() {
                "Invalid Request: batches are not accepted; send one JSON-RPC message per POST"
            } else {
                "Invalid Request: not a JSON-RPC 2.0 request, notification or response (`jsonrpc` must be \"2.0\", with a `method` or a `result`/`error`)"
            };
            (id, ErrorCode::INVALID_REQUEST, message.to_string())
        }
    };
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code.0, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(method: &str, params: Value) -> CustomRequest {
        CustomRequest::new(method, Some(params))
    }

    #[test]
    fn a_served_method_with_params_that_do_not_fit_is_invalid_params() {
        for (params, field) in [
            (json!({"arguments": {}}), Some("name")),
            (json!({"name": 7}), Some("name")),
            (
                json!({"name": "add_note", "arguments": []}),
                Some("arguments"),
            ),
            (
                json!({"name": "add_note", "arguments": "x"}),
                Some("arguments"),
            ),
            (json!([1]), None),
        ] {
            let e = invalid_params(&custom("tools/call", params.clone()));
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{params}");
            assert_eq!(
                e.data.as_ref().and_then(|d| d["field"].as_str()),
                field,
                "{params}"
            );
            assert!(!e.message.contains("Some("), "{}", e.message);
        }
        let e = invalid_params(&custom("tools/list", json!({"cursor": 5})));
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains("tools/list"), "{}", e.message);
        let e = invalid_params(&custom("no/such/method", json!({})));
        assert_eq!(e.code, ErrorCode::METHOD_NOT_FOUND);
    }

    #[test]
    fn an_undecodable_body_gets_the_jsonrpc_error_it_earns() {
        for (body, code, id) in [
            (&b"{not json"[..], -32700, Value::Null),
            (b"", -32700, Value::Null),
            (br#"{"hello":"world"}"#, -32600, Value::Null),
            (br#"{"id":"a","method":7}"#, -32600, json!("a")),
            (
                br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
                -32600,
                Value::Null,
            ),
        ] {
            let e = jsonrpc_error(body);
            assert_eq!(e["jsonrpc"], "2.0");
            assert_eq!(e["error"]["code"], code, "{e}");
            assert_eq!(e["id"], id, "{e}");
            assert!(e["error"]["message"].is_string());
        }
    }
}
