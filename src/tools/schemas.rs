//! The input schemas of the tools, `schemas/tools/<tool>.json`: embedded in
//! the binary, checked at start-up (one per allowlisted tool, no stray file,
//! every subschema strict and bounded) and enforced here, before any argument
//! is decoded. The checked-in files are the contract; the manifest serves them
//! as they are.

use std::collections::BTreeMap;
use std::sync::Arc;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::allowlist::Allowlist;

mod strict;
pub use strict::strictness_problems;

macro_rules! tool_schema_files {
    ($($name:literal),+ $(,)?) => {
        /// Every tool schema file, by tool name, as checked in.
        pub const TOOL_SCHEMA_FILES: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../../schemas/tools/", $name, ".json")))),+
        ];
    };
}

tool_schema_files! {
    "get_sop", "get_job", "search_board", "find_technicians", "get_billing_status",
    "open_job", "record_intake", "triage_job", "set_priority", "resolve_duplicate",
    "offer_job", "accept_offer", "decline_offer", "expire_offer", "start_travel",
    "check_in", "complete_checklist_item", "attach_evidence", "check_out",
    "schedule_return_visit", "verify_closeout", "reopen_unsatisfactory",
    "mark_billing_ready", "close_job", "cancel_job", "add_note",
    "request_nte_increase", "decide_approval", "flag_sla_breach",
    "find_site", "get_door",
    "register_customer", "update_customer", "retire_customer",
    "register_site", "update_site", "retire_site",
    "register_door", "update_door", "move_door", "record_door_label", "set_door_status",
    "retire_door", "create_plan", "skip_occurrence", "move_occurrence", "retire_plan",
    "get_door_history",
}

/// A schema set the service refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// An allowlisted tool has no schema file.
    #[error("tool `{0}` has no input schema (schemas/tools/{0}.json)")]
    Missing(String),
    /// A schema file names a tool the allowlist does not have.
    #[error("schemas/tools/{0}.json names no allowlisted tool")]
    Stray(String),
    /// Not JSON, not a valid draft 2020-12 schema, or not strict.
    #[error("schemas/tools/{tool}.json: {problem}")]
    Invalid {
        /// The tool.
        tool: String,
        /// What is wrong.
        problem: String,
    },
}

/// One tool's schema: as served, and compiled.
pub struct ToolSchema {
    /// The schema document as checked in.
    pub document: Arc<Value>,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ToolSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSchema").finish_non_exhaustive()
    }
}

/// Every tool's compiled input schema.
#[derive(Debug)]
pub struct ToolSchemas {
    by_tool: BTreeMap<String, ToolSchema>,
}

impl ToolSchemas {
    /// Loads the embedded schemas and checks them against the allowlist.
    pub fn load(allowlist: &Allowlist) -> Result<ToolSchemas, SchemaError> {
        Self::from_files(allowlist, TOOL_SCHEMA_FILES)
    }

    /// Loads a given set of files (tests use this to prove the checks bite).
    pub fn from_files(
        allowlist: &Allowlist,
        files: &[(&str, &str)],
    ) -> Result<ToolSchemas, SchemaError> {
        let mut by_tool = BTreeMap::new();
        for (tool, text) in files {
            if !allowlist.tools.contains_key(*tool) {
                return Err(SchemaError::Stray((*tool).to_string()));
            }
            let invalid = |problem: String| SchemaError::Invalid {
                tool: (*tool).to_string(),
                problem,
            };
            let document: Value =
                serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
            let problems = strictness_problems(&document);
            if let Some(p) = problems.first() {
                return Err(invalid(p.clone()));
            }
            if document.get("$schema").and_then(Value::as_str)
                != Some("https://json-schema.org/draft/2020-12/schema")
            {
                return Err(invalid("`$schema` must be draft 2020-12".into()));
            }
            // Building also validates the document against the draft's meta-schema.
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&document)
                .map_err(|e| invalid(format!("does not compile: {e}")))?;
            by_tool.insert(
                (*tool).to_string(),
                ToolSchema {
                    document: Arc::new(document),
                    validator,
                },
            );
        }
        if let Some(missing) = allowlist.tools.keys().find(|t| !by_tool.contains_key(*t)) {
            return Err(SchemaError::Missing(missing.clone()));
        }
        Ok(ToolSchemas { by_tool })
    }

    /// A tool's schema document.
    pub fn document(&self, tool: &str) -> Option<&Arc<Value>> {
        self.by_tool.get(tool).map(|s| &s.document)
    }

    /// Checks a tool's arguments. The refusal names the offending argument
    /// and the rule, never the value (which may be hostile or huge).
    pub fn validate(&self, tool: &str, arguments: &Value) -> Result<(), InputError> {
        let schema = self
            .by_tool
            .get(tool)
            .ok_or_else(|| InputError::UnknownTool(format!("no tool named `{}`", clip(tool))))?;
        let Some(error) = schema.validator.iter_errors(arguments).next() else {
            return Ok(());
        };
        let mut field = pointer_to_field(&error.instance_path().to_string());
        let join = |field: &str, name: &str| {
            if field.is_empty() {
                clip(name)
            } else {
                format!("{field}.{}", clip(name))
            }
        };
        let rule = match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                field = join(&field, unexpected.first().map_or("", String::as_str));
                "is not an argument of this tool".to_string()
            }
            ValidationErrorKind::Required { property } => {
                field = join(&field, property.as_str().unwrap_or(""));
                "is required".to_string()
            }
            ValidationErrorKind::MaxLength { limit } => {
                format!("is longer than {limit} characters")
            }
            ValidationErrorKind::MinLength { limit } => {
                format!("is shorter than {limit} characters")
            }
            ValidationErrorKind::Pattern { .. } => {
                "contains characters that are not allowed (control characters, or not the expected format)".into()
            }
            ValidationErrorKind::Enum { options } => format!("must be one of {options}"),
            ValidationErrorKind::Type { kind } => {
                format!("has the wrong type (expected {})", type_names(kind))
            }
            ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
            ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
            ValidationErrorKind::MaxItems { limit } => format!("has more than {limit} items"),
            ValidationErrorKind::MaxProperties { limit } => {
                format!("has more than {limit} entries")
            }
            ValidationErrorKind::MinProperties { limit } => {
                format!("needs at least {limit} entries")
            }
            ValidationErrorKind::Format { format } => format!("is not a valid {format}"),
            ValidationErrorKind::PropertyNames { .. } => {
                "has an entry name that is not allowed (lower-case letters, digits and `_`)".into()
            }
            ValidationErrorKind::AnyOf { .. } => {
                "must be a string (at most 4096 characters, no control characters), a boolean or an integer".into()
            }
            _ => "does not match the tool's input schema".into(),
        };
        let name = if field.is_empty() {
            "the arguments".to_string()
        } else {
            format!("argument `{field}`")
        };
        Err(InputError::Invalid {
            detail: format!("{name} {rule}"),
            field: (!field.is_empty()).then_some(field),
        })
    }
}

/// Arguments a tool refuses before anything runs (mapped to the contract's
/// `tool_not_allowed` and `validation_error` in `crate::error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// No tool of that name has a schema.
    #[error("{0}")]
    UnknownTool(String),
    /// The arguments break the tool's schema: which argument and which rule.
    #[error("{detail}")]
    Invalid {
        /// The argument and the rule, never the value.
        detail: String,
        /// The argument's dotted path, when one is to blame.
        field: Option<String>,
    },
}

impl InputError {
    /// The argument to blame, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            InputError::Invalid { field, .. } => field.as_deref(),
            InputError::UnknownTool(_) => None,
        }
    }
}

/// JSON Schema type names as a refusal says them: `object`, `string or null`.
fn type_names(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(t) => t.to_string(),
        TypeKind::Multiple(types) => types
            .into_iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

fn clip(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect::<String>()
}

/// `/site/name` → `site.name`; `/parts/0/quantity` → `parts.0.quantity`.
fn pointer_to_field(pointer: &str) -> String {
    pointer
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| clip(&s.replace("~1", "/").replace("~0", "~")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> ToolSchemas {
        ToolSchemas::load(&Allowlist::builtin().unwrap()).unwrap()
    }

    #[test]
    fn every_allowlisted_tool_has_a_strict_schema() {
        let list = Allowlist::builtin().unwrap();
        let s = schemas();
        for tool in list.tools.keys() {
            assert!(s.document(tool).is_some(), "{tool}");
        }
    }

    #[test]
    fn a_missing_or_loose_schema_refuses_to_start() {
        let list = Allowlist::builtin().unwrap();
        let fewer: Vec<_> = TOOL_SCHEMA_FILES
            .iter()
            .filter(|(n, _)| *n != "add_note")
            .copied()
            .collect();
        assert!(matches!(
            ToolSchemas::from_files(&list, &fewer),
            Err(SchemaError::Missing(t)) if t == "add_note"
        ));
        let loose: Vec<_> = TOOL_SCHEMA_FILES
            .iter()
            .map(|(n, t)| {
                if *n == "add_note" {
                    (*n, r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{"text":{"type":"string"}}}"#)
                } else {
                    (*n, *t)
                }
            })
            .collect();
        assert!(matches!(
            ToolSchemas::from_files(&list, &loose),
            Err(SchemaError::Invalid { .. })
        ));
        let mut stray = TOOL_SCHEMA_FILES.to_vec();
        stray.push(("approve_everything", "{}"));
        assert!(matches!(
            ToolSchemas::from_files(&list, &stray),
            Err(SchemaError::Stray(_))
        ));
    }

    #[test]
    fn refusals_name_the_argument_not_the_value() {
        let s = schemas();
        let job = "0b5e0c7e-3f7e-5d7a-9a52-3b0c0a9f1e21";
        let long = "x".repeat(5000);
        let err = s
            .validate(
                "add_note",
                &serde_json::json!({"job_id": job, "text": long}),
            )
            .unwrap_err();
        assert!(matches!(err, InputError::Invalid { .. }), "{err:?}");
        assert_eq!(err.field(), Some("text"));
        assert!(!err.to_string().contains("xxxx"));
        let err = s
            .validate(
                "add_note",
                &serde_json::json!({"job_id": job, "text": "ok\u{0007}bell"}),
            )
            .unwrap_err();
        assert_eq!(err.field().unwrap(), "text");
        let err = s
            .validate(
                "add_note",
                &serde_json::json!({"job_id": job, "text": "hi", "role": "admin"}),
            )
            .unwrap_err();
        assert_eq!(err.field().unwrap(), "role");
        let err = s
            .validate("add_note", &serde_json::json!({"text": "hi"}))
            .unwrap_err();
        assert_eq!(err.field().unwrap(), "job_id");
        s.validate(
            "add_note",
            &serde_json::json!({"job_id": job, "text": "line one\nline two\ttab"}),
        )
        .unwrap();
        let err = s
            .validate(
                "record_intake",
                &serde_json::json!({"job_id": job, "fields": {"door": {"nested": true}}}),
            )
            .unwrap_err();
        assert_eq!(err.field().unwrap(), "fields.door");
    }

    /// Dotted property paths and the required ones, through objects, arrays
    /// and nullable wrappers (schemars writes `Option<T>` as a union with null).
    fn shape(
        schema: &Value,
        at: &str,
        props: &mut std::collections::BTreeSet<String>,
        required: &mut std::collections::BTreeSet<String>,
    ) {
        for key in ["anyOf", "oneOf"] {
            for alt in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if alt.get("type") != Some(&Value::from("null")) {
                    shape(alt, at, props, required);
                }
            }
        }
        if let Some(items) = schema.get("items") {
            shape(items, &format!("{at}[]"), props, required);
        }
        let Some(p) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let req: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, sub) in p {
            let path = if at.is_empty() {
                name.clone()
            } else {
                format!("{at}.{name}")
            };
            props.insert(path.clone());
            if req.contains(&name.as_str()) {
                required.insert(path.clone());
            }
            shape(sub, &path, props, required);
        }
    }

    #[test]
    fn command_tool_schemas_have_exactly_the_commands_wire_fields() {
        use crate::domain::job::JobCommand;
        use crate::tools::allowlist::ToolKind;
        let list = Allowlist::builtin().unwrap();
        let s = schemas();
        let mut generator = schemars::generate::SchemaSettings::draft2020_12()
            .with(|s| s.inline_subschemas = true)
            .into_generator();
        for (name, entry) in &list.tools {
            if entry.kind != ToolKind::Command {
                continue;
            }
            let wire = Value::from(JobCommand::body_schema(name, &mut generator).unwrap());
            let (mut wp, mut wr) = Default::default();
            shape(&wire, "", &mut wp, &mut wr);
            let (mut tp, mut tr) = Default::default();
            shape(s.document(name).unwrap(), "", &mut tp, &mut tr);
            if name != "open_job" {
                assert!(tp.remove("job_id") && tr.remove("job_id"), "{name}: job_id");
            }
            assert_eq!(
                tp, wp,
                "{name}: schemas/tools/{name}.json and the command's wire body differ"
            );
            assert_eq!(
                tr, wr,
                "{name}: required arguments differ from the command's"
            );
        }
    }

    #[test]
    fn registry_tool_schemas_have_exactly_the_commands_wire_fields() {
        use crate::app::registry::wire;
        use crate::tools::allowlist::ToolKind;
        let list = Allowlist::builtin().unwrap();
        let s = schemas();
        let mut generator = schemars::generate::SchemaSettings::draft2020_12()
            .with(|s| s.inline_subschemas = true)
            .into_generator();
        for (name, entry) in &list.tools {
            if entry.kind != ToolKind::Registry {
                continue;
            }
            let wire_body = Value::from(wire::body_schema(name, &mut generator).unwrap());
            let (mut wp, mut wr) = Default::default();
            shape(&wire_body, "", &mut wp, &mut wr);
            let (mut tp, mut tr) = Default::default();
            shape(s.document(name).unwrap(), "", &mut tp, &mut tr);
            if !wire::registers(name) {
                let id = wire::id_field(wire::command_kind(name).unwrap());
                assert!(tp.remove(id) && tr.remove(id), "{name}: {id}");
            }
            assert_eq!(
                tp, wp,
                "{name}: schemas/tools/{name}.json and the command's wire body differ"
            );
            assert_eq!(
                tr, wr,
                "{name}: required arguments differ from the command's"
            );
        }
    }

    proptest::proptest! {
        /// No input makes validation panic, and what validates decodes.
        #[test]
        fn arbitrary_arguments_never_panic(args in arbitrary_json(), pick in 0usize..29) {
            let list = Allowlist::builtin().unwrap();
            let s = ToolSchemas::load(&list).unwrap();
            let (tool, _) = TOOL_SCHEMA_FILES[pick % TOOL_SCHEMA_FILES.len()];
            if s.validate(tool, &args).is_ok() {
                let mut body = args.as_object().cloned().unwrap_or_default();
                body.remove("job_id");
                if crate::domain::job::JOB_COMMANDS.contains(&tool) {
                    crate::domain::job::JobCommand::decode(tool, Value::Object(body)).unwrap();
                }
            }
        }
    }

    fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let names = prop::sample::select(vec![
            "job_id",
            "text",
            "reason",
            "fields",
            "priority",
            "items",
            "id",
            "result",
            "parts",
            "amount_cents",
            "approval_id",
            "decision",
            "incident_type",
            "state",
            "eta",
            "role",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "\\PC{0,40}".prop_map(Value::from),
            Just(Value::from("0b5e0c7e-3f7e-5d7a-9a52-3b0c0a9f1e21")),
            Just(Value::from("P1")),
            Just(Value::from("pass")),
        ];
        leaf.prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(names.clone(), inner, 0..6).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }
}
