//! How a [`Connection`](crate::Connection) keeps its [`ConnInfo`]: compactly in the
//! common case, where the handshake facts are just a version and the peer's IP address.

use crate::ConnInfo;
use crate::deflate::DeflateParams;
use std::net::IpAddr;
use std::sync::OnceLock;

/// The handshake facts. When they carry no protocol and no extensions (but for
/// permessage-deflate's parameters), and the only address is one IP address (or there is
/// none), they are kept as that address, the version and the deflate parameters: no
/// strings. The [`ConnInfo`] with the address as text is then built the first
/// time something asks for it, and kept. Any other facts are kept as given, boxed.
#[derive(Debug)]
pub(crate) struct Info {
    /// The full facts: given (boxed) when they are not compact, else built on first use.
    full: OnceLock<Box<ConnInfo>>,
    /// The only address, in the compact form.
    peer: Option<IpAddr>,
    version: u8,
    /// Kept apart from `full`: the connection reads it on every compressed message.
    deflate: Option<DeflateParams>,
}

impl Info {
    pub(crate) fn new(mut info: ConnInfo) -> Self {
        let (version, deflate) = (info.version, info.deflate);
        match compact_peer(&info) {
            Some(peer) => Self { full: OnceLock::new(), peer, version, deflate },
            None => {
                if info.extensions.is_empty()
                    && let Some(p) = deflate
                {
                    info.extensions.push(p.response_header());
                }
                Self { peer: None, version, deflate, full: OnceLock::from(Box::new(info)) }
            }
        }
    }

    /// These facts with `peer` as the only address (what
    /// [`ConnInfo::with_remote_address`] does with its text).
    pub(crate) fn with_peer(self, peer: IpAddr) -> Self {
        match self.full.into_inner() {
            Some(full) => Self::new(full.with_remote_address(peer.to_string())),
            None => Self { full: OnceLock::new(), peer: Some(peer), version: self.version, deflate: self.deflate },
        }
    }

    pub(crate) fn version(&self) -> u8 {
        self.version
    }

    /// The permessage-deflate parameters agreed, if any.
    pub(crate) fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }

    /// The subprotocol; the compact form has none.
    pub(crate) fn protocol(&self) -> Option<&str> {
        self.full.get()?.protocol.as_deref()
    }

    /// The extensions (permessage-deflate's, in the compact form, written on first use).
    pub(crate) fn extensions(&self) -> &[String] {
        match (self.full.get(), self.deflate) {
            (Some(f), _) => &f.extensions,
            (None, Some(_)) => &self.full().extensions,
            (None, None) => &[],
        }
    }

    /// The full facts, built now if need be.
    pub(crate) fn full(&self) -> &ConnInfo {
        self.full.get_or_init(|| {
            let extensions = self.deflate.iter().map(DeflateParams::response_header).collect();
            let info = ConnInfo { version: self.version, extensions, deflate: self.deflate, ..ConnInfo::new() };
            Box::new(match self.peer {
                Some(peer) => info.with_remote_address(peer.to_string()),
                None => info,
            })
        })
    }
}

/// The address `info` can be kept as, if it is compact: `Some(None)` for no address at
/// all, `Some(Some(ip))` when the only address is `ip`, written as `ip` writes itself
/// (so that the text built later is the text given).
fn compact_peer(info: &ConnInfo) -> Option<Option<IpAddr>> {
    if info.protocol.is_some() || !info.extensions.is_empty() {
        return None;
    }
    match (&info.remote_address, info.remote_addresses.as_slice()) {
        (None, []) => Some(None),
        (Some(a), [b]) if a == b => {
            let ip = a.parse::<IpAddr>().ok()?;
            (ip.to_string() == *a).then_some(Some(ip))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept_as_given(info: ConnInfo) {
        let i = Info::new(info.clone());
        assert_eq!(i.full(), &info);
        assert_eq!((i.version(), i.protocol(), i.extensions()), (info.version, info.protocol.as_deref(), &[][..]));
    }

    #[test]
    fn only_a_plain_ip_address_is_kept_compact() {
        for a in ["192.0.2.1", "2001:db8::1", "::ffff:1.2.3.4"] {
            let i = Info::new(ConnInfo::new().with_remote_address(a));
            assert_eq!(i.peer, Some(a.parse().unwrap()));
            assert!(i.full.get().is_none(), "{a}: no strings until asked");
            assert_eq!(i.full().remote_address.as_deref(), Some(a));
            assert_eq!(i.full().remote_addresses, [a]);
        }
        let none = Info::new(ConnInfo { version: 8, ..ConnInfo::new() });
        assert!(none.full.get().is_none());
        assert_eq!(none.full(), &ConnInfo { version: 8, ..ConnInfo::new() });
        // Text that would not come back the same, or more than the peer: kept as given.
        for a in ["2001:DB8::1", "192.0.2.1:4000", "localhost"] {
            kept_as_given(ConnInfo::new().with_remote_address(a));
        }
        kept_as_given(ConnInfo::new().with_remote_address("192.0.2.1").with_protocol("chat"));
        let mut xff = ConnInfo::new().with_remote_address("192.0.2.1");
        xff.remote_addresses.push("10.0.0.1".into());
        kept_as_given(xff);
    }

    #[test]
    fn with_peer_sets_the_only_address() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let i = Info::new(ConnInfo { version: 8, ..ConnInfo::new() }).with_peer(ip);
        assert!(i.full.get().is_none());
        assert_eq!(i.full(), &ConnInfo { version: 8, ..ConnInfo::new() }.with_remote_address("198.51.100.7"));
        let p = Info::new(ConnInfo::new().with_protocol("chat")).with_peer(ip);
        assert_eq!(p.full(), &ConnInfo::new().with_protocol("chat").with_remote_address("198.51.100.7"));
        assert_eq!(p.protocol(), Some("chat"));
    }
}
