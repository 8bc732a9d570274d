//! Rooms with an owner (private and announcement rooms), invitations, and the
//! moderation tools: mute, kick, ban, unban, delete, the audit log, server-wide
//! announcements.
//!
//! Every action is decided here, stored in the backend (so every gateway reads the
//! same sanctions), written to the audit log, and announced to the target as a
//! user signal. Each gateway holding a socket of the target carries it out in
//! [`enforce`]: a ban disconnects, a kick or room ban takes the sockets out of the
//! room, a mute is remembered by the sessions in that room.

use crate::chat::{exit_room, Ctx};
use crate::dispatch::Enforce;
use crate::permissions::{may_moderate, meta};
use crate::session::RoomLimits;
use crate::state::Shared;
use confab_backend::{
    AuditEntry, RoomMeta, SanctionKind, Signal, UserSignal, ANNOUNCE_TOPIC, FOREVER,
};
use confab_core::protocol::{
    Announce, AuditList, Ban, CreateRoom, DeleteMessage, EmptyAck, MessageDeleted, Mute,
    RoomCreated, RoomMember, RoomMemberAck, SanctionAck, Unban, UnbanAck,
};
use confab_core::{ChatError, ErrorCode};
use serde::Serialize;
use std::sync::Arc;

fn forbidden(msg: impl Into<String>) -> ChatError {
    ChatError::new(ErrorCode::Forbidden, msg)
}

fn not_moderator(room: Option<&str>) -> ChatError {
    match room {
        Some(r) => forbidden(format!(
            "only the owner of room `{r}`, moderators and admins may do this"
        )),
        None => forbidden("only moderators and admins may do this"),
    }
}

/// Refuse unless the session moderates `room` (or, without a room, is a
/// moderator or admin); returns the room's metadata.
async fn require_moderator(ctx: &Ctx, room: Option<&str>) -> Result<Option<RoomMeta>, ChatError> {
    let meta = match room {
        Some(r) => meta(ctx, r).await?,
        None => None,
    };
    if may_moderate(&ctx.session, meta.as_ref()) {
        Ok(meta)
    } else {
        Err(not_moderator(room))
    }
}

async fn audit(
    ctx: &Ctx,
    action: &str,
    target: Option<&str>,
    room: Option<&str>,
    until: Option<u64>,
) {
    let entry = AuditEntry {
        id: None,
        ts: crate::auth::now_ms(),
        actor: ctx.session.user.id.clone(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        room: room.map(str::to_owned),
        until: until.filter(|u| *u != FOREVER),
    };
    if let Err(e) = ctx.shared.access.audit_append(entry).await {
        // The action stands; the log entry is lost and says so.
        tracing::error!(action, actor = %ctx.session.id(), "audit entry not stored: {e}");
    }
}

async fn signal(
    ctx: &Ctx,
    user: &str,
    action: &str,
    room: Option<&str>,
    until: Option<u64>,
) -> Result<(), ChatError> {
    ctx.shared
        .broker
        .publish_user_signal(
            user,
            UserSignal::Moderation {
                action: action.to_owned(),
                room: room.map(str::to_owned),
                until: until.filter(|u| *u != FOREVER),
            },
        )
        .await?;
    Ok(())
}

/// `room:create {room, private?, announce?}`: the creator owns the room. A room
/// already in use (created, or with members or history) cannot be taken over.
pub async fn create_room(ctx: &Ctx, req: CreateRoom) -> Result<RoomCreated, ChatError> {
    let sh = &ctx.shared;
    crate::permissions::check_create(
        &ctx.session,
        sh.config.room_create_role.as_deref(),
        &req.room,
    )?;
    crate::quota::take_for(ctx, crate::quota::Class::Room).await?;
    let taken = || forbidden(format!("room `{}` already exists", req.room));
    if meta(ctx, &req.room).await?.is_some() {
        return Err(taken());
    }
    let in_use = sh
        .presence
        .room_sizes(std::slice::from_ref(&req.room))
        .await?[0]
        > 0
        || !sh
            .broker
            .room_history(&req.room, confab_backend::HistoryQuery::Latest { limit: 1 })
            .await?
            .items
            .is_empty();
    if in_use {
        return Err(taken());
    }
    let meta = RoomMeta {
        private: req.private,
        announce: req.announce,
        owner: ctx.session.user.id.clone(),
    };
    if !sh.access.create_room(&req.room, &meta).await? {
        return Err(taken());
    }
    audit(ctx, "create", None, Some(&req.room), None).await;
    Ok(RoomCreated {
        room: req.room,
        private: meta.private,
        announce: meta.announce,
        owner: meta.owner,
    })
}

/// Owners and admins (and moderators) manage a created room's members.
async fn require_room_admin(ctx: &Ctx, room: &str) -> Result<RoomMeta, ChatError> {
    let m = meta(ctx, room).await?;
    match m {
        Some(m) if may_moderate(&ctx.session, Some(&m)) => Ok(m),
        // Same words whether the room does not exist, is someone else's, or is a
        // private room the caller cannot see.
        _ => Err(forbidden(format!(
            "only the owner of room `{room}` and admins manage its members"
        ))),
    }
}

/// `room:invite {room, user}`
pub async fn invite(ctx: &Ctx, req: RoomMember) -> Result<RoomMemberAck, ChatError> {
    require_room_admin(ctx, &req.room).await?;
    let sh = &ctx.shared;
    sh.access
        .set_room_member(&req.room, &req.user, true)
        .await?;
    audit(ctx, "invite", Some(&req.user), Some(&req.room), None).await;
    let by = ctx.session.user.clone();
    let invited = UserSignal::Invited {
        room: req.room.clone(),
        by,
    };
    if let Err(e) = sh.broker.publish_user_signal(&req.user, invited).await {
        tracing::warn!(room = %req.room, "invitation not announced: {e}");
    }
    Ok(RoomMemberAck {
        room: req.room,
        user: req.user,
    })
}

/// `room:remove {room, user}`: no longer a member, and out of the room now.
pub async fn remove(ctx: &Ctx, req: RoomMember) -> Result<RoomMemberAck, ChatError> {
    let m = require_room_admin(ctx, &req.room).await?;
    if m.owner == req.user {
        return Err(forbidden("the owner of a room cannot be removed from it"));
    }
    ctx.shared
        .access
        .set_room_member(&req.room, &req.user, false)
        .await?;
    audit(ctx, "remove", Some(&req.user), Some(&req.room), None).await;
    signal(ctx, &req.user, "remove", Some(&req.room), None).await?;
    Ok(RoomMemberAck {
        room: req.room,
        user: req.user,
    })
}

fn until_after(duration_s: Option<u64>) -> u64 {
    match duration_s {
        Some(d) => crate::auth::now_ms().saturating_add(d.saturating_mul(1000)),
        None => FOREVER,
    }
}

/// `mod:mute {room, user, durationS}`
pub async fn mute(ctx: &Ctx, req: Mute) -> Result<SanctionAck, ChatError> {
    require_moderator(ctx, Some(&req.room)).await?;
    let until = until_after(Some(req.duration_s));
    ctx.shared
        .access
        .set_sanction(SanctionKind::Mute, &req.user, Some(&req.room), until)
        .await?;
    audit(ctx, "mute", Some(&req.user), Some(&req.room), Some(until)).await;
    signal(ctx, &req.user, "mute", Some(&req.room), Some(until)).await?;
    Ok(SanctionAck {
        user: req.user,
        room: Some(req.room),
        until: Some(until),
    })
}

/// `mod:kick {room, user}`: out of the room now; may join again.
pub async fn kick(ctx: &Ctx, req: RoomMember) -> Result<RoomMemberAck, ChatError> {
    require_moderator(ctx, Some(&req.room)).await?;
    audit(ctx, "kick", Some(&req.user), Some(&req.room), None).await;
    signal(ctx, &req.user, "kick", Some(&req.room), None).await?;
    Ok(RoomMemberAck {
        room: req.room,
        user: req.user,
    })
}

/// `mod:ban {user, room?, durationS?}`: a room ban takes the user out of the room
/// and keeps them out; a server-wide ban (moderators and admins only) disconnects
/// every socket of the user and refuses their handshakes.
pub async fn ban(ctx: &Ctx, req: Ban) -> Result<SanctionAck, ChatError> {
    require_moderator(ctx, req.room.as_deref()).await?;
    if req.user == ctx.session.user.id {
        return Err(forbidden("you cannot ban yourself"));
    }
    let until = until_after(req.duration_s);
    let room = req.room.as_deref();
    ctx.shared
        .access
        .set_sanction(SanctionKind::Ban, &req.user, room, until)
        .await?;
    audit(ctx, "ban", Some(&req.user), room, Some(until)).await;
    signal(ctx, &req.user, "ban", room, Some(until)).await?;
    Ok(SanctionAck {
        user: req.user,
        room: req.room,
        until: (until != FOREVER).then_some(until),
    })
}

/// `mod:unban {user, room?}`
pub async fn unban(ctx: &Ctx, req: Unban) -> Result<UnbanAck, ChatError> {
    require_moderator(ctx, req.room.as_deref()).await?;
    let lifted = ctx
        .shared
        .access
        .clear_sanction(SanctionKind::Ban, &req.user, req.room.as_deref())
        .await?;
    audit(ctx, "unban", Some(&req.user), req.room.as_deref(), None).await;
    Ok(UnbanAck {
        user: req.user,
        lifted,
    })
}

/// `message:delete {room, id}`: the author deletes their own message; the room's
/// owner, moderators and admins delete any.
pub async fn delete(ctx: &Ctx, req: DeleteMessage) -> Result<MessageDeleted, ChatError> {
    let sh = &ctx.shared;
    let not_found =
        || ChatError::bad_request(format!("no message `{}` in room `{}`", req.id, req.room));
    let room_meta = meta(ctx, &req.room).await?;
    let moderator = may_moderate(&ctx.session, room_meta.as_ref());
    // Reading a room's message needs the right to see the room.
    if !moderator && !crate::permissions::may_see(ctx, &req.room, room_meta.as_ref()).await? {
        return Err(not_found());
    }
    let Some(msg) = sh.broker.room_message(&req.room, req.id).await? else {
        return Err(not_found());
    };
    let own = msg.from_id == ctx.session.user.id;
    if !own && !moderator {
        return Err(forbidden(
            "only the author, the room's owner and moderators delete a message",
        ));
    }
    if !msg.deleted && !sh.broker.delete_message(&req.room, req.id).await? {
        return Err(not_found());
    }
    if !own {
        audit(
            ctx,
            "delete",
            Some(&req.id.to_string()),
            Some(&req.room),
            None,
        )
        .await;
    }
    Ok(MessageDeleted {
        room: req.room,
        id: req.id,
    })
}

/// Ack body of `audit:list`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditAck {
    pub entries: Vec<AuditEntry>,
}

/// `audit:list {before?, limit?}`: admins only.
pub async fn audit_list(ctx: &Ctx, req: AuditList) -> Result<AuditAck, ChatError> {
    if !ctx.session.has_role("admin") {
        return Err(forbidden("only admins read the audit log"));
    }
    let before = req.before.map(|b| b.to_string());
    let entries = ctx
        .shared
        .access
        .audit_list(before.as_deref(), req.limit)
        .await?;
    Ok(AuditAck { entries })
}

/// `announce {text}`: admins only; every connected socket gets `announcement`.
pub async fn announce(ctx: &Ctx, req: Announce) -> Result<EmptyAck, ChatError> {
    if !ctx.session.has_role("admin") {
        return Err(forbidden("only admins make server-wide announcements"));
    }
    crate::quota::take_for(ctx, crate::quota::Class::Message).await?;
    let signal = Signal::Announcement {
        from: ctx.session.user.clone(),
        text: req.text,
        ts: crate::auth::now_ms(),
    };
    ctx.shared
        .broker
        .publish_signal(ANNOUNCE_TOPIC, signal)
        .await?;
    audit(ctx, "announce", None, None, None).await;
    Ok(EmptyAck {})
}

/// Carry out a moderation action on this gateway's sockets of the target.
pub fn enforce(shared: &Arc<Shared>, e: Enforce) {
    for (session, socket) in shared.sessions_of(&e.user) {
        match (e.action.as_str(), e.room.clone()) {
            ("ban", None) => {
                tracing::info!(user = %e.user, "banned: disconnecting");
                socket.disconnect();
            }
            // Queued behind the session's requests: a join in flight completes
            // first and is then undone, so a racing join cannot slip past.
            ("kick" | "ban" | "remove", Some(room)) => {
                let (shared, s2, sock) = (shared.clone(), session.clone(), socket.clone());
                session.enqueue(Box::pin(async move {
                    if s2.remove_room(&room) {
                        exit_room(&shared, &s2, &sock, &room).await;
                    }
                }));
            }
            // Kept even before the join completes (the join merges it).
            ("mute", Some(room)) => {
                let limits = session.room_limits(&room);
                session.set_room_limits(
                    &room,
                    RoomLimits {
                        muted_until: e.until.or(Some(FOREVER)),
                        ..limits
                    },
                );
            }
            _ => {}
        }
    }
}
