//! Protocol limits. Every one is configurable by the operator; the defaults protect
//! a server on a small machine (see the limits table in docs/protocol.md).

/// The limits the gateway enforces on client input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted event payload, in bytes of JSON.
    pub max_payload: usize,
    /// Longest message text, in Unicode scalar values.
    pub max_text_chars: usize,
    /// Rooms one socket may be in at once (including `general`).
    pub max_rooms_per_socket: usize,
    /// Largest `limit` of a history page.
    pub history_page_max: usize,
    /// Default `limit` of a history page.
    pub history_page_default: usize,
    /// Most messages returned by a `since` (resume) join.
    pub resume_max: usize,
    /// Most names returned in member and user lists.
    pub list_max: usize,
    /// Most member names in a `room:join` ack (`memberCount` has the total): a join
    /// of a big room must not cost every joiner a frame of thousands of names.
    pub join_members_max: usize,
    /// Most names in each list of one `room:presence` push; the rest are counted in
    /// `joinedMore`/`leftMore`, so a crowd joining a big room costs each member
    /// small frames.
    pub presence_names_max: usize,
    /// Largest sum of message text (bytes) in one history or join ack: the oldest
    /// messages of a page over it are left out (`hasMore` / `truncated` tell), so an
    /// ack never outgrows a socket's buffer.
    pub ack_text_max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: 64 * 1024,
            max_text_chars: 4000,
            max_rooms_per_socket: 100,
            history_page_max: 200,
            history_page_default: 50,
            resume_max: 1000,
            list_max: 1000,
            join_members_max: 100,
            presence_names_max: 50,
            ack_text_max_bytes: 256 * 1024,
        }
    }
}

/// Drop the oldest of `items` (oldest first) until the texts of the rest fit in
/// `budget` bytes, always keeping the newest one; true if any was dropped.
pub fn cap_text_bytes<T>(items: &mut Vec<T>, budget: usize, text: impl Fn(&T) -> usize) -> bool {
    let mut total = 0usize;
    let mut keep = 0usize;
    for item in items.iter().rev() {
        total = total.saturating_add(text(item));
        if keep > 0 && total > budget {
            break;
        }
        keep += 1;
    }
    let drop = items.len() - keep;
    items.drain(..drop);
    drop > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_keeps_the_newest_within_the_budget() {
        let mut v = vec![5usize, 5, 5, 5];
        assert!(cap_text_bytes(&mut v, 10, |x| *x));
        assert_eq!(v, vec![5, 5]);
        let mut v = vec![100usize, 3];
        assert!(!cap_text_bytes(&mut v, 200, |x| *x));
        // The newest is kept even when it alone is over the budget.
        let mut v = vec![1usize, 500];
        assert!(cap_text_bytes(&mut v, 10, |x| *x));
        assert_eq!(v, vec![500]);
        let mut v: Vec<usize> = vec![];
        assert!(!cap_text_bytes(&mut v, 10, |x| *x));
    }
}
