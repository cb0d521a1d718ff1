//! The results table, the machine's description, and `docs/benchmarks.md`.

use std::path::Path;

use sqlx::PgPool;

/// Which number a bar applies to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bar {
    /// No bar (context).
    None,
    /// value ≥ x.
    ValueAtLeast(f64),
    /// value ≤ x.
    ValueAtMost(f64),
    /// ratio ≥ x.
    RatioAtLeast(f64),
    /// ratio ≤ x.
    RatioAtMost(f64),
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What (stable names: the smoke test looks for them).
    pub figure: String,
    /// Measured value.
    pub value: Option<f64>,
    /// Its unit.
    pub unit: &'static str,
    /// What it is compared with, measured in the same run.
    pub baseline: Option<f64>,
    /// The baseline's description and unit.
    pub baseline_label: String,
    /// The bar.
    pub bar: Bar,
    /// Detail (percentiles, counts, why missing).
    pub note: String,
}

impl Row {
    /// value / baseline.
    pub fn ratio(&self) -> Option<f64> {
        match (self.value, self.baseline) {
            (Some(v), Some(b)) if b != 0.0 => Some(v / b),
            _ => None,
        }
    }

    /// Pass or fail against the bar (`None`: no bar or nothing measured).
    pub fn pass(&self) -> Option<bool> {
        let v = self.value?;
        match self.bar {
            Bar::None => None,
            Bar::ValueAtLeast(x) => Some(v >= x),
            Bar::ValueAtMost(x) => Some(v <= x),
            Bar::RatioAtLeast(x) => self.ratio().map(|r| r >= x),
            Bar::RatioAtMost(x) => self.ratio().map(|r| r <= x),
        }
    }

    fn bar_text(&self) -> String {
        let u = self.unit;
        match self.bar {
            Bar::None => "—".into(),
            Bar::ValueAtLeast(x) => format!("≥ {} {u}", num(x)),
            Bar::ValueAtMost(x) => format!("≤ {} {u}", num(x)),
            Bar::RatioAtLeast(x) => format!("ratio ≥ {x}"),
            Bar::RatioAtMost(x) => format!("ratio ≤ {x}"),
        }
    }

    fn cells(&self) -> [String; 7] {
        let value = self
            .value
            .map_or("n/a".to_string(), |v| format!("{} {}", num(v), self.unit));
        let baseline = match self.baseline {
            Some(b) => format!("{} ({})", num(b), self.baseline_label),
            None => format!("n/a ({})", self.baseline_label),
        };
        let ratio = self.ratio().map_or("—".to_string(), |r| format!("{r:.2}×"));
        let pass = match self.pass() {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "—",
        };
        [
            self.figure.clone(),
            value,
            baseline,
            ratio,
            self.bar_text(),
            pass.to_string(),
            self.note.clone(),
        ]
    }
}

/// A number with sensible precision.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{:.0}", v)
    } else if a >= 100.0 {
        format!("{:.1}", v)
    } else if a >= 10.0 {
        format!("{:.2}", v)
    } else {
        format!("{:.3}", v)
    }
}

const HEADER: [&str; 7] = [
    "figure",
    "value",
    "baseline (same run)",
    "ratio",
    "bar",
    "result",
    "notes",
];

/// The table as aligned text (for the terminal).
pub fn text_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 7]> = rows.iter().map(Row::cells).collect();
    let mut width = [0usize; 6];
    for (i, h) in HEADER.iter().take(6).enumerate() {
        width[i] = h.chars().count();
    }
    for c in &cells {
        for i in 0..6 {
            width[i] = width[i].max(c[i].chars().count());
        }
    }
    let line = |c: &[String]| {
        let mut s = String::new();
        for i in 0..6 {
            let pad = width[i] - c[i].chars().count();
            s.push_str(&c[i]);
            s.push_str(&" ".repeat(pad + 2));
        }
        s.push_str(&c[6]);
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&HEADER.map(String::from));
    out.push_str(&"-".repeat(width.iter().sum::<usize>() + 12));
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
    }
    out
}

/// The table in Markdown.
pub fn markdown_table(rows: &[Row]) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = format!("| {} |\n", HEADER.join(" | "));
    out.push_str(&format!("|{}\n", " --- |".repeat(HEADER.len())));
    for r in rows {
        let c = r.cells();
        let c: Vec<String> = c.iter().map(|x| esc(x)).collect();
        out.push_str(&format!("| {} |\n", c.join(" | ")));
    }
    out
}

/// The machine and the database server.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// Lines of `key: value`.
    pub lines: Vec<(String, String)>,
}

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(prefix))
        .map(|l| l.split_once(':').map_or(l, |x| x.1).trim().to_string())
}

/// Load average now (1, 5, 15 minutes).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Describes this machine (and the server behind `pool`).
pub async fn machine(pool: &PgPool, mode: &str) -> Machine {
    let mut m = Machine::default();
    let mut add = |k: &str, v: String| m.lines.push((k.to_string(), v));
    add(
        "date",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    add("mode", mode.to_string());
    add(
        "build",
        if cfg!(debug_assertions) {
            "debug (unoptimised: timings are not representative)"
        } else {
            "release"
        }
        .to_string(),
    );
    add(
        "nproc",
        std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into()),
    );
    add(
        "cpu",
        first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
    );
    add(
        "memory",
        first_line_with("/proc/meminfo", "MemTotal").unwrap_or_else(|| "unknown".into()),
    );
    add("load average at start (1/5/15 min)", loadavg());
    let q = |sql: &'static str| async move {
        sqlx::query_scalar::<_, String>(sql)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| format!("unknown ({e})"))
    };
    add("postgresql", q("SELECT version()").await);
    add("fsync", q("SHOW fsync").await);
    add("synchronous_commit", q("SHOW synchronous_commit").await);
    add("shared_buffers", q("SHOW shared_buffers").await);
    add("max_connections", q("SHOW max_connections").await);
    if let Ok(out) = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
    {
        if out.status.success() {
            add(
                "commit",
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            );
        }
    }
    m
}

const BEGIN: &str =
    "<!-- bench:begin (written by `dispatch-bench`; edit outside these markers) -->";
/// How a begin marker starts, whatever its note says (files written when the
/// benchmark was still `dispatch-api bench` carry that name in it).
const BEGIN_PREFIX: &str = "<!-- bench:begin";
const END: &str = "<!-- bench:end -->";

/// Writes the results into `path` between the markers (keeping the text
/// around them), or a new file.
pub fn write(path: &Path, machine: &Machine, rows: &[Row], extra: &str) -> anyhow::Result<()> {
    let mut body = String::new();
    body.push_str(BEGIN);
    body.push_str("\n\n### Machine\n\n");
    for (k, v) in &machine.lines {
        body.push_str(&format!("- **{k}**: {v}\n"));
    }
    body.push_str("\n### Results\n\n");
    body.push_str(&markdown_table(rows));
    if !extra.is_empty() {
        body.push('\n');
        body.push_str(extra);
    }
    body.push('\n');
    body.push_str(END);
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let text = match (existing.find(BEGIN_PREFIX), existing.find(END)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{}{}", &existing[..a], body, &existing[b + END.len()..])
        }
        _ => format!("# Benchmarks\n\n{body}\n"),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_ratios() {
        let r = Row {
            figure: "x".into(),
            value: Some(30.0),
            unit: "ms",
            baseline: Some(10.0),
            baseline_label: "b".into(),
            bar: Bar::RatioAtMost(1.5),
            note: String::new(),
        };
        assert_eq!(r.ratio(), Some(3.0));
        assert_eq!(r.pass(), Some(false));
        let r = Row {
            bar: Bar::ValueAtMost(50.0),
            ..r
        };
        assert_eq!(r.pass(), Some(true));
        assert!(markdown_table(&[r]).contains("| x | 30.00 ms |"));
    }

    #[test]
    fn write_replaces_between_the_markers_whatever_the_begin_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("benchmarks.md");
        let old = "# Benchmarks\n\nbefore\n\n<!-- bench:begin (written by `dispatch-api bench`; edit outside these markers) -->\nold table\n<!-- bench:end -->\n\nafter\n";
        std::fs::write(&path, old).unwrap();
        write(&path, &Machine::default(), &[], "").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(
            "# Benchmarks\n\nbefore\n\n<!-- bench:begin (written by `dispatch-bench`;"
        ));
        assert!(text.ends_with("<!-- bench:end -->\n\nafter\n"));
        assert!(!text.contains("old table"));
    }
}
