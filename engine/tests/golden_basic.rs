//! Decoding, grey conversion, equalizeHist and colour modes (hue-saturation included)
//! against OpenCV references.

mod common;

use common::*;
use prism_engine::ops::{color, equalize, run_pipeline, Op, OpContext};
use prism_engine::Pixels;

fn check_all(op_dir: &str, f: impl Fn(&str) -> Pixels) {
    let mut checked = 0;
    for name in input_names() {
        let Some(expected) = load_golden(op_dir, &name) else {
            continue;
        };
        assert_same(&f(&name), &expected, &format!("{op_dir}/{name}"));
        checked += 1;
    }
    assert!(checked >= 8, "{op_dir}: only {checked} references");
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
        check_all(&format!("hue-saturation_{hue}_{sat}"), |n| run(&op, n));
    }
}
