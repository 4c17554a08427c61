//! `prism process` output formats and input limits on real files: `--format jpeg|webp|tiff`,
//! `--jpeg-quality` and `--max-bytes`.

use std::path::{Path, PathBuf};
use std::process::Output;

use image::{GrayImage, RgbImage};
use prism_engine::codec::{self, EncodeOptions, Format, Metadata};
use prism_engine::{Frame, Pixels};
use serde_json::Value;

mod common;

use common::cli::{events, prism};

/// A colour image with detail everywhere, so JPEG qualities give different files.
fn sample(w: u32, h: u32) -> Frame {
    Frame::new(Pixels::Rgb(RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 7 + y * 13) % 256;
        image::Rgb([v as u8, (x * y % 251) as u8, ((x ^ y) * 5 % 256) as u8])
    })))
}

/// The sample with an alpha ramp.
fn sample_rgba(w: u32, h: u32) -> Frame {
    let mut f = sample(w, h);
    f.alpha = Some(GrayImage::from_fn(w, h, |x, y| {
        image::Luma([((x + 2 * y) * 9 % 256) as u8])
    }));
    f
}

fn encode(frame: &Frame, format: Format, quality: u8) -> Vec<u8> {
    let opts = EncodeOptions {
        jpeg_quality: quality,
    };
    codec::encode(frame, format, &Metadata::default(), &opts).unwrap()
}

fn decode(bytes: &[u8]) -> Frame {
    codec::decode(bytes, &Default::default()).unwrap().frame
}

/// `bitwise_not` of the colour, alpha kept: what `color-manipulation` (invert) gives.
fn inverted(f: &Frame) -> Frame {
    let Pixels::Rgb(c) = &f.pixels else {
        unreachable!("samples are colour")
    };
    let mut c = c.clone();
    c.iter_mut().for_each(|v| *v = !*v);
    Frame {
        pixels: Pixels::Rgb(c),
        alpha: f.alpha.clone(),
    }
}

/// Runs `prism process --op color-manipulation --json` with `extra` arguments on `inputs`.
fn run(out: &Path, extra: &[&str], inputs: &[PathBuf]) -> Output {
    prism()
        .args(["process", "--op", "color-manipulation", "--json"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .args(inputs)
        .output()
        .unwrap()
}

fn assert_exit(res: &Output, code: i32) {
    assert_eq!(
        res.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
}

#[test]
fn format_converts_png_to_webp_and_tiff_losslessly_with_alpha() {
    let dir = tempfile::tempdir().unwrap();
    let frame = sample_rgba(37, 23);
    let input = dir.path().join("photo.png");
    std::fs::write(&input, encode(&frame, Format::Png, 95)).unwrap();
    let expected = inverted(&frame);
    for (name, format) in [("webp", Format::Webp), ("tiff", Format::Tiff)] {
        let out = dir.path().join(name);
        let res = run(&out, &["--format", name], std::slice::from_ref(&input));
        assert_exit(&res, 0);
        let path = out.join(format!("photo.{}", format.extension()));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(codec::sniff(&bytes).unwrap(), format, "{name}");
        let got = decode(&bytes);
        assert_eq!(got.pixels, expected.pixels, "{name}: colour");
        assert_eq!(got.alpha, expected.alpha, "{name}: alpha");
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            1,
            "{name}: one file"
        );
    }
}

#[test]
fn format_jpeg_writes_a_jpeg_at_the_requested_quality() {
    let dir = tempfile::tempdir().unwrap();
    let frame = sample(64, 48);
    let input = dir.path().join("photo.tiff");
    std::fs::write(&input, encode(&frame, Format::Tiff, 95)).unwrap();
    let expected = inverted(&frame);
    let mut sizes = Vec::new();
    for quality in [20u8, 95] {
        let out = dir.path().join(format!("q{quality}"));
        let q = quality.to_string();
        let res = run(
            &out,
            &["--format", "jpeg", "--jpeg-quality", &q],
            std::slice::from_ref(&input),
        );
        assert_exit(&res, 0);
        let bytes = std::fs::read(out.join("photo.jpg")).unwrap();
        assert_eq!(codec::sniff(&bytes).unwrap(), Format::Jpeg);
        // The pixels are those of the inverted image encoded at this quality, and only those.
        let same_quality = decode(&encode(&expected, Format::Jpeg, quality));
        assert_eq!(
            decode(&bytes).pixels,
            same_quality.pixels,
            "quality {quality}"
        );
        let other = if quality == 20 { 95 } else { 20 };
        let other_quality = decode(&encode(&expected, Format::Jpeg, other));
        assert_ne!(
            decode(&bytes).pixels,
            other_quality.pixels,
            "quality {quality}"
        );
        sizes.push(bytes.len());
    }
    assert!(
        sizes[0] < sizes[1],
        "quality 20 is smaller than 95: {sizes:?}"
    );
}

#[test]
fn jpeg_quality_defaults_to_95_and_refuses_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let frame = sample(32, 32);
    let input = dir.path().join("photo.png");
    std::fs::write(&input, encode(&frame, Format::Png, 95)).unwrap();
    let out = dir.path().join("out");
    let res = run(&out, &["--format", "jpg"], std::slice::from_ref(&input));
    assert_exit(&res, 0);
    let got = decode(&std::fs::read(out.join("photo.jpg")).unwrap());
    let at_95 = decode(&encode(&inverted(&frame), Format::Jpeg, 95));
    assert_eq!(got.pixels, at_95.pixels);
    for bad in ["0", "101", "high"] {
        let out = dir.path().join(format!("bad{bad}"));
        let res = run(
            &out,
            &["--format", "jpeg", "--jpeg-quality", bad],
            std::slice::from_ref(&input),
        );
        assert_exit(&res, 2);
        assert!(!out.join("photo.jpg").exists(), "{bad}");
    }
}

#[test]
fn format_from_jpeg_to_png_keeps_the_decoded_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let frame = sample(40, 30);
    let jpeg = encode(&frame, Format::Jpeg, 90);
    let input = dir.path().join("shot.jpg");
    std::fs::write(&input, &jpeg).unwrap();
    let out = dir.path().join("out");
    let res = run(&out, &["--format", "png"], std::slice::from_ref(&input));
    assert_exit(&res, 0);
    let got = decode(&std::fs::read(out.join("shot.png")).unwrap());
    assert_eq!(got.pixels, inverted(&decode(&jpeg)).pixels);
}

#[test]
fn alpha_is_dropped_only_by_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let frame = sample_rgba(24, 16);
    let input = dir.path().join("cut.png");
    std::fs::write(&input, encode(&frame, Format::Png, 95)).unwrap();
    let out = dir.path().join("out");
    let res = run(&out, &["--format", "jpeg"], std::slice::from_ref(&input));
    assert_exit(&res, 0);
    let got = decode(&std::fs::read(out.join("cut.jpg")).unwrap());
    assert!(got.alpha.is_none());
    assert_eq!(
        got.pixels,
        decode(&encode(&inverted(&frame), Format::Jpeg, 95)).pixels
    );
}

#[test]
fn max_bytes_refuses_larger_inputs_as_a_limit_and_the_rest_finish() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.png");
    let big = dir.path().join("big.png");
    std::fs::write(&small, encode(&sample(8, 8), Format::Png, 95)).unwrap();
    std::fs::write(&big, encode(&sample(96, 96), Format::Png, 95)).unwrap();
    let (small_len, big_len) = (
        std::fs::metadata(&small).unwrap().len(),
        std::fs::metadata(&big).unwrap().len(),
    );
    assert!(small_len < big_len);
    let out = dir.path().join("out");
    let limit = big_len - 1;
    let res = run(
        &out,
        &["--max-bytes", &limit.to_string()],
        &[small.clone(), big.clone()],
    );
    assert_exit(&res, 1);
    let ev = events(&res.stdout);
    let failed: Vec<&Value> = ev.iter().filter(|e| e["event"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{ev:?}");
    assert!(failed[0]["input"].as_str().unwrap().ends_with("big.png"));
    assert_eq!(failed[0]["kind"], "limit");
    assert!(out.join("small.png").exists());
    assert!(!out.join("big.png").exists());
    // A file exactly at the limit is accepted.
    let out = dir.path().join("exact");
    let res = run(&out, &["--max-bytes", &big_len.to_string()], &[big]);
    assert_exit(&res, 0);
    assert!(out.join("big.png").exists());
}
