//! permessage-deflate (RFC 7692) as the load generator needs it, on flate2 directly (not
//! ringwire's codec, which the generator judges): the server's answer to
//! [`DEFLATE_OFFER`](crate::wire::DEFLATE_OFFER), compressing a message on its own, and
//! inflating what a server sends with its window and context takeover.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The zlib level the generator compresses its own messages with (zlib's default).
pub const LEVEL: u32 = 6;

/// The tail a sync flush ends with, which RFC 7692 removes from every message.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What the server agreed to in its `Sec-WebSocket-Extensions` answer. The client side
/// is fixed by the offer: no context takeover, window 15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Agreement {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The server's compression window (8-15; inflated with at least 9).
    pub server_max_window_bits: u8,
}

impl Agreement {
    /// Parses the server's answer to [`DEFLATE_OFFER`](crate::wire::DEFLATE_OFFER): exactly
    /// one `permessage-deflate` with known parameters, each at most once, and
    /// `client_no_context_takeover` confirmed (the generator's frames are compressed once,
    /// for all connections). A `client_max_window_bits` below 15 is refused too: the frames
    /// are compressed with 15.
    ///
    /// ```
    /// use ringwire_loadtest::deflate::Agreement;
    /// let a = Agreement::parse("permessage-deflate; server_no_context_takeover; client_no_context_takeover")?;
    /// assert!(a.server_no_context_takeover && a.server_max_window_bits == 15);
    /// assert!(Agreement::parse("permessage-deflate").unwrap_err().contains("client_no_context_takeover"));
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(value: &str) -> Result<Agreement, String> {
        let items: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let [item] = items[..] else {
            return Err(format!("server answered {} extensions ({value:?}), want one permessage-deflate", items.len()));
        };
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        if !name.eq_ignore_ascii_case("permessage-deflate") {
            return Err(format!("server chose extension {name:?}, offered permessage-deflate"));
        }
        let mut a = Agreement { server_no_context_takeover: false, server_max_window_bits: 15 };
        let (mut client_nct, mut seen) = (false, Vec::new());
        for p in parts.filter(|p| !p.is_empty()) {
            let (k, v) = match p.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().trim_matches('"'))),
                None => (p.to_ascii_lowercase(), None),
            };
            if seen.contains(&k) {
                return Err(format!("server repeated {k} in {value:?}"));
            }
            let bits = |v: Option<&str>| {
                v.and_then(|v| v.parse::<u8>().ok())
                    .filter(|b| (8..=15).contains(b))
                    .ok_or_else(|| format!("{k} needs a value 8-15 in {value:?}"))
            };
            match (k.as_str(), v) {
                ("server_no_context_takeover", None) => a.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => client_nct = true,
                ("server_max_window_bits", v) => a.server_max_window_bits = bits(v)?,
                ("client_max_window_bits", v) => {
                    let b = bits(v)?;
                    if b != 15 {
                        return Err(format!(
                            "server limits the client window to {b} bits: loadgen compresses its frames once, with 15"
                        ));
                    }
                }
                _ => return Err(format!("unexpected parameter {p:?} in {value:?}")),
            }
            seen.push(k);
        }
        if !client_nct {
            return Err(format!(
                "server did not confirm client_no_context_takeover ({value:?}): loadgen compresses each frame once, \
                 for all connections, without context"
            ));
        }
        Ok(a)
    }
}

/// Compresses whole messages, each on its own (no context takeover), raw deflate with a
/// 15-bit window at [`LEVEL`].
pub struct MessageDeflater {
    c: Compress,
}

impl Default for MessageDeflater {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageDeflater {
    /// A compressor.
    pub fn new() -> Self {
        MessageDeflater { c: Compress::new_with_window_bits(Compression::new(LEVEL), false, 15) }
    }

    /// `payload` as one compressed message: sync flush, the `00 00 ff ff` tail removed.
    ///
    /// ```
    /// use ringwire_loadtest::deflate::{MessageDeflater, MessageInflater};
    /// let text = b"hello hello hello hello hello".to_vec();
    /// let z = MessageDeflater::new().compress(&text);
    /// assert!(z.len() < text.len());
    /// let mut out = Vec::new();
    /// MessageInflater::new(15, true).inflate(&z, &mut out, 100)?;
    /// assert_eq!(out, text);
    /// # Ok::<(), String>(())
    /// ```
    pub fn compress(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let start = self.c.total_in();
        loop {
            let done = (self.c.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            self.c.compress_vec(&payload[done..], &mut out, FlushCompress::Sync).expect("deflate cannot fail here");
            if (self.c.total_in() - start) as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        assert!(out.ends_with(&TAIL), "a sync flush ends with 00 00 ff ff");
        out.truncate(out.len() - TAIL.len());
        self.c.reset();
        out
    }
}

/// Inflates one connection's compressed messages from the server: window `bits` (at
/// least 9: zlib-based peers told 8 compress with 9) and, when the server keeps its
/// context, the window carried from message to message. Its zlib state is made at the
/// first compressed message.
pub struct MessageInflater {
    d: Option<Decompress>,
    bits: u8,
    reset_each: bool,
    input: Vec<u8>,
}

impl MessageInflater {
    /// An inflater for a server compressing with `bits` window bits; `reset_each` when it
    /// agreed to `server_no_context_takeover`.
    pub fn new(bits: u8, reset_each: bool) -> Self {
        MessageInflater { d: None, bits: bits.clamp(9, 15), reset_each, input: Vec::new() }
    }

    /// An inflater for what `a` agreed.
    pub fn for_agreement(a: &Agreement) -> Self {
        Self::new(a.server_max_window_bits, a.server_no_context_takeover)
    }

    /// Inflates the message `compressed` (its frames' payloads joined, tail removed) into
    /// `out` (cleared first); more than `limit` bytes is an error. A message ending in a
    /// final block (RFC 7692 7.2.3.4 allows it) is accepted; the stream starts anew after it.
    pub fn inflate(&mut self, compressed: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), String> {
        self.input.clear();
        self.input.extend_from_slice(compressed);
        self.input.extend_from_slice(&TAIL);
        let bits = self.bits;
        let d = self.d.get_or_insert_with(|| Decompress::new_with_window_bits(false, bits));
        out.clear();
        out.reserve(limit.saturating_add(1));
        let start = d.total_in();
        let mut ended = false;
        loop {
            let (in0, out0) = (d.total_in(), out.len());
            let consumed = (in0 - start) as usize;
            let status = d
                .decompress_vec(&self.input[consumed..], out, FlushDecompress::Sync)
                .map_err(|e| format!("inflate: {e}"))?;
            if out.len() > limit {
                return Err(format!("compressed message inflates to more than the {limit} bytes expected"));
            }
            if status == Status::StreamEnd {
                ended = true;
                break;
            }
            let all_in = (d.total_in() - start) as usize == self.input.len();
            if all_in && out.len() < out.capacity() {
                break;
            }
            if d.total_in() == in0 && out.len() == out0 {
                return Err("compressed message is truncated (inflate made no progress)".into());
            }
        }
        if ended || self.reset_each {
            d.reset(false);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::json_payload;

    /// A compressor with context takeover and a final block, as servers may send.
    fn zlib_message(c: &mut Compress, payload: &[u8], finish: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 128);
        let flush = if finish { FlushCompress::Finish } else { FlushCompress::Sync };
        c.compress_vec(payload, &mut out, flush).unwrap();
        if !finish {
            assert!(out.ends_with(&TAIL));
            out.truncate(out.len() - 4);
        }
        out
    }

    #[test]
    fn context_takeover_and_reset_follow_the_agreement() {
        let msgs: Vec<Vec<u8>> = (1..=4).map(|s| json_payload(2000, s)).collect();
        for bits in [9u8, 12, 15] {
            // Context takeover: later messages refer back into earlier ones.
            let mut c = Compress::new_with_window_bits(Compression::new(6), false, bits);
            let mut inf = MessageInflater::new(bits, false);
            let mut out = Vec::new();
            for m in &msgs {
                let z = zlib_message(&mut c, m, false);
                inf.inflate(&z, &mut out, m.len()).unwrap();
                assert_eq!(&out, m);
            }
            // The same stream inflated with a reset per message fails on the second one
            // (so the inflater really keeps the window when it should).
            let mut c = Compress::new_with_window_bits(Compression::new(6), false, bits);
            let mut wrong = MessageInflater::new(bits, true);
            let z1 = zlib_message(&mut c, &msgs[0], false);
            wrong.inflate(&z1, &mut out, msgs[0].len()).unwrap();
            let z2 = zlib_message(&mut c, &msgs[0], false);
            let res = wrong.inflate(&z2, &mut out, msgs[0].len());
            assert!(res.is_err() || out != msgs[0], "a back-reference without the window inflated");
        }
    }

    #[test]
    fn final_block_limit_and_garbage() {
        let m = json_payload(3000, 9);
        let mut inf = MessageInflater::new(15, true);
        let mut out = Vec::new();
        // A final block (as Bun's libdeflate path sends), then a normal message.
        let mut c = Compress::new_with_window_bits(Compression::new(6), false, 15);
        let z = zlib_message(&mut c, &m, true);
        inf.inflate(&z, &mut out, m.len()).unwrap();
        assert_eq!(out, m);
        let z = MessageDeflater::new().compress(&m);
        inf.inflate(&z, &mut out, m.len()).unwrap();
        assert_eq!(out, m);
        let e = inf.inflate(&z, &mut out, m.len() - 1).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        let mut inf = MessageInflater::new(15, true);
        assert!(inf.inflate(&[0xff, 0xff, 0xff], &mut out, 100).is_err());
    }

    #[test]
    fn agreement_parsing() {
        let ok = |v: &str| Agreement::parse(v).unwrap();
        assert_eq!(
            ok("permessage-deflate; client_no_context_takeover; server_max_window_bits=10"),
            Agreement { server_no_context_takeover: false, server_max_window_bits: 10 }
        );
        assert_eq!(
            ok("Permessage-Deflate;server_no_context_takeover;client_no_context_takeover;client_max_window_bits=15"),
            Agreement { server_no_context_takeover: true, server_max_window_bits: 15 }
        );
        for (bad, why) in [
            ("permessage-deflate", "client_no_context_takeover"),
            ("permessage-deflate; client_no_context_takeover; client_max_window_bits=12", "12 bits"),
            ("permessage-deflate; client_no_context_takeover; server_max_window_bits=16", "8-15"),
            ("permessage-deflate; client_no_context_takeover; server_max_window_bits", "8-15"),
            ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", "repeated"),
            ("permessage-deflate; client_no_context_takeover; foo=1", "unexpected"),
            ("x-webkit-deflate-frame", "offered permessage-deflate"),
            ("permessage-deflate; client_no_context_takeover, permessage-deflate", "2 extensions"),
        ] {
            let e = Agreement::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn json_payloads_compress_like_application_data() {
        for (size, lo, hi) in [(1024usize, 2.2, 3.0), (16384, 5.0, 7.0)] {
            let p = json_payload(size, 3);
            assert_eq!(p.len(), size);
            assert!(std::str::from_utf8(&p).is_ok());
            let ratio = size as f64 / MessageDeflater::new().compress(&p).len() as f64;
            assert!((lo..hi).contains(&ratio), "{size} B: ratio {ratio:.2}");
        }
        assert_ne!(json_payload(1024, 1), json_payload(1024, 2));
    }
}
