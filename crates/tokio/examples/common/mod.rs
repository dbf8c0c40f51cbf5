//! What the examples share: the address and limits from the command line, and the echo loop.

use futures_util::{SinkExt, StreamExt};
use ringwire_tokio::{Config, WebSocketStream};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};

/// `EXAMPLE [ADDR] [--max-message-size BYTES] [--deflate]`: the address to listen on
/// (default 127.0.0.1:9001), the largest message and frame accepted (default the server's
/// 1 MiB message / 64 KiB frame), and whether to agree permessage-deflate.
pub(crate) fn args() -> Result<(SocketAddr, Config), String> {
    let mut addr: SocketAddr = "127.0.0.1:9001".parse().expect("a literal address");
    let mut config = Config::server();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--max-message-size" => {
                let n = args.next().and_then(|v| v.parse::<usize>().ok());
                let n = n.ok_or("--max-message-size: expected a number of bytes")?;
                config.max_received_message_size = n;
                config.max_received_frame_size = n;
                config.max_buffered = Some(config.max_buffered.unwrap_or(0).max(4 * n));
            }
            "--deflate" => config.deflate = Some(Default::default()),
            a => addr = a.parse().map_err(|e| format!("{a:?} is not an address to listen on: {e}"))?,
        }
    }
    Ok((addr, config))
}

/// Sends back every message until the connection is closed (pings are answered on the
/// way). The stream is polled to its end: after an error or the peer's close it finishes
/// the closing handshake by itself, so neither ends the loop early.
pub(crate) async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    while let Some(message) = ws.next().await {
        let Ok(message) = message else { continue };
        // Refused once a close has begun; next() carries the close on.
        let _ = ws.send(message).await;
    }
}
