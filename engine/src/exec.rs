//! Running a batch: one scheduler feeds every worker (this machine's cores, remote
//! nodes), admits images by their decoded size so memory stays bounded however long the
//! batch is, writes outputs atomically, and reports one event per step.
//!
//! Every input ends exactly once, as `done` or `failed` with a reason. Work a worker loses
//! (a node dies mid-image) goes back to the queue and finishes elsewhere.
//!
//! Each worker gets a scheduler thread per slot. A slot first waits for room on its worker
//! ([`Worker::admit`]: a node's credits, see [`Window`]), then takes the next input, so an
//! input never waits on a worker that cannot start it. Workers may join while the batch
//! runs ([`run_batch_joining`]: members of a fleet found by DNS) and leave it (their window
//! closes: what they hold finishes, they take nothing new).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::codec::{self, EncodeOptions, Format, Limits};
use crate::error::{EngineError, ErrorKind};
use crate::job::{claimed_format, output_rel, Batch, OutputFormat};
use crate::ops::{run_pipeline_timed, CancelToken, Features, Op, OpContext};
use crate::output::{self, OnExists, Placed};

/// Milliseconds spent per stage of one input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Bytes to pixels.
    pub decode: f64,
    /// The whole pipeline.
    pub op: f64,
    /// Pixels to bytes.
    pub encode: f64,
}

/// What a worker is asked to do with one input.
#[derive(Clone, Debug)]
pub struct WorkRequest {
    /// The input file's bytes.
    pub bytes: Arc<[u8]>,
    /// The pipeline, validated.
    pub ops: Arc<[Op]>,
    /// The output format policy.
    pub format: OutputFormat,
    /// Encoder settings.
    pub encode: EncodeOptions,
    /// Decoder limits.
    pub limits: Limits,
}

/// What a worker gives back: the encoded output and what the ops found.
#[derive(Clone, Debug)]
pub struct WorkResult {
    /// The encoded output.
    pub bytes: Vec<u8>,
    /// Its format.
    pub format: Format,
    /// Keypoints (and descriptors) when the last feature op produced any.
    pub features: Option<Features>,
    /// Per-stage times.
    pub timings: Timings,
}

/// Why a worker did not produce a result.
#[derive(Clone, Debug)]
pub enum WorkError {
    /// The input itself is at fault: final for this input.
    Input(EngineError),
    /// The worker is gone (connection lost, node died): the input goes to another worker.
    WorkerLost(String),
}

/// Something that turns input bytes into output bytes: this machine or a remote node.
pub trait Worker: Send + Sync {
    /// Shown in `done` events (`local`, or a node's address).
    fn name(&self) -> String;
    /// The most inputs it ever takes at once (a scheduler thread each).
    fn slots(&self) -> usize;
    /// Whether it takes one more input now, waiting up to `wait` for room. Called before
    /// each input; the default has room in every slot. A node answers by the credits it
    /// grants ([`Window`]); a wrapper must pass this on to the worker it wraps.
    fn admit(&self, wait: Duration) -> Admit {
        let _ = wait;
        Admit::Granted(Permit::free())
    }
    /// Processes one input. Blocks; runs on a scheduler thread, never on an async runtime.
    fn process(&self, req: &WorkRequest, cancel: &CancelToken) -> Result<WorkResult, WorkError>;
}

/// A worker's answer to [`Worker::admit`].
#[derive(Debug)]
pub enum Admit {
    /// Room for one more input: hold the permit while it runs.
    Granted(Permit),
    /// No room within the wait; ask again.
    Wait,
    /// It takes nothing more in this batch (it left, or was lost): its slots stop.
    Closed,
}

/// One input's place on a worker; dropping it gives the place back.
#[derive(Debug)]
pub struct Permit(Option<Arc<Window>>);

impl Permit {
    /// A place that counts against nothing, for workers without a window.
    pub fn free() -> Self {
        Permit(None)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            let mut st = w.lock();
            st.used = st.used.saturating_sub(1);
            drop(st);
            w.changed.notify_all();
        }
    }
}

/// How many inputs a worker may have in flight right now, as the one who grants it says
/// (a node's credits): [`Window::admit`] hands out places while fewer than the limit are
/// held. The limit may rise and fall at any time; closing it stops new admissions for good
/// while the places held run to their end.
#[derive(Debug)]
pub struct Window {
    state: Mutex<WindowState>,
    changed: Condvar,
}

#[derive(Debug)]
struct WindowState {
    limit: usize,
    used: usize,
    closed: bool,
}

impl Window {
    /// A window of `limit` places.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Window {
            state: Mutex::new(WindowState {
                limit,
                used: 0,
                closed: false,
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the limit; places already held stay held even when it falls below them.
    pub fn set_limit(&self, limit: usize) {
        self.lock().limit = limit;
        self.changed.notify_all();
    }

    /// Stops admissions for good.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Whether [`Window::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Places held now.
    pub fn in_flight(&self) -> usize {
        self.lock().used
    }

    /// A place, waiting up to `wait` for one to free up or the limit to rise.
    pub fn admit(self: &Arc<Self>, wait: Duration) -> Admit {
        let deadline = Instant::now() + wait;
        let mut st = self.lock();
        loop {
            if st.closed {
                return Admit::Closed;
            }
            if st.used < st.limit {
                st.used += 1;
                return Admit::Granted(Permit(Some(self.clone())));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Admit::Wait;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Decodes, runs the pipeline and encodes: what every worker does in the end, so
/// results are byte-identical wherever they run.
pub fn process_bytes(req: &WorkRequest, ctx: &OpContext) -> Result<WorkResult, EngineError> {
    process_bytes_timed(req, ctx, &mut |_, _| {})
}

/// [`process_bytes`], telling `on_op` each op's id and time as it finishes.
pub fn process_bytes_timed(
    req: &WorkRequest,
    ctx: &OpContext,
    on_op: &mut dyn FnMut(&'static str, std::time::Duration),
) -> Result<WorkResult, EngineError> {
    let t0 = Instant::now();
    let decoded = codec::decode(&req.bytes, &req.limits)?;
    let t1 = Instant::now();
    let alpha = decoded.frame.alpha;
    let out = run_pipeline_timed(&req.ops, decoded.frame.pixels, ctx, on_op)?;
    let t2 = Instant::now();
    // Alpha belongs to colour outputs only; a grey result (edges, equalised) drops it.
    let frame = crate::frame::Frame {
        alpha: if out.pixels.channels() == 3 {
            alpha
        } else {
            None
        },
        pixels: out.pixels,
    };
    let format = req.format.resolve(decoded.format);
    let bytes = codec::encode(&frame, format, &decoded.meta, &req.encode)?;
    let t3 = Instant::now();
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
    Ok(WorkResult {
        bytes,
        format,
        features: out.features,
        timings: Timings {
            decode: ms(t0, t1),
            op: ms(t1, t2),
            encode: ms(t2, t3),
        },
    })
}

/// This machine's cores: a rayon pool of its own, shared by every image it runs.
pub struct LocalWorker {
    pool: rayon::ThreadPool,
    slots: usize,
}

impl LocalWorker {
    /// A worker with `threads` rayon threads (0 = one per core).
    pub fn new(threads: usize) -> Result<Self, EngineError> {
        Self::with_start(threads, |_| {})
    }

    /// [`LocalWorker::new`], running `start` on each of its threads (with its index) as
    /// the thread starts: where a desktop app lowers their scheduling priority, so a
    /// batch on every core leaves its window and previews the first turn.
    pub fn with_start(
        threads: usize,
        start: impl Fn(usize) + Send + Sync + 'static,
    ) -> Result<Self, EngineError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("prism-cpu-{i}"))
            .start_handler(start)
            .build()
            .map_err(|e| EngineError::new(ErrorKind::Io, format!("cannot start threads: {e}")))?;
        let slots = pool.current_num_threads();
        Ok(Self { pool, slots })
    }
}

impl Worker for LocalWorker {
    fn name(&self) -> String {
        "local".into()
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn process(&self, req: &WorkRequest, cancel: &CancelToken) -> Result<WorkResult, WorkError> {
        let ctx = OpContext {
            cancel: cancel.clone(),
            progress: None,
        };
        // A panic in a decoder or an op is a bug, but it must cost this input only: the
        // rest of the batch goes on and the input fails with the panic's message.
        let run = std::panic::AssertUnwindSafe(|| self.pool.install(|| process_bytes(req, &ctx)));
        match std::panic::catch_unwind(run) {
            Ok(res) => res.map_err(WorkError::Input),
            Err(panic) => Err(WorkError::Input(EngineError::new(
                ErrorKind::BadInput,
                format!(
                    "internal error on this input (please report it): {}",
                    panic_message(panic.as_ref())
                ),
            ))),
        }
    }
}

/// The text a panic was raised with, if it has one.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// One line of the batch's story, as `--json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// The batch begins.
    Started {
        /// How many inputs.
        inputs: usize,
    },
    /// An input was handed to a worker (again, when its first worker was lost).
    Running {
        /// The input's position in the batch (0-based, the order of `started`).
        index: usize,
        /// The input path.
        input: String,
        /// Who runs it.
        worker: String,
    },
    /// After each input ends.
    Progress {
        /// Inputs ended so far.
        done: usize,
        /// All inputs.
        total: usize,
    },
    /// One input was written.
    Done {
        /// The input's position in the batch.
        index: usize,
        /// The input path.
        input: String,
        /// The output path.
        output: String,
        /// The output's format.
        format: Format,
        /// Who processed it.
        worker: String,
        /// How many keypoints the feature op found (corner-detection, sift).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        keypoints: Option<usize>,
        /// The keypoints and descriptors themselves, for library users; `--json` leaves
        /// them out (they go to `.features.json` with `--features`).
        #[serde(skip)]
        features: Option<Arc<Features>>,
        /// Per-stage times in milliseconds.
        timings_ms: Timings,
    },
    /// One input was not processed because its output is already there (`skip`).
    Skipped {
        /// The input's position in the batch.
        index: usize,
        /// The input path.
        input: String,
        /// The file already there.
        output: String,
    },
    /// One input failed; the rest go on.
    Failed {
        /// The input's position in the batch.
        index: usize,
        /// The input path.
        input: String,
        /// The fault.
        kind: ErrorKind,
        /// What happened.
        message: String,
    },
    /// The batch ended.
    Summary {
        /// Inputs written.
        done: usize,
        /// Inputs failed (cancelled ones included).
        failed: usize,
        /// Inputs failed because the batch was cancelled.
        #[serde(default)]
        cancelled: usize,
        /// Inputs skipped because their output was already there.
        #[serde(default)]
        skipped: usize,
        /// Inputs that moved to another worker after theirs was lost.
        moved: usize,
        /// Which inputs moved.
        moved_inputs: Vec<String>,
        /// Wall time of the whole batch.
        wall_ms: f64,
    },
}

/// How a batch is run and written.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The output folder.
    pub out_dir: PathBuf,
    /// Output format policy.
    pub format: OutputFormat,
    /// Write `<name>.features.json` beside outputs of feature ops.
    pub features: bool,
    /// Decoder limits.
    pub limits: Limits,
    /// Encoder settings.
    pub encode: EncodeOptions,
    /// Bytes of decoded images (with working buffers) allowed in flight at once.
    pub memory_budget: u64,
    /// What happens when an output file is already there.
    pub on_exists: OnExists,
    /// Times an input may move to another worker after losing one; lost once more, it
    /// fails, so an image that kills workers cannot take them all down in turn.
    pub max_moves: u32,
}

/// The default [`RunConfig::max_moves`].
pub const DEFAULT_MAX_MOVES: u32 = 2;

impl RunConfig {
    /// Defaults for writing into `out_dir`.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        Self {
            out_dir: out_dir.into(),
            format: OutputFormat::Same,
            features: false,
            limits: Limits::default(),
            encode: EncodeOptions::default(),
            memory_budget: default_memory_budget(),
            on_exists: OnExists::default(),
            max_moves: DEFAULT_MAX_MOVES,
        }
    }
}

/// A quarter of the memory this process may use, at least 512 MiB: room for the OS, the
/// UI and decoders. The limit is the cgroup's (a container's, or a systemd unit's
/// `MemoryMax=`) when there is one, since the kernel kills at that limit whatever the
/// machine has; else physical memory.
pub fn default_memory_budget() -> u64 {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let total = memory_limit(&read).unwrap_or(8 << 30);
    (total / 4).max(512 << 20)
}

/// The lowest of the cgroup memory limits on the way from this process's cgroup to the
/// root (v2 `memory.max`, else v1 `memory.limit_in_bytes`) and `MemTotal`; `read` returns
/// a file's content.
fn memory_limit(read: &dyn Fn(&str) -> Option<String>) -> Option<u64> {
    let meminfo = read("/proc/meminfo").and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let cgroup = read("/proc/self/cgroup").and_then(|cg| {
        // v2: "0::/path"; v1: "N:memory:/path" (or "N:cpu,memory:/path").
        let v2 = cg.lines().find_map(|l| l.strip_prefix("0::"));
        let v1 = cg.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            ctrl.split(',').any(|c| c == "memory").then_some(path)
        });
        let (root, file, path) = match (v2, v1) {
            (Some(p), _) => ("/sys/fs/cgroup", "memory.max", p),
            (None, Some(p)) => ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", p),
            (None, None) => return None,
        };
        // A limit may sit on any ancestor (a slice); inside a cgroup namespace the path is
        // "/" and the files are at the root.
        let mut dir = std::path::PathBuf::from(path.trim());
        let mut lowest: Option<u64> = None;
        loop {
            let rel = dir
                .strip_prefix("/")
                .unwrap_or(&dir)
                .to_string_lossy()
                .into_owned();
            let p = if rel.is_empty() {
                format!("{root}/{file}")
            } else {
                format!("{root}/{rel}/{file}")
            };
            // "max" (v2) or a huge value (v1) means no limit there.
            if let Some(n) = read(&p).and_then(|v| v.trim().parse::<u64>().ok()) {
                if n < 1 << 60 {
                    lowest = Some(lowest.map_or(n, |l| l.min(n)));
                }
            }
            if !dir.pop() {
                break;
            }
        }
        lowest
    });
    match (cgroup, meminfo) {
        (Some(c), Some(m)) => Some(c.min(m)),
        (c, m) => c.or(m),
    }
}

/// Bytes an image of `pixels` may hold while it runs through `ops`: the heaviest op's
/// peak plus the decoded source and the encoded output.
pub fn working_bytes(pixels: u64, ops: &[Op]) -> u64 {
    let peak = ops.iter().map(Op::peak_bytes_per_pixel).max().unwrap_or(0);
    pixels.saturating_mul(peak + 8)
}

/// Blocks admissions while the bytes in flight would pass the budget; one image is always
/// admitted alone, however big, so nothing waits forever.
struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
    cap: u64,
}

impl Budget {
    fn acquire(&self, n: u64, cancel: &CancelToken) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0 && *used + n > self.cap {
            if cancel.is_cancelled() {
                return false;
            }
            used = self
                .freed
                .wait_timeout(used, std::time::Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *used += n;
        true
    }

    fn release(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(n);
        self.freed.notify_all();
    }
}

struct Queue {
    pending: VecDeque<usize>,
    in_flight: usize,
}

struct Shared<'a> {
    batch: &'a Batch,
    cfg: &'a RunConfig,
    cancel: &'a CancelToken,
    queue: Mutex<Queue>,
    changed: Condvar,
    budget: Budget,
    moved: Mutex<Vec<usize>>,
    /// Per input: the workers lost while it ran, and why the last one was.
    losses: Mutex<Vec<(u32, String)>>,
}

enum Outcome {
    Done {
        output: PathBuf,
        format: Format,
        features: Option<Features>,
        worker: String,
        timings: Timings,
    },
    Skipped(PathBuf),
    Failed(EngineError),
}

/// Runs a batch over the workers, calling `sink` with every event on this thread.
/// Returns the summary event's counts: (done, failed).
///
/// ```
/// use std::sync::Arc;
/// use prism_engine::exec::{run_batch, Event, LocalWorker, RunConfig, Worker};
/// use prism_engine::job::{collect_inputs, Batch};
/// use prism_engine::ops::CancelToken;
/// use prism_engine::Op;
///
/// let dir = tempfile::tempdir()?;
/// let input = dir.path().join("photo.png");
/// image::RgbImage::from_pixel(8, 8, image::Rgb([200, 100, 50])).save(&input)?;
/// let out = dir.path().join("out");
/// let batch = Batch {
///     inputs: collect_inputs(&[input], &out)?,
///     pipeline: Arc::from(vec![Op::default_for("color-manipulation")?]),
/// };
/// let workers: Vec<Arc<dyn Worker>> = vec![Arc::new(LocalWorker::new(1)?)];
/// let mut events = Vec::new();
/// let (done, failed) = run_batch(&batch, &workers, &RunConfig::new(&out),
///                                &CancelToken::new(), &mut |e| events.push(e.clone()));
/// assert_eq!((done, failed), (1, 0));
/// assert!(matches!(events.last(), Some(Event::Summary { done: 1, .. })));
/// assert!(out.join("photo.png").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_batch(
    batch: &Batch,
    workers: &[Arc<dyn Worker>],
    cfg: &RunConfig,
    cancel: &CancelToken,
    sink: &mut dyn FnMut(&Event),
) -> (usize, usize) {
    run_batch_joining(batch, workers, None, cfg, cancel, sink)
}

/// Workers that join a batch while it runs: members of a fleet that DNS found after the
/// batch started.
#[derive(Debug)]
pub struct Joins {
    /// The new workers; once every sender is gone, no more are waited for.
    pub rx: mpsc::Receiver<Arc<dyn Worker>>,
    /// How long a batch with inputs left and no worker waits for one to join before the
    /// rest fail (a fleet whose members all went at once may come back).
    pub wait: Duration,
}

/// [`run_batch`], with workers that may join while it runs; a worker leaves by closing its
/// window ([`Admit::Closed`]), after which what it holds finishes and it takes nothing new.
pub fn run_batch_joining(
    batch: &Batch,
    workers: &[Arc<dyn Worker>],
    joins: Option<Joins>,
    cfg: &RunConfig,
    cancel: &CancelToken,
    sink: &mut dyn FnMut(&Event),
) -> (usize, usize) {
    let start = Instant::now();
    let total = batch.inputs.len();
    sink(&Event::Started { inputs: total });
    let shared = Shared {
        batch,
        cfg,
        cancel,
        queue: Mutex::new(Queue {
            pending: (0..total).collect(),
            in_flight: 0,
        }),
        changed: Condvar::new(),
        budget: Budget {
            used: Mutex::new(0),
            freed: Condvar::new(),
            cap: cfg.memory_budget.max(1),
        },
        moved: Mutex::new(Vec::new()),
        losses: Mutex::new(vec![(0, String::new()); total]),
    };
    let mut ended = vec![false; total];
    let (mut n_done, mut n_failed, mut n_cancelled, mut n_skipped) = (0, 0, 0, 0);
    let (tx, rx) = mpsc::channel::<Msg>();
    // Slot threads running; when none is left, nothing more can end unless one joins.
    let live = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let spawn = |worker: &Arc<dyn Worker>, tx: &mpsc::Sender<Msg>| {
            let dead = Arc::new(AtomicBool::new(false));
            for _ in 0..worker.slots().max(1) {
                let (shared, tx, worker, dead, live) =
                    (&shared, tx.clone(), worker.clone(), dead.clone(), &live);
                live.fetch_add(1, Ordering::SeqCst);
                scope.spawn(move || {
                    let _live = Live(live);
                    slot_loop(shared, worker.as_ref(), &dead, tx)
                });
            }
        };
        for worker in workers {
            spawn(worker, &tx);
        }
        let mut emit = |i: usize, outcome: Outcome, sink: &mut dyn FnMut(&Event)| {
            if std::mem::replace(&mut ended[i], true) {
                return n_done + n_failed + n_skipped;
            }
            let input = batch.inputs[i].source.display().to_string();
            match outcome {
                Outcome::Done {
                    output,
                    format,
                    features,
                    worker,
                    timings,
                } => {
                    n_done += 1;
                    sink(&Event::Done {
                        index: i,
                        input,
                        output: output.display().to_string(),
                        format,
                        worker,
                        keypoints: features.as_ref().map(|f| f.keypoints.len()),
                        features: features.map(Arc::new),
                        timings_ms: timings,
                    });
                }
                Outcome::Skipped(output) => {
                    n_skipped += 1;
                    sink(&Event::Skipped {
                        index: i,
                        input,
                        output: output.display().to_string(),
                    });
                }
                Outcome::Failed(e) => {
                    n_failed += 1;
                    n_cancelled += usize::from(e.kind == ErrorKind::Cancelled);
                    sink(&Event::Failed {
                        index: i,
                        input,
                        kind: e.kind,
                        message: e.message,
                    });
                }
            }
            sink(&Event::Progress {
                done: n_done + n_failed + n_skipped,
                total,
            });
            n_done + n_failed + n_skipped
        };
        let mut handle = |msg: Msg, sink: &mut dyn FnMut(&Event)| match msg {
            // An input runs again only after its worker was lost, never after it ended.
            Msg::Running(i, worker) => {
                sink(&Event::Running {
                    index: i,
                    input: batch.inputs[i].source.display().to_string(),
                    worker,
                });
                None
            }
            Msg::Ended(i, outcome) => Some(emit(i, outcome, sink)),
        };
        let mut joins = joins;
        let mut alone_since: Option<Instant> = None;
        let mut n_ended = 0;
        while n_ended < total {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(msg) => {
                    if let Some(n) = handle(msg, sink) {
                        n_ended = n;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Not while this thread holds `tx`.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if let Some(j) = &joins {
                loop {
                    match j.rx.try_recv() {
                        Ok(worker) => spawn(&worker, &tx),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            joins = None;
                            break;
                        }
                    }
                }
            }
            if live.load(Ordering::SeqCst) > 0 {
                alone_since = None;
                continue;
            }
            // Every slot has exited: cancelled, or no worker left. Wait for one to join
            // only while one may.
            match (&joins, cancel.is_cancelled()) {
                (Some(j), false) => {
                    if alone_since.get_or_insert_with(Instant::now).elapsed() >= j.wait {
                        break;
                    }
                }
                _ => break,
            }
        }
        // What the last slots said before they exited; they exit by themselves once the
        // queue is empty with nothing in flight, or it is cancelled.
        drop(tx);
        for msg in rx.iter() {
            handle(msg, sink);
        }
        // Whatever did not end was cancelled or had no worker left.
        let reason = if cancel.is_cancelled() {
            EngineError::new(
                ErrorKind::Cancelled,
                "batch cancelled before this input ran",
            )
        } else {
            EngineError::new(ErrorKind::Remote, "no worker left to process this input")
        };
        // `emit` ignores inputs that already ended.
        for i in 0..total {
            emit(i, Outcome::Failed(reason.clone()), sink);
        }
    });
    let moved: Vec<String> = {
        let mut m = shared
            .moved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        m.sort_unstable();
        m.dedup();
        m.iter()
            .map(|&i| batch.inputs[i].source.display().to_string())
            .collect()
    };
    sink(&Event::Summary {
        done: n_done,
        failed: n_failed,
        cancelled: n_cancelled,
        skipped: n_skipped,
        moved: moved.len(),
        moved_inputs: moved,
        wall_ms: start.elapsed().as_secs_f64() * 1e3,
    });
    (n_done, n_failed)
}

/// Counts a slot thread while it runs.
struct Live<'a>(&'a AtomicUsize);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What slot threads tell the thread that owns the sink.
enum Msg {
    /// Input `i` was handed to this worker.
    Running(usize, String),
    /// Input `i` ended.
    Ended(usize, Outcome),
}

/// How long a slot waits for room on its worker before it looks at the queue again.
const ADMIT_WAIT: Duration = Duration::from_millis(200);

fn slot_loop(shared: &Shared, worker: &dyn Worker, dead: &AtomicBool, tx: mpsc::Sender<Msg>) {
    let finished = || {
        let q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.pending.is_empty() && q.in_flight == 0
    };
    loop {
        // Room on the worker first, then an input, so no input waits on a worker that
        // cannot start it (a node busy with other clients' work grants no credit).
        let _permit = loop {
            if dead.load(Ordering::Relaxed) || shared.cancel.is_cancelled() || finished() {
                return;
            }
            match worker.admit(ADMIT_WAIT) {
                Admit::Granted(p) => break p,
                Admit::Wait => {}
                Admit::Closed => return,
            }
        };
        let i = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if dead.load(Ordering::Relaxed) || shared.cancel.is_cancelled() {
                    return;
                }
                if let Some(i) = q.pending.pop_front() {
                    q.in_flight += 1;
                    break i;
                }
                if q.in_flight == 0 {
                    return;
                }
                // Work in flight elsewhere may come back if its worker dies.
                q = shared
                    .changed
                    .wait_timeout(q, std::time::Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        };
        let result = run_one(shared, worker, i, &tx);
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.in_flight -= 1;
        match result {
            Some(outcome) => {
                drop(q);
                let _ = tx.send(Msg::Ended(i, outcome));
            }
            None => {
                // The worker is lost: stop it, and hand the input to another one unless it
                // has already moved as often as allowed.
                dead.store(true, Ordering::Relaxed);
                let (lost, why) =
                    shared.losses.lock().unwrap_or_else(|e| e.into_inner())[i].clone();
                if lost > shared.cfg.max_moves {
                    drop(q);
                    let e = EngineError::new(
                        ErrorKind::Remote,
                        format!(
                            "{lost} workers were lost while processing this input (the last: \
                             {why}); not moving it again, since the image itself may be what \
                             brings them down"
                        ),
                    );
                    let _ = tx.send(Msg::Ended(i, Outcome::Failed(e)));
                } else {
                    q.pending.push_front(i);
                    drop(q);
                    shared
                        .moved
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(i);
                }
            }
        }
        shared.changed.notify_all();
    }
}

/// Processes input `i` on `worker`; `None` when the worker was lost and `i` must move.
fn run_one(
    shared: &Shared,
    worker: &dyn Worker,
    i: usize,
    tx: &mpsc::Sender<Msg>,
) -> Option<Outcome> {
    let input = &shared.batch.inputs[i];
    let cfg = shared.cfg;
    let fail = |e: EngineError| Some(Outcome::Failed(e));
    if shared.cancel.is_cancelled() {
        return fail(EngineError::new(ErrorKind::Cancelled, "batch cancelled"));
    }
    if cfg.on_exists == OnExists::Skip {
        // Decided before the work, so a resumed batch costs nothing for what is done.
        let written = shared
            .batch
            .written_paths(i, &cfg.out_dir, cfg.format, cfg.features);
        if let Some(there) = written.into_iter().find(|p| p.symlink_metadata().is_ok()) {
            return Some(Outcome::Skipped(there));
        }
    }
    let bytes = match codec::read_file(&input.source, &cfg.limits) {
        Ok(b) => b,
        Err(e) => return fail(e.into()),
    };
    let format = match codec::sniff(&bytes) {
        Ok(f) => f,
        Err(e) => return fail(e.into()),
    };
    if let Some(claimed) = claimed_format(&input.source) {
        if claimed != format {
            return fail(EngineError::new(
                ErrorKind::BadInput,
                format!(
                    "the name says {} but the content is {}; rename it to .{} to process it",
                    claimed,
                    format,
                    format.extension()
                ),
            ));
        }
    }
    let pixels = match codec::peek_dimensions(&bytes, format) {
        Ok((w, h)) => w as u64 * h as u64,
        Err(e) => return fail(e.into()),
    };
    if pixels > cfg.limits.max_pixels {
        return fail(EngineError::new(
            ErrorKind::Limit,
            format!(
                "image has {pixels} pixels, over the limit of {}",
                cfg.limits.max_pixels
            ),
        ));
    }
    let ops = shared.batch.pipeline_for(i);
    let cost = working_bytes(pixels, &ops) + bytes.len() as u64;
    if !shared.budget.acquire(cost, shared.cancel) {
        return fail(EngineError::new(ErrorKind::Cancelled, "batch cancelled"));
    }
    let req = WorkRequest {
        bytes: bytes.into(),
        ops,
        format: cfg.format,
        encode: cfg.encode,
        limits: cfg.limits,
    };
    let _ = tx.send(Msg::Running(i, worker.name()));
    let result = worker.process(&req, shared.cancel);
    drop(req);
    let outcome = match result {
        Ok(res) => match write_outputs(shared, i, &res) {
            Ok(Placed::Written(paths)) => Outcome::Done {
                output: paths.into_iter().next().unwrap_or_default(),
                format: res.format,
                features: res.features,
                worker: worker.name(),
                timings: res.timings,
            },
            Ok(Placed::Skipped(there)) => Outcome::Skipped(there),
            Err(e) => Outcome::Failed(e),
        },
        Err(WorkError::Input(e)) => Outcome::Failed(e),
        Err(WorkError::WorkerLost(why)) => {
            let mut losses = shared.losses.lock().unwrap_or_else(|e| e.into_inner());
            losses[i].0 += 1;
            losses[i].1 = why;
            drop(losses);
            shared.budget.release(cost);
            return None;
        }
    };
    shared.budget.release(cost);
    Some(outcome)
}

/// Writes the output (and its features) under the batch's policy for taken names.
fn write_outputs(shared: &Shared, i: usize, res: &WorkResult) -> Result<Placed, EngineError> {
    let input = &shared.batch.inputs[i];
    let cfg = shared.cfg;
    let out = cfg.out_dir.join(output_rel(&input.rel, cfg.format));
    let io = |what: &str, p: &Path, e: std::io::Error| {
        EngineError::new(ErrorKind::Io, format!("cannot {what} {}: {e}", p.display()))
    };
    let parent = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
    // The batch was checked up front (`Batch::check_outputs`); this catches a link or a
    // file moved into place since then.
    if cfg.on_exists == OnExists::Overwrite && same_file(&out, &input.source) {
        return Err(EngineError::new(
            ErrorKind::Usage,
            format!(
                "output {} is the input itself; choose another output folder",
                out.display()
            ),
        ));
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = output::split_name(&name);
    let json;
    let mut files: Vec<(&str, &[u8])> = vec![(&ext, &res.bytes)];
    if cfg.features {
        if let Some(f) = &res.features {
            json = serde_json::to_vec(f).map_err(|e| {
                EngineError::new(ErrorKind::Io, format!("cannot encode features: {e}"))
            })?;
            files.push((FEATURES_SUFFIX, &json));
        }
    }
    output::write_group(parent, &stem, &files, cfg.on_exists).map_err(|e| io("write", &out, e))
}

pub use crate::job::{features_path, FEATURES_SUFFIX};

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_worker_runs_its_start_hook_on_every_thread() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let w = LocalWorker::with_start(3, move |i| s.lock().unwrap().push(i)).unwrap();
        assert_eq!(w.slots(), 3);
        // Threads start on their own after the pool is built.
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2]);
    }

    fn files(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |p: &str| map.get(p).cloned()
    }

    const MEMINFO: &str = "MemTotal:       16384000 kB\nMemFree:  100 kB\n";

    #[test]
    fn the_memory_limit_is_the_cgroups_when_lower_than_the_machines() {
        // A systemd unit with MemoryMax=2G, inside a slice without a limit.
        let read = files(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/system.slice/prism-node.service\n"),
            (
                "/sys/fs/cgroup/system.slice/prism-node.service/memory.max",
                "2147483648\n",
            ),
            ("/sys/fs/cgroup/system.slice/memory.max", "max\n"),
        ]);
        assert_eq!(memory_limit(&read), Some(2 << 30));
        // ProcSubset=pid hides meminfo: the cgroup alone decides.
        let read = files(&[
            ("/proc/self/cgroup", "0::/system.slice/prism-node.service\n"),
            (
                "/sys/fs/cgroup/system.slice/prism-node.service/memory.max",
                "2147483648\n",
            ),
        ]);
        assert_eq!(memory_limit(&read), Some(2 << 30));
        // A limit on the parent slice counts too.
        let read = files(&[
            ("/proc/self/cgroup", "0::/a.slice/b.service\n"),
            ("/sys/fs/cgroup/a.slice/b.service/memory.max", "max\n"),
            ("/sys/fs/cgroup/a.slice/memory.max", "1073741824\n"),
        ]);
        assert_eq!(memory_limit(&read), Some(1 << 30));
        // A container (cgroup namespace): the root's file.
        let read = files(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/\n"),
            ("/sys/fs/cgroup/memory.max", "536870912\n"),
        ]);
        assert_eq!(memory_limit(&read), Some(512 << 20));
        // cgroup v1.
        let read = files(&[
            ("/proc/meminfo", MEMINFO),
            (
                "/proc/self/cgroup",
                "4:cpu,cpuacct:/x\n7:memory:/docker/abc\n",
            ),
            (
                "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
                "3221225472\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
        ]);
        assert_eq!(memory_limit(&read), Some(3 << 30));
    }

    #[test]
    fn without_a_cgroup_limit_the_machines_memory_counts() {
        let read = files(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/user.slice\n"),
            ("/sys/fs/cgroup/user.slice/memory.max", "max\n"),
        ]);
        assert_eq!(memory_limit(&read), Some(16_384_000 * 1024));
        assert_eq!(memory_limit(&files(&[])), None);
    }
}
