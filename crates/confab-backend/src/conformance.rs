//! The conformance suite every backend must pass.
//!
//! Each check takes a [`Cluster`]: something that hands out nodes (gateways) sharing
//! one store, so the suite checks fan-out between nodes as well as history and
//! presence. [`conformance_tests!`](crate::conformance_tests) expands to one
//! `#[tokio::test]` per check; the memory backend runs it in `tests/memory.rs`,
//! the Redis backend against a real redis-server.

use crate::{
    BackendError, Broker, BusEvent, EventReceiver, HistoryQuery, NewDm, NewMessage, Presence,
    Signal, Topic,
};
use async_trait::async_trait;
use confab_core::{Message, MessageId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One gateway's view of a backend.
pub struct Node {
    pub broker: Arc<dyn Broker>,
    pub presence: Arc<dyn Presence>,
    pub access: Arc<dyn crate::Access>,
    pub status: Arc<dyn crate::Status>,
    pub events: EventReceiver,
}

/// Hands out nodes that share one store.
#[async_trait]
pub trait Cluster: Send + Sync {
    async fn node(&self) -> Node;
}

/// A name unique to this test process and call, so checks never see each other's
/// rooms even on a shared Redis.
pub fn unique(base: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = crate::now_ms() % 1_000_000;
    format!(
        "{base}-{}-{t}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn draft(room: &str, from: &str, text: &str) -> NewMessage {
    NewMessage {
        room: room.into(),
        from_id: from.into(),
        from: from.into(),
        text: text.into(),
        client_id: None,
        create: true,
    }
}

async fn recv(rx: &mut EventReceiver) -> BusEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("timed out waiting for an event")
        .expect("event channel closed")
}

async fn assert_quiet(rx: &mut EventReceiver) {
    if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        panic!("expected no event, got {ev:?}");
    }
}

fn texts(items: &[Message]) -> Vec<&str> {
    items.iter().map(|m| m.text.as_str()).collect()
}

/// Ids are assigned by the backend, strictly increasing; `Latest` returns the newest
/// page oldest-first with `has_more`.
pub async fn publish_assigns_ids_and_latest_page(c: &dyn Cluster) {
    let n = c.node().await;
    let room = unique("ids");
    let mut last = MessageId::ZERO;
    for i in 0..10 {
        let m = n
            .broker
            .publish_message(NewMessage {
                client_id: Some(format!("c{i}")),
                create: true,
                ..draft(&room, "alice", &format!("m{i}"))
            })
            .await
            .unwrap();
        assert!(m.id > last, "ids must increase: {} after {}", m.id, last);
        assert_eq!(m.room, room);
        assert_eq!(m.from, "alice");
        assert_eq!(m.client_id.as_deref(), Some(&*format!("c{i}")));
        assert!(m.ts > 1_600_000_000_000);
        last = m.id;
    }
    let p = n
        .broker
        .room_history(&room, HistoryQuery::Latest { limit: 4 })
        .await
        .unwrap();
    assert_eq!(texts(&p.items), ["m6", "m7", "m8", "m9"]);
    assert!(p.has_more);
    assert_eq!(p.items[3].id, last);
    let all = n
        .broker
        .room_history(&room, HistoryQuery::Latest { limit: 50 })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 10);
    assert!(!all.has_more);
    assert_eq!(all.items[0].client_id.as_deref(), Some("c0"));
    let none = n
        .broker
        .room_history(&unique("empty"), HistoryQuery::Latest { limit: 5 })
        .await
        .unwrap();
    assert!(none.items.is_empty() && !none.has_more && !none.truncated);
}

/// `Before` pages backwards without overlap or gap.
pub async fn history_pages_backwards(c: &dyn Cluster) {
    let n = c.node().await;
    let room = unique("pages");
    for i in 0..25 {
        n.broker
            .publish_message(draft(&room, "bob", &format!("{i}")))
            .await
            .unwrap();
    }
    let mut seen: Vec<String> = Vec::new();
    let mut before: Option<MessageId> = None;
    let mut pages = 0;
    loop {
        let q = match before {
            None => HistoryQuery::Latest { limit: 10 },
            Some(id) => HistoryQuery::Before { id, limit: 10 },
        };
        let p = n.broker.room_history(&room, q).await.unwrap();
        pages += 1;
        assert!(p.items.windows(2).all(|w| w[0].id < w[1].id));
        let mut page: Vec<String> = p.items.iter().map(|m| m.text.clone()).collect();
        page.append(&mut seen);
        seen = page;
        before = p.items.first().map(|m| m.id);
        if !p.has_more {
            break;
        }
        assert!(pages < 10, "paging does not terminate");
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..25).map(|i| i.to_string()).collect();
    assert_eq!(seen, want);
}

/// `After` returns exactly the messages after an id, and says when it cannot.
pub async fn after_returns_missed_messages(c: &dyn Cluster) {
    let n = c.node().await;
    let room = unique("after");
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            n.broker
                .publish_message(draft(&room, "a", &format!("{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    let p = n
        .broker
        .room_history(
            &room,
            HistoryQuery::After {
                id: ids[4],
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&p.items), ["5", "6", "7", "8", "9", "10", "11"]);
    assert!(!p.truncated);
    assert!(p.has_more);
    let p = n
        .broker
        .room_history(
            &room,
            HistoryQuery::After {
                id: ids[4],
                limit: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&p.items), ["9", "10", "11"]);
    assert!(
        p.truncated,
        "more than limit newer messages must set truncated"
    );
    let p = n
        .broker
        .room_history(
            &room,
            HistoryQuery::After {
                id: ids[11],
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert!(p.items.is_empty() && !p.truncated);
    let p = n
        .broker
        .room_history(
            &room,
            HistoryQuery::After {
                id: MessageId::ZERO,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(p.items.len(), 12);
    assert!(!p.truncated && !p.has_more);
}

/// Only subscribed nodes receive a room's messages, once each, in history order;
/// unsubscribing stops delivery.
pub async fn fan_out_to_subscribed_nodes_only(c: &dyn Cluster) {
    let mut a = c.node().await;
    let mut b = c.node().await;
    let mut other = c.node().await;
    let room = unique("fan");
    let topic = Topic::Room(room.clone());
    a.broker.subscribe(&topic).await.unwrap();
    b.broker.subscribe(&topic).await.unwrap();
    // Subscribing twice is harmless (still one delivery).
    b.broker.subscribe(&topic).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..20 {
        let node = if i % 2 == 0 { &a } else { &b };
        sent.push(
            node.broker
                .publish_message(draft(&room, "x", &format!("{i}")))
                .await
                .unwrap(),
        );
    }
    for rx in [&mut a.events, &mut b.events] {
        for want in &sent {
            match recv(rx).await {
                BusEvent::Message(m) => assert_eq!(&m, want),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_quiet(rx).await;
    }
    assert_quiet(&mut other.events).await;
    b.broker.unsubscribe(&topic).await.unwrap();
    let m = a
        .broker
        .publish_message(draft(&room, "x", "after"))
        .await
        .unwrap();
    assert_eq!(recv(&mut a.events).await, BusEvent::Message(m));
    assert_quiet(&mut b.events).await;
}

/// Two nodes publishing concurrently: history ids strictly increase and every
/// subscriber sees exactly the history order.
pub async fn concurrent_publishers_agree_on_order(c: &dyn Cluster) {
    let mut a = c.node().await;
    let b = c.node().await;
    let room = unique("order");
    a.broker
        .subscribe(&Topic::Room(room.clone()))
        .await
        .unwrap();
    let pa = a.broker.clone();
    let pb = b.broker.clone();
    let ra = room.clone();
    let rb = room.clone();
    let t1 = tokio::spawn(async move {
        for i in 0..50 {
            pa.publish_message(draft(&ra, "a", &format!("a{i}")))
                .await
                .unwrap();
        }
    });
    let t2 = tokio::spawn(async move {
        for i in 0..50 {
            pb.publish_message(draft(&rb, "b", &format!("b{i}")))
                .await
                .unwrap();
        }
    });
    t1.await.unwrap();
    t2.await.unwrap();
    let hist = a
        .broker
        .room_history(&room, HistoryQuery::Latest { limit: 200 })
        .await
        .unwrap();
    assert_eq!(hist.items.len(), 100);
    assert!(hist.items.windows(2).all(|w| w[0].id < w[1].id));
    for want in &hist.items {
        match recv(&mut a.events).await {
            BusEvent::Message(m) => assert_eq!(&m, want),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// DMs are stored per pair (symmetric) and delivered to both users' topics, once per
/// node even if the node follows both users.
pub async fn dms_reach_both_users_once(c: &dyn Cluster) {
    let mut both = c.node().await;
    let mut to_only = c.node().await;
    let mut outsider = c.node().await;
    let alice = unique("alice");
    let bob = unique("bob");
    both.broker
        .subscribe(&Topic::User(alice.clone()))
        .await
        .unwrap();
    both.broker
        .subscribe(&Topic::User(bob.clone()))
        .await
        .unwrap();
    to_only
        .broker
        .subscribe(&Topic::User(bob.clone()))
        .await
        .unwrap();
    outsider
        .broker
        .subscribe(&Topic::User(unique("carol")))
        .await
        .unwrap();
    let dm = both
        .broker
        .publish_dm(NewDm {
            from_id: alice.clone(),
            from: "Alice".into(),
            to: bob.clone(),
            text: "hi bob".into(),
            client_id: Some("k1".into()),
        })
        .await
        .unwrap();
    // The conversation and the topics are keyed by user id; the name is display.
    assert_eq!(
        (dm.from_id.as_str(), dm.from.as_str(), dm.to.as_str()),
        (alice.as_str(), "Alice", bob.as_str())
    );
    assert_eq!(recv(&mut both.events).await, BusEvent::Dm(dm.clone()));
    assert_quiet(&mut both.events).await;
    assert_eq!(recv(&mut to_only.events).await, BusEvent::Dm(dm.clone()));
    assert_quiet(&mut outsider.events).await;
    let reply = to_only
        .broker
        .publish_dm(NewDm {
            from_id: bob.clone(),
            from: bob.clone(),
            to: alice.clone(),
            text: "hi alice".into(),
            client_id: None,
        })
        .await
        .unwrap();
    assert!(reply.id > dm.id);
    for (x, y) in [(&alice, &bob), (&bob, &alice)] {
        let h = outsider
            .broker
            .dm_history(x, y, HistoryQuery::Latest { limit: 10 })
            .await
            .unwrap();
        assert_eq!(h.items, vec![dm.clone(), reply.clone()]);
    }
    let h = outsider
        .broker
        .dm_history(
            &alice,
            &unique("nobody"),
            HistoryQuery::Latest { limit: 10 },
        )
        .await
        .unwrap();
    assert!(h.items.is_empty());
}

/// A conversation is keyed by both ids exactly, whatever characters they hold:
/// `a:b` + `c` is not `a` + `b:c`.
pub async fn dm_conversations_are_keyed_by_both_ids(c: &dyn Cluster) {
    let n = c.node().await;
    let (x, y) = (unique("x"), unique("y"));
    let (ab, c_) = (format!("{x}:{y}"), unique("c"));
    let (a, bc) = (x.clone(), format!("{y}:{c_}"));
    let dm = |from: &str, to: &str| NewDm {
        from_id: from.into(),
        from: from.into(),
        to: to.into(),
        text: format!("{from} to {to}"),
        client_id: None,
    };
    n.broker.publish_dm(dm(&a, &bc)).await.unwrap();
    let h = n
        .broker
        .dm_history(&ab, &c_, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert!(h.items.is_empty(), "{:?}", h.items);
    let h = n
        .broker
        .dm_history(&bc, &a, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(h.items.len(), 1);
}

/// Signals reach subscribers of the room and are not stored.
pub async fn signals_are_delivered_not_stored(c: &dyn Cluster) {
    let mut a = c.node().await;
    let b = c.node().await;
    let room = unique("sig");
    a.broker
        .subscribe(&Topic::Room(room.clone()))
        .await
        .unwrap();
    let user = |id: &str| crate::UserRef {
        id: id.into(),
        name: format!("{id} display"),
    };
    let typing = Signal::Typing {
        user: user("bob"),
        typing: true,
    };
    b.broker
        .publish_signal(&room, typing.clone())
        .await
        .unwrap();
    let presence = Signal::Presence {
        joined: vec![user("x"), user("y")],
        left: vec![user("z")],
    };
    b.broker
        .publish_signal(&room, presence.clone())
        .await
        .unwrap();
    assert_eq!(
        recv(&mut a.events).await,
        BusEvent::Signal {
            room: room.clone(),
            signal: typing
        }
    );
    assert_eq!(
        recv(&mut a.events).await,
        BusEvent::Signal {
            room: room.clone(),
            signal: presence
        }
    );
    let h = a
        .broker
        .room_history(&room, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert!(h.items.is_empty());
}

/// Connection counts per user and per room, lists sorted and bounded, rooms ordered
/// by size; counts never go negative.
pub async fn presence_counts_connections(c: &dyn Cluster) {
    let n1 = c.node().await;
    let n2 = c.node().await;
    let room = unique("pres");
    let (u1, u2, u3) = (unique("u1"), unique("u2"), unique("u3"));
    assert_eq!(n1.presence.connect(&u1, "Una").await.unwrap(), 1);
    assert_eq!(n2.presence.connect(&u1, "Una").await.unwrap(), 2);
    assert_eq!(n2.presence.connect(&u2, "Dos").await.unwrap(), 1);
    assert_eq!(n1.presence.connections(&u1).await.unwrap(), 2);
    assert_eq!(n1.presence.connections(&u3).await.unwrap(), 0);
    assert_eq!(n1.presence.join(&room, &u1).await.unwrap(), 1);
    assert_eq!(n2.presence.join(&room, &u1).await.unwrap(), 2);
    assert_eq!(n2.presence.join(&room, &u2).await.unwrap(), 1);
    let (members, total) = n1.presence.room_members(&room, 1000).await.unwrap();
    assert_eq!(total, 2);
    // Keyed and sorted by id; each entry shows the user's display name.
    let mut want = vec![
        (u1.clone(), "Una".to_owned(), 2),
        (u2.clone(), "Dos".to_owned(), 1),
    ];
    want.sort();
    let got: Vec<(String, String, u64)> = members
        .iter()
        .map(|e| (e.id.clone(), e.name.clone(), e.connections))
        .collect();
    assert_eq!(got, want);
    let (one, total) = n1.presence.room_members(&room, 1).await.unwrap();
    assert_eq!((one.len(), total), (1, 2));
    let sizes = n1
        .presence
        .room_sizes(&[room.clone(), unique("none")])
        .await
        .unwrap();
    assert_eq!(sizes, vec![2, 0]);
    let rooms = n1.presence.rooms(1_000_000).await.unwrap();
    let mine = rooms.iter().find(|r| r.room == room).expect("room listed");
    assert_eq!(mine.members, 2);
    assert!(rooms.windows(2).all(|w| w[0].members >= w[1].members));
    let (online, _) = n1.presence.online_users(100_000).await.unwrap();
    assert!(online
        .iter()
        .any(|e| e.id == u1 && e.name == "Una" && e.connections == 2));
    assert!(online.windows(2).all(|w| w[0].id <= w[1].id));
    assert_eq!(n1.presence.leave(&room, &u1).await.unwrap(), 1);
    assert_eq!(n1.presence.leave(&room, &u1).await.unwrap(), 0);
    assert_eq!(
        n1.presence.leave(&room, &u1).await.unwrap(),
        0,
        "saturates at 0"
    );
    assert_eq!(n2.presence.leave(&room, &u2).await.unwrap(), 0);
    let (members, total) = n1.presence.room_members(&room, 10).await.unwrap();
    assert!(members.is_empty() && total == 0);
    assert!(!n1
        .presence
        .rooms(1_000_000)
        .await
        .unwrap()
        .iter()
        .any(|r| r.room == room));
    assert_eq!(n1.presence.disconnect(&u1).await.unwrap(), 1);
    assert_eq!(n1.presence.disconnect(&u1).await.unwrap(), 0);
    assert_eq!(n1.presence.disconnect(&u1).await.unwrap(), 0);
    assert_eq!(n2.presence.disconnect(&u2).await.unwrap(), 0);
    assert_eq!(n2.presence.connections(&u2).await.unwrap(), 0);
}

/// A client id resent by the same user returns the original message: stored once,
/// delivered once. Another user's identical client id is a different message.
pub async fn client_id_makes_sends_idempotent(c: &dyn Cluster) {
    let mut a = c.node().await;
    let b = c.node().await;
    let room = unique("idem");
    a.broker
        .subscribe(&Topic::Room(room.clone()))
        .await
        .unwrap();
    let send = |from: &str, text: &str| NewMessage {
        room: room.clone(),
        from_id: from.into(),
        from: format!("{from} display"),
        text: text.into(),
        client_id: Some("retry-1".into()),
        create: true,
    };
    let first = a
        .broker
        .publish_message(send("ann", "hello"))
        .await
        .unwrap();
    // A retry (possibly through another gateway, with the text retyped) is the same message.
    let again = b
        .broker
        .publish_message(send("ann", "hello"))
        .await
        .unwrap();
    assert_eq!(again, first);
    let other = b
        .broker
        .publish_message(send("ben", "hello"))
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    assert_eq!(recv(&mut a.events).await, BusEvent::Message(first.clone()));
    assert_eq!(recv(&mut a.events).await, BusEvent::Message(other.clone()));
    assert_quiet(&mut a.events).await;
    let h = a
        .broker
        .room_history(&room, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(h.items, vec![first.clone(), other]);
    // Without a client id nothing is deduplicated.
    let plain = NewMessage {
        client_id: None,
        create: true,
        ..send("ann", "hello")
    };
    let p1 = a.broker.publish_message(plain.clone()).await.unwrap();
    let p2 = a.broker.publish_message(plain).await.unwrap();
    assert_ne!(p1.id, p2.id);
    // DMs too, in their own namespace (same client id as the room message above).
    let (x, y) = (unique("x"), unique("y"));
    let dm = |text: &str| NewDm {
        from_id: x.clone(),
        from: x.clone(),
        to: y.clone(),
        text: text.into(),
        client_id: Some("retry-1".into()),
    };
    let d1 = a.broker.publish_dm(dm("hi")).await.unwrap();
    let d2 = b.broker.publish_dm(dm("hi")).await.unwrap();
    assert_eq!(d1, d2);
    let h = a
        .broker
        .dm_history(&x, &y, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(h.items, vec![d1]);
}

/// DMs to a user count as unread per sender until marked read; marking read tells
/// every node following the user; only users that ever connected are known.
pub async fn dm_unread_and_mark_read(c: &dyn Cluster) {
    let n = c.node().await;
    let mut follower = c.node().await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    follower
        .broker
        .subscribe(&Topic::User(bob.clone()))
        .await
        .unwrap();
    assert!(!n.presence.is_known(&bob).await.unwrap());
    n.presence.connect(&bob, "Bob").await.unwrap();
    n.presence.disconnect(&bob).await.unwrap();
    assert!(
        n.presence.is_known(&bob).await.unwrap(),
        "known after a connect"
    );
    let dm = |from: &str, to: &str, text: &str| NewDm {
        from_id: from.into(),
        from: from.into(),
        to: to.into(),
        text: text.into(),
        client_id: None,
    };
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(
            n.broker
                .publish_dm(dm(&ann, &bob, &format!("{i}")))
                .await
                .unwrap(),
        );
    }
    n.broker
        .publish_dm(dm(&bob, &bob, "note to self"))
        .await
        .unwrap();
    for _ in 0..4 {
        assert!(matches!(recv(&mut follower.events).await, BusEvent::Dm(_)));
    }
    assert_eq!(
        n.broker.dm_unread(&bob).await.unwrap(),
        vec![(ann.clone(), 3)]
    );
    assert!(n.broker.dm_unread(&ann).await.unwrap().is_empty());
    let left = n.broker.dm_mark_read(&bob, &ann, sent[1].id).await.unwrap();
    assert_eq!(left, 1);
    assert_eq!(
        recv(&mut follower.events).await,
        BusEvent::UserSignal {
            user: bob.clone(),
            signal: crate::UserSignal::DmRead {
                with: ann.clone(),
                up_to: sent[1].id,
                unread: 1
            }
        }
    );
    assert_eq!(
        n.broker.dm_unread(&bob).await.unwrap(),
        vec![(ann.clone(), 1)]
    );
    // Read markers only move forward: marking an older id reads nothing back.
    assert_eq!(
        n.broker.dm_mark_read(&bob, &ann, sent[0].id).await.unwrap(),
        1
    );
    assert_eq!(
        n.broker.dm_mark_read(&bob, &ann, sent[2].id).await.unwrap(),
        0
    );
    assert!(n.broker.dm_unread(&bob).await.unwrap().is_empty());
    assert_eq!(
        n.broker
            .dm_mark_read(&bob, &ann, MessageId::ZERO)
            .await
            .unwrap(),
        0,
        "upTo 0-0 after reading: still read"
    );
    // A DM after the marker is unread again; a huge upTo reads everything.
    n.broker.publish_dm(dm(&ann, &bob, "more")).await.unwrap();
    assert_eq!(
        n.broker.dm_unread(&bob).await.unwrap(),
        vec![(ann.clone(), 1)]
    );
    assert_eq!(
        n.broker
            .dm_mark_read(&bob, &ann, MessageId::MAX)
            .await
            .unwrap(),
        0
    );
}

/// A reused client id in another room is a new message there (idempotency is
/// keyed by room, user and client id).
pub async fn client_id_is_scoped_to_the_room(c: &dyn Cluster) {
    let a = c.node().await;
    let (r1, r2) = (unique("idem-a"), unique("idem-b"));
    let send = |room: &str| NewMessage {
        client_id: Some("same".into()),
        create: true,
        ..draft(room, "ann", "hello")
    };
    let m1 = a.broker.publish_message(send(&r1)).await.unwrap();
    let m2 = a.broker.publish_message(send(&r2)).await.unwrap();
    assert_eq!(
        (m1.room.as_str(), m2.room.as_str()),
        (r1.as_str(), r2.as_str())
    );
    let h = a
        .broker
        .room_history(&r2, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(h.items, vec![m2]);
}

/// A message without `create` reaches a room only once its history exists: to a
/// room without history it is refused `NotCreated` with nothing stored or
/// delivered (the gateway charges the room-creation quota, then publishes with
/// `create`). An idempotent retry of a stored message is answered either way.
pub async fn only_create_starts_a_room(c: &dyn Cluster) {
    let mut a = c.node().await;
    let room = unique("create");
    a.broker
        .subscribe(&Topic::Room(room.clone()))
        .await
        .unwrap();
    let plain = |text: &str| NewMessage {
        create: false,
        client_id: Some(format!("c-{text}")),
        ..draft(&room, "ann", text)
    };
    assert_eq!(
        a.broker.publish_message(plain("first")).await,
        Err(BackendError::NotCreated)
    );
    assert_quiet(&mut a.events).await;
    let empty = a
        .broker
        .room_history(&room, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert!(empty.items.is_empty(), "nothing stored: {:?}", empty.items);
    // The same message with `create` starts the room, and is stored once.
    let first = a
        .broker
        .publish_message(NewMessage {
            create: true,
            ..plain("first")
        })
        .await
        .unwrap();
    assert!(matches!(recv(&mut a.events).await, BusEvent::Message(m) if m.id == first.id));
    // From now on no `create` is needed; a retry is the original.
    let second = a.broker.publish_message(plain("second")).await.unwrap();
    assert!(second.id > first.id);
    assert_eq!(
        a.broker.publish_message(plain("first")).await.unwrap(),
        first
    );
    let h = a
        .broker
        .room_history(&room, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(texts(&h.items), ["first", "second"]);
}

/// Users offline and not seen for the idle time leave the directory with their
/// unread DMs (the DMs stay in history); online ones stay, however long ago they
/// connected; a pruned user who comes back is known again. At most `limit` go
/// per call.
pub async fn idle_users_are_pruned(c: &dyn Cluster) {
    let a = c.node().await;
    let b = c.node().await;
    let (gone, online, sender) = (unique("idle"), unique("online"), unique("sender"));
    for u in [&gone, &online, &sender] {
        a.presence.connect(u, "name").await.unwrap();
    }
    a.broker
        .publish_dm(NewDm {
            from_id: sender.clone(),
            from: "sender".into(),
            to: gone.clone(),
            text: "while you were out".into(),
            client_id: None,
        })
        .await
        .unwrap();
    a.presence.disconnect(&gone).await.unwrap();
    a.presence.disconnect(&sender).await.unwrap();
    assert_eq!(
        b.broker.dm_unread(&gone).await.unwrap(),
        vec![(sender.clone(), 1)]
    );
    let hour = Duration::from_secs(3600);
    assert_eq!(b.presence.prune_idle_users(hour, 100).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let idle = Duration::from_millis(30);
    assert_eq!(b.presence.prune_idle_users(idle, 1).await.unwrap(), 1);
    assert_eq!(b.presence.prune_idle_users(idle, 100).await.unwrap(), 1);
    assert_eq!(b.presence.prune_idle_users(idle, 100).await.unwrap(), 0);
    assert!(!b.presence.is_known(&gone).await.unwrap());
    assert!(!b.presence.is_known(&sender).await.unwrap());
    assert!(
        b.presence.is_known(&online).await.unwrap(),
        "online users stay"
    );
    assert!(b.broker.dm_unread(&gone).await.unwrap().is_empty());
    let kept = b
        .broker
        .dm_history(&sender, &gone, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(kept.items.len(), 1, "the conversation stays in history");
    a.presence.connect(&gone, "name").await.unwrap();
    assert!(b.presence.is_known(&gone).await.unwrap());
}

/// For a cluster whose history keeps 300 ms (`history_max_age`): a DM to a user
/// drops the user's unread entries from that sender that history no longer
/// holds, so unread counts never count what cannot be read.
pub async fn unread_follows_aged_history(c: &dyn Cluster) {
    let n = c.node().await;
    let (to, from) = (unique("reader"), unique("writer"));
    let dm = |text: &str| NewDm {
        from_id: from.clone(),
        from: "writer".into(),
        to: to.clone(),
        text: text.into(),
        client_id: None,
    };
    n.broker.publish_dm(dm("old 1")).await.unwrap();
    n.broker.publish_dm(dm("old 2")).await.unwrap();
    assert_eq!(
        n.broker.dm_unread(&to).await.unwrap(),
        vec![(from.clone(), 2)]
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let new = n.broker.publish_dm(dm("new")).await.unwrap();
    assert_eq!(
        n.broker.dm_unread(&to).await.unwrap(),
        vec![(from.clone(), 1)]
    );
    let h = n
        .broker
        .dm_history(&from, &to, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(h.items, vec![new.clone()]);
    assert_eq!(n.broker.dm_mark_read(&to, &from, new.id).await.unwrap(), 0);
    assert!(n
        .broker
        .dm_unread(&to)
        .await
        .unwrap()
        .iter()
        .all(|(_, c)| *c == 0));
}

/// A display-name key is held by one user id at a time, across nodes, until its
/// hold ends; the holder renews it.
pub async fn names_are_claimed_by_one_user(c: &dyn Cluster) {
    let n1 = c.node().await;
    let n2 = c.node().await;
    let key = unique("alice");
    let (a, b) = (unique("id-a"), unique("id-b"));
    let long = Duration::from_secs(60);
    assert_eq!(n1.presence.claim_name(&key, &a, long).await.unwrap(), None);
    assert_eq!(
        n2.presence.claim_name(&key, &b, long).await.unwrap(),
        Some(a.clone())
    );
    // The holder renews (from any node).
    assert_eq!(n2.presence.claim_name(&key, &a, long).await.unwrap(), None);
    // Another key is free.
    let other = unique("bob");
    assert_eq!(
        n2.presence.claim_name(&other, &b, long).await.unwrap(),
        None
    );
    // Once the hold ends, the key is free for someone else.
    let short_key = unique("carol");
    let short = Duration::from_millis(150);
    assert_eq!(
        n1.presence.claim_name(&short_key, &a, short).await.unwrap(),
        None
    );
    assert_eq!(
        n1.presence.claim_name(&short_key, &b, long).await.unwrap(),
        Some(a.clone())
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        n2.presence.claim_name(&short_key, &b, long).await.unwrap(),
        None
    );
    assert_eq!(
        n1.presence.claim_name(&short_key, &a, long).await.unwrap(),
        Some(b.clone())
    );
    // Renewing extends only the holder's hold, and never takes a free name.
    assert!(!n1.presence.renew_name(&short_key, &a, long).await.unwrap());
    assert!(n1.presence.renew_name(&short_key, &b, long).await.unwrap());
    let renewed = unique("dora");
    assert!(!n1.presence.renew_name(&renewed, &a, short).await.unwrap());
    assert_eq!(
        n2.presence.claim_name(&renewed, &b, short).await.unwrap(),
        None
    );
    assert!(n2.presence.renew_name(&renewed, &b, long).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        n1.presence.claim_name(&renewed, &a, long).await.unwrap(),
        Some(b.clone()),
        "the renewed hold outlived its first end"
    );
    // Only the holder releases a name; then anyone may take it.
    assert!(!n1.presence.release_name(&short_key, &a).await.unwrap());
    assert!(n1.presence.release_name(&short_key, &b).await.unwrap());
    assert!(!n2.presence.release_name(&short_key, &b).await.unwrap());
    assert_eq!(
        n2.presence.claim_name(&short_key, &a, long).await.unwrap(),
        None
    );
}

/// The first proposed value of a shared secret wins on every node.
pub async fn shared_secret_first_proposal_wins(c: &dyn Cluster) {
    let n1 = c.node().await;
    let n2 = c.node().await;
    let name = unique("guest-key");
    let s1 = n1
        .presence
        .shared_secret(&name, b"first-secret")
        .await
        .unwrap();
    let s2 = n2
        .presence
        .shared_secret(&name, b"second-secret")
        .await
        .unwrap();
    assert_eq!(s1, b"first-secret".to_vec());
    assert_eq!(s2, s1);
}

/// A deleted message is a tombstone in every history read, the room's nodes are
/// told, and an unknown id deletes nothing.
pub async fn deletes_leave_tombstones(c: &dyn Cluster) {
    let mut a = c.node().await;
    let b = c.node().await;
    let room = unique("del");
    a.broker
        .subscribe(&Topic::Room(room.clone()))
        .await
        .unwrap();
    let m1 = b
        .broker
        .publish_message(draft(&room, "ann", "keep"))
        .await
        .unwrap();
    let m2 = b
        .broker
        .publish_message(draft(&room, "ann", "oops"))
        .await
        .unwrap();
    assert_eq!(recv(&mut a.events).await, BusEvent::Message(m1.clone()));
    assert_eq!(recv(&mut a.events).await, BusEvent::Message(m2.clone()));
    assert!(b.broker.delete_message(&room, m2.id).await.unwrap());
    assert_eq!(
        recv(&mut a.events).await,
        BusEvent::Signal {
            room: room.clone(),
            signal: Signal::Deleted { id: m2.id }
        }
    );
    let tomb = m2.clone().tombstone();
    assert!(tomb.deleted && tomb.text.is_empty());
    for q in [
        HistoryQuery::Latest { limit: 10 },
        HistoryQuery::After {
            id: MessageId::ZERO,
            limit: 10,
        },
    ] {
        let h = a.broker.room_history(&room, q).await.unwrap();
        assert_eq!(h.items, vec![m1.clone(), tomb.clone()], "{q:?}");
    }
    assert_eq!(
        a.broker.room_message(&room, m2.id).await.unwrap(),
        Some(tomb.clone())
    );
    assert_eq!(
        a.broker.room_message(&room, m1.id).await.unwrap(),
        Some(m1.clone())
    );
    // A retry of a deleted message's client id returns its tombstone.
    let with_id = NewMessage {
        client_id: Some("del-retry".into()),
        create: true,
        ..draft(&room, "ann", "secret")
    };
    let m3 = b.broker.publish_message(with_id.clone()).await.unwrap();
    assert_eq!(recv(&mut a.events).await, BusEvent::Message(m3.clone()));
    assert!(b.broker.delete_message(&room, m3.id).await.unwrap());
    let _ = recv(&mut a.events).await;
    let retry = b.broker.publish_message(with_id).await.unwrap();
    assert_eq!(retry, m3.clone().tombstone());
    let missing = MessageId::new(m3.id.ms + 1000, 0);
    assert!(!a.broker.delete_message(&room, missing).await.unwrap());
    assert_eq!(a.broker.room_message(&room, missing).await.unwrap(), None);
    assert_quiet(&mut a.events).await;
}

/// User signals reach every node following the user, and only those.
pub async fn user_signals_reach_the_users_nodes(c: &dyn Cluster) {
    let mut a = c.node().await;
    let mut other = c.node().await;
    let b = c.node().await;
    let user = unique("target");
    a.broker
        .subscribe(&Topic::User(user.clone()))
        .await
        .unwrap();
    other
        .broker
        .subscribe(&Topic::User(unique("someone")))
        .await
        .unwrap();
    let signal = crate::UserSignal::Moderation {
        action: "ban".into(),
        room: None,
        until: Some(42),
    };
    b.broker
        .publish_user_signal(&user, signal.clone())
        .await
        .unwrap();
    assert_eq!(
        recv(&mut a.events).await,
        BusEvent::UserSignal { user, signal }
    );
    assert_quiet(&mut other.events).await;
}

/// Created rooms, members, roles, sanctions and the audit log are shared by every
/// node.
pub async fn access_is_shared(c: &dyn Cluster) {
    use crate::{AuditEntry, RoomMeta, SanctionKind, FOREVER};
    let n1 = c.node().await;
    let n2 = c.node().await;
    let (room, owner, guest) = (unique("priv"), unique("own"), unique("gst"));
    let meta = RoomMeta {
        private: true,
        announce: false,
        owner: owner.clone(),
    };
    assert!(n1.access.create_room(&room, &meta).await.unwrap());
    let other = RoomMeta {
        private: false,
        announce: true,
        owner: guest.clone(),
    };
    assert!(
        !n2.access.create_room(&room, &other).await.unwrap(),
        "first creator wins"
    );
    let never = unique("public");
    assert_eq!(
        n2.access
            .room_metas(&[room.clone(), never.clone()])
            .await
            .unwrap(),
        vec![Some(meta.clone()), None]
    );
    assert!(n2.access.is_room_member(&room, &owner).await.unwrap());
    assert!(!n2.access.is_room_member(&room, &guest).await.unwrap());
    n1.access
        .set_room_member(&room, &guest, true)
        .await
        .unwrap();
    assert!(n2.access.is_room_member(&room, &guest).await.unwrap());
    assert_eq!(
        n2.access.member_rooms(&guest, 10).await.unwrap(),
        vec![room.clone()]
    );
    n2.access
        .set_room_member(&room, &guest, false)
        .await
        .unwrap();
    assert!(!n1.access.is_room_member(&room, &guest).await.unwrap());
    assert!(n1.access.member_rooms(&guest, 10).await.unwrap().is_empty());

    assert!(n1.access.roles(&guest).await.unwrap().is_empty());
    n1.access.set_role(&guest, "moderator", true).await.unwrap();
    n1.access.set_role(&guest, "admin", true).await.unwrap();
    assert_eq!(
        n2.access.roles(&guest).await.unwrap(),
        vec!["admin", "moderator"]
    );
    n2.access.set_role(&guest, "admin", false).await.unwrap();
    assert_eq!(n1.access.roles(&guest).await.unwrap(), vec!["moderator"]);

    let soon = crate::now_ms() + 300;
    n1.access
        .set_sanction(SanctionKind::Mute, &guest, Some(&room), soon)
        .await
        .unwrap();
    n1.access
        .set_sanction(SanctionKind::Ban, &guest, None, FOREVER)
        .await
        .unwrap();
    let s = &n2.access;
    assert_eq!(
        s.sanction(SanctionKind::Mute, &guest, Some(&room))
            .await
            .unwrap(),
        Some(soon)
    );
    assert_eq!(
        s.sanction(SanctionKind::Mute, &guest, None).await.unwrap(),
        None
    );
    assert_eq!(
        s.sanction(SanctionKind::Ban, &guest, Some(&room))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.sanction(SanctionKind::Ban, &guest, None).await.unwrap(),
        Some(FOREVER)
    );
    assert!(s
        .clear_sanction(SanctionKind::Ban, &guest, None)
        .await
        .unwrap());
    assert!(!s
        .clear_sanction(SanctionKind::Ban, &guest, None)
        .await
        .unwrap());
    assert_eq!(
        s.sanction(SanctionKind::Ban, &guest, None).await.unwrap(),
        None
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.sanction(SanctionKind::Mute, &guest, Some(&room))
            .await
            .unwrap(),
        None,
        "a sanction ends by itself"
    );

    let entry = |action: &str| AuditEntry {
        id: None,
        ts: crate::now_ms(),
        actor: owner.clone(),
        action: action.into(),
        target: Some(guest.clone()),
        room: Some(room.clone()),
        until: None,
    };
    for a in ["mute", "kick", "ban"] {
        n1.access.audit_append(entry(a)).await.unwrap();
    }
    let mine = |v: Vec<AuditEntry>| -> Vec<String> {
        v.into_iter()
            .filter(|e| e.room.as_deref() == Some(room.as_str()))
            .map(|e| e.action)
            .collect()
    };
    let page = n2.access.audit_list(None, 1000).await.unwrap();
    let newest_kick = page
        .iter()
        .find(|e| e.room.as_deref() == Some(room.as_str()) && e.action == "kick")
        .and_then(|e| e.id.clone())
        .unwrap();
    assert_eq!(mine(page), vec!["ban", "kick", "mute"]);
    let older = n2
        .access
        .audit_list(Some(&newest_kick), 1000)
        .await
        .unwrap();
    assert_eq!(mine(older), vec!["mute"]);
}

/// Rate buckets hold across nodes: a burst, then refusals with a wait, all or
/// none over several buckets, and the rate again after the wait.
pub async fn rate_limits_hold_across_nodes(c: &dyn Cluster) {
    use crate::RateBucket;
    let n1 = c.node().await;
    let n2 = c.node().await;
    let user = RateBucket {
        key: unique("rl:u"),
        per_sec: 5.0,
        burst: 3.0,
    };
    let ip = RateBucket {
        key: unique("rl:ip"),
        per_sec: 100.0,
        burst: 100.0,
    };
    let both = [user.clone(), ip.clone()];
    let mut taken = 0;
    for i in 0..6 {
        let node = if i % 2 == 0 { &n1 } else { &n2 };
        if node.access.rate_take(&both).await.unwrap().is_ok() {
            taken += 1;
        }
    }
    assert_eq!(taken, 3, "the burst, shared by both nodes");
    let wait = n1.access.rate_take(&both).await.unwrap().unwrap_err();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(200),
        "{wait:?}"
    );
    // All or none: the refused takes did not drain the other bucket.
    for _ in 0..90 {
        assert!(n2
            .access
            .rate_take(std::slice::from_ref(&ip))
            .await
            .unwrap()
            .is_ok());
    }
    tokio::time::sleep(wait + Duration::from_millis(30)).await;
    assert!(n2.access.rate_take(&both).await.unwrap().is_ok());
    assert!(n1.access.rate_take(&[]).await.unwrap().is_ok());
}

/// Gateway status reports are shared by every node, stamped by the backend, and
/// a report older than the asked age is left out and removed (a node may remove
/// its own at once); the backend describes its health.
pub async fn gateway_status_is_shared(c: &dyn Cluster) {
    use confab_core::protocol::{GatewayStatus, RoomTraffic};
    let n1 = c.node().await;
    let n2 = c.node().await;
    let (id1, id2) = (n1.status.node_id(), n2.status.node_id());
    assert_ne!(id1, id2, "each node reports under its own id");
    let report = |id: &str, connections| GatewayStatus {
        id: id.to_owned(),
        started_at: 1,
        updated_at: 0,
        uptime_s: 0,
        connections,
        rooms: 2,
        msgs_per_sec: 1.5,
        lag_ms: 3,
        version: "test".into(),
        top_rooms: vec![RoomTraffic {
            room: "r".into(),
            messages: 9,
        }],
    };
    let long = Duration::from_secs(60);
    let stamped = n1
        .status
        .put_gateway_status(&report(&id1, 1))
        .await
        .unwrap();
    assert!(stamped > 0);
    n1.status
        .put_gateway_status(&report(&id1, 4))
        .await
        .unwrap();
    n2.status
        .put_gateway_status(&report(&id2, 5))
        .await
        .unwrap();
    let (seen, total) = n2.status.gateway_statuses(long, 100).await.unwrap();
    let mine: Vec<&GatewayStatus> = seen.iter().filter(|s| s.id == id1 || s.id == id2).collect();
    assert_eq!(mine.len(), 2, "{seen:?}");
    assert!(total >= 2);
    let one = mine.iter().find(|s| s.id == id1).unwrap();
    assert_eq!(
        one.connections, 4,
        "a report replaces the node's previous one"
    );
    assert!(one.updated_at >= stamped);
    assert_eq!(one.top_rooms, report(&id1, 4).top_rooms);
    assert_eq!(one.msgs_per_sec, 1.5);
    let (first, _) = n1.status.gateway_statuses(long, 1).await.unwrap();
    assert_eq!(first.len(), 1, "bounded by limit");
    // Stale reports are left out, and removed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    n2.status
        .put_gateway_status(&report(&id2, 6))
        .await
        .unwrap();
    let (fresh, _) = n1
        .status
        .gateway_statuses(Duration::from_millis(200), 100)
        .await
        .unwrap();
    assert!(fresh.iter().all(|s| s.id != id1), "{fresh:?}");
    assert!(fresh.iter().any(|s| s.id == id2 && s.connections == 6));
    let (later, _) = n1.status.gateway_statuses(long, 100).await.unwrap();
    assert!(
        later.iter().all(|s| s.id != id1),
        "the stale report was removed"
    );
    // A node stopping removes its own report, and only that.
    n1.status
        .put_gateway_status(&report(&id1, 7))
        .await
        .unwrap();
    n2.status.remove_gateway_status().await.unwrap();
    let (left, _) = n1.status.gateway_statuses(long, 100).await.unwrap();
    assert!(left.iter().all(|s| s.id != id2), "{left:?}");
    assert!(left.iter().any(|s| s.id == id1));
    let b = n1.status.backend_status().await;
    assert!(b.healthy, "{b:?}");
    assert!(!b.kind.is_empty());
}

/// The backend reports ready when it can serve.
pub async fn ready_when_serving(c: &dyn Cluster) {
    let n = c.node().await;
    assert!(n.broker.ready().await);
}

/// Errors are values, never panics: the type is usable by callers.
pub fn error_maps_to_wire_code() {
    use confab_core::{ChatError, ErrorCode};
    let e: ChatError = BackendError::Unavailable("down".into()).into();
    assert_eq!(e.code, ErrorCode::Unavailable);
    let e: ChatError = BackendError::Internal("bug".into()).into();
    assert_eq!(e.code, ErrorCode::Internal);
    let e: ChatError = BackendError::NotCreated.into();
    assert_eq!(e.code, ErrorCode::Internal);
}

/// Expands to one `#[tokio::test]` per conformance check. `$make` is an expression
/// evaluating to a future of something implementing [`Cluster`].
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            publish_assigns_ids_and_latest_page,
            history_pages_backwards,
            after_returns_missed_messages,
            fan_out_to_subscribed_nodes_only,
            concurrent_publishers_agree_on_order,
            dms_reach_both_users_once,
            dm_conversations_are_keyed_by_both_ids,
            signals_are_delivered_not_stored,
            presence_counts_connections,
            client_id_makes_sends_idempotent,
            dm_unread_and_mark_read,
            client_id_is_scoped_to_the_room,
            only_create_starts_a_room,
            idle_users_are_pruned,
            names_are_claimed_by_one_user,
            shared_secret_first_proposal_wins,
            deletes_leave_tombstones,
            user_signals_reach_the_users_nodes,
            access_is_shared,
            rate_limits_hold_across_nodes,
            gateway_status_is_shared,
            ready_when_serving
        );
        #[test]
        fn error_maps_to_wire_code() {
            $crate::conformance::error_maps_to_wire_code();
        }
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let cluster = $make.await;
                $crate::conformance::$name(&cluster).await;
            }
        )*
    };
}
