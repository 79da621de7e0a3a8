//! The SDK's error type: what a step, a callback, a child context or the whole execution fails
//! with, in the shape the host records in history (`error-type`, `error-message`, optional
//! `error-data`). Owns the conversions to and from the WIT `error-object`; does no IO.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::wit::ErrorObject;

/// The error type given to an event that does not deserialize into the handler's input type.
pub(crate) const INVALID_INPUT: &str = "InvalidInput";
/// The error type given to a value that does not serialize or deserialize as JSON.
pub(crate) const SERIALIZATION_ERROR: &str = "SerializationError";
/// The error type given to plain strings turned into errors with `?` or `.into()`.
pub(crate) const GENERIC_ERROR: &str = "Error";

/// An error as the host records it in history.
///
/// `error_type` is a short machine-readable name (`TransientError`, `ValidationError`,
/// `Callback.Timeout`, ...): retry filters ([`RetryStrategy::retry_on`]) match on it, and
/// it survives replay unchanged, so code may branch on it. `error_message` is for people.
/// `error_data` is optional JSON text with details.
///
/// ```
/// use durable_sdk::Error;
///
/// let err = Error::new("ValidationError", "username is required");
/// assert_eq!(err.to_string(), "ValidationError: username is required");
/// assert!(err.is("ValidationError"));
/// ```
///
/// [`RetryStrategy::retry_on`]: crate::RetryStrategy::retry_on
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// Short machine-readable name of the error.
    pub error_type: String,
    /// Human-readable description.
    pub error_message: String,
    /// Optional details as JSON text.
    pub error_data: Option<String>,
}

impl Error {
    /// An error with this type and message and no data.
    pub fn new(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            error_message: error_message.into(),
            error_data: None,
        }
    }

    /// Any displayable error (an `std::io::Error`, a parse error, ...) as an [`Error`] of
    /// the given type; its `Display` text becomes the message.
    pub fn from_display(error_type: impl Into<String>, error: impl fmt::Display) -> Self {
        Self::new(error_type, error.to_string())
    }

    /// Attaches details, serialized as JSON. A value that does not serialize is dropped
    /// (the data is optional and must be JSON for the host to accept it).
    pub fn with_data<T: Serialize + ?Sized>(mut self, data: &T) -> Self {
        self.error_data = serde_json::to_string(data).ok();
        self
    }

    /// Whether this error has the given type.
    pub fn is(&self, error_type: &str) -> bool {
        self.error_type == error_type
    }

    pub(crate) fn to_wit(&self) -> ErrorObject {
        ErrorObject {
            error_type: self.error_type.clone(),
            error_message: self.error_message.clone(),
            error_data: self.error_data.clone(),
        }
    }

    pub(crate) fn into_wit(self) -> ErrorObject {
        ErrorObject {
            error_type: self.error_type,
            error_message: self.error_message,
            error_data: self.error_data,
        }
    }
}

impl From<ErrorObject> for Error {
    fn from(e: ErrorObject) -> Self {
        Self {
            error_type: e.error_type,
            error_message: e.error_message,
            error_data: e.error_data,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

impl std::error::Error for Error {}

/// A JSON (de)serialization failure becomes a `SerializationError`.
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::from_display(SERIALIZATION_ERROR, e)
    }
}

/// A message alone becomes an error of type `Error`, so `Err("boom".into())` and `?` on a
/// `Result<_, String>` work.
impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::new(GENERIC_ERROR, message)
    }
}

/// A message alone becomes an error of type `Error`.
impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::new(GENERIC_ERROR, message)
    }
}

/// Turns the error of any `Result` whose error is displayable into an [`Error`] of a chosen
/// type, for use with `?`.
///
/// ```
/// use durable_sdk::{Error, ResultExt};
///
/// fn parse(text: &str) -> Result<u32, Error> {
///     text.parse::<u32>().with_error_type("ParseError")
/// }
/// assert_eq!(parse("x").unwrap_err().error_type, "ParseError");
/// ```
pub trait ResultExt<T> {
    /// Maps the error to an [`Error`] of type `error_type` whose message is the error's
    /// `Display` text.
    fn with_error_type(self, error_type: &str) -> Result<T, Error>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn with_error_type(self, error_type: &str) -> Result<T, Error> {
        self.map_err(|e| Error::from_display(error_type, e))
    }
}
