//! Decoding, grey conversion, equalizeHist and colour modes (hue-saturation included)
//! against OpenCV references.

mod common;

use common::*;
use prism_engine::codec::{self, Limits};
use prism_engine::ops::dispatch::{kernels, Kernels};
use prism_engine::ops::{color, equalize, run_pipeline, Op, OpContext};
use prism_engine::Pixels;

/// Every input has a reference under `op_dir`; each must exist and match.
fn check_all(op_dir: &str, f: impl Fn(&str) -> Pixels) {
    check_listed(op_dir, &INPUTS, f);
}

#[test]
fn decode_matches_imread_color() {
    check_all("decode", |n| load_input(n).pixels);
}

#[test]
fn gray_matches_cvtcolor() {
    check_all("gray", |n| Pixels::Gray(load_input(n).pixels.to_gray()));
}

#[test]
fn equalize_matches_equalizehist() {
    check_all("histogram-equalization", |n| {
        Pixels::Gray(equalize::equalize_hist(&load_input(n).pixels.to_gray()))
    });
}

fn run(op: &Op, name: &str) -> Pixels {
    run_pipeline(
        std::slice::from_ref(op),
        load_input(name).pixels,
        &OpContext::default(),
    )
    .unwrap()
    .pixels
}

#[test]
fn color_modes_match_references() {
    for mode in ["invert", "grayscale", "sepia"] {
        let op = Op::from_pairs("color-manipulation", [("mode", mode)]).unwrap();
        check_all(mode, |n| run(&op, n));
    }
    // The op's default is the original app's bitwise_not.
    let default = Op::default_for("color-manipulation").unwrap();
    check_all("invert", |n| run(&default, n));
    let _ = color::invert;
}

#[test]
fn hue_saturation_matches_opencv_hsv_round_trip() {
    // tools/goldens/make_basic.py: BGR2HSV, H + round(hue/2) mod 180, S * saturation, HSV2BGR.
    // OpenCV's HSV2BGR depends on its dispatch: AVX2 references (make_basic.py) at the avx2
    // kernel level, SSE ones (make_sse.py) at the portable level.
    let dir = match kernels() {
        Kernels::Avx2 => "hue-saturation",
        Kernels::Portable => "hue-saturation-sse",
    };
    for (hue, sat) in [("30", "1.5"), ("-135", "2.5")] {
        let op = Op::from_pairs(
            "color-manipulation",
            [
                ("mode", "hue-saturation"),
                ("hue", hue),
                ("saturation", sat),
            ],
        )
        .unwrap();
        check_all(&format!("{dir}_{hue}_{sat}"), |n| run(&op, n));
    }
}

#[test]
fn decode_of_16_bit_with_distinct_low_bytes_matches_imread_color() {
    // tools/goldens/make_decode16.py: random 16-bit samples (low byte unlike the high one),
    // grey, colour and colour with alpha as PNG and TIFF, grey with alpha as PNG. OpenCV's
    // PNG reader keeps the high byte; its TIFF reader rounds colour to (v + 128) / 257 and
    // keeps the high byte of grey.
    let cases: [(&str, &str); 7] = [
        ("bgr16", "png"),
        ("bgr16", "tif"),
        ("bgra16", "png"),
        ("bgra16", "tif"),
        ("grey16", "png"),
        ("grey16", "tif"),
        ("greya16", "png"),
    ];
    let with_alpha = |stem: &str| stem.ends_with("a16");
    let mut inputs: Vec<String> = cases.iter().map(|(s, e)| format!("{s}.{e}")).collect();
    inputs.sort();
    assert_eq!(file_names(&golden_dir().join("inputs16")), inputs);
    let mut refs: Vec<String> = cases
        .iter()
        .map(|(s, e)| format!("{s}_{e}.png"))
        .chain(
            cases
                .iter()
                .filter(|(s, _)| with_alpha(s))
                .map(|(s, e)| format!("{s}_{e}.alpha.png")),
        )
        .collect();
    refs.sort();
    assert_eq!(file_names(&golden_dir().join("decode16")), refs);
    let read = |rel: String| {
        let p = golden_dir().join(rel);
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        codec::decode(&bytes, &Limits::default()).unwrap().frame
    };
    for (stem, ext) in cases {
        let frame = read(format!("inputs16/{stem}.{ext}"));
        let what = format!("decode16/{stem}_{ext}");
        let expected = read(format!("{what}.png")).pixels;
        let grey = stem.starts_with("grey");
        assert_eq!(frame.pixels.channels(), if grey { 1 } else { 3 }, "{what}");
        assert_same(&frame.pixels, &expected, &what);
        if with_alpha(stem) {
            let Pixels::Gray(alpha) = read(format!("{what}.alpha.png")).pixels else {
                panic!("{what}.alpha is grey");
            };
            assert!(
                frame.alpha.as_ref() == Some(&alpha),
                "{what}: alpha differs"
            );
        } else {
            assert!(frame.alpha.is_none(), "{what}: no alpha");
        }
    }
}

#[test]
fn every_test_passes_on_every_kernel_level() {
    rerun_on_other_kernel_levels("every_test_passes_on_every_kernel_level");
}
