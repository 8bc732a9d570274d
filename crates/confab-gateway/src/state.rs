//! What the chat operations of one gateway share: configuration, the backend, the
//! gateway's subscriptions, the way to the dispatcher, the shutdown token and the
//! tracked tasks. Built by [`crate::gateway`]; it holds no socket and nothing of the
//! wire layer, so nothing here keeps a connection (or the gateway) alive.

use crate::config::GatewayConfig;
use crate::dispatch;
use crate::subscriptions::Subscriptions;
use confab_backend::{Broker, Presence};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// State shared by every handler and task of a gateway.
pub struct Shared {
    pub config: GatewayConfig,
    /// Who connections are (handshake, guest sign-up, refresh, name holds).
    pub auth: std::sync::Arc<crate::auth::Auth>,
    pub broker: Arc<dyn Broker>,
    pub presence: Arc<dyn Presence>,
    pub subs: Subscriptions,
    pub shutdown: CancellationToken,
    pub metrics: Option<PrometheusHandle>,
    /// Commands to the dispatcher (joins in sequence with fan-out).
    pub dispatcher: dispatch::CommandSender,
    /// Sessions opened and not yet cleaned up (logged at shutdown).
    pub sessions: AtomicUsize,
    /// How far behind the dispatcher is (read by the overload admission).
    pub dispatch_lag: Arc<crate::overload::DispatchLag>,
    /// Every task spawned on behalf of a socket (request queues and their clean-up,
    /// typing expiry, the session push): shutdown waits for them.
    pub tasks: tokio_util::task::TaskTracker,
}

impl Shared {
    pub fn open_sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }
}
