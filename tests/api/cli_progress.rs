//! Progress on long work (issue 23): `audit verify --all`, `projections
//! rebuild --wait` and `registry import` draw a bar with the rate and the
//! time left on a terminal (here a pseudo-terminal), and nothing of it when
//! their output goes to a pipe.

use std::io::Read;

use portable_pty::{native_pty_system, CommandBuilder, PtySize};

use crate::cli::{cli_env, run_cli, CLI_UNSET};
use crate::support::*;

/// `dispatch-api ARGS` with its stdin, stdout and stderr on a new
/// pseudo-terminal; its exit code and everything it wrote there.
fn on_pty(env: &[(&str, String)], args: &[&str]) -> (u32, String) {
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 160,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a pseudo-terminal");
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_dispatch-api"));
    cmd.args(args);
    for k in CLI_UNSET {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env("TERM", "xterm-256color");
    let mut child = pair.slave.spawn_command(cmd).expect("the binary starts");
    // Only the child holds the terminal's other end: its exit ends the reads.
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let reading = std::thread::spawn(move || {
        let mut out = Vec::new();
        // Linux answers EIO, not EOF, once the other end is closed; what was
        // read is kept either way.
        let _ = reader.read_to_end(&mut out);
        out
    });
    let status = child.wait().unwrap();
    let out = reading.join().unwrap();
    drop(pair.master);
    (
        status.exit_code(),
        String::from_utf8_lossy(&out).into_owned(),
    )
}

/// Whether `out` holds a drawn bar of `what`: its label, the rate and the
/// time left.
fn has_bar(out: &str, what: &str, unit: &str) -> bool {
    out.contains(what) && out.contains(&format!(" {unit}/s")) && out.contains(" left")
}

#[tokio::test]
async fn progress_bars_show_on_a_terminal_and_never_in_a_pipe() {
    let t = TestApp::spawn_projected().await;
    for i in 0..3 {
        let job = t.open_ifm_job(&format!("site-pty-{i}")).await;
        t.note(&job, &t.keys.agent, "note").await;
    }
    let data = tempfile::tempdir().unwrap();
    let env = cli_env(&t.db_url, data.path());
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/registry-sample.csv");
    let cases: [(&[&str], &str, &str); 3] = [
        (
            &["audit", "verify", "--all"],
            "verifying every chain",
            "events",
        ),
        (
            &["projections", "rebuild", "--all", "--wait"],
            "rebuilding",
            "events",
        ),
        (
            &["registry", "import", "--dry-run", sample],
            "importing",
            "rows",
        ),
    ];
    for (args, what, unit) in cases {
        let (code, out) = on_pty(&env, args);
        assert_eq!(code, 0, "{args:?} on a terminal: {out}");
        assert!(
            has_bar(&out, what, unit),
            "{args:?}: no bar on the terminal:\n{out}"
        );
        let piped = run_cli(&env, args);
        assert_eq!(piped.code, Some(0), "{args:?} in a pipe: {}", piped.stderr);
        for stream in [&piped.stdout, &piped.stderr] {
            assert!(
                !has_bar(stream, what, unit),
                "{args:?}: a bar in a pipe:\n{stream}"
            );
            assert!(
                !stream.contains('\r') && !stream.contains("\x1b["),
                "{args:?}: terminal codes in a pipe:\n{stream}"
            );
        }
    }
}
