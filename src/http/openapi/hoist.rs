//! Every named schema of the document at `#/components/schemas/NAME`, where
//! generators look: the bundled JSON Schemas' `$defs` hoisted to
//! components of their own, and a second generator's definitions merged
//! beside the first's (a same-named schema that differs gets a suffix).
//! No reference points inside another schema (`…/X/$defs/y`), which
//! openapi-python-client and others cannot resolve.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

const COMPONENTS: &str = "#/components/schemas/";

/// Applies `rename` to every `$ref` in `value`.
pub(super) fn rewrite_refs(value: &mut Value, rename: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "$ref" {
                    if let Some(new) = v.as_str().and_then(rename) {
                        *v = Value::String(new);
                    }
                } else {
                    rewrite_refs(v, rename);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, rename)),
        _ => {}
    }
}

/// `actor` → `Actor`, `sha256` → `Sha256`.
fn pascal(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// Adds the JSON Schema `text` (a file of `schemas/`) as the component
/// `name`, without `$schema`, `$id` and `title` (the component's name is
/// its name), and each of its `$defs` as a component of its own: the same
/// name in PascalCase, shared with another file's identical one, or
/// prefixed with `name` where a different one has the name already.
pub(super) fn add_bundled(schemas: &mut Map<String, Value>, text: &str, name: &str) {
    let mut schema: Value = serde_json::from_str(text).expect("bundled schema is JSON");
    let object = schema.as_object_mut().expect("bundled schema is an object");
    for key in ["$schema", "$id", "title"] {
        object.remove(key);
    }
    let defs = match object.remove("$defs") {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    };
    let mut names = BTreeMap::new();
    for (def, body) in &defs {
        let plain = pascal(def);
        let taken = schemas.get(&plain).is_some_and(|s| s != body);
        names.insert(
            format!("#/$defs/{def}"),
            format!(
                "{COMPONENTS}{}",
                if taken {
                    format!("{name}{plain}")
                } else {
                    plain
                }
            ),
        );
    }
    let rename = |r: &str| names.get(r).cloned();
    for (def, mut body) in defs {
        rewrite_refs(&mut body, &rename);
        let component = names[&format!("#/$defs/{def}")]
            .trim_start_matches(COMPONENTS)
            .to_string();
        schemas.insert(component, body);
    }
    rewrite_refs(&mut schema, &rename);
    schemas.insert(name.into(), schema);
}

/// Merges `defs` (made by another schema generator, referring to each other
/// at `#/components/schemas/…`) into `schemas`: a definition identical to
/// the one already there is shared; one that differs (and every definition
/// that refers to a renamed one and so differs in turn) is added as
/// `NAME{suffix}`. The references in `defs` and in `roots` (the schemas
/// that use them) follow the renaming. Returns the renamed definitions'
/// names, old to new.
pub(super) fn merge(
    schemas: &mut Map<String, Value>,
    defs: Map<String, Value>,
    suffix: &str,
    roots: &mut [&mut Value],
) -> BTreeMap<String, String> {
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    let rewritten = loop {
        let rename = |r: &str| {
            r.strip_prefix(COMPONENTS)
                .and_then(|n| renamed.get(n))
                .map(|n| format!("{COMPONENTS}{n}"))
        };
        let mut rewritten = defs.clone();
        for body in rewritten.values_mut() {
            rewrite_refs(body, &rename);
        }
        let conflicts: Vec<String> = rewritten
            .iter()
            .filter(|(n, body)| {
                !renamed.contains_key(*n) && schemas.get(*n).is_some_and(|s| s != *body)
            })
            .map(|(n, _)| n.clone())
            .collect();
        if conflicts.is_empty() {
            break rewritten;
        }
        for n in conflicts {
            renamed.insert(n.clone(), format!("{n}{suffix}"));
        }
    };
    let rename = |r: &str| {
        r.strip_prefix(COMPONENTS)
            .and_then(|n| renamed.get(n))
            .map(|n| format!("{COMPONENTS}{n}"))
    };
    for root in roots.iter_mut() {
        rewrite_refs(root, &rename);
    }
    for (name, body) in rewritten {
        let name = renamed.get(&name).cloned().unwrap_or(name);
        if let Some(existing) = schemas.get(&name) {
            assert_eq!(existing, &body, "two different schemas named {name}");
        }
        schemas.insert(name, body);
    }
    renamed
}

/// The string constants of a `oneOf` whose branches are all
/// `{"const": "…", "type": "string", "description": "…"}` (schemars's form
/// of an enum with documented variants), with their descriptions.
fn const_strings(branches: &[Value]) -> Option<Vec<(String, Option<String>)>> {
    branches
        .iter()
        .map(|b| {
            let o = b.as_object()?;
            let known = o
                .keys()
                .all(|k| matches!(k.as_str(), "const" | "type" | "description"));
            let typed = o.get("type").is_none_or(|t| t == "string");
            let value = o.get("const")?.as_str()?.to_string();
            (known && typed).then(|| {
                let description = o
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                (value, description)
            })
        })
        .collect()
}

/// Rewrites every `oneOf` of string constants into `{"type": "string",
/// "enum": […]}`, the values' descriptions appended to the schema's: the
/// form every generator makes an enum of (openapi-python-client makes a
/// union of literals of the other, and its parser takes only the first).
pub(super) fn const_unions_to_enums(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let consts = map
                .get("oneOf")
                .and_then(Value::as_array)
                .filter(|b| !b.is_empty())
                .and_then(|b| const_strings(b));
            if let Some(consts) = consts {
                map.remove("oneOf");
                let listed: Vec<String> = consts
                    .iter()
                    .filter_map(|(v, d)| d.as_ref().map(|d| format!("`{v}`: {d}")))
                    .collect();
                if !listed.is_empty() {
                    let before = map
                        .get("description")
                        .and_then(Value::as_str)
                        .map(|d| format!("{d} "))
                        .unwrap_or_default();
                    map.insert(
                        "description".into(),
                        Value::String(format!("{before}{}", listed.join(" "))),
                    );
                }
                map.insert("type".into(), Value::String("string".into()));
                map.insert(
                    "enum".into(),
                    Value::Array(consts.into_iter().map(|(v, _)| Value::String(v)).collect()),
                );
            }
            map.values_mut().for_each(const_unions_to_enums);
        }
        Value::Array(items) => items.iter_mut().for_each(const_unions_to_enums),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bundled_defs_become_components_shared_when_identical() {
        let mut schemas = Map::new();
        let a = json!({"$id": "a", "title": "A", "properties": {"x": {"$ref": "#/$defs/uuid"}}, "$defs": {"uuid": {"type": "string"}}});
        let b = json!({"properties": {"y": {"$ref": "#/$defs/uuid"}}, "$defs": {"uuid": {"type": "integer"}}});
        add_bundled(&mut schemas, &a.to_string(), "A");
        add_bundled(&mut schemas, &b.to_string(), "B");
        assert_eq!(
            schemas["A"],
            json!({"properties": {"x": {"$ref": "#/components/schemas/Uuid"}}})
        );
        assert_eq!(
            schemas["B"]["properties"]["y"]["$ref"],
            "#/components/schemas/BUuid"
        );
        assert_eq!(schemas["BUuid"], json!({"type": "integer"}));
    }

    #[test]
    fn merge_renames_what_differs_and_what_refers_to_it() {
        let mut schemas = Map::new();
        schemas.insert(
            "Site".into(),
            json!({"type": "object", "additionalProperties": false}),
        );
        schemas.insert("Same".into(), json!({"type": "string"}));
        let mut defs = Map::new();
        defs.insert("Site".into(), json!({"type": "object"}));
        defs.insert("Same".into(), json!({"type": "string"}));
        defs.insert(
            "Job".into(),
            json!({"properties": {"site": {"$ref": "#/components/schemas/Site"}}}),
        );
        schemas.insert(
            "Job".into(),
            json!({"properties": {"site": {"$ref": "#/components/schemas/Site"}}}),
        );
        let mut root = json!({"$ref": "#/components/schemas/Job"});
        merge(&mut schemas, defs, "View", &mut [&mut root]);
        assert_eq!(root["$ref"], "#/components/schemas/JobView");
        assert_eq!(schemas["SiteView"], json!({"type": "object"}));
        assert_eq!(
            schemas["JobView"]["properties"]["site"]["$ref"],
            "#/components/schemas/SiteView"
        );
        assert!(!schemas.contains_key("SameView"));
    }

    #[test]
    fn documented_consts_become_an_enum_and_others_stay() {
        let mut v = json!({"properties": {
            "channel": {"description": "How.", "oneOf": [
                {"const": "phone", "type": "string", "description": "A call."},
                {"const": "sms", "type": "string"}]},
            "either": {"oneOf": [{"const": "a"}, {"type": "integer"}]}}});
        const_unions_to_enums(&mut v);
        assert_eq!(
            v["properties"]["channel"],
            json!({"description": "How. `phone`: A call.", "type": "string", "enum": ["phone", "sms"]})
        );
        assert!(v["properties"]["either"]["oneOf"].is_array());
    }
}
