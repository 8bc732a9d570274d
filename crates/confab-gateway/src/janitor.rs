//! The janitor: the gateway's periodic clean-up of what nothing else removes.
//!
//! Users who stopped coming (guests whose identity lapsed, accounts gone quiet)
//! would otherwise stay in the user directory, with their unread DMs, forever.
//! Every `--janitor-interval-ms` the janitor forgets users offline and unseen for
//! `--idle-user-ttl` (a bounded batch per pass; every gateway runs it, and the
//! backend makes concurrent passes safe). It stops with the gateway's shutdown
//! token.

use crate::state::Shared;
use std::sync::Arc;
use std::time::Duration;

/// Users forgotten per pass at most (a backlog drains over several passes).
const BATCH: usize = 10_000;

/// Run until `shared.shutdown` is cancelled.
pub async fn run(shared: Arc<Shared>) {
    let Some(ttl) = shared.config.idle_user_ttl else {
        return;
    };
    let token = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.janitor_interval) => {}
            _ = token.cancelled() => return,
        }
        match shared.presence.prune_idle_users(ttl, BATCH).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!(crate::metrics::PRUNED_USERS).increment(n);
                tracing::info!(users = n, "forgot idle users");
            }
            Err(e) => tracing::warn!(error = %e, "idle-user clean-up failed"),
        }
    }
}

/// The default idle time before a user is forgotten.
pub const DEFAULT_IDLE_USER_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
