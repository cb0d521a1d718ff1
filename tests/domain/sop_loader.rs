//! The SOP library: the real one loads; a malformed one stops the load with
//! the file and the field named.
//!
//! Checked-in fixtures live in `tests/fixtures/sops_malformed_*`; the other
//! variants are built in a temporary directory from the real files.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::support::*;

const T: &str = "automatic_door_malfunction";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// A copy of the real SOP files of `types` in a temporary library.
fn copy_of(types: &[&str]) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for stage in ["intake", "field", "closeout"] {
        fs::create_dir_all(dir.path().join(stage)).unwrap();
        for t in types {
            fs::copy(
                Path::new(SOP_DIR).join(stage).join(format!("{t}.toml")),
                dir.path().join(stage).join(format!("{t}.toml")),
            )
            .unwrap();
        }
    }
    dir
}

/// Replaces `from` (which must occur) by `to` in one file of a library copy.
fn edit(dir: &TempDir, stage: &str, t: &str, from: &str, to: &str) {
    let path = dir.path().join(stage).join(format!("{t}.toml"));
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// Loads and expects a `SopError` naming `file` (a path suffix) and `field`.
#[track_caller]
fn expect_error(root: &Path, file: &str, field: &str) -> SopError {
    let e = SopLibrary::load(root).expect_err("the malformed library must not load");
    assert!(
        e.file.ends_with(file),
        "error names file {} (expected …/{file}): {e}",
        e.file.display()
    );
    assert_eq!(
        e.field, field,
        "error names field `{}` (expected `{field}`): {e}",
        e.field
    );
    assert!(!e.problem.is_empty());
    e
}

// ------------------------------------------------------------ the real one

#[test]
fn the_real_library_loads_all_nine_incident_types() {
    let lib = SopLibrary::load(Path::new(SOP_DIR)).expect("loads");
    let types: Vec<&str> = lib.incident_types().collect();
    assert_eq!(types, INCIDENT_TYPES);
    assert_eq!(lib.all().count(), 9);
    for sop in lib.all() {
        let t = &sop.incident_type;
        for (stage, r) in [
            ("intake", &sop.intake_ref),
            ("field", &sop.field_ref),
            ("closeout", &sop.closeout_ref),
        ] {
            assert_eq!(r.id, format!("{stage}.{t}"));
            let parts: Vec<&str> = r.version.split('.').collect();
            assert_eq!(parts.len(), 3, "{t} {stage} version {}", r.version);
            assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()));
            assert!(is_hex64(&r.sha256), "{t} {stage} sha256 {}", r.sha256);
            let bytes = fs::read(Path::new(SOP_DIR).join(stage).join(format!("{t}.toml"))).unwrap();
            assert_eq!(
                r.sha256,
                hex::encode(Sha256::digest(&bytes)),
                "sha256 of the file's bytes"
            );
        }
        assert!(is_hex64(&sop.combined_sha256()));
        assert_eq!(&sop.intake.incident_type, t);
        assert!(!sop.field.checklist.is_empty());
        assert!(sop
            .field
            .evidence_required
            .iter()
            .all(|k| sop.field.evidence_allowed.contains(k)));
        for name in [
            "access_hours",
            "anyone_hurt_or_trapped",
            "opening_can_be_secured",
            "after_hours",
        ] {
            assert!(
                sop.intake.field(name).is_some_and(|f| f.required),
                "{t} defines {name}"
            );
        }
    }
    // Distinct files, distinct digests.
    let mut digests: Vec<String> = lib
        .all()
        .flat_map(|s| {
            [
                s.intake_ref.sha256.clone(),
                s.field_ref.sha256.clone(),
                s.closeout_ref.sha256.clone(),
            ]
        })
        .collect();
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 27);
}

#[test]
fn the_automatic_door_sops_say_what_lifecycle_md_asks() {
    let s = sop(T);
    assert_eq!(s.intake.required_certifications, vec!["AAADM".to_string()]);
    assert_eq!(s.intake.default_priority, Priority::P2);
    assert!(s
        .field
        .checklist
        .iter()
        .any(|i| i.id == "aaadm_hold_open_1_5s" && i.required));
    assert_eq!(
        s.field.evidence_required,
        vec![
            EvidenceKind::PhotoBefore,
            EvidenceKind::PhotoAfter,
            EvidenceKind::Signature,
            EvidenceKind::ChecklistForm
        ]
    );
    assert!(s.closeout.customer_signoff_required);
    assert_eq!(s.closeout.trip_charge_cents, TRIP);
    assert_eq!(s.closeout.labor_increment_minutes, 15);
}

#[test]
fn a_copy_of_one_type_loads() {
    let dir = copy_of(&[T]);
    let lib = SopLibrary::load(dir.path()).expect("a one-type library is fine");
    assert_eq!(lib.incident_types().collect::<Vec<_>>(), vec![T]);
    assert_eq!(lib.get(T).unwrap().intake_ref, sop(T).intake_ref);
}

// ---------------------------------------------------- checked-in fixtures

#[test]
fn an_unknown_key_is_named() {
    let e = expect_error(
        &fixture("sops_malformed_unknown_key"),
        "intake/automatic_door_malfunction.toml",
        "versoin",
    );
    assert!(e.file.starts_with(fixture("sops_malformed_unknown_key")));
}

#[test]
fn a_missing_closeout_file_is_named() {
    expect_error(
        &fixture("sops_malformed_missing_closeout"),
        "closeout/automatic_door_malfunction.toml",
        "(file)",
    );
}

#[test]
fn evidence_required_outside_evidence_allowed_is_named() {
    expect_error(
        &fixture("sops_malformed_bad_evidence"),
        "field/automatic_door_malfunction.toml",
        "evidence_required[2]",
    );
}

// ------------------------------------------------------- built variants

#[test]
fn a_p1_rule_on_an_undefined_field_is_named() {
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "intake",
        T,
        "when = { anyone_hurt_or_trapped = true }",
        "when = { anyone_trapped = true }",
    );
    expect_error(
        dir.path(),
        "intake/automatic_door_malfunction.toml",
        "p1_when[0].when.anyone_trapped",
    );
}

#[test]
fn a_p1_rule_value_of_the_wrong_type_is_named() {
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "intake",
        T,
        "when = { after_hours = true, opening_can_be_secured = false }",
        "when = { after_hours = \"yes\", opening_can_be_secured = false }",
    );
    expect_error(
        dir.path(),
        "intake/automatic_door_malfunction.toml",
        "p1_when[1].when.after_hours",
    );
}

#[test]
fn a_make_safe_rule_on_an_undefined_field_is_named() {
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "field",
        T,
        "when = { opening_can_be_secured = false }",
        "when = { door_hanging = true }",
    );
    expect_error(
        dir.path(),
        "field/automatic_door_malfunction.toml",
        "make_safe_when[1].when.door_hanging",
    );
}

#[test]
fn a_string_where_a_boolean_belongs_is_named() {
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "closeout",
        T,
        "customer_signoff_required = true",
        "customer_signoff_required = \"yes\"",
    );
    expect_error(
        dir.path(),
        "closeout/automatic_door_malfunction.toml",
        "customer_signoff_required",
    );
}

#[test]
fn a_string_where_an_integer_belongs_is_named() {
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "closeout",
        T,
        "trip_charge_cents = 9500",
        "trip_charge_cents = \"95.00\"",
    );
    expect_error(
        dir.path(),
        "closeout/automatic_door_malfunction.toml",
        "trip_charge_cents",
    );
}

#[test]
fn a_missing_field_file_is_named() {
    let dir = copy_of(&[T]);
    fs::remove_file(dir.path().join("field").join(format!("{T}.toml"))).unwrap();
    expect_error(
        dir.path(),
        "field/automatic_door_malfunction.toml",
        "(file)",
    );
}

#[test]
fn a_missing_required_key_is_named() {
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "intake",
        T,
        "title = \"Automatic door malfunction\"\n",
        "",
    );
    expect_error(
        dir.path(),
        "intake/automatic_door_malfunction.toml",
        "title",
    );
}

#[test]
fn a_field_or_closeout_file_without_an_intake_file_is_named() {
    let dir = copy_of(&[T]);
    fs::copy(
        Path::new(SOP_DIR).join("closeout/door_stuck_open.toml"),
        dir.path().join("closeout/door_stuck_open.toml"),
    )
    .unwrap();
    expect_error(dir.path(), "closeout/door_stuck_open.toml", "incident_type");
}

#[test]
fn a_bad_version_or_mismatched_incident_type_is_named() {
    let dir = copy_of(&[T]);
    edit(&dir, "field", T, "version = \"1.0.0\"", "version = \"1.0\"");
    expect_error(
        dir.path(),
        "field/automatic_door_malfunction.toml",
        "version",
    );
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "closeout",
        T,
        "incident_type = \"automatic_door_malfunction\"",
        "incident_type = \"door_stuck_open\"",
    );
    expect_error(
        dir.path(),
        "closeout/automatic_door_malfunction.toml",
        "incident_type",
    );
}

#[test]
fn a_missing_mandatory_intake_field_is_named() {
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "intake",
        T,
        "name = \"access_hours\"",
        "name = \"access_times\"",
    );
    expect_error(
        dir.path(),
        "intake/automatic_door_malfunction.toml",
        "fields",
    );
}

#[test]
fn a_script_step_for_an_unknown_field_is_named() {
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "intake",
        T,
        "field = \"power_cycled\"",
        "field = \"power_cycle\"",
    );
    expect_error(
        dir.path(),
        "intake/automatic_door_malfunction.toml",
        "script[13].field",
    );
}

#[test]
fn a_duplicate_checklist_id_is_named() {
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "field",
        T,
        "id = \"power_isolated_before_work\"",
        "id = \"as_found_recorded\"",
    );
    expect_error(
        dir.path(),
        "field/automatic_door_malfunction.toml",
        "checklist[1].id",
    );
}

#[test]
fn a_negative_trip_charge_is_named() {
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "closeout",
        T,
        "trip_charge_cents = 9500",
        "trip_charge_cents = -1",
    );
    expect_error(
        dir.path(),
        "closeout/automatic_door_malfunction.toml",
        "trip_charge_cents",
    );
}

#[test]
fn an_id_used_twice_in_the_library_is_named() {
    let dir = copy_of(&[T, "door_stuck_open"]);
    edit(
        &dir,
        "intake",
        "door_stuck_open",
        "id = \"intake.door_stuck_open\"",
        "id = \"intake.automatic_door_malfunction\"",
    );
    expect_error(dir.path(), "intake/door_stuck_open.toml", "id");
}

#[test]
fn an_empty_library_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    for stage in ["intake", "field", "closeout"] {
        fs::create_dir_all(dir.path().join(stage)).unwrap();
    }
    expect_error(dir.path(), "intake", "(directory)");
    let missing = dir.path().join("nowhere");
    expect_error(&missing, "nowhere/intake", "(directory)");
}

#[test]
fn an_unknown_enum_value_names_the_field_not_the_value() {
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "intake",
        T,
        "default_priority = \"P2\"",
        "default_priority = \"P5\"",
    );
    expect_error(
        dir.path(),
        "intake/automatic_door_malfunction.toml",
        "default_priority",
    );
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "field",
        T,
        "evidence_allowed = [\"photo_before\"",
        "evidence_allowed = [\"video\", \"photo_before\"",
    );
    expect_error(
        dir.path(),
        "field/automatic_door_malfunction.toml",
        "evidence_allowed",
    );
}

/// The required intake fields every SOP defines are named with their type
/// as the files spell it (`boolean`, not Rust's `Boolean`).
#[test]
fn a_required_field_of_another_type_is_named_with_the_files_type_name() {
    let dir = copy_of(&[T]);
    edit(
        &dir,
        "intake",
        T,
        "name = \"after_hours\"\ntype = \"boolean\"",
        "name = \"after_hours\"\ntype = \"string\"",
    );
    let e = expect_error(
        dir.path(),
        "intake/automatic_door_malfunction.toml",
        "fields",
    );
    assert!(
        e.problem.contains("required boolean field `after_hours`"),
        "{}",
        e.problem
    );
}
