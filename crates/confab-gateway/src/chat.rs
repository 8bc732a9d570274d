//! The chat operations behind each client event: checked request in, ack body out.
//!
//! Handlers here see typed, validated requests (decoded by `confab-core`), check
//! membership, and call the backend. They never emit fan-out themselves: messages
//! come back to every socket, the sender's included, through the backend's event
//! stream ([`crate::dispatch`]), so every member sees the same order.

use crate::dispatch::Command;
use crate::groups::{room_key, user_key};
use crate::session::Session;
use crate::state::Shared;
use crate::typing;
use confab_backend::{HistoryQuery, NewDm, NewMessage, Signal, Topic, UserRef};
use confab_core::protocol::{
    DmHistory, DmHistoryAck, DmRead, DmReadAck, EmptyAck, JoinAck, JoinRoom, LeaveAck, LeaveRoom,
    ListRooms, ListUsers, RoomEntry, RoomHistory, RoomHistoryAck, RoomListAck, SendDm, SendMessage,
    SentAck, Typing, UsersAck,
};
use confab_core::{ChatError, DirectMessage, ErrorCode, Message, MessageId};
use confab_sio::Socket;
use std::sync::Arc;

/// Everything an operation needs: the gateway, the socket and its session.
#[derive(Clone)]
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub session: Arc<Session>,
    pub socket: Socket,
    /// This connection's place under the per-IP cap (given back when the last
    /// clone goes, after the clean-up).
    pub ip_slot: Option<Arc<crate::conncap::IpSlot>>,
}

impl Ctx {
    /// The client's IP address (see [`crate::conncap::client_ip`]).
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.ip_slot.as_ref().map(|s| s.ip())
    }
}

fn not_member(room: &str) -> ChatError {
    ChatError::new(
        ErrorCode::NotMember,
        format!("join room `{room}` first (room:join)"),
    )
}

fn require_member(ctx: &Ctx, room: &str) -> Result<(), ChatError> {
    if ctx.session.is_member(room) {
        Ok(())
    } else {
        Err(not_member(room))
    }
}

/// Make the session a member of `room`: the gateway's subscription first (so
/// nothing published from now on is missed by this gateway), then presence.
/// Returns false if it already was a member. Undone on failure. The socket itself
/// is put into the room's fan-out group by the caller.
async fn enter_room(ctx: &Ctx, room: &str) -> Result<bool, ChatError> {
    let sh = &ctx.shared;
    if !ctx.session.add_room(room) {
        return Ok(false);
    }
    if let Err(e) = sh.subs.acquire(Topic::Room(room.to_owned())).await {
        ctx.session.remove_room(room);
        return Err(e.into());
    }
    match sh.presence.join(room, ctx.session.id()).await {
        Ok(1) => announce(sh, room, &ctx.session.user, true).await,
        Ok(_) => {}
        Err(e) => {
            ctx.session.remove_room(room);
            release_room(sh, room).await;
            return Err(e.into());
        }
    }
    Ok(true)
}

async fn release_room(shared: &Arc<Shared>, room: &str) {
    shared.subs.release(Topic::Room(room.to_owned())).await;
}

/// A change to the fan-out groups, applied by the dispatcher before any event queued
/// after it (it is gone only at shutdown, when nothing is delivered any more).
fn fanout(shared: &Shared, c: Command) {
    let _ = shared.dispatcher.send(c);
}

/// Put the socket into the room's fan-out, in sequence with the dispatcher; returns
/// the id of the last message emitted to the room before it joined. `read_up_to` is
/// the last id the join ack already holds: live messages up to it are not sent again.
async fn attach_socket(
    ctx: &Ctx,
    room: &str,
    read_up_to: Option<MessageId>,
) -> Result<Option<MessageId>, ChatError> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    ctx.shared
        .dispatcher
        .send(Command::Join {
            socket: ctx.socket.clone(),
            room: room.to_owned(),
            read_up_to,
            reply,
        })
        .map_err(|_| ChatError::unavailable("server is shutting down"))?;
    rx.await
        .map_err(|_| ChatError::unavailable("server is shutting down"))
}

/// Take a session out of `room` (leave or disconnect): typing, presence, socket
/// room, subscription.
pub async fn exit_room(shared: &Arc<Shared>, session: &Session, socket: &Socket, room: &str) {
    typing::stop(shared, session, room).await;
    fanout(
        shared,
        Command::Leave {
            key: room_key(room),
            socket: socket.clone(),
        },
    );
    match shared.presence.leave(room, session.id()).await {
        Ok(0) => announce(shared, room, &session.user, false).await,
        Ok(_) => {}
        Err(e) => tracing::warn!(room, user = %session.id(), "presence leave failed: {e}"),
    }
    release_room(shared, room).await;
}

async fn announce(shared: &Shared, room: &str, user: &UserRef, joined: bool) {
    let who = vec![user.clone()];
    let signal = if joined {
        Signal::Presence {
            joined: who,
            left: vec![],
        }
    } else {
        Signal::Presence {
            joined: vec![],
            left: who,
        }
    };
    if let Err(e) = shared.broker.publish_signal(room, signal).await {
        tracing::warn!(room, user = %user.id, "presence signal not published: {e}");
    }
}

pub async fn join_room(ctx: &Ctx, req: JoinRoom) -> Result<JoinAck, ChatError> {
    let sh = &ctx.shared;
    let max = sh.config.limits.max_rooms_per_socket;
    if !ctx.session.is_member(&req.room) && ctx.session.room_count() >= max {
        return Err(ChatError::new(
            ErrorCode::Forbidden,
            format!("room limit reached: at most {max} rooms per connection"),
        ));
    }
    let meta = if ctx.session.is_member(&req.room) {
        crate::permissions::meta(ctx, &req.room).await?
    } else {
        crate::quota::take_for(ctx, crate::quota::Class::Join).await?;
        let (limits, meta) = crate::permissions::check_entry(ctx, &req.room).await?;
        ctx.session.merge_room_limits(&req.room, limits);
        meta
    };
    let newly = enter_room(ctx, &req.room).await?;
    match finish_join(ctx, req, newly, meta).await {
        Ok(ack) => Ok(ack),
        Err((room, e)) => {
            // A join either completes or leaves nothing behind: membership,
            // presence, the fan-out group and the subscription are undone.
            if newly {
                ctx.session.remove_room(&room);
                exit_room(&ctx.shared, &ctx.session, &ctx.socket, &room).await;
            }
            Err(e)
        }
    }
}

/// The reads of a join after the membership is set (history, the seam, members).
async fn finish_join(
    ctx: &Ctx,
    req: JoinRoom,
    newly: bool,
    meta: Option<confab_backend::RoomMeta>,
) -> Result<JoinAck, (String, ChatError)> {
    let sh = &ctx.shared;
    let fail = |e: ChatError| (req.room.clone(), e);
    let resume_max = sh.config.limits.resume_max;
    let query = match req.since {
        Some(id) => HistoryQuery::After {
            id,
            limit: resume_max,
        },
        None => HistoryQuery::Latest { limit: req.limit },
    };
    let mut page = sh
        .broker
        .room_history(&req.room, query)
        .await
        .map_err(|e| fail(e.into()))?;
    if newly {
        // The seam: messages emitted before the socket's join but after the history
        // read are not live for this socket: fetch them so there is no gap. Messages
        // the history read already holds but the dispatcher had not emitted yet are
        // held back for this socket by the dispatcher, so nothing is sent twice.
        let read_up_to = page.items.last().map(|m| m.id).or(req.since);
        let emitted_up_to = attach_socket(ctx, &req.room, read_up_to)
            .await
            .map_err(fail)?;
        if let Some(emitted) = emitted_up_to {
            if read_up_to.is_none_or(|r| emitted > r) {
                let id = read_up_to.unwrap_or(MessageId::ZERO);
                let gap = sh
                    .broker
                    .room_history(
                        &req.room,
                        HistoryQuery::After {
                            id,
                            limit: resume_max,
                        },
                    )
                    .await
                    .map_err(|e| fail(e.into()))?;
                page.truncated |= gap.truncated && read_up_to.is_some();
                page.items
                    .extend(gap.items.into_iter().filter(|m| m.id <= emitted));
            }
        }
    }
    // Bounded in bytes as well as in count: the oldest leave the ack.
    let budget = sh.config.limits.ack_text_max_bytes;
    if confab_core::limits::cap_text_bytes(&mut page.items, budget, |m| m.text.len()) {
        if req.since.is_some() {
            page.truncated = true;
        } else {
            page.has_more = true;
        }
    }
    let (members, member_count) = sh
        .presence
        .room_members(&req.room, sh.config.limits.join_members_max)
        .await
        .map_err(|e| fail(e.into()))?;
    Ok(JoinAck {
        room: req.room,
        messages: page.items,
        has_more: page.has_more,
        truncated: page.truncated,
        member_ids: members.iter().map(|u| u.id.clone()).collect(),
        members: members.into_iter().map(|u| u.name).collect(),
        member_count,
        private: meta.as_ref().is_some_and(|m| m.private),
        announce: meta.as_ref().is_some_and(|m| m.announce),
        owner: meta.map(|m| m.owner),
    })
}

pub async fn leave_room(ctx: &Ctx, req: LeaveRoom) -> Result<LeaveAck, ChatError> {
    if !ctx.session.remove_room(&req.room) {
        return Err(not_member(&req.room));
    }
    exit_room(&ctx.shared, &ctx.session, &ctx.socket, &req.room).await;
    Ok(LeaveAck { room: req.room })
}

pub async fn list_rooms(ctx: &Ctx, _: ListRooms) -> Result<RoomListAck, ChatError> {
    let sh = &ctx.shared;
    let max = sh.config.limits.list_max;
    let rooms = sh.presence.rooms(max).await?;
    // Private rooms are listed to those who may see them, and no one else.
    let names: Vec<String> = rooms.iter().map(|r| r.room.clone()).collect();
    let metas = sh.access.room_metas(&names).await?;
    let mut visible = Vec::with_capacity(rooms.len());
    for (mut entry, meta) in rooms.into_iter().zip(metas) {
        if crate::permissions::may_see(ctx, &entry.room, meta.as_ref()).await? {
            entry.private = meta.is_some_and(|m| m.private);
            visible.push(entry);
        }
    }
    let mut rooms = visible;
    let own = sh.access.member_rooms(ctx.session.id(), max).await?;
    let missing: Vec<String> = ctx
        .session
        .rooms()
        .into_iter()
        .chain(own)
        .chain(ctx.session.granted_rooms.iter().cloned())
        .filter(|r| !rooms.iter().any(|e| &e.room == r))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        let sizes = sh.presence.room_sizes(&missing).await?;
        let metas = sh.access.room_metas(&missing).await?;
        rooms.extend(
            missing
                .into_iter()
                .zip(sizes)
                .zip(metas)
                .map(|((room, members), meta)| RoomEntry {
                    room,
                    members,
                    private: meta.is_some_and(|m| m.private),
                }),
        );
    }
    Ok(RoomListAck { rooms })
}

/// Refuse a new message while this gateway is too far behind (before storing it).
fn admit(ctx: &Ctx) -> Result<(), ChatError> {
    let sh = &ctx.shared;
    let heat = sh.sender_heat.bump(ctx.session.id());
    crate::overload::admit(sh.dispatch_lag.get(), sh.config.overload_lag, heat)
}

pub async fn send_message(ctx: &Ctx, req: SendMessage) -> Result<SentAck<Message>, ChatError> {
    require_member(ctx, &req.room)?;
    crate::permissions::check_post(&ctx.session, &req.room, crate::auth::now_ms())?;
    admit(ctx)?;
    crate::quota::take_for(ctx, crate::quota::Class::Message).await?;
    let room = req.room.clone();
    let draft = NewMessage {
        room: req.room,
        from_id: ctx.session.id().to_owned(),
        from: ctx.session.name().to_owned(),
        text: req.text,
        client_id: req.client_id,
        create: false,
    };
    let broker = &ctx.shared.broker;
    // The first message of a room without history starts it: charged once, here.
    let message = match broker.publish_message(draft.clone()).await {
        Err(confab_backend::BackendError::NotCreated) => {
            crate::permissions::start_room(ctx, &room).await?;
            let draft = NewMessage {
                create: true,
                ..draft
            };
            broker.publish_message(draft).await?
        }
        other => other?,
    };
    crate::metrics::published("room");
    ctx.shared.admin.traffic.record(Some(&room));
    // Sending ends typing, as in every chat UI.
    typing::stop(&ctx.shared, &ctx.session, &room).await;
    Ok(SentAck { message })
}

pub async fn room_history(ctx: &Ctx, req: RoomHistory) -> Result<RoomHistoryAck, ChatError> {
    require_member(ctx, &req.room)?;
    let query = match req.before {
        Some(id) => HistoryQuery::Before {
            id,
            limit: req.limit,
        },
        None => HistoryQuery::Latest { limit: req.limit },
    };
    let mut page = ctx.shared.broker.room_history(&req.room, query).await?;
    let budget = ctx.shared.config.limits.ack_text_max_bytes;
    page.has_more |= confab_core::limits::cap_text_bytes(&mut page.items, budget, |m| m.text.len());
    Ok(RoomHistoryAck {
        room: req.room,
        messages: page.items,
        has_more: page.has_more,
    })
}

pub async fn send_dm(ctx: &Ctx, req: SendDm) -> Result<SentAck<DirectMessage>, ChatError> {
    let sh = &ctx.shared;
    admit(ctx)?;
    crate::quota::take_for(ctx, crate::quota::Class::Dm).await?;
    // Offline users who connected before get the DM in their inbox (unread count
    // in their next `session`); ids never seen are refused.
    if req.to != ctx.session.id() && !sh.presence.is_known(&req.to).await? {
        return Err(ChatError::new(
            ErrorCode::UserNotFound,
            format!("no user with id `{}` has ever connected", req.to),
        ));
    }
    let message = sh
        .broker
        .publish_dm(NewDm {
            from_id: ctx.session.id().to_owned(),
            from: ctx.session.name().to_owned(),
            to: req.to,
            text: req.text,
            client_id: req.client_id,
        })
        .await?;
    crate::metrics::published("dm");
    sh.admin.traffic.record(None);
    Ok(SentAck { message })
}

pub async fn dm_history(ctx: &Ctx, req: DmHistory) -> Result<DmHistoryAck, ChatError> {
    let query = match req.before {
        Some(id) => HistoryQuery::Before {
            id,
            limit: req.limit,
        },
        None => HistoryQuery::Latest { limit: req.limit },
    };
    let mut page = ctx
        .shared
        .broker
        .dm_history(ctx.session.id(), &req.with, query)
        .await?;
    let budget = ctx.shared.config.limits.ack_text_max_bytes;
    page.has_more |= confab_core::limits::cap_text_bytes(&mut page.items, budget, |m| m.text.len());
    Ok(DmHistoryAck {
        with: req.with,
        messages: page.items,
        has_more: page.has_more,
    })
}

pub async fn dm_read(ctx: &Ctx, req: DmRead) -> Result<DmReadAck, ChatError> {
    let unread = ctx
        .shared
        .broker
        .dm_mark_read(ctx.session.id(), &req.with, req.up_to)
        .await?;
    Ok(DmReadAck {
        with: req.with,
        unread,
    })
}

pub async fn typing(ctx: &Ctx, req: Typing) -> Result<EmptyAck, ChatError> {
    require_member(ctx, &req.room)?;
    typing::set(&ctx.shared, &ctx.session, &req.room, req.typing).await;
    Ok(EmptyAck {})
}

pub async fn list_users(ctx: &Ctx, req: ListUsers) -> Result<UsersAck, ChatError> {
    let sh = &ctx.shared;
    let limit = sh.config.limits.list_max;
    let (users, total) = match &req.room {
        Some(room) => {
            let meta = crate::permissions::meta(ctx, room).await?;
            if !crate::permissions::may_see(ctx, room, meta.as_ref()).await? {
                return Err(crate::permissions::cannot_enter(room));
            }
            sh.presence.room_members(room, limit).await?
        }
        None => sh.presence.online_users(limit).await?,
    };
    Ok(UsersAck { users, total })
}

/// Set up a freshly authenticated socket: online presence, its user topic (DMs),
/// its user room, and the default room. Undone on failure.
pub async fn open_session(ctx: &Ctx) -> Result<(), ChatError> {
    let sh = &ctx.shared;
    let name = &ctx.session.user.id;
    if ctx.session.is_probe() {
        // The delivery probe only hears its own DMs: no presence, no room.
        sh.subs.acquire(Topic::User(name.clone())).await?;
        fanout(
            sh,
            Command::Enter {
                key: user_key(name),
                socket: ctx.socket.clone(),
            },
        );
        return Ok(());
    }
    let open = sh.presence.connect(name, ctx.session.name()).await?;
    let max = sh.config.max_connections_per_user;
    if max > 0 && open > max {
        let _ = sh.presence.disconnect(name).await;
        return Err(ChatError::rate_limited(
            format!("too many connections for this user: at most {max}"),
            std::time::Duration::from_secs(1),
        ));
    }
    if let Err(e) = sh.subs.acquire(Topic::User(name.clone())).await {
        let _ = sh.presence.disconnect(name).await;
        return Err(e.into());
    }
    fanout(
        sh,
        Command::Enter {
            key: user_key(name),
            socket: ctx.socket.clone(),
        },
    );
    fanout(
        sh,
        Command::Enter {
            key: crate::groups::ALL.to_owned(),
            socket: ctx.socket.clone(),
        },
    );
    let general = confab_core::validate::DEFAULT_ROOM;
    // A user banned from the default room connects without it.
    match crate::permissions::check_entry(ctx, general).await {
        Ok((limits, _)) => ctx.session.merge_room_limits(general, limits),
        Err(e) if e.code == ErrorCode::Forbidden => return Ok(()),
        Err(e) => {
            undo_open(ctx).await;
            return Err(e);
        }
    }
    if let Err(e) = enter_room(ctx, general).await {
        undo_open(ctx).await;
        return Err(e);
    }
    // No history is promised with the automatic join: the socket can join the
    // fan-out directly (room:join {room: "general"} gives history).
    fanout(
        sh,
        Command::Enter {
            key: room_key(general),
            socket: ctx.socket.clone(),
        },
    );
    Ok(())
}

/// Undo the first steps of `open_session` (it failed).
async fn undo_open(ctx: &Ctx) {
    let sh = &ctx.shared;
    let id = ctx.session.id();
    for key in [user_key(id), crate::groups::ALL.to_owned()] {
        fanout(
            sh,
            Command::Leave {
                key,
                socket: ctx.socket.clone(),
            },
        );
    }
    sh.subs.release(Topic::User(id.to_owned())).await;
    let _ = sh.presence.disconnect(id).await;
}

/// Undo everything a session holds (disconnect).
pub async fn close_session(shared: &Arc<Shared>, session: &Arc<Session>, socket: &Socket) {
    shared.unregister(session);
    for room in session.take_rooms() {
        exit_room(shared, session, socket, &room).await;
    }
    if !session.is_probe() {
        if let Err(e) = shared.presence.disconnect(session.id()).await {
            tracing::warn!(user = %session.id(), "presence disconnect failed: {e}");
        }
        // The name stays reserved for the hold period from now (last seen).
        shared
            .auth
            .renew_name(
                &shared.presence,
                &session.user,
                session.guest,
                session.expires_at(),
            )
            .await;
    }
    shared
        .subs
        .release(Topic::User(session.user.id.clone()))
        .await;
    for key in [user_key(session.id()), crate::groups::ALL.to_owned()] {
        fanout(
            shared,
            Command::Leave {
                key,
                socket: socket.clone(),
            },
        );
    }
}
