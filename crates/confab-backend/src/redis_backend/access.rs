//! The Redis implementation of [`Access`]: room metadata in one hash, members and
//! roles in sets, sanctions in a hash per user (field `<kind>:<room or *>` → until,
//! expired fields dropped when read), the audit log in a capped stream. See
//! `keys.rs` for the names.

use super::{codec, codec::entries, scripts, RedisNode};
use crate::access::AUDIT_RETENTION;
use crate::{now_ms, Access, AuditEntry, BackendError, RateBucket, RoomMeta, SanctionKind};
use async_trait::async_trait;
use confab_core::MessageId;
use redis::Value;

fn sanction_field(kind: SanctionKind, room: Option<&str>) -> String {
    format!("{}:{}", kind.as_str(), room.unwrap_or("*"))
}

#[async_trait]
impl Access for RedisNode {
    async fn create_room(&self, room: &str, meta: &RoomMeta) -> Result<bool, BackendError> {
        let s = &self.shared;
        let mut inv = scripts::CREATE_ROOM.prepare_invoke();
        inv.key(s.keys.room_meta())
            .key(s.keys.room_members(room))
            .key(s.keys.user_rooms(&meta.owner))
            .arg(room)
            .arg(codec::encode(meta)?)
            .arg(&meta.owner);
        let n: i64 = s.invoke(&inv).await?;
        Ok(n == 1)
    }

    async fn room_metas(&self, rooms: &[String]) -> Result<Vec<Option<RoomMeta>>, BackendError> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let s = &self.shared;
        let v: Vec<Option<Vec<u8>>> = s
            .query(redis::cmd("HMGET").arg(s.keys.room_meta()).arg(rooms))
            .await?;
        v.into_iter()
            .map(|b| b.map(|b| codec::decode::<RoomMeta>(&b)).transpose())
            .collect()
    }

    async fn set_room_member(
        &self,
        room: &str,
        user: &str,
        member: bool,
    ) -> Result<(), BackendError> {
        let s = &self.shared;
        let op = if member { "SADD" } else { "SREM" };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd(op)
            .arg(s.keys.room_members(room))
            .arg(user)
            .ignore()
            .cmd(op)
            .arg(s.keys.user_rooms(user))
            .arg(room)
            .ignore();
        let () = s.query_pipe(&pipe).await?;
        Ok(())
    }

    async fn is_room_member(&self, room: &str, user: &str) -> Result<bool, BackendError> {
        let s = &self.shared;
        s.query(
            redis::cmd("SISMEMBER")
                .arg(s.keys.room_members(room))
                .arg(user),
        )
        .await
    }

    async fn member_rooms(&self, user: &str, limit: usize) -> Result<Vec<String>, BackendError> {
        let s = &self.shared;
        let mut rooms: Vec<String> = s
            .query(redis::cmd("SMEMBERS").arg(s.keys.user_rooms(user)))
            .await?;
        rooms.sort();
        rooms.truncate(limit);
        Ok(rooms)
    }

    async fn set_role(&self, user: &str, role: &str, on: bool) -> Result<(), BackendError> {
        let s = &self.shared;
        let op = if on { "SADD" } else { "SREM" };
        let _: i64 = s
            .query(redis::cmd(op).arg(s.keys.roles(user)).arg(role))
            .await?;
        Ok(())
    }

    async fn roles(&self, user: &str) -> Result<Vec<String>, BackendError> {
        let s = &self.shared;
        let mut r: Vec<String> = s
            .query(redis::cmd("SMEMBERS").arg(s.keys.roles(user)))
            .await?;
        r.sort();
        Ok(r)
    }

    async fn set_sanction(
        &self,
        kind: SanctionKind,
        user: &str,
        room: Option<&str>,
        until: u64,
    ) -> Result<(), BackendError> {
        let s = &self.shared;
        let _: i64 = s
            .query(
                redis::cmd("HSET")
                    .arg(s.keys.sanctions(user))
                    .arg(sanction_field(kind, room))
                    .arg(until),
            )
            .await?;
        Ok(())
    }

    async fn clear_sanction(
        &self,
        kind: SanctionKind,
        user: &str,
        room: Option<&str>,
    ) -> Result<bool, BackendError> {
        let was = self.sanction(kind, user, room).await?;
        let s = &self.shared;
        let _: i64 = s
            .query(
                redis::cmd("HDEL")
                    .arg(s.keys.sanctions(user))
                    .arg(sanction_field(kind, room)),
            )
            .await?;
        Ok(was.is_some())
    }

    async fn sanction(
        &self,
        kind: SanctionKind,
        user: &str,
        room: Option<&str>,
    ) -> Result<Option<u64>, BackendError> {
        let s = &self.shared;
        let key = s.keys.sanctions(user);
        let field = sanction_field(kind, room);
        let until: Option<u64> = s.query(redis::cmd("HGET").arg(&key).arg(&field)).await?;
        match until {
            Some(u) if u > now_ms() => Ok(Some(u)),
            Some(_) => {
                // Ended: forget it (the hash keeps only sanctions in force).
                let _: i64 = s.query(redis::cmd("HDEL").arg(&key).arg(&field)).await?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn rate_take(
        &self,
        buckets: &[RateBucket],
    ) -> Result<Result<(), std::time::Duration>, BackendError> {
        if buckets.is_empty() {
            return Ok(Ok(()));
        }
        let s = &self.shared;
        let mut inv = scripts::RATE_TAKE.prepare_invoke();
        for b in buckets {
            let emission = 1000.0 / b.per_sec.max(1e-9);
            inv.key(s.keys.rate(&b.key))
                .arg(format!("{emission:.6}"))
                .arg(format!("{:.6}", emission * b.burst.max(1.0)));
        }
        let v: Vec<i64> = s.invoke(&inv).await?;
        Ok(match v.as_slice() {
            [1] => Ok(()),
            [0, wait] => Err(std::time::Duration::from_millis((*wait).max(1) as u64)),
            _ => return Err(BackendError::Internal(format!("rate reply {v:?}"))),
        })
    }

    async fn audit_append(&self, entry: AuditEntry) -> Result<(), BackendError> {
        let s = &self.shared;
        let _: String = s
            .query(
                redis::cmd("XADD")
                    .arg(s.keys.audit())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(AUDIT_RETENTION)
                    .arg("*")
                    .arg("b")
                    .arg(codec::encode(&entry)?),
            )
            .await?;
        Ok(())
    }

    async fn audit_list(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, BackendError> {
        let s = &self.shared;
        let start = match before {
            Some(b) => {
                let id: MessageId = b
                    .parse()
                    .map_err(|e| BackendError::Internal(format!("audit id: {e}")))?;
                format!("({id}")
            }
            None => "+".to_owned(),
        };
        let v: Value = s
            .query(
                redis::cmd("XREVRANGE")
                    .arg(s.keys.audit())
                    .arg(start)
                    .arg("-")
                    .arg("COUNT")
                    .arg(limit.min(10_000)),
            )
            .await?;
        entries(v)?
            .into_iter()
            .map(|(id, body)| {
                let mut e: AuditEntry = codec::decode(&body)?;
                e.id = Some(id.to_string());
                Ok(e)
            })
            .collect()
    }
}
