//! Colour conversions and the `color-manipulation` op.
//!
//! Grey is OpenCV's `cvtColor(BGR2GRAY)` for 8-bit images: 15-bit fixed point with the
//! weights 0.299 R + 0.587 G + 0.114 B (OpenCV's `RY15`, `GY15`, `BY15`), rounded half
//! up, so results are bit-exact (checked on random images against OpenCV 5.0); the
//! kernels are in `ops::gray`.
//!
//! The `hue-saturation` mode is defined by OpenCV's 8-bit HSV round trip:
//! `hsv = cvtColor(bgr, BGR2HSV)`, `H = (H + round(hue / 2)) mod 180`,
//! `S = saturate_cast<uchar>(S * saturation)` (in `f32`, half to even),
//! `out = cvtColor(hsv, HSV2BGR)`. Both conversions are reproduced exactly from
//! `color_hsv.simd.hpp`: BGR2HSV is integer (12-bit division tables); HSV2BGR is `f32` and
//! OpenCV runs it in two ways within each row: blocks of SIMD pixels (values truncated to
//! 8 bits) and a scalar tail (rounded), and its AVX2 build contracts `1 - s*h` into a fused
//! multiply-add. Which pixels fall in the tail depends on the SIMD width OpenCV dispatched
//! to, so [`HsvProfile`] picks it the way OpenCV does on this CPU, or without AVX2 when
//! `PRISM_KERNELS=portable` forces that level (`ops::dispatch`). Checked against
//! OpenCV 5.0 for every (H, S, V) triple, AVX2 and with `OPENCV_CPU_DISABLE=AVX2,FMA3`.

use image::{GrayImage, RgbImage};
use rayon::prelude::*;

use super::bands::Bands;
use super::dispatch::avx2_fma;
use super::params::{choice, params, ranged};
use crate::frame::Pixels;

/// Rows per rayon task: big enough to amortise scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 64;

/// OpenCV's `cvtColor(img, COLOR_BGR2GRAY)` on an RGB image.
pub fn rgb_to_gray(rgb: &RgbImage) -> GrayImage {
    let (w, h) = rgb.dimensions();
    let raw = super::gray::rgb_to_gray(rgb.as_raw(), w as usize, h as usize);
    GrayImage::from_raw(w, h, raw).expect("buffer sized from dimensions")
}

/// OpenCV's `cvtColor(img, COLOR_GRAY2BGR)`: the grey value in all three channels.
pub fn gray_to_rgb(gray: &GrayImage) -> RgbImage {
    let (w, h) = gray.dimensions();
    let mut raw = Vec::with_capacity(gray.as_raw().len() * 3);
    for &g in gray.as_raw() {
        raw.extend_from_slice(&[g, g, g]);
    }
    RgbImage::from_raw(w, h, raw).expect("buffer sized from dimensions")
}

choice! {
    /// What `color-manipulation` does.
    pub enum ColorMode {
        /// OpenCV's `bitwise_not` (the original app's op).
        Invert = "invert",
        /// `BGR2GRAY`, shown in colour.
        Grayscale = "grayscale",
        /// The classic sepia matrix.
        Sepia = "sepia",
        /// Shift H and scale S in OpenCV's 8-bit HSV.
        HueSaturation = "hue-saturation",
    }
}

ranged! {
    /// A hue rotation in degrees.
    pub struct Hue(f64): float -180.0..=180.0;
}

ranged! {
    /// A saturation factor.
    pub struct Saturation(f64): float 0.0..=4.0;
}

params! {
    /// Parameters of `color-manipulation`.
    pub struct ColorParams {
        /// What to do; `invert` is the original app's `bitwise_not`.
        pub mode: ColorMode = ColorMode::Invert => "mode",
            "invert = bitwise_not; grayscale = BGR2GRAY shown in colour; sepia = classic sepia matrix; hue-saturation = shift H and scale S in OpenCV's 8-bit HSV";
        /// Hue rotation in degrees for `hue-saturation` (OpenCV's 8-bit H moves by half of it).
        pub hue: Hue = Hue::of(0.0) => "hue", "hue-saturation: hue rotation in degrees";
        /// Saturation factor for `hue-saturation`.
        pub saturation: Saturation = Saturation::of(1.0)
            => "saturation", "hue-saturation: saturation factor";
    }
}

// The classic sepia matrix (rows: output R, G, B; columns: input R, G, B) at 1 << 10,
// each weight rounded; the sum is rounded half up and saturated.
const SEPIA: [[u32; 3]; 3] = [[402, 787, 194], [357, 702, 172], [279, 547, 134]];
const SEPIA_SHIFT: u32 = 10;

/// Runs `color-manipulation` on an image; grey inputs stay grey for `invert`.
pub fn manipulate(input: Pixels, p: &ColorParams) -> Pixels {
    match p.mode {
        ColorMode::Invert => invert(input),
        ColorMode::Grayscale => Pixels::Rgb(gray_to_rgb(&input.to_gray())),
        ColorMode::Sepia => Pixels::Rgb(sepia(&input.into_rgb())),
        ColorMode::HueSaturation => Pixels::Rgb(hue_saturation(
            &input.into_rgb(),
            p.hue.get(),
            p.saturation.get(),
            HsvProfile::detect(),
        )),
    }
}

/// OpenCV's `bitwise_not`.
pub fn invert(input: Pixels) -> Pixels {
    fn not_in_place(buf: &mut [u8]) {
        buf.par_chunks_mut(1 << 16)
            .for_each(|c| c.iter_mut().for_each(|v| *v = !*v));
    }
    match input {
        Pixels::Gray(mut g) => {
            not_in_place(&mut g);
            Pixels::Gray(g)
        }
        Pixels::Rgb(mut c) => {
            not_in_place(&mut c);
            Pixels::Rgb(c)
        }
    }
}

/// Sepia tone with the classic matrix, in fixed point.
pub fn sepia(rgb: &RgbImage) -> RgbImage {
    let mut out = rgb.clone();
    out.par_chunks_mut(3 << 14).for_each(|chunk| {
        for px in chunk.chunks_exact_mut(3) {
            let (r, g, b) = (px[0] as u32, px[1] as u32, px[2] as u32);
            for (o, w) in px.iter_mut().zip(SEPIA.iter()) {
                let v = (w[0] * r + w[1] * g + w[2] * b + (1 << (SEPIA_SHIFT - 1))) >> SEPIA_SHIFT;
                *o = v.min(255) as u8;
            }
        }
    });
    out
}

// BGR2HSV's 12-bit division tables (RGB2HSV_b::TablesSingleton, hrange 180).
const HSV_SHIFT: u32 = 12;

struct HsvTables {
    sdiv: [i32; 256],
    hdiv: [i32; 256],
}

static HSV_TABLES: std::sync::LazyLock<HsvTables> = std::sync::LazyLock::new(|| {
    let mut t = HsvTables {
        sdiv: [0; 256],
        hdiv: [0; 256],
    };
    for i in 1..256 {
        // saturate_cast<int>(double) rounds half to even.
        t.sdiv[i] = ((255 << HSV_SHIFT) as f64 / i as f64).round_ties_even() as i32;
        t.hdiv[i] = ((180 << HSV_SHIFT) as f64 / (6.0 * i as f64)).round_ties_even() as i32;
    }
    t
});

/// How OpenCV's HSV2BGR runs on a CPU: pixels per SIMD block (the rest of a row is the
/// scalar tail) and whether the build fuses `1 - s*h` into one multiply-add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HsvProfile {
    /// Pixels per SIMD iteration: 4 vectors of `f32` lanes.
    pub block: usize,
    /// Whether `1 - s*h` is a fused multiply-add.
    pub fma: bool,
}

impl HsvProfile {
    /// OpenCV 5's AVX2 dispatch (8 lanes, FMA contraction).
    pub const AVX2: HsvProfile = HsvProfile {
        block: 32,
        fma: true,
    };
    /// OpenCV 5's SSE2/SSE4.1 code (4 lanes, no FMA), on x86 CPUs without AVX2.
    pub const SSE: HsvProfile = HsvProfile {
        block: 16,
        fma: false,
    };

    /// The profile OpenCV picks on a CPU like this one at the process's kernel level
    /// ([`crate::ops::dispatch::kernels`]). On x86-64 it follows OpenCV's dispatch (AVX2
    /// needs FMA too); elsewhere it assumes NEON-like 4 lanes with contraction, which is
    /// not checked against OpenCV.
    pub fn detect() -> HsvProfile {
        #[cfg(target_arch = "x86_64")]
        {
            match crate::ops::dispatch::kernels() {
                crate::ops::dispatch::Kernels::Avx2 => HsvProfile::AVX2,
                crate::ops::dispatch::Kernels::Portable => HsvProfile::SSE,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            HsvProfile {
                block: 16,
                fma: true,
            }
        }
    }
}

/// Shifts hue and scales saturation through OpenCV's 8-bit HSV, as the module doc says.
pub fn hue_saturation(rgb: &RgbImage, hue: f64, saturation: f64, profile: HsvProfile) -> RgbImage {
    let (w, h) = rgb.dimensions();
    let mut out = RgbImage::new(w, h);
    let w = w as usize;
    if w == 0 {
        return out;
    }
    let shift = (hue / 2.0).round_ties_even() as i32;
    let sat = saturation as f32;
    let tables = &*HSV_TABLES;
    let bands = Bands::fixed(h as usize, ROWS_PER_TASK);
    bands
        .chunks_mut(&mut out, w * 3)
        .zip(bands.chunks(rgb.as_raw(), w * 3))
        .for_each(|(dst, src)| {
            for (d, s) in dst.chunks_exact_mut(w * 3).zip(src.chunks_exact(w * 3)) {
                hsv_row_dispatch(d, s, shift, sat, profile, tables);
            }
        });
    out
}

avx2_fma! {
    /// [`hsv_row`], with hardware FMA at the AVX2 level so `mul_add` is one instruction,
    /// not a library call (the results are the same either way).
    fn hsv_row_dispatch(
        dst: &mut [u8],
        src: &[u8],
        shift: i32,
        sat: f32,
        profile: HsvProfile,
        t: &HsvTables,
    ) {
        hsv_row(dst, src, shift, sat, profile, t);
    }
}

/// One row: BGR2HSV, the shift and scale, HSV2BGR (SIMD block semantics, then the tail).
#[inline(always)]
fn hsv_row(dst: &mut [u8], src: &[u8], shift: i32, sat: f32, p: HsvProfile, t: &HsvTables) {
    let w = src.len() / 3;
    let simd_end = w / p.block * p.block;
    for (x, (o, px)) in dst.chunks_exact_mut(3).zip(src.chunks_exact(3)).enumerate() {
        let (r, g, b) = (px[0] as i32, px[1] as i32, px[2] as i32);
        // RGB2HSV_b, scalar form (its SIMD form gives the same integers).
        let v = r.max(g).max(b);
        let diff = v - r.min(g).min(b);
        let half = 1 << (HSV_SHIFT - 1);
        let s = (diff * t.sdiv[v as usize] + half) >> HSV_SHIFT;
        let hh = if v == r {
            g - b
        } else if v == g {
            b - r + 2 * diff
        } else {
            r - g + 4 * diff
        };
        let mut hh = (hh * t.hdiv[diff as usize] + half) >> HSV_SHIFT;
        if hh < 0 {
            hh += 180;
        }
        let hue = (hh + shift).rem_euclid(180);
        let s = (s as f32 * sat).round_ties_even().min(255.0);
        let rgb = hsv_to_rgb(hue, s as u8, v as u8, x < simd_end, p.fma);
        o.copy_from_slice(&rgb);
    }
}

/// HSV2RGB_b for `h < 180`: `simd` selects the SIMD block's truncation over the scalar
/// tail's rounding (the sector and table values are the same in both for such `h`).
#[inline(always)]
fn hsv_to_rgb(h: i32, s: u8, v: u8, simd: bool, fma: bool) -> [u8; 3] {
    const HSCALE: f32 = 6.0 / 180.0;
    let one_minus = |a: f32, b: f32| {
        if fma {
            (-a).mul_add(b, 1.0)
        } else {
            1.0 - a * b
        }
    };
    let hf = h as f32 * HSCALE;
    let sector = hf.trunc();
    let frac = hf - sector;
    let s = s as f32 * (1.0 / 255.0);
    let v = v as f32 * (1.0 / 255.0);
    let tab = [
        v,
        v * (1.0 - s),
        v * one_minus(s, frac),
        v * one_minus(s, 1.0 - frac),
    ];
    // Which table entry is B, G, R in each sector (sector_data in color_hsv.simd.hpp).
    const SECTOR: [[usize; 3]; 6] = [
        [1, 3, 0],
        [1, 0, 2],
        [3, 0, 1],
        [0, 2, 1],
        [0, 1, 3],
        [2, 1, 0],
    ];
    let [bi, gi, ri] = SECTOR[sector as usize];
    let to_u8 = |f: f32| {
        let f = f * 255.0;
        let f = if simd { f.trunc() } else { f.round_ties_even() };
        f.clamp(0.0, 255.0) as u8
    };
    [to_u8(tab[ri]), to_u8(tab[gi]), to_u8(tab[bi])]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_weights_match_opencv_on_primaries() {
        // cv2.cvtColor on pure B, G, R pixels gives 29, 150, 76.
        let img = RgbImage::from_raw(3, 1, vec![0, 0, 255, 0, 255, 0, 255, 0, 0]).unwrap();
        assert_eq!(rgb_to_gray(&img).as_raw(), &vec![29, 150, 76]);
    }

    #[test]
    fn invert_twice_is_identity() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 70, 9]));
        let back = invert(invert(Pixels::Rgb(img.clone())));
        assert_eq!(back, Pixels::Rgb(img));
    }

    #[test]
    fn hsv_identity_settings_keep_most_colours() {
        // hue 0, saturation 1 is OpenCV's HSV round trip, lossy but close.
        let img = RgbImage::from_fn(64, 4, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 60) as u8, 255 - (x * 3) as u8])
        });
        for p in [HsvProfile::AVX2, HsvProfile::SSE] {
            let out = hue_saturation(&img, 0.0, 1.0, p);
            for (a, b) in out.as_raw().iter().zip(img.as_raw()) {
                assert!((*a as i32 - *b as i32).abs() <= 4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn hsv_known_values_from_opencv() {
        // cv2.cvtColor(np.uint8([[[h, s, v]]]), cv2.COLOR_HSV2BGR) on one pixel (scalar
        // tail, AVX2 build), and the same pixels inside a 32-wide row (SIMD block).
        let tail = [((1, 153, 25), [10, 10, 25]), ((3, 187, 75), [20, 26, 75])];
        for ((h, s, v), bgr) in tail {
            let rgb = hsv_to_rgb(h, s, v, false, true);
            assert_eq!(rgb, [bgr[2], bgr[1], bgr[0]], "tail {h} {s} {v}");
        }
        let block = [((1, 90, 85), [55, 56, 85]), ((1, 102, 75), [44, 45, 75])];
        for ((h, s, v), bgr) in block {
            let rgb = hsv_to_rgb(h, s, v, true, true);
            assert_eq!(rgb, [bgr[2], bgr[1], bgr[0]], "block {h} {s} {v}");
        }
    }

    #[test]
    fn sepia_saturates_white() {
        let img = RgbImage::from_pixel(1, 1, image::Rgb([255, 255, 255]));
        assert_eq!(sepia(&img).as_raw(), &vec![255, 255, 239]);
    }
}
