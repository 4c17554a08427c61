//! Erode and dilate with the default 5x5 rect on the colour photo at 1 and 12 MP (compare
//! with `tools/bench_opencv.py --ops erode,dilate`).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use prism_engine::ops::morph::{self, MorphParams};
use prism_engine::ops::OpContext;
use prism_engine::Pixels;

#[path = "support.rs"]
mod support;

fn morphology(c: &mut Criterion) {
    let pool = support::pool();
    let params = MorphParams::default();
    let ctx = OpContext::default();
    for mp in support::SIZES {
        let rgb = support::photo(mp);
        let mut g = c.benchmark_group(format!("{mp}mp"));
        g.sample_size(20);
        g.bench_function("erode", |b| {
            b.iter_batched(
                || Pixels::Rgb(rgb.clone()),
                |p| pool.install(|| morph::erode(p, &params, &ctx)),
                BatchSize::LargeInput,
            )
        });
        g.bench_function("dilate", |b| {
            b.iter_batched(
                || Pixels::Rgb(rgb.clone()),
                |p| pool.install(|| morph::dilate(p, &params, &ctx)),
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, morphology);
criterion_main!(benches);
