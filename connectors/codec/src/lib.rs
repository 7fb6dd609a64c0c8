//! Framing: how a byte stream from the outside (a streamed HTTP body, a file, a socket)
//! becomes records, and the maximum record size that bounds it.
//!
//! [`Deframer`] is fed chunks as they arrive and yields [`Frame`]s. It never holds more than
//! the maximum record size plus the chunk being read: a record that grows past the limit is
//! not kept; it becomes one [`Frame::Oversized`] with its size (counted to its end when
//! the framing has one), and reading resynchronises at the next delimiter. A connector
//! therefore stays within (records in flight) × (maximum record size) on any input.

mod error;
pub mod format;
mod messages;
mod split;
pub mod template;

pub use error::CodecError;
pub use format::{CloudEventsMode, Decoded, Decoder, Encoder, FormatKind, FormatOptions, Way};
pub use messages::Messages;
pub use split::Split;

use bytes::{Buf, Bytes, BytesMut};
use runnel_core::{ByteSize, FieldError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kafka's default maximum message size, and Runnel's default maximum record size.
pub const DEFAULT_MAX_RECORD: u64 = 1 << 20;

/// How a byte stream is cut into records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// The whole stream (one message, one file, one body) is one record.
    Bytes,
    /// Records end at `\n`; a `\r` before it is dropped too.
    Newline,
    /// Records end at this byte sequence (not empty).
    Delimiter(Vec<u8>),
    /// Each record is preceded by its length, a 4-byte big-endian unsigned integer.
    LengthPrefixed,
}

/// One piece of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Record(Bytes),
    /// A record longer than the maximum: dropped, not buffered. `size` is its length when
    /// its end was seen (`complete`), else what was read of it before the stream ended.
    Oversized {
        size: u64,
        complete: bool,
    },
    /// The stream ended inside a length-prefixed record: `size` of its `expected` bytes came.
    Truncated {
        size: u64,
        expected: u64,
    },
}

/// Cuts a byte stream into records of at most `max` bytes.
#[derive(Debug)]
pub struct Deframer {
    framing: Framing,
    max: usize,
    buf: BytesMut,
    /// Where the next delimiter search starts: the bytes before it hold no delimiter.
    searched: usize,
    /// Bytes of an oversized record dropped so far, while waiting for its end.
    discarding: Option<u64>,
}

impl Deframer {
    pub fn new(framing: Framing, max: ByteSize) -> Self {
        let max = usize::try_from(max.0).unwrap_or(usize::MAX).max(1);
        Deframer {
            framing,
            max,
            buf: BytesMut::new(),
            searched: 0,
            discarding: None,
        }
    }

    /// The maximum record size.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes held now (never much more than the maximum).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether it is inside an oversized record, dropping it: a position taken now would
    /// fall inside a record.
    pub fn is_discarding(&self) -> bool {
        self.discarding.is_some()
    }

    /// Feeds the next chunk; collect what it completes with [`Deframer::next_frame`].
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete frame of what was pushed, if any. Call until `None` after every
    /// push.
    pub fn next_frame(&mut self) -> Option<Frame> {
        match self.framing.clone() {
            Framing::Bytes => {
                if self.buf.len() > self.max {
                    let dropped = self.buf.len() as u64;
                    self.buf.clear();
                    *self.discarding.get_or_insert(0) += dropped;
                }
                None
            }
            Framing::Newline => self.delimited(b"\n", true),
            Framing::Delimiter(d) => self.delimited(&d, false),
            Framing::LengthPrefixed => self.length_prefixed(),
        }
    }

    /// The end of the stream: what is left (a last record without its delimiter, or the
    /// whole stream with `Bytes` framing), or the oversized record it ended in.
    pub fn finish(&mut self) -> Option<Frame> {
        let rest = std::mem::take(&mut self.buf);
        self.searched = 0;
        if let Some(dropped) = self.discarding.take() {
            return Some(Frame::Oversized {
                size: dropped + rest.len() as u64,
                complete: matches!(self.framing, Framing::Bytes),
            });
        }
        if rest.is_empty() {
            return None;
        }
        if rest.len() > self.max {
            return Some(Frame::Oversized {
                size: rest.len() as u64,
                complete: matches!(self.framing, Framing::Bytes),
            });
        }
        match self.framing {
            // An unfinished length-prefixed record is cut short, not a record.
            Framing::LengthPrefixed => {
                let expected = match rest.get(..4) {
                    Some(p) => u64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]])),
                    None => 0,
                };
                Some(Frame::Truncated {
                    size: rest.len().saturating_sub(4) as u64,
                    expected,
                })
            }
            Framing::Newline => {
                let mut r = rest.freeze();
                if r.ends_with(b"\r") {
                    r.truncate(r.len() - 1);
                }
                Some(Frame::Record(r))
            }
            _ => Some(Frame::Record(rest.freeze())),
        }
    }

    fn delimited(&mut self, delim: &[u8], strip_cr: bool) -> Option<Frame> {
        loop {
            let from = self.searched;
            match find(&self.buf[from..], delim).map(|i| i + from) {
                Some(pos) => {
                    let piece = self.buf.split_to(pos);
                    self.buf.advance(delim.len());
                    self.searched = 0;
                    if let Some(dropped) = self.discarding.take() {
                        return Some(Frame::Oversized {
                            size: dropped + piece.len() as u64,
                            complete: true,
                        });
                    }
                    if piece.len() > self.max {
                        return Some(Frame::Oversized {
                            size: piece.len() as u64,
                            complete: true,
                        });
                    }
                    let mut piece = piece.freeze();
                    if strip_cr && piece.ends_with(b"\r") {
                        piece.truncate(piece.len() - 1);
                    }
                    if piece.is_empty() {
                        continue;
                    }
                    return Some(Frame::Record(piece));
                }
                None => {
                    // Keep only what may still start a delimiter; past the maximum the
                    // record is dropped as it comes and its bytes are counted.
                    let keep = delim.len().saturating_sub(1).min(self.buf.len());
                    if self.buf.len() > self.max || self.discarding.is_some() {
                        let drop = self.buf.len() - keep;
                        self.buf.advance(drop);
                        *self.discarding.get_or_insert(0) += drop as u64;
                        self.searched = 0;
                    } else {
                        self.searched = self.buf.len() - keep;
                    }
                    return None;
                }
            }
        }
    }

    fn length_prefixed(&mut self) -> Option<Frame> {
        loop {
            if let Some(left) = self.discarding {
                // `left` counts down what remains of the oversized record.
                let n = (left as usize).min(self.buf.len());
                self.buf.advance(n);
                let left = left - n as u64;
                if left > 0 {
                    self.discarding = Some(left);
                    return None;
                }
                self.discarding = None;
                continue;
            }
            if self.buf.len() < 4 {
                return None;
            }
            let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            let len = len as usize;
            if len > self.max {
                self.buf.advance(4);
                self.discarding = Some(len as u64);
                return Some(Frame::Oversized {
                    size: len as u64,
                    complete: true,
                });
            }
            if self.buf.len() < 4 + len {
                return None;
            }
            self.buf.advance(4);
            return Some(Frame::Record(self.buf.split_to(len).freeze()));
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [] => None,
        [b] => hay.iter().position(|x| x == b),
        _ => hay.windows(needle.len()).position(|w| w == needle),
    }
}

/// The `framing` option of a section that reads or writes a byte stream; with
/// `delimiter` it takes the `delimiter` option beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FramingKind {
    /// One message (one file, one body) is one record.
    Bytes,
    /// Records end at a newline (`\r\n` too).
    #[default]
    Newline,
    /// Records end at the `delimiter` option.
    Delimiter,
    /// Each record is preceded by its length (4 bytes, big-endian).
    #[serde(alias = "length_prefixed")]
    LengthPrefixed,
}

impl FramingKind {
    /// The framing, with `delimiter` (the `delimiter` option) checked against it.
    pub fn with(self, delimiter: Option<&str>) -> Result<Framing, FieldError> {
        match (self, delimiter) {
            (FramingKind::Delimiter, Some(d)) if !d.is_empty() => {
                Ok(Framing::Delimiter(d.as_bytes().to_vec()))
            }
            (FramingKind::Delimiter, _) => Err(FieldError::new(
                "delimiter",
                "framing: delimiter needs a delimiter that is not empty",
            )),
            (_, Some(_)) => Err(FieldError::new(
                "delimiter",
                "is only read with framing: delimiter",
            )),
            (FramingKind::Bytes, None) => Ok(Framing::Bytes),
            (FramingKind::Newline, None) => Ok(Framing::Newline),
            (FramingKind::LengthPrefixed, None) => Ok(Framing::LengthPrefixed),
        }
    }
}

impl Framing {
    /// Appends `value` framed: followed by its delimiter, or preceded by its length. A value
    /// over 4 GiB cannot be length-prefixed and is refused.
    pub fn encode(&self, value: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        match self {
            Framing::Bytes => out.extend_from_slice(value),
            Framing::Newline => {
                out.extend_from_slice(value);
                out.push(b'\n');
            }
            Framing::Delimiter(d) => {
                out.extend_from_slice(value);
                out.extend_from_slice(d);
            }
            Framing::LengthPrefixed => {
                let len =
                    u32::try_from(value.len()).map_err(|_| CodecError::TooLong(value.len()))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(value);
            }
        }
        Ok(())
    }
}

/// The reason given for an oversized record, for logs and dead letters.
pub fn oversized_reason(size: u64, complete: bool, max: usize) -> String {
    let size = if complete {
        format!("{size} bytes")
    } else {
        format!("at least {size} bytes")
    };
    format!("a record of {size} is over the maximum record size of {max} bytes (max_record_size)")
}

/// The `max_record_size` field of a section that moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct MaxRecordSize(pub ByteSize);

impl Default for MaxRecordSize {
    fn default() -> Self {
        MaxRecordSize(ByteSize(DEFAULT_MAX_RECORD))
    }
}

impl MaxRecordSize {
    /// More than 0 and at most 1 GiB.
    pub fn check(&self, field: &str) -> Result<(), FieldError> {
        if self.0.0 == 0 || self.0.0 > 1 << 30 {
            return Err(FieldError::new(
                field,
                format!("{} is out of range: 1 byte to 1GiB", self.0.0),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod tests;
