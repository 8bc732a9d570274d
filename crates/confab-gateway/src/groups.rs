//! This gateway's local fan-out groups: the sockets in a room (`r:<room>`), the
//! sockets of a user (`u:<id>`) and every socket ([`ALL`], for announcements). Owned by the dispatcher task alone (no lock). A
//! frame sent to a group is encoded once by the caller and handed to every member;
//! the members whose queue refused it are returned, exactly, so the caller can cut
//! them.

use confab_sio::{Frame, SendError, Socket};
use std::collections::HashMap;

/// The group of every socket of the gateway (server-wide announcements).
pub const ALL: &str = "*";

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
    map: HashMap<String, HashMap<Box<str>, Socket>>,
    /// The groups of each socket (to take a cut socket out of all at once).
    of_socket: HashMap<Box<str>, Vec<String>>,
}

impl Groups {
    pub fn join(&mut self, key: String, socket: &Socket) {
        let id: Box<str> = socket.id().into();
        let keys = self.of_socket.entry(id.clone()).or_default();
        if !keys.contains(&key) {
            keys.push(key.clone());
        }
        self.map.entry(key).or_default().insert(id, socket.clone());
    }

    pub fn leave(&mut self, key: &str, socket: &Socket) {
        if let Some(g) = self.map.get_mut(key) {
            g.remove(socket.id());
            if g.is_empty() {
                self.map.remove(key);
            }
        }
        if let Some(keys) = self.of_socket.get_mut(socket.id()) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.of_socket.remove(socket.id());
            }
        }
    }

    /// Take `socket` out of every group.
    pub fn leave_all(&mut self, socket: &Socket) {
        for key in self.of_socket.remove(socket.id()).unwrap_or_default() {
            if let Some(g) = self.map.get_mut(&key) {
                g.remove(socket.id());
                if g.is_empty() {
                    self.map.remove(&key);
                }
            }
        }
    }

    /// Sockets of the group (cloned handles).
    pub fn members(&self, key: &str) -> Vec<Socket> {
        self.map
            .get(key)
            .map(|g| g.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Queue `frame` to every member for which `skip` is false; returns the members
    /// whose queue was full (slow consumers), and counts the closed ones.
    pub fn send(&self, key: &str, frame: &Frame, skip: impl Fn(&Socket) -> bool) -> Vec<Socket> {
        let mut full = Vec::new();
        let Some(g) = self.map.get(key) else {
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

    /// Groups with at least one member (tests, diagnostics).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
