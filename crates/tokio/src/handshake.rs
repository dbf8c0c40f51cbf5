//! The opening handshakes on a stream: [`accept`] (server) and [`connect`] (client).

use crate::{Error, HANDSHAKE_TIMEOUT, WebSocketStream};
use ringwire_conn::handshake::{self, Accept, ClientRequest, HandshakeError, HandshakeLimits, Request, Response};
use ringwire_conn::url::WsUrl;
use ringwire_conn::{Config, Role};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Reads until `buf` holds a whole upgrade request (httparse decides, as the native server
/// does): the request and the head's length, or why it is refused (a head over the limit
/// included). The bytes read past the head stay in `buf`.
async fn read_request<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    limits: &HandshakeLimits,
) -> Result<Result<(Request, usize), HandshakeError>, io::Error> {
    let mut chunk = [0u8; 2048];
    loop {
        match handshake::parse_request(buf, limits) {
            Ok(Some(done)) => return Ok(Ok(done)),
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The most body of a refusal the client reads before giving up on the answer.
const MAX_REFUSAL_BODY: usize = 64 << 10;

/// Writes a refusal and shuts the stream down; errors change nothing (the caller reports
/// the refusal).
async fn refuse<S: AsyncWrite + Unpin>(io: &mut S, response: &[u8]) {
    let _ = io.write_all(response).await;
    let _ = io.shutdown().await;
}

/// Accepts a WebSocket upgrade on `io` (a `TcpStream` from a tokio listener, or any
/// stream): reads the request (at most 8 KiB of head, within [`HANDSHAKE_TIMEOUT`]),
/// answers 101 (with the permessage-deflate the config allows and the client offers) or
/// the error's status, and returns the open connection.
///
/// `io` is used as it is: for a `TcpStream`, call [`apply_socket_options`] first
/// (`TCP_NODELAY`, and `SO_KEEPALIVE` with `use_native_keepalive`), as the native server
/// does for its sockets.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(io: S, config: Config) -> Result<WebSocketStream<S>, Error> {
    accept_with(io, config, |_| Ok(Accept::default())).await
}

/// [`accept`], with `decide` looking at the request first: `Ok(accept)` answers 101 with
/// its choices (subprotocol, headers, cookies), `Err((status, reason))` refuses (the
/// reason goes in `X-WebSocket-Reject-Reason`).
pub async fn accept_with<S, F>(mut io: S, config: Config, decide: F) -> Result<WebSocketStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> Result<Accept, (u16, String)>,
{
    let config_ok = config.deflate.as_ref().map_or(Ok(()), |d| d.validate());
    config_ok.map_err(|e| Error::InvalidConfig(e.to_string()))?;
    let limits = HandshakeLimits::default();
    let mut buf = Vec::new();
    let parsed = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_request(&mut io, &mut buf, &limits))
        .await
        .map_err(|_| Error::HandshakeTimeout(HANDSHAKE_TIMEOUT))??;
    let (request, used) = match parsed {
        Ok(r) => r,
        Err(e) => {
            refuse(&mut io, &e.response()).await;
            return Err(e.into());
        }
    };
    let mut accept = match decide(&request) {
        Ok(a) => a,
        Err((status, reason)) => {
            refuse(&mut io, &handshake::reject_response(status, Some(&reason), &[])).await;
            return Err(Error::Refused(status, reason));
        }
    };
    accept.deflate = negotiate(&request, &config);
    let response = match request.accept(&accept) {
        Ok(r) => r,
        Err(e) => {
            refuse(&mut io, &handshake::reject_response(500, Some(&e.to_string()), &[])).await;
            return Err(Error::Accept(e));
        }
    };
    io.write_all(&response).await?;
    let info = crate::server_info(&request, &accept, None);
    Ok(WebSocketStream::from_partially_read(io, Role::Server, config, info, &buf[used..]))
}

/// The permessage-deflate to agree for `request` under `config` (none without assembly:
/// there would be no message to inflate).
pub(crate) fn negotiate(request: &Request, config: &Config) -> Option<(ringwire_conn::deflate::DeflateParams, String)> {
    let deflate = config.deflate.as_ref().filter(|_| config.assemble_fragments)?;
    request.negotiate_deflate(deflate)
}

/// A client's socket: plain TCP for `ws://`, TLS over it for `wss://`.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl MaybeTlsStream {
    /// The TCP socket under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connects to a `ws://` or `wss://` URL with the client defaults (for `wss://`, the
/// system's trusted roots, SNI and name checks from the URL's host).
pub async fn connect(url: &str) -> Result<(WebSocketStream<MaybeTlsStream>, Response), Error> {
    connect_with(url, Config::client()).await
}

/// [`connect`] with `config` (its deflate settings are offered).
pub async fn connect_with(url: &str, config: Config) -> Result<(WebSocketStream<MaybeTlsStream>, Response), Error> {
    #[cfg(feature = "tls")]
    {
        connect_tls(url, config, None).await
    }
    #[cfg(not(feature = "tls"))]
    {
        let url = WsUrl::parse(url)?;
        if url.secure {
            return Err(Error::TlsUnavailable);
        }
        let tcp = tcp_connect(&url, &config).await?;
        let peer = tcp.peer_addr().ok().map(|a| a.ip().to_string());
        client_handshake(&url, MaybeTlsStream::Plain(tcp), config, peer).await
    }
}

/// [`connect_with`], with `tls` for a `wss://` URL instead of the default (custom roots,
/// a client certificate): the config's ALPN is left as given.
#[cfg(feature = "tls")]
pub async fn connect_tls(
    url: &str,
    config: Config,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<(WebSocketStream<MaybeTlsStream>, Response), Error> {
    let url = WsUrl::parse(url)?;
    let tcp = tcp_connect(&url, &config).await?;
    let peer = tcp.peer_addr().ok().map(|a| a.ip().to_string());
    let io = if url.secure {
        let tls = match tls {
            Some(t) => t,
            None => crate::tls::default_client_config()?,
        };
        let name = rustls::pki_types::ServerName::try_from(url.host_str())
            .map_err(|_| Error::Url(ringwire_conn::url::UrlError::InvalidHost(url.host_str())))?;
        let connecting = tokio_rustls::TlsConnector::from(tls).connect(name, tcp);
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
            .await
            .map_err(|_| Error::HandshakeTimeout(HANDSHAKE_TIMEOUT))?
            .map_err(Error::Tls)?;
        MaybeTlsStream::Tls(Box::new(tls))
    } else {
        MaybeTlsStream::Plain(tcp)
    };
    client_handshake(&url, io, config, peer).await
}

/// Opens the TCP connection for `url`: each resolved address in turn, within
/// [`HANDSHAKE_TIMEOUT`], `TCP_NODELAY` as the config says.
async fn tcp_connect(url: &WsUrl, config: &Config) -> Result<TcpStream, Error> {
    let connecting = TcpStream::connect((url.host_str(), url.port));
    let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| Error::HandshakeTimeout(HANDSHAKE_TIMEOUT))??;
    apply_socket_options(&tcp, config)?;
    Ok(tcp)
}

/// The config's socket options on a TCP socket, as the native server and client apply them:
/// `TCP_NODELAY` as `disable_nagle_algorithm` says, and with `use_native_keepalive` and a
/// `keepalive`, `SO_KEEPALIVE` with `TCP_KEEPIDLE` at its interval (whole seconds, 1 to
/// 32,767) instead of the connection's ping timer. [`connect`] applies them itself.
pub fn apply_socket_options(tcp: &TcpStream, config: &Config) -> io::Result<()> {
    tcp.set_nodelay(config.disable_nagle_algorithm)?;
    if config.use_native_keepalive
        && let Some(k) = config.keepalive
    {
        let secs = k.interval.as_secs() + u64::from(k.interval.subsec_nanos() > 0);
        let idle = std::time::Duration::from_secs(secs.clamp(1, 32_767));
        socket2::SockRef::from(tcp).set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle))?;
    }
    Ok(())
}

/// The client's upgrade on a stream you connected yourself (through a proxy, over a
/// Unix socket, TLS of your own): sends the request for `url` on `io` and reads the
/// server's answer, within [`HANDSHAKE_TIMEOUT`].
pub async fn client_async<S: AsyncRead + AsyncWrite + Unpin>(
    url: &WsUrl,
    io: S,
    config: Config,
) -> Result<(WebSocketStream<S>, Response), Error> {
    let peer = match &url.host {
        ringwire_conn::url::Host::Ip(ip) => Some(ip.to_string()),
        ringwire_conn::url::Host::Name(_) => None,
    };
    client_handshake(url, io, config, peer).await
}

/// [`client_async`], with the address the connection's `remote_address` reports.
async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    url: &WsUrl,
    mut io: S,
    config: Config,
    peer: Option<String>,
) -> Result<(WebSocketStream<S>, Response), Error> {
    let mut request = ClientRequest::new(
        &url.host.to_string(),
        url.port,
        &url.resource,
        &[],
        None,
        &[],
        13,
        ringwire_conn::random_key(),
    )?;
    if let Some(deflate) = config.deflate.clone().filter(|_| config.assemble_fragments) {
        request = request.with_deflate(deflate);
    }
    let handshake = async {
        io.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 2048];
        loop {
            if let Some((response, used)) = request.verify_response(&buf)? {
                return Ok::<_, Error>((response, buf.split_off(used)));
            }
            // A refusal's body is read only so far: the head limit and 64 KiB more.
            if buf.len() > HandshakeLimits::default().max_head_bytes + MAX_REFUSAL_BODY {
                return Err(Error::ClientHandshake(handshake::ClientHandshakeError::Malformed(
                    "response larger than the head limit and 64 KiB of body".into(),
                )));
            }
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let (response, rest) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| Error::HandshakeTimeout(HANDSHAKE_TIMEOUT))??;
    let info = request.conn_info(&response, peer);
    Ok((WebSocketStream::from_partially_read(io, Role::Client, config, info, &rest), response))
}
