//! Cluster-wide rate limits per user and per client IP: messages, DMs, joins,
//! new rooms and connections. Opening more connections does not multiply a user's quota, and
//! spreading them over gateways does not either: the buckets live in the backend
//! (GCRA, [`confab_backend::Access::rate_take`]).
//!
//! The fast path is local: each gateway keeps its own view of the same buckets,
//! which only ever lags the backend's (it sees this gateway's events alone), so a
//! refusal it computes is a refusal the backend would give too. A flooder is
//! refused without a backend round trip; an honest user costs one.

use crate::chat::Ctx;
use confab_backend::access::gcra;
use confab_backend::RateBucket;
use confab_core::ChatError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// A sustained rate and a burst; `per_sec` 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `RATE/BURST` (events per second, events at once), or `off` (also `0`).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") || s == "0" {
            return Ok(Rate::OFF);
        }
        let bad = || format!("expected RATE/BURST (e.g. 10/30) or off, got `{s}`");
        let (r, b) = s.split_once('/').ok_or_else(bad)?;
        let per_sec: f64 = r.trim().parse().map_err(|_| bad())?;
        let burst: f64 = b.trim().parse().map_err(|_| bad())?;
        if !(per_sec.is_finite() && burst.is_finite() && per_sec >= 0.0 && burst >= 1.0) {
            return Err(bad());
        }
        Ok(Rate { per_sec, burst })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_off() {
            f.write_str("off")
        } else {
            write!(f, "{}/{}", self.per_sec, self.burst)
        }
    }
}

impl Rate {
    pub const OFF: Rate = Rate {
        per_sec: 0.0,
        burst: 0.0,
    };

    pub fn is_off(&self) -> bool {
        self.per_sec <= 0.0
    }
}

/// The limits, per class of event.
#[derive(Debug, Clone, PartialEq)]
pub struct Quotas {
    /// `message:send`, `dm:send`, `announce`, per user.
    pub messages_per_user: Rate,
    /// The same, per client IP.
    pub messages_per_ip: Rate,
    /// `dm:send`, per user (on top of the message quota: a DM lands in someone's
    /// inbox even while they are offline).
    pub dms_per_user: Rate,
    /// The same, per client IP.
    pub dms_per_ip: Rate,
    /// `room:join` of a room not joined yet and `room:create`, per user.
    pub joins_per_user: Rate,
    /// Rooms started (`room:create`, or the first message of a room without
    /// history), per user.
    pub rooms_per_user: Rate,
    /// The same, per client IP.
    pub rooms_per_ip: Rate,
    /// Handshakes, per user.
    pub connects_per_user: Rate,
    /// Handshakes, per client IP.
    pub connects_per_ip: Rate,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            messages_per_user: Rate {
                per_sec: 10.0,
                burst: 30.0,
            },
            messages_per_ip: Rate {
                per_sec: 50.0,
                burst: 100.0,
            },
            dms_per_user: Rate {
                per_sec: 5.0,
                burst: 20.0,
            },
            dms_per_ip: Rate {
                per_sec: 20.0,
                burst: 50.0,
            },
            joins_per_user: Rate {
                per_sec: 5.0,
                burst: 20.0,
            },
            // 72 an hour, 10 at once: each room keeps its history (≈ 5 KB in
            // Redis for a one-message room) until `--history-max-age`.
            rooms_per_user: Rate {
                per_sec: 0.02,
                burst: 10.0,
            },
            // 360 an hour, 30 at once.
            rooms_per_ip: Rate {
                per_sec: 0.1,
                burst: 30.0,
            },
            connects_per_user: Rate {
                per_sec: 5.0,
                burst: 20.0,
            },
            connects_per_ip: Rate {
                per_sec: 20.0,
                burst: 100.0,
            },
        }
    }
}

/// What is being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Message,
    /// A DM: the message buckets and the DM buckets, all or none.
    Dm,
    Join,
    Room,
    Connect,
}

impl Class {
    fn tag(self) -> &'static str {
        match self {
            Class::Message => "msg",
            Class::Dm => "dm",
            Class::Join => "join",
            Class::Room => "room",
            Class::Connect => "conn",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Class::Message => "messages",
            Class::Dm => "direct messages",
            Class::Join => "room joins",
            Class::Room => "new rooms",
            Class::Connect => "connections",
        }
    }
}

/// This gateway's view of the buckets (the fast path).
#[derive(Default)]
pub struct LocalView {
    tat: Mutex<HashMap<String, f64>>,
}

fn now_ms() -> f64 {
    confab_backend::now_ms() as f64
}

impl LocalView {
    /// Whether every bucket would take one more event now; the wait if not.
    fn check(&self, buckets: &[RateBucket]) -> Result<(), Duration> {
        let now = now_ms();
        let tat = self.tat.lock();
        for b in buckets {
            if let Err(wait) = gcra(tat.get(&b.key).copied(), now, b.per_sec, b.burst) {
                return Err(Duration::from_millis(wait.ceil() as u64));
            }
        }
        Ok(())
    }

    /// Record one event taken from every bucket.
    fn commit(&self, buckets: &[RateBucket]) {
        let now = now_ms();
        let mut tat = self.tat.lock();
        for b in buckets {
            let t = gcra(tat.get(&b.key).copied(), now, b.per_sec, b.burst)
                .unwrap_or_else(|_| tat.get(&b.key).copied().unwrap_or(now));
            tat.insert(b.key.clone(), t);
        }
        // Buckets full again hold nothing worth keeping.
        if tat.len() > 4096 && tat.len().is_power_of_two() {
            tat.retain(|_, t| *t > now);
        }
    }
}

/// The buckets an event of `class` by `user` from `ip` draws on.
pub fn buckets(q: &Quotas, class: Class, user: &str, ip: Option<IpAddr>) -> Vec<RateBucket> {
    let mut out = Vec::with_capacity(4);
    if class == Class::Dm {
        out = buckets(q, Class::Message, user, ip);
    }
    let (per_user, per_ip) = match class {
        Class::Message => (q.messages_per_user, q.messages_per_ip),
        Class::Dm => (q.dms_per_user, q.dms_per_ip),
        Class::Join => (q.joins_per_user, Rate::OFF),
        Class::Room => (q.rooms_per_user, q.rooms_per_ip),
        Class::Connect => (q.connects_per_user, q.connects_per_ip),
    };
    if !per_user.is_off() {
        out.push(RateBucket {
            key: format!("{}:u:{user}", class.tag()),
            per_sec: per_user.per_sec,
            burst: per_user.burst,
        });
    }
    if let (false, Some(ip)) = (per_ip.is_off(), ip) {
        out.push(RateBucket {
            key: format!("{}:ip:{ip}", class.tag()),
            per_sec: per_ip.per_sec,
            burst: per_ip.burst,
        });
    }
    out
}

/// Count one event of `class` against the user's and the IP's quotas.
pub async fn take(
    shared: &crate::state::Shared,
    class: Class,
    user: &str,
    ip: Option<IpAddr>,
) -> Result<(), ChatError> {
    let buckets = buckets(&shared.config.quotas, class, user, ip);
    if buckets.is_empty() {
        return Ok(());
    }
    let refused = |wait: Duration| {
        crate::metrics::rate_limited(class.tag());
        ChatError::rate_limited(
            format!(
                "too many {} from this user or address: slow down",
                class.what()
            ),
            wait,
        )
    };
    if let Err(wait) = shared.quota_view.check(&buckets) {
        return Err(refused(wait));
    }
    match shared.access.rate_take(&buckets).await? {
        Ok(()) => {
            shared.quota_view.commit(&buckets);
            Ok(())
        }
        Err(wait) => Err(refused(wait)),
    }
}

/// [`take`] for a socket's event.
pub async fn take_for(ctx: &Ctx, class: Class) -> Result<(), ChatError> {
    take(&ctx.shared, class, ctx.session.id(), ctx.ip()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_per_class_and_off_switches() {
        let q = Quotas::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let keys = |class| -> Vec<String> {
            buckets(&q, class, "u1", Some(ip))
                .into_iter()
                .map(|b| b.key)
                .collect()
        };
        assert_eq!(keys(Class::Message), ["msg:u:u1", "msg:ip:192.0.2.7"]);
        assert_eq!(keys(Class::Join), ["join:u:u1"]);
        assert_eq!(
            keys(Class::Dm),
            ["msg:u:u1", "msg:ip:192.0.2.7", "dm:u:u1", "dm:ip:192.0.2.7"]
        );
        assert_eq!(keys(Class::Room), ["room:u:u1", "room:ip:192.0.2.7"]);
        assert_eq!(keys(Class::Connect), ["conn:u:u1", "conn:ip:192.0.2.7"]);
        let off = Quotas {
            messages_per_ip: Rate::OFF,
            ..q.clone()
        };
        assert_eq!(buckets(&off, Class::Message, "u1", Some(ip)).len(), 1);
        assert_eq!(buckets(&q, Class::Message, "u1", None).len(), 1);
    }

    #[test]
    fn rates_parse_and_print() {
        let r: Rate = "10/30".parse().unwrap();
        assert_eq!((r.per_sec, r.burst), (10.0, 30.0));
        assert_eq!(r.to_string(), "10/30");
        let slow: Rate = "0.02/10".parse().unwrap();
        assert_eq!(slow.to_string(), "0.02/10");
        assert!("off".parse::<Rate>().unwrap().is_off());
        assert!("0".parse::<Rate>().unwrap().is_off());
        for bad in ["10", "x/1", "1/0", "-1/5", "1/inf", ""] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_local_view_refuses_only_what_the_backend_would() {
        let view = LocalView::default();
        let b = vec![RateBucket {
            key: "k".into(),
            per_sec: 1.0,
            burst: 2.0,
        }];
        assert!(view.check(&b).is_ok());
        view.commit(&b);
        assert!(view.check(&b).is_ok());
        view.commit(&b);
        let wait = view.check(&b).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_millis(1000));
    }
}
