//! From backend events to local sockets.
//!
//! One task per gateway reads the backend's event stream (in publish order per
//! topic) and sends each event to the local sockets concerned, through the
//! [`Groups`](crate::groups::Groups): `r:<room>` holds the sockets in a room,
//! `u:<name>` the sockets of a user. Every push is encoded once per gateway into one
//! shared frame and queued socket by socket, so the gateway knows exactly which
//! socket could not take it (a slow consumer). Each event's time in the queue is the dispatch lag that
//! [`crate::overload`] admits new messages by.

use crate::gateway::Shared;
use crate::groups::{room_key, user_key};
use crate::metrics as m;
use confab_backend::{BusEvent, EventReceiver, Signal, UserSignal};
use confab_core::protocol::{push, DmReadPush, PresencePush, TypingPush};
use confab_core::MessageId;
use confab_sio::{Frame, Socket};
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
        socket: Socket,
        room: String,
        read_up_to: Option<MessageId>,
        reply: oneshot::Sender<Option<MessageId>>,
    },
}

pub type CommandSender = mpsc::UnboundedSender<Command>;
pub type CommandReceiver = mpsc::UnboundedReceiver<Command>;

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
                    shared.groups.join(room_key(&room), &socket);
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
    rooms: HashMap<String, Vec<(Socket, MessageId)>>,
}

impl Seams {
    fn hold(&mut self, room: &str, socket: Socket, up_to: MessageId) {
        self.rooms
            .entry(room.to_owned())
            .or_default()
            .push((socket, up_to));
    }

    /// Sockets of `room` that must not get message `id` (their ack holds it).
    fn skip(&mut self, room: &str, id: MessageId) -> Vec<Socket> {
        let Some(held) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let mut skip = Vec::new();
        held.retain(|(socket, up_to)| {
            if socket.connected() && id <= *up_to {
                skip.push(socket.clone());
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
    match event {
        BusEvent::Message(msg) => {
            m::fanout("message");
            match last.get_mut(&msg.room) {
                Some(id) => *id = msg.id,
                None => {
                    last.insert(msg.room.clone(), msg.id);
                }
            }
            let skip = seams.skip(&msg.room, msg.id);
            if let Some(frame) = encode(push::MESSAGE_NEW, &msg) {
                send(shared, &room_key(&msg.room), &frame, |s| skip.contains(s));
            }
        }
        BusEvent::Dm(dm) => {
            m::fanout("dm");
            if let Some(frame) = encode(push::DM_NEW, &dm) {
                send(shared, &user_key(&dm.to), &frame, |_| false);
                if dm.from != dm.to {
                    send(shared, &user_key(&dm.from), &frame, |_| false);
                }
            }
        }
        BusEvent::Signal {
            room,
            signal: Signal::Typing { user, typing },
        } => {
            m::fanout("typing");
            let own = shared.groups.members(&user_key(&user));
            let key = room_key(&room);
            let p = TypingPush { room, user, typing };
            if let Some(frame) = encode(push::TYPING, &p) {
                send(shared, &key, &frame, |s| own.contains(s));
            }
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
            if let Some(frame) = encode(push::DM_READ, &p) {
                send(shared, &user_key(&user), &frame, |_| false);
            }
        }
        BusEvent::Signal {
            room,
            signal: Signal::Presence { joined, left },
        } => {
            shared.coalescer.add(&room, &joined, &left);
        }
    }
}

/// Encode a push once for every recipient on this gateway.
fn encode<T: serde::Serialize>(event: &str, data: &T) -> Option<Frame> {
    match confab_sio::sio::event("/", event, data) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!("cannot serialise {event}: {e}");
            None
        }
    }
}

/// Queue `frame` to the sockets of group `key` and cut every socket whose queue
/// refused it: it is a slow consumer and is disconnected (it resumes with `since`
/// when it reconnects), so no socket silently misses a push.
fn send(shared: &Shared, key: &str, frame: &Frame, skip: impl Fn(&Socket) -> bool) {
    for socket in shared.groups.send(key, frame, skip) {
        slow_consumer(shared, socket);
    }
}

/// A socket that cannot keep up: count it, take it out of every fan-out at once (it
/// must not receive later messages after missing one), and disconnect it with a
/// reason the client sees (`io server disconnect`): the DISCONNECT packet is queued
/// past the bound. If the client never reads again, the Engine.IO heartbeat closes
/// the transport. Its session is cleaned up at once (presence, subscriptions), as for
/// a disconnect; the client resumes with `since` when it reconnects.
fn slow_consumer(shared: &Shared, socket: Socket) {
    let Some(ctx) = shared.sessions.lock().get(socket.id()).cloned() else {
        return;
    };
    if ctx.session.is_closed() {
        return;
    }
    metrics::counter!(m::SLOW_CONSUMERS).increment(1);
    tracing::info!(sid = %socket.id(), "slow consumer: outgoing queue full, disconnecting");
    for room in ctx.session.rooms() {
        shared.groups.leave(&room_key(&room), &socket);
    }
    shared.groups.leave(&user_key(&ctx.session.name), &socket);
    socket.disconnect();
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
            if let Some(frame) = encode(push::ROOM_PRESENCE, &p) {
                send(&shared, &key, &frame, |_| false);
            }
        }
    }
}
