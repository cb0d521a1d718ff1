//! The third-party tools these tests run, installed by the tests themselves
//! under `target/tmp/` from pinned files of the repository: a Python virtual
//! environment from a `requirements.txt` (PyPI), an npm tree from a
//! `package-lock.json` (`npm ci`). Each is made once per set of pins and
//! reused after. Without the registry the test fails, saying so: it never
//! passes without having run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// A Python ≥ 3.`minor` with venv: `DISPATCH_PYTHON`, `python3.11` or `python3`.
pub fn python(minor: u32) -> String {
    if let Ok(p) = std::env::var("DISPATCH_PYTHON") {
        return p;
    }
    for candidate in ["python3.11", "python3"] {
        let ok = Command::new(candidate)
            .args([
                "-c",
                &format!("import sys, venv; assert sys.version_info >= (3, {minor})"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate.to_string();
        }
    }
    panic!("this test needs Python ≥ 3.{minor} with venv (python3.11 or python3 on PATH, or DISPATCH_PYTHON)");
}

/// A short tag of the pins: a new set of pins makes a new install.
fn tag(files: &[&Path]) -> (String, Vec<u8>) {
    let mut all = Vec::new();
    for f in files {
        all.extend(std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    (hex::encode(&Sha256::digest(&all)[..6]), all)
}

/// The virtual environment `NAME-venv-TAG`, made with a Python ≥ 3.`minor`,
/// with the packages of `requirements`; `probe` (a program in its `bin/`,
/// run with `--version`) tells that it works. Returns the environment's
/// directory.
pub fn venv(name: &str, minor: u32, requirements: &Path, probe: &str) -> PathBuf {
    let (tag, pins) = tag(&[requirements]);
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-venv-{tag}"));
    // Written last: a virtual environment without it is an interrupted install.
    let complete = venv.join("installed-from-requirements.txt");
    let bin = venv.join("bin").join(probe);
    let works = || {
        complete.exists()
            && Command::new(&bin)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
    };
    if works() {
        return venv;
    }
    // (A virtual environment cannot be moved once made: it is built in place.)
    let _ = std::fs::remove_dir_all(&venv);
    let python = python(minor);
    let status = Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        status.success(),
        "{python} -m venv {} failed",
        venv.display()
    );
    let started = Instant::now();
    eprintln!(
        "{name}: installing {} from PyPI into {} (once)",
        requirements.display(),
        venv.display()
    );
    let out = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--timeout",
            "30",
            "--retries",
            "2",
            "-q",
            "-r",
        ])
        .arg(requirements)
        .output()
        .expect("cannot run the virtual environment's pip");
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&venv);
        panic!(
            "{} could not be installed from PyPI, so the test cannot run \
             (it needs network access to PyPI, or PIP_INDEX_URL pointing at a mirror):\n{}",
            requirements.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(&complete, &pins).unwrap();
    eprintln!("{name}: installed in {:.0?}", started.elapsed());
    assert!(works(), "{} does not run after the install", bin.display());
    venv
}

/// The npm tree `NAME-npm-TAG` of `dir`'s `package.json` and
/// `package-lock.json` (`npm ci`, with node and npm from the machine);
/// `probe` (a program in `node_modules/.bin/`, run with `--version`) tells
/// that it works. Returns the program's path.
pub fn npm(name: &str, dir: &Path, probe: &str) -> PathBuf {
    let manifest = dir.join("package.json");
    let lock = dir.join("package-lock.json");
    let (tag, pins) = tag(&[&manifest, &lock]);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-npm-{tag}"));
    let complete = root.join("installed-from-package-lock.json");
    let bin = root.join("node_modules/.bin").join(probe);
    let works = || {
        complete.exists()
            && Command::new(&bin)
                .arg("--version")
                .env("REDOCLY_TELEMETRY", "off")
                .env("REDOCLY_SUPPRESS_UPDATE_NOTICE", "true")
                .output()
                .is_ok_and(|o| o.status.success())
    };
    if works() {
        return bin;
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(&manifest, root.join("package.json")).unwrap();
    std::fs::copy(&lock, root.join("package-lock.json")).unwrap();
    let started = Instant::now();
    eprintln!(
        "{name}: installing {} from npm into {} (once)",
        lock.display(),
        root.display()
    );
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel", "error"])
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run npm ({e}): node and npm are needed (apt-get install nodejs npm)")
        });
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&root);
        panic!(
            "{} could not be installed from npm, so the test cannot run \
             (it needs node ≥ 20.19 and network access to the npm registry):\n{}",
            lock.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(&complete, &pins).unwrap();
    eprintln!("{name}: installed in {:.0?}", started.elapsed());
    assert!(works(), "{} does not run after the install", bin.display());
    bin
}
