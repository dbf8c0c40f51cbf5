//! The `ringwire` binary: `ringwire echo` and `ringwire broadcast`.

use clap::Parser;
use clap::error::ErrorKind;
use ringwire::cli::{Cli, Command};
use ringwire_conn::Message;
use ringwire_server::{Handler, Server, Ws};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sends every message back to its sender.
#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        // BufferFull still queues; a peer that never reads is dropped by the buffered limit.
        let _ = ws.send(message, None);
    }
}

/// Sends every message to every connected client, the sender included.
#[derive(Clone)]
struct Broadcast;

impl Handler for Broadcast {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        ws.broadcast(ringwire_server::prepare(message));
    }
}

/// Turns transparent huge pages off for this process unless `MIMALLOC_ALLOW_THP` says
/// otherwise. mimalloc asks for huge pages on its heap, which then becomes resident in
/// 2 MiB steps: with 10,000 idle connections that was ~1,050 bytes of RSS per connection
/// instead of ~700 (docs/scaling.md). Servers holding many small connections are better
/// off without them, as Redis and others advise.
fn disable_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and affects only this process.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

fn main() -> ExitCode {
    disable_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            // One line naming the flag, e.g. "ringwire: invalid value 'x' for '--threads <N>': ...".
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("ringwire: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (name, args) = match &cli.command {
        Command::Echo(a) => ("echo", a),
        Command::Broadcast(a) => ("broadcast", a),
    };
    let server = match Server::bind(args.to_config()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringwire: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "ringwire {name} listening on ws://{} ({}, {} worker(s))",
        server.local_addr(),
        server.backend().backend,
        args.to_config().resolved_threads()
    );
    let result = match cli.command {
        Command::Echo(_) => server.run_until_signal(Echo),
        Command::Broadcast(_) => server.run_until_signal(Broadcast),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringwire: {e}");
            ExitCode::FAILURE
        }
    }
}
