//! confab-gateway: the Socket.IO gateway.
//!
//! The path of a chat message reads top to bottom in a handful of modules:
//! [`socket`] accepts a connection (the wire layer is `confab-sio`) and queues each
//! event of a socket in arrival order; [`chat`] validates it (via `confab-core`)
//! and calls the backend; the backend appends and publishes; [`dispatch`] owns the
//! local fan-out [`groups`], receives the backend's events and queues each, encoded
//! once, on the local sockets concerned; [`overload`] refuses new messages while the
//! dispatcher is too far behind. [`auth`] turns a handshake credential into a
//! checked identity (user id + display name); [`permissions`] decides who may
//! enter, read, post in and moderate a room, and [`moderation`] holds the room
//! ownership and moderation tools. [`state`] is what the chat operations share,
//! [`http`] serves the UI, `/healthz`, `/readyz` and `/metrics`, [`listener`] accepts
//! the public connections (TLS, a connection cap, a deadline for request heads) and
//! serves them with hyper, [`janitor`] forgets users idle for too long, [`probe`]
//! times a message end to end through the gateway's own listener, [`admin`] reports
//! this gateway and answers the admin status page, and [`gateway`] (the composition
//! root, imported by nothing else) wires it together and owns the one shutdown
//! mechanism.

pub mod admin;
pub mod auth;
pub mod chat;
pub mod config;
pub mod conncap;
pub mod dispatch;
pub mod gateway;
pub mod groups;
pub mod http;
pub mod janitor;
pub mod listener;
pub mod metrics;
pub mod moderation;
pub mod overload;
pub mod permissions;
pub mod presence;
pub mod probe;
pub mod quota;
pub mod ratelimit;
pub mod reply;
pub mod session;
pub mod socket;
pub mod state;
pub mod subscriptions;
pub mod typing;

pub use auth::{Auth, AuthConfig};
pub use config::GatewayConfig;
pub use gateway::{Gateway, RunningGateway};
