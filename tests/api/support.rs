//! Test harness: the real router on a fresh PostgreSQL database per test.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use dispatch_api::app::evidence::EvidenceStore;
use dispatch_api::app::{keys, App};
use dispatch_api::clock::ManualClock;
use dispatch_api::domain::policy::DispatchPolicy;
use dispatch_api::domain::sop::SopLibrary;
use dispatch_api::domain::Role;
use dispatch_api::http::{router, AppState, Limits};
use dispatch_api::read_models::runtime::Runtime;
use dispatch_api::read_models::ProjectionContext;
use dispatch_api::tools::allowlist::Allowlist;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tower::ServiceExt;
use uuid::Uuid;

/// The server the tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The fixed start of every test's clock.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 22, 0, 0).unwrap()
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub json: Value,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.json.get("code").and_then(Value::as_str).unwrap_or("")
    }
    pub fn state(&self) -> &str {
        self.json.get("state").and_then(Value::as_str).unwrap_or("")
    }
    /// The body as text (lossy), for messages and HTML.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Keys made for a test.
#[derive(Clone)]
pub struct Keys {
    pub agent: String,
    pub dispatcher: String,
    pub auditor: String,
    pub admin: String,
    pub tech_a: String,
    pub tech_d: String,
}

pub struct TestApp {
    pub router: Router,
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub db_url: String,
    pub keys: Keys,
    pub counter: Arc<AtomicU64>,
    /// The test's database, dropped with the last handle.
    pub db: Arc<TestDb>,
}

/// A test's database: dropped when the last handle goes — at the test's
/// end, passed or failed — so that test runs leave no databases behind
/// (hundreds of them slow every later run: autovacuum visits each).
pub struct TestDb {
    pub name: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Dropped inside the test's runtime, which cannot be blocked on:
        // a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let opts = PgConnectOptions::from_str(&admin_url()).ok()?;
                let mut conn = opts.connect().await.ok()?;
                sqlx::query(&sql).execute(&mut conn).await.ok()?;
                conn.close().await.ok()
            })
        })
        .join();
    }
}

/// The chain keyring the tests key events with (one per test process).
pub fn chain_keys() -> Arc<dispatch_api::store::chain::ChainKeys> {
    static KEYS: std::sync::OnceLock<Arc<dispatch_api::store::chain::ChainKeys>> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(|| Arc::new(dispatch_api::store::chain::ChainKeys::generate()))
        .clone()
}

/// `dispatch-api ARGS` on database `db_url` with the tests' keyring
/// (`keyring`: its document; `None`: the tests' one) and checkpoints read
/// from `evidence` (`None`: none); exit code and stdout.
pub fn cli_with(
    db_url: &str,
    args: &[&str],
    keyring: Option<&str>,
    evidence: Option<&std::path::Path>,
) -> (Option<i32>, String) {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch-api"));
    cmd.args(args)
        .env("DATABASE_URL", db_url)
        .env(
            "DISPATCH_SOPS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/sops"),
        )
        .env("DISPATCH_DATA_DIR", data.path())
        .env_remove("DISPATCH_CHAIN_KEYS_FILE")
        .env(
            "DISPATCH_CHAIN_KEYRING",
            keyring.map_or_else(|| chain_keys().to_toml(), str::to_string),
        );
    match evidence {
        Some(dir) => cmd.env("DISPATCH_EVIDENCE_STORE", dir),
        None => cmd.env_remove("DISPATCH_EVIDENCE_STORE"),
    };
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// The shipped allowlist with no rate limit: the suites make hundreds of
/// calls with one key, and the gate's budget covers REST too. The tests of
/// the limit itself set one (`tools::with_tools`).
pub fn test_toolset() -> Arc<dispatch_api::tools::Toolset> {
    Arc::new(
        dispatch_api::tools::Toolset::new(
            Arc::new(Allowlist::builtin().unwrap()),
            dispatch_api::tools::ToolsConfig {
                rate_per_minute: 0,
                ..Default::default()
            },
        )
        .unwrap(),
    )
}

/// A router serving `app` as the tests' replicas do: the shipped allowlist,
/// default limits, no metrics, no rate limit.
pub fn router_for(app: App) -> Router {
    router(AppState {
        app,
        allowlist: Arc::new(Allowlist::builtin().unwrap()),
        limits: Limits::default(),
        metrics: None,
        tools: test_toolset(),
        webhook_urls: Default::default(),
    })
}

/// Creates a fresh database with migrations applied.
pub async fn fresh_database() -> (String, String, PgPool) {
    let admin = PgConnectOptions::from_str(&admin_url()).unwrap();
    let name = format!("dispatch_test_{}", Uuid::new_v4().simple());
    let mut conn = admin
        .connect()
        .await
        .expect("PostgreSQL must be reachable for the API tests (TEST_DATABASE_URL)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    let opts = admin.clone().database(&name);
    let url = format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0);
    let pool = PgPoolOptions::new()
        .max_connections(24)
        .connect_with(opts)
        .await
        .unwrap();
    dispatch_api::db::migrate(&pool).await.unwrap();
    (url, name, pool)
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Limits::default()).await
    }

    /// A test app whose read models are registered and caught up, so that
    /// their queries answer.
    pub async fn spawn_projected() -> TestApp {
        let t = Self::spawn().await;
        t.project().await;
        t
    }

    pub async fn spawn_with(limits: Limits) -> TestApp {
        let (db_url, db_name, pool) = fresh_database().await;
        let clock = Arc::new(ManualClock::new(t0()));
        let sops = SopLibrary::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/sops"
        )))
        .unwrap();
        let app = App {
            pool: pool.clone(),
            sops: Arc::new(sops),
            policy: Arc::new(DispatchPolicy::default()),
            clock: clock.clone(),
            evidence: EvidenceStore::in_memory(),
            jobs: dispatch_api::app::cache::JobCache::default(),
            keys: dispatch_api::app::KnownKeys::new(dispatch_api::app::cache::DEFAULT_CAPACITY),
            writer: dispatch_api::store::Writer::start(
                &pool,
                dispatch_api::store::writer::DEFAULT_WRITERS,
            ),
            chain: chain_keys(),
            checkpoints: dispatch_api::app::checkpoints::Checkpoints::default(),
            invocations: dispatch_api::tools::log::InvocationLog::start(&pool),
        };
        let state = AppState {
            app: app.clone(),
            allowlist: Arc::new(Allowlist::builtin().unwrap()),
            limits,
            metrics: Some(dispatch_api::telemetry::metrics_handle()),
            tools: test_toolset(),
            webhook_urls: Default::default(),
        };
        let make = |role, name: &str, tech: Option<&str>| {
            let pool = pool.clone();
            let name = name.to_string();
            let tech = tech.map(str::to_string);
            async move {
                keys::create_key(&pool, role, &name, tech.as_deref())
                    .await
                    .unwrap()
            }
        };
        let keys = Keys {
            agent: make(Role::Agent, "agent-1", None).await,
            dispatcher: make(Role::Dispatcher, "dispatcher-1", None).await,
            auditor: make(Role::Auditor, "auditor-1", None).await,
            admin: make(Role::Admin, "admin-1", None).await,
            tech_a: make(Role::Technician, "tech-a", Some("tech-a")).await,
            tech_d: make(Role::Technician, "tech-d", Some("tech-d")).await,
        };
        TestApp {
            router: router(state),
            app,
            clock,
            db_url,
            keys,
            counter: Arc::new(AtomicU64::new(0)),
            db: Arc::new(TestDb { name: db_name }),
        }
    }

    /// `self` served by another app (a replica, or one restarted with other
    /// settings): the same database, keys, clock and counters, with requests
    /// sent to `router_for(app)`.
    pub fn serving(&self, app: App) -> TestApp {
        TestApp {
            router: router_for(app.clone()),
            app,
            clock: self.clock.clone(),
            db_url: self.db_url.clone(),
            keys: self.keys.clone(),
            counter: self.counter.clone(),
            db: self.db.clone(),
        }
    }

    /// The same app, its webhook endpoints allowed where `policy` says
    /// (the webhooks' tests allow receivers on 127.0.0.1).
    pub fn with_webhook_urls(
        self,
        policy: dispatch_api::subscriptions::webhooks::UrlPolicy,
    ) -> TestApp {
        let router = router(AppState {
            app: self.app.clone(),
            allowlist: Arc::new(Allowlist::builtin().unwrap()),
            limits: Limits::default(),
            metrics: Some(dispatch_api::telemetry::metrics_handle()),
            tools: test_toolset(),
            webhook_urls: policy,
        });
        TestApp { router, ..self }
    }

    /// A new idempotency key.
    pub fn idem(&self) -> String {
        format!("key-{}", self.counter.fetch_add(1, Ordering::SeqCst))
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            json,
        }
    }

    pub async fn post_raw(
        &self,
        path: &str,
        key: Option<&str>,
        idem: Option<&str>,
        body: &str,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut b = Request::builder().method("POST").uri(path);
        if !extra
            .iter()
            .any(|(h, _)| h.eq_ignore_ascii_case("content-type"))
        {
            b = b.header("content-type", "application/json");
        }
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        if let Some(i) = idem {
            b = b.header("idempotency-key", i);
        }
        for (h, v) in extra {
            b = b.header(*h, *v);
        }
        self.send(b.body(Body::from(body.to_string())).unwrap())
            .await
    }

    /// `POST /v1/evidence`: uploads `content` as `content_type` with key
    /// `key` and idempotency key `idem` (`None`: none sent).
    pub async fn upload(
        &self,
        key: &str,
        idem: Option<&str>,
        content: &str,
        content_type: &str,
    ) -> Resp {
        let headers = [("content-type", content_type)];
        self.post_raw("/v1/evidence", Some(key), idem, content, &headers)
            .await
    }

    /// `POST path` with `body` sent as it is (JSON content type), key `key`
    /// and idempotency key `idem`.
    pub async fn post_text(&self, path: &str, key: &str, idem: &str, body: &str) -> Resp {
        self.post_raw(path, Some(key), Some(idem), body, &[]).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Resp {
        let idem = self.idem();
        self.post_text(path, key, &idem, &body.to_string()).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        let req = Request::builder()
            .method("GET")
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    /// Runs a job command with a fresh idempotency key.
    pub async fn cmd(&self, job: &str, command: &str, key: &str, body: Value) -> Resp {
        self.post(&format!("/v1/jobs/{job}/commands/{command}"), key, body)
            .await
    }

    /// `add_note` with `text` on a job, as `key`.
    pub async fn note(&self, job: &str, key: &str, text: &str) -> Resp {
        self.cmd(job, "add_note", key, json!({ "text": text }))
            .await
    }

    /// Runs `sql` (statements split on `;`) on the events table with its
    /// append-only trigger off: the tampering the chain must reveal.
    pub async fn tamper(&self, sql: &str) {
        let mut tx = self.app.pool.begin().await.unwrap();
        sqlx::query("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
            .execute(&mut *tx)
            .await
            .unwrap();
        for stmt in sql.split(';').filter(|s| !s.trim().is_empty()) {
            sqlx::query(stmt).execute(&mut *tx).await.unwrap();
        }
        sqlx::query("ALTER TABLE events ENABLE TRIGGER events_no_update_delete")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// A projector runtime for this app's read models on `pool`.
    pub fn runtime_on(&self, pool: PgPool) -> Runtime {
        Runtime::new(
            pool,
            ProjectionContext {
                sops: self.app.sops.clone(),
            },
        )
    }

    /// A projector runtime for this app's read models on its own pool.
    pub fn runtime(&self) -> Runtime {
        self.runtime_on(self.app.pool.clone())
    }

    /// Registers and catches up every read model, so that their queries answer.
    pub async fn project(&self) {
        let runtime = self.runtime();
        runtime.register().await.unwrap();
        runtime.catch_up().await.unwrap();
    }

    /// The answer of a `SELECT count(*) …` on this app's database.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.app.pool)
            .await
            .unwrap()
    }

    /// `record_intake` with [`TestApp::intake`], then `triage_job`, as the
    /// agent: the triage's answer.
    pub async fn intake_and_triage(&self, job: &str) -> Resp {
        let agent = &self.keys.agent;
        self.cmd(job, "record_intake", agent, Self::intake()).await;
        self.cmd(job, "triage_job", agent, json!({})).await
    }

    /// `offer_job` to technician `tech` on a job, as `key`.
    pub async fn offer(&self, job: &str, key: &str, tech: &str) -> Resp {
        let body = json!({ "technician_id": tech });
        self.cmd(job, "offer_job", key, body).await
    }

    /// Registers the four technicians of the canonical scenario.
    pub async fn register_technicians(&self) {
        let aaadm = json!([{"name": "AAADM", "expires_on": "2027-06-30"}]);
        for (id, certs, shift) in [
            ("tech-a", aaadm.clone(), "available"),
            ("tech-b", json!([]), "available"),
            ("tech-c", aaadm.clone(), "off"),
            ("tech-d", aaadm.clone(), "on_call"),
        ] {
            let r = self
                .post(
                    "/v1/technicians",
                    &self.keys.dispatcher,
                    json!({"technician_id": id, "name": format!("Technician {id}"), "skills": ["automatic_doors"], "certifications": certs, "territory": "north", "shift": shift, "labor_rate_cents": 9000}),
                )
                .await;
            assert_eq!(r.status, 201, "{:?}", r.json);
        }
    }

    /// Opens the canonical IFM job (automatic door stuck open, NTE $500).
    pub async fn open_ifm_job(&self, site: &str) -> String {
        self.open_ifm_job_as(&self.keys.agent, site).await
    }

    /// Opens the canonical IFM job as `key`'s caller.
    pub async fn open_ifm_job_as(&self, key: &str, site: &str) -> String {
        let r = self.post("/v1/jobs", key, open_body(site)).await;
        assert_eq!(r.status, 201, "{:?}", r.json);
        r.json["job_id"].as_str().unwrap().to_string()
    }

    /// Intake fields that make the canonical job complete (P1: after hours, not securable).
    pub fn intake() -> Value {
        json!({"fields": {
            "access_hours": "24/7 via security desk",
            "anyone_hurt_or_trapped": false,
            "opening_can_be_secured": false,
            "after_hours": true,
            "operator_make_model": "Stanley Dura-Glide",
            "stuck_position": "fully_open",
            "mode_switch_position": "automatic",
            "power_cycled": true,
            "obstruction_visible": false
        }})
    }

    /// How many of the job's stored events are of `event_type`.
    pub async fn count_events(&self, job: &str, event_type: &str) -> usize {
        let events = self.events(job).await;
        with_field(&events, "event_type", event_type).len()
    }

    /// The job's events as stored.
    pub async fn events(&self, job: &str) -> Vec<Value> {
        let r = self
            .get(&format!("/v1/jobs/{job}/events"), &self.keys.auditor)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        r.json["events"].as_array().unwrap().clone()
    }
}

pub fn open_body(site: &str) -> Value {
    json!({
        "incident_type": "door_stuck_open",
        "channel": "ifm",
        "client_id": "retail-co",
        "site": {"id": site, "name": "Retail Store 12", "address": "12 Market St"},
        "contact": {"name": "Sam Store", "phone": "+1-555-0100"},
        "door": {"id": "entrance-1", "location": "Main entrance"},
        "description": "Automatic sliding door stuck open after hours",
        "ifm": {"work_order_number": "WO-778812", "nte_cents": 50000}
    })
}

/// The string `field` of each element of the JSON array `list`.
pub fn strings<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    field_of_each(list.as_array().unwrap(), field)
}

/// The string `field` of each of `items`.
pub fn field_of_each<'a>(items: &'a [Value], field: &str) -> Vec<&'a str> {
    items
        .iter()
        .map(|item| item[field].as_str().unwrap())
        .collect()
}

/// The items whose `field` is `value`.
pub fn with_field<'a>(items: &'a [Value], field: &str, value: &str) -> Vec<&'a Value> {
    items.iter().filter(|item| item[field] == value).collect()
}

/// Validates an instance against a schema file under `schemas/`.
pub fn validate(schema_file: &str, instance: &Value) {
    let path = format!("{}/schemas/{schema_file}", env!("CARGO_MANIFEST_DIR"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{schema_file}: {errors:?}\n{instance:#}");
}

impl TestApp {
    /// Opens the canonical job as the dispatcher (another caller, so another id).
    pub async fn open_ifm_job_with_key(&self, site: &str) -> String {
        self.open_ifm_job_as(&self.keys.dispatcher, site).await
    }
}

/// A `verify_closeout` item list that passes every closeout item of a SOP
/// (as `GET /v1/sops/{incident_type}` answers it).
pub fn closeout_all_pass(sop: &Value) -> Vec<Value> {
    sop["closeout"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| json!({"id": i["id"], "result": "pass"}))
        .collect()
}

/// What one job command must answer.
#[derive(Debug, Clone, Copy)]
pub enum Want {
    /// This HTTP status.
    Status(u16),
    /// The job in this state afterwards.
    State(&'static str),
    /// This HTTP status and this problem code.
    Code(u16, &'static str),
    /// This HTTP status and the job in this state afterwards.
    StatusState(u16, &'static str),
}

impl Want {
    /// Asserts that `r`, the answer to `command`, is what is wanted.
    pub fn check(self, command: &str, r: &Resp) {
        let context = format!("{command}: {} {:?}", r.status, r.json);
        match self {
            Want::Status(status) => assert_eq!(r.status, status, "{context}"),
            Want::State(state) => assert_eq!(r.state(), state, "{context}"),
            Want::Code(status, code) => {
                assert_eq!((r.status, r.code()), (status, code), "{context}");
            }
            Want::StatusState(status, state) => {
                assert_eq!((r.status, r.state()), (status, state), "{context}");
            }
        }
    }
}

/// One step of a job's script: the command's wire name, the caller's key,
/// the body and what it must answer.
pub type Step<'a> = (&'a str, &'a str, Value, Want);

impl TestApp {
    /// Runs a job command and asserts what it answers.
    pub async fn expect(
        &self,
        job: &str,
        command: &str,
        key: &str,
        body: Value,
        want: Want,
    ) -> Resp {
        let r = self.cmd(job, command, key, body).await;
        want.check(command, &r);
        r
    }

    /// Runs job commands in order, each asserting what it answers; the answers.
    pub async fn script(&self, job: &str, steps: Vec<Step<'_>>) -> Vec<Resp> {
        let mut answers = Vec::with_capacity(steps.len());
        for (command, key, body, want) in steps {
            answers.push(self.expect(job, command, key, body, want).await);
        }
        answers
    }
}

/// The dispatcher, as the registry's tests act through `App` directly.
pub fn desk_caller() -> dispatch_api::app::Caller {
    dispatch_api::app::Caller {
        key_name: "dispatcher-1".into(),
        role: Role::Dispatcher,
        technician_id: None,
    }
}

/// A request's metadata under idempotency key `key`.
pub fn request_meta(key: &str) -> dispatch_api::app::RequestMeta {
    dispatch_api::app::RequestMeta {
        idempotency_key: key.into(),
        request_hash: format!("hash-{key}"),
        if_match: None,
        correlation_id: Uuid::new_v4(),
        trace_id: None,
        causation_id: None,
        tool_invocation_id: None,
    }
}

/// A registry command on `app` as the dispatcher, under a key of its own:
/// its status and body.
pub async fn registry_on(app: &App, id: Option<&str>, name: &str, body: Value) -> (u16, Value) {
    let key = format!("{name}-{}", Uuid::new_v4());
    let command = dispatch_api::app::registry::RegistryCommand::decode(name, body)
        .unwrap()
        .unwrap();
    let reply = app
        .registry_command(&desk_caller(), &request_meta(&key), id, command)
        .await
        .unwrap();
    (reply.status, serde_json::from_slice(&reply.body).unwrap())
}

/// A registry command the test needs to succeed; its body.
pub async fn registry(t: &TestApp, name: &str, id: Option<&str>, body: Value) -> Value {
    let (status, v) = registry_on(&t.app, id, name, body).await;
    assert!(status < 300, "{name}: {status} {v}");
    v
}

/// Where the located site of the geofence tests is (Mercy East, Chicago).
pub const SITE_LAT: f64 = 41.846;
/// Its longitude.
pub const SITE_LON: f64 = -87.6236;

/// A customer and a site with coordinates ([`SITE_LAT`], [`SITE_LON`]) and
/// no radius of its own (150 m), with automatic doors `geo-door-1..=n`.
pub async fn located_site(t: &TestApp, doors: usize) {
    registry(
        t,
        "register_customer",
        None,
        json!({"customer_id": "geo-cust", "name": "Mercy Health", "billing": "direct"}),
    )
    .await;
    registry(
        t,
        "register_site",
        None,
        json!({"site_id": "geo-site", "customer_id": "geo-cust", "name": "Mercy East",
               "address": "2525 S Michigan Ave", "latitude": SITE_LAT, "longitude": SITE_LON,
               "time_zone": "America/Chicago"}),
    )
    .await;
    for n in 1..=doors {
        registry(
            t,
            "register_door",
            None,
            json!({"door_id": format!("geo-door-{n}"), "site_id": "geo-site",
                   "kind": "automatic_sliding", "location": format!("Entrance {n}")}),
        )
        .await;
    }
}

/// Opens the canonical job at a registered door and works it to `en_route`
/// with technician D (technicians registered): the job's id.
pub async fn en_route_at(t: &TestApp, door_id: &str) -> String {
    let body = json!({
        "incident_type": "door_stuck_open",
        "channel": "phone",
        "door_id": door_id,
        "contact": {"name": "Pat Facilities", "phone": "+1-555-0142"},
        "description": "Sliding door stuck open",
    });
    let r = t.post("/v1/jobs", &t.keys.agent, body).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let job = r.json["job_id"].as_str().unwrap().to_string();
    let (agent, tech_d) = (&t.keys.agent, &t.keys.tech_d);
    let eta = (t0() + chrono::Duration::hours(1)).to_rfc3339();
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("record_intake", agent,  TestApp::intake(),                  Want::Status(200)),
        ("triage_job",    agent,  json!({}),                          Want::Status(200)),
        ("offer_job",     agent,  json!({"technician_id": "tech-d"}), Want::Status(200)),
        ("accept_offer",  tech_d, json!({"eta": eta}),                Want::Status(200)),
        ("start_travel",  tech_d, json!({}),                          Want::State("en_route")),
    ];
    t.script(&job, steps).await;
    job
}

/// Whether node ≥ 18 is missing (the browser tests and the example
/// consumers' tests need it), and what to install.
pub fn node_missing() -> Option<String> {
    match std::process::Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout);
            let major: u32 = v
                .trim()
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major < 18 {
                return Some(format!("node {} is older than 18", v.trim()));
            }
        }
        _ => return Some("node is not installed (apt-get install nodejs npm)".into()),
    }
    None
}
