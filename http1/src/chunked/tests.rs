use proptest::prelude::*;

use super::*;

/// Decodes `input` fed in pieces of `step` bytes; returns the data and the bytes after
/// the body.
fn decode_in_pieces(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), ChunkedError> {
    let mut d = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    while fed < input.len() {
        let piece = &input[fed..(fed + step.max(1)).min(input.len())];
        fed += piece.len();
        pending.extend_from_slice(piece);
        let mut pos = 0;
        loop {
            match d.decode(&pending[pos..])? {
                Step::Data(r) => {
                    data.extend_from_slice(&pending[pos + r.start..pos + r.end]);
                    pos += r.end;
                }
                Step::NeedMore => {
                    pos = pending.len();
                    break;
                }
                Step::Done(n) => {
                    assert!(d.is_done());
                    let rest = [&pending[pos + n..], &input[fed..]].concat();
                    return Ok((data, rest));
                }
            }
        }
        pending.drain(..pos);
    }
    panic!("body did not end: {:?}", String::from_utf8_lossy(input));
}

fn encode(data: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        out.extend_from_slice(SizeLine::new(n as u64).as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(CRLF);
        rest = &rest[n..];
    }
    out.extend_from_slice(LAST_CHUNK);
    out
}

#[test]
fn a_body_with_extensions_and_trailers() {
    let body = b"5;name=value\r\nhello\r\n6 \r\n world\r\n0\r\nExpires: never\r\n\r\nGET /next";
    let (data, rest) = decode_in_pieces(body, 1000).unwrap();
    assert_eq!(data, b"hello world");
    assert_eq!(rest, b"GET /next");
}

#[test]
fn the_size_line_is_hex() {
    assert_eq!(SizeLine::new(1).as_bytes(), b"1\r\n");
    assert_eq!(SizeLine::new(255).as_bytes(), b"ff\r\n");
    assert_eq!(SizeLine::new(u64::MAX).as_bytes(), b"ffffffffffffffff\r\n");
}

#[test]
fn ambiguous_framing_is_refused() {
    let cases: &[(&[u8], ChunkedError)] = &[
        (b"zz\r\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b"\r\n", ChunkedError::InvalidSize),
        (b"5x\r\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b"-5\r\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b"5\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b"5\r\rhello\r\n0\r\n\r\n", ChunkedError::MissingCrlf),
        (b"5\r\nhelloXX0\r\n\r\n", ChunkedError::MissingCrlf),
        (b"5\r\nhello\n0\r\n\r\n", ChunkedError::MissingCrlf),
        (b"10000000000000000\r\n", ChunkedError::SizeTooLarge),
        (
            b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
            ChunkedError::InvalidExtension,
        ),
        (b"0\r\nX: a\x01\r\n\r\n", ChunkedError::InvalidTrailer),
    ];
    for (input, want) in cases {
        let mut d = ChunkedDecoder::new();
        let mut pos = 0;
        let got = loop {
            match d.decode(&input[pos..]) {
                Ok(Step::Data(r)) => pos += r.end,
                Ok(other) => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
                Err(e) => break e,
            }
        };
        assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn long_extensions_and_trailers_are_bounded() {
    let ext = format!(
        "1;{}\r\na\r\n0\r\n\r\n",
        "e".repeat(MAX_EXTENSION_BYTES + 1)
    );
    assert_eq!(
        decode_in_pieces(ext.as_bytes(), 7).unwrap_err(),
        ChunkedError::InvalidExtension
    );
    let trailer = format!("0\r\nX: {}\r\n\r\n", "t".repeat(MAX_TRAILER_BYTES));
    assert_eq!(
        decode_in_pieces(trailer.as_bytes(), 7).unwrap_err(),
        ChunkedError::InvalidTrailer
    );
}

proptest! {
    /// Whatever the chunk sizes and however the bytes arrive, the data comes out whole and
    /// nothing after the body is taken.
    #[test]
    fn round_trips_in_any_pieces(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        sizes in proptest::collection::vec(1usize..700, 1..8),
        step in 1usize..64,
    ) {
        let mut wire = encode(&data, &sizes);
        wire.extend_from_slice(b"NEXT");
        let (decoded, rest) = decode_in_pieces(&wire, step).unwrap();
        prop_assert_eq!(decoded, data);
        prop_assert_eq!(rest, b"NEXT".to_vec());
    }
}
