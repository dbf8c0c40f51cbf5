//! Peer server: ringwire's tokio adapter (ringwire-tokio) on a tokio current-thread runtime
//! (one thread), the same shape as the fastwebsockets and tokio-tungstenite peers.
//!
//! Echo only: every text/binary message is sent back with `SinkExt::send` (the code in the
//! crate's docs and examples). The upgrade goes through the adapter's own `accept`. Limits:
//! 64 MiB messages and frames, no keepalive and no compression (as the other peers).

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use ringwire_loadtest::peer::{MAX_MESSAGE, listen};
use ringwire_tokio::Config;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(about = "ringwire-tokio echo peer (one thread)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9003")]
    addr: SocketAddr,
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(serve(args)) {
        eprintln!("peer-ringwire-tokio: {e}");
        std::process::exit(1);
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = listen(args.addr)?;
    eprintln!("peer-ringwire-tokio echo listening on {}", listener.local_addr()?);
    let mut config = Config::server();
    config.max_received_frame_size = MAX_MESSAGE;
    config.max_received_message_size = MAX_MESSAGE;
    config.max_buffered = Some(2 * MAX_MESSAGE);
    config.keepalive = None;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let config = config.clone();
        tokio::spawn(async move {
            let mut ws = match ringwire_tokio::accept(stream, config).await {
                Ok(ws) => ws,
                Err(e) => return eprintln!("upgrade: {e}"),
            };
            while let Some(message) = ws.next().await {
                let Ok(message) = message else { continue };
                let _ = ws.send(message).await;
            }
        });
    }
}
