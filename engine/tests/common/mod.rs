//! Helpers shared by the integration tests: golden inputs and references, comparisons.
#![allow(dead_code)]

pub mod node;

use std::path::PathBuf;

use image::RgbImage;
use prism_engine::codec::{self, Limits};
use prism_engine::{Frame, Pixels};

/// The folder of committed references (`tools/goldens/*.py` regenerates them).
pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/goldens")
}

/// Every golden input file name, sorted.
pub fn input_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(golden_dir().join("inputs"))
        .expect("golden inputs exist")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A golden input decoded by Prism's codec.
pub fn load_input(name: &str) -> Frame {
    let bytes = std::fs::read(golden_dir().join("inputs").join(name)).unwrap();
    codec::decode(&bytes, &Limits::default()).unwrap().frame
}

/// The reference OpenCV produced for `name` under `op_dir`, if there is one.
pub fn load_golden(op_dir: &str, name: &str) -> Option<Pixels> {
    let stem = std::path::Path::new(name)
        .file_stem()?
        .to_string_lossy()
        .into_owned();
    let p = golden_dir().join(op_dir).join(format!("{stem}.png"));
    let bytes = std::fs::read(p).ok()?;
    Some(
        codec::decode(&bytes, &Limits::default())
            .unwrap()
            .frame
            .pixels,
    )
}

/// Grey widened to RGB, so a grey result compares with OpenCV's 3-channel copy of it.
pub fn as_rgb(p: &Pixels) -> RgbImage {
    p.clone().into_rgb()
}

/// Asserts bit-exact equality, reporting how many pixels differ and the first few.
pub fn assert_same(actual: &Pixels, expected: &Pixels, what: &str) {
    assert_eq!(
        (actual.width(), actual.height()),
        (expected.width(), expected.height()),
        "{what}: size"
    );
    if actual.channels() == expected.channels() && actual == expected {
        return;
    }
    let (a, e) = (as_rgb(actual), as_rgb(expected));
    let mut diffs = Vec::new();
    for (x, y, pa) in a.enumerate_pixels() {
        let pe = e.get_pixel(x, y);
        if pa != pe {
            diffs.push((x, y, pa.0, pe.0));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} of {} pixels differ; first (x, y, prism, opencv): {:?}",
        diffs.len(),
        a.width() * a.height(),
        &diffs[..diffs.len().min(8)]
    );
}
