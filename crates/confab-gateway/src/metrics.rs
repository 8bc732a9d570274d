//! Metric names, their help texts, and small helpers so call sites stay one line.
//! Exposed in Prometheus text format at `/metrics`.

use confab_core::ErrorCode;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

pub const CONNECTIONS: &str = "confab_connections";
pub const CONNECTS: &str = "confab_connects_total";
pub const CONNECTS_REFUSED: &str = "confab_connects_refused_total";
pub const CONNECTIONS_REFUSED: &str = "confab_connections_refused_total";
pub const EVENTS: &str = "confab_events_total";
pub const EVENT_ERRORS: &str = "confab_event_errors_total";
pub const EVENT_SECONDS: &str = "confab_event_duration_seconds";
pub const PUBLISHED: &str = "confab_published_total";
pub const FANOUTS: &str = "confab_fanouts_total";
pub const SEND_FAILED: &str = "confab_send_failed_total";
pub const PRESENCE_PUSHES: &str = "confab_presence_pushes_total";
pub const SUBSCRIPTIONS: &str = "confab_subscriptions";
pub const SLOW_CONSUMERS: &str = "confab_slow_consumers_total";
pub const DISPATCH_LAG: &str = "confab_dispatch_lag_seconds";
pub const RATE_LIMITED: &str = "confab_rate_limited_total";
pub const PRUNED_USERS: &str = "confab_pruned_users_total";
pub const BUILD_INFO: &str = "confab_build_info";
pub const ONLINE_USERS: &str = "confab_online_users";
pub const FANOUT_DELAY: &str = "confab_fanout_delay_seconds";
pub const PANICS: &str = "confab_panics_total";
pub const PROBE_DELIVERY: &str = "confab_probe_delivery_seconds";
pub const PROBE_FAILURES: &str = "confab_probe_failures_total";

/// Register help texts (call once at start-up, after installing the recorder).
pub fn describe() {
    confab_backend::redis_backend::describe_metrics();
    describe_gauge!(
        CONNECTIONS,
        "Socket.IO connections currently open on this gateway"
    );
    describe_counter!(CONNECTS, "Accepted Socket.IO connections");
    describe_counter!(CONNECTS_REFUSED, "Refused handshakes, by error code");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "TCP connections closed as soon as accepted, by reason (max_connections: over --max-connections)"
    );
    describe_counter!(EVENTS, "Client events answered successfully, by event");
    describe_counter!(
        EVENT_ERRORS,
        "Client events answered with an error, by event and code"
    );
    describe_histogram!(
        EVENT_SECONDS,
        Unit::Seconds,
        "Time to handle a client event, by event"
    );
    describe_counter!(
        PUBLISHED,
        "Messages published through this gateway, by kind (room, dm)"
    );
    describe_counter!(FANOUTS, "Backend events emitted to local sockets, by kind");
    describe_counter!(
        SEND_FAILED,
        "Packets that could not be queued to a socket (buffer full or closed), by path"
    );
    describe_counter!(
        PRESENCE_PUSHES,
        "room:presence pushes emitted (one per room per interval)"
    );
    describe_gauge!(
        DISPATCH_LAG,
        Unit::Seconds,
        "How long the event being delivered waited in the dispatcher's queue (0 when caught up); above --overload-lag-ms new messages are refused"
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels say which build this gateway runs (version)"
    );
    describe_gauge!(
        ONLINE_USERS,
        "Users with at least one connection anywhere in the cluster (from presence, sampled every 5 s)"
    );
    describe_histogram!(
        FANOUT_DELAY,
        Unit::Seconds,
        "From a message stored (its timestamp) to its frame queued on this gateway's sockets, by kind (message, dm)"
    );
    describe_histogram!(
        PROBE_DELIVERY,
        Unit::Seconds,
        "End to end: the gateway's probe client sends a DM to itself through the public listener and gets it pushed back (see --probe-interval-ms)"
    );
    describe_counter!(
        PROBE_FAILURES,
        "Delivery probes that failed, by reason (connect, refused, no_ack, no_push)"
    );
    describe_counter!(
        PANICS,
        "Panics caught in the handling of one event or connection, by place; the gateway kept serving"
    );
    describe_counter!(
        PRUNED_USERS,
        "Users forgotten after --idle-user-ttl offline (by this gateway's janitor)"
    );
    describe_gauge!(
        SUBSCRIPTIONS,
        "Backend topics this gateway is subscribed to"
    );
}

/// The event label: a known event name, or `unknown` (keeps label cardinality bounded).
fn event_label(event: &str) -> &'static str {
    confab_core::protocol::RequestKind::from_event(event).map_or("unknown", |k| k.event())
}

pub fn event_ok(event: &str) {
    counter!(EVENTS, "event" => event_label(event)).increment(1);
}

pub fn event_err(event: &str, code: ErrorCode) {
    counter!(EVENT_ERRORS, "event" => event_label(event), "code" => code.as_str()).increment(1);
}

pub fn send_failed(path: &'static str) {
    counter!(SEND_FAILED, "path" => path).increment(1);
}

pub fn connection_opened() {
    counter!(CONNECTS).increment(1);
    gauge!(CONNECTIONS).increment(1.0);
}

pub fn connection_closed() {
    gauge!(CONNECTIONS).decrement(1.0);
}

pub fn refused(code: ErrorCode) {
    counter!(CONNECTS_REFUSED, "code" => code.as_str()).increment(1);
}

/// A cluster-wide quota refused an event (`class`: msg, join, conn).
pub fn rate_limited(class: &'static str) {
    counter!(RATE_LIMITED, "class" => class).increment(1);
}

pub fn published(kind: &'static str) {
    counter!(PUBLISHED, "kind" => kind).increment(1);
}

pub fn fanout(kind: &'static str) {
    counter!(FANOUTS, "kind" => kind).increment(1);
}

/// A message stored at `stored_ms` (its `ts`) was just queued on the local sockets.
pub fn fanout_delay(kind: &'static str, stored_ms: u64) {
    let ms = confab_backend::now_ms().saturating_sub(stored_ms);
    histogram!(FANOUT_DELAY, "kind" => kind).record(ms as f64 / 1000.0);
}

/// A panic was caught in `place` (`event`, `session`).
pub fn panicked(place: &'static str) {
    counter!(PANICS, "place" => place).increment(1);
}

/// Set once at start-up.
pub fn build_info() {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
