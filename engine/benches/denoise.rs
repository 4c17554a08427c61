//! `denoise` (fastNlMeansDenoisingColored, h 10, hColor 10, template 7, search 21) at 1
//! and 12 MP; compare with `tools/bench_opencv.py --ops denoise --threads N` run with the
//! same `PRISM_BENCH_THREADS=N`.

use criterion::{criterion_group, criterion_main, Criterion};
use prism_engine::ops::denoise::{denoise_colored, DenoiseParams};
use prism_engine::ops::OpContext;

#[path = "support.rs"]
mod support;

fn denoise(c: &mut Criterion) {
    let pool = support::pool();
    let params = DenoiseParams::default();
    let ctx = OpContext::default();
    for mp in support::SIZES {
        let rgb = support::photo(mp);
        let mut g = c.benchmark_group(format!("{mp}mp"));
        // 12 MP takes seconds per run: the fewest samples criterion allows.
        g.sample_size(10);
        g.bench_function(format!("denoise_t{}", support::threads()), |b| {
            b.iter(|| pool.install(|| denoise_colored(&rgb, &params, &ctx).unwrap()))
        });
        g.finish();
    }
}

criterion_group!(benches, denoise);
criterion_main!(benches);
