//! The metrics and the alerts stay true to each other: every family the
//! code emits is in `src/telemetry/metrics.rs` (`FAMILIES`: what `/metrics`
//! describes) with the labels the code gives it, and in docs/08's table;
//! every alert of `ops/alerts.yml` reads families that exist, by labels they
//! have, and fires in `ops/alerts.test.yml` under `promtool test rules`.

use std::collections::BTreeSet;
use std::path::Path;

use dispatch_api::telemetry::metrics::{family_named, Kind, FAMILIES};

use super::read;

#[path = "../common/promtool.rs"]
mod promtool;

/// One `metrics::counter!`/`gauge!`/`histogram!` call in the sources: its
/// kind, its name and the label keys written as `"key" => value` (`None`
/// when the labels are passed some other way).
struct Emitted {
    file: String,
    kind: Kind,
    name: String,
    labels: Option<BTreeSet<String>>,
}

fn emitted_in(file: &str, src: &str, out: &mut Vec<Emitted>) {
    for (macro_name, kind) in [
        ("metrics::counter!(", Kind::Counter),
        ("metrics::gauge!(", Kind::Gauge),
        ("metrics::histogram!(", Kind::Histogram),
    ] {
        for (at, _) in src.match_indices(macro_name) {
            let rest = &src[at + macro_name.len()..];
            // The arguments: up to the parenthesis that closes the call.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap();
            let args = rest[..end].trim();
            let Some(name) = args.strip_prefix('"').and_then(|a| a.split('"').next()) else {
                continue; // a name that is not a literal (the table's own loop)
            };
            let after = &args[name.len() + 2..];
            let labels = if after.trim().is_empty() {
                Some(BTreeSet::new())
            } else if after.contains("=>") {
                // Each key is the last string before a `=>`.
                let parts: Vec<&str> = after.split("=>").collect();
                Some(
                    parts[..parts.len() - 1]
                        .iter()
                        .filter_map(|part| part.rsplit('"').nth(1).map(str::to_string))
                        .collect(),
                )
            } else {
                None
            };
            out.push(Emitted {
                file: file.to_string(),
                kind,
                name: name.to_string(),
                labels,
            });
        }
    }
}

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
}

#[test]
fn every_metric_the_code_emits_is_described_and_documented_with_its_labels() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut emitted = Vec::new();
    for (file, src) in &files {
        emitted_in(file, src, &mut emitted);
    }
    assert!(emitted.len() >= 30, "found {} metric calls", emitted.len());
    for e in &emitted {
        let family = family_named(&e.name).unwrap_or_else(|| {
            panic!(
                "{} emits {}, which src/telemetry/metrics.rs does not describe",
                e.file, e.name
            )
        });
        assert_eq!(
            family.kind, e.kind,
            "{} emits {} as another type",
            e.file, e.name
        );
        if let Some(labels) = &e.labels {
            let described: BTreeSet<String> = family.labels.iter().map(|l| l.to_string()).collect();
            assert_eq!(
                labels, &described,
                "{} gives {} other labels than its description",
                e.file, e.name
            );
        }
    }
    // Each described family is emitted somewhere (none is left over).
    for f in FAMILIES {
        assert!(
            emitted.iter().any(|e| e.name == f.name),
            "{} is described but nothing emits it",
            f.name
        );
    }
    // docs/08's table: `| `name` | type | labels | … |`.
    let doc = read("docs/08_observability_and_runbooks.md");
    for f in FAMILIES {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", f.name)))
            .unwrap_or_else(|| panic!("docs/08's metrics table has no row for {}", f.name));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[2], f.kind.as_str(), "docs/08: the type of {}", f.name);
        let labels = if f.labels.is_empty() {
            "—".to_string()
        } else {
            f.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        assert_eq!(cells[3], labels, "docs/08: the labels of {}", f.name);
    }
}

/// The alerts of ops/alerts.yml: (name, expression).
fn alerts() -> Vec<(String, String)> {
    let text = read("ops/alerts.yml");
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            let expr = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("expr: "))
                .unwrap_or_else(|| panic!("alert {name}: `expr:` is not the next line"));
            out.push((name.to_string(), expr.to_string()));
        }
    }
    out
}

/// The metric names an expression reads, and the label names it uses (in
/// `by (…)` and in selectors).
fn reads(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find(|c: char| word(c)) {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !word(c)).unwrap_or(tail.len());
        let token = &tail[..end];
        let after = &tail[end..];
        if token.starts_with("dispatch_") || token == "up" {
            metrics.insert(token.to_string());
        }
        if (token == "by" || token == "without") && after.trim_start().starts_with('(') {
            let inside = after.split_once('(').unwrap().1.split(')').next().unwrap();
            labels.extend(inside.split(',').map(|l| l.trim().to_string()));
        }
        if let Some(selector) = after.strip_prefix('{') {
            let inside = selector.split('}').next().unwrap();
            for matcher in inside.split(',') {
                let name = matcher.split(['=', '!']).next().unwrap().trim();
                labels.insert(name.to_string());
            }
        }
        rest = after;
    }
    (metrics, labels)
}

#[test]
fn every_alert_reads_metrics_that_exist_and_fires_in_its_rules_test() {
    let tests = read("ops/alerts.test.yml");
    let alerts = alerts();
    assert!(alerts.len() >= 10, "{alerts:?}");
    for (name, expr) in &alerts {
        let (metrics, labels) = reads(expr);
        assert!(!metrics.is_empty(), "{name} reads no metric: {expr}");
        let mut known: BTreeSet<String> = BTreeSet::new();
        for m in &metrics {
            if m == "up" {
                // Prometheus's own series per scrape target.
                known.extend(["job".to_string(), "instance".to_string()]);
                continue;
            }
            let family = family_named(m)
                .unwrap_or_else(|| panic!("{name} reads {m}, which the service does not emit"));
            known.extend(family.labels.iter().map(|l| l.to_string()));
        }
        for l in &labels {
            assert!(
                known.contains(l),
                "{name} uses label {l}, which {metrics:?} do not have"
            );
        }
        // A test case that expects it to fire (an `exp_alerts` with labels).
        let fires = tests.split("alertname: ").skip(1).any(|case| {
            let (alert, body) = case.split_once('\n').unwrap_or((case, ""));
            let body = body.split("alertname: ").next().unwrap();
            alert.trim() == name && body.contains("exp_labels:")
        });
        assert!(fires, "ops/alerts.test.yml has no case where {name} fires");
    }
    let Some(promtool) = promtool::promtool() else {
        return;
    };
    let ops = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops");
    promtool::run(promtool, &ops, &["check", "rules", "alerts.yml"], None);
    let out = promtool::run(promtool, &ops, &["test", "rules", "alerts.test.yml"], None);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn expressions_are_read_for_their_metrics_and_labels() {
    let (m, l) = reads(
        r#"sum by (code) (rate(dispatch_refusals_total{code="x", transport!~"a|b"}[10m])) + up{job="d"} > 1"#,
    );
    assert_eq!(
        m.into_iter().collect::<Vec<_>>(),
        ["dispatch_refusals_total", "up"]
    );
    assert_eq!(
        l.into_iter().collect::<Vec<_>>(),
        ["code", "job", "transport"]
    );
}
