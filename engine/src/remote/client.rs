//! The client side: connect to a node with retry, pin its certificate, say `hello` with
//! its token, then send images, one bidirectional stream each.
//!
//! [`RemoteWorker`] makes a node one more [`Worker`] for the batch scheduler. It takes
//! work by the node's credits: a node that grants them (see [`super::proto`]) gets a
//! credit stream at connect, followed by a task on the runtime, and the worker admits an
//! input only while it holds fewer than the last window the node granted; a node from
//! before credits gets as many at once as the cores it reported. A lost connection becomes
//! [`WorkError::WorkerLost`] (the scheduler hands the image to another worker) and a
//! refusal of the input itself becomes [`WorkError::Input`] with the node's typed error.
//! `process` is called on a scheduler thread and drives the async client with `block_on`
//! on a runtime handle.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};
use tokio::time::{sleep, timeout};

use super::proto::{
    DoneHeader, ErrorCode, ErrorMsg, Health, ProcessHeader, Request, Response, MAX_RESPONSE_HEADER,
};
use super::tls::{self, Fingerprint, PinnedVerifier};
use super::wire::{self, ReadFail};
use crate::codec;
use crate::error::{EngineError, ErrorKind};
use crate::exec::{Admit, Window, WorkError, WorkRequest, WorkResult, Worker};
use crate::job::OutputFormat;
use crate::ops::CancelToken;

/// Which node to use and how to prove we may.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// `HOST:PORT`.
    pub addr: String,
    /// The pinned certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// The node's token.
    pub token: String,
}

/// How hard to try reaching a node, and how soon to call it lost.
#[derive(Clone, Copy, Debug)]
pub struct ConnectOptions {
    /// Attempts after the first one.
    pub retries: u32,
    /// Wait between attempts.
    pub delay: Duration,
    /// Time one attempt (handshake and hello) may take.
    pub timeout: Duration,
    /// Time without any packet from the node before it counts as lost; keep-alives go out
    /// every quarter of it.
    pub idle_timeout: Duration,
    /// Time the node may take to send the next bytes of an answer once it started.
    pub stall_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            retries: 3,
            delay: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a node could not be used.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RemoteError {
    /// The node's certificate is not the pinned one: nothing was sent.
    #[error("node {addr} presented certificate {seen}, but the pinned fingerprint is {pinned}; nothing was sent (is it the right node? was its data dir reset?)")]
    Fingerprint {
        /// The node.
        addr: String,
        /// What it presented.
        seen: Fingerprint,
        /// What was pinned.
        pinned: Fingerprint,
    },
    /// The node refused the token: nothing was processed.
    #[error("node {addr} refused the token; nothing was processed (the token must be the content of the node's token file)")]
    BadToken {
        /// The node.
        addr: String,
    },
    /// Every attempt failed.
    #[error("cannot reach node {addr} after {attempts} attempt(s), {delay_ms} ms apart: {last}")]
    Unreachable {
        /// The node.
        addr: String,
        /// Attempts made.
        attempts: u32,
        /// The wait between them.
        delay_ms: u64,
        /// The last attempt's failure.
        last: String,
    },
    /// The node answered but will not serve (other protocol version, ...).
    #[error("node {addr} refused the connection: {message}")]
    Refused {
        /// The node.
        addr: String,
        /// Its reason.
        message: String,
    },
    /// Local setup (socket, TLS) failed.
    #[error("{0}")]
    Setup(String),
}

/// A connection to one node, after the pin and the token were accepted.
pub struct RemoteClient {
    addr: String,
    /// The socket and the connection; replaced when the node closed an idle connection.
    /// The credit task holds it weakly, so it ends with the client.
    link: Arc<std::sync::Mutex<Link>>,
    /// One reconnection at a time.
    reconnecting: tokio::sync::Mutex<()>,
    spec: NodeSpec,
    health: Health,
    opts: ConnectOptions,
    /// The images the node lets this client have there now (its credits).
    window: Arc<Window>,
    /// Set by [`RemoteClient::close`]: the credit task stops.
    closed: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Link {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

/// One failed attempt: worth retrying or not.
enum Attempt {
    Retry(String),
    Final(RemoteError),
}

impl RemoteClient {
    /// Connects, retrying `opts.retries` times `opts.delay` apart; a wrong fingerprint or
    /// token fails at once, since retrying cannot fix it.
    pub async fn connect(spec: &NodeSpec, opts: &ConnectOptions) -> Result<Self, RemoteError> {
        let (crypto, verifier) =
            tls::client_crypto(spec.fingerprint).map_err(|e| RemoteError::Setup(e.to_string()))?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
        cfg.transport_config(Arc::new(client_transport(opts)?));
        let mut last = String::new();
        let attempts = opts.retries.saturating_add(1);
        for attempt in 0..attempts {
            if attempt > 0 {
                sleep(opts.delay).await;
            }
            match Self::attempt(spec, opts, &cfg, &verifier).await {
                Ok((link, health)) => return Ok(Self::start(spec, opts, link, health)),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(why)) => last = why,
            }
        }
        Err(RemoteError::Unreachable {
            addr: spec.addr.clone(),
            attempts,
            delay_ms: opts.delay.as_millis() as u64,
            last,
        })
    }

    /// The client over a fresh connection, and its credit task if the node grants credits.
    fn start(spec: &NodeSpec, opts: &ConnectOptions, link: Link, health: Health) -> Self {
        let slots = node_slots(&health);
        // Until the first grant (a round trip away) a node with credits gets nothing, so a
        // node busy with other clients' work is not sent images it would only queue.
        let window = Window::new(if health.credits { 0 } else { slots });
        let client = RemoteClient {
            addr: spec.addr.clone(),
            link: Arc::new(std::sync::Mutex::new(link)),
            reconnecting: tokio::sync::Mutex::new(()),
            spec: spec.clone(),
            health,
            opts: *opts,
            window,
            closed: Arc::new(AtomicBool::new(false)),
        };
        if client.health.credits {
            tokio::spawn(follow_credits(
                Arc::downgrade(&client.link),
                client.window.clone(),
                client.closed.clone(),
                slots,
            ));
        }
        client
    }

    async fn attempt(
        spec: &NodeSpec,
        opts: &ConnectOptions,
        cfg: &quinn::ClientConfig,
        verifier: &PinnedVerifier,
    ) -> Result<(Link, Health), Attempt> {
        let sock = resolve(&spec.addr).await.map_err(Attempt::Retry)?;
        let bind: SocketAddr = if sock.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| {
            Attempt::Final(RemoteError::Setup(format!("cannot open a UDP socket: {e}")))
        })?;
        endpoint.set_default_client_config(cfg.clone());
        let res = timeout(opts.timeout, async {
            let connecting = endpoint
                .connect(sock, tls::SERVER_NAME)
                .map_err(|e| Attempt::Final(RemoteError::Setup(e.to_string())))?;
            let conn = connecting.await.map_err(|e| match verifier.mismatch() {
                Some(seen) => Attempt::Final(RemoteError::Fingerprint {
                    addr: spec.addr.clone(),
                    seen,
                    pinned: spec.fingerprint,
                }),
                None => classify_close(&spec.addr, &e),
            })?;
            let health = hello(&conn, spec, opts).await?;
            Ok((conn, health))
        })
        .await;
        match res {
            Ok(Ok((conn, health))) => Ok((Link { endpoint, conn }, health)),
            Ok(Err(e)) => {
                endpoint.close(VarInt::from_u32(0), b"");
                Err(e)
            }
            Err(_) => {
                endpoint.close(VarInt::from_u32(0), b"");
                Err(Attempt::Retry(format!(
                    "no answer within {} ms",
                    opts.timeout.as_millis()
                )))
            }
        }
    }

    /// The node's address as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The health the node reported when the connection was accepted.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The QUIC connection (for tests that speak the protocol by hand).
    pub fn connection(&self) -> quinn::Connection {
        self.link().conn
    }

    /// The images the node lets this client have there now (its credits, or its cores
    /// for a node without credits), and how many it has.
    pub fn window(&self) -> &Arc<Window> {
        &self.window
    }

    fn link(&self) -> Link {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The connection to send on. A node closes a connection that had no request for its
    /// idle timeout (so idle clients do not hold its slots); the next request connects
    /// again, once, instead of calling the node lost.
    async fn open_bi(&self) -> Result<(quinn::SendStream, quinn::RecvStream), WorkError> {
        let conn = self.link().conn;
        if !closed_for_idling(&conn) {
            return conn.open_bi().await.map_err(|e| self.lost(e));
        }
        let _one = self.reconnecting.lock().await;
        let current = self.link();
        let conn = if closed_for_idling(&current.conn) {
            let lost = |e: RemoteError| WorkError::WorkerLost(format!("node {}: {e}", self.addr));
            let (crypto, verifier) = tls::client_crypto(self.spec.fingerprint)
                .map_err(|e| lost(RemoteError::Setup(e.to_string())))?;
            let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
            cfg.transport_config(Arc::new(client_transport(&self.opts).map_err(lost)?));
            let (link, _) = Self::attempt(&self.spec, &self.opts, &cfg, &verifier)
                .await
                .map_err(|e| match e {
                    Attempt::Final(e) => lost(e),
                    Attempt::Retry(last) => lost(RemoteError::Unreachable {
                        addr: self.addr.clone(),
                        attempts: 1,
                        delay_ms: 0,
                        last,
                    }),
                })?;
            current.endpoint.close(VarInt::from_u32(0), b"");
            // The credit task sees the new connection and asks it for credits.
            *self.link.lock().unwrap_or_else(|e| e.into_inner()) = link.clone();
            link.conn
        } else {
            current.conn
        };
        conn.open_bi().await.map_err(|e| self.lost(e))
    }

    /// Asks the node for its current health.
    pub async fn fetch_health(&self) -> Result<Health, WorkError> {
        let (mut send, mut recv) = self.open_bi().await?;
        wire::write_frame(&mut send, &Request::Health, self.opts.stall_timeout)
            .await
            .map_err(|e| self.lost(e))?;
        let _ = send.finish();
        match wire::read_frame(&mut recv, MAX_RESPONSE_HEADER, self.opts.stall_timeout)
            .await
            .map_err(|e| self.read_fail(e))?
        {
            Response::Health(h) => Ok(h),
            Response::Error(e) => Err(self.refusal(e)),
            other => Err(self.lost(format!("unexpected answer {other:?}"))),
        }
    }

    /// Sends one image and waits for its result; `cancel` abandons it (the node stops too).
    pub async fn process(
        &self,
        req: &WorkRequest,
        cancel: &CancelToken,
    ) -> Result<WorkResult, WorkError> {
        tokio::select! {
            r = self.process_inner(req) => r,
            _ = cancelled(cancel) => Err(WorkError::Input(EngineError::new(
                ErrorKind::Cancelled,
                "batch cancelled",
            ))),
        }
    }

    async fn process_inner(&self, req: &WorkRequest) -> Result<WorkResult, WorkError> {
        let input = |e: codec::CodecError| WorkError::Input(e.into());
        let format = codec::sniff(&req.bytes).map_err(input)?;
        let (width, height) = codec::peek_dimensions(&req.bytes, format).map_err(input)?;
        let header = ProcessHeader {
            ops: req.ops.to_vec(),
            format: match req.format {
                OutputFormat::Same => None,
                OutputFormat::Fixed(f) => Some(f),
            },
            jpeg_quality: req.encode.jpeg_quality,
            limits: req.limits,
            width,
            height,
            image_len: req.bytes.len() as u64,
        };
        let stall = self.opts.stall_timeout;
        let (mut send, mut recv) = self.open_bi().await?;
        let sent = async {
            wire::write_frame(&mut send, &Request::Process(header.clone()), stall).await?;
            wire::write_bytes(&mut send, &req.bytes, stall).await?;
            let _ = send.finish();
            Ok::<(), wire::WriteFail>(())
        };
        if let Err(e) = sent.await {
            // The node may have refused the request early (limits) and stopped reading:
            // its answer says why.
            if let Ok(Ok(Response::Error(msg))) = timeout(
                Duration::from_secs(2),
                wire::read_frame::<Response>(&mut recv, MAX_RESPONSE_HEADER, stall),
            )
            .await
            .map(|r| r.map_err(|_| ()))
            {
                return Err(self.refusal(msg));
            }
            return Err(self.lost(e));
        }
        // Processing may take long; a dead node shows as the connection's idle timeout.
        let resp: Response =
            wire::read_frame(&mut recv, MAX_RESPONSE_HEADER, Duration::from_secs(86_400))
                .await
                .map_err(|e| self.read_fail(e))?;
        let done: DoneHeader = match resp {
            Response::Done(d) => d,
            Response::Error(msg) => return Err(self.refusal(msg)),
            other => return Err(self.lost(format!("unexpected answer {other:?}"))),
        };
        if done.output_len > header.max_output_bytes() {
            return Err(self.lost(format!(
                "it announced {} output bytes for a {width}x{height} image",
                done.output_len
            )));
        }
        let bytes = wire::read_bytes(&mut recv, done.output_len, stall)
            .await
            .map_err(|e| self.read_fail(e))?;
        Ok(WorkResult {
            bytes,
            format: done.format,
            features: done.features,
            timings: done.timings,
        })
    }

    fn lost(&self, why: impl std::fmt::Display) -> WorkError {
        let why = match self.link().conn.close_reason() {
            Some(reason) => reason.to_string(),
            None => why.to_string(),
        };
        WorkError::WorkerLost(format!("node {}: {why}", self.addr))
    }

    fn read_fail(&self, e: ReadFail) -> WorkError {
        match e {
            ReadFail::Gone(quinn::ReadError::Reset(c))
                if ErrorCode::from_u32(c.into_inner() as u32) == Some(ErrorCode::ShuttingDown) =>
            {
                self.lost("node shutting down")
            }
            other => self.lost(other),
        }
    }

    /// Maps a node's error answer: shutting down or busy moves the image elsewhere;
    /// anything else is final for the image, since a node that answers is not lost (an
    /// internal error on one image would only take the next node down with it).
    fn refusal(&self, msg: ErrorMsg) -> WorkError {
        match msg.code {
            ErrorCode::ShuttingDown | ErrorCode::Busy => self.lost(&msg.message),
            // The engine's own verdict reads the same as a local run's.
            ErrorCode::Input => WorkError::Input(EngineError::new(msg.kind, msg.message)),
            _ => WorkError::Input(EngineError::new(
                msg.kind,
                format!("node {}: {}", self.addr, msg.message),
            )),
        }
    }

    /// Closes the connection and waits briefly until the node has been told, so it frees
    /// the connection at once instead of after its idle timeout.
    pub async fn goodbye(&self) {
        self.close();
        let endpoint = self.link().endpoint;
        let _ = timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.window.close();
        let link = self.link();
        link.conn.close(VarInt::from_u32(0), b"done");
        link.endpoint.close(VarInt::from_u32(0), b"done");
    }
}

impl Drop for RemoteClient {
    fn drop(&mut self) {
        // The credit task's stream would otherwise keep the connection open.
        self.close();
    }
}

/// Cap on a credit frame's payload (`{"type":"credit","window":N}` and room to grow).
const MAX_CREDIT_FRAME: u32 = 4 << 10;

/// Follows the node's grants into `window` for as long as the client lives: asks for a
/// credit stream on the current connection and applies every `credit` frame. When the
/// node closes the connection for idling (the client had nothing to send for its idle
/// timeout), the next image connects again: until then the window is the node's cores, as
/// for a node without credits, so slots waiting for a grant are not stuck. When the
/// connection is lost the window closes: the node takes nothing more.
async fn follow_credits(
    link: Weak<std::sync::Mutex<Link>>,
    window: Arc<Window>,
    closed: Arc<AtomicBool>,
    slots: usize,
) {
    let current = || {
        let link = link.upgrade()?;
        let conn = link.lock().unwrap_or_else(|e| e.into_inner()).conn.clone();
        Some(conn)
    };
    loop {
        if closed.load(Ordering::SeqCst) {
            return;
        }
        let Some(conn) = current() else { return };
        match credit_stream(&conn, &window).await {
            Ok(()) => {}
            Err(()) => {
                // The node refused the stream: take work by its cores, as before credits.
                window.set_limit(slots);
                return;
            }
        }
        if closed.load(Ordering::SeqCst) {
            return;
        }
        match conn.close_reason() {
            // The stream ended on a live connection: ask again, without hurrying.
            None => sleep(Duration::from_secs(1)).await,
            Some(_) if closed_for_idling(&conn) => {
                window.set_limit(slots);
                // Wait for the next image to connect again, then ask that connection.
                loop {
                    sleep(Duration::from_millis(250)).await;
                    if closed.load(Ordering::SeqCst) {
                        return;
                    }
                    match current() {
                        None => return,
                        Some(c) if c.stable_id() != conn.stable_id() => break,
                        Some(_) => {}
                    }
                }
            }
            Some(_) => {
                window.close();
                return;
            }
        }
    }
}

/// One credit stream: `Ok` when it ended (the connection may be gone), `Err` when the node
/// refused it.
async fn credit_stream(conn: &quinn::Connection, window: &Window) -> Result<(), ()> {
    let Ok((mut send, mut recv)) = conn.open_bi().await else {
        return Ok(());
    };
    let stall = Duration::from_secs(30);
    if wire::write_frame(&mut send, &Request::Credits, stall)
        .await
        .is_err()
    {
        return Ok(());
    }
    let _ = send.finish();
    loop {
        // Grants come only when something changes: no stall timeout here; a dead node
        // shows as the connection's idle timeout.
        match wire::read_frame::<Response>(&mut recv, MAX_CREDIT_FRAME, Duration::from_secs(86_400))
            .await
        {
            Ok(Response::Credit(c)) => {
                window.set_limit((c.window as usize).min(MAX_NODE_SLOTS));
            }
            Ok(Response::Error(_)) => return Err(()),
            // Anything else on this stream is a node out of step: stop listening to it.
            Ok(_) => return Err(()),
            Err(_) => return Ok(()),
        }
    }
}

/// The scheduler threads a node gets: the cores it reports, within bounds.
fn node_slots(health: &Health) -> usize {
    // A thread per slot, so a lying or misconfigured node must not make us spawn thousands.
    (health.cores as usize).clamp(1, MAX_NODE_SLOTS)
}

/// Whether the node closed `conn` because it had no request for the node's idle timeout.
fn closed_for_idling(conn: &quinn::Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(c))
            if ErrorCode::from_u32(c.error_code.into_inner() as u32) == Some(ErrorCode::Timeout)
                && c.reason.starts_with(b"idle")
    )
}

fn client_transport(opts: &ConnectOptions) -> Result<TransportConfig, RemoteError> {
    let mut t = TransportConfig::default();
    // The node never opens streams towards the client.
    t.max_concurrent_bidi_streams(VarInt::from_u32(0));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    let idle = IdleTimeout::try_from(opts.idle_timeout).map_err(|_| {
        RemoteError::Setup(format!("idle timeout {:?} is too long", opts.idle_timeout))
    })?;
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(opts.idle_timeout / 4));
    t.stream_receive_window(VarInt::from_u32(8 << 20));
    t.send_window(64 << 20);
    Ok(t)
}

async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let mut found = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?;
    found
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}

/// Says `hello` with the token and returns the node's health from its welcome.
async fn hello(
    conn: &quinn::Connection,
    spec: &NodeSpec,
    opts: &ConnectOptions,
) -> Result<Health, Attempt> {
    let addr = &spec.addr;
    let lost = |e: &dyn std::fmt::Display| match conn.close_reason() {
        Some(reason) => classify_close(addr, &reason),
        None => Attempt::Retry(e.to_string()),
    };
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
    let msg = Request::Hello {
        token: spec.token.clone(),
        client_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    wire::write_frame(&mut send, &msg, opts.timeout)
        .await
        .map_err(|e| lost(&e))?;
    let _ = send.finish();
    let resp: Response = wire::read_frame(&mut recv, MAX_RESPONSE_HEADER, opts.timeout)
        .await
        .map_err(|e| lost(&e))?;
    match resp {
        Response::Welcome(h) => Ok(h),
        Response::Error(e) if e.code == ErrorCode::BadToken => {
            Err(Attempt::Final(RemoteError::BadToken { addr: addr.clone() }))
        }
        Response::Error(e) if matches!(e.code, ErrorCode::Busy | ErrorCode::ShuttingDown) => {
            Err(Attempt::Retry(e.message))
        }
        Response::Error(e) => Err(Attempt::Final(RemoteError::Refused {
            addr: addr.clone(),
            message: e.message,
        })),
        other => Err(Attempt::Final(RemoteError::Refused {
            addr: addr.clone(),
            message: format!("unexpected answer to hello: {other:?}"),
        })),
    }
}

/// A connection closed by the node: a wrong token is final, busy or shutting down may
/// pass on a later attempt.
fn classify_close(addr: &str, e: &quinn::ConnectionError) -> Attempt {
    if let quinn::ConnectionError::ApplicationClosed(c) = e {
        let reason = String::from_utf8_lossy(&c.reason).into_owned();
        return match ErrorCode::from_u32(c.error_code.into_inner() as u32) {
            Some(ErrorCode::BadToken) => Attempt::Final(RemoteError::BadToken {
                addr: addr.to_string(),
            }),
            Some(ErrorCode::Busy | ErrorCode::ShuttingDown | ErrorCode::Timeout) => {
                Attempt::Retry(reason)
            }
            _ => Attempt::Final(RemoteError::Refused {
                addr: addr.to_string(),
                message: reason,
            }),
        };
    }
    Attempt::Retry(e.to_string())
}

async fn cancelled(cancel: &CancelToken) {
    while !cancel.is_cancelled() {
        sleep(Duration::from_millis(50)).await;
    }
}

/// A node as a worker of the batch scheduler.
pub struct RemoteWorker {
    client: RemoteClient,
    runtime: tokio::runtime::Handle,
    lost: AtomicBool,
}

impl RemoteWorker {
    /// Connects to `spec` on `runtime` (with retry). Call from outside the runtime.
    pub fn connect(
        runtime: &tokio::runtime::Handle,
        spec: &NodeSpec,
        opts: &ConnectOptions,
    ) -> Result<Self, RemoteError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(RemoteError::Setup(
                "RemoteWorker::connect blocks: call it outside the async runtime".into(),
            ));
        }
        let client = runtime.block_on(RemoteClient::connect(spec, opts))?;
        Ok(Self::new(runtime.clone(), client))
    }

    /// Wraps a connected client.
    pub fn new(runtime: tokio::runtime::Handle, client: RemoteClient) -> Self {
        Self {
            client,
            runtime,
            lost: AtomicBool::new(false),
        }
    }

    /// The connection underneath.
    pub fn client(&self) -> &RemoteClient {
        &self.client
    }

    /// Takes no new input from now on; the ones it holds finish (a fleet member that left
    /// DNS drains this way).
    pub fn drain(&self) {
        self.client.window.close();
    }

    /// Whether it takes nothing more: drained, lost, or its connection gone.
    pub fn is_closed(&self) -> bool {
        self.lost.load(Ordering::Relaxed) || self.client.window.is_closed()
    }

    /// Whether its connection was lost (as opposed to drained or closed by us).
    pub fn is_lost(&self) -> bool {
        if self.lost.load(Ordering::Relaxed) {
            return true;
        }
        if self.client.closed.load(Ordering::SeqCst) {
            return false;
        }
        // A connection the node closed for idling is not lost: the next image reconnects.
        let conn = self.client.connection();
        conn.close_reason().is_some() && !closed_for_idling(&conn)
    }

    /// Inputs it holds now.
    pub fn in_flight(&self) -> usize {
        self.client.window.in_flight()
    }
}

/// The most inputs one node gets at once, whatever it reports.
const MAX_NODE_SLOTS: usize = 256;

impl Worker for RemoteWorker {
    fn name(&self) -> String {
        self.client.addr.clone()
    }

    fn slots(&self) -> usize {
        node_slots(&self.client.health)
    }

    fn admit(&self, wait: Duration) -> Admit {
        if self.lost.load(Ordering::Relaxed) {
            return Admit::Closed;
        }
        self.client.window.admit(wait)
    }

    fn process(&self, req: &WorkRequest, cancel: &CancelToken) -> Result<WorkResult, WorkError> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(WorkError::WorkerLost(format!(
                "node {} was lost",
                self.client.addr
            )));
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            // block_on inside the runtime would panic; the scheduler never does this.
            return Err(WorkError::WorkerLost(
                "RemoteWorker::process was called on an async runtime thread".into(),
            ));
        }
        let res = self.runtime.block_on(self.client.process(req, cancel));
        if let Err(WorkError::WorkerLost(_)) = &res {
            self.lost.store(true, Ordering::Relaxed);
            self.client.window.close();
        }
        res
    }
}
