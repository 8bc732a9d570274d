//! From backend events to local sockets.
//!
//! One task per gateway owns the local fan-out: the [`Groups`] (`r:<room>` holds
//! the sockets in a room, `u:<name>` the sockets of a user), changed only through
//! [`Command`]s, which it takes before any event queued after them. It reads the
//! backend's event stream (in publish order per topic) and sends each event to the
//! sockets concerned: every push is encoded once per gateway into one shared frame
//! and queued socket by socket, so the gateway knows exactly which socket could not
//! take it (a slow consumer, cut at once). Coalesced presence is flushed from the
//! same task. Each event's time in the queue is the dispatch lag that
//! [`crate::overload`] admits new messages by.

use crate::groups::{room_key, user_key, Groups};
use crate::metrics as m;
use crate::overload::DispatchLag;
use crate::presence::Coalescer;
use confab_backend::{BusEvent, EventReceiver, Signal, UserSignal};
use confab_core::protocol::{
    push, Announcement, DmReadPush, MessageDeleted, ModAction, PresencePush, RoomInvited,
    TypingPush,
};
use confab_core::MessageId;
use confab_sio::{Frame, Socket};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Changes to the fan-out, applied in sequence with it.
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
    /// Put `socket` into group `key` (its user group, the default room).
    Enter { key: String, socket: Socket },
    /// Take `socket` out of group `key`.
    Leave { key: String, socket: Socket },
}

/// A moderation action this gateway must carry out on its sockets of `user`
/// (after the dispatcher pushed `mod:action` to them).
#[derive(Debug, Clone)]
pub struct Enforce {
    pub user: String,
    pub action: String,
    pub room: Option<String>,
    pub until: Option<u64>,
}

pub type CommandSender = mpsc::UnboundedSender<Command>;
pub type CommandReceiver = mpsc::UnboundedReceiver<Command>;

/// What the dispatcher needs, and nothing else.
pub struct Dispatcher {
    pub events: EventReceiver,
    pub commands: CommandReceiver,
    pub coalescer: Coalescer,
    pub lag: Arc<DispatchLag>,
    pub presence_interval: Duration,
    pub presence_names_max: usize,
    pub shutdown: CancellationToken,
    /// Where moderation actions go to be carried out on sessions.
    pub enforce: mpsc::UnboundedSender<Enforce>,
}

/// The dispatcher's own state.
#[derive(Default)]
struct Fanout {
    groups: Groups,
    /// Last message id emitted per room, for the join seam. An entry outlives the
    /// gateway's subscription on purpose: a stale id is only ever lower than the
    /// truth, which costs at most one extra history read, never a gap.
    last: HashMap<String, MessageId>,
    seams: Seams,
}

impl Dispatcher {
    /// Run until the backend closes the stream or shutdown.
    pub async fn run(mut self) {
        let mut fan = Fanout::default();
        let mut tick = tokio::time::interval(self.presence_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Commands first: a join or leave sent before an event was queued
                // takes effect before that event is delivered.
                biased;
                c = self.commands.recv() => match c {
                    Some(c) => fan.apply(c),
                    None => break,
                },
                e = self.events.recv_stamped() => match e {
                    Some((queued, e)) => {
                        self.lag.record(queued, self.events.is_empty());
                        fan.deliver(&self.coalescer, &self.enforce, e);
                    }
                    None => break,
                },
                _ = tick.tick() => fan.flush_presence(&self.coalescer, self.presence_names_max),
                _ = self.shutdown.cancelled() => break,
            }
        }
    }
}

impl Fanout {
    fn apply(&mut self, c: Command) {
        match c {
            Command::Join {
                socket,
                room,
                read_up_to,
                reply,
            } => {
                let emitted = self.last.get(&room).copied();
                // Everything up to the larger of the two is in the join ack.
                if let Some(held) = read_up_to.max(emitted) {
                    self.seams.hold(&room, socket.clone(), held);
                }
                self.groups.join(room_key(&room), &socket);
                let _ = reply.send(emitted);
            }
            Command::Enter { key, socket } => self.groups.join(key, &socket),
            Command::Leave { key, socket } => self.groups.leave(&key, &socket),
        }
    }

    fn deliver(
        &mut self,
        coalescer: &Coalescer,
        enforce: &mpsc::UnboundedSender<Enforce>,
        event: BusEvent,
    ) {
        match event {
            BusEvent::Message(msg) => {
                m::fanout("message");
                match self.last.get_mut(&msg.room) {
                    Some(id) => *id = msg.id,
                    None => {
                        self.last.insert(msg.room.clone(), msg.id);
                    }
                }
                let skip = self.seams.skip(&msg.room, msg.id);
                if let Some(frame) = encode(push::MESSAGE_NEW, &msg) {
                    self.send(&room_key(&msg.room), &frame, |s| skip.contains(s));
                }
                m::fanout_delay("message", msg.ts);
            }
            BusEvent::Dm(dm) => {
                m::fanout("dm");
                if let Some(frame) = encode(push::DM_NEW, &dm) {
                    self.send(&user_key(&dm.to), &frame, |_| false);
                    if dm.from_id != dm.to {
                        self.send(&user_key(&dm.from_id), &frame, |_| false);
                    }
                }
                m::fanout_delay("dm", dm.ts);
            }
            BusEvent::Signal {
                room,
                signal: Signal::Typing { user, typing },
            } => {
                m::fanout("typing");
                let own = self.groups.members(&user_key(&user.id));
                let key = room_key(&room);
                let p = TypingPush {
                    room,
                    user: user.name,
                    user_id: user.id,
                    typing,
                };
                if let Some(frame) = encode(push::TYPING, &p) {
                    self.send(&key, &frame, |s| own.contains(s));
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
                    self.send(&user_key(&user), &frame, |_| false);
                }
            }
            BusEvent::Signal {
                room,
                signal: Signal::Presence { joined, left },
            } => coalescer.add(&room, &joined, &left),
            BusEvent::Signal {
                room,
                signal: Signal::Deleted { id },
            } => {
                m::fanout("deleted");
                let key = room_key(&room);
                if let Some(frame) = encode(push::MESSAGE_DELETED, &MessageDeleted { room, id }) {
                    self.send(&key, &frame, |_| false);
                }
            }
            BusEvent::Signal {
                signal: Signal::Announcement { from, text, ts },
                ..
            } => {
                m::fanout("announcement");
                let p = Announcement {
                    from: from.name,
                    from_id: from.id,
                    text,
                    ts,
                };
                if let Some(frame) = encode(push::ANNOUNCEMENT, &p) {
                    self.send(crate::groups::ALL, &frame, |_| false);
                }
            }
            BusEvent::UserSignal {
                user,
                signal:
                    UserSignal::Moderation {
                        action,
                        room,
                        until,
                    },
            } => {
                // Told first, then enforced (the push is queued before any
                // disconnect or room exit the enforcer causes).
                let p = ModAction {
                    action: action.clone(),
                    room: room.clone(),
                    until,
                };
                if let Some(frame) = encode(push::MOD_ACTION, &p) {
                    self.send(&user_key(&user), &frame, |_| false);
                }
                let _ = enforce.send(Enforce {
                    user,
                    action,
                    room,
                    until,
                });
            }
            BusEvent::UserSignal {
                user,
                signal: UserSignal::Invited { room, by },
            } => {
                let p = RoomInvited {
                    room,
                    by: by.name,
                    by_id: by.id,
                };
                if let Some(frame) = encode(push::ROOM_INVITED, &p) {
                    self.send(&user_key(&user), &frame, |_| false);
                }
            }
        }
    }

    /// Emit the coalesced presence batches (one `room:presence` per changed room).
    fn flush_presence(&mut self, coalescer: &Coalescer, max_names: usize) {
        for batch in coalescer.take(max_names) {
            metrics::counter!(m::PRESENCE_PUSHES).increment(1);
            let key = room_key(&batch.room);
            let (joined, joined_ids) = batch.joined.into_iter().map(|u| (u.name, u.id)).unzip();
            let (left, left_ids) = batch.left.into_iter().map(|u| (u.name, u.id)).unzip();
            let p = PresencePush {
                room: batch.room,
                joined,
                left,
                joined_ids,
                left_ids,
                joined_more: batch.joined_more,
                left_more: batch.left_more,
            };
            if let Some(frame) = encode(push::ROOM_PRESENCE, &p) {
                self.send(&key, &frame, |_| false);
            }
        }
    }

    /// Queue `frame` to the sockets of group `key` and cut every socket whose queue
    /// refused it: it is a slow consumer and is disconnected (it resumes with
    /// `since` when it reconnects), so no socket silently misses a push.
    fn send(&mut self, key: &str, frame: &Frame, skip: impl Fn(&Socket) -> bool) {
        for socket in self.groups.send(key, frame, skip) {
            self.slow_consumer(socket);
        }
    }

    /// A socket that cannot keep up: count it, take it out of every group at once
    /// (it must not receive later messages after missing one), and disconnect it
    /// with a reason the client sees (`io server disconnect`): the DISCONNECT packet
    /// is queued past the bound. If the client never reads again, the Engine.IO
    /// heartbeat closes the transport. Its session's clean-up (presence,
    /// subscriptions) runs from the socket's disconnect handler; the client resumes
    /// with `since` when it reconnects.
    fn slow_consumer(&mut self, socket: Socket) {
        if !socket.connected() {
            return;
        }
        metrics::counter!(m::SLOW_CONSUMERS).increment(1);
        tracing::info!(sid = %socket.id(), "slow consumer: outgoing queue full, disconnecting");
        self.groups.leave_all(&socket);
        socket.disconnect();
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
