//! SIFT detectAndCompute at 1 and 12 MP (compare with
//! `tools/bench_opencv.py --ops sift`, which times `SIFT_create().detectAndCompute`).

use criterion::{criterion_group, criterion_main, Criterion};
use prism_engine::ops::color;
use prism_engine::ops::sift::{detect_and_compute, SiftParams};
use prism_engine::ops::OpContext;

#[path = "support.rs"]
mod support;

fn sift(c: &mut Criterion) {
    let pool = support::pool();
    let params = SiftParams::default();
    let ctx = OpContext::default();
    for mp in support::SIZES {
        let grey = color::rgb_to_gray(&support::photo(mp));
        let mut g = c.benchmark_group(format!("{mp}mp"));
        g.sample_size(10);
        g.bench_function("sift", |b| {
            b.iter(|| pool.install(|| detect_and_compute(&grey, &params, &ctx).unwrap()))
        });
        g.finish();
    }
}

criterion_group!(benches, sift);
criterion_main!(benches);
