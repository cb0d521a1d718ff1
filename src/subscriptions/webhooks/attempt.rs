//! One delivery attempt: a signed `POST` of one CloudEvent, within a time
//! limit, reading at most [`MAX_ANSWER_BYTES`] of the answer, following no
//! redirect. Its outcome is told by the status alone: 2xx is delivered,
//! anything else (another status, a timeout, a refused address, a
//! connection that failed) is a failure to retry.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::signing::sign;
use super::urls::{self, AddressRefused, UrlPolicy};

/// The most of a receiver's answer read (a huge answer costs neither memory
/// nor time: the rest is never read, the connection is dropped).
pub const MAX_ANSWER_BYTES: usize = 4096;

/// How much of a failed answer is kept in the error text.
const ERROR_SNIPPET_CHARS: usize = 200;

/// How long a successful answer's body is read before it is dropped (the
/// status decided already; reading lets the connection be reused).
const SUCCESS_BODY_TIME: Duration = Duration::from_secs(1);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The receiver's status, when it answered.
    pub http_status: Option<u16>,
    /// Why it failed; `None` when delivered.
    pub error: Option<String>,
    /// For the metrics: `delivered`, `http_error`, `timeout`, `refused`,
    /// `connection`.
    pub kind: &'static str,
    /// From the start of the attempt to its outcome.
    pub latency: Duration,
}

impl Outcome {
    /// Whether the receiver took the event (2xx).
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }

    fn failed(
        kind: &'static str,
        http_status: Option<u16>,
        error: String,
        started: Instant,
    ) -> Self {
        Outcome {
            http_status,
            error: Some(bounded(&error, 500)),
            kind,
            latency: started.elapsed(),
        }
    }
}

/// What is sent: the endpoint, the event id (`webhook-id`) and the body.
pub struct Request<'a> {
    /// The endpoint's URL.
    pub url: &'a str,
    /// The endpoint's secret.
    pub secret: &'a str,
    /// The event id.
    pub id: &'a str,
    /// The CloudEvent, as JSON.
    pub body: Bytes,
}

/// Sends one attempt. The URL is checked again first (the policy may have
/// changed since registration); a host name's addresses are checked by the
/// client's resolver.
pub async fn post(
    client: &reqwest::Client,
    policy: UrlPolicy,
    timeout: Duration,
    req: Request<'_>,
) -> Outcome {
    let started = Instant::now();
    // The checked URL is the one sent to (parsed once, not again by reqwest).
    let url = match urls::check(req.url, policy) {
        Ok(url) => url,
        Err(e) => return Outcome::failed("refused", None, e.to_string(), started),
    };
    // The receiver checks this against its own clock: wall time, whatever
    // the service's clock says.
    let timestamp = chrono::Utc::now().timestamp();
    let Some(signature) = sign(req.secret, req.id, timestamp, &req.body) else {
        return Outcome::failed(
            "refused",
            None,
            "the endpoint's secret is unusable".into(),
            started,
        );
    };
    let sent = client
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/cloudevents+json",
        )
        .header("webhook-id", req.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .timeout(timeout)
        .body(req.body)
        .send();
    // reqwest's own timeout covers connecting, sending and the answer; this
    // one covers everything else.
    let answer = match tokio::time::timeout(timeout, sent).await {
        Err(_) => return timed_out(timeout, started),
        Ok(Err(e)) => return send_error(&e, timeout, started),
        Ok(Ok(answer)) => answer,
    };
    let status = answer.status();
    if status.is_success() {
        let left = timeout
            .saturating_sub(started.elapsed())
            .min(SUCCESS_BODY_TIME);
        let _ = tokio::time::timeout(left, read_bounded(answer)).await;
        return Outcome {
            http_status: Some(status.as_u16()),
            error: None,
            kind: "delivered",
            latency: started.elapsed(),
        };
    }
    let left = timeout.saturating_sub(started.elapsed());
    let snippet = tokio::time::timeout(left, read_bounded(answer))
        .await
        .unwrap_or_default();
    let text = bounded(&String::from_utf8_lossy(&snippet), ERROR_SNIPPET_CHARS);
    let error = if text.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {text}", status.as_u16())
    };
    Outcome::failed("http_error", Some(status.as_u16()), error, started)
}

fn timed_out(timeout: Duration, started: Instant) -> Outcome {
    Outcome::failed(
        "timeout",
        None,
        format!("no answer within {} ms", timeout.as_millis()),
        started,
    )
}

/// A request that got no answer: refused by the resolver, timed out, or a
/// connection that failed; the error's causes, joined.
fn send_error(e: &reqwest::Error, timeout: Duration, started: Instant) -> Outcome {
    if e.is_timeout() {
        return timed_out(timeout, started);
    }
    let mut causes = Vec::new();
    let mut refused = false;
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        refused |= s.downcast_ref::<AddressRefused>().is_some();
        let text = s.to_string();
        if !causes.iter().any(|c: &String| c.contains(&text)) {
            causes.push(text);
        }
        source = s.source();
    }
    let kind = if refused { "refused" } else { "connection" };
    Outcome::failed(kind, None, causes.join(": "), started)
}

/// At most [`MAX_ANSWER_BYTES`] of an answer's body.
async fn read_bounded(mut answer: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < MAX_ANSWER_BYTES {
        match answer.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ANSWER_BYTES - out.len();
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    out
}

/// Text without control characters, at most `max` characters.
pub fn bounded(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.chars().count() > max {
        format!("{}…", clean.chars().take(max).collect::<String>())
    } else {
        clean.to_string()
    }
}
