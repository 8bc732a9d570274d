//! Connection caps: connections per client IP on this gateway, and the client IP
//! itself (from `X-Forwarded-For` only when the TCP peer is a trusted proxy).
//! Connections per user are capped cluster-wide at the handshake, from presence
//! (see `chat::open_session`).

use confab_sio::Peer;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the
/// right-most `X-Forwarded-For` entry that is not a trusted proxy itself.
pub fn client_ip(peer: &Peer, trusted: &[IpAddr]) -> Option<IpAddr> {
    let direct = peer.addr?.ip();
    if !trusted.contains(&direct) {
        return Some(direct);
    }
    let mut ip = direct;
    if let Some(xff) = &peer.forwarded_for {
        for part in xff.rsplit(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(hop) if trusted.contains(&hop) => ip = hop,
                Ok(hop) => return Some(hop),
                Err(_) => break,
            }
        }
    }
    Some(ip)
}

/// Open connections per client IP on this gateway.
pub struct IpSlots {
    open: Mutex<HashMap<IpAddr, u32>>,
    max: u32,
}

/// One connection's place in [`IpSlots`], given back when dropped.
pub struct IpSlot {
    slots: Arc<IpSlots>,
    ip: IpAddr,
}

impl IpSlots {
    /// `max` connections per IP (0: no cap).
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(HashMap::new()),
            max,
        })
    }

    /// A place for one more connection from `ip`, unless it has `max` already.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock();
        let n = open.entry(ip).or_insert(0);
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            slots: self.clone(),
            ip,
        })
    }

    pub fn open_from(&self, ip: IpAddr) -> u32 {
        self.open.lock().get(&ip).copied().unwrap_or(0)
    }
}

impl IpSlot {
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, xff: Option<&str>) -> Peer {
        Peer {
            addr: Some(addr.parse().unwrap()),
            forwarded_for: xff.map(Into::into),
        }
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Direct client: its own address, whatever header it sends.
        assert_eq!(
            client_ip(&peer("203.0.113.9:5000", Some("1.2.3.4")), &trusted),
            Some(ip("203.0.113.9"))
        );
        // Through the proxy: the right-most untrusted hop (a client's own spoofed
        // entries are to its left).
        assert_eq!(
            client_ip(
                &peer("127.0.0.1:5000", Some("6.6.6.6, 198.51.100.7")),
                &trusted
            ),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            client_ip(
                &peer("127.0.0.1:5000", Some("198.51.100.7, 10.0.0.2")),
                &trusted
            ),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            client_ip(&peer("127.0.0.1:5000", None), &trusted),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            client_ip(&peer("127.0.0.1:5000", Some("garbage")), &trusted),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(client_ip(&Peer::default(), &trusted), None);
    }

    #[test]
    fn slots_cap_and_come_back() {
        let slots = IpSlots::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = slots.take(ip).unwrap();
        let _b = slots.take(ip).unwrap();
        assert!(slots.take(ip).is_none());
        assert!(slots.take("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert_eq!(slots.open_from(ip), 1);
        assert!(slots.take(ip).is_some());
        let unlimited = IpSlots::new(0);
        let all: Vec<_> = (0..100).map(|_| unlimited.take(ip).unwrap()).collect();
        assert_eq!(unlimited.open_from(ip), 100);
        drop(all);
        assert_eq!(unlimited.open_from(ip), 0);
    }
}
