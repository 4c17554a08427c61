//! `histogram-equalization`: OpenCV's `equalizeHist` on the grey image, bit-exact.
//!
//! Like OpenCV's: a histogram counted in parallel bands and summed, the lookup table, then
//! the table applied in parallel. From a colour input the grey bands are counted as soon as
//! they are converted (still in cache), and the table is applied to the grey image in place.

use image::{GrayImage, RgbImage};
use rayon::prelude::*;

use super::gray;
use super::params::params;
use crate::frame::Pixels;

params! {
    /// `histogram-equalization` takes no parameters (the original called
    /// `equalizeHist(gray)`).
    pub struct EqualizeParams {}
}

/// OpenCV's `equalizeHist`: the lookup table is built in `f32` exactly as OpenCV does
/// (`saturate_cast<uchar>(sum * scale)`, rounding half to even), so outputs are identical.
pub fn equalize_hist(src: &GrayImage) -> GrayImage {
    let (w, h) = (src.width() as usize, src.height() as usize);
    let raw = src.as_raw();
    let lut = lut_from_hist(&gray::par_histogram(raw), raw.len() as u64);
    let (out, _) = gray::par_fill(raw.len(), gray::bands(w, h), w, |rows, dst| {
        gray::apply_lut(&raw[rows.start * w..rows.end * w], &lut, dst)
    });
    GrayImage::from_raw(src.width(), src.height(), out).expect("buffer sized from dimensions")
}

/// `histogram-equalization` on any input: [`equalize_hist`] of its grey image, reusing the
/// input's grey buffer, or counting a colour input's grey rows as they are converted.
pub fn equalize(input: Pixels) -> GrayImage {
    match input {
        Pixels::Gray(mut g) => {
            let lut = lut_from_hist(&gray::par_histogram(&g), g.as_raw().len() as u64);
            apply_in_place(&mut g, &lut);
            g
        }
        Pixels::Rgb(rgb) => equalize_rgb(&rgb),
    }
}

/// [`equalize_hist`] of `cvtColor(BGR2GRAY)` of an RGB image, in one pass for both.
pub fn equalize_rgb(rgb: &RgbImage) -> GrayImage {
    let (w, h) = rgb.dimensions();
    let (raw, hists) =
        gray::rgb_to_gray_then(rgb.as_raw(), w as usize, h as usize, gray::histogram);
    let hist = hists.into_iter().fold([0; 256], gray::add_histograms);
    let lut = lut_from_hist(&hist, raw.len() as u64);
    let mut g = GrayImage::from_raw(w, h, raw).expect("buffer sized from dimensions");
    apply_in_place(&mut g, &lut);
    g
}

/// `v = lut[v]` over the whole image, in parallel.
fn apply_in_place(g: &mut GrayImage, lut: &[u8; 256]) {
    let w = g.width() as usize;
    let bands = gray::bands(w, g.height() as usize);
    bands
        .chunks_mut(g, w)
        .for_each(|c| gray::apply_lut_in_place(c, lut));
}

fn lut_from_hist(hist: &[u32; 256], total: u64) -> [u8; 256] {
    let mut lut = [0u8; 256];
    let Some(first) = hist.iter().position(|&c| c != 0) else {
        return lut;
    };
    if hist[first] as u64 == total {
        // A flat image maps to its own value, as OpenCV does.
        return [first as u8; 256];
    }
    let scale = 255.0f32 / (total - hist[first] as u64) as f32;
    let mut sum: i64 = 0;
    for i in first + 1..256 {
        sum += hist[i] as i64;
        let v = (sum as i32 as f32 * scale).round_ties_even();
        lut[i] = v.clamp(0.0, 255.0) as u8;
    }
    lut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_image_keeps_its_value() {
        let img = GrayImage::from_pixel(4, 4, image::Luma([77]));
        assert_eq!(equalize_hist(&img), img);
    }

    #[test]
    fn two_levels_stretch_to_full_range() {
        let img = GrayImage::from_raw(2, 1, vec![10, 20]).unwrap();
        assert_eq!(equalize_hist(&img).as_raw(), &vec![0, 255]);
    }

    #[test]
    fn every_path_gives_the_same_image() {
        // From grey (borrowed and owned) and from colour (fused with the conversion),
        // on a size that leaves partial bands and partial vector blocks.
        let rgb = RgbImage::from_fn(517, 301, |x, y| {
            let v = (x * 7 + y * 13) ^ (x * y);
            image::Rgb([v as u8, (v >> 3) as u8, (x + 2 * y) as u8])
        });
        let grey = crate::ops::color::rgb_to_gray(&rgb);
        let want = equalize_hist(&grey);
        assert_ne!(want, grey);
        assert_eq!(equalize(Pixels::Gray(grey)), want);
        assert_eq!(equalize(Pixels::Rgb(rgb.clone())), want);
        assert_eq!(equalize_rgb(&rgb), want);
    }

    #[test]
    fn empty_images_stay_empty() {
        for (w, h) in [(0, 0), (0, 5), (5, 0)] {
            assert_eq!(equalize_hist(&GrayImage::new(w, h)).dimensions(), (w, h));
            assert_eq!(equalize_rgb(&RgbImage::new(w, h)).dimensions(), (w, h));
        }
    }
}
