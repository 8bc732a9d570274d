//! Which backend topics this gateway needs, with a local reference count: the first
//! local socket in a room subscribes the gateway to it, the last one out
//! unsubscribes (room-sharded fan-out: a gateway hears only rooms it serves).
//!
//! No lock is shared across topics while a SUBSCRIBE is in flight: each topic has
//! its own slot, and only the 0 → 1 and 1 → 0 transitions of that topic wait for
//! each other (a join waits only for its own room's SUBSCRIBE). The map itself is
//! locked briefly, never across I/O.

use confab_backend::{BackendError, Broker, Topic};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// One topic's local count; its async lock orders that topic's transitions.
type Slot = Arc<tokio::sync::Mutex<usize>>;

pub struct Subscriptions {
    broker: Arc<dyn Broker>,
    slots: Mutex<HashMap<Topic, Slot>>,
}

impl Subscriptions {
    pub fn new(broker: Arc<dyn Broker>) -> Self {
        Self {
            broker,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The slot of `topic` if it is still the one in the map (a slot removed at
    /// 1 → 0 while someone waited on it is stale: retry with a fresh one).
    fn is_current(&self, topic: &Topic, slot: &Slot) -> bool {
        self.slots
            .lock()
            .get(topic)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    fn gauge(&self) {
        let n = self.slots.lock().len();
        metrics::gauge!(crate::metrics::SUBSCRIPTIONS).set(n as f64);
    }

    /// Chat rooms this gateway is subscribed to (for the status page; the
    /// announcement topic every gateway follows is not one).
    pub fn rooms(&self) -> usize {
        self.slots
            .lock()
            .keys()
            .filter(|t| matches!(t, Topic::Room(r) if r != confab_backend::ANNOUNCE_TOPIC))
            .count()
    }

    /// One more local user of `topic`; subscribes on 0 → 1.
    pub async fn acquire(&self, topic: Topic) -> Result<(), BackendError> {
        loop {
            let slot = self.slots.lock().entry(topic.clone()).or_default().clone();
            let mut n = slot.lock().await;
            if !self.is_current(&topic, &slot) {
                continue;
            }
            if *n == 0 {
                if let Err(e) = self.broker.subscribe(&topic).await {
                    self.slots.lock().remove(&topic);
                    return Err(e);
                }
            }
            *n += 1;
            drop(n);
            self.gauge();
            return Ok(());
        }
    }

    /// One less local user of `topic`; unsubscribes on 1 → 0.
    pub async fn release(&self, topic: Topic) {
        let Some(slot) = self.slots.lock().get(&topic).cloned() else {
            tracing::warn!(?topic, "release of a topic that was not acquired");
            return;
        };
        let mut n = slot.lock().await;
        if *n > 1 {
            *n -= 1;
            return;
        }
        *n = 0;
        if let Err(e) = self.broker.unsubscribe(&topic).await {
            tracing::warn!(?topic, "unsubscribe failed: {e}");
        }
        // Removed while its lock is held: whoever waits on it retries afresh.
        self.slots.lock().remove(&topic);
        drop(n);
        self.gauge();
    }

    /// Local reference count of `topic` (for tests and diagnostics).
    pub async fn count(&self, topic: &Topic) -> usize {
        let slot = self.slots.lock().get(topic).cloned();
        match slot {
            Some(s) => *s.lock().await,
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_backend::memory::MemoryHub;
    use confab_backend::BackendConfig;

    #[tokio::test]
    async fn counts_subscribe_and_unsubscribe_once() {
        let hub = MemoryHub::new(BackendConfig::default());
        let (node, _events) = hub.node();
        let subs = Arc::new(Subscriptions::new(node));
        let t = Topic::Room("lounge".into());
        // Many concurrent acquires of one topic and others, then releases.
        let mut joins = Vec::new();
        for i in 0..50 {
            let (s, t) = (subs.clone(), Topic::Room(format!("r{}", i % 5)));
            joins.push(tokio::spawn(async move { s.acquire(t).await }));
        }
        for j in joins {
            j.await.unwrap().unwrap();
        }
        for i in 0..5 {
            assert_eq!(subs.count(&Topic::Room(format!("r{i}"))).await, 10);
        }
        subs.acquire(t.clone()).await.unwrap();
        subs.acquire(t.clone()).await.unwrap();
        assert_eq!(subs.count(&t).await, 2);
        subs.release(t.clone()).await;
        assert_eq!(subs.count(&t).await, 1);
        subs.release(t.clone()).await;
        assert_eq!(subs.count(&t).await, 0);
        assert!(!subs.slots.lock().contains_key(&t), "slot removed at 0");
        // Acquire again after the slot went away.
        subs.acquire(t.clone()).await.unwrap();
        assert_eq!(subs.count(&t).await, 1);
    }
}
