//! Peer server: fastwebsockets 0.10 on a tokio current-thread runtime (one thread).
//!
//! `--mode echo` (default) answers every text/binary message with the same message;
//! `--mode broadcast` sends every message received to every connected client (the sender
//! included; each connection's writer batches queued frames into one flush). The upgrade is answered by `ringwire_loadtest::peer::accept_upgrade` (a
//! plain httparse handshake, leaner than going through hyper; it runs once per
//! connection and is not on the measured echo path). Limits: 64 MiB messages, no
//! compression (fastwebsockets has none).

use clap::{Parser, ValueEnum};
use fastwebsockets::{FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, Role, WebSocket};
use ringwire_loadtest::peer::{MAX_MESSAGE, accept_upgrade, listen};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(about = "fastwebsockets echo/broadcast peer (one thread)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
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

type Out = (OpCode, Arc<[u8]>);
type Registry = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Out>>>>;

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(serve(args)) {
        eprintln!("peer-fastwebsockets: {e}");
        std::process::exit(1);
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = listen(args.addr)?;
    let mode = if matches!(args.mode, Mode::Broadcast) { "broadcast" } else { "echo" };
    eprintln!("peer-fastwebsockets {mode} listening on {}", listener.local_addr()?);
    let registry: Registry = Arc::default();
    let mut next_id = 0u64;
    loop {
        let (mut stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        next_id += 1;
        let id = next_id;
        let registry = registry.clone();
        let mode = args.mode;
        tokio::spawn(tokio::task::unconstrained(async move {
            if let Err(e) = accept_upgrade(&mut stream).await {
                eprintln!("handshake: {e}");
                return;
            }
            let res = match mode {
                Mode::Echo => echo(stream).await,
                Mode::Broadcast => broadcast(stream, id, registry).await,
            };
            if let Err(e) = res {
                eprintln!("connection {id}: {e}");
            }
        }));
    }
}

async fn echo(stream: TcpStream) -> Result<(), fastwebsockets::WebSocketError> {
    let mut ws = WebSocket::after_handshake(stream, Role::Server);
    ws.set_max_message_size(MAX_MESSAGE);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn broadcast(stream: TcpStream, id: u64, registry: Registry) -> Result<(), fastwebsockets::WebSocketError> {
    let (r, w) = stream.into_split();
    let (rd, mut wr) =
        fastwebsockets::after_handshake_split(r, tokio::io::BufWriter::with_capacity(64 * 1024, w), Role::Server);
    let mut rd = FragmentCollectorRead::new(rd);
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    registry.lock().expect("registry lock").insert(id, tx.clone());
    // The writer drains whatever is queued into a buffer and flushes once per batch, so a
    // burst of broadcasts costs one write per connection, not one per frame.
    let writer = tokio::spawn(tokio::task::unconstrained(async move {
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some((op, data)) = next {
                let close = op == OpCode::Close;
                if wr.write_frame(Frame::new(true, op, None, Payload::Borrowed(&data))).await.is_err() || close {
                    let _ = wr.flush().await;
                    return;
                }
                next = rx.try_recv().ok();
            }
            if wr.flush().await.is_err() {
                return;
            }
        }
    }));
    let result = loop {
        // Pongs and the close reply go through this connection's own writer queue.
        let mut send = |f: Frame<'_>| {
            let _ = tx.send((f.opcode, Arc::from(&f.payload[..])));
            std::future::ready(Ok::<(), std::io::Error>(()))
        };
        let frame = match rd.read_frame(&mut send).await {
            Ok(f) => f,
            Err(e) => break Err(e),
        };
        match frame.opcode {
            OpCode::Close => break Ok(()),
            OpCode::Text | OpCode::Binary => {
                let data: Arc<[u8]> = Arc::from(&frame.payload[..]);
                registry
                    .lock()
                    .expect("registry lock")
                    .retain(|_, peer| peer.send((frame.opcode, data.clone())).is_ok());
            }
            _ => {}
        }
    };
    registry.lock().expect("registry lock").remove(&id);
    drop(tx);
    let _ = writer.await;
    result
}
