//! Topics: subscribe, unsubscribe, publish from a connection and from any thread, across
//! workers; the bus hooks; limits; a slow subscriber dropped at the buffered limit.

mod common;
use common::*;
use ringwire_conn::{Message, PreparedMessage};
use ringwire_frame::OpCode;
use ringwire_server::{Handler, MAX_TOPIC_LEN, ServerConfig, ServerHandle, TopicBus, TopicError, Ws};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Commands, one per text message: `sub T`, `unsub T`, `is T`, `topics`, `who`,
/// `pub T M` (ws.publish: every subscriber but the sender), `all T M` (the server
/// handle's publish: everyone, the sender included), `big T N` (N messages of 64 KiB
/// through ws.publish). Answers start with `=`.
#[derive(Clone)]
struct Topics;

impl Handler for Topics {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        let Message::Text(t) = message else { return };
        let mut words = t.splitn(3, ' ');
        let (cmd, topic, rest) = (words.next().unwrap(), words.next().unwrap_or(""), words.next().unwrap_or(""));
        let answer = match cmd {
            "sub" => match ws.subscribe(topic) {
                Ok(new) => format!("=sub {new}"),
                Err(TopicError::TooMany { limit }) => format!("=too many {limit}"),
                Err(e) => format!("=err {e}"),
            },
            "unsub" => format!("=unsub {}", ws.unsubscribe(topic)),
            "is" => format!("=is {}", ws.is_subscribed(topic)),
            "topics" => format!("={}", ws.topics().map(|t| &**t).collect::<Vec<_>>().join(",")),
            "who" => format!("=worker {}", ws.worker()),
            "pub" => format!("=pub {:?}", ws.publish(topic, rest.to_owned())),
            "all" => format!("=all {:?}", ws.server().publish(topic, rest.to_owned())),
            "big" => {
                for _ in 0..rest.parse::<usize>().unwrap() {
                    ws.publish(topic, vec![1u8; 64 << 10]).unwrap();
                }
                "=big".to_owned()
            }
            _ => return,
        };
        ws.send_text(answer);
    }
}

/// Sends a command and returns its answer (the next `=` text frame; anything else
/// that arrives first is a failure).
fn ask(raw: &mut Raw, cmd: &str) -> String {
    raw.frame(true, 0, OpCode::Text, cmd.as_bytes(), true);
    let (op, p) = raw.recv();
    assert_eq!(op, 0x1);
    let s = String::from_utf8(p).unwrap();
    assert!(s.starts_with('='), "{cmd:?}: got {s:?} before the answer");
    s[1..].to_owned()
}

/// The next text frame.
fn text(raw: &mut Raw) -> String {
    let (op, p) = raw.recv();
    assert_eq!(op, 0x1);
    String::from_utf8(p).unwrap()
}

/// Connects clients until both workers have at least `per_worker` of them.
fn clients_on_both_workers(server: &ringwire_server::RunningServer, per_worker: usize) -> Vec<(usize, Raw)> {
    let mut clients = Vec::new();
    let mut counts = [0usize; 2];
    for _ in 0..400 {
        let mut raw = Raw::connect(server.local_addr());
        let w: usize = ask(&mut raw, "who").trim_start_matches("worker ").parse().unwrap();
        counts[w] += 1;
        clients.push((w, raw));
        if counts.iter().all(|&n| n >= per_worker) {
            return clients;
        }
    }
    panic!("connections did not land on both workers: {counts:?}");
}

/// Records what the server tells its bus, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl TopicBus for Recorder {
    fn subscribe(&self, topic: &str) {
        self.0.lock().unwrap().push(format!("+{topic}"));
    }
    fn unsubscribe(&self, topic: &str) {
        self.0.lock().unwrap().push(format!("-{topic}"));
    }
    fn publish(&self, topic: &str, message: &PreparedMessage) {
        self.0.lock().unwrap().push(format!("{topic}<{}", String::from_utf8_lossy(message.payload())));
    }
}

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

fn config2(io: ringwire_server::IoChoice) -> ServerConfig {
    config(io).with_threads(2)
}

#[test]
fn a_publish_reaches_every_subscriber_of_its_topic_once_on_both_workers_and_no_other() {
    for io in backends() {
        let server = start(config2(io), Topics);
        let mut clients = clients_on_both_workers(&server, 3);
        // Two of each worker's clients on "a", one on "b".
        let mut seen = [0usize; 2];
        let mut roles = Vec::new();
        for (w, raw) in &mut clients {
            let role = if seen[*w] < 2 { "a" } else { "b" };
            seen[*w] += 1;
            assert_eq!(ask(raw, &format!("sub {role}")), "sub true");
            assert_eq!(ask(raw, &format!("sub {role}")), "sub false", "subscribing twice is once");
            roles.push(role);
        }
        // The publisher is an "a" subscriber: ws.publish skips it.
        let publisher = roles.iter().position(|r| *r == "a").unwrap();
        assert_eq!(ask(&mut clients[publisher].1, "pub a hello"), "pub Ok(())", "{io:?}");
        // Then a publish from the handle marks the end for everyone on both topics: what
        // comes before it is what each got of "hello" (exactly once, or not at all).
        let handle = server.handle();
        handle.publish("a", "end").unwrap();
        handle.publish("b", "end").unwrap();
        for (i, (w, raw)) in clients.iter_mut().enumerate() {
            let want: &[&str] = if roles[i] == "a" && i != publisher { &["hello", "end"] } else { &["end"] };
            for want in want {
                assert_eq!(text(raw), *want, "{io:?}: client {i} on worker {w}, topic {}", roles[i]);
            }
        }
        drop(clients);
        server.shutdown().unwrap();
    }
}

#[test]
fn the_handle_publishes_to_everyone_and_unsubscribe_and_close_drop_topics() {
    for io in backends() {
        let server = start(config(io), Topics);
        let handle = server.handle();
        let mut a = Raw::connect(server.local_addr());
        let mut b = Raw::connect(server.local_addr());
        assert_eq!(ask(&mut a, "sub x"), "sub true");
        assert_eq!(ask(&mut a, "sub y"), "sub true");
        assert_eq!(ask(&mut b, "sub x"), "sub true");
        assert_eq!(ask(&mut a, "topics"), "x,y");
        assert_eq!(ask(&mut a, "is y"), "is true");
        assert_eq!(ask(&mut b, "is y"), "is false");
        // Through the handle: the sender too.
        assert_eq!(ask(&mut a, "all x one"), "all Ok(())");
        assert_eq!(text(&mut a), "one");
        assert_eq!(text(&mut b), "one");
        assert_eq!(ask(&mut a, "unsub x"), "unsub true");
        assert_eq!(ask(&mut a, "unsub x"), "unsub false");
        assert_eq!(ask(&mut a, "topics"), "y");
        handle.publish("x", "two").unwrap();
        handle.publish("y", "three").unwrap();
        assert_eq!(text(&mut a), "three", "{io:?}: unsubscribed from x, still on y");
        assert_eq!(text(&mut b), "two");
        // A closed connection's topics go with it; a new connection in its slot has none.
        drop(b);
        wait_for_connections(&handle.clone(), 1);
        let mut c = Raw::connect(server.local_addr());
        assert_eq!(ask(&mut c, "topics"), "", "{io:?}");
        handle.publish("x", "four").unwrap();
        handle.publish("y", "five").unwrap();
        assert_eq!(text(&mut a), "five");
        assert_eq!(ask(&mut c, "is x"), "is false");
        drop((a, c));
        server.shutdown().unwrap();
    }
}

#[test]
fn topics_per_connection_and_name_length_are_bounded() {
    for io in backends() {
        let mut cfg = config(io);
        cfg.max_topics_per_connection = 3;
        let server = start(cfg, Topics);
        let mut a = Raw::connect(server.local_addr());
        for t in ["1", "2", "3"] {
            assert_eq!(ask(&mut a, &format!("sub {t}")), "sub true");
        }
        assert_eq!(ask(&mut a, "sub 4"), "too many 3", "{io:?}");
        assert_eq!(ask(&mut a, "sub 3"), "sub false", "already subscribed is no new topic");
        assert_eq!(ask(&mut a, "unsub 1"), "unsub true");
        assert_eq!(ask(&mut a, "sub 4"), "sub true", "room again after an unsubscribe");
        let long = "t".repeat(MAX_TOPIC_LEN + 1);
        let mut b = Raw::connect(server.local_addr());
        assert_eq!(
            ask(&mut b, &format!("sub {long}")),
            format!("err topic name of {} bytes is longer than {MAX_TOPIC_LEN}", MAX_TOPIC_LEN + 1)
        );
        assert_eq!(ask(&mut b, &format!("sub {}", &long[1..])), "sub true", "{MAX_TOPIC_LEN} bytes is fine");
        drop((a, b));
        server.shutdown().unwrap();
    }
}

#[test]
fn the_bus_hears_of_each_topic_once_per_process_and_of_every_publish_here() {
    for io in backends() {
        let recorder = Arc::new(Recorder::default());
        let server = ringwire_server::Server::bind(config2(io)).unwrap().with_bus(recorder.clone());
        let handle: ServerHandle = server.handle();
        let server = server.spawn(Topics);
        let mut clients = clients_on_both_workers(&server, 2);
        for (_, raw) in &mut clients {
            assert_eq!(ask(raw, "sub room"), "sub true");
        }
        assert_eq!(ask(&mut clients[0].1, "sub other"), "sub true");
        assert_eq!(
            recorder.take(),
            ["+room", "+other"],
            "{io:?}: one subscribe per topic, not per connection or worker"
        );
        assert_eq!(ask(&mut clients[0].1, "pub room hi"), "pub Ok(())");
        handle.publish("room", "from the handle").unwrap();
        // What came from the bus goes to the subscribers here, and not back to the bus.
        handle.publish_local("room", "from the bus").unwrap();
        for (i, (_, raw)) in clients.iter_mut().enumerate() {
            if i != 0 {
                assert_eq!(text(raw), "hi");
            }
            assert_eq!(text(raw), "from the handle");
            assert_eq!(text(raw), "from the bus");
        }
        assert_eq!(recorder.take(), ["room<hi", "room<from the handle"], "{io:?}");
        assert_eq!(ask(&mut clients[0].1, "unsub other"), "unsub true");
        assert_eq!(recorder.take(), ["-other"]);
        // The subscribers close one by one: the bus hears of it once, after the last.
        let n = clients.len();
        for (i, (_, raw)) in clients.drain(..).enumerate() {
            drop(raw);
            wait_for_connections(&handle, n - i - 1);
            let want: &[&str] = if i == n - 1 { &["-room"] } else { &[] };
            assert_eq!(recorder.take(), want, "{io:?}: after {} of {n} closed", i + 1);
        }
        server.shutdown().unwrap();
    }
}

#[test]
fn a_subscriber_that_does_not_read_is_dropped_at_the_buffered_limit_and_the_others_get_everything() {
    for io in backends() {
        let mut cfg = config(io);
        cfg.connection.max_buffered = Some(2 << 20);
        let server = start(cfg, Topics);
        let mut slow = Raw::connect_with_rcvbuf(server.local_addr(), 4096);
        let mut reader = Raw::connect(server.local_addr());
        let mut publisher = Raw::connect(server.local_addr());
        assert_eq!(ask(&mut slow, "sub feed"), "sub true");
        assert_eq!(ask(&mut reader, "sub feed"), "sub true");
        // 16 MiB published 1 MiB at a time, each burst once the reader has read the one
        // before (so the reader never holds more than 1 MiB): the slow one falls behind
        // past its 2 MiB limit. The publisher is answered at once every time.
        let (read_tx, read_rx) = std::sync::mpsc::channel();
        let read_all = std::thread::spawn(move || {
            // Counted in bytes: the server may send a message in fragments.
            let mut got = 0;
            while got < 16 << 20 {
                let (_, op, p) = reader.read_frame();
                assert!(op == 0x2 || op == 0x0, "opcode {op} after {got} bytes");
                got += p.len();
                if got % (1 << 20) == 0 {
                    read_tx.send(()).unwrap();
                }
            }
            assert_eq!(got, 16 << 20);
        });
        for _ in 0..16 {
            assert_eq!(ask(&mut publisher, "big feed 16"), "big", "{io:?}: a publish never blocks");
            read_rx.recv_timeout(Duration::from_secs(10)).expect("the reader got the burst");
        }
        read_all.join().unwrap();
        assert_eq!(slow.read_close().0, 1008, "{io:?}");
        drop((slow, publisher));
        server.shutdown().unwrap();
    }
}
