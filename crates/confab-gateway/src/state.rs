//! What the chat operations of one gateway share: configuration, the backend, the
//! gateway's subscriptions, the way to the dispatcher, the shutdown token and the
//! tracked tasks. Built by [`crate::gateway`]; it holds no socket and nothing of the
//! wire layer, so nothing here keeps a connection (or the gateway) alive.

use crate::config::GatewayConfig;
use crate::dispatch;
use crate::session::Session;
use crate::subscriptions::Subscriptions;
use confab_backend::{Access, Broker, Presence, Status};
use confab_sio::Socket;
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The backend's interfaces, as one gateway holds them.
pub struct Backend {
    pub broker: Arc<dyn Broker>,
    pub presence: Arc<dyn Presence>,
    pub access: Arc<dyn Access>,
    pub status: Arc<dyn Status>,
}

impl Backend {
    /// Every interface from one node (the memory and Redis nodes implement all).
    pub fn of<N: Broker + Presence + Access + Status>(node: Arc<N>) -> Self {
        Self {
            broker: node.clone(),
            presence: node.clone(),
            access: node.clone(),
            status: node,
        }
    }
}

/// A session of this gateway and its socket.
pub type LocalSession = (Arc<Session>, Socket);

/// State shared by every handler and task of a gateway.
pub struct Shared {
    pub config: GatewayConfig,
    /// Who connections are (handshake, guest sign-up, refresh, name holds).
    pub auth: std::sync::Arc<crate::auth::Auth>,
    pub broker: Arc<dyn Broker>,
    pub presence: Arc<dyn Presence>,
    /// Room metadata, roles, sanctions, audit log.
    pub access: Arc<dyn Access>,
    /// Gateway reports and backend health (the admin status page).
    pub status: Arc<dyn Status>,
    /// The status page's state: this gateway's traffic, watchers, snapshot cache.
    pub admin: crate::admin::Admin,
    /// This gateway's sessions by user id (moderation acts on them). An entry is
    /// removed by the session's clean-up.
    pub local: parking_lot::Mutex<HashMap<String, Vec<LocalSession>>>,
    /// This gateway's view of the cluster-wide quotas (their fast path).
    pub quota_view: crate::quota::LocalView,
    /// `/readyz`'s answer, cached.
    pub readiness: Readiness,
    /// Open connections per client IP (the per-IP cap).
    pub ip_slots: Arc<crate::conncap::IpSlots>,
    pub subs: Subscriptions,
    pub shutdown: CancellationToken,
    pub metrics: Option<PrometheusHandle>,
    /// Commands to the dispatcher (joins in sequence with fan-out).
    pub dispatcher: dispatch::CommandSender,
    /// Sessions opened and not yet cleaned up (logged at shutdown).
    pub sessions: AtomicUsize,
    /// How far behind the dispatcher is (read by the overload admission).
    pub dispatch_lag: Arc<crate::overload::DispatchLag>,
    /// Recent send attempts per user (who is shed first under overload).
    pub sender_heat: crate::overload::SenderHeat,
    /// The delivery probe's credential: random per process, never sent anywhere but
    /// to this process's own listener (see [`crate::probe`]).
    pub probe_key: String,
    /// Every task spawned on behalf of a socket (request queues and their clean-up,
    /// typing expiry, the session push): shutdown waits for them.
    pub tasks: tokio_util::task::TaskTracker,
}

impl Shared {
    pub fn open_sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Remember a session of this gateway.
    pub fn register(&self, session: &Arc<Session>, socket: &Socket) {
        self.local
            .lock()
            .entry(session.user.id.clone())
            .or_default()
            .push((session.clone(), socket.clone()));
    }

    /// Forget a session (its clean-up).
    pub fn unregister(&self, session: &Arc<Session>) {
        let mut local = self.local.lock();
        if let Some(v) = local.get_mut(&session.user.id) {
            v.retain(|(s, _)| !Arc::ptr_eq(s, session));
            if v.is_empty() {
                local.remove(&session.user.id);
            }
        }
    }

    /// This gateway's sessions of `user`.
    pub fn sessions_of(&self, user: &str) -> Vec<LocalSession> {
        self.local.lock().get(user).cloned().unwrap_or_default()
    }
}

/// The backend's readiness, asked at most once per [`Readiness::TTL`]: a flood of
/// `/readyz` requests costs the backend one ping a second.
#[derive(Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
}

impl Readiness {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(1);

    pub async fn ready(&self, broker: &dyn Broker) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, ready)) = *last {
            if at.elapsed() < Self::TTL {
                return ready;
            }
        }
        let ready = broker.ready().await;
        *last = Some((std::time::Instant::now(), ready));
        ready
    }
}
