//! [`FrameSplitter`]: finds frame boundaries in the received byte stream, so the driver can
//! hand the connection one frame at a time and deliver its events in between.
//!
//! Why: `Connection::handle_read` parses everything it is given before the driver sees the
//! first event. If a read holds a message and then a bad frame, the connection has already
//! failed (and refuses sends) by the time the application gets the message, so an echo of a
//! message that came *before* the fault is lost (Autobahn 3.2-3.4, 4.1.3, 4.1.5, 4.2.3-4.2.5,
//! 5.15 expect it). Feeding frame by frame keeps the order the wire had.

/// Tracks where the current frame ends across reads. Only the length fields are read; every
/// check is left to the connection.
#[derive(Debug, Default)]
pub(crate) struct FrameSplitter {
    hdr: [u8; 14],
    hdr_len: usize,
    /// Payload bytes of the current frame still to come (once its header is complete).
    remaining: u64,
    in_payload: bool,
}

impl FrameSplitter {
    /// How many bytes of `data` to feed so that the feed ends at the end of the first frame
    /// finishing in `data`; `data.len()` when none finishes in it.
    pub(crate) fn next_boundary(&mut self, data: &[u8]) -> usize {
        let mut i = 0;
        while i < data.len() {
            if self.in_payload {
                let take = (data.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                i += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.in_payload = false;
                    return i;
                }
                continue;
            }
            self.hdr[self.hdr_len] = data[i];
            self.hdr_len += 1;
            i += 1;
            if self.hdr_len < 2 || self.hdr_len < header_len(self.hdr[1]) {
                continue;
            }
            self.remaining = payload_len(&self.hdr[..self.hdr_len]);
            self.hdr_len = 0;
            if self.remaining == 0 {
                return i;
            }
            self.in_payload = true;
        }
        data.len()
    }
}

fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

fn payload_len(hdr: &[u8]) -> u64 {
    match hdr[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([hdr[2], hdr[3]])),
        127 => u64::from_be_bytes(hdr[2..10].try_into().expect("8 bytes")),
        n => u64::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize, masked: bool) -> Vec<u8> {
        let mut f = vec![0x82];
        let m = if masked { 0x80 } else { 0 };
        match len {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(7u8, len));
        f
    }

    /// Splits `stream` fed in chunks of `chunk` bytes; returns the frame end offsets.
    fn ends(stream: &[u8], chunk: usize) -> Vec<usize> {
        let mut s = FrameSplitter::default();
        let mut out = Vec::new();
        let mut base = 0;
        for piece in stream.chunks(chunk) {
            let mut at = 0;
            while at < piece.len() {
                let n = s.next_boundary(&piece[at..]);
                at += n;
                if at < piece.len() || s.hdr_len == 0 && !s.in_payload {
                    out.push(base + at);
                }
            }
            base += piece.len();
        }
        out.dedup();
        out
    }

    #[test]
    fn finds_every_boundary_under_any_split() {
        let frames = [frame(0, false), frame(5, false), frame(125, true), frame(126, false), frame(70_000, true)];
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for f in &frames {
            stream.extend_from_slice(f);
            want.push(stream.len());
        }
        for chunk in [1, 2, 3, 7, 14, 100, 1000, stream.len()] {
            assert_eq!(ends(&stream, chunk), want, "chunk {chunk}");
        }
    }
}
