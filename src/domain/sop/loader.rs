//! Loading and validating the SOP library from disk.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::model::{
    CloseoutSop, Condition, FieldSop, FieldType, IncidentSop, IntakeSop, SopRef, OPEN_JOB_FIELDS,
};

/// A SOP file that cannot be used: which file, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SOP file {}: field `{field}`: {problem}", file.display())]
pub struct SopError {
    /// The file.
    pub file: PathBuf,
    /// The field (a dotted path where it helps).
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

/// Every incident type's SOPs, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SopLibrary {
    by_type: BTreeMap<String, IncidentSop>,
}

const MIN_REQUIRED_FIELDS: [(&str, FieldType); 4] = [
    ("access_hours", FieldType::String),
    ("anyone_hurt_or_trapped", FieldType::Boolean),
    ("opening_can_be_secured", FieldType::Boolean),
    ("after_hours", FieldType::Boolean),
];

fn err(file: &Path, field: impl Into<String>, problem: impl Into<String>) -> SopError {
    SopError {
        file: file.to_path_buf(),
        field: field.into(),
        problem: problem.into(),
    }
}

/// The field a TOML decoding error is about: the backticked name in the
/// message (unknown or missing field), else the key on the line of its span.
fn field_of_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message();
    let names_a_field = msg.starts_with("unknown field")
        || msg.starts_with("missing field")
        || msg.starts_with("duplicate field");
    if let (true, Some(start)) = (names_a_field, msg.find('`')) {
        if let Some(len) = msg[start + 1..].find('`') {
            return msg[start + 1..start + 1 + len].to_string();
        }
    }
    if let Some(span) = e.span() {
        let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
        let line = text[line_start..].lines().next().unwrap_or("");
        if let Some((key, _)) = line.split_once('=') {
            return key.trim().to_string();
        }
        return line.trim().to_string();
    }
    "(document)".to_string()
}

fn parse<T: DeserializeOwned>(file: &Path) -> Result<(T, SopRef), SopError> {
    let bytes = std::fs::read(file).map_err(|e| err(file, "(file)", e.to_string()))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| err(file, "(file)", "not UTF-8"))?;
    let doc: T = toml::from_str(text)
        .map_err(|e| err(file, field_of_toml_error(&e, text), e.message().to_string()))?;
    let table: toml::Table =
        toml::from_str(text).map_err(|e| err(file, "(document)", e.message().to_string()))?;
    let get = |k: &str| {
        table
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let reference = SopRef {
        id: get("id"),
        version: get("version"),
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    Ok((doc, reference))
}

fn is_snake(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check_header(
    file: &Path,
    id: &str,
    version: &str,
    incident_type: &str,
    expected: &str,
) -> Result<(), SopError> {
    if id.trim().is_empty() {
        return Err(err(file, "id", "must not be empty"));
    }
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.parse::<u32>().is_err()) {
        return Err(err(
            file,
            "version",
            "must be a semantic version like 1.0.0",
        ));
    }
    if incident_type != expected {
        return Err(err(
            file,
            "incident_type",
            format!("`{incident_type}` does not match the file name `{expected}`"),
        ));
    }
    Ok(())
}

fn check_conditions(
    file: &Path,
    key: &str,
    rules: &[Condition],
    intake: &IntakeSop,
) -> Result<(), SopError> {
    for (i, rule) in rules.iter().enumerate() {
        if rule.when.is_empty() {
            return Err(err(
                file,
                format!("{key}[{i}].when"),
                "must name at least one field",
            ));
        }
        for (name, value) in &rule.when {
            let path = format!("{key}[{i}].when.{name}");
            let spec = intake
                .field(name)
                .ok_or_else(|| err(file, &path, "not a field of the intake SOP"))?;
            spec.check(value).map_err(|p| err(file, &path, p))?;
        }
    }
    Ok(())
}

fn validate_intake(file: &Path, sop: &IntakeSop) -> Result<(), SopError> {
    let mut names = HashSet::new();
    for (i, f) in sop.fields.iter().enumerate() {
        let path = format!("fields[{i}].name");
        if !is_snake(&f.name) {
            return Err(err(file, path, "must be snake_case"));
        }
        if !names.insert(f.name.as_str()) {
            return Err(err(file, path, format!("`{}` is defined twice", f.name)));
        }
        match (f.kind, &f.values) {
            (FieldType::Enum, None) => {
                return Err(err(
                    file,
                    format!("fields[{i}].enum"),
                    "an enum field needs its values",
                ))
            }
            (FieldType::Enum, Some(v)) if v.is_empty() => {
                return Err(err(
                    file,
                    format!("fields[{i}].enum"),
                    "must list at least one value",
                ))
            }
            (FieldType::Enum, Some(_)) => {}
            (_, Some(_)) => {
                return Err(err(
                    file,
                    format!("fields[{i}].enum"),
                    "only enum fields take values",
                ))
            }
            (_, None) => {}
        }
    }
    for (name, kind) in MIN_REQUIRED_FIELDS {
        match sop.field(name) {
            Some(f) if f.kind == kind && f.required => {}
            _ => {
                return Err(err(
                    file,
                    "fields",
                    format!(
                        "every intake SOP defines the required {} field `{name}`",
                        kind.as_str()
                    ),
                ))
            }
        }
    }
    for (i, step) in sop.script.iter().enumerate() {
        if sop.field(&step.field).is_none() && !OPEN_JOB_FIELDS.contains(&step.field.as_str()) {
            return Err(err(
                file,
                format!("script[{i}].field"),
                format!(
                    "`{}` is neither an intake field nor an open_job field",
                    step.field
                ),
            ));
        }
    }
    for f in &sop.fields {
        if !sop.script.iter().any(|s| s.field == f.name) {
            return Err(err(
                file,
                "script",
                format!("no step asks for field `{}`", f.name),
            ));
        }
    }
    for (i, s) in sop.required_skills.iter().enumerate() {
        if !is_snake(s) {
            return Err(err(
                file,
                format!("required_skills[{i}]"),
                "must be snake_case",
            ));
        }
    }
    check_conditions(file, "p1_when", &sop.p1_when, sop)
}

fn validate_field(file: &Path, sop: &FieldSop, intake: &IntakeSop) -> Result<(), SopError> {
    let mut ids = HashSet::new();
    for (i, item) in sop.checklist.iter().enumerate() {
        if !is_snake(&item.id) {
            return Err(err(
                file,
                format!("checklist[{i}].id"),
                "must be snake_case",
            ));
        }
        if !ids.insert(item.id.as_str()) {
            return Err(err(
                file,
                format!("checklist[{i}].id"),
                format!("`{}` is defined twice", item.id),
            ));
        }
    }
    if sop.checklist.is_empty() {
        return Err(err(file, "checklist", "must list at least one item"));
    }
    for (i, kind) in sop.evidence_required.iter().enumerate() {
        if !sop.evidence_allowed.contains(kind) {
            return Err(err(
                file,
                format!("evidence_required[{i}]"),
                "must also be in evidence_allowed",
            ));
        }
    }
    check_conditions(file, "make_safe_when", &sop.make_safe_when, intake)
}

fn validate_closeout(file: &Path, sop: &CloseoutSop) -> Result<(), SopError> {
    let mut ids = HashSet::new();
    for (i, item) in sop.items.iter().enumerate() {
        if !is_snake(&item.id) || !ids.insert(item.id.as_str()) {
            return Err(err(
                file,
                format!("items[{i}].id"),
                "must be snake_case and unique",
            ));
        }
    }
    if sop.trip_charge_cents < 0 {
        return Err(err(file, "trip_charge_cents", "must not be negative"));
    }
    if !(0..=240).contains(&sop.labor_increment_minutes) {
        return Err(err(
            file,
            "labor_increment_minutes",
            "must be between 0 and 240",
        ));
    }
    Ok(())
}

impl SopLibrary {
    /// Loads and validates `root/{intake,field,closeout}/*.toml`.
    ///
    /// Every intake file needs its field and closeout file and the other way round.
    pub fn load(root: &Path) -> Result<SopLibrary, SopError> {
        let intake_dir = root.join("intake");
        let mut types = Vec::new();
        let entries = std::fs::read_dir(&intake_dir)
            .map_err(|e| err(&intake_dir, "(directory)", e.to_string()))?;
        for entry in entries {
            let path = entry
                .map_err(|e| err(&intake_dir, "(directory)", e.to_string()))?
                .path();
            if path.extension().and_then(|e| e.to_str()) == Some("toml") {
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                types.push(stem);
            }
        }
        types.sort();
        if types.is_empty() {
            return Err(err(&intake_dir, "(directory)", "no SOP files found"));
        }
        for stage in ["field", "closeout"] {
            let dir = root.join(stage);
            let entries =
                std::fs::read_dir(&dir).map_err(|e| err(&dir, "(directory)", e.to_string()))?;
            for entry in entries {
                let path = entry
                    .map_err(|e| err(&dir, "(directory)", e.to_string()))?
                    .path();
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                if path.extension().and_then(|e| e.to_str()) == Some("toml")
                    && !types.iter().any(|t| t == stem)
                {
                    return Err(err(
                        &path,
                        "incident_type",
                        "has no intake SOP of the same name",
                    ));
                }
            }
        }
        let mut by_type = BTreeMap::new();
        let mut seen_ids = HashSet::new();
        for t in types {
            let ifile = intake_dir.join(format!("{t}.toml"));
            let ffile = root.join("field").join(format!("{t}.toml"));
            let cfile = root.join("closeout").join(format!("{t}.toml"));
            if !is_snake(&t) {
                return Err(err(
                    &ifile,
                    "incident_type",
                    "file name must be a snake_case incident type",
                ));
            }
            let (intake, intake_ref): (IntakeSop, _) = parse(&ifile)?;
            check_header(
                &ifile,
                &intake.id,
                &intake.version,
                &intake.incident_type,
                &t,
            )?;
            validate_intake(&ifile, &intake)?;
            let (field, field_ref): (FieldSop, _) = parse(&ffile)?;
            check_header(&ffile, &field.id, &field.version, &field.incident_type, &t)?;
            validate_field(&ffile, &field, &intake)?;
            let (closeout, closeout_ref): (CloseoutSop, _) = parse(&cfile)?;
            check_header(
                &cfile,
                &closeout.id,
                &closeout.version,
                &closeout.incident_type,
                &t,
            )?;
            validate_closeout(&cfile, &closeout)?;
            for (file, id) in [
                (&ifile, &intake.id),
                (&ffile, &field.id),
                (&cfile, &closeout.id),
            ] {
                if !seen_ids.insert(id.clone()) {
                    return Err(err(
                        file,
                        "id",
                        format!("`{id}` is used by another SOP file"),
                    ));
                }
            }
            by_type.insert(
                t.clone(),
                IncidentSop {
                    incident_type: t,
                    intake,
                    field,
                    closeout,
                    intake_ref,
                    field_ref,
                    closeout_ref,
                },
            );
        }
        Ok(SopLibrary { by_type })
    }

    /// The SOPs of an incident type.
    pub fn get(&self, incident_type: &str) -> Option<&IncidentSop> {
        self.by_type.get(incident_type)
    }

    /// Every incident type, sorted.
    pub fn incident_types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    /// Every incident type's SOPs, sorted by type.
    pub fn all(&self) -> impl Iterator<Item = &IncidentSop> {
        self.by_type.values()
    }

    /// A library built from already-validated SOPs (tests and tools).
    pub fn from_sops(sops: Vec<IncidentSop>) -> SopLibrary {
        SopLibrary {
            by_type: sops
                .into_iter()
                .map(|s| (s.incident_type.clone(), s))
                .collect(),
        }
    }
}
