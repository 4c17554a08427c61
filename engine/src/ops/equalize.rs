//! `histogram-equalization`: OpenCV's `equalizeHist` on the grey image, bit-exact.

use image::GrayImage;
use rayon::prelude::*;

use super::params::params;

params! {
    /// `histogram-equalization` takes no parameters (the original called
    /// `equalizeHist(gray)`).
    pub struct EqualizeParams {}
}

/// OpenCV's `equalizeHist`: the lookup table is built in `f32` exactly as OpenCV does
/// (`saturate_cast<uchar>(sum * scale)`, rounding half to even), so outputs are identical.
pub fn equalize_hist(src: &GrayImage) -> GrayImage {
    let raw = src.as_raw();
    let hist = raw
        .par_chunks(1 << 16)
        .map(|c| {
            let mut h = [0u32; 256];
            for &v in c {
                h[v as usize] += 1;
            }
            h
        })
        .reduce(
            || [0u32; 256],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let lut = lut_from_hist(&hist, raw.len() as u64);
    let mut out = src.clone();
    out.par_chunks_mut(1 << 16)
        .for_each(|c| c.iter_mut().for_each(|v| *v = lut[*v as usize]));
    out
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
}
