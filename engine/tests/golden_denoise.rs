//! `denoise` against OpenCV's `fastNlMeansDenoisingColored(img, None, 10, 10, 7, 21)`
//! (references from `tools/goldens/make_denoise.py`).
//!
//! Fidelity: on every golden input and on the noisy set, the output equals OpenCV's bit for
//! bit (not one pixel differs). Quality: PSNR and SSIM against the clean image equal
//! OpenCV's (figures in `denoise-noisy/quality.json`) up to the float rounding of computing
//! them here rather than in numpy (1e-9). SSIM is scikit-image's default
//! `structural_similarity`: 7x7 uniform window, sample covariance, K1 0.01, K2 0.03,
//! data range 255, computed per RGB channel and averaged (`channel_axis=2`).

mod common;

use common::*;
use image::RgbImage;
use prism_engine::codec::{self, Limits};
use prism_engine::ops::denoise::lab;
use prism_engine::ops::{run_pipeline, Op, OpContext};
use prism_engine::Pixels;

fn read_rgb(rel: &str) -> RgbImage {
    let bytes = std::fs::read(golden_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    codec::decode(&bytes, &Limits::default())
        .unwrap()
        .frame
        .pixels
        .into_rgb()
}

fn denoise(rgb: RgbImage) -> RgbImage {
    let op = Op::default_for("denoise").unwrap();
    run_pipeline(&[op], Pixels::Rgb(rgb), &OpContext::default())
        .unwrap()
        .pixels
        .into_rgb()
}

fn mse(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let s: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    s / a.as_raw().len() as f64
}

fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    10.0 * (255.0f64 * 255.0 / mse(a, b)).log10()
}

/// Asserts the output is OpenCV's, bit for bit, reporting how far off it is if not.
fn fidelity(name: &str, ours: &RgbImage, cv: &RgbImage) {
    assert_eq!(ours.dimensions(), cv.dimensions(), "{name}: size");
    let max = ours
        .as_raw()
        .iter()
        .zip(cv.as_raw())
        .map(|(&x, &y)| x.abs_diff(y))
        .max()
        .unwrap_or(0);
    let differ = ours
        .pixels()
        .zip(cv.pixels())
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differ == 0,
        "{name}: {differ} of {} pixels differ from OpenCV (max channel difference {max}, psnr {:.2} dB)",
        ours.width() * ours.height(),
        psnr(ours, cv)
    );
}

#[test]
fn lab_conversions_match_opencv_on_sampled_colours() {
    let colours = read_rgb("denoise-lab/colours.png");
    let (w, h) = colours.dimensions();
    // PNGs hold OpenCV's BGR-ordered bytes reversed: Lab (L, a, b) reads as (b, a, L).
    let to_lab = read_rgb("denoise-lab/to_lab.png");
    let planes = lab::rgb_to_lab_planes(&colours);
    for (i, px) in to_lab.pixels().enumerate() {
        let ours = [planes[0][i], planes[1][i], planes[2][i]];
        assert_eq!(
            ours,
            [px[2], px[1], px[0]],
            "colour {:?}",
            colours.as_raw()[i * 3..i * 3 + 3].to_vec()
        );
    }
    let raw = colours.as_raw();
    let pick = |c: usize| -> Vec<u8> { raw.chunks_exact(3).map(|p| p[c]).collect() };
    let (l, a, b) = (pick(2), pick(1), pick(0));
    let back = lab::lab_planes_to_rgb([&l, &a, &b], w, h);
    assert_eq!(back, read_rgb("denoise-lab/from_lab.png"));
}

#[test]
fn denoise_matches_opencv_on_golden_inputs() {
    check_listed("denoise", &INPUTS, |name| {
        Pixels::Rgb(denoise(load_input(name).pixels.into_rgb()))
    });
}

#[test]
fn denoise_matches_opencv_on_noisy_set_with_the_same_quality() {
    let text = std::fs::read_to_string(golden_dir().join("denoise-noisy/quality.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let report = report.as_object().unwrap();
    // make_denoise.py: three clean crops, each with Gaussian noise of sigma 10, 20 and 30.
    let stems: Vec<String> = ["astronaut_face", "chelsea_cat", "coffee_cup"]
        .iter()
        .flat_map(|c| [10, 20, 30].map(|s| format!("{c}_s{s}")))
        .collect();
    let mut keys: Vec<&String> = report.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        stems.iter().collect::<Vec<_>>(),
        "quality.json entries"
    );
    let pngs: Vec<String> = stems.iter().map(|s| format!("{s}.png")).collect();
    for dir in ["noisy", "opencv"] {
        let on_disk = file_names(&golden_dir().join("denoise-noisy").join(dir));
        assert_eq!(on_disk, pngs, "denoise-noisy/{dir}");
    }
    for stem in &stems {
        let q = &report[stem];
        let noisy = read_rgb(&format!("denoise-noisy/noisy/{stem}.png"));
        let cv = read_rgb(&format!("denoise-noisy/opencv/{stem}.png"));
        let clean_name = q["clean"].as_str().unwrap();
        let clean = read_rgb(&format!("denoise-noisy/clean/{clean_name}.png"));
        let ours = denoise(noisy);
        fidelity(stem, &ours, &cv);

        let (p, s) = (psnr(&clean, &ours), ssim(&clean, &ours));
        let (cv_p, cv_s) = (
            q["opencv"]["psnr"].as_f64().unwrap(),
            q["opencv"]["ssim"].as_f64().unwrap(),
        );
        let gain = p - q["noisy"]["psnr"].as_f64().unwrap();
        println!(
            "{stem}: vs clean psnr {p:.3} (OpenCV {cv_p:.3}, gain {gain:+.2} dB), ssim {s:.4} (OpenCV {cv_s:.4})"
        );
        assert!(
            (p - cv_p).abs() <= 1e-9,
            "{stem}: psnr {p} vs OpenCV's {cv_p}"
        );
        assert!(
            (s - cv_s).abs() <= 1e-9,
            "{stem}: ssim {s} vs OpenCV's {cv_s}"
        );
    }
}

/// scikit-image's `structural_similarity` with its defaults, per channel, averaged.
fn ssim(a: &RgbImage, b: &RgbImage) -> f64 {
    let (w, h) = (a.width() as usize, a.height() as usize);
    const WIN: usize = 7;
    let np = (WIN * WIN) as f64;
    let cov_norm = np / (np - 1.0);
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mut total = 0.0;
    for c in 0..3 {
        let x = |i: usize, j: usize| a.as_raw()[(i * w + j) * 3 + c] as f64;
        let y = |i: usize, j: usize| b.as_raw()[(i * w + j) * 3 + c] as f64;
        // skimage averages only where the window lies inside the image (it crops
        // (WIN - 1) / 2 on each side), so the filter's border mode never matters.
        let (mut sum, mut n) = (0.0, 0usize);
        for i in WIN / 2..h - WIN / 2 {
            for j in WIN / 2..w - WIN / 2 {
                let (mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for di in 0..WIN {
                    for dj in 0..WIN {
                        let (u, v) = (
                            x(i + di - WIN / 2, j + dj - WIN / 2),
                            y(i + di - WIN / 2, j + dj - WIN / 2),
                        );
                        sx += u;
                        sy += v;
                        sxx += u * u;
                        syy += v * v;
                        sxy += u * v;
                    }
                }
                let (ux, uy) = (sx / np, sy / np);
                let vx = cov_norm * (sxx / np - ux * ux);
                let vy = cov_norm * (syy / np - uy * uy);
                let vxy = cov_norm * (sxy / np - ux * uy);
                let num = (2.0 * ux * uy + c1) * (2.0 * vxy + c2);
                let den = (ux * ux + uy * uy + c1) * (vx + vy + c2);
                sum += num / den;
                n += 1;
            }
        }
        total += sum / n as f64;
    }
    total / 3.0
}

#[test]
fn ssim_of_an_image_with_itself_is_one() {
    let img = read_rgb("denoise-noisy/clean/coffee_cup.png");
    assert!((ssim(&img, &img) - 1.0).abs() < 1e-12);
    let noisy = read_rgb("denoise-noisy/noisy/coffee_cup_s20.png");
    assert!(ssim(&img, &noisy) < 0.9);
}

#[test]
fn every_test_passes_on_every_kernel_level() {
    rerun_on_other_kernel_levels("every_test_passes_on_every_kernel_level");
}
