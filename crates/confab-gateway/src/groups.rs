//! This gateway's local fan-out groups: the sockets in a room (`r:<room>`) and the
//! sockets of a user (`u:<name>`). A frame sent to a group is encoded once by the
//! caller and handed to every member; the members whose queue refused it are
//! returned, exactly, so the caller can cut them.

use confab_sio::{Frame, SendError, Socket};
use parking_lot::RwLock;
use std::collections::HashMap;

/// The group of a chat room.
pub fn room_key(room: &str) -> String {
    format!("r:{room}")
}

/// The group holding every socket of a user.
pub fn user_key(name: &str) -> String {
    format!("u:{name}")
}

#[derive(Default)]
pub struct Groups {
    map: RwLock<HashMap<String, HashMap<Box<str>, Socket>>>,
}

impl Groups {
    pub fn join(&self, key: String, socket: &Socket) {
        self.map
            .write()
            .entry(key)
            .or_default()
            .insert(socket.id().into(), socket.clone());
    }

    pub fn leave(&self, key: &str, socket: &Socket) {
        let mut map = self.map.write();
        if let Some(g) = map.get_mut(key) {
            g.remove(socket.id());
            if g.is_empty() {
                map.remove(key);
            }
        }
    }

    /// Whether `socket` is in the group (tests, diagnostics).
    pub fn contains(&self, key: &str, socket: &Socket) -> bool {
        self.map
            .read()
            .get(key)
            .is_some_and(|g| g.contains_key(socket.id()))
    }

    /// Sockets of the group (cloned handles).
    pub fn members(&self, key: &str) -> Vec<Socket> {
        self.map
            .read()
            .get(key)
            .map(|g| g.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Queue `frame` to every member for which `skip` is false; returns the members
    /// whose queue was full (slow consumers), and counts the closed ones.
    pub fn send(&self, key: &str, frame: &Frame, skip: impl Fn(&Socket) -> bool) -> Vec<Socket> {
        let mut full = Vec::new();
        let map = self.map.read();
        let Some(g) = map.get(key) else {
            return full;
        };
        for s in g.values() {
            if skip(s) {
                continue;
            }
            match s.send(frame) {
                Ok(()) => {}
                Err(SendError::Full) => full.push(s.clone()),
                Err(SendError::Closed) => crate::metrics::send_failed("closed"),
            }
        }
        full
    }
}
