//! [`ClientHandler`]: the callbacks of a [`ClientLoop`](crate::ClientLoop), the client-side
//! twin of `ringwire_server::Handler`.

use crate::ConnectError;
use crate::ws::{ClientId, ClientWs, Ctl};
use bytes::Bytes;
use ringwire_conn::{CloseCode, ConnError, Frame, Message, SendToken};
pub use ringwire_drive::SendOutcome;

/// Callbacks for every connection of one [`ClientLoop`](crate::ClientLoop). They run on the
/// loop's thread; per-connection state can live in a map keyed by [`ClientWs::id`].
///
/// Calls made on the [`ClientWs`] handle inside a callback only queue work; it is written at
/// the end of the loop turn. [`ClientWs::ctl`] (and the [`Ctl`] given to
/// [`on_connect_failed`](Self::on_connect_failed)) opens more connections or stops the loop.
#[allow(unused_variables)]
pub trait ClientHandler {
    /// The handshake completed; the connection is open (Node's client `'connect'` event).
    fn on_open(&mut self, ws: &mut ClientWs<'_>) {}
    /// Opening connection `id` failed (Node's `'connectFailed'`); no other call follows for it.
    fn on_connect_failed(&mut self, ctl: &mut Ctl<'_>, id: ClientId, error: ConnectError) {}
    /// A whole message arrived (when `assemble_fragments` is on, the default).
    fn on_message(&mut self, ws: &mut ClientWs<'_>, message: Message) {}
    /// A data frame arrived (only when `assemble_fragments` is off).
    fn on_frame(&mut self, ws: &mut ClientWs<'_>, frame: Frame) {}
    /// A ping arrived. Return `false` to cancel the automatic pong (Node's `cancel()`).
    fn on_ping(&mut self, ws: &mut ClientWs<'_>, payload: &Bytes) -> bool {
        true
    }
    /// A pong arrived.
    fn on_pong(&mut self, ws: &mut ClientWs<'_>, payload: &Bytes) {}
    /// The buffered amount fell to the low-water mark or below after a send reported
    /// [`Sent::BufferFull`](crate::Sent::BufferFull) (Node's `drain`; with
    /// [`low_water_mark`](ringwire_conn::Config::low_water_mark) 0, once the output is empty,
    /// as in Node).
    fn on_drain(&mut self, ws: &mut ClientWs<'_>) {}
    /// Reading was paused ([`Connection::pause`](ringwire_conn::Connection::pause)).
    fn on_pause(&mut self, ws: &mut ClientWs<'_>) {}
    /// Reading was resumed ([`Connection::resume`](ringwire_conn::Connection::resume)).
    fn on_resume(&mut self, ws: &mut ClientWs<'_>) {}
    /// A send made with a token ended: [`SendOutcome::Written`] once every byte is with
    /// the kernel, [`SendOutcome::Failed`] if the connection closed first (the Node send
    /// callback, without or with an error).
    fn on_send_complete(&mut self, ws: &mut ClientWs<'_>, token: SendToken, outcome: SendOutcome) {}
    /// The connection failed for a reason [`ConnError`] names (Node's `error` event): a
    /// protocol error by the server, a send past `max_buffered`, a keepalive or close
    /// timeout, or a socket error (`ConnError::Socket`: `ECONNRESET`, `EPIPE`, ...). A
    /// close follows ([`on_close`](Self::on_close); 1006 after a socket error).
    fn on_error(&mut self, ws: &mut ClientWs<'_>, error: &ConnError) {}
    /// The connection closed: always the last call for an opened connection. `code` is
    /// 1005 when the server's close frame had no code and 1006 when no close frame came.
    fn on_close(&mut self, ws: &mut ClientWs<'_>, code: CloseCode, description: &str) {}
}
