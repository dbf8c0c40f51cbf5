//! ringwire-tls' `TlsSession` under arbitrary input.
//!
//! - Mode 0: a server session gets the input as ciphertext, cut into chunks whose sizes come
//!   from the input. It must never panic, never stage more than its bounds, and stop at its
//!   first error.
//! - Mode 1: a real client and server (certificates made once) exchange a handshake and then
//!   application data both ways, every flight cut into chunks chosen by the input; when the
//!   input asks for it, one byte on the wire is flipped. Without a flip the plaintext must
//!   arrive intact whatever the cuts; with one, either side may fail, but cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwire_tls::rustls::pki_types::{PrivateKeyDer, ServerName};
use ringwire_tls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use ringwire_tls::{HANDSHAKE_STAGING_LIMIT, STAGING_LIMIT, TlsSession};
use std::sync::{Arc, OnceLock};

struct Configs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn configs() -> &'static Configs {
    static C: OnceLock<Configs> = OnceLock::new();
    C.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let mut server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let mut client = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Configs { server: Arc::new(server), client: Arc::new(client) }
    })
}

/// Chunk sizes drawn from the input.
struct Cuts<'a>(&'a [u8]);

impl Cuts<'_> {
    fn next(&mut self, left: usize) -> usize {
        let (b, rest) = self.0.split_first().map_or((255, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        // Mostly small cuts (record headers split), sometimes large ones.
        let n = if b < 200 { b as usize + 1 } else { (b as usize - 199) * 997 };
        n.min(left).max(1)
    }
}

fn check_bounds(s: &TlsSession) {
    let limit = if s.is_handshaking() { HANDSHAKE_STAGING_LIMIT } else { STAGING_LIMIT.max(HANDSHAKE_STAGING_LIMIT) };
    assert!(s.staged() <= limit, "staged {} over {limit}", s.staged());
}

/// Feeds `wire` to `to` in chunks; returns false once it failed.
fn deliver(to: &mut TlsSession, wire: &mut Vec<u8>, cuts: &mut Cuts<'_>, out: &mut Vec<u8>, plain: &mut Vec<u8>) -> bool {
    let mut at = 0;
    while at < wire.len() {
        let n = cuts.next(wire.len() - at);
        if to.read(&mut wire[at..at + n], out, plain).is_err() {
            return false;
        }
        check_bounds(to);
        at += n;
    }
    wire.clear();
    true
}

/// Flips one byte at wire offset `at` (both directions counted in order), once.
struct Flip {
    at: Option<usize>,
    sent: usize,
    flipped: bool,
}

impl Flip {
    fn apply(&mut self, wire: &mut [u8]) {
        if let Some(at) = self.at
            && !self.flipped
            && at >= self.sent
            && at < self.sent + wire.len()
        {
            wire[at - self.sent] ^= 0x5a;
            self.flipped = true;
        }
        self.sent += wire.len();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let c = configs();
    if mode & 1 == 0 {
        // Attacker bytes: the first half chooses the cuts, the second half is the wire.
        let (cuts, wire) = rest.split_at(rest.len() / 2);
        let mut cuts = Cuts(cuts);
        let mut wire = wire.to_vec();
        let mut s = TlsSession::server(Arc::clone(&c.server)).unwrap();
        let (mut out, mut plain) = (Vec::new(), Vec::new());
        deliver(&mut s, &mut wire, &mut cuts, &mut out, &mut plain);
        return;
    }
    // A real pair. rest[0..2]: where to flip a byte (0xFFFF: nowhere); the rest: cuts.
    let (flip, cuts) = match rest {
        [a, b, cuts @ ..] => (u16::from_be_bytes([*a, *b]) as usize, cuts),
        _ => return,
    };
    let flip = (flip != 0xFFFF && flip % 4 == 0).then_some(flip / 4);
    let mut cuts = Cuts(cuts);
    let mut server = TlsSession::server(Arc::clone(&c.server)).unwrap();
    let mut client = TlsSession::client(Arc::clone(&c.client), ServerName::try_from("localhost").unwrap()).unwrap();
    let (mut to_server, mut to_client, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    let mut f = Flip { at: flip, sent: 0, flipped: false };
    if client.read(&mut [], &mut to_server, &mut plain).is_err() {
        panic!("the client hello failed");
    }
    let mut rounds = 0;
    while client.is_handshaking() || server.is_handshaking() || !to_server.is_empty() {
        rounds += 1;
        if rounds > 20 {
            // Only a flipped byte may leave a handshake hanging (e.g. a length made larger).
            assert!(f.flipped, "handshake stuck without a flip");
            return;
        }
        f.apply(&mut to_server);
        if !deliver(&mut server, &mut to_server, &mut cuts, &mut to_client, &mut plain) {
            assert!(f.flipped, "server failed without a flip");
            return;
        }
        f.apply(&mut to_client);
        if !deliver(&mut client, &mut to_client, &mut cuts, &mut to_server, &mut plain) {
            assert!(f.flipped, "client failed without a flip");
            return;
        }
    }
    assert!(plain.is_empty());
    // Application data both ways, sized by the input.
    let len = cuts.0.len() * 97 % 70_000;
    let msg: Vec<u8> = (0..len).map(|i| (i * 31 + i / 7) as u8).collect();
    let mut wire = Vec::new();
    client.encrypt(&msg, &mut wire).unwrap();
    f.apply(&mut wire);
    let ok = deliver(&mut server, &mut wire, &mut cuts, &mut to_client, &mut plain);
    if !f.flipped {
        assert!(ok, "server failed on application data");
        assert_eq!(plain, msg, "plaintext changed on its way");
    }
    if !ok {
        return;
    }
    plain.clear();
    let mut wire = Vec::new();
    server.encrypt(&msg, &mut wire).unwrap();
    // Session tickets may go along with the data.
    wire.splice(0..0, to_client.drain(..));
    f.apply(&mut wire);
    let ok = deliver(&mut client, &mut wire, &mut cuts, &mut to_server, &mut plain);
    if !f.flipped {
        assert!(ok, "client failed on application data");
        assert_eq!(plain, msg, "plaintext changed on its way back");
    }
});
