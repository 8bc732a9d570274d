//! confab-backend: the engine interfaces and their implementations.
//!
//! A gateway talks to the rest of the chat through three small interfaces, in the
//! spirit of Centrifugo's broker/presence split:
//!
//! - [`Broker`]: publish = append to history + fan out, in one atomic step; subscribe
//!   a node to a topic (a room, or a user for DMs); read history pages.
//! - [`Presence`]: who is connected, who is in which room, with connection counts;
//!   display-name reservations.
//! - [`Access`]: room metadata (private and announcement rooms), roles, sanctions
//!   and the moderation audit log.
//! - [`Status`]: the gateways' status reports and the backend's health, for the
//!   admin status page.
//!
//! Each node (gateway) receives the events of the topics it subscribed to on one
//! [`EventReceiver`], in publish order per topic. [`memory`] implements every
//! interface in one process (the embedded default); [`redis_backend`] implements
//! them on Redis (cluster mode: several gateways share one Redis). [`conformance`]
//! is the test suite both must pass.

pub mod access;
pub mod conformance;
pub mod memory;
pub mod redis_backend;
pub mod status;
mod types;

pub use access::{Access, AuditEntry, RateBucket, RoomMeta, SanctionKind, FOREVER};
pub use status::Status;
pub use types::*;

use async_trait::async_trait;
use confab_core::protocol::{RoomEntry, UserEntry};
use confab_core::{DirectMessage, Message, MessageId};

/// Append + fan-out, subscriptions and history.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Store `draft` in its room's history (assigning id and ts) and deliver it to every
    /// node subscribed to the room, in one step: the delivery order on every node is
    /// the history order.
    async fn publish_message(&self, draft: NewMessage) -> Result<Message, BackendError>;

    /// Store a DM in the conversation of `from` and `to`, and deliver it to the nodes
    /// subscribed to either user.
    async fn publish_dm(&self, draft: NewDm) -> Result<DirectMessage, BackendError>;

    /// Deliver an ephemeral signal (typing, presence change) to the nodes subscribed to
    /// `room`. Not stored.
    async fn publish_signal(&self, room: &str, signal: Signal) -> Result<(), BackendError>;

    /// Deliver an ephemeral signal to the nodes following `user` (every gateway with
    /// a socket of theirs). Not stored.
    async fn publish_user_signal(&self, user: &str, signal: UserSignal)
        -> Result<(), BackendError>;

    /// Message `id` of `room`, if history still holds it.
    async fn room_message(
        &self,
        room: &str,
        id: MessageId,
    ) -> Result<Option<Message>, BackendError>;

    /// Replace message `id` of `room` by its tombstone in history and publish
    /// [`Signal::Deleted`] to the room; false if history does not hold it.
    async fn delete_message(&self, room: &str, id: MessageId) -> Result<bool, BackendError>;

    /// Start receiving events of `topic` on this node's [`EventReceiver`].
    async fn subscribe(&self, topic: &Topic) -> Result<(), BackendError>;

    /// Stop receiving events of `topic`.
    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BackendError>;

    /// A page of a room's history, oldest first.
    async fn room_history(
        &self,
        room: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage<Message>, BackendError>;

    /// A page of the conversation between `a` and `b`, oldest first.
    async fn dm_history(
        &self,
        a: &str,
        b: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage<DirectMessage>, BackendError>;

    /// DMs sent to `user` and not yet marked read, per sender (sorted by sender).
    async fn dm_unread(&self, user: &str) -> Result<Vec<(String, u64)>, BackendError>;

    /// Mark the DMs from `peer` to `user` with ids up to `up_to` as read, tell every
    /// node following `user` ([`UserSignal::DmRead`]), and return how many DMs from
    /// `peer` remain unread.
    async fn dm_mark_read(
        &self,
        user: &str,
        peer: &str,
        up_to: confab_core::MessageId,
    ) -> Result<u64, BackendError>;

    /// Whether the backend can serve requests now (for `/readyz`).
    async fn ready(&self) -> bool;
}

/// Connection and room membership counts, cluster-wide.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// A connection of user id `user` came online under display name `name` (the
    /// user is known from now on, and lists show this name); returns the user's
    /// connection count after.
    async fn connect(&self, user: &str, name: &str) -> Result<u64, BackendError>;
    /// A connection of `user` went away; returns the user's connection count after.
    async fn disconnect(&self, user: &str) -> Result<u64, BackendError>;
    /// A connection of `user` entered `room`; returns the user's connection count in
    /// the room after (1 means the user just joined).
    async fn join(&self, room: &str, user: &str) -> Result<u64, BackendError>;
    /// A connection of `user` left `room`; returns the count after (0 means the user
    /// just left). Leaving more often than joined saturates at 0.
    async fn leave(&self, room: &str, user: &str) -> Result<u64, BackendError>;
    /// Members of `room` (at most `limit`, sorted by user id) and the total count.
    async fn room_members(
        &self,
        room: &str,
        limit: usize,
    ) -> Result<(Vec<UserEntry>, u64), BackendError>;
    /// Online users (at most `limit`, sorted by user id) and the total count.
    async fn online_users(&self, limit: usize) -> Result<(Vec<UserEntry>, u64), BackendError>;
    /// Connections of `user` anywhere (0 = offline).
    async fn connections(&self, user: &str) -> Result<u64, BackendError>;
    /// Whether `user` connected and was not pruned as idle since (a known user can
    /// receive DMs while offline).
    async fn is_known(&self, user: &str) -> Result<bool, BackendError>;
    /// Forget up to `limit` users offline and not seen (connected or disconnected)
    /// for `idle`: they leave the user directory with their unread DMs (their
    /// roles, sanctions and room memberships stay). Returns how many went.
    async fn prune_idle_users(
        &self,
        idle: std::time::Duration,
        limit: usize,
    ) -> Result<u64, BackendError>;
    /// Rooms with members, most members first, at most `limit`.
    async fn rooms(&self, limit: usize) -> Result<Vec<RoomEntry>, BackendError>;
    /// Members count of each given room (0 for rooms without members).
    async fn room_sizes(&self, rooms: &[String]) -> Result<Vec<u64>, BackendError>;

    /// Reserve the display-name key `key` (see `confab_core::validate::name_key`)
    /// for user id `user` until `hold` from now. Succeeds (`None`) when the key is
    /// free, expired, or already `user`'s (the hold is then renewed); otherwise
    /// returns the id holding it. (Gateways claim at connect and renew at
    /// disconnect, so a name stays reserved for `hold` after its holder was last
    /// seen.)
    async fn claim_name(
        &self,
        key: &str,
        user: &str,
        hold: std::time::Duration,
    ) -> Result<Option<String>, BackendError>;

    /// Extend `user`'s hold on `key` to `hold` from now, only if they hold it
    /// (a released or lost name is not taken back); true if extended.
    async fn renew_name(
        &self,
        key: &str,
        user: &str,
        hold: std::time::Duration,
    ) -> Result<bool, BackendError>;

    /// Give up the display-name key `key` if `user` holds it (sign-out); true if
    /// it was released.
    async fn release_name(&self, key: &str, user: &str) -> Result<bool, BackendError>;

    /// The cluster's shared secret named `name`: the first `proposed` value stored
    /// under that name wins, and every later call anywhere returns it (so every
    /// gateway signs and verifies guest identities with the same key).
    async fn shared_secret(&self, name: &str, proposed: &[u8]) -> Result<Vec<u8>, BackendError>;
}
