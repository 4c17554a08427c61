//! Remote engine nodes over QUIC: [`proto`] (messages and framing, no I/O), [`tls`]
//! (identity, pinning), [`server`] (`prism node`), [`client`] ([`client::RemoteWorker`])
//! and [`fleet`] (every node a DNS name lists, members joining and leaving mid-batch);
//! [`metrics`] and `http` are the node's Prometheus metrics and health endpoint.
//!
//! A node (`prism node`) serves the engine to clients that pin its certificate and hold
//! its token; the client side is a [`crate::exec::Worker`], so the one batch scheduler
//! spreads work over local cores and nodes alike, giving each node work by the credits it
//! grants (its free slots) rather than by the cores it announced.

pub mod client;
#[cfg(feature = "fault-injection")]
mod fault;
pub mod fleet;
mod http;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod sources;
pub mod tls;
mod wire;
