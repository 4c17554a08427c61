//! Keypoint orientation as OpenCV's `calcOrientationHist` and the peak search after it.
//!
//! Gradients over a `(2r + 1)²` window (`r = cvRound(4.5·scl)`) on the keypoint's Gaussian
//! layer, weighted by `exp(-(i² + j²) / (2·(1.5·scl)²))`, vote into 36 bins of their
//! `fastAtan2` angle; the histogram is smoothed with `[1 4 6 4 1]/16` (circularly) and
//! every local peak at or above 80 % of the highest gives a keypoint, its bin refined by a
//! parabola. OpenCV stores the angle as `360 - bin·10` (so angles turn clockwise in image
//! coordinates, the y axis pointing down), and `0` for an angle that rounds to 360.

use super::math::{cv_round, exp, fast_atan2, fma_dispatch, fused, magnitude, Arith, Plain};
use super::scale_space::Band;

/// Bins of the orientation histogram (`SIFT_ORI_HIST_BINS`).
pub(crate) const BINS: usize = 36;
/// Window radius in units of the keypoint scale (`SIFT_ORI_RADIUS`).
pub(crate) const RADIUS_FACTOR: f32 = 4.5;
/// Gaussian weight sigma in units of the keypoint scale (`SIFT_ORI_SIG_FCTR`).
pub(crate) const SIGMA_FACTOR: f32 = 1.5;
/// Secondary peaks at least this fraction of the highest become keypoints too.
const PEAK_RATIO: f32 = 0.8;

/// Per-task buffers reused across keypoints.
#[derive(Default)]
pub(crate) struct Scratch {
    dx: Vec<f32>,
    dy: Vec<f32>,
    w: Vec<f32>,
}

fma_dispatch! {
    /// The smoothed histogram around `(x, y)` of `img` (an octave of height `h`) and its
    /// maximum.
    pub(crate) fn histogram(img: &Band, h: usize, x: usize, y: usize, radius: i32, sigma: f32, hist: &mut [f32; BINS], s: &mut Scratch) -> f32 => histogram_impl
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn histogram_impl<A: Arith>(
    img: &Band,
    h: usize,
    x: usize,
    y: usize,
    radius: i32,
    sigma: f32,
    hist: &mut [f32; BINS],
    s: &mut Scratch,
) -> f32 {
    let w = img.w as i64;
    let expf_scale = -1.0 / (2.0 * sigma * sigma);
    let side = (2 * radius + 1).max(0) as usize;
    for v in [&mut s.dx, &mut s.dy, &mut s.w] {
        if v.len() < side * side {
            v.resize(side * side, 0.0);
        }
    }
    let mut k = 0;
    let (px, py, rad) = (x as i64, y as i64, radius as i64);
    for i in -rad..=rad {
        let yy = py + i;
        if yy <= 0 || yy >= h as i64 - 1 {
            continue;
        }
        let x0 = (px - rad).max(1);
        let x1 = (px + rad).min(w - 2);
        if x0 > x1 {
            continue;
        }
        let (row, up, down) = (
            img.row(yy as usize),
            img.row(yy as usize - 1),
            img.row(yy as usize + 1),
        );
        let n = (x1 - x0 + 1) as usize;
        let (x0, ii) = (x0 as usize, i * i);
        let (dx, dy, wt) = (&mut s.dx[k..k + n], &mut s.dy[k..k + n], &mut s.w[k..k + n]);
        for t in 0..n {
            let xx = x0 + t;
            let j = xx as i64 - px;
            dx[t] = row[xx + 1] - row[xx - 1];
            dy[t] = up[xx] - down[xx];
            wt[t] = (ii + j * j) as f32 * expf_scale;
        }
        k += n;
    }
    s.dx.truncate(k);
    s.dy.truncate(k);
    s.w.truncate(k);
    // Angles into `dx`, weighted magnitudes into `w`, in vectorisable passes.
    // OpenCV's fastAtan2 takes its SIMD (fused) path only for 16 or more values.
    if s.dx.len() >= 16 {
        weigh::<A, A>(s);
    } else {
        weigh::<A, Plain>(s);
    }
    let mut temp = [0f32; BINS + 4];
    let nd360 = BINS as f32 / 360.0;
    // Runs of votes into one bin accumulate in a register, in OpenCV's order.
    let (mut cur, mut acc) = (usize::MAX, 0f32);
    for (&ori, &wm) in s.dx.iter().zip(&s.w) {
        let mut bin = cv_round(nd360 * ori);
        if bin >= BINS as i32 {
            bin -= BINS as i32;
        }
        if bin < 0 {
            bin += BINS as i32;
        }
        let b = 2 + bin as usize;
        if b != cur {
            if cur != usize::MAX {
                temp[cur] = acc;
            }
            acc = temp[b];
            cur = b;
        }
        acc += wm;
    }
    if cur != usize::MAX {
        temp[cur] = acc;
    }
    smooth::<A>(&mut temp, hist)
}

/// Replaces `dx` by the gradient angle and `w` by `exp(w)·magnitude`.
#[inline(always)]
fn weigh<A: Arith, T: Arith>(s: &mut Scratch) {
    for ((dx, &dy), w) in s.dx.iter_mut().zip(&s.dy).zip(s.w.iter_mut()) {
        let ori = fast_atan2::<T>(dy, *dx);
        *w = exp::<A>(*w) * magnitude::<A>(*dx, dy);
        *dx = ori;
    }
}

/// Circular `[1 4 6 4 1]/16` smoothing of `temp[2..2 + BINS]` into `hist`; returns the max.
#[inline(always)]
fn smooth<A: Arith>(temp: &mut [f32; BINS + 4], hist: &mut [f32; BINS]) -> f32 {
    const D1: f32 = 1.0 / 16.0;
    const D4: f32 = 4.0 / 16.0;
    const D6: f32 = 6.0 / 16.0;
    temp[1] = temp[BINS + 1];
    temp[0] = temp[BINS];
    temp[BINS + 2] = temp[2];
    temp[BINS + 3] = temp[3];
    // OpenCV's 8-wide SIMD loop covers bins 0..32 with v_fma; the rest is scalar.
    for (i, hv) in hist.iter_mut().enumerate() {
        let t = |k: usize| temp[i + k];
        *hv = if i < BINS / 8 * 8 {
            A::mul_add(t(0) + t(4), D1, A::mul_add(t(1) + t(3), D4, t(2) * D6))
        } else {
            (t(0) + t(4)) * D1 + (t(1) + t(3)) * D4 + t(2) * D6
        };
    }
    hist.iter().copied().fold(hist[0], f32::max)
}

/// Angles (OpenCV's convention) of every histogram peak at or above 80 % of `max`.
pub(crate) fn peaks(hist: &[f32; BINS], max: f32, out: &mut Vec<f32>) {
    out.clear();
    let mag_thr = max * PEAK_RATIO;
    let n = BINS as f32;
    for j in 0..BINS {
        let l = if j > 0 { j - 1 } else { BINS - 1 };
        let r2 = if j < BINS - 1 { j + 1 } else { 0 };
        if hist[j] > hist[l] && hist[j] > hist[r2] && hist[j] >= mag_thr {
            let mut bin =
                j as f32 + 0.5 * (hist[l] - hist[r2]) / (hist[l] - 2.0 * hist[j] + hist[r2]);
            bin = if bin < 0.0 {
                n + bin
            } else if bin >= n {
                bin - n
            } else {
                bin
            };
            // GCC contracts this scalar expression into an FMA in OpenCV's AVX2 build.
            let step = 360.0 / n;
            let mut angle = if fused() {
                (-step).mul_add(bin, 360.0)
            } else {
                360.0 - step * bin
            };
            if (angle - 360.0).abs() < f32::EPSILON {
                angle = 0.0;
            }
            out.push(angle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ramp rising along `+x` (left to right) on a 41x41 layer.
    fn ramp(dir_x: f32, dir_y: f32) -> Band {
        let w = 41;
        let data = (0..w * w)
            .map(|i| ((i % w) as f32 * dir_x + (i / w) as f32 * dir_y) * 3.0)
            .collect();
        Band { w, y0: 0, data }
    }

    fn angles(img: &Band) -> Vec<f32> {
        let mut hist = [0f32; BINS];
        let mut s = Scratch::default();
        let max = histogram(img, img.w, 20, 20, 8, 3.0, &mut hist, &mut s);
        let mut out = Vec::new();
        peaks(&hist, max, &mut out);
        out
    }

    #[test]
    fn gradient_along_x_is_angle_zero() {
        assert_eq!(angles(&ramp(1.0, 0.0)), [0.0]);
    }

    #[test]
    fn gradient_down_the_rows_is_ninety_degrees() {
        // dy is measured upwards (row above minus row below), so a ramp increasing with the
        // row index points to 270 in atan terms, stored as 360 - 270 = 90.
        let a = angles(&ramp(0.0, 1.0));
        assert_eq!(a.len(), 1);
        assert!((a[0] - 90.0).abs() < 1e-3, "{a:?}");
    }

    #[test]
    fn two_equal_directions_give_two_keypoints() {
        let w = 41;
        let data = (0..w * w)
            .map(|i| {
                // A V: gradients point left on the left half and right on the right.
                ((i % w) as f32 - 20.0).abs() * 3.0
            })
            .collect();
        let img = Band { w, y0: 0, data };
        let mut hist = [0f32; BINS];
        let mut s = Scratch::default();
        let max = histogram(&img, w, 20, 20, 8, 30.0, &mut hist, &mut s);
        let mut out = Vec::new();
        peaks(&hist, max, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
    }
}
