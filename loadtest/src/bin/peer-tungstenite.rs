//! Peer server: tokio-tungstenite 0.30 on a tokio current-thread runtime (one thread).
//!
//! `--mode echo` (default) is the crate's own echo example (`read.forward(write)` over the
//! split stream, which batches writes until the read side would block); `--mode
//! broadcast` sends every message received to every connected client (the sender
//! included). Limits: 64 MiB messages and frames, no compression (none offered).

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use ringwire_loadtest::peer::{MAX_MESSAGE, listen};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

#[derive(Parser)]
#[command(about = "tokio-tungstenite echo/broadcast peer (one thread)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9002")]
    addr: SocketAddr,
    /// What to do with received messages.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    mode: Mode,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Echo,
    Broadcast,
}

type Registry = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>>;

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(serve(args)) {
        eprintln!("peer-tungstenite: {e}");
        std::process::exit(1);
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = listen(args.addr)?;
    let mode = if matches!(args.mode, Mode::Broadcast) { "broadcast" } else { "echo" };
    eprintln!("peer-tungstenite {mode} listening on {}", listener.local_addr()?);
    let registry: Registry = Arc::default();
    let mut next_id = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        next_id += 1;
        let id = next_id;
        let registry = registry.clone();
        let mode = args.mode;
        tokio::spawn(async move {
            let res = match mode {
                Mode::Echo => echo(stream).await,
                Mode::Broadcast => broadcast(stream, id, registry).await,
            };
            if let Err(e) = res {
                eprintln!("connection {id}: {e}");
            }
        });
    }
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE))
}

async fn echo(stream: TcpStream) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let ws = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await?;
    let (write, read) = ws.split();
    match read.try_filter(|m| std::future::ready(m.is_text() || m.is_binary())).forward(write).await {
        // After the closing handshake `forward` closes the sink once more: a normal end.
        Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => Ok(()),
        other => other,
    }
}

async fn broadcast(
    stream: TcpStream,
    id: u64,
    registry: Registry,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let ws = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await?;
    let (mut write, mut read) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    registry.lock().expect("registry lock").insert(id, tx);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if write.feed(m).await.is_err() {
                return;
            }
            // Batch whatever is already queued, then flush once.
            while let Ok(m) = rx.try_recv() {
                if write.feed(m).await.is_err() {
                    return;
                }
            }
            if write.flush().await.is_err() {
                return;
            }
        }
    });
    let result = loop {
        match read.next().await {
            None => break Ok(()),
            Some(Err(e)) => break Err(e),
            Some(Ok(m)) if m.is_text() || m.is_binary() => {
                registry.lock().expect("registry lock").retain(|_, peer| peer.send(m.clone()).is_ok());
            }
            Some(Ok(_)) => {}
        }
    };
    registry.lock().expect("registry lock").remove(&id);
    writer.abort();
    result
}
