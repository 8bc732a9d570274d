//! The in-memory backend: the embedded default (one process, no Redis).
//!
//! A [`MemoryHub`] holds the shared state: a bounded log per room and per DM
//! conversation, presence counts, and which node subscribed to which topic. Each
//! gateway gets a [`MemoryNode`] from the hub (normally exactly one; the conformance
//! suite creates several to check fan-out between nodes like the Redis backend's).
//!
//! Publishing takes the log lock, appends and hands the event to every subscribed
//! node's channel before releasing it, so delivery order equals history order.

use crate::{
    dm_pair, now_ms, Access, AuditEntry, BackendConfig, BackendError, Broker, BusEvent,
    EventReceiver, EventSender, HistoryPage, HistoryQuery, NewDm, NewMessage, Presence, RateBucket,
    RoomMeta, SanctionKind, Signal, Topic, UserSignal,
};
use async_trait::async_trait;
use confab_core::protocol::{RoomEntry, UserEntry};
use confab_core::{DirectMessage, Message, MessageId};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Something stored in a log, ordered by id.
pub trait Entry: Clone {
    fn id(&self) -> MessageId;
}
impl Entry for Message {
    fn id(&self) -> MessageId {
        self.id
    }
}
impl Entry for DirectMessage {
    fn id(&self) -> MessageId {
        self.id
    }
}

/// A bounded, id-ordered log (the memory twin of a capped Redis stream).
#[derive(Debug)]
pub struct Log<T> {
    items: VecDeque<T>,
    last_id: MessageId,
    /// Greatest id dropped by retention (Redis: `max-deleted-entry-id`).
    max_deleted: Option<MessageId>,
    retention: usize,
}

impl<T: Entry> Log<T> {
    pub fn new(retention: usize) -> Self {
        Self {
            items: VecDeque::new(),
            last_id: MessageId::ZERO,
            max_deleted: None,
            retention: retention.max(1),
        }
    }

    /// The id the next entry gets at wall-clock `now`.
    pub fn next_id(&self, now: u64) -> MessageId {
        self.last_id.next(now)
    }

    pub fn push(&mut self, item: T) {
        self.last_id = item.id();
        self.items.push_back(item);
        while self.items.len() > self.retention {
            if let Some(old) = self.items.pop_front() {
                self.max_deleted = Some(old.id());
            }
        }
    }

    /// Drop the entries older than `cutoff_ms` (age retention); true if the log
    /// is empty after.
    pub fn expire(&mut self, cutoff_ms: u64) -> bool {
        while self.items.front().is_some_and(|m| m.id().ms < cutoff_ms) {
            if let Some(old) = self.items.pop_front() {
                self.max_deleted = Some(old.id());
            }
        }
        self.items.is_empty()
    }

    /// The oldest entry's id, if any is kept.
    pub fn first_id(&self) -> Option<MessageId> {
        self.items.front().map(|m| m.id())
    }

    /// The entry with id `id`, if kept.
    pub fn get(&self, id: MessageId) -> Option<&T> {
        let i = self.items.partition_point(|m| m.id() < id);
        self.items.get(i).filter(|m| m.id() == id)
    }

    /// Change the entry with id `id` in place; false if it is not kept.
    pub fn update(&mut self, id: MessageId, f: impl FnOnce(&mut T)) -> bool {
        let i = self.items.partition_point(|m| m.id() < id);
        match self.items.get_mut(i).filter(|m| m.id() == id) {
            Some(m) => {
                f(m);
                true
            }
            None => false,
        }
    }

    pub fn read(&self, query: HistoryQuery) -> HistoryPage<T> {
        let len = self.items.len();
        let (start, end, truncated) = match query {
            HistoryQuery::Latest { limit } => (len.saturating_sub(limit), len, false),
            HistoryQuery::Before { id, limit } => {
                let end = self.items.partition_point(|m| m.id() < id);
                (end.saturating_sub(limit), end, false)
            }
            HistoryQuery::After { id, limit } => {
                let first_newer = self.items.partition_point(|m| m.id() <= id);
                let start = first_newer.max(len.saturating_sub(limit));
                let dropped = self.max_deleted.is_some_and(|d| d > id);
                (start, len, start > first_newer || dropped)
            }
        };
        HistoryPage {
            items: self.items.range(start..end).cloned().collect(),
            has_more: start > 0,
            truncated,
        }
    }
}

type NodeId = u64;

/// Publishes between two sweeps of aged history.
const SWEEP_EVERY: u64 = 4096;

#[derive(Default)]
struct Logs {
    rooms: HashMap<String, Log<Message>>,
    dms: HashMap<(String, String), Log<DirectMessage>>,
    subs: HashMap<Topic, HashSet<NodeId>>,
    nodes: HashMap<NodeId, EventSender>,
    idem: Idempotency,
    /// recipient → sender → DMs not yet read.
    unread: HashMap<String, BTreeMap<String, u64>>,
    /// Messages and DMs published (the age sweep runs every [`SWEEP_EVERY`]).
    publishes: u64,
    /// recipient → sender → ids of the DMs not yet read (read ones leave it).
    inbox: HashMap<String, BTreeMap<String, BTreeSet<MessageId>>>,
}

/// What a (user, client id) was first used for, kept for the idempotency window.
#[derive(Clone)]
enum Original {
    Message(Message),
    Dm(DirectMessage),
}

/// Client ids seen within the window, with their expiry in insertion order.
#[derive(Default)]
struct Idempotency {
    seen: HashMap<(&'static str, String, String), Original>,
    expiry: VecDeque<(Instant, (&'static str, String, String))>,
}

impl Idempotency {
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.expiry.front() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.expiry.pop_front() {
                self.seen.remove(&key);
            }
        }
    }

    fn get(&mut self, key: &(&'static str, String, String)) -> Option<Original> {
        self.expire(Instant::now());
        self.seen.get(key).cloned()
    }

    fn put(&mut self, key: (&'static str, String, String), original: Original, window: Duration) {
        self.expiry
            .push_back((Instant::now() + window, key.clone()));
        self.seen.insert(key, original);
    }
}

impl Logs {
    fn deliver(&self, topic: &Topic, event: &BusEvent, also: Option<&Topic>) {
        let mut sent: HashSet<NodeId> = HashSet::new();
        for t in std::iter::once(topic).chain(also) {
            if let Some(nodes) = self.subs.get(t) {
                for n in nodes {
                    if sent.insert(*n) {
                        if let Some(tx) = self.nodes.get(n) {
                            let _ = tx.send(event.clone());
                        }
                    }
                }
            }
        }
    }
}

#[derive(Default)]
struct PresenceState {
    /// Every user id that connected (until pruned as idle), with its latest
    /// display name.
    known: HashMap<String, String>,
    /// When each known user was last seen (connected or disconnected), in ms.
    seen: HashMap<String, u64>,
    online: BTreeMap<String, u64>,
    rooms: HashMap<String, BTreeMap<String, u64>>,
    /// Name key → (holder id, hold expiry).
    claims: HashMap<String, (String, Instant)>,
    secrets: HashMap<String, Vec<u8>>,
}

#[derive(Default)]
struct AccessState {
    rooms: HashMap<String, RoomMeta>,
    /// room → member ids (created rooms only).
    members: HashMap<String, BTreeSet<String>>,
    /// user → roles.
    roles: HashMap<String, BTreeSet<String>>,
    /// (kind, user, room or "") → until.
    sanctions: HashMap<(SanctionKind, String, String), u64>,
    audit: VecDeque<AuditEntry>,
    audit_last: MessageId,
    /// Rate-limit buckets: key → (theoretical arrival time in ms, when it can go).
    rates: HashMap<String, (f64, u64)>,
}

/// The shared state of one embedded chat.
pub struct MemoryHub {
    config: BackendConfig,
    logs: Mutex<Logs>,
    presence: Mutex<PresenceState>,
    access: Mutex<AccessState>,
    /// The gateways' status reports, by node id (see [`crate::Status`]).
    gateway_status: Mutex<HashMap<String, confab_core::protocol::GatewayStatus>>,
    next_node: AtomicU64,
}

impl MemoryHub {
    pub fn new(config: BackendConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            logs: Mutex::new(Logs::default()),
            presence: Mutex::new(PresenceState::default()),
            access: Mutex::new(AccessState::default()),
            gateway_status: Mutex::new(HashMap::new()),
            next_node: AtomicU64::new(1),
        })
    }

    /// Ids older than this (ms) have left history (`--history-max-age`).
    fn age_cutoff(&self) -> Option<u64> {
        self.config
            .history_max_age
            .map(|age| now_ms().saturating_sub(age.as_millis() as u64))
    }

    /// Drop aged entries everywhere, and logs left empty (every
    /// [`SWEEP_EVERY`] publishes: rooms nobody writes to or reads age out too).
    fn sweep(&self, logs: &mut Logs) {
        let Some(cutoff) = self.age_cutoff() else {
            return;
        };
        logs.rooms.retain(|_, l| !l.expire(cutoff));
        logs.dms.retain(|_, l| !l.expire(cutoff));
    }

    /// A new node (gateway) attached to this hub, with its event receiver.
    pub fn node(self: &Arc<Self>) -> (Arc<MemoryNode>, EventReceiver) {
        let id = self.next_node.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crate::event_channel();
        self.logs.lock().nodes.insert(id, tx);
        (
            Arc::new(MemoryNode {
                id,
                hub: self.clone(),
            }),
            rx,
        )
    }
}

/// One gateway's handle on a [`MemoryHub`]; implements [`Broker`] and [`Presence`].
pub struct MemoryNode {
    id: NodeId,
    hub: Arc<MemoryHub>,
}

impl Drop for MemoryNode {
    fn drop(&mut self) {
        let mut logs = self.hub.logs.lock();
        logs.nodes.remove(&self.id);
        logs.subs.retain(|_, nodes| {
            nodes.remove(&self.id);
            !nodes.is_empty()
        });
    }
}

#[async_trait]
impl Broker for MemoryNode {
    async fn publish_message(&self, draft: NewMessage) -> Result<Message, BackendError> {
        let retention = self.hub.config.history_retention;
        let mut logs = self.hub.logs.lock();
        let idem_key = draft.client_id.as_ref().map(|c| {
            (
                "room",
                draft.from_id.clone(),
                format!("{}\0{c}", draft.room),
            )
        });
        if let Some(key) = &idem_key {
            if let Some(Original::Message(m)) = logs.idem.get(key) {
                return Ok(m);
            }
        }
        if !draft.create {
            let cutoff = self.hub.age_cutoff();
            let kept = logs
                .rooms
                .get_mut(&draft.room)
                .is_some_and(|l| !cutoff.is_some_and(|c| l.expire(c)));
            if !kept {
                return Err(BackendError::NotCreated);
            }
        }
        let log = logs
            .rooms
            .entry(draft.room.clone())
            .or_insert_with(|| Log::new(retention));
        let ts = now_ms();
        let msg = Message {
            id: log.next_id(ts),
            room: draft.room,
            from: draft.from,
            from_id: draft.from_id,
            text: draft.text,
            ts,
            client_id: draft.client_id,
            deleted: false,
        };
        log.push(msg.clone());
        if let Some(age) = self.hub.config.history_max_age {
            log.expire(ts.saturating_sub(age.as_millis() as u64));
        }
        logs.publishes += 1;
        if logs.publishes.is_multiple_of(SWEEP_EVERY) {
            self.hub.sweep(&mut logs);
        }
        if let Some(key) = idem_key {
            let window = self.hub.config.idempotency_window;
            logs.idem.put(key, Original::Message(msg.clone()), window);
        }
        let topic = Topic::Room(msg.room.clone());
        logs.deliver(&topic, &BusEvent::Message(msg.clone()), None);
        Ok(msg)
    }

    async fn publish_dm(&self, draft: NewDm) -> Result<DirectMessage, BackendError> {
        let retention = self.hub.config.history_retention;
        let (a, b) = dm_pair(&draft.from_id, &draft.to);
        let key = (a.to_owned(), b.to_owned());
        let mut logs = self.hub.logs.lock();
        let idem_key = draft
            .client_id
            .as_ref()
            .map(|c| ("dm", draft.from_id.clone(), c.clone()));
        if let Some(k) = &idem_key {
            if let Some(Original::Dm(d)) = logs.idem.get(k) {
                return Ok(d);
            }
        }
        let log = logs.dms.entry(key).or_insert_with(|| Log::new(retention));
        let ts = now_ms();
        let dm = DirectMessage {
            id: log.next_id(ts),
            from: draft.from,
            from_id: draft.from_id,
            to: draft.to,
            text: draft.text,
            ts,
            client_id: draft.client_id,
        };
        log.push(dm.clone());
        if let Some(age) = self.hub.config.history_max_age {
            log.expire(ts.saturating_sub(age.as_millis() as u64));
        }
        // Unread entries of DMs history no longer holds (retention, age) go.
        let first = log.first_id().unwrap_or(dm.id);
        if dm.from_id != dm.to {
            let ids = logs
                .inbox
                .entry(dm.to.clone())
                .or_default()
                .entry(dm.from_id.clone())
                .or_default();
            ids.insert(dm.id);
            if ids.first().is_some_and(|f| *f < first) {
                *ids = ids.split_off(&first);
            }
            let n = ids.len() as u64;
            logs.unread
                .entry(dm.to.clone())
                .or_default()
                .insert(dm.from_id.clone(), n);
        }
        if let Some(k) = idem_key {
            let window = self.hub.config.idempotency_window;
            logs.idem.put(k, Original::Dm(dm.clone()), window);
        }
        let to = Topic::User(dm.to.clone());
        let from = Topic::User(dm.from_id.clone());
        logs.deliver(&to, &BusEvent::Dm(dm.clone()), Some(&from));
        Ok(dm)
    }

    async fn publish_signal(&self, room: &str, signal: Signal) -> Result<(), BackendError> {
        let logs = self.hub.logs.lock();
        let event = BusEvent::Signal {
            room: room.to_owned(),
            signal,
        };
        logs.deliver(&Topic::Room(room.to_owned()), &event, None);
        Ok(())
    }

    async fn publish_user_signal(
        &self,
        user: &str,
        signal: UserSignal,
    ) -> Result<(), BackendError> {
        let logs = self.hub.logs.lock();
        let event = BusEvent::UserSignal {
            user: user.to_owned(),
            signal,
        };
        logs.deliver(&Topic::User(user.to_owned()), &event, None);
        Ok(())
    }

    async fn room_message(
        &self,
        room: &str,
        id: MessageId,
    ) -> Result<Option<Message>, BackendError> {
        let logs = self.hub.logs.lock();
        Ok(logs.rooms.get(room).and_then(|l| l.get(id)).cloned())
    }

    async fn delete_message(&self, room: &str, id: MessageId) -> Result<bool, BackendError> {
        let mut logs = self.hub.logs.lock();
        let Some(log) = logs.rooms.get_mut(room) else {
            return Ok(false);
        };
        let mut tomb = None;
        if !log.update(id, |m| {
            let client_id = m.client_id.clone();
            *m = m.clone().tombstone();
            tomb = Some((m.clone(), client_id));
        }) {
            return Ok(false);
        }
        // A retry of its client id returns the tombstone, not the text.
        if let Some((t, Some(c))) = tomb {
            let key = ("room", t.from_id.clone(), format!("{room}\0{c}"));
            if let Some(orig) = logs.idem.seen.get_mut(&key) {
                *orig = Original::Message(t.clone());
            }
        }
        let event = BusEvent::Signal {
            room: room.to_owned(),
            signal: Signal::Deleted { id },
        };
        logs.deliver(&Topic::Room(room.to_owned()), &event, None);
        Ok(true)
    }

    async fn subscribe(&self, topic: &Topic) -> Result<(), BackendError> {
        let mut logs = self.hub.logs.lock();
        logs.subs.entry(topic.clone()).or_default().insert(self.id);
        Ok(())
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BackendError> {
        let mut logs = self.hub.logs.lock();
        if let Some(nodes) = logs.subs.get_mut(topic) {
            nodes.remove(&self.id);
            if nodes.is_empty() {
                logs.subs.remove(topic);
            }
        }
        Ok(())
    }

    async fn room_history(
        &self,
        room: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage<Message>, BackendError> {
        let mut logs = self.hub.logs.lock();
        let cutoff = self.hub.age_cutoff();
        if let (Some(cutoff), Some(log)) = (cutoff, logs.rooms.get_mut(room)) {
            if log.expire(cutoff) {
                logs.rooms.remove(room);
            }
        }
        Ok(match logs.rooms.get(room) {
            Some(log) => log.read(query),
            None => empty_page(),
        })
    }

    async fn dm_history(
        &self,
        a: &str,
        b: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage<DirectMessage>, BackendError> {
        let (a, b) = dm_pair(a, b);
        let key = (a.to_owned(), b.to_owned());
        let mut logs = self.hub.logs.lock();
        let cutoff = self.hub.age_cutoff();
        if let (Some(cutoff), Some(log)) = (cutoff, logs.dms.get_mut(&key)) {
            if log.expire(cutoff) {
                logs.dms.remove(&key);
            }
        }
        Ok(match logs.dms.get(&key) {
            Some(log) => log.read(query),
            None => empty_page(),
        })
    }

    async fn dm_unread(&self, user: &str) -> Result<Vec<(String, u64)>, BackendError> {
        let logs = self.hub.logs.lock();
        Ok(logs
            .unread
            .get(user)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default())
    }

    async fn dm_mark_read(
        &self,
        user: &str,
        peer: &str,
        up_to: MessageId,
    ) -> Result<u64, BackendError> {
        // Read markers move forward only; O(log n) in the unread DMs, whatever
        // the conversation's length.
        let mut logs = self.hub.logs.lock();
        let remaining = match logs.inbox.get_mut(user) {
            Some(peers) => {
                let n = match peers.get_mut(peer) {
                    Some(ids) => {
                        let mut keep = ids.split_off(&up_to);
                        keep.remove(&up_to);
                        *ids = keep;
                        ids.len() as u64
                    }
                    None => 0,
                };
                if n == 0 {
                    peers.remove(peer);
                }
                if peers.is_empty() {
                    logs.inbox.remove(user);
                }
                n
            }
            None => 0,
        };
        let per_user = logs.unread.entry(user.to_owned()).or_default();
        if remaining > 0 {
            per_user.insert(peer.to_owned(), remaining);
        } else {
            per_user.remove(peer);
        }
        let event = BusEvent::UserSignal {
            user: user.to_owned(),
            signal: UserSignal::DmRead {
                with: peer.to_owned(),
                up_to,
                unread: remaining,
            },
        };
        logs.deliver(&Topic::User(user.to_owned()), &event, None);
        Ok(remaining)
    }

    async fn ready(&self) -> bool {
        true
    }
}

fn empty_page<T>() -> HistoryPage<T> {
    HistoryPage {
        items: Vec::new(),
        has_more: false,
        truncated: false,
    }
}

fn incr(map: &mut BTreeMap<String, u64>, key: &str) -> u64 {
    let n = map.entry(key.to_owned()).or_insert(0);
    *n += 1;
    *n
}

fn decr(map: &mut BTreeMap<String, u64>, key: &str) -> u64 {
    match map.get_mut(key) {
        Some(n) if *n > 1 => {
            *n -= 1;
            *n
        }
        Some(_) => {
            map.remove(key);
            0
        }
        None => 0,
    }
}

fn entries(
    map: &BTreeMap<String, u64>,
    names: &HashMap<String, String>,
    limit: usize,
) -> (Vec<UserEntry>, u64) {
    let users = map
        .iter()
        .take(limit)
        .map(|(id, n)| UserEntry {
            id: id.clone(),
            name: names.get(id).cloned().unwrap_or_else(|| id.clone()),
            connections: *n,
        })
        .collect();
    (users, map.len() as u64)
}

#[async_trait]
impl Presence for MemoryNode {
    async fn connect(&self, user: &str, name: &str) -> Result<u64, BackendError> {
        let mut p = self.hub.presence.lock();
        if p.known.get(user).is_none_or(|n| n != name) {
            p.known.insert(user.to_owned(), name.to_owned());
        }
        p.seen.insert(user.to_owned(), now_ms());
        Ok(incr(&mut p.online, user))
    }

    async fn is_known(&self, user: &str) -> Result<bool, BackendError> {
        Ok(self.hub.presence.lock().known.contains_key(user))
    }

    async fn disconnect(&self, user: &str) -> Result<u64, BackendError> {
        let mut p = self.hub.presence.lock();
        if let Some(t) = p.seen.get_mut(user) {
            *t = now_ms();
        }
        Ok(decr(&mut p.online, user))
    }

    async fn prune_idle_users(&self, idle: Duration, limit: usize) -> Result<u64, BackendError> {
        let cutoff = now_ms().saturating_sub(idle.as_millis() as u64);
        let gone: Vec<String> = {
            let mut p = self.hub.presence.lock();
            let p = &mut *p;
            let idle: Vec<String> = p
                .seen
                .iter()
                .filter(|(u, t)| **t < cutoff && !p.online.contains_key(*u))
                .map(|(u, _)| u.clone())
                .take(limit)
                .collect();
            for u in &idle {
                p.seen.remove(u);
                p.known.remove(u);
            }
            idle
        };
        let mut logs = self.hub.logs.lock();
        for u in &gone {
            logs.unread.remove(u);
            logs.inbox.remove(u);
        }
        Ok(gone.len() as u64)
    }

    async fn join(&self, room: &str, user: &str) -> Result<u64, BackendError> {
        let mut p = self.hub.presence.lock();
        Ok(incr(p.rooms.entry(room.to_owned()).or_default(), user))
    }

    async fn leave(&self, room: &str, user: &str) -> Result<u64, BackendError> {
        let mut p = self.hub.presence.lock();
        let Some(members) = p.rooms.get_mut(room) else {
            return Ok(0);
        };
        let n = decr(members, user);
        if members.is_empty() {
            p.rooms.remove(room);
        }
        Ok(n)
    }

    async fn room_members(
        &self,
        room: &str,
        limit: usize,
    ) -> Result<(Vec<UserEntry>, u64), BackendError> {
        let p = self.hub.presence.lock();
        Ok(match p.rooms.get(room) {
            Some(m) => entries(m, &p.known, limit),
            None => (Vec::new(), 0),
        })
    }

    async fn online_users(&self, limit: usize) -> Result<(Vec<UserEntry>, u64), BackendError> {
        let p = self.hub.presence.lock();
        Ok(entries(&p.online, &p.known, limit))
    }

    async fn connections(&self, user: &str) -> Result<u64, BackendError> {
        Ok(self
            .hub
            .presence
            .lock()
            .online
            .get(user)
            .copied()
            .unwrap_or(0))
    }

    async fn rooms(&self, limit: usize) -> Result<Vec<RoomEntry>, BackendError> {
        let p = self.hub.presence.lock();
        let mut rooms: Vec<RoomEntry> = p
            .rooms
            .iter()
            .map(|(room, m)| RoomEntry {
                room: room.clone(),
                members: m.len() as u64,
                private: false,
            })
            .collect();
        rooms.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.room.cmp(&b.room)));
        rooms.truncate(limit);
        Ok(rooms)
    }

    async fn room_sizes(&self, rooms: &[String]) -> Result<Vec<u64>, BackendError> {
        let p = self.hub.presence.lock();
        Ok(rooms
            .iter()
            .map(|r| p.rooms.get(r).map_or(0, |m| m.len() as u64))
            .collect())
    }

    async fn claim_name(
        &self,
        key: &str,
        user: &str,
        hold: Duration,
    ) -> Result<Option<String>, BackendError> {
        let now = Instant::now();
        let mut p = self.hub.presence.lock();
        if let Some((holder, until)) = p.claims.get(key) {
            if holder != user && *until > now {
                return Ok(Some(holder.clone()));
            }
        }
        p.claims
            .insert(key.to_owned(), (user.to_owned(), now + hold));
        if p.claims.len().is_multiple_of(1024) {
            // Forget expired holds now and then (the map stays bounded by the
            // names held within one hold period).
            p.claims.retain(|_, (_, until)| *until > now);
        }
        Ok(None)
    }

    async fn renew_name(
        &self,
        key: &str,
        user: &str,
        hold: Duration,
    ) -> Result<bool, BackendError> {
        let now = Instant::now();
        let mut p = self.hub.presence.lock();
        match p.claims.get_mut(key) {
            Some((holder, until)) if holder == user && *until > now => {
                *until = now + hold;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_name(&self, key: &str, user: &str) -> Result<bool, BackendError> {
        let mut p = self.hub.presence.lock();
        let held = p
            .claims
            .get(key)
            .is_some_and(|(holder, until)| holder == user && *until > Instant::now());
        if held {
            p.claims.remove(key);
        }
        Ok(held)
    }

    async fn shared_secret(&self, name: &str, proposed: &[u8]) -> Result<Vec<u8>, BackendError> {
        let mut p = self.hub.presence.lock();
        Ok(p.secrets
            .entry(name.to_owned())
            .or_insert_with(|| proposed.to_vec())
            .clone())
    }
}

fn sanction_key(
    kind: SanctionKind,
    user: &str,
    room: Option<&str>,
) -> (SanctionKind, String, String) {
    (kind, user.to_owned(), room.unwrap_or("").to_owned())
}

#[async_trait]
impl Access for MemoryNode {
    async fn create_room(&self, room: &str, meta: &RoomMeta) -> Result<bool, BackendError> {
        let mut a = self.hub.access.lock();
        if a.rooms.contains_key(room) {
            return Ok(false);
        }
        a.rooms.insert(room.to_owned(), meta.clone());
        a.members
            .entry(room.to_owned())
            .or_default()
            .insert(meta.owner.clone());
        Ok(true)
    }

    async fn room_metas(&self, rooms: &[String]) -> Result<Vec<Option<RoomMeta>>, BackendError> {
        let a = self.hub.access.lock();
        Ok(rooms.iter().map(|r| a.rooms.get(r).cloned()).collect())
    }

    async fn set_room_member(
        &self,
        room: &str,
        user: &str,
        member: bool,
    ) -> Result<(), BackendError> {
        let mut a = self.hub.access.lock();
        let set = a.members.entry(room.to_owned()).or_default();
        if member {
            set.insert(user.to_owned());
        } else {
            set.remove(user);
        }
        Ok(())
    }

    async fn is_room_member(&self, room: &str, user: &str) -> Result<bool, BackendError> {
        let a = self.hub.access.lock();
        Ok(a.members.get(room).is_some_and(|m| m.contains(user)))
    }

    async fn member_rooms(&self, user: &str, limit: usize) -> Result<Vec<String>, BackendError> {
        let a = self.hub.access.lock();
        let mut rooms: Vec<String> = a
            .members
            .iter()
            .filter(|(_, m)| m.contains(user))
            .map(|(r, _)| r.clone())
            .collect();
        rooms.sort();
        rooms.truncate(limit);
        Ok(rooms)
    }

    async fn set_role(&self, user: &str, role: &str, on: bool) -> Result<(), BackendError> {
        let mut a = self.hub.access.lock();
        let roles = a.roles.entry(user.to_owned()).or_default();
        if on {
            roles.insert(role.to_owned());
        } else {
            roles.remove(role);
        }
        Ok(())
    }

    async fn roles(&self, user: &str) -> Result<Vec<String>, BackendError> {
        let a = self.hub.access.lock();
        Ok(a.roles
            .get(user)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn set_sanction(
        &self,
        kind: SanctionKind,
        user: &str,
        room: Option<&str>,
        until: u64,
    ) -> Result<(), BackendError> {
        let mut a = self.hub.access.lock();
        let now = now_ms();
        a.sanctions.retain(|_, until| *until > now);
        a.sanctions.insert(sanction_key(kind, user, room), until);
        Ok(())
    }

    async fn clear_sanction(
        &self,
        kind: SanctionKind,
        user: &str,
        room: Option<&str>,
    ) -> Result<bool, BackendError> {
        let mut a = self.hub.access.lock();
        let was = a.sanctions.remove(&sanction_key(kind, user, room));
        Ok(was.is_some_and(|until| until > now_ms()))
    }

    async fn sanction(
        &self,
        kind: SanctionKind,
        user: &str,
        room: Option<&str>,
    ) -> Result<Option<u64>, BackendError> {
        let a = self.hub.access.lock();
        Ok(a.sanctions
            .get(&sanction_key(kind, user, room))
            .copied()
            .filter(|until| *until > now_ms()))
    }

    async fn rate_take(
        &self,
        buckets: &[RateBucket],
    ) -> Result<Result<(), Duration>, BackendError> {
        let now_ms = now_ms();
        let now = now_ms as f64;
        let mut a = self.hub.access.lock();
        let mut next = Vec::with_capacity(buckets.len());
        for b in buckets {
            let tat = a.rates.get(&b.key).map(|(t, _)| *t);
            match crate::access::gcra(tat, now, b.per_sec, b.burst) {
                Ok(t) => next.push(t),
                Err(wait) => return Ok(Err(Duration::from_millis(wait.ceil() as u64))),
            }
        }
        for (b, t) in buckets.iter().zip(next) {
            a.rates.insert(b.key.clone(), (t, t.ceil() as u64));
        }
        // Forget buckets that are full again (bounded by the keys active lately).
        if a.rates.len() > 4096 && a.rates.len().is_power_of_two() {
            a.rates.retain(|_, (_, until)| *until > now_ms);
        }
        Ok(Ok(()))
    }

    async fn audit_append(&self, mut entry: AuditEntry) -> Result<(), BackendError> {
        let mut a = self.hub.access.lock();
        let id = a.audit_last.next(entry.ts);
        a.audit_last = id;
        entry.id = Some(id.to_string());
        a.audit.push_back(entry);
        while a.audit.len() > crate::access::AUDIT_RETENTION {
            a.audit.pop_front();
        }
        Ok(())
    }

    async fn audit_list(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, BackendError> {
        let before: Option<MessageId> = match before {
            Some(b) => Some(
                b.parse()
                    .map_err(|e| BackendError::Internal(format!("audit id: {e}")))?,
            ),
            None => None,
        };
        let a = self.hub.access.lock();
        Ok(a.audit
            .iter()
            .rev()
            .filter(|e| {
                let id: Option<MessageId> = e.id.as_deref().and_then(|i| i.parse().ok());
                before.is_none_or(|b| id.is_some_and(|i| i < b))
            })
            .take(limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl crate::Status for MemoryNode {
    fn node_id(&self) -> String {
        match self.id {
            1 => "embedded".to_owned(),
            n => format!("embedded-{n}"),
        }
    }

    async fn put_gateway_status(
        &self,
        status: &confab_core::protocol::GatewayStatus,
    ) -> Result<u64, BackendError> {
        let now = now_ms();
        let mut stored = status.clone();
        stored.updated_at = now;
        self.hub
            .gateway_status
            .lock()
            .insert(stored.id.clone(), stored);
        Ok(now)
    }

    async fn remove_gateway_status(&self) -> Result<(), BackendError> {
        self.hub.gateway_status.lock().remove(&self.node_id());
        Ok(())
    }

    async fn gateway_statuses(
        &self,
        max_age: Duration,
        limit: usize,
    ) -> Result<(Vec<confab_core::protocol::GatewayStatus>, usize), BackendError> {
        let cutoff = now_ms().saturating_sub(max_age.as_millis() as u64);
        let mut all = self.hub.gateway_status.lock();
        all.retain(|_, s| s.updated_at >= cutoff);
        let mut out: Vec<_> = all.values().cloned().collect();
        drop(all);
        out.sort_by(|a, b| a.id.cmp(&b.id));
        let total = out.len();
        out.truncate(limit);
        Ok((out, total))
    }

    async fn backend_status(&self) -> confab_core::protocol::BackendStatus {
        confab_core::protocol::BackendStatus {
            kind: "embedded".into(),
            healthy: true,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ms: u64, seq: u64) -> Message {
        Message {
            id: MessageId::new(ms, seq),
            room: "r".into(),
            from: "a".into(),
            from_id: "a".into(),
            text: "t".into(),
            ts: ms,
            client_id: None,
            deleted: false,
        }
    }

    fn ids(p: &HistoryPage<Message>) -> Vec<u64> {
        p.items.iter().map(|m| m.id.ms).collect()
    }

    #[test]
    fn log_pages_and_retention() {
        let mut log = Log::new(5);
        for i in 1..=8 {
            log.push(msg(i, 0));
        }
        // Retained: 4..=8, deleted up to 3.
        let p = log.read(HistoryQuery::Latest { limit: 3 });
        assert_eq!((ids(&p), p.has_more), (vec![6, 7, 8], true));
        let p = log.read(HistoryQuery::Before {
            id: MessageId::new(6, 0),
            limit: 10,
        });
        assert_eq!((ids(&p), p.has_more), (vec![4, 5], false));
        let p = log.read(HistoryQuery::After {
            id: MessageId::new(5, 0),
            limit: 10,
        });
        assert_eq!((ids(&p), p.truncated), (vec![6, 7, 8], false));
        let p = log.read(HistoryQuery::After {
            id: MessageId::new(5, 0),
            limit: 2,
        });
        assert_eq!((ids(&p), p.truncated, p.has_more), (vec![7, 8], true, true));
        // `since` older than what retention kept: truncated.
        let p = log.read(HistoryQuery::After {
            id: MessageId::new(2, 0),
            limit: 10,
        });
        assert_eq!((ids(&p), p.truncated), (vec![4, 5, 6, 7, 8], true));
        let p = log.read(HistoryQuery::After {
            id: MessageId::new(8, 0),
            limit: 10,
        });
        assert!(p.items.is_empty() && !p.truncated);
    }
}
