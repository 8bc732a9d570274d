//! confab-sio: confab's own Engine.IO v4 / Socket.IO v5 server layer, with no chat
//! knowledge.
//!
//! - [`eio`] and [`sio`]: the pure codecs (no I/O), fuzzed and property-tested.
//! - [`Frame`]: one encoded packet in shared bytes, built once and sent to many.
//! - [`outbox`]: a connection's queue, bounded in bytes; its refusal is exact.
//! - `conn`: one Engine.IO session (transport state, heartbeat, namespaces).
//! - `server` (HTTP, long-polling) and `ws` (websocket): the transports.
//! - [`Socket`], [`Namespace`], [`SocketHandler`]: what the application sees.

mod config;
mod conn;
pub mod eio;
mod frame;
pub mod outbox;
mod server;
pub mod sio;
mod socket;
mod ws;

pub use config::Config;
pub use conn::{Guard, Peer};
pub use frame::Frame;
pub use server::{Builder, Connection, EngineHandler, Server};
pub use socket::{DisconnectReason, Event, Namespace, Refusal, SendError, Socket, SocketHandler};
