//! Peer server: fastwebsockets 0.10 on a tokio current-thread runtime (one thread).
//!
//! `--mode echo` (default) answers every text/binary message with the same message;
//! `--mode broadcast` sends every message received to every connected client (the sender
//! included; each connection's writer batches queued frames into one flush). The upgrade is answered by `ringwire_loadtest::peer::accept_upgrade` (a
//! plain httparse handshake, leaner than going through hyper; it runs once per
//! connection and is not on the measured echo path). Limits: 64 MiB messages, no
//! compression (fastwebsockets has none).
//!
//! `--tls-cert CHAIN.pem --tls-key KEY.pem`: wss, through tokio-rustls (rustls on
//! aws-lc-rs, TLS 1.2 and 1.3, ALPN `http/1.1`, rustls' server defaults otherwise: a
//! stateful session cache and two TLS 1.3 tickets per connection).

use clap::{Parser, ValueEnum};
use fastwebsockets::{FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, Role, WebSocket};
use ringwire_loadtest::peer::{MAX_MESSAGE, accept_upgrade, listen};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
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
    /// Serve wss with this certificate chain (PEM, leaf first).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
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
    let acceptor = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(
            ringwire_loadtest::tls::server_config(cert, key).map_err(std::io::Error::other)?,
        )),
        _ => None,
    };
    let listener = listen(args.addr)?;
    let mode = if matches!(args.mode, Mode::Broadcast) { "broadcast" } else { "echo" };
    let tls = if acceptor.is_some() { " tls" } else { "" };
    eprintln!("peer-fastwebsockets {mode}{tls} listening on {}", listener.local_addr()?);
    let registry: Registry = Arc::default();
    let mut next_id = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        next_id += 1;
        let id = next_id;
        let registry = registry.clone();
        let mode = args.mode;
        let acceptor = acceptor.clone();
        tokio::spawn(tokio::task::unconstrained(async move {
            let res = match acceptor {
                None => connection(stream, mode, id, registry).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => connection(tls, mode, id, registry).await,
                    Err(e) => Err(format!("tls handshake: {e}")),
                },
            };
            if let Err(e) = res {
                eprintln!("connection {id}: {e}");
            }
        }));
    }
}

/// The upgrade, then echo or broadcast until the connection ends.
async fn connection<S: Split>(mut stream: S, mode: Mode, id: u64, registry: Registry) -> Result<(), String> {
    accept_upgrade(&mut stream).await.map_err(|e| format!("handshake: {e}"))?;
    let res = match mode {
        Mode::Echo => echo(stream).await,
        Mode::Broadcast => broadcast(stream, id, registry).await,
    };
    res.map_err(|e| e.to_string())
}

/// A stream that splits into a read and a write half: a TCP stream without a lock
/// between the halves, a TLS stream (one session for both) through `tokio::io::split`.
trait Split: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;
    fn split(self) -> (Self::Read, Self::Write);
}

impl Split for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn split(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl Split for tokio_rustls::server::TlsStream<TcpStream> {
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;
    fn split(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<(), fastwebsockets::WebSocketError> {
    let mut ws = WebSocket::after_handshake(stream, Role::Server);
    ws.set_max_message_size(MAX_MESSAGE);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => {
                // The close reply went out (auto close); end the stream (TLS: close_notify).
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut ws.into_inner()).await;
                return Ok(());
            }
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn broadcast<S: Split>(stream: S, id: u64, registry: Registry) -> Result<(), fastwebsockets::WebSocketError> {
    let (r, w) = stream.split();
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
