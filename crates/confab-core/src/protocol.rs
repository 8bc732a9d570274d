//! The typed wire contract: client requests (decoded and validated from JSON),
//! the stored message types, server pushes and acks.
//!
//! Decoding is two steps, both pure: serde turns the JSON payload into a raw struct
//! (wrong types → `bad_request`), then [`Decode::decode`] applies the validation
//! rules of [`crate::validate`] and the [`Limits`], producing a checked request the
//! gateway can hand to a backend without further checks.

use crate::error::{ChatError, ErrorCode};
use crate::id::MessageId;
use crate::limits::Limits;
use crate::validate;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A message stored in a room's history and fanned out as `message:new`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub room: String,
    /// The sender's display name when the message was sent.
    pub from: String,
    /// The sender's user id (the identity; names are for display).
    #[serde(rename = "fromId", default)]
    pub from_id: String,
    pub text: String,
    pub ts: u64,
    #[serde(rename = "clientId", default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A tombstone: the message was deleted (its text is gone).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl Message {
    /// The tombstone of this message: who and when stay, the text goes.
    pub fn tombstone(mut self) -> Self {
        self.text = String::new();
        self.client_id = None;
        self.deleted = true;
        self
    }
}

/// A private message, stored per conversation and pushed as `dm:new` to both users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectMessage {
    pub id: MessageId,
    /// The sender's display name when the message was sent.
    pub from: String,
    /// The sender's user id.
    #[serde(rename = "fromId", default)]
    pub from_id: String,
    /// The recipient's user id.
    pub to: String,
    pub text: String,
    pub ts: u64,
    #[serde(rename = "clientId", default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The names of the client → server events.
pub mod event {
    pub const ROOM_JOIN: &str = "room:join";
    pub const ROOM_LEAVE: &str = "room:leave";
    pub const ROOM_LIST: &str = "room:list";
    pub const MESSAGE_SEND: &str = "message:send";
    pub const MESSAGE_HISTORY: &str = "message:history";
    pub const DM_SEND: &str = "dm:send";
    pub const DM_HISTORY: &str = "dm:history";
    pub const TYPING: &str = "typing";
    pub const USERS_LIST: &str = "users:list";
    pub const DM_READ: &str = "dm:read";
    pub const AUTH_REFRESH: &str = "auth:refresh";
    pub const ROOM_CREATE: &str = "room:create";
    pub const ROOM_INVITE: &str = "room:invite";
    pub const ROOM_REMOVE: &str = "room:remove";
    pub const MESSAGE_DELETE: &str = "message:delete";
    pub const MOD_MUTE: &str = "mod:mute";
    pub const MOD_KICK: &str = "mod:kick";
    pub const MOD_BAN: &str = "mod:ban";
    pub const MOD_UNBAN: &str = "mod:unban";
    pub const AUDIT_LIST: &str = "audit:list";
    pub const ANNOUNCE: &str = "announce";
    pub const ADMIN_STATUS: &str = "admin:status";
    pub const ADMIN_WATCH: &str = "admin:watch";
}

/// Which request a client event names: the one table from event name to request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    RoomJoin,
    RoomLeave,
    RoomList,
    MessageSend,
    MessageHistory,
    DmSend,
    DmHistory,
    Typing,
    UsersList,
    DmRead,
    AuthRefresh,
    RoomCreate,
    RoomInvite,
    RoomRemove,
    MessageDelete,
    ModMute,
    ModKick,
    ModBan,
    ModUnban,
    AuditList,
    Announce,
    AdminStatus,
    AdminWatch,
}

impl RequestKind {
    pub const ALL: [RequestKind; 23] = [
        Self::RoomJoin,
        Self::RoomLeave,
        Self::RoomList,
        Self::MessageSend,
        Self::MessageHistory,
        Self::DmSend,
        Self::DmHistory,
        Self::Typing,
        Self::UsersList,
        Self::DmRead,
        Self::AuthRefresh,
        Self::RoomCreate,
        Self::RoomInvite,
        Self::RoomRemove,
        Self::MessageDelete,
        Self::ModMute,
        Self::ModKick,
        Self::ModBan,
        Self::ModUnban,
        Self::AuditList,
        Self::Announce,
        Self::AdminStatus,
        Self::AdminWatch,
    ];

    /// The event name on the wire.
    pub const fn event(self) -> &'static str {
        match self {
            Self::RoomJoin => event::ROOM_JOIN,
            Self::RoomLeave => event::ROOM_LEAVE,
            Self::RoomList => event::ROOM_LIST,
            Self::MessageSend => event::MESSAGE_SEND,
            Self::MessageHistory => event::MESSAGE_HISTORY,
            Self::DmSend => event::DM_SEND,
            Self::DmHistory => event::DM_HISTORY,
            Self::Typing => event::TYPING,
            Self::UsersList => event::USERS_LIST,
            Self::DmRead => event::DM_READ,
            Self::AuthRefresh => event::AUTH_REFRESH,
            Self::RoomCreate => event::ROOM_CREATE,
            Self::RoomInvite => event::ROOM_INVITE,
            Self::RoomRemove => event::ROOM_REMOVE,
            Self::MessageDelete => event::MESSAGE_DELETE,
            Self::ModMute => event::MOD_MUTE,
            Self::ModKick => event::MOD_KICK,
            Self::ModBan => event::MOD_BAN,
            Self::ModUnban => event::MOD_UNBAN,
            Self::AuditList => event::AUDIT_LIST,
            Self::Announce => event::ANNOUNCE,
            Self::AdminStatus => event::ADMIN_STATUS,
            Self::AdminWatch => event::ADMIN_WATCH,
        }
    }

    /// The request an event name names; `None` for an unknown event.
    pub fn from_event(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.event() == name)
    }

    /// Decode and validate the payload of this request.
    pub fn decode(self, payload: Value, limits: &Limits) -> Result<Request, ChatError> {
        Ok(match self {
            Self::RoomJoin => Request::RoomJoin(JoinRoom::decode(payload, limits)?),
            Self::RoomLeave => Request::RoomLeave(LeaveRoom::decode(payload, limits)?),
            Self::RoomList => Request::RoomList(ListRooms::decode(payload, limits)?),
            Self::MessageSend => Request::MessageSend(SendMessage::decode(payload, limits)?),
            Self::MessageHistory => Request::MessageHistory(RoomHistory::decode(payload, limits)?),
            Self::DmSend => Request::DmSend(SendDm::decode(payload, limits)?),
            Self::DmHistory => Request::DmHistory(DmHistory::decode(payload, limits)?),
            Self::Typing => Request::Typing(Typing::decode(payload, limits)?),
            Self::UsersList => Request::UsersList(ListUsers::decode(payload, limits)?),
            Self::DmRead => Request::DmRead(DmRead::decode(payload, limits)?),
            Self::AuthRefresh => Request::AuthRefresh(AuthRefresh::decode(payload, limits)?),
            Self::RoomCreate => Request::RoomCreate(CreateRoom::decode(payload, limits)?),
            Self::RoomInvite => Request::RoomInvite(RoomMember::decode(payload, limits)?),
            Self::RoomRemove => Request::RoomRemove(RoomMember::decode(payload, limits)?),
            Self::MessageDelete => Request::MessageDelete(DeleteMessage::decode(payload, limits)?),
            Self::ModMute => Request::ModMute(Mute::decode(payload, limits)?),
            Self::ModKick => Request::ModKick(RoomMember::decode(payload, limits)?),
            Self::ModBan => Request::ModBan(Ban::decode(payload, limits)?),
            Self::ModUnban => Request::ModUnban(Unban::decode(payload, limits)?),
            Self::AuditList => Request::AuditList(AuditList::decode(payload, limits)?),
            Self::Announce => Request::Announce(Announce::decode(payload, limits)?),
            Self::AdminStatus => Request::AdminStatus(AdminStatus::decode(payload, limits)?),
            Self::AdminWatch => Request::AdminWatch(AdminWatch::decode(payload, limits)?),
        })
    }
}

/// A client request, decoded and validated.
#[derive(Debug)]
pub enum Request {
    RoomJoin(JoinRoom),
    RoomLeave(LeaveRoom),
    RoomList(ListRooms),
    MessageSend(SendMessage),
    MessageHistory(RoomHistory),
    DmSend(SendDm),
    DmHistory(DmHistory),
    Typing(Typing),
    UsersList(ListUsers),
    DmRead(DmRead),
    AuthRefresh(AuthRefresh),
    RoomCreate(CreateRoom),
    RoomInvite(RoomMember),
    RoomRemove(RoomMember),
    MessageDelete(DeleteMessage),
    ModMute(Mute),
    ModKick(RoomMember),
    ModBan(Ban),
    ModUnban(Unban),
    AuditList(AuditList),
    Announce(Announce),
    AdminStatus(AdminStatus),
    AdminWatch(AdminWatch),
}

/// The names of the server → client pushes.
pub mod push {
    pub const SESSION: &str = "session";
    pub const MESSAGE_NEW: &str = "message:new";
    pub const DM_NEW: &str = "dm:new";
    pub const TYPING: &str = "typing";
    pub const ROOM_PRESENCE: &str = "room:presence";
    pub const DM_READ: &str = "dm:read";
    pub const ERROR: &str = "error";
    pub const AUTH_EXPIRING: &str = "auth:expiring";
    pub const MESSAGE_DELETED: &str = "message:deleted";
    pub const MOD_ACTION: &str = "mod:action";
    pub const ROOM_INVITED: &str = "room:invited";
    pub const ANNOUNCEMENT: &str = "announcement";
    /// The admin status snapshot, every [`super::ADMIN_WATCH_INTERVAL_MS`] to a
    /// socket that asked with `admin:watch {on: true}`.
    pub const ADMIN_STATUS: &str = "admin:status";
}

/// A checked request, built from the JSON payload of one event.
pub trait Decode: Sized {
    fn decode(payload: Value, limits: &Limits) -> Result<Self, ChatError>;
}

/// Raw serde step: the payload must be a JSON object (or absent when `optional`).
fn raw<T: DeserializeOwned + Default>(payload: Value, optional: bool) -> Result<T, ChatError> {
    match payload {
        Value::Object(_) => serde_json::from_value(payload)
            .map_err(|e| ChatError::bad_request(format!("invalid payload: {e}"))),
        Value::Null if optional => Ok(T::default()),
        other => Err(ChatError::bad_request(format!(
            "payload must be a JSON object, got {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, ChatError> {
    v.ok_or_else(|| ChatError::bad_request(format!("missing field `{field}`")))
}

fn id(raw: Option<String>, field: &str) -> Result<Option<MessageId>, ChatError> {
    raw.map(|s| {
        s.parse()
            .map_err(|e| ChatError::bad_request(format!("`{field}`: {e}")))
    })
    .transpose()
}

fn client_id(raw: Option<String>) -> Result<Option<String>, ChatError> {
    raw.map(|c| validate::client_id(&c).map(str::to_owned))
        .transpose()
}

fn room(raw: Option<String>) -> Result<String, ChatError> {
    let r = required(raw, "room")?;
    validate::room(&r)?;
    Ok(r)
}

#[derive(Default, Deserialize)]
struct RawRoomJoin {
    room: Option<String>,
    limit: Option<u64>,
    since: Option<String>,
}

/// `room:join {room, limit?, since?}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRoom {
    pub room: String,
    pub limit: usize,
    pub since: Option<MessageId>,
}

impl Decode for JoinRoom {
    fn decode(payload: Value, limits: &Limits) -> Result<Self, ChatError> {
        let r: RawRoomJoin = raw(payload, false)?;
        Ok(Self {
            room: room(r.room)?,
            limit: validate::limit(
                r.limit,
                limits.history_page_default,
                limits.history_page_max,
            )?,
            since: id(r.since, "since")?,
        })
    }
}

#[derive(Default, Deserialize)]
struct RawRoom {
    room: Option<String>,
}

/// `room:leave {room}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveRoom {
    pub room: String,
}

impl Decode for LeaveRoom {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let r: RawRoom = raw(payload, false)?;
        Ok(Self {
            room: room(r.room)?,
        })
    }
}

#[derive(Default, Deserialize)]
struct RawEmpty {}

/// `room:list {}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRooms;

impl Decode for ListRooms {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let _: RawEmpty = raw(payload, true)?;
        Ok(ListRooms)
    }
}

#[derive(Default, Deserialize)]
struct RawSend {
    room: Option<String>,
    to: Option<String>,
    text: Option<String>,
    #[serde(rename = "clientId")]
    client_id: Option<String>,
}

/// `message:send {room, text, clientId?}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessage {
    pub room: String,
    pub text: String,
    pub client_id: Option<String>,
}

impl Decode for SendMessage {
    fn decode(payload: Value, limits: &Limits) -> Result<Self, ChatError> {
        let r: RawSend = raw(payload, false)?;
        let room = room(r.room)?;
        let text = required(r.text, "text")?;
        validate::text(&text, limits.max_text_chars)?;
        Ok(Self {
            room,
            text,
            client_id: client_id(r.client_id)?,
        })
    }
}

/// `dm:send {to, text, clientId?}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendDm {
    /// The recipient's user id (in `open` mode, the name).
    pub to: String,
    pub text: String,
    pub client_id: Option<String>,
}

impl Decode for SendDm {
    fn decode(payload: Value, limits: &Limits) -> Result<Self, ChatError> {
        let r: RawSend = raw(payload, false)?;
        let to = validate::user_id(&required(r.to, "to")?)?;
        let text = required(r.text, "text")?;
        validate::text(&text, limits.max_text_chars)?;
        Ok(Self {
            to,
            text,
            client_id: client_id(r.client_id)?,
        })
    }
}

#[derive(Default, Deserialize)]
struct RawHistory {
    room: Option<String>,
    with: Option<String>,
    before: Option<String>,
    limit: Option<u64>,
}

/// `message:history {room, before?, limit?}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomHistory {
    pub room: String,
    pub before: Option<MessageId>,
    pub limit: usize,
}

impl Decode for RoomHistory {
    fn decode(payload: Value, limits: &Limits) -> Result<Self, ChatError> {
        let r: RawHistory = raw(payload, false)?;
        Ok(Self {
            room: room(r.room)?,
            before: id(r.before, "before")?,
            limit: validate::limit(
                r.limit,
                limits.history_page_default,
                limits.history_page_max,
            )?,
        })
    }
}

/// `dm:history {with, before?, limit?}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmHistory {
    pub with: String,
    pub before: Option<MessageId>,
    pub limit: usize,
}

impl Decode for DmHistory {
    fn decode(payload: Value, limits: &Limits) -> Result<Self, ChatError> {
        let r: RawHistory = raw(payload, false)?;
        Ok(Self {
            with: validate::user_id(&required(r.with, "with")?)?,
            before: id(r.before, "before")?,
            limit: validate::limit(
                r.limit,
                limits.history_page_default,
                limits.history_page_max,
            )?,
        })
    }
}

#[derive(Default, Deserialize)]
struct RawDmRead {
    with: Option<String>,
    #[serde(rename = "upTo")]
    up_to: Option<String>,
}

/// `dm:read {with, upTo}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmRead {
    pub with: String,
    pub up_to: MessageId,
}

impl Decode for DmRead {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let r: RawDmRead = raw(payload, false)?;
        Ok(Self {
            with: validate::user_id(&required(r.with, "with")?)?,
            up_to: required(id(r.up_to, "upTo")?, "upTo")?,
        })
    }
}

#[derive(Default, Deserialize)]
struct RawTyping {
    room: Option<String>,
    typing: Option<bool>,
}

/// `typing {room, typing}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typing {
    pub room: String,
    pub typing: bool,
}

impl Decode for Typing {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let r: RawTyping = raw(payload, false)?;
        Ok(Self {
            room: room(r.room)?,
            typing: required(r.typing, "typing")?,
        })
    }
}

/// `users:list {room?}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListUsers {
    pub room: Option<String>,
}

impl Decode for ListUsers {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let r: RawRoom = raw(payload, true)?;
        let room = match r.room {
            Some(x) => {
                validate::room(&x)?;
                Some(x)
            }
            None => None,
        };
        Ok(Self { room })
    }
}

/// Longest token accepted in a handshake or `auth:refresh`, in bytes.
pub const TOKEN_MAX_LEN: usize = 8192;

/// A bearer token from a handshake or `auth:refresh`: a non-empty string of at
/// most [`TOKEN_MAX_LEN`] bytes (verified by the gateway, not here).
pub fn token(raw: Option<&Value>) -> Result<&str, ChatError> {
    match raw {
        None | Some(Value::Null) => Err(ChatError::new(
            ErrorCode::Unauthorized,
            "a token is required (field `token`)",
        )),
        Some(Value::String(t)) if !t.is_empty() && t.len() <= TOKEN_MAX_LEN => Ok(t),
        Some(Value::String(_)) => Err(ChatError::new(
            ErrorCode::Unauthorized,
            format!("token must be 1-{TOKEN_MAX_LEN} bytes"),
        )),
        Some(other) => Err(ChatError::new(
            ErrorCode::Unauthorized,
            format!("token must be a string, got {}", kind(other)),
        )),
    }
}

#[derive(Default, Deserialize)]
struct RawAuthRefresh {
    token: Option<Value>,
}

/// `auth:refresh {token}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRefresh {
    pub token: String,
}

impl Decode for AuthRefresh {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let r: RawAuthRefresh = raw(payload, false)?;
        Ok(Self {
            token: token(r.token.as_ref())?.to_owned(),
        })
    }
}

/// Longest sanction, in seconds (10 years).
pub const DURATION_MAX_S: u64 = 10 * 365 * 24 * 3600;

fn duration(raw: Option<u64>, field: &str) -> Result<Option<u64>, ChatError> {
    match raw {
        None => Ok(None),
        Some(d) if (1..=DURATION_MAX_S).contains(&d) => Ok(Some(d)),
        Some(_) => Err(ChatError::bad_request(format!(
            "`{field}` must be an integer between 1 and {DURATION_MAX_S} (seconds)"
        ))),
    }
}

fn user(raw: Option<String>) -> Result<String, ChatError> {
    validate::user_id(&required(raw, "user")?)
}

fn optional_room(raw: Option<String>) -> Result<Option<String>, ChatError> {
    raw.map(|r| validate::room(&r).map(str::to_owned))
        .transpose()
}

#[derive(Default, Deserialize)]
struct RawAccess {
    room: Option<String>,
    user: Option<String>,
    id: Option<String>,
    private: Option<bool>,
    announce: Option<bool>,
    #[serde(rename = "durationS")]
    duration_s: Option<u64>,
    before: Option<String>,
    limit: Option<u64>,
    text: Option<String>,
}

/// `room:create {room, private?, announce?}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRoom {
    pub room: String,
    pub private: bool,
    pub announce: bool,
}

impl Decode for CreateRoom {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let r: RawAccess = raw(payload, false)?;
        Ok(Self {
            room: room(r.room)?,
            private: r.private.unwrap_or(false),
            announce: r.announce.unwrap_or(false),
        })
    }
}

/// `room:invite`, `room:remove` and `mod:kick`: `{room, user}` (a user id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMember {
    pub room: String,
    pub user: String,
}

impl Decode for RoomMember {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let r: RawAccess = raw(payload, false)?;
        Ok(Self {
            room: room(r.room)?,
            user: user(r.user)?,
        })
    }
}

/// `message:delete {room, id}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteMessage {
    pub room: String,
    pub id: MessageId,
}

impl Decode for DeleteMessage {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let r: RawAccess = raw(payload, false)?;
        Ok(Self {
            room: room(r.room)?,
            id: required(id(r.id, "id")?, "id")?,
        })
    }
}

/// `mod:mute {room, user, durationS}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mute {
    pub room: String,
    pub user: String,
    pub duration_s: u64,
}

impl Decode for Mute {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let r: RawAccess = raw(payload, false)?;
        Ok(Self {
            room: room(r.room)?,
            user: user(r.user)?,
            duration_s: required(duration(r.duration_s, "durationS")?, "durationS")?,
        })
    }
}

/// `mod:ban {user, room?, durationS?}`: no room = server-wide; no duration = until
/// lifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub user: String,
    pub room: Option<String>,
    pub duration_s: Option<u64>,
}

impl Decode for Ban {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let r: RawAccess = raw(payload, false)?;
        Ok(Self {
            user: user(r.user)?,
            room: optional_room(r.room)?,
            duration_s: duration(r.duration_s, "durationS")?,
        })
    }
}

/// `mod:unban {user, room?}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unban {
    pub user: String,
    pub room: Option<String>,
}

impl Decode for Unban {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let r: RawAccess = raw(payload, false)?;
        Ok(Self {
            user: user(r.user)?,
            room: optional_room(r.room)?,
        })
    }
}

/// `audit:list {before?, limit?}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditList {
    pub before: Option<MessageId>,
    pub limit: usize,
}

impl Decode for AuditList {
    fn decode(payload: Value, limits: &Limits) -> Result<Self, ChatError> {
        let r: RawAccess = raw(payload, true)?;
        Ok(Self {
            before: id(r.before, "before")?,
            limit: validate::limit(
                r.limit,
                limits.history_page_default,
                limits.history_page_max,
            )?,
        })
    }
}

/// `announce {text}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub text: String,
}

impl Decode for Announce {
    fn decode(payload: Value, limits: &Limits) -> Result<Self, ChatError> {
        let r: RawAccess = raw(payload, false)?;
        let text = required(r.text, "text")?;
        validate::text(&text, limits.max_text_chars)?;
        Ok(Self { text })
    }
}

#[derive(Default, Deserialize)]
struct RawAdminStatus {}

/// `admin:status {}` (or no payload): one status snapshot in the ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminStatus;

impl Decode for AdminStatus {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let RawAdminStatus {} = raw(payload, true)?;
        Ok(Self)
    }
}

#[derive(Default, Deserialize)]
struct RawAdminWatch {
    on: Option<bool>,
}

/// `admin:watch {on}`: start (`true`) or stop (`false`) the `admin:status` pushes
/// to this socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminWatch {
    pub on: bool,
}

impl Decode for AdminWatch {
    fn decode(payload: Value, _: &Limits) -> Result<Self, ChatError> {
        let r: RawAdminWatch = raw(payload, false)?;
        Ok(Self {
            on: required(r.on, "on")?,
        })
    }
}

// ---- the admin status page ----

/// How often each gateway reports its [`GatewayStatus`], and how often a watching
/// socket gets `admin:status`.
pub const ADMIN_WATCH_INTERVAL_MS: u64 = 2_000;
/// A gateway report older than this many intervals is stale: not shown, and
/// removed from the backend.
pub const GATEWAY_STATUS_STALE_INTERVALS: u64 = 3;
/// Rooms in a gateway's top list and in the snapshot's cluster-wide top list.
pub const TOP_ROOMS_MAX: usize = 10;
/// Gateways listed in one snapshot (the rest are left off; `gatewaysTotal` counts
/// them all).
pub const GATEWAYS_MAX: usize = 100;
/// Recent moderation actions (audit entries) in one snapshot.
pub const ADMIN_MODERATION_MAX: usize = 20;
/// The window of `msgsPerSec` (seconds).
pub const RATE_WINDOW_S: u64 = 10;
/// The window of the top rooms (seconds).
pub const TOP_ROOMS_WINDOW_S: u64 = 60;

/// Messages of one room over the last [`TOP_ROOMS_WINDOW_S`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomTraffic {
    pub room: String,
    pub messages: u64,
}

/// What one gateway reports about itself (stored in the backend, shown as is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    pub id: String,
    /// When the gateway started (ms since the epoch).
    pub started_at: u64,
    /// When this report was made (ms since the epoch; the backend's clock).
    pub updated_at: u64,
    pub uptime_s: u64,
    /// Socket.IO connections open on it.
    pub connections: u64,
    /// Backend topics (rooms, users) it is subscribed to.
    pub rooms: u64,
    /// Messages (room and DM) published through it per second, over the last
    /// [`RATE_WINDOW_S`].
    pub msgs_per_sec: f64,
    /// How long the event being delivered waited in its dispatcher (ms).
    pub lag_ms: u64,
    pub version: String,
    /// Its busiest rooms over the last [`TOP_ROOMS_WINDOW_S`], at most
    /// [`TOP_ROOMS_MAX`], busiest first.
    #[serde(default)]
    pub top_rooms: Vec<RoomTraffic>,
}

/// The backend's health, as the status page shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// `embedded` or `redis`.
    pub kind: String,
    /// It answered just now.
    pub healthy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Round trip of the status query (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_trip_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    /// Bytes used (`used_memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_memory: Option<u64>,
    /// The memory limit in bytes (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxmemory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxmemory_policy: Option<String>,
}

/// The cluster-wide busiest rooms: the gateways' top lists summed per room,
/// busiest first (ties by name), at most `max`. Pure.
pub fn merge_top_rooms<'a>(
    lists: impl IntoIterator<Item = &'a [RoomTraffic]>,
    max: usize,
) -> Vec<RoomTraffic> {
    let mut sums: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for list in lists {
        for t in list {
            *sums.entry(t.room.as_str()).or_default() += t.messages;
        }
    }
    let mut out: Vec<RoomTraffic> = sums
        .into_iter()
        .map(|(room, messages)| RoomTraffic {
            room: room.to_owned(),
            messages,
        })
        .collect();
    out.sort_by(|a, b| {
        b.messages
            .cmp(&a.messages)
            .then_with(|| a.room.cmp(&b.room))
    });
    out.truncate(max);
    out
}

// ---- server → client payloads ----

/// Ack body of `room:create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomCreated {
    pub room: String,
    pub private: bool,
    pub announce: bool,
    pub owner: String,
}

/// Ack body of `room:invite`, `room:remove`, `mod:kick`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMemberAck {
    pub room: String,
    pub user: String,
}

/// Ack body of `mod:mute` and `mod:ban` (`until` absent: until lifted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanctionAck {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// Ack body of `mod:unban`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnbanAck {
    pub user: String,
    /// Whether a ban was in force.
    pub lifted: bool,
}

/// `message:deleted {room, id}` pushed to the room; also the ack body of
/// `message:delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeleted {
    pub room: String,
    pub id: MessageId,
}

/// `mod:action {action, room?, until?}` pushed to the target of a moderation
/// action (before a kick or ban takes effect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModAction {
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// `room:invited {room, by, byId}` pushed to an invited user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomInvited {
    pub room: String,
    pub by: String,
    pub by_id: String,
}

/// `announcement {from, fromId, text, ts}` pushed to every socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Announcement {
    pub from: String,
    pub from_id: String,
    pub text: String,
    pub ts: u64,
}

/// `auth:expiring {expiresAt, inMs}`: the socket's token expires soon; send
/// `auth:refresh {token}` before `expiresAt` or be disconnected then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthExpiring {
    pub expires_at: u64,
    pub in_ms: u64,
}

/// Ack body of `auth:refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthRefreshAck {
    pub expires_at: Option<u64>,
}

/// `session {user: {name}, rooms, unread}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: SessionUser,
    pub rooms: Vec<String>,
    /// Unread DMs per sender (received while offline, or not yet marked read).
    pub unread: std::collections::BTreeMap<String, u64>,
}

/// Ack body of `dm:read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmReadAck {
    pub with: String,
    pub unread: u64,
}

/// `dm:read {with, upTo, unread}` pushed to every socket of the reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DmReadPush {
    pub with: String,
    pub up_to: MessageId,
    pub unread: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    pub id: String,
    pub name: String,
    /// Roles granted by the token (`admin`, `moderator`); empty for most users.
    pub roles: Vec<String>,
    /// When the identity's token expires (ms since the epoch); absent when it does not.
    #[serde(rename = "expiresAt", default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// `typing {room, user, typing}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingPush {
    pub room: String,
    pub user: String,
    #[serde(rename = "userId")]
    pub user_id: String,
    pub typing: bool,
}

/// `room:presence {room, joined, left[, joinedMore][, leftMore]}`: at most
/// `presence_names_max` names per list; the counts of those not listed are in
/// `joinedMore`/`leftMore` (absent when 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresencePush {
    pub room: String,
    /// Display names.
    pub joined: Vec<String>,
    pub left: Vec<String>,
    /// The user ids of `joined` / `left`, in the same order.
    #[serde(rename = "joinedIds")]
    pub joined_ids: Vec<String>,
    #[serde(rename = "leftIds")]
    pub left_ids: Vec<String>,
    #[serde(rename = "joinedMore", default, skip_serializing_if = "is_zero")]
    pub joined_more: u64,
    #[serde(rename = "leftMore", default, skip_serializing_if = "is_zero")]
    pub left_more: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One user in a list with the number of connections counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub id: String,
    pub name: String,
    pub connections: u64,
}

/// One room in `room:list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEntry {
    pub room: String,
    pub members: u64,
    /// A private room (listed only to those who may enter it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

/// Ack body of `room:join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinAck {
    pub room: String,
    pub messages: Vec<Message>,
    pub has_more: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Display names of members (at most `join_members_max`).
    pub members: Vec<String>,
    /// Their user ids, in the same order.
    pub member_ids: Vec<String>,
    pub member_count: u64,
    /// For a created room: its owner's id (absent for rooms nobody created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
    /// Read-only for all but the owner and moderators.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub announce: bool,
}

/// Ack body of `room:leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveAck {
    pub room: String,
}

/// Ack body of `room:list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomListAck {
    pub rooms: Vec<RoomEntry>,
}

/// Ack body of `message:send` and `dm:send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentAck<T> {
    pub message: T,
}

/// Ack body of `message:history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomHistoryAck {
    pub room: String,
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// Ack body of `dm:history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DmHistoryAck {
    pub with: String,
    pub messages: Vec<DirectMessage>,
    pub has_more: bool,
}

/// Ack body of `users:list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsersAck {
    pub users: Vec<UserEntry>,
    pub total: u64,
}

/// Ack body without fields (`typing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyAck {}

/// The success ack: `{ok: true, ...body}`.
#[derive(Debug, Clone, Serialize)]
pub struct AckOk<T: Serialize> {
    pub ok: bool,
    #[serde(flatten)]
    pub body: T,
}

impl<T: Serialize> AckOk<T> {
    pub fn new(body: T) -> Self {
        Self { ok: true, body }
    }
}

/// The failure ack: `{ok: false, error: {code, message}}`; the same object plus
/// `event` is pushed as `error` when the request had no ack callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AckErr {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub event: Option<String>,
    pub error: ChatError,
}

impl AckErr {
    /// (An event name is echoed at most 64 characters long: it came from the client.)
    pub fn new(error: ChatError, event: Option<&str>) -> Self {
        Self {
            ok: false,
            event: event.map(|e| e.chars().take(64).collect()),
            error,
        }
    }
}

/// Error for an event name the server does not know.
pub fn unknown_event(name: &str) -> ChatError {
    let shown: String = name.chars().take(64).collect();
    ChatError::new(ErrorCode::BadRequest, format!("unknown event `{shown}`"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_kinds_map_event_names_both_ways() {
        for k in RequestKind::ALL {
            assert_eq!(RequestKind::from_event(k.event()), Some(k));
        }
        let names: std::collections::HashSet<_> =
            RequestKind::ALL.iter().map(|k| k.event()).collect();
        assert_eq!(names.len(), RequestKind::ALL.len(), "names are distinct");
        assert_eq!(RequestKind::from_event("room:nuke"), None);
        assert_eq!(RequestKind::from_event(""), None);
        let limits = Limits::default();
        let r = RequestKind::RoomJoin.decode(serde_json::json!({"room": "lounge"}), &limits);
        assert!(matches!(r, Ok(Request::RoomJoin(j)) if j.room == "lounge"));
        let e = RequestKind::RoomJoin.decode(serde_json::json!({"room": 5}), &limits);
        assert!(e.is_err());
    }

    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits::default()
    }

    fn code<T: std::fmt::Debug>(r: Result<T, ChatError>) -> ErrorCode {
        r.unwrap_err().code
    }

    #[test]
    fn join_defaults_and_fields() {
        let j = JoinRoom::decode(json!({"room": "general"}), &limits()).unwrap();
        assert_eq!(
            j,
            JoinRoom {
                room: "general".into(),
                limit: 50,
                since: None
            }
        );
        let j = JoinRoom::decode(
            json!({"room": "a", "limit": 200, "since": "5-1", "extra": [1]}),
            &limits(),
        )
        .unwrap();
        assert_eq!(j.limit, 200);
        assert_eq!(j.since, Some(MessageId::new(5, 1)));
    }

    #[test]
    fn join_rejects_bad_payloads() {
        let l = limits();
        assert_eq!(
            code(JoinRoom::decode(json!("general"), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(JoinRoom::decode(json!(null), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(JoinRoom::decode(json!([1]), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(code(JoinRoom::decode(json!({}), &l)), ErrorCode::BadRequest);
        assert_eq!(
            code(JoinRoom::decode(json!({"room": 5}), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(JoinRoom::decode(json!({"room": "Bad Room"}), &l)),
            ErrorCode::InvalidRoom
        );
        assert_eq!(
            code(JoinRoom::decode(json!({"room": "a", "limit": 0}), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(JoinRoom::decode(json!({"room": "a", "limit": 1.5}), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(JoinRoom::decode(json!({"room": "a", "limit": "10"}), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(JoinRoom::decode(json!({"room": "a", "limit": -1}), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(JoinRoom::decode(json!({"room": "a", "since": "abc"}), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(JoinRoom::decode(json!({"room": "a", "since": 5}), &l)),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn send_validates_text_and_client_id() {
        let l = limits();
        let s =
            SendMessage::decode(json!({"room": "a", "text": "hi", "clientId": "c-1"}), &l).unwrap();
        assert_eq!(s.client_id.as_deref(), Some("c-1"));
        assert_eq!(
            code(SendMessage::decode(json!({"room": "a", "text": ""}), &l)),
            ErrorCode::InvalidText
        );
        assert_eq!(
            code(SendMessage::decode(json!({"room": "a", "text": 3}), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(SendMessage::decode(json!({"room": "a"}), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(SendMessage::decode(
                json!({"room": "a", "text": "x", "clientId": ""}),
                &l
            )),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(SendMessage::decode(json!({"room": "A", "text": "x"}), &l)),
            ErrorCode::InvalidRoom
        );
    }

    #[test]
    fn dm_normalises_recipient() {
        let d = SendDm::decode(json!({"to": "Zoe\u{301}", "text": "hey"}), &limits()).unwrap();
        assert_eq!(d.to, "Zoé");
        assert_eq!(
            code(SendDm::decode(
                json!({"to": "a b", "text": "hey"}),
                &limits()
            )),
            ErrorCode::InvalidName
        );
        assert_eq!(
            code(DmHistory::decode(json!({"with": ""}), &limits())),
            ErrorCode::InvalidName
        );
    }

    #[test]
    fn optional_payloads() {
        assert!(ListRooms::decode(Value::Null, &limits()).is_ok());
        assert!(ListRooms::decode(json!({}), &limits()).is_ok());
        assert_eq!(
            code(ListRooms::decode(json!("x"), &limits())),
            ErrorCode::BadRequest
        );
        assert_eq!(
            ListUsers::decode(Value::Null, &limits()).unwrap().room,
            None
        );
        assert_eq!(
            code(ListUsers::decode(json!({"room": "X"}), &limits())),
            ErrorCode::InvalidRoom
        );
    }

    #[test]
    fn dm_read_requires_with_and_up_to() {
        let r = DmRead::decode(json!({"with": "ann", "upTo": "5-1"}), &limits()).unwrap();
        assert_eq!(r.up_to, MessageId::new(5, 1));
        assert_eq!(
            code(DmRead::decode(json!({"with": "ann"}), &limits())),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(DmRead::decode(
                json!({"with": "ann", "upTo": "x"}),
                &limits()
            )),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(DmRead::decode(
                json!({"with": "a b", "upTo": "1-0"}),
                &limits()
            )),
            ErrorCode::InvalidName
        );
    }

    #[test]
    fn typing_requires_bool() {
        assert!(
            Typing::decode(json!({"room": "a", "typing": true}), &limits())
                .unwrap()
                .typing
        );
        assert_eq!(
            code(Typing::decode(
                json!({"room": "a", "typing": "yes"}),
                &limits()
            )),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn message_json_shape() {
        let m = Message {
            id: MessageId::new(10, 2),
            room: "general".into(),
            from: "alice".into(),
            from_id: "g_1".into(),
            text: "<b>hi</b>".into(),
            ts: 10,
            client_id: None,
            deleted: false,
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"id": "10-2", "room": "general", "from": "alice", "fromId": "g_1", "text": "<b>hi</b>", "ts": 10})
        );
        let with = Message {
            client_id: Some("c".into()),
            ..m
        };
        assert_eq!(serde_json::to_value(&with).unwrap()["clientId"], "c");
        let gone = serde_json::to_value(with.tombstone()).unwrap();
        assert_eq!(
            gone,
            json!({"id": "10-2", "room": "general", "from": "alice", "fromId": "g_1", "text": "", "ts": 10, "deleted": true})
        );
    }

    #[test]
    fn join_ack_shape() {
        let a = JoinAck {
            room: "r".into(),
            messages: vec![],
            has_more: false,
            truncated: false,
            members: vec!["Ann".into()],
            member_ids: vec!["a".into()],
            member_count: 1,
            owner: None,
            private: false,
            announce: false,
        };
        assert_eq!(
            serde_json::to_value(AckOk::new(&a)).unwrap(),
            json!({"ok": true, "room": "r", "messages": [], "hasMore": false, "members": ["Ann"], "memberIds": ["a"], "memberCount": 1})
        );
        let t = JoinAck {
            truncated: true,
            ..a
        };
        assert_eq!(serde_json::to_value(&t).unwrap()["truncated"], true);
    }

    #[test]
    fn admin_requests_decode() {
        let l = limits();
        assert!(AdminStatus::decode(Value::Null, &l).is_ok());
        assert!(AdminStatus::decode(json!({}), &l).is_ok());
        assert_eq!(
            code(AdminStatus::decode(json!([]), &l)),
            ErrorCode::BadRequest
        );
        assert!(AdminWatch::decode(json!({"on": true}), &l).unwrap().on);
        assert!(!AdminWatch::decode(json!({"on": false}), &l).unwrap().on);
        assert_eq!(
            code(AdminWatch::decode(json!({}), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(AdminWatch::decode(json!({"on": "yes"}), &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(AdminWatch::decode(Value::Null, &l)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            RequestKind::from_event("admin:watch"),
            Some(RequestKind::AdminWatch)
        );
    }

    #[test]
    fn top_rooms_merge_sums_sorts_and_bounds() {
        let t = |room: &str, messages| RoomTraffic {
            room: room.into(),
            messages,
        };
        let a = vec![t("x", 5), t("y", 3)];
        let b = vec![t("y", 4), t("z", 1), t("w", 1)];
        let merged = merge_top_rooms([a.as_slice(), b.as_slice()], 3);
        assert_eq!(merged, vec![t("y", 7), t("x", 5), t("w", 1)]);
        assert!(merge_top_rooms(std::iter::empty(), 10).is_empty());
    }

    #[test]
    fn gateway_status_json_shape() {
        let g = GatewayStatus {
            id: "gw-1".into(),
            started_at: 1,
            updated_at: 2001,
            uptime_s: 2,
            connections: 3,
            rooms: 4,
            msgs_per_sec: 0.5,
            lag_ms: 0,
            version: "0.1.0".into(),
            top_rooms: vec![RoomTraffic {
                room: "r".into(),
                messages: 5,
            }],
        };
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(
            v,
            json!({"id": "gw-1", "startedAt": 1, "updatedAt": 2001, "uptimeS": 2,
                "connections": 3, "rooms": 4, "msgsPerSec": 0.5, "lagMs": 0,
                "version": "0.1.0", "topRooms": [{"room": "r", "messages": 5}]})
        );
        assert_eq!(serde_json::from_value::<GatewayStatus>(v).unwrap(), g);
        let b = BackendStatus {
            kind: "embedded".into(),
            healthy: true,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            json!({"kind": "embedded", "healthy": true})
        );
    }

    #[test]
    fn ack_shapes() {
        let ok = AckOk::new(json!({"room": "a"}));
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            json!({"ok": true, "room": "a"})
        );
        let err = AckErr::new(ChatError::new(ErrorCode::NotMember, "join first"), None);
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"ok": false, "error": {"code": "not_member", "message": "join first"}})
        );
        let err = AckErr::new(
            ChatError::new(ErrorCode::NotMember, "join first"),
            Some("message:send"),
        );
        assert_eq!(serde_json::to_value(&err).unwrap()["event"], "message:send");
    }
}
