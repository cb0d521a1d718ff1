//! A job command a page runs for its signed-in person: the one gate every
//! transport passes (the key's budget, then the allowlist), the
//! application's door for job commands, and one record in the invocation
//! log with transport `ui`, whatever the answer.

use serde_json::{json, Value};
use uuid::Uuid;

use super::session::UiSession;
use crate::app::{Reply, RequestMeta};
use crate::error::{ApiError, Result};
use crate::http::AppState;
use crate::tools::gate::{self, Access, Call};
use crate::tools::log::Transport;

/// Runs the job command `command` with `args` on `job_id` as the session's
/// caller under `meta` (its idempotency key and request hash), and records
/// the call. A refusal of the gate or the decoder is an `Err`, as the API
/// answers it; the command's own answer (refusals included) is the `Reply`.
pub(super) async fn run_job_command(
    state: &AppState,
    s: &UiSession,
    job_id: &str,
    command: &str,
    args: Value,
    meta: &RequestMeta,
) -> Result<Reply> {
    let call = Call {
        invocation_id: Uuid::new_v4(),
        transport: Transport::Ui,
        operation: command.to_string(),
        actor: s.caller.actor(),
        idempotency_key: Some(meta.idempotency_key.clone()),
        argument_digest: gate::digest(&args),
        job_id: Some(job_id.to_string()).filter(|j| gate::plausible_id(j)),
        approval_id: args
            .get("approval_id")
            .and_then(Value::as_str)
            .filter(|a| gate::plausible_id(a))
            .map(str::to_string),
        at: state.app.clock.now(),
    };
    let result = async {
        let access = Access::Tool(command);
        let span = gate::span(Transport::Ui, command);
        let admitted = span.in_scope(|| {
            state
                .tools
                .gate
                .admit(&s.caller, access)
                .map_err(|refusal| refusal.rest_error(s.caller.role, access))
        });
        gate::close_span(span, admitted.as_ref().err().map(ApiError::code));
        admitted?;
        let decoded = crate::http::decode::job_command(command, args)?;
        state
            .app
            .execute_job(&s.caller, meta, Some(job_id), decoded)
            .await
    }
    .await;
    let record = match &result {
        Ok(reply) => {
            let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
            call.finish(reply.status, &answer, reply.replayed)
        }
        Err(e) => call.finish(e.status(), &json!({"code": e.code()}), false),
    };
    state.tools.gate.record(&state.app.invocations, record);
    result
}
