//! Every Redis key and pub/sub channel name the Redis backend uses, in one place,
//! so the layout is documented once and the reader can map a channel back to its
//! [`Topic`].
//!
//! Names carry a `{…}` hash tag around the room or user so that, on a Redis Cluster,
//! a room's stream and channel would share a slot. (The presence and DM scripts
//! touch keys of several tags, so the backend targets a single Redis for now.)

use crate::{dm_pair, Topic};

/// Key and channel names under one prefix (default `confab`).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Stream of a room's messages: `confab:room:{<room>}:log`.
    pub(crate) fn room_log(&self, room: &str) -> String {
        format!("{}:room:{{{room}}}:log", self.prefix)
    }

    /// Pub/sub channel of a room (messages and signals): `confab:room:{<room>}`.
    pub(crate) fn room_channel(&self, room: &str) -> String {
        format!("{}:room:{{{room}}}", self.prefix)
    }

    /// Stream of a DM conversation: `confab:dm:{<a>:<b>}:log` with `a <= b`, and
    /// `%` and `:` in the ids escaped as `%25` and `%3A`: user ids may contain `:`
    /// (a JWT `sub`), and `a:b` + `c` must not be the conversation of `a` + `b:c`.
    /// (Ids without those characters keep the key they always had.)
    pub(crate) fn dm_log(&self, a: &str, b: &str) -> String {
        let (a, b) = dm_pair(a, b);
        let esc = |s: &str| s.replace('%', "%25").replace(':', "%3A");
        format!("{}:dm:{{{}:{}}}:log", self.prefix, esc(a), esc(b))
    }

    /// Pub/sub channel of a user (DMs from and to them): `confab:user:{<name>}`.
    pub(crate) fn user_channel(&self, user: &str) -> String {
        format!("{}:user:{{{user}}}", self.prefix)
    }

    /// Sorted set of the user's DM peers, scored by the ms of the latest DM with
    /// each: `confab:user:{<name>}:peers`. Lets a node that lost its pub/sub
    /// connection find the conversations to catch up.
    pub(crate) fn user_peers(&self, user: &str) -> String {
        format!("{}:user:{{{user}}}:peers", self.prefix)
    }

    /// Hash of a user's unread DMs, sender → count: `confab:unread:{<user>}`.
    pub(crate) fn unread(&self, user: &str) -> String {
        format!("{}:unread:{{{user}}}", self.prefix)
    }

    /// Index of a user's unread DMs: zset (all scores 0) of `<sender>\0<padded id>`:
    /// `confab:dmin:{<user>}`. Read entries leave it, so it holds unread DMs only.
    pub(crate) fn dm_inbox(&self, user: &str) -> String {
        format!("{}:dmin:{{{user}}}", self.prefix)
    }

    /// A rate-limit bucket (GCRA): `confab:rate:{<key>}`.
    pub(crate) fn rate(&self, key: &str) -> String {
        format!("{}:rate:{{{key}}}", self.prefix)
    }

    /// Hash of every user id that ever connected → its latest display name:
    /// `confab:userdir`.
    /// When each known user was last seen (zset, score = ms).
    pub(crate) fn last_seen(&self) -> String {
        format!("{}:seen", self.prefix)
    }

    pub(crate) fn known_users(&self) -> String {
        format!("{}:userdir", self.prefix)
    }

    /// Reservation of a display-name key (see `Presence::claim_name`): the holder's
    /// id, expiring when the hold ends: `confab:name:{<key>}`.
    pub(crate) fn name_claim(&self, key: &str) -> String {
        format!("{}:name:{{{key}}}", self.prefix)
    }

    /// Hash of a room's deleted message ids (tombstones): `confab:room:{<room>}:deleted`.
    pub(crate) fn room_deleted(&self, room: &str) -> String {
        format!("{}:room:{{{room}}}:deleted", self.prefix)
    }

    /// Hash room → msgpack [`crate::RoomMeta`] of created rooms: `confab:roommeta`.
    pub(crate) fn room_meta(&self) -> String {
        format!("{}:roommeta", self.prefix)
    }

    /// Set of a created room's member ids: `confab:roommembers:{<room>}`.
    pub(crate) fn room_members(&self, room: &str) -> String {
        format!("{}:roommembers:{{{room}}}", self.prefix)
    }

    /// Set of the created rooms a user is a member of: `confab:userrooms:{<user>}`.
    pub(crate) fn user_rooms(&self, user: &str) -> String {
        format!("{}:userrooms:{{{user}}}", self.prefix)
    }

    /// Set of the roles granted to a user in the backend: `confab:roles:{<user>}`.
    pub(crate) fn roles(&self, user: &str) -> String {
        format!("{}:roles:{{{user}}}", self.prefix)
    }

    /// Hash `<kind>:<room or *>` → until (ms) of a user's sanctions:
    /// `confab:sanctions:{<user>}`.
    pub(crate) fn sanctions(&self, user: &str) -> String {
        format!("{}:sanctions:{{{user}}}", self.prefix)
    }

    /// Stream of the moderation audit log: `confab:audit`.
    pub(crate) fn audit(&self) -> String {
        format!("{}:audit", self.prefix)
    }

    /// A cluster-wide secret: `confab:secret:<name>`.
    pub(crate) fn secret(&self, name: &str) -> String {
        format!("{}:secret:{name}", self.prefix)
    }

    /// Idempotency record of a client id: `confab:idem:{<user>}:<kind>:<client id>`
    /// (kind `room:<room>` or `dm`), holding the original message for the window.
    pub(crate) fn idempotency(&self, user: &str, kind: &str, client_id: &str) -> String {
        format!("{}:idem:{{{user}}}:{kind}:{client_id}", self.prefix)
    }

    /// Hash member → connection count of a room: `confab:presence:room:{<room>}`.
    /// (The reap script builds this name itself from the prefix: keep in sync.)
    pub(crate) fn presence_room(&self, room: &str) -> String {
        format!("{}:presence:room:{{{room}}}", self.prefix)
    }

    /// Sorted set (all scores 0, so ordered by name) of a presence hash's fields.
    pub(crate) fn names(hash: &str) -> String {
        format!("{hash}:names")
    }

    /// Hash user → connection count of online users: `confab:presence:online`.
    pub(crate) fn presence_online(&self) -> String {
        format!("{}:presence:online", self.prefix)
    }

    /// Sorted set room → minus its member count: `confab:presence:rooms` (negative
    /// so that ZRANGE gives most members first, ties by name ascending).
    pub(crate) fn presence_rooms(&self) -> String {
        format!("{}:presence:rooms", self.prefix)
    }

    /// Heartbeat key of a gateway, with a TTL: `confab:gw:<id>`.
    pub(crate) fn gateway(&self, id: &str) -> String {
        format!("{}:gw:{id}", self.prefix)
    }

    /// Hash of the presence a gateway added: `confab:gw:<id>:conns`, fields
    /// [`conn_room_field`] and [`conn_online_field`] → count.
    pub(crate) fn gateway_conns(&self, id: &str) -> String {
        format!("{}:gw:{id}:conns", self.prefix)
    }

    /// Set of known gateway ids: `confab:gateways`.
    pub(crate) fn gateways(&self) -> String {
        format!("{}:gateways", self.prefix)
    }

    /// Hash gateway id → msgpack `GatewayStatus` (its latest report, for the admin
    /// status page; stale fields are removed by readers): `confab:gwstats`.
    pub(crate) fn gateway_status(&self) -> String {
        format!("{}:gwstats", self.prefix)
    }

    /// Lock so that one node at a time reaps: `confab:reaper:lock`.
    pub(crate) fn reaper_lock(&self) -> String {
        format!("{}:reaper:lock", self.prefix)
    }

    /// The channel a topic is delivered on.
    pub(crate) fn channel(&self, topic: &Topic) -> String {
        match topic {
            Topic::Room(room) => self.room_channel(room),
            Topic::User(user) => self.user_channel(user),
        }
    }

    /// The topic of a channel name produced by [`Keys::channel`].
    pub(crate) fn topic_of(&self, channel: &str) -> Option<Topic> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        if let Some(room) = rest.strip_prefix("room:{") {
            return Some(Topic::Room(room.strip_suffix('}')?.to_owned()));
        }
        if let Some(user) = rest.strip_prefix("user:{") {
            return Some(Topic::User(user.strip_suffix('}')?.to_owned()));
        }
        None
    }
}

/// Field of a gateway's conns hash for a (room, user) membership. Names and rooms
/// never contain NUL (see `confab_core::validate`). The reap script parses it.
pub(crate) fn conn_room_field(room: &str, user: &str) -> String {
    format!("r:{room}\0{user}")
}

/// Field of a gateway's conns hash for an online user. The reap script parses it.
pub(crate) fn conn_online_field(user: &str) -> String {
    format!("u:{user}")
}

/// A message id with fixed-width parts, so that byte order is id order (members of
/// the unread index; the publish script writes the same form).
pub(crate) fn padded_id(id: confab_core::MessageId) -> String {
    format!("{:016}-{:010}", id.ms, id.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip() {
        let k = Keys::new("confab");
        for t in [
            Topic::Room("general".into()),
            Topic::User("Zoë".into()),
            Topic::User("a}b".into()),
        ] {
            assert_eq!(k.topic_of(&k.channel(&t)), Some(t));
        }
        assert_eq!(k.topic_of("other:room:{x}"), None);
        assert_eq!(k.topic_of("confab:room:{x}:log"), None);
        assert_eq!(k.room_log("r"), "confab:room:{r}:log");
        assert_eq!(k.dm_log("bob", "alice"), "confab:dm:{alice:bob}:log");
    }

    #[test]
    fn dm_keys_keep_ids_apart() {
        let k = Keys::new("confab");
        assert_ne!(k.dm_log("a:b", "c"), k.dm_log("a", "b:c"));
        assert_ne!(k.dm_log("a%3Ab", "c"), k.dm_log("a:b", "c"));
        assert_eq!(k.dm_log("bob", "alice"), "confab:dm:{alice:bob}:log");
        assert_eq!(k.dm_log("x", "y"), k.dm_log("y", "x"));
    }

    #[test]
    fn padded_ids_sort_like_ids() {
        use confab_core::MessageId;
        let ids = [
            MessageId::new(9, 0),
            MessageId::new(10, 0),
            MessageId::new(10, 2),
            MessageId::new(10, 11),
            MessageId::new(1_795_979_668_999, 0),
        ];
        let padded: Vec<String> = ids.iter().map(|i| padded_id(*i)).collect();
        let mut sorted = padded.clone();
        sorted.sort();
        assert_eq!(padded, sorted);
        assert_eq!(padded[1], "0000000000000010-0000000000");
    }
}
