//! The connection's sending side, bounded in bytes by its budget, and why a connection
//! ends.

use super::frames::{CloseCode, CloseReason, Outgoing, Writer};
use super::protocol::ServerMessage;

/// Close codes of this protocol (RFC 6455 leaves 4000–4999 to applications).
pub(super) const UNAUTHORIZED: u16 = 4001;
pub(super) const SLOW_CONSUMER: u16 = 4008;

pub(super) struct Outbox {
    writer: Writer,
    budget: usize,
}

impl Outbox {
    pub fn new(writer: Writer, budget: usize) -> Outbox {
        Outbox { writer, budget }
    }

    /// Whether subscriptions may queue more records.
    pub fn has_room(&self) -> bool {
        self.writer.queued() < self.budget
    }

    /// Replies and errors are queued regardless of the budget, up to twice it: a client
    /// that sends requests but reads no answers is a slow consumer too.
    pub fn queue(&self, outgoing: Outgoing) -> Result<(), Closing> {
        if self.writer.queued() > self.budget * 2 {
            return Err(Closing::SlowConsumer);
        }
        self.control(outgoing)
    }

    /// Control frames (ping, pong, close) go out whatever the queue holds.
    pub fn control(&self, outgoing: Outgoing) -> Result<(), Closing> {
        self.writer.send(outgoing).map_err(|_| Closing::Gone)
    }

    pub fn send(&self, message: &ServerMessage) -> Result<(), Closing> {
        // Our own types always serialize.
        self.queue(Outgoing::Text(
            serde_json::to_string(message).unwrap_or_default(),
        ))
    }
}

/// Why the connection ends.
pub(super) enum Closing {
    /// The client closed it, or the socket is gone.
    Gone,
    SlowConsumer,
    With(CloseReason),
}

impl Closing {
    /// Ends the connection with an application close code.
    pub fn with(code: u16, description: &str) -> Closing {
        Closing::With(CloseReason {
            code: CloseCode::Other(code),
            description: Some(description.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_closes_carry_their_code_and_reason() {
        let Closing::With(reason) = Closing::with(UNAUTHORIZED, "token expired") else {
            panic!("a close with a reason");
        };
        assert_eq!(u16::from(reason.code), 4001);
        assert_eq!(reason.description.as_deref(), Some("token expired"));
    }
}
