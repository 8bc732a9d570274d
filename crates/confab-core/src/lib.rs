//! confab-core: the chat protocol as pure data.
//!
//! Everything a gateway needs to understand a client and to describe a chat message
//! lives here without any I/O: the error codes of the wire contract ([`error`]),
//! message ids ([`id`]), validation rules for names, rooms and text ([`validate`]),
//! the typed requests and server pushes ([`protocol`]) and the limits ([`limits`]).
//! Keeping it pure means every rule is unit-tested and shared by the gateway, the
//! backends and the load generator.

pub mod error;
pub mod id;
pub mod limits;
pub mod protocol;
pub mod validate;

pub use error::{ChatError, ErrorCode};
pub use id::MessageId;
pub use limits::Limits;
pub use protocol::{DirectMessage, Message};
