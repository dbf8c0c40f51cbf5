//! A chat room: every text message is prefixed with its sender and broadcast to all
//! clients on all workers; joins and leaves are announced. Also shows a server-wide
//! announcement from another thread through `ServerHandle`.
//!
//! `cargo run --example chat -p ringwire-server`, then connect several clients
//! (e.g. `websocat ws://127.0.0.1:9002`).
use ringwire_conn::{CloseCode, Message};
use ringwire_server::{Handler, Server, ServerConfig, Ws};
use std::time::Duration;

#[derive(Clone)]
struct Chat;

impl Chat {
    fn name(ws: &Ws<'_>) -> String {
        format!("{}#{}", ws.remote_address().unwrap_or("?"), ws.worker())
    }
}

impl Handler for Chat {
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        let line = format!("* {} joined", Self::name(ws));
        let _ = ws.broadcast(line);
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        match message {
            Message::Text(text) => {
                let line = format!("{}: {}", Self::name(ws), &*text);
                if let Err(e) = ws.broadcast(line) {
                    // This worker's clients got it; tell the sender who did not.
                    ws.send_text(format!("* not delivered everywhere: {e}"));
                }
            }
            Message::Binary(_) => {
                let _ = ws.close(CloseCode::UNPROCESSABLE_INPUT, "text only");
            }
        }
    }

    fn on_close(&mut self, ws: &mut Ws<'_>, code: CloseCode, _description: &str) {
        let line = format!("* {} left ({})", Self::name(ws), code.as_u16());
        let _ = ws.broadcast(line);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::bind(ServerConfig::new("127.0.0.1:9002".parse()?))?;
    println!("chat on ws://{}", server.local_addr());
    let handle = server.handle();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(60));
            // Err: some worker is too busy to take it (or the server is stopping); an
            // announcement can be skipped.
            let _ = handle.broadcast(format!("* {} people here", handle.connections()));
        }
    });
    server.run_until_signal(Chat)?;
    Ok(())
}
