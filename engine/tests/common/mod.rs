//! Helpers shared by the integration tests: golden inputs and references, comparisons.
#![allow(dead_code)]

pub mod cli;
pub mod node;

use std::path::PathBuf;

use image::RgbImage;
use prism_engine::codec::{self, Limits};
use prism_engine::ops::dispatch::{kernels, Kernels, KERNELS_ENV};
use prism_engine::{Frame, Pixels};

/// The folder of committed references (`tools/goldens/*.py` regenerates them).
pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/goldens")
}

/// Every golden input, sorted: each op with a reference per input has one for all of these.
pub const INPUTS: [&str; 12] = [
    "astronaut.png",
    "brick16.png",
    "camera_grey.png",
    "checker.png",
    "chelsea.jpg",
    "coffee.png",
    "flat.png",
    "noisy.png",
    "odd37x23.png",
    "one.png",
    "rgba.png",
    "text.png",
];

/// The small inputs that also get the costly settings (`SMALL` in make_morph.py).
pub const SMALL_INPUTS: [&str; 4] = ["checker.png", "flat.png", "odd37x23.png", "one.png"];

/// Every golden input file name, sorted; fails unless the folder holds exactly [`INPUTS`].
pub fn input_names() -> Vec<String> {
    let on_disk = file_names(&golden_dir().join("inputs"));
    assert_eq!(on_disk, INPUTS, "tests/goldens/inputs differs from INPUTS");
    on_disk
}

/// The file names in a folder, sorted.
pub fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
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

/// The reference file OpenCV produced for input `name` under `op_dir` (stem + `.png`).
pub fn golden_path(op_dir: &str, name: &str) -> PathBuf {
    let stem = std::path::Path::new(name)
        .file_stem()
        .unwrap_or_else(|| panic!("{name}: no file stem"))
        .to_string_lossy()
        .into_owned();
    golden_dir().join(op_dir).join(format!("{stem}.png"))
}

/// The reference OpenCV produced for `name` under `op_dir`; a missing one fails the test.
pub fn load_golden(op_dir: &str, name: &str) -> Pixels {
    let p = golden_path(op_dir, name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    codec::decode(&bytes, &Limits::default())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .frame
        .pixels
}

/// Compares `f(name)` with the reference of every one of `names` under `op_dir`. Fails on
/// a missing reference, and on a reference in `op_dir` that is not listed (never compared).
pub fn check_listed(op_dir: &str, names: &[&str], f: impl Fn(&str) -> Pixels) {
    let mut listed: Vec<String> = names
        .iter()
        .map(|n| {
            golden_path(op_dir, n)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    listed.sort();
    assert_eq!(
        file_names(&golden_dir().join(op_dir)),
        listed,
        "{op_dir}: the references on disk are not the listed ones"
    );
    for name in names {
        assert_same(
            &f(name),
            &load_golden(op_dir, name),
            &format!("{op_dir}/{name}"),
        );
    }
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

/// Re-runs every test of this test binary but `me` in a child process for each kernel level
/// the CPU has other than this process's (`PRISM_KERNELS=<level>`): the level is fixed per
/// process, so forcing it in a child never races with tests running here.
pub fn rerun_on_other_kernel_levels(me: &str) {
    for level in Kernels::supported() {
        if level == kernels() {
            continue;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--skip", me])
            .env(KERNELS_ENV, level.name())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "on the {} kernels: {stdout}\n{}",
            level.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        // The child ran its tests at the level asked for.
        let ran = "common::kernel_level_is_the_requested_one ... ok";
        assert!(stdout.contains(ran), "{}: {stdout}", level.name());
        println!(
            "{}: {}",
            level.name(),
            stdout.trim_end().lines().last().unwrap_or("")
        );
    }
}

#[test]
fn kernel_level_is_the_requested_one() {
    let request = std::env::var(KERNELS_ENV).ok();
    let expected = request
        .as_deref()
        .and_then(|r| Kernels::from_name(r.trim()))
        .filter(|k| *k <= Kernels::best_supported())
        .unwrap_or_else(Kernels::best_supported);
    assert_eq!(kernels(), expected, "{KERNELS_ENV}={request:?}");
}
