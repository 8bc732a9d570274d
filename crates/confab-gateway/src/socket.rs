//! Socket.IO connection lifecycle: handshake (authentication and session set-up,
//! before the client is told it is connected), the per-socket event entry point,
//! and disconnect clean-up.
//!
//! Every client event goes through [`on_event`], called by the wire layer in arrival
//! order: it checks size, binary attachments, event name and rate synchronously,
//! then queues the request on the socket's [`Session`] inbox, which runs them one
//! at a time.

use crate::admin;
use crate::chat::{self, Ctx};
use crate::metrics as m;
use crate::moderation;
use crate::permissions::until_text;
use crate::reply;
use crate::session::{Rejected, Session};
use crate::state::Shared;
use confab_backend::SanctionKind;
use confab_core::protocol::{
    self, push, AuthExpiring, AuthRefresh, AuthRefreshAck, Request, RequestKind,
    Session as SessionPush, SessionUser,
};
use confab_core::{ChatError, ErrorCode};
use confab_sio::{DisconnectReason, Event, Namespace, Refusal, Socket, SocketHandler};
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::sync::{Arc, Weak};
use std::time::Instant;
use tracing::Instrument;

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
        self.shared.tasks.spawn(async move {
            let session = &ctx.session;
            let unread = match ctx.shared.broker.dm_unread(session.id()).await {
                Ok(u) => u.into_iter().collect(),
                Err(e) => {
                    tracing::warn!(user = %session.id(), "unread counts unavailable: {e}");
                    Default::default()
                }
            };
            let payload = SessionPush {
                user: SessionUser {
                    id: session.user.id.clone(),
                    name: session.user.name.clone(),
                    roles: session.roles.clone(),
                    expires_at: session.expires_at(),
                },
                rooms: session.rooms(),
                unread,
            };
            if socket.emit(push::SESSION, &payload).is_err() {
                m::send_failed("session");
            }
            // After `session`, so a client that starts afresh on `session` sees
            // the warning.
            if ctx.session.expires_at().is_some() {
                watch_expiry(ctx).await;
            }
        });
    }

    fn event(&self, _socket: &Socket, ev: Event) {
        on_event(self, ev);
    }

    fn disconnect(&self, socket: &Socket, reason: DisconnectReason) {
        tracing::debug!(sid = %socket.id(), user = %self.session.id(), reason = reason.as_str(), "disconnect");
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
    let cfg = &shared.config;
    let ip = crate::conncap::client_ip(socket.peer(), &cfg.trusted_proxies);
    let ip_slot = match ip {
        Some(ip) => match shared.ip_slots.take(ip) {
            Some(slot) => Some(Arc::new(slot)),
            None => {
                return refuse(ChatError::rate_limited(
                    format!(
                        "too many connections from your address: at most {}",
                        cfg.max_connections_per_ip
                    ),
                    std::time::Duration::from_secs(1),
                ))
            }
        },
        None => None,
    };
    let probe = crate::probe::is_probe_auth(&shared, &auth);
    let user = if probe {
        crate::probe::identity(&shared)
    } else {
        match shared.auth.identify(&auth, shared.presence.as_ref()).await {
            Ok(u) => u,
            Err(e) => return refuse(e),
        }
    };
    crate::quota::take(&shared, crate::quota::Class::Connect, &user.id, ip).await?;
    let access = &shared.access;
    if let Some(until) = access.sanction(SanctionKind::Ban, &user.id, None).await? {
        refuse(ChatError::new(
            ErrorCode::Forbidden,
            format!("you are banned from this server {}", until_text(until)),
        ))?;
    }
    // Roles: the token's, and those granted in the backend (`confab role`).
    let mut roles = user.roles.clone();
    for r in access.roles(&user.id).await? {
        if !roles.contains(&r) {
            roles.push(r);
        }
    }
    let session = Session::new(
        user.user_ref(),
        roles,
        user.rooms,
        user.guest,
        user.expires_at,
        cfg.rate_per_sec,
        cfg.rate_burst,
        cfg.protocol_errors_burst,
        cfg.max_queued_requests,
        shared.tasks.clone(),
    );
    if probe {
        session.mark_probe();
    }
    let ctx = Ctx {
        shared: shared.clone(),
        session,
        socket: socket.clone(),
        ip_slot,
    };
    if let Err(e) = chat::open_session(&ctx).await {
        refuse(e)?;
    }
    shared.register(&ctx.session, &ctx.socket);
    if !probe {
        shared
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        m::connection_opened();
    }
    // A ban made while this socket was being set up found no session to act on:
    // look again now that moderation can see it.
    let banned = access
        .sanction(SanctionKind::Ban, ctx.session.id(), None)
        .await;
    if let Ok(Some(until)) = banned {
        close(ctx);
        return refuse(ChatError::new(
            ErrorCode::Forbidden,
            format!("you are banned from this server {}", until_text(until)),
        ));
    }
    Ok(ctx)
}

/// `auth:refresh {token}`: a new token for the same user moves the expiry.
fn refresh(ctx: &Ctx, req: AuthRefresh) -> Result<AuthRefreshAck, ChatError> {
    let user = ctx.shared.auth.refresh(&ctx.session.user, &req.token)?;
    ctx.session.set_expires_at(user.expires_at);
    Ok(AuthRefreshAck {
        expires_at: user.expires_at,
    })
}

/// Tell the socket its token is about to expire (`auth:expiring`), and disconnect
/// it at expiry unless `auth:refresh` moved the expiry first.
async fn watch_expiry(ctx: Ctx) {
    let warning = ctx.shared.auth.expiry_warning().as_millis() as u64;
    let leeway = ctx.shared.auth.leeway().as_millis() as u64;
    let mut warned_for = None;
    loop {
        let Some(exp) = ctx.session.expires_at() else {
            return;
        };
        let now = crate::auth::now_ms();
        // The same rule as the handshake's: valid up to `exp` + leeway.
        let end = exp.saturating_add(leeway);
        if now >= end {
            tracing::debug!(sid = %ctx.socket.id(), user = %ctx.session.id(), "token expired");
            m::refused(ErrorCode::Unauthorized);
            ctx.socket.disconnect();
            return;
        }
        let warn_at = exp.saturating_sub(warning);
        let wake = if now < warn_at {
            warn_at
        } else {
            if warned_for != Some(exp) {
                warned_for = Some(exp);
                let p = AuthExpiring {
                    expires_at: exp,
                    in_ms: exp.saturating_sub(now),
                };
                if ctx.socket.emit(push::AUTH_EXPIRING, &p).is_err() {
                    m::send_failed("auth:expiring");
                }
            }
            end
        };
        let sleep = std::time::Duration::from_millis(wake - now);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = ctx.session.expiry_moved() => {}
            _ = ctx.session.gone().cancelled() => return,
            _ = ctx.shared.shutdown.cancelled() => return,
        }
    }
}

/// End a session: its clean-up runs after the request in flight (once, however
/// often this is called: by the disconnect handler, or by shutdown).
pub fn close(ctx: Ctx) {
    let session = ctx.session.clone();
    session.close(Box::pin(async move {
        chat::close_session(&ctx.shared, &ctx.session, &ctx.socket).await;
        if !ctx.session.is_probe() {
            m::connection_closed();
            ctx.shared
                .sessions
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
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
        lone_surrogates,
    } = ev;
    let s = &ctx.socket;
    let early = |err: ChatError| reply::send::<()>(s, ack, &name, Err(err));
    let cfg = &ctx.shared.config;
    // Every inbound event counts against the rate, the ones refused below included.
    match ctx.session.admit() {
        Ok(()) => {}
        Err(Rejected::Closed) => return,
        Err(Rejected::RateLimited(wait)) | Err(Rejected::QueueFull(wait)) => {
            return early(ChatError::rate_limited(
                format!(
                    "too many events: at most {}/s (burst {})",
                    cfg.rate_per_sec, cfg.rate_burst
                ),
                wait,
            ))
        }
    }
    let refused = |err: ChatError| {
        early(err);
        protocol_error(ctx, &name);
    };
    let limits = &cfg.limits;
    if size > limits.max_payload {
        let msg = format!(
            "payload is {} bytes, the limit is {}",
            size, limits.max_payload
        );
        return refused(ChatError::new(ErrorCode::PayloadTooLarge, msg));
    }
    if !attachments.is_empty() {
        return refused(ChatError::bad_request(
            "binary attachments are not accepted",
        ));
    }
    if lone_surrogates {
        return refused(ChatError::new(
            ErrorCode::InvalidText,
            "a string holds a lone UTF-16 surrogate (half a character, e.g. an emoji cut in two): nothing was done",
        ));
    }
    let Some(kind) = RequestKind::from_event(&name) else {
        return refused(protocol::unknown_event(&name));
    };
    // A packet with no argument at all: the data is absent.
    let data = args.into_iter().next().unwrap_or(Value::Null);
    let job_ctx = ctx.clone();
    let job = Box::pin(async move {
        let (socket, user) = (job_ctx.socket.clone(), job_ctx.session.user.id.clone());
        // Every log line of the request says whose and where (never its payload).
        let span = tracing::info_span!(
            "event",
            gateway = %job_ctx.shared.config.gateway_id,
            sid = %socket.id(),
            user = %user,
            ip = ?job_ctx.ip(),
            event = kind.event(),
        );
        // A bug in one handler fails that request, not the socket or the gateway.
        let handled = handle(job_ctx, kind, ack, data).instrument(span.clone());
        if let Err(panic) = crate::session::caught(handled).await {
            let _entered = span.enter();
            m::panicked("event");
            tracing::error!(sid = %socket.id(), %user, event = kind.event(), %panic, "panic while handling an event (caught)");
            let err = ChatError::internal("the server failed on this request (logged); try again");
            reply::send::<()>(&socket, ack, kind.event(), Err(err));
        }
    });
    match ctx.session.queue(job) {
        Ok(()) | Err(Rejected::Closed) => {}
        Err(Rejected::RateLimited(wait)) | Err(Rejected::QueueFull(wait)) => {
            early(ChatError::rate_limited(
                "too many requests in flight: wait for acks before sending more",
                wait,
            ))
        }
    }
}

/// Count a protocol error of the socket (made by event `event`); past the
/// allowance the socket is told (an `error` push naming that event) and
/// disconnected.
fn protocol_error(ctx: &Ctx, event: &str) {
    if !ctx.session.protocol_error() {
        return;
    }
    m::refused(ErrorCode::BadRequest);
    tracing::info!(sid = %ctx.socket.id(), user = %ctx.session.id(), "too many protocol errors: disconnecting");
    let err = ChatError::bad_request("too many invalid events: disconnecting");
    let _ = ctx
        .socket
        .emit(push::ERROR, &protocol::AckErr::new(err, Some(event)));
    ctx.socket.disconnect();
}

/// Run one admitted request and reply.
async fn handle(ctx: Ctx, kind: RequestKind, ack: Option<u64>, data: Value) {
    if ctx.session.is_closed() {
        return;
    }
    let started = Instant::now();
    let event = kind.event();
    let request = match kind.decode(data, &ctx.shared.config.limits) {
        Ok(r) => r,
        Err(e) => {
            reply::send::<()>(&ctx.socket, ack, event, Err(e));
            return protocol_error(&ctx, event);
        }
    };
    let c = &ctx;
    let s = &ctx.socket;
    match request {
        Request::RoomJoin(r) => reply::send(s, ack, event, chat::join_room(c, r).await),
        Request::RoomLeave(r) => reply::send(s, ack, event, chat::leave_room(c, r).await),
        Request::RoomList(r) => reply::send(s, ack, event, chat::list_rooms(c, r).await),
        Request::MessageSend(r) => reply::send(s, ack, event, chat::send_message(c, r).await),
        Request::MessageHistory(r) => reply::send(s, ack, event, chat::room_history(c, r).await),
        Request::DmSend(r) => reply::send(s, ack, event, chat::send_dm(c, r).await),
        Request::DmHistory(r) => reply::send(s, ack, event, chat::dm_history(c, r).await),
        Request::Typing(r) => reply::send(s, ack, event, chat::typing(c, r).await),
        Request::UsersList(r) => reply::send(s, ack, event, chat::list_users(c, r).await),
        Request::DmRead(r) => reply::send(s, ack, event, chat::dm_read(c, r).await),
        Request::AuthRefresh(r) => reply::send(s, ack, event, refresh(c, r)),
        Request::RoomCreate(r) => reply::send(s, ack, event, moderation::create_room(c, r).await),
        Request::RoomInvite(r) => reply::send(s, ack, event, moderation::invite(c, r).await),
        Request::RoomRemove(r) => reply::send(s, ack, event, moderation::remove(c, r).await),
        Request::MessageDelete(r) => reply::send(s, ack, event, moderation::delete(c, r).await),
        Request::ModMute(r) => reply::send(s, ack, event, moderation::mute(c, r).await),
        Request::ModKick(r) => reply::send(s, ack, event, moderation::kick(c, r).await),
        Request::ModBan(r) => reply::send(s, ack, event, moderation::ban(c, r).await),
        Request::ModUnban(r) => reply::send(s, ack, event, moderation::unban(c, r).await),
        Request::AuditList(r) => reply::send(s, ack, event, moderation::audit_list(c, r).await),
        Request::Announce(r) => reply::send(s, ack, event, moderation::announce(c, r).await),
        Request::AdminStatus(r) => reply::send(s, ack, event, admin::status(c, r).await),
        Request::AdminWatch(r) => reply::send(s, ack, event, admin::watch(c, r)),
    }
    let took = started.elapsed();
    metrics::histogram!(m::EVENT_SECONDS, "event" => event).record(took.as_secs_f64());
    tracing::debug!(ms = took.as_secs_f64() * 1000.0, "handled");
}
