//! Shared harness for the integration tests of the `confab` binary: start the real
//! binary on a free loopback port, connect confab-client sockets to it, and kill the
//! child (by its PID, through `Child::kill`) when the guard is dropped, also when a
//! test panics.

#![allow(dead_code)]

use confab_client::{Client, ClientBuilder, EngineConn};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Default wait for one ack or one event.
pub const WAIT: Duration = Duration::from_secs(5);
/// Bound on a whole test.
pub const TEST_BOUND: Duration = Duration::from_secs(60);

/// Run a test body with a time bound.
pub async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_BOUND, f)
        .await
        .expect("test exceeded its time bound");
}

/// A running `confab serve` child process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Start `confab serve --bind 127.0.0.1:0 ARGS...` and wait for its listening line.
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            // The contract tests connect by name; auth tests pass `--auth`.
            .env("CONFAB_AUTH", "open")
            .env("CONFAB_QUOTA_MESSAGES_PER_USER", "off")
            .env("CONFAB_QUOTA_MESSAGES_PER_IP", "off")
            .env("CONFAB_QUOTA_DMS_PER_USER", "off")
            .env("CONFAB_QUOTA_DMS_PER_IP", "off")
            .env("CONFAB_QUOTA_JOINS_PER_USER", "off")
            .env("CONFAB_QUOTA_ROOMS_PER_USER", "off")
            .env("CONFAB_QUOTA_ROOMS_PER_IP", "off")
            .env("CONFAB_QUOTA_CONNECTS_PER_USER", "off")
            .env("CONFAB_QUOTA_CONNECTS_PER_IP", "off")
            .env("CONFAB_MAX_CONNECTIONS_PER_IP", "0")
            .env("CONFAB_PROBE_INTERVAL_MS", "0")
            .env("CONFAB_PROTOCOL_ERRORS_BURST", "100000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the confab binary");
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    if l.len() < 10_000 {
                        l.push(line);
                    }
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("confab: listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                    break;
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines.map_while(Result::ok) {}
        });
        // Build the guard before waiting so the child is killed on any failure.
        let mut server = Server {
            child,
            url: String::new(),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(url) => server.url = url,
            Err(_) => panic!(
                "confab did not print its listening line within 20 s; stderr:\n{}",
                server.logs()
            ),
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the server wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn builder(&self, name: &str) -> ClientBuilder {
        ClientBuilder::new(&self.url)
            .name(name)
            .connect_timeout(WAIT)
    }

    /// A connected client named `name`.
    pub async fn connect(&self, name: &str) -> Client {
        self.builder(name)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect {name}: {e}"))
    }

    /// A connected client that has also received its `session` event.
    pub async fn connect_session(&self, name: &str) -> Client {
        let mut c = self.connect(name).await;
        let s = c
            .wait_for("session", |_| true, WAIT)
            .await
            .expect("session event");
        assert_eq!(s["user"]["name"], name);
        c
    }

    /// A websocket with only the Engine.IO handshake done.
    pub async fn engine(&self) -> EngineConn {
        ClientBuilder::new(&self.url)
            .connect_timeout(WAIT)
            .connect_engine()
            .await
            .expect("engine handshake")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Child::kill signals exactly this PID; then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A unique user name with `prefix` (valid per the name rule).
pub fn uname(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id() % 10_000,
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A unique room name with `prefix` (lower case, valid per the room rule).
pub fn uroom(prefix: &str) -> String {
    format!("{prefix}-{}", UNIQUE.fetch_add(1, Ordering::Relaxed))
}

/// Emit with an ack and return the ack object.
pub async fn call(c: &Client, event: &str, data: Value) -> Value {
    c.emit_with_ack(event, &data, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{event} {data}: {e}"))
}

/// Assert `{ok: true, ...}` and return it.
#[track_caller]
pub fn ok(ack: Value) -> Value {
    assert_eq!(ack["ok"], true, "expected ok ack, got {ack}");
    ack
}

/// Assert `{ok: false, error: {code, message}}` with `code` and exactly those keys.
#[track_caller]
pub fn assert_err(ack: &Value, code: &str) {
    assert_eq!(ack["ok"], false, "expected error {code}, got {ack}");
    assert_eq!(ack["error"]["code"], code, "wrong error code in {ack}");
    assert!(
        ack["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without message: {ack}"
    );
    let mut keys: Vec<&str> = ack
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["error", "ok"], "error ack keys: {ack}");
}

/// Object keys, sorted.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// Join `room` and return the ack.
pub async fn join(c: &Client, room: &str) -> Value {
    ok(call(c, "room:join", serde_json::json!({ "room": room })).await)
}

/// Send `text` to `room` and return the stored message from the ack.
pub async fn send(c: &Client, room: &str, text: &str) -> Value {
    let ack = ok(call(
        c,
        "message:send",
        serde_json::json!({ "room": room, "text": text }),
    )
    .await);
    ack["message"].clone()
}

/// Parse a message id `"<ms>-<seq>"`.
#[track_caller]
pub fn id_pair(v: &Value) -> (u64, u64) {
    let s = v.as_str().unwrap_or_else(|| panic!("id not a string: {v}"));
    let (a, b) = s.split_once('-').expect("id has a dash");
    (a.parse().unwrap(), b.parse().unwrap())
}

/// The connection is still usable: a round trip with an ack works.
pub async fn assert_usable(c: &Client) {
    let ack = c
        .emit_with_ack("room:list", &serde_json::json!({}), WAIT)
        .await
        .expect("socket still answers");
    assert_eq!(ack["ok"], true, "room:list after the bad input: {ack}");
}
