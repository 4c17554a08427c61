//! Colour conversions and the `color-manipulation` op.
//!
//! Grey is OpenCV's `cvtColor(BGR2GRAY)` for 8-bit images: 15-bit fixed point with the
//! weights 0.299 R + 0.587 G + 0.114 B (OpenCV's `RY15`, `GY15`, `BY15`), rounded half
//! up, so results are bit-exact (checked on random images against OpenCV 5.0).

use image::{GrayImage, RgbImage};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::params::{Kind, ParamSpec, Params};
use crate::frame::Pixels;

// OpenCV's 15-bit grey weights (color.hpp): RY15, GY15, BY15 at 1 << 15.
const R2Y: u32 = 9798;
const G2Y: u32 = 19235;
const B2Y: u32 = 3735;
const SHIFT: u32 = 15;

/// Rows per rayon task: big enough to amortise scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 64;

/// OpenCV's `cvtColor(img, COLOR_BGR2GRAY)` on an RGB image.
pub fn rgb_to_gray(rgb: &RgbImage) -> GrayImage {
    let (w, h) = rgb.dimensions();
    let mut out = GrayImage::new(w, h);
    let w = w as usize;
    if w == 0 {
        return out;
    }
    out.par_chunks_mut(w * ROWS_PER_TASK)
        .zip(rgb.as_raw().par_chunks(w * 3 * ROWS_PER_TASK))
        .for_each(|(dst, src)| {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(3)) {
                let v = s[0] as u32 * R2Y + s[1] as u32 * G2Y + s[2] as u32 * B2Y;
                *d = ((v + (1 << (SHIFT - 1))) >> SHIFT) as u8;
            }
        });
    out
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

/// Parameters of `color-manipulation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ColorParams {
    /// `invert` (the original app's `bitwise_not`), `grayscale` or `sepia`.
    pub mode: String,
}

impl Default for ColorParams {
    fn default() -> Self {
        Self {
            mode: "invert".into(),
        }
    }
}

impl Params for ColorParams {
    const SPECS: &'static [ParamSpec] = &[ParamSpec {
        key: "mode",
        kind: Kind::Choice(&["invert", "grayscale", "sepia"]),
        help: "invert = bitwise_not; grayscale = BGR2GRAY shown in colour; sepia = classic sepia matrix",
    }];
}

// The classic sepia matrix (rows: output R, G, B; columns: input R, G, B) at 1 << 10,
// each weight rounded; the sum is rounded half up and saturated.
const SEPIA: [[u32; 3]; 3] = [[402, 787, 194], [357, 702, 172], [279, 547, 134]];
const SEPIA_SHIFT: u32 = 10;

/// Runs `color-manipulation` on an image; grey inputs stay grey for `invert`.
pub fn manipulate(input: Pixels, p: &ColorParams) -> Pixels {
    match p.mode.as_str() {
        "grayscale" => Pixels::Rgb(gray_to_rgb(&input.to_gray())),
        "sepia" => Pixels::Rgb(sepia(&input.into_rgb())),
        _ => invert(input),
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
    fn sepia_saturates_white() {
        let img = RgbImage::from_pixel(1, 1, image::Rgb([255, 255, 255]));
        assert_eq!(sepia(&img).as_raw(), &vec![255, 255, 239]);
    }
}
