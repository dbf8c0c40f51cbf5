//! Client addresses: the TCP peer, or what trusted proxies say in `X-Forwarded-For`.
//! The rule (right-most entry that is not a trusted proxy) lives in the connection
//! crate, so that `Request::conn_info` and the server cannot disagree.

pub(crate) use ringwire_conn::handshake::forwarded_addresses as forwarded;
