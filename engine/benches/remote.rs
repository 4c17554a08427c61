//! The cost of the network: 40 JPEGs of 1 MP through one node on loopback against the
//! same batch on this machine, both with the bench thread count (`PRISM_BENCH_THREADS`,
//! default 2). Target: remote at most 1.2x local.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use prism_engine::exec::{run_batch, LocalWorker, RunConfig, Worker};
use prism_engine::job::{collect_inputs, Batch};
use prism_engine::ops::{CancelToken, Op};
use prism_engine::remote::client::{ConnectOptions, NodeSpec, RemoteWorker};
use prism_engine::remote::server::{IdentitySource, NodeConfig, NodeLimits, RunningNode};
use prism_engine::remote::tls::read_token_file;

#[path = "support.rs"]
mod support;

fn remote(c: &mut Criterion) {
    let threads = support::threads();
    let dir = tempfile::tempdir().expect("temp dir");
    let files = support::jpeg_inputs(dir.path(), 40);
    let out = dir.path().join("out");
    let batch = Batch {
        inputs: collect_inputs(&files, &out).expect("inputs"),
        pipeline: Arc::from(vec![Op::default_for("color-manipulation").expect("op")]),
    };
    let cfg = RunConfig::new(&out);
    std::fs::create_dir_all(&out).expect("out dir");

    let node = RunningNode::start(NodeConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        identity: IdentitySource::DataDir(dir.path().join("node")),
        metrics_listen: None,
        threads,
        limits: NodeLimits::default(),
    })
    .expect("node starts");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let spec = NodeSpec {
        addr: node.addr.to_string(),
        fingerprint: node.fingerprint,
        token: read_token_file(&node.token_path).expect("token"),
    };
    let remote: Vec<Arc<dyn Worker>> = vec![Arc::new(
        RemoteWorker::connect(runtime.handle(), &spec, &ConnectOptions::default())
            .expect("connect"),
    )];
    let local: Vec<Arc<dyn Worker>> = vec![Arc::new(LocalWorker::new(threads).expect("pool"))];

    let mut g = c.benchmark_group("1mp_jpeg_x40");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    for (name, workers) in [("local", &local), ("remote", &remote)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let (done, failed) =
                    run_batch(&batch, workers, &cfg, &CancelToken::new(), &mut |_| {});
                assert_eq!((done, failed), (40, 0));
            })
        });
    }
    g.finish();
    drop(remote);
    node.shutdown();
}

criterion_group!(benches, remote);
criterion_main!(benches);
