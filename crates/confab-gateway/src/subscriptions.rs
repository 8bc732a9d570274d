//! Which backend topics this gateway needs, with a local reference count: the first
//! local socket in a room subscribes the gateway to it, the last one out
//! unsubscribes (room-sharded fan-out: a gateway hears only rooms it serves).

use confab_backend::{BackendError, Broker, Topic};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

pub struct Subscriptions {
    broker: Arc<dyn Broker>,
    counts: Mutex<HashMap<Topic, usize>>,
}

impl Subscriptions {
    pub fn new(broker: Arc<dyn Broker>) -> Self {
        Self {
            broker,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// One more local user of `topic`; subscribes on 0 → 1.
    pub async fn acquire(&self, topic: Topic) -> Result<(), BackendError> {
        let mut counts = self.counts.lock().await;
        let n = counts.get(&topic).copied().unwrap_or(0);
        if n == 0 {
            self.broker.subscribe(&topic).await?;
        }
        counts.insert(topic, n + 1);
        metrics::gauge!(crate::metrics::SUBSCRIPTIONS).set(counts.len() as f64);
        Ok(())
    }

    /// One less local user of `topic`; unsubscribes on 1 → 0.
    pub async fn release(&self, topic: Topic) {
        let mut counts = self.counts.lock().await;
        match counts.get_mut(&topic) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                counts.remove(&topic);
                if let Err(e) = self.broker.unsubscribe(&topic).await {
                    tracing::warn!(?topic, "unsubscribe failed: {e}");
                }
            }
            None => tracing::warn!(?topic, "release of a topic that was not acquired"),
        }
        metrics::gauge!(crate::metrics::SUBSCRIPTIONS).set(counts.len() as f64);
    }

    /// Local reference count of `topic` (for tests and diagnostics).
    pub async fn count(&self, topic: &Topic) -> usize {
        self.counts.lock().await.get(topic).copied().unwrap_or(0)
    }
}
