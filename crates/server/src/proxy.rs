//! Client addresses: the TCP peer, or what trusted proxies say in `X-Forwarded-For`.

use std::net::IpAddr;

/// Returns (`remote_address`, `remote_addresses`) when the TCP peer is a trusted proxy
/// that forwarded addresses; `None` when the peer alone is both (then the connection
/// keeps it as an `IpAddr`, see `Connection::with_remote_address`).
///
/// `remote_addresses` is WebSocket-Node's list: the `X-Forwarded-For` entries, then
/// the TCP peer, but only when the peer is a trusted proxy (otherwise just the peer).
/// `remote_address` is the right-most entry that is not a trusted proxy: the first
/// address no trusted hop vouches for. With no trusted proxies (the default) it is
/// always the TCP peer, so a client cannot spoof it.
pub(crate) fn forwarded(peer: IpAddr, xff: &[String], trusted: &[IpAddr]) -> Option<(String, Vec<String>)> {
    if xff.is_empty() || !trusted.contains(&peer) {
        return None;
    }
    let peer_s = peer.to_string();
    let mut all: Vec<String> = xff.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    all.push(peer_s);
    let is_trusted = |s: &str| s.parse::<IpAddr>().is_ok_and(|ip| trusted.contains(&ip));
    let client = all.iter().rev().find(|s| !is_trusted(s)).unwrap_or(&all[0]).clone();
    Some((client, all))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_ignores_xff() {
        assert_eq!(forwarded(ip("10.0.0.9"), &["1.2.3.4".into()], &[]), None);
        assert_eq!(forwarded(ip("10.0.0.1"), &[], &[ip("10.0.0.1")]), None);
    }

    #[test]
    fn trusted_chain_picks_rightmost_untrusted() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let xff = ["6.6.6.6".to_string(), "1.2.3.4".into(), "10.0.0.2".into()];
        let (a, all) = forwarded(ip("10.0.0.1"), &xff, &trusted).unwrap();
        assert_eq!(a, "1.2.3.4");
        assert_eq!(all, ["6.6.6.6", "1.2.3.4", "10.0.0.2", "10.0.0.1"]);
    }
}
