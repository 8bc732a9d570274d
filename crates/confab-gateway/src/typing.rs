//! Typing indicators with server-side expiry.
//!
//! The gateway that owns the typing socket runs the timer: a `typing: true` starts
//! (or refreshes) a timer; when it fires without a refresh, the gateway publishes
//! `typing: false` itself. Leaving the room or disconnecting also ends typing. The
//! signal crosses gateways through the backend like any room event.

use crate::session::Session;
use crate::state::Shared;
use confab_backend::{Signal, UserRef};
use std::sync::Arc;

/// Handle `typing {room, typing}` from a member of `room`.
pub async fn set(shared: &Arc<Shared>, session: &Arc<Session>, room: &str, typing: bool) {
    if typing {
        let (generation, started) = {
            let mut t = session.typing.lock();
            let g = t.entry(room.to_owned()).or_insert(0);
            let started = *g == 0;
            *g += 1;
            (*g, started)
        };
        if started {
            publish(shared, room, &session.user, true).await;
        }
        let (shared, session, room) = (shared.clone(), session.clone(), room.to_owned());
        let timeout = shared.config.typing_timeout;
        let tasks = shared.tasks.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {}
                _ = shared.shutdown.cancelled() => return,
            }
            let expired = {
                let mut t = session.typing.lock();
                if t.get(&room) == Some(&generation) {
                    t.remove(&room);
                    true
                } else {
                    false
                }
            };
            if expired {
                publish(&shared, &room, &session.user, false).await;
            }
        });
    } else {
        stop(shared, session, room).await;
    }
}

/// End typing in `room` if the socket was typing there.
pub async fn stop(shared: &Arc<Shared>, session: &Session, room: &str) {
    let was = session.typing.lock().remove(room).is_some();
    if was {
        publish(shared, room, &session.user, false).await;
    }
}

async fn publish(shared: &Shared, room: &str, user: &UserRef, typing: bool) {
    let signal = Signal::Typing {
        user: user.clone(),
        typing,
    };
    if let Err(e) = shared.broker.publish_signal(room, signal).await {
        tracing::warn!(room, user = %user.id, "typing signal not published: {e}");
    }
}
