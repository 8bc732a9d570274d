//! Coalesced `room:presence` pushes.
//!
//! Every gateway hears each room's presence changes (users whose first connection
//! joined, or whose last left) as backend signals, adds them up per room, and every
//! interval emits one `room:presence {room, joined, left}` per changed room to its
//! local sockets in that room. N users joining a room cost each member a handful of
//! frames per interval, instead of one full user list per join (O(N²)). A batch
//! lists at most `presence_names_max` names per list and counts the rest, so a
//! crowd joining a big room costs each member small frames (and small websocket
//! buffers, which keep the capacity of the largest burst).

use confab_backend::UserRef;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};

/// Net membership change per room since the last flush.
#[derive(Default)]
pub struct Coalescer {
    pending: Mutex<HashMap<String, BTreeMap<UserRef, i64>>>,
}

/// One room's batch: who joined, who left (the first users of each, in id
/// order), and how many more of each were not listed.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch {
    pub room: String,
    pub joined: Vec<UserRef>,
    pub left: Vec<UserRef>,
    pub joined_more: u64,
    pub left_more: u64,
}

/// The first `max` names of `names` (already in order) and the count of the rest.
fn cap<'a>(names: impl Iterator<Item = &'a UserRef>, max: usize) -> (Vec<UserRef>, u64) {
    let mut listed = Vec::new();
    let mut more = 0u64;
    for n in names {
        if listed.len() < max {
            listed.push(n.clone());
        } else {
            more += 1;
        }
    }
    (listed, more)
}

impl Coalescer {
    pub fn add(&self, room: &str, joined: &[UserRef], left: &[UserRef]) {
        let mut p = self.pending.lock();
        let deltas = p.entry(room.to_owned()).or_default();
        for u in joined {
            *deltas.entry(u.clone()).or_insert(0) += 1;
        }
        for u in left {
            *deltas.entry(u.clone()).or_insert(0) -= 1;
        }
    }

    /// Take every room's net change, at most `max_names` names per list; rooms
    /// whose changes cancel out are skipped.
    pub fn take(&self, max_names: usize) -> Vec<Batch> {
        let pending = std::mem::take(&mut *self.pending.lock());
        let mut out: Vec<Batch> = pending
            .into_iter()
            .filter_map(|(room, deltas)| {
                let (joined, joined_more) = cap(
                    deltas.iter().filter(|(_, d)| **d > 0).map(|(u, _)| u),
                    max_names,
                );
                let (left, left_more) = cap(
                    deltas.iter().filter(|(_, d)| **d < 0).map(|(u, _)| u),
                    max_names,
                );
                let any = joined_more + left_more > 0 || !joined.is_empty() || !left.is_empty();
                any.then_some(Batch {
                    room,
                    joined,
                    left,
                    joined_more,
                    left_more,
                })
            })
            .collect();
        out.sort_by(|a, b| a.room.cmp(&b.room));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<UserRef> {
        v.iter()
            .map(|x| UserRef {
                id: x.to_string(),
                name: x.to_uppercase(),
            })
            .collect()
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
        let got = c.take(50);
        assert_eq!(
            got,
            vec![Batch {
                room: "a".into(),
                joined: s(&["x", "y"]),
                left: s(&["old"]),
                joined_more: 0,
                left_more: 0,
            }]
        );
        assert!(c.take(50).is_empty());
    }

    #[test]
    fn caps_names_per_list_and_counts_the_rest() {
        let c = Coalescer::default();
        c.add("a", &s(&["d", "b", "a", "c", "e"]), &s(&["y", "z", "x"]));
        let got = c.take(2);
        assert_eq!(
            got,
            vec![Batch {
                room: "a".into(),
                joined: s(&["a", "b"]),
                left: s(&["x", "y"]),
                joined_more: 3,
                left_more: 1,
            }]
        );
        // Zero names per push: counts only, still one push.
        c.add("a", &s(&["q"]), &[]);
        let got = c.take(0);
        assert_eq!((got[0].joined.len(), got[0].joined_more), (0, 1));
    }
}
