//! Alpha is carried through every op with a colour output, unchanged, and the colour part
//! is what the op gives on the colour alone; grey outputs (edges, equalised) drop it.

use std::sync::Arc;

use prism_engine::codec::{self, EncodeOptions, Format, Limits};
use prism_engine::exec::{process_bytes, WorkRequest};
use prism_engine::job::OutputFormat;
use prism_engine::ops::{run_pipeline, Op, OpContext, OP_IDS};
use prism_engine::Frame;

/// Whether the catalogue says `id` gives a colour output (`prism ops`).
fn catalogue_output(id: &str) -> &'static str {
    Op::catalogue()
        .into_iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("{id} in the catalogue"))
        .output
}

/// The golden RGBA input: a 160x160 photo with an alpha ramp.
fn rgba_input() -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens/inputs/rgba.png");
    std::fs::read(p).unwrap()
}

/// Every op with its defaults, and each other colour-manipulation mode.
fn pipelines() -> Vec<Op> {
    let mut ops: Vec<Op> = OP_IDS
        .iter()
        .map(|id| Op::default_for(id).unwrap())
        .collect();
    for mode in ["grayscale", "sepia", "hue-saturation"] {
        ops.push(Op::from_pairs("color-manipulation", [("mode", mode)]).unwrap());
    }
    ops
}

fn run(op: &Op, bytes: &[u8], format: Format) -> Frame {
    let req = WorkRequest {
        bytes: bytes.into(),
        ops: Arc::from(vec![op.clone()]),
        format: OutputFormat::Fixed(format),
        encode: EncodeOptions::default(),
        limits: Limits::default(),
    };
    let res = process_bytes(&req, &OpContext::default()).unwrap();
    assert_eq!(res.format, format);
    codec::decode(&res.bytes, &Limits::default()).unwrap().frame
}

#[test]
fn every_colour_op_keeps_alpha_and_grey_ops_drop_it() {
    let bytes = rgba_input();
    let source = codec::decode(&bytes, &Limits::default()).unwrap().frame;
    let alpha = source.alpha.clone().expect("rgba.png has alpha");
    assert!(
        alpha.as_raw().iter().any(|&a| a != 255),
        "a real alpha channel"
    );
    let mut colour_ops = 0;
    for op in pipelines() {
        let what = format!("{op:?}");
        let expected = run_pipeline(
            std::slice::from_ref(&op),
            source.pixels.clone(),
            &OpContext::default(),
        )
        .unwrap()
        .pixels;
        // PNG, WebP and TIFF carry alpha and are lossless: all must give it back exactly.
        for format in [Format::Png, Format::Webp, Format::Tiff] {
            let got = run(&op, &bytes, format);
            // WebP has no grey layout: a grey result comes back as grey replicated to RGB.
            let same = got.pixels.clone().into_rgb() == expected.clone().into_rgb();
            assert!(same, "{what} {format:?}: colour differs");
            if catalogue_output(op.id()) == "colour" {
                assert_eq!(expected.channels(), 3, "{what}");
                assert!(
                    got.alpha.as_ref() == Some(&alpha),
                    "{what} {format:?}: alpha"
                );
            } else {
                assert_eq!(expected.channels(), 1, "{what}");
                assert!(got.alpha.is_none(), "{what} {format:?}: grey drops alpha");
            }
        }
        colour_ops += (catalogue_output(op.id()) == "colour") as usize;
    }
    // Every colour op id, and the three other colour-manipulation modes.
    assert_eq!(colour_ops, 6 + 3);
}

#[test]
fn alpha_survives_a_pipeline_of_colour_ops() {
    let bytes = rgba_input();
    let source = codec::decode(&bytes, &Limits::default()).unwrap().frame;
    let ops: Vec<Op> = ["erosion", "color-manipulation", "dilation"]
        .iter()
        .map(|id| Op::default_for(id).unwrap())
        .collect();
    let req = WorkRequest {
        bytes: bytes.into(),
        ops: Arc::from(ops),
        format: OutputFormat::Same,
        encode: EncodeOptions::default(),
        limits: Limits::default(),
    };
    let expected = run_pipeline(&req.ops, source.pixels.clone(), &OpContext::default())
        .unwrap()
        .pixels;
    let res = process_bytes(&req, &OpContext::default()).unwrap();
    let out = codec::decode(&res.bytes, &Limits::default()).unwrap().frame;
    assert!(out.pixels == expected, "colour differs");
    assert!(out.alpha == source.alpha, "alpha differs");
}
