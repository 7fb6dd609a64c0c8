//! Whole messages (a queue's deliveries, a stream's entries, a WebSocket's messages) into
//! records: one decoder, reset at each message, and the ids of the events it makes.

use bytes::Bytes;
use runnel_core::Record;

use crate::{CodecError, Decoded, Decoder, FormatOptions};

/// Turns each message into its records with the section's format.
#[derive(Debug)]
pub struct Messages {
    decoder: Decoder,
    decoded: Vec<Decoded>,
    started: i64,
    made: u64,
}

impl Messages {
    /// Events it makes are named `{started}-{n}`: give the process's start time in
    /// milliseconds, so names do not repeat across restarts.
    pub fn new(format: &FormatOptions, started: i64) -> Self {
        Messages {
            decoder: Decoder::new(format),
            decoded: Vec::new(),
            started,
            made: 0,
        }
    }

    /// Whether each message is its record as it is (format bytes).
    pub fn is_passthrough(&self) -> bool {
        self.decoder.is_passthrough()
    }

    /// Appends the records of one message to `out` (none, one, or several: CSV rows). On an
    /// error, what decoded before it is appended; the caller logs the error and counts it.
    pub fn records(&mut self, body: Bytes, out: &mut Vec<Record>) -> Result<(), CodecError> {
        if self.decoder.is_passthrough() {
            out.push(Record::new(body));
            return Ok(());
        }
        // Each message is read on its own: a CSV header row is read again.
        self.decoder.reset();
        let (started, made) = (self.started, &mut self.made);
        let id = || {
            *made += 1;
            format!("{started}-{made}")
        };
        let result = self.decoder.decode_into(body, id, &mut self.decoded);
        out.extend(self.decoded.drain(..).map(|d| {
            let mut r = Record::new(d.value);
            r.headers = d.headers;
            r
        }));
        result
    }
}
