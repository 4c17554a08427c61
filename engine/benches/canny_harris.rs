//! Canny and the Harris mask at 1 and 12 MP (compare with
//! `tools/bench_opencv.py --ops canny,harris`). The grey image is made outside the timed
//! loop, as the OpenCV script does; `harris` is response + dilate + threshold, as its
//! `harris_mask`.

use criterion::{criterion_group, criterion_main, Criterion};
use prism_engine::ops::canny::{canny, CannyParams};
use prism_engine::ops::color;
use prism_engine::ops::harris::{corner_harris, corner_mask, HarrisParams};
use prism_engine::ops::OpContext;

#[path = "support.rs"]
mod support;

fn canny_harris(c: &mut Criterion) {
    let pool = support::pool();
    let ctx = OpContext::default();
    let (cp, hp) = (CannyParams::default(), HarrisParams::default());
    for mp in support::SIZES {
        let gray = color::rgb_to_gray(&support::photo(mp));
        let mut g = c.benchmark_group(format!("{mp}mp"));
        g.sample_size(20);
        g.bench_function("canny", |b| {
            b.iter(|| pool.install(|| canny(&gray, &cp, &ctx).expect("not cancelled")))
        });
        g.bench_function("harris", |b| {
            b.iter(|| {
                pool.install(|| {
                    let r = corner_harris(&gray, hp.block, hp.ksize, hp.k.get(), &ctx)
                        .expect("not cancelled");
                    corner_mask(&r, hp.threshold.get())
                })
            })
        });
        g.finish();
    }
}

criterion_group!(benches, canny_harris);
criterion_main!(benches);
