//! Settings of the wire layer, with their defaults in one place.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// Server ping period (Engine.IO `pingInterval`).
    pub ping_interval: Duration,
    /// How long a pong may take (Engine.IO `pingTimeout`).
    pub ping_timeout: Duration,
    /// Largest incoming websocket message / polling POST body, in bytes (`maxPayload`).
    pub max_payload: usize,
    /// A connection that has not connected to a namespace within this is closed.
    pub connect_timeout: Duration,
    /// Bytes queued per connection before a send is refused as full.
    pub max_buffer_bytes: usize,
    /// Websocket read buffer per connection (grows for a larger frame).
    pub ws_read_buffer: usize,
    /// Allow the polling transport (and the upgrade from it).
    pub allow_polling: bool,
    /// Answer CORS requests (and preflights) for any origin the origin check allows.
    pub cors: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_millis(45_000),
            max_buffer_bytes: 1 << 20,
            ws_read_buffer: 1024,
            allow_polling: true,
            cors: false,
        }
    }
}
