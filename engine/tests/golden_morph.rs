//! `erosion` and `dilation` against cv2.erode / cv2.dilate references
//! (`tools/goldens/make_morph.py`).

mod common;

use common::*;
use prism_engine::ops::{run_pipeline, Op, OpContext};
use prism_engine::Pixels;

/// Runs one op with `params` on a golden input.
fn run(op: &Op, name: &str) -> Pixels {
    run_pipeline(
        std::slice::from_ref(op),
        load_input(name).pixels,
        &OpContext::default(),
    )
    .unwrap()
    .pixels
}

/// Compares `op` with the reference in `ref_dir` of each of `names`; every one must exist.
fn check(id: &str, params: &[(&str, &str)], ref_dir: &str, names: &[&str]) {
    let op = Op::from_pairs(id, params.iter().copied()).unwrap();
    check_listed(ref_dir, names, |name| run(&op, name));
}

const OPS: [&str; 2] = ["erosion", "dilation"];

#[test]
fn default_is_rect_5_once_on_every_input() {
    for id in OPS {
        check(id, &[], id, &INPUTS);
    }
}

#[test]
fn rect_3_twice_is_opencvs_rect_5() {
    // make_morph.py asserts OpenCV gives the same image for both, and stores it once.
    for id in OPS {
        let params = [("size", "3"), ("iterations", "2")];
        check(id, &params, id, &INPUTS);
    }
}

#[test]
fn ellipse_7_and_cross_5_on_every_input() {
    for id in OPS {
        let ellipse = [("shape", "ellipse"), ("size", "7")];
        check(id, &ellipse, &format!("{id}-ellipse7"), &INPUTS);
        let cross = [("shape", "cross"), ("size", "5")];
        check(id, &cross, &format!("{id}-cross5"), &INPUTS);
    }
}

#[test]
fn size_1_is_a_copy_of_the_decoded_input() {
    for id in OPS {
        for shape in ["rect", "ellipse", "cross"] {
            check(id, &[("shape", shape), ("size", "1")], "decode", &INPUTS);
        }
    }
}

#[test]
fn large_even_and_iterated_elements_on_small_inputs() {
    // Sizes beyond the image (31 on 1x1 and 37x23), even sizes (anchor off centre) and
    // non-rect elements applied several times.
    let cases: [(&str, &[(&str, &str)]); 7] = [
        ("rect31", &[("size", "31")]),
        ("ellipse31", &[("shape", "ellipse"), ("size", "31")]),
        ("rect4", &[("size", "4")]),
        ("ellipse6", &[("shape", "ellipse"), ("size", "6")]),
        (
            "cross4",
            &[("shape", "cross"), ("size", "4"), ("iterations", "3")],
        ),
        (
            "ellipse5x3",
            &[("shape", "ellipse"), ("size", "5"), ("iterations", "3")],
        ),
        ("rect99x50", &[("size", "99"), ("iterations", "50")]),
    ];
    for id in OPS {
        for (suffix, params) in cases {
            check(id, params, &format!("{id}-{suffix}"), &SMALL_INPUTS);
        }
    }
}

#[test]
fn every_test_passes_on_every_kernel_level() {
    rerun_on_other_kernel_levels("every_test_passes_on_every_kernel_level");
}
