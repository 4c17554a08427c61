//! The `prism` command line: arguments are parsed, validated into a batch and a
//! [`RunConfig`], then run; output goes through one event sink (JSON lines or a
//! progress bar).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::codec::{EncodeOptions, Limits, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS};
use crate::error::{EngineError, ErrorKind};
use crate::exec::{run_batch_joining, Event, Joins, LocalWorker, RunConfig, Worker};
use crate::job::{collect_inputs, Batch, OutputFormat};
use crate::ops::{CancelToken, Op};
use crate::output::OnExists;
use crate::preset::Preset;
use crate::remote::client::{ConnectOptions, NodeSpec, RemoteClient, RemoteError, RemoteWorker};
use crate::remote::fleet::{
    parse_target, Fleet, FleetEvent, FleetEvents, FleetOptions, FleetSpec, Target,
};
use crate::remote::server::{
    default_data_dir, IdentitySource, NodeConfig, NodeError, NodeLimits, RunningNode,
};
use crate::remote::tls::{create_identity, read_token_file, Fingerprint, TlsError, TOKEN_FILE};

/// Exit code when every input succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit code when some inputs failed (the rest were written).
pub const EXIT_FAILED: i32 = 1;
/// Exit code for bad usage.
pub const EXIT_USAGE: i32 = 2;

/// Prism: batch image processing faithful to OpenCV, on your cores or remote nodes.
#[derive(Parser, Debug)]
#[command(name = "prism", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Process images (files or folders) into an output folder.
    Process(ProcessArgs),
    /// List every op with its params, types, ranges and defaults.
    Ops {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a remote engine node: serve this machine's cores to `prism process --remote`.
    ///
    /// On first start it creates a self-signed certificate and a random token in the data
    /// dir (owner-only files) and prints the fingerprint and the token file's path: give
    /// both to clients. A fleet shares one identity instead: make it once with `prism node
    /// identity new --out DIR` and start every node with `--identity-dir DIR`. SIGTERM or
    /// Ctrl-C stops it after images in flight finish.
    Node(NodeArgs),
}

/// What `prism node` does besides serving.
#[derive(Subcommand, Debug)]
enum NodeAction {
    /// A fleet's identity: one certificate, key and token shared by every node.
    #[command(subcommand)]
    Identity(IdentityAction),
}

#[derive(Subcommand, Debug)]
enum IdentityAction {
    /// Make a new identity (certificate, key and token, owner-only) in a directory. Never
    /// overwrites: existing files are an error.
    New {
        /// The directory to write `node-cert.pem`, `node-key.pem` and `token` into
        /// (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// What `prism process` does when a node cannot be reached after its retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum NodeDown {
    /// Stop before anything runs (exit code 1).
    Fail,
    /// Go on with the nodes that answered (and --local); stop if none did.
    Skip,
    /// Go on with the nodes that answered; use this machine's cores if none did.
    Local,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct NodeArgs {
    #[command(subcommand)]
    action: Option<NodeAction>,
    /// UDP address to listen on, e.g. 0.0.0.0:7443 (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", required = true)]
    listen: Option<String>,
    /// Where the certificate, key and token live, made on first start
    /// [default: ~/.local/share/prism/node].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A fleet's shared identity made by `prism node identity new`: the certificate, key
    /// and token are read from DIR and nothing is written there (it may be read-only).
    #[arg(long, value_name = "DIR", conflicts_with = "data_dir")]
    identity_dir: Option<PathBuf>,
    /// TCP address for HTTP /healthz, /readyz (503 while draining after SIGTERM) and
    /// /metrics (Prometheus text), e.g. 0.0.0.0:9090. Off unless given.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Threads for images (default: one per core); clients send this many at once.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Connections served at once; more are closed with "busy".
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
    /// Images in flight per connection (QUIC bidirectional streams).
    #[arg(long, default_value_t = 64)]
    max_streams: u32,
    /// Refuse images larger than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BYTES)]
    max_image_bytes: u64,
    /// Refuse images with more pixels than this.
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Give up on an image after this many ms (receiving and processing).
    #[arg(long, default_value_t = 600_000)]
    image_timeout_ms: u64,
    /// Give up on a client that sends or takes nothing for this many ms mid-image.
    #[arg(long, default_value_t = 30_000)]
    stall_timeout_ms: u64,
    /// Close a connection after this many ms without a request (or without any packet).
    #[arg(long, default_value_t = 60_000)]
    idle_timeout_ms: u64,
    /// After SIGTERM, wait this many ms at most for images in flight.
    #[arg(long, default_value_t = 30_000)]
    shutdown_grace_ms: u64,
    /// Credit per source address for connections that fail before hello (8 a failure,
    /// one back every 250 ms); a source that cannot afford a failure is ignored. 0 = off.
    #[arg(long, default_value_t = 64)]
    source_credit: u32,
    /// Bytes of images (compressed, decoded and working buffers) held at once; more wait
    /// [default: a quarter of the cgroup's memory.max, else of physical memory].
    #[arg(long, value_name = "BYTES")]
    memory_budget: Option<u64>,
}

#[derive(Args, Debug)]
struct ProcessArgs {
    /// An op to run, in order (repeat for a pipeline). `prism ops` lists them.
    #[arg(long = "op", value_name = "ID", required_unless_present = "preset")]
    ops: Vec<String>,
    /// A parameter of an op: `ID.KEY=VALUE`, e.g. `edge-detection.low=50`.
    #[arg(long = "param", value_name = "ID.KEY=VALUE")]
    params: Vec<String>,
    /// A preset file (the JSON the app exports): its chain of ops with their params, and
    /// its output format unless --format is given. Not with --op or --param.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ops", "params"])]
    preset: Option<PathBuf>,
    /// The output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Output format: same, png, jpeg, webp, tiff or bmp [default: same, or the
    /// preset's].
    #[arg(long)]
    format: Option<String>,
    /// When an output file is already there: rename (write `photo (2).jpg` beside it),
    /// skip (leave it and skip that input, e.g. to resume a batch), or overwrite.
    /// An input of the batch is never overwritten, whatever this says.
    #[arg(long, default_value_t = OnExists::Rename, value_name = "POLICY",
          value_parser = clap::builder::PossibleValuesParser::new(OnExists::NAMES)
              .map(|s| s.parse::<OnExists>().unwrap_or_default()))]
    on_exists: OnExists,
    /// Threads for the work (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Write `<name>.features.json` beside outputs of corner-detection and sift.
    #[arg(long)]
    features: bool,
    /// Print one JSON event per line instead of a progress bar.
    #[arg(long)]
    json: bool,
    /// Refuse images with more pixels than this.
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Refuse input files larger than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BYTES)]
    max_bytes: u64,
    /// JPEG output quality (1-100).
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    jpeg_quality: u8,
    /// A remote node, IP:PORT, or a fleet, NAME:PORT: every address the DNS name lists,
    /// looked up again during the batch (--resolve-every-ms), all sharing one fingerprint
    /// and token (repeat for more). Work goes to the nodes only, unless --local adds this
    /// machine too.
    #[arg(long = "remote", value_name = "HOST:PORT")]
    remotes: Vec<String>,
    /// The certificate fingerprint `prism node` printed: one per --remote, in order.
    #[arg(long = "fingerprint", value_name = "SHA256")]
    fingerprints: Vec<String>,
    /// The node's token file: one for every node, or one per --remote, in order.
    #[arg(long = "token-file", value_name = "FILE")]
    token_files: Vec<PathBuf>,
    /// With --remote, also use this machine's cores (--threads) as one more worker.
    #[arg(long)]
    local: bool,
    /// Attempts after the first to reach each node.
    #[arg(long, default_value_t = 3)]
    connect_retries: u32,
    /// Wait between attempts to reach a node, in ms.
    #[arg(long, default_value_t = 1000)]
    connect_delay_ms: u64,
    /// Time one attempt to reach a node may take, in ms.
    #[arg(long, default_value_t = 5000)]
    connect_timeout_ms: u64,
    /// A node counts as lost (its images move elsewhere) after this many ms without a
    /// packet from it.
    #[arg(long, default_value_t = 10_000)]
    node_idle_timeout_ms: u64,
    /// When a node (or every member of a fleet) cannot be reached after its retries: fail
    /// (stop before anything runs), skip (go on with the nodes that answered and --local),
    /// local (like skip, and use this machine's cores when no node answered).
    #[arg(long, value_enum, default_value = "fail", value_name = "POLICY")]
    on_node_down: NodeDown,
    /// Look fleet names up again every this many ms during the batch: addresses that
    /// appear join and take work, members whose address disappears finish their images
    /// and leave. 0 looks them up once, at the start.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    resolve_every_ms: u64,
    /// The DNS server (IP:PORT) to look fleet names up with, instead of the system's
    /// (/etc/resolv.conf).
    #[arg(long, value_name = "IP:PORT")]
    dns_server: Option<SocketAddr>,
    /// Files or folders (folders are walked recursively and mirrored under --out).
    #[arg(value_name = "INPUT", required = true)]
    inputs: Vec<PathBuf>,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    let result = match cli.command {
        Command::Ops { json } => return print_ops(json),
        Command::Process(args) => process(args),
        Command::Node(args) => node(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("prism: {}", e.message);
            if e.kind == ErrorKind::Usage {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            }
        }
    }
}

fn print_ops(json: bool) -> i32 {
    let cat = Op::catalogue();
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&cat).unwrap_or_default()
        );
        return EXIT_OK;
    }
    for op in cat {
        let _ = writeln!(out, "{:<24} {} (output: {})", op.id, op.summary, op.output);
        for p in op.params {
            let _ = writeln!(
                out,
                "    {}.{:<14} {:<8} default {:<8} {}",
                op.id,
                p["key"].as_str().unwrap_or(""),
                p["type"].as_str().unwrap_or(""),
                p["default"].to_string(),
                p["help"].as_str().unwrap_or("")
            );
        }
    }
    EXIT_OK
}

/// Builds the pipeline from `--op` and `--param`, each op validated.
pub fn build_pipeline(ops: &[String], params: &[String]) -> Result<Vec<Op>, EngineError> {
    let usage = |m: String| EngineError::new(ErrorKind::Usage, m);
    let mut parsed: Vec<(&str, &str, &str)> = Vec::new();
    for p in params {
        let (lhs, value) = p
            .split_once('=')
            .ok_or_else(|| usage(format!("--param {p}: expected ID.KEY=VALUE")))?;
        let (id, key) = lhs
            .split_once('.')
            .ok_or_else(|| usage(format!("--param {p}: expected ID.KEY=VALUE")))?;
        if !ops.iter().any(|o| o == id) {
            return Err(usage(format!(
                "--param {p}: op {id} is not in the pipeline (--op {id})"
            )));
        }
        parsed.push((id, key, value));
    }
    ops.iter()
        .map(|id| {
            let pairs = parsed.iter().filter(|p| p.0 == id).map(|p| (p.1, p.2));
            Op::from_pairs(id, pairs).map_err(EngineError::from)
        })
        .collect()
}

fn process(args: ProcessArgs) -> Result<i32, EngineError> {
    let usage = |m: String| EngineError::new(ErrorKind::Usage, m);
    let format = match &args.format {
        Some(name) => Some(OutputFormat::from_name(name).ok_or_else(|| {
            usage(format!(
                "--format {name}: expected same, png, jpeg, webp, tiff or bmp"
            ))
        })?),
        None => None,
    };
    let (pipeline, format) = match &args.preset {
        Some(path) => {
            // Every problem with the file, unreadable included, is a usage error: the
            // command line named something that cannot run.
            let preset = Preset::from_file(path)
                .map_err(|e| usage(format!("--preset {}: {e}", path.display())))?;
            let format = format.unwrap_or(preset.format());
            (preset.steps().to_vec(), format)
        }
        None => (
            build_pipeline(&args.ops, &args.params)?,
            format.unwrap_or(OutputFormat::Same),
        ),
    };
    // The library's errors name no flags; the CLI says which one to change.
    let inputs = collect_inputs(&args.inputs, &args.out).map_err(|mut e| {
        if e.message.starts_with("the output folder") {
            e.message.push_str(" (--out)");
        }
        e
    })?;
    let batch = Batch {
        inputs,
        pipeline: Arc::from(pipeline),
    };
    batch.validate()?;
    batch.check_outputs(&args.out, format, args.features)?;
    std::fs::create_dir_all(&args.out).map_err(|e| {
        EngineError::new(
            ErrorKind::Io,
            format!("cannot create {}: {e}", args.out.display()),
        )
    })?;
    let mut cfg = RunConfig::new(&args.out);
    cfg.format = format;
    cfg.features = args.features;
    cfg.on_exists = args.on_exists;
    cfg.limits = Limits {
        max_pixels: args.max_pixels,
        max_bytes: args.max_bytes,
    };
    cfg.encode = EncodeOptions {
        jpeg_quality: args.jpeg_quality,
    };
    // Fleet news goes above the progress bar while there is one.
    let notices = Notices::default();
    // Keeps the runtime that drives remote workers alive for the whole batch.
    let Workers {
        workers,
        remotes,
        mut fleets,
        joins,
        runtime,
    } = build_workers(&args, &notices)?;
    let cancel = CancelToken::new();
    {
        let cancel = cancel.clone();
        // Without it, Ctrl-C would kill the batch mid-write instead of ending it cleanly.
        ctrlc::set_handler(move || cancel.cancel())
            .map_err(|e| EngineError::new(ErrorKind::Io, format!("cannot handle Ctrl-C: {e}")))?;
    }
    let (_done, failed) = if args.json {
        let mut out = std::io::stdout().lock();
        run_batch_joining(&batch, &workers, joins, &cfg, &cancel, &mut |e| {
            if let Ok(line) = serde_json::to_string(e) {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        })
    } else {
        run_with_progress_bar(&batch, &workers, joins, &cfg, &cancel, &notices)
    };
    if let Some(rt) = &runtime {
        // Tell each node we are done, so it frees the connection now rather than after
        // its idle timeout.
        rt.block_on(async {
            for r in &remotes {
                r.client().goodbye().await;
            }
            for f in &mut fleets {
                f.stop().await;
            }
        });
    }
    Ok(if failed == 0 { EXIT_OK } else { EXIT_FAILED })
}

/// A `--remote`: one node, or a fleet named by DNS.
enum Remote {
    Node(NodeSpec),
    Fleet(FleetSpec),
}

/// Remote nodes and fleets in the order given, each pinned by its fingerprint with its
/// token.
fn remote_specs(args: &ProcessArgs) -> Result<Vec<Remote>, EngineError> {
    let usage = |m: String| EngineError::new(ErrorKind::Usage, m);
    let n = args.remotes.len();
    if n == 0 {
        if !args.fingerprints.is_empty() || !args.token_files.is_empty() {
            return Err(usage("--fingerprint and --token-file need --remote".into()));
        }
        return Ok(Vec::new());
    }
    if args.fingerprints.len() != n {
        return Err(usage(format!(
            "{n} --remote but {} --fingerprint: give one fingerprint per node, in the same order",
            args.fingerprints.len()
        )));
    }
    if args.token_files.len() != 1 && args.token_files.len() != n {
        return Err(usage(format!(
            "{} --token-file for {n} --remote: give one for all nodes or one per node",
            args.token_files.len()
        )));
    }
    let mut specs = Vec::with_capacity(n);
    for (i, addr) in args.remotes.iter().enumerate() {
        let target = parse_target(addr).map_err(|e| usage(format!("--remote {e}")))?;
        let fingerprint: Fingerprint = args.fingerprints[i]
            .parse()
            .map_err(|e| usage(format!("--fingerprint: {e}")))?;
        let tf = &args.token_files[if args.token_files.len() == 1 { 0 } else { i }];
        let token = read_token_file(tf).map_err(|e| usage(format!("--token-file {e}")))?;
        specs.push(match target {
            Target::Node(_) => Remote::Node(NodeSpec {
                addr: addr.clone(),
                fingerprint,
                token,
            }),
            Target::Fleet { host, port } => Remote::Fleet(FleetSpec {
                host,
                port,
                fingerprint,
                token,
            }),
        });
    }
    Ok(specs)
}

/// The workers of a batch, the nodes and fleets among them, fleet members that join
/// later, and the runtime that drives them.
struct Workers {
    workers: Vec<Arc<dyn Worker>>,
    remotes: Vec<Arc<RemoteWorker>>,
    fleets: Vec<Fleet>,
    joins: Option<Joins>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// How long a batch whose fleets have no member left waits for one to join (at least
/// this, and at least two lookups) before the rest of its inputs fail.
const FLEET_WAIT: Duration = Duration::from_secs(30);

/// Where messages during a batch go: above the progress bar while there is one, else to
/// stderr.
#[derive(Clone, Default)]
struct Notices(Arc<Mutex<Option<indicatif::ProgressBar>>>);

impl Notices {
    fn say(&self, msg: &str) {
        match &*self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(bar) => bar.suspend(|| eprintln!("prism: {msg}")),
            None => eprintln!("prism: {msg}"),
        }
    }

    fn show_above(&self, bar: Option<indicatif::ProgressBar>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = bar;
    }
}

/// This machine alone, or the nodes and fleets that answered (plus this machine with
/// --local or as the `--on-node-down local` fallback).
fn build_workers(args: &ProcessArgs, notices: &Notices) -> Result<Workers, EngineError> {
    let specs = remote_specs(args)?;
    if specs.is_empty() {
        let local: Arc<dyn Worker> = Arc::new(LocalWorker::new(args.threads)?);
        return Ok(Workers {
            workers: vec![local],
            remotes: Vec::new(),
            fleets: Vec::new(),
            joins: None,
            runtime: None,
        });
    }
    let io = |m: String| EngineError::new(ErrorKind::Io, m);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("prism-net")
        .enable_all()
        .build()
        .map_err(|e| io(format!("cannot start the network runtime: {e}")))?;
    let opts = ConnectOptions {
        retries: args.connect_retries,
        delay: Duration::from_millis(args.connect_delay_ms),
        timeout: Duration::from_millis(args.connect_timeout_ms.max(1)),
        idle_timeout: Duration::from_millis(args.node_idle_timeout_ms.max(100)),
        ..ConnectOptions::default()
    };
    let resolve_every =
        (args.resolve_every_ms > 0).then(|| Duration::from_millis(args.resolve_every_ms));
    let fleet_opts = FleetOptions {
        connect: opts,
        resolve_every,
        dns_server: args.dns_server,
    };
    let on_event: FleetEvents = {
        let notices = notices.clone();
        Arc::new(move |e: &FleetEvent| {
            // The terminal hears what changed (joined, unreachable, ...), not each try.
            if !matches!(e, FleetEvent::Connecting { .. }) {
                notices.say(&e.to_string())
            }
        })
    };
    enum Connected {
        Node(Box<RemoteClient>),
        Fleet(Fleet),
    }
    // All nodes and fleets at once, so retries against a dead one do not delay the others.
    let handle = runtime.handle().clone();
    let results = runtime.block_on(async {
        let tasks: Vec<_> = specs
            .iter()
            .map(|spec| match spec {
                Remote::Node(spec) => {
                    let spec = spec.clone();
                    tokio::spawn(async move {
                        RemoteClient::connect(&spec, &opts)
                            .await
                            .map(|c| Connected::Node(Box::new(c)))
                    })
                }
                Remote::Fleet(spec) => {
                    let (spec, handle, on_event) = (spec.clone(), handle.clone(), on_event.clone());
                    tokio::spawn(async move {
                        Fleet::connect(handle, spec, fleet_opts, on_event)
                            .await
                            .map(Connected::Fleet)
                    })
                }
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await);
        }
        out
    });
    let mut workers: Vec<Arc<dyn Worker>> = Vec::new();
    let mut remotes = Vec::new();
    let mut fleets = Vec::new();
    let mut down = Vec::new();
    for (spec, r) in specs.iter().zip(results) {
        match r {
            Ok(Ok(Connected::Node(client))) => {
                let w = Arc::new(RemoteWorker::new(runtime.handle().clone(), *client));
                remotes.push(w.clone());
                workers.push(w);
            }
            Ok(Ok(Connected::Fleet(fleet))) => {
                for w in fleet.workers() {
                    workers.push(w);
                }
                fleets.push(fleet);
            }
            Ok(Err(e)) => down.push(match e {
                RemoteError::Fingerprint { .. } => format!("{e} (--fingerprint)"),
                RemoteError::BadToken { .. } => format!("{e} (--token-file)"),
                e => e.to_string(),
            }),
            Err(e) => down.push(match spec {
                Remote::Node(n) => format!("node {}: {e}", n.addr),
                Remote::Fleet(f) => format!("fleet {}: {e}", f.name()),
            }),
        }
    }
    if !down.is_empty() {
        if args.on_node_down == NodeDown::Fail {
            return Err(EngineError::new(
                ErrorKind::Remote,
                format!(
                    "{}\n(nothing was processed; --on-node-down skip or local goes on without it)",
                    down.join("\n")
                ),
            ));
        }
        for d in &down {
            eprintln!("prism: going on without it: {d}");
        }
    }
    let fallback = workers.is_empty() && args.on_node_down == NodeDown::Local;
    if args.local || fallback {
        if fallback {
            eprintln!("prism: no node answered; processing on this machine (--on-node-down local)");
        }
        workers.push(Arc::new(LocalWorker::new(args.threads)?));
    }
    if workers.is_empty() {
        return Err(EngineError::new(
            ErrorKind::Remote,
            "no node answered and --local was not given; nothing was processed",
        ));
    }
    // Fleet members that appear during the batch join it.
    let joins = match resolve_every {
        Some(every) if !fleets.is_empty() => {
            let (tx, rx) = mpsc::channel();
            for f in &mut fleets {
                f.watch(Some(tx.clone()));
            }
            Some(Joins {
                rx,
                wait: FLEET_WAIT.max(every * 2),
            })
        }
        _ => None,
    };
    Ok(Workers {
        workers,
        remotes,
        fleets,
        joins,
        runtime: Some(runtime),
    })
}

/// The first address `value` (of flag `flag`) resolves to.
fn socket_addr(flag: &str, value: &str) -> Result<std::net::SocketAddr, EngineError> {
    let usage = |m: String| EngineError::new(ErrorKind::Usage, m);
    std::net::ToSocketAddrs::to_socket_addrs(value)
        .map_err(|e| usage(format!("{flag} {value}: {e}")))?
        .next()
        .ok_or_else(|| usage(format!("{flag} {value}: no address")))
}

/// Writes a fleet identity and says what to do with it.
fn identity_new(out: &std::path::Path) -> Result<i32, EngineError> {
    let fingerprint = create_identity(out).map_err(|e| {
        let kind = match e {
            TlsError::Exists(_) => ErrorKind::Usage,
            _ => ErrorKind::Io,
        };
        let hint = match e {
            TlsError::Exists(_) => " (choose another --out)",
            _ => "",
        };
        EngineError::new(kind, format!("{e}{hint}"))
    })?;
    let dir = out.display();
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "fingerprint: {fingerprint}");
    let _ = writeln!(o, "token file: {}", out.join(TOKEN_FILE).display());
    let _ = writeln!(
        o,
        "nodes: prism node --listen 0.0.0.0:7443 --identity-dir {dir}"
    );
    let _ = writeln!(
        o,
        "kubernetes: kubectl create secret generic prism-node-identity --from-file={dir}"
    );
    let _ = writeln!(
        o,
        "clients: prism process --remote HOST:7443 --fingerprint {fingerprint} --token-file COPY_OF_TOKEN_FILE ..."
    );
    Ok(EXIT_OK)
}

/// Runs a node until SIGTERM or Ctrl-C.
fn node(args: NodeArgs) -> Result<i32, EngineError> {
    if let Some(NodeAction::Identity(IdentityAction::New { out })) = &args.action {
        return identity_new(out);
    }
    let usage = |m: String| EngineError::new(ErrorKind::Usage, m);
    let listen = args
        .listen
        .as_deref()
        .ok_or_else(|| usage("--listen ADDR is required".into()))?;
    let listen = socket_addr("--listen", listen)?;
    let metrics_listen = match &args.metrics_listen {
        Some(a) => Some(socket_addr("--metrics-listen", a)?),
        None => None,
    };
    let identity = match args.identity_dir {
        Some(dir) => IdentitySource::Fixed(dir),
        None => IdentitySource::DataDir(args.data_dir.unwrap_or_else(default_data_dir)),
    };
    let ms = Duration::from_millis;
    let cfg = NodeConfig {
        listen,
        identity,
        metrics_listen,
        threads: args.threads,
        limits: NodeLimits {
            max_connections: args.max_connections.max(1),
            max_streams: args.max_streams.max(1),
            max_image_bytes: args.max_image_bytes,
            max_pixels: args.max_pixels,
            image_timeout: ms(args.image_timeout_ms.max(1)),
            stall_timeout: ms(args.stall_timeout_ms.max(1)),
            idle_timeout: ms(args.idle_timeout_ms.max(100)),
            shutdown_grace: ms(args.shutdown_grace_ms),
            source_credit: crate::remote::sources::SourceCredit {
                burst: args.source_credit,
                ..Default::default()
            },
            memory_budget: args
                .memory_budget
                .map(|b| b.max(1))
                .unwrap_or_else(crate::exec::default_memory_budget),
            ..NodeLimits::default()
        },
    };
    let node = RunningNode::start(cfg).map_err(|e| {
        // The library names no flags; say here which command makes what is missing.
        let hint = match &e {
            NodeError::Tls(TlsError::Missing { dir, .. }) => format!(
                " (make an identity with `prism node identity new --out {}`)",
                dir.display()
            ),
            _ => String::new(),
        };
        EngineError::new(ErrorKind::Io, format!("{e}{hint}"))
    })?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "prism node {} listening on {} ({} threads)",
            env!("CARGO_PKG_VERSION"),
            node.addr,
            node.cores
        );
        let _ = writeln!(out, "fingerprint: {}", node.fingerprint);
        let _ = writeln!(out, "token file: {}", node.token_path.display());
        if let Some(m) = node.metrics_addr {
            let _ = writeln!(out, "metrics: http://{m}/metrics (and /healthz, /readyz)");
        }
        let _ = writeln!(
            out,
            "clients: prism process --remote HOST:{} --fingerprint {} --token-file COPY_OF_TOKEN_FILE ...",
            node.addr.port(),
            node.fingerprint
        );
        let _ = out.flush();
    }
    node.run_until_signal()
        .map_err(|e| EngineError::new(ErrorKind::Io, e.to_string()))?;
    Ok(EXIT_OK)
}

fn run_with_progress_bar(
    batch: &Batch,
    workers: &[Arc<dyn Worker>],
    joins: Option<Joins>,
    cfg: &RunConfig,
    cancel: &CancelToken,
    notices: &Notices,
) -> (usize, usize) {
    let bar = indicatif::ProgressBar::new(batch.inputs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40.cyan/blue} {pos}/{len} images  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    notices.show_above(Some(bar.clone()));
    let mut failures: Vec<(String, String)> = Vec::new();
    let res = run_batch_joining(batch, workers, joins, cfg, cancel, &mut |e| match e {
        Event::Progress { done, .. } => bar.set_position(*done as u64),
        Event::Failed {
            input,
            kind,
            message,
            ..
        } => {
            let hint = if *kind == ErrorKind::Limit {
                " (--max-pixels and --max-bytes set the limits)"
            } else {
                ""
            };
            failures.push((input.clone(), format!("{kind}: {message}{hint}")))
        }
        Event::Summary {
            done,
            failed,
            cancelled,
            skipped,
            moved,
            wall_ms,
            ..
        } => {
            bar.finish_and_clear();
            let rate = (*done + *failed) as f64 / (wall_ms / 1e3).max(1e-9);
            let mut extra = String::new();
            if *cancelled > 0 {
                extra += &format!(" ({cancelled} cancelled)");
            }
            if *skipped > 0 {
                extra += &format!(", {skipped} skipped (output already there)");
            }
            if *moved > 0 {
                extra += &format!(", {moved} moved");
            }
            eprintln!(
                "{done} done, {failed} failed{extra} in {:.2} s ({rate:.1} images/s)",
                wall_ms / 1e3
            );
        }
        _ => {}
    });
    notices.show_above(None);
    for (input, reason) in failures {
        eprintln!("  failed: {input}: {reason}");
    }
    res
}
