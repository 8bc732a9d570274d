//! Overload admission: the one place that decides whether this gateway takes a new
//! message.
//!
//! Beyond its capacity a gateway cannot deliver messages as fast as they arrive; if
//! it kept accepting them, its dispatcher queue (and memory) would grow without bound
//! and every delivery would be late. Instead the dispatcher records how long the
//! event it is delivering waited in its queue (the *dispatch lag*; 0 once the queue
//! is empty), and while that lag is above `--overload-lag-ms`, `message:send` and
//! `dm:send` are refused `overloaded` *before* anything is stored: the sender knows
//! the message was not taken and can retry, nothing is lost, and the latency of
//! what was accepted stays near the limit. Other requests (joins, history, typing)
//! are still served.
//!
//! Who is refused: the heaviest senders first. Every send attempt (refused ones
//! too) heats its user ([`SenderHeat`]: a count that halves every
//! [`HALF_LIFE_S`] seconds, over all the user's sockets on this gateway). At lag
//! `l` over the limit `L`, a user with heat `h` is refused when
//! `2·h·l ≥ top·L`, `top` being the hottest user's heat: at the limit the users
//! within half the top's heat are shed, and the further behind the gateway falls,
//! the lighter a user must be to get through. One flooder therefore cannot get
//! everyone else refused; a crowd of equal senders is refused alike.

use confab_core::{ChatError, ErrorCode};
use parking_lot::Mutex;
use std::collections::HashMap;
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

/// Seconds for a user's heat to halve.
pub const HALF_LIFE_S: f64 = 2.0;

/// A count that halves every [`HALF_LIFE_S`].
#[derive(Clone, Copy)]
struct Decayed {
    value: f64,
    at: Instant,
}

impl Decayed {
    fn now(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.value * (-dt * std::f64::consts::LN_2 / HALF_LIFE_S).exp()
    }
}

/// Recent send attempts per user on this gateway, and the hottest user's.
pub struct SenderHeat {
    inner: Mutex<Heats>,
}

struct Heats {
    users: HashMap<String, Decayed>,
    top: Decayed,
}

impl Default for SenderHeat {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Heats {
                users: HashMap::new(),
                top: Decayed {
                    value: 0.0,
                    at: Instant::now(),
                },
            }),
        }
    }
}

/// A sender's heat and the hottest sender's, right after this attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heat {
    pub mine: f64,
    pub top: f64,
}

impl SenderHeat {
    /// Count one send attempt of `user`.
    pub fn bump(&self, user: &str) -> Heat {
        let now = Instant::now();
        let mut h = self.inner.lock();
        let mine = match h.users.get_mut(user) {
            Some(d) => {
                *d = Decayed {
                    value: d.now(now) + 1.0,
                    at: now,
                };
                d.value
            }
            None => {
                h.users.insert(
                    user.to_owned(),
                    Decayed {
                        value: 1.0,
                        at: now,
                    },
                );
                1.0
            }
        };
        let top = h.top.now(now).max(mine);
        h.top = Decayed {
            value: top,
            at: now,
        };
        // Users cooled down to nothing are forgotten (amortised).
        if h.users.len() > 4096 && h.users.len().is_power_of_two() {
            h.users.retain(|_, d| d.now(now) > 0.01);
        }
        Heat { mine, top }
    }
}

/// Whether a new message of a sender with `heat` may be taken at dispatch lag
/// `lag` with limit `limit` (`None`: no limit); see the module documentation.
pub fn admit(lag: Duration, limit: Option<Duration>, heat: Heat) -> Result<(), ChatError> {
    let Some(limit) = limit.filter(|l| lag > *l) else {
        return Ok(());
    };
    let (l, lim) = (lag.as_secs_f64(), limit.as_secs_f64());
    if 2.0 * heat.mine * l < heat.top * lim {
        return Ok(());
    }
    Err(ChatError::new(
        ErrorCode::Overloaded,
        format!(
            "this server is {} ms behind on deliveries (limit {} ms) and you are among its busiest senders; the message was not stored, retry in a moment",
            lag.as_millis(),
            limit.as_millis()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_refuses_beyond() {
        let limit = Some(Duration::from_millis(100));
        let alone = Heat {
            mine: 5.0,
            top: 5.0,
        };
        assert!(admit(Duration::ZERO, limit, alone).is_ok());
        assert!(admit(Duration::from_millis(100), limit, alone).is_ok());
        let e = admit(Duration::from_millis(250), limit, alone).unwrap_err();
        assert_eq!(e.code, ErrorCode::Overloaded);
        assert!(e.message.contains("250 ms behind"), "{}", e.message);
        assert!(admit(Duration::from_secs(3600), None, alone).is_ok());
    }

    #[test]
    fn the_heaviest_senders_go_first() {
        let limit = Some(Duration::from_millis(100));
        let lag = |ms| Duration::from_millis(ms);
        let at = |mine| Heat { mine, top: 100.0 };
        // Just over the limit: those within half the top's heat are shed.
        assert!(admit(lag(101), limit, at(100.0)).is_err());
        assert!(admit(lag(101), limit, at(50.0)).is_err());
        assert!(admit(lag(101), limit, at(49.0)).is_ok());
        assert!(admit(lag(101), limit, at(1.0)).is_ok());
        // Ten times behind: only those under a twentieth of the top get through.
        assert!(admit(lag(1000), limit, at(6.0)).is_err());
        assert!(admit(lag(1000), limit, at(4.0)).is_ok());
        // Far behind, even the lightest wait.
        assert!(admit(lag(60_000), limit, at(1.0)).is_err());
    }

    #[test]
    fn heat_counts_attempts_per_user_and_tracks_the_top() {
        let heat = SenderHeat::default();
        for _ in 0..9 {
            heat.bump("flooder");
        }
        let f = heat.bump("flooder");
        assert!(f.mine > 9.9 && f.mine <= 10.0, "{f:?}");
        let q = heat.bump("quiet");
        assert!(q.mine <= 1.0 && q.top > 9.9, "{q:?}");
        // Decay: half after one half-life.
        let d = Decayed {
            value: 8.0,
            at: Instant::now() - Duration::from_secs_f64(HALF_LIFE_S),
        };
        assert!((d.now(Instant::now()) - 4.0).abs() < 0.05);
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
