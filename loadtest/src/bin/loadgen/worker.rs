//! A worker thread: one `mio::Poll` driving a slice of the connections.

use crate::conn::{ByteCounts, Conn, FeedCtx, Role, State, broadcast_frame};
use crate::{Args, Mode, PHASE_RUN, PHASE_STOP};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use ringwire_loadtest::deflate::{Agreement, MessageDeflater};
use ringwire_loadtest::wire::{self, Prebuilt};
use rustls::pki_types::ServerName;
use serde::Serialize;
use socket2::{Domain, Socket, Type};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WAKER: Token = Token(usize::MAX);
const TIMER: Token = Token(usize::MAX - 1);
/// Shortest open-loop timer period: at higher rates each tick sends a small batch (the
/// latency of each message still counts from its own intended send time).
const MIN_TICK: Duration = Duration::from_micros(50);
/// Open-loop safety valve: a connection this far behind is reported as failed.
const MAX_INFLIGHT: usize = 1_000_000;
/// Handshake mode: a connection whose cycle takes longer than this is failed.
const STUCK: Duration = Duration::from_secs(10);

/// Counters one worker publishes for the main thread.
#[derive(Default)]
pub(crate) struct ThreadStats {
    pub msgs: AtomicU64,
    pub sent: AtomicU64,
    pub errors: AtomicU64,
    pub open: AtomicU64,
    pub deliveries: AtomicU64,
    /// Socket reads that returned bytes (the generator's receive syscalls).
    pub reads: AtomicU64,
    /// Returns from the poll with events (wakeups).
    pub polls: AtomicU64,
}

/// State shared by the main thread and the workers.
pub(crate) struct Shared {
    pub phase: AtomicU8,
    pub measuring: AtomicBool,
    /// Workers whose connections have all been attempted.
    pub ready: AtomicUsize,
    /// Connection attempts that may start now (across all workers).
    pub connect_slots: AtomicUsize,
    /// Broadcast deliveries so far (the publisher's flow control).
    pub deliveries: AtomicU64,
    pub epoch: Instant,
    pub subscribers: u64,
    pub stats: Arc<Vec<ThreadStats>>,
    pub frames: Arc<Vec<Prebuilt>>,
    /// `--tls`: the client configuration and the name sent as SNI and verified.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// What the TLS sessions negotiated: the first one's parameters and how many handshakes
/// of each kind completed (`--tls`).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct TlsSeen {
    pub version: Option<String>,
    pub cipher_suite: Option<String>,
    pub kx_group: Option<String>,
    pub alpn: Option<String>,
    pub full: u64,
    pub resumed: u64,
    pub hello_retry: u64,
}

impl TlsSeen {
    fn note(&mut self, c: &rustls::ClientConnection) {
        use rustls::HandshakeKind;
        match c.handshake_kind() {
            Some(HandshakeKind::Resumed) => self.resumed += 1,
            Some(HandshakeKind::FullWithHelloRetryRequest) => self.hello_retry += 1,
            _ => self.full += 1,
        }
        if self.version.is_none() {
            self.version = c.protocol_version().map(|v| format!("{v:?}"));
            self.cipher_suite = c.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()));
            self.kx_group = c.negotiated_key_exchange_group().map(|g| format!("{:?}", g.name()));
            self.alpn = c.alpn_protocol().map(|a| String::from_utf8_lossy(a).into_owned());
        }
    }

    pub(crate) fn add(&mut self, o: &TlsSeen) {
        if self.version.is_none() {
            *self = TlsSeen { full: self.full, resumed: self.resumed, hello_retry: self.hello_retry, ..o.clone() };
        }
        self.full += o.full;
        self.resumed += o.resumed;
        self.hello_retry += o.hello_retry;
    }
}

/// What a worker hands back when it stops.
pub(crate) struct WorkerResult {
    pub hist: Histogram<u64>,
    pub error_samples: Vec<String>,
    /// Bytes over all of this worker's connections, the whole run.
    pub bytes: ByteCounts,
    /// The first permessage-deflate agreement seen (`--deflate`).
    pub agreement: Option<Agreement>,
    pub tls: TlsSeen,
}

pub(crate) struct Worker {
    index: usize,
    poll: Poll,
    ids: Vec<usize>,
    conns: Vec<Option<Conn>>,
    next_connect: usize,
    pending_connects: usize,
    args: Args,
    shared: Arc<Shared>,
    hist: Histogram<u64>,
    error_samples: Vec<String>,
    scratch: Vec<u8>,
    /// Where compressed messages are inflated.
    inflated: Vec<u8>,
    bytes: ByteCounts,
    agreement: Option<Agreement>,
    tls_seen: TlsSeen,
    /// Handshake mode: when connections were last checked for a stuck cycle.
    last_scan: Instant,
    // Open loop.
    rr: usize,
    ol_start: Option<Instant>,
    ol_sent: u64,
    ol_interval_ns: f64,
    timer: Option<rustix::fd::OwnedFd>,
    // Broadcast publisher.
    publisher: Option<usize>,
    pub_seq: u64,
    /// The publisher's compressor (`--deflate`).
    deflater: Option<MessageDeflater>,
}

impl Worker {
    pub(crate) fn new(
        index: usize,
        ids: Vec<usize>,
        args: Args,
        shared: Arc<Shared>,
    ) -> io::Result<(Self, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let threads = shared.stats.len() as f64;
        let ol_interval_ns = args.rate.map_or(0.0, |r| 1e9 * threads / r as f64);
        let publisher = (args.mode == Mode::Broadcast && index == 0).then_some(0);
        let n = ids.len();
        let deflater = (publisher.is_some() && args.deflate).then(MessageDeflater::new);
        let w = Worker {
            index,
            poll,
            ids,
            conns: (0..n).map(|_| None).collect(),
            // Handshake mode opens its connections when the run starts, not before.
            next_connect: if args.mode == Mode::Handshake { n } else { 0 },
            pending_connects: 0,
            args,
            shared,
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram bounds"),
            error_samples: Vec::new(),
            scratch: vec![0; 256 * 1024],
            inflated: Vec::new(),
            bytes: ByteCounts::default(),
            agreement: None,
            tls_seen: TlsSeen::default(),
            last_scan: Instant::now(),
            rr: 0,
            ol_start: None,
            ol_sent: 0,
            ol_interval_ns,
            timer: None,
            deflater,
            publisher,
            pub_seq: 0,
        };
        Ok((w, waker))
    }

    fn stats(&self) -> &ThreadStats {
        &self.shared.stats[self.index]
    }

    pub(crate) fn run(mut self) -> WorkerResult {
        let mut events = Events::with_capacity(1024);
        let mut started = false;
        let mut ready = false;
        loop {
            let phase = self.shared.phase.load(Ordering::Acquire);
            if phase == PHASE_STOP {
                break;
            }
            self.start_connects();
            if !ready && self.next_connect == self.ids.len() && self.pending_connects == 0 {
                ready = true;
                self.shared.ready.fetch_add(1, Ordering::AcqRel);
            }
            if phase == PHASE_RUN && !started && ready {
                started = true;
                self.on_start();
            }
            let timeout = self.timeout(started, ready);
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                self.note_error(format!("poll: {e}"));
                break;
            }
            let measuring = self.shared.measuring.load(Ordering::Relaxed);
            let now = Instant::now();
            let mut counts = Counts::default();
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                if ev.token() == TIMER {
                    if let Some(t) = &self.timer {
                        // Clear the expiration count; the schedule itself is kept by `tick`.
                        let mut buf = [0u8; 8];
                        let _ = rustix::io::read(t, &mut buf);
                    }
                    continue;
                }
                let i = ev.token().0;
                let res = self.handle(
                    i,
                    ev.is_readable() || ev.is_read_closed(),
                    ev.is_writable() || ev.is_error(),
                    now,
                    measuring,
                    &mut counts,
                );
                match res {
                    Ok(false) => {}
                    // Handshake mode: a cycle ended; a new connection takes the slot.
                    Ok(true) => {
                        counts.msgs += 1;
                        self.retire(i);
                        self.open_slot(i);
                    }
                    Err(msg) => {
                        self.fail(i, msg);
                        if started && self.args.mode == Mode::Handshake {
                            self.open_slot(i);
                        }
                    }
                }
            }
            if started {
                self.tick(&mut counts);
                if self.args.mode == Mode::Handshake {
                    self.scan_stuck(now);
                }
            }
            let st = &self.shared.stats[self.index];
            if counts.msgs > 0 {
                st.msgs.fetch_add(counts.msgs, Ordering::Relaxed);
            }
            if counts.sent > 0 {
                st.sent.fetch_add(counts.sent, Ordering::Relaxed);
            }
            if !events.is_empty() {
                st.polls.fetch_add(1, Ordering::Relaxed);
            }
            if counts.reads > 0 {
                st.reads.fetch_add(counts.reads, Ordering::Relaxed);
            }
            if counts.deliveries > 0 {
                st.deliveries.fetch_add(counts.deliveries, Ordering::Relaxed);
                self.shared.deliveries.fetch_add(counts.deliveries, Ordering::AcqRel);
            }
        }
        self.close_all();
        WorkerResult {
            hist: self.hist,
            error_samples: self.error_samples,
            bytes: self.bytes,
            agreement: self.agreement,
            tls: self.tls_seen,
        }
    }

    fn timeout(&self, started: bool, ready: bool) -> Option<Duration> {
        if !ready && self.pending_connects == 0 {
            // Waiting for a connect slot another worker holds.
            return Some(Duration::from_millis(1));
        }
        if !started {
            return Some(Duration::from_millis(100));
        }
        match self.args.mode {
            // The timerfd wakes the worker on schedule.
            Mode::OpenLoop => Some(Duration::from_millis(100)),
            Mode::Broadcast if self.publisher.is_some() && self.shared.stats.len() > 1 => {
                Some(Duration::from_millis(1))
            }
            _ => Some(Duration::from_millis(100)),
        }
    }

    fn start_connects(&mut self) {
        while self.next_connect < self.ids.len() {
            let slots = &self.shared.connect_slots;
            let mut cur = slots.load(Ordering::Acquire);
            loop {
                if cur == 0 {
                    return;
                }
                match slots.compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(c) => cur = c,
                }
            }
            let i = self.next_connect;
            self.next_connect += 1;
            self.open_slot(i);
        }
    }

    /// Starts connection `i` (a connect slot, if the mode uses them, already taken).
    fn open_slot(&mut self, i: usize) {
        self.pending_connects += 1;
        let global = self.ids[i];
        let role = match (self.args.mode, self.publisher) {
            (Mode::Broadcast, Some(p)) if p == i => Role::Publisher,
            (Mode::Broadcast, _) => Role::Subscriber,
            _ => Role::Echo,
        };
        let tls = match &self.shared.tls {
            None => None,
            Some((config, name)) => match rustls::ClientConnection::new(config.clone(), name.clone()) {
                Ok(mut t) => {
                    // The write queue is bounded by the generator's own in-flight messages.
                    t.set_buffer_limit(None);
                    Some(t)
                }
                Err(e) => {
                    self.release_connect();
                    self.note_error(format!("tls client #{global}: {e}"));
                    return;
                }
            },
        };
        match self.connect(global) {
            Ok(stream) => {
                let mut c = Conn::new(stream, tls, role, global as u64 * 7);
                let res =
                    self.poll.registry().register(&mut c.stream, Token(i), Interest::READABLE | Interest::WRITABLE);
                self.conns[i] = Some(c);
                if let Err(e) = res {
                    self.fail(i, format!("register: {e}"));
                }
            }
            Err(e) => {
                self.release_connect();
                self.note_error(format!("connect #{global}: {e}"));
            }
        }
    }

    /// A connection attempt ended (open or failed): its connect slot is free again
    /// (handshake mode keeps its connections in flight without the window).
    fn release_connect(&mut self) {
        self.pending_connects -= 1;
        if self.args.mode != Mode::Handshake {
            self.shared.connect_slots.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Handshake mode: connection `i` finished its cycle (echo, close handshake, the
    /// server's end of stream); it is dropped.
    fn retire(&mut self, i: usize) {
        let Some(mut c) = self.conns[i].take() else { return };
        self.bytes.add(&c.bytes);
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.stats().open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Handshake mode: fails connections whose cycle has taken more than 10 s.
    fn scan_stuck(&mut self, now: Instant) {
        if now.duration_since(self.last_scan) < Duration::from_secs(1) {
            return;
        }
        self.last_scan = now;
        for i in 0..self.conns.len() {
            let stuck = self.conns[i].as_ref().is_some_and(|c| now.duration_since(c.started) > STUCK);
            if stuck {
                let state = self.conns[i].as_ref().map(|c| c.state);
                self.fail(i, format!("cycle not finished after {} s ({state:?})", STUCK.as_secs()));
                self.open_slot(i);
            }
        }
    }

    fn connect(&self, global: usize) -> io::Result<TcpStream> {
        let addr = self.args.addr;
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), None)?;
        sock.set_tcp_nodelay(true)?;
        if !self.args.sources.is_empty() {
            let src = self.args.sources[global % self.args.sources.len()];
            sock.bind(&SocketAddr::new(src, 0).into())
                .map_err(|e| io::Error::new(e.kind(), format!("bind {src}: {e} (out of ports? add --sources)")))?;
        }
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(std::net::TcpStream::from(sock)))
    }

    fn handle(
        &mut self,
        i: usize,
        readable: bool,
        writable: bool,
        now: Instant,
        measuring: bool,
        counts: &mut Counts,
    ) -> Result<bool, String> {
        let Worker { conns, scratch, shared, args, hist, inflated, agreement, .. } = self;
        let Some(c) = conns.get_mut(i).and_then(Option::as_mut) else {
            return Ok(false);
        };
        let mut ctx = FeedCtx {
            frames: &shared.frames,
            now,
            epoch: shared.epoch,
            measuring,
            hist,
            msgs: 0,
            deliveries: 0,
            sent: 0,
            refill: matches!(args.mode, Mode::Closed | Mode::Pipelined),
            raw: args.raw,
            max_len: ringwire_loadtest::peer::MAX_MESSAGE as u64,
            size: args.size,
            inflated,
            close_after_echo: args.mode == Mode::Handshake,
        };
        let mut became_open = false;
        // Handshake mode: the cycle ended (close frames exchanged, the server's end of stream).
        let mut done = false;
        // Account for a newly open connection even when the same event then fails it.
        let res = (|| -> Result<(), String> {
            if c.state == State::Connecting {
                if !(readable || writable) {
                    return Ok(());
                }
                if let Some(e) = c.stream.take_error().map_err(|e| e.to_string())? {
                    return Err(format!("connect: {e}"));
                }
                match c.stream.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                    Err(e) => return Err(format!("connect: {e}")),
                }
                if args.raw {
                    c.state = State::Open;
                    became_open = true;
                } else {
                    let key = wire::client_key((i as u64) << 20 ^ shared.epoch.elapsed().as_nanos() as u64);
                    c.accept = wire::accept_key(&key);
                    let host = args.addr.to_string();
                    let offer = args.deflate.then_some(wire::DEFLATE_OFFER);
                    c.queue_bytes(&wire::upgrade_request(&host, &args.path, &key, offer));
                    c.state = State::Handshake;
                }
            }
            if readable || c.state == State::Handshake {
                loop {
                    let ended = match c.stream.read(scratch) {
                        Ok(0) => "closed the connection",
                        Ok(n) => {
                            counts.reads += 1;
                            if args.delayed_ack {
                                set_quickack(&c.stream, false);
                            }
                            let data = &scratch[..n];
                            let notified = if c.tls.is_some() {
                                let (opened, notified) = c.deliver_tls(data, &mut ctx, args.deflate, agreement)?;
                                became_open |= opened;
                                notified
                            } else {
                                became_open |= c.deliver(data, &mut ctx, args.deflate, agreement)?;
                                false
                            };
                            if notified {
                                "sent its TLS close_notify"
                            } else if n < scratch.len() && c.state != State::Closing {
                                // A short read drained the socket; a later arrival raises a new edge.
                                // (Not while closing: a FIN that came with the last bytes raises none.)
                                break;
                            } else {
                                continue;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(format!("read: {e}")),
                    };
                    if c.state == State::Closing && c.close_received {
                        done = true;
                        return Ok(());
                    }
                    return Err(format!("server {ended} ({:?})", c.state));
                }
            }
            if became_open && args.mode == Mode::Handshake {
                // The cycle's one message; its latency counts from the TCP connect.
                c.enqueue(&shared.frames, c.started);
                ctx.sent += 1;
            }
            if c.inflight.len() > MAX_INFLIGHT {
                return Err(format!("{} messages in flight: the server is not keeping up", c.inflight.len()));
            }
            c.flush().map_err(|e| format!("write: {e}"))?;
            Ok(())
        })();
        counts.msgs += ctx.msgs;
        counts.sent += ctx.sent;
        counts.deliveries += ctx.deliveries;
        if became_open {
            if let Some(t) = conns[i].as_ref().and_then(|c| c.tls.as_deref()) {
                self.tls_seen.note(t);
            }
            self.release_connect();
            self.stats().open.fetch_add(1, Ordering::Relaxed);
        }
        res.map(|()| done)
    }

    /// The run phase begins: queue the initial messages.
    fn on_start(&mut self) {
        let now = Instant::now();
        let frames = self.shared.frames.clone();
        let depth = match self.args.mode {
            Mode::Handshake => {
                for i in 0..self.conns.len() {
                    self.open_slot(i);
                }
                return;
            }
            Mode::Closed => 1,
            Mode::Pipelined | Mode::Idle => self.args.depth,
            Mode::OpenLoop => {
                self.ol_start = Some(now);
                if let Err(e) = self.start_timer() {
                    self.note_error(format!("open-loop timer: {e}"));
                }
                0
            }
            Mode::Broadcast => 0,
        };
        let mut sent = 0;
        for i in 0..self.conns.len() {
            let res = match &mut self.conns[i] {
                Some(c) if c.state == State::Open && c.role == Role::Echo => {
                    for _ in 0..depth {
                        c.enqueue(&frames, now);
                        sent += 1;
                    }
                    c.flush()
                }
                _ => Ok(()),
            };
            if let Err(e) = res {
                self.fail(i, format!("write: {e}"));
            }
        }
        self.stats().sent.fetch_add(sent, Ordering::Relaxed);
    }

    /// A periodic timerfd (period: the send interval, at least `MIN_TICK`) registered with
    /// the poll: precise wakeups without busy-polling, which on a shared core would make
    /// the scheduler hold the generator back and inflate the measured latency.
    fn start_timer(&mut self) -> io::Result<()> {
        use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
        let fd =
            rustix::time::timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC)?;
        let period = Duration::from_nanos(self.ol_interval_ns as u64).max(MIN_TICK);
        let ts = Timespec { tv_sec: period.as_secs() as i64, tv_nsec: period.subsec_nanos() as _ };
        rustix::time::timerfd_settime(&fd, TimerfdTimerFlags::empty(), &Itimerspec { it_interval: ts, it_value: ts })?;
        use std::os::fd::AsRawFd as _;
        self.poll.registry().register(&mut mio::unix::SourceFd(&fd.as_raw_fd()), TIMER, Interest::READABLE)?;
        self.timer = Some(fd);
        Ok(())
    }

    /// Time-driven sends: open-loop messages and broadcast publishes.
    fn tick(&mut self, counts: &mut Counts) {
        match self.args.mode {
            Mode::OpenLoop => self.tick_open_loop(counts),
            Mode::Broadcast => self.tick_publish(counts),
            _ => {}
        }
    }

    fn tick_open_loop(&mut self, counts: &mut Counts) {
        let Some(start) = self.ol_start else { return };
        let now = Instant::now();
        let frames = self.shared.frames.clone();
        let n = self.conns.len();
        let mut touched = Vec::new();
        loop {
            let due = start + Duration::from_nanos((self.ol_sent as f64 * self.ol_interval_ns) as u64);
            if due > now {
                break;
            }
            // Next open connection, round robin.
            let mut found = None;
            for k in 0..n {
                let i = (self.rr + k) % n;
                if matches!(&self.conns[i], Some(c) if c.state == State::Open) {
                    found = Some(i);
                    break;
                }
            }
            let Some(i) = found else { return };
            self.rr = i + 1;
            let c = self.conns[i].as_mut().expect("found above");
            if c.backlog() == 0 {
                touched.push(i);
            }
            c.enqueue(&frames, due);
            self.ol_sent += 1;
            counts.sent += 1;
        }
        for i in touched {
            let res = self.conns[i].as_mut().map_or(Ok(()), Conn::flush);
            if let Err(e) = res {
                self.fail(i, format!("write: {e}"));
            }
        }
    }

    fn tick_publish(&mut self, counts: &mut Counts) {
        let Some(p) = self.publisher else { return };
        let delivered = self.shared.deliveries.load(Ordering::Acquire) + counts.deliveries;
        let subs = self.shared.subscribers;
        let window = self.args.window;
        let epoch = self.shared.epoch;
        let frames = self.shared.frames.clone();
        let Some(c) = self.conns[p].as_mut() else { return };
        if c.state != State::Open {
            return;
        }
        let deflater = &mut self.deflater;
        let mut queued = false;
        // Message k may go once every subscriber has had message k - window.
        while self.pub_seq < window || delivered >= (self.pub_seq - window + 1) * subs {
            let sent_ns = epoch.elapsed().as_nanos() as u64;
            let f = broadcast_frame(&frames, self.pub_seq, sent_ns, deflater.as_mut());
            c.queue_message(&f.wire, f.wire_payload_len, f.payload.len());
            self.pub_seq += 1;
            counts.sent += 1;
            queued = true;
        }
        if queued && let Err(e) = c.flush() {
            self.fail(p, format!("write: {e}"));
        }
    }

    /// Best-effort clean close at the end: a close frame (1000) and a write shutdown on
    /// every open WebSocket connection, so servers see a closing handshake, not an EOF.
    fn close_all(&mut self) {
        for c in self.conns.iter().flatten() {
            self.bytes.add(&c.bytes);
        }
        let close = (!self.args.raw).then(|| wire::client_frame(wire::OP_CLOSE, &1000u16.to_be_bytes(), [9, 8, 7, 6]));
        for c in self.conns.iter_mut().flatten().filter(|c| c.state == State::Open) {
            if let Some(f) = &close {
                c.queue_bytes(f);
            }
            if c.tls.is_some() {
                // The close frame into the session first, then the alert after it.
                let _ = c.flush();
                if let Some(t) = &mut c.tls {
                    t.send_close_notify();
                }
            }
            if c.flush().is_ok() && c.backlog() == 0 {
                let _ = c.stream.shutdown(std::net::Shutdown::Write);
            }
        }
        // Give the servers a moment to answer and close; read and drop what they send.
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut events = Events::with_capacity(1024);
        let mut left = self.conns.iter().flatten().count();
        while left > 0 && Instant::now() < deadline {
            if self.poll.poll(&mut events, Some(Duration::from_millis(20))).is_err() {
                break;
            }
            for ev in events.iter() {
                let Some(slot) = self.conns.get_mut(ev.token().0) else { continue };
                let Some(c) = slot.as_mut() else { continue };
                let done = loop {
                    match c.stream.read(&mut self.scratch) {
                        Ok(0) => break true,
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break true,
                    }
                };
                if done {
                    *slot = None;
                    left -= 1;
                }
            }
        }
    }

    fn note_error(&mut self, msg: String) {
        self.stats().errors.fetch_add(1, Ordering::Relaxed);
        if self.error_samples.len() < 10 {
            self.error_samples.push(msg);
        }
    }

    fn fail(&mut self, i: usize, msg: String) {
        let Some(mut c) = self.conns[i].take() else { return };
        self.bytes.add(&c.bytes);
        let _ = self.poll.registry().deregister(&mut c.stream);
        if c.opened() {
            self.stats().open.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.release_connect();
        }
        let global = self.ids[i];
        self.note_error(format!("conn #{global}: {msg}"));
    }
}

/// Sets `TCP_QUICKACK` (off: delayed-ACK mode, until the kernel's delayed-ACK timer next
/// fires). A failure only costs the generator CPU, so it is ignored.
fn set_quickack(s: &TcpStream, on: bool) {
    let _ = rustix::net::sockopt::set_tcp_quickack(s, on);
}

#[derive(Default)]
struct Counts {
    msgs: u64,
    sent: u64,
    deliveries: u64,
    reads: u64,
}
