//! `erosion` and `dilation`: OpenCV's `erode` / `dilate` on 8-bit images, bit-exact.
//!
//! What OpenCV computes (`modules/imgproc/src/morph.dispatch.cpp`): the element is
//! `getStructuringElement(shape, (size, size))` with the anchor at `size / 2`; each output
//! sample is the min (erode) or max (dilate) of the input samples under the element placed
//! with its anchor on the pixel, each channel alone. The default border is constant with
//! `morphologyDefaultBorderValue()`, which becomes 255 for erode and 0 for dilate, so cells
//! outside the image never win: windows are clipped to the image. A full (rect) element
//! with `iterations > 1` is one pass with a `size + (iterations - 1) * (size - 1)` element
//! and the anchor times `iterations`, as OpenCV does; other shapes run `iterations` passes.
//! Dilation uses the element as it is, not mirrored: OpenCV's own filters do so, and its
//! IPP path (which mirrors) only runs for centred anchors, where every shape is symmetric.
//!
//! Written here rather than taken from imageproc: imageproc's morphology is grey-only, has
//! its own border and anchor conventions and costs O(element area) per pixel.
//!
//! How it is fast: every element row is one contiguous run of columns. Per source row,
//! a run of up to seven pixels is the fold of that many shifted copies of the row (whole-row
//! slice ops that the compiler vectorises; channels stay interleaved, so a pixel shift is
//! a `channels`-byte shift), and longer runs come from a sparse table (min over 1, 2, 4, ...
//! pixels) with one more op. Output rows then take the min of the element rows' run minima,
//! kept in a small ring of rows per band; tall full elements use van Herk/Gil-Werman
//! instead (three ops per byte whatever the height). Bands of output rows run in parallel
//! on rayon, in place, with AVX2 code when the CPU has it.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{GrayImage, RgbImage};
use rayon::prelude::*;

use super::bands::Bands;
use super::dispatch::avx2_fma;
use super::params::{choice, params, ranged};
use super::{OpContext, OpError};
use crate::frame::Pixels;

choice! {
    /// A structuring element shape, as `getStructuringElement` draws it.
    pub enum Shape {
        /// All ones (`MORPH_RECT`).
        Rect = "rect",
        /// The inscribed ellipse (`MORPH_ELLIPSE`).
        Ellipse = "ellipse",
        /// The anchor row and column (`MORPH_CROSS`).
        Cross = "cross",
    }
}

ranged! {
    /// Width and height of a structuring element in pixels.
    pub struct ElementSize(u32): int 1..=99;
}

ranged! {
    /// How many times erosion or dilation is applied.
    pub struct Iterations(u32): int 1..=50;
}

params! {
    /// Parameters shared by `erosion` and `dilation`; the defaults are the original app's
    /// `np.ones((5, 5))`, applied once.
    pub struct MorphParams {
        /// The element's shape.
        pub shape: Shape = Shape::Rect
            => "shape", "structuring element shape (getStructuringElement)";
        /// Width and height of the element in pixels; the anchor is at `size / 2`.
        pub size: ElementSize = ElementSize::of(5)
            => "size", "element width and height in pixels; anchor at size/2";
        /// How many times the op is applied.
        pub iterations: Iterations = Iterations::of(1) => "iterations", "times the op is applied";
    }
}

/// A square structuring element as `getStructuringElement` builds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    /// Width and height.
    pub size: usize,
    /// Anchor column and row (`size / 2` for both).
    pub anchor: usize,
    /// For each row, the half-open column range `[start, end)` of ones (empty if equal).
    pub runs: Vec<(usize, usize)>,
}

impl Element {
    /// `getStructuringElement(shape, Size(size, size))` with the default anchor.
    pub fn new(shape: Shape, size: usize) -> Element {
        let size = size.max(1);
        let anchor = size / 2;
        // OpenCV draws a 1x1 element of any shape as a rect.
        let shape = if size == 1 { Shape::Rect } else { shape };
        let (r, c) = ((size / 2) as i64, (size / 2) as i64);
        let inv_r2 = if r != 0 {
            1.0 / (r as f64 * r as f64)
        } else {
            0.0
        };
        let runs = (0..size)
            .map(|i| match shape {
                Shape::Rect => (0, size),
                Shape::Cross if i == anchor => (0, size),
                Shape::Cross => (anchor, anchor + 1),
                Shape::Ellipse => {
                    let dy = i as i64 - r;
                    if dy.abs() > r {
                        return (0, 0);
                    }
                    // saturate_cast<int>(double) rounds half to even, as cvRound does.
                    let dx = (c as f64 * (((r * r - dy * dy) as f64) * inv_r2).sqrt())
                        .round_ties_even() as i64;
                    let j1 = (c - dx).max(0) as usize;
                    let j2 = (c + dx + 1).min(size as i64) as usize;
                    (j1, j2)
                }
            })
            .collect();
        Element { size, anchor, runs }
    }

    /// Whether every cell is one (OpenCV's `countNonZero(kernel) == rows * cols`).
    pub fn is_full(&self) -> bool {
        self.runs.iter().all(|&r| r == (0, self.size))
    }

    /// The element as a 0/1 matrix, row by row (for tests and display).
    pub fn to_matrix(&self) -> Vec<Vec<u8>> {
        self.runs
            .iter()
            .map(|&(a, b)| (0..self.size).map(|j| u8::from(j >= a && j < b)).collect())
            .collect()
    }
}

/// Which extremum a pass takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MorphOp {
    /// Minimum (`cv::erode`).
    Erode,
    /// Maximum (`cv::dilate`).
    Dilate,
}

/// `cv::erode(img, getStructuringElement(shape, (size, size)), iterations=n)`.
pub fn erode(input: Pixels, p: &MorphParams, ctx: &OpContext) -> Result<Pixels, OpError> {
    morph(input, MorphOp::Erode, p, ctx)
}

/// `cv::dilate(img, getStructuringElement(shape, (size, size)), iterations=n)`.
pub fn dilate(input: Pixels, p: &MorphParams, ctx: &OpContext) -> Result<Pixels, OpError> {
    morph(input, MorphOp::Dilate, p, ctx)
}

/// Erodes or dilates each channel of the image; grey stays grey.
pub fn morph(
    input: Pixels,
    op: MorphOp,
    p: &MorphParams,
    ctx: &OpContext,
) -> Result<Pixels, OpError> {
    let element = Element::new(p.shape, p.size.get() as usize);
    let iterations = p.iterations.get();
    let (w, h) = (input.width() as usize, input.height() as usize);
    match input {
        Pixels::Gray(g) => {
            let raw = morph_raw(g.into_raw(), w, h, 1, op, &element, iterations, ctx)?;
            Ok(Pixels::Gray(
                GrayImage::from_raw(w as u32, h as u32, raw).expect("same size as the input"),
            ))
        }
        Pixels::Rgb(c) => {
            let raw = morph_raw(c.into_raw(), w, h, 3, op, &element, iterations, ctx)?;
            Ok(Pixels::Rgb(
                RgbImage::from_raw(w as u32, h as u32, raw).expect("same size as the input"),
            ))
        }
    }
}

/// Erodes or dilates an interleaved 8-bit buffer of `w * h` pixels of `ch` channels.
#[allow(clippy::too_many_arguments)]
pub fn morph_raw(
    src: Vec<u8>,
    w: usize,
    h: usize,
    ch: usize,
    op: MorphOp,
    element: &Element,
    iterations: u32,
    ctx: &OpContext,
) -> Result<Vec<u8>, OpError> {
    // OpenCV copies the input for a 1x1 element (or zero iterations).
    if w == 0 || h == 0 || element.size == 1 || iterations == 0 {
        return Ok(src);
    }
    let (element, passes) = if element.is_full() && iterations > 1 {
        let n = iterations as usize;
        let size = element.size + (n - 1) * (element.size - 1);
        let runs = vec![(0, size); size];
        let anchor = element.anchor * n;
        (Element { size, anchor, runs }, 1)
    } else {
        (element.clone(), iterations as usize)
    };
    let plan = Plan::new(&element, w, h);
    let mut img = src;
    for pass in 0..passes {
        img = match op {
            MorphOp::Erode => run_pass::<Min>(img, w, h, ch, &plan, ctx, (pass, passes))?,
            MorphOp::Dilate => run_pass::<Max>(img, w, h, ch, &plan, ctx, (pass, passes))?,
        };
    }
    Ok(img)
}

/// The element reduced to what one pass needs on a `w x h` image: the distinct column
/// runs (as pixel offsets from the anchor, clipped to what can reach inside the image) and
/// which run each element row uses, by row offset.
#[derive(Clone, Debug)]
struct Plan {
    /// Distinct runs `(lo, hi)`, inclusive offsets, `lo <= 0 <= hi`.
    runs: Vec<(isize, isize)>,
    /// `(dy, run index)` for every non-empty element row that can reach the image.
    rows: Vec<(isize, usize)>,
    /// Smallest and largest `dy`.
    dy_range: (isize, isize),
    /// A full element: one run and every `dy` in `dy_range`.
    full: bool,
}

impl Plan {
    fn new(e: &Element, w: usize, h: usize) -> Plan {
        let a = e.anchor as isize;
        // Offsets beyond the image size only ever cover outside cells, which never win.
        let (wmax, hmax) = ((w - 1) as isize, (h - 1) as isize);
        let mut runs: Vec<(isize, isize)> = Vec::new();
        let mut rows = Vec::new();
        for (i, &(j1, j2)) in e.runs.iter().enumerate() {
            let dy = i as isize - a;
            if j1 >= j2 || dy < -hmax || dy > hmax {
                continue;
            }
            let lo = (j1 as isize - a).max(-wmax);
            let hi = (j2 as isize - 1 - a).min(wmax);
            let idx = match runs.iter().position(|&r| r == (lo, hi)) {
                Some(i) => i,
                None => {
                    runs.push((lo, hi));
                    runs.len() - 1
                }
            };
            rows.push((dy, idx));
        }
        let dy_min = rows.iter().map(|r| r.0).min().unwrap_or(0);
        let dy_max = rows.iter().map(|r| r.0).max().unwrap_or(0);
        let full = runs.len() == 1 && rows.len() as isize == dy_max - dy_min + 1;
        Plan {
            runs,
            rows,
            dy_range: (dy_min, dy_max),
            full,
        }
    }

    /// Rows of source a band reads beyond its own (above plus below).
    fn halo(&self) -> usize {
        (self.dy_range.1 - self.dy_range.0) as usize
    }

    /// Whether van Herk/Gil-Werman beats summing element rows one by one.
    fn use_vhgw(&self) -> bool {
        self.full && self.halo() + 1 > VHGW_MIN_ROWS
    }
}

/// Full elements at least this tall take the van Herk/Gil-Werman column pass.
const VHGW_MIN_ROWS: usize = 8;

/// The per-sample operation of a pass and the border value that never wins it.
trait Extremum: Send + Sync + 'static {
    /// 255 for min, 0 for max: OpenCV's border value for the default border.
    const NEUTRAL: u8;
    /// The min or max of two samples.
    fn pick(a: u8, b: u8) -> u8;
}

struct Min;
struct Max;

impl Extremum for Min {
    const NEUTRAL: u8 = u8::MAX;
    #[inline(always)]
    fn pick(a: u8, b: u8) -> u8 {
        a.min(b)
    }
}

impl Extremum for Max {
    const NEUTRAL: u8 = 0;
    #[inline(always)]
    fn pick(a: u8, b: u8) -> u8 {
        a.max(b)
    }
}

/// `dst[i] = pick(a[i], b[i])`; plain slices so the compiler vectorises it.
#[inline(always)]
fn pick_into<E: Extremum>(dst: &mut [u8], a: &[u8], b: &[u8]) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = E::pick(x, y);
    }
}

/// `dst[i] = pick(dst[i], a[i])`.
#[inline(always)]
fn pick_assign<E: Extremum>(dst: &mut [u8], a: &[u8]) {
    for (d, &x) in dst.iter_mut().zip(a) {
        *d = E::pick(*d, x);
    }
}

/// `dst[i] = pick(a[i], b[i], c[i])`: one pass instead of two when folding rows.
#[inline(always)]
fn pick3_into<E: Extremum>(dst: &mut [u8], a: &[u8], b: &[u8], c: &[u8]) {
    for (((d, &x), &y), &z) in dst.iter_mut().zip(a).zip(b).zip(c) {
        *d = E::pick(E::pick(x, y), z);
    }
}

/// `dst[i] = pick(dst[i], a[i], b[i])`.
#[inline(always)]
fn pick2_assign<E: Extremum>(dst: &mut [u8], a: &[u8], b: &[u8]) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = E::pick(*d, E::pick(x, y));
    }
}

/// `dst[i] = pick(a[i], ..., e[i])`: the 5x5 rect's rows and columns in one pass each.
#[inline(always)]
fn pick5_into<E: Extremum>(dst: &mut [u8], [a, b, c, d, e]: [&[u8]; 5]) {
    let n = dst.len();
    let (a, b, c, d, e) = (&a[..n], &b[..n], &c[..n], &d[..n], &e[..n]);
    for i in 0..n {
        dst[i] = E::pick(E::pick(E::pick(a[i], b[i]), E::pick(c[i], d[i])), e[i]);
    }
}

/// Folds `rows` (at least one) into `dst`, up to five inputs in the first pass and
/// three (the output included) in each further one.
#[inline(always)]
fn fold_rows<E: Extremum>(dst: &mut [u8], rows: &[&[u8]]) {
    match rows {
        [] => {}
        [a] => dst.copy_from_slice(a),
        [a, b] => pick_into::<E>(dst, a, b),
        [a, b, c] => pick3_into::<E>(dst, a, b, c),
        [a, b, c, d] => {
            pick3_into::<E>(dst, a, b, c);
            pick_assign::<E>(dst, d);
        }
        [a, b, c, d, e, rest @ ..] => {
            pick5_into::<E>(dst, [a, b, c, d, e]);
            let mut it = rest.chunks_exact(2);
            for pair in &mut it {
                pick2_assign::<E>(dst, pair[0], pair[1]);
            }
            if let [last] = it.remainder() {
                pick_assign::<E>(dst, last);
            }
        }
    }
}

/// Runs up to this long are folded from shifted rows; longer ones use the sparse table.
const DIRECT_RUN: usize = 7;

/// Horizontal run minima of one row: the row padded with the neutral value, and the
/// sparse table over it (level `j` holds the extremum of `2^j` consecutive pixels).
struct RowTable {
    /// Pixels of padding before the row.
    pad_left: usize,
    /// Bytes of one image row.
    row_bytes: usize,
    /// Bytes per pixel.
    ch: usize,
    /// Level `j` has `padded_len - (2^j - 1) * ch` bytes.
    levels: Vec<Vec<u8>>,
}

impl RowTable {
    #[inline(always)]
    fn new<E: Extremum>(w: usize, ch: usize, runs: &[(isize, isize)]) -> RowTable {
        let pad_left = runs.iter().map(|r| (-r.0) as usize).max().unwrap_or(0);
        let pad_right = runs.iter().map(|r| r.1 as usize).max().unwrap_or(0);
        let longest = runs
            .iter()
            .map(|r| (r.1 - r.0 + 1) as usize)
            .max()
            .unwrap_or(1);
        let padded = (pad_left + w + pad_right) * ch;
        let n_levels = longest.ilog2() as usize + 1;
        let levels = (0..n_levels)
            .map(|j| vec![E::NEUTRAL; padded - ((1 << j) - 1) * ch])
            .collect();
        RowTable {
            pad_left,
            row_bytes: w * ch,
            ch,
            levels,
        }
    }

    /// Builds the table for one source row.
    #[inline(always)]
    fn load<E: Extremum>(&mut self, row: &[u8]) {
        let start = self.pad_left * self.ch;
        self.levels[0][start..start + self.row_bytes].copy_from_slice(row);
        for j in 1..self.levels.len() {
            let shift = (1 << (j - 1)) * self.ch;
            let (done, rest) = self.levels.split_at_mut(j);
            let prev = &done[j - 1];
            let cur = &mut rest[0];
            let n = cur.len();
            pick_into::<E>(cur, &prev[..n], &prev[shift..shift + n]);
        }
    }

    /// Writes the extremum over pixel offsets `lo..=hi` of every pixel of the loaded row.
    #[inline(always)]
    fn run<E: Extremum>(&self, (lo, hi): (isize, isize), dst: &mut [u8]) {
        let len = (hi - lo + 1) as usize;
        if len <= DIRECT_RUN {
            // Short runs: the shifted rows folded directly, fewer passes than the table.
            let base = (self.pad_left as isize + lo) as usize * self.ch;
            let n = self.row_bytes;
            let level = &self.levels[0];
            let mut shifted: [&[u8]; DIRECT_RUN] = [&[]; DIRECT_RUN];
            for (k, s) in shifted.iter_mut().enumerate().take(len) {
                let at = base + k * self.ch;
                *s = &level[at..at + n];
            }
            fold_rows::<E>(dst, &shifted[..len]);
            return;
        }
        let j = len.ilog2() as usize;
        let m = 1isize << j;
        let level = &self.levels[j];
        let a = (self.pad_left as isize + lo) as usize * self.ch;
        let b = (self.pad_left as isize + hi - m + 1) as usize * self.ch;
        let n = self.row_bytes;
        if a == b {
            dst.copy_from_slice(&level[a..a + n]);
        } else {
            pick_into::<E>(dst, &level[a..a + n], &level[b..b + n]);
        }
    }
}

/// What every band of one pass shares.
struct Pass<'a> {
    w: usize,
    h: usize,
    ch: usize,
    plan: &'a Plan,
}

/// A band's own rows, which it overwrites with its output, and copies of the source rows
/// just above and below it (neighbouring bands overwrite those concurrently).
struct BandRows<'a> {
    /// First row of the band.
    y0: usize,
    /// The band's rows: source on entry, output on return.
    rows: &'a mut [u8],
    /// Source rows `above_start..y0`.
    above: &'a [u8],
    above_start: usize,
    /// Source rows from the band's end on.
    below: &'a [u8],
}

impl BandRows<'_> {
    /// Source row `r`; inside the band it must not have been overwritten yet.
    #[inline(always)]
    fn source(&self, r: usize, rb: usize) -> &[u8] {
        let y1 = self.y0 + self.rows.len() / rb;
        if r < self.y0 {
            let i = r - self.above_start;
            &self.above[i * rb..(i + 1) * rb]
        } else if r < y1 {
            let i = r - self.y0;
            &self.rows[i * rb..(i + 1) * rb]
        } else {
            let i = r - y1;
            &self.below[i * rb..(i + 1) * rb]
        }
    }

    /// Output row `y`.
    #[inline(always)]
    fn output(&mut self, y: usize, rb: usize) -> &mut [u8] {
        let i = y - self.y0;
        &mut self.rows[i * rb..(i + 1) * rb]
    }
}

/// Runs one pass over the whole image in place, bands of rows in parallel.
///
/// In place, because a band writes output row `y` only after it has read every source
/// row up to `y + dy_max`: no output buffer to allocate and fault in. The rows a band
/// needs from its neighbours are copied first.
fn run_pass<E: Extremum>(
    mut img: Vec<u8>,
    w: usize,
    h: usize,
    ch: usize,
    plan: &Plan,
    ctx: &OpContext,
    (pass_no, passes): (usize, usize),
) -> Result<Vec<u8>, OpError> {
    let rb = w * ch;
    let bands = Bands::per_thread(h).at_least(16).at_least(2 * plan.halo());
    let count = bands.count();
    let (dy_min, dy_max) = plan.dy_range;
    let halos: Vec<(usize, Vec<u8>, Vec<u8>)> = bands
        .ranges()
        .map(|Range { start: y0, end: y1 }| {
            let above_start = (y0 as isize + dy_min).max(0) as usize;
            let below_end = (y1 - 1 + dy_max as usize).min(h - 1) + 1;
            let above = img[above_start * rb..y0 * rb].to_vec();
            let below = img[y1 * rb..below_end.max(y1) * rb].to_vec();
            (above_start, above, below)
        })
        .collect();
    let done = AtomicUsize::new(0);
    let pass = Pass { w, h, ch, plan };
    bands
        .split_mut(&mut img[..], rb)
        .zip(halos.par_iter())
        .try_for_each(|((y, rows), (above_start, above, below))| {
            ctx.cancel.check()?;
            let mut band_rows = BandRows {
                y0: y.start,
                rows,
                above,
                above_start: *above_start,
                below,
            };
            band::<E>(&pass, &mut band_rows);
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            ctx.report((pass_no as f32 + d as f32 / count as f32) / passes as f32);
            Ok::<(), OpError>(())
        })?;
    Ok(img)
}

avx2_fma! {
    /// Computes one band in place, with AVX2 at the AVX2 kernel level.
    fn band<E: Extremum>(pass: &Pass, rows: &mut BandRows) {
        if pass.plan.use_vhgw() {
            band_vhgw::<E>(pass, rows);
        } else {
            band_fold::<E>(pass, rows);
        }
    }
}

/// Element rows one by one: each source row's run minima go to a ring of the last
/// `halo + 1` rows per run, and each output row folds the rows its element covers.
#[inline(always)]
fn band_fold<E: Extremum>(pass: &Pass, band: &mut BandRows) {
    let Pass { w, h, ch, plan } = *pass;
    let rb = w * ch;
    let y0 = band.y0;
    let y1 = y0 + band.rows.len() / rb;
    let (dy_min, dy_max) = plan.dy_range;
    let ring = plan.halo() + 1;
    let mut rings: Vec<Vec<u8>> = plan.runs.iter().map(|_| vec![0; ring * rb]).collect();
    let mut table = RowTable::new::<E>(w, ch, &plan.runs);
    let mut next = (y0 as isize + dy_min).max(0) as usize;
    for y in y0..y1 {
        let last = (y as isize + dy_max).min(h as isize - 1) as usize;
        while next <= last {
            table.load::<E>(band.source(next, rb));
            let slot = next % ring;
            for (u, &run) in plan.runs.iter().enumerate() {
                table.run::<E>(run, &mut rings[u][slot * rb..(slot + 1) * rb]);
            }
            next += 1;
        }
        let picked: Vec<&[u8]> = plan
            .rows
            .iter()
            .filter_map(|&(dy, u)| {
                let r = y as isize + dy;
                (r >= 0 && r < h as isize).then(|| {
                    let slot = r as usize % ring;
                    &rings[u][slot * rb..(slot + 1) * rb]
                })
            })
            .collect();
        fold_rows::<E>(band.output(y, rb), &picked);
    }
}

/// A full element's column pass by van Herk/Gil-Werman: source rows (their run minima)
/// are cut into blocks as tall as the element; a window spans the suffix of one block
/// and the prefix of the next, so each output row costs three ops whatever the height.
/// Rows outside the image enter as the neutral value.
#[inline(always)]
fn band_vhgw<E: Extremum>(pass: &Pass, band: &mut BandRows) {
    let Pass { w, h, ch, plan } = *pass;
    let rb = w * ch;
    let y0 = band.y0;
    let y1 = y0 + band.rows.len() / rb;
    let (dy_min, dy_max) = plan.dy_range;
    let tall = plan.halo() + 1;
    let run = plan.runs[0];
    let mut table = RowTable::new::<E>(w, ch, &plan.runs);
    let mut block = vec![0u8; tall * rb];
    let mut suffix = vec![0u8; tall * rb];
    let mut prefix = vec![0u8; rb];
    let t0 = y0 as isize + dy_min;
    let t_end = y1 as isize - 1 + dy_max;
    for t in t0..=t_end {
        let k = (t - t0) as usize % tall;
        let f = &mut block[k * rb..(k + 1) * rb];
        if t < 0 || t >= h as isize {
            f.fill(E::NEUTRAL);
        } else {
            table.load::<E>(band.source(t as usize, rb));
            table.run::<E>(run, f);
        }
        if k == 0 {
            prefix.copy_from_slice(f);
        } else {
            pick_assign::<E>(&mut prefix, f);
        }
        if k == tall - 1 {
            for i in (0..tall - 1).rev() {
                let (head, tail) = block.split_at_mut((i + 1) * rb);
                pick_assign::<E>(&mut head[i * rb..], &tail[..rb]);
            }
            std::mem::swap(&mut block, &mut suffix);
        }
        let y = t - dy_max;
        if y >= y0 as isize {
            let out = band.output(y as usize, rb);
            if k == tall - 1 {
                out.copy_from_slice(&prefix);
            } else {
                pick_into::<E>(out, &suffix[(k + 1) * rb..(k + 2) * rb], &prefix);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(e: &Element) -> Vec<String> {
        e.to_matrix()
            .iter()
            .map(|r| r.iter().map(|v| char::from(b'0' + v)).collect())
            .collect()
    }

    #[test]
    fn elements_match_get_structuring_element() {
        // Printed by cv2.getStructuringElement in OpenCV 5.0.
        assert_eq!(
            rows(&Element::new(Shape::Ellipse, 5)),
            ["00100", "11111", "11111", "11111", "00100"]
        );
        assert_eq!(
            rows(&Element::new(Shape::Ellipse, 6)),
            ["000100", "011111", "111111", "111111", "111111", "011111"]
        );
        assert_eq!(
            rows(&Element::new(Shape::Ellipse, 7)),
            ["0001000", "0111110", "1111111", "1111111", "1111111", "0111110", "0001000"]
        );
        assert_eq!(
            rows(&Element::new(Shape::Cross, 4)),
            ["0010", "0010", "1111", "0010"]
        );
        assert_eq!(rows(&Element::new(Shape::Ellipse, 2)), ["01", "11"]);
        let big = Element::new(Shape::Ellipse, 99);
        let counts: Vec<usize> = big.runs.iter().map(|r| r.1 - r.0).collect();
        assert_eq!(counts.iter().sum::<usize>(), 7633);
        assert_eq!(&counts[..10], &[1, 21, 29, 35, 39, 45, 47, 51, 55, 57]);
        assert!(Element::new(Shape::Cross, 1).is_full());
    }

    /// The definition, pixel by pixel: extremum over element cells inside the image,
    /// `iterations` times with the element as given.
    fn naive(
        src: &[u8],
        w: usize,
        h: usize,
        ch: usize,
        op: MorphOp,
        e: &Element,
        iterations: u32,
    ) -> Vec<u8> {
        let mut img = src.to_vec();
        for _ in 0..iterations {
            let mut out = img.clone();
            for y in 0..h {
                for x in 0..w {
                    for c in 0..ch {
                        let mut acc: Option<u8> = None;
                        for (i, &(j1, j2)) in e.runs.iter().enumerate() {
                            for j in j1..j2 {
                                let sy = y as isize + i as isize - e.anchor as isize;
                                let sx = x as isize + j as isize - e.anchor as isize;
                                if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                                    continue;
                                }
                                let v = img[(sy as usize * w + sx as usize) * ch + c];
                                acc = Some(match (acc, op) {
                                    (None, _) => v,
                                    (Some(a), MorphOp::Erode) => a.min(v),
                                    (Some(a), MorphOp::Dilate) => a.max(v),
                                });
                            }
                        }
                        out[(y * w + x) * ch + c] = acc.expect("anchor is inside");
                    }
                }
            }
            img = out;
        }
        img
    }

    /// A small deterministic noise image (xorshift), with flat patches so ties occur.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                if (i / 7) % 5 == 0 {
                    128
                } else {
                    (s >> 24) as u8
                }
            })
            .collect()
    }

    #[test]
    fn matches_the_definition_on_random_images() {
        let ctx = OpContext::default();
        let mut seed = 1;
        for &(w, h) in &[(1, 1), (7, 3), (3, 9), (23, 17), (40, 31), (11, 150)] {
            for ch in [1, 3] {
                for shape in [Shape::Rect, Shape::Ellipse, Shape::Cross] {
                    for (size, iterations) in [
                        (1, 1),
                        (2, 1),
                        (3, 2),
                        (4, 3),
                        (5, 1),
                        (9, 1),
                        (12, 2),
                        (31, 1),
                    ] {
                        seed += 1;
                        let src = noise(w * h * ch, seed);
                        let e = Element::new(shape, size);
                        for op in [MorphOp::Erode, MorphOp::Dilate] {
                            let got =
                                morph_raw(src.clone(), w, h, ch, op, &e, iterations, &ctx).unwrap();
                            let want = naive(&src, w, h, ch, op, &e, iterations);
                            assert!(
                                got == want,
                                "{op:?} {shape:?} size {size} x{iterations} on {w}x{h}x{ch}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tall_rect_takes_vhgw_and_short_one_does_not() {
        let e = Element::new(Shape::Rect, 9);
        assert!(Plan::new(&e, 50, 50).use_vhgw());
        assert!(!Plan::new(&Element::new(Shape::Rect, 5), 50, 50).use_vhgw());
        // Clipped to the image: a 3-row image never needs more than 5 rows.
        assert!(!Plan::new(&e, 50, 3).use_vhgw());
    }

    #[test]
    fn cancelled_token_stops_the_op() {
        let ctx = OpContext::default();
        ctx.cancel.cancel();
        let img = Pixels::Gray(GrayImage::new(8, 8));
        let r = erode(img, &MorphParams::default(), &ctx);
        assert_eq!(r, Err(OpError::Cancelled));
    }
}
