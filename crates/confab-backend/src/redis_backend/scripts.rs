//! The Lua scripts of the Redis backend: each multi-key change (append + publish,
//! presence counts, reaping a dead gateway) and each history read that must see one
//! consistent stream runs as one script, which Redis executes atomically.
//!
//! `redis::Script` sends `EVALSHA` and falls back to loading the script on
//! `NOSCRIPT`, so a restarted Redis needs no special handling.

use redis::Script;
use std::sync::LazyLock;

/// Append a room message and publish its frame on the room channel, unless the
/// sender already sent this client id within the idempotency window.
///
/// `KEYS[1]` room stream, `KEYS[2]` idempotency key (`''` without client id),
/// `KEYS[3]` the room's tombstones hash (expires with the stream). `ARGV[1]` retention (MAXLEN ~), `ARGV[2]` msgpack body, `ARGV[3]` room channel,
/// `ARGV[4]` idempotency window in seconds, `ARGV[5]` room, `ARGV[6]` the history's
/// maximum age in ms (`0`: none; older entries are trimmed and an idle stream
/// expires after it), `ARGV[7]` `1` if the message may start the room's stream.
/// Returns `{1, id}` for a new
/// message, `{0, '<id>|<room>|<body>'}`: the original, not stored or published
/// again, or `{2}` when the stream does not exist and `ARGV[7]` is `0` (nothing
/// stored). The frame is `'M' <id> ' ' <body>`; Redis runs scripts one at a time, so
/// the pub/sub order of a room is its stream order and nothing is published that
/// was not stored.
pub(crate) static PUBLISH_MESSAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if KEYS[2] ~= '' then
  local prev = redis.call('GET', KEYS[2])
  if prev then return {0, prev} end
end
if ARGV[7] == '0' and redis.call('EXISTS', KEYS[1]) == 0 then
  return {2}
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'b', ARGV[2])
local age = tonumber(ARGV[6])
if age > 0 then
  local ms = tonumber(string.match(id, '^(%d+)-'))
  redis.call('XTRIM', KEYS[1], 'MINID', tostring(ms - age))
  redis.call('PEXPIRE', KEYS[1], age)
  redis.call('PEXPIRE', KEYS[3], age)
end
if KEYS[2] ~= '' then
  redis.call('SET', KEYS[2], id .. '|' .. ARGV[5] .. '|' .. ARGV[2], 'EX', ARGV[4])
end
redis.call('PUBLISH', ARGV[3], 'M' .. id .. ' ' .. ARGV[2])
return {1, id}
"#,
    )
});

/// Append a DM to its conversation, index the peers, publish to both users.
///
/// `KEYS[1]` pair stream, `KEYS[2]` sender's peers zset, `KEYS[3]` recipient's peers zset,
/// `KEYS[4]` idempotency key (`''` without client id), `KEYS[5]` recipient's unread hash
/// (sender → count of the sender's entries in the index, unless it is a note to
/// self), `KEYS[6]` recipient's unread index (member `<sender>\0<padded id>`, see
/// [`DM_MARK_READ`]; entries older than the stream's first are dropped).
/// `ARGV[1]` retention, `ARGV[2]` msgpack body, `ARGV[3]` sender channel, `ARGV[4]`
/// recipient channel, `ARGV[5]` sender, `ARGV[6]` recipient, `ARGV[7]` idempotency
/// window in seconds, `ARGV[8]` the history's maximum age in ms (`0`: none). Returns `{1, id}`, or `{0, '<id>|<body>'}` for a client id the
/// sender already used within the window (nothing stored or published). The
/// frame `'D' <id> ' ' <body>` is published once per distinct channel. Peers whose
/// latest DM is older than 7 days leave the peers zsets (they only serve catch-up).
pub(crate) static PUBLISH_DM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if KEYS[4] ~= '' then
  local prev = redis.call('GET', KEYS[4])
  if prev then return {0, prev} end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'b', ARGV[2], 'f', ARGV[5])
local age = tonumber(ARGV[8])
if age > 0 then
  local ms0 = tonumber(string.match(id, '^(%d+)-'))
  redis.call('XTRIM', KEYS[1], 'MINID', tostring(ms0 - age))
  redis.call('PEXPIRE', KEYS[1], age)
end
if KEYS[4] ~= '' then
  redis.call('SET', KEYS[4], id .. '|' .. ARGV[2], 'EX', ARGV[7])
end
local ms, seq = string.match(id, '^(%d+)-(%d+)$')
if ARGV[5] ~= ARGV[6] then
  local from = ARGV[5] .. '\0'
  redis.call('ZADD', KEYS[6], 0, from .. string.format('%016d-%010d', tonumber(ms), tonumber(seq)))
  -- Unread entries of DMs the stream no longer holds (retention, age) go.
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]
  local fms, fseq = string.match(first, '^(%d+)-(%d+)$')
  redis.call('ZREMRANGEBYLEX', KEYS[6], '[' .. from, '(' .. from .. string.format('%016d-%010d', tonumber(fms), tonumber(fseq)))
  redis.call('HSET', KEYS[5], ARGV[5], redis.call('ZLEXCOUNT', KEYS[6], '[' .. from, '(' .. ARGV[5] .. '\1'))
end
redis.call('ZADD', KEYS[2], ms, ARGV[6])
redis.call('ZADD', KEYS[3], ms, ARGV[5])
local old = string.format('(%d', tonumber(ms) - 604800000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', old)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', old)
local frame = 'D' .. id .. ' ' .. ARGV[2]
redis.call('PUBLISH', ARGV[4], frame)
if ARGV[3] ~= ARGV[4] then
  redis.call('PUBLISH', ARGV[3], frame)
end
return {1, id}
"#,
    )
});

/// The `After` page of a stream, with what is needed for `has_more`/`truncated`.
///
/// `KEYS[1]` stream. `ARGV[1]` `(<id>`, `ARGV[2]` `<id>`, `ARGV[3]` limit + 1.
/// Returns `{newer entries (newest first, at most limit + 1), number of entries
/// <= id (0 or 1), max-deleted-entry-id, entries dropped (entries-added - length),
/// recorded-first-entry-id}`. Redis 7.0 updates `max-deleted-entry-id` on XDEL
/// only, not when `MAXLEN` trims, hence the other two.
pub(crate) static HISTORY_AFTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local newer = redis.call('XREVRANGE', KEYS[1], '+', ARGV[1], 'COUNT', ARGV[3])
local older = redis.call('XREVRANGE', KEYS[1], ARGV[2], '-', 'COUNT', 1)
local maxdel, dropped, first = '0-0', 0, '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local f = {}
  for i = 1, #info, 2 do
    f[info[i]] = info[i + 1]
  end
  maxdel = f['max-deleted-entry-id'] or '0-0'
  dropped = (tonumber(f['entries-added']) or 0) - (tonumber(f['length']) or 0)
  first = f['recorded-first-entry-id'] or '0-0'
end
return {newer, #older, maxdel, dropped, first}
"#,
    )
});

/// One more connection of a user (online, or in a room).
///
/// `KEYS[1]` presence hash, `KEYS[2]` its names zset, `KEYS[3]` this gateway's conns
/// hash, `KEYS[4]` (rooms only) the rooms zset. `ARGV[1]` user, `ARGV[2]` conns field,
/// `ARGV[3]` (rooms only) room. Returns the user's count after.
pub(crate) static PRESENCE_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if n == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
end
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
if KEYS[4] then
  redis.call('ZADD', KEYS[4], -redis.call('HLEN', KEYS[1]), ARGV[3])
end
return n
"#,
    )
});

/// One connection fewer; same KEYS/ARGV as [`PRESENCE_ADD`]. Saturates at 0 (never
/// negative), deletes fields at 0, keeps the names and rooms zsets in step.
/// Returns the user's count after.
pub(crate) static PRESENCE_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local m = redis.call('HINCRBY', KEYS[3], ARGV[2], -1)
if m <= 0 then
  redis.call('HDEL', KEYS[3], ARGV[2])
end
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n > 1 then
  return redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
end
if n == 1 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  if KEYS[4] then
    local len = redis.call('HLEN', KEYS[1])
    if len > 0 then
      redis.call('ZADD', KEYS[4], -len, ARGV[3])
    else
      redis.call('ZREM', KEYS[4], ARGV[3])
    end
  end
end
return 0
"#,
    )
});

/// A consistent page of a presence hash, by user id, with display names.
///
/// `KEYS[1]` presence hash, `KEYS[2]` its ids zset, `KEYS[3]` the user directory
/// (id → display name). `ARGV[1]` limit. Returns
/// `{total, id1, count1, name1, id2, count2, name2, ...}` (a name is nil for an id
/// missing from the directory).
pub(crate) static PRESENCE_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {redis.call('ZCARD', KEYS[2])}
local limit = tonumber(ARGV[1])
if limit > 0 then
  local ids = redis.call('ZRANGE', KEYS[2], 0, limit - 1)
  for _, id in ipairs(ids) do
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', KEYS[1], id) or '0'
    out[#out + 1] = redis.call('HGET', KEYS[3], id) or false
  end
end
return out
"#,
    )
});

/// Reserve a display-name key for a user id (see `Presence::claim_name`).
///
/// `KEYS[1]` the claim key (`holder` string with a PX expiry). `ARGV[1]` user id, `ARGV[2]` hold in ms. Returns `''` when the user holds
/// the key now, or the id of the other holder.
pub(crate) static CLAIM_NAME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return holder
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
"#,
    )
});

/// Undo the presence a gateway added, exactly, and forget the gateway.
///
/// `KEYS[1]` the gateway's conns hash, `KEYS[2]` gateways set, `KEYS[3]` its heartbeat
/// key, `KEYS[4]` online hash, `KEYS[5]` rooms zset. `ARGV[1]` key prefix, `ARGV[2]`
/// gateway id, `ARGV[3]` `1` to undo even if the heartbeat is alive (own shutdown).
/// Returns `{room1, user1, room2, user2, ...}`: the memberships whose count dropped
/// to 0. Room presence keys are built from the prefix (single-Redis only), as in
/// `Keys::presence_room`.
pub(crate) static REAP_GATEWAY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  return {}
end
local function sub(hash, user, count)
  local n = tonumber(redis.call('HGET', hash, user) or '0')
  if n <= 0 then
    return false
  end
  if n > count then
    redis.call('HINCRBY', hash, user, -count)
    return false
  end
  redis.call('HDEL', hash, user)
  redis.call('ZREM', hash .. ':names', user)
  return true
end
local left = {}
local conns = redis.call('HGETALL', KEYS[1])
for i = 1, #conns, 2 do
  local field, count = conns[i], tonumber(conns[i + 1])
  local kind = string.sub(field, 1, 2)
  if count and count > 0 then
    if kind == 'u:' then
      sub(KEYS[4], string.sub(field, 3), count)
    elseif kind == 'r:' then
      local sep = string.find(field, '\0', 3, true)
      if sep then
        local room = string.sub(field, 3, sep - 1)
        local user = string.sub(field, sep + 1)
        local hash = ARGV[1] .. ':presence:room:{' .. room .. '}'
        if sub(hash, user, count) then
          left[#left + 1] = room
          left[#left + 1] = user
          local len = redis.call('HLEN', hash)
          if len > 0 then
            redis.call('ZADD', KEYS[5], -len, room)
          else
            redis.call('ZREM', KEYS[5], room)
          end
        end
      end
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return left
"#,
    )
});

/// Mark DMs read: drop the user's unread-index entries from the peer up to
/// `up_to`, count what is left (read markers only move forward; both steps are
/// O(log n) in the index, whatever the conversation's length), store that as the
/// unread count and tell the user's nodes.
///
/// `KEYS[1]` the user's unread index (zset, members `<peer>\0<padded id>`),
/// `KEYS[2]` the user's unread hash. `ARGV[1]` peer, `ARGV[2]` padded `up_to`,
/// `ARGV[3]` the user's channel, `ARGV[4]` msgpack of (peer, up_to). Publishes
/// `'R' <unread> ' ' <ARGV[4]>` and returns the unread count.
pub(crate) static DM_MARK_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local lo = '[' .. ARGV[1] .. '\0'
redis.call('ZREMRANGEBYLEX', KEYS[1], lo, lo .. ARGV[2])
local n = redis.call('ZLEXCOUNT', KEYS[1], lo, lo .. '~')
if n > 0 then
  redis.call('HSET', KEYS[2], ARGV[1], n)
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('PUBLISH', ARGV[3], 'R' .. n .. ' ' .. ARGV[4])
return n
"#,
    )
});

/// Tombstone a room message: mark its id deleted and publish the signal frame.
///
/// `KEYS[1]` room stream, `KEYS[2]` the room's deleted-ids hash, `KEYS[3]` the
/// message's idempotency record (`''` without client id). The hash takes the
/// stream's expiry (`--history-max-age`). `ARGV[1]` message id,
/// `ARGV[2]` room channel, `ARGV[3]` the `Signal::Deleted` frame, `ARGV[4]` the
/// tombstone's idempotency record (a retry then returns the tombstone, not the
/// text). Returns 1, or 0 when the stream does not hold the id (nothing published).
pub(crate) static DELETE_MESSAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1], 'COUNT', 1)
if #e == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], 1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
if KEYS[3] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[3], ARGV[4], 'KEEPTTL')
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"#,
    )
});

/// Create a room: its metadata (unless it exists) and its owner as member.
///
/// `KEYS[1]` room-meta hash, `KEYS[2]` the room's members set, `KEYS[3]` the owner's
/// rooms set. `ARGV[1]` room, `ARGV[2]` msgpack meta, `ARGV[3]` owner. Returns 1 if
/// created, 0 if the room already existed.
pub(crate) static CREATE_ROOM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"#,
    )
});

/// Release a display-name key if `ARGV[1]` holds it. `KEYS[1]` the claim key.
/// Returns 1 if released.
pub(crate) static RELEASE_NAME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

/// Extend a display-name hold if `ARGV[1]` holds it. `KEYS[1]` the claim key,
/// `ARGV[2]` the hold in ms. Returns 1 if extended.
pub(crate) static RENEW_NAME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#,
    )
});

/// Take one event from each GCRA bucket, all or none, on Redis's clock.
///
/// `KEYS` the buckets (each a string: the theoretical arrival time in ms, expiring
/// when the bucket is full again). `ARGV[2i-1]`, `ARGV[2i]`: emission interval and
/// tolerance of `KEYS[i]`, in ms. Returns `{1}` if taken, or `{0, wait_ms}`.
pub(crate) static RATE_TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local new = {}
for i, key in ipairs(KEYS) do
  local emission = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local n = tat + emission
  local allow_at = n - tolerance
  if allow_at > now then
    return {0, math.ceil(allow_at - now)}
  end
  new[i] = n
end
for i, key in ipairs(KEYS) do
  local ttl = math.ceil(new[i] - now)
  if ttl < 1 then ttl = 1 end
  redis.call('SET', key, string.format('%.3f', new[i]), 'PX', ttl)
end
return {1}
"#,
    )
});

/// Forget users offline and not seen since a cutoff.
///
/// `KEYS[1]` last-seen zset, `KEYS[2]` online presence hash, `KEYS[3]` user
/// directory. `ARGV[1]` cutoff (ms), `ARGV[2]` at most this many, `ARGV[3]` key
/// prefix, `ARGV[4]` now (ms). A user still online is marked seen now instead (and
/// not counted; at most `4·limit + 100` users are looked at per call). The
/// per-user keys are built from the prefix (single-Redis only), as in
/// `Keys::unread`, `Keys::dm_inbox` and `Keys::user_peers`. Returns how many went.
pub(crate) static PRUNE_IDLE_USERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local limit = tonumber(ARGV[2])
local gone, looked = 0, 0
while gone < limit and looked < 4 * limit + 100 do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, limit - gone)
  if #ids == 0 then break end
  for _, u in ipairs(ids) do
    looked = looked + 1
    if tonumber(redis.call('HGET', KEYS[2], u) or '0') > 0 then
      redis.call('ZADD', KEYS[1], ARGV[4], u)
    else
      redis.call('ZREM', KEYS[1], u)
      redis.call('HDEL', KEYS[3], u)
      redis.call('DEL', ARGV[3] .. ':unread:{' .. u .. '}', ARGV[3] .. ':dmin:{' .. u .. '}',
        ARGV[3] .. ':user:{' .. u .. '}:peers')
      gone = gone + 1
    end
  end
end
return gone
"#,
    )
});
