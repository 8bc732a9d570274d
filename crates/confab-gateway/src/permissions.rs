//! Who may enter, read and post in a room, and who may moderate it: the rules in
//! one place, read from the backend's [`Access`](confab_backend::Access) data.
//!
//! Refusals about a room never tell a non-member anything about it: entering a
//! private room one may not enter reads exactly like entering a room one is
//! banned from.

use crate::chat::Ctx;
use crate::session::{RoomLimits, Session};
use confab_backend::{RoomMeta, SanctionKind, FOREVER};
use confab_core::{ChatError, ErrorCode};

/// The one refusal for entering a room (private without membership, or banned).
pub fn cannot_enter(room: &str) -> ChatError {
    ChatError::new(
        ErrorCode::Forbidden,
        format!("you cannot join room `{room}`"),
    )
}

/// "until lifted" or the time (UTC, RFC 3339), for messages.
pub fn until_text(until: u64) -> String {
    if until == FOREVER {
        "until lifted".to_owned()
    } else {
        format!("until {}", rfc3339(until))
    }
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (days to civil date: Howard
/// Hinnant's algorithm).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Whether the session may see a room with this metadata at all (private rooms:
/// members, holders of a token granting it, admins and moderators).
pub async fn may_see(ctx: &Ctx, room: &str, meta: Option<&RoomMeta>) -> Result<bool, ChatError> {
    let Some(meta) = meta.filter(|m| m.private) else {
        return Ok(true);
    };
    let s = &ctx.session;
    if s.is_moderator() || meta.owner == s.user.id || s.granted_rooms.iter().any(|r| r == room) {
        return Ok(true);
    }
    Ok(ctx.shared.access.is_room_member(room, s.id()).await?)
}

/// The metadata of one room.
pub async fn meta(ctx: &Ctx, room: &str) -> Result<Option<RoomMeta>, ChatError> {
    Ok(ctx
        .shared
        .access
        .room_metas(&[room.to_owned()])
        .await?
        .pop()
        .flatten())
}

/// Check that the session may enter `room`; returns its restrictions there and
/// the room's metadata.
pub async fn check_entry(
    ctx: &Ctx,
    room: &str,
) -> Result<(RoomLimits, Option<RoomMeta>), ChatError> {
    let meta = meta(ctx, room).await?;
    if !may_see(ctx, room, meta.as_ref()).await? {
        return Err(cannot_enter(room));
    }
    let access = &ctx.shared.access;
    let id = ctx.session.id();
    if access
        .sanction(SanctionKind::Ban, id, Some(room))
        .await?
        .is_some()
    {
        return Err(cannot_enter(room));
    }
    let muted_until = access.sanction(SanctionKind::Mute, id, Some(room)).await?;
    let read_only = meta
        .as_ref()
        .is_some_and(|m| m.announce && !may_moderate(&ctx.session, Some(m)));
    Ok((
        RoomLimits {
            read_only,
            muted_until,
        },
        meta,
    ))
}

/// Whether the session moderates a room with this metadata: admins and
/// moderators everywhere, owners in their own room.
pub fn may_moderate(session: &Session, meta: Option<&RoomMeta>) -> bool {
    session.is_moderator() || meta.is_some_and(|m| m.owner == session.user.id)
}

/// Refuse starting room `room` to a session without `--room-create-role`
/// (`moderator` is also satisfied by `admin`).
pub fn check_create(session: &Session, role: Option<&str>, room: &str) -> Result<(), ChatError> {
    let allowed = match role {
        None => true,
        Some("moderator") => session.is_moderator(),
        Some(r) => session.has_role(r),
    };
    if allowed {
        return Ok(());
    }
    Err(ChatError::new(
        ErrorCode::Forbidden,
        format!(
            "room `{room}` does not exist yet, and only {}s start rooms on this server",
            role.unwrap_or_default()
        ),
    ))
}

/// Charge the start of room `room` (no history yet): a room made by
/// `room:create` was charged then; any other needs `--room-create-role` and
/// counts against the room-creation quota.
pub async fn start_room(ctx: &Ctx, room: &str) -> Result<(), ChatError> {
    if meta(ctx, room).await?.is_some() {
        return Ok(());
    }
    check_create(
        &ctx.session,
        ctx.shared.config.room_create_role.as_deref(),
        room,
    )?;
    crate::quota::take_for(ctx, crate::quota::Class::Room).await
}

/// Refuse a post the session may not make in `room` (read-only, muted). Local
/// state only: no backend round trip on the send path.
pub fn check_post(session: &Session, room: &str, now_ms: u64) -> Result<(), ChatError> {
    let limits = session.room_limits(room);
    if limits.read_only {
        return Err(ChatError::new(
            ErrorCode::Forbidden,
            format!("room `{room}` is read-only: only its owner and moderators post"),
        ));
    }
    if let Some(until) = limits.muted_until.filter(|u| *u > now_ms) {
        return Err(ChatError::new(
            ErrorCode::Forbidden,
            format!("you are muted in room `{room}` {}", until_text(until)),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_979_668_999), "2026-11-29T19:14:28Z");
        assert_eq!(until_text(FOREVER), "until lifted");
    }
}
