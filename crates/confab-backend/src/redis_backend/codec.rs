//! What the Redis backend writes and reads: the msgpack bodies stored in streams,
//! the frames published on channels, the parsing of Redis replies, and the mapping of
//! Redis failures onto [`BackendError`].
//!
//! A stream entry's id *is* the message id and its `ts` is the id's millisecond part,
//! so the body stores neither: the id is only known once `XADD` ran inside the
//! publish script, which then publishes `<tag><id> <body>` (tag `M` for a room
//! message, `D` for a DM) and `S<msgpack Signal>` for signals. The node's reader
//! decodes each frame once into a [`BusEvent`].

use crate::{BackendError, BusEvent, Signal, Topic};
use confab_core::{DirectMessage, Message, MessageId};
use redis::{RedisError, Value};
use serde::{Deserialize, Serialize};

/// A room message as stored (field `b` of its stream entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredMessage {
    pub from: String,
    /// The sender's user id (entries written before ids existed have none: the
    /// name was the id then).
    #[serde(rename = "fid", default)]
    pub from_id: String,
    pub text: String,
    #[serde(rename = "clientId", default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Only in an idempotency record rewritten by a delete (stream entries cannot
    /// change: their tombstones are in the room's deleted-ids hash).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl StoredMessage {
    pub(crate) fn into_message(self, room: &str, id: MessageId) -> Message {
        Message {
            id,
            room: room.to_owned(),
            from_id: if self.from_id.is_empty() {
                self.from.clone()
            } else {
                self.from_id
            },
            from: self.from,
            text: self.text,
            ts: id.ms,
            client_id: self.client_id,
            deleted: self.deleted,
        }
    }
}

/// A DM as stored (field `b` of its conversation's stream entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredDm {
    pub from: String,
    #[serde(rename = "fid", default)]
    pub from_id: String,
    pub to: String,
    pub text: String,
    #[serde(rename = "clientId", default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl StoredDm {
    pub(crate) fn into_dm(self, id: MessageId) -> DirectMessage {
        DirectMessage {
            id,
            from_id: if self.from_id.is_empty() {
                self.from.clone()
            } else {
                self.from_id
            },
            from: self.from,
            to: self.to,
            text: self.text,
            ts: id.ms,
            client_id: self.client_id,
        }
    }
}

/// Named msgpack (the types have optional fields, so positional encoding breaks).
pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, BackendError> {
    rmp_serde::to_vec_named(v).map_err(|e| BackendError::Internal(format!("encode: {e}")))
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, BackendError> {
    rmp_serde::from_slice(b).map_err(|e| BackendError::Internal(format!("decode: {e}")))
}

/// The frame of a user signal (`U` + msgpack).
pub(crate) fn user_signal_frame(signal: &crate::UserSignal) -> Result<Vec<u8>, BackendError> {
    let mut out = vec![b'U'];
    out.extend(encode(signal)?);
    Ok(out)
}

/// The frame of a signal.
pub(crate) fn signal_frame(signal: &Signal) -> Result<Vec<u8>, BackendError> {
    let mut out = vec![b'S'];
    out.extend(encode(signal)?);
    Ok(out)
}

/// Decode a frame received on the channel of `topic`.
pub(crate) fn decode_frame(topic: &Topic, payload: &[u8]) -> Result<BusEvent, BackendError> {
    let bad = |what: &str| BackendError::Internal(format!("bad frame on {topic:?}: {what}"));
    let (&tag, rest) = payload.split_first().ok_or_else(|| bad("empty"))?;
    match (tag, topic) {
        (b'S', Topic::Room(room)) => Ok(BusEvent::Signal {
            room: room.clone(),
            signal: decode(rest)?,
        }),
        (b'M', Topic::Room(room)) => {
            let (id, body) = split_id(rest).ok_or_else(|| bad("id"))?;
            Ok(BusEvent::Message(
                decode::<StoredMessage>(body)?.into_message(room, id),
            ))
        }
        (b'D', Topic::User(_)) => {
            let (id, body) = split_id(rest).ok_or_else(|| bad("id"))?;
            Ok(BusEvent::Dm(decode::<StoredDm>(body)?.into_dm(id)))
        }
        (b'U', Topic::User(user)) => Ok(BusEvent::UserSignal {
            user: user.clone(),
            signal: decode(rest)?,
        }),
        (b'R', Topic::User(user)) => {
            let sp = rest
                .iter()
                .position(|c| *c == b' ')
                .ok_or_else(|| bad("count"))?;
            let unread = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| bad("count"))?;
            let (with, up_to): (String, MessageId) = decode(&rest[sp + 1..])?;
            Ok(BusEvent::UserSignal {
                user: user.clone(),
                signal: crate::UserSignal::DmRead {
                    with,
                    up_to,
                    unread,
                },
            })
        }
        _ => Err(bad("unexpected tag")),
    }
}

fn split_id(b: &[u8]) -> Option<(MessageId, &[u8])> {
    let sp = b.iter().position(|c| *c == b' ')?;
    let id = std::str::from_utf8(&b[..sp]).ok()?.parse().ok()?;
    Some((id, &b[sp + 1..]))
}

/// Is this failure transient (Redis down, connection lost, loading, failover)?
pub(crate) fn is_transient(e: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        )
        // maxmemory reached with `noeviction`: writes are refused until memory is
        // freed (history is never evicted silently); the client retries later.
        || e.code() == Some("OOM")
}

pub(crate) fn redis_err(e: RedisError) -> BackendError {
    if is_transient(&e) {
        BackendError::Unavailable(format!("redis: {e}"))
    } else {
        BackendError::Internal(format!("redis: {e}"))
    }
}

pub(crate) fn pool_err(e: deadpool_redis::PoolError) -> BackendError {
    match e {
        deadpool_redis::PoolError::Backend(e) => redis_err(e),
        other => BackendError::Unavailable(format!("redis pool: {other}")),
    }
}

fn unexpected(what: &str, v: &Value) -> BackendError {
    BackendError::Internal(format!("unexpected redis reply for {what}: {v:?}"))
}

/// The bytes of a string reply.
pub(crate) fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(crate) fn as_string(v: &Value, what: &str) -> Result<String, BackendError> {
    as_bytes(v)
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::to_owned)
        .ok_or_else(|| unexpected(what, v))
}

/// An integer reply, or a string holding one (HGET, scores).
pub(crate) fn as_i64(v: &Value, what: &str) -> Result<i64, BackendError> {
    match v {
        Value::Int(n) => Ok(*n),
        Value::Double(d) => Ok(*d as i64),
        _ => as_bytes(v)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| {
                s.parse::<i64>()
                    .ok()
                    .or_else(|| s.parse::<f64>().ok().map(|d| d as i64))
            })
            .ok_or_else(|| unexpected(what, v)),
    }
}

pub(crate) fn as_array(v: Value, what: &str) -> Result<Vec<Value>, BackendError> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected(what, &other)),
    }
}

pub(crate) fn as_id(v: &Value, what: &str) -> Result<MessageId, BackendError> {
    as_string(v, what)?.parse().map_err(|_| unexpected(what, v))
}

/// A stream entry: its id and the body (field `b`).
pub(crate) type Entry = (MessageId, Vec<u8>);

/// Parse an XRANGE/XREVRANGE reply.
pub(crate) fn entries(v: Value) -> Result<Vec<Entry>, BackendError> {
    let mut out = Vec::new();
    for item in as_array(v, "stream range")? {
        let mut parts = as_array(item, "stream entry")?.into_iter();
        let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
            return Err(BackendError::Internal("short stream entry".into()));
        };
        let id = as_id(&id, "entry id")?;
        let fields = as_array(fields, "entry fields")?;
        let body = fields
            .chunks(2)
            .find(|kv| as_bytes(&kv[0]) == Some(b"b"))
            .and_then(|kv| kv.get(1))
            .and_then(as_bytes)
            .ok_or_else(|| BackendError::Internal(format!("entry {id} has no body")))?;
        out.push((id, body.to_vec()));
    }
    Ok(out)
}

/// What a publish script answered.
pub(crate) enum Published {
    /// A new entry with this id (stored and published).
    New(Value),
    /// The client id was already used: the stored record of the original.
    Duplicate(Vec<u8>),
    /// The room has no stream and the message may not start one.
    NotCreated,
}

/// Parse `{1, id}` / `{0, record}` / `{2}` from the publish scripts.
pub(crate) fn publish_reply(v: Value) -> Result<Published, BackendError> {
    let mut parts = as_array(v, "publish reply")?.into_iter();
    match (parts.next(), parts.next()) {
        (Some(Value::Int(1)), Some(id)) => Ok(Published::New(id)),
        (Some(Value::Int(0)), Some(Value::BulkString(rec))) => Ok(Published::Duplicate(rec)),
        (Some(Value::Int(2)), None) => Ok(Published::NotCreated),
        (a, b) => Err(BackendError::Internal(format!(
            "unexpected publish reply: {a:?} {b:?}"
        ))),
    }
}

fn split_record(rec: &[u8], n: usize) -> Result<Vec<&[u8]>, BackendError> {
    let parts: Vec<&[u8]> = rec.splitn(n, |b| *b == b'|').collect();
    if parts.len() != n {
        return Err(BackendError::Internal(
            "malformed idempotency record".into(),
        ));
    }
    Ok(parts)
}

fn record_id(raw: &[u8]) -> Result<MessageId, BackendError> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| BackendError::Internal("malformed id in idempotency record".into()))
}

/// The original room message from an idempotency record `<id>|<room>|<body>`.
pub(crate) fn original_message(rec: &[u8]) -> Result<Message, BackendError> {
    let parts = split_record(rec, 3)?;
    let room = std::str::from_utf8(parts[1])
        .map_err(|_| BackendError::Internal("malformed room in idempotency record".into()))?;
    let stored: StoredMessage = decode(parts[2])?;
    Ok(stored.into_message(room, record_id(parts[0])?))
}

/// The original DM from an idempotency record `<id>|<body>`.
pub(crate) fn original_dm(rec: &[u8]) -> Result<DirectMessage, BackendError> {
    let parts = split_record(rec, 2)?;
    let stored: StoredDm = decode(parts[1])?;
    Ok(stored.into_dm(record_id(parts[0])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let body = encode(&StoredMessage {
            from: "Ann".into(),
            from_id: "a".into(),
            text: "hi".into(),
            client_id: None,
            deleted: false,
        })
        .unwrap();
        let mut frame = b"M12-3 ".to_vec();
        frame.extend(&body);
        let ev = decode_frame(&Topic::Room("r".into()), &frame).unwrap();
        assert_eq!(
            ev,
            BusEvent::Message(Message {
                id: MessageId::new(12, 3),
                room: "r".into(),
                from: "Ann".into(),
                from_id: "a".into(),
                text: "hi".into(),
                ts: 12,
                client_id: None,
                deleted: false,
            })
        );
        let sig = Signal::Typing {
            user: "u".into(),
            typing: true,
        };
        let ev = decode_frame(&Topic::Room("r".into()), &signal_frame(&sig).unwrap()).unwrap();
        assert_eq!(
            ev,
            BusEvent::Signal {
                room: "r".into(),
                signal: sig
            }
        );
        assert!(decode_frame(&Topic::User("u".into()), &frame).is_err());
        assert!(decode_frame(&Topic::Room("r".into()), b"").is_err());
        // Optional field present survives the named encoding.
        let dm = StoredDm {
            from: "a".into(),
            from_id: "id-a".into(),
            to: "b".into(),
            text: "t".into(),
            client_id: Some("c".into()),
        };
        let back: StoredDm = decode(&encode(&dm).unwrap()).unwrap();
        assert_eq!(back, dm);
    }

    #[test]
    fn entries_written_before_user_ids_read_the_name_as_id() {
        #[derive(Serialize)]
        struct Old {
            from: String,
            text: String,
        }
        let old = encode(&Old {
            from: "ann".into(),
            text: "hi".into(),
        })
        .unwrap();
        let m = decode::<StoredMessage>(&old)
            .unwrap()
            .into_message("r", MessageId::new(1, 0));
        assert_eq!((m.from.as_str(), m.from_id.as_str()), ("ann", "ann"));
    }
}
