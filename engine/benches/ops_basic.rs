//! Grey conversion, invert, equalizeHist, and the `histogram-equalization` op on a colour
//! image (grey conversion and equalizeHist fused) at 1 and 12 MP (compare with
//! `tools/bench_opencv.py --ops gray,invert,equalize,gray_equalize`).

use criterion::{criterion_group, criterion_main, Criterion};
use prism_engine::ops::{color, equalize};
use prism_engine::Pixels;

#[path = "support.rs"]
mod support;

fn basic(c: &mut Criterion) {
    let pool = support::pool();
    for mp in support::SIZES {
        let rgb = support::photo(mp);
        let gray = color::rgb_to_gray(&rgb);
        let mut g = c.benchmark_group(format!("{mp}mp"));
        g.sample_size(20);
        g.bench_function("gray", |b| {
            b.iter(|| pool.install(|| color::rgb_to_gray(&rgb)))
        });
        g.bench_function("invert", |b| {
            b.iter_batched(
                || Pixels::Rgb(rgb.clone()),
                |p| pool.install(|| color::invert(p)),
                criterion::BatchSize::LargeInput,
            )
        });
        g.bench_function("equalize", |b| {
            b.iter(|| pool.install(|| equalize::equalize_hist(&gray)))
        });
        g.bench_function("gray_equalize", |b| {
            b.iter(|| pool.install(|| equalize::equalize_rgb(&rgb)))
        });
        g.finish();
    }
}

criterion_group!(benches, basic);
criterion_main!(benches);
