//! The Redis backend (cluster mode): several gateways share one Redis for history,
//! fan-out and presence. [`RedisNode`] is one gateway's handle and implements both
//! [`Broker`] and [`Presence`], so it passes the same conformance suite as the
//! in-memory backend.
//!
//! - **History**: one stream per room (`confab:room:{<room>}:log`) and per DM pair
//!   (`confab:dm:{<a>:<b>}:log`, `a <= b`); the entry id is the message id, `ts` its
//!   millisecond part, the body msgpack (see `codec.rs`). `XADD MAXLEN ~ retention`.
//! - **Publish**: one Lua script appends and publishes (see `scripts.rs`), so pub/sub
//!   order is stream order and nothing is published without being stored.
//! - **Subscriptions**: one dedicated pub/sub connection per node; its reader task
//!   decodes each frame once and sends one [`BusEvent`](crate::BusEvent) to the
//!   node's receiver. On connection loss it reconnects with backoff, re-subscribes
//!   every topic and catches up from the streams, without gap or duplicate (see
//!   `subscriber.rs`).
//! - **Presence**: counted hashes kept by Lua scripts, plus per-gateway bookkeeping
//!   and a heartbeat, so that a reaper on any node can undo a dead gateway's presence
//!   exactly and announce who left (see `gateway.rs`).
//!
//! Every command is bounded by [`RedisConfig::command_timeout`] and fails with
//! [`BackendError::Unavailable`] when Redis is down or slow; nothing hangs.

mod access;
mod codec;
mod gateway;
mod keys;
mod scripts;
mod status;
mod subscriber;

use crate::{
    BackendError, Broker, EventReceiver, HistoryPage, HistoryQuery, NewDm, NewMessage, Presence,
    Signal, Topic, UserSignal,
};
use async_trait::async_trait;
use codec::{as_array, as_i64, as_id, as_string, encode, entries, pool_err, redis_err, Entry};
use confab_core::protocol::{RoomEntry, UserEntry};
use confab_core::{DirectMessage, Message, MessageId};
use deadpool_redis::{Pool, Runtime};
use keys::{conn_online_field, conn_room_field, Keys};
use redis::aio::PubSubSink;
use redis::{AsyncConnectionConfig, FromRedisValue, ScriptInvocation, Value};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use subscriber::Cursors;
use tokio_util::sync::CancellationToken;

/// Settings of a [`RedisNode`].
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Entries kept per room and per conversation (`XADD MAXLEN ~`, so Redis may
    /// keep somewhat more).
    pub history_retention: usize,
    /// Entries older than this leave history; an idle stream expires after it.
    pub history_max_age: Option<Duration>,
    /// Bound on every Redis command (pool wait, connect, response).
    pub command_timeout: Duration,
    /// How often this gateway refreshes its heartbeat key.
    pub heartbeat_interval: Duration,
    /// TTL of the heartbeat key: a gateway silent this long is reaped.
    pub heartbeat_ttl: Duration,
    /// How often each node tries to reap dead gateways (one at a time, by lock).
    pub reap_interval: Duration,
    /// How often the pub/sub connection is PINGed (and the catch-up floor advanced).
    pub health_interval: Duration,
    /// First delay before reconnecting the pub/sub connection; doubles per failure.
    pub reconnect_backoff_min: Duration,
    /// Longest delay between pub/sub reconnection attempts.
    pub reconnect_backoff_max: Duration,
    /// Prefix of every key and channel.
    pub key_prefix: String,
    /// This gateway's id (random when `None`).
    pub gateway_id: Option<String>,
    /// Connections in the command pool.
    pub pool_size: usize,
    /// A client id resent by the same user within this window returns the original
    /// message instead of storing a new one.
    pub idempotency_window: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            history_retention: 10_000,
            history_max_age: None,
            command_timeout: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_ttl: Duration::from_secs(15),
            reap_interval: Duration::from_secs(5),
            health_interval: Duration::from_secs(1),
            reconnect_backoff_min: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(2),
            key_prefix: "confab".into(),
            gateway_id: None,
            pool_size: 16,
            idempotency_window: Duration::from_secs(600),
        }
    }
}

/// Counters of a node's pub/sub recovery, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Times the pub/sub connection was re-established (and re-subscribed).
    pub reconnects: u64,
    /// Events delivered from the streams by catch-up after a reconnect.
    pub caught_up: u64,
}

#[derive(Debug, Default)]
struct Counters {
    reconnects: AtomicU64,
    caught_up: AtomicU64,
}

/// State shared by a node and its background tasks (reader, heartbeat, reaper).
pub(crate) struct Shared {
    cfg: RedisConfig,
    gateway_id: String,
    keys: Keys,
    pool: Pool,
    client: redis::Client,
    events: crate::EventSender,
    /// Subscribed topics and delivery cursors (short, synchronous critical sections).
    cursors: parking_lot::Mutex<Cursors>,
    /// The live pub/sub connection's sink; `None` while disconnected. Held across
    /// (bounded) awaits to serialise subscribe, unsubscribe and re-subscription.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    /// The pub/sub connection is up and re-subscribed.
    connected: AtomicBool,
    stats: Counters,
    /// The heartbeat ran at least once.
    beaten: AtomicBool,
    cancel: CancellationToken,
}

impl Shared {
    /// Run `fut` bounded by the command timeout.
    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let started = std::time::Instant::now();
        let (outcome, r) = match tokio::time::timeout(self.cfg.command_timeout, fut).await {
            Ok(Ok(v)) => ("ok", Ok(v)),
            Ok(Err(e)) => ("error", Err(e)),
            Err(_) => (
                "timeout",
                Err(BackendError::Unavailable(format!(
                    "redis did not answer within {:?}",
                    self.cfg.command_timeout
                ))),
            ),
        };
        metrics::histogram!(REDIS_COMMAND_SECONDS, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        r
    }

    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, BackendError> {
        self.bounded(async {
            let mut conn = self.pool.get().await.map_err(pool_err)?;
            cmd.query_async(&mut conn).await.map_err(redis_err)
        })
        .await
    }

    async fn query_pipe<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, BackendError> {
        self.bounded(async {
            let mut conn = self.pool.get().await.map_err(pool_err)?;
            pipe.query_async(&mut conn).await.map_err(redis_err)
        })
        .await
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        self.bounded(async {
            let mut conn = self.pool.get().await.map_err(pool_err)?;
            inv.invoke_async(&mut conn).await.map_err(redis_err)
        })
        .await
    }

    /// Redis's clock, in ms (stream ids come from it).
    async fn server_time_ms(&self) -> Result<u64, BackendError> {
        let (secs, micros): (u64, u64) = self.query(&redis::cmd("TIME")).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.query::<Value>(&redis::cmd("PING")).await.map(|_| ())
    }

    fn idempotency_secs(&self) -> u64 {
        self.cfg.idempotency_window.as_secs().max(1)
    }

    fn max_age_ms(&self) -> u64 {
        self.cfg
            .history_max_age
            .map_or(0, |a| a.as_millis().max(1) as u64)
    }

    fn retention(&self) -> usize {
        self.cfg.history_retention.max(1)
    }

    /// A page of a stream, with the memory backend's semantics.
    async fn read_page(
        &self,
        key: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage<Entry>, BackendError> {
        // COUNT limit + 1 tells whether more exist; keep the number sane.
        let count = |limit: usize| limit.min(1 << 40) + 1;
        let page = |mut newest_first: Vec<Entry>, limit: usize, older: bool, dropped: bool| {
            let over = newest_first.len() > limit;
            newest_first.truncate(limit);
            newest_first.reverse();
            HistoryPage {
                items: newest_first,
                has_more: over || older,
                truncated: dropped,
            }
        };
        match query {
            HistoryQuery::Latest { limit } => {
                let v: Value = self
                    .query(
                        redis::cmd("XREVRANGE")
                            .arg(key)
                            .arg("+")
                            .arg("-")
                            .arg("COUNT")
                            .arg(count(limit)),
                    )
                    .await?;
                Ok(page(entries(v)?, limit, false, false))
            }
            HistoryQuery::Before { id, limit } => {
                if id == MessageId::ZERO {
                    return Ok(empty_page());
                }
                let v: Value = self
                    .query(
                        redis::cmd("XREVRANGE")
                            .arg(key)
                            .arg(format!("({id}"))
                            .arg("-")
                            .arg("COUNT")
                            .arg(count(limit)),
                    )
                    .await?;
                Ok(page(entries(v)?, limit, false, false))
            }
            HistoryQuery::After { id, limit } => {
                if id == MessageId::MAX {
                    let any: Value = self
                        .query(
                            redis::cmd("XREVRANGE")
                                .arg(key)
                                .arg("+")
                                .arg("-")
                                .arg("COUNT")
                                .arg(1),
                        )
                        .await?;
                    return Ok(HistoryPage {
                        has_more: !entries(any)?.is_empty(),
                        ..empty_page()
                    });
                }
                let mut inv = scripts::HISTORY_AFTER.prepare_invoke();
                inv.key(key)
                    .arg(format!("({id}"))
                    .arg(id.to_string())
                    .arg(count(limit));
                let v: Value = self.invoke(&inv).await?;
                let mut parts = as_array(v, "history after")?.into_iter();
                let (Some(newer), Some(older), Some(max_deleted), Some(dropped), Some(first)) = (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                ) else {
                    return Err(BackendError::Internal("short history reply".into()));
                };
                let newer = entries(newer)?;
                let older = as_i64(&older, "older count")? > 0;
                // Entries newer than `id` were dropped: deleted ones (XDEL), or trimmed
                // ones, which all precede the first entry kept. (When `id` is exactly
                // the newest trimmed entry this says truncated although nothing after
                // it is missing: Redis does not record that id. Never the reverse.)
                let dropped = as_id(&max_deleted, "max-deleted-entry-id")? > id
                    || (as_i64(&dropped, "dropped count")? > 0
                        && id < as_id(&first, "recorded-first-entry-id")?);
                let over = newer.len() > limit;
                let mut p = page(newer, limit, older, false);
                p.truncated = over || dropped;
                Ok(p)
            }
        }
    }

    /// Entries strictly after `after`, oldest first, at most `count`.
    async fn range_after(
        &self,
        key: &str,
        after: MessageId,
        count: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        if after == MessageId::MAX {
            return Ok(Vec::new());
        }
        let v: Value = self
            .query(
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg(format!("({after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        entries(v)
    }

    async fn presence_add(
        &self,
        hash: &str,
        user: &str,
        field: &str,
        room: Option<&str>,
    ) -> Result<u64, BackendError> {
        self.presence_change(&scripts::PRESENCE_ADD, hash, user, field, room)
            .await
    }

    async fn presence_remove(
        &self,
        hash: &str,
        user: &str,
        field: &str,
        room: Option<&str>,
    ) -> Result<u64, BackendError> {
        self.presence_change(&scripts::PRESENCE_REMOVE, hash, user, field, room)
            .await
    }

    async fn presence_change(
        &self,
        script: &redis::Script,
        hash: &str,
        user: &str,
        field: &str,
        room: Option<&str>,
    ) -> Result<u64, BackendError> {
        let mut inv = script.prepare_invoke();
        inv.key(hash)
            .key(Keys::names(hash))
            .key(self.keys.gateway_conns(&self.gateway_id))
            .arg(user)
            .arg(field);
        if let Some(room) = room {
            inv.key(self.keys.presence_rooms()).arg(room);
        }
        let n: i64 = self.invoke(&inv).await?;
        Ok(n.max(0) as u64)
    }

    /// Which of `ids` are tombstoned in `room` (one HMGET).
    async fn tombstoned(&self, room: &str, ids: &[MessageId]) -> Result<Vec<bool>, BackendError> {
        let fields: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let v: Vec<Option<String>> = self
            .query(
                redis::cmd("HMGET")
                    .arg(self.keys.room_deleted(room))
                    .arg(&fields),
            )
            .await?;
        Ok(v.into_iter().map(|x| x.is_some()).collect())
    }

    async fn presence_read(
        &self,
        hash: &str,
        limit: usize,
    ) -> Result<(Vec<UserEntry>, u64), BackendError> {
        let mut inv = scripts::PRESENCE_READ.prepare_invoke();
        inv.key(hash)
            .key(Keys::names(hash))
            .key(self.keys.known_users())
            .arg(limit.min(1 << 40));
        let v: Value = self.invoke(&inv).await?;
        let mut items = as_array(v, "presence read")?.into_iter();
        let total = items
            .next()
            .map(|t| as_i64(&t, "presence total"))
            .transpose()?
            .unwrap_or(0);
        let rest: Vec<Value> = items.collect();
        let mut users = Vec::with_capacity(rest.len() / 3);
        for triple in rest.chunks(3) {
            let [id, count, name] = triple else {
                return Err(BackendError::Internal("short presence reply".into()));
            };
            let id = as_string(id, "presence id")?;
            let name = match name {
                Value::Nil => id.clone(),
                n => as_string(n, "presence name")?,
            };
            users.push(UserEntry {
                id,
                name,
                connections: as_i64(count, "presence count")?.max(0) as u64,
            });
        }
        Ok((users, total.max(0) as u64))
    }
}

fn empty_message() -> Message {
    Message {
        id: MessageId::ZERO,
        room: String::new(),
        from: String::new(),
        from_id: String::new(),
        text: String::new(),
        ts: 0,
        client_id: None,
        deleted: false,
    }
}

fn empty_page<T>() -> HistoryPage<T> {
    HistoryPage {
        items: Vec::new(),
        has_more: false,
        truncated: false,
    }
}

fn decode_page<T>(
    page: HistoryPage<Entry>,
    mut f: impl FnMut(MessageId, &[u8]) -> Result<T, BackendError>,
) -> Result<HistoryPage<T>, BackendError> {
    Ok(HistoryPage {
        items: page
            .items
            .iter()
            .map(|(id, body)| f(*id, body))
            .collect::<Result<_, _>>()?,
        has_more: page.has_more,
        truncated: page.truncated,
    })
}

/// A random gateway id (64 bits from the std hasher's random keys, clock and pid).
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::now_ms());
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Round trip of every Redis command, script and pipeline (pool wait included), by
/// outcome (`ok`, `error`, `timeout`).
pub const REDIS_COMMAND_SECONDS: &str = "confab_redis_command_seconds";
/// 1 while the pub/sub connection is up and answered its last health check
/// (every `health_interval`), else 0.
pub const REDIS_UP: &str = "confab_redis_up";
/// From a message stored (its id: Redis's clock) to its pub/sub frame received by
/// this gateway.
pub const PUBSUB_LAG_SECONDS: &str = "confab_pubsub_lag_seconds";

/// Describe this backend's metrics (call once, after installing the recorder).
pub fn describe_metrics() {
    metrics::describe_histogram!(
        REDIS_COMMAND_SECONDS,
        metrics::Unit::Seconds,
        "Round trip of Redis commands, scripts and pipelines (pool wait included), by outcome (ok, error, timeout)"
    );
    metrics::describe_histogram!(
        PUBSUB_LAG_SECONDS,
        metrics::Unit::Seconds,
        "From a message or DM stored (its id, on Redis's clock) to its pub/sub frame received by this gateway"
    );
    metrics::describe_gauge!(
        REDIS_UP,
        "1 while this gateway's Redis pub/sub connection is up and answered its last health check (every second), else 0"
    );
}

/// One gateway's handle on a Redis-backed cluster.
///
/// Background tasks (pub/sub reader, heartbeat, reaper) stop when the node is
/// dropped or on [`RedisNode::shutdown`]. Dropping without `shutdown` leaves this
/// gateway's presence in Redis until the reaper of another node removes it (after
/// the heartbeat TTL), exactly as a crash would.
pub struct RedisNode {
    shared: Arc<Shared>,
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

impl RedisNode {
    /// Connect to Redis at `url` (e.g. `redis://127.0.0.1:6379/`), open this node's
    /// pub/sub connection, register the gateway and start the background tasks.
    /// Fails with [`BackendError::Unavailable`] if Redis cannot be reached now, and
    /// [`BackendError::Internal`] for a bad URL. Must be called inside a tokio runtime.
    ///
    /// Credentials go in the URL: `redis://:PASSWORD@host:6379/` (`requirepass`) or
    /// `redis://USER:PASSWORD@host:6379/` (ACL), percent-encoded. `rediss://` is TLS
    /// (rustls), verified against the system roots, or against the PEM file named by
    /// `SSL_CERT_FILE` (a private CA) when that is set. No error of this function
    /// contains the password (see [`RedisNode::redact_url`]).
    pub async fn connect(
        url: &str,
        config: RedisConfig,
    ) -> Result<(Arc<RedisNode>, EventReceiver), BackendError> {
        let secrets = RedisNode::url_secrets(url);
        let scrub = |e: BackendError| match e {
            BackendError::Unavailable(m) => {
                BackendError::Unavailable(RedisNode::scrub_secrets(m, &secrets))
            }
            BackendError::Internal(m) => {
                BackendError::Internal(RedisNode::scrub_secrets(m, &secrets))
            }
            BackendError::NotCreated => BackendError::NotCreated,
        };
        let bad_url = |e: redis::RedisError| {
            scrub(BackendError::Internal(format!(
                "redis url {}: {e}",
                RedisNode::redact_url(url)
            )))
        };
        let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
        if scheme == "rediss" || scheme == "valkeys" {
            // rustls needs a crypto provider; ring is the one compiled in. Already
            // installed (another connect, or by the application) is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(url).map_err(bad_url)?;
        let t = Some(config.command_timeout);
        let conn_config = AsyncConnectionConfig::new()
            .set_connection_timeout(t)
            .set_response_timeout(t);
        let manager =
            deadpool_redis::Manager::new_with_config(url, conn_config).map_err(bad_url)?;
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .wait_timeout(t)
            .create_timeout(t)
            .recycle_timeout(t)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| BackendError::Internal(format!("redis pool: {e}")))?;
        let gateway_id = config.gateway_id.clone().unwrap_or_else(random_id);
        if config.heartbeat_ttl <= config.heartbeat_interval {
            tracing::warn!(
                "heartbeat_ttl {:?} <= heartbeat_interval {:?}: live gateways will be reaped",
                config.heartbeat_ttl,
                config.heartbeat_interval
            );
        }
        let (tx, rx) = crate::event_channel();
        let shared = Arc::new(Shared {
            keys: Keys::new(&config.key_prefix),
            cfg: config,
            gateway_id,
            pool,
            client,
            events: tx,
            cursors: parking_lot::Mutex::new(Cursors::default()),
            sink: tokio::sync::Mutex::new(None),
            connected: AtomicBool::new(false),
            beaten: AtomicBool::new(false),
            stats: Counters::default(),
            cancel: CancellationToken::new(),
        });
        let (sink, stream) = shared.open_pubsub().await.map_err(scrub)?.split();
        *shared.sink.lock().await = Some(sink.clone());
        shared.connected.store(true, Ordering::SeqCst);
        shared.beat().await.map_err(scrub)?;
        tokio::spawn(subscriber::run_reader(shared.clone(), Some((sink, stream))));
        tokio::spawn(gateway::run_heartbeat(shared.clone()));
        tokio::spawn(gateway::run_reaper(shared.clone()));
        tracing::info!(gateway = %shared.gateway_id, "redis backend connected");
        Ok((Arc::new(RedisNode { shared }), rx))
    }

    /// `url` fit for logs and error messages: the password, and any `pass=` or
    /// `password=` query value (unix socket URLs), replaced by `***`:
    /// `redis://:***@host:6379/`, `redis://user:***@host/`. Also for malformed
    /// URLs: everything between `://` and the last `@` counts as credentials (the
    /// user name before its first `:` is kept), so a typo never echoes the secret.
    pub fn redact_url(url: &str) -> String {
        let (scheme, rest) = match url.find("://") {
            Some(i) => url.split_at(i + 3),
            None => ("", url),
        };
        let mut out = String::with_capacity(url.len());
        out.push_str(scheme);
        let rest = match rest.rfind('@') {
            Some(at) => {
                match rest[..at].split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push_str(":***@");
                    }
                    None => out.push_str("***@"),
                }
                &rest[at + 1..]
            }
            None => rest,
        };
        let Some((path, query)) = rest.split_once('?') else {
            out.push_str(rest);
            return out;
        };
        let (query, fragment) = match query.find('#') {
            Some(h) => query.split_at(h),
            None => (query, ""),
        };
        out.push_str(path);
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if Self::is_secret_param(k) => {
                    out.push_str(k);
                    out.push_str("=***");
                }
                _ => out.push_str(pair),
            }
        }
        out.push_str(fragment);
        out
    }

    fn is_secret_param(key: &str) -> bool {
        key.eq_ignore_ascii_case("pass") || key.eq_ignore_ascii_case("password")
    }

    /// The secrets in `url` (as written and percent-decoded), for [`Self::scrub_secrets`].
    fn url_secrets(url: &str) -> Vec<String> {
        let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
        let mut raw = Vec::new();
        if let Some(at) = rest.rfind('@') {
            let userinfo = &rest[..at];
            raw.push(userinfo.split_once(':').map_or(userinfo, |(_, pw)| pw));
        }
        if let Some((_, query)) = rest.split_once('?') {
            let query = query.split('#').next().unwrap_or("");
            raw.extend(query.split('&').filter_map(|pair| {
                pair.split_once('=')
                    .filter(|(k, _)| Self::is_secret_param(k))
                    .map(|(_, v)| v)
            }));
        }
        let mut out: Vec<String> = Vec::new();
        for s in raw.into_iter().filter(|s| !s.is_empty()) {
            out.push(s.to_string());
            let bytes = s.as_bytes();
            let mut dec = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    bytes[i],
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (b'%', Some(h), Some(l)) => {
                        dec.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    (b, _, _) => {
                        dec.push(b);
                        i += 1;
                    }
                }
            }
            let dec = String::from_utf8_lossy(&dec).into_owned();
            if dec != s {
                out.push(dec);
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out
    }

    /// `msg` with every secret replaced by `***` (defence in depth: the redis
    /// crate's errors do not quote the URL, but nothing here relies on that).
    fn scrub_secrets(mut msg: String, secrets: &[String]) -> String {
        for s in secrets {
            if msg.contains(s.as_str()) {
                msg = msg.replace(s.as_str(), "***");
            }
        }
        msg
    }

    /// This gateway's id (key `confab:gw:<id>`).
    pub fn gateway_id(&self) -> &str {
        &self.shared.gateway_id
    }

    /// Graceful stop: stop the background tasks (no more events are delivered), undo
    /// this gateway's presence, publish the resulting `left` signals and unregister.
    pub async fn shutdown(&self) -> Result<(), BackendError> {
        self.shared.cancel.cancel();
        self.shared.connected.store(false, Ordering::SeqCst);
        let left = self.shared.reap(&self.shared.gateway_id, true).await?;
        self.shared.announce_left(left).await;
        self.shared
            .query::<Value>(
                redis::cmd("DEL").arg(self.shared.keys.gateway(&self.shared.gateway_id)),
            )
            .await?;
        Ok(())
    }

    /// Test hook: stop the background tasks *without* undoing presence, as if the
    /// process had crashed. The heartbeat lapses and another node reaps this
    /// gateway's presence after the TTL.
    pub fn abandon(&self) {
        self.shared.cancel.cancel();
        self.shared.connected.store(false, Ordering::SeqCst);
    }

    /// Pub/sub recovery counters.
    pub fn stats(&self) -> RedisStats {
        RedisStats {
            reconnects: self.shared.stats.reconnects.load(Ordering::Relaxed),
            caught_up: self.shared.stats.caught_up.load(Ordering::Relaxed),
        }
    }

    /// Run one reaper pass now (normally done every `reap_interval`). Returns how
    /// many dead gateways were reaped (0 if another node holds the reaper lock).
    pub async fn reap_now(&self) -> Result<usize, BackendError> {
        self.shared.reap_dead().await
    }
}

#[async_trait]
impl Broker for RedisNode {
    async fn publish_message(&self, draft: NewMessage) -> Result<Message, BackendError> {
        let s = &self.shared;
        let NewMessage {
            room,
            from_id,
            from,
            text,
            client_id,
            create,
        } = draft;
        let idem = match &client_id {
            Some(c) => s.keys.idempotency(&from_id, &format!("room:{room}"), c),
            None => String::new(),
        };
        let stored = codec::StoredMessage {
            from,
            from_id,
            text,
            client_id,
            deleted: false,
        };
        let mut inv = scripts::PUBLISH_MESSAGE.prepare_invoke();
        inv.key(s.keys.room_log(&room))
            .key(idem)
            .key(s.keys.room_deleted(&room))
            .arg(s.retention())
            .arg(encode(&stored)?)
            .arg(s.keys.room_channel(&room))
            .arg(s.idempotency_secs())
            .arg(&room)
            .arg(s.max_age_ms())
            .arg(if create { "1" } else { "0" });
        let reply: Value = s.invoke(&inv).await?;
        match codec::publish_reply(reply)? {
            codec::Published::New(id) => Ok(stored.into_message(&room, as_id(&id, "message id")?)),
            codec::Published::Duplicate(prev) => codec::original_message(&prev),
            codec::Published::NotCreated => Err(BackendError::NotCreated),
        }
    }

    async fn publish_dm(&self, draft: NewDm) -> Result<DirectMessage, BackendError> {
        let s = &self.shared;
        let stored = codec::StoredDm {
            from: draft.from,
            from_id: draft.from_id,
            to: draft.to,
            text: draft.text,
            client_id: draft.client_id,
        };
        let idem = match &stored.client_id {
            Some(c) => s.keys.idempotency(&stored.from_id, "dm", c),
            None => String::new(),
        };
        let mut inv = scripts::PUBLISH_DM.prepare_invoke();
        inv.key(s.keys.dm_log(&stored.from_id, &stored.to))
            .key(s.keys.user_peers(&stored.from_id))
            .key(s.keys.user_peers(&stored.to))
            .key(idem)
            .key(s.keys.unread(&stored.to))
            .key(s.keys.dm_inbox(&stored.to))
            .arg(s.retention())
            .arg(encode(&stored)?)
            .arg(s.keys.user_channel(&stored.from_id))
            .arg(s.keys.user_channel(&stored.to))
            .arg(&stored.from_id)
            .arg(&stored.to)
            .arg(s.idempotency_secs())
            .arg(s.max_age_ms());
        let reply: Value = s.invoke(&inv).await?;
        match codec::publish_reply(reply)? {
            codec::Published::New(id) => Ok(stored.into_dm(as_id(&id, "dm id")?)),
            codec::Published::Duplicate(prev) => codec::original_dm(&prev),
            codec::Published::NotCreated => Err(BackendError::Internal(
                "unexpected publish reply {2} for a DM".into(),
            )),
        }
    }

    async fn publish_signal(&self, room: &str, signal: Signal) -> Result<(), BackendError> {
        self.shared.publish_signal(room, &signal).await
    }

    async fn publish_user_signal(
        &self,
        user: &str,
        signal: UserSignal,
    ) -> Result<(), BackendError> {
        let s = &self.shared;
        let frame = codec::user_signal_frame(&signal)?;
        let _: i64 = s
            .query(
                redis::cmd("PUBLISH")
                    .arg(s.keys.user_channel(user))
                    .arg(frame),
            )
            .await?;
        Ok(())
    }

    async fn room_message(
        &self,
        room: &str,
        id: MessageId,
    ) -> Result<Option<Message>, BackendError> {
        let s = &self.shared;
        let v: Value = s
            .query(
                redis::cmd("XRANGE")
                    .arg(s.keys.room_log(room))
                    .arg(id.to_string())
                    .arg(id.to_string())
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        let Some((id, body)) = entries(v)?.into_iter().next() else {
            return Ok(None);
        };
        let mut msg = codec::decode::<codec::StoredMessage>(&body)?.into_message(room, id);
        if s.tombstoned(room, &[id]).await?[0] {
            msg = msg.tombstone();
        }
        Ok(Some(msg))
    }

    async fn delete_message(&self, room: &str, id: MessageId) -> Result<bool, BackendError> {
        let s = &self.shared;
        let Some(msg) = self.room_message(room, id).await? else {
            return Ok(false);
        };
        let (idem, record) = match &msg.client_id {
            Some(c) => {
                let tomb = codec::StoredMessage {
                    from: msg.from.clone(),
                    from_id: msg.from_id.clone(),
                    text: String::new(),
                    client_id: None,
                    deleted: true,
                };
                let mut rec = format!("{id}|{room}|").into_bytes();
                rec.extend(encode(&tomb)?);
                (
                    s.keys.idempotency(&msg.from_id, &format!("room:{room}"), c),
                    rec,
                )
            }
            None => (String::new(), Vec::new()),
        };
        let frame = codec::signal_frame(&Signal::Deleted { id })?;
        let mut inv = scripts::DELETE_MESSAGE.prepare_invoke();
        inv.key(s.keys.room_log(room))
            .key(s.keys.room_deleted(room))
            .key(idem)
            .arg(id.to_string())
            .arg(s.keys.room_channel(room))
            .arg(frame)
            .arg(record);
        let n: i64 = s.invoke(&inv).await?;
        Ok(n == 1)
    }

    async fn subscribe(&self, topic: &Topic) -> Result<(), BackendError> {
        self.shared.subscribe(topic).await
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BackendError> {
        self.shared.unsubscribe(topic).await
    }

    async fn room_history(
        &self,
        room: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage<Message>, BackendError> {
        let page = self
            .shared
            .read_page(&self.shared.keys.room_log(room), query)
            .await?;
        let mut page = decode_page(page, |id, body| {
            Ok(codec::decode::<codec::StoredMessage>(body)?.into_message(room, id))
        })?;
        if !page.items.is_empty() {
            let ids: Vec<MessageId> = page.items.iter().map(|m| m.id).collect();
            let dead = self.shared.tombstoned(room, &ids).await?;
            for (m, dead) in page.items.iter_mut().zip(dead) {
                if dead {
                    *m = std::mem::replace(m, empty_message()).tombstone();
                }
            }
        }
        Ok(page)
    }

    async fn dm_history(
        &self,
        a: &str,
        b: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage<DirectMessage>, BackendError> {
        let page = self
            .shared
            .read_page(&self.shared.keys.dm_log(a, b), query)
            .await?;
        decode_page(page, |id, body| {
            Ok(codec::decode::<codec::StoredDm>(body)?.into_dm(id))
        })
    }

    async fn dm_unread(&self, user: &str) -> Result<Vec<(String, u64)>, BackendError> {
        let s = &self.shared;
        let map: std::collections::BTreeMap<String, u64> = s
            .query(redis::cmd("HGETALL").arg(s.keys.unread(user)))
            .await?;
        Ok(map.into_iter().filter(|(_, n)| *n > 0).collect())
    }

    async fn dm_mark_read(
        &self,
        user: &str,
        peer: &str,
        up_to: MessageId,
    ) -> Result<u64, BackendError> {
        let s = &self.shared;
        let mut inv = scripts::DM_MARK_READ.prepare_invoke();
        inv.key(s.keys.dm_inbox(user))
            .key(s.keys.unread(user))
            .arg(peer)
            .arg(keys::padded_id(up_to))
            .arg(s.keys.user_channel(user))
            .arg(encode(&(peer, up_to))?);
        s.invoke(&inv).await
    }

    async fn ready(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
            && !self.shared.cancel.is_cancelled()
            && self.shared.ping().await.is_ok()
    }
}

#[async_trait]
impl Presence for RedisNode {
    async fn connect(&self, user: &str, name: &str) -> Result<u64, BackendError> {
        let s = &self.shared;
        let n = s
            .presence_add(
                &s.keys.presence_online(),
                user,
                &conn_online_field(user),
                None,
            )
            .await?;
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(s.keys.known_users())
            .arg(user)
            .arg(name)
            .ignore()
            .cmd("ZADD")
            .arg(s.keys.last_seen())
            .arg(crate::now_ms())
            .arg(user)
            .ignore();
        let () = s.query_pipe(&pipe).await?;
        Ok(n)
    }

    async fn is_known(&self, user: &str) -> Result<bool, BackendError> {
        let s = &self.shared;
        s.query(redis::cmd("HEXISTS").arg(s.keys.known_users()).arg(user))
            .await
    }

    async fn disconnect(&self, user: &str) -> Result<u64, BackendError> {
        let s = &self.shared;
        let n = s
            .presence_remove(
                &s.keys.presence_online(),
                user,
                &conn_online_field(user),
                None,
            )
            .await?;
        let _: i64 = s
            .query(
                redis::cmd("ZADD")
                    .arg(s.keys.last_seen())
                    .arg("XX")
                    .arg(crate::now_ms())
                    .arg(user),
            )
            .await?;
        Ok(n)
    }

    async fn prune_idle_users(&self, idle: Duration, limit: usize) -> Result<u64, BackendError> {
        let s = &self.shared;
        let now = crate::now_ms();
        let mut inv = scripts::PRUNE_IDLE_USERS.prepare_invoke();
        inv.key(s.keys.last_seen())
            .key(s.keys.presence_online())
            .key(s.keys.known_users())
            .arg(now.saturating_sub(idle.as_millis() as u64))
            .arg(limit)
            .arg(s.keys.prefix())
            .arg(now);
        s.invoke(&inv).await
    }

    async fn join(&self, room: &str, user: &str) -> Result<u64, BackendError> {
        let s = &self.shared;
        s.presence_add(
            &s.keys.presence_room(room),
            user,
            &conn_room_field(room, user),
            Some(room),
        )
        .await
    }

    async fn leave(&self, room: &str, user: &str) -> Result<u64, BackendError> {
        let s = &self.shared;
        s.presence_remove(
            &s.keys.presence_room(room),
            user,
            &conn_room_field(room, user),
            Some(room),
        )
        .await
    }

    async fn room_members(
        &self,
        room: &str,
        limit: usize,
    ) -> Result<(Vec<UserEntry>, u64), BackendError> {
        self.shared
            .presence_read(&self.shared.keys.presence_room(room), limit)
            .await
    }

    async fn online_users(&self, limit: usize) -> Result<(Vec<UserEntry>, u64), BackendError> {
        self.shared
            .presence_read(&self.shared.keys.presence_online(), limit)
            .await
    }

    async fn connections(&self, user: &str) -> Result<u64, BackendError> {
        let n: Option<i64> = self
            .shared
            .query(
                redis::cmd("HGET")
                    .arg(self.shared.keys.presence_online())
                    .arg(user),
            )
            .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    async fn rooms(&self, limit: usize) -> Result<Vec<RoomEntry>, BackendError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let v: Value = self
            .shared
            .query(
                redis::cmd("ZRANGE")
                    .arg(self.shared.keys.presence_rooms())
                    .arg(0)
                    .arg(limit.min(1 << 40) - 1)
                    .arg("WITHSCORES"),
            )
            .await?;
        // RESP2: flat [room, score, ...]; RESP3: [[room, score], ...].
        let mut items = Vec::new();
        for item in as_array(v, "rooms")? {
            match item {
                Value::Array(pair) => items.extend(pair),
                other => items.push(other),
            }
        }
        let mut rooms = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks(2) {
            let [room, score] = pair else {
                return Err(BackendError::Internal("odd rooms reply".into()));
            };
            rooms.push(RoomEntry {
                room: as_string(room, "room name")?,
                members: (-as_i64(score, "room score")?).max(0) as u64,
                private: false,
            });
        }
        Ok(rooms)
    }

    async fn room_sizes(&self, rooms: &[String]) -> Result<Vec<u64>, BackendError> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for room in rooms {
            pipe.cmd("HLEN").arg(self.shared.keys.presence_room(room));
        }
        let sizes: Vec<i64> = self.shared.query_pipe(&pipe).await?;
        Ok(sizes.into_iter().map(|n| n.max(0) as u64).collect())
    }

    async fn claim_name(
        &self,
        key: &str,
        user: &str,
        hold: std::time::Duration,
    ) -> Result<Option<String>, BackendError> {
        let s = &self.shared;
        let mut inv = scripts::CLAIM_NAME.prepare_invoke();
        inv.key(s.keys.name_claim(key))
            .arg(user)
            .arg(hold.as_millis().max(1) as u64);
        let holder: String = s.invoke(&inv).await?;
        Ok((!holder.is_empty()).then_some(holder))
    }

    async fn renew_name(
        &self,
        key: &str,
        user: &str,
        hold: std::time::Duration,
    ) -> Result<bool, BackendError> {
        let s = &self.shared;
        let mut inv = scripts::RENEW_NAME.prepare_invoke();
        inv.key(s.keys.name_claim(key))
            .arg(user)
            .arg(hold.as_millis().max(1) as u64);
        let n: i64 = s.invoke(&inv).await?;
        Ok(n == 1)
    }

    async fn release_name(&self, key: &str, user: &str) -> Result<bool, BackendError> {
        let s = &self.shared;
        let mut inv = scripts::RELEASE_NAME.prepare_invoke();
        inv.key(s.keys.name_claim(key)).arg(user);
        let n: i64 = s.invoke(&inv).await?;
        Ok(n == 1)
    }

    async fn shared_secret(&self, name: &str, proposed: &[u8]) -> Result<Vec<u8>, BackendError> {
        let s = &self.shared;
        let key = s.keys.secret(name);
        let _: Value = s
            .query(redis::cmd("SET").arg(&key).arg(proposed).arg("NX"))
            .await?;
        let v: Vec<u8> = s.query(redis::cmd("GET").arg(&key)).await?;
        if v.is_empty() {
            return Err(BackendError::Internal(format!("secret {name} is empty")));
        }
        Ok(v)
    }
}
