//! JPEG and PNG decode/encode at 1 and 12 MP (compare with
//! `tools/bench_opencv.py --ops jpeg_decode,jpeg_encode,png_decode,png_encode`).

use criterion::{criterion_group, criterion_main, Criterion};
use prism_engine::codec::{self, EncodeOptions, Format, Limits, Metadata};
use prism_engine::{Frame, Pixels};

#[path = "support.rs"]
mod support;

fn codecs(c: &mut Criterion) {
    for mp in support::SIZES {
        let frame = Frame::new(Pixels::Rgb(support::photo(mp)));
        let meta = Metadata::default();
        let q95 = EncodeOptions { jpeg_quality: 95 };
        let jpeg = codec::encode(&frame, Format::Jpeg, &meta, &q95).expect("encode");
        let png = codec::encode(&frame, Format::Png, &meta, &q95).expect("encode");
        let lim = Limits::default();
        let mut g = c.benchmark_group(format!("{mp}mp"));
        g.sample_size(10);
        g.bench_function("jpeg_decode", |b| {
            b.iter(|| codec::decode(&jpeg, &lim).expect("decode"))
        });
        g.bench_function("jpeg_encode", |b| {
            b.iter(|| codec::encode(&frame, Format::Jpeg, &meta, &q95).expect("encode"))
        });
        g.bench_function("png_decode", |b| {
            b.iter(|| codec::decode(&png, &lim).expect("decode"))
        });
        g.bench_function("png_encode", |b| {
            b.iter(|| codec::encode(&frame, Format::Png, &meta, &q95).expect("encode"))
        });
        g.finish();
    }
}

criterion_group!(benches, codecs);
criterion_main!(benches);
