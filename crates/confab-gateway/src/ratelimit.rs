//! A token bucket per socket: `rate` events per second sustained, `burst` at once.
//! Pure (time is passed in) so it is unit-tested without sleeping.

use std::time::Instant;

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// How long until one token is there (zero if one is).
    pub fn retry_after(&self, now: Instant) -> std::time::Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if tokens >= 1.0 {
            std::time::Duration::ZERO
        } else if self.rate <= 0.0 {
            std::time::Duration::from_secs(3600)
        } else {
            std::time::Duration::from_secs_f64((1.0 - tokens) / self.rate)
        }
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        assert_eq!((0..8).filter(|_| b.try_take(t0)).count(), 5);
        // 0.25 s at 10/s refills 2.5 tokens → 2 more.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!((0..8).filter(|_| b.try_take(t1)).count(), 2);
        // Never more than the burst after a long pause.
        let t2 = t1 + Duration::from_secs(100);
        assert_eq!((0..100).filter(|_| b.try_take(t2)).count(), 5);
        // Empty: the next token is 0.1 s away at 10/s.
        let wait = b.retry_after(t2);
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        assert_eq!(b.retry_after(t2 + wait), Duration::ZERO);
    }
}
