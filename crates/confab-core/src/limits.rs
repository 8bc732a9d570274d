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
        }
    }
}
