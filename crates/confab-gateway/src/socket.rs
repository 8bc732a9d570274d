//! Socket.IO connection lifecycle: handshake (authentication and session set-up,
//! before the client is told it is connected), the per-socket event entry point,
//! and disconnect clean-up.
//!
//! Every client event goes through one fallback handler: it checks size, binary
//! attachments, event name and rate synchronously (in arrival order), then queues
//! the request on the socket's [`Session`] inbox, which runs them one at a time.

use crate::chat::{self, Ctx};
use crate::gateway::Shared;
use crate::metrics as m;
use crate::reply;
use crate::session::{Rejected, Session};
use confab_core::protocol::{
    self, event, push, Decode, DmHistory, DmRead, JoinRoom, LeaveRoom, ListRooms, ListUsers,
    RoomHistory, SendDm, SendMessage, Session as SessionPush, SessionUser, Typing,
};
use confab_core::{validate, ChatError, ErrorCode};
use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::SocketIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

/// Facts about the raw packet, taken before the payload is decoded.
pub struct Meta {
    /// The client passed an ack callback.
    pub wants_ack: bool,
    /// Size of the packet's data (event name + arguments), in bytes.
    pub size: usize,
    /// The packet carries binary attachments.
    pub binary: bool,
}

impl<A: Adapter> FromMessageParts<A> for Meta {
    type Error = Infallible;
    fn from_message_parts(
        _: &Arc<Socket<A>>,
        v: &mut socketioxide_core::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let (size, binary) = match v {
            socketioxide_core::Value::Str(s, bins) => {
                let b = bins.as_ref().map_or(0, |b| b.iter().map(|x| x.len()).sum());
                (s.len() + b, bins.as_ref().is_some_and(|b| !b.is_empty()))
            }
            socketioxide_core::Value::Bytes(b) => (b.len(), true),
        };
        Ok(Meta {
            wants_ack: ack_id.is_some(),
            size,
            binary,
        })
    }
}

/// Register the default namespace on `io`.
pub fn attach(io: &SocketIo, shared: Arc<Shared>) {
    let mw_shared = shared.clone();
    let middleware = move |s: SocketRef, TryData(auth): TryData<Value>| {
        let shared = mw_shared.clone();
        async move { handshake(shared, s, auth.unwrap_or(Value::Null)).await }
    };
    let connected = move |s: SocketRef| async move {
        if let Some(session) = s.extensions.get::<Arc<Session>>() {
            let unread = match shared.broker.dm_unread(&session.name).await {
                Ok(u) => u.into_iter().collect(),
                Err(e) => {
                    tracing::warn!(user = %session.name, "unread counts unavailable: {e}");
                    Default::default()
                }
            };
            let payload = SessionPush {
                user: SessionUser {
                    name: session.name.clone(),
                },
                rooms: session.rooms(),
                unread,
            };
            if s.emit(push::SESSION, &payload).is_err() {
                m::send_failed("session");
            }
        }
    };
    io.ns("/", connected.with(middleware));
}

fn refuse(err: ChatError) -> Result<(), ChatError> {
    m::refused(err.code);
    Err(err)
}

/// Authenticate and set up a socket before socketioxide acknowledges the connect.
/// An error becomes the client's `connect_error` message `"<code>: <message>"`.
async fn handshake(shared: Arc<Shared>, s: SocketRef, auth: Value) -> Result<(), ChatError> {
    if shared.shutdown.is_cancelled() {
        return refuse(ChatError::unavailable("server is shutting down, reconnect"));
    }
    let raw_name = auth.get("name").and_then(Value::as_str).unwrap_or("");
    let name = match validate::name(raw_name) {
        Ok(n) => n,
        Err(e) => return refuse(e),
    };
    if let Some(key) = &shared.config.access_key {
        if auth.get("key").and_then(Value::as_str) != Some(key.as_str()) {
            return refuse(ChatError::new(
                ErrorCode::Unauthorized,
                "missing or wrong access key",
            ));
        }
    }
    let cfg = &shared.config;
    let session = Session::new(
        name,
        cfg.rate_per_sec,
        cfg.rate_burst,
        cfg.max_queued_requests,
    );
    let ctx = Ctx {
        shared: shared.clone(),
        session: session.clone(),
        socket: s.clone(),
    };
    if let Err(e) = chat::open_session(&ctx).await {
        return refuse(e);
    }
    s.extensions.insert(session.clone());

    let ev_ctx = ctx.clone();
    s.on_fallback(
        move |Event(name): Event, meta: Meta, TryData(data): TryData<Value>, ack: AckSender| {
            on_event(&ev_ctx, name, meta, data, ack);
            std::future::ready(())
        },
    );
    shared.sessions.lock().insert(s.id, ctx.clone());
    let dc_ctx = ctx;
    s.on_disconnect(move |reason: DisconnectReason| {
        tracing::debug!(sid = %dc_ctx.socket.id, user = %dc_ctx.session.name, ?reason, "disconnect");
        close(dc_ctx.clone());
        std::future::ready(())
    });
    m::connection_opened();
    Ok(())
}

/// End a session: its clean-up runs after the request in flight (once, however
/// often this is called: by the disconnect handler, or by shutdown).
pub fn close(ctx: Ctx) {
    let session = ctx.session.clone();
    session.close(Box::pin(async move {
        chat::close_session(&ctx.shared, &ctx.session, &ctx.socket).await;
        m::connection_closed();
        ctx.shared.sessions.lock().remove(&ctx.socket.id);
    }));
}

/// Admit one client event (synchronously, in arrival order) and queue its handling.
fn on_event(
    ctx: &Ctx,
    name: String,
    meta: Meta,
    data: Result<Value, socketioxide::ParserError>,
    ack: AckSender,
) {
    let s = &ctx.socket;
    let early = |err: ChatError, ack: AckSender| {
        reply::send::<()>(s, ack, meta.wants_ack, &name, Err(err));
    };
    let limits = &ctx.shared.config.limits;
    if meta.size > limits.max_payload {
        let msg = format!(
            "payload is {} bytes, the limit is {}",
            meta.size, limits.max_payload
        );
        return early(ChatError::new(ErrorCode::PayloadTooLarge, msg), ack);
    }
    if meta.binary {
        return early(
            ChatError::bad_request("binary attachments are not accepted"),
            ack,
        );
    }
    if !event::ALL.contains(&name.as_str()) {
        return early(protocol::unknown_event(&name), ack);
    }
    let data = match data {
        Ok(v) => v,
        // A packet with no argument at all decodes to an error: treat as absent.
        Err(_) => Value::Null,
    };
    let job_ctx = ctx.clone();
    let wants_ack = meta.wants_ack;
    let job_name = name.clone();
    // The ack sender moves into the job; keep a second path to reply on rejection.
    let (tx, rx) = tokio::sync::oneshot::channel::<AckSender>();
    let job = Box::pin(async move {
        let Ok(ack) = rx.await else { return };
        handle(job_ctx, job_name, wants_ack, data, ack).await;
    });
    match ctx.session.submit(job) {
        Ok(()) => {
            let _ = tx.send(ack);
        }
        Err(Rejected::Closed) => {}
        Err(Rejected::RateLimited) => early(
            ChatError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many events: at most {}/s (burst {})",
                    ctx.shared.config.rate_per_sec, ctx.shared.config.rate_burst
                ),
            ),
            ack,
        ),
        Err(Rejected::QueueFull) => early(
            ChatError::new(
                ErrorCode::RateLimited,
                "too many requests in flight: wait for acks before sending more",
            ),
            ack,
        ),
    }
}

fn decode<R: Decode>(ctx: &Ctx, data: Value) -> Result<R, ChatError> {
    R::decode(data, &ctx.shared.config.limits)
}

/// Run one admitted request and reply.
async fn handle(ctx: Ctx, name: String, wants_ack: bool, data: Value, ack: AckSender) {
    if ctx.session.is_closed() {
        return;
    }
    let started = Instant::now();
    macro_rules! run {
        ($req:ty, $op:path) => {{
            let result = match decode::<$req>(&ctx, data) {
                Ok(req) => $op(&ctx, req).await,
                Err(e) => Err(e),
            };
            reply::send(&ctx.socket, ack, wants_ack, &name, result)
        }};
    }
    match name.as_str() {
        event::ROOM_JOIN => run!(JoinRoom, chat::join_room),
        event::ROOM_LEAVE => run!(LeaveRoom, chat::leave_room),
        event::ROOM_LIST => run!(ListRooms, chat::list_rooms),
        event::MESSAGE_SEND => run!(SendMessage, chat::send_message),
        event::MESSAGE_HISTORY => run!(RoomHistory, chat::room_history),
        event::DM_SEND => run!(SendDm, chat::send_dm),
        event::DM_HISTORY => run!(DmHistory, chat::dm_history),
        event::TYPING => run!(Typing, chat::typing),
        event::USERS_LIST => run!(ListUsers, chat::list_users),
        event::DM_READ => run!(DmRead, chat::dm_read),
        other => reply::send::<()>(
            &ctx.socket,
            ack,
            wants_ack,
            other,
            Err(protocol::unknown_event(other)),
        ),
    }
    metrics::histogram!(m::EVENT_SECONDS, "event" => name).record(started.elapsed().as_secs_f64());
}
