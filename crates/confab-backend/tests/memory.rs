//! The conformance suite on the in-memory backend.

use async_trait::async_trait;
use confab_backend::conformance::{Cluster, Node};
use confab_backend::memory::MemoryHub;
use confab_backend::BackendConfig;
use std::sync::Arc;

struct MemoryCluster(Arc<MemoryHub>);

#[async_trait]
impl Cluster for MemoryCluster {
    async fn node(&self) -> Node {
        let (node, events) = self.0.node();
        Node {
            broker: node.clone(),
            presence: node.clone(),
            access: node.clone(),
            status: node,
            events,
        }
    }
}

async fn cluster() -> MemoryCluster {
    MemoryCluster(MemoryHub::new(BackendConfig::default()))
}

confab_backend::conformance_tests!(cluster());

#[tokio::test]
async fn unread_follows_aged_history() {
    let hub = MemoryHub::new(BackendConfig {
        history_max_age: Some(std::time::Duration::from_millis(300)),
        ..BackendConfig::default()
    });
    confab_backend::conformance::unread_follows_aged_history(&MemoryCluster(hub)).await;
}

#[tokio::test]
async fn retention_drops_oldest_and_marks_truncated() {
    use confab_backend::{Broker, HistoryQuery, NewMessage};
    let hub = MemoryHub::new(BackendConfig {
        history_retention: 3,
        ..BackendConfig::default()
    });
    let (n, _rx) = hub.node();
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(
            n.publish_message(NewMessage {
                room: "r".into(),
                from_id: "a".into(),
                from: "a".into(),
                text: format!("{i}"),
                client_id: None,
                create: true,
            })
            .await
            .unwrap()
            .id,
        );
    }
    let p = n
        .room_history("r", HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(p.items.len(), 3);
    assert!(!p.has_more);
    let p = n
        .room_history(
            "r",
            HistoryQuery::After {
                id: ids[0],
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(p.truncated, "message 1 was dropped by retention");
    assert_eq!(p.items.len(), 3);
    let p = n
        .room_history(
            "r",
            HistoryQuery::After {
                id: ids[2],
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(!p.truncated);
    assert_eq!(p.items.len(), 2);
}

/// `history_max_age`: entries older than it leave history, in an active room and
/// in one nobody writes to any more.
#[tokio::test]
async fn history_ages_out() {
    use confab_backend::{Broker, HistoryQuery, NewMessage};
    use std::time::Duration;
    let hub = MemoryHub::new(BackendConfig {
        history_max_age: Some(Duration::from_millis(300)),
        ..BackendConfig::default()
    });
    let (n, _rx) = hub.node();
    let draft = |room: &str, text: &str| NewMessage {
        room: room.into(),
        from_id: "a".into(),
        from: "a".into(),
        text: text.into(),
        client_id: None,
        create: true,
    };
    n.publish_message(draft("busy", "old")).await.unwrap();
    n.publish_message(draft("idle", "old")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let new = n.publish_message(draft("busy", "new")).await.unwrap();
    let busy = n
        .room_history("busy", HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(busy.items, vec![new.clone()]);
    let after = n
        .room_history(
            "busy",
            HistoryQuery::After {
                id: confab_core::MessageId::ZERO,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(after.truncated, "the aged entry is reported missing");
    let idle = n
        .room_history("idle", HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert!(idle.items.is_empty());
}
