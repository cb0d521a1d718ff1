//! A webhook receiver inside the test: an axum server on 127.0.0.1:0 that
//! records every request, verifies its Standard Webhooks signature with
//! its own code (HMAC-SHA-256 over `{id}.{timestamp}.{body}`, the secret
//! from the 201 answer) and answers as the test scripts it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200.
    Ok,
    /// This status.
    Status(u16),
    /// No answer for a minute (the sender times out first).
    Hang,
    /// 200 after this long.
    Slow(Duration),
    /// This status with a body that never ends.
    Endless(u16),
    /// 307 to this same receiver (a sender that follows it sends again).
    Redirect,
}

/// One request received.
#[derive(Debug, Clone)]
pub struct Got {
    pub id: String,
    pub body: Value,
    pub raw: Vec<u8>,
    /// The signature verified with the secret, and the timestamp is within
    /// five minutes of now.
    pub verified: bool,
    pub content_type: String,
    /// How the receiver answered it.
    pub answer: Answer,
}

#[derive(Default)]
struct Inner {
    secret: Mutex<Option<String>>,
    script: Mutex<VecDeque<Answer>>,
    otherwise: Mutex<Option<Answer>>,
    got: Mutex<Vec<Got>>,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Inner>,
}

impl Receiver {
    /// Listens on a free port of 127.0.0.1, answering 200 until told otherwise.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            inner,
        }
    }

    pub fn set_secret(&self, secret: &str) {
        *self.inner.secret.lock().unwrap() = Some(secret.to_string());
    }

    /// The next requests' answers, in order (then [`Receiver::always`]'s).
    pub fn script(&self, answers: &[Answer]) {
        self.inner
            .script
            .lock()
            .unwrap()
            .extend(answers.iter().copied());
    }

    /// The answer once the script is spent (default: 200).
    pub fn always(&self, answer: Answer) {
        *self.inner.otherwise.lock().unwrap() = Some(answer);
    }

    pub fn got(&self) -> Vec<Got> {
        self.inner.got.lock().unwrap().clone()
    }

    /// The `webhook-id`s received, in order.
    pub fn ids(&self) -> Vec<String> {
        self.got().into_iter().map(|g| g.id).collect()
    }
}

/// The Standard Webhooks check, written here from the specification.
fn verify(secret: Option<&str>, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(secret), Some(id), Some(ts), Some(sigs)) = (
        secret,
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return false;
    };
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|k| STANDARD.decode(k).ok())
    else {
        return false;
    };
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    fresh && sigs.split(' ').any(|s| s == expected)
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let secret = inner.secret.lock().unwrap().clone();
    let got = Got {
        id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body.to_vec(),
        verified: verify(secret.as_deref(), &headers, &body),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        answer: Answer::Ok,
    };
    let answer = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or(*inner.otherwise.lock().unwrap())
        .unwrap_or(Answer::Ok);
    inner.got.lock().unwrap().push(Got { answer, ..got });
    match answer {
        Answer::Ok => StatusCode::OK.into_response(),
        Answer::Status(s) => (StatusCode::from_u16(s).unwrap(), "receiver says no").into_response(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::OK.into_response()
        }
        Answer::Slow(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
        Answer::Redirect => (
            StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, "/hook")],
        )
            .into_response(),
        Answer::Endless(s) => {
            let chunks = futures::stream::repeat_with(|| {
                Ok::<_, Infallible>(Bytes::from(vec![b'x'; 64 * 1024]))
            });
            let mut r = Response::new(Body::from_stream(chunks));
            *r.status_mut() = StatusCode::from_u16(s).unwrap();
            r
        }
    }
}
