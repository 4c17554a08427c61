//! A fleet: the nodes a DNS name lists (a Kubernetes headless Service, or any name with
//! several A records), all sharing one identity (fingerprint and token), as workers that
//! come and go while a batch runs.
//!
//! [`Fleet::connect`] looks the name up and connects to every address; [`Fleet::watch`]
//! then looks it up again every [`FleetOptions::resolve_every`]. An address that appears
//! is connected and sent to the batch as a new worker ([`crate::exec::Joins`]); a member
//! whose address disappears drains (it takes nothing new, the images it holds finish,
//! then it is disconnected); a member whose connection is lost is dropped, and its images
//! move to other workers as for any lost node. A lookup that fails, or finds no address,
//! changes nothing: the members go on, so a DNS outage does not stop a batch (a member
//! that is really gone shows up as lost). An address that cannot be connected is tried
//! again at each lookup while DNS lists it.
//!
//! Names are looked up with the system's resolver configuration (`/etc/resolv.conf`: its
//! name servers and search domains, so a Service's short name works inside its cluster),
//! or with one given name server ([`FleetOptions::dns_server`]). IPv4 addresses are used
//! when the name has any, else IPv6 ones, so a dual-stack node is not counted twice.
//!
//! What happens is told as [`FleetEvent`]s, and [`Fleet::members`] says who is in it now:
//! what a UI needs to show a fleet.
//!
//! The bookkeeping ([`Roster`]) does no I/O and is tested alone; the async layer around
//! it looks names up, connects and runs workers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use serde::Serialize;
use tokio::time::sleep;

use super::client::{ConnectOptions, NodeSpec, RemoteClient, RemoteError, RemoteWorker};
use super::tls::Fingerprint;
use crate::exec::Worker;

/// Where `--remote` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One node, by its address.
    Node(SocketAddr),
    /// Every node a DNS name lists, on one port.
    Fleet {
        /// The name.
        host: String,
        /// The port all its members listen on.
        port: u16,
    },
}

/// Reads `HOST:PORT`: an IP address (`10.0.0.5:7443`, `[::1]:7443`) is one node, a name
/// (`prism-nodes.prism.svc:7443`) a fleet.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let bad = || format!("{s:?} is not HOST:PORT (e.g. 10.0.0.5:7443 or prism-nodes:7443)");
    if let Ok(addr) = s.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(bad());
        }
        return Ok(Target::Node(addr));
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let labels = host.strip_suffix('.').unwrap_or(host);
    let host_ok = !labels.is_empty()
        && host.len() <= 253
        && labels.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !host_ok || port == 0 {
        return Err(bad());
    }
    Ok(Target::Fleet {
        host: host.to_string(),
        port,
    })
}

/// A fleet: a name, the port its members listen on, and the identity they share.
#[derive(Clone, Debug)]
pub struct FleetSpec {
    /// The DNS name that lists the members.
    pub host: String,
    /// The port every member listens on.
    pub port: u16,
    /// The certificate fingerprint every member presents.
    pub fingerprint: Fingerprint,
    /// The token every member accepts.
    pub token: String,
}

impl FleetSpec {
    /// `host:port`, as events and messages name the fleet.
    pub fn name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// How a fleet is found and reached.
#[derive(Clone, Copy, Debug)]
pub struct FleetOptions {
    /// Connecting to each member (the first lookup and the first connections retry as
    /// these say; later ones try once per lookup).
    pub connect: ConnectOptions,
    /// Time between lookups once the batch runs; `None` looks the name up once.
    pub resolve_every: Option<Duration>,
    /// The name server to ask (UDP, then TCP) instead of the system's.
    pub dns_server: Option<SocketAddr>,
}

/// Something that happened to a fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum FleetEvent {
    /// An address DNS lists is being connected (told once per address, not again while
    /// it stays unreachable).
    Connecting {
        /// The fleet, `host:port`.
        fleet: String,
        /// The address.
        member: SocketAddr,
    },
    /// A member was connected and takes work.
    Joined {
        /// The fleet, `host:port`.
        fleet: String,
        /// The member's address.
        member: SocketAddr,
        /// The threads it reported.
        cores: u32,
    },
    /// A member's address left DNS: it takes nothing new; what it holds finishes.
    Draining {
        /// The fleet.
        fleet: String,
        /// The member.
        member: SocketAddr,
    },
    /// A draining member finished what it held and was disconnected.
    Left {
        /// The fleet.
        fleet: String,
        /// The member.
        member: SocketAddr,
    },
    /// An address that was lost or unreachable is no longer listed: it is forgotten.
    Unlisted {
        /// The fleet.
        fleet: String,
        /// The address.
        member: SocketAddr,
    },
    /// A member's connection was lost; the images it held move to other workers.
    Lost {
        /// The fleet.
        fleet: String,
        /// The member.
        member: SocketAddr,
    },
    /// An address DNS lists could not be connected; it is tried again at the next lookup
    /// (told once per address and reason).
    Unreachable {
        /// The fleet.
        fleet: String,
        /// The address.
        member: SocketAddr,
        /// Why.
        message: String,
    },
    /// A lookup failed or found no address; the members stay as they are (told once until
    /// a lookup succeeds again).
    ResolveFailed {
        /// The fleet.
        fleet: String,
        /// Why.
        message: String,
    },
    /// A lookup succeeded again after failing.
    Resolved {
        /// The fleet.
        fleet: String,
        /// The addresses it listed.
        addresses: Vec<SocketAddr>,
    },
}

impl std::fmt::Display for FleetEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FleetEvent::Connecting { fleet, member } => {
                write!(f, "fleet {fleet}: connecting to {member}")
            }
            FleetEvent::Joined {
                fleet,
                member,
                cores,
            } => write!(f, "fleet {fleet}: {member} joined ({cores} threads)"),
            FleetEvent::Draining { fleet, member } => write!(
                f,
                "fleet {fleet}: {member} left DNS; it takes no new images and finishes its own"
            ),
            FleetEvent::Left { fleet, member } => {
                write!(
                    f,
                    "fleet {fleet}: {member} finished its images and was disconnected"
                )
            }
            FleetEvent::Lost { fleet, member } => write!(
                f,
                "fleet {fleet}: lost {member}; its images move to other workers"
            ),
            FleetEvent::Unlisted { fleet, member } => write!(
                f,
                "fleet {fleet}: {member} is no longer listed and is forgotten"
            ),
            FleetEvent::Unreachable {
                fleet,
                member,
                message,
            } => write!(
                f,
                "fleet {fleet}: cannot connect to {member} (tried again at each lookup while \
                 DNS lists it): {message}"
            ),
            FleetEvent::ResolveFailed { fleet, message } => write!(
                f,
                "fleet {fleet}: lookup failed, going on with the members it has: {message}"
            ),
            FleetEvent::Resolved { fleet, addresses } => write!(
                f,
                "fleet {fleet}: lookups work again ({} addresses)",
                addresses.len()
            ),
        }
    }
}

/// Where a member stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum MemberState {
    /// Connected and taking work.
    Active,
    /// Left DNS; finishing what it holds.
    Draining,
    /// Listed by DNS, but the last attempt to connect failed.
    Unreachable {
        /// Why.
        message: String,
    },
}

/// One member of a fleet, as [`Fleet::members`] shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Its address.
    pub addr: SocketAddr,
    /// Where it stands.
    #[serde(flatten)]
    pub state: MemberState,
    /// The threads it reported (0 when never connected).
    pub cores: u32,
    /// The images it lets this client have there now (its credits).
    pub window: usize,
    /// The images this client has there now.
    pub in_flight: usize,
}

/// What the fleet's bookkeeping asks the I/O layer to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Connect to this address (new in DNS, or listed again after failing or being lost).
    Connect(SocketAddr),
    /// Stop giving this member work; disconnect it once it holds nothing.
    Drain(SocketAddr),
    /// Tell this.
    Tell(FleetEvent),
}

/// Who is in a fleet, by address, and what each lookup and connection attempt changes:
/// the fleet's logic without sockets or clocks.
#[derive(Debug, Default)]
pub struct Roster {
    fleet: String,
    active: BTreeSet<SocketAddr>,
    /// Addresses being connected now.
    connecting: BTreeSet<SocketAddr>,
    /// Listed addresses whose last connection attempt failed, with why.
    unreachable: BTreeMap<SocketAddr, String>,
    /// Members lost and not connected again since.
    lost: BTreeSet<SocketAddr>,
    /// Why lookups fail, while they do.
    failing: Option<String>,
}

impl Roster {
    /// An empty roster for the fleet named `fleet`.
    pub fn new(fleet: impl Into<String>) -> Self {
        Roster {
            fleet: fleet.into(),
            ..Default::default()
        }
    }

    /// The members connected now.
    pub fn active(&self) -> &BTreeSet<SocketAddr> {
        &self.active
    }

    /// A lookup's result: addresses to connect and members to drain. A failed or empty
    /// lookup changes no member.
    pub fn looked_up(&mut self, result: Result<BTreeSet<SocketAddr>, String>) -> Vec<Step> {
        let fleet = self.fleet.clone();
        let listed = match result {
            Ok(listed) if !listed.is_empty() => listed,
            other => {
                let message = other
                    .err()
                    .unwrap_or_else(|| "the name lists no address".to_string());
                // Told once per outage, not at every lookup.
                let first = self.failing.is_none();
                self.failing = Some(message.clone());
                return if first {
                    vec![Step::Tell(FleetEvent::ResolveFailed { fleet, message })]
                } else {
                    Vec::new()
                };
            }
        };
        let mut steps = Vec::new();
        if self.failing.take().is_some() {
            steps.push(Step::Tell(FleetEvent::Resolved {
                fleet: fleet.clone(),
                addresses: listed.iter().copied().collect(),
            }));
        }
        let gone: Vec<SocketAddr> = self.active.difference(&listed).copied().collect();
        for addr in gone {
            self.active.remove(&addr);
            steps.push(Step::Drain(addr));
            steps.push(Step::Tell(FleetEvent::Draining {
                fleet: fleet.clone(),
                member: addr,
            }));
        }
        // An address no longer listed is not tried again, and its failure (or its loss)
        // is forgotten: told, so whoever shows it can drop it.
        let unlisted: BTreeSet<SocketAddr> = (self.unreachable.keys().chain(&self.lost))
            .filter(|a| !listed.contains(a) && !self.connecting.contains(a))
            .copied()
            .collect();
        for addr in unlisted {
            self.unreachable.remove(&addr);
            self.lost.remove(&addr);
            steps.push(Step::Tell(FleetEvent::Unlisted {
                fleet: fleet.clone(),
                member: addr,
            }));
        }
        for &addr in &listed {
            if !self.active.contains(&addr) && self.connecting.insert(addr) {
                // An address still failing is retried quietly, as its failure is told once.
                if !self.unreachable.contains_key(&addr) {
                    steps.push(Step::Tell(FleetEvent::Connecting {
                        fleet: fleet.clone(),
                        member: addr,
                    }));
                }
                steps.push(Step::Connect(addr));
            }
        }
        steps
    }

    /// How connecting to `addr` went (`Ok` with the cores it reported).
    pub fn connected(&mut self, addr: SocketAddr, result: Result<u32, String>) -> Vec<Step> {
        self.connecting.remove(&addr);
        let fleet = self.fleet.clone();
        match result {
            Ok(cores) => {
                self.unreachable.remove(&addr);
                self.lost.remove(&addr);
                self.active.insert(addr);
                vec![Step::Tell(FleetEvent::Joined {
                    fleet,
                    member: addr,
                    cores,
                })]
            }
            Err(message) => {
                // Told when the reason is new, not at every lookup.
                let again = self.unreachable.get(&addr) == Some(&message);
                self.unreachable.insert(addr, message.clone());
                if again {
                    Vec::new()
                } else {
                    vec![Step::Tell(FleetEvent::Unreachable {
                        fleet,
                        member: addr,
                        message,
                    })]
                }
            }
        }
    }

    /// Member `addr` lost its connection: it is no member any more (and is connected
    /// again at the next lookup that lists it).
    pub fn lost(&mut self, addr: SocketAddr) -> Vec<Step> {
        if !self.active.remove(&addr) {
            return Vec::new();
        }
        self.lost.insert(addr);
        vec![Step::Tell(FleetEvent::Lost {
            fleet: self.fleet.clone(),
            member: addr,
        })]
    }

    /// Listed addresses that could not be connected, with why.
    pub fn unreachable(&self) -> &BTreeMap<SocketAddr, String> {
        &self.unreachable
    }
}

/// Where a fleet's events go.
pub type FleetEvents = Arc<dyn Fn(&FleetEvent) + Send + Sync>;

/// A fleet being served: its members as workers, and the lookups that keep them current.
pub struct Fleet {
    inner: Arc<Inner>,
    watching: Option<tokio::task::JoinHandle<()>>,
}

struct Inner {
    spec: FleetSpec,
    opts: FleetOptions,
    runtime: tokio::runtime::Handle,
    resolver: TokioResolver,
    on_event: FleetEvents,
    state: Mutex<State>,
    stopped: AtomicBool,
}

struct State {
    roster: Roster,
    members: BTreeMap<SocketAddr, Arc<RemoteWorker>>,
    draining: Vec<(SocketAddr, Arc<RemoteWorker>)>,
    /// A member refused the token: the fleet's members share one, so it is wrong for all.
    bad_token: bool,
}

impl Fleet {
    /// Looks `spec.host` up and connects to every address it lists, the lookup and each
    /// connection retrying as `opts.connect` says, on `runtime` (the one this runs on).
    /// Fails when the name cannot be looked up or no member could be connected; members
    /// that failed are told as [`FleetEvent::Unreachable`] and tried again by
    /// [`Fleet::watch`].
    pub async fn connect(
        runtime: tokio::runtime::Handle,
        spec: FleetSpec,
        opts: FleetOptions,
        on_event: FleetEvents,
    ) -> Result<Fleet, RemoteError> {
        let resolver = resolver(&opts)?;
        let name = spec.name();
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                roster: Roster::new(name.clone()),
                members: BTreeMap::new(),
                draining: Vec::new(),
                bad_token: false,
            }),
            spec,
            opts,
            runtime,
            resolver,
            on_event,
            stopped: AtomicBool::new(false),
        });
        let attempts = opts.connect.retries.saturating_add(1);
        let mut listed = Err(String::new());
        for attempt in 0..attempts {
            if attempt > 0 {
                sleep(opts.connect.delay).await;
            }
            listed = inner.lookup().await;
            if listed.is_ok() {
                break;
            }
        }
        let listed = listed.map_err(|last| RemoteError::Unreachable {
            addr: name.clone(),
            attempts,
            delay_ms: opts.connect.delay.as_millis() as u64,
            last,
        })?;
        let steps = lock(&inner.state).roster.looked_up(Ok(listed));
        for task in inner.run(steps, &opts.connect, None) {
            let _ = task.await;
        }
        let state = lock(&inner.state);
        // A wrong token is final: trying again cannot mend it.
        if state.members.is_empty() && state.bad_token {
            return Err(RemoteError::BadToken { addr: name });
        }
        if state.members.is_empty() {
            let why: Vec<String> = state
                .roster
                .unreachable()
                .iter()
                .map(|(a, m)| format!("{a}: {m}"))
                .collect();
            return Err(RemoteError::Refused {
                addr: name,
                message: format!("no member could be connected ({})", why.join("; ")),
            });
        }
        drop(state);
        Ok(Fleet {
            inner,
            watching: None,
        })
    }

    /// The fleet's name, `host:port`.
    pub fn name(&self) -> String {
        self.inner.spec.name()
    }

    /// The members connected now, as workers.
    pub fn workers(&self) -> Vec<Arc<RemoteWorker>> {
        lock(&self.inner.state).members.values().cloned().collect()
    }

    /// Everyone in the fleet now: connected members, draining ones, and listed addresses
    /// that could not be connected.
    pub fn members(&self) -> Vec<Member> {
        let state = lock(&self.inner.state);
        let of = |addr: SocketAddr, w: &RemoteWorker, s: MemberState| Member {
            addr,
            state: s,
            cores: w.client().health().cores,
            window: w.client().window().limit(),
            in_flight: w.in_flight(),
        };
        let mut out: Vec<Member> = state
            .members
            .iter()
            .map(|(a, w)| of(*a, w, MemberState::Active))
            .collect();
        out.extend(
            state
                .draining
                .iter()
                .map(|(a, w)| of(*a, w, MemberState::Draining)),
        );
        out.extend(state.roster.unreachable().iter().map(|(a, m)| Member {
            addr: *a,
            state: MemberState::Unreachable { message: m.clone() },
            cores: 0,
            window: 0,
            in_flight: 0,
        }));
        out
    }

    /// Looks the name up again every [`FleetOptions::resolve_every`] (if set) until
    /// [`Fleet::stop`]: members that join are sent to `joins` (a batch's
    /// [`crate::exec::Joins`]) if given, and are in [`Fleet::workers`] either way.
    pub fn watch(&mut self, joins: Option<mpsc::Sender<Arc<dyn Worker>>>) {
        let Some(every) = self.inner.opts.resolve_every else {
            return;
        };
        if self.watching.is_some() {
            return;
        }
        let inner = self.inner.clone();
        self.watching = Some(self.inner.runtime.spawn(async move {
            let once = ConnectOptions {
                retries: 0,
                ..inner.opts.connect
            };
            loop {
                sleep(every).await;
                if inner.stopped.load(Ordering::SeqCst) {
                    return;
                }
                inner.reap().await;
                let listed = inner.lookup().await;
                let steps = lock(&inner.state).roster.looked_up(listed);
                // Connections go on in the background; the next lookup does not wait.
                drop(inner.run(steps, &once, joins.as_ref()));
            }
        }));
    }

    /// Stops looking the name up and says goodbye to every member (call once the batch
    /// is over).
    pub async fn stop(&mut self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        if let Some(task) = self.watching.take() {
            task.abort();
        }
        let all: Vec<Arc<RemoteWorker>> = {
            let mut state = lock(&self.inner.state);
            let mut all: Vec<_> = std::mem::take(&mut state.members).into_values().collect();
            all.extend(std::mem::take(&mut state.draining).into_iter().map(|d| d.1));
            all
        };
        for w in all {
            w.client().goodbye().await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        if let Some(task) = self.watching.take() {
            task.abort();
        }
    }
}

impl Inner {
    fn tell(&self, steps: &[Step]) {
        for s in steps {
            if let Step::Tell(e) = s {
                (self.on_event)(e);
            }
        }
    }

    /// The name's addresses, on the fleet's port.
    async fn lookup(&self) -> Result<BTreeSet<SocketAddr>, String> {
        let host = &self.spec.host;
        let ips = self
            .resolver
            .lookup_ip(host.as_str())
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        Ok(ips
            .iter()
            .map(|ip| SocketAddr::new(ip, self.spec.port))
            .collect())
    }

    /// Carries out the roster's steps: tells and drains at once, and starts a connection
    /// to each new address (all at once), each member that joins going to `joins`.
    /// Returns the connection tasks; the watch loop does not wait for them, so an address
    /// that takes its whole connect timeout to fail delays no lookup.
    fn run(
        self: &Arc<Self>,
        steps: Vec<Step>,
        opts: &ConnectOptions,
        joins: Option<&mpsc::Sender<Arc<dyn Worker>>>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.tell(&steps);
        let mut connects = Vec::new();
        for step in steps {
            match step {
                Step::Tell(_) => {}
                Step::Drain(addr) => {
                    let mut state = lock(&self.state);
                    if let Some(w) = state.members.remove(&addr) {
                        w.drain();
                        state.draining.push((addr, w));
                    }
                }
                Step::Connect(addr) => {
                    let (inner, opts, joins) = (self.clone(), *opts, joins.cloned());
                    connects.push(
                        self.runtime
                            .spawn(async move { inner.join(addr, &opts, joins).await }),
                    );
                }
            }
        }
        connects
    }

    /// Connects to `addr` and makes it a member (sent to `joins`), or records why not.
    async fn join(
        &self,
        addr: SocketAddr,
        opts: &ConnectOptions,
        joins: Option<mpsc::Sender<Arc<dyn Worker>>>,
    ) {
        let spec = NodeSpec {
            addr: addr.to_string(),
            fingerprint: self.spec.fingerprint,
            token: self.spec.token.clone(),
        };
        let steps = match RemoteClient::connect(&spec, opts).await {
            Ok(client) => {
                let cores = client.health().cores;
                let worker = Arc::new(RemoteWorker::new(self.runtime.clone(), client));
                let mut state = lock(&self.state);
                if self.stopped.load(Ordering::SeqCst) {
                    drop(state);
                    worker.client().close();
                    return;
                }
                state.members.insert(addr, worker.clone());
                let steps = state.roster.connected(addr, Ok(cores));
                drop(state);
                if let Some(tx) = joins {
                    // A batch that is over no longer listens; the member stays.
                    let _ = tx.send(worker as Arc<dyn Worker>);
                }
                steps
            }
            Err(e) => {
                let mut state = lock(&self.state);
                state.bad_token |= matches!(e, RemoteError::BadToken { .. });
                state.roster.connected(addr, Err(e.to_string()))
            }
        };
        self.tell(&steps);
    }

    /// Drops lost members, and disconnects draining ones that hold nothing more.
    async fn reap(&self) {
        let (steps, done) = {
            let mut state = lock(&self.state);
            let lost: Vec<SocketAddr> = state
                .members
                .iter()
                .filter(|(_, w)| w.is_lost())
                .map(|(a, _)| *a)
                .collect();
            let mut steps = Vec::new();
            for addr in lost {
                state.members.remove(&addr);
                steps.extend(state.roster.lost(addr));
            }
            let (done, still): (Vec<_>, Vec<_>) = std::mem::take(&mut state.draining)
                .into_iter()
                .partition(|(_, w)| w.in_flight() == 0 || w.is_lost());
            state.draining = still;
            (steps, done)
        };
        self.tell(&steps);
        for (addr, w) in done {
            let (fleet, member) = (self.spec.name(), addr);
            if w.is_lost() {
                // Died while draining: what it held moves to other workers.
                (self.on_event)(&FleetEvent::Lost { fleet, member });
                continue;
            }
            w.client().goodbye().await;
            (self.on_event)(&FleetEvent::Left { fleet, member });
        }
    }
}

/// The addresses `host` lists now, on `port`, looked up as a fleet's members are (with
/// `opts.dns_server` if set): for a client that wants to see who is there before it
/// connects (to show a fleet's certificate before trusting it, say).
pub async fn lookup(
    host: &str,
    port: u16,
    opts: &FleetOptions,
) -> Result<BTreeSet<SocketAddr>, RemoteError> {
    let resolver = resolver(opts)?;
    let ips = resolver
        .lookup_ip(host)
        .await
        .map_err(|e| RemoteError::Unreachable {
            addr: format!("{host}:{port}"),
            attempts: 1,
            delay_ms: 0,
            last: format!("cannot resolve {host}: {e}"),
        })?;
    Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The resolver: the system's configuration, or the one name server asked for. Answers
/// are cached no longer than the time between lookups, so each lookup sees DNS as it is.
fn resolver(opts: &FleetOptions) -> Result<TokioResolver, RemoteError> {
    let mut builder = match opts.dns_server {
        Some(server) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|e| {
            RemoteError::Setup(format!("cannot read the system's DNS configuration: {e}"))
        })?,
    };
    let o = builder.options_mut();
    o.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    if let Some(every) = opts.resolve_every {
        o.positive_max_ttl = Some(every);
        o.negative_max_ttl = Some(every);
    }
    builder
        .build()
        .map_err(|e| RemoteError::Setup(format!("cannot set up the DNS resolver: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 7443))
    }

    fn set(v: &[u8]) -> BTreeSet<SocketAddr> {
        v.iter().map(|&l| a(l)).collect()
    }

    fn connects(steps: &[Step]) -> Vec<SocketAddr> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Connect(x) => Some(*x),
                _ => None,
            })
            .collect()
    }

    fn drains(steps: &[Step]) -> Vec<SocketAddr> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Drain(x) => Some(*x),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn targets_are_nodes_by_address_and_fleets_by_name() {
        assert_eq!(
            parse_target("10.0.0.5:7443"),
            Ok(Target::Node("10.0.0.5:7443".parse().unwrap()))
        );
        assert_eq!(
            parse_target("[::1]:7443"),
            Ok(Target::Node("[::1]:7443".parse().unwrap()))
        );
        assert_eq!(
            parse_target("prism-nodes.prism.svc.cluster.local.:7443"),
            Ok(Target::Fleet {
                host: "prism-nodes.prism.svc.cluster.local.".into(),
                port: 7443
            })
        );
        assert_eq!(
            parse_target("nodes:1"),
            Ok(Target::Fleet {
                host: "nodes".into(),
                port: 1
            })
        );
        for bad in [
            "nodes",
            "nodes:",
            "nodes:0",
            "nodes:99999",
            ":7443",
            "no des:7443",
            "a..b:7443",
            "-a:7443",
            "10.0.0.5:0",
            "[::1]",
            "http://x:1",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_listed_address_is_connected_once() {
        let mut r = Roster::new("f:7443");
        let steps = r.looked_up(Ok(set(&[2, 3])));
        assert_eq!(connects(&steps), vec![a(2), a(3)]);
        // Still connecting: not asked again.
        assert!(connects(&r.looked_up(Ok(set(&[2, 3])))).is_empty());
        let steps = r.connected(a(2), Ok(1));
        assert_eq!(
            steps,
            vec![Step::Tell(FleetEvent::Joined {
                fleet: "f:7443".into(),
                member: a(2),
                cores: 1
            })]
        );
        r.connected(a(3), Ok(2));
        assert_eq!(r.active(), &set(&[2, 3]));
        assert!(r.looked_up(Ok(set(&[2, 3]))).is_empty());
    }

    #[test]
    fn a_member_that_leaves_dns_drains_and_a_new_one_joins() {
        let mut r = Roster::new("f:1");
        for s in r.looked_up(Ok(set(&[2, 3]))) {
            if let Step::Connect(x) = s {
                r.connected(x, Ok(1));
            }
        }
        let steps = r.looked_up(Ok(set(&[3, 4, 5])));
        assert_eq!(drains(&steps), vec![a(2)]);
        assert_eq!(connects(&steps), vec![a(4), a(5)]);
        assert!(steps.contains(&Step::Tell(FleetEvent::Draining {
            fleet: "f:1".into(),
            member: a(2)
        })));
        assert_eq!(r.active(), &set(&[3]));
        // Back in DNS later: connected anew.
        assert_eq!(connects(&r.looked_up(Ok(set(&[2, 3])))), vec![a(2)]);
    }

    #[test]
    fn a_failed_or_empty_lookup_changes_no_member_and_is_told_once() {
        let mut r = Roster::new("f:1");
        for s in r.looked_up(Ok(set(&[2, 3]))) {
            if let Step::Connect(x) = s {
                r.connected(x, Ok(1));
            }
        }
        let steps = r.looked_up(Err("timed out".into()));
        assert_eq!(
            steps,
            vec![Step::Tell(FleetEvent::ResolveFailed {
                fleet: "f:1".into(),
                message: "timed out".into()
            })]
        );
        assert!(r.looked_up(Err("timed out".into())).is_empty());
        assert!(r.looked_up(Ok(BTreeSet::new())).is_empty());
        assert_eq!(r.active(), &set(&[2, 3]));
        // Resolving again is told, and changes only what DNS changed.
        let steps = r.looked_up(Ok(set(&[2, 3])));
        assert_eq!(
            steps,
            vec![Step::Tell(FleetEvent::Resolved {
                fleet: "f:1".into(),
                addresses: vec![a(2), a(3)]
            })]
        );
    }

    fn tells(steps: &[Step]) -> Vec<FleetEvent> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Tell(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn connecting_is_told_for_new_addresses_and_not_for_quiet_retries() {
        let mut r = Roster::new("f:1");
        let connecting = |m: u8| FleetEvent::Connecting {
            fleet: "f:1".into(),
            member: a(m),
        };
        assert_eq!(
            tells(&r.looked_up(Ok(set(&[2, 3])))),
            vec![connecting(2), connecting(3)]
        );
        r.connected(a(2), Ok(1));
        r.connected(a(3), Err("refused".into()));
        // 3 is tried again without being told; 4 is new.
        let steps = r.looked_up(Ok(set(&[2, 3, 4])));
        assert_eq!(connects(&steps), vec![a(3), a(4)]);
        assert_eq!(tells(&steps), vec![connecting(4)]);
        // A lost member listed again is told as connecting anew.
        r.lost(a(2));
        r.connected(a(4), Ok(1));
        r.connected(a(3), Err("refused".into()));
        assert_eq!(
            tells(&r.looked_up(Ok(set(&[2, 3, 4])))),
            vec![connecting(2)]
        );
    }

    #[test]
    fn a_lost_or_unreachable_address_that_leaves_dns_is_told_unlisted_once() {
        let mut r = Roster::new("f:1");
        for s in r.looked_up(Ok(set(&[2, 3, 4]))) {
            if let Step::Connect(x) = s {
                r.connected(
                    x,
                    if x == a(3) {
                        Err("refused".into())
                    } else {
                        Ok(1)
                    },
                );
            }
        }
        r.lost(a(2));
        let unlisted = |m: u8| FleetEvent::Unlisted {
            fleet: "f:1".into(),
            member: a(m),
        };
        // 2 (lost) and 3 (unreachable) leave DNS; 4, a member, drains instead.
        let told = tells(&r.looked_up(Ok(set(&[5]))));
        assert!(told.contains(&unlisted(2)), "{told:?}");
        assert!(told.contains(&unlisted(3)), "{told:?}");
        assert!(!told.contains(&unlisted(4)), "{told:?}");
        assert!(r.unreachable().is_empty());
        // Told once.
        let told = tells(&r.looked_up(Ok(set(&[5]))));
        assert!(!told
            .iter()
            .any(|e| matches!(e, FleetEvent::Unlisted { .. })));
        // A lost member that reconnects is no longer remembered as lost.
        r.connected(a(5), Ok(1));
        r.lost(a(5));
        let steps = r.looked_up(Ok(set(&[5])));
        assert_eq!(connects(&steps), vec![a(5)]);
        r.connected(a(5), Ok(1));
        assert!(!tells(&r.looked_up(Ok(set(&[6]))))
            .iter()
            .any(|e| matches!(e, FleetEvent::Unlisted { .. })));
    }

    #[test]
    fn an_unreachable_address_is_retried_while_listed_and_told_once_per_reason() {
        let mut r = Roster::new("f:1");
        r.looked_up(Ok(set(&[2])));
        assert_eq!(r.connected(a(2), Err("refused".into())).len(), 1);
        assert_eq!(connects(&r.looked_up(Ok(set(&[2])))), vec![a(2)]);
        assert!(r.connected(a(2), Err("refused".into())).is_empty());
        assert_eq!(r.connected(a(2), Err("timed out".into())).len(), 1);
        assert_eq!(r.unreachable().len(), 1);
        // Gone from DNS: forgotten, not retried.
        assert!(connects(&r.looked_up(Ok(set(&[3])))).contains(&a(3)));
        assert!(r.unreachable().is_empty());
    }

    #[test]
    fn a_lost_member_is_dropped_and_connected_again_if_still_listed() {
        let mut r = Roster::new("f:1");
        r.looked_up(Ok(set(&[2])));
        r.connected(a(2), Ok(1));
        assert_eq!(
            r.lost(a(2)),
            vec![Step::Tell(FleetEvent::Lost {
                fleet: "f:1".into(),
                member: a(2)
            })]
        );
        assert!(r.lost(a(2)).is_empty(), "told once");
        assert!(r.active().is_empty());
        assert_eq!(connects(&r.looked_up(Ok(set(&[2])))), vec![a(2)]);
    }
}
