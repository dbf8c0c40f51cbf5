//! Property: decoding a stream of encoded frames gives the same headers and payloads
//! however the input is split into reads, and a corrupted stream fails with the same
//! error after the same frames.

use proptest::prelude::*;
use ringwire_frame::{
    DecodeConfig, Decoded, FrameError, FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, RSV1, Role,
    apply_mask, decode_header,
};

/// A frame as the test sees it: the header and the unmasked payload.
type Frame = (FrameHeader, Vec<u8>);

/// A frame being received: its header, the unmasked payload so far.
struct Partial {
    header: FrameHeader,
    payload: Vec<u8>,
}

/// A minimal frame-stream decoder over `decode_header` + `apply_mask`, fed in chunks.
/// Only unconsumed header bytes are kept between chunks; payload bytes are unmasked as
/// they arrive, continuing the key at the running offset.
struct StreamDecoder {
    cfg: DecodeConfig,
    pending: Vec<u8>,
    current: Option<Partial>,
    frames: Vec<Frame>,
}

impl StreamDecoder {
    fn new(cfg: DecodeConfig) -> Self {
        Self { cfg, pending: Vec::new(), current: None, frames: Vec::new() }
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<(), FrameError> {
        self.pending.extend_from_slice(chunk);
        let mut at = 0;
        loop {
            if let Some(cur) = &mut self.current {
                let want = cur.header.payload_len as usize - cur.payload.len();
                let take = want.min(self.pending.len() - at);
                let mut piece = self.pending[at..at + take].to_vec();
                if let Some(key) = cur.header.mask {
                    apply_mask(&mut piece, key, cur.payload.len());
                }
                cur.payload.extend_from_slice(&piece);
                at += take;
                if take < want {
                    break;
                }
                let done = self.current.take().expect("a frame is in progress");
                self.frames.push((done.header, done.payload));
            } else {
                match decode_header(&self.pending[at..], &self.cfg)? {
                    Decoded::NeedMore(n) => {
                        let have = self.pending.len() - at;
                        assert!(n > 0, "NeedMore(0)");
                        assert!(
                            have + n <= MAX_HEADER_LEN,
                            "NeedMore({n}) with {have} bytes is past the longest header"
                        );
                        break;
                    }
                    Decoded::Header(header, used) => {
                        assert!((2..=MAX_HEADER_LEN).contains(&used));
                        assert_eq!(used, header.encoded_len(), "header length disagrees with encoded_len");
                        at += used;
                        self.current = Some(Partial { header, payload: Vec::new() });
                    }
                }
            }
        }
        self.pending.drain(..at);
        Ok(())
    }
}

/// The frames decoded before the stream ended or failed, the error if it failed, and
/// whether the stream ended inside a frame.
type Outcome = (Vec<Frame>, Option<core::mem::Discriminant<FrameError>>, bool);

fn decode_in_chunks(cfg: DecodeConfig, wire: &[u8], cuts: &[usize]) -> Outcome {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (wire.len() + 1)).collect();
    cuts.sort_unstable();
    let mut d = StreamDecoder::new(cfg);
    let mut at = 0;
    for end in cuts.into_iter().chain([wire.len()]) {
        if let Err(e) = d.feed(&wire[at..end]) {
            return (d.frames, Some(core::mem::discriminant(&e)), true);
        }
        at = end;
    }
    let mid_frame = d.current.is_some() || !d.pending.is_empty();
    (d.frames, None, mid_frame)
}

fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut wire = Vec::new();
    for (h, payload) in frames {
        wire.extend_from_slice(h.encode().as_bytes());
        let start = wire.len();
        wire.extend_from_slice(payload);
        if let Some(key) = h.mask {
            apply_mask(&mut wire[start..], key, 0);
        }
    }
    wire
}

fn payload_len() -> impl Strategy<Value = usize> {
    // Every length class: 7-bit, the 125/126 edge, 16-bit, and (rarely) 64-bit.
    prop_oneof![
        6 => 0usize..=130,
        3 => 120usize..=600,
        1 => 65_530usize..=65_560,
    ]
}

fn frame(role: Role, rsv1_allowed: bool) -> impl Strategy<Value = Frame> {
    let data_op = prop_oneof![Just(OpCode::Text), Just(OpCode::Binary), Just(OpCode::Continuation)];
    let control_op = prop_oneof![Just(OpCode::Close), Just(OpCode::Ping), Just(OpCode::Pong)];
    let data = (data_op, any::<bool>(), payload_len());
    let control = (control_op, Just(true), 0..=MAX_CONTROL_PAYLOAD);
    (prop_oneof![3 => data, 1 => control], any::<bool>(), any::<[u8; 4]>(), any::<u64>()).prop_map(
        move |((opcode, fin, len), rsv1, key, seed)| {
            let payload: Vec<u8> = (0..len).map(|i| (seed >> (i % 57)) as u8 ^ i as u8).collect();
            let header = FrameHeader {
                fin,
                rsv: if rsv1 && rsv1_allowed && !opcode.is_control() { RSV1 } else { 0 },
                opcode,
                mask: (role == Role::Server).then_some(key),
                payload_len: len as u64,
            };
            (header, payload)
        },
    )
}

fn stream() -> impl Strategy<Value = (DecodeConfig, Vec<Frame>)> {
    (prop_oneof![Just(Role::Server), Just(Role::Client)], any::<bool>()).prop_flat_map(|(role, rsv1)| {
        let cfg = DecodeConfig { allowed_rsv: if rsv1 { RSV1 } else { 0 }, ..DecodeConfig::new(role, 1 << 20) };
        (Just(cfg), proptest::collection::vec(frame(role, rsv1), 1..6))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn same_frames_however_split(
        (cfg, frames) in stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
        tiny in proptest::collection::vec(0usize..16, 0..24),
    ) {
        let wire = encode(&frames);
        let whole = decode_in_chunks(cfg, &wire, &[]);
        prop_assert_eq!(&whole, &(frames.clone(), None, false));
        // Random cuts anywhere, plus a run of cuts a few bytes apart at the start,
        // so headers are split at every position.
        let mut all_cuts = cuts.clone();
        let mut at = 0;
        for t in tiny {
            at += t;
            all_cuts.push(at);
        }
        prop_assert_eq!(&decode_in_chunks(cfg, &wire, &all_cuts), &whole);
    }

    #[test]
    fn corrupted_stream_fails_the_same_however_split(
        (cfg, frames) in stream(),
        flip_at in any::<usize>(),
        flip in 1u8..=255,
        cuts in proptest::collection::vec(any::<usize>(), 1..24),
    ) {
        let mut wire = encode(&frames);
        let i = flip_at % wire.len();
        wire[i] ^= flip;
        let whole = decode_in_chunks(cfg, &wire, &[]);
        prop_assert_eq!(decode_in_chunks(cfg, &wire, &cuts), whole);
    }

    #[test]
    fn byte_at_a_time_equals_whole((cfg, frames) in stream()) {
        let wire = encode(&frames);
        prop_assume!(wire.len() <= 4096);
        let cuts: Vec<usize> = (0..wire.len()).collect();
        prop_assert_eq!(decode_in_chunks(cfg, &wire, &cuts), (frames, None, false));
    }
}
