//! The 128-byte descriptor as OpenCV's `calcSIFTDescriptor` computes it.
//!
//! Gradients in a window of radius `cvRound(3·scl·√2·5/2)` on the keypoint's Gaussian
//! layer are rotated into the keypoint frame, weighted by `exp(-(u² + v²)/8)` (in bin
//! units) and spread by trilinear interpolation over a 4x4 grid of 8-bin orientation
//! histograms. The 128 values are clipped at 0.2 of their L2 norm, renormalised, scaled
//! by 512 and rounded to bytes. Every step keeps OpenCV's order of operations; the
//! norm uses its 8-lane fused accumulation and horizontal sum.

use super::math::{cv_round, exp, fast_atan2, fma_dispatch, magnitude, Arith, Plain};
use super::scale_space::Band;

/// Spatial cells per side (`SIFT_DESCR_WIDTH`).
const D: usize = 4;
/// Orientation bins per cell (`SIFT_DESCR_HIST_BINS`).
const N: usize = 8;
/// Descriptor length.
pub(crate) const LEN: usize = D * D * N;
/// Cell size in units of the keypoint scale (`SIFT_DESCR_SCL_FCTR`).
const SCL_FACTOR: f32 = 3.0;
/// Clipping threshold relative to the norm (`SIFT_DESCR_MAG_THR`).
const MAG_THR: f32 = 0.2;
/// Scale before rounding to bytes (`SIFT_INT_DESCR_FCTR`).
const INT_FACTOR: f32 = 512.0;

/// The largest window radius for a keypoint of scale `scl`, for sizing bands.
pub(crate) fn max_radius(scl: f32) -> usize {
    (SCL_FACTOR * scl * std::f32::consts::SQRT_2 * (D + 1) as f32 * 0.5).ceil() as usize + 1
}

/// Per-task buffers reused across keypoints.
#[derive(Default)]
pub(crate) struct Scratch {
    dx: Vec<f32>,
    dy: Vec<f32>,
    rbin: Vec<f32>,
    cbin: Vec<f32>,
    w: Vec<f32>,
}

impl Scratch {
    /// Room for `n` samples (contents unspecified).
    fn resize(&mut self, n: usize) {
        for v in [
            &mut self.dx,
            &mut self.dy,
            &mut self.rbin,
            &mut self.cbin,
            &mut self.w,
        ] {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        }
    }

    /// Keeps the first `n` samples.
    fn truncate(&mut self, n: usize) {
        for v in [
            &mut self.dx,
            &mut self.dy,
            &mut self.rbin,
            &mut self.cbin,
            &mut self.w,
        ] {
            v.truncate(n);
        }
    }
}

fma_dispatch! {
    /// The descriptor of a keypoint at `(x, y)` (octave pixels) with orientation `ori`
    /// (degrees, `360 - angle`) and scale `scl`, on `img` (an octave of height `h`).
    pub(crate) fn describe(img: &Band, h: usize, x: f32, y: f32, ori: f32, scl: f32, out: &mut [u8; LEN], s: &mut Scratch) => describe_impl
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn describe_impl<A: Arith>(
    img: &Band,
    h: usize,
    x: f32,
    y: f32,
    ori: f32,
    scl: f32,
    out: &mut [u8; LEN],
    s: &mut Scratch,
) {
    let (cols, rows) = (img.w as i64, h as i64);
    let (px, py) = (cv_round(x) as i64, cv_round(y) as i64);
    let rad = ori * (std::f64::consts::PI / 180.0) as f32;
    let (mut cos_t, mut sin_t) = (rad.cos(), rad.sin());
    let bins_per_rad = N as f32 / 360.0;
    let exp_scale = -1.0 / ((D * D) as f32 * 0.5);
    let hist_width = SCL_FACTOR * scl;
    let mut radius = cv_round(hist_width * std::f32::consts::SQRT_2 * (D + 1) as f32 * 0.5) as i64;
    let diag = ((cols as f64) * (cols as f64) + (rows as f64) * (rows as f64)).sqrt() as i64;
    radius = radius.min(diag);
    cos_t /= hist_width;
    sin_t /= hist_width;
    let half = (D / 2) as f32;
    let d = D as f32;

    let side = (2 * radius + 1) as usize;
    s.resize(side * side);
    let mut k = 0;
    for i in -radius..=radius {
        let r = py + i;
        if r <= 0 || r >= rows - 1 {
            continue;
        }
        let fi = i as f32;
        // Only j where both rotated coordinates can be inside (-2.5, 2.5) bins can pass;
        // the exact test below decides, this only skips what cannot (with a 1 px margin).
        let (mut j0, mut j1) = (-radius, radius);
        for (slope, offset) in [(sin_t, fi * cos_t), (cos_t, -(fi * sin_t))] {
            let lim = half + 0.5;
            if slope.abs() > 1e-12 {
                let a = (-lim - offset) / slope;
                let b = (lim - offset) / slope;
                let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                j0 = j0.max(lo.floor() as i64 - 1);
                j1 = j1.min(hi.ceil() as i64 + 1);
            }
        }
        j0 = j0.max(1 - px);
        j1 = j1.min(cols - 2 - px);
        // Both rotated coordinates are monotonic in j (a product by a constant, then
        // sums, each rounded monotonically), so the samples that pass form one run:
        // trim the estimate to it exactly, then take every j in it without a test.
        let rot = |j: i64| {
            let fj = j as f32;
            let c_rot = fj * cos_t - fi * sin_t;
            let r_rot = fj * sin_t + fi * cos_t;
            (c_rot, r_rot, r_rot + half - 0.5, c_rot + half - 0.5)
        };
        let pass = |j: i64| {
            let (_, _, rbin, cbin) = rot(j);
            rbin > -1.0 && rbin < d && cbin > -1.0 && cbin < d
        };
        while j0 <= j1 && !pass(j0) {
            j0 += 1;
        }
        while j1 >= j0 && !pass(j1) {
            j1 -= 1;
        }
        if j0 > j1 {
            continue;
        }
        let (row, up, down) = (
            img.row(r as usize),
            img.row(r as usize - 1),
            img.row(r as usize + 1),
        );
        let n = (j1 - j0 + 1) as usize;
        let c0 = (px + j0) as usize;
        let (dx, dy) = (&mut s.dx[k..k + n], &mut s.dy[k..k + n]);
        for t in 0..n {
            let c = c0 + t;
            dx[t] = row[c + 1] - row[c - 1];
            dy[t] = up[c] - down[c];
        }
        let (rb, cb, wt) = (
            &mut s.rbin[k..k + n],
            &mut s.cbin[k..k + n],
            &mut s.w[k..k + n],
        );
        for t in 0..n {
            let (c_rot, r_rot, rbin, cbin) = rot(j0 + t as i64);
            rb[t] = rbin;
            cb[t] = cbin;
            wt[t] = (c_rot * c_rot + r_rot * r_rot) * exp_scale;
        }
        k += n;
    }
    s.truncate(k);
    // Angles into `dx`, weighted magnitudes into `w`; fastAtan2 is fused from 16 values.
    if s.dx.len() >= 16 {
        weigh::<A, A>(s);
    } else {
        weigh::<A, Plain>(s);
    }

    const CELLS: usize = D + 2;
    const BINS: usize = N + 2;
    let mut hist = [0f32; CELLS * CELLS * BINS];
    // The 8 bins one sample votes into, relative to its first.
    const OFFS: [usize; 8] = [
        0,
        1,
        BINS,
        BINS + 1,
        CELLS * BINS,
        CELLS * BINS + 1,
        (CELLS + 1) * BINS,
        (CELLS + 1) * BINS + 1,
    ];
    // Runs of samples voting into the same 8 bins accumulate in registers: the same
    // additions in the same order as OpenCV's, without a store and reload per sample.
    let mut cur = usize::MAX;
    let mut acc = [0f32; 8];
    for k in 0..s.dx.len() {
        let (mut rbin, mut cbin) = (s.rbin[k], s.cbin[k]);
        let mut obin = (s.dx[k] - ori) * bins_per_rad;
        let mag = s.w[k];
        let r0 = rbin.floor() as i32;
        let c0 = cbin.floor() as i32;
        let mut o0 = obin.floor() as i32;
        rbin -= r0 as f32;
        cbin -= c0 as f32;
        obin -= o0 as f32;
        if o0 < 0 {
            o0 += N as i32;
        }
        if o0 >= N as i32 {
            o0 -= N as i32;
        }
        let v_r1 = mag * rbin;
        let v_r0 = mag - v_r1;
        let v_rc11 = v_r1 * cbin;
        let v_rc10 = v_r1 - v_rc11;
        let v_rc01 = v_r0 * cbin;
        let v_rc00 = v_r0 - v_rc01;
        let v_rco111 = v_rc11 * obin;
        let v_rco110 = v_rc11 - v_rco111;
        let v_rco101 = v_rc10 * obin;
        let v_rco100 = v_rc10 - v_rco101;
        let v_rco011 = v_rc01 * obin;
        let v_rco010 = v_rc01 - v_rco011;
        let v_rco001 = v_rc00 * obin;
        let v_rco000 = v_rc00 - v_rco001;
        // r0, c0 >= -1 and o0 in 0..N, so the index is never negative.
        let idx = (((r0 + 1) as usize * CELLS + (c0 + 1) as usize) * BINS) + o0 as usize;
        if idx != cur {
            if cur != usize::MAX {
                for (o, a) in OFFS.iter().zip(acc) {
                    hist[cur + o] = a;
                }
            }
            for (a, o) in acc.iter_mut().zip(OFFS) {
                *a = hist[idx + o];
            }
            cur = idx;
        }
        let votes = [
            v_rco000, v_rco001, v_rco010, v_rco011, v_rco100, v_rco101, v_rco110, v_rco111,
        ];
        for (a, v) in acc.iter_mut().zip(votes) {
            *a += v;
        }
    }
    if cur != usize::MAX {
        for (o, a) in OFFS.iter().zip(acc) {
            hist[cur + o] = a;
        }
    }

    let mut raw = [0f32; LEN];
    for i in 0..D {
        for j in 0..D {
            let idx = ((i + 1) * CELLS + (j + 1)) * BINS;
            hist[idx] += hist[idx + N];
            hist[idx + 1] += hist[idx + N + 1];
            raw[(i * D + j) * N..(i * D + j + 1) * N].copy_from_slice(&hist[idx..idx + N]);
        }
    }
    finish::<A>(&mut raw, out);
}

/// Replaces `dx` by the gradient angle and `w` by `exp(w)·magnitude`.
#[inline(always)]
fn weigh<A: Arith, T: Arith>(s: &mut Scratch) {
    for ((dx, &dy), w) in s.dx.iter_mut().zip(&s.dy).zip(s.w.iter_mut()) {
        let ori = fast_atan2::<T>(dy, *dx);
        *w = magnitude::<A>(*dx, dy) * exp::<A>(*w);
        *dx = ori;
    }
}

/// Clip at 0.2 of the norm, renormalise, scale by 512 and round to bytes.
#[inline(always)]
fn finish<A: Arith>(raw: &mut [f32; LEN], out: &mut [u8; LEN]) {
    // OpenCV accumulates the squares in SIMD lanes (8 with AVX2, fused; 4 with SSE) and
    // sums the lanes pairwise.
    let nrm2 = if A::FUSED {
        let mut acc = [0f32; 8];
        for c in raw.chunks_exact(8) {
            for l in 0..8 {
                acc[l] = A::mul_add(c[l], c[l], acc[l]);
            }
        }
        ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    } else {
        let mut acc = [0f32; 4];
        for c in raw.chunks_exact(4) {
            for l in 0..4 {
                acc[l] = A::mul_add(c[l], c[l], acc[l]);
            }
        }
        (acc[0] + acc[2]) + (acc[1] + acc[3])
    };
    let thr = nrm2.sqrt() * MAG_THR;
    let mut nrm2 = 0f32;
    for v in raw.iter_mut() {
        let c = if thr < *v { thr } else { *v };
        *v = c;
        nrm2 += c * c;
    }
    let scale = INT_FACTOR / nrm2.sqrt().max(f32::EPSILON);
    for (o, &v) in out.iter_mut().zip(raw.iter()) {
        *o = cv_round(v * scale).clamp(0, 255) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(f: impl Fn(f32, f32) -> f32) -> Band {
        let w = 64;
        let data = (0..w * w)
            .map(|i| f((i % w) as f32, (i / w) as f32))
            .collect();
        Band { w, y0: 0, data }
    }

    fn describe_at(img: &Band, ori: f32) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        describe(
            img,
            img.w,
            32.0,
            32.0,
            ori,
            2.5,
            &mut out,
            &mut Scratch::default(),
        );
        out
    }

    #[test]
    fn descriptor_is_normalised_and_clipped() {
        let img = patch(|x, y| ((x * 0.7).sin() + (y * 0.3).cos()) * 60.0 + x * y * 0.05);
        let d = describe_at(&img, 0.0);
        let norm = d.iter().map(|&v| (v as f32).powi(2)).sum::<f32>().sqrt();
        assert!((norm - 512.0).abs() < 8.0, "norm {norm}");
        // Clipping at 0.2 of the norm caps each value near 0.2 · 512 (before renormalising).
        assert!(d.iter().all(|&v| v as f32 <= 0.2 * 512.0 * 1.6), "{d:?}");
    }

    #[test]
    fn a_single_gradient_direction_fills_one_bin_per_cell() {
        let img = patch(|x, _| x * 4.0);
        let d = describe_at(&img, 0.0);
        for cell in d.chunks(N) {
            let (imax, _) = cell.iter().enumerate().max_by_key(|(_, v)| **v).unwrap();
            assert_eq!(imax, 0, "{cell:?}");
        }
    }

    #[test]
    fn rotating_the_frame_moves_votes_to_another_bin() {
        let img = patch(|x, _| x * 4.0);
        // Gradient at 0 degrees seen from a frame at 90: bin (0 - 90)/45 = -2 -> 6.
        let d = describe_at(&img, 90.0);
        let centre = &d[(D + 1) * N..(D + 2) * N];
        let (imax, _) = centre.iter().enumerate().max_by_key(|(_, v)| **v).unwrap();
        assert_eq!(imax, 6, "{centre:?}");
    }
}
