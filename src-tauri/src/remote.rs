//! Remote nodes from the app's side: trust on first use, tokens, connecting with visible
//! retries, a status per node, and closing.
//!
//! The engine's client only connects to a pinned certificate. On first contact the app
//! therefore connects with a pin no certificate has: the TLS handshake fails before any
//! token is sent, and the error carries the fingerprint the node presented, which the
//! user is asked to trust. Retries are driven here, one engine attempt at a time, so the
//! UI can show each attempt.
//!
//! Everything that blocks on the network runs on plain threads of its own: the engine's
//! `RemoteWorker` refuses to block inside an async runtime, and the UI thread must not.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prism_engine::ops::CancelToken;
use prism_engine::remote::client::{
    ConnectOptions, NodeSpec, RemoteClient, RemoteError, RemoteWorker,
};
use prism_engine::remote::tls::Fingerprint;
use serde::Serialize;

use crate::error::AppError;
use crate::settings::{NodeConfig, RetryConfig};
use crate::sync::lock;

/// Where a node stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(
    tag = "status",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum NodeStatus {
    /// Not connected.
    Disconnected,
    /// Its certificate has not been trusted yet.
    Untrusted {
        /// What it presented, to compare with what `prism node` printed.
        fingerprint: String,
    },
    /// An attempt is under way.
    Connecting {
        /// This attempt, from 1.
        attempt: u32,
        /// All attempts allowed.
        attempts: u32,
    },
    /// Connected and accepted (pin and token).
    Connected {
        /// Images it takes at once.
        cores: u32,
        /// Its build.
        version: String,
    },
    /// Could not connect, or was lost.
    Failed {
        /// What happened.
        message: String,
        /// What to do.
        hint: String,
    },
}

/// One connection step, as the UI receives it on the connect call's channel.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ConnEvent {
    /// A node's status changed.
    Status {
        /// The node.
        address: String,
        /// Its new status.
        status: NodeStatus,
    },
    /// An attempt could not reach the node (sent as it happens, the last one too).
    AttemptFailed {
        /// The node.
        address: String,
        /// The attempt that failed, from 1.
        attempt: u32,
        /// All attempts allowed.
        attempts: u32,
        /// Why it failed.
        reason: String,
        /// Wait before the next one; none after the last.
        retry_in_ms: Option<u64>,
    },
    /// Every node has been tried.
    Finished {
        /// Nodes connected now.
        connected: usize,
    },
}

/// Where connection events go.
pub type ConnSink = Arc<dyn Fn(ConnEvent) + Send + Sync>;

/// What the UI shows of a node.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// `host:port`.
    pub address: String,
    /// The pinned fingerprint, once trusted.
    pub fingerprint: Option<String>,
    /// Whether a token is stored.
    pub has_token: bool,
    /// Where it stands.
    pub status: NodeStatus,
}

/// Connections and statuses of the remote nodes.
#[derive(Default)]
pub struct Remote {
    runtime: OnceLock<tokio::runtime::Runtime>,
    conns: Mutex<BTreeMap<String, Arc<RemoteWorker>>>,
    status: Mutex<BTreeMap<String, NodeStatus>>,
    connecting: Mutex<Option<CancelToken>>,
}

/// What to do about a connection failure.
pub fn remote_hint(e: &RemoteError) -> &'static str {
    match e {
        RemoteError::Fingerprint { .. } => {
            "The node's certificate is not the one you trusted. If that node was reset on purpose, remove it and add it again; otherwise do not connect."
        }
        RemoteError::BadToken { .. } => {
            "Enter the node's token again: it is the content of the token file `prism node` printed."
        }
        RemoteError::Unreachable { .. } => {
            "Check that `prism node` runs there, that the address and port are right and that UDP to that port is allowed."
        }
        RemoteError::Refused { .. } => {
            "Run the same Prism version on this computer and the node, then connect again."
        }
        RemoteError::Setup(_) => "Check this computer's network, then connect again.",
    }
}

/// Checks a `host:port` address (names, IPv4 or `[IPv6]`).
pub fn parse_address(s: &str) -> Result<String, AppError> {
    let s = s.trim();
    let bad = || {
        AppError::BadRequest(format!(
            "{s:?} is not HOST:PORT (e.g. 192.168.1.20:7878 or node.local:7878)"
        ))
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    };
    if !host_ok || port == 0 {
        return Err(bad());
    }
    Ok(s.to_string())
}

/// Checks a token a user pasted.
pub fn parse_token(s: &str) -> Result<String, AppError> {
    let t = s.trim();
    if t.is_empty() || t.len() > 1024 || t.chars().any(char::is_control) {
        return Err(AppError::BadRequest(
            "the token is empty or malformed; paste the content of the node's token file".into(),
        ));
    }
    Ok(t.to_string())
}

fn options(retry: &RetryConfig) -> ConnectOptions {
    ConnectOptions {
        // The app drives the retries to show each attempt.
        retries: 0,
        delay: Duration::from_millis(retry.delay_ms),
        timeout: Duration::from_millis(retry.timeout_ms),
        ..ConnectOptions::default()
    }
}

/// A pin that no certificate has: the handshake fails and reports what the node presented.
const NO_PIN: Fingerprint = Fingerprint([0; 32]);

impl Remote {
    fn runtime(&self) -> Result<&tokio::runtime::Runtime, AppError> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        // The runtime only moves bytes; the images run on the nodes.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("prism-net")
            .enable_all()
            .build()
            .map_err(|e| AppError::Io(format!("cannot start the network runtime: {e}")))?;
        Ok(self.runtime.get_or_init(|| rt))
    }

    /// A node's status (disconnected when never tried).
    pub fn status(&self, address: &str) -> NodeStatus {
        lock(&self.status)
            .get(address)
            .cloned()
            .unwrap_or(NodeStatus::Disconnected)
    }

    fn set_status(&self, address: &str, status: NodeStatus, sink: &ConnSink) {
        lock(&self.status).insert(address.to_string(), status.clone());
        sink(ConnEvent::Status {
            address: address.to_string(),
            status,
        });
    }

    /// The connected nodes, as batch workers.
    pub fn workers(&self) -> Vec<Arc<RemoteWorker>> {
        lock(&self.conns).values().cloned().collect()
    }

    /// Whether `address` is connected.
    pub fn is_connected(&self, address: &str) -> bool {
        lock(&self.conns).contains_key(address)
    }

    /// Forgets a node that was lost during a batch.
    pub fn mark_lost(&self, address: &str, message: &str) {
        if let Some(w) = lock(&self.conns).remove(address) {
            w.client().close();
        }
        lock(&self.status).insert(
            address.to_string(),
            NodeStatus::Failed {
                message: format!("lost during a batch: {message}"),
                hint: "Connect again when the node is back; its images went to the other workers."
                    .into(),
            },
        );
    }

    /// Forgets a node's connection and status (removed by the user).
    pub fn forget(&self, address: &str) {
        if let Some(w) = lock(&self.conns).remove(address) {
            w.client().close();
        }
        lock(&self.status).remove(address);
    }

    /// Connects to `address` once with no pin, to learn the fingerprint it presents.
    /// Nothing is sent: the handshake stops at the certificate.
    pub fn probe(&self, address: &str, retry: &RetryConfig) -> Result<Fingerprint, AppError> {
        let rt = self.runtime()?;
        let spec = NodeSpec {
            addr: address.to_string(),
            fingerprint: NO_PIN,
            token: String::new(),
        };
        let opts = options(retry);
        let res = std::thread::scope(|s| {
            s.spawn(|| rt.block_on(RemoteClient::connect(&spec, &opts)))
                .join()
        })
        .map_err(|_| AppError::Io("the connection thread panicked".into()))?;
        match res {
            Err(RemoteError::Fingerprint { seen, .. }) => Ok(seen),
            Err(e) => Err(AppError::Remote {
                hint: remote_hint(&e),
                message: e.to_string(),
            }),
            Ok(client) => {
                // Only a node whose certificate hashes to all zeros could get here.
                client.close();
                Err(AppError::Remote {
                    message: format!("node {address} accepted an impossible pin"),
                    hint: "Do not use this node: it does not check certificates as Prism does.",
                })
            }
        }
    }

    /// Connects every node not connected yet, on threads of their own; events go to
    /// `sink`, ending with [`ConnEvent::Finished`]. Nodes without a pinned fingerprint
    /// are probed and reported as untrusted; nodes without a token fail at once.
    pub fn connect_all(
        self: &Arc<Self>,
        nodes: Vec<NodeConfig>,
        tokens: BTreeMap<String, String>,
        retry: RetryConfig,
        sink: ConnSink,
    ) -> Result<(), AppError> {
        self.runtime()?;
        let cancel = CancelToken::new();
        if let Some(old) = lock(&self.connecting).replace(cancel.clone()) {
            old.cancel();
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name("prism-connect".into())
            .spawn(move || {
                std::thread::scope(|s| {
                    for node in &nodes {
                        if me.is_connected(&node.address) {
                            continue;
                        }
                        let (me, sink, cancel, tokens) = (&me, &sink, &cancel, &tokens);
                        s.spawn(move || me.connect_one(node, tokens, &retry, cancel, sink));
                    }
                });
                let connected = lock(&me.conns).len();
                sink(ConnEvent::Finished { connected });
            })
            .map_err(|e| AppError::Io(format!("cannot start the connection thread: {e}")))?;
        Ok(())
    }

    fn connect_one(
        &self,
        node: &NodeConfig,
        tokens: &BTreeMap<String, String>,
        retry: &RetryConfig,
        cancel: &CancelToken,
        sink: &ConnSink,
    ) {
        let address = &node.address;
        let fail = |message: String, hint: &str| NodeStatus::Failed {
            message,
            hint: hint.to_string(),
        };
        let Some(pin) = node.fingerprint.as_deref() else {
            self.set_status(
                address,
                NodeStatus::Connecting {
                    attempt: 1,
                    attempts: 1,
                },
                sink,
            );
            let status = match self.probe(address, retry) {
                Ok(seen) => NodeStatus::Untrusted {
                    fingerprint: seen.to_string(),
                },
                Err(e) => fail(e.to_string(), e.hint()),
            };
            self.set_status(address, status, sink);
            return;
        };
        let fingerprint = match Fingerprint::from_str(pin) {
            Ok(f) => f,
            Err(e) => {
                let s = fail(e.to_string(), "Remove the node and add it again.");
                self.set_status(address, s, sink);
                return;
            }
        };
        let Some(token) = tokens.get(address) else {
            let s = fail(
                "no token for this node".into(),
                "Enter the node's token: the content of the token file `prism node` printed.",
            );
            self.set_status(address, s, sink);
            return;
        };
        let spec = NodeSpec {
            addr: address.clone(),
            fingerprint,
            token: token.clone(),
        };
        let opts = options(retry);
        let attempts = retry.attempts.max(1);
        let Ok(rt) = self.runtime() else {
            return;
        };
        for attempt in 1..=attempts {
            if cancel.is_cancelled() {
                self.set_status(address, NodeStatus::Disconnected, sink);
                return;
            }
            self.set_status(address, NodeStatus::Connecting { attempt, attempts }, sink);
            match rt.block_on(RemoteClient::connect(&spec, &opts)) {
                Ok(client) => {
                    if cancel.is_cancelled() {
                        client.close();
                        self.set_status(address, NodeStatus::Disconnected, sink);
                        return;
                    }
                    let status = NodeStatus::Connected {
                        cores: client.health().cores,
                        version: client.health().version.clone(),
                    };
                    let worker = Arc::new(RemoteWorker::new(rt.handle().clone(), client));
                    lock(&self.conns).insert(address.clone(), worker);
                    self.set_status(address, status, sink);
                    return;
                }
                Err(RemoteError::Unreachable { last, .. }) if attempt < attempts => {
                    sink(ConnEvent::AttemptFailed {
                        address: address.clone(),
                        attempt,
                        attempts,
                        reason: last,
                        retry_in_ms: Some(retry.delay_ms),
                    });
                    // Sleep in small steps so "Close connection" stops the retries at once.
                    let mut left = retry.delay_ms;
                    while left > 0 && !cancel.is_cancelled() {
                        let step = left.min(50);
                        std::thread::sleep(Duration::from_millis(step));
                        left -= step;
                    }
                }
                Err(e) => {
                    let message = match &e {
                        RemoteError::Unreachable { last, .. } => {
                            sink(ConnEvent::AttemptFailed {
                                address: address.clone(),
                                attempt,
                                attempts,
                                reason: last.clone(),
                                retry_in_ms: None,
                            });
                            format!("cannot reach {address} after {attempts} attempt(s): {last}")
                        }
                        other => other.to_string(),
                    };
                    self.set_status(address, fail(message, remote_hint(&e)), sink);
                    return;
                }
            }
        }
    }

    /// Stops connecting and closes every connection, telling each node goodbye.
    /// Returns how many connections were open.
    pub fn close_all(&self) -> usize {
        if let Some(c) = lock(&self.connecting).take() {
            c.cancel();
        }
        let conns: Vec<(String, Arc<RemoteWorker>)> = std::mem::take(&mut *lock(&self.conns))
            .into_iter()
            .collect();
        let n = conns.len();
        if let Some(rt) = self.runtime.get() {
            std::thread::scope(|s| {
                s.spawn(|| {
                    rt.block_on(async {
                        for (_, w) in &conns {
                            w.client().goodbye().await;
                        }
                    })
                });
            });
        }
        let mut status = lock(&self.status);
        for (address, _) in conns {
            status.insert(address, NodeStatus::Disconnected);
        }
        for s in status.values_mut() {
            if matches!(s, NodeStatus::Connecting { .. }) {
                *s = NodeStatus::Disconnected;
            }
        }
        n
    }

    /// What the UI shows of each configured node.
    pub fn views(&self, nodes: &[NodeConfig], tokens: &BTreeMap<String, String>) -> Vec<NodeView> {
        nodes
            .iter()
            .map(|n| NodeView {
                address: n.address.clone(),
                fingerprint: n.fingerprint.clone(),
                has_token: tokens.contains_key(&n.address),
                status: self.status(&n.address),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        for ok in [
            "127.0.0.1:7878",
            "node.local:1",
            "[::1]:7878",
            "my-node_2:65535",
        ] {
            assert_eq!(parse_address(ok).unwrap(), ok);
        }
        assert_eq!(parse_address("  10.0.0.2:80 ").unwrap(), "10.0.0.2:80");
        for bad in [
            "",
            "host",
            "host:",
            ":80",
            "host:0",
            "host:70000",
            "[zz]:1",
            "a b:1",
            "x:y",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_are_checked() {
        assert_eq!(parse_token(" abc\n").unwrap(), "abc");
        assert!(parse_token("   ").is_err());
        assert!(parse_token("a\u{7}b").is_err());
        assert!(parse_token(&"x".repeat(2000)).is_err());
    }

    #[test]
    fn statuses_serialize_for_the_ui() {
        let v = serde_json::to_value(NodeStatus::Connecting {
            attempt: 2,
            attempts: 5,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status": "connecting", "attempt": 2, "attempts": 5})
        );
        let e = ConnEvent::AttemptFailed {
            address: "a:1".into(),
            attempt: 1,
            attempts: 3,
            reason: "timeout".into(),
            retry_in_ms: Some(10),
        };
        let v = serde_json::to_value(e).unwrap();
        assert_eq!(v["event"], "attemptFailed");
        assert_eq!(v["retryInMs"], 10);
    }
}
