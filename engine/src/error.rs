//! Errors the engine reports per input, classified by fault so the CLI, the UI and the
//! wire protocol can say what to do about them.

use serde::{Deserialize, Serialize};

use crate::codec::CodecError;
use crate::ops::{OpError, ParamError};

/// The fault behind an error, as a stable lower-case name (`"bad-input"`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The input is not a valid image (truncated, corrupt, not an image at all).
    BadInput,
    /// A valid file in a format or variant Prism does not handle.
    Unsupported,
    /// The input breaks a limit (pixels, bytes, time).
    Limit,
    /// The batch was cancelled before this input finished.
    Cancelled,
    /// A remote node failed or refused the work.
    Remote,
    /// Reading or writing a file failed.
    Io,
    /// Parameters or arguments were wrong.
    Usage,
}

impl ErrorKind {
    /// The stable name used in `--json` events.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadInput => "bad-input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Limit => "limit",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Remote => "remote",
            ErrorKind::Io => "io",
            ErrorKind::Usage => "usage",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error for one input: its kind and a message a user can act on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct EngineError {
    /// The fault.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

impl EngineError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<CodecError> for EngineError {
    fn from(e: CodecError) -> Self {
        let kind = match &e {
            CodecError::Decode(_) | CodecError::Empty | CodecError::NotAnImage => {
                ErrorKind::BadInput
            }
            CodecError::Unsupported(_) => ErrorKind::Unsupported,
            CodecError::Limit(_) => ErrorKind::Limit,
            CodecError::Io(_) => ErrorKind::Io,
            CodecError::Encode(_) => ErrorKind::Unsupported,
        };
        EngineError::new(kind, e.to_string())
    }
}

impl From<OpError> for EngineError {
    fn from(e: OpError) -> Self {
        let kind = match &e {
            OpError::Cancelled => ErrorKind::Cancelled,
            OpError::Unsupported(_) => ErrorKind::Unsupported,
        };
        EngineError::new(kind, e.to_string())
    }
}

impl From<ParamError> for EngineError {
    fn from(e: ParamError) -> Self {
        EngineError::new(ErrorKind::Usage, e.to_string())
    }
}
