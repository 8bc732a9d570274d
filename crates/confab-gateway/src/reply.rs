//! The one place where results become wire replies: `{ok:true,...}` acks,
//! `{ok:false,error:{code,message}}` acks, or an `error` push when the client asked
//! for no ack. Also counts every outcome in the metrics.

use crate::metrics as m;
use confab_core::protocol::{push, AckErr, AckOk};
use confab_core::{ChatError, ErrorCode};
use serde::Serialize;
use socketioxide::extract::{AckSender, SocketRef};

/// Send the outcome of `event` to the client.
pub fn send<T: Serialize>(
    socket: &SocketRef,
    ack: AckSender,
    wants_ack: bool,
    event: &str,
    result: Result<T, ChatError>,
) {
    let sent = match result {
        Ok(body) => {
            m::event_ok(event);
            ack.send(&AckOk::new(body))
        }
        Err(err) => {
            if err.code == ErrorCode::Internal {
                tracing::error!(event, error = %err.message, "internal error");
            }
            m::event_err(event, err.code);
            if wants_ack {
                ack.send(&AckErr::new(err, None))
            } else {
                socket.emit(push::ERROR, &AckErr::new(err, Some(event)))
            }
        }
    };
    if let Err(e) = sent {
        m::send_failed("reply");
        tracing::debug!(sid = %socket.id, event, "reply not sent: {e}");
    }
}
