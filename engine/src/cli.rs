//! The `prism` command line: arguments are parsed, validated into a batch and a
//! [`RunConfig`], then run; output goes through one event sink (JSON lines or a
//! progress bar).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::codec::{EncodeOptions, Limits, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS};
use crate::error::{EngineError, ErrorKind};
use crate::exec::{run_batch, Event, LocalWorker, RunConfig, Worker};
use crate::job::{collect_inputs, Batch, OutputFormat};
use crate::ops::{CancelToken, Op};

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
}

#[derive(Args, Debug)]
struct ProcessArgs {
    /// An op to run, in order (repeat for a pipeline). `prism ops` lists them.
    #[arg(long = "op", value_name = "ID", required = true)]
    ops: Vec<String>,
    /// A parameter of an op: `ID.KEY=VALUE`, e.g. `edge-detection.low=50`.
    #[arg(long = "param", value_name = "ID.KEY=VALUE")]
    params: Vec<String>,
    /// The output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Output format: same, png, jpeg, webp, tiff or bmp.
    #[arg(long, default_value = "same")]
    format: String,
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
    match cli.command {
        Command::Ops { json } => print_ops(json),
        Command::Process(args) => match process(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("prism: {}", e.message);
                if e.kind == ErrorKind::Usage {
                    EXIT_USAGE
                } else {
                    EXIT_FAILED
                }
            }
        },
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
    let format = OutputFormat::from_name(&args.format).ok_or_else(|| {
        usage(format!(
            "--format {}: expected same, png, jpeg, webp, tiff or bmp",
            args.format
        ))
    })?;
    let pipeline = build_pipeline(&args.ops, &args.params)?;
    let inputs = collect_inputs(&args.inputs, &args.out, format)?;
    let batch = Batch {
        inputs,
        pipeline: Arc::from(pipeline),
    };
    batch.validate()?;
    std::fs::create_dir_all(&args.out).map_err(|e| {
        EngineError::new(
            ErrorKind::Io,
            format!("cannot create {}: {e}", args.out.display()),
        )
    })?;
    let mut cfg = RunConfig::new(&args.out);
    cfg.format = format;
    cfg.features = args.features;
    cfg.limits = Limits {
        max_pixels: args.max_pixels,
        max_bytes: args.max_bytes,
    };
    cfg.encode = EncodeOptions {
        jpeg_quality: args.jpeg_quality,
    };
    let workers: Vec<Arc<dyn Worker>> = vec![Arc::new(LocalWorker::new(args.threads)?)];
    let cancel = CancelToken::new();
    {
        let cancel = cancel.clone();
        // A second handler cannot be installed (tests call this twice); the first one stays.
        let _ = ctrlc::set_handler(move || cancel.cancel());
    }
    let (done, failed) = if args.json {
        let mut out = std::io::stdout().lock();
        run_batch(&batch, &workers, &cfg, &cancel, &mut |e| {
            if let Ok(line) = serde_json::to_string(e) {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        })
    } else {
        run_with_progress_bar(&batch, &workers, &cfg, &cancel)
    };
    let _ = done;
    Ok(if failed == 0 { EXIT_OK } else { EXIT_FAILED })
}

fn run_with_progress_bar(
    batch: &Batch,
    workers: &[Arc<dyn Worker>],
    cfg: &RunConfig,
    cancel: &CancelToken,
) -> (usize, usize) {
    let bar = indicatif::ProgressBar::new(batch.inputs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40.cyan/blue} {pos}/{len} images  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut failures: Vec<(String, String)> = Vec::new();
    let res = run_batch(batch, workers, cfg, cancel, &mut |e| match e {
        Event::Progress { done, .. } => bar.set_position(*done as u64),
        Event::Failed {
            input,
            kind,
            message,
        } => failures.push((input.clone(), format!("{kind}: {message}"))),
        Event::Summary {
            done,
            failed,
            moved,
            wall_ms,
            ..
        } => {
            bar.finish_and_clear();
            let rate = (*done + *failed) as f64 / (wall_ms / 1e3).max(1e-9);
            let moved = if *moved > 0 {
                format!(", {moved} moved")
            } else {
                String::new()
            };
            eprintln!(
                "{done} done, {failed} failed{moved} in {:.2} s ({rate:.1} images/s)",
                wall_ms / 1e3
            );
        }
        _ => {}
    });
    for (input, reason) in failures {
        eprintln!("  failed: {input}: {reason}");
    }
    res
}
