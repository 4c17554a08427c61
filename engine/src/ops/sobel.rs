//! Sobel derivatives and border rules shared by `edge-detection` and `corner-detection`,
//! each reproducing OpenCV 5.0 to the bit.
//!
//! - [`IntSobel`]: `Sobel(src, CV_16S, ...)` with `BORDER_REPLICATE`, as `Canny` calls it.
//!   Integer arithmetic, so exact; aperture 7 is OpenCV's `scale = 1/16` with its
//!   round-half-even.
//! - [`FloatSobel`]: `Sobel(src, CV_32F, ..., scale)` with `BORDER_REFLECT_101`, as
//!   `cornerHarris` calls it. OpenCV runs a separable float filter whose rounding depends
//!   on the code path a column falls in (its AVX2 loops use fused multiply-add, its scalar
//!   tails do not); [`FloatSobel`] follows the same paths column by column.
//!
//! Written here rather than taken from imageproc: imageproc's Sobel neither offers these
//! border rules nor rounds as OpenCV's float filter does.

use image::GrayImage;
use serde::Serialize;
use serde_json::Value;

use super::params::{check_int, int_from_json, InvalidValue, Kind, ParamValue};

/// How pixels outside the image are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Border {
    /// `aaa|abcd|ddd`.
    Replicate,
    /// `cb|abcd|cb` (OpenCV's `BORDER_REFLECT_101`, its default).
    Reflect101,
}

impl Border {
    /// The in-image index read for position `i` on an axis of length `n` (`n >= 1`).
    #[inline]
    pub(crate) fn index(self, i: isize, n: usize) -> usize {
        let last = n as isize - 1;
        match self {
            Border::Replicate => i.clamp(0, last) as usize,
            Border::Reflect101 => {
                if last == 0 {
                    return 0;
                }
                let mut i = i;
                // OpenCV's borderInterpolate: reflect until inside (kernels wider than the image).
                while i < 0 || i > last {
                    i = if i < 0 { -i } else { 2 * last - i };
                }
                i as usize
            }
        }
    }
}

/// A Sobel aperture (OpenCV's `ksize`): 1, 3, 5 or 7, the sizes OpenCV has kernels for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aperture {
    /// Smoothing `[1]`, derivative `[-1, 0, 1]`.
    One = 1,
    /// 3x3.
    Three = 3,
    /// 5x5.
    Five = 5,
    /// 7x7.
    Seven = 7,
}

/// The aperture of `edge-detection`: 3, 5 or 7 (OpenCV's `Canny` refuses 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CannyAperture {
    /// 3x3.
    Three = 3,
    /// 5x5.
    Five = 5,
    /// 7x7.
    Seven = 7,
}

impl Aperture {
    /// The aperture of side `size`, or why there is none.
    pub fn new(size: i64) -> Result<Self, InvalidValue> {
        // Odd and in 1..=7: exactly the four variants.
        Ok(match check_int(size, 1, 7, true)? {
            1 => Aperture::One,
            3 => Aperture::Three,
            5 => Aperture::Five,
            _ => Aperture::Seven,
        })
    }

    /// The side of the kernel.
    pub const fn get(self) -> usize {
        self as usize
    }
}

impl CannyAperture {
    /// The aperture of side `size`, or why there is none.
    pub fn new(size: i64) -> Result<Self, InvalidValue> {
        Ok(match check_int(size, 3, 7, true)? {
            3 => CannyAperture::Three,
            5 => CannyAperture::Five,
            _ => CannyAperture::Seven,
        })
    }

    /// The side of the kernel.
    pub const fn get(self) -> usize {
        self as usize
    }
}

impl From<CannyAperture> for Aperture {
    fn from(a: CannyAperture) -> Self {
        match a {
            CannyAperture::Three => Aperture::Three,
            CannyAperture::Five => Aperture::Five,
            CannyAperture::Seven => Aperture::Seven,
        }
    }
}

impl ParamValue for Aperture {
    const KIND: Kind = Kind::OddInt { min: 1, max: 7 };

    fn from_json(v: &Value) -> Result<Self, InvalidValue> {
        Self::new(int_from_json(v, 1, 7, true)?)
    }
}

impl ParamValue for CannyAperture {
    const KIND: Kind = Kind::OddInt { min: 3, max: 7 };

    fn from_json(v: &Value) -> Result<Self, InvalidValue> {
        Self::new(int_from_json(v, 3, 7, true)?)
    }
}

impl Serialize for Aperture {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.get() as i64)
    }
}

impl Serialize for CannyAperture {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.get() as i64)
    }
}

/// OpenCV's Sobel kernels for an aperture: (smoothing, derivative).
pub(crate) fn kernels(ksize: Aperture) -> (&'static [i32], &'static [i32]) {
    match ksize {
        Aperture::One => (&[1], &[-1, 0, 1]),
        Aperture::Three => (&[1, 2, 1], &[-1, 0, 1]),
        Aperture::Five => (&[1, 4, 6, 4, 1], &[-1, -2, 0, 2, 1]),
        Aperture::Seven => (&[1, 6, 15, 20, 15, 6, 1], &[-1, -4, -5, 0, 5, 4, 1]),
    }
}

/// `Sobel(src, CV_16S, 1, 0, k)` and `(0, 1, k)` row by row, `BORDER_REPLICATE`.
pub(crate) struct IntSobel<'a> {
    src: &'a [u8],
    w: usize,
    h: usize,
    aperture: CannyAperture,
    ksize: usize,
    /// Vertical pass results, padded by `ksize / 2` on each side.
    smooth: Vec<i32>,
    deriv: Vec<i32>,
    /// The aperture-3 fast path's vertical pass, in `i16` (twice the lanes).
    smooth16: Vec<i16>,
    deriv16: Vec<i16>,
}

impl<'a> IntSobel<'a> {
    /// Prepares row buffers for `img`.
    pub(crate) fn new(img: &'a GrayImage, aperture: CannyAperture) -> Self {
        let ksize = aperture.get();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let padded = w + 2 * (ksize / 2);
        let (wide, narrow) = if ksize == 3 { (0, padded) } else { (padded, 0) };
        Self {
            src: img.as_raw(),
            w,
            h,
            aperture,
            ksize,
            smooth: vec![0; wide],
            deriv: vec![0; wide],
            smooth16: vec![0; narrow],
            deriv16: vec![0; narrow],
        }
    }

    fn row(&self, y: isize) -> &'a [u8] {
        let y = Border::Replicate.index(y, self.h);
        &self.src[y * self.w..(y + 1) * self.w]
    }

    /// The x and y derivatives of row `y` into `dx` and `dy` (each `w` long).
    pub(crate) fn row_derivatives(&mut self, y: usize, dx: &mut [i16], dy: &mut [i16]) {
        let y = y as isize;
        if self.ksize == 3 {
            let (a, b, c) = (self.row(y - 1), self.row(y), self.row(y + 1));
            sobel3_row(a, b, c, &mut self.smooth16, &mut self.deriv16, dx, dy);
            return;
        }
        let r = self.ksize / 2;
        let (smooth_k, deriv_k) = kernels(self.aperture.into());
        self.smooth.fill(0);
        self.deriv.fill(0);
        for t in 0..self.ksize {
            let src = self.row(y + t as isize - r as isize);
            let (s, d) = (smooth_k[t], deriv_k[t]);
            let sm = &mut self.smooth[r..r + self.w];
            let de = &mut self.deriv[r..r + self.w];
            for ((sm, de), &p) in sm.iter_mut().zip(de.iter_mut()).zip(src) {
                *sm += s * p as i32;
                *de += d * p as i32;
            }
        }
        replicate_ends(&mut self.smooth, r);
        replicate_ends(&mut self.deriv, r);
        let round16 = self.ksize == 7;
        for j in 0..self.w {
            let mut gx = 0;
            let mut gy = 0;
            for t in 0..self.ksize {
                gx += deriv_k[t] * self.smooth[j + t];
                gy += smooth_k[t] * self.deriv[j + t];
            }
            if round16 {
                // Canny's aperture 7 runs Sobel with scale 1/16; OpenCV rounds half to even.
                gx = div16_half_even(gx);
                gy = div16_half_even(gy);
            }
            dx[j] = gx.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
            dy[j] = gy.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
        }
    }
}

avx2_fma! {
    /// Aperture 3 in `i16` (sums stay within +-2040): vertical `[1 2 1]` and `[-1 0 1]`, then
    /// horizontal `[-1 0 1]` and `[1 2 1]`.
    fn sobel3_row(
        a: &[u8],
        b: &[u8],
        c: &[u8],
        smooth: &mut [i16],
        deriv: &mut [i16],
        dx: &mut [i16],
        dy: &mut [i16],
    ) {
        // Sums stay within +-2040, so wrapping `i16` arithmetic is exact; it only spares the
        // overflow checks of debug builds, which would stop vectorisation.
        let w = b.len();
        let inner = smooth[1..w + 1].iter_mut().zip(deriv[1..w + 1].iter_mut());
        for ((s, d), ((&a, &b), &c)) in inner.zip(a.iter().zip(b).zip(c)) {
            let (a, b, c) = (a as i16, b as i16, c as i16);
            *s = a.wrapping_add(b.wrapping_mul(2)).wrapping_add(c);
            *d = c.wrapping_sub(a);
        }
        replicate_ends(smooth, 1);
        replicate_ends(deriv, 1);
        let (dx, dy) = (&mut dx[..w], &mut dy[..w]);
        let (s0, s2) = (&smooth[..w], &smooth[2..w + 2]);
        let (d0, d1, d2) = (&deriv[..w], &deriv[1..w + 1], &deriv[2..w + 2]);
        for j in 0..w {
            dx[j] = s2[j].wrapping_sub(s0[j]);
            dy[j] = d0[j].wrapping_add(d1[j].wrapping_mul(2)).wrapping_add(d2[j]);
        }
    }
}

/// Copies the first and last inner values of a row padded by `r` into its padding.
#[inline(always)]
fn replicate_ends<T: Copy>(row: &mut [T], r: usize) {
    let n = row.len();
    let (first, last) = (row[r], row[n - 1 - r]);
    row[..r].fill(first);
    row[n - r..].fill(last);
}

/// `cvRound(v / 16.0)` for an integer `v`: round half to even.
#[inline(always)]
fn div16_half_even(v: i32) -> i32 {
    let q = v >> 4;
    let rem = v & 15;
    q + i32::from(rem > 8 || (rem == 8 && q & 1 == 1))
}

/// The kernels of one float derivative as OpenCV's filter engine holds them (`f32`).
struct FloatKernels {
    /// Applied along each row first.
    row: Vec<f32>,
    /// Then down the columns of row-filtered rows.
    col: Vec<f32>,
}

/// `Sobel(src, CV_32F, 1, 0, k, scale)` and `(0, 1, k, scale)` with `BORDER_REFLECT_101`,
/// for one output row at a time over a range of columns, rounding as OpenCV 5.0 does on an
/// AVX2 machine.
///
/// OpenCV's `Sobel` scales the smoothing kernel (`fl(c * fl(scale))` per tap), filters each
/// source row to `f32` (`RowFilter` with `RowVec_8u32f`: an FMA chain in 32-column blocks,
/// separate multiply and add in the tail), then filters down the columns
/// (`SymmColumn[Small]Filter` with `SymmColumn[Small]Vec_32f`: FMA in 8-column blocks; the
/// scalar tail fuses for 3 taps and not for more). The block boundaries are counted from
/// the image's left edge, so a column's rounding depends on its index, which this keeps.
pub(crate) struct FloatSobel<'a> {
    src: &'a [u8],
    w: usize,
    h: usize,
    x: FloatKernels,
    y: FloatKernels,
    /// Columns below this take the row filter's FMA path.
    row_fused_end: usize,
    /// Columns below this take the column filter's vector path.
    col_vector_end: usize,
    /// Output columns `lo..hi` of the current strip.
    lo: usize,
    hi: usize,
    /// Source row of the strip, as `f32`, padded for the row kernels.
    padded: Vec<f32>,
    /// Row-filtered source rows, keyed by source row: (row, x-kernel output, y-kernel output).
    cache: Vec<(usize, Vec<f32>, Vec<f32>)>,
}

impl<'a> FloatSobel<'a> {
    /// Derivatives of `img` with aperture `ksize` multiplied by `scale`.
    pub(crate) fn new(img: &'a GrayImage, ksize: Aperture, scale: f64) -> Self {
        let (smooth, deriv) = kernels(ksize);
        // Mat::convertTo multiplies the f32 kernel by (float)scale in f32.
        let scale = scale as f32;
        let scaled: Vec<f32> = smooth.iter().map(|&c| c as f32 * scale).collect();
        let plain: Vec<f32> = deriv.iter().map(|&c| c as f32).collect();
        let w = img.width() as usize;
        Self {
            src: img.as_raw(),
            w,
            h: img.height() as usize,
            x: FloatKernels {
                row: plain.clone(),
                col: scaled.clone(),
            },
            y: FloatKernels {
                row: scaled,
                col: plain,
            },
            row_fused_end: w / 32 * 32,
            col_vector_end: w / 8 * 8,
            lo: 0,
            hi: 0,
            padded: Vec::new(),
            cache: Vec::new(),
        }
    }

    /// Restricts later rows to output columns `lo..hi`.
    pub(crate) fn set_columns(&mut self, lo: usize, hi: usize) {
        self.lo = lo;
        self.hi = hi;
        let r = self.row_radius();
        self.padded.resize(hi - lo + 2 * r, 0.0);
        let slots = self.x.col.len().max(self.y.col.len());
        self.cache = (0..slots)
            .map(|_| (usize::MAX, vec![0.0; hi - lo], vec![0.0; hi - lo]))
            .collect();
    }

    fn row_radius(&self) -> usize {
        self.x.row.len().max(self.y.row.len()) / 2
    }

    /// d/dx and d/dy of image row `y` at columns `lo..hi` into `dx` and `dy`.
    pub(crate) fn row_derivatives(&mut self, y: usize, dx: &mut [f32], dy: &mut [f32]) {
        let n = self.hi - self.lo;
        let (dx, dy) = (&mut dx[..n], &mut dy[..n]);
        let vector_cols = self.col_vector_end.clamp(self.lo, self.hi) - self.lo;
        let rx = self.x.col.len() / 2;
        let ry = self.y.col.len() / 2;
        for r in 0..=rx.max(ry) {
            for sy in [y as isize - r as isize, y as isize + r as isize] {
                self.ensure_row(Border::Reflect101.index(sy, self.h));
            }
        }
        let mut rows: [&[f32]; 7] = [&[]; 7];
        for (t, row) in rows[..self.x.col.len()].iter_mut().enumerate() {
            *row = self.cached(y as isize + t as isize - rx as isize).0;
        }
        symmetric_column(&rows[..self.x.col.len()], &self.x.col, vector_cols, dx);
        for (t, row) in rows[..self.y.col.len()].iter_mut().enumerate() {
            *row = self.cached(y as isize + t as isize - ry as isize).1;
        }
        antisymmetric_column(&rows[..self.y.col.len()], &self.y.col, vector_cols, dy);
    }

    fn cached(&self, y: isize) -> (&[f32], &[f32]) {
        let y = Border::Reflect101.index(y, self.h);
        let slot = &self.cache[y % self.cache.len()];
        debug_assert_eq!(slot.0, y);
        (&slot.1, &slot.2)
    }

    /// Row-filters source row `y` into its cache slot unless it is there already.
    fn ensure_row(&mut self, y: usize) {
        let slots = self.cache.len();
        if self.cache[y % slots].0 == y {
            return;
        }
        let r = self.row_radius();
        let src = &self.src[y * self.w..(y + 1) * self.w];
        // The in-image part converts straight across; only the ends need reflecting.
        let start = self.lo as isize - r as isize;
        let first = start.max(0) as usize;
        let last = (self.hi + r).min(self.w);
        let offset = (first as isize - start) as usize;
        let inner = offset..offset + (last - first);
        widen(&src[first..last], &mut self.padded[inner.clone()]);
        for t in (0..offset).chain(inner.end..self.padded.len()) {
            self.padded[t] = src[Border::Reflect101.index(start + t as isize, self.w)] as f32;
        }
        let fused = self.row_fused_end.clamp(self.lo, self.hi) - self.lo;
        let slot = &mut self.cache[y % slots];
        slot.0 = y;
        row_filter(&self.padded, r, &self.x.row, fused, &mut slot.1);
        row_filter(&self.padded, r, &self.y.row, fused, &mut slot.2);
    }
}

avx2_fma! {
    /// OpenCV's `RowFilter<uchar, float, RowVec_8u32f>` over `out.len()` columns of a row
    /// padded by `pad`: the first `fused` columns as its SIMD loop (`s = fma(x, k, s)` from
    /// 0), the rest as its scalar tail (`s = k0 * x0; s += k * x`).
    fn row_filter(src: &[f32], pad: usize, kernel: &[f32], fused: usize, out: &mut [f32]) {
        let n = out.len();
        let start = pad - kernel.len() / 2;
        let (head, tail) = out.split_at_mut(fused);
        let (hn, tn) = (head.len(), tail.len());
        // Each loop runs over slices cut to its own length, so it vectorises.
        let tap = |t: usize| {
            let s = &src[start + t..start + t + n];
            (&s[..hn], &s[fused..fused + tn])
        };
        head.fill(0.0);
        let (x_h, x_t) = tap(0);
        for i in 0..hn {
            head[i] = x_h[i].mul_add(kernel[0], head[i]);
        }
        for i in 0..tn {
            tail[i] = kernel[0] * x_t[i];
        }
        for (t, &k) in kernel.iter().enumerate().skip(1) {
            let (x_h, x_t) = tap(t);
            for i in 0..hn {
                head[i] = x_h[i].mul_add(k, head[i]);
            }
            for i in 0..tn {
                tail[i] += k * x_t[i];
            }
        }
    }
}

avx2_fma! {
    /// OpenCV's symmetric column filter (`ksize` 1, 3, 5 or 7) over row-filtered `rows`,
    /// the first `vector` columns as its SIMD loop and the rest as its scalar tail.
    fn symmetric_column(rows: &[&[f32]], kernel: &[f32], vector: usize, out: &mut [f32]) {
        let m = kernel.len() / 2;
        let c = &kernel[m..];
        let (head, tail) = out.split_at_mut(vector);
        // Each loop runs over slices cut to its own length, so it vectorises.
        let (hn, tn) = (head.len(), tail.len());
        let at = |row| halves(row, hn, tn);
        let (centre_h, centre_t) = at(rows[m]);
        if kernel.len() == 3 {
            // SymmColumnSmallFilter: fma(S0 + S2, k1, fma(S1, k0, 0)); GCC fuses its tail too.
            let ((up_h, up_t), (down_h, down_t)) = (at(rows[0]), at(rows[2]));
            for i in 0..hn {
                head[i] = (up_h[i] + down_h[i]).mul_add(c[1], centre_h[i].mul_add(c[0], 0.0));
            }
            for i in 0..tn {
                tail[i] = (up_t[i] + down_t[i]).mul_add(c[1], centre_t[i] * c[0]) + 0.0;
            }
            return;
        }
        for i in 0..hn {
            head[i] = centre_h[i].mul_add(c[0], 0.0);
        }
        for i in 0..tn {
            tail[i] = c[0] * centre_t[i] + 0.0;
        }
        for (k, &ck) in c.iter().enumerate().skip(1) {
            let ((up_h, up_t), (down_h, down_t)) = (at(rows[m - k]), at(rows[m + k]));
            for i in 0..hn {
                head[i] = (down_h[i] + up_h[i]).mul_add(ck, head[i]);
            }
            for i in 0..tn {
                tail[i] += ck * (down_t[i] + up_t[i]);
            }
        }
    }
}

avx2_fma! {
    /// OpenCV's antisymmetric column filter (a derivative kernel of 3, 5 or 7 taps), the
    /// first `vector` columns as its SIMD loop and the rest as its scalar tail.
    fn antisymmetric_column(rows: &[&[f32]], kernel: &[f32], vector: usize, out: &mut [f32]) {
        let m = kernel.len() / 2;
        let c = &kernel[m..];
        let n = out.len();
        if kernel.len() == 3 {
            // SymmColumnSmallFilter's [-1 0 1] case: S2 - S0 + delta, vector and tail alike.
            let (up, down) = (&rows[0][..n], &rows[2][..n]);
            for i in 0..n {
                out[i] = (down[i] - up[i]) + 0.0;
            }
            return;
        }
        let (head, tail) = out.split_at_mut(vector);
        let (hn, tn) = (head.len(), tail.len());
        let at = |row| halves(row, hn, tn);
        tail.fill(0.0);
        for (k, &ck) in c.iter().enumerate().skip(1) {
            let ((up_h, up_t), (down_h, down_t)) = (at(rows[m - k]), at(rows[m + k]));
            for i in 0..hn {
                let acc = if k == 1 { 0.0 } else { head[i] };
                head[i] = (down_h[i] - up_h[i]).mul_add(ck, acc);
            }
            for i in 0..tn {
                tail[i] += ck * (down_t[i] - up_t[i]);
            }
        }
    }
}

avx2_fma! {
    /// `u8` to `f32`.
    fn widen(src: &[u8], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(src) {
            *o = v as f32;
        }
    }
}

/// A row's first `head` values and the `tail` after them.
#[inline(always)]
fn halves(row: &[f32], head: usize, tail: usize) -> (&[f32], &[f32]) {
    (&row[..head], &row[head..head + tail])
}

use super::dispatch::avx2_fma;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect101_and_replicate() {
        let r: Vec<usize> = (-3..8).map(|i| Border::Reflect101.index(i, 5)).collect();
        assert_eq!(r, [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        let c: Vec<usize> = (-2..7).map(|i| Border::Replicate.index(i, 5)).collect();
        assert_eq!(c, [0, 0, 0, 1, 2, 3, 4, 4, 4]);
        assert_eq!(Border::Reflect101.index(-4, 1), 0);
        // Wider than the image: keeps reflecting, as borderInterpolate does.
        assert_eq!(Border::Reflect101.index(-5, 3), 1);
    }

    #[test]
    fn half_even_division() {
        let got: Vec<i32> = [8, 24, 9, 7, -8, -24, -9, 40].map(div16_half_even).to_vec();
        assert_eq!(got, [0, 2, 1, 0, 0, -2, -1, 2]);
    }

    #[test]
    fn apertures_take_only_the_sizes_opencv_has_kernels_for() {
        use serde_json::json;
        for k in [1, 3, 5, 7] {
            let a = Aperture::from_json(&json!(k)).unwrap();
            assert_eq!(a.get(), k as usize);
            assert_eq!(serde_json::to_value(a).unwrap(), json!(k));
            let (smooth, deriv) = kernels(a);
            assert_eq!(smooth.len(), k.max(1) as usize);
            assert_eq!(deriv.len(), k.max(3) as usize);
        }
        for k in [-1, 0, 2, 4, 6, 8, 9] {
            assert!(Aperture::from_json(&json!(k)).is_err(), "{k}");
        }
        let e = Aperture::from_json(&json!(4)).unwrap_err();
        assert_eq!(e.0, "4 must be odd");
        assert_eq!(
            Aperture::from_json(&json!(9)).unwrap_err().0,
            "9 is outside 1..=7"
        );
        assert!(Aperture::from_json(&json!(3.0)).is_err());
        assert!(Aperture::from_json(&json!("3")).is_err());
        // Canny's: 3, 5 or 7, never 1 (IntSobel has no aperture-1 path).
        for k in [3, 5, 7] {
            let a = CannyAperture::from_json(&json!(k)).unwrap();
            assert_eq!((a.get(), Aperture::from(a).get()), (k as usize, k as usize));
            assert_eq!(serde_json::to_value(a).unwrap(), json!(k));
        }
        for k in [1, 2, 4, 9] {
            assert!(CannyAperture::from_json(&json!(k)).is_err(), "{k}");
        }
        assert_eq!(
            CannyAperture::from_json(&json!(1)).unwrap_err().0,
            "1 is outside 3..=7"
        );
    }

    #[test]
    fn int_sobel_apertures_agree_on_a_ramp() {
        // A horizontal ramp of slope 1: d/dx is the kernel's gain, d/dy is 0 (inside).
        let img = GrayImage::from_fn(20, 9, |x, _| image::Luma([(x * 3) as u8]));
        for (k, gain) in [
            (CannyAperture::Three, 8 * 3),
            (CannyAperture::Five, 128 * 3),
            (CannyAperture::Seven, 2048 * 3 / 16),
        ] {
            let mut s = IntSobel::new(&img, k);
            let (mut dx, mut dy) = (vec![0; 20], vec![0; 20]);
            s.row_derivatives(4, &mut dx, &mut dy);
            assert_eq!(dx[10], gain as i16, "aperture {k:?}");
            assert_eq!(dy[10], 0);
        }
    }
}
