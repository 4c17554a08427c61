//! `edge-detection` and `corner-detection` against OpenCV 5.0 references
//! (`tools/goldens/make_canny_harris.py`).

mod common;

use common::*;
use prism_engine::ops::harris::{corner_harris, corner_mask, BlockSize};
use prism_engine::ops::{run_pipeline, Aperture, Op, OpContext};
use prism_engine::Pixels;

/// `key=value` pairs over an op's defaults.
type Pairs = &'static [(&'static str, &'static str)];

fn run(op: &Op, name: &str) -> prism_engine::OpOutput {
    run_pipeline(
        std::slice::from_ref(op),
        load_input(name).pixels,
        &OpContext::default(),
    )
    .unwrap()
}

#[test]
fn canny_matches_opencv() {
    let cases: [(&str, Pairs); 4] = [
        ("edge-detection", &[]),
        (
            "edge-detection-l2-50-150",
            &[("low", "50"), ("high", "150"), ("l2-gradient", "true")],
        ),
        ("edge-detection-ap5", &[("aperture", "5")]),
        (
            "edge-detection-ap7-l2",
            &[
                ("low", "400"),
                ("high", "1200"),
                ("aperture", "7"),
                ("l2-gradient", "true"),
            ],
        ),
    ];
    for (dir, pairs) in cases {
        let op = Op::from_pairs("edge-detection", pairs.iter().copied()).unwrap();
        check_listed(dir, &INPUTS, |name| run(&op, name).pixels);
    }
}

#[test]
fn harris_mask_and_drawing_match_opencv() {
    // The radius-3 drawings are stored for a few inputs only (make_canny_harris.py).
    let few: &[&str] = &["checker.png", "odd37x23.png", "text.png"];
    let variants: [(&str, &str, &[&str], Pairs); 2] = [
        ("corner-mask", "corner-detection", &INPUTS, &[]),
        (
            "corner-mask-b3-k5",
            "corner-detection-b3-k5-r3",
            few,
            &[
                ("block", "3"),
                ("ksize", "5"),
                ("k", "0.06"),
                ("threshold", "0.05"),
                ("radius", "3"),
            ],
        ),
    ];
    for (mask_dir, draw_dir, drawn, pairs) in variants {
        let op = Op::from_pairs("corner-detection", pairs.iter().copied()).unwrap();
        let Op::CornerDetection(p) = &op else {
            unreachable!("built from the corner-detection id")
        };
        check_listed(mask_dir, &INPUTS, |name| {
            let gray = load_input(name).pixels.to_gray();
            let r =
                corner_harris(&gray, p.block, p.ksize, p.k.get(), &OpContext::default()).unwrap();
            Pixels::Gray(corner_mask(&r, p.threshold.get()))
        });
        check_listed(draw_dir, drawn, |name| run(&op, name).pixels);
    }
}

#[test]
fn keypoints_are_the_mask_pixels() {
    let op = Op::default_for("corner-detection").unwrap();
    for name in ["checker.png", "astronaut.png"] {
        let kps = run(&op, name).features.unwrap().keypoints;
        let Pixels::Gray(mask) = load_golden("corner-mask", name) else {
            panic!("corner-mask/{name} is a grey reference");
        };
        let expected: Vec<(f32, f32)> = mask
            .enumerate_pixels()
            .filter(|(_, _, v)| v[0] == 255)
            .map(|(x, y, _)| (x as f32, y as f32))
            .collect();
        let got: Vec<(f32, f32)> = kps.iter().map(|k| (k.x, k.y)).collect();
        assert!(!got.is_empty(), "{name}: no corners");
        assert_eq!(got, expected, "{name}");
        assert!(kps.iter().all(|k| k.size == 10.0 && k.angle == -1.0));
    }
}

/// The float response itself, bit for bit, where references were stored.
#[test]
fn harris_response_is_bit_exact() {
    // The responses make_canny_harris.py stores: <input stem>-b<block>-k<ksize>.
    const STEMS: [&str; 6] = [
        "astronaut-b2-k3",
        "odd37x23-b2-k1",
        "odd37x23-b2-k3",
        "odd37x23-b3-k5",
        "odd37x23-b5-k7",
        "text-b2-k3",
    ];
    let dir = golden_dir().join("corner-response");
    let listed: Vec<String> = STEMS.iter().map(|s| format!("{s}.f32")).collect();
    assert_eq!(
        file_names(&dir),
        listed,
        "corner-response: not the listed files"
    );
    for stem in STEMS {
        let path = dir.join(format!("{stem}.f32"));
        // <input stem>-b<block>-k<ksize>
        let mut parts = stem.rsplitn(3, '-');
        let ksize = Aperture::new(parts.next().unwrap()[1..].parse().unwrap()).unwrap();
        let block = BlockSize::new(parts.next().unwrap()[1..].parse().unwrap()).unwrap();
        let input = parts.next().unwrap();
        let name = input_names()
            .into_iter()
            .find(|n| n.rsplit_once('.').map(|(s, _)| s) == Some(input))
            .unwrap();
        let gray = load_input(&name).pixels.to_gray();
        let r = corner_harris(&gray, block, ksize, 0.04, &OpContext::default()).unwrap();
        let expected: Vec<f32> = std::fs::read(&path)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(expected.len(), r.image.as_raw().len(), "{stem}: size");
        let max = expected.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(r.max, max, "{stem}: maximum");
        let diffs: Vec<(usize, f32, f32)> = r
            .image
            .as_raw()
            .iter()
            .zip(&expected)
            .enumerate()
            .filter(|(_, (a, e))| a != e)
            .map(|(i, (a, e))| (i, *a, *e))
            .collect();
        let max_abs = diffs.iter().map(|d| (d.1 - d.2).abs()).fold(0f32, f32::max);
        assert!(
            diffs.is_empty(),
            "{stem}: {} values differ (max |diff| {max_abs:e}); first (index, prism, opencv): {:?}",
            diffs.len(),
            &diffs[..diffs.len().min(6)]
        );
    }
}

#[test]
fn every_test_passes_on_every_kernel_level() {
    rerun_on_other_kernel_levels("every_test_passes_on_every_kernel_level");
}
