//! Chunked transfer coding (RFC 9112 §7.1): an incremental decoder that hands out the data
//! of each chunk as ranges of its input (no copy), and the chunk-size line for encoding.
//!
//! handoff decodes every chunked body it relays and encodes it anew, so what the next hop
//! parses is exactly what handoff understood: extensions and trailers stay behind, and
//! anything a lenient and a strict parser could read two ways (a bare LF, a size with junk
//! after it, a missing CRLF after the data) is refused.

use std::ops::Range;

/// Longest chunk extension accepted on one size line.
pub const MAX_EXTENSION_BYTES: usize = 4096;
/// Most trailer bytes accepted after the last chunk (they are dropped, not forwarded).
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// The last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// What ends each chunk's data.
pub const CRLF: &[u8] = b"\r\n";

/// Why a chunked body cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// A chunk-size line that does not start with a hex digit, or has junk after it.
    #[error("invalid chunk size")]
    InvalidSize,
    /// A chunk size past 2^64.
    #[error("chunk size too large")]
    SizeTooLarge,
    /// A chunk extension longer than [`MAX_EXTENSION_BYTES`], or with a control in it.
    #[error("invalid chunk extension")]
    InvalidExtension,
    /// A line not ended by CRLF, or chunk data not followed by CRLF.
    #[error("missing CRLF")]
    MissingCrlf,
    /// More trailer bytes than [`MAX_TRAILER_BYTES`], or a control in a trailer line.
    #[error("invalid trailer section")]
    InvalidTrailer,
}

/// What one call of [`ChunkedDecoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Body data at this range of the input; everything before its end is consumed.
    Data(Range<usize>),
    /// The whole input was framing: more is needed.
    NeedMore,
    /// The body ended after this many bytes of the input; the rest is not the body's.
    Done(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// At the start of a chunk-size line.
    #[default]
    SizeStart,
    /// In the hex digits.
    Size,
    /// After the digits: whitespace, then `;` or CR.
    SizeEnd,
    /// In a chunk extension, up to CR.
    Extension,
    /// After the size line's CR.
    SizeLf,
    /// In the chunk's data.
    Data,
    /// After the data: CR.
    DataCr,
    /// After the data: LF.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// In a trailer line, up to CR.
    Trailer,
    /// After a trailer line's CR.
    TrailerLf,
    /// After the final CR.
    EndLf,
    /// The body is complete.
    Done,
}

/// An incremental chunked decoder: feed it what arrived, take the data ranges it gives.
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {
    state: State,
    /// Data left in the current chunk, or the size being read.
    remaining: u64,
    /// Bytes of the current extension, or of all trailers.
    extra: usize,
    /// The current chunk is the last (size 0).
    last: bool,
    /// Data bytes decoded so far.
    data: u64,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        ChunkedDecoder::default()
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Data bytes decoded so far.
    pub fn data_bytes(&self) -> u64 {
        self.data
    }

    /// Reads framing from `input` until data, the end of the body, or the end of `input`.
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Data => {
                    let take =
                        (input.len() - i).min(self.remaining.min(usize::MAX as u64) as usize);
                    self.remaining -= take as u64;
                    self.data += take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Step::Data(i..i + take));
                }
                State::SizeStart | State::Size => match hex(b) {
                    Some(d) => {
                        if self.state == State::SizeStart {
                            self.remaining = 0;
                            self.state = State::Size;
                        }
                        if self.remaining > u64::MAX >> 4 {
                            return Err(ChunkedError::SizeTooLarge);
                        }
                        self.remaining = self.remaining << 4 | u64::from(d);
                    }
                    None if self.state == State::SizeStart => {
                        return Err(ChunkedError::InvalidSize)
                    }
                    None => {
                        self.state = State::SizeEnd;
                        continue;
                    }
                },
                State::SizeEnd => match b {
                    b' ' | b'\t' => {}
                    b';' => {
                        self.extra = 0;
                        self.state = State::Extension;
                    }
                    b'\r' => self.state = State::SizeLf,
                    _ => return Err(ChunkedError::InvalidSize),
                },
                State::Extension => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\t' | 0x20..=0x7e | 0x80..=0xff if self.extra < MAX_EXTENSION_BYTES => {
                        self.extra += 1
                    }
                    _ => return Err(ChunkedError::InvalidExtension),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::MissingCrlf);
                    }
                    if self.remaining == 0 {
                        self.last = true;
                        self.extra = 0;
                        self.state = State::TrailerStart;
                    } else {
                        self.state = State::Data;
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkedError::MissingCrlf);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::MissingCrlf);
                    }
                    self.state = State::SizeStart;
                }
                State::TrailerStart => {
                    self.state = if b == b'\r' {
                        State::EndLf
                    } else {
                        continue_trailer(b, &mut self.extra)?;
                        State::Trailer
                    };
                }
                State::Trailer => {
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    } else {
                        continue_trailer(b, &mut self.extra)?;
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::MissingCrlf);
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::MissingCrlf);
                    }
                    self.state = State::Done;
                    return Ok(Step::Done(i + 1));
                }
                State::Done => return Ok(Step::Done(i)),
            }
            i += 1;
        }
        Ok(if self.state == State::Done {
            Step::Done(i)
        } else {
            Step::NeedMore
        })
    }
}

fn continue_trailer(b: u8, extra: &mut usize) -> Result<(), ChunkedError> {
    *extra += 1;
    if *extra > MAX_TRAILER_BYTES || !(b == b'\t' || b >= 0x20) || b == 0x7f {
        return Err(ChunkedError::InvalidTrailer);
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The chunk-size line for a chunk of `len` bytes: hex digits and CRLF.
#[derive(Debug, Clone, Copy)]
pub struct SizeLine {
    bytes: [u8; 18],
    start: u8,
}

impl SizeLine {
    /// The line announcing `len` bytes of data (`len` > 0: zero is [`LAST_CHUNK`]).
    pub fn new(len: u64) -> SizeLine {
        let mut bytes = [0u8; 18];
        bytes[16] = b'\r';
        bytes[17] = b'\n';
        let mut at = 16;
        let mut n = len;
        loop {
            at -= 1;
            bytes[at] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        SizeLine {
            bytes,
            start: at as u8,
        }
    }

    /// The line's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start as usize..]
    }
}

#[cfg(test)]
mod tests;
