//! Overload admission: the one place that decides whether this gateway takes a new
//! message.
//!
//! Beyond its capacity a gateway cannot deliver messages as fast as they arrive; if
//! it kept accepting them, its dispatcher queue (and memory) would grow without bound
//! and every delivery would be late. Instead the dispatcher records how long the
//! event it is delivering waited in its queue (the *dispatch lag*; 0 once the queue
//! is empty), and while that lag is above `--overload-lag-ms`, `message:send` and
//! `dm:send` are answered `overloaded` *before* anything is stored: the sender knows
//! the message was not taken and can retry, nothing is lost, and the latency of
//! what was accepted stays near the limit. Other requests (joins, history, typing)
//! are still served.

use confab_core::{ChatError, ErrorCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The dispatcher's current lag, written by the dispatcher and read by handlers.
#[derive(Default)]
pub struct DispatchLag {
    micros: AtomicU64,
}

impl DispatchLag {
    /// The dispatcher is delivering an event queued at `queued`; `caught_up`: nothing
    /// else is queued behind it (the lag is then 0).
    pub fn record(&self, queued: Instant, caught_up: bool) {
        let lag = if caught_up {
            0
        } else {
            queued.elapsed().as_micros().min(u64::MAX as u128) as u64
        };
        self.micros.store(lag, Ordering::Relaxed);
    }

    pub fn get(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }
}

/// Whether a new message may be taken at dispatch lag `lag` with limit `limit`
/// (`None`: no limit).
pub fn admit(lag: Duration, limit: Option<Duration>) -> Result<(), ChatError> {
    match limit {
        Some(limit) if lag > limit => Err(ChatError::new(
            ErrorCode::Overloaded,
            format!(
                "this server is {} ms behind on deliveries (limit {} ms); the message was not stored, retry in a moment",
                lag.as_millis(),
                limit.as_millis()
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_refuses_beyond() {
        let limit = Some(Duration::from_millis(100));
        assert!(admit(Duration::ZERO, limit).is_ok());
        assert!(admit(Duration::from_millis(100), limit).is_ok());
        let e = admit(Duration::from_millis(250), limit).unwrap_err();
        assert_eq!(e.code, ErrorCode::Overloaded);
        assert!(e.message.contains("250 ms behind"), "{}", e.message);
        assert!(admit(Duration::from_secs(3600), None).is_ok());
    }

    #[test]
    fn lag_is_zero_when_caught_up() {
        let lag = DispatchLag::default();
        let long_ago = Instant::now() - Duration::from_millis(50);
        lag.record(long_ago, false);
        assert!(lag.get() >= Duration::from_millis(50));
        lag.record(long_ago, true);
        assert_eq!(lag.get(), Duration::ZERO);
    }
}
