//! Scale-space extrema as OpenCV's `findScaleSpaceExtrema` and `adjustLocalExtrema` find
//! them (float build: `SIFT_FIXPT_SCALE = 1`, the DoG in grey levels 0..255).
//!
//! A pixel of DoG layer `1..=layers`, at least 5 pixels from the border, is a candidate
//! when `|v| > floor(0.5·contrast/layers·255)` and it is `>=` (for `v > 0`) or `<=`
//! (for `v < 0`) all 26 neighbours in its own and the adjacent layers. The test is
//! computed a row at a time as `v == max` (or `min`) of the 3x3x3 block, which is the
//! same predicate and vectorises. Each candidate is then refined by up to 5 Newton steps
//! on the quadratic fit (Cramer's rule in `f32`, as `Matx33f::solve(DECOMP_LU)` does)
//! and rejected for low contrast or an edge-like Hessian.

use super::math::{cv_round, fma_dispatch, fused, Arith};
use super::scale_space::Stack;

/// Pixels this close to the border are never keypoints (`SIFT_IMG_BORDER`).
pub(crate) const IMG_BORDER: usize = 5;
/// Newton steps before a candidate is given up (`SIFT_MAX_INTERP_STEPS`).
const MAX_INTERP_STEPS: usize = 5;

/// The integer pre-filter threshold on `|DoG|`.
pub(crate) fn threshold(contrast: f64, layers: usize) -> f32 {
    (0.5 * contrast / layers as f64 * 255.0).floor() as i32 as f32
}

/// Finds the candidates on rows `lo..hi` of every DoG layer `1..=layers` and calls
/// `found(layer, row, col)` for each. The stack must hold rows `lo - 1..hi + 1`.
pub(crate) fn scan_rows(
    stack: &Stack,
    layers: usize,
    threshold: f32,
    lo: usize,
    hi: usize,
    found: &mut dyn FnMut(usize, usize, usize),
) {
    let w = stack.w;
    if w <= 2 * IMG_BORDER || lo >= hi {
        return;
    }
    let nd = layers + 2;
    // A ring of three rows per DoG layer (rows y-1, y, y+1 at slots (y+k) % 3), each
    // computed once, and the column max / min of each layer over those rows.
    let mut ring = vec![0f32; nd * 3 * w];
    let mut vmax = vec![0f32; nd * w];
    let mut vmin = vec![0f32; nd * w];
    let mut mask = vec![0u8; w];
    let fill = |ring: &mut [f32], yy: usize| {
        for l in 0..nd {
            let slot = (l * 3 + yy % 3) * w;
            dog_row(
                stack.layers[l + 1].row(yy),
                stack.layers[l].row(yy),
                &mut ring[slot..slot + w],
            );
        }
    };
    fill(&mut ring, lo - 1);
    fill(&mut ring, lo);
    for y in lo..hi {
        fill(&mut ring, y + 1);
        for l in 0..nd {
            let rows = &ring[l * 3 * w..(l + 1) * 3 * w];
            let (a, rest) = rows.split_at(w);
            let (b, c) = rest.split_at(w);
            col_extremes(
                a,
                b,
                c,
                &mut vmax[l * w..(l + 1) * w],
                &mut vmin[l * w..(l + 1) * w],
            );
        }
        for i in 1..=layers {
            let slot = (i * 3 + y % 3) * w;
            extrema_mask(
                &ring[slot..slot + w],
                &vmax[(i - 1) * w..(i + 2) * w],
                &vmin[(i - 1) * w..(i + 2) * w],
                threshold,
                &mut mask,
            );
            for (x, &m) in mask
                .iter()
                .enumerate()
                .take(w - IMG_BORDER)
                .skip(IMG_BORDER)
            {
                if m != 0 {
                    found(i, y, x);
                }
            }
        }
    }
}

fma_dispatch! {
    /// `out = hi - lo`, one row of a DoG layer.
    fn dog_row(hi: &[f32], lo: &[f32], out: &mut [f32]) => dog_row_impl
}

fma_dispatch! {
    /// Element-wise max and min of three rows.
    fn col_extremes(a: &[f32], b: &[f32], c: &[f32], mx: &mut [f32], mn: &mut [f32]) => col_extremes_impl
}

fma_dispatch! {
    /// Marks extrema of the centre row against the 3x3x3 block (`vmax`, `vmin`: the column
    /// extremes of the layers below, at and above, one row of `w` each).
    fn extrema_mask(centre: &[f32], vmax: &[f32], vmin: &[f32], threshold: f32, mask: &mut [u8]) => extrema_mask_impl
}

#[inline(always)]
fn fmax(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

#[inline(always)]
fn fmin(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

#[inline(always)]
fn dog_row_impl<A: Arith>(hi: &[f32], lo: &[f32], out: &mut [f32]) {
    let _ = A::FUSED;
    for ((o, &h), &l) in out.iter_mut().zip(hi).zip(lo) {
        *o = h - l;
    }
}

#[inline(always)]
fn col_extremes_impl<A: Arith>(a: &[f32], b: &[f32], c: &[f32], mx: &mut [f32], mn: &mut [f32]) {
    let _ = A::FUSED;
    let n = mx.len();
    let (a, b, c, mn) = (&a[..n], &b[..n], &c[..n], &mut mn[..n]);
    for x in 0..n {
        mx[x] = fmax(fmax(a[x], b[x]), c[x]);
        mn[x] = fmin(fmin(a[x], b[x]), c[x]);
    }
}

#[inline(always)]
fn extrema_mask_impl<A: Arith>(
    centre: &[f32],
    vmax: &[f32],
    vmin: &[f32],
    threshold: f32,
    mask: &mut [u8],
) {
    let _ = A::FUSED;
    let w = centre.len();
    let (m0, rest) = vmax.split_at(w);
    let (m1, m2) = rest.split_at(w);
    let (n0, rest) = vmin.split_at(w);
    let (n1, n2) = rest.split_at(w);
    let mask = &mut mask[..w];
    for x in 1..w - 1 {
        let v = centre[x];
        let hi = fmax(
            fmax(
                fmax(fmax(m0[x - 1], m1[x - 1]), m2[x - 1]),
                fmax(fmax(m0[x], m1[x]), m2[x]),
            ),
            fmax(fmax(m0[x + 1], m1[x + 1]), m2[x + 1]),
        );
        let lo = fmin(
            fmin(
                fmin(fmin(n0[x - 1], n1[x - 1]), n2[x - 1]),
                fmin(fmin(n0[x], n1[x]), n2[x]),
            ),
            fmin(fmin(n0[x + 1], n1[x + 1]), n2[x + 1]),
        );
        let is = v.abs() > threshold && ((v > 0.0 && v >= hi) || (v < 0.0 && v <= lo));
        mask[x] = is as u8;
    }
}

/// A refined extremum in its octave's pixel grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Extremum {
    /// DoG layer, `1..=layers`.
    pub layer: usize,
    /// Row.
    pub r: usize,
    /// Column.
    pub c: usize,
    /// Offset across layers, `|xi| < 0.5`.
    pub xi: f32,
    /// Offset down rows.
    pub xr: f32,
    /// Offset along columns.
    pub xc: f32,
    /// Interpolated DoG value (in units of 255).
    pub contrast: f32,
    /// Newton steps taken before converging.
    pub step: usize,
}

/// What refinement made of a candidate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Refined {
    /// Dropped: diverged, left the image, low contrast or on an edge.
    Rejected,
    /// Accepted.
    Kept(Extremum),
    /// Step `step` must be evaluated at `(layer, r, c)`, whose rows this band lacks.
    Elsewhere {
        /// DoG layer.
        layer: usize,
        /// Row.
        r: usize,
        /// Column.
        c: usize,
        /// Steps already taken.
        step: usize,
    },
}

/// Thresholds of the refinement, in the types OpenCV passes them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// DoG layers per octave.
    pub layers: usize,
    /// `contrastThreshold` as `f32`.
    pub contrast: f32,
    /// `edgeThreshold` as `f32`.
    pub edge: f32,
}

/// `adjustLocalExtrema`: Newton steps from `(layer, r, c)` starting at step `step`.
pub(crate) fn refine(
    stack: &Stack,
    lim: &Limits,
    mut layer: usize,
    mut r: usize,
    mut c: usize,
    step: usize,
) -> Refined {
    const IMG_SCALE: f32 = 1.0 / 255.0;
    const DERIV: f32 = IMG_SCALE * 0.5;
    const SECOND: f32 = IMG_SCALE;
    const CROSS: f32 = IMG_SCALE * 0.25;
    let (row_lo, row_hi) = stack.dog_rows();
    let (w, h) = (stack.w, stack.h);
    let (mut xi, mut xr, mut xc) = (0f32, 0f32, 0f32);
    let mut i = step;
    while i < MAX_INTERP_STEPS {
        if r < row_lo + 1 || r + 1 >= row_hi {
            return Refined::Elsewhere {
                layer,
                r,
                c,
                step: i,
            };
        }
        let d = |l: usize, y: usize, x: usize| stack.dog(l, y, x);
        let (cur, prev, next) = (layer, layer - 1, layer + 1);
        let v = d(cur, r, c);
        let grad = [
            (d(cur, r, c + 1) - d(cur, r, c - 1)) * DERIV,
            (d(cur, r + 1, c) - d(cur, r - 1, c)) * DERIV,
            (d(next, r, c) - d(prev, r, c)) * DERIV,
        ];
        let v2 = v * 2.0;
        let dxx = (d(cur, r, c + 1) + d(cur, r, c - 1) - v2) * SECOND;
        let dyy = (d(cur, r + 1, c) + d(cur, r - 1, c) - v2) * SECOND;
        let dss = (d(next, r, c) + d(prev, r, c) - v2) * SECOND;
        let dxy = (d(cur, r + 1, c + 1) - d(cur, r + 1, c - 1) - d(cur, r - 1, c + 1)
            + d(cur, r - 1, c - 1))
            * CROSS;
        let dxs =
            (d(next, r, c + 1) - d(next, r, c - 1) - d(prev, r, c + 1) + d(prev, r, c - 1)) * CROSS;
        let dys =
            (d(next, r + 1, c) - d(next, r - 1, c) - d(prev, r + 1, c) + d(prev, r - 1, c)) * CROSS;
        let x = solve3([[dxx, dxy, dxs], [dxy, dyy, dys], [dxs, dys, dss]], grad);
        xi = -x[2];
        xr = -x[1];
        xc = -x[0];
        if xi.abs() < 0.5 && xr.abs() < 0.5 && xc.abs() < 0.5 {
            break;
        }
        const LIMIT: f32 = (i32::MAX / 3) as f32;
        if xi.abs() > LIMIT || xr.abs() > LIMIT || xc.abs() > LIMIT {
            return Refined::Rejected;
        }
        let nc = c as i64 + cv_round(xc) as i64;
        let nr = r as i64 + cv_round(xr) as i64;
        let nl = layer as i64 + cv_round(xi) as i64;
        let b = IMG_BORDER as i64;
        if nl < 1
            || nl > lim.layers as i64
            || nc < b
            || nc >= w as i64 - b
            || nr < b
            || nr >= h as i64 - b
        {
            return Refined::Rejected;
        }
        (c, r, layer) = (nc as usize, nr as usize, nl as usize);
        i += 1;
    }
    if i >= MAX_INTERP_STEPS {
        return Refined::Rejected;
    }
    let d = |l: usize, y: usize, x: usize| stack.dog(l, y, x);
    let (cur, prev, next) = (layer, layer - 1, layer + 1);
    let v = d(cur, r, c);
    let grad = [
        (d(cur, r, c + 1) - d(cur, r, c - 1)) * DERIV,
        (d(cur, r + 1, c) - d(cur, r - 1, c)) * DERIV,
        (d(next, r, c) - d(prev, r, c)) * DERIV,
    ];
    // GCC contracts these scalar expressions into FMAs in OpenCV's AVX2 build.
    let fma = fused();
    let contrast = if fma {
        let t = grad[2].mul_add(xi, grad[1].mul_add(xr, grad[0] * xc));
        v.mul_add(IMG_SCALE, t * 0.5)
    } else {
        let t = 0.0 + grad[0] * xc + grad[1] * xr + grad[2] * xi;
        v * IMG_SCALE + t * 0.5
    };
    if contrast.abs() * (lim.layers as f32) < lim.contrast {
        return Refined::Rejected;
    }
    let v2 = v * 2.0;
    let dxx = (d(cur, r, c + 1) + d(cur, r, c - 1) - v2) * SECOND;
    let dyy = (d(cur, r + 1, c) + d(cur, r - 1, c) - v2) * SECOND;
    let dxy = (d(cur, r + 1, c + 1) - d(cur, r + 1, c - 1) - d(cur, r - 1, c + 1)
        + d(cur, r - 1, c - 1))
        * CROSS;
    let tr = dxx + dyy;
    let det = if fma {
        dxx.mul_add(dyy, -(dxy * dxy))
    } else {
        dxx * dyy - dxy * dxy
    };
    let e = lim.edge;
    if det <= 0.0 || tr * tr * e >= (e + 1.0) * (e + 1.0) * det {
        return Refined::Rejected;
    }
    Refined::Kept(Extremum {
        layer,
        r,
        c,
        xi,
        xr,
        xc,
        contrast,
        step: i,
    })
}

/// `Matx33f::solve(b, DECOMP_LU)`: Cramer's rule in `f32`; zero when singular.
fn solve3(a: [[f32; 3]; 3], b: [f32; 3]) -> [f32; 3] {
    let det = a[0][0] * (a[1][1] * a[2][2] - a[2][1] * a[1][2])
        - a[0][1] * (a[1][0] * a[2][2] - a[2][0] * a[1][2])
        + a[0][2] * (a[1][0] * a[2][1] - a[2][0] * a[1][1]);
    if det == 0.0 {
        return [0.0; 3];
    }
    let d = 1.0 / det;
    [
        d * (b[0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
            - a[0][1] * (b[1] * a[2][2] - a[1][2] * b[2])
            + a[0][2] * (b[1] * a[2][1] - a[1][1] * b[2])),
        d * (a[0][0] * (b[1] * a[2][2] - a[1][2] * b[2])
            - b[0] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * b[2] - b[1] * a[2][0])),
        d * (a[0][0] * (a[1][1] * b[2] - b[1] * a[2][1])
            - a[0][1] * (a[1][0] * b[2] - b[1] * a[2][0])
            + b[0] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::sift::scale_space::Band;
    use std::borrow::Cow;

    #[test]
    fn threshold_is_floored_in_grey_levels() {
        assert_eq!(threshold(0.04, 3), 1.0);
        assert_eq!(threshold(0.09, 3), 3.0);
    }

    #[test]
    fn solve3_solves_and_is_zero_when_singular() {
        let a = [[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]];
        let x = solve3(a, [3.0, 5.0, 5.0]);
        for (got, want) in x.iter().zip([1.0, 1.0, 1.0]) {
            assert!((got - want).abs() < 1e-6);
        }
        assert_eq!(solve3([[1.0; 3]; 3], [1.0, 2.0, 3.0]), [0.0; 3]);
    }

    /// Five Gaussian layers (sigma 1.4^l) of a 32x32 octave holding one bright blob of
    /// sigma 2 centred at (row 16, col 17.2): its DoG minimum is on layer 2.
    fn blob_stack() -> Stack<'static> {
        let (w, h) = (32, 32);
        let layers = (0..5)
            .map(|l| {
                let v = 4.0 + 1.4f32.powi(2 * l);
                let data = (0..w * h)
                    .map(|i| {
                        let (y, x) = ((i / w) as f32 - 16.0, (i % w) as f32 - 17.2);
                        255.0 * 4.0 / v * (-(x * x + y * y) / (2.0 * v)).exp()
                    })
                    .collect();
                Cow::Owned(Band { w, y0: 0, data })
            })
            .collect();
        Stack { w, h, layers }
    }

    #[test]
    fn scan_finds_the_blob_and_refinement_moves_it_sub_pixel() {
        let stack = blob_stack();
        let mut found = Vec::new();
        scan_rows(&stack, 2, 1.0, 5, 27, &mut |l, r, c| found.push((l, r, c)));
        assert!(found.contains(&(2, 16, 17)), "{found:?}");
        let lim = Limits {
            layers: 2,
            contrast: 0.04,
            edge: 10.0,
        };
        match refine(&stack, &lim, 2, 16, 17, 0) {
            Refined::Kept(e) => {
                assert_eq!((e.layer, e.r, e.c), (2, 16, 17));
                assert!(e.xc > 0.05 && e.xc < 0.5, "{e:?}");
                assert!(e.xr.abs() < 0.05, "{e:?}");
                assert!(e.contrast < 0.0, "a bright blob is a DoG minimum");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refinement_outside_the_band_is_handed_back() {
        let mut stack = blob_stack();
        for l in stack.layers.iter_mut() {
            let b = l.to_mut();
            b.data.drain(..b.w * 10);
            b.y0 = 10;
        }
        let lim = Limits {
            layers: 2,
            contrast: 0.04,
            edge: 10.0,
        };
        assert_eq!(
            refine(&stack, &lim, 1, 10, 17, 2),
            Refined::Elsewhere {
                layer: 1,
                r: 10,
                c: 17,
                step: 2
            }
        );
    }
}
