//! `edge-detection`: OpenCV's `Canny(gray, low, high, aperture, L2gradient)`, bit-exact.
//!
//! The steps are OpenCV 5.0's (`modules/imgproc/src/canny.cpp`):
//! 1. `Sobel` d/dx and d/dy in `i16` with `BORDER_REPLICATE` ([`IntSobel`]); aperture 7
//!    is scaled by 1/16 and so are the thresholds.
//! 2. Magnitude `|dx| + |dy|` or `dx² + dy²` (then the thresholds are squared), with a
//!    zero magnitude outside the image.
//! 3. Non-maximum suppression along the gradient, its direction picked with OpenCV's
//!    fixed-point `tan(22.5°)` test, with OpenCV's mix of `>` and `>=`.
//! 4. Hysteresis: pixels above `high` seed, and every 8-connected surviving pixel above
//!    `low` joins. OpenCV floods slices in parallel and then the pixels on slice borders;
//!    the result is the set of components either way, so bands here do the same.
//!
//! How it runs: row bands on rayon, each computing its gradients a row at a time (two
//! halo rows), suppressing in blocks of 32 columns (blocks with no magnitude above `low`
//! are skipped; the rest is branch-free so it vectorises), and flooding while its part of
//! the map is still in cache. The map is the output image itself (0 not an edge, 1
//! candidate, 255 edge), so the last pass only clears candidates no edge reached. Stacks
//! push without branches: mispredictions, not arithmetic, were the cost.
//!
//! Written here because imageproc's Canny differs from OpenCV's (float gradients,
//! different direction bins and tie rules), and to run it in row bands on rayon.

use std::sync::atomic::{AtomicUsize, Ordering};

use image::GrayImage;
use rayon::prelude::*;

use super::bands::Bands;
use super::dispatch::avx2_fma;
use super::params::{params, ranged, ParamError};
use super::sobel::{CannyAperture, IntSobel};
use super::{OpContext, OpError};

ranged! {
    /// A hysteresis threshold of `edge-detection`, on the gradient magnitude.
    pub struct Threshold(f64): float 0.0..=100_000.0;
}

params! {
    /// Parameters of `edge-detection` (OpenCV's `Canny`). The fields are private because
    /// `low` may not be above `high`: [`CannyParams::new`] checks it.
    pub struct CannyParams {
        /// Lower hysteresis threshold.
        low: Threshold = Threshold::of(90.0)
            => "low", "lower hysteresis threshold: weaker edges are dropped";
        /// Upper hysteresis threshold.
        high: Threshold = Threshold::of(180.0)
            => "high", "upper hysteresis threshold: stronger edges start a line";
        /// Sobel aperture.
        aperture: CannyAperture = CannyAperture::Three => "aperture", "Sobel aperture size";
        /// Magnitude `sqrt(dx² + dy²)` instead of `|dx| + |dy|`.
        l2_gradient: bool = false
            => "l2-gradient", "use the L2 gradient magnitude instead of L1";
    }
    check = CannyParams::check;
}

impl CannyParams {
    /// The params, unless `low` is above `high`. The defaults are the original app's
    /// `cv2.Canny(gray, 90, 180)`.
    pub fn new(
        low: Threshold,
        high: Threshold,
        aperture: CannyAperture,
        l2_gradient: bool,
    ) -> Result<Self, ParamError> {
        let p = Self {
            low,
            high,
            aperture,
            l2_gradient,
        };
        p.check("edge-detection")?;
        Ok(p)
    }

    fn check(&self, op: &str) -> Result<(), ParamError> {
        if self.low > self.high {
            return Err(ParamError::new(
                op,
                "low",
                format!("{} is above high ({})", self.low.get(), self.high.get()),
            ));
        }
        Ok(())
    }

    /// Lower hysteresis threshold.
    pub fn low(&self) -> Threshold {
        self.low
    }

    /// Upper hysteresis threshold.
    pub fn high(&self) -> Threshold {
        self.high
    }

    /// Sobel aperture.
    pub fn aperture(&self) -> CannyAperture {
        self.aperture
    }

    /// Whether the magnitude is L2 rather than L1.
    pub fn l2_gradient(&self) -> bool {
        self.l2_gradient
    }
}

/// The thresholds OpenCV compares magnitudes with (`m > low`, `m > high`).
fn int_thresholds(p: &CannyParams) -> (i32, i32) {
    let (mut low, mut high) = (p.low.get(), p.high.get());
    if p.aperture == CannyAperture::Seven {
        low /= 16.0;
        high /= 16.0;
    }
    if low > high {
        std::mem::swap(&mut low, &mut high);
    }
    if p.l2_gradient {
        low = low.min(32767.0);
        high = high.min(32767.0);
        if low > 0.0 {
            low *= low;
        }
        if high > 0.0 {
            high *= high;
        }
    }
    (low.floor() as i32, high.floor() as i32)
}

// Map values. The map is the output image itself: NOT and EDGE are already the output's
// 0 and 255, and the MAYBE pixels no edge reached become 0 at the end.
const NOT: u8 = 0;
const MAYBE: u8 = 1;
const EDGE: u8 = 255;

/// OpenCV's `(int)(tan(22.5°) * 2^15 + 0.5)`.
const TG22: i32 = 13573;

/// The magnitudes of the rows above and below one row, and that row's gradients.
struct Window<'a> {
    prev: &'a [i32],
    cur: &'a Gradients,
    next: &'a [i32],
}

/// One image row's gradients and magnitude (padded by one zero on each side).
struct Gradients {
    dx: Vec<i16>,
    dy: Vec<i16>,
    mag: Vec<i32>,
}

impl Gradients {
    fn new(w: usize) -> Self {
        Self {
            dx: vec![0; w],
            dy: vec![0; w],
            mag: vec![0; w + 2],
        }
    }
}

/// OpenCV's `Canny` on a grey image: 255 on edges, 0 elsewhere.
pub fn canny(gray: &GrayImage, p: &CannyParams, ctx: &OpContext) -> Result<GrayImage, OpError> {
    let (w, h) = (gray.width() as usize, gray.height() as usize);
    // Suppression writes every byte, floods turn candidates into edges in place, and the
    // last pass clears the candidates left: no separate map, no copy.
    let mut out = GrayImage::new(gray.width(), gray.height());
    if w == 0 || h == 0 {
        return Ok(out);
    }
    let (low, high) = int_thresholds(p);
    let aperture = p.aperture;
    let bands = bands(h, w);
    let count = bands.count() as f32;
    let done = AtomicUsize::new(0);

    // Gradients, suppression and hysteresis inside each band, in parallel.
    bands.split_mut(&mut out, w).try_for_each(|(rows, band)| {
        ctx.cancel.check()?;
        let seeds = suppress_band(gray, aperture, p.l2_gradient, (low, high), rows.start, band);
        flood(band, w, seeds);
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        ctx.report(0.9 * n as f32 / count);
        Ok::<(), OpError>(())
    })?;
    ctx.cancel.check()?;

    // Edges that cross band borders: flood again from the edge pixels on border rows.
    let mut seeds = Stack::default();
    for y0 in bands.borders() {
        for y in [y0 - 1, y0] {
            for (x, &v) in out.as_raw()[y * w..(y + 1) * w].iter().enumerate() {
                seeds.reserve(1);
                seeds.push_if(pack(x, y), v == EDGE);
            }
        }
    }
    flood(&mut out, w, seeds);

    out.par_chunks_mut(1 << 16).for_each(clear_candidates);
    ctx.report(1.0);
    Ok(out)
}

/// The parallel bands: a few per thread, and few enough rows that a band's map stays in
/// the L2 cache until its flood has run (the flood reads it in no fixed order).
fn bands(h: usize, w: usize) -> Bands {
    const MAP_BYTES: usize = 256 << 10;
    Bands::per_thread(h).at_most(MAP_BYTES / w).at_least(16)
}

/// A pixel's column and row (within its band or the image) as one stack entry.
#[inline(always)]
fn pack(x: usize, y: usize) -> u64 {
    x as u64 | (y as u64) << 32
}

avx2_fma! {
    /// Turns the [`MAYBE`] pixels no edge reached into 0, rewriting only the 64-byte
    /// stretches that hold any (most hold none).
    fn clear_candidates(map: &mut [u8]) {
        for chunk in map.chunks_mut(64) {
            if chunk.iter().fold(false, |any, &v| any | (v == MAYBE)) {
                for v in chunk {
                    *v = if *v == MAYBE { NOT } else { *v };
                }
            }
        }
    }
}

/// Fills `band` (image rows `y0..`, `w` wide) with the suppression map: [`EDGE`] where
/// the magnitude peaks above `high`, [`MAYBE`] where it peaks above `low`, [`NOT`]
/// elsewhere. Returns the edges, as band coordinates.
fn suppress_band(
    gray: &GrayImage,
    aperture: CannyAperture,
    l2: bool,
    (low, high): (i32, i32),
    y0: usize,
    band: &mut [u8],
) -> Stack {
    let (w, h) = (gray.width() as usize, gray.height() as usize);
    let mut sobel = IntSobel::new(gray, aperture);
    let mut fill = |y: isize, g: &mut Gradients| {
        if y < 0 || y as usize >= h {
            g.mag.fill(0);
        } else {
            sobel.row_derivatives(y as usize, &mut g.dx, &mut g.dy);
            magnitude(&g.dx, &g.dy, l2, &mut g.mag[1..w + 1]);
        }
    };
    let (mut prev, mut cur, mut next) = (Gradients::new(w), Gradients::new(w), Gradients::new(w));
    fill(y0 as isize - 1, &mut prev);
    fill(y0 as isize, &mut cur);
    let mut seeds = Stack::default();
    let mut flags = vec![0u8; w];
    for (i, row) in band.chunks_mut(w).enumerate() {
        let y = (y0 + i) as isize;
        fill(y + 1, &mut next);
        let window = Window {
            prev: &prev.mag,
            cur: &cur,
            next: &next.mag,
        };
        suppress_row(
            &window,
            (low, high),
            &mut flags,
            row,
            pack(0, i),
            &mut seeds,
        );
        std::mem::swap(&mut prev, &mut cur);
        std::mem::swap(&mut cur, &mut next);
    }
    seeds
}

avx2_fma! {
    /// `|dx| + |dy|` or `dx² + dy²`, as OpenCV's magnitude loop.
    fn magnitude(dx: &[i16], dy: &[i16], l2: bool, mag: &mut [i32]) {
        let it = mag.iter_mut().zip(dx.iter().zip(dy));
        if l2 {
            for (m, (&x, &y)) in it {
                let (x, y) = (x as i32, y as i32);
                // At most 2 * 32768^2 = 2^31: wrapping is exact (and vectorises).
                *m = x.wrapping_mul(x).wrapping_add(y.wrapping_mul(y));
            }
        } else {
            for (m, (&x, &y)) in it {
                *m = (x as i32).abs().wrapping_add((y as i32).abs());
            }
        }
    }
}

avx2_fma! {
    /// Non-maximum suppression of one row (magnitudes padded by one zero on each side),
    /// `flags` being scratch space. Pushes `base + pack(column, 0)` of each [`EDGE`] onto
    /// `seeds`.
    ///
    /// Works in blocks of 32 columns: a block without any magnitude above `low` (most of
    /// a photo) is [`NOT`] throughout and skipped after a few word compares.
    fn suppress_row(
        rows: &Window,
        thresholds: (i32, i32),
        flags: &mut [u8],
        out: &mut [u8],
        base: u64,
        seeds: &mut Stack,
    ) {
        let (low, high) = thresholds;
        let w = out.len();
        // Per column, bit 0: above `low`; bit 1: above `high` (a plain vectorised pass).
        for (f, &m) in flags[..w].iter_mut().zip(&rows.cur.mag[1..w + 1]) {
            *f = u8::from(m > low) | (u8::from(m > high) << 1);
        }
        let full = w / BLOCK * BLOCK;
        let (blocks, rest) = out.split_at_mut(full);
        for (b, out) in blocks.chunks_exact_mut(BLOCK).enumerate() {
            let out: &mut [u8; BLOCK] = out.try_into().expect("chunks are BLOCK long");
            let j0 = b * BLOCK;
            let any = or_words(&flags[j0..j0 + BLOCK]);
            if any & BYTE_BIT0 == 0 {
                *out = [NOT; BLOCK];
                continue;
            }
            suppress_span(rows, thresholds, j0, out);
            if any & BYTE_BIT1 != 0 {
                push_edges(out, base + j0 as u64, seeds);
            }
        }
        suppress_span(rows, thresholds, full, rest);
        push_edges(rest, base + full as u64, seeds);
    }
}

/// Columns per suppression block.
const BLOCK: usize = 32;
/// Bit 0 (resp. 1, 7) of every byte of a `u64`.
const BYTE_BIT0: u64 = 0x0101_0101_0101_0101;
const BYTE_BIT1: u64 = BYTE_BIT0 << 1;
const BYTE_BIT7: u64 = BYTE_BIT0 << 7;

/// The bytes of `v` OR-ed together as `u64` words (any bit set in any byte).
#[inline(always)]
fn or_words(v: &[u8]) -> u64 {
    v.chunks(8).fold(0, |acc, c| {
        let mut word = [0u8; 8];
        word[..c.len()].copy_from_slice(c);
        acc | u64::from_le_bytes(word)
    })
}

/// Pushes `base + k` for the column `k` of every [`EDGE`] in `out`, eight map bytes at a
/// time: [`EDGE`] is the only value with bit 7 set.
#[inline(always)]
fn push_edges(out: &[u8], base: u64, seeds: &mut Stack) {
    for (c, chunk) in out.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        seeds.push_marked(u64::from_le_bytes(word) & BYTE_BIT7, base + (c * 8) as u64);
    }
}

/// A stack of packed pixel coordinates pushed without branches (a mispredicted branch
/// per push would cost more than the push): values are written past the top, which only
/// moves over the ones kept.
#[derive(Default)]
struct Stack {
    buf: Vec<u64>,
    len: usize,
}

impl Stack {
    /// Makes room for `n` more values.
    #[inline(always)]
    fn reserve(&mut self, n: usize) {
        if self.buf.len() < self.len + n {
            self.buf.resize(2 * self.buf.len() + n, 0);
        }
    }

    /// Pushes `v` when `keep`.
    #[inline(always)]
    fn push_if(&mut self, v: u64, keep: bool) {
        self.buf[self.len] = v;
        self.len += usize::from(keep);
    }

    /// Pushes `base + k` for each byte `k` of `marks` that is not zero.
    #[inline(always)]
    fn push_marked(&mut self, marks: u64, base: u64) {
        self.reserve(8);
        for k in 0..8 {
            self.push_if(base + k, (marks >> (8 * k)) & 0xff != 0);
        }
    }

    /// Takes the top value off.
    fn pop(&mut self) -> Option<u64> {
        self.len = self.len.checked_sub(1)?;
        Some(self.buf[self.len])
    }
}

/// The suppression map for columns `j0..j0 + out.len()`, without branches so it
/// vectorises.
///
/// OpenCV's test: with `x = |dx|`, `y = |dy| << 15`, the gradient is horizontal when
/// `y < x·tg22`, vertical when `y > x·tg22 + (x << 16)`, else diagonal; a peak is
/// `m > before && m >= after` along a straight direction, `m > both` along a diagonal.
#[inline(always)]
fn suppress_span(rows: &Window, (low, high): (i32, i32), j0: usize, out: &mut [u8]) {
    let n = out.len();
    // Padded rows: column j is at j + 1, its left neighbour at j, its right one at j + 2.
    let cur = rows.cur;
    let (prev, mag, next) = (
        &rows.prev[j0..j0 + n + 2],
        &cur.mag[j0..j0 + n + 2],
        &rows.next[j0..j0 + n + 2],
    );
    let (dx, dy) = (&cur.dx[j0..j0 + n], &cur.dy[j0..j0 + n]);
    for j in 0..n {
        let m = mag[j + 1];
        let (xs, ys) = (dx[j] as i32, dy[j] as i32);
        // |d| <= 24480 for every aperture, so these stay below 2^31 (wrapping only
        // spares the overflow checks that would stop vectorisation).
        let x = xs.abs();
        let y = ys.abs() << 15;
        let tg22x = x.wrapping_mul(TG22);
        let horizontal = y < tg22x;
        let vertical = y > tg22x.wrapping_add(x << 16);
        // Every comparison is made and the right one picked afterwards: selecting
        // among loads would turn into gathers.
        let along_row = (m > mag[j]) & (m >= mag[j + 2]);
        let along_column = (m > prev[j + 1]) & (m >= next[j + 1]);
        // Same signs: the diagonal runs top-left to bottom-right.
        let falling = (m > prev[j]) & (m > next[j + 2]);
        let rising = (m > prev[j + 2]) & (m > next[j]);
        let same = (xs ^ ys) >= 0;
        let diagonal = if same { falling } else { rising };
        let peak = if horizontal {
            along_row
        } else if vertical {
            along_column
        } else {
            diagonal
        };
        out[j] = if peak & (m > low) {
            if m > high {
                EDGE
            } else {
                MAYBE
            }
        } else {
            NOT
        };
    }
}

/// Marks as [`EDGE`] every [`MAYBE`] pixel 8-connected to `seeds` (packed coordinates)
/// within `map`, whole rows `w` wide. The flood never leaves `map`.
fn flood(map: &mut [u8], w: usize, mut stack: Stack) {
    let rows = map.len() / w;
    while let Some(v) = stack.pop() {
        let (x, y) = ((v & 0xffff_ffff) as usize, (v >> 32) as usize);
        // Neighbours with coordinates clamped to the map: at an edge a pixel is visited
        // twice or is the centre itself, which is harmless (it is no longer MAYBE).
        let xs = [x.saturating_sub(1), x, (x + 1).min(w - 1)];
        let ys = [y.saturating_sub(1), y, (y + 1).min(rows - 1)];
        // Most popped pixels have no candidate around them: one test for the 3×3 block.
        let mut any = false;
        for &ny in &ys {
            for &nx in &xs {
                any |= map[ny * w + nx] == MAYBE;
            }
        }
        if !any {
            continue;
        }
        stack.reserve(9);
        for &ny in &ys {
            for &nx in &xs {
                let n = ny * w + nx;
                let candidate = map[n] == MAYBE;
                map[n] = if candidate { EDGE } else { map[n] };
                stack.push_if(pack(nx, ny), candidate);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ops::Params;

    fn params(low: f64, high: f64, aperture: CannyAperture, l2: bool) -> CannyParams {
        let t = |v| Threshold::new(v).unwrap();
        CannyParams::new(t(low), t(high), aperture, l2).unwrap()
    }

    #[test]
    fn thresholds_round_as_opencv() {
        use CannyAperture::*;
        assert_eq!(
            int_thresholds(&params(90.0, 180.0, Three, false)),
            (90, 180)
        );
        assert_eq!(
            int_thresholds(&params(50.5, 150.7, Three, false)),
            (50, 150)
        );
        // L2 squares before flooring: 50.5² = 2550.25.
        assert_eq!(
            int_thresholds(&params(50.5, 150.0, Five, true)),
            (2550, 22500)
        );
        // Aperture 7 divides by 16 first.
        assert_eq!(int_thresholds(&params(100.0, 300.0, Seven, false)), (6, 18));
    }

    #[test]
    fn low_above_high_is_rejected() {
        let t = |v| Threshold::new(v).unwrap();
        let e = CannyParams::new(t(200.0), t(100.0), CannyAperture::Three, false).unwrap_err();
        assert_eq!(e.to_string(), "edge-detection.low: 200 is above high (100)");
        let e = CannyParams::from_pairs("edge-detection", [("low", "200")]).unwrap_err();
        assert_eq!(e.key, "low");
        assert!(CannyParams::new(t(100.0), t(100.0), CannyAperture::Three, false).is_ok());
    }

    #[test]
    fn a_step_gives_one_line() {
        // A vertical step from 0 to 200: the edge is the column where |dx| peaks first.
        let img = GrayImage::from_fn(16, 12, |x, _| image::Luma([if x < 8 { 0 } else { 200 }]));
        let out = canny(&img, &CannyParams::default(), &OpContext::default()).unwrap();
        for y in 0..12 {
            let row: Vec<u8> = (0..16).map(|x| out.get_pixel(x, y)[0]).collect();
            let edges: Vec<usize> = (0..16).filter(|&x| row[x] == 255).collect();
            assert_eq!(edges, [7], "row {y}: {row:?}");
        }
    }

    #[test]
    fn hysteresis_crosses_band_borders() {
        // A faint vertical line longer than a band, strong only at its top.
        let h = 200;
        let img = GrayImage::from_fn(9, h, |x, y| {
            let v = if x == 4 {
                if y < 3 {
                    250
                } else {
                    60
                }
            } else {
                0
            };
            image::Luma([v])
        });
        let p = params(100.0, 500.0, CannyAperture::Three, false);
        let out = canny(&img, &p, &OpContext::default()).unwrap();
        let on = (0..h)
            .filter(|&y| (0..9).any(|x| out.get_pixel(x, y)[0] == 255))
            .count();
        assert_eq!(on, h as usize);
    }
}
