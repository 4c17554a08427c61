//! OpenCV's 8-bit `cvtColor(COLOR_LBGR2Lab)` and `cvtColor(COLOR_Lab2LBGR)`, bit-exact.
//!
//! These are the *linear* (no sRGB gamma) conversions `fastNlMeansDenoisingColored` uses.
//! OpenCV computes both in fixed point from tables built once (`color_lab.cpp`:
//! `RGB2Lab_b` and `Lab2RGBinteger`, `initLabTabs`); the tables are rebuilt here with the
//! same arithmetic (doubles for the matrix coefficients, `f32` for the cube-root and
//! L-to-Y tables, integers elsewhere), so every one of the 2^24 colours converts to the
//! same bytes as OpenCV 5.0 in both directions (checked exhaustively during development;
//! `engine/tests/golden_denoise.rs` keeps a sampled check).

use std::sync::OnceLock;

use image::RgbImage;
use rayon::prelude::*;

use crate::ops::bands::Bands;

/// Bits of the XYZ matrix coefficients (OpenCV's `lab_shift` = `xyz_shift`).
const LAB_SHIFT: u32 = 12;
/// 8-bit inputs are scaled by `1 << GAMMA_SHIFT` before the matrix (`linearGammaTab_b`).
const GAMMA_SHIFT: u32 = 3;
/// Bits of the cube-root table values (`lab_shift2`).
const LAB_SHIFT2: u32 = LAB_SHIFT + GAMMA_SHIFT;
/// Entries of the 8-bit cube-root table (`LAB_CBRT_TAB_SIZE_B`).
const CBRT_TAB_SIZE: usize = 256 * 3 / 2 * (1 << GAMMA_SHIFT);
/// Fixed-point base of the Lab to RGB path (`LAB_BASE`, `LUT_BASE`).
const BASE: i32 = 1 << 14;
/// Bits of the inverse-gamma index (`inv_gamma_shift`).
const INV_GAMMA_SHIFT: u32 = 12;
/// Smallest index into the a/b to X/Z table (`minABvalue`).
const MIN_AB: i32 = -8145;
/// Descale of the Lab to RGB matrix product (`Lab2RGBinteger::shift`).
const LAB2RGB_SHIFT: u32 = LAB_SHIFT + (14 - INV_GAMMA_SHIFT);

/// sRGB (linear) to XYZ, D65, as OpenCV stores it (bit patterns of the doubles).
const RGB2XYZ: [u64; 9] = [
    0x3fda65a14488c60d,
    0x3fd6e297396d0918,
    0x3fc71819d2391d58,
    0x3fcb38cda6e75ff6,
    0x3fe6e297396d0918,
    0x3fb279aae6c8f755,
    0x3f93cc4ac6cdaf4b,
    0x3fbe836eb4e98138,
    0x3fee68427418d691,
];

/// XYZ to sRGB (linear), D65.
const XYZ2RGB: [u64; 9] = [
    0x4009ec804102ff8f,
    0xbff8982a9930be0e,
    0xbfdfe7ff583a53b9,
    0xbfef042528ae74f3,
    0x3ffe040f23897204,
    0x3fa546d3f9e7b80b,
    0x3fac7de5082cf52c,
    0xbfca1e14bdfd2631,
    0x3ff0eabef06b3786,
];

/// The D65 white point.
const D65: [u64; 3] = [0x3fee6a22b3892ee8, 0x3ff0000000000000, 0x3ff16b8950763a19];

struct Tables {
    /// RGB to XYZ/white in Q12, row-major (X, Y, Z rows; R, G, B columns).
    to_xyz: [i32; 9],
    /// `LabCbrtTab_b`: f(t) of the Lab definition in Q15, indexed by Q11 linear values.
    cbrt: Vec<i32>,
    /// XYZ*white to RGB in Q12, row-major (R, G, B rows; X, Y, Z columns).
    to_rgb: [i32; 9],
    /// `LabToYF_b`: (Y, f(Y)) in Q14 for each 8-bit L.
    l_to_yf: [(i32, i32); 256],
    /// `abToXZ_b`: f^-1 in Q14, indexed by f(X) or f(Z) - `MIN_AB`.
    ab_to_xz: Vec<i32>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(build_tables)
}

fn build_tables() -> Tables {
    let m = RGB2XYZ.map(f64::from_bits);
    let mi = XYZ2RGB.map(f64::from_bits);
    let white = D65.map(f64::from_bits);
    let lshift = (1 << LAB_SHIFT) as f64;
    let round = |v: f64| v.round_ties_even() as i32;

    let mut to_xyz = [0; 9];
    let mut to_rgb = [0; 9];
    for i in 0..3 {
        for j in 0..3 {
            to_xyz[i * 3 + j] = round(lshift * m[i * 3 + j] / white[i]);
            // Column i of the inverse matrix is scaled by white[i] (X and Z only).
            to_rgb[j * 3 + i] = round(lshift * mi[j * 3 + i] * white[i]);
        }
    }

    // The f32 arithmetic mirrors OpenCV's softfloat, which is IEEE single precision.
    let lthresh = 216f32 / 24389f32;
    let lscale = 841f32 / 108f32;
    let lbias = 16f32 / 116f32;
    let scale = 1f32 / (255 * (1 << GAMMA_SHIFT)) as f32;
    let lshift2 = (1 << LAB_SHIFT2) as f32;
    let cbrt = (0..CBRT_TAB_SIZE)
        .map(|i| {
            let x = scale * i as f32;
            let f = if x < lthresh {
                x.mul_add(lscale, lbias)
            } else {
                softfloat_cbrt(x)
            };
            (lshift2 * f).round_ties_even() as i32
        })
        .collect();

    let mut l_to_yf = [(0, 0); 256];
    for (i, yf) in l_to_yf.iter_mut().enumerate() {
        let i = i as i32;
        *yf = if i <= 20 {
            let y = (i * BASE * 20 * 9) as f32 / (17 * 29 * 29 * 29) as f32;
            let ify = BASE as f32 * (16f32 / 116f32 + (i * 5) as f32 / (3 * 17 * 29) as f32);
            (y.round_ties_even() as i32, ify.round_ties_even() as i32)
        } else {
            let fy = (i * 100 * BASE) as f32 / (255 * 116) as f32 + (16 * BASE) as f32 / 116f32;
            let y = fy * fy * fy / (BASE * BASE) as f32;
            (y.round_ties_even() as i32, fy.round_ties_even() as i32)
        };
    }

    let ab_to_xz = (MIN_AB..BASE * 9 / 4 + MIN_AB)
        .map(|i| {
            if i <= 3390 {
                i * 108 / 841 - BASE * 16 / 116 * 108 / 841
            } else {
                i * i / BASE * i / BASE
            }
        })
        .collect();

    Tables {
        to_xyz,
        cbrt,
        to_rgb,
        l_to_yf,
        ab_to_xz,
    }
}

/// OpenCV's `softfloat` cube root (Turkowski's rational approximation on the mantissa in
/// double, truncated to single): not always correctly rounded, and the table must have its
/// exact values (`(x as f64).cbrt()` differs at one entry, which changes L by 1 for 6766
/// colours).
fn softfloat_cbrt(x: f32) -> f32 {
    if x.is_nan() || x.is_infinite() {
        return x;
    }
    let bits = x.to_bits();
    let sign = bits >> 31;
    let ex = ((bits >> 23) & 0xff) as i32 - 127;
    let mut shx = ex % 3;
    if shx >= 0 {
        shx -= 3;
    }
    let ex = (ex - shx) / 3 - 1;
    let frac = (bits & 0x7f_ffff) as u64;
    // 0.125 <= fr < 1
    let fr = f64::from_bits(((shx + 1023) as u64) << 52 | frac << 29);
    let a = [
        0x4046a09e6653ba70u64,
        0x406808f46c6116e0,
        0x405dca97439cae14,
        0x402add70d2827500,
        0x3fc4f15f83f55d2d,
        0x402d9e20660edb21,
        0x4062ff15c0285815,
        0x406510d06a8112ce,
        0x4040fecbc9e2c375,
    ]
    .map(f64::from_bits);
    let num = (((a[0] * fr + a[1]) * fr + a[2]) * fr + a[3]) * fr + a[4];
    let den = (((a[5] * fr + a[6]) * fr + a[7]) * fr + a[8]) * fr + 1.0;
    let fr = num / den;
    if bits & 0x7fff_ffff == 0 {
        return 0.0;
    }
    let mant = ((fr.to_bits() & ((1 << 52) - 1)) >> 29) as u32;
    f32::from_bits(
        (sign << 31)
            .wrapping_add(((ex + 127) as u32) << 23)
            .wrapping_add(mant),
    )
}

/// Rounding right shift as OpenCV's `CV_DESCALE`.
#[inline]
fn descale(v: i32, n: u32) -> i32 {
    (v + (1 << (n - 1))) >> n
}

/// One RGB pixel to 8-bit Lab (L in 0..=255 for 0..=100, a and b offset by 128).
#[inline]
fn rgb_to_lab(t: &Tables, r: u8, g: u8, b: u8) -> [u8; 3] {
    let (r, g, b) = (
        (r as i32) << GAMMA_SHIFT,
        (g as i32) << GAMMA_SHIFT,
        (b as i32) << GAMMA_SHIFT,
    );
    let c = &t.to_xyz;
    let f = |k: usize| t.cbrt[descale(r * c[k] + g * c[k + 1] + b * c[k + 2], LAB_SHIFT) as usize];
    let (fx, fy, fz) = (f(0), f(3), f(6));
    const L_SCALE: i32 = (116 * 255 + 50) / 100;
    const L_SHIFT: i32 = -((16 * 255 * (1 << LAB_SHIFT2) + 50) / 100);
    const AB_BIAS: i32 = 128 * (1 << LAB_SHIFT2);
    let l = descale(L_SCALE * fy + L_SHIFT, LAB_SHIFT2);
    let a = descale(500 * (fx - fy) + AB_BIAS, LAB_SHIFT2);
    let bb = descale(200 * (fy - fz) + AB_BIAS, LAB_SHIFT2);
    [sat_u8(l), sat_u8(a), sat_u8(bb)]
}

/// One 8-bit Lab pixel back to RGB.
#[inline]
fn lab_to_rgb(t: &Tables, l: u8, a: u8, b: u8) -> [u8; 3] {
    let (y, ify) = t.l_to_yf[l as usize];
    let adiv = ((5 * a as i32 * 53687 + (1 << 7)) >> 13) - 128 * BASE / 500;
    let bdiv = ((b as i32 * 41943 + (1 << 4)) >> 9) - 128 * BASE / 200 + 1;
    let x = t.ab_to_xz[(ify + adiv - MIN_AB) as usize];
    let z = t.ab_to_xz[(ify - bdiv - MIN_AB) as usize];
    let c = &t.to_rgb;
    // Wrapping as OpenCV's int arithmetic does on every platform it runs on.
    let chan = |k: usize| {
        let v = c[k]
            .wrapping_mul(x)
            .wrapping_add(c[k + 1].wrapping_mul(y))
            .wrapping_add(c[k + 2].wrapping_mul(z))
            .wrapping_add(1 << (LAB2RGB_SHIFT - 1))
            >> LAB2RGB_SHIFT;
        let v = v.clamp(0, (1 << INV_GAMMA_SHIFT) - 1);
        sat_u8(((v << 8) - v) >> INV_GAMMA_SHIFT)
    };
    [chan(0), chan(3), chan(6)]
}

#[inline]
fn sat_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// Rows per rayon task for the conversions.
const ROWS_PER_TASK: usize = 32;

/// `cvtColor(COLOR_LBGR2Lab)` on an RGB image, into three planes L, a, b.
pub fn rgb_to_lab_planes(rgb: &RgbImage) -> [Vec<u8>; 3] {
    let t = tables();
    let n = rgb.as_raw().len() / 3;
    let w = rgb.width() as usize;
    let bands = Bands::fixed(rgb.height() as usize, ROWS_PER_TASK);
    let mut planes = [vec![0u8; n], vec![0u8; n], vec![0u8; n]];
    let [pl, pa, pb] = &mut planes;
    bands
        .chunks_mut(pl, w)
        .zip(bands.chunks_mut(pa, w))
        .zip(bands.chunks_mut(pb, w))
        .zip(bands.chunks(rgb.as_raw(), w * 3))
        .for_each(|(((l, a), b), src)| {
            for (i, px) in src.chunks_exact(3).enumerate() {
                let [vl, va, vb] = rgb_to_lab(t, px[0], px[1], px[2]);
                l[i] = vl;
                a[i] = va;
                b[i] = vb;
            }
        });
    planes
}

/// `cvtColor(COLOR_Lab2LBGR)` from three planes L, a, b into an RGB image.
pub fn lab_planes_to_rgb(planes: [&[u8]; 3], width: u32, height: u32) -> RgbImage {
    let t = tables();
    let w = width as usize;
    let bands = Bands::fixed(height as usize, ROWS_PER_TASK);
    let mut raw = vec![0u8; w * height as usize * 3];
    bands
        .chunks_mut(&mut raw[..], w * 3)
        .zip(bands.chunks(planes[0], w))
        .zip(bands.chunks(planes[1], w))
        .zip(bands.chunks(planes[2], w))
        .for_each(|(((dst, l), a), b)| {
            for (i, px) in dst.chunks_exact_mut(3).enumerate() {
                px.copy_from_slice(&lab_to_rgb(t, l[i], a[i], b[i]));
            }
        });
    // The buffer is sized from the dimensions, so this cannot fail.
    RgbImage::from_raw(width, height, raw).expect("buffer sized from dimensions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_match_opencv_constraints() {
        let t = tables();
        for row in t.to_xyz.chunks(3) {
            assert!(row.iter().all(|&c| c >= 0));
            assert!(row.iter().sum::<i32>() < 2 * (1 << LAB_SHIFT));
        }
        // Every index the matrix can produce stays inside the cube-root table.
        for row in t.to_xyz.chunks(3) {
            let idx = descale((255 << GAMMA_SHIFT) * row.iter().sum::<i32>(), LAB_SHIFT);
            assert!((idx as usize) < CBRT_TAB_SIZE);
        }
    }

    #[test]
    fn primaries_match_opencv() {
        // cv2.cvtColor(..., COLOR_LBGR2Lab) and back, values from OpenCV 5.0.
        let t = tables();
        assert_eq!(rgb_to_lab(t, 0, 0, 0), [0, 128, 128]);
        assert_eq!(rgb_to_lab(t, 255, 255, 255), [255, 128, 128]);
        assert_eq!(rgb_to_lab(t, 255, 0, 0), [136, 208, 195]);
        assert_eq!(rgb_to_lab(t, 0, 255, 0), [224, 42, 211]);
        assert_eq!(rgb_to_lab(t, 0, 0, 255), [82, 207, 20]);
        assert_eq!(lab_to_rgb(t, 255, 128, 128), [254, 254, 254]);
        assert_eq!(lab_to_rgb(t, 0, 128, 128), [0, 0, 0]);
    }
}
