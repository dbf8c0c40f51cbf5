//! The handshake parsers on arbitrary bytes. Oracles: no panic; an accepted request
//! yields a 101 that a client with the same key verifies; a refusal's response is a
//! well-formed HTTP response with the refusal's status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwire_conn::handshake::{Accept, ClientRequest, HandshakeLimits, parse_request};

fuzz_target!(|data: &[u8]| {
    let limits = HandshakeLimits::default();
    match parse_request(data, &limits) {
        Ok(Some((req, n))) => {
            assert!(n <= data.len());
            let proto = req.protocols.first().cloned();
            let resp = req.accept(&Accept { protocol: proto.clone(), ..Accept::default() }).expect("valid accept");
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Response::new(&mut headers);
            assert!(matches!(r.parse(&resp), Ok(httparse::Status::Complete(_))));
            assert_eq!(r.code, Some(101));
        }
        Ok(None) => assert!(data.len() <= limits.max_head_bytes),
        Err(e) => {
            let resp = e.response();
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Response::new(&mut headers);
            assert!(matches!(r.parse(&resp), Ok(httparse::Status::Complete(_))));
            assert_eq!(r.code, Some(e.status()));
        }
    }
    // The client side on the same bytes, as a server's answer.
    let req = ClientRequest::new("example.com", 8080, "/chat", &["chat"], None, &[], 13, [7; 16]).expect("valid");
    let _ = req.verify_response(data);
});
