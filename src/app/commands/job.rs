//! Job commands: decided on the job as its stream makes it — read from the
//! store, or kept by the job cache ([`crate::app::cache`]) — and answered
//! with the events they appended.

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::{derived_id, events_json, facts, record_command, run, split_event, Decided, Reply};
use crate::app::{App, Caller, RequestMeta};
use crate::domain::job::{CheckOutcome, Job, JobCommand, JobData, JobError, JobEvent, JobState};
use crate::domain::Issued;
use crate::error::{ApiError, Result};
use crate::store::{self, Appended, DoorRow, NewEvent, Refused};

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
    /// Executes a job command. `job_id` is `None` for `open_job` (the id is
    /// derived from the caller and the idempotency key, so retries agree).
    pub async fn execute_job(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        job_id: Option<&str>,
        command: JobCommand,
    ) -> Result<Reply> {
        let started = std::time::Instant::now();
        let name = command.wire_name();
        let job_id = job_id
            .map(str::to_string)
            .unwrap_or_else(|| derived_id(caller, meta, "job"));
        if !crate::app::storable_id(&job_id) {
            return Err(ApiError::Job(JobError::JobNotFound));
        }
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
                self.command(caller, meta, (Job::TYPE, &stream_id), move |conn, rows| {
                    Box::pin(async move {
                        let (events, head) = store::decode_stream::<JobEvent>(&rows)?;
                        let job = Job::from_events(events);
                        app.decide_job(conn, &caller2, &meta2, &job_id, command, job, head)
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
    pub(super) async fn cached_job_command(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        job_id: &str,
        command: JobCommand,
        (job, head): (Job, store::StreamState),
        key_check: Option<&str>,
    ) -> Result<Option<Reply>> {
        let mut conn = self.pool.acquire().await?;
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
    /// events prepared for the write and the answer rendered.
    #[allow(clippy::too_many_arguments)]
    async fn decide_job(
        &self,
        conn: &mut PgConnection,
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
