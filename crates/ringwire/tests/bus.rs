//! `ringwire broadcast --bus`: processes joined over a real Redis or NATS server, started
//! here on free loopback ports from the `redis-server` and `nats-server` programs (each
//! test skips with a line when the program is missing, and fails instead with
//! `RINGWIRE_REQUIRE_BROKERS=1`, as `.ci/run` sets).
//!
//! Subscribers are many connections on one ringwire client loop (a thread of this test);
//! publishers are raw clients. Every published message is `TOPIC SEQ`; a subscriber
//! records what it got, so "exactly once, and nothing of another topic" is checked per
//! connection.

mod support;
use ringwire::client::{ClientHandler, ClientId, ClientLoop, ClientWs, ConnectOptions, LoopHandle};
use ringwire::conn::Message;
use ringwire::io::IoChoice;
use ringwire_testkit::brokers::{Broker, Nats, Redis};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{RawClient, Ringwire, wait_until};

/// Both brokers, each skipped (with a line) where its program is missing.
fn brokers() -> Vec<(&'static str, Box<dyn Broker>)> {
    let redis = Redis::start().map(|b| ("redis", Box::new(b) as Box<dyn Broker>));
    let nats = Nats::start().map(|b| ("nats", Box::new(b) as Box<dyn Broker>));
    redis.into_iter().chain(nats).collect()
}

/// `ringwire broadcast --bus <url>` with two workers.
fn on_bus(url: &str, extra: &[&str]) -> Ringwire {
    let args = [&["--threads", "2", "--bus", url][..], extra].concat();
    Ringwire::start("broadcast", "auto", &args).expect("auto always starts")
}

/// What one subscriber connection got.
#[derive(Default, Debug)]
struct Got {
    /// Its process (0 or 1) and topic (`t1`, without the slash).
    process: usize,
    topic: String,
    /// Sequence numbers of its topic's messages, in arrival order.
    seqs: Vec<u32>,
    /// Messages of another topic (never right).
    foreign: Vec<String>,
}

#[derive(Default)]
struct Tally {
    conns: HashMap<ClientId, Got>,
}

/// Counts shared with the test thread while the crowd runs.
#[derive(Default)]
struct Live {
    opened: AtomicUsize,
    failed: AtomicUsize,
    messages: AtomicUsize,
    /// Probes seen by the subscribers of each process.
    probes: [AtomicUsize; 2],
}

struct CrowdHandler {
    tally: Tally,
    live: Arc<Live>,
    /// Filled by the test thread as it connects: id -> (process, topic).
    pending: Arc<Mutex<HashMap<ClientId, (usize, String)>>>,
}

impl ClientHandler for CrowdHandler {
    fn on_open(&mut self, _: &mut ClientWs<'_>) {
        self.live.opened.fetch_add(1, Ordering::Relaxed);
    }

    fn on_connect_failed(&mut self, _: &mut ringwire::client::Ctl<'_>, _: ClientId, e: ringwire::client::ConnectError) {
        eprintln!("subscriber failed to connect: {e}");
        self.live.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn on_message(&mut self, ws: &mut ClientWs<'_>, message: Message) {
        let Message::Text(text) = message else { panic!("a binary message") };
        let id = ws.id();
        let got = self.tally.conns.entry(id).or_insert_with(|| {
            let (process, topic) = self.pending.lock().unwrap().get(&id).cloned().expect("a connection we made");
            Got { process, topic, ..Got::default() }
        });
        let (topic, what) = text.split_once(' ').expect("TOPIC SEQ");
        if topic != got.topic {
            got.foreign.push(text.to_string());
        } else if what == "probe" {
            self.live.probes[got.process].fetch_add(1, Ordering::Relaxed);
        } else {
            got.seqs.push(what.parse().unwrap());
            self.live.messages.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Subscriber connections on one client loop thread.
struct Crowd {
    handle: LoopHandle,
    live: Arc<Live>,
    pending: Arc<Mutex<HashMap<ClientId, (usize, String)>>>,
    thread: std::thread::JoinHandle<Tally>,
    wanted: usize,
}

impl Crowd {
    fn start() -> Crowd {
        raise_descriptor_limit();
        let live = Arc::new(Live::default());
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (l, p) = (Arc::clone(&live), Arc::clone(&pending));
        let thread = std::thread::spawn(move || {
            let mut client = ClientLoop::new(IoChoice::Auto).unwrap();
            client.set_stop_when_idle(false);
            tx.send(client.handle()).unwrap();
            let mut h = CrowdHandler { tally: Tally::default(), live: l, pending: p };
            client.run(&mut h).unwrap();
            h.tally
        });
        Crowd { handle: rx.recv().unwrap(), live, pending, thread, wanted: 0 }
    }

    /// Opens `n` subscribers of `topic` (a path without its slash) on `process` at
    /// `addr`, 500 at a time so no listen backlog overflows, and waits until all are open.
    fn join(&mut self, process: usize, addr: SocketAddr, topic: &str, n: usize) {
        for batch in (0..n).collect::<Vec<_>>().chunks(500) {
            for _ in batch {
                let url = format!("ws://{addr}/{topic}");
                // The id is recorded before the loop can open the connection.
                let mut pending = self.pending.lock().unwrap();
                let id = self.handle.connect(&url, ConnectOptions::default()).expect("connect queued");
                pending.insert(id, (process, topic.to_owned()));
            }
            self.wanted += batch.len();
            let live = &self.live;
            assert!(
                wait_until(Duration::from_secs(20), || live.opened.load(Ordering::Relaxed) >= self.wanted),
                "{} of {} subscribers open, {} failed",
                live.opened.load(Ordering::Relaxed),
                self.wanted,
                live.failed.load(Ordering::Relaxed)
            );
        }
    }

    fn messages(&self) -> usize {
        self.live.messages.load(Ordering::Relaxed)
    }

    fn probes(&self, process: usize) -> usize {
        self.live.probes[process].load(Ordering::Relaxed)
    }

    fn stop(self) -> (Tally, HashMap<ClientId, (usize, String)>) {
        self.handle.stop();
        let tally = self.thread.join().expect("the crowd's loop");
        let all = std::mem::take(&mut *self.pending.lock().unwrap());
        (tally, all)
    }
}

/// Raises this process's soft descriptor limit to the hard one (10,000 subscribers).
fn raise_descriptor_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit; affects only this process.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// A publisher: a raw client on `topic` of the process at `addr`.
struct Publisher(RawClient);

impl Publisher {
    fn new(addr: SocketAddr, topic: &str) -> Self {
        let c = RawClient::connect_to(addr, &format!("/{topic}"));
        // It is a subscriber too (the sender gets its own message back): read and drop
        // on a thread, so its socket never fills.
        let mut reader = c.stream.try_clone().unwrap();
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Self(c)
    }

    fn say(&mut self, text: &str) {
        self.0.send(0x1, text.as_bytes());
    }
}

/// Publishes probes on `from` until subscribers on each process in `seen_on` got one:
/// then both processes' bus subscriptions are in place (a message published before the
/// broker has the subscription is not delivered: at most once).
fn until_subscribed(crowd: &Crowd, from: &mut Publisher, topic: &str, seen_on: &[usize]) {
    let t0 = Instant::now();
    while !seen_on.iter().all(|&p| crowd.probes(p) > 0) {
        assert!(t0.elapsed() < Duration::from_secs(10), "no probe went through the bus in 10 s");
        from.say(&format!("{topic} probe"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every subscriber of `topic` got exactly `want` (each once, each publisher's in its
/// order), no subscriber got a message of another topic, and the others got nothing.
fn check_exactly_once(tally: &Tally, all: &HashMap<ClientId, (usize, String)>, topic: &str, want: &[u32], what: &str) {
    let mut sorted_want = want.to_vec();
    sorted_want.sort_unstable();
    for (id, (process, t)) in all {
        let got = tally.conns.get(id);
        if let Some(g) = got {
            assert!(g.foreign.is_empty(), "{what}: {id:?} on {t} got {:?}", &g.foreign[..g.foreign.len().min(3)]);
        }
        let seqs = got.map_or(&[][..], |g| &g.seqs[..]);
        if t == topic {
            let mut sorted = seqs.to_vec();
            sorted.sort_unstable();
            assert!(
                sorted == sorted_want,
                "{what}: subscriber {id:?} of process {process} got {} messages for {} published (first missing or doubled: {:?})",
                seqs.len(),
                want.len(),
                sorted.iter().zip(&sorted_want).find(|(a, b)| a != b)
            );
        } else {
            assert!(seqs.is_empty(), "{what}: subscriber {id:?} of {t} got {} messages of {topic}", seqs.len());
        }
    }
}

#[test]
fn a_message_reaches_every_subscriber_of_its_topic_on_both_processes_exactly_once_and_no_other() {
    for (what, broker) in brokers() {
        let (a, b) = (on_bus(&broker.url(), &[]), on_bus(&broker.url(), &[]));
        let mut crowd = Crowd::start();
        for (p, server) in [(0, &a), (1, &b)] {
            crowd.join(p, server.addr, "t1", 40);
            crowd.join(p, server.addr, "t2", 10);
        }
        let (mut pa, mut pb) = (Publisher::new(a.addr, "t1"), Publisher::new(b.addr, "t1"));
        until_subscribed(&crowd, &mut pa, "t1", &[1]);
        until_subscribed(&crowd, &mut pb, "t1", &[0]);
        // 300 from each side, interleaved.
        for i in 0..300 {
            pa.say(&format!("t1 {i}"));
            pb.say(&format!("t1 {}", 1000 + i));
        }
        let want: Vec<u32> = (0..300).chain(1000..1300).collect();
        let expected = 80 * want.len();
        assert!(
            wait_until(Duration::from_secs(20), || crowd.messages() >= expected),
            "{what}: {} of {expected} deliveries",
            crowd.messages()
        );
        // Room for a stray duplicate to arrive before the count is checked.
        std::thread::sleep(Duration::from_millis(300));
        let (tally, all) = crowd.stop();
        check_exactly_once(&tally, &all, "t1", &want, what);
        // Each publisher's messages arrive in the order it sent them.
        for g in tally.conns.values().filter(|g| g.topic == "t1") {
            let from_a: Vec<u32> = g.seqs.iter().copied().filter(|&s| s < 1000).collect();
            assert!(from_a.windows(2).all(|w| w[0] < w[1]), "{what}: out of order on process {}", g.process);
        }
    }
}

#[test]
fn ten_thousand_subscribers_across_two_processes() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills a valid rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if lim.rlim_max < 10_500 {
        let why = format!("10,000 subscribers need ~10,100 descriptors; the hard limit is {}", lim.rlim_max);
        return ringwire_testkit::brokers::skip_or_fail(ringwire_testkit::brokers::REQUIRE_BROKERS_ENV, &why);
    }
    for (what, broker) in brokers() {
        let (a, b) = (on_bus(&broker.url(), &[]), on_bus(&broker.url(), &[]));
        let mut crowd = Crowd::start();
        crowd.join(0, a.addr, "big", 5_000);
        crowd.join(1, b.addr, "big", 5_000);
        let mut pa = Publisher::new(a.addr, "big");
        until_subscribed(&crowd, &mut pa, "big", &[0, 1]);
        for i in 0..20 {
            pa.say(&format!("big {i}"));
        }
        let want: Vec<u32> = (0..20).collect();
        assert!(
            wait_until(Duration::from_secs(30), || crowd.messages() >= 10_000 * 20),
            "{what}: {} of 200,000 deliveries",
            crowd.messages()
        );
        std::thread::sleep(Duration::from_millis(300));
        let (tally, all) = crowd.stop();
        assert_eq!(all.len(), 10_000);
        check_exactly_once(&tally, &all, "big", &want, what);
    }
}

#[test]
fn a_broker_restart_is_survived_and_local_subscribers_are_served_meanwhile() {
    for (what, mut broker) in brokers() {
        let (a, b) = (on_bus(&broker.url(), &[]), on_bus(&broker.url(), &[]));
        let mut crowd = Crowd::start();
        crowd.join(0, a.addr, "r", 5);
        crowd.join(1, b.addr, "r", 5);
        let mut pa = Publisher::new(a.addr, "r");
        until_subscribed(&crowd, &mut pa, "r", &[1]);
        broker.stop();
        // While the broker is away, A's own subscribers still get what is sent on A.
        let before = crowd.messages();
        for i in 0..10 {
            pa.say(&format!("r {i}"));
        }
        assert!(
            wait_until(Duration::from_secs(5), || crowd.messages() >= before + 5 * 10),
            "{what}: local subscribers served while the broker is down"
        );
        assert!(
            wait_until(Duration::from_secs(5), || a.stderr().contains("bus: lost")),
            "{what}: the loss is logged:\n{}",
            a.stderr()
        );
        broker.start_again();
        // Back: B's subscribers get A's messages again (resubscribed after the reconnect).
        let probes_before = crowd.probes(1);
        let t0 = Instant::now();
        while crowd.probes(1) == probes_before {
            assert!(t0.elapsed() < Duration::from_secs(15), "{what}: the bus did not come back:\n{}", b.stderr());
            pa.say("r probe");
            std::thread::sleep(Duration::from_millis(50));
        }
        for server in [&a, &b] {
            assert!(
                wait_until(Duration::from_secs(5), || server.stderr().contains("again")),
                "{what}: the return is logged:\n{}",
                server.stderr()
            );
        }
        crowd.stop();
    }
}

/// `ringwire broadcast --bus <url> <extra>` run to its exit or start-up line: (exit code
/// if it exited, stdout, stderr, how long it took).
fn run_briefly(url: &str, extra: &[&str], limit: Duration) -> (Option<i32>, String, String, Duration) {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringwire"))
        .args(["broadcast", "--addr", "127.0.0.1:0", "--threads", "1", "--bus", url])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = t0.elapsed();
    let out = child.wait_with_output().unwrap();
    (status, String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into(), took)
}

#[test]
fn a_broker_that_is_not_there_at_start_is_a_clear_error_or_waited_for() {
    for (what, mut broker) in brokers() {
        broker.stop();
        let url = broker.url();
        let (code, out, err, took) = run_briefly(&url, &[], Duration::from_secs(5));
        assert_eq!(code, Some(1), "{what}: exits 1; stdout {out:?} stderr {err:?}");
        assert!(took < Duration::from_secs(2), "{what}: said at once, not after {took:?}");
        let line = err.lines().last().unwrap_or("");
        assert!(line.starts_with("ringwire: --bus ") && line.contains(&url), "{what}: {err}");
        // With --bus-wait it waits, says so, and serves once the broker is up.
        let waiting = std::thread::spawn({
            let url = url.clone();
            move || Ringwire::start("broadcast", "auto", &["--bus", &url, "--bus-wait"]).expect("starts")
        });
        std::thread::sleep(Duration::from_millis(700));
        assert!(!waiting.is_finished(), "{what}: --bus-wait started without the broker");
        broker.start_again();
        let server = waiting.join().unwrap();
        assert!(
            server.stderr().contains("unreachable") && server.stderr().contains("waiting for it"),
            "{what}: {}",
            server.stderr()
        );
        let mut c = RawClient::connect_to(server.addr, "/x");
        c.send(0x1, b"x 1");
        assert_eq!(c.recv(), (0x1, b"x 1".to_vec()));
    }
}

#[test]
fn bad_bus_urls_give_one_line_naming_the_flag() {
    for url in ["http://127.0.0.1:6379", "redis://", "nats://host:notaport", "redis://127.0.0.1:99999"] {
        let (code, _, err, _) = run_briefly(url, &[], Duration::from_secs(5));
        assert_eq!(code, Some(2), "{url}: {err}");
        assert_eq!(err.lines().count(), 1, "{url}: one line: {err}");
        assert!(err.starts_with("ringwire: ") && err.contains("--bus") && err.contains(url), "{url}: {err}");
    }
}

/// Two network namespaces joined by a veth pair: two "hosts" with their own addresses
/// on one machine. Removed on drop.
struct TwoHosts {
    names: [String; 2],
    addrs: [&'static str; 2],
}

impl TwoHosts {
    /// `None` (and why) where namespaces cannot be made: not root, no `ip`, no veth.
    fn new() -> Result<TwoHosts, String> {
        let id = std::process::id();
        let names = [format!("rw{id}a"), format!("rw{id}b")];
        let hosts = TwoHosts { names: names.clone(), addrs: ["10.231.0.1", "10.231.0.2"] };
        let (a, b) = (names[0].as_str(), names[1].as_str());
        let steps: &[&[&str]] = &[
            &["netns", "add", a],
            &["netns", "add", b],
            &["link", "add", a, "type", "veth", "peer", "name", b],
            &["link", "set", a, "netns", a],
            &["link", "set", b, "netns", b],
            &["-n", a, "addr", "add", "10.231.0.1/24", "dev", a],
            &["-n", b, "addr", "add", "10.231.0.2/24", "dev", b],
            &["-n", a, "link", "set", a, "up"],
            &["-n", b, "link", "set", b, "up"],
            &["-n", a, "link", "set", "lo", "up"],
            &["-n", b, "link", "set", "lo", "up"],
        ];
        for step in steps {
            let out = Command::new("ip").args(*step).output().map_err(|e| format!("ip: {e}"))?;
            if !out.status.success() {
                return Err(format!("ip {}: {}", step.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
            }
        }
        Ok(hosts)
    }

    /// `program args` run inside host `i`'s namespace.
    fn command(&self, i: usize, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i], program]).args(args);
        c
    }

    /// Runs `f` on a thread inside host `i`'s namespace: sockets it opens live there.
    fn inside<T: Send + 'static>(&self, i: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.names[i]);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: setns with a namespace descriptor we own; it moves this thread only.
            let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// A child process killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ringwire broadcast` in host `i` on its address and returns it with the
/// address from its start-up line.
fn ringwire_on(hosts: &TwoHosts, i: usize, bus: &str) -> (Killed, SocketAddr) {
    let addr = format!("{}:0", hosts.addrs[i]);
    let bin = env!("CARGO_BIN_EXE_ringwire");
    let mut child = hosts
        .command(i, bin, &["broadcast", "--addr", &addr, "--threads", "1", "--bus", bus])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let line = support::start_line(&mut child, String::new);
    let addr = line.split("ws://").nth(1).and_then(|s| s.split_whitespace().next()).expect(&line);
    (Killed(child), addr.parse().unwrap())
}

#[test]
fn two_hosts_on_their_own_addresses_share_topics_over_the_bus() {
    let Some(nats) = ringwire_testkit::brokers::program("nats-server") else { return };
    let hosts = match TwoHosts::new() {
        Ok(h) => h,
        Err(why) => return ringwire_testkit::brokers::skip_or_fail("RINGWIRE_REQUIRE_NETNS", &why),
    };
    let nats = nats.to_str().unwrap().to_owned();
    // The broker on host A, both servers on the bus through host A's address.
    let _broker = Killed(
        hosts
            .command(0, &nats, &["-a", "10.231.0.1", "-p", "4222"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let bus = "nats://10.231.0.1:4222";
    let reachable = hosts
        .inside(0, || wait_until(Duration::from_secs(5), || std::net::TcpStream::connect("10.231.0.1:4222").is_ok()));
    assert!(reachable, "nats-server did not start on host A");
    let (_a, addr_a) = ringwire_on(&hosts, 0, bus);
    let (_b, addr_b) = ringwire_on(&hosts, 1, bus);
    // A subscriber on host B (reached from A across the veth), a publisher on host A.
    let (mut sub, mut publisher) =
        hosts.inside(0, move || (RawClient::connect_to(addr_b, "/room"), RawClient::connect_to(addr_a, "/room")));
    let t0 = Instant::now();
    let mut n = 0;
    sub.stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(10), "nothing crossed from host A to host B");
        n += 1;
        publisher.send(0x1, format!("hello {n}").as_bytes());
        if let Ok(f) = ringwire_testkit::read_frame(&mut sub.stream) {
            assert!(String::from_utf8(f.payload).unwrap().starts_with("hello "));
            break;
        }
    }
}

#[test]
fn a_process_leaves_a_topic_at_the_broker_when_its_last_subscriber_goes() {
    let Some(redis) = Redis::start() else { return };
    let Some(cli) = ringwire_testkit::brokers::program("redis-cli") else { return };
    let url = redis.url();
    let (a, b) = (on_bus(&url, &[]), on_bus(&url, &[]));
    // Redis' own count of subscriptions to the topic's channel: one per process.
    let numsub = || -> u32 {
        let out = Command::new(&cli)
            .args(["-p", &redis.port().to_string(), "PUBSUB", "NUMSUB", "ringwire:/gone"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("redis-cli said {text:?}"))
    };
    let on_a = RawClient::connect_to(a.addr, "/gone");
    let mut on_b: Vec<RawClient> = (0..3).map(|_| RawClient::connect_to(b.addr, "/gone")).collect();
    assert!(wait_until(Duration::from_secs(5), || numsub() == 2), "two processes, not {} subscriptions", numsub());
    on_b.pop();
    on_b.pop();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(numsub(), 2, "B still has a subscriber");
    on_b.pop();
    assert!(wait_until(Duration::from_secs(5), || numsub() == 1), "B left the channel: {} subscriptions", numsub());
    drop(on_a);
    assert!(wait_until(Duration::from_secs(5), || numsub() == 0), "A left the channel: {} subscriptions", numsub());
}
