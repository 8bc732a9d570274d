//! A connection's outgoing queue, bounded in bytes.
//!
//! [`Outbox::try_push`] takes a group of frames whole or refuses it at once: that
//! refusal is the exact slow-consumer signal (the caller knows precisely which
//! message a connection could not take). Control frames (ping, disconnect) bypass the
//! bound so a slow connection can still be told to go. Nothing is allocated while
//! the queue is empty, and a queue that grew during a burst gives its memory back
//! once drained.

use crate::Frame;
use std::collections::VecDeque;

/// Frames kept in a drained queue's allocation; a larger one is released.
const KEEP_CAPACITY: usize = 8;

#[derive(Debug, Default)]
pub struct Outbox {
    frames: VecDeque<Frame>,
    bytes: usize,
}

/// The queue is full: the group was not queued (nothing of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl Outbox {
    /// Queue `group` whole if it fits under `limit` bytes. An empty queue takes a
    /// group of any size, so one large message can always be delivered.
    pub fn try_push(&mut self, group: &[Frame], limit: usize) -> Result<(), Full> {
        let n: usize = group.iter().map(Frame::len).sum();
        if !self.frames.is_empty() && self.bytes.saturating_add(n) > limit {
            return Err(Full);
        }
        self.push_unbounded(group);
        Ok(())
    }

    /// Queue control frames regardless of the bound.
    pub fn push_unbounded(&mut self, group: &[Frame]) {
        for f in group {
            self.bytes += f.len();
            self.frames.push_back(f.clone());
        }
    }

    /// Move everything queued into `batch` (the writer's own, emptied buffer), so the
    /// two allocations take turns and a steady flow allocates nothing. A buffer that
    /// grew during a burst is released once it is empty again.
    pub fn take_into(&mut self, batch: &mut VecDeque<Frame>) {
        batch.clear();
        if batch.capacity() > KEEP_CAPACITY {
            *batch = VecDeque::new();
        }
        std::mem::swap(&mut self.frames, batch);
        self.bytes = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_bytes_whole_groups() {
        let mut o = Outbox::default();
        let ten = Frame::text("0123456789");
        o.try_push(std::slice::from_ref(&ten), 25).unwrap();
        o.try_push(std::slice::from_ref(&ten), 25).unwrap();
        assert_eq!(o.bytes(), 20);
        // 30 > 25: refused whole, nothing queued.
        assert_eq!(o.try_push(std::slice::from_ref(&ten), 25), Err(Full));
        assert_eq!(o.try_push(&[Frame::text("ab"), ten.clone()], 25), Err(Full));
        assert_eq!((o.len(), o.bytes()), (2, 20));
        o.try_push(&[Frame::text("abcde")], 25).unwrap();
        assert_eq!(o.bytes(), 25);
        // Control frames pass the bound.
        o.push_unbounded(&[Frame::text("41")]);
        assert_eq!(o.len(), 4);
        let mut batch = VecDeque::new();
        o.take_into(&mut batch);
        assert_eq!(batch.len(), 4);
        assert!(o.is_empty());
        assert_eq!(o.bytes(), 0);
    }

    #[test]
    fn empty_queue_takes_a_large_group() {
        let mut o = Outbox::default();
        o.try_push(&[Frame::text("x".repeat(100))], 10).unwrap();
        assert_eq!(o.try_push(&[Frame::text("y")], 10), Err(Full));
    }

    #[test]
    fn releases_memory_after_a_burst() {
        let mut o = Outbox::default();
        assert_eq!(o.frames.capacity(), 0, "no allocation while idle");
        for _ in 0..100 {
            o.try_push(&[Frame::text("x")], usize::MAX).unwrap();
        }
        let mut batch = VecDeque::new();
        o.take_into(&mut batch);
        assert_eq!(batch.len(), 100);
        o.try_push(&[Frame::text("x")], usize::MAX).unwrap();
        o.take_into(&mut batch);
        assert!(
            batch.capacity() <= KEEP_CAPACITY,
            "the burst's buffer is released"
        );
    }
}
