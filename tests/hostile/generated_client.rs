//! A client generated from the served OpenAPI document works as generated
//! (issue 21): openapi-python-client (pinned in `e2e/openapi/requirements.txt`,
//! installed by this test into a virtual environment under `target/tmp/`)
//! generates a package from `GET /openapi.json` of the real `dispatch-api
//! serve` on a fresh database, without a warning; the package imports
//! unpatched; and `e2e/openapi/drive.py` drives a short job lifecycle with it
//! — a technician registered, a job opened, triaged, offered, accepted,
//! travelled to and checked in, evidence uploaded (raw and multipart, the
//! answers' sha256 the files'), attached and downloaded, a tool call and its
//! replay — and reads the job, its events and the tool invocations as the
//! generated models. Without PyPI the test fails, saying so.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::installs;
use crate::server::{create_database, drop_database, Server};

const OPENAPI_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/openapi");

async fn key(server: &Server, role: &str) -> String {
    let mut args: Vec<String> = ["keys", "create", "--role", role, "--name"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(format!("py-{role}"));
    if role == "technician" {
        args.extend(["--technician".to_string(), "tech-py".to_string()]);
    }
    let (code, stdout, stderr) = server.cli(&args).await.expect("the CLI runs");
    assert_eq!(code, 0, "dispatch-api {args:?}: {stderr}");
    stdout.trim().to_string()
}

/// Runs `program ARGS…` in `dir`, failing the test with its output unless it
/// succeeds; returns (stdout, stderr).
fn run(what: &str, cmd: &mut Command) -> (String, String) {
    let started = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    println!("{what}: {:.1?}", started.elapsed());
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_python_client_drives_a_job_lifecycle_unpatched() {
    let venv = installs::venv(
        "openapi-python-client",
        11,
        &Path::new(OPENAPI_DIR).join("requirements.txt"),
        "openapi-python-client",
    );
    let bin = venv.join("bin");
    // The generator's post-hook (ruff) is in the environment's bin/.
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let database = create_database("clients").await.expect("a fresh database");
    let env = BTreeMap::from([("RUST_LOG".to_string(), "warn".to_string())]);
    let server = Server::start(&database, "system", &env)
        .await
        .expect("dispatch-api serve starts");
    let work = tempfile::Builder::new()
        .prefix("openapi-client-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let mut keys = BTreeMap::new();
    for role in ["agent", "dispatcher", "technician", "auditor"] {
        keys.insert(role, key(&server, role).await);
    }
    let keys_file = work.path().join("keys.json");
    std::fs::write(&keys_file, serde_json::to_vec(&keys).unwrap()).unwrap();

    // Generate from the served document, as an integrator would.
    let package = work.path().join("dispatch_api_client");
    let (stdout, stderr) = run(
        "openapi-python-client generate",
        Command::new(bin.join("openapi-python-client"))
            .args(["generate", "--meta", "none", "--url"])
            .arg(format!("{}/openapi.json", server.base))
            .arg("--output-path")
            .arg(&package)
            .env("PATH", &path)
            .current_dir(work.path()),
    );
    let said = format!("{stdout}{stderr}");
    assert!(
        !said.to_lowercase().contains("warning") && !said.contains("Unable to"),
        "openapi-python-client reported problems with the document:\n{said}"
    );
    // It imports as generated: every module of the package.
    let (stdout, _) = run(
        "import the generated package",
        Command::new(bin.join("python"))
            .args(["-c", "import importlib, pkgutil, dispatch_api_client as p\nn = 0\nfor m in pkgutil.walk_packages(p.__path__, 'dispatch_api_client.'):\n    importlib.import_module(m.name); n += 1\nprint(n)"])
            .env("PYTHONPATH", work.path()),
    );
    let modules: usize = stdout.trim().parse().expect("a count of modules");
    assert!(modules > 100, "only {modules} modules were generated");
    let ok = {
        let out = Command::new(bin.join("python"))
            .arg(Path::new(OPENAPI_DIR).join("drive.py"))
            .arg(&server.base)
            .arg(&keys_file)
            .env("PYTHONPATH", work.path())
            .output()
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        }
        out.status.success() && stdout.contains("lifecycle ok")
    };
    server.stop(!ok).await;
    if ok {
        drop_database(&database.name).await;
    } else {
        let _ = work.keep();
    }
    assert!(
        ok,
        "the generated client's lifecycle failed (its output is above)"
    );
}
