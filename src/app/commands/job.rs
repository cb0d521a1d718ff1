//! A job command's whole way through the application, in the order it
//! runs: the one door ([`App::job_command`]) and its known-key shortcut;
//! the job as its stream makes it — read with the key's stored answer by
//! the read–decide–write runner every command shares ([`App::command`]), or
//! kept by the job cache ([`crate::app::cache`]); the facts, the decision
//! and the events prepared ([`App::decide_job`]); the one write with its
//! answer ([`App::write`]); and the answer.
//!
//! The shortcut: a job command from an API key this process has resolved
//! before ([`KnownKeys`](crate::app::keys::KnownKeys)), on a job whose state
//! it keeps, skips the key lookup. The gate admits it on the caller the key
//! resolved to before (a *provisional* [`KeyedCaller`]), and its write
//! checks, in the same subtransaction, that the key is still active
//! (`dispatch_require_active_key`, migration 0008): a revoked key takes
//! effect at the revocation's commit, as it does with the lookup.
//!
//! The rule: nothing is answered on a provisional caller but a write that
//! checked the key. Whatever that write does not settle — a bad request, a
//! refusal, a stale state, a reused idempotency key, a key no longer active
//! — is answered only after the key is looked up ([`App::confirm_key`]), so
//! the answers (401 before anything else) are those of the ordinary path.

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::{json, Value};

use super::{derived_id, events_json, facts, run, split_event, Decided, Reply};
use crate::app::turns::Turn;
use crate::app::{App, Caller, KeyedCaller, RequestMeta};
use crate::db::LazyConn;
use crate::domain::job::{CheckOutcome, Job, JobCommand, JobData, JobError, JobEvent, JobState};
use crate::domain::Issued;
use crate::error::{ApiError, Result};
use crate::store::{self, Answer, Appended, DoorRow, NewEvent, Refused, Write};

/// What a job's row in `job_doors` records (besides when): its site and
/// door, state and technician.
fn door_facts(d: &JobData) -> (String, String, JobState, Option<String>) {
    (
        d.site.id.clone(),
        d.door.id.clone(),
        d.state,
        d.current_visit().map(|v| v.technician_id.clone()),
    )
}

impl App {
    /// Runs a job command on job `job_id` for `who`: on a provisional caller
    /// through the write that checks the key, and otherwise — or when that
    /// write does not settle it — on the confirmed caller
    /// ([`App::execute_job`]).
    pub async fn job_command(
        &self,
        who: &KeyedCaller,
        meta: &RequestMeta,
        job_id: &str,
        command: JobCommand,
    ) -> Result<Reply> {
        let turn = self.jobs.turn(Job::TYPE, job_id).await;
        if who.is_provisional() {
            match self.key_in_write(who, meta, job_id, command.clone()).await {
                Ok(Some(reply)) => return Ok(reply),
                Err(e) => return Err(self.refusal(who, e).await),
                Ok(None) => {}
            }
        }
        let caller = self.confirm_key(who).await?;
        self.job_in_turn(&caller, meta, Some(job_id), command, Some(turn))
            .await
    }

    /// A job command on a job whose state this process keeps, from a
    /// provisional caller: answers only if the command appends events and
    /// its write, which checks in the same statement that the key is still
    /// active, commits. `None` otherwise — the job is not kept, the command
    /// is refused, the state was stale, the idempotency key was used
    /// before, or the API key is no longer active.
    async fn key_in_write(
        &self,
        who: &KeyedCaller,
        meta: &RequestMeta,
        job_id: &str,
        command: JobCommand,
    ) -> Result<Option<Reply>> {
        let started = std::time::Instant::now();
        if !crate::app::storable_id(job_id) {
            return Ok(None);
        }
        let Some(state) = self.jobs.take(job_id) else {
            return Ok(None);
        };
        let name = command.wire_name();
        let reply = self
            .cached_job_command(
                &who.caller,
                meta,
                job_id,
                command,
                state,
                Some(&who.key_hash),
            )
            .await?;
        if let Some(r) = &reply {
            record_command(name, started, Ok(r));
        }
        Ok(reply)
    }
    /// Executes a job command. `job_id` is `None` for `open_job` (the id is
    /// derived from the caller and the idempotency key, so retries agree).
    /// It waits for this process's turn on the job first
    /// ([`crate::app::turns`]).
    pub async fn execute_job(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        job_id: Option<&str>,
        command: JobCommand,
    ) -> Result<Reply> {
        self.job_in_turn(caller, meta, job_id, command, None).await
    }

    /// [`App::execute_job`], in the job's `turn` when the caller holds it
    /// already (and otherwise once the job's id is known).
    async fn job_in_turn(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        job_id: Option<&str>,
        mut command: JobCommand,
        turn: Option<Turn>,
    ) -> Result<Reply> {
        let started = std::time::Instant::now();
        let name = command.wire_name();
        if let Err(e) = self.register_at_call(caller, meta, &mut command).await {
            record_command(name, started, Err(&e));
            return Err(e);
        }
        let job_id = job_id
            .map(str::to_string)
            .unwrap_or_else(|| derived_id(caller, meta, "job"));
        if !crate::app::storable_id(&job_id) {
            return Err(ApiError::Job(JobError::JobNotFound));
        }
        let _turn = match turn {
            Some(turn) => turn,
            None => self.jobs.turn(Job::TYPE, &job_id).await,
        };
        let cached = match self.jobs.take(&job_id) {
            Some(state) => {
                self.cached_job_command(caller, meta, &job_id, command.clone(), state, None)
                    .await
            }
            None => Ok(None),
        };
        let result = match cached {
            Ok(Some(reply)) => Ok(reply),
            Err(e) => Err(e),
            Ok(None) => {
                let app = self.clone();
                let caller2 = caller.clone();
                let meta2 = meta.clone();
                let stream_id = job_id.clone();
                // Decided again on the fresh stream after a lost version
                // race: each decision gets its own copy of the command.
                self.command(caller, meta, (Job::TYPE, &stream_id), move |conn, rows| {
                    let (app, caller, meta) = (app.clone(), caller2.clone(), meta2.clone());
                    let (job_id, command) = (job_id.clone(), command.clone());
                    Box::pin(async move {
                        let (events, head) = store::decode_stream::<JobEvent>(&rows)?;
                        let job = Job::from_events(events);
                        let mut conn = LazyConn::Held(conn);
                        app.decide_job(&mut conn, &caller, &meta, &job_id, command, job, head)
                            .await
                    })
                })
                .await
            }
        };
        record_command(name, started, result.as_ref());
        result
    }

    /// Runs a job command on the job's cached state: one write and no read.
    /// `None` when the cached path does not answer — the decision did not
    /// append events, or the write was refused because the state was stale
    /// or the key was used before — and the ordinary path must decide from
    /// the store (see [`crate::app::cache`]).
    ///
    /// `key_check`: see [`App::write`]; a refused key is `None` too.
    async fn cached_job_command(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        job_id: &str,
        command: JobCommand,
        (job, head): (Job, store::StreamState),
        key_check: Option<&str>,
    ) -> Result<Option<Reply>> {
        // Taken only if the decision reads outside the job (facts::gather).
        let mut conn = LazyConn::pooled(&self.pool);
        let decided = match self
            .decide_job(&mut conn, caller, meta, job_id, command, job, head)
            .await
        {
            Ok(d) if d.status < 400 && d.appends() => d,
            _ => return Ok(None),
        };
        drop(conn);
        let status = decided.status;
        match self.write(caller, meta, decided, key_check).await? {
            Ok(body) => Ok(Some(Reply {
                status,
                body,
                replayed: false,
            })),
            Err(Refused::Conflict) => {
                metrics::counter!("dispatch_job_cache_total", "outcome" => "stale").increment(1);
                Ok(None)
            }
            Err(Refused::KeyRefused) => {
                metrics::counter!("dispatch_job_cache_total", "outcome" => "key_refused")
                    .increment(1);
                Ok(None)
            }
            Err(Refused::Failed(e)) => Err(e.into()),
        }
    }

    /// Decides a job command on the job as it stands (`job` at `head`): the
    /// facts it needs, the `If-Match` check, the aggregate's decision, the
    /// events prepared for the write and the answer rendered. Its span is
    /// the trace's `decide` (docs/08, "Traces").
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(name = "decide", skip_all,
        fields(command = command.wire_name(), job_id = %job_id, version = job.version, events = tracing::field::Empty))]
    async fn decide_job(
        &self,
        conn: &mut LazyConn<'_>,
        caller: &Caller,
        meta: &RequestMeta,
        job_id: &str,
        mut command: JobCommand,
        mut job: Job,
        head: store::StreamState,
    ) -> Result<Decided> {
        let at = self.clock.now();
        facts::gather(conn, job_id, &job, &mut command, at, &caller.key_name).await?;
        if let Some(expected) = meta.if_match {
            if expected != job.version as i64 {
                return Err(ApiError::VersionConflict {
                    expected: Some(expected),
                    current: Some(job.version as i64),
                });
            }
        }
        let is_open = matches!(command, JobCommand::OpenJob(_));
        let name = command.wire_name();
        let incident_type = match &command {
            JobCommand::OpenJob(c) => Some(c.incident_type.clone()),
            _ => job.data().map(|d| d.incident_type.clone()),
        };
        let sop = match (command.sop_stage(), incident_type) {
            (Some(stage), Some(t)) => self.sops.get(&t).map(|s| s.reference(stage).clone()),
            _ => None,
        };
        let door_before = job.data().map(door_facts);
        let issued = Issued::new(caller.actor(), at, command);
        let events = run(&mut job, issued, &self.job_services()).await?;
        tracing::Span::current().record("events", events.len());
        let mut new_events = Vec::with_capacity(events.len());
        for e in &events {
            let (event_type, payload) = split_event(e)?;
            new_events.push(NewEvent {
                event_type,
                event_version: e.event_version(),
                payload,
                meta: self.event_meta(caller, meta, at, sop.clone(), name),
            });
        }
        let (append, appended) =
            store::prepare_append(&self.chain, Job::TYPE, job_id, &head, new_events)?;
        let data = job.data().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("job without data after a command"))
        })?;
        let door = door_row(job_id, data, door_before, &events, at);
        let (status, body) = job_answer(job_id, &job, data, &events, &appended, is_open);
        Ok(Decided {
            status,
            body,
            append: Some(append),
            door,
            job: Some(job),
        })
    }

    /// Writes what a decision leaves — its events, stream head and door row,
    /// with its answer — as one all-or-nothing write, committed with the
    /// writes of concurrent commands (see [`crate::store::writer`]); returns
    /// the stored answer (with the events' positions in place). Once
    /// written, the job's new state is kept and the projectors are woken
    /// ([`App::written`]).
    ///
    /// `key_check`: the SHA-256 of a key that was not looked up for this
    /// request; the write is then refused ([`Refused::KeyRefused`]) unless
    /// the key is still active.
    ///
    /// Its span is the trace's `write`; the writer records on it the size of
    /// the batch the write was committed in, and the batch's own span
    /// (`write_batch`) follows from it (docs/08, "Traces").
    #[tracing::instrument(name = "write", skip_all, fields(
        events = decided.append.as_ref().map_or(0, |a| a.events.len()),
        batch_size = tracing::field::Empty,
    ))]
    pub(super) async fn write(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        decided: Decided,
        key_check: Option<&str>,
    ) -> Result<std::result::Result<Vec<u8>, Refused>> {
        let bytes = serde_json::to_vec(&decided.body).map_err(|e| ApiError::Internal(e.into()))?;
        let events = decided.append.as_ref().map_or(0, |a| a.events.len());
        let answer = Answer::new(
            &caller.key_name,
            &meta.idempotency_key,
            &meta.request_hash,
            decided.status,
            &bytes,
            events,
        )?;
        let head = decided
            .append
            .as_ref()
            .filter(|a| !a.events.is_empty())
            .map(|a| {
                (
                    a.aggregate_type.clone(),
                    a.aggregate_id.clone(),
                    a.head.clone(),
                )
            });
        let outcome = self
            .writer
            .write(Write {
                answer: Some(answer),
                key_check: key_check.map(str::to_string),
                append: decided.append,
                door: decided.door,
            })
            .await;
        if outcome.is_ok() {
            if let Some((stream_type, stream_id, head)) = head {
                self.written((&stream_type, &stream_id), decided.job, head);
            }
        }
        Ok(outcome)
    }

    /// After a write that appended events to `stream` committed (`head`: its
    /// new head): wakes the projectors and keeps the job's new state.
    fn written(&self, stream: (&str, &str), job: Option<Job>, head: store::StreamState) {
        store::wake_projectors(&self.pool);
        if let Some(job) = job {
            // A job in a final state takes few commands more (most refused):
            // the cache keeps the jobs being worked.
            let open = job.data().is_some_and(|d| !d.state.is_final());
            if stream.0 == Job::TYPE && open {
                self.jobs.put(stream.1, job, head);
            }
        }
    }
}

/// The job's new row in the door index, if what it holds changed (most
/// commands — checklist items, evidence, notes — leave it as it was) or its
/// work was completed (`at`).
fn door_row(
    job_id: &str,
    data: &JobData,
    before: Option<(String, String, JobState, Option<String>)>,
    events: &[JobEvent],
    at: DateTime<Utc>,
) -> Option<DoorRow> {
    let completed = events.iter().any(|e| {
        matches!(
            e,
            JobEvent::CheckedOut {
                outcome: CheckOutcome::Completed,
                ..
            }
        )
    });
    let completed_at = completed.then_some(at);
    (completed || before.as_ref() != Some(&door_facts(data))).then(|| DoorRow {
        job_id: job_id.to_string(),
        site_id: data.site.id.clone(),
        door_id: data.door.id.clone(),
        state: data.state.as_str().to_string(),
        technician_id: data.current_visit().map(|v| v.technician_id.clone()),
        completed_at,
        updated_at: at,
    })
}

/// A job command's answer: 201 for `open_job`, 202 when the command's only
/// event asks for an approval, 200 otherwise; the job's id, version and
/// state and the events appended.
fn job_answer(
    job_id: &str,
    job: &Job,
    data: &JobData,
    events: &[JobEvent],
    appended: &[Appended],
    is_open: bool,
) -> (u16, Value) {
    let approval = events.iter().find_map(|e| match e {
        JobEvent::ApprovalRequested { approval_id, .. } => Some(approval_id.clone()),
        _ => None,
    });
    let only_approval = approval.is_some() && events.len() == 1;
    let mut body = json!({
        "job_id": job_id,
        "version": job.version,
        "state": data.state.as_str(),
        "events": events_json(appended),
    });
    let status = if only_approval {
        body["status"] = "approval_required".into();
        body["approval_id"] = approval.into();
        202
    } else if is_open {
        201
    } else {
        200
    };
    (status, body)
}

/// Counts a job command's outcome and time.
fn record_command(
    name: &'static str,
    started: std::time::Instant,
    result: std::result::Result<&Reply, &ApiError>,
) {
    let outcome = match result {
        Ok(r) if r.status < 400 => "ok",
        Ok(_) => "refused",
        Err(ApiError::VersionConflict { .. }) => "conflict",
        Err(_) => "error",
    };
    metrics::counter!("dispatch_commands_total", "command" => name, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("dispatch_command_seconds", "command" => name)
        .record(started.elapsed().as_secs_f64());
    // Refusals are counted by code where every call's answer is recorded,
    // the gate (`crate::tools::gate::Gate::record`), on every transport.
    if let Err(ApiError::VersionConflict { .. }) = result {
        metrics::counter!("dispatch_conflicts_total").increment(1);
    }
}
