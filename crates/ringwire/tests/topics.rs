//! `ringwire broadcast` as a user runs it: the request path is the topic, `--no-echo`,
//! a path too long to be a topic.

mod support;
use support::{RawClient, Ringwire};

/// The next text message on `c`.
fn text(c: &mut RawClient) -> String {
    let (op, p) = c.recv();
    assert_eq!(op, 0x1, "a text frame");
    String::from_utf8(p).unwrap()
}

fn say(c: &mut RawClient, s: &str) {
    c.send(0x1, s.as_bytes());
}

#[test]
fn the_path_is_the_topic_and_the_sender_gets_its_own_message_back() {
    for io in ["uring", "epoll"] {
        let Some(server) = Ringwire::start("broadcast", io, &["--threads", "2"]) else { continue };
        let mut room1: Vec<RawClient> = (0..4).map(|_| RawClient::connect_to(server.addr, "/chat/room1")).collect();
        let mut room2: Vec<RawClient> = (0..4).map(|_| RawClient::connect_to(server.addr, "/chat/room2")).collect();
        // The query is not part of the topic.
        room1.push(RawClient::connect_to(server.addr, "/chat/room1?user=x"));
        say(&mut room1[0], "to room 1");
        say(&mut room2[3], "to room 2");
        for c in &mut room1 {
            assert_eq!(text(c), "to room 1", "{io}");
        }
        for c in &mut room2 {
            assert_eq!(text(c), "to room 2", "{io}: no message of room 1 came first");
        }
        // Nothing of the other room comes after either: the next message is each room's own.
        say(&mut room1[2], "end 1");
        say(&mut room2[0], "end 2");
        for c in &mut room1 {
            assert_eq!(text(c), "end 1", "{io}");
        }
        for c in &mut room2 {
            assert_eq!(text(c), "end 2", "{io}");
        }
        let mut bin = RawClient::connect_to(server.addr, "/chat/room1");
        room1[1].send(0x2, &[0, 1, 2, 255]);
        assert_eq!(bin.recv(), (0x2, vec![0, 1, 2, 255]), "{io}: binary stays binary");
    }
}

#[test]
fn no_echo_leaves_the_sender_out() {
    let Some(server) = Ringwire::start("broadcast", "epoll", &["--no-echo"]) else { return };
    let mut a = RawClient::connect_to(server.addr, "/t");
    let mut b = RawClient::connect_to(server.addr, "/t");
    say(&mut a, "from a");
    assert_eq!(text(&mut b), "from a");
    say(&mut b, "from b");
    assert_eq!(text(&mut a), "from b", "a got b's message, not its own first");
}

#[test]
fn a_path_too_long_for_a_topic_is_refused_with_414() {
    let Some(server) = Ringwire::start("broadcast", "epoll", &[]) else { return };
    let path = format!("/{}", "x".repeat(ringwire::server::MAX_TOPIC_LEN));
    let head = ringwire_testkit::http(server.addr, &ringwire_testkit::upgrade_request_to(server.addr, &path, ""));
    assert!(head.starts_with("HTTP/1.1 414"), "{head}");
    assert!(head.contains("longer than 1024 bytes"), "{head}");
    RawClient::connect_to(server.addr, &path[..1024]);
}
