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
use confab_core::{Message, MessageId};
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

struct RedisCluster(RedisServer, RedisConfig);

#[async_trait]
impl Cluster for RedisCluster {
    async fn node(&self) -> Node {
        let (n, events) = node(&self.0, self.1.clone()).await;
        Node {
            broker: n.clone(),
            presence: n.clone(),
            access: n.clone(),
            status: n,
            events,
        }
    }
}

async fn cluster() -> RedisCluster {
    RedisCluster(RedisServer::start(), fast())
}

confab_backend::conformance_tests!(cluster());

/// The status page's view of Redis: `INFO` fields while it runs, `healthy: false`
/// with the error (not a failure) once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_status_reads_info_and_reports_an_outage() {
    use confab_backend::Status;
    let mut server = RedisServer::start();
    let (n, _rx) = node(&server, fast()).await;
    let s = n.backend_status().await;
    assert_eq!(s.kind, "redis");
    assert!(s.healthy, "{s:?}");
    assert!(
        s.version.as_deref().is_some_and(|v| v.contains('.')),
        "{s:?}"
    );
    assert!(s.used_memory.is_some_and(|m| m > 0), "{s:?}");
    assert_eq!(s.maxmemory, Some(0), "the test server has no limit");
    assert!(s.maxmemory_policy.is_some());
    assert!(s.uptime_s.is_some());
    assert!(s.round_trip_ms.is_some());
    server.kill();
    let s = n.backend_status().await;
    assert_eq!(s.kind, "redis");
    assert!(!s.healthy);
    assert!(s.error.is_some(), "{s:?}");
    assert!(n
        .gateway_statuses(Duration::from_secs(6), 10)
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_follows_aged_history() {
    let aged = RedisConfig {
        history_max_age: Some(Duration::from_millis(300)),
        ..fast()
    };
    confab_backend::conformance::unread_follows_aged_history(&RedisCluster(
        RedisServer::start(),
        aged,
    ))
    .await;
}

fn draft(room: &str, text: &str) -> NewMessage {
    NewMessage {
        room: room.into(),
        from_id: "pat".into(),
        from: "pat".into(),
        text: text.into(),
        client_id: None,
        create: true,
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

/// `history_max_age`: entries older than it are trimmed when the room is written
/// to, and an idle room's stream expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_ages_out() {
    let server = RedisServer::start();
    let (n, _rx) = node(
        &server,
        RedisConfig {
            history_max_age: Some(Duration::from_millis(300)),
            ..fast()
        },
    )
    .await;
    let (busy, idle) = (unique("busy"), unique("idle"));
    n.publish_message(draft(&busy, "old")).await.unwrap();
    n.publish_message(draft(&idle, "old")).await.unwrap();
    // Written to every 200 ms, the busy room's stream lives on; its entries older
    // than 300 ms are trimmed when it is written to.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mid = n.publish_message(draft(&busy, "mid")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let new = n.publish_message(draft(&busy, "new")).await.unwrap();
    let h = n
        .room_history(&busy, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(h.items, vec![mid, new]);
    let after = n
        .room_history(
            &busy,
            HistoryQuery::After {
                id: MessageId::ZERO,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(after.truncated, "the aged entry is reported missing");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let h = n
        .room_history(&idle, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert!(h.items.is_empty(), "the idle stream expired");
}

// ---- Redis AUTH (requirepass, ACL users) and TLS (rediss://) ----------------------

/// A redis-server started with extra arguments (`--requirepass`, TLS); killed and
/// reaped on drop. Ready once its port accepts connections.
struct SecuredRedis {
    child: Child,
    port: u16,
}

impl SecuredRedis {
    /// Start with `args`; `tls`: `port` is the `--tls-port` (the plain port is off).
    fn start(args: &[&str], tls: bool) -> Self {
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let p = port.to_string();
            let mut cmd = Command::new("redis-server");
            if tls {
                cmd.args(["--port", "0", "--tls-port", &p]);
            } else {
                cmd.args(["--port", &p]);
            }
            cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: as in RedisServer::try_start.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut child = cmd.spawn().expect("redis-server must be installed");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return SecuredRedis { child, port };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break; // exited: port taken (or bad arguments)
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start redis-server with {args:?}");
    }
}

impl Drop for SecuredRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connect, publish one message and read it back, shut down.
async fn round_trip(url: &str) -> Result<(), BackendError> {
    let (n, _rx) = RedisNode::connect(url, fast()).await?;
    let m = n.publish_message(draft("auth", "hello")).await?;
    let page = n
        .room_history("auth", HistoryQuery::Latest { limit: 10 })
        .await?;
    assert_eq!(page.items.last().map(|x| x.id), Some(m.id));
    n.shutdown().await
}

/// The error of a connect that must fail, checked not to contain any of `secrets`.
async fn refused(url: &str, secrets: &[&str]) -> String {
    let err = match RedisNode::connect(url, fast()).await {
        Ok(_) => panic!("connect to {} succeeded", RedisNode::redact_url(url)),
        Err(e) => e.to_string(),
    };
    for s in secrets {
        assert!(!err.contains(s), "error {err:?} contains the secret {s:?}");
    }
    eprintln!("refused as expected: {err}");
    err
}

#[test]
fn redact_url_hides_passwords_also_in_malformed_urls() {
    let cases = [
        ("redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/"),
        (
            "redis://:s3cret@127.0.0.1:6379/",
            "redis://:***@127.0.0.1:6379/",
        ),
        (
            "rediss://app:s3cret@redis.example:6380/0",
            "rediss://app:***@redis.example:6380/0",
        ),
        ("redis://s3cret@host/", "redis://***@host/"),
        ("redis://:p@ss:w/rd@host:bad/", "redis://:***@host:bad/"),
        ("redis://:pa/ss@host", "redis://:***@host"),
        (
            "redis+unix:///run/redis.sock?db=1&pass=s3cret",
            "redis+unix:///run/redis.sock?db=1&pass=***",
        ),
        (
            "unix:///r.sock?password=s3cret#x",
            "unix:///r.sock?password=***#x",
        ),
        (":s3cret@host:6379", ":***@host:6379"),
        ("not a url", "not a url"),
    ];
    for (url, want) in cases {
        assert_eq!(RedisNode::redact_url(url), want, "{url}");
    }
}

/// `requirepass` and an ACL user: the right password in the URL works (percent-
/// encoded, with URL-special characters in it), a wrong or missing one fails with an
/// error that names the cause and contains no password; nor does a malformed URL's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_in_url_authenticates_and_never_appears_in_errors() {
    const PW: &str = "p@ss:w/rd#1%x";
    const PW_ENC: &str = "p%40ss%3Aw%2Frd%231%25x";
    let server = SecuredRedis::start(
        &[
            "--requirepass",
            PW,
            "--user",
            "alice",
            "on",
            ">alice s3cret",
            "~*",
            "&*",
            "+@all",
        ],
        false,
    );
    let port = server.port;
    let base = format!("127.0.0.1:{port}/");

    round_trip(&format!("redis://:{PW_ENC}@{base}"))
        .await
        .expect("requirepass password in the URL");
    round_trip(&format!("redis://alice:alice%20s3cret@{base}"))
        .await
        .expect("ACL user and password in the URL");

    let secrets = [PW, PW_ENC, "alice s3cret", "alice%20s3cret", "Wr0ngPass"];
    let e = refused(&format!("redis://:Wr0ngPass@{base}"), &secrets).await;
    assert!(e.contains("WRONGPASS") || e.contains("auth"), "{e}");
    let e = refused(&format!("redis://alice:Wr0ngPass@{base}"), &secrets).await;
    assert!(e.contains("WRONGPASS") || e.contains("auth"), "{e}");
    let e = refused(&format!("redis://{base}"), &secrets).await;
    assert!(e.contains("NOAUTH") || e.contains("uthentication"), "{e}");

    // Malformed: the error shows the URL redacted, never the password.
    for url in [
        format!("redis://:{PW_ENC}@127.0.0.1:notaport/"),
        format!("redis://:{PW}@127.0.0.1:{port}/"),
        format!("redis://:{PW_ENC}@127.0.0.1:{port}/?protocol=RESP3"),
        format!("rediss://:{PW_ENC}@127.0.0.1:{port}/#verify-none"),
        format!("redis://alice:{PW_ENC}@127.0.0.1:{port}/db1"),
    ] {
        let e = refused(&url, &secrets).await;
        assert!(e.contains("***"), "{e}");
    }
}

/// `rediss://` (TLS with `--tls-auth-clients no`, plus `requirepass`): works when
/// the server's CA is trusted (`SSL_CERT_FILE`), fails when it is not (the
/// certificate is verified). `SSL_CERT_FILE` is process-wide, so each case runs in a
/// child process: this test binary, running [`rediss_child`] alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_url_verifies_the_server_and_authenticates() {
    let dir = std::env::temp_dir().join(format!(
        "confab-rediss-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let sh = |script: &str| {
        let out = Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(&dir)
            .output()
            .expect("sh");
        assert!(out.status.success(), "{script}: {out:?}");
    };
    // A throw-away CA and a server certificate for 127.0.0.1 signed by it.
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj '/CN=confab test CA' -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj '/CN=127.0.0.1' -addext 'subjectAltName=IP:127.0.0.1' \
        -keyout server.key -out server.csr 2>/dev/null
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -copy_extensions copy -out server.pem 2>/dev/null",
    );
    let file = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let server = SecuredRedis::start(
        &[
            "--tls-cert-file",
            &file("server.pem"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.pem"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "tls-s3cret",
        ],
        true,
    );
    let url = format!("rediss://:tls-s3cret@127.0.0.1:{}/", server.port);
    let child = |ca: &str, expect: &str| {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "rediss_child", "--ignored", "--nocapture"])
            .env("CONFAB_TEST_REDISS_URL", &url)
            .env("CONFAB_TEST_REDISS_EXPECT", expect)
            .env("SSL_CERT_FILE", ca)
            .env_remove("SSL_CERT_DIR")
            .output()
            .expect("run the test binary");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "child ({expect}): {text}");
        assert!(text.contains("1 passed"), "child ({expect}) ran: {text}");
        assert!(!text.contains("tls-s3cret"), "{text}");
        text
    };
    let text = child(&file("ca.pem"), "ok");
    assert!(text.contains("rediss child: connected"), "{text}");
    // Another CA (the system bundle, or an empty file if there is none): refused.
    let other = if std::path::Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        "/etc/ssl/certs/ca-certificates.crt".to_string()
    } else {
        std::fs::write(dir.join("empty.pem"), "").unwrap();
        file("empty.pem")
    };
    let text = child(&other, "refused");
    assert!(text.contains("rediss child: refused"), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run by [`rediss_url_verifies_the_server_and_authenticates`] in a child process
/// (with `SSL_CERT_FILE` set); does nothing when run on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by rediss_url_verifies_the_server_and_authenticates"]
async fn rediss_child() {
    let (Ok(url), Ok(expect)) = (
        std::env::var("CONFAB_TEST_REDISS_URL"),
        std::env::var("CONFAB_TEST_REDISS_EXPECT"),
    ) else {
        return;
    };
    if expect == "ok" {
        round_trip(&url).await.expect("rediss:// with a trusted CA");
        println!("rediss child: connected");
    } else {
        let e = refused(&url, &["tls-s3cret"]).await;
        println!("rediss child: refused: {e}");
    }
}

/// Redis at `maxmemory` with `noeviction` refuses writes: a publish fails with
/// `Unavailable` (retry later), nothing is half-stored, and history is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_redis_refuses_writes_as_unavailable() {
    let server = RedisServer::start();
    let (n, _rx) = node(&server, fast()).await;
    let room = unique("full");
    let first = n.publish_message(draft(&room, "kept")).await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let used: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut con)
        .await
        .unwrap();
    let used: u64 = used
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used.saturating_sub(1024).max(1))
        .query_async(&mut con)
        .await
        .unwrap();
    let err = n
        .publish_message(draft(&room, "refused"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query_async(&mut con)
        .await
        .unwrap();
    let h = n
        .room_history(&room, HistoryQuery::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(h.items, vec![first]);
}
