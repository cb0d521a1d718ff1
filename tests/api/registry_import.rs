//! `dispatch-api registry import`: the shipped sample file comes in whole,
//! a second run appends nothing, a dry run writes nothing, and a file with
//! any bad row writes nothing and names every bad row by line and column.

use dispatch_api::app::registry::import::{import, ImportError, Summary};

use crate::support::{cli_with, TestApp};

const SAMPLE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/registry-sample.csv");

fn sample() -> String {
    std::fs::read_to_string(SAMPLE_PATH).unwrap()
}

async fn run(t: &TestApp, csv: &str, dry_run: bool) -> Result<Summary, ImportError> {
    import(&t.app, csv.as_bytes(), dry_run).await
}

/// The problems of a refused import as (line, column, code).
async fn refused(t: &TestApp, csv: &str) -> Vec<(u64, String, String)> {
    match run(t, csv, false).await {
        Err(ImportError::Refused(problems)) => problems
            .into_iter()
            .map(|p| (p.line, p.field, p.code))
            .collect(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn p(line: u64, field: &str, code: &str) -> (u64, String, String) {
    (line, field.to_string(), code.to_string())
}

async fn events(t: &TestApp) -> i64 {
    t.count("SELECT count(*) FROM events").await
}

async fn entries(t: &TestApp) -> i64 {
    t.count("SELECT count(*) FROM registry_entries").await
}

/// A row in the sample's layout from (column, value) pairs.
fn row(cells: &[(&str, &str)]) -> String {
    let header = sample().lines().next().unwrap().to_string();
    let values: Vec<&str> = header
        .split(',')
        .map(|c| cells.iter().find(|(k, _)| *k == c).map_or("", |(_, v)| *v))
        .collect();
    assert_eq!(cells.len(), values.iter().filter(|v| !v.is_empty()).count());
    format!("{}\n", values.join(","))
}

/// A door row at `site`.
fn door_row(
    id: &str,
    site: &str,
    kind: &str,
    manufacturer: &str,
    serial: &str,
    date: &str,
) -> String {
    row(&[
        ("record", "door"),
        ("door_id", id),
        ("site_id", site),
        ("kind", kind),
        ("location", "Loading bay"),
        ("manufacturer", manufacturer),
        ("model", "M1"),
        ("serial", serial),
        ("installed_on", date),
    ])
}

fn header() -> String {
    format!("{}\n", sample().lines().next().unwrap())
}

#[tokio::test]
async fn the_sample_file_comes_in_whole() {
    let t = TestApp::spawn().await;
    let summary = run(&t, &sample(), false).await.unwrap();
    assert_eq!(
        summary,
        Summary {
            rows: 13,
            registered: 13,
            updated: 0,
            unchanged: 0,
            events: 13,
            dry_run: false
        }
    );
    assert_eq!(
        summary.to_string(),
        "13 rows: 13 registered, 0 updated, 0 unchanged"
    );
    for (kind, n) in [("customer", 2), ("site", 3), ("door", 8)] {
        let stored = t
            .count(&format!(
                "SELECT count(*) FROM events WHERE aggregate_type = '{kind}' AND metadata->'actor'->>'id' = 'registry-import'"
            ))
            .await;
        assert_eq!(stored, n, "{kind} events by registry-import");
    }
    assert_eq!(entries(&t).await, 13);
    let door = t
        .count("SELECT count(*) FROM registry_entries WHERE kind = 'door' AND id = 'door-mercy-fd-2b' AND customer_id = 'cust-mercy' AND entry->>'fire_rating' = '90 min'")
        .await;
    assert_eq!(
        door, 1,
        "the fire door, with its site's customer and its label"
    );
    let ifm = t
        .count("SELECT count(*) FROM registry_entries WHERE id = 'cust-northgate' AND entry->>'billing' = 'ifm' AND entry->>'ifm_account' = 'SC-NGR-20417'")
        .await;
    assert_eq!(ifm, 1);
    let keys = t
        .count("SELECT count(DISTINCT metadata->>'idempotency_key') FROM events WHERE metadata->>'idempotency_key' LIKE 'import:%'")
        .await;
    assert_eq!(keys, 13, "one key per row, from its content");
}

#[tokio::test]
async fn a_second_run_appends_nothing_and_a_changed_row_updates() {
    let t = TestApp::spawn().await;
    run(&t, &sample(), false).await.unwrap();
    let before = events(&t).await;
    let again = run(&t, &sample(), false).await.unwrap();
    assert_eq!(
        (
            again.registered,
            again.updated,
            again.unchanged,
            again.events
        ),
        (0, 0, 13, 0)
    );
    assert_eq!(events(&t).await, before);
    let moved = sample().replace("Receiving, dock door 5", "Receiving, dock door 5 (east)");
    let changed = run(&t, &moved, false).await.unwrap();
    assert_eq!(
        (
            changed.registered,
            changed.updated,
            changed.unchanged,
            changed.events
        ),
        (0, 1, 12, 1)
    );
    let updated = t
        .count("SELECT count(*) FROM events WHERE aggregate_id = 'door-ngdc-dock-05' AND event_type = 'DoorUpdated'")
        .await;
    assert_eq!(updated, 1);
}

#[tokio::test]
async fn a_dry_run_writes_nothing() {
    let t = TestApp::spawn().await;
    let summary = run(&t, &sample(), true).await.unwrap();
    assert_eq!((summary.registered, summary.events), (13, 13));
    assert!(summary.to_string().ends_with("\ndry run: nothing written"));
    assert_eq!((events(&t).await, entries(&t).await), (0, 0));
}

#[tokio::test]
async fn a_missing_or_unknown_column_is_named_and_nothing_is_written() {
    let t = TestApp::spawn().await;
    let csv = sample();
    let (header, rows) = csv.split_once('\n').unwrap();
    let header = header
        .replace(",time_zone,", ",timezone,")
        .replace(",serial,", ",serial_no,");
    let problems = refused(&t, &format!("{header}\n{rows}")).await;
    assert_eq!(
        problems,
        vec![
            p(1, "timezone", "unknown_column"),
            p(1, "serial_no", "unknown_column"),
            p(1, "time_zone", "missing_column"),
        ]
    );
    let without_kind =
        "record,customer_id,site_id,door_id,name,billing,address,time_zone,location\n\
                        customer,cust-a,,,A,direct,,,\n";
    assert_eq!(
        refused(&t, without_kind).await,
        vec![p(1, "kind", "missing_column")]
    );
    // A row with fewer cells than the header (its columns run short) is
    // named by its line, and the good rows around it are not written either.
    let (first, _) = rows.split_once('\n').unwrap();
    let short = format!(
        "{header_ok}\n{first}\ncustomer,cust-short\n",
        header_ok = csv.split_once('\n').unwrap().0
    );
    assert_eq!(
        refused(&t, &short).await,
        vec![p(3, "record", "malformed_row")]
    );
    assert_eq!((events(&t).await, entries(&t).await), (0, 0));
}

#[tokio::test]
async fn every_bad_row_is_named_by_line_and_column_and_nothing_is_written() {
    let t = TestApp::spawn().await;
    let mut csv = sample();
    // Line 15: the serial of dock door 4 (same maker, other case).
    csv += &door_row(
        "door-dup",
        "site-northgate-dc",
        "dock",
        "overhead door",
        "odc-591-33017",
        "2020-01-01",
    );
    // Line 16: a site nobody registered.
    csv += &door_row(
        "door-lost",
        "site-nowhere",
        "dock",
        "Rytec",
        "R-1",
        "2020-01-01",
    );
    // Line 17: no such kind.
    csv += &door_row(
        "door-odd",
        "site-northgate-dc",
        "sliding_door",
        "Rytec",
        "R-2",
        "2020-01-01",
    );
    // Line 18: no such date.
    csv += &door_row(
        "door-late",
        "site-northgate-dc",
        "dock",
        "Rytec",
        "R-3",
        "2020-13-40",
    );
    let problems = refused(&t, &csv).await;
    assert_eq!(
        problems,
        vec![
            p(15, "serial", "duplicate_serial"),
            p(16, "site_id", "not_found"),
            p(17, "kind", "invalid"),
            p(18, "installed_on", "invalid"),
        ]
    );
    assert_eq!((events(&t).await, entries(&t).await), (0, 0));
    let Err(ImportError::Refused(all)) = run(&t, &csv, false).await else {
        panic!("refused")
    };
    assert_eq!(
        all[0].to_string(),
        "line 15: serial: duplicate_serial (door door-ngdc-dock-04 has it)"
    );
}

#[tokio::test]
async fn a_bad_row_against_an_imported_base_leaves_it_as_it_was() {
    let t = TestApp::spawn().await;
    run(&t, &sample(), false).await.unwrap();
    let before = (events(&t).await, entries(&t).await);
    let csv = format!(
        "{}{}{}",
        header(),
        door_row(
            "door-new",
            "site-mercy-east",
            "dock",
            "Rytec",
            "R-9",
            "2021-02-03"
        ),
        door_row(
            "door-copy",
            "site-mercy-east",
            "swinging_fire",
            "Ceco Door",
            "CD-88231-2B",
            "2021-02-03"
        ),
    );
    assert_eq!(
        refused(&t, &csv).await,
        vec![p(3, "serial", "duplicate_serial")]
    );
    assert_eq!((events(&t).await, entries(&t).await), before);
}

#[tokio::test]
async fn rows_depending_on_a_refused_row_say_so_and_ids_appear_once() {
    let t = TestApp::spawn().await;
    let csv = sample().replace(
        "41.4989,-88.1437,America/Chicago",
        "41.4989,-88.1437,Mars/Olympus",
    ) + &row(&[
        ("record", "customer"),
        ("customer_id", "cust-mercy"),
        ("name", "Mercy again"),
        ("billing", "direct"),
    ]) + &row(&[
        ("record", "site"),
        ("site_id", "site-x"),
        ("name", "X"),
        ("address", "1 Main St"),
        ("time_zone", "America/Chicago"),
    ]);
    let problems = refused(&t, &csv).await;
    assert_eq!(
        problems,
        vec![
            p(5, "time_zone", "validation_error"),
            p(10, "site_id", "not_imported"),
            p(11, "site_id", "not_imported"),
            p(12, "site_id", "not_imported"),
            p(15, "customer_id", "duplicate_id"),
            p(16, "customer_id", "missing"),
        ]
    );
    assert_eq!(events(&t).await, 0);
}

#[tokio::test]
async fn a_row_names_only_its_own_columns_and_sites_keep_their_customer() {
    let t = TestApp::spawn().await;
    let csv = header()
        + &row(&[
            ("record", "customer"),
            ("customer_id", "cust-a"),
            ("name", "A"),
            ("billing", "direct"),
            ("kind", "dock"),
        ])
        + &row(&[("record", "shed")])
        + &row(&[
            ("record", "customer"),
            ("customer_id", "cust-b"),
            ("name", "B"),
            ("billing", "barter"),
            ("contact_phone", "+1 555 0100"),
        ]);
    assert_eq!(
        refused(&t, &csv).await,
        vec![
            p(2, "kind", "not_applicable"),
            p(3, "record", "invalid"),
            p(4, "billing", "invalid"),
            p(4, "contact_name", "missing"),
        ]
    );
    run(&t, &sample(), false).await.unwrap();
    let moved = sample().replace(
        "site,cust-northgate,site-northgate-store-112",
        "site,cust-mercy,site-northgate-store-112",
    );
    assert_eq!(
        refused(&t, &moved).await,
        vec![
            p(6, "customer_id", "customer_differs"),
            p(13, "site_id", "not_imported"),
            p(14, "site_id", "not_imported"),
        ]
    );
}

#[tokio::test]
async fn the_binary_imports_and_the_chain_verifies() {
    let t = TestApp::spawn().await;
    let (code, out) = cli_with(&t.db_url, &["registry", "import", SAMPLE_PATH], None, None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out, "13 rows: 13 registered, 0 updated, 0 unchanged\n");
    let (code, out) = cli_with(
        &t.db_url,
        &["registry", "import", "--dry-run", SAMPLE_PATH],
        None,
        None,
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out,
        "13 rows: 0 registered, 0 updated, 13 unchanged\ndry run: nothing written\n"
    );
    let (code, out) = cli_with(
        &t.db_url,
        &["audit", "verify", "--all", "--verbose"],
        None,
        None,
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("door door-mercy-fd-2b: verified (1 events)"),
        "{out}"
    );
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), sample().replace("2016-05-12", "12/05/2016")).unwrap();
    let (code, out) = cli_with(
        &t.db_url,
        &["registry", "import", bad.path().to_str().unwrap()],
        None,
        None,
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.starts_with("line 7: installed_on: invalid ("), "{out}");
    assert_eq!(events(&t).await, 13);
}

#[tokio::test]
async fn a_sites_check_in_radius_comes_in_from_its_own_optional_column() {
    let t = TestApp::spawn().await;
    let head = "record,customer_id,site_id,door_id,name,billing,address,latitude,longitude,geofence_radius_m,time_zone,kind,location\n\
                customer,geo-c,,,Geo Co,direct,,,,,,,\n";
    let site = |id: &str, radius: &str| {
        format!("site,geo-c,{id},,Yard {id},,1 Yard Rd,41.5,-88.1,{radius},America/Chicago,,\n")
    };
    let bad = format!(
        "{head}{}{}{}",
        site("s1", "400"),
        site("s2", "wide"),
        site("s3", "20")
    );
    let problems = refused(&t, &bad).await;
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0], p(4, "geofence_radius_m", "invalid"));
    assert_eq!(
        (problems[1].0, problems[1].1.as_str()),
        (5, "geofence_radius_m")
    );
    assert_eq!((events(&t).await, entries(&t).await), (0, 0));
    let good = format!("{head}{}{}", site("s1", "400"), site("s2", ""));
    run(&t, &good, false).await.unwrap();
    let s1 = t.get("/v1/sites/s1", &t.keys.dispatcher).await;
    assert_eq!(s1.json["geofence_radius_m"], 400);
    let s2 = t.get("/v1/sites/s2", &t.keys.dispatcher).await;
    assert!(s2.json.get("geofence_radius_m").is_none(), "{:?}", s2.json);
}
