//! The cost of the network: 40 JPEGs of 1 MP through one node on loopback against the
//! same batch on this machine, both with the bench thread count (`PRISM_BENCH_THREADS`,
//! default 2). Target: remote at most 1.2x local.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use prism_engine::codec::{self, EncodeOptions, Format, Metadata};
use prism_engine::exec::{run_batch, LocalWorker, RunConfig, Worker};
use prism_engine::job::{collect_inputs, Batch};
use prism_engine::ops::{CancelToken, Op};
use prism_engine::remote::client::{ConnectOptions, NodeSpec, RemoteWorker};
use prism_engine::remote::server::{IdentitySource, NodeConfig, NodeLimits, RunningNode};
use prism_engine::remote::tls::read_token_file;
use prism_engine::{Frame, Pixels};

#[path = "support.rs"]
mod support;

/// 40 different 1 MP JPEGs made from the bench photo (each shifted and tinted).
fn inputs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let photo = support::photo(1);
    (0..40u32)
        .map(|i| {
            let mut img = photo.clone();
            let w = img.width();
            for (x, y, p) in img.enumerate_pixels_mut() {
                let src = photo.get_pixel((x + i * 7) % w, y);
                *p = image::Rgb([src[0], src[1].wrapping_add(i as u8), src[2]]);
            }
            let bytes = codec::encode(
                &Frame::new(Pixels::Rgb(img)),
                Format::Jpeg,
                &Metadata::default(),
                &EncodeOptions::default(),
            )
            .expect("encode bench input");
            let p = dir.join(format!("photo{i:02}.jpg"));
            std::fs::write(&p, bytes).expect("write bench input");
            p
        })
        .collect()
}

fn remote(c: &mut Criterion) {
    let threads = support::threads();
    let dir = tempfile::tempdir().expect("temp dir");
    let files = inputs(dir.path());
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
