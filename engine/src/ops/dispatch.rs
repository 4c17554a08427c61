//! Runtime CPU dispatch for hot pixel loops.
//!
//! The crate is built for the baseline x86-64 target (SSE2), so wide vectors and fused
//! multiply-add are only used where the CPU is checked at run time. [`avx2_fma!`] turns one
//! function body into two compiled copies, baseline and AVX2+FMA, and picks one per call.
//! The body must only call `#[inline(always)]` helpers for them to get the wider code too.
//!
//! Results never depend on the copy taken: Rust does not contract `a * b + c` into an FMA
//! on its own, and `f32::mul_add` is a correctly rounded FMA on every CPU (a library call
//! where the instruction is missing), so both copies round the same way.

/// Defines a function whose body is compiled twice (baseline and AVX2+FMA) and runs the
/// AVX2 copy when the CPU has both features.
macro_rules! avx2_fma {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: `wide` only needs AVX2 and FMA, which the CPU was just checked for.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use avx2_fma;

/// The copy of the [`avx2_fma!`] functions (Sobel, Canny, Harris) this CPU runs:
/// `"avx2+fma"`, or `"baseline"` (SSE2) when the CPU lacks either feature or is not x86-64.
pub fn simd_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return "avx2+fma";
    }
    "baseline"
}

/// The vector features this CPU has, of those that matter to the engine and its codecs
/// (libjpeg-turbo picks its own SIMD path at run time too), for about boxes and bug reports.
pub fn cpu_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! check {
            ($($f:tt),*) => {
                $(if std::arch::is_x86_feature_detected!($f) {
                    found.push($f);
                })*
            };
        }
        check!("sse2", "ssse3", "sse4.1", "sse4.2", "avx", "avx2", "fma", "avx512f");
    }
    #[cfg(target_arch = "aarch64")]
    found.push("neon");
    found
}

#[cfg(test)]
mod tests {
    avx2_fma! {
        fn fused(a: f32, b: f32, c: f32) -> f32 {
            a.mul_add(b, c)
        }
    }

    #[test]
    fn the_path_taken_matches_the_features_found() {
        let found = super::cpu_features();
        let wide = found.contains(&"avx2") && found.contains(&"fma");
        assert_eq!(
            super::simd_path(),
            if wide { "avx2+fma" } else { "baseline" }
        );
    }

    #[test]
    fn both_copies_round_fma_once() {
        // 1 + 2^-12 squared is 1 + 2^-11 + 2^-24: the last term is lost when rounded first.
        let a = 1.0 + f32::EPSILON * 2048.0;
        let c = -(1.0 + f32::EPSILON * 4096.0);
        assert_eq!(fused(a, a, c), f32::EPSILON * f32::EPSILON * 2f32.powi(22));
        assert_eq!(a * a + c, 0.0);
    }
}
