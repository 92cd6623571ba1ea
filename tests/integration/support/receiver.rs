//! A real HTTP receiver for the webhook backend: it verifies `X-Breakwater-Signature`
//! like a deployment system would and records every verified call.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How the receiver answers a rollback.
#[derive(Debug, Clone)]
pub(crate) enum Behaviour {
    /// 200 after an optional delay.
    Succeed { delay: Duration },
    /// The status code with this body.
    Fail { status: u16, body: String },
    /// Never answers within any reasonable timeout.
    Hang,
}

#[derive(Default)]
struct Calls {
    verified: Vec<serde_json::Value>,
    rejected: usize,
}

pub(crate) struct Receiver {
    pub url: String,
    secret: String,
    behaviour: Mutex<Behaviour>,
    calls: Mutex<Calls>,
}

impl Receiver {
    pub(crate) async fn start(secret: &str) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let receiver = Arc::new(Self {
            url: format!("http://{addr}"),
            secret: secret.to_owned(),
            behaviour: Mutex::new(Behaviour::Succeed {
                delay: Duration::ZERO,
            }),
            calls: Mutex::new(Calls::default()),
        });
        let app = Router::new()
            .route("/rollback", post(rollback))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        receiver
    }

    pub(crate) fn behave(&self, behaviour: Behaviour) {
        *self.behaviour.lock().expect("lock") = behaviour;
    }

    /// Calls whose signature verified, in arrival order.
    pub(crate) fn calls(&self) -> Vec<serde_json::Value> {
        self.calls.lock().expect("lock").verified.clone()
    }

    pub(crate) fn rejected(&self) -> usize {
        self.calls.lock().expect("lock").rejected
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        let Some(signature) = headers
            .get("x-breakwater-signature")
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(hex_sig) = signature.strip_prefix("sha256=") else {
            return false;
        };
        let Ok(expected) = hex::decode(hex_sig) else {
            return false;
        };
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(self.secret.as_bytes()).expect("hmac key");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    }
}

async fn rollback(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !receiver.verify(&headers, &body) {
        receiver.calls.lock().expect("lock").rejected += 1;
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    receiver.calls.lock().expect("lock").verified.push(json);
    let behaviour = receiver.behaviour.lock().expect("lock").clone();
    match behaviour {
        Behaviour::Succeed { delay } => {
            // Simulates a slow deployment system; no test waits on this sleep.
            tokio::time::sleep(delay).await;
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({"status": "succeeded", "message": "rolled back"})),
            )
                .into_response()
        }
        Behaviour::Fail { status, body } => {
            (StatusCode::from_u16(status).expect("status"), body).into_response()
        }
        Behaviour::Hang => {
            // Simulates a deployment system that never answers.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}
