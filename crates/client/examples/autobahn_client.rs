//! The Autobahn client gate's agent: follows the fuzzingserver protocol against kosoku (or
//! wstest) and echoes every message of every case.
//!
//! ```text
//! autobahn_client ws://127.0.0.1:9001
//! ```
//!
//! `GET /getCaseCount` answers one text message with the number of cases; each case N runs on
//! `/runCase?case=N&agent=ringwire` and lasts until the server closes; `/updateReports` writes
//! the report. Cases run one after another on one loop (the backend `RINGWIRE_IO` or auto
//! detection picks).

use ringwire_client::{ClientHandler, ClientId, ClientLoop, ClientWs, ConnectError, ConnectOptions, Ctl, IoChoice};
use ringwire_conn::{CloseCode, Message};

const AGENT: &str = "ringwire";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Count,
    Case(u32),
    Report,
    Done,
}

struct Autobahn {
    base: String,
    opts: ConnectOptions,
    phase: Phase,
    count: Option<u32>,
    failed: bool,
}

impl Autobahn {
    /// Starts the step after `self.phase`.
    fn next(&mut self, ctl: &mut Ctl<'_>) {
        let count = self.count.unwrap_or(0);
        self.phase = match self.phase {
            Phase::Count if count > 0 => Phase::Case(1),
            Phase::Case(n) if n < count => Phase::Case(n + 1),
            Phase::Count | Phase::Case(_) => Phase::Report,
            Phase::Report | Phase::Done => Phase::Done,
        };
        let path = match self.phase {
            Phase::Case(n) => format!("/runCase?case={n}&agent={AGENT}"),
            Phase::Report => format!("/updateReports?agent={AGENT}"),
            Phase::Count | Phase::Done => return,
        };
        if let Phase::Case(n) = self.phase
            && (n % 50 == 0 || n == 1)
        {
            eprintln!("case {n}/{count}");
        }
        if let Err(e) = ctl.connect(&format!("{}{path}", self.base), self.opts.clone()) {
            eprintln!("cannot connect to {}{path}: {e}", self.base);
            self.failed = true;
            self.phase = Phase::Done;
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
            Phase::Case(_) => {
                // Echo as received: text as text, binary as binary.
                ws.send(message);
            }
            Phase::Report | Phase::Done => {}
        }
    }

    fn on_close(&mut self, ws: &mut ClientWs<'_>, code: CloseCode, _description: &str) {
        if self.phase == Phase::Count && self.count.is_none() {
            eprintln!("getCaseCount closed ({code}) without a count");
            self.failed = true;
            self.phase = Phase::Done;
            return;
        }
        if self.phase == Phase::Report {
            eprintln!("reports updated");
        }
        self.next(ws.ctl());
    }

    fn on_connect_failed(&mut self, ctl: &mut Ctl<'_>, id: ClientId, error: ConnectError) {
        eprintln!("{:?} ({id}): connect failed: {error}", self.phase);
        if matches!(self.phase, Phase::Case(_)) {
            self.next(ctl); // the case is lost; carry on with the rest
        } else {
            self.failed = true;
            self.phase = Phase::Done;
        }
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
    let mut agent =
        Autobahn { base: base.clone(), opts: opts.clone(), phase: Phase::Count, count: None, failed: false };
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
