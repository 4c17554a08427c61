//! Remote engine nodes over QUIC: [`proto`] (messages and framing, no I/O), [`tls`]
//! (identity, pinning), [`server`] (`prism node`) and [`client`] ([`client::RemoteWorker`]);
//! [`metrics`] and `http` are the node's Prometheus metrics and health endpoint.
//!
//! A node (`prism node`) serves the engine to clients that pin its certificate and hold
//! its token; the client side is a [`crate::exec::Worker`], so the one batch scheduler
//! spreads work over local cores and nodes alike.

pub mod client;
#[cfg(feature = "fault-injection")]
mod fault;
mod http;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod sources;
pub mod tls;
mod wire;
