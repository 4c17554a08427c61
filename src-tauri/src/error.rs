//! The one error type commands return: what went wrong and what the user can do about it.
//!
//! It serializes as `{"kind", "message", "hint"}` so the UI can show a toast that says
//! what to do without knowing Rust's error types.

use prism_engine::ops::ParamError;
use prism_engine::preset::PresetError;
use prism_engine::{EngineError, ErrorKind};
use serde::ser::SerializeStruct;
use serde::Serialize;

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The engine refused or failed (bad input, limit, I/O, ...).
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// An op or parameter from the UI is invalid.
    #[error("{0}")]
    Params(#[from] ParamError),
    /// A chain or a preset (from the UI or a file) is not valid; a step at fault is named.
    #[error("{0}")]
    Preset(#[from] PresetError),
    /// The UI sent something that does not parse.
    #[error("{0}")]
    BadRequest(String),
    /// A batch is running and the request needs it finished.
    #[error("a batch is already running")]
    Busy,
    /// The id names no image in the library.
    #[error("no image with id {0}")]
    UnknownImage(u64),
    /// The image has not been processed (successfully) yet.
    #[error("{0} has no result yet")]
    NoResult(String),
    /// Nothing to do (no images, nothing failed, nothing processed).
    #[error("{0}")]
    Nothing(String),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
    /// Settings could not be read or written.
    #[error("{0}")]
    Settings(String),
    /// A remote node could not be reached or used.
    #[error("{message}")]
    Remote {
        /// What happened.
        message: String,
        /// What to do.
        hint: &'static str,
    },
}

impl AppError {
    /// A stable name for the fault, shared with the engine's kinds where they overlap.
    pub fn kind(&self) -> &'static str {
        match self {
            AppError::Engine(e) => e.kind.as_str(),
            AppError::Params(_) | AppError::BadRequest(_) => "usage",
            AppError::Preset(PresetError::Io(_)) => "io",
            AppError::Preset(_) => "usage",
            AppError::Busy => "busy",
            AppError::UnknownImage(_) => "unknown-image",
            AppError::NoResult(_) => "no-result",
            AppError::Nothing(_) => "nothing",
            AppError::Io(_) => "io",
            AppError::Settings(_) => "settings",
            AppError::Remote { .. } => "remote",
        }
    }

    /// One sentence telling the user what to do next.
    pub fn hint(&self) -> &'static str {
        match self {
            AppError::Engine(e) => hint_for(e.kind),
            AppError::Params(_) | AppError::Preset(PresetError::Step { .. }) => {
                "Change the highlighted parameter to a value in its range."
            }
            AppError::Preset(_) => {
                "Pick a preset file Prism exported (the README describes the format)."
            }
            AppError::BadRequest(_) => {
                "Reload the window (Ctrl+R); if it happens again, report it."
            }
            AppError::Busy => "Wait for the running batch to finish, or press Cancel.",
            AppError::UnknownImage(_) => "The image was removed; add it again.",
            AppError::NoResult(_) => "Process the image first, then save it.",
            AppError::Nothing(_) => "Add images or process some first.",
            AppError::Io(_) => {
                "Check that the folder exists, is writable and the disk has space, then try again."
            }
            AppError::Settings(_) => {
                "Check that your config folder is writable; Prism keeps working with defaults."
            }
            AppError::Remote { hint, .. } => hint,
        }
    }
}

/// What to do about a failed input, by the engine's fault kind.
pub fn hint_for(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadInput => {
            "The file is damaged or not really an image: open it in another program, re-save it and add it again."
        }
        ErrorKind::Unsupported => {
            "Convert the image to 8-bit PNG or JPEG, or pick another operation."
        }
        ErrorKind::Limit => "The image is too large: scale it down and add it again.",
        ErrorKind::Cancelled => "Press \"Retry failed\" to run it again.",
        ErrorKind::Remote => {
            "Check that the node is running and reachable, or switch the engine to Local, then retry."
        }
        ErrorKind::Io => {
            "Check that the file still exists and is readable and the disk has space, then retry."
        }
        ErrorKind::Usage => "Change the operation's parameters, then process again.",
    }
}

impl Serialize for AppError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("AppError", 5)?;
        st.serialize_field("kind", self.kind())?;
        // The kind is its own field: the engine's "kind: message" would say it twice.
        let message = match self {
            AppError::Engine(e) => e.message.clone(),
            other => other.to_string(),
        };
        st.serialize_field("message", &message)?;
        st.serialize_field("hint", self.hint())?;
        // The parameter to highlight, when one is at fault.
        let field = match self {
            AppError::Params(p) | AppError::Preset(PresetError::Step { error: p, .. })
                if !p.key.is_empty() =>
            {
                Some(p.key.as_str())
            }
            _ => None,
        };
        st.serialize_field("field", &field)?;
        // Which step of a chain, from 1, when one is at fault.
        let step = match self {
            AppError::Preset(PresetError::Step { index, .. }) => Some(*index),
            _ => None,
        };
        st.serialize_field("step", &step)?;
        st.end()
    }
}

impl From<std::io::Error> for AppError {
    fn from(e: std::io::Error) -> Self {
        AppError::Io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_kind_message_and_hint() {
        let e = AppError::from(EngineError::new(ErrorKind::Limit, "too big"));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "limit");
        assert_eq!(v["message"], "too big");
        assert!(v["hint"].as_str().unwrap().contains("scale it down"));
        let v = serde_json::to_value(AppError::Busy).unwrap();
        assert_eq!(v["kind"], "busy");
        assert!(v["hint"].as_str().unwrap().contains("Cancel"));
        assert!(v["field"].is_null());
        let p = prism_engine::Op::from_pairs("color-manipulation", [("mode", "neon")]).unwrap_err();
        let v = serde_json::to_value(AppError::from(p.clone())).unwrap();
        assert_eq!(v["field"], "mode");
        assert!(v["step"].is_null());
        let v =
            serde_json::to_value(AppError::from(PresetError::Step { index: 2, error: p })).unwrap();
        assert_eq!(
            (v["field"].as_str(), v["step"].as_u64()),
            (Some("mode"), Some(2))
        );
        assert_eq!(v["kind"], "usage");
        assert!(v["message"]
            .as_str()
            .unwrap()
            .starts_with("step 2: color-manipulation.mode"));
    }

    #[test]
    fn every_engine_kind_has_its_own_hint() {
        let kinds = [
            ErrorKind::BadInput,
            ErrorKind::Unsupported,
            ErrorKind::Limit,
            ErrorKind::Cancelled,
            ErrorKind::Remote,
            ErrorKind::Io,
            ErrorKind::Usage,
        ];
        let mut hints: Vec<_> = kinds.iter().map(|k| hint_for(*k)).collect();
        hints.sort_unstable();
        hints.dedup();
        assert_eq!(hints.len(), kinds.len());
    }
}
