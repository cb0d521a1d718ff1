//! `promtool` (Debian's `prometheus` package; `.ci/run` installs it where
//! missing) for the tests of the metrics and the alert rules. Where it is
//! not installed a test prints `skipped: …` and passes, unless
//! `DISPATCH_PROMTOOL_TESTS=required` (set by `.ci/run`), which fails it.

use std::path::Path;
use std::process::{Command, Stdio};

/// `promtool`, if installed: checked by asking its version.
pub fn promtool() -> Option<&'static str> {
    let present = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var("DISPATCH_PROMTOOL_TESTS").as_deref() != Ok("required"),
            "promtool is required (DISPATCH_PROMTOOL_TESTS=required) and is not installed \
             (apt-get install prometheus)"
        );
        eprintln!("skipped: promtool is not installed (apt-get install prometheus)");
        return None;
    }
    Some("promtool")
}

/// Runs `promtool ARGS` in `dir` with `stdin` on its input; fails the test
/// with its output unless it succeeds. Returns its output.
pub fn run(promtool: &str, dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}
