//! Data that crosses the backend interface: drafts, topics, signals, events,
//! history queries and pages, errors.

use confab_core::{ChatError, DirectMessage, Message, MessageId};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tokio::sync::mpsc;

/// A message before the backend assigned its id and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub room: String,
    /// The sender's user id (idempotency is keyed by it).
    pub from_id: String,
    /// The sender's display name.
    pub from: String,
    pub text: String,
    pub client_id: Option<String>,
    /// Whether this message may start the room's history. With `false`, a room
    /// without history (never used, or expired) is refused
    /// [`BackendError::NotCreated`] and nothing is stored: the gateway charges the
    /// room-creation quota and publishes again with `true`.
    pub create: bool,
}

/// A DM before the backend assigned its id and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDm {
    /// The sender's user id; the conversation is keyed by the two ids.
    pub from_id: String,
    /// The sender's display name.
    pub from: String,
    /// The recipient's user id.
    pub to: String,
    pub text: String,
    pub client_id: Option<String>,
}

/// What a node subscribes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Messages and signals of a room.
    Room(String),
    /// DMs from and to a user (by user id), and the user's own signals.
    User(String),
}

/// Ephemeral room events: delivered, never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signal {
    /// `user` started or stopped typing in the room.
    Typing { user: UserRef, typing: bool },
    /// Users whose first connection entered the room / whose last one left it.
    Presence {
        joined: Vec<UserRef>,
        left: Vec<UserRef>,
    },
    /// Message `id` of the room was deleted (a tombstone stays in history).
    Deleted { id: MessageId },
    /// A server-wide announcement (published on [`ANNOUNCE_TOPIC`]).
    Announcement {
        from: UserRef,
        text: String,
        ts: u64,
    },
}

/// The room topic every gateway subscribes to for server-wide announcements (not
/// a valid client room name, so no client can join or post to it).
pub const ANNOUNCE_TOPIC: &str = "~all";

/// A user as shown to others: the id (the identity) and the display name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserRef {
    pub id: String,
    pub name: String,
}

/// A user whose id is their name (as in `open` auth mode).
impl From<&str> for UserRef {
    fn from(name: &str) -> Self {
        Self {
            id: name.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// Ephemeral events for all the sockets of one user: delivered, never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserSignal {
    /// The user read their DMs from `with` up to `up_to`; `unread` from `with` remain.
    DmRead {
        with: String,
        up_to: MessageId,
        unread: u64,
    },
    /// A moderation action against the user, enforced by every gateway holding
    /// their sockets: `kick`/`ban` with a room take the sockets out of the room,
    /// `ban` without one disconnects them; `mute` is only told.
    Moderation {
        action: String,
        room: Option<String>,
        until: Option<u64>,
    },
    /// The user was invited to private room `room` by `by`.
    Invited { room: String, by: UserRef },
}

/// What a node receives for its subscribed topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusEvent {
    Message(Message),
    Dm(DirectMessage),
    Signal { room: String, signal: Signal },
    UserSignal { user: String, signal: UserSignal },
}

/// A node's event stream: a channel that stamps each event with the time it was
/// queued, so the receiver can tell how far behind it is (the gateway's dispatch
/// lag, used for overload admission) without trusting any clock but its own.
pub fn event_channel() -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (EventSender(tx), EventReceiver(rx))
}

/// The sending end a backend uses to deliver to one node.
#[derive(Clone, Debug)]
pub struct EventSender(mpsc::UnboundedSender<(Instant, BusEvent)>);

impl EventSender {
    /// Queue `event` (stamped now); false if the receiver is gone.
    pub fn send(&self, event: BusEvent) -> bool {
        self.0.send((Instant::now(), event)).is_ok()
    }
}

/// The receiving end of a node's events, in publish order per topic.
#[derive(Debug)]
pub struct EventReceiver(mpsc::UnboundedReceiver<(Instant, BusEvent)>);

impl EventReceiver {
    /// The next event; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<BusEvent> {
        self.0.recv().await.map(|(_, e)| e)
    }

    /// The next event with the time it was queued.
    pub async fn recv_stamped(&mut self) -> Option<(Instant, BusEvent)> {
        self.0.recv().await
    }

    /// The next event if one is queued now.
    pub fn try_recv(&mut self) -> Option<BusEvent> {
        self.0.try_recv().ok().map(|(_, e)| e)
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Which page of a history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// The latest `limit` entries.
    Latest { limit: usize },
    /// The `limit` entries immediately older than `id`.
    Before { id: MessageId, limit: usize },
    /// Entries newer than `id`; when more than `limit` exist, the latest `limit`
    /// of them with `truncated` set (no gap towards live delivery).
    After { id: MessageId, limit: usize },
}

/// A page of history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage<T> {
    pub items: Vec<T>,
    /// Older entries exist before `items[0]` (or before the query point if empty).
    pub has_more: bool,
    /// `After` only: some entries newer than the given id are not in `items`
    /// (more than `limit`, or dropped by retention).
    pub truncated: bool,
}

/// A backend failure. `Unavailable` is transient (retry later).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("backend error: {0}")]
    Internal(String),
    /// A message without `create` to a room that has no history.
    #[error("the room has no history yet")]
    NotCreated,
}

impl From<BackendError> for ChatError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Unavailable(m) => ChatError::unavailable(m),
            BackendError::Internal(m) => ChatError::internal(m),
            BackendError::NotCreated => ChatError::internal("room not created".to_owned()),
        }
    }
}

/// Backend tuning shared by the implementations.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Entries kept per room and per conversation.
    pub history_retention: usize,
    /// Entries older than this leave history (`None`: kept until the count
    /// retention drops them). A room or conversation with nothing newer goes
    /// entirely.
    pub history_max_age: Option<std::time::Duration>,
    /// A client id resent by the same user within this window returns the original
    /// message instead of storing a new one.
    pub idempotency_window: std::time::Duration,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            history_retention: 10_000,
            history_max_age: None,
            idempotency_window: std::time::Duration::from_secs(600),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The canonical key of a DM conversation: the two names, smaller first.
pub fn dm_pair<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}
