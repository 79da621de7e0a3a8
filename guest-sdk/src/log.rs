//! The replay-aware logger: a thin handle over the host's `log` import. The host records each
//! line once and drops it when the same code runs again during replay, so guest code logs
//! freely without duplicates. Owns no state.

use crate::host;
use crate::wit::LogLevel;

/// Writes replay-aware log lines into the execution's logs.
///
/// Get one from [`Context::logger`](crate::Context::logger) or
/// [`StepContext::logger`](crate::StepContext::logger). Lines logged outside steps are
/// recorded once even though that code runs again on every replay; lines logged inside a
/// step body are recorded once per attempt (a replayed step does not run its body).
///
/// Plain `println!` / `eprintln!` also reach the execution's logs (the host captures them as
/// lines of stream `stdout`, level info, and `stderr`, level warn) and are recorded once too:
/// the host keys each printed line by the replay position, as it keys these lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Logger {
    _private: (),
}

impl Logger {
    pub(crate) fn new() -> Self {
        Self { _private: () }
    }

    /// Logs at debug level.
    pub fn debug(&self, message: impl AsRef<str>) {
        host::log(LogLevel::Debug, message.as_ref());
    }

    /// Logs at info level.
    pub fn info(&self, message: impl AsRef<str>) {
        host::log(LogLevel::Info, message.as_ref());
    }

    /// Logs at warn level.
    pub fn warn(&self, message: impl AsRef<str>) {
        host::log(LogLevel::Warn, message.as_ref());
    }

    /// Logs at error level.
    pub fn error(&self, message: impl AsRef<str>) {
        host::log(LogLevel::Error, message.as_ref());
    }
}
