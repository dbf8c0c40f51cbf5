//! Chat rooms with topics: a client joins rooms and talks in those it joined; the
//! server announces the time to the `clock` room from another thread.
//!
//! Lines a client sends: `/join ROOM`, `/leave ROOM`, `/rooms`, or `ROOM text`
//! (sent to everyone else in ROOM, if the sender is in it).
//!
//! `cargo run --example rooms -p ringwire-server`, then connect several clients
//! (e.g. `websocat ws://127.0.0.1:9003`).
use ringwire_conn::Message;
use ringwire_server::{Handler, Server, ServerConfig, Ws};
use std::time::{Duration, SystemTime};

#[derive(Clone)]
struct Rooms;

impl Handler for Rooms {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        let Message::Text(text) = message else { return };
        let reply = match text.split_once(' ') {
            Some(("/join", room)) => match ws.subscribe(room) {
                Ok(true) => format!("* joined {room}"),
                Ok(false) => format!("* already in {room}"),
                Err(e) => format!("* cannot join {room}: {e}"),
            },
            Some(("/leave", room)) => match ws.unsubscribe(room) {
                true => format!("* left {room}"),
                false => format!("* not in {room}"),
            },
            _ if &*text == "/rooms" => {
                let rooms: Vec<&str> = ws.topics().map(|t| &**t).collect();
                format!("* in: {}", rooms.join(", "))
            }
            Some((room, line)) if ws.is_subscribed(room) => {
                let who = ws.id();
                match ws.publish(room, format!("{room} {who}: {line}")) {
                    Ok(()) => return,
                    // This worker's members got it; tell the sender who did not.
                    Err(e) => format!("* not delivered everywhere: {e}"),
                }
            }
            _ => "* /join ROOM, /leave ROOM, /rooms, or ROOM text (in a room you joined)".to_owned(),
        };
        ws.send_text(reply);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::bind(ServerConfig::new("127.0.0.1:9003".parse()?))?;
    println!("rooms on ws://{}", server.local_addr());
    let handle = server.handle();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(10));
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
            // Err: some worker is too busy to take it (or the server is stopping).
            let _ = handle.publish("clock", format!("clock: {now} s since the epoch"));
        }
    });
    server.run_until_signal(Rooms)?;
    Ok(())
}
