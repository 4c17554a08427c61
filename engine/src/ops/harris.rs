//! `corner-detection`: the original app's Harris corners, bit-exact to OpenCV 5.0.
//!
//! ```text
//! r = cv2.cornerHarris(gray, block, ksize, k)
//! r = cv2.dilate(r, None)
//! for (y, x) in argwhere(r > threshold * r.max()):
//!     cv2.circle(img, (x, y), radius, (0, 0, 255), -1)
//! ```
//!
//! [`corner_harris`] reproduces OpenCV's float `cornerHarris` (`BORDER_REFLECT_101`) to the
//! last bit on an AVX2 machine, where the golden references are made:
//! - `Dx`, `Dy`: float `Sobel` scaled by `1 / (2^(ksize-1) * block * 255)`, rounded as
//!   OpenCV's filter engine rounds ([`FloatSobel`]).
//! - `Dx²`, `Dx·Dy`, `Dy²` in `f32`, then an unnormalised `block × block` box filter:
//!   each row's window summed left to right in `f64`, then a running `f64` sum down each
//!   column over the whole image height (`SUM + new`, stored as `f32`, then `- old`).
//!   The running sum's rounding carries from the top of the image, so the columns are
//!   split into strips that each run from top to bottom, in parallel.
//! - `a·c - b·b - k·(a+c)²` with the rounding of OpenCV's `calcHarris` over the image as
//!   one flat line: its AVX loop (8 at a time, `k·((a+c)·(a+c))` in `f32`), then its
//!   4-wide loop (`(k·(a+c))·(a+c)`), then its scalar tail (in `f64`, `k` as a double).
//!
//! This model was fitted to `cv2.cornerHarris` and `cv2.Sobel` (OpenCV 5.0.0 wheel, IPP on
//! or off alike) on random images of many widths and heights, apertures 1 to 7 and blocks
//! 1 to 31, and matches every value. Prism computes the same on any CPU (its FMAs are
//! exact `mul_add`s); OpenCV itself rounds differently on CPUs without AVX2 and FMA.
//!
//! Dilation by a 3×3 square never changes the maximum, so the threshold is
//! `f32(threshold) * max(r)` in `f32`, as NumPy computes `0.1 * r.max()` for an `f32` array.
//! Circles are OpenCV's filled `Circle` (thickness -1, `LINE_8`): the midpoint-circle spans.
//!
//! Written here because no crate reproduces OpenCV's float rounding (imageproc's
//! `harris_corner` differs in kernels and borders) and to run on rayon.

use std::ops::Range;

use image::{GrayImage, ImageBuffer, Luma, RgbImage};
use rayon::prelude::*;

use super::bands::Bands;
use super::dispatch::avx2_fma;
use super::params::{params, ranged};
use super::sobel::{Aperture, Border, FloatSobel};
use super::{Features, KeyPoint, OpContext, OpError, OpOutput};
use crate::frame::Pixels;

/// A Harris response (`f32` per pixel, as `cornerHarris` returns it) and its maximum.
#[derive(Clone, Debug)]
pub struct Response {
    /// The response of every pixel.
    pub image: ImageBuffer<Luma<f32>, Vec<f32>>,
    /// The largest response (`-inf` for an empty image).
    pub max: f32,
}

ranged! {
    /// Neighbourhood size of the structure tensor (`cornerHarris` `blockSize`).
    pub struct BlockSize(i64): int 1..=31;
}

ranged! {
    /// Harris free parameter `k`.
    pub struct HarrisK(f64): float 0.0..=1.0;
}

ranged! {
    /// The fraction of the largest response a corner must exceed.
    pub struct CornerThreshold(f64): float 0.0..=1.0;
}

ranged! {
    /// Radius of the disc drawn on a corner, in pixels.
    pub struct Radius(i64): int 0..=100;
}

params! {
    /// Parameters of `corner-detection`. The defaults are the original app's:
    /// `cornerHarris(gray, 2, 3, 0.04)`, `> 0.1 * max`, circles of radius 5.
    pub struct HarrisParams {
        /// Neighbourhood size of the structure tensor (`blockSize`).
        pub block: BlockSize = BlockSize::of(2)
            => "block", "neighbourhood size (cornerHarris blockSize)";
        /// Sobel aperture (`ksize`).
        pub ksize: Aperture = Aperture::Three => "ksize", "Sobel aperture (cornerHarris ksize)";
        /// Harris free parameter.
        pub k: HarrisK = HarrisK::of(0.04) => "k", "Harris free parameter";
        /// A pixel is a corner where the dilated response exceeds `threshold * max`.
        pub threshold: CornerThreshold = CornerThreshold::of(0.1)
            => "threshold", "corners are where the dilated response exceeds threshold * its maximum";
        /// Radius of the filled red circle drawn on each corner pixel.
        pub radius: Radius = Radius::of(5)
            => "radius", "radius of the filled circle drawn on each corner pixel";
    }
}

/// Runs `corner-detection`: red discs on every corner pixel of the colour image, and one
/// keypoint per corner pixel (row-major order; `size` is the disc's diameter `2 * radius`,
/// `response` the pixel's Harris response, `angle` -1, `octave` 0).
pub fn detect_corners(
    input: Pixels,
    p: &HarrisParams,
    ctx: &OpContext,
) -> Result<OpOutput, OpError> {
    let gray = input.to_gray();
    let r = corner_harris(&gray, p.block, p.ksize, p.k.get(), ctx)?;
    ctx.report(0.8);
    let mask = corner_mask(&r, p.threshold.get());
    let corners: Vec<(u32, u32)> = mask
        .enumerate_pixels()
        .filter(|(_, _, v)| v[0] != 0)
        .map(|(x, y, _)| (x, y))
        .collect();
    let mut img = input.into_rgb();
    let radius = p.radius.get();
    draw_discs(&mut img, &corners, radius as usize);
    let keypoints = corners
        .iter()
        .map(|&(x, y)| KeyPoint {
            x: x as f32,
            y: y as f32,
            size: 2.0 * radius as f32,
            angle: -1.0,
            response: r.image.get_pixel(x, y)[0],
            octave: 0,
        })
        .collect();
    ctx.report(1.0);
    Ok(OpOutput {
        pixels: Pixels::Rgb(img),
        features: Some(Features {
            keypoints,
            descriptors: None,
        }),
    })
}

/// OpenCV's `cornerHarris(gray, block, ksize, k)` with the default `BORDER_REFLECT_101`.
pub fn corner_harris(
    gray: &GrayImage,
    block: BlockSize,
    ksize: Aperture,
    k: f64,
    ctx: &OpContext,
) -> Result<Response, OpError> {
    let block = block.get() as usize;
    let (w, h) = (gray.width() as usize, gray.height() as usize);
    let mut out = vec![0f32; w * h];
    let mut max = f32::NEG_INFINITY;
    if w > 0 && h > 0 {
        let strip = strip_width(w);
        let mut strips: Vec<Vec<&mut [f32]>> = (0..w.div_ceil(strip))
            .map(|_| Vec::with_capacity(h))
            .collect();
        for row in out.chunks_mut(w) {
            for (s, seg) in row.chunks_mut(strip).enumerate() {
                strips[s].push(seg);
            }
        }
        let job = Strip {
            gray,
            block,
            ksize,
            k,
            flat_len: w * h,
        };
        max = strips
            .into_par_iter()
            .enumerate()
            .map(|(s, rows)| job.run(s * strip, rows, ctx))
            .try_reduce(|| f32::NEG_INFINITY, |a, b| Ok(max2(a, b)))?;
    }
    let image = ImageBuffer::from_raw(gray.width(), gray.height(), out)
        .expect("buffer sized from dimensions");
    Ok(Response { image, max })
}

/// Columns per strip: a few strips per thread, a multiple of 8.
fn strip_width(w: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (w.div_ceil(4 * threads).div_ceil(8) * 8).max(32)
}

/// What every strip of one `cornerHarris` call shares.
struct Strip<'a> {
    gray: &'a GrayImage,
    block: usize,
    ksize: Aperture,
    k: f64,
    /// `w * h`: `calcHarris` sees the image as one line this long.
    flat_len: usize,
}

impl Strip<'_> {
    /// The response of columns `x0..x0 + rows[0].len()` for every row, top to bottom;
    /// returns its maximum.
    fn run(&self, x0: usize, mut rows: Vec<&mut [f32]>, ctx: &OpContext) -> Result<f32, OpError> {
        let (w, h) = (self.gray.width() as usize, self.gray.height() as usize);
        let (n, block) = (rows[0].len(), self.block);
        let anchor = block / 2;
        // Image columns read by the box windows of this strip (reflected at the edges).
        let cols: Vec<usize> = (0..n + block - 1)
            .map(|t| Border::Reflect101.index((x0 + t) as isize - anchor as isize, w))
            .collect();
        let lo = *cols.iter().min().expect("strip is not empty");
        let hi = cols.iter().max().expect("strip is not empty") + 1;
        let scale = 1.0 / ((1u32 << (self.ksize.get() - 1)) as f64 * block as f64 * 255.0);
        let mut sobel = FloatSobel::new(self.gray, self.ksize, scale);
        sobel.set_columns(lo, hi);

        let (mut dx, mut dy) = (vec![0f32; hi - lo], vec![0f32; hi - lo]);
        let mut cov = planes(hi - lo, 0f32);
        let mut window = planes(cols.len(), 0f32);
        // Box windows reaching past the image edge read reflected columns: the strip's
        // first `left` and last `right` window columns, copied one by one; the rest of
        // the window is one contiguous run of `cov`.
        let left = anchor.saturating_sub(x0);
        let right = (x0 + n + block - 1 - anchor).saturating_sub(w);
        let gather = left + right > 0;
        let run = (x0 + left - anchor - lo)..(x0 + cols.len() - right - anchor - lo);
        // Row sums of the last `block` padded rows, and the running column sums, per plane.
        let mut ring: Vec<[Vec<f64>; 3]> = (0..block).map(|_| planes(n, 0f64)).collect();
        let mut sum = planes(n, 0f64);
        let mut abc = planes(n, 0f32);
        let mut max = f32::NEG_INFINITY;

        for p in 0..h + block - 1 {
            if p % 64 == 0 {
                ctx.cancel.check()?;
            }
            let y = Border::Reflect101.index(p as isize - anchor as isize, h);
            sobel.row_derivatives(y, &mut dx, &mut dy);
            let [a, b, c] = &mut cov;
            products(&dx, &dy, a, b, c);
            if gather {
                for (win, c) in window.iter_mut().zip(&cov) {
                    win[left..left + run.len()].copy_from_slice(&c[run.clone()]);
                    let ends = (0..left).chain(cols.len() - right..cols.len());
                    for t in ends {
                        win[t] = c[cols[t] - lo];
                    }
                }
            }
            let src = if gather { &window } else { &cov };
            for (plane, out) in src.iter().zip(ring[p % block].iter_mut()) {
                row_sums(plane, block, out);
            }
            if p + 1 < block {
                for (s, r) in sum.iter_mut().zip(&ring[p % block]) {
                    accumulate(s, r);
                }
                continue;
            }
            let y = p + 1 - block;
            for ch in 0..3 {
                let (new, old) = (&ring[p % block][ch], &ring[y % block][ch]);
                column_step(&mut sum[ch], new, old, &mut abc[ch]);
            }
            let out = &mut *rows[y];
            self.response_row(y * w + x0, &abc, out);
            max = max2(max, max_of(out));
        }
        Ok(max)
    }

    /// `calcHarris` on the box sums of one row segment starting at flat index `flat`.
    fn response_row(&self, flat: usize, abc: &[Vec<f32>; 3], out: &mut [f32]) {
        let n8 = self.flat_len / 8 * 8;
        let n4 = if self.flat_len - n8 >= 4 { n8 + 4 } else { n8 };
        let split = |limit: usize| limit.clamp(flat, flat + out.len()) - flat;
        let (s8, s4) = (split(n8), split(n4));
        let [a, b, c] = abc;
        harris_avx(&a[..s8], &b[..s8], &c[..s8], self.k as f32, &mut out[..s8]);
        for i in s8..out.len() {
            let (a, b, c) = (a[i], b[i], c[i]);
            let s = a + c;
            out[i] = if i < s4 {
                // The 4-wide loop: v_ac_bb - v_k * v_ac * v_ac.
                (a * c - b * b) - (self.k as f32 * s) * s
            } else {
                // The scalar tail: (float)(a*c - b*b - k*(a + c)*(a + c)) with k a double.
                ((a * c - b * b) as f64 - self.k * s as f64 * s as f64) as f32
            };
        }
    }
}

/// Three planes of `n` values (one per structure tensor entry).
fn planes<T: Copy>(n: usize, v: T) -> [Vec<T>; 3] {
    [vec![v; n], vec![v; n], vec![v; n]]
}

avx2_fma! {
    /// `Dx²`, `Dx·Dy` and `Dy²` in `f32`.
    fn products(dx: &[f32], dy: &[f32], a: &mut [f32], b: &mut [f32], c: &mut [f32]) {
        let n = dx.len();
        let (dy, a, b, c) = (&dy[..n], &mut a[..n], &mut b[..n], &mut c[..n]);
        for i in 0..n {
            a[i] = dx[i] * dx[i];
            b[i] = dx[i] * dy[i];
            c[i] = dy[i] * dy[i];
        }
    }
}

avx2_fma! {
    /// Each window of `block` values summed left to right in `f64`, starting from zero.
    fn row_sums(plane: &[f32], block: usize, out: &mut [f64]) {
        let n = out.len();
        let (p0, p1) = (&plane[..n], &plane[1.min(block - 1)..][..n]);
        if block == 1 {
            for i in 0..n {
                out[i] = 0.0 + p0[i] as f64;
            }
            return;
        }
        // The first two terms in one pass (block 2, the default, needs no other).
        for i in 0..n {
            out[i] = (0.0 + p0[i] as f64) + p1[i] as f64;
        }
        for t in 2..block {
            let p = &plane[t..t + n];
            for i in 0..n {
                out[i] += p[i] as f64;
            }
        }
    }
}

avx2_fma! {
    /// Adds a row of sums into the running column sums (the first `block - 1` rows).
    fn accumulate(sum: &mut [f64], row: &[f64]) {
        for (s, &r) in sum.iter_mut().zip(row) {
            *s += r;
        }
    }
}

avx2_fma! {
    /// OpenCV's `ColumnSum<double, float>`: `s = SUM + new` is the output (as `f32`), then
    /// `SUM = s - old`.
    fn column_step(sum: &mut [f64], new: &[f64], old: &[f64], out: &mut [f32]) {
        let n = sum.len();
        let (new, old, out) = (&new[..n], &old[..n], &mut out[..n]);
        for i in 0..n {
            let v = sum[i] + new[i];
            out[i] = v as f32;
            sum[i] = v - old[i];
        }
    }
}

avx2_fma! {
    /// `calcHarrisLine_AVX`: `(a·c - b·b) - k·((a+c)·(a+c))`, all in `f32`.
    fn harris_avx(a: &[f32], b: &[f32], c: &[f32], k: f32, out: &mut [f32]) {
        let n = out.len();
        let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
        for i in 0..n {
            let s = a[i] + c[i];
            out[i] = (a[i] * c[i] - b[i] * b[i]) - k * (s * s);
        }
    }
}

/// `dilate(r, 3×3) > threshold * max(r)` as a 0/255 mask.
pub fn corner_mask(r: &Response, threshold: f64) -> GrayImage {
    let (w, h) = (r.image.width() as usize, r.image.height() as usize);
    let mut mask = GrayImage::new(r.image.width(), r.image.height());
    if w == 0 || h == 0 {
        return mask;
    }
    let data = r.image.as_raw();
    // NumPy: `threshold * r.max()` with a Python float and an f32 scalar is an f32 product.
    let limit = threshold as f32 * r.max;
    Bands::fixed(h, 32)
        .split_mut(&mut mask, w)
        .for_each(|(rows, band)| {
            let mut column_max = vec![0f32; w + 2];
            for (y, out) in rows.zip(band.chunks_mut(w)) {
                let src = |y: usize| &data[y * w..(y + 1) * w];
                let (up, down) = (src(y.saturating_sub(1)), src((y + 1).min(h - 1)));
                dilated_row_above(up, src(y), down, limit, &mut column_max, out);
            }
        });
    mask
}

avx2_fma! {
    /// One row of the 3×3 dilation compared with `limit`, 255 where above. Pixels outside
    /// the image are ignored (OpenCV's default `-inf` border): at the top and bottom `up`
    /// or `down` is the row itself, and `column_max` (scratch, `w + 2`) is padded with
    /// `-inf`.
    fn dilated_row_above(
        up: &[f32],
        row: &[f32],
        down: &[f32],
        limit: f32,
        column_max: &mut [f32],
        out: &mut [u8],
    ) {
        let w = row.len();
        let (up, down, out) = (&up[..w], &down[..w], &mut out[..w]);
        column_max[0] = f32::NEG_INFINITY;
        column_max[w + 1] = f32::NEG_INFINITY;
        let inner = &mut column_max[1..w + 1];
        for x in 0..w {
            inner[x] = max2(max2(up[x], row[x]), down[x]);
        }
        let (left, centre, right) = (&column_max[..w], &column_max[1..w + 1], &column_max[2..w + 2]);
        for x in 0..w {
            let m = max2(max2(left[x], centre[x]), right[x]);
            out[x] = if m > limit { 255 } else { 0 };
        }
    }
}

/// The larger of two responses (which are never NaN). Unlike `f32::max`, which must
/// handle NaN, this is one vector instruction.
#[inline(always)]
fn max2(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

avx2_fma! {
    /// The largest value, from eight running maxima so it vectorises.
    fn max_of(v: &[f32]) -> f32 {
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut chunks = v.chunks_exact(8);
        for c in &mut chunks {
            for k in 0..8 {
                lanes[k] = max2(lanes[k], c[k]);
            }
        }
        let rest = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| max2(m, x));
        lanes.iter().fold(rest, |m, &x| max2(m, x))
    }
}

/// Half-widths of OpenCV's filled `Circle` of radius `r`, by row offset from the centre.
fn disc_half_widths(r: usize) -> Vec<usize> {
    // The midpoint loop of drawing.cpp's Circle: rows ±dy span ±dx, rows ±dx span ±dy.
    let mut half = vec![0usize; r + 1];
    let (mut err, mut dx, mut dy, mut plus, mut minus) =
        (0i64, r as i64, 0i64, 1i64, 2 * r as i64 - 1);
    while dx >= dy {
        half[dy as usize] = half[dy as usize].max(dx as usize);
        half[dx as usize] = half[dx as usize].max(dy as usize);
        dy += 1;
        err += plus;
        plus += 2;
        let mask = if err <= 0 { 0 } else { -1 };
        err -= minus & mask;
        dx += mask;
        minus -= mask & 2;
    }
    half
}

/// `cv2.circle(img, (x, y), radius, (0, 0, 255), -1)` for every centre, clipped to the image.
/// `centres` must be in row-major order.
fn draw_discs(img: &mut RgbImage, centres: &[(u32, u32)], radius: usize) {
    const RED: [u8; 3] = [255, 0, 0];
    let w = img.width() as usize;
    if w == 0 || centres.is_empty() {
        return;
    }
    let half = disc_half_widths(radius);
    let h = img.height() as usize;
    Bands::fixed(h, 64)
        .split_mut(img, w * 3)
        .for_each(|(Range { start: y0, end: y1 }, band)| {
            let first = centres.partition_point(|&(_, cy)| (cy as usize + radius) < y0);
            for &(cx, cy) in &centres[first..] {
                let (cx, cy) = (cx as usize, cy as usize);
                if cy >= y1 + radius {
                    break;
                }
                for y in cy.saturating_sub(radius).max(y0)..(cy + radius + 1).min(y1) {
                    let hw = half[y.abs_diff(cy)];
                    let (xa, xb) = (cx.saturating_sub(hw), (cx + hw).min(w - 1));
                    let row = &mut band[(y - y0) * w * 3..(y - y0 + 1) * w * 3];
                    for px in row[xa * 3..(xb + 1) * 3].chunks_exact_mut(3) {
                        px.copy_from_slice(&RED);
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disc_of_radius_5_matches_opencv() {
        // cv2.circle(np.zeros((11, 11)), (5, 5), 5, 1, -1).sum(axis=1)[5:] // 2
        assert_eq!(disc_half_widths(5), [5, 4, 4, 4, 3, 0]);
        assert_eq!(disc_half_widths(7), [7, 6, 6, 6, 5, 4, 3, 0]);
        assert_eq!(disc_half_widths(0), [0]);
        assert_eq!(disc_half_widths(1), [1, 0]);
    }

    #[test]
    fn discs_clip_at_the_border() {
        let mut img = RgbImage::new(4, 3);
        draw_discs(&mut img, &[(0, 0)], 2);
        let red: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0 == [255, 0, 0])
            .map(|(x, y, _)| (x, y))
            .collect();
        assert_eq!(red, [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (0, 2)]);
    }

    #[test]
    fn square_corner_is_found() {
        let img = GrayImage::from_fn(40, 40, |x, y| {
            image::Luma([if (10..30).contains(&x) && (10..30).contains(&y) {
                220
            } else {
                20
            }])
        });
        let out = detect_corners(
            Pixels::Gray(img),
            &HarrisParams::default(),
            &OpContext::default(),
        )
        .unwrap();
        let kps = out.features.unwrap().keypoints;
        assert!(!kps.is_empty());
        // Every corner pixel lies near one of the square's four corners.
        for kp in &kps {
            let near = |v: f32| (v - 9.5).abs() < 3.0 || (v - 29.5).abs() < 3.0;
            assert!(near(kp.x) && near(kp.y), "{kp:?}");
        }
    }
}
