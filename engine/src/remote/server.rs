//! `prism node`: serves the engine over QUIC to clients that pin its certificate and hold
//! its token.
//!
//! The async runtime only moves bytes; every image runs on the node's rayon pool through
//! [`crate::exec::process_bytes`], the same function local workers call, so remote results
//! are byte-identical to local ones. Each connection must say `hello` with the token on its
//! first stream (compared in constant time) before anything else is read. Limits, each
//! answered with an error code while the node keeps serving everyone else: connections,
//! bidirectional streams per connection (no unidirectional ones), bytes and pixels per
//! image, time per image, stalled reads and writes, and an idle timeout (clients send
//! keep-alives). SIGTERM stops new work, lets in-flight images finish until a deadline,
//! then closes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};
use tokio::sync::{oneshot, watch, Notify, Semaphore};
use tokio::time::{sleep_until, timeout, Instant};

use super::proto::{
    Caps, DoneHeader, ErrorCode, ErrorMsg, Health, ProcessHeader, Request, Response,
    MAX_REQUEST_HEADER, VERSION,
};
use super::tls::{self, Fingerprint};
use super::wire::{self, ReadFail};
use crate::codec::{self, EncodeOptions, Limits, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS};
use crate::error::ErrorKind;
use crate::exec::{process_bytes, working_bytes, WorkRequest};
use crate::job::OutputFormat;
use crate::ops::{CancelToken, OpContext};

/// What a node refuses or gives up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLimits {
    /// Connections served at once; one more is closed with `busy`.
    pub max_connections: usize,
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
    /// Time before a connection with no traffic is dropped (clients send keep-alives).
    pub idle_timeout: Duration,
    /// Time a new connection has to say `hello`.
    pub hello_timeout: Duration,
    /// Time in-flight images get to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Bytes of images (compressed and decoded) the node holds at once; more wait.
    pub memory_budget: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            max_streams: 64,
            max_image_bytes: DEFAULT_MAX_BYTES,
            max_pixels: DEFAULT_MAX_PIXELS,
            image_timeout: Duration::from_secs(600),
            stall_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            memory_budget: crate::exec::default_memory_budget(),
        }
    }
}

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The UDP address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Where the certificate, key and token live.
    pub data_dir: PathBuf,
    /// Threads for images (0 = one per core).
    pub threads: usize,
    /// Limits.
    pub limits: NodeLimits,
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
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    running: AtomicUsize,
    idle: Notify,
    shutting_down: AtomicBool,
    /// Admission by bytes, in KiB permits (a semaphore counts in usize units).
    memory: Semaphore,
    memory_kib: usize,
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
        }
    }
}

/// Counts a connection or an image while it lives.
struct Counted<'a>(&'a AtomicUsize, Option<&'a Notify>);

impl<'a> Counted<'a> {
    fn new(n: &'a AtomicUsize, notify: Option<&'a Notify>) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Counted(n, notify)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        if let Some(n) = self.1 {
            n.notify_waiters();
        }
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
    runtime: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// Loads or creates the identity and token, binds, and starts serving.
    pub fn start(cfg: NodeConfig) -> Result<RunningNode, NodeError> {
        let id = tls::load_or_create_identity(&cfg.data_dir)?;
        let (token, token_path) = tls::load_or_create_token(&cfg.data_dir)?;
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
        server.max_incoming(limits.max_connections.saturating_mul(2).max(16));
        let endpoint = {
            let _guard = runtime.enter();
            quinn::Endpoint::server(server, cfg.listen)
                .map_err(|e| NodeError::Io(format!("cannot listen on {}: {e}", cfg.listen)))?
        };
        let addr = endpoint
            .local_addr()
            .map_err(|e| NodeError::Io(e.to_string()))?;
        let memory_kib =
            (limits.memory_budget / 1024).clamp(1, Semaphore::MAX_PERMITS as u64) as usize;
        let state = Arc::new(State {
            token,
            limits,
            pool: Arc::new(pool),
            cores,
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            shutting_down: AtomicBool::new(false),
            memory: Semaphore::new(memory_kib),
            memory_kib,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = runtime.spawn(serve(endpoint, state, stop_rx));
        Ok(RunningNode {
            addr,
            fingerprint: id.fingerprint,
            token_path,
            cores,
            runtime: Some(runtime),
            stop,
            task: Some(task),
        })
    }

    /// Blocks until SIGTERM or SIGINT, then shuts down gracefully.
    pub fn run_until_signal(mut self) -> Result<(), NodeError> {
        let Some(rt) = self.runtime.as_ref() else {
            return Ok(());
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term =
                signal(SignalKind::terminate()).map_err(|e| NodeError::Io(e.to_string()))?;
            let mut int =
                signal(SignalKind::interrupt()).map_err(|e| NodeError::Io(e.to_string()))?;
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            Ok::<(), NodeError>(())
        })?;
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

fn transport(limits: &NodeLimits) -> Result<TransportConfig, NodeError> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(limits.max_streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.max_idle_timeout(Some(IdleTimeout::try_from(limits.idle_timeout).map_err(
        |_| {
            NodeError::Io(format!(
                "idle timeout {:?} is too long",
                limits.idle_timeout
            ))
        },
    )?));
    t.keep_alive_interval(Some(limits.idle_timeout / 3));
    // Room for a few images in flight per stream on fast links.
    t.stream_receive_window(VarInt::from_u32(8 << 20));
    t.send_window(64 << 20);
    Ok(t)
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
    // Graceful: refuse new connections and new images, let in-flight ones finish.
    state.shutting_down.store(true, Ordering::SeqCst);
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

async fn handle_connection(incoming: quinn::Incoming, state: Arc<State>) {
    let _conn_count = Counted::new(&state.connections, None);
    let peer = incoming.remote_address();
    let conn = match timeout(state.limits.hello_timeout, incoming).await {
        Ok(Ok(c)) => c,
        _ => return,
    };
    if state.connections.load(Ordering::SeqCst) > state.limits.max_connections {
        let msg = format!(
            "node busy: it serves {} connections at most",
            state.limits.max_connections
        );
        conn.close(code(ErrorCode::Busy), msg.as_bytes());
        return;
    }
    if let Err((c, msg)) = authenticate(&conn, &state).await {
        eprintln!("prism node: refused {peer}: {msg}");
        conn.close(code(c), msg.as_bytes());
        return;
    }
    while let Ok((send, recv)) = conn.accept_bi().await {
        let state = state.clone();
        tokio::spawn(async move { handle_stream(send, recv, state).await });
    }
}

/// Reads `hello` from the first stream and checks the token; nothing else is read first.
async fn authenticate(conn: &quinn::Connection, state: &State) -> Result<(), (ErrorCode, String)> {
    let lim = &state.limits;
    let first = timeout(lim.hello_timeout, async {
        let (send, mut recv) = conn
            .accept_bi()
            .await
            .map_err(|e| (ErrorCode::Protocol, e.to_string()))?;
        let req = wire::read_frame::<Request>(&mut recv, MAX_REQUEST_HEADER, lim.hello_timeout)
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
    let refusal = match req {
        Ok(Request::Hello { token, .. }) if tls::token_matches(&state.token, &token) => None,
        Ok(Request::Hello { .. }) => Some((ErrorCode::BadToken, "wrong token".to_string())),
        Ok(_) => Some((
            ErrorCode::Protocol,
            "the first message must be hello with the token".to_string(),
        )),
        Err(e) => Some(e),
    };
    let reply = match &refusal {
        None => Response::Welcome(state.health()),
        Some((c, m)) => Response::Error(ErrorMsg::new(*c, ErrorKind::Remote, m.clone())),
    };
    let _ = wire::write_frame(&mut send, &reply, lim.stall_timeout).await;
    let _ = send.finish();
    if let Some(r) = refusal {
        // Let the refusal reach the client before the connection closes.
        let _ = timeout(Duration::from_secs(1), send.stopped()).await;
        return Err(r);
    }
    Ok(())
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
) {
    let stall = state.limits.stall_timeout;
    // Counts an image from its admission until its answer is acknowledged.
    let mut in_flight = None;
    match serve_request(&mut send, &mut recv, &state, &mut in_flight).await {
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
    in_flight: &mut Option<Counted<'s>>,
) -> Result<(), Fail> {
    let lim = state.limits;
    let req: Request = wire::read_frame(recv, MAX_REQUEST_HEADER, lim.stall_timeout)
        .await
        .map_err(read_fail)?;
    let header = match req {
        Request::Health => {
            return write(send, &Response::Health(state.health()), lim.stall_timeout).await;
        }
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
    *in_flight = Some(Counted::new(&state.in_flight, Some(&state.idle)));
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
    let _memory = tokio::select! {
        p = state.memory.acquire_many(kib) => p.map_err(|_| Fail::Gone)?,
        _ = sleep_until(deadline) => return Err(timed_out()),
    };
    let bytes = tokio::select! {
        b = wire::read_bytes(recv, header.image_len, lim.stall_timeout) => b.map_err(read_fail)?,
        _ = sleep_until(deadline) => return Err(timed_out()),
    };
    let req = work_request(&header, bytes, &lim)?;
    let cancel = CancelToken::new();
    let (tx, rx) = oneshot::channel();
    {
        let (pool, state, cancel) = (state.pool.clone(), state.clone(), cancel.clone());
        pool.spawn(move || {
            let _running = Counted::new(&state.running, None);
            let ctx = OpContext {
                cancel,
                progress: None,
            };
            let _ = tx.send(process_bytes(&req, &ctx));
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
    let done = Response::Done(DoneHeader {
        format: res.format,
        features: res.features,
        timings: res.timings,
        output_len: res.bytes.len() as u64,
    });
    write(send, &done, lim.stall_timeout).await?;
    wire::write_bytes(send, &res.bytes, lim.stall_timeout)
        .await
        .map_err(|_| Fail::Gone)
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
