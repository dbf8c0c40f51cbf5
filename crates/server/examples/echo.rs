//! The smallest embedding: an echo server. `cargo run --example echo -p ringwire-server`
use ringwire_conn::Message;
use ringwire_server::{Handler, Server, ServerConfig, Ws};

#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        ws.send(message);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::bind(ServerConfig::new("127.0.0.1:9001".parse()?))?;
    println!("echo on ws://{} ({})", server.local_addr(), server.backend().backend);
    server.run_until_signal(Echo)?;
    Ok(())
}
