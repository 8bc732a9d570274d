//! Gateway liveness for the Redis backend: the heartbeat that says this gateway is
//! alive, and the reaper that undoes the presence of gateways that are not.
//!
//! Each gateway records what it added to the presence hashes in its own conns hash
//! (`confab:gw:<id>:conns`) and refreshes `confab:gw:<id>` (TTL `heartbeat_ttl`)
//! every `heartbeat_interval`; ids are listed in `confab:gateways`. Every
//! `reap_interval`, each node tries `SET confab:reaper:lock NX PX`; the winner looks
//! for listed gateways whose heartbeat key is gone and runs the reap script for each
//! (subtract its counts, forget it, atomically), then publishes one
//! `Signal::Presence { left }` per room for the users whose count dropped to 0.

use super::{scripts, Shared};
use crate::{BackendError, Signal, UserRef};
use redis::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Shared {
    /// Refresh this gateway's heartbeat and listing. Warns if the key had lapsed (the
    /// reaper may have removed this gateway's presence: counts under-report until
    /// its connections come again).
    pub(super) async fn beat(&self) -> Result<(), BackendError> {
        let ttl_ms = self.cfg.heartbeat_ttl.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.keys.gateway(&self.gateway_id))
            .arg(crate::now_ms())
            .arg("PX")
            .arg(ttl_ms)
            .arg("GET")
            .cmd("SADD")
            .arg(self.keys.gateways())
            .arg(&self.gateway_id)
            .ignore();
        let (previous,): (Option<String>,) = self.query_pipe(&pipe).await?;
        let first = !self.beaten.swap(true, std::sync::atomic::Ordering::SeqCst);
        if previous.is_none() && !first {
            tracing::warn!(
                gateway = %self.gateway_id,
                "heartbeat had lapsed: this gateway may have been reaped (or Redis restarted)"
            );
        }
        Ok(())
    }

    pub(super) async fn publish_signal(
        &self,
        room: &str,
        signal: &Signal,
    ) -> Result<(), BackendError> {
        self.query::<Value>(
            redis::cmd("PUBLISH")
                .arg(self.keys.room_channel(room))
                .arg(super::codec::signal_frame(signal)?),
        )
        .await
        .map(|_| ())
    }

    /// Undo gateway `id`'s presence (only if its heartbeat is gone, unless `force`).
    /// Returns the (room, user) memberships that dropped to 0.
    pub(super) async fn reap(
        &self,
        id: &str,
        force: bool,
    ) -> Result<Vec<(String, String)>, BackendError> {
        let mut inv = scripts::REAP_GATEWAY.prepare_invoke();
        inv.key(self.keys.gateway_conns(id))
            .key(self.keys.gateways())
            .key(self.keys.gateway(id))
            .key(self.keys.presence_online())
            .key(self.keys.presence_rooms())
            .arg(self.keys.prefix())
            .arg(id)
            .arg(if force { "1" } else { "0" });
        let left: Vec<String> = self.invoke(&inv).await?;
        Ok(left
            .chunks(2)
            .filter_map(|p| match p {
                [room, user] => Some((room.clone(), user.clone())),
                _ => None,
            })
            .collect())
    }

    /// Publish one `left` presence signal per room (with the users' display names
    /// from the directory; a user missing from it is shown by id).
    pub(super) async fn announce_left(&self, left: Vec<(String, String)>) {
        let ids: Vec<&String> = left
            .iter()
            .map(|(_, u)| u)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let names: Vec<Option<String>> = if ids.is_empty() {
            Vec::new()
        } else {
            self.query(redis::cmd("HMGET").arg(self.keys.known_users()).arg(&ids))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "display names of reaped users unavailable");
                    vec![None; ids.len()]
                })
        };
        let name_of: BTreeMap<&String, Option<String>> = ids.into_iter().zip(names).collect();
        let mut by_room: BTreeMap<String, Vec<UserRef>> = BTreeMap::new();
        for (room, user) in &left {
            let name = name_of.get(user).cloned().flatten();
            by_room.entry(room.clone()).or_default().push(UserRef {
                name: name.unwrap_or_else(|| user.clone()),
                id: user.clone(),
            });
        }
        for (room, mut users) in by_room {
            users.sort();
            let signal = Signal::Presence {
                joined: Vec::new(),
                left: users,
            };
            if let Err(e) = self.publish_signal(&room, &signal).await {
                tracing::warn!(error = %e, %room, "could not announce reaped presence");
            }
        }
    }

    /// One reaper pass, if this node wins the lock. Returns gateways reaped.
    pub(super) async fn reap_dead(&self) -> Result<usize, BackendError> {
        let lock_ms = (self.cfg.reap_interval.as_millis() as u64 * 9 / 10).max(50);
        let got: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(self.keys.reaper_lock())
                    .arg(&self.gateway_id)
                    .arg("NX")
                    .arg("PX")
                    .arg(lock_ms),
            )
            .await?;
        if got.is_none() {
            return Ok(0);
        }
        let ids: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.gateways()))
            .await?;
        let others: Vec<String> = ids
            .into_iter()
            .filter(|id| *id != self.gateway_id)
            .collect();
        if others.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for id in &others {
            pipe.cmd("EXISTS").arg(self.keys.gateway(id));
        }
        let alive: Vec<i64> = self.query_pipe(&pipe).await?;
        let mut reaped = 0;
        for (id, alive) in others.iter().zip(alive) {
            if alive != 0 {
                continue;
            }
            let left = self.reap(id, false).await?;
            tracing::info!(gateway = %id, left = left.len(), "reaped dead gateway");
            reaped += 1;
            self.announce_left(left).await;
        }
        Ok(reaped)
    }
}

pub(super) async fn run_heartbeat(shared: Arc<Shared>) {
    let every = shared.cfg.heartbeat_interval;
    run_every(shared, every, |s| async move {
        if let Err(e) = s.beat().await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    })
    .await
}

pub(super) async fn run_reaper(shared: Arc<Shared>) {
    let every = shared.cfg.reap_interval;
    run_every(shared, every, |s| async move {
        if let Err(e) = s.reap_dead().await {
            tracing::debug!(error = %e, "reaper pass failed");
        }
    })
    .await
}

/// Run `f` every `interval` (first run after one interval) until the node stops.
async fn run_every<F, Fut>(shared: Arc<Shared>, interval: std::time::Duration, f: F)
where
    F: Fn(Arc<Shared>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tick.tick() => f(shared.clone()).await,
        }
    }
}
