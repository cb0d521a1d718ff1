//! Repository checks: the documents and the ops kit stay true to the code.

use std::path::Path;
use std::process::Command;

#[path = "repo/observability.rs"]
mod observability;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rust_sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(&p).unwrap());
        }
    }
}

#[test]
fn env_example_lists_every_setting_the_code_reads() {
    let mut sources = Vec::new();
    rust_sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    let example = read("ops/env.example");
    let readme = read("README.md");
    let mut names = Vec::new();
    for src in &sources {
        for part in src.split("env = \"").skip(1) {
            names.push(part.split('"').next().unwrap().to_string());
        }
    }
    names.sort();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            example.contains(&format!("{name}=")),
            "ops/env.example does not list {name}"
        );
        assert!(
            readme.contains(&format!("`{name}`")),
            "README's configuration table does not list {name}"
        );
    }
}

#[test]
fn the_data_model_describes_every_table_the_migrations_create() {
    let doc = read("docs/04_data_model.md");
    let mut tables = Vec::new();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"))
        .unwrap()
        .flatten()
    {
        let sql = std::fs::read_to_string(entry.path()).unwrap();
        for part in sql.split("CREATE TABLE ").skip(1) {
            tables.push(part.split_whitespace().next().unwrap().to_string());
        }
    }
    assert!(tables.len() >= 10);
    for t in tables {
        assert!(
            doc.contains(&format!("### `{t}`")),
            "docs/04_data_model.md has no section for table {t}"
        );
    }
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("projections"))
        .unwrap()
        .flatten()
    {
        let name = entry
            .path()
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "docs/04_data_model.md does not describe read model {name}"
        );
    }
}

#[test]
fn the_compose_file_is_valid_where_the_compose_tool_exists() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let attempts: [(&str, &[&str]); 2] = [("docker-compose", &[]), ("docker", &["compose"])];
    for (program, prefix) in attempts {
        // `docker` without its compose plugin parses `-f` as its own flag and
        // fails: only a tool that answers `version` is asked.
        let present = Command::new(program)
            .args(prefix)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            continue;
        }
        let mut cmd = Command::new(program);
        cmd.args(prefix)
            .args([
                "-f",
                "ops/docker-compose.yaml",
                "--env-file",
                "ops/env.example",
                "config",
                "-q",
            ])
            .current_dir(dir);
        match cmd.output() {
            Ok(out) if out.status.success() => return,
            Ok(out) if String::from_utf8_lossy(&out.stderr).contains("unknown command") => continue,
            Ok(out) => panic!(
                "{program} says the compose file is invalid: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(_) => continue,
        }
    }
    eprintln!("skipped: no compose tool on this machine (docker-compose or docker compose)");
}

/// `path::name` references in a document: each must be a function in that file.
fn check_test_references(doc_path: &str) -> usize {
    let doc = read(doc_path);
    let mut checked = 0;
    for part in doc.split('`').skip(1).step_by(2) {
        let Some((file, name)) = part.split_once("::") else {
            continue;
        };
        if !(file.starts_with("tests/") || file.starts_with("src/")) || !file.ends_with(".rs") {
            continue;
        }
        let name = name.rsplit("::").next().unwrap();
        let source = read(file);
        let exists =
            name == "main" && file == "tests/e2e.rs" || source.contains(&format!("fn {name}("));
        assert!(exists, "{doc_path} names {part}, which does not exist");
        checked += 1;
    }
    checked
}

#[test]
fn every_acceptance_item_and_threat_names_a_test_that_exists() {
    assert!(check_test_references("docs/backlog/acceptance_checklist.md") >= 30);
    assert!(check_test_references("docs/07_threat_model.md") >= 15);
}

/// The README's promise for a machine with PostgreSQL's server programs but
/// no running server: `serve` starts a private cluster under the data folder
/// (as an unprivileged user when run as root) and uses it; the process that
/// started it stops it when it ends, and one that found it running leaves it
/// running.
#[tokio::test]
async fn a_private_cluster_starts_under_the_data_folder_when_no_server_answers() {
    use dispatch_api::embedded_pg::{is_running, start_private};
    use dispatch_api::server::resolve_database_with;
    if !dispatch_api::embedded_pg::available() {
        eprintln!("skipped: PostgreSQL's server programs are not installed here");
        return;
    }
    let base =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("private-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let port = 55433;
    // Nothing answers at the default URL (port 1): the private cluster.
    let nobody = "postgres://postgres@127.0.0.1:1/dispatch_api";
    let first = resolve_database_with(None, &base, nobody, port)
        .await
        .unwrap();
    let result = async {
        let url = first.url.clone();
        let pool = dispatch_api::db::connect(&url, 2).await?;
        dispatch_api::db::migrate(&pool).await?;
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'events'",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        anyhow::Ok((url, tables))
    }
    .await;
    let started_first = first.private.as_ref().map(|c| c.started_here());
    // A second process finds it running: it uses it, and leaves it running.
    let second = resolve_database_with(None, &base, nobody, port)
        .await
        .unwrap();
    let started_second = second.private.as_ref().map(|c| c.started_here());
    second.close().await;
    let running_after_second = is_running(&base);
    // The process that started it stops it.
    first.close().await;
    let running_after_first = is_running(&base);
    // A cluster dropped on an error path is stopped too.
    let dropped = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            let cluster = start_private(&base, port).unwrap();
            let started = cluster.started_here();
            drop(cluster);
            (started, is_running(&base))
        }
    })
    .await
    .unwrap();
    if is_running(&base) {
        dispatch_api::embedded_pg::stop(&base).unwrap();
    }
    let _ = std::fs::remove_dir_all(&base);
    let (url, tables) = result.unwrap();
    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{port}/dispatch_api")
    );
    assert_eq!(tables, 1, "the private cluster serves a migrated database");
    assert_eq!(started_first, Some(true));
    assert_eq!(started_second, Some(false));
    assert!(running_after_second, "the second process left it running");
    assert!(!running_after_first, "the first process stopped it");
    assert_eq!(dropped, (true, false), "dropped, it stopped");
}
