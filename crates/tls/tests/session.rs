//! Two `TlsSession`s, server and client, against each other in memory.

mod common;

use common::*;
use ringwire_tls::{STAGING_LIMIT, TlsError, TlsSession};
use rustls::{AlertDescription, CertificateError};

/// Runs the handshake to its end; returns what each side received as plaintext meanwhile.
fn handshake(server: &mut TlsSession, client: &mut TlsSession) -> Result<(), TlsError> {
    let mut c2s = Vec::new();
    client.read(&mut [], &mut c2s, &mut Vec::new())?;
    for _ in 0..10 {
        let mut s2c = Vec::new();
        let mut plain = Vec::new();
        server.read(&mut c2s, &mut s2c, &mut plain)?;
        assert!(plain.is_empty());
        c2s.clear();
        client.read(&mut s2c, &mut c2s, &mut plain)?;
        assert!(plain.is_empty());
        if !server.is_handshaking() && !client.is_handshaking() && c2s.is_empty() {
            return Ok(());
        }
    }
    panic!("handshake did not finish in 10 round trips");
}

fn pair() -> (TlsSession, TlsSession) {
    let p = pki();
    let mut s = TlsSession::server(server_config(&p)).unwrap();
    let mut c = TlsSession::client(client_config(&p.ca), localhost()).unwrap();
    handshake(&mut s, &mut c).unwrap();
    (s, c)
}

/// A server and a client that trusts another CA than the server's.
fn untrusted_pair() -> (TlsSession, TlsSession) {
    let (p, other) = (pki(), pki());
    let s = TlsSession::server(server_config(&p)).unwrap();
    let c = TlsSession::client(client_config(&other.ca), localhost()).unwrap();
    (s, c)
}

/// Sends `msg` from `a` to `b`, delivering the ciphertext in reads of `step` bytes.
fn transfer(a: &mut TlsSession, b: &mut TlsSession, msg: &[u8], step: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    a.encrypt(msg, &mut wire).unwrap();
    assert!(wire.len() > msg.len());
    let mut got = Vec::new();
    let mut back = Vec::new();
    for chunk in wire.chunks_mut(step) {
        b.read(chunk, &mut back, &mut got).unwrap();
        assert!(b.staged() <= STAGING_LIMIT);
    }
    assert!(back.is_empty(), "nothing to answer to application data");
    assert_eq!(b.staged(), 0, "every record complete at the end");
    got
}

#[test]
fn handshake_agrees_alpn_and_version() {
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let p = pki();
        let mut s = TlsSession::server(server_config_versions(&p, versions)).unwrap();
        let mut c = TlsSession::client(client_config(&p.ca), localhost()).unwrap();
        assert!(s.is_handshaking() && c.is_handshaking());
        assert!(matches!(s.encrypt(b"early", &mut Vec::new()), Err(TlsError::NotReady)));
        handshake(&mut s, &mut c).unwrap();
        assert_eq!(s.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(s.protocol_version(), Some(versions[0].version));
        assert_eq!(c.protocol_version(), Some(versions[0].version));
        assert!(s.is_server() && !c.is_server());
        assert_eq!(transfer(&mut c, &mut s, b"hello", 4096), b"hello");
        assert_eq!(transfer(&mut s, &mut c, b"world", 4096), b"world");
    }
}

/// The handshake with every flight delivered in reads of `step` bytes.
fn handshake_in_steps(server: &mut TlsSession, client: &mut TlsSession, step: usize) {
    let mut c2s = Vec::new();
    client.read(&mut [], &mut c2s, &mut Vec::new()).unwrap();
    for _ in 0..10 {
        let mut s2c = Vec::new();
        for chunk in c2s.chunks_mut(step) {
            server.read(chunk, &mut s2c, &mut Vec::new()).unwrap();
        }
        c2s.clear();
        for chunk in s2c.chunks_mut(step) {
            client.read(chunk, &mut c2s, &mut Vec::new()).unwrap();
        }
        if !server.is_handshaking() && !client.is_handshaking() && c2s.is_empty() {
            assert_eq!(server.staged() + client.staged(), 0);
            return;
        }
    }
    panic!("handshake did not finish in 10 round trips");
}

#[test]
fn a_certificate_larger_than_a_record_in_small_reads() {
    // ~40 KB of certificate: its handshake message spans records, which rustls joins in
    // the caller's buffer, so the staging buffer holds more than one record meanwhile.
    let p = big_pki();
    assert!(p.leaf.len() > 20_000, "{}", p.leaf.len());
    for step in [1, 7, 1000, 16_389, 1 << 20] {
        let mut s = TlsSession::server(server_config(&p)).unwrap();
        let mut c = TlsSession::client(client_config(&p.ca), localhost()).unwrap();
        handshake_in_steps(&mut s, &mut c, step);
        assert_eq!(transfer(&mut c, &mut s, b"after a big chain", step), b"after a big chain", "step {step}");
    }
}

#[test]
fn small_and_large_data_both_ways() {
    let (mut s, mut c) = pair();
    let small = pattern(32, 1);
    assert_eq!(transfer(&mut c, &mut s, &small, 1 << 20), small);
    assert_eq!(transfer(&mut s, &mut c, &small, 1 << 20), small);
    let big = pattern(1 << 20, 7);
    // whole, in 32 KiB reads (a whole receive buffer on kernels before 6.12), and in odd reads
    for step in [4 << 20, 32 << 10, 1000] {
        assert_eq!(transfer(&mut c, &mut s, &big, step), big, "client to server, step {step}");
        assert_eq!(transfer(&mut s, &mut c, &big, step), big, "server to client, step {step}");
    }
}

#[test]
fn a_record_split_at_every_byte_boundary() {
    let (mut s, mut c) = pair();
    for (i, len) in [1usize, 100, 16_384].into_iter().enumerate() {
        let msg = pattern(len, i as u8);
        let mut probe = Vec::new();
        c.encrypt(&msg, &mut probe).unwrap();
        let wire_len = probe.len();
        let mut got = Vec::new();
        s.read(&mut probe, &mut Vec::new(), &mut got).unwrap(); // keep sequence numbers in step
        assert_eq!(got, msg);
        let cuts: Vec<usize> =
            if len > 100 { vec![1, 4, 5, 6, wire_len / 2, wire_len - 1] } else { (0..=wire_len).collect() };
        for k in cuts {
            let mut wire = Vec::new();
            c.encrypt(&msg, &mut wire).unwrap();
            assert_eq!(wire.len(), wire_len);
            let (a, b) = wire.split_at_mut(k);
            let mut got = Vec::new();
            let mut back = Vec::new();
            s.read(a, &mut back, &mut got).unwrap();
            if k < wire_len {
                assert!(got.is_empty(), "len {len} cut {k}: nothing before the record is complete");
                assert_eq!(s.staged(), k, "len {len} cut {k}: the partial record is staged");
            }
            s.read(b, &mut back, &mut got).unwrap();
            assert_eq!(got, msg, "len {len} cut {k}");
            assert_eq!(s.staged(), 0, "len {len} cut {k}: no staging buffer left");
        }
    }
}

#[test]
fn records_cut_in_three_and_batched() {
    // Three records in one buffer, cut inside the second and inside the third.
    let (mut s, mut c) = pair();
    let msgs = [pattern(50, 1), pattern(3000, 2), pattern(20_000, 3)];
    let want: Vec<u8> = msgs.concat();
    for (x, y) in [(60, 1000), (90, 3100), (5, 20_000), (3080, 3090)] {
        let mut w = Vec::new();
        for m in &msgs {
            c.encrypt(m, &mut w).unwrap();
        }
        let mut got = Vec::new();
        let mut back = Vec::new();
        let (a, rest) = w.split_at_mut(x);
        let (b, d) = rest.split_at_mut(y - x);
        s.read(a, &mut back, &mut got).unwrap();
        s.read(b, &mut back, &mut got).unwrap();
        s.read(d, &mut back, &mut got).unwrap();
        assert_eq!(got, want, "cuts {x} {y}");
        assert_eq!(s.staged(), 0);
    }
}

#[test]
fn close_notify_both_ways() {
    let (mut s, mut c) = pair();
    let mut wire = Vec::new();
    c.encrypt(b"last words", &mut wire).unwrap();
    assert!(c.close_notify(&mut wire).unwrap());
    assert!(c.sent_close());
    assert!(!c.close_notify(&mut Vec::new()).unwrap(), "only once");
    assert!(matches!(c.encrypt(b"more", &mut Vec::new()), Err(TlsError::Closed)));
    let mut got = Vec::new();
    let mut back = Vec::new();
    assert!(!s.peer_closed());
    s.read(&mut wire, &mut back, &mut got).unwrap();
    assert_eq!(got, b"last words");
    assert!(s.peer_closed());
    // the server may still send, then closes too
    let mut reply = Vec::new();
    s.encrypt(b"bye", &mut reply).unwrap();
    assert!(s.close_notify(&mut reply).unwrap());
    let mut got = Vec::new();
    c.read(&mut reply, &mut back, &mut got).unwrap();
    assert_eq!(got, b"bye");
    assert!(c.peer_closed());
    // bytes after close_notify are dropped, not staged
    let mut junk = vec![23u8, 3, 3, 0, 200, 1, 2];
    s.read(&mut junk, &mut back, &mut got).unwrap();
    assert_eq!(s.staged(), 0);
}

#[test]
fn an_untrusted_certificate_is_a_typed_error() {
    let (mut s, mut c) = untrusted_pair();
    let e = handshake(&mut s, &mut c).unwrap_err();
    assert!(
        matches!(e, TlsError::Protocol(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))),
        "{e:?}"
    );
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
    assert!(e.to_string().starts_with("tls: "), "{e}");
    assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::InvalidData);
    // the session is dead afterwards
    assert!(matches!(c.read(&mut [], &mut Vec::new(), &mut Vec::new()), Err(TlsError::Closed)));
}

#[test]
fn the_alert_of_a_failing_client_reaches_the_server() {
    let (mut s, mut c) = untrusted_pair();
    let mut c2s = Vec::new();
    c.read(&mut [], &mut c2s, &mut Vec::new()).unwrap();
    let mut s2c = Vec::new();
    s.read(&mut c2s, &mut s2c, &mut Vec::new()).unwrap();
    let mut alert = Vec::new();
    c.read(&mut s2c, &mut alert, &mut Vec::new()).unwrap_err();
    assert!(!alert.is_empty(), "the client sends its fatal alert");
    let e = s.read(&mut alert, &mut Vec::new(), &mut Vec::new()).unwrap_err();
    assert!(matches!(e, TlsError::Protocol(rustls::Error::AlertReceived(AlertDescription::UnknownCA))), "{e:?}");
}

#[test]
fn a_name_mismatch_is_a_typed_error() {
    let p = pki();
    let mut s = TlsSession::server(server_config(&p)).unwrap();
    let name = rustls::pki_types::ServerName::try_from("example.com").unwrap();
    let mut c = TlsSession::client(client_config(&p.ca), name).unwrap();
    let e = handshake(&mut s, &mut c).unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::Protocol(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }))
        ),
        "{e:?}"
    );
}

#[test]
fn plaintext_http_is_refused() {
    let p = pki();
    let mut s = TlsSession::server(server_config(&p)).unwrap();
    let mut req = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    let mut alert = Vec::new();
    let e = s.read(&mut req, &mut alert, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, TlsError::Protocol(rustls::Error::InvalidMessage(_))), "{e:?}");
    assert_eq!(alert.first(), Some(&21), "a fatal alert record goes back");
    // the dead session is not run again (rustls would panic on a second fatal alert)
    assert!(matches!(s.read(&mut req, &mut Vec::new(), &mut Vec::new()), Err(TlsError::Closed)));
}

#[test]
fn bytes_after_the_close_that_ends_both_directions_are_dropped() {
    // the client closes first; the server's close_notify then ends the session (rustls'
    // Closed state): what follows in the same read is dropped, neither staged nor an error
    for junk in [7, STAGING_LIMIT + 100] {
        let (mut s, mut c) = pair();
        let mut wire = Vec::new();
        assert!(c.close_notify(&mut wire).unwrap());
        let mut back = Vec::new();
        s.read(&mut wire, &mut back, &mut Vec::new()).unwrap();
        assert!(s.peer_closed());
        let mut input = Vec::new();
        assert!(s.close_notify(&mut input).unwrap());
        let end = input.len() + junk;
        input.extend_from_slice(&[23, 3, 3, 0x40, 0]); // a record header, then its start
        input.resize(end, 0x55);
        c.read(&mut input, &mut back, &mut Vec::new()).unwrap();
        assert!(c.peer_closed());
        assert_eq!(c.staged(), 0, "{junk} bytes after the close are not staged");
    }
}

/// Tickets of 30,000 bytes: a post-handshake message spanning records.
#[derive(Debug)]
struct BigTickets;

impl rustls::server::ProducesTickets for BigTickets {
    fn enabled(&self) -> bool {
        true
    }
    fn lifetime(&self) -> u32 {
        3600
    }
    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        Some(vec![7; 30_000])
    }
    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

#[test]
fn a_ticket_spanning_records_after_the_handshake_is_not_too_large() {
    let p = pki();
    let mut cfg = (*server_config(&p)).clone();
    cfg.ticketer = std::sync::Arc::new(BigTickets);
    cfg.send_tls13_tickets = 1;
    let cfg = std::sync::Arc::new(cfg);
    // 0: the first record whole (rustls keeps it: the message is not complete) and 3000
    // bytes of the next in one read; else reads of that many bytes. Either way more than
    // STAGING_LIMIT is held, but never more than that of a raw record.
    for step in [0, 1000, 7] {
        let mut s = TlsSession::server(cfg.clone()).unwrap();
        let mut c = TlsSession::client(client_config(&p.ca), localhost()).unwrap();
        let (mut hello, mut flight, mut finished, mut tickets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        c.read(&mut [], &mut hello, &mut Vec::new()).unwrap();
        s.read(&mut hello, &mut flight, &mut Vec::new()).unwrap();
        c.read(&mut flight, &mut finished, &mut Vec::new()).unwrap();
        assert!(!c.is_handshaking());
        s.read(&mut finished, &mut tickets, &mut Vec::new()).unwrap();
        let first = 5 + u16::from_be_bytes([tickets[3], tickets[4]]) as usize;
        assert!(tickets.len() > first + 3000, "the ticket spans records: {} bytes", tickets.len());
        let mut plain = Vec::new();
        let mut most = 0;
        let chunks: Vec<&mut [u8]> = if step == 0 {
            let (head, rest) = tickets.split_at_mut(first + 3000);
            vec![head, rest]
        } else {
            tickets.chunks_mut(step).collect()
        };
        for chunk in chunks {
            c.read(chunk, &mut Vec::new(), &mut plain).unwrap_or_else(|e| panic!("step {step}: {e}"));
            most = most.max(c.staged());
        }
        assert!(most > STAGING_LIMIT, "step {step}: staged at most {most}");
        assert_eq!(c.staged(), 0);
        assert!(plain.is_empty());
        assert_eq!(transfer(&mut s, &mut c, b"after the ticket", 1000), b"after the ticket");
    }
}
