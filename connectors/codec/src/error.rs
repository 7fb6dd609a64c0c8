//! Why a piece could not be decoded or a record encoded. The cause (the JSON parser's,
//! the CSV reader's) is kept as the error's source; show it with `runnel_core::chain`.

/// A piece that does not decode, or a record that does not encode, in its format.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Bytes that should be UTF-8 text are not.
    #[error("{what} is not UTF-8 text")]
    Utf8 {
        what: &'static str,
        #[source]
        source: std::str::Utf8Error,
    },
    /// Bytes that should be one JSON document are not.
    #[error("{what} is not JSON")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The CSV reader refused the piece.
    #[error("not CSV")]
    Csv(#[source] csv::Error),
    /// A CloudEvent's `data_base64` does not decode.
    #[error("a CloudEvent's data_base64 is not base64")]
    Base64(#[source] base64::DecodeError),
    /// A value too long for a 4-byte length prefix.
    #[error("a record of {0} bytes is too long to length-prefix")]
    TooLong(usize),
    /// The piece or record breaks a rule of its format (the reason says which).
    #[error("{0}")]
    Invalid(String),
}
