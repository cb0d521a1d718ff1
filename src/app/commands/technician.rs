//! Technician commands: `register_technician` and the commands on a
//! registered technician's stream.

use cqrs_es::{Aggregate, DomainEvent};
use serde_json::json;

use super::{derived_id, events_json, run, split_event, Decided, Reply};
use crate::app::{App, Caller, RequestMeta};
use crate::domain::technician::{Technician, TechnicianCommand, TechnicianError};
use crate::domain::Issued;
use crate::error::{ApiError, Result};
use crate::store::{self, NewEvent};

impl App {
    /// Executes a technician command (`technician_id` is `None` to register).
    pub async fn execute_technician(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        technician_id: Option<&str>,
        mut command: TechnicianCommand,
    ) -> Result<Reply> {
        let id = match (&mut command, technician_id) {
            (TechnicianCommand::RegisterTechnician(c), _) => {
                let id = c
                    .technician_id
                    .clone()
                    .unwrap_or_else(|| derived_id(caller, meta, "technician"));
                c.technician_id = Some(id.clone());
                id
            }
            (_, Some(id)) => id.to_string(),
            (_, None) => return Err(ApiError::NotFound("technician not found".into())),
        };
        if !crate::app::storable_id(&id) {
            return Err(ApiError::Technician(TechnicianError::NotFound));
        }
        let _turn = self.jobs.turn(Technician::TYPE, &id).await;
        let app = self.clone();
        let caller2 = caller.clone();
        let meta2 = meta.clone();
        let stream_id = id.clone();
        self.command(
            caller,
            meta,
            (Technician::TYPE, &stream_id),
            move |_conn, rows| {
                let (app, caller, meta) = (app.clone(), caller2.clone(), meta2.clone());
                let (id, command) = (id.clone(), command.clone());
                Box::pin(async move {
                    let (events, head) = store::decode_stream(&rows)?;
                    let tech = events.into_iter().fold(Technician::default(), |mut t, e| {
                        t.apply(e);
                        t
                    });
                    app.decide_technician(&caller, &meta, &id, command, tech, head)
                        .await
                })
            },
        )
        .await
    }

    /// Decides a technician command on the technician as it stands (`tech`
    /// at `head`) and renders its answer (the trace's `decide` span).
    #[tracing::instrument(name = "decide", skip_all,
        fields(command = command.wire_name(), technician_id = %id, version = tech.version))]
    async fn decide_technician(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        id: &str,
        command: TechnicianCommand,
        mut tech: Technician,
        head: store::StreamState,
    ) -> Result<Decided> {
        let at = self.clock.now();
        let created = matches!(command, TechnicianCommand::RegisterTechnician(_));
        let name = command.wire_name();
        if let Some(expected) = meta.if_match {
            if expected != tech.version as i64 {
                return Err(ApiError::VersionConflict {
                    expected: Some(expected),
                    current: Some(tech.version as i64),
                });
            }
        }
        let events = run(&mut tech, Issued::new(caller.actor(), at, command), &()).await?;
        let mut new_events = Vec::new();
        for e in &events {
            let (event_type, payload) = split_event(e)?;
            new_events.push(NewEvent {
                event_type,
                event_version: e.event_version(),
                payload,
                meta: self.event_meta(caller, meta, at, None, name),
            });
        }
        let (append, appended) =
            store::prepare_append(&self.chain, Technician::TYPE, id, &head, new_events)?;
        let body = json!({
            "technician_id": id,
            "version": tech.version,
            "technician": tech.data,
            "events": events_json(&appended),
        });
        Ok(Decided {
            status: if created { 201 } else { 200 },
            body,
            append: Some(append),
            door: None,
            job: None,
        })
    }
}
