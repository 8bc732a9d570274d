//! The unit of output: one encoded Engine.IO packet in immutable shared bytes.
//!
//! A frame is built once (per gateway, per message) and handed to every recipient:
//! cloning it is a reference-count bump, never a copy or a serialisation.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text packet, e.g. `42["message:new",{...}]` (always valid UTF-8).
    Text(Utf8Bytes),
    /// A binary message (a Socket.IO attachment).
    Binary(Bytes),
}

impl Frame {
    pub fn text(s: impl Into<String>) -> Self {
        Frame::Text(Utf8Bytes::from(s.into()))
    }

    pub const fn static_text(s: &'static str) -> Self {
        Frame::Text(Utf8Bytes::from_static(s))
    }

    /// Bytes this frame counts against a connection's queue.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub(crate) const PING: Frame = Frame::static_text("2");
pub(crate) const NOOP: Frame = Frame::static_text("6");
pub(crate) const CLOSE: Frame = Frame::static_text("1");
