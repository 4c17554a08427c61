//! Arithmetic shared by the SIFT stages: fused or plain multiply-add, OpenCV's rounding,
//! and the vectorisable `exp`, `atan2` and magnitude the histograms need.
//!
//! OpenCV's x86 build dispatches its SIMD kernels to AVX2 with FMA on CPUs that have it,
//! and its scalar tails stay unfused. Prism mirrors that: every hot loop is written once,
//! generic over [`Arith`], and [`fma_dispatch!`] compiles it a second time with AVX2 and
//! FMA enabled, run at the AVX2 kernel level (`ops::dispatch`). The fused version reproduces OpenCV's Gaussian
//! pyramid bit for bit; on CPUs without FMA both sides use plain arithmetic.

/// Multiply-add as one OpenCV code path computes it.
pub(crate) trait Arith {
    /// Whether `mul_add` rounds once (FMA) or twice.
    const FUSED: bool;
    /// `a * b + c`.
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// One rounding per multiply-add, as OpenCV's AVX2 kernels (`v_fma`, `_mm256_fmadd_ps`).
pub(crate) struct Fused;

/// A product rounded, then a sum rounded, as OpenCV's scalar code.
pub(crate) struct Plain;

impl Arith for Fused {
    const FUSED: bool = true;
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl Arith for Plain {
    const FUSED: bool = false;
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// Whether OpenCV's build for this kernel level would use FMA: its AVX2 kernels do, and GCC
/// contracts `a * b + c` in their scalar code too. The fused kernels run at the same level.
pub(crate) fn fused() -> bool {
    crate::ops::dispatch::avx2()
}

/// Defines `$name` calling `$imp::<Fused>` compiled for AVX2 + FMA at the AVX2 kernel
/// level, else `$imp::<Plain>` (through [`crate::ops::dispatch`]'s `avx2_fma!`). `$imp`
/// must be `#[inline(always)]` so it is compiled with the caller's features.
macro_rules! fma_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),* $(,)?) $(-> $r:ty)? => $imp:ident) => {
        $crate::ops::dispatch::avx2_fma! {
            $(#[$m])*
            #[allow(clippy::too_many_arguments)]
            $vis fn $name($($a: $t),*) $(-> $r)? {
                portable: $imp::<$crate::ops::sift::math::Plain>($($a),*),
                avx2: $imp::<$crate::ops::sift::math::Fused>($($a),*),
            }
        }
    };
}
pub(crate) use fma_dispatch;

/// OpenCV's `cvRound` on a float: nearest integer, ties to even.
#[inline(always)]
pub(crate) fn cv_round(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// OpenCV's `cvRound` on a double.
#[inline(always)]
pub(crate) fn cv_round_f64(v: f64) -> i64 {
    v.round_ties_even() as i64
}

// OpenCV's fastAtan2 polynomial (mathfuncs_core.simd.hpp), in degrees; the digits are
// OpenCV's literals, rounded to f32 as its compiler does.
const RAD_TO_DEG: f32 = (180.0 / std::f64::consts::PI) as f32;
#[allow(clippy::excessive_precision)]
const ATAN_P1: f32 = 0.999_787_841_279_480_7_f32 * RAD_TO_DEG;
#[allow(clippy::excessive_precision)]
const ATAN_P3: f32 = -0.325_808_397_464_097_5_f32 * RAD_TO_DEG;
#[allow(clippy::excessive_precision)]
const ATAN_P5: f32 = 0.155_578_651_846_328_1_f32 * RAD_TO_DEG;
#[allow(clippy::excessive_precision)]
const ATAN_P7: f32 = -0.044_326_555_547_921_28_f32 * RAD_TO_DEG;
const DBL_EPSILON_F32: f32 = f64::EPSILON as f32;

/// OpenCV's `fastAtan2(y, x)` in degrees, `[0, 360)`, as its SIMD path evaluates it.
#[inline(always)]
pub(crate) fn fast_atan2<A: Arith>(y: f32, x: f32) -> f32 {
    let ax = x.abs();
    let ay = y.abs();
    let c = ax.min(ay) / (ax.max(ay) + DBL_EPSILON_F32);
    let cc = c * c;
    let p = A::mul_add(
        A::mul_add(A::mul_add(cc, ATAN_P7, ATAN_P5), cc, ATAN_P3),
        cc,
        ATAN_P1,
    );
    let mut a = p * c;
    if ax < ay {
        a = 90.0 - a;
    }
    if x < 0.0 {
        a = 180.0 - a;
    }
    if y < 0.0 {
        a = 360.0 - a;
    }
    a
}

/// `sqrt(x² + y²)` as OpenCV's `magnitude32f` SIMD path evaluates it.
#[inline(always)]
pub(crate) fn magnitude<A: Arith>(x: f32, y: f32) -> f32 {
    A::mul_add(x, x, y * y).sqrt()
}

/// `e^x` within about one ulp for the weights' range (`x` in `[-88, 0]`), written so it
/// vectorises: Cody-Waite reduction by `ln 2` and Cephes' degree-6 polynomial.
///
/// OpenCV's x86 wheel computes these weights with IPP's `ippsExp_32f_A21`, which is not
/// reproducible bit for bit; both are within a few ulps of the true value.
#[inline(always)]
pub(crate) fn exp<A: Arith>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E).round_ties_even();
    let r = A::mul_add(n, -LN2_LO, A::mul_add(n, -LN2_HI, x));
    let mut p = 1.987_569_1e-4_f32;
    p = A::mul_add(p, r, 1.398_199_9e-3);
    p = A::mul_add(p, r, 8.333_452e-3);
    p = A::mul_add(p, r, 4.166_579_6e-2);
    p = A::mul_add(p, r, 1.666_666_5e-1);
    p = A::mul_add(p, r, 0.5);
    let e = A::mul_add(p, r * r, r) + 1.0;
    // 2^n with n in [-126, 127]: build the exponent bits directly.
    let bits = ((n as i32 + 127) as u32) << 23;
    e * f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulps() {
        let mut worst = 0;
        // The histograms' weights lie in [-9, 0]; cover well past that.
        for i in 0..200_000 {
            let x = -(i as f32) * 4.0e-4;
            let want = (x as f64).exp() as f32;
            worst = worst
                .max(ulps(exp::<Plain>(x), want))
                .max(ulps(exp::<Fused>(x), want));
        }
        assert!(worst <= 2, "worst error {worst} ulps");
    }

    #[test]
    fn fast_atan2_matches_true_angle_within_opencv_accuracy() {
        for i in 0..3600 {
            let t = (i as f64 / 10.0).to_radians();
            let (y, x) = ((t.sin() * 37.0) as f32, (t.cos() * 37.0) as f32);
            let want = (y as f64).atan2(x as f64).to_degrees().rem_euclid(360.0);
            let got = fast_atan2::<Plain>(y, x) as f64;
            let d = (got - want).abs().min(360.0 - (got - want).abs());
            assert!(d < 0.011, "{i}: {got} vs {want}");
        }
        // Quadrant rules as OpenCV's: atan2(0, 0) is 0, negative y lands in [180, 360).
        assert_eq!(fast_atan2::<Plain>(0.0, 0.0), 0.0);
        assert!(fast_atan2::<Plain>(-1.0, 1.0) > 300.0);
    }

    #[test]
    fn cv_round_ties_to_even() {
        assert_eq!(cv_round(2.5), 2);
        assert_eq!(cv_round(3.5), 4);
        assert_eq!(cv_round(-0.5), 0);
        assert_eq!(cv_round_f64(12.5), 12);
    }
}
