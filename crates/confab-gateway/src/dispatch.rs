//! From backend events to local sockets.
//!
//! One task per gateway reads the backend's event stream (in publish order per
//! topic) and emits each event to the local sockets concerned, through
//! socketioxide's local rooms: `r:<room>` holds the sockets in a room, `u:<name>`
//! the sockets of a user. A stored message is serialised to JSON once per gateway and
//! then emitted socket by socket, so the gateway knows exactly which socket could not
//! take it (a slow consumer). Each event's time in the queue is the dispatch lag that
//! [`crate::overload`] admits new messages by.

use crate::gateway::Shared;
use crate::metrics as m;
use confab_backend::{BusEvent, EventReceiver, Signal, UserSignal};
use confab_core::protocol::{push, DmReadPush, PresencePush, TypingPush};
use confab_core::MessageId;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Requests to the dispatcher that must happen in sequence with fan-out.
pub enum Command {
    /// Put `socket` into `room`; reply with the id of the last message of the room
    /// emitted before (None if none since this gateway subscribed). The joiner's ack
    /// holds the room's messages up to `read_up_to` (and up to the reply): later
    /// emits of those are held back for this socket.
    Join {
        socket: SocketRef,
        room: String,
        read_up_to: Option<MessageId>,
        reply: oneshot::Sender<Option<MessageId>>,
    },
}

pub type CommandSender = mpsc::UnboundedSender<Command>;
pub type CommandReceiver = mpsc::UnboundedReceiver<Command>;

/// The socketioxide room of a chat room.
pub fn room_key(room: &str) -> String {
    format!("r:{room}")
}

/// The socketioxide room holding every socket of a user.
pub fn user_key(name: &str) -> String {
    format!("u:{name}")
}

/// Run until the backend closes the stream or shutdown.
pub async fn run(shared: Arc<Shared>, mut events: EventReceiver, mut commands: CommandReceiver) {
    // Last message id emitted per room, for the join seam. An entry outlives the
    // gateway's subscription on purpose: a stale id is only ever lower than the
    // truth, which costs at most one extra history read, never a gap.
    let mut last: HashMap<String, MessageId> = HashMap::new();
    let mut seams = Seams::default();
    loop {
        tokio::select! {
            e = events.recv_stamped() => match e {
                Some((queued, e)) => {
                    shared.dispatch_lag.record(queued, events.is_empty());
                    deliver(&shared, &mut last, &mut seams, e).await;
                }
                None => break,
            },
            c = commands.recv() => match c {
                Some(Command::Join { socket, room, read_up_to, reply }) => {
                    let emitted = last.get(&room).copied();
                    // Everything up to the larger of the two is in the join ack.
                    if let Some(held) = read_up_to.max(emitted) {
                        seams.hold(&room, socket.clone(), held);
                    }
                    socket.join(room_key(&room));
                    let _ = reply.send(emitted);
                }
                None => break,
            },
            _ = shared.shutdown.cancelled() => break,
        }
    }
}

/// Sockets that joined a room with a history ack holding messages the dispatcher
/// has not emitted yet: per room, the socket and the last id its ack holds. An entry
/// lives until the first later message reaches the socket (or the socket is gone).
#[derive(Default)]
struct Seams {
    rooms: HashMap<String, Vec<(SocketRef, MessageId)>>,
}

impl Seams {
    fn hold(&mut self, room: &str, socket: SocketRef, up_to: MessageId) {
        self.rooms
            .entry(room.to_owned())
            .or_default()
            .push((socket, up_to));
    }

    /// Sockets of `room` that must not get message `id` (their ack holds it).
    fn skip(&mut self, room: &str, id: MessageId) -> Vec<socketioxide::socket::Sid> {
        let Some(held) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let mut skip = Vec::new();
        held.retain(|(socket, up_to)| {
            if socket.connected() && id <= *up_to {
                skip.push(socket.id);
                true
            } else {
                false
            }
        });
        if held.is_empty() {
            self.rooms.remove(room);
        }
        skip
    }
}

async fn deliver(
    shared: &Shared,
    last: &mut HashMap<String, MessageId>,
    seams: &mut Seams,
    event: BusEvent,
) {
    let io = &shared.io;
    let result = match event {
        BusEvent::Message(msg) => {
            m::fanout("message");
            match last.get_mut(&msg.room) {
                Some(id) => *id = msg.id,
                None => {
                    last.insert(msg.room.clone(), msg.id);
                }
            }
            let skip = seams.skip(&msg.room, msg.id);
            deliver_each(shared, room_key(&msg.room), &skip, push::MESSAGE_NEW, &msg);
            Ok(())
        }
        BusEvent::Dm(dm) => {
            m::fanout("dm");
            let to = [user_key(&dm.to), user_key(&dm.from)];
            deliver_each(shared, to, &[], push::DM_NEW, &dm);
            Ok(())
        }
        BusEvent::Signal {
            room,
            signal: Signal::Typing { user, typing },
        } => {
            m::fanout("typing");
            let key = room_key(&room);
            let except = user_key(&user);
            let p = TypingPush { room, user, typing };
            io.to(key).except(except).emit(push::TYPING, &p).await
        }
        BusEvent::UserSignal {
            user,
            signal:
                UserSignal::DmRead {
                    with,
                    up_to,
                    unread,
                },
        } => {
            let p = DmReadPush {
                with,
                up_to,
                unread,
            };
            io.to(user_key(&user)).emit(push::DM_READ, &p).await
        }
        BusEvent::Signal {
            room,
            signal: Signal::Presence { joined, left },
        } => {
            shared.coalescer.add(&room, &joined, &left);
            Ok(())
        }
    };
    if let Err(e) = result {
        m::send_failed("fanout");
        tracing::warn!("fan-out incomplete: {e}");
    }
}

/// Emit a stored message to every local socket in `rooms`, serialised once, and
/// learn which sockets could not take it: a socket whose outgoing buffer is full is
/// a slow consumer and is disconnected (it resumes with `since` when it reconnects),
/// so no socket silently misses a stored message.
fn deliver_each<T: serde::Serialize>(
    shared: &Shared,
    rooms: impl socketioxide_core::adapter::RoomParam,
    skip: &[socketioxide::socket::Sid],
    event: &str,
    data: &T,
) {
    let raw = match serde_json::value::to_raw_value(data) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::error!("cannot serialise {event}: {e}");
            return;
        }
    };
    for socket in shared.io.to(rooms).sockets() {
        if skip.contains(&socket.id) {
            continue;
        }
        match socket.emit(event, &raw) {
            Ok(()) => {}
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                slow_consumer(shared, socket)
            }
            Err(e) => {
                m::send_failed("fanout");
                tracing::debug!(sid = %socket.id, "not delivered: {e}");
            }
        }
    }
}

/// A socket that cannot keep up: count it, take it out of every fan-out at once (it
/// must not receive later messages after missing one), and disconnect it with a
/// reason the client sees (`io server disconnect`) as soon as its buffer has room for
/// the disconnect packet. If it never reads again, the Engine.IO heartbeat closes it.
/// Its session is cleaned up at once (presence, subscriptions), as for a disconnect;
/// the client resumes with `since` when it reconnects.
fn slow_consumer(shared: &Shared, socket: SocketRef) {
    let Some(ctx) = shared.sessions.lock().get(&socket.id).cloned() else {
        return;
    };
    if ctx.session.is_closed() {
        return;
    }
    metrics::counter!(m::SLOW_CONSUMERS).increment(1);
    tracing::info!(sid = %socket.id, "slow consumer: outgoing buffer full, disconnecting");
    socket.leave_all();
    crate::socket::close(ctx);
    tokio::spawn(async move {
        for _ in 0..600 {
            match socket.clone().disconnect() {
                Err(SocketError::InternalChannelFull) => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await
                }
                _ => return,
            }
        }
    });
}

/// Emit the coalesced presence batches every `presence_interval`.
pub async fn presence_flusher(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.presence_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.shutdown.cancelled() => break,
        }
        let max_names = shared.config.limits.presence_names_max;
        for batch in shared.coalescer.take(max_names) {
            metrics::counter!(m::PRESENCE_PUSHES).increment(1);
            let key = room_key(&batch.room);
            let p = PresencePush {
                room: batch.room,
                joined: batch.joined,
                left: batch.left,
                joined_more: batch.joined_more,
                left_more: batch.left_more,
            };
            if let Err(e) = shared.io.to(key).emit(push::ROOM_PRESENCE, &p).await {
                m::send_failed("presence");
                tracing::warn!("presence push incomplete: {e}");
            }
        }
    }
}
