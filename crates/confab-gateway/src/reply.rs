//! The one place where results become wire replies: `{ok:true,...}` acks,
//! `{ok:false,error:{code,message}}` acks, or an `error` push when the client asked
//! for no ack. Also counts every outcome in the metrics.

use crate::metrics as m;
use confab_core::protocol::{push, AckErr, AckOk};
use confab_core::{ChatError, ErrorCode};
use confab_sio::Socket;
use serde::Serialize;

/// Send the outcome of `event` to the client.
pub fn send<T: Serialize>(
    socket: &Socket,
    ack: Option<u64>,
    event: &str,
    result: Result<T, ChatError>,
) {
    let sent = match result {
        Ok(body) => {
            m::event_ok(event);
            match ack {
                Some(id) => socket.ack(id, &AckOk::new(body)),
                None => Ok(()),
            }
        }
        Err(err) => {
            if err.code == ErrorCode::Internal {
                tracing::error!(event, error = %err.message, "internal error");
            }
            m::event_err(event, err.code);
            match ack {
                Some(id) => socket.ack(id, &AckErr::new(err, None)),
                None => socket.emit(push::ERROR, &AckErr::new(err, Some(event))),
            }
        }
    };
    if let Err(e) = sent {
        m::send_failed("reply");
        tracing::debug!(sid = %socket.id(), event, "reply not sent: {e}");
    }
}
