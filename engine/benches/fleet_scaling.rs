//! Scaling out on loopback, not a criterion bench: 80 JPEGs of 1 MP (the bench photo,
//! each shifted and tinted) inverted through 1, 2 and 4 `prism node` processes with one
//! thread each, the client taking work by the nodes' credits. Prints images/s per node
//! count (the median of three batches after a warm-up one) and the share each node did.
//!
//! Every node and the client share this machine's cores, so the figures show how far the
//! scheduler keeps the nodes busy on this machine, not a cluster's scaling: with more
//! nodes than cores they compete for the same CPUs.
//!
//! `cargo bench -p prism-engine --bench fleet_scaling` (release). Needs the bench photo:
//! `.venv/bin/python tools/bench_opencv.py --make-inputs` (tools/bench.sh does).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use prism_engine::exec::{run_batch, Event, RunConfig, Worker};
use prism_engine::job::{collect_inputs, Batch};
use prism_engine::ops::{CancelToken, Op};
use prism_engine::remote::client::{ConnectOptions, RemoteWorker};

#[path = "support.rs"]
mod support;

// The tests' `prism node` runner: its own data dir, a free port, the printed identity read.
#[allow(dead_code)]
#[path = "../tests/common/node.rs"]
mod node;

const IMAGES: u32 = 80;
const NODE_COUNTS: [usize; 3] = [1, 2, 4];
const RUNS: usize = 3;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = support::jpeg_inputs(dir.path(), IMAGES);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "fleet scaling: {IMAGES} JPEGs of 1 MP, color-manipulation, nodes of 1 thread each on \
         loopback, {} cores on this machine",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("nodes  images/s  per node  runs (s)           share of the images per node");
    let mut base = None;
    for &n in &NODE_COUNTS {
        let nodes: Vec<node::Node> = (0..n).map(|_| node::Node::start(&[])).collect();
        let workers: Vec<Arc<dyn Worker>> = nodes
            .iter()
            .map(|nd| {
                Arc::new(
                    RemoteWorker::connect(runtime.handle(), &nd.spec(), &ConnectOptions::default())
                        .expect("connect"),
                ) as Arc<dyn Worker>
            })
            .collect();
        let mut times = Vec::new();
        let mut share: BTreeMap<String, usize> = BTreeMap::new();
        for run in 0..=RUNS {
            let out = dir.path().join(format!("out-{n}-{run}"));
            std::fs::create_dir_all(&out).expect("out dir");
            let batch = Batch {
                inputs: collect_inputs(&files, &out).expect("inputs"),
                pipeline: Arc::from(vec![Op::default_for("color-manipulation").expect("op")]),
            };
            let mut by = BTreeMap::new();
            let t0 = Instant::now();
            let (done, failed) = run_batch(
                &batch,
                &workers,
                &RunConfig::new(&out),
                &CancelToken::new(),
                &mut |e| {
                    if let Event::Done { worker, .. } = e {
                        *by.entry(worker.clone()).or_insert(0) += 1;
                    }
                },
            );
            let secs = t0.elapsed().as_secs_f64();
            assert_eq!((done, failed), (IMAGES as usize, 0), "every image finished");
            // The first batch warms up connections, caches and the nodes' threads.
            if run > 0 {
                times.push(secs);
                for (w, k) in by {
                    *share.entry(w).or_insert(0) += k;
                }
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let rate = IMAGES as f64 / median;
        let base = *base.get_or_insert(rate);
        let shares: Vec<String> = share
            .values()
            .map(|k| format!("{:.0}%", *k as f64 * 100.0 / (IMAGES as f64 * RUNS as f64)))
            .collect();
        println!(
            "{n:<6} {rate:<9.1} {:<9.1} {:<18} {}  ({:.2}x one node)",
            rate / n as f64,
            format!("{times:.2?}"),
            shares.join(" "),
            rate / base
        );
        drop(workers);
        drop(nodes);
    }
}
