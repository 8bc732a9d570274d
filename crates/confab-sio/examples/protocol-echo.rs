//! The server the public Engine.IO / Socket.IO compliance suites expect:
//! `cargo run -p confab-sio --example protocol-echo -- [ADDR]` (default
//! `127.0.0.1:3000`). pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1,000,000,
//! connect timeout 1 s, CORS for any origin.
//!
//! - `/engine.io/`: plain Engine.IO; every message (text or binary) is sent back.
//! - `/socket.io/`: namespaces `/` and `/custom`; each emits `auth` with the
//!   handshake's auth payload on connect; on `/`, `message` → `message-back` with the
//!   same arguments and `message-with-ack` → an ack with the same arguments (binary
//!   attachments included).

use confab_sio::{
    sio, Config, Connection, DisconnectReason, EngineHandler, Event, Frame, Namespace, Refusal,
    Server, Socket, SocketHandler,
};
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

struct Echo;

impl EngineHandler for Echo {
    fn message(&self, conn: &Connection, frame: Frame) {
        let _ = conn.send(&[frame]);
    }
}

struct Space {
    echo: bool,
}

struct Client {
    auth: Value,
    echo: bool,
}

impl Namespace for Space {
    fn connect(
        &self,
        _socket: Socket,
        auth: Value,
    ) -> BoxFuture<'static, Result<Arc<dyn SocketHandler>, Refusal>> {
        let echo = self.echo;
        Box::pin(async move { Ok(Arc::new(Client { auth, echo }) as Arc<dyn SocketHandler>) })
    }
}

impl SocketHandler for Client {
    fn connected(&self, socket: &Socket) {
        // The connect ack and this event would leave in one write (the writer
        // batches); the suites' Node `ws` client then emits both messages in one tick,
        // before the test has registered its listener for the second. A short pause
        // puts them in two writes, as a browser-facing server would in practice.
        let (socket, auth) = (socket.clone(), self.auth.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = socket.emit("auth", &auth);
        });
    }

    fn event(&self, socket: &Socket, ev: Event) {
        if !self.echo {
            return;
        }
        let frames = match (ev.name.as_str(), ev.ack) {
            ("message", _) => {
                sio::event_args(socket.ns(), "message-back", &ev.args, &ev.attachments)
            }
            ("message-with-ack", Some(id)) => {
                sio::ack_args(socket.ns(), id, &ev.args, &ev.attachments)
            }
            _ => return,
        };
        let _ = socket.send_group(&frames);
    }

    fn disconnect(&self, _socket: &Socket, _reason: DisconnectReason) {}
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let config = Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        connect_timeout: Duration::from_millis(1000),
        cors: true,
        ..Config::default()
    };
    let engine = Server::builder(config.clone()).engine(Echo).build();
    let socket_io = Server::builder(config)
        .ns("/", Space { echo: true })
        .ns("/custom", Space { echo: false })
        .build();
    let app = axum::Router::new()
        .merge(engine.router("/engine.io"))
        .merge(socket_io.router("/socket.io"));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "protocol-echo: listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await
}
