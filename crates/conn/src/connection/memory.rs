//! What an idle connection holds: its size, and no buffers after traffic.

use super::*;
use crate::Message;
use crate::tests::cframe as masked;

fn holds_nothing(c: &Connection) -> bool {
    c.events.capacity() == 0
        && c.pending.is_none()
        && c.pings.is_none()
        && c.codecs.is_none()
        && c.out.is_empty()
        && c.recv.is_idle()
        && c.close_description.is_none()
}

#[test]
fn idle_connection_is_small() {
    // Every server connection is one of these; see docs/scaling.md before raising it.
    assert!(std::mem::size_of::<Connection>() <= 192, "Connection is {} bytes", std::mem::size_of::<Connection>());
}

#[test]
fn an_idle_connection_holds_no_buffers_after_traffic() {
    let now = Instant::now();
    let mut c = Connection::new(Role::Server, Config::server(), ConnInfo::new(), now);
    assert!(holds_nothing(&c));
    // A message split across reads, a fragmented one, and a ping in the middle.
    let whole = masked(OpCode::Text, true, b"hello");
    c.handle_read(&whole[..3], now);
    c.handle_read(&whole[3..], now);
    let mut input = masked(OpCode::Binary, false, b"ab");
    input.extend(masked(OpCode::Ping, true, b"p"));
    input.extend(masked(OpCode::Continuation, true, b"cd"));
    c.handle_read(&input, now);
    let mut got = Vec::new();
    while let Some(e) = c.poll_event() {
        got.push(e);
    }
    assert_eq!(
        got,
        [
            Event::Message(Message::Text("hello".into())),
            Event::Ping(Bytes::from_static(b"p")),
            Event::Message(Message::Binary(Bytes::from_static(b"abcd"))),
        ]
    );
    let _ = c.send_text("reply", None).unwrap();
    let mut n = 0;
    while let Some(chunk) = c.poll_transmit() {
        n += chunk.len();
    }
    assert_eq!(n, 3 + 7, "pong and reply");
    c.handle_written(n, now);
    assert!(c.poll_event().is_none());
    assert!(holds_nothing(&c), "{c:?}");
    // And the state it keeps still works: another ping is answered.
    c.handle_read(&masked(OpCode::Ping, true, b"q"), now);
    assert_eq!(c.poll_event(), Some(Event::Ping(Bytes::from_static(b"q"))));
    assert_eq!(&c.poll_transmit().unwrap()[..], b"\x8a\x01q");
}
