//! The delivery probe: how long a message takes end to end, measured all the time.
//!
//! Every `--probe-interval-ms` (on by default in cluster mode) the gateway's own
//! probe client — a real Socket.IO websocket client on loopback, to this gateway's
//! public listener — sends a DM to itself and waits for its `dm:new`. That is the
//! path of every chat message: listener, handshake'd socket, request queue, quota,
//! the backend (in cluster mode: the Lua append + PUBLISH on Redis, the pub/sub
//! connection back), the dispatcher, the socket's write queue, the websocket. The
//! time from the send to the push is `confab_probe_delivery_seconds`; a probe that
//! fails or gets no push within 5 s counts in `confab_probe_failures_total{reason}`.
//!
//! The probe authenticates with a key only this process knows (`{probe: KEY}` in
//! its handshake), and its session is marked: it takes no presence (it is not in
//! user lists or online counts), joins no room and is not counted as a connection.
//! Its user id is `~probe:<gateway id>`; its notes to self are kept like any DM
//! conversation (bounded by `--history-retention` and `--history-max-age`).

use crate::state::Shared;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one probe may take before it counts as failed.
const WAIT: Duration = Duration::from_secs(5);

/// The probe's user id on gateway `gateway_id`.
pub fn user_id(gateway_id: &str) -> String {
    format!("~probe:{gateway_id}")
}

/// Whether a handshake's auth is this process's probe (compared in constant time).
pub fn is_probe_auth(shared: &Shared, auth: &Value) -> bool {
    let Some(given) = auth.get("probe").and_then(Value::as_str) else {
        return false;
    };
    let key = shared.probe_key.as_bytes();
    given.len() == key.len()
        && given
            .bytes()
            .zip(key)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The probe's identity.
pub fn identity(shared: &Shared) -> crate::auth::User {
    crate::auth::User {
        id: user_id(&shared.config.gateway_id),
        name: "probe".to_owned(),
        roles: Vec::new(),
        rooms: Vec::new(),
        guest: false,
        expires_at: None,
    }
}

/// Run until shutdown: probe `addr` (the public listener) every interval.
pub async fn run(shared: Arc<Shared>, addr: SocketAddr) {
    let Some(every) = shared.config.probe_interval else {
        return;
    };
    let token = shared.shutdown.clone();
    let me = user_id(&shared.config.gateway_id);
    let mut client: Option<confab_client::Client> = None;
    for n in 0u64.. {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = token.cancelled() => break,
        }
        if client.is_none() {
            let builder = confab_client::ClientBuilder::new(format!("http://{addr}"))
                .auth(Some(json!({ "probe": shared.probe_key })))
                .connect_timeout(WAIT);
            match builder.connect().await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    failed("connect");
                    tracing::warn!(error = %e, "delivery probe could not connect");
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        c.drain_events(); // nothing else is waited for: keep no backlog
        let text = format!("probe {n}");
        let started = Instant::now();
        let sent = c
            .emit_with_ack("dm:send", &json!({ "to": me, "text": text }), WAIT)
            .await;
        let outcome = match sent {
            Ok(ack) if ack.get("ok") == Some(&Value::Bool(true)) => {
                let left = WAIT.saturating_sub(started.elapsed());
                c.wait_for("dm:new", |d| d.get("text") == Some(&json!(text)), left)
                    .await
                    .map_err(|_| "no_push")
            }
            Ok(_) => Err("refused"),
            Err(_) => Err("no_ack"),
        };
        match outcome {
            Ok(_) => metrics::histogram!(crate::metrics::PROBE_DELIVERY)
                .record(started.elapsed().as_secs_f64()),
            Err(reason) => {
                failed(reason);
                tracing::warn!(reason, "delivery probe failed");
                // A fresh connection next time (the old one may be half dead).
                if let Some(c) = client.take() {
                    c.close().await;
                }
            }
        }
    }
    if let Some(c) = client.take() {
        c.close().await;
    }
}

fn failed(reason: &'static str) {
    metrics::counter!(crate::metrics::PROBE_FAILURES, "reason" => reason).increment(1);
}
