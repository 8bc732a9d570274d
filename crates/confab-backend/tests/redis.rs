//! The conformance suite and the Redis-specific checks (dead gateway reaped,
//! Redis restart, catch-up after a pub/sub outage) on real redis-servers that the
//! tests start themselves: one per test, on a free loopback port, killed by PID when
//! the test ends (and by the kernel if the test process dies first).

use async_trait::async_trait;
use confab_backend::conformance::{unique, Cluster, Node};
use confab_backend::redis_backend::{RedisConfig, RedisNode};
use confab_backend::{
    BackendError, Broker, BusEvent, EventReceiver, HistoryQuery, NewDm, NewMessage, Presence,
    Signal, Topic,
};
use confab_core::Message;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A redis-server child process; killed and reaped on drop.
struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Start on a free port.
    fn start() -> Self {
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            if let Some(s) = Self::try_start(port) {
                return s;
            }
        }
        panic!("could not start redis-server");
    }

    /// Start on `port` (e.g. again after [`RedisServer::kill`]).
    fn start_on(port: u16) -> Self {
        for _ in 0..50 {
            if let Some(s) = Self::try_start(port) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("could not restart redis-server on {port}");
    }

    fn try_start(port: u16) -> Option<Self> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; it makes the kernel kill the server if
        // the thread that spawned it (this test's) dies without running Drop.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut server = RedisServer {
            child: Some(cmd.spawn().expect("redis-server must be installed")),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if server.pings() {
                return Some(server);
            }
            if let Some(child) = server.child.as_mut() {
                if child.try_wait().ok().flatten().is_some() {
                    return None; // exited: port taken
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Short timers so failures show quickly.
fn fast() -> RedisConfig {
    RedisConfig {
        command_timeout: Duration::from_secs(1),
        health_interval: Duration::from_millis(200),
        ..RedisConfig::default()
    }
}

async fn node(server: &RedisServer, cfg: RedisConfig) -> (Arc<RedisNode>, EventReceiver) {
    RedisNode::connect(&server.url(), cfg)
        .await
        .expect("connect to test redis")
}

struct RedisCluster(RedisServer);

#[async_trait]
impl Cluster for RedisCluster {
    async fn node(&self) -> Node {
        let (n, events) = node(&self.0, fast()).await;
        Node {
            broker: n.clone(),
            presence: n.clone(),
            access: n,
            events,
        }
    }
}

async fn cluster() -> RedisCluster {
    RedisCluster(RedisServer::start())
}

confab_backend::conformance_tests!(cluster());

fn draft(room: &str, text: &str) -> NewMessage {
    NewMessage {
        room: room.into(),
        from_id: "pat".into(),
        from: "pat".into(),
        text: text.into(),
        client_id: None,
    }
}

async fn recv(rx: &mut EventReceiver, within: Duration) -> BusEvent {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("timed out waiting for an event")
        .expect("event channel closed")
}

/// Poll `f` every 50 ms until it is true; panics after `within`.
async fn eventually<F: std::future::Future<Output = bool>>(
    within: Duration,
    what: &str,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_fast_when_redis_is_down() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Instant::now();
    let r = RedisNode::connect(&format!("redis://127.0.0.1:{port}/"), fast()).await;
    assert!(matches!(r, Err(BackendError::Unavailable(_))));
    assert!(t.elapsed() < Duration::from_secs(3));
    let r = RedisNode::connect("not a url", fast()).await;
    assert!(matches!(r, Err(BackendError::Internal(_))));
}

/// `MAXLEN ~` trims whole stream nodes; `After` reports what retention dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_oldest_and_marks_truncated() {
    let server = RedisServer::start();
    let (n, _rx) = node(
        &server,
        RedisConfig {
            history_retention: 3,
            ..fast()
        },
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..250 {
        ids.push(
            n.publish_message(draft("r", &i.to_string()))
                .await
                .unwrap()
                .id,
        );
    }
    let all = n
        .room_history("r", HistoryQuery::Latest { limit: 1000 })
        .await
        .unwrap();
    assert!(all.items.len() >= 3 && all.items.len() < 250, "trimmed");
    assert!(!all.has_more);
    assert_eq!(all.items.last().unwrap().id, ids[249]);
    let p = n
        .room_history(
            "r",
            HistoryQuery::After {
                id: ids[0],
                limit: 1000,
            },
        )
        .await
        .unwrap();
    assert!(p.truncated, "entries after ids[0] were dropped");
    assert_eq!(p.items, all.items);
    let p = n
        .room_history(
            "r",
            HistoryQuery::After {
                id: ids[246],
                limit: 1000,
            },
        )
        .await
        .unwrap();
    assert!(!p.truncated);
    assert_eq!(p.items.len(), 3);
    assert!(p.has_more);
    // ts is the id's millisecond part.
    assert!(all.items.iter().all(|m| m.ts == m.id.ms));
}

/// A gateway that dies without cleaning up: another node reaps its presence after
/// the heartbeat TTL and announces who left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_gateway_presence_is_reaped() {
    let server = RedisServer::start();
    let ttl = Duration::from_secs(2);
    let interval = Duration::from_millis(500);
    let cfg = RedisConfig {
        heartbeat_interval: Duration::from_millis(500),
        heartbeat_ttl: ttl,
        reap_interval: interval,
        ..fast()
    };
    let (a, _ea) = node(&server, cfg.clone()).await;
    let (b, mut eb) = node(&server, cfg).await;
    let room = unique("lobby");
    b.subscribe(&Topic::Room(room.clone())).await.unwrap();
    for user in ["ann", "bob"] {
        a.connect(user, user).await.unwrap();
    }
    a.join(&room, "ann").await.unwrap();
    assert_eq!(a.join(&room, "ann").await.unwrap(), 2);
    a.join(&room, "bob").await.unwrap();
    a.join(&room, "cy").await.unwrap();
    // bob and cy are also connected through B: they stay.
    b.connect("bob", "bob").await.unwrap();
    assert_eq!(b.join(&room, "bob").await.unwrap(), 2);
    b.join(&room, "cy").await.unwrap();

    a.abandon();
    drop(a);
    let crashed = Instant::now();
    // Nothing is undone before the TTL.
    assert_eq!(b.room_members(&room, 10).await.unwrap().1, 3);
    assert_eq!(b.connections("ann").await.unwrap(), 1);

    let ev = recv(&mut eb, ttl + interval * 4 + Duration::from_secs(2)).await;
    let waited = crashed.elapsed();
    assert_eq!(
        ev,
        BusEvent::Signal {
            room: room.clone(),
            signal: Signal::Presence {
                joined: vec![],
                left: vec!["ann".into()],
            },
        }
    );
    assert!(
        waited <= ttl + interval * 2 + Duration::from_millis(500),
        "reaped after {waited:?}"
    );
    let (members, total) = b.room_members(&room, 10).await.unwrap();
    let got: Vec<(&str, u64)> = members
        .iter()
        .map(|e| (e.name.as_str(), e.connections))
        .collect();
    assert_eq!((got, total), (vec![("bob", 1), ("cy", 1)], 2));
    assert_eq!(b.connections("ann").await.unwrap(), 0);
    assert_eq!(b.connections("bob").await.unwrap(), 1);
    let rooms = b.rooms(10).await.unwrap();
    assert_eq!(rooms.iter().find(|r| r.room == room).unwrap().members, 2);
    // Nothing left to reap.
    assert_eq!(b.reap_now().await.unwrap(), 0);
}

/// A graceful shutdown undoes the gateway's presence at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_removes_presence_and_announces() {
    let server = RedisServer::start();
    let (a, _ea) = node(&server, fast()).await;
    let (b, mut eb) = node(&server, fast()).await;
    let room = unique("bye");
    b.subscribe(&Topic::Room(room.clone())).await.unwrap();
    a.connect("dee", "dee").await.unwrap();
    a.join(&room, "dee").await.unwrap();
    a.join(&room, "eve").await.unwrap();
    a.shutdown().await.unwrap();
    assert!(!a.ready().await);
    assert_eq!(
        recv(&mut eb, Duration::from_secs(2)).await,
        BusEvent::Signal {
            room: room.clone(),
            signal: Signal::Presence {
                joined: vec![],
                left: vec!["dee".into(), "eve".into()],
            },
        }
    );
    assert_eq!(b.room_members(&room, 10).await.unwrap().1, 0);
    assert_eq!(b.connections("dee").await.unwrap(), 0);
    assert!(b.rooms(100).await.unwrap().iter().all(|r| r.room != room));
}

/// Redis goes away and comes back on the same port: calls fail fast meanwhile, then
/// the node re-subscribes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_redis_restart() {
    let mut server = RedisServer::start();
    let port = server.port;
    let (a, mut ea) = node(&server, fast()).await;
    let (b, _eb) = node(&server, fast()).await;
    let room = unique("restart");
    a.subscribe(&Topic::Room(room.clone())).await.unwrap();
    let m = b.publish_message(draft(&room, "before")).await.unwrap();
    assert_eq!(
        recv(&mut ea, Duration::from_secs(2)).await,
        BusEvent::Message(m)
    );

    server.kill();
    let t = Instant::now();
    let r = b.publish_message(draft(&room, "while down")).await;
    assert!(matches!(r, Err(BackendError::Unavailable(_))), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let t = Instant::now();
    assert!(!a.ready().await);
    assert!(!b.ready().await);
    assert!(t.elapsed() < Duration::from_secs(3));
    let r = a.subscribe(&Topic::Room(unique("x"))).await;
    assert!(matches!(r, Err(BackendError::Unavailable(_))), "{r:?}");

    let server = RedisServer::start_on(port);
    eventually(Duration::from_secs(8), "a ready again", || a.ready()).await;
    eventually(Duration::from_secs(8), "b ready again", || b.ready()).await;
    let m = b.publish_message(draft(&room, "after")).await.unwrap();
    assert_eq!(
        recv(&mut ea, Duration::from_secs(2)).await,
        BusEvent::Message(m)
    );
    drop(server);
}

/// Messages and DMs published while a node's pub/sub connection was down are
/// delivered after it reconnects, in order and without duplicates, while a
/// publisher keeps going across the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_after_pubsub_outage() {
    let server = RedisServer::start();
    let (a, mut ea) = node(
        &server,
        RedisConfig {
            reconnect_backoff_min: Duration::from_millis(1500),
            reconnect_backoff_max: Duration::from_secs(3),
            ..fast()
        },
    )
    .await;
    let (b, _eb) = node(&server, fast()).await;
    let room = unique("gap");
    let (ann, bob) = (unique("ann"), unique("bob"));
    a.subscribe(&Topic::Room(room.clone())).await.unwrap();
    a.subscribe(&Topic::User(ann.clone())).await.unwrap();
    // A follows both users of some DMs: still one delivery each.
    a.subscribe(&Topic::User(bob.clone())).await.unwrap();

    // A publisher running across the outage: ~3 s of room messages and DMs.
    let publisher = {
        let (b, room, ann, bob) = (b.clone(), room.clone(), ann.clone(), bob.clone());
        tokio::spawn(async move {
            let (mut msgs, mut dms) = (Vec::new(), Vec::new());
            for i in 0..150 {
                let m = b
                    .publish_message(draft(&room, &i.to_string()))
                    .await
                    .unwrap();
                // Some are deleted at once: during the outage too.
                if i % 7 == 3 {
                    assert!(b.delete_message(&room, m.id).await.unwrap());
                    msgs.push(m.tombstone());
                } else {
                    msgs.push(m);
                }
                if i % 5 == 0 {
                    let (from, to) = if i % 10 == 0 {
                        (&bob, &ann)
                    } else {
                        (&ann, &bob)
                    };
                    dms.push(
                        b.publish_dm(NewDm {
                            from_id: from.clone(),
                            // A display name unlike the id: the cursors go by id.
                            from: format!("{from} (name)"),
                            to: to.clone(),
                            text: i.to_string(),
                            client_id: None,
                        })
                        .await
                        .unwrap(),
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (msgs, dms)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Cut A's pub/sub connection (B has none subscribed; it just reconnects).
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(killed >= 1);
    eventually(Duration::from_secs(1), "a not ready", || async {
        !a.ready().await
    })
    .await;
    eventually(Duration::from_secs(6), "a ready again", || a.ready()).await;
    let (msgs, dms) = publisher.await.unwrap();

    let (mut got_msgs, mut got_dms) = (Vec::new(), Vec::new());
    let mut tombstones_caught_up = 0;
    // A live deletion may overtake the catch-up of its message.
    let mut deleted_early = std::collections::HashSet::new();
    while got_msgs.len() < msgs.len() || got_dms.len() < dms.len() {
        match recv(&mut ea, Duration::from_secs(3)).await {
            BusEvent::Message(m) => {
                tombstones_caught_up += usize::from(m.deleted);
                let m = if deleted_early.remove(&m.id) {
                    m.tombstone()
                } else {
                    m
                };
                got_msgs.push(m)
            }
            BusEvent::Dm(d) => got_dms.push(d),
            BusEvent::Signal {
                signal: Signal::Deleted { id },
                ..
            } => match got_msgs.iter_mut().find(|m: &&mut Message| m.id == id) {
                Some(m) => *m = m.clone().tombstone(),
                None => {
                    deleted_early.insert(id);
                }
            },
            other => panic!("unexpected {other:?}"),
        }
    }
    // Every deleted message ends as its tombstone: replayed as one when the
    // deletion happened during the outage (its text never delivered).
    assert_eq!(got_msgs, msgs);
    assert!(
        tombstones_caught_up > 0,
        "some deletions happened during the outage"
    );
    assert_eq!(got_dms, dms);
    let stats = a.stats();
    assert_eq!(stats.reconnects, 1);
    assert!(
        stats.caught_up > 0,
        "the outage was bridged from the streams"
    );
    if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), ea.recv()).await {
        panic!("duplicate or extra event {ev:?}");
    }
}
