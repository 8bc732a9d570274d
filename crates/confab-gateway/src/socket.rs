//! Socket.IO connection lifecycle: handshake (authentication and session set-up,
//! before the client is told it is connected), the per-socket event entry point,
//! and disconnect clean-up.
//!
//! Every client event goes through [`on_event`], called by the wire layer in arrival
//! order: it checks size, binary attachments, event name and rate synchronously,
//! then queues the request on the socket's [`Session`] inbox, which runs them one
//! at a time.

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
use confab_sio::{DisconnectReason, Event, Namespace, Refusal, Socket, SocketHandler};
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::sync::{Arc, Weak};
use std::time::Instant;

/// The chat namespace (`/`): authenticates each CONNECT. It holds the gateway
/// weakly: the wire layer it is registered with must not keep the gateway alive.
pub struct ChatNamespace {
    pub shared: Weak<Shared>,
}

impl Namespace for ChatNamespace {
    fn connect(
        &self,
        socket: Socket,
        auth: Value,
    ) -> BoxFuture<'static, Result<Arc<dyn SocketHandler>, Refusal>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let Some(shared) = shared else {
                return Err(Refusal::new(
                    ChatError::unavailable("server is shutting down, reconnect").to_string(),
                ));
            };
            match handshake(shared, socket, auth).await {
                Ok(ctx) => Ok(Arc::new(ctx) as Arc<dyn SocketHandler>),
                Err(e) => Err(Refusal::new(e.to_string())),
            }
        })
    }
}

impl SocketHandler for Ctx {
    fn connected(&self, socket: &Socket) {
        let ctx = self.clone();
        let socket = socket.clone();
        tokio::spawn(async move {
            let session = &ctx.session;
            let unread = match ctx.shared.broker.dm_unread(&session.name).await {
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
            if socket.emit(push::SESSION, &payload).is_err() {
                m::send_failed("session");
            }
        });
    }

    fn event(&self, _socket: &Socket, ev: Event) {
        on_event(self, ev);
    }

    fn disconnect(&self, socket: &Socket, reason: DisconnectReason) {
        tracing::debug!(sid = %socket.id(), user = %self.session.name, reason = reason.as_str(), "disconnect");
        close(self.clone());
    }
}

fn refuse<T>(err: ChatError) -> Result<T, ChatError> {
    m::refused(err.code);
    Err(err)
}

/// Authenticate and set up a socket before the client is told it is connected.
/// An error becomes the client's `connect_error` message `"<code>: <message>"`.
async fn handshake(shared: Arc<Shared>, socket: Socket, auth: Value) -> Result<Ctx, ChatError> {
    if shared.shutdown.is_cancelled() {
        refuse(ChatError::unavailable("server is shutting down, reconnect"))?;
    }
    let raw_name = auth.get("name").and_then(Value::as_str).unwrap_or("");
    let name = match validate::name(raw_name) {
        Ok(n) => n,
        Err(e) => return refuse(e),
    };
    if let Some(key) = &shared.config.access_key {
        if auth.get("key").and_then(Value::as_str) != Some(key.as_str()) {
            refuse(ChatError::new(
                ErrorCode::Unauthorized,
                "missing or wrong access key",
            ))?;
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
        session,
        socket: socket.clone(),
    };
    if let Err(e) = chat::open_session(&ctx).await {
        refuse(e)?;
    }
    shared
        .sessions
        .lock()
        .insert(socket.id().to_owned(), ctx.clone());
    m::connection_opened();
    Ok(ctx)
}

/// End a session: its clean-up runs after the request in flight (once, however
/// often this is called: by the disconnect handler, or by shutdown).
pub fn close(ctx: Ctx) {
    let session = ctx.session.clone();
    session.close(Box::pin(async move {
        chat::close_session(&ctx.shared, &ctx.session, &ctx.socket).await;
        m::connection_closed();
        ctx.shared.sessions.lock().remove(ctx.socket.id());
    }));
}

/// Admit one client event (synchronously, in arrival order) and queue its handling.
fn on_event(ctx: &Ctx, ev: Event) {
    let Event {
        name,
        args,
        attachments,
        ack,
        size,
    } = ev;
    let s = &ctx.socket;
    let early = |err: ChatError| reply::send::<()>(s, ack, &name, Err(err));
    let limits = &ctx.shared.config.limits;
    if size > limits.max_payload {
        let msg = format!(
            "payload is {} bytes, the limit is {}",
            size, limits.max_payload
        );
        return early(ChatError::new(ErrorCode::PayloadTooLarge, msg));
    }
    if !attachments.is_empty() {
        return early(ChatError::bad_request(
            "binary attachments are not accepted",
        ));
    }
    if !event::ALL.contains(&name.as_str()) {
        return early(protocol::unknown_event(&name));
    }
    // A packet with no argument at all: the data is absent.
    let data = args.into_iter().next().unwrap_or(Value::Null);
    let job_ctx = ctx.clone();
    let job_name = name.clone();
    let job = Box::pin(async move {
        handle(job_ctx, job_name, ack, data).await;
    });
    match ctx.session.submit(job) {
        Ok(()) => {}
        Err(Rejected::Closed) => {}
        Err(Rejected::RateLimited) => early(ChatError::new(
            ErrorCode::RateLimited,
            format!(
                "too many events: at most {}/s (burst {})",
                ctx.shared.config.rate_per_sec, ctx.shared.config.rate_burst
            ),
        )),
        Err(Rejected::QueueFull) => early(ChatError::new(
            ErrorCode::RateLimited,
            "too many requests in flight: wait for acks before sending more",
        )),
    }
}

fn decode<R: Decode>(ctx: &Ctx, data: Value) -> Result<R, ChatError> {
    R::decode(data, &ctx.shared.config.limits)
}

/// Run one admitted request and reply.
async fn handle(ctx: Ctx, name: String, ack: Option<u64>, data: Value) {
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
            reply::send(&ctx.socket, ack, &name, result)
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
        other => reply::send::<()>(&ctx.socket, ack, other, Err(protocol::unknown_event(other))),
    }
    metrics::histogram!(m::EVENT_SECONDS, "event" => name).record(started.elapsed().as_secs_f64());
}
