//! Remote nodes from the app's side: trust on first use, tokens, connecting with visible
//! retries, a status per node, and closing.
//!
//! The engine's client only connects to a pinned certificate. On first contact the app
//! therefore connects with a pin no certificate has: the TLS handshake fails before any
//! token is sent, and the error carries the fingerprint the node presented, which the
//! user is asked to trust. Retries are driven here, one engine attempt at a time, so the
//! UI can show each attempt.
//!
//! An entry whose host is a DNS name (not an IP address) is a fleet: every address the
//! name lists is a member, all sharing one identity (one pinned fingerprint, one token),
//! connected with the engine's [`Fleet`]. Once connected the name is looked up again
//! every few seconds (the settings' [`FleetConfig`]): members that appear join the
//! running batch, those that leave DNS drain, lost ones' images move. Each member's
//! state is told to the UI as it changes ([`ConnEvent::Members`]).
//!
//! Everything that blocks on the network runs on plain threads of its own: the engine's
//! `RemoteWorker` refuses to block inside an async runtime, and the UI thread must not.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use prism_engine::exec::{Joins, Worker};
use prism_engine::ops::CancelToken;
use prism_engine::remote::client::{
    ConnectOptions, NodeSpec, RemoteClient, RemoteError, RemoteWorker,
};
use prism_engine::remote::fleet::{
    self, parse_target, Fleet, FleetEvent, FleetEvents, FleetOptions, FleetSpec, Target,
};
use prism_engine::remote::tls::Fingerprint;
use serde::Serialize;

use crate::error::AppError;
use crate::settings::{FleetConfig, NodeConfig, RetryConfig};
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
    /// A fleet's members changed: all of them as they stand now.
    Members {
        /// The fleet's entry, `name:port`.
        address: String,
        /// Its members, by address.
        members: Vec<MemberView>,
        /// Why its name cannot be looked up now, while it cannot (the members go on).
        lookup_failed: Option<String>,
    },
    /// Every node has been tried.
    Finished {
        /// Nodes connected now.
        connected: usize,
    },
}

/// Where connection events go.
pub type ConnSink = Arc<dyn Fn(ConnEvent) + Send + Sync>;

/// Where a fleet member stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(
    tag = "state",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum MemberStatus {
    /// DNS lists it; connecting.
    Connecting,
    /// Connected; takes work.
    Ready {
        /// The threads it reported.
        cores: u32,
    },
    /// Left DNS: takes nothing new, finishes what it holds, then is disconnected.
    Draining,
    /// Its connection was lost; its images went to other workers. Connected again if DNS
    /// still lists it.
    Lost {
        /// What happened.
        message: String,
    },
    /// DNS lists it but it cannot be connected; tried again at each lookup.
    Unreachable {
        /// Why.
        message: String,
    },
}

/// One member of a fleet, as the UI shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    /// Its address.
    pub address: String,
    /// Where it stands.
    #[serde(flatten)]
    pub status: MemberStatus,
}

/// A fleet's members as its events tell them.
#[derive(Debug, Default)]
struct Roll {
    members: BTreeMap<SocketAddr, MemberStatus>,
    lookup_failed: Option<String>,
}

impl Roll {
    fn apply(&mut self, e: &FleetEvent) {
        match e {
            FleetEvent::Connecting { member, .. } => {
                self.members.insert(*member, MemberStatus::Connecting);
            }
            FleetEvent::Joined { member, cores, .. } => {
                self.members
                    .insert(*member, MemberStatus::Ready { cores: *cores });
            }
            FleetEvent::Draining { member, .. } => {
                self.members.insert(*member, MemberStatus::Draining);
            }
            FleetEvent::Left { member, .. } | FleetEvent::Unlisted { member, .. } => {
                self.members.remove(member);
            }
            FleetEvent::Lost { member, .. } => {
                // The batch may have said why first (`lost`): keep that.
                if !matches!(self.members.get(member), Some(MemberStatus::Lost { .. })) {
                    let message = "its connection was lost; its images went to other workers";
                    self.members.insert(
                        *member,
                        MemberStatus::Lost {
                            message: message.into(),
                        },
                    );
                }
            }
            FleetEvent::Unreachable {
                member, message, ..
            } => {
                self.members.insert(
                    *member,
                    MemberStatus::Unreachable {
                        message: message.clone(),
                    },
                );
            }
            FleetEvent::ResolveFailed { message, .. } => {
                self.lookup_failed = Some(message.clone());
            }
            FleetEvent::Resolved { .. } => self.lookup_failed = None,
        }
    }

    fn views(&self) -> Vec<MemberView> {
        self.members
            .iter()
            .map(|(a, s)| MemberView {
                address: a.to_string(),
                status: s.clone(),
            })
            .collect()
    }

    fn event(&self, address: &str) -> ConnEvent {
        ConnEvent::Members {
            address: address.to_string(),
            members: self.views(),
            lookup_failed: self.lookup_failed.clone(),
        }
    }
}

/// Where events that no call asked for go (a fleet's members changing at any time): the
/// page's node watch, or the last Connect's channel.
type Watcher = Arc<Mutex<Option<ConnSink>>>;

/// A connected fleet, with the thread that hands members joining to the running batch.
struct FleetConn {
    fleet: Fleet,
}

/// The running batch's door for fleet members that join it, and the workers it started
/// with (a member connected just before the batch began is not given twice).
struct BatchDoor {
    tx: mpsc::Sender<Arc<dyn Worker>>,
    given: HashSet<usize>,
}

type Door = Arc<Mutex<Option<BatchDoor>>>;

/// One worker, whatever type its handle has.
fn worker_key<T: ?Sized>(w: &Arc<T>) -> usize {
    Arc::as_ptr(w) as *const () as usize
}

/// Whether an entry is a fleet: its host is a DNS name, not an IP address.
pub fn is_fleet(address: &str) -> bool {
    matches!(parse_target(address), Ok(Target::Fleet { .. }))
}

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
    /// Whether it is a fleet (a DNS name listing many nodes).
    pub fleet: bool,
    /// A fleet's members as they stand (empty for a node, and for a fleet not connected).
    pub members: Vec<MemberView>,
    /// Why a fleet's name cannot be looked up now, while it cannot.
    pub lookup_failed: Option<String>,
}

/// Connections and statuses of the remote nodes and fleets.
#[derive(Default)]
pub struct Remote {
    runtime: OnceLock<tokio::runtime::Runtime>,
    conns: Mutex<BTreeMap<String, Arc<RemoteWorker>>>,
    fleets: Mutex<BTreeMap<String, FleetConn>>,
    /// Each fleet's members, from its first Connect until it is closed or removed.
    rolls: Mutex<BTreeMap<String, Arc<Mutex<Roll>>>>,
    status: Mutex<BTreeMap<String, NodeStatus>>,
    connecting: Mutex<Option<CancelToken>>,
    watcher: Watcher,
    door: Door,
}

/// What to do about a fleet that could not be connected.
pub fn fleet_hint(e: &RemoteError) -> &'static str {
    match e {
        RemoteError::Unreachable { .. } => {
            "Check the name: it must list the nodes' addresses, from this computer's DNS or the DNS server set below."
        }
        RemoteError::Refused { .. } => {
            "Check that `prism node` runs at the addresses listed, all with the fleet's identity, that UDP to the port is allowed and that the token is the fleet's."
        }
        other => remote_hint(other),
    }
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

    /// The connected nodes and fleet members, as batch workers.
    pub fn workers(&self) -> Vec<Arc<RemoteWorker>> {
        let mut all: Vec<Arc<RemoteWorker>> = lock(&self.conns).values().cloned().collect();
        for f in lock(&self.fleets).values() {
            all.extend(f.fleet.workers());
        }
        all
    }

    /// The workers a batch starts with, and, when a fleet is connected, the door through
    /// which its members that join later reach the batch (waiting up to `wait` for one
    /// when every worker is gone).
    pub fn batch(&self, wait: Duration) -> (Vec<Arc<RemoteWorker>>, Option<Joins>) {
        // Held while the workers are read: a member the forwarder sees joining is either
        // among them or goes through the door, never both.
        let mut door = lock(&self.door);
        let workers = self.workers();
        if lock(&self.fleets).is_empty() {
            *door = None;
            return (workers, None);
        }
        let (tx, rx) = mpsc::channel();
        *door = Some(BatchDoor {
            tx,
            given: workers.iter().map(worker_key).collect(),
        });
        (workers, Some(Joins { rx, wait }))
    }

    /// Whether `address` (a node or a fleet) is connected.
    pub fn is_connected(&self, address: &str) -> bool {
        lock(&self.conns).contains_key(address) || lock(&self.fleets).contains_key(address)
    }

    /// Sends events no call asked for (fleet members changing) to `sink` from now on.
    pub fn watch(&self, sink: ConnSink) {
        *lock(&self.watcher) = Some(sink);
    }

    fn tell_watcher(watcher: &Watcher, e: ConnEvent) {
        let sink = lock(watcher).clone();
        if let Some(sink) = sink {
            sink(e);
        }
    }

    /// Forgets a node that was lost during a batch (a fleet member: marks it lost with
    /// why; the fleet connects it again if DNS still lists it).
    pub fn mark_lost(&self, address: &str, message: &str) {
        if let Ok(addr) = address.parse::<SocketAddr>() {
            let rolls: Vec<(String, Arc<Mutex<Roll>>)> = lock(&self.rolls)
                .iter()
                .map(|(a, r)| (a.clone(), r.clone()))
                .collect();
            for (fleet, roll) in rolls {
                let event = {
                    let mut r = lock(&roll);
                    if !r.members.contains_key(&addr) {
                        continue;
                    }
                    r.members.insert(
                        addr,
                        MemberStatus::Lost {
                            message: format!("lost during a batch: {message}"),
                        },
                    );
                    r.event(&fleet)
                };
                Self::tell_watcher(&self.watcher, event);
                return;
            }
        }
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

    /// Forgets a node's (or fleet's) connection and status (removed by the user).
    pub fn forget(&self, address: &str) {
        if let Some(w) = lock(&self.conns).remove(address) {
            w.client().close();
        }
        if let Some(f) = lock(&self.fleets).remove(address) {
            self.stop_fleets(vec![f]);
        }
        lock(&self.rolls).remove(address);
        lock(&self.status).remove(address);
    }

    /// Says goodbye to every member of these fleets and stops their lookups.
    fn stop_fleets(&self, fleets: Vec<FleetConn>) {
        let Some(rt) = self.runtime.get() else { return };
        std::thread::scope(|s| {
            s.spawn(|| {
                rt.block_on(async {
                    for mut f in fleets {
                        f.fleet.stop().await;
                    }
                })
            });
        });
    }

    /// Looks a fleet's name up and asks each address for its certificate, once, with no
    /// pin: the fingerprint they all present, to be trusted once for the whole fleet.
    pub fn probe_fleet(
        &self,
        address: &str,
        retry: &RetryConfig,
        cfg: &FleetConfig,
    ) -> Result<Fingerprint, AppError> {
        let Ok(Target::Fleet { host, port }) = parse_target(address) else {
            return Err(AppError::BadRequest(format!(
                "{address} is not a fleet name"
            )));
        };
        let rt = self.runtime()?;
        let opts = FleetOptions {
            connect: options(retry),
            resolve_every: None,
            dns_server: cfg.dns_server()?,
        };
        let to_app = |e: RemoteError| AppError::Remote {
            hint: fleet_hint(&e),
            message: e.to_string(),
        };
        let res = std::thread::scope(|s| {
            s.spawn(|| {
                rt.block_on(async {
                    let addrs = fleet::lookup(&host, port, &opts).await?;
                    let tries: Vec<_> = addrs
                        .iter()
                        .map(|a| {
                            let spec = NodeSpec {
                                addr: a.to_string(),
                                fingerprint: NO_PIN,
                                token: String::new(),
                            };
                            let connect = opts.connect;
                            tokio::spawn(async move {
                                match RemoteClient::connect(&spec, &connect).await {
                                    Err(RemoteError::Fingerprint { seen, .. }) => Ok(seen),
                                    Err(e) => Err(e.to_string()),
                                    Ok(client) => {
                                        client.close();
                                        Err("it accepted an impossible pin".to_string())
                                    }
                                }
                            })
                        })
                        .collect();
                    let mut seen = BTreeSet::new();
                    let mut why = Vec::new();
                    for (a, t) in addrs.iter().zip(tries) {
                        match t.await {
                            Ok(Ok(fp)) => {
                                seen.insert(fp.to_string());
                            }
                            Ok(Err(e)) => why.push(format!("{a}: {e}")),
                            Err(e) => why.push(format!("{a}: {e}")),
                        }
                    }
                    Ok::<_, RemoteError>((seen, why))
                })
            })
            .join()
        })
        .map_err(|_| AppError::Io("the connection thread panicked".into()))?;
        let (seen, why) = res.map_err(to_app)?;
        let mut seen = seen.into_iter();
        match (seen.next(), seen.next()) {
            (Some(one), None) => one
                .parse()
                .map_err(|e| AppError::Io(format!("{e}"))),
            (None, _) => Err(AppError::Remote {
                message: format!(
                    "no address {address} lists answered ({})",
                    why.join("; ")
                ),
                hint: fleet_hint(&RemoteError::Refused {
                    addr: String::new(),
                    message: String::new(),
                }),
            }),
            (Some(_), Some(_)) => Err(AppError::Remote {
                message: format!(
                    "the addresses {address} lists present different certificates"
                ),
                hint: "A fleet's nodes must share one identity (`prism node identity new`, then `--identity-dir`); add nodes with their own identity one by one, by IP address.",
            }),
        }
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
        fleet_cfg: FleetConfig,
        sink: ConnSink,
    ) -> Result<(), AppError> {
        self.runtime()?;
        // Fleet members change after this call too: its channel hears of it (until the
        // page asks otherwise, see `watch`).
        self.watch(sink.clone());
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
                        let (me, sink, cancel, tokens, fleet_cfg) =
                            (&me, &sink, &cancel, &tokens, &fleet_cfg);
                        s.spawn(move || {
                            me.connect_one(node, tokens, &retry, fleet_cfg, cancel, sink)
                        });
                    }
                });
                let connected = lock(&me.conns).len() + lock(&me.fleets).len();
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
        fleet_cfg: &FleetConfig,
        cancel: &CancelToken,
        sink: &ConnSink,
    ) {
        let is_fleet = is_fleet(&node.address);
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
            let probed = if is_fleet {
                self.probe_fleet(address, retry, fleet_cfg)
            } else {
                self.probe(address, retry)
            };
            let status = match probed {
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
        if is_fleet {
            self.connect_fleet(address, fingerprint, token, retry, fleet_cfg, cancel, sink);
            return;
        }
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

    /// Connects a fleet (attempts driven here, as for a node), then keeps looking its
    /// name up; its members' states go to the watcher as they change.
    #[allow(clippy::too_many_arguments)]
    fn connect_fleet(
        &self,
        address: &str,
        fingerprint: Fingerprint,
        token: &str,
        retry: &RetryConfig,
        cfg: &FleetConfig,
        cancel: &CancelToken,
        sink: &ConnSink,
    ) {
        let fail = |message: String, hint: &str| NodeStatus::Failed {
            message,
            hint: hint.to_string(),
        };
        let (Ok(Target::Fleet { host, port }), Ok(rt)) = (parse_target(address), self.runtime())
        else {
            return;
        };
        let dns_server = match cfg.dns_server() {
            Ok(d) => d,
            Err(e) => {
                self.set_status(address, fail(e.to_string(), e.hint()), sink);
                return;
            }
        };
        let spec = FleetSpec {
            host,
            port,
            fingerprint,
            token: token.to_string(),
        };
        let every = Duration::from_millis(cfg.resolve_every_ms);
        let opts = FleetOptions {
            connect: options(retry),
            resolve_every: Some(every),
            dns_server,
        };
        // A fresh roll: what an earlier Connect saw is old news.
        let roll = Arc::new(Mutex::new(Roll::default()));
        lock(&self.rolls).insert(address.to_string(), roll.clone());
        let on_event: FleetEvents = {
            let (roll, watcher, address) =
                (roll.clone(), self.watcher.clone(), address.to_string());
            Arc::new(move |e: &FleetEvent| {
                let event = {
                    let mut r = lock(&roll);
                    r.apply(e);
                    r.event(&address)
                };
                Self::tell_watcher(&watcher, event);
            })
        };
        let attempts = retry.attempts.max(1);
        for attempt in 1..=attempts {
            if cancel.is_cancelled() {
                self.set_status(address, NodeStatus::Disconnected, sink);
                return;
            }
            self.set_status(address, NodeStatus::Connecting { attempt, attempts }, sink);
            let connected = rt.block_on(Fleet::connect(
                rt.handle().clone(),
                spec.clone(),
                opts,
                on_event.clone(),
            ));
            match connected {
                Ok(mut f) => {
                    if cancel.is_cancelled() {
                        self.stop_fleets(vec![FleetConn { fleet: f }]);
                        lock(&self.rolls).remove(address);
                        self.set_status(address, NodeStatus::Disconnected, sink);
                        return;
                    }
                    let workers = f.workers();
                    let status = NodeStatus::Connected {
                        cores: workers.iter().map(|w| w.client().health().cores).sum(),
                        version: workers
                            .first()
                            .map(|w| w.client().health().version.clone())
                            .unwrap_or_default(),
                    };
                    let (tx, rx) = mpsc::channel();
                    f.watch(Some(tx));
                    self.forward_joins(rx);
                    lock(&self.fleets).insert(address.to_string(), FleetConn { fleet: f });
                    self.set_status(address, status, sink);
                    return;
                }
                Err(e) => {
                    let last = match &e {
                        RemoteError::Unreachable { last, .. } => last.clone(),
                        other => other.to_string(),
                    };
                    let retryable = matches!(
                        e,
                        RemoteError::Unreachable { .. } | RemoteError::Refused { .. }
                    );
                    let again = retryable && attempt < attempts;
                    if retryable {
                        sink(ConnEvent::AttemptFailed {
                            address: address.to_string(),
                            attempt,
                            attempts,
                            reason: last.clone(),
                            retry_in_ms: again.then_some(retry.delay_ms),
                        });
                    }
                    if again {
                        let mut left = retry.delay_ms;
                        while left > 0 && !cancel.is_cancelled() {
                            let step = left.min(50);
                            std::thread::sleep(Duration::from_millis(step));
                            left -= step;
                        }
                        continue;
                    }
                    let message = if retryable {
                        format!(
                            "cannot connect fleet {address} after {attempts} attempt(s): {last}"
                        )
                    } else {
                        e.to_string()
                    };
                    self.set_status(address, fail(message, fleet_hint(&e)), sink);
                    return;
                }
            }
        }
    }

    /// Hands fleet members that join to the running batch, if one runs and does not
    /// have them yet (ends when the fleet stops).
    fn forward_joins(&self, rx: mpsc::Receiver<Arc<dyn Worker>>) {
        let door = self.door.clone();
        let spawned = std::thread::Builder::new()
            .name("prism-fleet-joins".into())
            .spawn(move || {
                for w in rx {
                    let mut d = lock(&door);
                    let Some(open) = d.as_ref() else { continue };
                    if open.given.contains(&worker_key(&w)) {
                        continue;
                    }
                    if open.tx.send(w).is_err() {
                        // That batch is over; the member waits for the next one.
                        *d = None;
                    }
                }
            });
        // Without the thread, members that join wait for the next batch.
        drop(spawned);
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
        let fleets: Vec<(String, FleetConn)> = std::mem::take(&mut *lock(&self.fleets))
            .into_iter()
            .collect();
        lock(&self.rolls).clear();
        let n = conns.len() + fleets.len();
        let fleet_names: Vec<String> = fleets.iter().map(|(a, _)| a.clone()).collect();
        self.stop_fleets(fleets.into_iter().map(|f| f.1).collect());
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
        for address in conns.into_iter().map(|c| c.0).chain(fleet_names) {
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
            .map(|n| {
                let roll = lock(&self.rolls).get(&n.address).cloned();
                let (members, lookup_failed) = match roll {
                    Some(r) => {
                        let r = lock(&r);
                        (r.views(), r.lookup_failed.clone())
                    }
                    None => (Vec::new(), None),
                };
                NodeView {
                    address: n.address.clone(),
                    fingerprint: n.fingerprint.clone(),
                    has_token: tokens.contains_key(&n.address),
                    status: self.status(&n.address),
                    fleet: is_fleet(&n.address),
                    members,
                    lookup_failed,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_or_unreachable_member_no_longer_listed_leaves_the_rows() {
        let m = |last: u8| SocketAddr::from(([127, 0, 0, last], 7443));
        let fleet = || "f:7443".to_string();
        let mut roll = Roll::default();
        for e in [
            FleetEvent::Joined {
                fleet: fleet(),
                member: m(2),
                cores: 1,
            },
            FleetEvent::Lost {
                fleet: fleet(),
                member: m(2),
            },
            FleetEvent::Unreachable {
                fleet: fleet(),
                member: m(3),
                message: "refused".into(),
            },
        ] {
            roll.apply(&e);
        }
        assert_eq!(roll.views().len(), 2);
        for last in [2, 3] {
            roll.apply(&FleetEvent::Unlisted {
                fleet: fleet(),
                member: m(last),
            });
        }
        assert!(roll.views().is_empty(), "{:?}", roll.views());
    }

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
