//! The bus against real brokers (`redis-server`, `nats-server` started by the tests on free
//! ports; skipped with a line when missing, unless `RINGWIRE_REQUIRE_BROKERS=1`). Two `Bus`
//! instances stand for two processes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringwire_bus::{Bus, BusConfig, BusError, Kind};
use ringwire_testkit::brokers::{Broker, Nats, Redis};

/// What a test needs of a broker beyond testkit's [`Broker`].
trait TestBroker: Broker {
    fn start() -> Option<Self>
    where
        Self: Sized;
    /// Publishes `data` as is (no envelope) on the channel of `topic`, over raw TCP.
    fn publish_raw(&self, topic: &str, data: &[u8]);
    /// Whether the bus echoes our own messages back (Redis has no no_echo).
    const ECHOES: bool;
}

impl TestBroker for Redis {
    fn start() -> Option<Self> {
        Redis::start()
    }
    fn publish_raw(&self, topic: &str, data: &[u8]) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port())).unwrap();
        let channel = format!("ringwire:{topic}");
        let mut cmd =
            format!("*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n", channel.len(), data.len()).into_bytes();
        cmd.extend_from_slice(data);
        cmd.extend_from_slice(b"\r\n");
        s.write_all(&cmd).unwrap();
        let mut reply = [0u8; 64];
        let n = s.read(&mut reply).unwrap();
        assert!(reply[..n].starts_with(b":"), "PUBLISH answered {:?}", String::from_utf8_lossy(&reply[..n]));
    }
    const ECHOES: bool = true;
}

impl TestBroker for Nats {
    fn start() -> Option<Self> {
        Nats::start()
    }
    fn publish_raw(&self, topic: &str, data: &[u8]) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port())).unwrap();
        let mut cmd = format!("CONNECT {{\"verbose\":false}}\r\nPUB ringwire.{topic} {}\r\n", data.len()).into_bytes();
        cmd.extend_from_slice(data);
        cmd.extend_from_slice(b"\r\nPING\r\n");
        s.write_all(&cmd).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"PONG") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "nats closed: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    }
    const ECHOES: bool = false;
}

type Inbox = Arc<Mutex<Vec<(String, Kind, Bytes)>>>;

/// A bus on `url` whose deliveries go to the returned inbox.
fn bus(url: &str, tune: impl FnOnce(&mut BusConfig)) -> (Bus, Inbox) {
    let inbox: Inbox = Arc::default();
    let sink = inbox.clone();
    let mut config = BusConfig::parse(url).unwrap();
    tune(&mut config);
    let bus = Bus::connect(config, move |topic: &str, kind, payload| {
        sink.lock().unwrap().push((topic.to_owned(), kind, payload))
    })
    .unwrap();
    (bus, inbox)
}

/// Polls `cond` every 5 ms for up to `limit`.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn subscribed(bus: &Bus, n: usize) {
    assert!(wait_until(Duration::from_secs(5), || bus.stats().subscriptions == n), "{:?}", bus.stats());
}

/// Message `i`: text "message i", or binary: i's 4 bytes then every byte value.
fn message(i: u32) -> (Kind, Bytes) {
    if i.is_multiple_of(2) {
        (Kind::Text, Bytes::from(format!("message {i}")))
    } else {
        let mut b = i.to_be_bytes().to_vec();
        b.extend(0..=255u8);
        (Kind::Binary, Bytes::from(b))
    }
}

fn index_of(kind: Kind, payload: &[u8]) -> u32 {
    match kind {
        Kind::Text => std::str::from_utf8(payload).unwrap().strip_prefix("message ").unwrap().parse().unwrap(),
        Kind::Binary => u32::from_be_bytes(payload[..4].try_into().unwrap()),
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod redis {
            $(#[test] fn $name() { if let Some(b) = <super::Redis as super::TestBroker>::start() { super::$name(b) } })*
        }
        mod nats {
            $(#[test] fn $name() { if let Some(b) = <super::Nats as super::TestBroker>::start() { super::$name(b) } })*
        }
    };
}

both!(
    exactly_once_to_the_other_never_back,
    other_topics_not_delivered,
    unsubscribe_stops_delivery,
    broker_restart_mid_run,
    broker_down_at_start,
    queue_full_drops_and_counts,
    queue_bytes_bound_what_waits,
    a_thousand_topics,
    malformed_skipped_and_counted,
    a_panic_in_deliver_is_contained,
    dropped_from_its_own_deliver,
);

fn exactly_once_to_the_other_never_back<B: TestBroker>(broker: B) {
    const N: u32 = 10_000;
    let (a, a_inbox) = bus(&broker.url(), |_| {});
    let (b, b_inbox) = bus(&broker.url(), |_| {});
    a.subscribe("/t");
    b.subscribe("/t");
    subscribed(&a, 1);
    subscribed(&b, 1);
    for i in 0..N {
        let (kind, payload) = message(i);
        assert!(a.publish("/t", kind, payload));
    }
    assert!(wait_until(Duration::from_secs(10), || b.stats().received >= u64::from(N)), "{:?}", b.stats());
    // anything more (a duplicate) would have arrived by now
    std::thread::sleep(Duration::from_millis(200));
    let got = b_inbox.lock().unwrap();
    assert_eq!(got.len(), N as usize);
    let mut seen = vec![false; N as usize];
    for (topic, kind, payload) in got.iter() {
        assert_eq!(topic, "/t");
        let i = index_of(*kind, payload);
        assert_eq!((*kind, payload.clone()), message(i), "message {i}");
        assert!(!std::mem::replace(&mut seen[i as usize], true), "message {i} twice");
    }
    assert!(a_inbox.lock().unwrap().is_empty(), "own messages came back");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.published, sa.publish_dropped, sa.received), (u64::from(N), 0, 0));
    assert_eq!(sa.own_skipped, if B::ECHOES { u64::from(N) } else { 0 }, "{sa:?}");
    assert_eq!((sb.received, sb.own_skipped, sb.malformed, sb.reconnects), (u64::from(N), 0, 0, 0));
    assert!(sa.connected && sb.connected);
    assert_eq!(sa.url, broker.url());
}

fn other_topics_not_delivered<B: TestBroker>(broker: B) {
    let (a, _) = bus(&broker.url(), |_| {});
    let (b, b_inbox) = bus(&broker.url(), |_| {});
    b.subscribe("/a");
    subscribed(&b, 1);
    for _ in 0..100 {
        a.publish("/b", Kind::Text, Bytes::from_static(b"not for b"));
        a.publish("/a/", Kind::Text, Bytes::from_static(b"not for b"));
    }
    a.publish("/a", Kind::Text, Bytes::from_static(b"for b"));
    assert!(wait_until(Duration::from_secs(5), || b.stats().received == 1));
    std::thread::sleep(Duration::from_millis(100));
    let got = b_inbox.lock().unwrap();
    assert_eq!(*got, [("/a".to_owned(), Kind::Text, Bytes::from_static(b"for b"))]);
}

fn unsubscribe_stops_delivery<B: TestBroker>(broker: B) {
    let (a, _) = bus(&broker.url(), |_| {});
    let (b, b_inbox) = bus(&broker.url(), |_| {});
    b.subscribe("/t");
    b.subscribe("/t"); // idempotent: still one subscription
    subscribed(&b, 1);
    a.publish("/t", Kind::Binary, Bytes::from_static(b"1"));
    assert!(wait_until(Duration::from_secs(5), || b.stats().received == 1));
    b.unsubscribe("/t");
    b.unsubscribe("/t");
    subscribed(&b, 0);
    for _ in 0..100 {
        a.publish("/t", Kind::Binary, Bytes::from_static(b"2"));
    }
    assert!(wait_until(Duration::from_secs(5), || a.stats().published == 101));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(b_inbox.lock().unwrap().len(), 1);
    assert_eq!(b.stats().received, 1);
    // and again
    b.subscribe("/t");
    subscribed(&b, 1);
    a.publish("/t", Kind::Binary, Bytes::from_static(b"3"));
    assert!(wait_until(Duration::from_secs(5), || b.stats().received >= 2), "a {:?}, b {:?}", a.stats(), b.stats());
    std::thread::sleep(Duration::from_millis(100));
    let got: Vec<Bytes> = b_inbox.lock().unwrap().iter().map(|m| m.2.clone()).collect();
    assert_eq!(got, [Bytes::from_static(b"1"), Bytes::from_static(b"3")]);
}

fn broker_restart_mid_run<B: TestBroker>(mut broker: B) {
    let (a, _) = bus(&broker.url(), |c| c.backoff_max = Duration::from_millis(400));
    let (b, b_inbox) = bus(&broker.url(), |c| c.backoff_max = Duration::from_millis(400));
    b.subscribe("/t");
    subscribed(&b, 1);
    let sent = std::cell::Cell::new(0u32);
    let publish = |a: &Bus| {
        let ok = a.publish("/t", Kind::Text, Bytes::from(format!("message {}", sent.get())));
        sent.set(sent.get() + 1);
        ok
    };
    publish(&a);
    assert!(wait_until(Duration::from_secs(5), || b.stats().received == 1));
    broker.restart();
    // publish every 2 ms until a message published after the restart arrives
    let restarted_at = sent.get();
    let resumed = wait_until(Duration::from_secs(10), || {
        publish(&a);
        std::thread::sleep(Duration::from_millis(2));
        b_inbox.lock().unwrap().iter().any(|(_, k, p)| index_of(*k, p) > restarted_at + 10)
    });
    assert!(resumed, "no delivery after the restart: a {:?}, b {:?}", a.stats(), b.stats());
    let (sa, sb) = (a.stats(), b.stats());
    assert!(sa.reconnects >= 1 && sb.reconnects >= 1, "a {sa:?}, b {sb:?}");
    assert!(sa.connected && sb.connected && sb.subscriptions == 1);
    // every publish ends up published or dropped; nothing delivered twice or never sent
    let total = u64::from(sent.get());
    assert!(wait_until(Duration::from_secs(5), || {
        let s = a.stats();
        s.published + s.publish_dropped == total
    }));
    std::thread::sleep(Duration::from_millis(100));
    let got = b_inbox.lock().unwrap();
    let mut seen = HashMap::new();
    for (_, k, p) in got.iter() {
        *seen.entry(index_of(*k, p)).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "a message delivered twice");
    assert!(got.len() as u64 <= a.stats().published);
    assert_eq!(b.stats().received, got.len() as u64);
}

fn broker_down_at_start<B: TestBroker>(mut broker: B) {
    let url = broker.url();
    broker.stop();
    let started = Instant::now();
    let err = Bus::connect(BusConfig::parse(&url).unwrap(), |_: &str, _, _| {}).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    assert!(matches!(err, BusError::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with(&format!("bus {url}: cannot connect: ")), "{text}");
    // wait_at_start: connects once the broker is there
    let waiting = {
        let url = url.clone();
        std::thread::spawn(move || {
            let mut config = BusConfig::parse(&url).unwrap();
            config.wait_at_start = true;
            Bus::connect(config, |_: &str, _, _| {})
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(!waiting.is_finished(), "connect returned while the broker was down");
    broker.start_again();
    assert!(wait_until(Duration::from_secs(5), || waiting.is_finished()));
    let bus = waiting.join().unwrap().unwrap();
    assert!(bus.stats().connected);
    assert_eq!(bus.stats().reconnects, 0);
}

fn queue_full_drops_and_counts<B: TestBroker>(mut broker: B) {
    let (a, _) = bus(&broker.url(), |c| c.queue_capacity = 10);
    broker.stop();
    assert!(wait_until(Duration::from_secs(5), || !a.stats().connected));
    let refused = (0..10_000).filter(|_| !a.publish("/t", Kind::Binary, Bytes::from_static(b"x"))).count() as u64;
    assert!(refused > 0, "{:?}", a.stats());
    assert_eq!(a.stats().publish_dropped, refused);
}

/// The queue is bounded in bytes too: a few large messages fill it long before its count.
/// Paced over more than the connect timeout (which bounds the bus thread's one wait on the
/// broker after connecting), so that the bus thread takes what it can: what it has taken
/// but not yet written (a client that buffers while it reconnects) still counts.
fn queue_bytes_bound_what_waits<B: TestBroker>(mut broker: B) {
    let (a, _) = bus(&broker.url(), |c| {
        c.queue_bytes = 1 << 20;
        c.connect_timeout = Duration::from_millis(200);
    });
    broker.stop();
    assert!(wait_until(Duration::from_secs(5), || !a.stats().connected));
    let big = Bytes::from(vec![7u8; 256 << 10]);
    let taken = (0..64)
        .filter(|_| {
            std::thread::sleep(Duration::from_millis(10));
            a.publish("/t", Kind::Binary, big.clone())
        })
        .count();
    assert!(taken <= 4, "{taken} messages of 256 KiB queued under a 1 MiB budget");
    assert_eq!(a.stats().publish_dropped, 64 - taken as u64);
}

fn a_thousand_topics<B: TestBroker>(broker: B) {
    let topics: Vec<String> = (0..1000).map(|i| format!("/room.{i} *>%é/{}", i % 7)).collect();
    let (a, _) = bus(&broker.url(), |_| {});
    let (b, b_inbox) = bus(&broker.url(), |_| {});
    for t in &topics {
        b.subscribe(t);
    }
    subscribed(&b, 1000);
    for t in &topics {
        assert!(a.publish(t, Kind::Text, Bytes::from(t.clone())));
    }
    assert!(wait_until(Duration::from_secs(5), || b.stats().received == 1000), "{:?}", b.stats());
    let got = b_inbox.lock().unwrap();
    let mut each: HashMap<&str, usize> = HashMap::new();
    for (topic, _, payload) in got.iter() {
        assert_eq!(topic.as_bytes(), &payload[..]);
        *each.entry(topic).or_default() += 1;
    }
    assert_eq!(each.len(), 1000);
    assert!(each.values().all(|&n| n == 1));
}

fn malformed_skipped_and_counted<B: TestBroker>(broker: B) {
    let (b, b_inbox) = bus(&broker.url(), |_| {});
    b.subscribe("t");
    subscribed(&b, 1);
    broker.publish_raw("t", b"short");
    let mut bad_kind = vec![7u8; 16];
    bad_kind.extend_from_slice(&[9, b'x']);
    broker.publish_raw("t", &bad_kind);
    let mut bad_text = vec![7u8; 16];
    bad_text.extend_from_slice(&[0, 0xff]);
    broker.publish_raw("t", &bad_text);
    let mut good = vec![7u8; 16];
    good.extend_from_slice(&[0, b'o', b'k']);
    broker.publish_raw("t", &good);
    assert!(wait_until(Duration::from_secs(5), || b.stats().received == 1));
    assert_eq!(b.stats().malformed, 3);
    assert_eq!(*b_inbox.lock().unwrap(), [("t".to_owned(), Kind::Text, Bytes::from_static(b"ok"))]);
}

fn a_panic_in_deliver_is_contained<B: TestBroker>(broker: B) {
    let (a, _) = bus(&broker.url(), |_| {});
    let inbox: Inbox = Arc::default();
    let sink = inbox.clone();
    let b = Bus::connect(BusConfig::parse(&broker.url()).unwrap(), move |topic: &str, kind, payload: Bytes| {
        assert_ne!(&payload[..], b"boom", "a deliver callback that panics");
        sink.lock().unwrap().push((topic.to_owned(), kind, payload));
    })
    .unwrap();
    b.subscribe("/t");
    subscribed(&b, 1);
    a.publish("/t", Kind::Text, Bytes::from_static(b"boom"));
    a.publish("/t", Kind::Text, Bytes::from_static(b"after"));
    assert!(wait_until(Duration::from_secs(5), || b.stats().received == 2), "{:?}", b.stats());
    assert_eq!(*inbox.lock().unwrap(), [("/t".to_owned(), Kind::Text, Bytes::from_static(b"after"))]);
}

#[test]
fn nats_payload_over_max_is_dropped_not_fatal() {
    let Some(broker) = Nats::start() else { return };
    let (a, _) = bus(&broker.url(), |_| {});
    let (b, _) = bus(&broker.url(), |_| {});
    b.subscribe("/t");
    subscribed(&b, 1);
    assert!(a.publish("/t", Kind::Binary, Bytes::from(vec![0u8; 2 << 20])));
    assert!(a.publish("/t", Kind::Binary, Bytes::from_static(b"small")));
    assert!(wait_until(Duration::from_secs(5), || b.stats().received == 1));
    let s = a.stats();
    assert_eq!((s.published, s.publish_dropped, s.reconnects), (1, 1, 0));
    assert!(s.connected);
}

#[test]
fn url_errors_name_the_url() {
    let err = BusConfig::parse("redis://:hunter2@h:0").unwrap_err();
    assert_eq!(err.to_string(), "bus URL redis://:***@h:0: the port is not a number from 1 to 65535");
}

/// `deliver` may drop the last reference to what owns the bus (a server whose handles
/// are gone): the bus thread then cannot join itself, it ends on its own.
fn dropped_from_its_own_deliver<B: TestBroker>(broker: B) {
    let (a, _) = bus(&broker.url(), |_| {});
    let slot: Arc<Mutex<Option<Bus>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (inside, finished) = (slot.clone(), done.clone());
    let b = Bus::connect(BusConfig::parse(&broker.url()).unwrap(), move |_: &str, _, _| {
        let last = inside.lock().unwrap().take();
        drop(last);
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
    })
    .unwrap();
    b.subscribe("/t");
    subscribed(&b, 1);
    *slot.lock().unwrap() = Some(b);
    a.publish("/t", Kind::Text, Bytes::from_static(b"x"));
    assert!(
        wait_until(Duration::from_secs(5), || done.load(std::sync::atomic::Ordering::SeqCst)),
        "the bus was dropped on its own thread without a panic"
    );
}

/// A Redis connection that goes silent (the broker frozen: connections open, nothing
/// answered) is found by the PING and made again once the broker answers. (NATS: the
/// client's own PING, every 2 minutes by default.)
#[test]
fn redis_a_silent_broker_is_noticed_and_reconnected() {
    let Some(mut broker) = Redis::start() else { return };
    let (a, _) = bus(&broker.url(), |_| {});
    let (b, inbox) = bus(&broker.url(), |_| {});
    b.subscribe("/t");
    subscribed(&b, 1);
    broker.freeze(true);
    let noticed = wait_until(Duration::from_secs(12), || !b.stats().connected);
    broker.freeze(false);
    assert!(noticed, "the frozen broker was not noticed in 12 s: {:?}", b.stats());
    assert!(
        wait_until(Duration::from_secs(10), || b.stats().connected && b.stats().subscriptions == 1),
        "{:?}",
        b.stats()
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            a.publish("/t", Kind::Text, Bytes::from_static(b"again"));
            std::thread::sleep(Duration::from_millis(50));
            !inbox.lock().unwrap().is_empty()
        }),
        "nothing delivered after the reconnect: {:?}",
        b.stats()
    );
}
