//! Coalesced `room:presence` pushes.
//!
//! Every gateway hears each room's presence changes (users whose first connection
//! joined, or whose last left) as backend signals, adds them up per room, and every
//! interval emits one `room:presence {room, joined, left}` per changed room to its
//! local sockets in that room. N users joining a room cost each member a handful of
//! frames per interval, instead of one full user list per join (O(N²)).

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};

/// Net membership change per room since the last flush.
#[derive(Default)]
pub struct Coalescer {
    pending: Mutex<HashMap<String, BTreeMap<String, i64>>>,
}

/// One room's batch: who joined, who left.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch {
    pub room: String,
    pub joined: Vec<String>,
    pub left: Vec<String>,
}

impl Coalescer {
    pub fn add(&self, room: &str, joined: &[String], left: &[String]) {
        let mut p = self.pending.lock();
        let deltas = p.entry(room.to_owned()).or_default();
        for u in joined {
            *deltas.entry(u.clone()).or_insert(0) += 1;
        }
        for u in left {
            *deltas.entry(u.clone()).or_insert(0) -= 1;
        }
    }

    /// Take every room's net change; rooms whose changes cancel out are skipped.
    pub fn take(&self) -> Vec<Batch> {
        let pending = std::mem::take(&mut *self.pending.lock());
        let mut out: Vec<Batch> = pending
            .into_iter()
            .filter_map(|(room, deltas)| {
                let joined: Vec<String> = deltas
                    .iter()
                    .filter(|(_, d)| **d > 0)
                    .map(|(u, _)| u.clone())
                    .collect();
                let left: Vec<String> = deltas
                    .iter()
                    .filter(|(_, d)| **d < 0)
                    .map(|(u, _)| u.clone())
                    .collect();
                (!joined.is_empty() || !left.is_empty()).then_some(Batch { room, joined, left })
            })
            .collect();
        out.sort_by(|a, b| a.room.cmp(&b.room));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn coalesces_per_room_and_cancels_out() {
        let c = Coalescer::default();
        c.add("a", &s(&["x"]), &[]);
        c.add("a", &s(&["y"]), &[]);
        c.add("a", &s(&["z"]), &[]);
        c.add("a", &[], &s(&["z"]));
        c.add("a", &[], &s(&["old"]));
        c.add("b", &s(&["q"]), &[]);
        c.add("b", &[], &s(&["q"]));
        let got = c.take();
        assert_eq!(
            got,
            vec![Batch {
                room: "a".into(),
                joined: s(&["x", "y"]),
                left: s(&["old"])
            }]
        );
        assert!(c.take().is_empty());
    }
}
