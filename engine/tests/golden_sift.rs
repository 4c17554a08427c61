//! `sift` against OpenCV 5.0 references (`tools/goldens/make_sift.py`): keypoints,
//! descriptors, the rich drawing, and ratio-test matching on a pair with a known transform.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use image::GrayImage;
use prism_engine::ops::sift::{detect_and_compute, draw, SiftParams};
use prism_engine::ops::{KeyPoint, OpContext};
use prism_engine::Pixels;
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    input: String,
    params: SiftParams,
    keypoints: Vec<[f64; 6]>,
    descriptors: Vec<String>,
}

fn sift_dir() -> PathBuf {
    golden_dir().join("sift")
}

/// A golden input: the shared set, or one the SIFT script added beside its references.
fn load(name: &str) -> Pixels {
    let extra = sift_dir().join(name);
    if extra.exists() {
        let bytes = std::fs::read(extra).unwrap();
        prism_engine::codec::decode(&bytes, &Default::default())
            .unwrap()
            .frame
            .pixels
    } else {
        load_input(name).pixels
    }
}

fn keypoint(v: &[f64; 6]) -> KeyPoint {
    KeyPoint {
        x: v[0] as f32,
        y: v[1] as f32,
        size: v[2] as f32,
        angle: v[3] as f32,
        response: v[4] as f32,
        octave: v[5] as i32,
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn goldens() -> Vec<(String, Golden)> {
    let mut v: Vec<(String, Golden)> = std::fs::read_dir(sift_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| p.file_stem().is_some_and(|s| s != "pair"))
        .map(|p| {
            let g = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p.file_stem().unwrap().to_string_lossy().into_owned(), g)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn angle_diff(a: f32, b: f32) -> f32 {
    let d = (a - b).abs() % 360.0;
    d.min(360.0 - d)
}

/// For each of `from`, the index of the nearest of `to` within 0.5 px at the same
/// octave with the angle within 2 degrees.
fn matches(from: &[KeyPoint], to: &[KeyPoint]) -> Vec<Option<usize>> {
    from.iter()
        .map(|a| {
            to.iter()
                .enumerate()
                .filter(|(_, b)| {
                    a.octave & 255 == b.octave & 255
                        && angle_diff(a.angle, b.angle) <= 2.0
                        && (a.x - b.x).hypot(a.y - b.y) <= 0.5
                })
                .min_by(|(_, b1), (_, b2)| {
                    let d =
                        |b: &KeyPoint| (a.x - b.x).hypot(a.y - b.y) + angle_diff(a.angle, b.angle);
                    d(b1).total_cmp(&d(b2))
                })
                .map(|(i, _)| i)
        })
        .collect()
}

fn l2(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn keypoints_and_descriptors_match_opencv() {
    let ctx = OpContext::default();
    let mut images = 0;
    let mut failures = Vec::new();
    println!(
        "{:<14} {:>6} {:>6} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "image", "opencv", "prism", "cv->pr", "pr->cv", "exact", "desc==", "L2/norm"
    );
    for (stem, g) in goldens() {
        let grey = load(&g.input).to_gray();
        let (kps, descs) = detect_and_compute(&grey, &g.params, &ctx).unwrap();
        let cv: Vec<KeyPoint> = g.keypoints.iter().map(keypoint).collect();
        let cv_desc: Vec<Vec<u8>> = g.descriptors.iter().map(|s| hex(s)).collect();
        let fwd = matches(&cv, &kps);
        let rev = matches(&kps, &cv);
        let frac = |m: &[Option<usize>]| {
            if m.is_empty() {
                1.0
            } else {
                m.iter().filter(|x| x.is_some()).count() as f64 / m.len() as f64
            }
        };
        let exact =
            cv.iter().zip(&kps).filter(|(a, b)| a == b).count() as f64 / cv.len().max(1) as f64;
        let (mut dist, mut norm, mut same, mut pairs) = (0.0, 0.0, 0, 0);
        for (i, m) in fwd.iter().enumerate() {
            if let Some(j) = m {
                dist += l2(&cv_desc[i], &descs[*j]);
                norm += l2(&cv_desc[i], &[0; 128]);
                same += (cv_desc[i] == descs[*j]) as usize;
                pairs += 1;
            }
        }
        let rel = if pairs > 0 { dist / norm } else { 0.0 };
        let (f, r) = (frac(&fwd), frac(&rev));
        println!(
            "{stem:<14} {:>6} {:>6} {:>7.2}% {:>7.2}% {:>7.2}% {:>8.2}% {:>9.5}",
            cv.len(),
            kps.len(),
            100.0 * f,
            100.0 * r,
            100.0 * exact,
            100.0 * same as f64 / pairs.max(1) as f64,
            rel
        );
        if f < 0.95 || r < 0.95 || rel >= 0.05 {
            failures.push(stem.clone());
        }
        images += 1;
    }
    assert!(images >= 6, "only {images} references");
    assert!(failures.is_empty(), "below the bar: {failures:?}");
}

#[test]
fn nfeatures_keeps_opencvs_selection_and_order() {
    let ctx = OpContext::default();
    let mut checked = 0;
    for (stem, g) in goldens() {
        if g.params.nfeatures == 0 {
            continue;
        }
        let grey = load(&g.input).to_gray();
        let (kps, _) = detect_and_compute(&grey, &g.params, &ctx).unwrap();
        let cv: Vec<KeyPoint> = g.keypoints.iter().map(keypoint).collect();
        // Same keypoint at the same index (angles and responses may differ in the last bits).
        let same_place = cv
            .iter()
            .zip(&kps)
            .filter(|(a, b)| {
                (a.x - b.x).abs() < 1e-3
                    && (a.y - b.y).abs() < 1e-3
                    && a.octave == b.octave
                    && angle_diff(a.angle, b.angle) < 0.01
            })
            .count();
        println!("{stem}: {} of {} in the same place", same_place, cv.len());
        assert_eq!(kps.len(), cv.len(), "{stem}");
        assert!(same_place as f64 >= 0.95 * cv.len() as f64, "{stem}");
        checked += 1;
    }
    assert!(checked >= 1);
}

#[test]
fn drawing_matches_draw_keypoints_rich() {
    let mut checked = 0;
    for (stem, g) in goldens() {
        let reference = sift_dir().join(format!("{stem}.draw.png"));
        if !reference.exists() {
            continue;
        }
        let expected =
            prism_engine::codec::decode(&std::fs::read(&reference).unwrap(), &Default::default())
                .unwrap()
                .frame
                .pixels;
        let cv: Vec<KeyPoint> = g.keypoints.iter().map(keypoint).collect();
        let mut canvas = load(&g.input).into_rgb();
        draw::draw_keypoints(&mut canvas, &cv, &mut draw::Rng::opencv_default());
        assert_same(
            &Pixels::Rgb(canvas),
            &expected,
            &format!("sift/{stem}.draw"),
        );
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} drawing references");
}

#[derive(Deserialize)]
struct Pair {
    a: String,
    b: String,
    transform: [[f64; 3]; 2],
    ratio: f64,
    correct_px: f64,
    opencv: Figures,
}

#[derive(Deserialize, Debug)]
struct Figures {
    matches: usize,
    correct: usize,
    precision: f64,
    correct_per_keypoint: f64,
}

fn grey_of(path: &Path) -> GrayImage {
    let bytes = std::fs::read(path).unwrap();
    prism_engine::codec::decode(&bytes, &Default::default())
        .unwrap()
        .frame
        .pixels
        .to_gray()
}

/// Brute-force L2 matching A -> B with Lowe's ratio test, as `BFMatcher.knnMatch(k=2)`.
fn ratio_matches(a: &[[u8; 128]], b: &[[u8; 128]], ratio: f64) -> Vec<(usize, usize)> {
    a.iter()
        .enumerate()
        .filter_map(|(i, da)| {
            let mut best = (f64::INFINITY, usize::MAX);
            let mut second = f64::INFINITY;
            for (j, db) in b.iter().enumerate() {
                let d = l2(da, db);
                if d < best.0 {
                    second = best.0;
                    best = (d, j);
                } else if d < second {
                    second = d;
                }
            }
            (second.is_finite() && best.0 < ratio * second).then_some((i, best.1))
        })
        .collect()
}

#[test]
fn matching_a_rotated_scaled_pair_is_as_good_as_opencv() {
    let pair: Pair =
        serde_json::from_slice(&std::fs::read(sift_dir().join("pair.json")).unwrap()).unwrap();
    let ctx = OpContext::default();
    let p = SiftParams::default();
    let (ka, da) = detect_and_compute(&grey_of(&sift_dir().join(&pair.a)), &p, &ctx).unwrap();
    let (kb, db) = detect_and_compute(&grey_of(&sift_dir().join(&pair.b)), &p, &ctx).unwrap();
    let good = ratio_matches(&da, &db, pair.ratio);
    let m = pair.transform;
    let correct = good
        .iter()
        .filter(|(i, j)| {
            let (x, y) = (ka[*i].x as f64, ka[*i].y as f64);
            let (px, py) = (
                m[0][0] * x + m[0][1] * y + m[0][2],
                m[1][0] * x + m[1][1] * y + m[1][2],
            );
            (px - kb[*j].x as f64).hypot(py - kb[*j].y as f64) < pair.correct_px
        })
        .count();
    let precision = correct as f64 / good.len().max(1) as f64;
    let per_kp = correct as f64 / ka.len().max(1) as f64;
    println!(
        "prism: {} kp A, {} kp B, {} matches, {} correct, precision {:.4}, correct/kp {:.4}",
        ka.len(),
        kb.len(),
        good.len(),
        correct,
        precision,
        per_kp
    );
    println!("opencv: {:?}", pair.opencv);
    assert!(pair.opencv.matches > 0 && pair.opencv.correct > 0);
    assert!(precision >= pair.opencv.precision, "precision {precision}");
    assert!(
        per_kp >= pair.opencv.correct_per_keypoint,
        "correct/kp {per_kp}"
    );
}
