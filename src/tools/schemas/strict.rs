//! The strictness every tool schema must have before the service starts:
//! objects closed (or maps with named keys and a bound), strings, numbers
//! and arrays bounded.

use serde_json::{Map, Value};

/// Every way a schema is not strict enough: objects closed (or maps with
/// named keys and a bound), strings, numbers and arrays bounded.
pub fn strictness_problems(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    lint(schema, "#", &mut out);
    out
}

fn lint(schema: &Value, at: &str, out: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else {
        out.push(format!("{at}: a subschema must be an object"));
        return;
    };
    if let Some(any) = obj.get("anyOf").and_then(Value::as_array) {
        for (i, s) in any.iter().enumerate() {
            lint(s, &format!("{at}/anyOf/{i}"), out);
        }
        return;
    }
    if obj.contains_key("enum") {
        return;
    }
    match obj.get("type").and_then(Value::as_str) {
        Some("object") => lint_object(obj, at, out),
        Some("string") => {
            if !obj.contains_key("maxLength") {
                out.push(format!("{at}: a string needs maxLength"));
            }
        }
        Some("integer" | "number") => {
            if !obj.contains_key("minimum") || !obj.contains_key("maximum") {
                out.push(format!("{at}: a number needs minimum and maximum"));
            }
        }
        Some("array") => {
            if !obj.contains_key("maxItems") {
                out.push(format!("{at}: an array needs maxItems"));
            }
            match obj.get("items") {
                Some(items) => lint(items, &format!("{at}/items"), out),
                None => out.push(format!("{at}: an array needs items")),
            }
        }
        Some("boolean") => {}
        _ => out.push(format!(
            "{at}: a subschema needs one type (or enum, or anyOf)"
        )),
    }
}

fn lint_object(obj: &Map<String, Value>, at: &str, out: &mut Vec<String>) {
    let empty = Map::new();
    let props = obj
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    match obj.get("additionalProperties") {
        Some(Value::Bool(false)) => {}
        // A map: free keys, but named by a pattern, bounded, and typed values.
        Some(values @ Value::Object(_)) => {
            if !obj.contains_key("propertyNames") || !obj.contains_key("maxProperties") {
                out.push(format!("{at}: a map needs propertyNames and maxProperties"));
            }
            if let Some(names) = obj.get("propertyNames") {
                lint(names, &format!("{at}/propertyNames"), out);
            }
            lint(values, &format!("{at}/additionalProperties"), out);
        }
        _ => out.push(format!("{at}: an object needs additionalProperties: false")),
    }
    for (name, sub) in props {
        lint(sub, &format!("{at}/properties/{name}"), out);
    }
    for required in obj
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !required.as_str().is_some_and(|r| props.contains_key(r)) {
            out.push(format!("{at}: required `{required}` is not a property"));
        }
    }
}
