//! Shared by the criterion benches: the same inputs `tools/bench_opencv.py` times OpenCV
//! on, and a rayon pool with the same thread count.
#![allow(dead_code)]

use std::path::PathBuf;

use image::RgbImage;
use prism_engine::codec::{self, Limits};

/// Threads for the bench pool: `PRISM_BENCH_THREADS`, default 2 (the OpenCV comparison's).
pub fn threads() -> usize {
    std::env::var("PRISM_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// A rayon pool with [`threads`] threads.
pub fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads())
        .build()
        .expect("bench pool")
}

/// The `mp`-megapixel bench photo (1 or 12), made by `tools/bench_opencv.py --make-inputs`.
pub fn photo(mp: u32) -> RgbImage {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench-inputs")
        .join(format!("photo_{mp}mp.png"));
    let bytes = std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `.venv/bin/python tools/bench_opencv.py --make-inputs` first (tools/bench.sh does)",
            p.display()
        )
    });
    codec::decode(&bytes, &Limits::default())
        .expect("bench input decodes")
        .frame
        .pixels
        .into_rgb()
}

/// The sizes every op is measured at, in megapixels.
pub const SIZES: [u32; 2] = [1, 12];

/// `n` different 1 MP JPEGs made from the bench photo (each shifted and tinted), written
/// into `dir`; the remote benches send them.
pub fn jpeg_inputs(dir: &std::path::Path, n: u32) -> Vec<PathBuf> {
    use prism_engine::codec::{EncodeOptions, Format, Metadata};
    use prism_engine::{Frame, Pixels};
    let photo = photo(1);
    (0..n)
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
