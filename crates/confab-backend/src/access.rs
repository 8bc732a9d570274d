//! The third engine interface: who may do what. Room metadata (private and
//! announcement rooms, their owner and members), roles granted in the backend,
//! sanctions (mutes and bans, per room or server-wide, until a time) and the
//! moderation audit log. Every gateway reads the same answers, so a decision made
//! on one gateway holds on all of them.

use crate::BackendError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What a created room is. Rooms nobody created are public, as always.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMeta {
    /// Only members (invited, or granted by a token's `rooms` claim) may join it,
    /// read it or see it listed. (Its name is taken: `room:create` of it fails.)
    pub private: bool,
    /// Read-only for everyone but its owner, moderators and admins.
    pub announce: bool,
    /// The user id that created it.
    pub owner: String,
}

/// A kind of sanction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SanctionKind {
    /// May not post (in the room).
    Mute,
    /// May not join the room, or (server-wide) connect at all.
    Ban,
}

impl SanctionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mute => "mute",
            Self::Ban => "ban",
        }
    }
}

/// "Until" of a sanction without an end.
pub const FOREVER: u64 = u64::MAX;

/// One moderation action, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Assigned by the backend: `<ms>-<seq>`, newest greatest (`None` in a draft).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub ts: u64,
    /// Who acted (user id).
    pub actor: String,
    /// `mute`, `kick`, `ban`, `unban`, `delete`, `invite`, `remove`, `create`,
    /// `announce`.
    pub action: String,
    /// The user id acted on (or the message id for `delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// End of a sanction, ms since the epoch (absent: none, or forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// One GCRA bucket of a cluster-wide rate limit: `per_sec` sustained, `burst` at
/// once, under `key` (e.g. `msg:u:<id>`, `conn:ip:<addr>`).
#[derive(Debug, Clone, PartialEq)]
pub struct RateBucket {
    pub key: String,
    pub per_sec: f64,
    pub burst: f64,
}

/// Room metadata, roles, sanctions, the audit log and rate limits, cluster-wide.
#[async_trait]
pub trait Access: Send + Sync + 'static {
    /// Record `room` as created with `meta` (its owner becomes a member); false if
    /// the room was already created.
    async fn create_room(&self, room: &str, meta: &RoomMeta) -> Result<bool, BackendError>;
    /// The metadata of each room (`None`: never created, i.e. public).
    async fn room_metas(&self, rooms: &[String]) -> Result<Vec<Option<RoomMeta>>, BackendError>;
    /// Add `user` to (or remove them from) the members of a created room.
    async fn set_room_member(
        &self,
        room: &str,
        user: &str,
        member: bool,
    ) -> Result<(), BackendError>;
    /// Whether `user` is a member of a created room.
    async fn is_room_member(&self, room: &str, user: &str) -> Result<bool, BackendError>;
    /// Created rooms `user` is a member of, sorted, at most `limit`.
    async fn member_rooms(&self, user: &str, limit: usize) -> Result<Vec<String>, BackendError>;

    /// Grant or revoke a role stored in the backend.
    async fn set_role(&self, user: &str, role: &str, on: bool) -> Result<(), BackendError>;
    /// Roles stored in the backend for `user`, sorted.
    async fn roles(&self, user: &str) -> Result<Vec<String>, BackendError>;

    /// Impose a sanction until `until` (ms since the epoch, or [`FOREVER`]).
    /// `room: None` is server-wide.
    async fn set_sanction(
        &self,
        kind: SanctionKind,
        user: &str,
        room: Option<&str>,
        until: u64,
    ) -> Result<(), BackendError>;
    /// Lift a sanction; false if none was in force.
    async fn clear_sanction(
        &self,
        kind: SanctionKind,
        user: &str,
        room: Option<&str>,
    ) -> Result<bool, BackendError>;
    /// The end of the sanction in force (`None`: none, or it has ended).
    async fn sanction(
        &self,
        kind: SanctionKind,
        user: &str,
        room: Option<&str>,
    ) -> Result<Option<u64>, BackendError>;

    /// Append to the audit log (bounded: the oldest entries go first).
    async fn audit_append(&self, entry: AuditEntry) -> Result<(), BackendError>;
    /// Take one event from every bucket of `buckets`, all or none (GCRA, on the
    /// backend's clock, so it holds across every gateway); `Ok(Err(wait))` when a
    /// bucket is empty: a retry can succeed after `wait`.
    async fn rate_take(
        &self,
        buckets: &[RateBucket],
    ) -> Result<Result<(), std::time::Duration>, BackendError>;

    /// Audit entries older than `before` (an entry id; `None`: the newest), newest
    /// first, at most `limit`.
    async fn audit_list(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, BackendError>;
}

/// Entries the audit log keeps.
pub const AUDIT_RETENTION: usize = 100_000;

/// GCRA on one bucket, pure: the bucket's theoretical arrival time `tat` (ms), the
/// time `now` (ms); returns the new `tat` if an event is allowed now, else how long
/// until it would be (ms). The Redis script computes the same.
pub fn gcra(tat: Option<f64>, now: f64, per_sec: f64, burst: f64) -> Result<f64, f64> {
    let emission = 1000.0 / per_sec.max(1e-9);
    let tolerance = emission * burst.max(1.0);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + emission;
    let allow_at = new_tat - tolerance;
    if allow_at > now {
        Err(allow_at - now)
    } else {
        Ok(new_tat)
    }
}

#[cfg(test)]
mod tests {
    use super::gcra;

    #[test]
    fn gcra_allows_a_burst_then_the_rate() {
        // 10/s, burst 3: three at once, then one per 100 ms.
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra(tat, 0.0, 10.0, 3.0).unwrap());
        }
        let wait = gcra(tat, 0.0, 10.0, 3.0).unwrap_err();
        assert!((wait - 100.0).abs() < 1e-6, "{wait}");
        tat = Some(gcra(tat, 100.0, 10.0, 3.0).unwrap());
        assert!(gcra(tat, 150.0, 10.0, 3.0).is_err());
        // After a long pause, the burst again (not more).
        let mut t = tat;
        let allowed = (0..10)
            .filter(|_| match gcra(t, 10_000.0, 10.0, 3.0) {
                Ok(n) => {
                    t = Some(n);
                    true
                }
                Err(_) => false,
            })
            .count();
        assert_eq!(allowed, 3);
    }
}
