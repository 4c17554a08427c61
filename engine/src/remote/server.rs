//! `prism node`: serves the engine over QUIC to clients that pin its certificate and hold
//! its token.
//!
//! The async runtime only moves bytes; every image runs on the node's rayon pool through
//! [`crate::exec::process_bytes`], the same function local workers call, so remote results
//! are byte-identical to local ones. Each connection must say `hello` with the token on its
//! first stream (compared in constant time) before anything else is read.
//!
//! Until `hello` succeeds a connection costs almost nothing: its source address is
//! validated first (QUIC retry), it may open one stream and send a few kilobytes, no
//! datagrams, and it has a few seconds; unauthenticated connections have their own small
//! cap, and when it is full the oldest one makes room, so idle strangers cannot lock out a
//! client that holds the token. Only authenticated connections count against
//! `max_connections`, and only they get the full stream count and flow-control windows.
//! A source address whose connections keep failing before `hello` runs out of credit and
//! is then ignored before any retry or TLS work until it earns credit back
//! ([`super::sources`]); clients with the token, from other addresses, never notice.
//!
//! Limits, each answered with an error code while the node keeps serving everyone else:
//! connections, bidirectional streams per connection (no unidirectional ones), bytes and
//! pixels per image, memory for images in flight, time per image, stalled reads and
//! writes, and an idle timeout (a connection with no request in flight for that long is
//! closed, whatever its keep-alives say). A panic or an oversized answer costs that image
//! only. SIGTERM stops new work, lets in-flight images finish until a deadline, then
//! closes.
//!
//! With `metrics_listen`, the node also serves `/healthz`, `/readyz` and `/metrics` over
//! HTTP ([`super::http`]) on the same runtime; the counters are bumped where images are
//! answered here and where each op ends on a node thread ([`super::metrics`]).
//!
//! Work is granted by credits ([`proto::credit_window`]): a connection that asks for them
//! hears, on a stream of its own, how many images it may have at the node whenever that
//! changes (an image of any client admitted or answered, the node shutting down), so
//! clients send a busy node less and a shutting-down node nothing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};
use tokio::sync::{oneshot, watch, Notify, Semaphore};
use tokio::time::{sleep_until, timeout, Instant};

use super::http::{self, HttpLimits, Observed};
use super::metrics::{NodeMetrics, Refusal, Snapshot, TextFormat};
use super::proto::{
    self as proto, Caps, DoneHeader, ErrorCode, ErrorMsg, Health, ProcessHeader, ProtoError,
    Request, Response, MAX_REQUEST_HEADER, MAX_RESPONSE_HEADER, VERSION,
};
use super::sources::{self, SourceCredit, Sources};
use super::tls::{self, Fingerprint};
use super::wire::{self, ReadFail};
use crate::codec::{self, EncodeOptions, Limits, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS};
use crate::error::{EngineError, ErrorKind};
use crate::exec::{panic_message, process_bytes_timed, working_bytes, WorkRequest, WorkResult};
use crate::job::OutputFormat;
use crate::ops::{CancelToken, Op, OpContext};

/// What a node refuses or gives up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLimits {
    /// Authenticated connections served at once; one more is refused with `busy`.
    pub max_connections: usize,
    /// Connections still in their handshake or before `hello`; one more closes the oldest.
    pub max_unauthenticated: usize,
    /// Bidirectional streams (images in flight) per connection; QUIC flow control makes a
    /// client wait for credit, and a client that ignores it is closed by the transport.
    pub max_streams: u32,
    /// Bytes per image.
    pub max_image_bytes: u64,
    /// Pixels per image.
    pub max_pixels: u64,
    /// Time for one image, from its first byte to its answer.
    pub image_timeout: Duration,
    /// Time a stream may go without progress (a client that stalls mid-image).
    pub stall_timeout: Duration,
    /// Time a connection may go without a request in flight (or without any packet)
    /// before it is closed; keep-alives do not count as requests.
    pub idle_timeout: Duration,
    /// Time a new connection has for its handshake and `hello` together.
    pub hello_timeout: Duration,
    /// Time in-flight images get to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Bytes of images (compressed and decoded) the node holds at once; more wait.
    pub memory_budget: u64,
    /// Cap on an answer's JSON frame (features); a bigger answer fails its image.
    pub max_response_header: u32,
    /// Credit per source address for connections that fail before `hello`; a source
    /// without credit has its new connections ignored (see [`super::sources`]).
    pub source_credit: SourceCredit,
}

impl Default for NodeLimits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            max_unauthenticated: 32,
            max_streams: 64,
            max_image_bytes: DEFAULT_MAX_BYTES,
            max_pixels: DEFAULT_MAX_PIXELS,
            image_timeout: Duration::from_secs(600),
            stall_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(30),
            memory_budget: crate::exec::default_memory_budget(),
            max_response_header: MAX_RESPONSE_HEADER,
            source_credit: SourceCredit::default(),
        }
    }
}

/// Where a node's certificate, key and token come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentitySource {
    /// The node's own data dir: made on first start, kept across restarts.
    DataDir(PathBuf),
    /// A fleet's shared identity (`prism node identity new`): read as it is, never
    /// written, so every replica presents the same fingerprint and accepts one token.
    Fixed(PathBuf),
}

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The UDP address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Where the certificate, key and token live.
    pub identity: IdentitySource,
    /// Threads for images (0 = one per core).
    pub threads: usize,
    /// Limits.
    pub limits: NodeLimits,
    /// The TCP address for `/healthz`, `/readyz` and `/metrics`, if any (port 0 picks one).
    pub metrics_listen: Option<SocketAddr>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Keys, certificate or token.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The socket or the runtime.
    #[error("{0}")]
    Io(String),
}

/// The default data dir: `$XDG_DATA_HOME/prism/node`, else `~/.local/share/prism/node`.
pub fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("prism").join("node")
}

struct State {
    token: String,
    limits: NodeLimits,
    pool: Arc<rayon::ThreadPool>,
    cores: u32,
    /// Authenticated connections.
    connections: AtomicUsize,
    /// Connections before `hello`, oldest first, each with the signal that closes it.
    unauthenticated: Mutex<VecDeque<(u64, Arc<Notify>)>>,
    /// Credit of the source addresses whose connections failed before `hello` lately.
    sources: Mutex<Sources>,
    next_conn: AtomicU64,
    in_flight: AtomicUsize,
    running: AtomicUsize,
    idle: Notify,
    /// Told whenever `in_flight` or `shutting_down` changes: credit streams recompute.
    load: watch::Sender<()>,
    shutting_down: AtomicBool,
    /// Admission by bytes, in KiB permits (a semaphore counts in usize units); a permit
    /// moves into the image's job, so it lives as long as the work.
    memory: Arc<Semaphore>,
    memory_kib: usize,
    metrics: NodeMetrics,
}

impl Observed for State {
    fn ready(&self) -> bool {
        !self.shutting_down.load(Ordering::SeqCst)
    }

    fn metrics(&self, format: TextFormat) -> String {
        let kib = |n: usize| n as u64 * 1024;
        let now = Snapshot {
            in_flight: self.in_flight.load(Ordering::Relaxed) as u64,
            running: self.running.load(Ordering::Relaxed) as u64,
            authenticated: self.connections.load(Ordering::Relaxed) as u64,
            unauthenticated: lock(&self.unauthenticated).len() as u64,
            memory_budget: kib(self.memory_kib),
            memory_in_use: kib(self
                .memory_kib
                .saturating_sub(self.memory.available_permits())),
            ready: self.ready(),
        };
        self.metrics.encode(&now, format)
    }
}

impl State {
    fn health(&self) -> Health {
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        let running = self.running.load(Ordering::Relaxed);
        Health {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: VERSION,
            cores: self.cores,
            queue_depth: in_flight.saturating_sub(running) as u32,
            in_flight: in_flight as u32,
            max_pixels: self.limits.max_pixels,
            max_image_bytes: self.limits.max_image_bytes,
            // The credit stream holds one of the connection's streams for good: with only
            // one, images could never be sent.
            credits: self.limits.max_streams > 1,
        }
    }

    /// The window connection `conn` may use now.
    fn credit(&self, conn: &ConnLoad) -> proto::Credit {
        let n = |a: &AtomicUsize| u32::try_from(a.load(Ordering::SeqCst)).unwrap_or(u32::MAX);
        proto::Credit {
            window: proto::credit_window(
                self.cores,
                n(&self.in_flight),
                n(&conn.images),
                self.shutting_down.load(Ordering::SeqCst),
            ),
        }
    }
}

/// What one connection has at the node, for its credits and its idle timeout.
struct ConnLoad {
    /// Its images admitted and not yet answered.
    images: AtomicUsize,
    /// Its requests in flight (images, health); with none for the idle timeout it closes.
    active: AtomicUsize,
    /// Told when a request ends.
    ended: Notify,
}

/// One image admitted, counted for the node and its connection until its answer is
/// acknowledged; every change is told to the credit streams.
struct Admitted<'s> {
    state: &'s State,
    conn: Arc<ConnLoad>,
}

impl<'s> Admitted<'s> {
    fn new(state: &'s State, conn: Arc<ConnLoad>) -> Self {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        conn.images.fetch_add(1, Ordering::SeqCst);
        state.load.send_replace(());
        Admitted { state, conn }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.conn.images.fetch_sub(1, Ordering::SeqCst);
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.state.idle.notify_waiters();
        self.state.load.send_replace(());
    }
}

/// Counts a connection or a running image while it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Counted(n)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A node serving on its own runtime until [`RunningNode::shutdown`] or a signal.
pub struct RunningNode {
    /// The bound address (the real port when 0 was asked).
    pub addr: SocketAddr,
    /// The certificate fingerprint clients pin.
    pub fingerprint: Fingerprint,
    /// Where the token is.
    pub token_path: PathBuf,
    /// Threads images run on.
    pub cores: u32,
    /// The bound address of `/healthz`, `/readyz` and `/metrics`, when asked for.
    pub metrics_addr: Option<SocketAddr>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// Loads or creates the identity and token, binds, and starts serving.
    pub fn start(cfg: NodeConfig) -> Result<RunningNode, NodeError> {
        let (id, token, token_path) = match &cfg.identity {
            IdentitySource::DataDir(dir) => {
                let id = tls::load_or_create_identity(dir)?;
                let (token, path) = tls::load_or_create_token(dir)?;
                (id, token, path)
            }
            IdentitySource::Fixed(dir) => tls::load_identity_dir(dir)?,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .thread_name(|i| format!("prism-node-cpu-{i}"))
            .build()
            .map_err(|e| NodeError::Io(format!("cannot start threads: {e}")))?;
        let cores = pool.current_num_threads() as u32;
        // The runtime only moves bytes: two threads are plenty.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("prism-node-io")
            .enable_all()
            .build()
            .map_err(|e| NodeError::Io(format!("cannot start the runtime: {e}")))?;
        let limits = cfg.limits;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(tls::server_crypto(&id)?));
        server.transport_config(Arc::new(transport(&limits)?));
        server.max_incoming(limits.max_unauthenticated.saturating_mul(2).max(16));
        // Packets that arrive for a connection not yet accepted are buffered: keep that small.
        server.incoming_buffer_size(64 << 10);
        server.incoming_buffer_size_total(4 << 20);
        let endpoint = {
            let _guard = runtime.enter();
            quinn::Endpoint::server(server, cfg.listen)
                .map_err(|e| NodeError::Io(format!("cannot listen on {}: {e}", cfg.listen)))?
        };
        let addr = endpoint
            .local_addr()
            .map_err(|e| NodeError::Io(e.to_string()))?;
        let metrics_listener =
            match cfg.metrics_listen {
                Some(a) => Some(runtime.block_on(http::bind(a)).map_err(|e| {
                    NodeError::Io(format!("cannot listen on {a} for metrics: {e}"))
                })?),
                None => None,
            };
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(l.local_addr().map_err(|e| NodeError::Io(e.to_string()))?),
            None => None,
        };
        let memory_kib =
            (limits.memory_budget / 1024).clamp(1, Semaphore::MAX_PERMITS as u64) as usize;
        let state = Arc::new(State {
            token,
            limits,
            pool: Arc::new(pool),
            cores,
            connections: AtomicUsize::new(0),
            unauthenticated: Mutex::new(VecDeque::new()),
            sources: Mutex::new(Sources::new(limits.source_credit)),
            next_conn: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            load: watch::channel(()).0,
            shutting_down: AtomicBool::new(false),
            memory: Arc::new(Semaphore::new(memory_kib)),
            memory_kib,
            metrics: NodeMetrics::new(),
        });
        if let Some(listener) = metrics_listener {
            // Runs until the runtime shuts down, so probes see the drain after SIGTERM.
            runtime.spawn(http::serve(listener, state.clone(), HttpLimits::default()));
        }
        let (stop, stop_rx) = watch::channel(false);
        let task = runtime.spawn(serve(endpoint, state, stop_rx));
        Ok(RunningNode {
            addr,
            fingerprint: id.fingerprint,
            token_path,
            cores,
            metrics_addr,
            runtime: Some(runtime),
            stop,
            task: Some(task),
        })
    }

    /// Blocks until SIGTERM or SIGINT (Ctrl-C elsewhere), then shuts down gracefully.
    pub fn run_until_signal(mut self) -> Result<(), NodeError> {
        let Some(rt) = self.runtime.as_ref() else {
            return Ok(());
        };
        rt.block_on(wait_for_signal())?;
        eprintln!("prism node: shutting down, finishing images in flight");
        self.finish();
        Ok(())
    }

    /// Stops taking work, lets in-flight images finish (up to the grace period), closes.
    pub fn shutdown(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let _ = self.stop.send(true);
        if let (Some(rt), Some(task)) = (self.runtime.take(), self.task.take()) {
            let _ = rt.block_on(task);
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<(), NodeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| NodeError::Io(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| NodeError::Io(e.to_string()))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<(), NodeError> {
    // No SIGTERM here: Ctrl-C (and a console close on Windows) is the stop signal.
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| NodeError::Io(e.to_string()))
}

/// Bytes a stream may have in flight towards the node: room for a few images per stream
/// on fast links.
const STREAM_WINDOW: u32 = 8 << 20;
/// Bytes a connection may send before `hello` succeeds: the hello frame fits many times.
const HELLO_WINDOW: u32 = 16 << 10;
/// Bytes the node buffers towards a connection before `hello` (its welcome or refusal).
const HELLO_SEND_WINDOW: u64 = 64 << 10;
/// Bytes the node buffers towards an authenticated connection.
const SEND_WINDOW: u64 = 64 << 20;

/// The transport a connection starts with: what a stranger may cost before `hello`.
/// [`open_up`] raises the limits once the token is right.
fn transport(limits: &NodeLimits) -> Result<TransportConfig, NodeError> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(1));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.receive_window(VarInt::from_u32(HELLO_WINDOW));
    t.stream_receive_window(VarInt::from_u32(STREAM_WINDOW));
    t.send_window(HELLO_SEND_WINDOW);
    t.datagram_receive_buffer_size(None);
    t.max_idle_timeout(Some(IdleTimeout::try_from(limits.idle_timeout).map_err(
        |_| {
            NodeError::Io(format!(
                "idle timeout {:?} is too long",
                limits.idle_timeout
            ))
        },
    )?));
    t.keep_alive_interval(Some(limits.idle_timeout / 3));
    Ok(t)
}

/// Gives an authenticated connection its streams and windows.
fn open_up(conn: &quinn::Connection, limits: &NodeLimits) {
    // Every stream may fill its window while it waits for memory, and the ones admitted
    // must still get their bytes: the connection window covers them all.
    let window = u64::from(STREAM_WINDOW) * u64::from(limits.max_streams);
    conn.set_receive_window(VarInt::from_u64(window).unwrap_or(VarInt::MAX));
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(limits.max_streams));
    conn.set_send_window(SEND_WINDOW);
}

async fn serve(endpoint: quinn::Endpoint, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let state = state.clone();
                tokio::spawn(async move { handle_connection(incoming, state).await });
            }
            _ = stop.changed() => break,
        }
    }
    // Graceful: refuse new connections and new images, let in-flight ones finish; credit
    // streams tell their clients to send nothing more.
    state.shutting_down.store(true, Ordering::SeqCst);
    state.load.send_replace(());
    endpoint.set_server_config(None);
    let deadline = Instant::now() + state.limits.shutdown_grace;
    loop {
        let notified = state.idle.notified();
        if state.in_flight.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::select! {
            _ = notified => {}
            _ = sleep_until(deadline) => {
                eprintln!(
                    "prism node: {} images still in flight after the grace period; closing",
                    state.in_flight.load(Ordering::SeqCst)
                );
                break;
            }
        }
    }
    endpoint.close(code(ErrorCode::ShuttingDown), b"node shutting down");
    let _ = timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

fn code(c: ErrorCode) -> VarInt {
    VarInt::from_u32(c.as_u32())
}

/// A connection before `hello`: its place in the unauthenticated cap, given back on drop.
struct Stranger<'a> {
    state: &'a State,
    id: u64,
    /// Told when a newer stranger needs the place.
    evicted: Arc<Notify>,
}

impl<'a> Stranger<'a> {
    /// Takes a place, closing the oldest stranger when all are taken: a client that says
    /// `hello` at once always gets in, however many idle ones arrived before it.
    fn enter(state: &'a State) -> Self {
        let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(Notify::new());
        let mut q = lock(&state.unauthenticated);
        while q.len() >= state.limits.max_unauthenticated.max(1) {
            if let Some((_, oldest)) = q.pop_front() {
                // notify_one keeps the wake-up even if the oldest is not waiting yet.
                oldest.notify_one();
            }
        }
        q.push_back((id, evicted.clone()));
        Stranger { state, id, evicted }
    }
}

impl Drop for Stranger<'_> {
    fn drop(&mut self) {
        lock(&self.state.unauthenticated).retain(|(id, _)| *id != self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spends a source's credit for a connection that did not get to `hello`.
fn charge(state: &State, peer: SocketAddr, cost: u32) {
    lock(&state.sources).charge(peer.ip(), cost, std::time::Instant::now());
    state
        .metrics
        .connection_refused(if cost == sources::EVICT_COST {
            Refusal::Evicted
        } else {
            Refusal::Failed
        });
}

async fn handle_connection(incoming: quinn::Incoming, state: Arc<State>) {
    let peer = incoming.remote_address();
    // A source out of credit (it kept failing before hello) is not answered at all: no
    // retry packet, no state, no TLS work, so reconnecting at once gains it nothing.
    if !lock(&state.sources).allows(peer.ip(), std::time::Instant::now()) {
        incoming.ignore();
        state.metrics.connection_refused(Refusal::NoCredit);
        return;
    }
    // A source that has not proven its address gets a retry packet and nothing else: no
    // state and no TLS work until it echoes the token, so spoofed floods cost nothing.
    // Only validated sources are charged below, so spoofing cannot spend anyone's credit.
    if !incoming.remote_address_validated() && incoming.may_retry() {
        let _ = incoming.retry();
        return;
    }
    let stranger = Stranger::enter(&state);
    let deadline = Instant::now() + state.limits.hello_timeout;
    let Ok(connecting) = incoming.accept() else {
        return;
    };
    // Dropping an unfinished handshake closes it.
    let conn = tokio::select! {
        c = connecting => match c {
            Ok(c) => c,
            Err(_) => return charge(&state, peer, sources::FAIL_COST),
        },
        _ = sleep_until(deadline) => return charge(&state, peer, sources::FAIL_COST),
        _ = stranger.evicted.notified() => return charge(&state, peer, sources::EVICT_COST),
    };
    let mut evicted = false;
    let admitted = tokio::select! {
        r = authenticate(&conn, &state, deadline) => r,
        _ = stranger.evicted.notified() => {
            evicted = true;
            charge(&state, peer, sources::EVICT_COST);
            Err((
                ErrorCode::Busy,
                "node busy: too many connections waiting to say hello".to_string(),
            ))
        }
    };
    drop(stranger);
    let _counted = match admitted {
        Ok(counted) => counted,
        Err((c, msg)) => {
            if c != ErrorCode::Busy {
                // Garbage, a wrong token or no hello in time (a full node is not the
                // client's fault, and an eviction was charged above).
                charge(&state, peer, sources::FAIL_COST);
                eprintln!("prism node: refused {peer}: {msg}");
            } else if !evicted {
                state.metrics.connection_refused(Refusal::Busy);
            }
            conn.close(code(c), msg.as_bytes());
            return;
        }
    };
    // Requests in flight on this connection; with none for the idle timeout, it closes.
    let load = Arc::new(ConnLoad {
        images: AtomicUsize::new(0),
        active: AtomicUsize::new(0),
        ended: Notify::new(),
    });
    let idle = state.limits.idle_timeout;
    loop {
        tokio::select! {
            s = conn.accept_bi() => {
                let Ok((send, recv)) = s else { break };
                load.active.fetch_add(1, Ordering::SeqCst);
                let (state, load) = (state.clone(), load.clone());
                tokio::spawn(async move {
                    handle_stream(send, recv, state, load.clone()).await;
                    load.active.fetch_sub(1, Ordering::SeqCst);
                    load.ended.notify_waiters();
                });
            }
            _ = quiet_for(&load.active, &load.ended, idle) => {
                // Keep-alives (ours or the client's) keep QUIC's own idle timer from ever
                // firing on a peer that still acknowledges packets: this one counts requests.
                let msg = format!("idle: no request for {:.0} s", idle.as_secs_f64());
                conn.close(code(ErrorCode::Timeout), msg.as_bytes());
                break;
            }
        }
    }
}

/// Returns once no request has been in flight for `idle`.
async fn quiet_for(active: &AtomicUsize, ended: &Notify, idle: Duration) {
    loop {
        // Registered before the check, so an end in between is not missed.
        let next_end = ended.notified();
        if active.load(Ordering::SeqCst) == 0 {
            tokio::select! {
                _ = tokio::time::sleep(idle) => return,
                _ = next_end => {}
            }
        } else {
            next_end.await;
        }
    }
}

/// Counts a connection against `max` if there is room.
fn admit(n: &AtomicUsize, max: usize) -> Option<Counted<'_>> {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
        (c < max).then_some(c + 1)
    })
    .ok()
    .map(|_| Counted(n))
}

/// Reads `hello` from the first stream and checks the token (nothing else is read first),
/// then admits the connection if there is room and gives it its streams and windows.
async fn authenticate<'s>(
    conn: &quinn::Connection,
    state: &'s State,
    deadline: Instant,
) -> Result<Counted<'s>, (ErrorCode, String)> {
    let lim = &state.limits;
    let wait = deadline.saturating_duration_since(Instant::now());
    let first = timeout(wait, async {
        let (send, mut recv) = conn
            .accept_bi()
            .await
            .map_err(|e| (ErrorCode::Protocol, e.to_string()))?;
        let req = wire::read_frame::<Request>(&mut recv, MAX_REQUEST_HEADER, wait)
            .await
            .map_err(|e| match e {
                ReadFail::Proto(p) => (p.code(), p.to_string()),
                ReadFail::Stalled(_) => (ErrorCode::Timeout, "no hello in time".into()),
                other => (ErrorCode::Protocol, other.to_string()),
            });
        Ok::<_, (ErrorCode, String)>((req, send))
    })
    .await;
    let (req, mut send) = match first {
        Err(_) => return Err((ErrorCode::Timeout, "no hello in time".into())),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(x)) => x,
    };
    let mut admitted = None;
    let refusal = match req {
        Ok(Request::Hello { token, .. }) if tls::token_matches(&state.token, &token) => {
            admitted = admit(&state.connections, lim.max_connections);
            match admitted {
                Some(_) => None,
                None => Some((
                    ErrorCode::Busy,
                    format!(
                        "node busy: it serves {} connections at most",
                        lim.max_connections
                    ),
                )),
            }
        }
        Ok(Request::Hello { .. }) => Some((ErrorCode::BadToken, "wrong token".to_string())),
        Ok(_) => Some((
            ErrorCode::Protocol,
            "the first message must be hello with the token".to_string(),
        )),
        Err(e) => Some(e),
    };
    let reply = match &refusal {
        None => {
            // Before the welcome, so the client finds the credit there when it starts.
            open_up(conn, lim);
            Response::Welcome(state.health())
        }
        Some((c, m)) => Response::Error(ErrorMsg::new(*c, ErrorKind::Remote, m.clone())),
    };
    let _ = wire::write_frame(&mut send, &reply, lim.stall_timeout).await;
    let _ = send.finish();
    match (refusal, admitted) {
        (None, Some(counted)) => Ok(counted),
        (refusal, _) => {
            // Let the refusal reach the client before the connection closes.
            let _ = timeout(Duration::from_secs(1), send.stopped()).await;
            Err(refusal.unwrap_or((ErrorCode::Internal, "not admitted".into())))
        }
    }
}

/// How a stream ended without a normal answer.
enum Fail {
    /// Answer with this error.
    Reply(ErrorMsg),
    /// Nobody is listening any more (stream reset, connection gone).
    Gone,
}

impl From<ErrorMsg> for Fail {
    fn from(e: ErrorMsg) -> Self {
        Fail::Reply(e)
    }
}

fn read_fail(e: ReadFail) -> Fail {
    match e {
        ReadFail::Proto(p) => {
            Fail::Reply(ErrorMsg::new(p.code(), ErrorKind::Remote, p.to_string()))
        }
        ReadFail::Stalled(d) => Fail::Reply(ErrorMsg::new(
            ErrorCode::Timeout,
            ErrorKind::Limit,
            format!(
                "the client sent nothing for {:.1} s mid-request",
                d.as_secs_f64()
            ),
        )),
        ReadFail::Truncated { missing } => Fail::Reply(ErrorMsg::new(
            ErrorCode::Protocol,
            ErrorKind::Remote,
            format!("the request ended {missing} bytes short"),
        )),
        ReadFail::Gone(_) => Fail::Gone,
    }
}

async fn handle_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    state: Arc<State>,
    conn: Arc<ConnLoad>,
) {
    let stall = state.limits.stall_timeout;
    // Counts an image from its admission until its answer is acknowledged.
    let mut in_flight = None;
    // The image's pipeline, once its header is read (health requests have none).
    let mut pipeline = None;
    let served = serve_request(
        &mut send,
        &mut recv,
        &state,
        &conn,
        &mut in_flight,
        &mut pipeline,
    )
    .await;
    if let Some(ops) = &pipeline {
        match &served {
            Ok(()) => state.metrics.image_done(ops),
            Err(Fail::Reply(msg)) => state.metrics.image_failed(ops, msg.kind),
            Err(Fail::Gone) => state.metrics.image_failed(ops, ErrorKind::Cancelled),
        }
    }
    match served {
        Ok(()) => {}
        Err(Fail::Reply(msg)) => {
            let code = msg.code;
            let _ = wire::write_frame(&mut send, &Response::Error(msg), stall).await;
            // Whatever the client still sends for this request is not wanted.
            let _ = recv.stop(self::code(code));
        }
        Err(Fail::Gone) => {
            let _ = send.reset(code(ErrorCode::Internal));
            return;
        }
    }
    let _ = send.finish();
    // Wait until the answer is acknowledged, so a shutdown right after cannot cut it off.
    let _ = timeout(stall, send.stopped()).await;
    drop(in_flight);
}

async fn serve_request<'s>(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    state: &'s Arc<State>,
    conn: &Arc<ConnLoad>,
    in_flight: &mut Option<Admitted<'s>>,
    pipeline: &mut Option<Vec<Op>>,
) -> Result<(), Fail> {
    let lim = state.limits;
    let req: Request = wire::read_frame(recv, MAX_REQUEST_HEADER, lim.stall_timeout)
        .await
        .map_err(read_fail)?;
    let header = match req {
        Request::Health => {
            return write(send, &Response::Health(state.health()), lim.stall_timeout).await;
        }
        Request::Credits => return serve_credits(send, state, conn).await,
        Request::Hello { .. } => {
            return Err(ErrorMsg::new(
                ErrorCode::Protocol,
                ErrorKind::Remote,
                "hello was already said on this connection",
            )
            .into())
        }
        Request::Process(h) => h,
    };
    *pipeline = Some(header.ops.clone());
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(ErrorMsg::new(
            ErrorCode::ShuttingDown,
            ErrorKind::Remote,
            "node shutting down",
        )
        .into());
    }
    header.check(&Caps {
        max_image_bytes: lim.max_image_bytes,
        max_pixels: lim.max_pixels,
    })?;
    *in_flight = Some(Admitted::new(state, conn.clone()));
    let deadline = Instant::now() + lim.image_timeout;
    let timed_out = || {
        Fail::Reply(ErrorMsg::new(
            ErrorCode::Timeout,
            ErrorKind::Limit,
            format!(
                "the image took longer than the node's limit of {:.0} s",
                lim.image_timeout.as_secs_f64()
            ),
        ))
    };
    // Hold memory for the image (compressed and decoded) before reading it.
    let pixels = header.width as u64 * header.height as u64;
    let kib = ((header.image_len + working_bytes(pixels, &header.ops)) / 1024 + 1)
        .min(state.memory_kib as u64) as u32;
    let memory = tokio::select! {
        p = state.memory.clone().acquire_many_owned(kib) => p.map_err(|_| Fail::Gone)?,
        _ = sleep_until(deadline) => return Err(timed_out()),
    };
    let bytes = tokio::select! {
        b = wire::read_bytes(recv, header.image_len, lim.stall_timeout) => b.map_err(read_fail)?,
        _ = sleep_until(deadline) => return Err(timed_out()),
    };
    state.metrics.received(bytes.len() as u64);
    let req = work_request(&header, bytes, &lim)?;
    let cancel = CancelToken::new();
    let (tx, rx) = oneshot::channel();
    {
        let (pool, state, cancel) = (state.pool.clone(), state.clone(), cancel.clone());
        pool.spawn(move || {
            // The image's memory is held until its work ends, even when the handler has
            // given up on it (timeout, client gone) while it still queues or runs.
            let _memory = memory;
            let _ = tx.send(run_job(&req, cancel, &state));
        });
    }
    let stopped = send.stopped();
    let result = tokio::select! {
        r = rx => r.map_err(|_| ErrorMsg::new(ErrorCode::Internal, ErrorKind::Remote, "the worker thread died"))?,
        _ = sleep_until(deadline) => {
            cancel.cancel();
            return Err(timed_out());
        }
        _ = stopped => {
            // The client gave up on this image (cancelled or gone): stop working on it.
            cancel.cancel();
            return Err(Fail::Gone);
        }
    };
    let res = result.map_err(|e| ErrorMsg::new(ErrorCode::Input, e.kind, e.message))?;
    let (frame, bytes) = done_frame(&header, res, lim.max_response_header)?;
    wire::write_bytes(send, &frame, lim.stall_timeout)
        .await
        .map_err(|_| Fail::Gone)?;
    state.metrics.sent(frame.len() as u64);
    wire::write_bytes(send, &bytes, lim.stall_timeout)
        .await
        .map_err(|_| Fail::Gone)?;
    state.metrics.sent(bytes.len() as u64);
    Ok(())
}

/// The credit stream: a `credit` frame now and whenever the connection's window changes,
/// until the client stops the stream or the connection ends. Frames are small and only
/// the latest counts, so a change that arrives while one is being written is folded into
/// the next.
async fn serve_credits(
    send: &mut quinn::SendStream,
    state: &State,
    conn: &ConnLoad,
) -> Result<(), Fail> {
    // Not a request: an open credit stream must not keep an idle connection open.
    conn.active.fetch_sub(1, Ordering::SeqCst);
    conn.ended.notify_waiters();
    let _recount = Recount(&conn.active);
    let mut changed = state.load.subscribe();
    let stopped = send.stopped();
    tokio::pin!(stopped);
    let mut last = None;
    loop {
        // Marked seen before reading the counters, so a change in between is not missed.
        changed.mark_unchanged();
        let credit = state.credit(conn);
        if last != Some(credit) {
            write(send, &Response::Credit(credit), state.limits.stall_timeout).await?;
            last = Some(credit);
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return Ok(()) },
            // The client stopped the stream, or the connection is gone.
            _ = &mut stopped => return Err(Fail::Gone),
        }
    }
}

/// Counts the credit stream as a request again when it ends, since its task's end takes
/// one off.
struct Recount<'a>(&'a AtomicUsize);

impl Drop for Recount<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs one image on a node thread: skipped if its client already gave up, and a panic
/// fails this image with a message instead of taking the node down.
fn run_job(
    req: &WorkRequest,
    cancel: CancelToken,
    state: &State,
) -> Result<WorkResult, EngineError> {
    if cancel.is_cancelled() {
        return Err(EngineError::new(
            ErrorKind::Cancelled,
            "the image was given up before it ran",
        ));
    }
    let _running = Counted::new(&state.running);
    let ctx = OpContext {
        cancel,
        progress: None,
    };
    let run = std::panic::AssertUnwindSafe(|| {
        #[cfg(feature = "fault-injection")]
        if let Ok(f) = codec::sniff(&req.bytes) {
            if let Ok((w, h)) = codec::peek_dimensions(&req.bytes, f) {
                super::fault::before_work(w, h);
            }
        }
        process_bytes_timed(req, &ctx, &mut |op, took| state.metrics.op_time(op, took))
    });
    std::panic::catch_unwind(run).unwrap_or_else(|panic| {
        Err(EngineError::new(
            ErrorKind::BadInput,
            format!(
                "internal error on this input (please report it): {}",
                panic_message(panic.as_ref())
            ),
        ))
    })
}

/// The `done` frame and the output bytes, or an input error when the client could not
/// take them: an answer too big for the protocol fails its image, never the connection.
fn done_frame(
    header: &ProcessHeader,
    res: WorkResult,
    cap: u32,
) -> Result<(Vec<u8>, Vec<u8>), ErrorMsg> {
    let input = |kind: ErrorKind, m: String| ErrorMsg::new(ErrorCode::Input, kind, m);
    let WorkResult {
        bytes,
        format,
        features,
        timings,
    } = res;
    if bytes.len() as u64 > header.max_output_bytes() {
        return Err(input(
            ErrorKind::Limit,
            format!(
                "the output is {} bytes, more than a client takes for a {}x{} image",
                bytes.len(),
                header.width,
                header.height
            ),
        ));
    }
    let done = Response::Done(DoneHeader {
        format,
        features,
        timings,
        output_len: bytes.len() as u64,
    });
    let frame = proto::encode_capped(&done, cap).map_err(|e| match e {
        ProtoError::TooLarge { len, cap } => input(
            ErrorKind::Limit,
            format!(
                "the result's features take {len} bytes, over the protocol's cap of {cap}; \
                 ask for fewer (e.g. sift.nfeatures)"
            ),
        ),
        other => input(
            ErrorKind::BadInput,
            format!("cannot send the result: {other}"),
        ),
    })?;
    Ok((frame, bytes))
}

async fn write(send: &mut quinn::SendStream, msg: &Response, stall: Duration) -> Result<(), Fail> {
    wire::write_frame(send, msg, stall)
        .await
        .map_err(|e| match e {
            wire::WriteFail::Proto(p) => Fail::Reply(ErrorMsg::new(
                ErrorCode::Internal,
                ErrorKind::Remote,
                p.to_string(),
            )),
            _ => Fail::Gone,
        })
}

/// Checks the bytes against the header and builds the same request a local worker gets,
/// under the lower of the node's and the client's limits.
fn work_request(h: &ProcessHeader, bytes: Vec<u8>, lim: &NodeLimits) -> Result<WorkRequest, Fail> {
    let input = |e: codec::CodecError| {
        let e = crate::error::EngineError::from(e);
        Fail::Reply(ErrorMsg::new(ErrorCode::Input, e.kind, e.message))
    };
    let format = codec::sniff(&bytes).map_err(input)?;
    let (w, hgt) = codec::peek_dimensions(&bytes, format).map_err(input)?;
    if (w, hgt) != (h.width, h.height) {
        return Err(ErrorMsg::new(
            ErrorCode::BadRequest,
            ErrorKind::Remote,
            format!(
                "the header says {}x{} but the image is {w}x{hgt}",
                h.width, h.height
            ),
        )
        .into());
    }
    Ok(WorkRequest {
        bytes: bytes.into(),
        ops: h.ops.clone().into(),
        format: match h.format {
            Some(f) => OutputFormat::Fixed(f),
            None => OutputFormat::Same,
        },
        encode: EncodeOptions {
            jpeg_quality: h.jpeg_quality,
        },
        limits: Limits {
            max_pixels: lim.max_pixels.min(h.limits.max_pixels),
            max_bytes: lim.max_image_bytes.min(h.limits.max_bytes),
        },
    })
}
