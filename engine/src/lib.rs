//! Prism's engine: image operations faithful to OpenCV, codecs with limits, and batch
//! execution on this machine's cores and on remote nodes.
//!
//! The layers, from the bottom: [`ops`] (pure functions on pixel buffers), [`codec`]
//! (bytes to pixels and back, with limits), [`job`] (what to do to which input),
//! [`exec`] (running a batch on rayon with bounded memory), [`remote`] (nodes over QUIC
//! as more workers) and [`cli`] (the `prism` binary's contract).

#![warn(missing_docs)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod codec;
pub mod error;
pub mod exec;
mod exif;
pub mod frame;
pub mod job;
pub mod ops;
pub mod output;
pub mod preset;
pub mod remote;

pub use error::{EngineError, ErrorKind};
pub use frame::{Frame, Pixels};
pub use ops::{Op, OpOutput};
