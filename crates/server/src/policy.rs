//! The `Host` and `Origin` policy applied to every upgrade request before the handler
//! sees it (see `ServerConfig::allowed_hosts` and `ServerConfig::allowed_origins`).

use crate::ServerConfig;
use std::net::IpAddr;

/// `Err(reason for the 403)` when `host` (the `Host` header) is not one this server
/// answers to.
pub(crate) fn check_host(cfg: &ServerConfig, host: &str) -> Result<(), String> {
    if cfg.allow_any_host {
        return Ok(());
    }
    let name = host_name(host);
    let allowed = if !cfg.allowed_hosts.is_empty() {
        cfg.allowed_hosts.iter().any(|a| host_name(a).eq_ignore_ascii_case(name))
    } else if cfg.addr.ip().is_loopback() {
        names_loopback(name)
    } else {
        true
    };
    if allowed { Ok(()) } else { Err(format!("host {host} is not allowed")) }
}

/// `Err(reason for the 403)` when the request's `origin` may not connect to `host`.
pub(crate) fn check_origin(cfg: &ServerConfig, origin: Option<&str>, host: &str) -> Result<(), String> {
    if cfg.allow_any_origin {
        return Ok(());
    }
    if !cfg.allowed_origins.is_empty() {
        return match origin {
            Some(o) if cfg.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(o)) => Ok(()),
            Some(o) => Err(format!("origin {o} is not allowed")),
            None => Err("an Origin header is required".to_owned()),
        };
    }
    match origin {
        None => Ok(()),
        Some(o) if origin_authority(o).is_some_and(|a| a.eq_ignore_ascii_case(host)) => Ok(()),
        Some(o) => Err(format!("cross-origin request refused: origin {o} does not match host {host}")),
    }
}

/// The `host[:port]` of an origin (`scheme://host[:port]`); `None` for an opaque origin
/// such as `null`.
fn origin_authority(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    (!authority.is_empty()).then_some(authority)
}

/// A `Host` value (or an allowed host) without its port, brackets or trailing dot.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match host.rsplit_once(':') {
            // One colon and digits after it: a port. More colons: a bare IPv6 literal.
            Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.strip_suffix('.').unwrap_or(name)
}

/// `localhost`, `*.localhost`, `127.0.0.0/8`, `::1` (and `::ffff:127.x.y.z`).
fn names_loopback(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(addr: &str) -> ServerConfig {
        ServerConfig::new(addr.parse().unwrap())
    }

    #[test]
    fn host_names_lose_port_brackets_and_trailing_dot() {
        assert_eq!(host_name("example.com:443"), "example.com");
        assert_eq!(host_name("localhost."), "localhost");
        assert_eq!(host_name("[::1]:9001"), "::1");
        assert_eq!(host_name("::1"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn loopback_server_answers_only_to_loopback_names() {
        let c = cfg("127.0.0.1:9001");
        for ok in ["localhost:9001", "LOCALHOST", "app.localhost:80", "127.0.0.1:9001", "127.1.2.3", "[::1]:9001"] {
            assert!(check_host(&c, ok).is_ok(), "{ok}");
        }
        for bad in ["evil.example:9001", "localhost.evil.example", "10.0.0.1", "[::2]:9001", ""] {
            let e = check_host(&c, bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        assert!(check_host(&cfg("[::1]:9001"), "rebind.example").is_err());
    }

    #[test]
    fn host_list_and_any_host() {
        assert!(check_host(&cfg("0.0.0.0:9001"), "anything.example").is_ok(), "not loopback: any host");
        let mut c = cfg("127.0.0.1:9001").with_allowed_hosts(vec!["Dev.Example".into(), "[::1]".into()]);
        assert!(check_host(&c, "dev.example:9001").is_ok());
        assert!(check_host(&c, "[::1]:9001").is_ok());
        assert!(check_host(&c, "localhost:9001").is_err(), "an explicit list is all there is");
        c.allow_any_host = true;
        assert!(check_host(&c, "rebind.example").is_ok());
    }

    #[test]
    fn same_origin_by_default() {
        let c = cfg("127.0.0.1:9001");
        assert!(check_origin(&c, None, "localhost:9001").is_ok(), "no Origin: not a browser");
        assert!(check_origin(&c, Some("http://localhost:9001"), "localhost:9001").is_ok());
        assert!(check_origin(&c, Some("https://LocalHost:9001/"), "localhost:9001").is_ok());
        for bad in ["http://evil.example", "http://localhost:9002", "http://localhost", "null", "localhost:9001"] {
            let e = check_origin(&c, Some(bad), "localhost:9001").unwrap_err();
            assert!(e.contains(bad) && e.contains("localhost:9001"), "{e}");
        }
    }

    #[test]
    fn origin_list_and_any_origin() {
        let mut c = cfg("127.0.0.1:9001").with_allowed_origins(vec!["https://app.example".into()]);
        assert!(check_origin(&c, Some("https://APP.example"), "localhost").is_ok());
        assert!(check_origin(&c, Some("http://localhost"), "localhost").is_err(), "same origin but not listed");
        assert_eq!(check_origin(&c, None, "localhost").unwrap_err(), "an Origin header is required");
        c.allow_any_origin = true;
        assert!(check_origin(&c, Some("https://evil.example"), "localhost").is_ok());
        assert!(check_origin(&c, None, "localhost").is_ok());
    }
}
