//! Pieces shared by the peer echo servers: the server side of the upgrade handshake
//! (for fastwebsockets, which leaves it to the application) and the listener setup.

use crate::wire::accept_key;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The message size limit every peer is given (64 MiB), the same for all servers.
pub const MAX_MESSAGE: usize = 64 << 20;

/// Reads an HTTP/1.1 upgrade request from `stream` (TCP, or TLS over it) and answers `101 Switching
/// Protocols` (no extensions, so no compression). Fails with a clear error on anything
/// else, after answering `400`. The client must not send frames before the 101; bytes
/// after the request head are an error.
pub async fn accept_upgrade<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_upgrade(&buf) {
            Ok(None) => continue,
            Ok(Some((key, used))) => {
                if used != buf.len() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "data sent before the 101"));
                }
                let resp = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: {}\r\n\r\n",
                    accept_key(&key)
                );
                stream.write_all(resp.as_bytes()).await?;
                return Ok(());
            }
            Err(msg) => {
                let _ = stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    .await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
            }
        }
    }
}

/// Parses an upgrade request: `Ok(None)` needs more bytes, `Ok(Some((key, head_len)))`
/// is a valid request, `Err` says what is wrong.
pub fn parse_upgrade(buf: &[u8]) -> Result<Option<(String, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= 8192 => return Ok(None),
        Ok(httparse::Status::Partial) => return Err("request head longer than 8 KiB".into()),
        Err(e) => return Err(format!("bad request: {e}")),
    };
    if req.method != Some("GET") {
        return Err(format!("method {:?}, want GET", req.method));
    }
    let get = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    if !get("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err("missing Upgrade: websocket".into());
    }
    if !get("connection").is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))) {
        return Err("missing Connection: Upgrade".into());
    }
    if get("sec-websocket-version") != Some("13") {
        return Err("Sec-WebSocket-Version is not 13".into());
    }
    let key = get("sec-websocket-key").ok_or("missing Sec-WebSocket-Key")?;
    Ok(Some((key.to_string(), n)))
}

/// Binds a listener on `addr` with a large accept backlog (the idle scenario opens
/// tens of thousands of connections quickly).
pub fn listen(addr: std::net::SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let sock = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_request_parsing() {
        let req = crate::wire::upgrade_request("h", "/", "dGhlIHNhbXBsZSBub25jZQ==", None);
        assert_eq!(parse_upgrade(&req), Ok(Some(("dGhlIHNhbXBsZSBub25jZQ==".into(), req.len()))));
        assert_eq!(parse_upgrade(&req[..10]), Ok(None));
        let post = String::from_utf8(req.clone()).unwrap().replace("GET", "POST");
        assert!(parse_upgrade(post.as_bytes()).is_err());
        let v8 = String::from_utf8(req).unwrap().replace("Version: 13", "Version: 8");
        assert!(parse_upgrade(v8.as_bytes()).unwrap_err().contains("13"));
    }
}
