//! Progress on long work: a bar with the rate and the time left on
//! standard error when it is a terminal (indicatif), nothing at all when it
//! is not (a pipe, a file, a CI log), so that scripts read only the
//! command's own lines. The benchmark (`dispatch-bench`) uses it too.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::store::scan::ScanProgress;

/// A progress bar, drawn only on a terminal.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar for `what` (shown before it), counting `unit`s (`events`,
    /// `rows`); hidden unless standard error is a terminal.
    pub fn new(what: &str, unit: &'static str) -> Progress {
        Progress::with_target(std::io::stderr().is_terminal(), what, unit)
    }

    /// A bar that is drawn on standard error if `terminal`.
    pub fn with_target(terminal: bool, what: &str, unit: &'static str) -> Progress {
        if !terminal {
            return Progress { bar: None };
        }
        let style = ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {unit} · {rate} · {eta} left",
        )
        .expect("the template is valid")
        .with_key("unit", move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(unit);
        })
        .with_key("rate", move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} {unit}/s", s.per_sec());
        })
        .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress { bar: Some(bar) }
    }

    /// A bar over a known stretch of time (a timed load): elapsed, the bar,
    /// the time left; moved on with [`Progress::set_elapsed`]. Hidden unless
    /// standard error is a terminal.
    pub fn clock(what: &str, total: Duration) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let style = ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {eta} left")
            .expect("the template is valid")
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(
            Some(total.as_millis() as u64),
            ProgressDrawTarget::stderr(),
        )
        .with_style(style)
        .with_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress { bar: Some(bar) }
    }

    /// Moves a [`Progress::clock`] bar to `elapsed`.
    pub fn set_elapsed(&self, elapsed: Duration) {
        self.set_position(elapsed.as_millis() as u64);
    }

    /// Whether a bar is drawn.
    pub fn is_drawn(&self) -> bool {
        self.bar.is_some()
    }

    /// Sets the total.
    pub fn set_length(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_length(n);
        }
    }

    /// Sets how far it is.
    pub fn set_position(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        }
    }

    /// Moves it on by `n`.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Prints a line on standard error above the bar (or plainly, when
    /// there is none).
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.bar {
            Some(b) => b.println(line.as_ref()),
            None => eprintln!("{}", line.as_ref()),
        }
    }

    /// Stops it, leaving its last state on the terminal.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }

    /// Stops it and erases it.
    pub fn clear(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl ScanProgress for Progress {
    fn start(&self, events: u64) {
        self.set_length(events);
    }

    fn advance(&self, events: u64) {
        self.inc(events);
    }
}
