//! Property tests: split invariance, no panic and no backward state on any sequence
//! of operations, and flush-before-close.

use super::*;
use crate::{CloseCode, Message, State};
use proptest::prelude::*;

/// A frame a peer might send, valid or not.
fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    let op = prop_oneof![
        Just(OpCode::Text),
        Just(OpCode::Binary),
        Just(OpCode::Continuation),
        Just(OpCode::Ping),
        Just(OpCode::Pong),
        Just(OpCode::Close),
    ];
    let payload = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..40),
        4 => "[a-zé€𝄞]{0,30}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 126..400),
    ];
    (op, any::<bool>(), payload, any::<[u8; 4]>(), any::<bool>())
        .prop_map(|(op, fin, mut p, key, masked)| {
            if op == OpCode::Close && p.len() >= 2 && p.len() < 126 {
                p[..2].copy_from_slice(&1000u16.to_be_bytes());
            }
            // Mostly well-masked for a server; sometimes the other way (a protocol error).
            (frame(op, fin || op.is_control(), &p, Some(key)), frame(op, fin || op.is_control(), &p, None), masked)
        })
        .prop_map(|(m, u, masked)| if masked { m } else { u })
}

/// A data frame of a few KiB, the size `handle_read_buf` keeps without a copy: text
/// (valid UTF-8 or not) or binary, final or not, mostly masked.
fn big_frame() -> impl Strategy<Value = Vec<u8>> {
    let op = prop_oneof![Just(OpCode::Text), Just(OpCode::Binary), Just(OpCode::Continuation)];
    (op, any::<bool>(), 2048usize..6000, any::<bool>(), any::<[u8; 4]>(), 0u8..8).prop_map(
        |(op, fin, len, utf8, key, unmasked)| {
            let p: Vec<u8> = if utf8 {
                "aé€𝄞".repeat(len / 10).into_bytes()
            } else {
                (0..len).map(|i| (i * 131 % 251) as u8).collect()
            };
            frame(op, fin, &p, (unmasked != 0).then_some(key))
        },
    )
}

/// Feeds `wire` to a connection in the pieces `cuts` gives, writing out everything it
/// answers after each; its events, and the frames it sent (a client masks with random
/// keys: they are compared unmasked).
fn run(role: Role, wire: &[u8], cuts: &[usize]) -> (Vec<Event>, Vec<F>) {
    run_with(role, Config::for_role(role), Feed::Read, wire, cuts)
}

/// How [`run_with`] hands the input over.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Feed {
    /// `handle_read`.
    Read,
    /// `handle_read_buf`: buffers the connection may keep.
    Keep,
    /// `handle_read`, and whenever the connection lends its message buffer
    /// (`lend_read_buffer`), the next bytes of the piece go into it (`handle_read_into`): as
    /// many as asked for, or (as the position in the input picks) none (a loop that cannot
    /// receive into it gives it back at once), or the whole piece, past what was asked for
    /// (the connection reads what is beyond the frame as further input), or as many as
    /// asked for with the rest of the piece given to `handle_read` before the buffer is back
    /// (kept for after it).
    Lend,
}

/// [`run`] with `config`, each piece handed over as `feed` says.
fn run_with(role: Role, config: Config, feed: Feed, wire: &[u8], cuts: &[usize]) -> (Vec<Event>, Vec<F>) {
    let now = Instant::now();
    let mut s = Connection::new(role, config, ConnInfo::new(), now);
    let mut at = 0;
    let mut pieces: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    pieces.sort_unstable();
    pieces.push(wire.len());
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut lends = 0;
    for end in pieces {
        while end > at {
            match feed {
                Feed::Read => s.handle_read(&wire[at..end], now),
                Feed::Keep => s.handle_read_buf(bytes::BytesMut::from(&wire[at..end]), now),
                Feed::Lend => {
                    if let Some((mut buf, n)) = s.lend_read_buffer() {
                        lends += 1;
                        let k = match (at + lends) % 4 {
                            0 => 0,
                            1 => end - at,
                            _ => n.min(end - at),
                        };
                        assert!(buf.capacity() - buf.len() >= n, "less room than asked for");
                        buf.extend_from_slice(&wire[at..at + k]);
                        if k > 0 && k < end - at && (at + lends) % 8 == 2 {
                            // The bytes after it, given while it is out: kept for after.
                            s.handle_read(&wire[at + k..end], now);
                            assert!(s.poll_event().is_none(), "read while the buffer was lent");
                            s.handle_read_into(buf, now);
                            at = end;
                        } else {
                            s.handle_read_into(buf, now);
                            at += k;
                        }
                        if k == 0 {
                            s.handle_read(&wire[at..end], now);
                            at = end;
                        }
                    } else {
                        s.handle_read(&wire[at..end], now);
                        at = end;
                    }
                }
            }
            if feed != Feed::Lend {
                at = end;
            }
            events.extend(std::iter::from_fn(|| s.poll_event()));
            while let Some(c) = s.poll_transmit() {
                s.handle_written(c.len(), now);
                out.extend(frames(&c, role));
            }
        }
    }
    events.extend(std::iter::from_fn(|| s.poll_event()));
    (events, out)
}

/// What must not depend on how the input was split: the events, the frames other than
/// pongs, and the last pong. Which earlier pings get a pong of their own may depend on
/// it (past sixteen owed, or while the output is backed up, only the latest ping is
/// answered, RFC 6455 5.5.3), but every pong answers a ping, in order.
fn split_invariant((events, out): (Vec<Event>, Vec<F>)) -> (Vec<Event>, Vec<F>, Option<F>) {
    let pings: Vec<&[u8]> =
        events.iter().filter_map(|e| if let Event::Ping(p) = e { Some(&p[..]) } else { None }).collect();
    let (pongs, rest): (Vec<F>, Vec<F>) = out.into_iter().partition(|f| f.op == OpCode::Pong);
    let mut unanswered = pings.iter();
    for pong in &pongs {
        assert!(
            unanswered.any(|p| *p == pong.payload),
            "pong {:?} answers no ping after the last answered",
            pong.payload
        );
    }
    (events, rest, pongs.last().cloned())
}

#[derive(Debug, Clone)]
enum Op {
    Send(Side, bool, usize),
    Ping(Side, u8),
    Close(Side, u16),
    Drop(Side, bool),
    Pause(Side),
    Resume(Side),
    CancelPong(Side),
    Eof(Side),
    Garbage(Vec<u8>),
    Advance(u16),
    Drive,
    Block(Side, bool),
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Client), Just(Side::Server)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (side(), any::<bool>(), 0usize..70_000).prop_map(|(s, t, n)| Op::Send(s, t, n)),
        1 => (side(), 0u8..130).prop_map(|(s, n)| Op::Ping(s, n)),
        1 => (side(), prop_oneof![Just(1000u16), Just(1001), Just(1005), Just(4000), Just(0)]).prop_map(|(s, c)| Op::Close(s, c)),
        1 => (side(), any::<bool>()).prop_map(|(s, k)| Op::Drop(s, k)),
        1 => side().prop_map(Op::Pause),
        1 => side().prop_map(Op::Resume),
        1 => side().prop_map(Op::CancelPong),
        1 => side().prop_map(Op::Eof),
        1 => proptest::collection::vec(any::<u8>(), 0..20).prop_map(Op::Garbage),
        2 => (0u16..40_000).prop_map(Op::Advance),
        4 => Just(Op::Drive),
        1 => (side(), any::<bool>()).prop_map(|(s, b)| Op::Block(s, b)),
    ]
}

fn apply(p: &mut Pair, op: &Op) {
    match op {
        Op::Send(s, text, n) => {
            let r = if *text {
                p.conn(*s).send_text("é".repeat(n / 2), None)
            } else {
                p.conn(*s).send_binary(vec![1u8; *n], None)
            };
            let _ = r;
        }
        Op::Ping(s, n) => {
            let _ = p.conn(*s).ping(&vec![0u8; *n as usize]);
        }
        Op::Close(s, c) => {
            let _ = p.conn(*s).close(CloseCode(*c), "bye");
        }
        Op::Drop(s, skip) => p.conn(*s).drop_connection(CloseCode::GOING_AWAY, "drop", *skip),
        Op::Pause(s) => p.conn(*s).pause(),
        Op::Resume(s) => p.conn(*s).resume(),
        Op::CancelPong(s) => p.conn(*s).cancel_pong(),
        Op::Eof(s) => {
            let now = p.now;
            p.conn(*s).handle_eof(now);
        }
        Op::Garbage(b) => {
            let now = p.now;
            p.server.handle_read(b, now);
        }
        Op::Advance(ms) => p.advance(Duration::from_millis(u64::from(*ms))),
        Op::Drive => p.drive(),
        Op::Block(Side::Client, b) => p.client_write_blocked = *b,
        Op::Block(Side::Server, b) => p.server_write_blocked = *b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any split of the input gives the same events and the same output (pongs aside: see
    /// [`split_invariant`]).
    #[test]
    fn any_split_gives_the_same_events(frames in proptest::collection::vec(any_frame(), 1..12),
                                       cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let wire = frames.concat();
        for role in [Role::Server, Role::Client] {
            let whole = split_invariant(run(role, &wire, &[]));
            let split = split_invariant(run(role, &wire, &cuts));
            prop_assert_eq!(&whole, &split);
            let bytewise = split_invariant(run(role, &wire, &(0..wire.len()).collect::<Vec<_>>()));
            prop_assert_eq!(whole, bytewise);
        }
    }

    /// Input handed over as buffers the connection may keep (`handle_read_buf`, which
    /// turns a whole data frame into a slice of the buffer) gives the events and output of
    /// plain `handle_read`, for any split, at a message limit some frames exceed.
    #[test]
    fn kept_buffers_give_the_same_events(frames in proptest::collection::vec(
                                             prop_oneof![2 => any_frame(), 1 => big_frame()], 1..10),
                                         cuts in proptest::collection::vec(any::<usize>(), 0..8),
                                         small_limit in any::<bool>()) {
        let wire = frames.concat();
        for role in [Role::Server, Role::Client] {
            let mut config = Config::for_role(role);
            if small_limit {
                config.max_received_message_size = 4000;
            }
            let plain = split_invariant(run_with(role, config.clone(), Feed::Read, &wire, &[]));
            let kept_whole = split_invariant(run_with(role, config.clone(), Feed::Keep, &wire, &[]));
            prop_assert_eq!(&plain, &kept_whole);
            let kept_split = split_invariant(run_with(role, config, Feed::Keep, &wire, &cuts));
            prop_assert_eq!(plain, kept_split);
        }
    }

    /// Input received into the connection's own message buffer where it lends it
    /// (`lend_read_buffer`, `handle_read_into`: the rest of a large frame's payload, any
    /// amount at a time, none, or more than asked for) gives the events and output of plain
    /// `handle_read`, for any split, with and without assembly, at a message limit some
    /// frames exceed. (Under test the connection lends for 1 KiB of payload to come, not
    /// 64 KiB.)
    #[test]
    fn lent_message_buffers_give_the_same_events(frames in proptest::collection::vec(
                                                     prop_oneof![2 => any_frame(), 2 => big_frame()], 1..10),
                                                 cuts in proptest::collection::vec(any::<usize>(), 0..8),
                                                 small_limit in any::<bool>(),
                                                 assemble in any::<bool>()) {
        let wire = frames.concat();
        for role in [Role::Server, Role::Client] {
            let mut config = Config::for_role(role);
            config.assemble_fragments = assemble;
            if small_limit {
                config.max_received_message_size = 4000;
            }
            let plain = split_invariant(run_with(role, config.clone(), Feed::Read, &wire, &[]));
            for cuts in [&cuts[..], &[], &(0..wire.len()).step_by(700).collect::<Vec<_>>()[..]] {
                let lent = split_invariant(run_with(role, config.clone(), Feed::Lend, &wire, cuts));
                prop_assert_eq!(&plain, &lent);
            }
        }
    }

    /// Any sequence of operations never panics, the state never moves backwards, and
    /// each side reports Close exactly once when it is closed.
    #[test]
    fn any_ops_never_panic_and_state_only_moves_forward(ops in proptest::collection::vec(op(), 1..40),
                                                        splits in proptest::collection::vec(1usize..5000, 0..4)) {
        let mut p = Pair::std();
        p.splits = splits;
        let mut last = [State::Open, State::Open];
        let mut closes = [0usize, 0];
        for op in &ops {
            apply(&mut p, op);
            for (i, side) in [Side::Client, Side::Server].into_iter().enumerate() {
                let st = p.conn(side).state();
                prop_assert!(st >= last[i], "{:?} went from {:?} to {:?}", side, last[i], st);
                last[i] = st;
                closes[i] += p.events(side).iter().filter(|e| matches!(e, Event::Close { .. })).count();
                prop_assert!(closes[i] <= 1);
                prop_assert_eq!(closes[i] == 1, st == State::Closed);
                prop_assert_eq!(p.conn(side).connected(), st == State::Open);
            }
        }
        p.client_write_blocked = false;
        p.server_write_blocked = false;
        p.client.resume();
        p.server.resume();
        p.advance(Duration::from_secs(60));
        let _ = p.client.close(CloseCode::NORMAL, "");
        p.advance(Duration::from_secs(60));
        prop_assert!(p.client.is_finished() && p.server.is_finished());
    }

    /// Everything queued before close() is delivered, in order, before the close.
    #[test]
    fn queued_data_is_delivered_before_the_close_frame(sizes in proptest::collection::vec(0usize..40_000, 0..8),
                                                       splits in proptest::collection::vec(1usize..9000, 0..4),
                                                       from_client in any::<bool>()) {
        let mut p = Pair::std();
        p.splits = splits;
        let sender = if from_client { Side::Client } else { Side::Server };
        let receiver = if from_client { Side::Server } else { Side::Client };
        for (i, n) in sizes.iter().enumerate() {
            let _ = p.conn(sender).send_binary(vec![i as u8; *n], None).unwrap();
        }
        p.conn(sender).close(CloseCode::NORMAL, "done").unwrap();
        p.drive();
        let got: Vec<Event> = p.events(receiver).into_iter().filter(|e| !matches!(e, Event::Drain)).collect();
        prop_assert_eq!(got.len(), sizes.len() + 1);
        for (i, n) in sizes.iter().enumerate() {
            let ok = matches!(&got[i], Event::Message(Message::Binary(b)) if b.len() == *n && b.iter().all(|x| *x == i as u8));
            prop_assert!(ok, "message {} wrong", i);
        }
        prop_assert_eq!(&got[sizes.len()], &close_event(1000, "done"));
    }
}

/// A data message in one frame handed over with `handle_read_buf` is a slice of that
/// buffer (no copy), unmasked in place; what follows it in the buffer is read as usual.
#[test]
fn a_kept_buffer_lends_its_message_without_a_copy() {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, Config::server(), ConnInfo::new(), now);
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let mut wire = frame(OpCode::Binary, true, &payload, Some([1, 2, 3, 4]));
    wire.extend(frame(OpCode::Text, true, b"after", Some([5, 6, 7, 8])));
    let buf = bytes::BytesMut::from(&wire[..]);
    let base = buf.as_ptr() as usize;
    s.handle_read_buf(buf, now);
    let Some(Event::Message(Message::Binary(b))) = s.poll_event() else { panic!("no binary message") };
    assert!(b[..] == payload[..]);
    assert!((base..base + wire.len()).contains(&(b.as_ptr() as usize)), "the message is a copy");
    let Some(Event::Message(Message::Text(t))) = s.poll_event() else { panic!("no text message") };
    assert_eq!(&*t, "after");
    assert!(s.poll_event().is_none());
}

/// A message that fills less than half of a kept buffer is copied, not sliced: it must not
/// keep the whole buffer alive.
#[test]
fn a_small_message_does_not_keep_a_large_buffer() {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, Config::server(), ConnInfo::new(), now);
    let mut wire = frame(OpCode::Binary, true, &[7; 1000], Some([1, 2, 3, 4]));
    wire.extend(frame(OpCode::Binary, true, &[9; 5000], Some([5, 6, 7, 8])));
    let buf = bytes::BytesMut::from(&wire[..]);
    let base = buf.as_ptr() as usize;
    s.handle_read_buf(buf, now);
    let Some(Event::Message(Message::Binary(b))) = s.poll_event() else { panic!("no message") };
    assert!(b[..] == [7; 1000][..]);
    assert!(!(base..base + wire.len()).contains(&(b.as_ptr() as usize)), "a small message sliced a large buffer");
    let Some(Event::Message(Message::Binary(b))) = s.poll_event() else { panic!("no second message") };
    assert!(b[..] == [9; 5000][..]);
}
