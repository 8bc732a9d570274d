//! A node's subscriptions: the dedicated pub/sub connection, its reader task, and
//! the delivery cursors that make reconnection lossless and duplicate-free.
//!
//! The reader decodes each pub/sub frame once and sends one [`BusEvent`] to the
//! node's receiver, if the topic is still subscribed and the event is newer than
//! what was delivered for its stream (room, or DM conversation).
//!
//! When the connection drops (Redis restart, network blip, failed PING) the reader
//! reconnects with exponential backoff, re-`SUBSCRIBE`s every topic, then *catches
//! up* from the streams before reading pub/sub again:
//! - a room: `XRANGE (start +` where `start` is the greatest of the last id
//!   delivered for the room, the topic's floor (Redis time when it was subscribed)
//!   and the node's floor (see below);
//! - a user: the user's peers zset (`confab:user:{u}:peers`, scored by the ms of the
//!   latest DM with each peer, kept by the DM script) gives the conversations with
//!   DMs newer than that floor; each is read like a room, from the last id delivered
//!   for that conversation.
//!
//! Pub/sub copies of what catch-up delivered are then dropped by the same cursors,
//! so the seam has no duplicates; since the DM script publishes on both users'
//! channels, the per-conversation cursor also delivers a DM once to a node that
//! follows both users. Signals are not stored: those published while disconnected
//! are lost.
//!
//! The node floor bounds catch-up and cursor memory: every health tick reads Redis
//! `TIME` = T and then PINGs the pub/sub connection; when the PONG arrives, every
//! entry with ms < T has been published before it and so is already in the
//! connection's buffer. Catch-up starts no earlier than `(T-1)-MAX`, and DM cursors
//! older than the floor (minus a margin) are forgotten.

use super::codec::{self, decode_frame, redis_err, StoredDm, StoredMessage};
use super::Shared;
use crate::{dm_pair, BackendError, BusEvent, EventSender, Topic};
use confab_core::MessageId;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{PubSub, PubSubSink, PubSubStream};
use redis::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Entries read per XRANGE during catch-up.
const CATCH_UP_PAGE: usize = 500;
/// DM cursors this much older than the node floor are dropped.
const CURSOR_MARGIN_MS: u64 = 10_000;

/// Subscribed topics and what was delivered.
#[derive(Debug, Default)]
pub(crate) struct Cursors {
    /// Subscribed topics → floor: entries at or below it predate the subscription.
    topics: HashMap<Topic, MessageId>,
    /// Last message delivered per subscribed room.
    rooms: HashMap<String, MessageId>,
    /// Last DM delivered per conversation `(a, b)`, `a <= b`.
    pairs: HashMap<(String, String), MessageId>,
    /// Every entry at or below this id, published while subscribed, has reached the
    /// pub/sub buffer.
    floor: MessageId,
}

impl Cursors {
    /// Deliver `ev` (received for `topic`) unless unsubscribed or already delivered.
    /// Returns whether it was delivered.
    fn offer(&mut self, topic: &Topic, ev: BusEvent, tx: &EventSender) -> bool {
        if !self.topics.contains_key(topic) {
            return false;
        }
        let fresh = |last: Option<&mut MessageId>, id: MessageId| match last {
            Some(last) if id <= *last => Some(false),
            Some(last) => {
                *last = id;
                Some(true)
            }
            None => None,
        };
        match &ev {
            BusEvent::Message(m) => match fresh(self.rooms.get_mut(&m.room), m.id) {
                Some(false) => return false,
                Some(true) => {}
                None => {
                    self.rooms.insert(m.room.clone(), m.id);
                }
            },
            BusEvent::Dm(d) => {
                let (a, b) = dm_pair(&d.from_id, &d.to);
                let key = (a.to_owned(), b.to_owned());
                match fresh(self.pairs.get_mut(&key), d.id) {
                    Some(false) => return false,
                    Some(true) => {}
                    None => {
                        self.pairs.insert(key, d.id);
                    }
                }
            }
            BusEvent::Signal { .. } | BusEvent::UserSignal { .. } => {}
        }
        let _ = tx.send(ev);
        true
    }

    fn advance_floor(&mut self, floor: MessageId) {
        if floor > self.floor {
            self.floor = floor;
            let keep_from = floor.ms.saturating_sub(CURSOR_MARGIN_MS);
            self.pairs.retain(|_, id| id.ms >= keep_from);
        }
    }
}

/// Sleep `d` unless cancelled first; false if cancelled.
async fn sleep_or_cancel(shared: &Shared, d: Duration) -> bool {
    tokio::select! {
        _ = shared.cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// The reader task: read the pub/sub connection, check it, reconnect when lost.
pub(crate) async fn run_reader(
    shared: Arc<Shared>,
    mut current: Option<(PubSubSink, PubSubStream)>,
) {
    let (min, max) = (
        shared.cfg.reconnect_backoff_min,
        shared
            .cfg
            .reconnect_backoff_max
            .max(shared.cfg.reconnect_backoff_min),
    );
    let mut backoff = min;
    loop {
        let (mut sink, mut stream) = match current.take() {
            Some(c) => c,
            None => match shared.reconnect().await {
                Ok(c) => {
                    backoff = min;
                    c
                }
                Err(e) => {
                    metrics::gauge!(super::REDIS_UP).set(0.0);
                    tracing::warn!(error = %e, "redis pub/sub reconnect failed; retrying in {backoff:?}");
                    if !sleep_or_cancel(&shared, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(max);
                    continue;
                }
            },
        };
        let mut tick = tokio::time::interval(shared.cfg.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shared.cancel.cancelled() => return,
                msg = stream.next() => match msg {
                    Some(msg) => shared.on_pubsub(&msg),
                    None => {
                        tracing::warn!("redis pub/sub connection lost");
                        break;
                    }
                },
                _ = tick.tick() => {
                    if let Err(e) = shared.health_check(&mut sink).await {
                        tracing::warn!(error = %e, "redis pub/sub health check failed");
                        break;
                    }
                    metrics::gauge!(super::REDIS_UP).set(1.0);
                }
            }
        }
        metrics::gauge!(super::REDIS_UP).set(0.0);
        shared.connected.store(false, Ordering::SeqCst);
        // What already arrived is still delivered (catch-up would re-read it anyway).
        while let Some(Some(msg)) = stream.next().now_or_never() {
            shared.on_pubsub(&msg);
        }
        drop(stream);
        *shared.sink.lock().await = None;
        if !sleep_or_cancel(&shared, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(max);
    }
}

impl Shared {
    /// A new pub/sub connection, bounded by the command timeout.
    pub(super) async fn open_pubsub(&self) -> Result<PubSub, BackendError> {
        self.bounded(async { self.client.get_async_pubsub().await.map_err(redis_err) })
            .await
    }

    /// Decode and deliver one pub/sub message.
    fn on_pubsub(&self, msg: &redis::Msg) {
        let Some(topic) = self.keys.topic_of(msg.get_channel_name()) else {
            return;
        };
        match decode_frame(&topic, msg.get_payload_bytes()) {
            Ok(ev) => {
                // Stored (the id's ms: Redis's clock) → received here.
                let stored = match &ev {
                    BusEvent::Message(m) => Some(m.id.ms),
                    BusEvent::Dm(d) => Some(d.id.ms),
                    _ => None,
                };
                if let Some(ms) = stored {
                    let lag = crate::now_ms().saturating_sub(ms) as f64 / 1000.0;
                    metrics::histogram!(super::PUBSUB_LAG_SECONDS).record(lag);
                }
                self.cursors.lock().offer(&topic, ev, &self.events);
            }
            Err(e) => tracing::warn!(error = %e, "dropping undecodable pub/sub frame"),
        }
    }

    async fn health_check(&self, sink: &mut PubSubSink) -> Result<(), BackendError> {
        let time = self.server_time_ms().await;
        self.bounded(async { sink.ping::<Value>().await.map_err(redis_err) })
            .await?;
        if let Ok(t) = time {
            self.cursors
                .lock()
                .advance_floor(MessageId::new(t.saturating_sub(1), u64::MAX));
        }
        Ok(())
    }

    /// Connect, re-subscribe every topic, catch up, then publish the new sink.
    async fn reconnect(&self) -> Result<(PubSubSink, PubSubStream), BackendError> {
        let (mut sink, stream) = self.open_pubsub().await?.split();
        let mut guard = self.sink.lock().await;
        let topics: Vec<(Topic, MessageId)> = self
            .cursors
            .lock()
            .topics
            .iter()
            .map(|(t, f)| (t.clone(), *f))
            .collect();
        let channels: Vec<String> = topics.iter().map(|(t, _)| self.keys.channel(t)).collect();
        for chunk in channels.chunks(256) {
            self.bounded(async { sink.subscribe(chunk).await.map_err(redis_err) })
                .await?;
        }
        self.catch_up(&topics).await?;
        *guard = Some(sink.clone());
        self.connected.store(true, Ordering::SeqCst);
        self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            topics = topics.len(),
            "redis pub/sub reconnected and caught up"
        );
        Ok((sink, stream))
    }

    /// Deliver what each topic missed while the connection was down.
    async fn catch_up(&self, topics: &[(Topic, MessageId)]) -> Result<(), BackendError> {
        let node_floor = self.cursors.lock().floor;
        for (topic, floor) in topics {
            let floor = (*floor).max(node_floor);
            match topic {
                Topic::Room(room) => {
                    let last = self.cursors.lock().rooms.get(room).copied();
                    let start = last.unwrap_or(MessageId::ZERO).max(floor);
                    self.replay(topic, &self.keys.room_log(room), start, |id, body| {
                        Ok(BusEvent::Message(
                            codec::decode::<StoredMessage>(body)?.into_message(room, id),
                        ))
                    })
                    .await?;
                }
                Topic::User(user) => {
                    if floor == MessageId::MAX {
                        continue;
                    }
                    let peers: Vec<String> = self
                        .query(
                            redis::cmd("ZRANGEBYSCORE")
                                .arg(self.keys.user_peers(user))
                                .arg(floor.ms)
                                .arg("+inf"),
                        )
                        .await?;
                    for peer in peers {
                        let (a, b) = dm_pair(user, &peer);
                        let key = (a.to_owned(), b.to_owned());
                        let last = self.cursors.lock().pairs.get(&key).copied();
                        let start = last.unwrap_or(MessageId::ZERO).max(floor);
                        self.replay(topic, &self.keys.dm_log(a, b), start, |id, body| {
                            Ok(BusEvent::Dm(codec::decode::<StoredDm>(body)?.into_dm(id)))
                        })
                        .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Offer every entry of `key` after `start`, oldest first.
    async fn replay(
        &self,
        topic: &Topic,
        key: &str,
        mut start: MessageId,
        decode: impl Fn(MessageId, &[u8]) -> Result<BusEvent, BackendError>,
    ) -> Result<(), BackendError> {
        loop {
            let batch = self.range_after(key, start, CATCH_UP_PAGE).await?;
            let n = batch.len();
            // Messages deleted meanwhile are replayed as their tombstones.
            let dead = match topic {
                Topic::Room(room) if n > 0 => {
                    let ids: Vec<MessageId> = batch.iter().map(|(id, _)| *id).collect();
                    self.tombstoned(room, &ids).await?
                }
                _ => vec![false; n],
            };
            for ((id, body), dead) in batch.into_iter().zip(dead) {
                start = id;
                let decoded = decode(id, &body).map(|ev| match ev {
                    BusEvent::Message(m) if dead => BusEvent::Message(m.tombstone()),
                    ev => ev,
                });
                match decoded {
                    Ok(ev) => {
                        if self.cursors.lock().offer(topic, ev, &self.events) {
                            self.stats.caught_up.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, %key, %id, "skipping undecodable entry"),
                }
            }
            if n < CATCH_UP_PAGE {
                return Ok(());
            }
        }
    }

    /// Start delivering `topic`. Effective (Redis confirmed) when this returns.
    pub(super) async fn subscribe(&self, topic: &Topic) -> Result<(), BackendError> {
        let mut guard = self.lock_sink().await?;
        if self.cursors.lock().topics.contains_key(topic) {
            return Ok(());
        }
        let Some(sink) = guard.as_mut() else {
            return Err(BackendError::Unavailable(
                "redis pub/sub connection is down".into(),
            ));
        };
        // Listed before SUBSCRIBE so the reader delivers from the first message on;
        // the real floor is set once Redis confirmed.
        self.cursors
            .lock()
            .topics
            .insert(topic.clone(), MessageId::MAX);
        let channel = self.keys.channel(topic);
        let res = async {
            self.bounded(async { sink.subscribe(&channel).await.map_err(redis_err) })
                .await?;
            self.server_time_ms().await
        }
        .await;
        let mut c = self.cursors.lock();
        match res {
            Ok(ms) => {
                c.topics.insert(topic.clone(), MessageId::new(ms, u64::MAX));
                Ok(())
            }
            Err(e) => {
                c.topics.remove(topic);
                if let Topic::Room(room) = topic {
                    c.rooms.remove(room);
                }
                Err(e)
            }
        }
    }

    /// Stop delivering `topic`. Local state is authoritative: a failed UNSUBSCRIBE
    /// only leaves a channel whose frames the reader drops.
    pub(super) async fn unsubscribe(&self, topic: &Topic) -> Result<(), BackendError> {
        let mut guard = self.lock_sink().await?;
        let was = {
            let mut c = self.cursors.lock();
            if let Topic::Room(room) = topic {
                c.rooms.remove(room);
            }
            c.topics.remove(topic).is_some()
        };
        if let (true, Some(sink)) = (was, guard.as_mut()) {
            let channel = self.keys.channel(topic);
            if let Err(e) = self
                .bounded(async { sink.unsubscribe(&channel).await.map_err(redis_err) })
                .await
            {
                tracing::debug!(error = %e, %channel, "UNSUBSCRIBE failed");
            }
        }
        Ok(())
    }

    async fn lock_sink(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<PubSubSink>>, BackendError> {
        tokio::time::timeout(self.cfg.command_timeout, self.sink.lock())
            .await
            .map_err(|_| BackendError::Unavailable("redis pub/sub is reconnecting".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_core::Message;

    fn msg(room: &str, ms: u64) -> BusEvent {
        BusEvent::Message(Message {
            id: MessageId::new(ms, 0),
            room: room.into(),
            from: "a".into(),
            from_id: "a".into(),
            text: "t".into(),
            ts: ms,
            client_id: None,
            deleted: false,
        })
    }

    #[test]
    fn offer_drops_unsubscribed_and_duplicates() {
        let (tx, mut rx) = crate::event_channel();
        let mut c = Cursors::default();
        let t = Topic::Room("r".into());
        c.offer(&t, msg("r", 1), &tx);
        assert!(rx.try_recv().is_none(), "not subscribed");
        c.topics.insert(t.clone(), MessageId::ZERO);
        for ms in [2, 3, 3, 1, 4] {
            c.offer(&t, msg("r", ms), &tx);
        }
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv())
            .map(|e| match e {
                BusEvent::Message(m) => m.id.ms,
                _ => 0,
            })
            .collect();
        assert_eq!(got, [2, 3, 4]);
    }
}
