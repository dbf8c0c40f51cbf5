//! Client addresses: the TCP peer, or what trusted proxies say in `X-Forwarded-For`.

use std::net::IpAddr;

/// Returns (`remote_address`, `remote_addresses`).
///
/// `remote_addresses` is WebSocket-Node's list: the `X-Forwarded-For` entries, then
/// the TCP peer, but only when the peer is a trusted proxy (otherwise just the peer).
/// `remote_address` is the right-most entry that is not a trusted proxy: the first
/// address no trusted hop vouches for. With no trusted proxies (the default) it is
/// always the TCP peer, so a client cannot spoof it.
pub(crate) fn remote_addresses(peer: IpAddr, xff: &[String], trusted: &[IpAddr]) -> (String, Vec<String>) {
    let peer_s = peer.to_string();
    if xff.is_empty() || !trusted.contains(&peer) {
        return (peer_s.clone(), vec![peer_s]);
    }
    let mut all: Vec<String> = xff.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    all.push(peer_s);
    let is_trusted = |s: &str| s.parse::<IpAddr>().is_ok_and(|ip| trusted.contains(&ip));
    let client = all.iter().rev().find(|s| !is_trusted(s)).unwrap_or(&all[0]).clone();
    (client, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_ignores_xff() {
        let (a, all) = remote_addresses(ip("10.0.0.9"), &["1.2.3.4".into()], &[]);
        assert_eq!((a.as_str(), all), ("10.0.0.9", vec!["10.0.0.9".to_string()]));
    }

    #[test]
    fn trusted_chain_picks_rightmost_untrusted() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let xff = ["6.6.6.6".to_string(), "1.2.3.4".into(), "10.0.0.2".into()];
        let (a, all) = remote_addresses(ip("10.0.0.1"), &xff, &trusted);
        assert_eq!(a, "1.2.3.4");
        assert_eq!(all, ["6.6.6.6", "1.2.3.4", "10.0.0.2", "10.0.0.1"]);
    }
}
