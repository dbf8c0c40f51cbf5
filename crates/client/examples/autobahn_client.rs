//! The Autobahn client gate's agent: follows the fuzzingserver protocol against kosoku (or
//! wstest) and echoes every message of every case.
//!
//! ```text
//! autobahn_client ws://127.0.0.1:9001
//! ```
//!
//! `GET /getCaseCount` answers one text message with the number of cases; each case N runs on
//! `/runCase?case=N&agent=ringwire` and lasts until the server closes; `/updateReports` writes
//! the report. Cases run four at a time on one loop (the backend `RINGWIRE_IO` or auto
//! detection picks).

use std::collections::HashSet;

use ringwire_client::{ClientHandler, ClientId, ClientLoop, ClientWs, ConnectError, ConnectOptions, Ctl, IoChoice};
use ringwire_conn::{CloseCode, Message};

const AGENT: &str = "ringwire";
/// Cases run at once (as the server gate's `kosoku -p 4`): one at a time kept one core of
/// two busy, and the gate took twice as long.
const CONCURRENCY: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Count,
    Cases,
    Report,
    Done,
}

struct Autobahn {
    base: String,
    opts: ConnectOptions,
    phase: Phase,
    count: Option<u32>,
    /// The next case to start.
    next_case: u32,
    /// The connections of the cases running.
    running: HashSet<ClientId>,
    failed: bool,
}

impl Autobahn {
    /// Starts cases until [`CONCURRENCY`] run or none is left; once the last one ended, the
    /// report.
    fn fill(&mut self, ctl: &mut Ctl<'_>) {
        let count = self.count.unwrap_or(0);
        while self.running.len() < CONCURRENCY && self.next_case <= count {
            let n = self.next_case;
            self.next_case += 1;
            if n.is_multiple_of(50) || n == 1 {
                eprintln!("case {n}/{count}");
            }
            match ctl.connect(&format!("{}/runCase?case={n}&agent={AGENT}", self.base), self.opts.clone()) {
                Ok(id) => {
                    self.running.insert(id);
                }
                // The case is lost (the report says so); carry on with the rest.
                Err(e) => eprintln!("cannot start case {n}: {e}"),
            }
        }
        if self.running.is_empty() && self.next_case > count {
            self.phase = Phase::Report;
            if let Err(e) = ctl.connect(&format!("{}/updateReports?agent={AGENT}", self.base), self.opts.clone()) {
                eprintln!("cannot connect to {}/updateReports: {e}", self.base);
                self.failed = true;
                self.phase = Phase::Done;
            }
        }
    }

    /// A connection ended (closed, or never opened).
    fn ended(&mut self, ctl: &mut Ctl<'_>, id: ClientId) {
        match self.phase {
            Phase::Count if self.count.is_none() => {
                eprintln!("getCaseCount ended without a count");
                self.failed = true;
                self.phase = Phase::Done;
            }
            Phase::Count => {
                self.phase = Phase::Cases;
                self.fill(ctl);
            }
            Phase::Cases => {
                self.running.remove(&id);
                self.fill(ctl);
            }
            Phase::Report => {
                eprintln!("reports updated");
                self.phase = Phase::Done;
            }
            Phase::Done => {}
        }
    }
}

impl ClientHandler for Autobahn {
    fn on_message(&mut self, ws: &mut ClientWs<'_>, message: Message) {
        match self.phase {
            Phase::Count => match &message {
                Message::Text(t) => match t.trim().parse::<u32>() {
                    Ok(n) => self.count = Some(n),
                    Err(_) => eprintln!("getCaseCount answered {t:?}, not a number"),
                },
                Message::Binary(_) => eprintln!("getCaseCount answered a binary message"),
            },
            // Echo as received: text as text, binary as binary.
            Phase::Cases => {
                ws.send(message);
            }
            Phase::Report | Phase::Done => {}
        }
    }

    fn on_close(&mut self, ws: &mut ClientWs<'_>, _code: CloseCode, _description: &str) {
        let id = ws.id();
        self.ended(ws.ctl(), id);
    }

    fn on_connect_failed(&mut self, ctl: &mut Ctl<'_>, id: ClientId, error: ConnectError) {
        eprintln!("{:?} ({id}): connect failed: {error}", self.phase);
        if self.phase != Phase::Cases {
            self.failed = true;
        }
        self.ended(ctl, id);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let base = base.trim_end_matches('/').to_owned();
    let mut opts = ConnectOptions::default();
    // Section 9 sends messages and frames of up to 16 MiB.
    opts.config.max_received_frame_size = 16 << 20;
    opts.config.max_received_message_size = 16 << 20;
    opts.config.max_buffered = Some(64 << 20);
    opts.config.fragment_outgoing_messages = false;
    // Sections 12 and 13: permessage-deflate, offered as
    // `permessage-deflate; client_no_context_takeover; client_max_window_bits`, which
    // lets the fuzzing server pick every parameter its cases need. RINGWIRE_DEFLATE=off
    // offers nothing (those sections are then UNIMPLEMENTED).
    if std::env::var("RINGWIRE_DEFLATE").as_deref() != Ok("off") {
        let mut deflate = ringwire_conn::deflate::DeflateConfig::default();
        deflate.client_no_context_takeover = true;
        opts.config.deflate = Some(deflate);
    }
    opts.handshake_timeout = Some(std::time::Duration::from_secs(30));

    let mut client = match ClientLoop::new(IoChoice::Auto) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start the event loop: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("io backend: {} ({})", client.detected().backend, client.detected().reason);
    let mut agent = Autobahn {
        base: base.clone(),
        opts: opts.clone(),
        phase: Phase::Count,
        count: None,
        next_case: 1,
        running: HashSet::new(),
        failed: false,
    };
    if let Err(e) = client.connect(&format!("{base}/getCaseCount"), opts) {
        eprintln!("cannot connect to {base}/getCaseCount: {e}");
        std::process::exit(1);
    }
    if let Err(e) = client.run(&mut agent) {
        eprintln!("event loop failed: {e}");
        std::process::exit(1);
    }
    eprintln!("ran {} case(s)", agent.count.unwrap_or(0));
    if agent.failed {
        std::process::exit(1);
    }
}
