//! The NL-means core of OpenCV's `fastNlMeansDenoising` for 8-bit images with 1 or 2
//! channels and the L2 norm (`FastNlMeansDenoisingInvoker<uchar|Vec2b, int, unsigned,
//! DistSquared, int>`), giving OpenCV's exact result.
//!
//! OpenCV's answer for a pixel is a pure integer function of the image: for every offset of
//! the search window, the sum of squared differences over the template window (exact,
//! whichever way it is accumulated), shifted right by `log2(next pow2 >= template^2)`,
//! looks up an integer weight in a table built once from `exp`; the output is the
//! rounded weighted mean of the offset pixels. So the order of work is free, and this
//! module picks a fast one:
//! - offset-major over tiles of 64 rows x 256 columns (rayon over row bands): for each
//!   row offset `dy`, one template-high column sum per `dx` is slid down row by row with
//!   two squared differences, box-summed across the row, and turned into weights;
//! - one weight per symmetric pair of offsets: the distance between the patches at `p`
//!   and `p + d` is also the one between `q = p + d` and `q - d`, so only the upper half
//!   of the search window is computed (over the tile and the tile moved by `-d`), which
//!   halves the distance sums and table look-ups;
//! - AVX2 loops at the AVX2 kernel level (`ops::dispatch`), with the table look-up as a
//!   gather that is skipped when all eight patches are beyond the table's zero tail;
//!   portable loops otherwise, checked to give the same bytes.
//!
//! Written here rather than taken from a crate: no crate reproduces OpenCV's fixed-point
//! weights, and a generic NL-means is far slower.

use rayon::prelude::*;

use crate::ops::bands::Bands;
use crate::ops::{OpContext, OpError};

/// Output rows per rayon task: each task re-primes its column sums, so taller is cheaper,
/// but it must leave enough tasks to balance the threads.
const BAND_ROWS: usize = 64;
/// Columns per tile: keeps a tile's column sums and accumulators in L1/L2.
const TILE_COLS: usize = 256;

/// OpenCV's weight table for one `h`, template and search size and channel count.
#[derive(Clone, Debug)]
pub struct Weights {
    /// Weight by `dist_sum >> shift`, cut after the first zero of the zero tail.
    lut: Vec<u32>,
    /// `almost_template_window_size_sq_bin_shift_`.
    shift: u32,
}

impl Weights {
    /// The table OpenCV's invoker builds for `h` with `cn` channels.
    pub fn new(h: f32, cn: usize, template: usize, search: usize) -> Self {
        let (t, s) = (template / 2 * 2 + 1, search / 2 * 2 + 1);
        let max_estimate = (s * s * 255) as i64;
        let fixed_point_mult = (i32::MAX as i64 / max_estimate).min(i32::MAX as i64) as i32;
        let t2 = (t * t) as i32;
        let mut shift = 0;
        while (1 << shift) < t2 {
            shift += 1;
        }
        let mult = (1i64 << shift) as f64 / t2 as f64;
        let max_dist = 255 * 255 * cn as i32;
        let almost_max = (max_dist as f64 / mult + 1.0) as usize;
        // h * h * channels is computed in float by OpenCV, then the division in double.
        let denom = (h * h * cn as f32) as f64;
        let mut lut: Vec<u32> = (0..almost_max)
            .map(|k| {
                let dist = k as f64 * mult;
                let mut w = (-dist / denom).exp();
                if w.is_nan() {
                    w = 1.0; // h == 0
                }
                let weight = (fixed_point_mult as f64 * w).round_ties_even() as i32;
                if (weight as f64) < 0.001 * fixed_point_mult as f64 {
                    0
                } else {
                    weight as u32
                }
            })
            .collect();
        // Weights only fall with distance: everything past the first zero is zero, so
        // clamping the index to that entry gives the same answer from a small table.
        if let Some(z) = lut.iter().position(|&w| w == 0) {
            lut.truncate(z + 1);
        }
        Self { lut, shift }
    }

    /// The largest index the table is looked up with (indices are clamped to it).
    fn cap(&self) -> u32 {
        self.lut.len() as u32 - 1
    }
}

/// Geometry of one denoising run.
#[derive(Clone, Copy, Debug)]
pub struct Windows {
    /// Half the template window size.
    pub t: usize,
    /// Half the search window size.
    pub s: usize,
}

impl Windows {
    /// From OpenCV's window sizes (an even size acts as the next odd size up, as there).
    pub fn new(template: usize, search: usize) -> Self {
        Self {
            t: template / 2,
            s: search / 2,
        }
    }

    fn border(&self) -> usize {
        self.t + self.s
    }
}

/// OpenCV's `borderInterpolate` for `BORDER_REFLECT_101`.
fn reflect101(mut p: isize, len: usize) -> usize {
    let len = len as isize;
    if len == 1 {
        return 0;
    }
    while p < 0 || p >= len {
        p = if p < 0 { -p } else { 2 * len - p - 2 };
    }
    p as usize
}

/// `copyMakeBorder(BORDER_DEFAULT)` of one plane by `b` on every side.
fn pad(src: &[u8], w: usize, h: usize, b: usize) -> Vec<u8> {
    let pw = w + 2 * b;
    let cols: Vec<usize> = (0..pw)
        .map(|x| reflect101(x as isize - b as isize, w))
        .collect();
    let mut out = vec![0u8; pw * (h + 2 * b)];
    out.par_chunks_mut(pw).enumerate().for_each(|(y, row)| {
        let sy = reflect101(y as isize - b as isize, h);
        let srow = &src[sy * w..(sy + 1) * w];
        for (d, &x) in row.iter_mut().zip(&cols) {
            *d = srow[x];
        }
    });
    out
}

/// Denoises `CN` planes jointly (one weight per offset from the distance summed over
/// the channels), returning the result interleaved (`CN` bytes per pixel).
///
/// `progress()` is called after each tile; a run has [`work_units`] tiles. The token in
/// `ctx` is polled before every row offset of every tile.
pub fn denoise<const CN: usize>(
    planes: [&[u8]; CN],
    width: usize,
    height: usize,
    win: Windows,
    weights: &Weights,
    ctx: &OpContext,
    progress: &(dyn Fn() + Sync),
) -> Result<Vec<u8>, OpError> {
    let mut out = vec![0u8; width * height * CN];
    if width == 0 || height == 0 {
        return Ok(out);
    }
    let b = win.border();
    let padded: Vec<Vec<u8>> = planes.iter().map(|p| pad(p, width, height, b)).collect();
    let img: Padded<CN> = Padded {
        planes: std::array::from_fn(|c| padded[c].as_slice()),
        stride: width + 2 * b,
        border: b,
    };
    Bands::fixed(height, BAND_ROWS)
        .split_mut(&mut out[..], width * CN)
        .try_for_each(|(rows, dst)| {
            denoise_band(
                &img,
                win,
                weights,
                rows.start,
                rows.len(),
                width,
                dst,
                ctx,
                progress,
            )
        })?;
    Ok(out)
}

/// Progress units of [`denoise`] (tiles) for an image of `width` x `height`.
pub fn work_units(width: usize, height: usize) -> usize {
    Bands::fixed(height, BAND_ROWS).count() * width.div_ceil(TILE_COLS)
}

/// Padded planes: pixel `(y, x)` of the image (either may be negative down to `-border`)
/// is at `(y + border) * stride + x + border`.
struct Padded<'a, const CN: usize> {
    planes: [&'a [u8]; CN],
    stride: usize,
    border: usize,
}

impl<const CN: usize> Padded<'_, CN> {
    /// `len` pixels of row `y` of channel `c` from column `x`.
    #[inline]
    fn row(&self, c: usize, y: isize, x: isize, len: usize) -> &[u8] {
        let start =
            (y + self.border as isize) as usize * self.stride + (x + self.border as isize) as usize;
        &self.planes[c][start..start + len]
    }
}

/// Per-tile scratch buffers, reused across the tiles of a band.
struct Scratch<const CN: usize> {
    /// Weighted sums of the offset pixels, per channel, `rows * tw`.
    acc: [Vec<u32>; CN],
    /// Sums of the weights, `rows * tw`.
    wsum: Vec<u32>,
    /// Template-high column sums of squared differences, one row of up to
    /// `tw + s + 2t` per `dx`.
    colsum: Vec<u32>,
    /// The weights of one row for one offset (`tw + |dx|` of them).
    weights: Vec<u32>,
}

#[allow(clippy::too_many_arguments)]
fn denoise_band<const CN: usize>(
    img: &Padded<CN>,
    win: Windows,
    weights: &Weights,
    r0: usize,
    rows: usize,
    width: usize,
    dst: &mut [u8],
    ctx: &OpContext,
    progress: &(dyn Fn() + Sync),
) -> Result<(), OpError> {
    let (t, s) = (win.t, win.s);
    let sw = 2 * s + 1;
    let tile_cols = TILE_COLS.min(width);
    let mut sc = Scratch::<CN> {
        acc: std::array::from_fn(|_| vec![0u32; rows * tile_cols]),
        wsum: vec![0; rows * tile_cols],
        colsum: vec![0; sw * (tile_cols + s + 2 * t)],
        weights: vec![0; tile_cols + s],
    };
    for c0 in (0..width).step_by(TILE_COLS) {
        let tw = TILE_COLS.min(width - c0);
        add_centre(img, weights.lut[0], r0, rows, c0, tw, &mut sc);
        for dy in 0..=s as isize {
            ctx.cancel.check()?;
            tile_offset_row(img, win, weights, r0, rows, c0, tw, dy, &mut sc);
        }
        finish_tile(&sc, rows, c0, tw, width, dst);
        progress();
    }
    Ok(())
}

/// Starts a tile's sums with the zero offset, whose distance is 0 and weight `w0`.
fn add_centre<const CN: usize>(
    img: &Padded<CN>,
    w0: u32,
    r0: usize,
    rows: usize,
    c0: usize,
    tw: usize,
    sc: &mut Scratch<CN>,
) {
    for r in 0..rows {
        let at = r * tw;
        sc.wsum[at..at + tw].fill(w0);
        for c in 0..CN {
            let px = img.row(c, (r0 + r) as isize, c0 as isize, tw);
            for (a, &p) in sc.acc[c][at..at + tw].iter_mut().zip(px) {
                *a = w0 * p as u32;
            }
        }
    }
}

/// Accumulates, for one tile and one row offset `dy >= 0`, the offsets `(dy, dx)` of the
/// upper half-plane and their mirrors `(-dy, -dx)`.
///
/// The distance between the patches at `p` and `p + d` is the one between `q = p + d`
/// and `q - d`, so one weight serves pixel `p` (neighbour `p + d`) and pixel `q`
/// (neighbour `p`). Weights are computed for every `p` of the tile and of the tile moved
/// by `-d`, which halves the distance sums and table look-ups.
#[allow(clippy::too_many_arguments)]
fn tile_offset_row<const CN: usize>(
    img: &Padded<CN>,
    win: Windows,
    weights: &Weights,
    r0: usize,
    rows: usize,
    c0: usize,
    tw: usize,
    dy: isize,
    sc: &mut Scratch<CN>,
) {
    let (t, s) = (win.t as isize, win.s as isize);
    let taps = 2 * win.t + 1;
    let dxs = if dy == 0 { 1..=s } else { -s..=s };
    // Per dx: the first column `lo` whose weight is needed, and how many (`tw + |dx|`).
    let geom = |dx: isize| (c0 as isize - dx.max(0), tw + dx.unsigned_abs());
    let stride = tw + win.s + 2 * win.t;
    let Scratch {
        acc,
        wsum,
        colsum,
        weights: wrow,
    } = sc;
    let lw = LutView {
        lut: &weights.lut,
        shift: weights.shift,
        cap: weights.cap(),
    };
    let top = r0 as isize - dy;
    // Prime the column sums for the first row, `top`.
    for (dx, cs) in dxs.clone().zip(colsum.chunks_exact_mut(stride)) {
        let (lo, len) = geom(dx);
        let cs = &mut cs[..len + 2 * win.t];
        cs.fill(0);
        for y in top - t..=top + t {
            for c in 0..CN {
                let a = img.row(c, y, lo - t, cs.len());
                let b = img.row(c, y + dy, lo - t + dx, cs.len());
                for ((v, &p), &q) in cs.iter_mut().zip(a).zip(b) {
                    let d = p as i32 - q as i32;
                    *v += (d * d) as u32;
                }
            }
        }
    }
    let (r0, r1) = (r0 as isize, (r0 + rows) as isize);
    for y in top..r1 {
        for (dx, cs) in dxs.clone().zip(colsum.chunks_exact_mut(stride)) {
            let (lo, len) = geom(dx);
            let cs = &mut cs[..len + 2 * win.t];
            if y > top {
                // Slide the column sums down one row.
                let rows_at = |yy: isize, xx: isize| -> [&[u8]; CN] {
                    std::array::from_fn(|c| img.row(c, yy, xx, cs.len()))
                };
                let a_in = rows_at(y + t, lo - t);
                let b_in = rows_at(y + t + dy, lo - t + dx);
                let a_out = rows_at(y - t - 1, lo - t);
                let b_out = rows_at(y - t - 1 + dy, lo - t + dx);
                slide(cs, a_in, b_in, a_out, b_out);
            }
            let w = &mut wrow[..len];
            weights_row(cs, taps, &lw, w);
            let mut add = |row: isize, wfrom: usize, nb_row: isize, nb_col: isize| {
                let at = (row - r0) as usize * tw;
                let nb: [&[u8]; CN] = std::array::from_fn(|c| img.row(c, nb_row, nb_col, tw));
                let mut accs = acc.iter_mut().map(|a| &mut a[at..at + tw]);
                // CN iterations over an iterator of CN accumulators.
                let accs: [&mut [u32]; CN] =
                    std::array::from_fn(|_| accs.next().expect("CN accumulators"));
                accumulate(&w[wfrom..wfrom + tw], nb, accs, &mut wsum[at..at + tw]);
            };
            if y >= r0 {
                // Pixels (y, c0..c1) with neighbours at +d.
                add(y, dx.max(0) as usize, y + dy, c0 as isize + dx);
            }
            if y + dy < r1 {
                // Pixels (y + dy, c0..c1) with neighbours at -d, i.e. in row y.
                add(y + dy, (-dx).max(0) as usize, y, c0 as isize - dx);
            }
        }
    }
}

/// A weight table as the inner loops use it.
struct LutView<'a> {
    lut: &'a [u32],
    shift: u32,
    cap: u32,
}

/// `cs += sum over channels of (a_in - b_in)^2 - (a_out - b_out)^2`, elementwise.
#[inline]
fn slide<const CN: usize>(
    cs: &mut [u32],
    a_in: [&[u8]; CN],
    b_in: [&[u8]; CN],
    a_out: [&[u8]; CN],
    b_out: [&[u8]; CN],
) {
    let n = cs.len();
    let fits = |r: &[&[u8]; CN]| r.iter().all(|s| s.len() >= n);
    assert!(fits(&a_in) && fits(&b_in) && fits(&a_out) && fits(&b_out));
    #[cfg(target_arch = "x86_64")]
    if crate::ops::dispatch::avx2() {
        // SAFETY: AVX2 is present and every row holds at least `cs.len()` bytes.
        unsafe { avx2::slide(cs, a_in, b_in, a_out, b_out) };
        return;
    }
    slide_scalar(cs, a_in, b_in, a_out, b_out, 0);
}

/// The portable [`slide`] from element `from` on.
fn slide_scalar<const CN: usize>(
    cs: &mut [u32],
    a_in: [&[u8]; CN],
    b_in: [&[u8]; CN],
    a_out: [&[u8]; CN],
    b_out: [&[u8]; CN],
    from: usize,
) {
    for c in 0..CN {
        let n = cs.len();
        for ((((v, &p), &q), &p0), &q0) in cs[from..]
            .iter_mut()
            .zip(&a_in[c][from..n])
            .zip(&b_in[c][from..n])
            .zip(&a_out[c][from..n])
            .zip(&b_out[c][from..n])
        {
            let d_in = p as i32 - q as i32;
            let d_out = p0 as i32 - q0 as i32;
            *v = v.wrapping_add((d_in * d_in - d_out * d_out) as u32);
        }
    }
}

/// `out[x]`: the weight of the box sum of `taps` column sums from `cs[x]`.
#[inline]
fn weights_row(cs: &[u32], taps: usize, lw: &LutView, out: &mut [u32]) {
    assert!(cs.len() >= out.len() + taps - 1);
    #[cfg(target_arch = "x86_64")]
    if crate::ops::dispatch::avx2() {
        // SAFETY: AVX2 is present, `cs` is long enough (checked above) and indices are
        // clamped to the table's last entry.
        let done = unsafe { avx2::weights_row(cs, taps, lw, out) };
        weights_row_scalar(cs, taps, lw, out, done);
        return;
    }
    weights_row_scalar(cs, taps, lw, out, 0);
}

/// The portable [`weights_row`] from pixel `from` on.
fn weights_row_scalar(cs: &[u32], taps: usize, lw: &LutView, out: &mut [u32], from: usize) {
    let n = out.len();
    let hs = &mut out[from..];
    hs.copy_from_slice(&cs[from..n]);
    for k in 1..taps {
        for (h, &v) in hs.iter_mut().zip(&cs[from + k..n + k]) {
            *h += v;
        }
    }
    for h in hs.iter_mut() {
        *h = lw.lut[(*h >> lw.shift).min(lw.cap) as usize];
    }
}

/// `wsum += w` and `acc[c] += w * nb[c]`, elementwise.
#[inline]
fn accumulate<const CN: usize>(
    w: &[u32],
    nb: [&[u8]; CN],
    acc: [&mut [u32]; CN],
    wsum: &mut [u32],
) {
    let n = w.len();
    assert!(wsum.len() == n && acc.iter().all(|a| a.len() == n) && nb.iter().all(|p| p.len() == n));
    #[cfg(target_arch = "x86_64")]
    if crate::ops::dispatch::avx2() {
        let mut acc = acc;
        // SAFETY: AVX2 is present and every slice holds `w.len()` entries (checked).
        let done = unsafe { avx2::accumulate(w, nb, &mut acc, wsum) };
        accumulate_scalar(w, nb, acc, wsum, done);
        return;
    }
    accumulate_scalar(w, nb, acc, wsum, 0);
}

/// The portable [`accumulate`] from element `from` on.
fn accumulate_scalar<const CN: usize>(
    w: &[u32],
    nb: [&[u8]; CN],
    acc: [&mut [u32]; CN],
    wsum: &mut [u32],
    from: usize,
) {
    for (s, &w) in wsum[from..].iter_mut().zip(&w[from..]) {
        *s += w;
    }
    for (a, p) in acc.into_iter().zip(nb) {
        for ((a, &w), &p) in a[from..].iter_mut().zip(&w[from..]).zip(&p[from..]) {
            *a += w * p as u32;
        }
    }
}

/// AVX2 versions of the inner loops, run at the AVX2 kernel level.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::LutView;
    use std::arch::x86_64::*;

    /// Loads 8 bytes from `p + k` widened to 8 `i32`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load8(p: &[u8], k: usize) -> __m256i {
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.as_ptr().add(k) as *const __m128i))
    }

    /// [`super::slide`] over whole vectors, then the scalar tail.
    ///
    /// # Safety
    /// AVX2 must be available and every row must hold at least `cs.len()` bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn slide<const CN: usize>(
        cs: &mut [u32],
        a_in: [&[u8]; CN],
        b_in: [&[u8]; CN],
        a_out: [&[u8]; CN],
        b_out: [&[u8]; CN],
    ) {
        let n = cs.len();
        let mut k = 0;
        while k + 8 <= n {
            let p = cs.as_mut_ptr().add(k) as *mut __m256i;
            let mut v = _mm256_loadu_si256(p);
            for c in 0..CN {
                let di = _mm256_sub_epi32(load8(a_in[c], k), load8(b_in[c], k));
                let d0 = _mm256_sub_epi32(load8(a_out[c], k), load8(b_out[c], k));
                let sq = _mm256_sub_epi32(_mm256_mullo_epi32(di, di), _mm256_mullo_epi32(d0, d0));
                v = _mm256_add_epi32(v, sq);
            }
            _mm256_storeu_si256(p, v);
            k += 8;
        }
        super::slide_scalar(cs, a_in, b_in, a_out, b_out, k);
    }

    /// [`super::weights_row`] over whole vectors; returns how many it did.
    ///
    /// # Safety
    /// AVX2 must be available and `cs` must hold `out.len() + taps - 1` sums.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn weights_row(
        cs: &[u32],
        taps: usize,
        lw: &LutView,
        out: &mut [u32],
    ) -> usize {
        let n = out.len();
        let count = _mm_cvtsi32_si128(lw.shift as i32);
        let cap = _mm256_set1_epi32(lw.cap as i32);
        let lut = lw.lut.as_ptr() as *const i32;
        let zero_tail = lw.lut[lw.cap as usize] == 0;
        let csp = cs.as_ptr();
        let mut x = 0;
        while x + 8 <= n {
            let mut h = _mm256_loadu_si256(csp.add(x) as *const __m256i);
            for k in 1..taps {
                h = _mm256_add_epi32(h, _mm256_loadu_si256(csp.add(x + k) as *const __m256i));
            }
            let idx = _mm256_min_epu32(_mm256_srl_epi32(h, count), cap);
            // Where all eight patches are too far apart the weights are the table's
            // final zero: skip the (slow) gather.
            let far = _mm256_movemask_epi8(_mm256_cmpeq_epi32(idx, cap)) == -1;
            let w = if far && zero_tail {
                _mm256_setzero_si256()
            } else {
                _mm256_i32gather_epi32::<4>(lut, idx)
            };
            _mm256_storeu_si256(out.as_mut_ptr().add(x) as *mut __m256i, w);
            x += 8;
        }
        x
    }

    /// [`super::accumulate`] over whole vectors; returns how many it did.
    ///
    /// # Safety
    /// AVX2 must be available and every slice must hold `w.len()` entries.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn accumulate<const CN: usize>(
        w: &[u32],
        nb: [&[u8]; CN],
        acc: &mut [&mut [u32]; CN],
        wsum: &mut [u32],
    ) -> usize {
        let n = w.len();
        let mut x = 0;
        while x + 8 <= n {
            let wv = _mm256_loadu_si256(w.as_ptr().add(x) as *const __m256i);
            let sp = wsum.as_mut_ptr().add(x) as *mut __m256i;
            _mm256_storeu_si256(sp, _mm256_add_epi32(_mm256_loadu_si256(sp), wv));
            for c in 0..CN {
                let ap = acc[c].as_mut_ptr().add(x) as *mut __m256i;
                let wp = _mm256_mullo_epi32(wv, load8(nb[c], x));
                _mm256_storeu_si256(ap, _mm256_add_epi32(_mm256_loadu_si256(ap), wp));
            }
            x += 8;
        }
        x
    }
}

/// Writes a tile's rounded weighted means (`divByWeightsSum`) into the band.
fn finish_tile<const CN: usize>(
    sc: &Scratch<CN>,
    rows: usize,
    c0: usize,
    tw: usize,
    width: usize,
    dst: &mut [u8],
) {
    for r in 0..rows {
        let out = &mut dst[(r * width + c0) * CN..(r * width + c0 + tw) * CN];
        let ws = &sc.wsum[r * tw..(r + 1) * tw];
        for (x, (px, &w)) in out.chunks_exact_mut(CN).zip(ws).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                let e = sc.acc[c][r * tw + x];
                *v = ((e + w / 2) / w).min(255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenCV's algorithm written the slow, obvious way: per pixel, per offset, the full
    /// template sum on the padded image.
    fn naive<const CN: usize>(
        planes: [&[u8]; CN],
        w: usize,
        h: usize,
        hh: f32,
        template: usize,
        search: usize,
    ) -> Vec<u8> {
        let win = Windows::new(template, search);
        let (t, s) = (win.t as isize, win.s as isize);
        let b = win.border();
        let weights = Weights::new(hh, CN, template, search);
        let full = {
            // The untrimmed table, to check the trimming too.
            let mut wt = weights.clone();
            let big = Weights::new(hh, CN, template, search);
            wt.lut = big.lut;
            wt
        };
        let pads: Vec<Vec<u8>> = planes.iter().map(|p| pad(p, w, h, b)).collect();
        let pw = w + 2 * b;
        let at = |c: usize, y: isize, x: isize| {
            pads[c][(y + b as isize) as usize * pw + (x + b as isize) as usize] as i64
        };
        let mut out = vec![0u8; w * h * CN];
        for i in 0..h as isize {
            for j in 0..w as isize {
                let mut est = [0u64; CN];
                let mut wsum = 0u64;
                for dy in -s..=s {
                    for dx in -s..=s {
                        let mut dist = 0i64;
                        for ty in -t..=t {
                            for tx in -t..=t {
                                for c in 0..CN {
                                    let d = at(c, i + ty, j + tx) - at(c, i + dy + ty, j + dx + tx);
                                    dist += d * d;
                                }
                            }
                        }
                        let idx = ((dist >> full.shift) as usize).min(full.lut.len() - 1);
                        let wgt = full.lut[idx] as u64;
                        wsum += wgt;
                        for (c, e) in est.iter_mut().enumerate() {
                            *e += wgt * at(c, i + dy, j + dx) as u64;
                        }
                    }
                }
                for c in 0..CN {
                    out[(i as usize * w + j as usize) * CN + c] =
                        ((est[c] + wsum / 2) / wsum) as u8;
                }
            }
        }
        out
    }

    fn noise(w: usize, h: usize, seed: u64) -> Vec<u8> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..w * h)
            .map(|i| {
                x ^= x >> 33;
                x = x.wrapping_mul(0xff51afd7ed558ccd);
                x ^= x >> 29;
                // A smooth ramp plus noise, so weights span the table.
                let base = ((i % w) * 255 / w.max(1)) as i64;
                (base + (x % 41) as i64 - 20).clamp(0, 255) as u8
            })
            .collect()
    }

    /// Runs [`denoise`] at the process's kernel level (`ops::dispatch`'s test re-runs these
    /// tests with every level the CPU has).
    fn run<const CN: usize>(
        planes: [&[u8]; CN],
        w: usize,
        h: usize,
        hh: f32,
        t: usize,
        s: usize,
    ) -> Vec<u8> {
        let win = Windows::new(t, s);
        let weights = Weights::new(hh, CN, t, s);
        denoise(planes, w, h, win, &weights, &OpContext::default(), &|| {}).unwrap()
    }

    #[test]
    fn matches_the_definition_on_one_channel() {
        for &(w, h, hh, t, s) in &[
            (40, 37, 10.0, 7, 21),
            (300, 9, 15.0, 5, 11),
            (7, 5, 10.0, 3, 9),
            (1, 1, 10.0, 7, 21),
            (2, 3, 3.0, 1, 3),
            (33, 40, 0.0, 3, 5),
        ] {
            let img = noise(w, h, (w * h) as u64);
            assert_eq!(
                run([&img], w, h, hh, t, s),
                naive([&img], w, h, hh, t, s),
                "{w}x{h} h={hh} t={t} s={s}"
            );
        }
    }

    #[test]
    fn matches_the_definition_on_two_channels() {
        for &(w, h, hh, t, s) in &[
            (45, 34, 10.0, 7, 21),
            (260, 35, 25.0, 3, 7),
            (3, 2, 10.0, 5, 5),
        ] {
            let a = noise(w, h, 1);
            let b = noise(w, h, 2);
            assert_eq!(
                run([&a, &b], w, h, hh, t, s),
                naive([&a, &b], w, h, hh, t, s),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn weight_table_follows_opencv() {
        let w = Weights::new(10.0, 1, 7, 21);
        // fixed_point_mult = INT_MAX / (21 * 21 * 255); 49 -> 64, so a shift of 6.
        assert_eq!(w.lut[0], 19096);
        assert_eq!(w.shift, 6);
        assert_eq!(*w.lut.last().unwrap(), 0);
        assert!(w.lut.windows(2).all(|p| p[0] >= p[1]));
        let h0 = Weights::new(0.0, 2, 7, 21);
        assert_eq!(h0.lut, vec![19096, 0]);
    }

    #[test]
    fn reflect101_matches_opencv() {
        assert_eq!(reflect101(-1, 5), 1);
        assert_eq!(reflect101(-4, 5), 4);
        assert_eq!(reflect101(5, 5), 3);
        assert_eq!(reflect101(-7, 3), 1);
        assert_eq!(reflect101(-13, 1), 0);
        assert_eq!(reflect101(9, 2), 1);
    }
}
