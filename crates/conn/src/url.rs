//! `ws://` and `wss://` URLs: parsing, the `Host` header and the request target, and resolution.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// A scheme other than `ws` or `wss`.
    #[error("unsupported scheme {0:?}: only ws:// and wss:// URLs are supported")]
    UnsupportedScheme(String),
    /// No `scheme://` at all.
    #[error("{0:?} is not a ws:// or wss:// URL (expected ws[s]://host[:port][/path][?query])")]
    NotAUrl(String),
    /// The host part is empty.
    #[error("the URL has no host")]
    MissingHost,
    /// The host contains characters a host name cannot.
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    /// An IPv6 address without brackets (`ws://::1/` instead of `ws://[::1]/`).
    #[error("IPv6 address {0:?} must be in brackets: ws://[addr]:port/")]
    UnbracketedIpv6(String),
    /// The port is not a number in 1..=65535.
    #[error("invalid port {0:?}: expected a number in 1..=65535")]
    InvalidPort(String),
    /// `user:password@` in the authority.
    #[error("credentials in the URL (user@host) are not supported")]
    Credentials,
    /// A `#fragment`: RFC 6455 section 3 forbids fragments in WebSocket URIs.
    #[error("a WebSocket URL may not have a #fragment (RFC 6455 section 3)")]
    Fragment,
    /// Spaces or control characters in the path or query, which would break the request line.
    #[error("the path or query contains a space or control character (percent-encode it)")]
    InvalidPath,
}

/// The host of a [`WsUrl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IPv4 or IPv6 literal (`127.0.0.1`, `[::1]`).
    Ip(IpAddr),
    /// A name to resolve.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// A parsed `ws[s]://host[:port][/path][?query]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`: the connection speaks TLS.
    pub secure: bool,
    /// The host (IPv6 literals without brackets).
    pub host: Host,
    /// The port (80 for `ws://`, 443 for `wss://` when the URL names none).
    pub port: u16,
    /// The request target: the path (at least `/`) and the `?query` if any.
    pub resource: String,
}

impl WsUrl {
    /// Parses a `ws://` or `wss://` URL; any other scheme is refused with a clear error.
    ///
    /// ```
    /// use ringwire_conn::url::{Host, WsUrl};
    /// let u = WsUrl::parse("ws://[::1]:9001/chat?room=1").unwrap();
    /// assert_eq!(u.host, Host::Ip("::1".parse().unwrap()));
    /// assert_eq!((u.port, u.resource.as_str()), (9001, "/chat?room=1"));
    /// assert_eq!(u.host_header(), "[::1]:9001");
    /// let u = WsUrl::parse("wss://example.com/feed").unwrap();
    /// assert_eq!((u.secure, u.port, u.host_header().as_str()), (true, 443, "example.com"));
    /// ```
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(UrlError::NotAUrl(url.to_owned()));
        };
        let secure = scheme.eq_ignore_ascii_case("wss");
        if !secure && !scheme.eq_ignore_ascii_case("ws") {
            return Err(UrlError::UnsupportedScheme(scheme.to_owned()));
        }
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.contains('@') {
            return Err(UrlError::Credentials);
        }
        let (host, port) = split_host_port(authority, if secure { 443 } else { 80 })?;
        let resource = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        if resource.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UrlError::InvalidPath);
        }
        Ok(WsUrl { secure, host, port, resource })
    }

    /// The port the scheme implies: 443 for `wss://`, 80 for `ws://`.
    pub fn default_port(&self) -> u16 {
        if self.secure { 443 } else { 80 }
    }

    /// The `Host` header value: the host, with `:port` unless it is the scheme's default.
    pub fn host_header(&self) -> String {
        if self.port == self.default_port() { self.host.to_string() } else { format!("{}:{}", self.host, self.port) }
    }

    /// The host as the handshake wants it (a name, or an IP literal without brackets).
    pub fn host_str(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => n.clone(),
        }
    }

    /// The socket addresses to try, in order. IP literals need no lookup; names go through
    /// the system resolver (`getaddrinfo`, blocking).
    pub fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        match &self.host {
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(n) => {
                let addrs: Vec<SocketAddr> = (n.as_str(), self.port).to_socket_addrs()?.collect();
                if addrs.is_empty() {
                    return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no addresses"));
                }
                Ok(addrs)
            }
        }
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.resource)
    }
}

impl std::str::FromStr for WsUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        Self::parse(s)
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(Host, u16), UrlError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(UrlError::InvalidHost(authority.to_owned()));
        };
        let ip: Ipv6Addr = addr.parse().map_err(|_| UrlError::InvalidHost(authority.to_owned()))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| UrlError::InvalidHost(authority.to_owned()))?),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        if authority.matches(':').count() > 1 {
            return Err(UrlError::UnbracketedIpv6(authority.to_owned()));
        }
        let (name, port) = match authority.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (authority, None),
        };
        if name.is_empty() {
            return Err(UrlError::MissingHost);
        }
        let host = match name.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) => {
                let ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
                if !ok || name.contains(':') {
                    return Err(UrlError::InvalidHost(name.to_owned()));
                }
                Host::Name(name.to_ascii_lowercase())
            }
        };
        (host, port)
    };
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(UrlError::InvalidPort(p.to_owned())),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> WsUrl {
        WsUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_hosts_ports_and_targets() {
        let u = ok("ws://127.0.0.1:9001/runCase?case=3&agent=ringwire");
        assert_eq!(u.host, Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(u.port, 9001);
        assert_eq!(u.resource, "/runCase?case=3&agent=ringwire");
        assert_eq!(u.host_header(), "127.0.0.1:9001");

        let u = ok("WS://Example.COM");
        assert_eq!((u.host.clone(), u.port, u.resource.as_str()), (Host::Name("example.com".into()), 80, "/"));
        assert_eq!(u.host_header(), "example.com");

        let u = ok("ws://[::1]/x");
        assert_eq!((u.port, u.host_header().as_str(), u.host_str().as_str()), (80, "[::1]", "::1"));
        assert_eq!(ok("ws://h?q=1").resource, "/?q=1");
        assert_eq!(ok("ws://h:1").port, 1);
        assert_eq!(ok("ws://h:65535").port, 65535);
        assert!(!ok("ws://h").secure);
    }

    #[test]
    fn parses_wss_with_port_443_by_default() {
        let u = ok("wss://Example.com/chat");
        assert_eq!(
            (u.secure, u.host.clone(), u.port, u.resource.as_str()),
            (true, Host::Name("example.com".into()), 443, "/chat")
        );
        assert_eq!(u.host_header(), "example.com");
        assert_eq!(u.to_string(), "wss://example.com:443/chat");
        let u = ok("WSS://127.0.0.1:8443");
        assert_eq!((u.secure, u.port, u.host_header().as_str()), (true, 8443, "127.0.0.1:8443"));
        assert_eq!(ok("wss://[::1]:80/").host_header(), "[::1]:80");
        assert_eq!(ok("ws://h:443/").host_header(), "h:443");
    }

    #[test]
    fn refuses_bad_urls_clearly() {
        let err = |s: &str| WsUrl::parse(s).unwrap_err();
        assert_eq!(err("wss://u@example.com/"), UrlError::Credentials);
        assert_eq!(
            err("https://example.com/").to_string(),
            "unsupported scheme \"https\": only ws:// and wss:// URLs are supported"
        );
        assert_eq!(err("http://example.com/"), UrlError::UnsupportedScheme("http".into()));
        assert_eq!(err("example.com"), UrlError::NotAUrl("example.com".into()));
        assert_eq!(err("ws://"), UrlError::MissingHost);
        assert_eq!(err("ws://:80/"), UrlError::MissingHost);
        assert_eq!(err("ws://h:0/"), UrlError::InvalidPort("0".into()));
        assert_eq!(err("ws://h:70000/"), UrlError::InvalidPort("70000".into()));
        assert_eq!(err("ws://h:+80/"), UrlError::InvalidPort("+80".into()));
        assert_eq!(err("ws://h:/"), UrlError::InvalidPort("".into()));
        assert_eq!(err("ws://u:p@h/"), UrlError::Credentials);
        assert_eq!(err("ws://h/#frag"), UrlError::Fragment);
        assert_eq!(err("ws://h/a b"), UrlError::InvalidPath);
        assert_eq!(err("ws://[::1/"), UrlError::InvalidHost("[::1".into()));
        assert_eq!(err("ws://[zz]/"), UrlError::InvalidHost("[zz]".into()));
        assert_eq!(err("ws://[::1]x/"), UrlError::InvalidHost("[::1]x".into()));
        assert_eq!(err("ws://::1/"), UrlError::UnbracketedIpv6("::1".into()));
        assert_eq!(err("ws://ho st/"), UrlError::InvalidHost("ho st".into()));
        assert_eq!(err("ws://h%41/"), UrlError::InvalidHost("h%41".into()));
    }

    #[test]
    fn resolves_literals_without_lookup_and_names_with_it() {
        assert_eq!(ok("ws://[::1]:5/").resolve().unwrap(), vec!["[::1]:5".parse().unwrap()]);
        let addrs = ok("ws://localhost:7/").resolve().unwrap();
        assert!(addrs.iter().all(|a| a.port() == 7 && a.ip().is_loopback()), "{addrs:?}");
        assert!(ok("ws://no-such-host.invalid/").resolve().is_err());
    }
}
