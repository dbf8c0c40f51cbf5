//! Property: streamed UTF-8 validation over any chunking agrees with
//! `std::str::from_utf8` on the whole message, and fails in exactly the chunk that
//! holds the first byte that makes the message impossible (fail-fast).

use proptest::prelude::*;
use ringwire_frame::{InvalidUtf8, Utf8Validator, validate_utf8};

/// What `std` says about the whole message.
#[derive(Debug, PartialEq)]
enum Verdict {
    Valid,
    /// Ends inside a code point; every prefix is still a valid prefix.
    Incomplete,
    /// The byte at this index is the first after which no continuation can be valid.
    ImpossibleAt(usize),
}

fn verdict(bytes: &[u8]) -> Verdict {
    match std::str::from_utf8(bytes) {
        Ok(_) => Verdict::Valid,
        Err(e) => match e.error_len() {
            None => Verdict::Incomplete,
            Some(len) => {
                let v = e.valid_up_to();
                // The shortest prefix std itself calls invalid (not merely incomplete).
                let p = (v + 1..=bytes.len())
                    .find(|&p| std::str::from_utf8(&bytes[..p]).is_err_and(|e| e.error_len().is_some()))
                    .expect("the whole is invalid, so some prefix is");
                // The invalid sequence is `len` bytes at `v`; it is known to be invalid
                // at its last byte, or at the byte after it that fails to continue it.
                assert!(p == v + len || p == v + len + 1, "p {p} v {v} len {len}");
                Verdict::ImpossibleAt(p - 1)
            }
        },
    }
}

/// Feeds `bytes` cut at `cuts`; returns the index of the chunk whose `feed` failed,
/// or `Err(finish result)` if every feed succeeded.
fn stream(bytes: &[u8], cuts: &[usize]) -> Result<usize, Result<(), InvalidUtf8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut v = Utf8Validator::new();
    let mut at = 0;
    for (n, end) in cuts.into_iter().chain([bytes.len()]).enumerate() {
        if v.feed(&bytes[at..end]).is_err() {
            return Ok(n);
        }
        at = end;
    }
    Err(v.finish())
}

fn check(bytes: &[u8], cuts: &[usize]) -> Result<(), TestCaseError> {
    let mut sorted: Vec<usize> = cuts.iter().map(|&c| c % (bytes.len() + 1)).collect();
    sorted.sort_unstable();
    let got = stream(bytes, cuts);
    match verdict(bytes) {
        Verdict::Valid => {
            prop_assert_eq!(got, Err(Ok(())));
            prop_assert!(validate_utf8(bytes).is_ok());
        }
        Verdict::Incomplete => {
            prop_assert_eq!(got, Err(Err(InvalidUtf8)), "incomplete at the end must fail at finish");
            prop_assert!(validate_utf8(bytes).is_err());
        }
        Verdict::ImpossibleAt(i) => {
            // Chunk n spans [cut[n-1], cut[n]); the byte at i is in the first chunk whose end is > i.
            let chunk = sorted.iter().take_while(|&&c| c <= i).count();
            prop_assert_eq!(got, Ok(chunk), "first impossible byte at {} of {:?}", i, bytes);
            prop_assert!(validate_utf8(bytes).is_err());
        }
    }
    Ok(())
}

/// Valid UTF-8 with a few edits: a byte replaced, inserted or cut off, which makes
/// most of them invalid in the interesting places (inside and around code points).
fn almost_valid() -> impl Strategy<Value = Vec<u8>> {
    let text = prop_oneof![any::<String>(), "[a-zé€𝄞\u{7FF}\u{800}\u{FFFF}\u{10000}\u{10FFFF}]{0,40}",];
    (text, proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..3)).prop_map(|(s, edits)| {
        let mut b = s.into_bytes();
        for (at, byte, kind) in edits {
            let i = at % (b.len() + 1);
            match kind {
                0 if i < b.len() => b[i] = byte,
                1 => b.insert(i, byte),
                _ => b.truncate(i),
            }
        }
        b
    })
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(any::<usize>(), 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn valid_text_any_chunking(s in any::<String>(), c in cuts()) {
        check(s.as_bytes(), &c)?;
    }

    #[test]
    fn almost_valid_any_chunking(b in almost_valid(), c in cuts()) {
        check(&b, &c)?;
    }

    #[test]
    fn random_bytes_any_chunking(b in proptest::collection::vec(any::<u8>(), 0..48), c in cuts()) {
        check(&b, &c)?;
    }

    #[test]
    fn high_bytes_any_chunking(b in proptest::collection::vec(0x80u8..=0xFF, 0..16), c in cuts()) {
        check(&b, &c)?;
    }
}

#[test]
fn verdict_examples() {
    assert_eq!(verdict(b"abc"), Verdict::Valid);
    assert_eq!(verdict(&[b'a', 0xE2, 0x82]), Verdict::Incomplete);
    assert_eq!(verdict(&[b'a', 0xFF]), Verdict::ImpossibleAt(1));
    assert_eq!(verdict(&[0xE2, 0x28]), Verdict::ImpossibleAt(1));
    assert_eq!(verdict(&[0xED, 0xA0, 0x80]), Verdict::ImpossibleAt(1));
    assert_eq!(verdict(&[0xE2, 0x82, 0x28]), Verdict::ImpossibleAt(2));
}
