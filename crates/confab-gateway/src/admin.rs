//! The admin status page's data: every gateway reports itself to the backend
//! ([`report`], every [`ADMIN_WATCH_INTERVAL_MS`]); `admin:status` answers one
//! cluster-wide snapshot (every gateway's report, the backend's health, the
//! busiest rooms, the recent moderation actions) and `admin:watch` pushes it to a
//! socket on the same interval. Admins only.
//!
//! Bounds: one snapshot is built per gateway per [`SNAPSHOT_TTL`] whatever the
//! number of watchers; one watcher per socket and at most [`WATCHERS_MAX`] per
//! gateway; the room traffic kept is [`TOP_ROOMS_WINDOW_S`] one-second buckets of
//! at most [`ROOMS_PER_SECOND_MAX`] rooms each.

use crate::chat::Ctx;
use crate::metrics as m;
use crate::state::Shared;
use confab_backend::AuditEntry;
use confab_core::protocol::{
    merge_top_rooms, push, AdminStatus, AdminWatch, BackendStatus, GatewayStatus, RoomTraffic,
    ADMIN_MODERATION_MAX, ADMIN_WATCH_INTERVAL_MS, GATEWAYS_MAX, GATEWAY_STATUS_STALE_INTERVALS,
    RATE_WINDOW_S, TOP_ROOMS_MAX, TOP_ROOMS_WINDOW_S,
};
use confab_core::{ChatError, ErrorCode};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a built snapshot is reused (by every watcher of this gateway).
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(1);
/// Sockets of one gateway receiving `admin:status` pushes at once.
pub const WATCHERS_MAX: usize = 64;
/// Distinct rooms counted per second (more rooms in one second count in the
/// message rate, not in the top rooms).
pub const ROOMS_PER_SECOND_MAX: usize = 1_000;

/// The status page's state of one gateway.
pub struct Admin {
    /// When this gateway started (ms since the epoch).
    pub started_at: u64,
    pub traffic: Traffic,
    cache: tokio::sync::Mutex<Option<(Instant, Arc<Snapshot>)>>,
    /// The watching sockets (by socket id) and how to stop each.
    watchers: Mutex<HashMap<String, CancellationToken>>,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            started_at: confab_backend::now_ms(),
            traffic: Traffic::default(),
            cache: Default::default(),
            watchers: Default::default(),
        }
    }
}

impl Admin {
    /// Sockets watching now.
    pub fn watchers(&self) -> usize {
        self.watchers.lock().len()
    }
}

/// One second of messages published through this gateway.
#[derive(Default)]
struct Bucket {
    second: u64,
    total: u64,
    rooms: HashMap<String, u64>,
}

/// Messages published through this gateway over the last
/// [`TOP_ROOMS_WINDOW_S`] seconds, per second and per room.
#[derive(Default)]
pub struct Traffic {
    buckets: Mutex<VecDeque<Bucket>>,
}

fn now_s() -> u64 {
    confab_backend::now_ms() / 1000
}

impl Traffic {
    /// A message was published (`room`: `None` for a DM).
    pub fn record(&self, room: Option<&str>) {
        self.record_at(now_s(), room)
    }

    fn record_at(&self, second: u64, room: Option<&str>) {
        let mut b = self.buckets.lock();
        if b.back().is_none_or(|last| last.second < second) {
            b.push_back(Bucket {
                second,
                ..Bucket::default()
            });
        }
        while b
            .front()
            .is_some_and(|f| f.second + TOP_ROOMS_WINDOW_S <= second)
        {
            b.pop_front();
        }
        // (A clock step backwards counts in the newest bucket.)
        let Some(last) = b.back_mut() else { return };
        last.total += 1;
        if let Some(room) = room {
            if let Some(n) = last.rooms.get_mut(room) {
                *n += 1;
            } else if last.rooms.len() < ROOMS_PER_SECOND_MAX {
                last.rooms.insert(room.to_owned(), 1);
            }
        }
    }

    /// Messages per second over the `window_s` seconds up to `now` (the current
    /// second included).
    fn rate_at(&self, now: u64, window_s: u64) -> f64 {
        let n: u64 = self
            .buckets
            .lock()
            .iter()
            .filter(|b| b.second + window_s > now && b.second <= now)
            .map(|b| b.total)
            .sum();
        n as f64 / window_s.max(1) as f64
    }

    /// The busiest rooms over the last [`TOP_ROOMS_WINDOW_S`] up to `now`.
    fn top_at(&self, now: u64, max: usize) -> Vec<RoomTraffic> {
        let b = self.buckets.lock();
        let lists: Vec<Vec<RoomTraffic>> = b
            .iter()
            .filter(|b| b.second + TOP_ROOMS_WINDOW_S > now && b.second <= now)
            .map(|b| {
                b.rooms
                    .iter()
                    .map(|(room, &messages)| RoomTraffic {
                        room: room.clone(),
                        messages,
                    })
                    .collect()
            })
            .collect();
        drop(b);
        merge_top_rooms(lists.iter().map(Vec::as_slice), max)
    }
}

/// This gateway's report, as of now.
pub fn local_report(shared: &Shared) -> GatewayStatus {
    let now = confab_backend::now_ms();
    let a = &shared.admin;
    GatewayStatus {
        id: shared.status.node_id(),
        started_at: a.started_at,
        updated_at: now,
        uptime_s: now.saturating_sub(a.started_at) / 1000,
        connections: shared.open_sessions() as u64,
        rooms: shared.subs.rooms() as u64,
        msgs_per_sec: a.traffic.rate_at(now / 1000, RATE_WINDOW_S),
        lag_ms: shared.dispatch_lag.get().as_millis() as u64,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        top_rooms: a.traffic.top_at(now / 1000, TOP_ROOMS_MAX),
    }
}

/// Report this gateway to the backend now and every interval, until shutdown.
pub async fn report(shared: Arc<Shared>) {
    let every = Duration::from_millis(ADMIN_WATCH_INTERVAL_MS);
    loop {
        if let Err(e) = shared
            .status
            .put_gateway_status(&local_report(&shared))
            .await
        {
            tracing::debug!(error = %e, "gateway status not reported");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

/// The body of the `admin:status` ack and push.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// When it was built (ms since the epoch).
    pub at: u64,
    /// The gateway that built it.
    pub gateway: String,
    /// Every gateway that reported in the last
    /// [`GATEWAY_STATUS_STALE_INTERVALS`] intervals, by id, at most
    /// [`GATEWAYS_MAX`].
    pub gateways: Vec<GatewayStatus>,
    /// How many gateways reported (more than listed when over the bound).
    pub gateways_total: usize,
    pub backend: BackendStatus,
    /// The busiest rooms of the cluster over the last minute.
    pub top_rooms: Vec<RoomTraffic>,
    /// The newest moderation actions (audit log), newest first.
    pub moderation: Vec<AuditEntry>,
    pub interval_ms: u64,
}

async fn build(shared: &Shared) -> Snapshot {
    let max_age = Duration::from_millis(ADMIN_WATCH_INTERVAL_MS * GATEWAY_STATUS_STALE_INTERVALS);
    let (backend, gateways, moderation) = tokio::join!(
        shared.status.backend_status(),
        shared.status.gateway_statuses(max_age, GATEWAYS_MAX),
        shared.access.audit_list(None, ADMIN_MODERATION_MAX),
    );
    let me = local_report(shared);
    let (mut gateways, mut total) = gateways.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "gateway reports unavailable");
        (Vec::new(), 0)
    });
    // This gateway as of now (its stored report may lag, or be unreachable).
    if let Some(g) = gateways.iter_mut().find(|g| g.id == me.id) {
        *g = me.clone();
    } else {
        total += 1;
        if gateways.len() < GATEWAYS_MAX {
            gateways.push(me.clone());
            gateways.sort_by(|a, b| a.id.cmp(&b.id));
        }
    }
    let top_rooms = merge_top_rooms(
        gateways.iter().map(|g| g.top_rooms.as_slice()),
        TOP_ROOMS_MAX,
    );
    Snapshot {
        at: me.updated_at,
        gateway: me.id,
        gateways,
        gateways_total: total,
        backend,
        top_rooms,
        moderation: moderation.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "audit log unavailable");
            Vec::new()
        }),
        interval_ms: ADMIN_WATCH_INTERVAL_MS,
    }
}

/// The current snapshot: built at most once per [`SNAPSHOT_TTL`].
pub async fn snapshot(shared: &Shared) -> Arc<Snapshot> {
    let mut cache = shared.admin.cache.lock().await;
    if let Some((at, s)) = cache.as_ref() {
        if at.elapsed() < SNAPSHOT_TTL {
            return s.clone();
        }
    }
    let s = Arc::new(build(shared).await);
    *cache = Some((Instant::now(), s.clone()));
    s
}

fn require_admin(ctx: &Ctx) -> Result<(), ChatError> {
    if ctx.session.has_role("admin") {
        Ok(())
    } else {
        Err(ChatError::new(
            ErrorCode::Forbidden,
            "only admins see the server status",
        ))
    }
}

/// A shared snapshot as an ack body.
pub struct SnapshotAck(pub Arc<Snapshot>);

impl Serialize for SnapshotAck {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// `admin:status {}` → one snapshot.
pub async fn status(ctx: &Ctx, _req: AdminStatus) -> Result<SnapshotAck, ChatError> {
    require_admin(ctx)?;
    Ok(SnapshotAck(snapshot(&ctx.shared).await))
}

/// Ack body of `admin:watch`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchAck {
    pub on: bool,
    pub interval_ms: u64,
}

/// `admin:watch {on}`: while on, `admin:status` is pushed to this socket at once
/// and then every interval; off (or the socket gone) stops it.
pub fn watch(ctx: &Ctx, req: AdminWatch) -> Result<WatchAck, ChatError> {
    require_admin(ctx)?;
    let sid = ctx.socket.id().to_string();
    let ack = WatchAck {
        on: req.on,
        interval_ms: ADMIN_WATCH_INTERVAL_MS,
    };
    let mut watchers = ctx.shared.admin.watchers.lock();
    if !req.on {
        if let Some(stop) = watchers.remove(&sid) {
            stop.cancel();
        }
        return Ok(ack);
    }
    if watchers.contains_key(&sid) {
        return Ok(ack);
    }
    if watchers.len() >= WATCHERS_MAX {
        return Err(ChatError::rate_limited(
            format!("at most {WATCHERS_MAX} sockets watch the status of one gateway"),
            Duration::from_millis(ADMIN_WATCH_INTERVAL_MS),
        ));
    }
    let stop = CancellationToken::new();
    watchers.insert(sid.clone(), stop.clone());
    drop(watchers);
    let ctx = ctx.clone();
    ctx.shared.tasks.clone().spawn(async move {
        push_until_stopped(&ctx, &stop).await;
        // Stopped by `off`: the entry is gone already (and may be a new watch's
        // now); else (socket gone, shutdown) it is still ours.
        if !stop.is_cancelled() {
            ctx.shared.admin.watchers.lock().remove(&sid);
        }
    });
    Ok(ack)
}

async fn push_until_stopped(ctx: &Ctx, stop: &CancellationToken) {
    let every = Duration::from_millis(ADMIN_WATCH_INTERVAL_MS);
    loop {
        let snap = snapshot(&ctx.shared).await;
        if stop.is_cancelled() {
            return;
        }
        if ctx.socket.emit(push::ADMIN_STATUS, &*snap).is_err() {
            m::send_failed("admin:status");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
            _ = ctx.session.gone().cancelled() => return,
            _ = ctx.shared.shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_rate_and_top_rooms_over_their_windows() {
        let t = Traffic::default();
        for _ in 0..20 {
            t.record_at(100, Some("a"));
        }
        for _ in 0..5 {
            t.record_at(105, Some("b"));
        }
        t.record_at(105, None);
        // 26 messages in the 10 s up to 105.
        assert!((t.rate_at(105, 10) - 2.6).abs() < 1e-9);
        // At 112, second 100 is out of the rate window but in the top window.
        assert!((t.rate_at(112, 10) - 0.6).abs() < 1e-9);
        let top = t.top_at(112, 10);
        assert_eq!(
            top,
            vec![
                RoomTraffic {
                    room: "a".into(),
                    messages: 20
                },
                RoomTraffic {
                    room: "b".into(),
                    messages: 5
                }
            ]
        );
        assert_eq!(t.top_at(112, 1).len(), 1);
        // A minute later, only what came since counts; old buckets go.
        t.record_at(161, Some("c"));
        assert_eq!(t.top_at(161, 10).len(), 2, "b (105) is still in the minute");
        t.record_at(170, Some("c"));
        let top = t.top_at(170, 10);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].messages, 2);
        assert!(t.buckets.lock().len() <= TOP_ROOMS_WINDOW_S as usize);
    }

    #[test]
    fn rooms_per_second_are_bounded() {
        let t = Traffic::default();
        for i in 0..(ROOMS_PER_SECOND_MAX + 50) {
            t.record_at(7, Some(&format!("r{i}")));
        }
        assert_eq!(t.buckets.lock()[0].rooms.len(), ROOMS_PER_SECOND_MAX);
        assert!((t.rate_at(7, 1) - (ROOMS_PER_SECOND_MAX + 50) as f64).abs() < 1e-9);
    }
}
