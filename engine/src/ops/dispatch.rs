//! Runtime CPU dispatch for hot pixel loops: the one place that decides which kernels run.
//!
//! The crate is built for the baseline x86-64 target (SSE2), so wide vectors and fused
//! multiply-add are only used where the CPU is checked at run time. [`kernels`] makes that
//! check once per process and every op asks it; `PRISM_KERNELS=portable|avx2`, read at
//! first use, forces a level the CPU has (tests re-run themselves in a child process with
//! it, so no test flips a switch under another). [`avx2_fma!`] turns one function body
//! into two compiled copies, baseline and AVX2+FMA, and picks one per call. The body must
//! only call `#[inline(always)]` helpers for them to get the wider code too.
//!
//! Most results never depend on the copy taken: Rust does not contract `a * b + c` into an
//! FMA on its own, and `f32::mul_add` is a correctly rounded FMA on every CPU (a library
//! call where the instruction is missing), so both copies round the same way. Where OpenCV's
//! own results depend on its dispatch (hue-saturation's HSV2BGR, SIFT), the level also says
//! which of OpenCV's code paths Prism follows.

use std::sync::OnceLock;

/// The environment variable that forces a kernel level (`portable` or `avx2`).
pub const KERNELS_ENV: &str = "PRISM_KERNELS";

/// The sets of kernels Prism has, from the most portable up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kernels {
    /// No CPU-specific code. On x86-64 this is the SSE2 baseline, and where OpenCV's results
    /// depend on its dispatch, Prism follows OpenCV's SSE code (no FMA).
    Portable,
    /// AVX2 and FMA loops, and OpenCV's AVX2 code where results depend on it (x86-64).
    Avx2,
}

impl Kernels {
    /// Every level, from the most portable up.
    pub const ALL: [Kernels; 2] = [Kernels::Portable, Kernels::Avx2];

    /// The name `PRISM_KERNELS` takes.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Portable => "portable",
            Kernels::Avx2 => "avx2",
        }
    }

    /// The level named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Kernels> {
        Kernels::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The best level this CPU can run.
    pub fn best_supported() -> Kernels {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernels::Avx2;
            }
        }
        Kernels::Portable
    }

    /// Every level this CPU can run, from the most portable up.
    pub fn supported() -> Vec<Kernels> {
        let best = Kernels::best_supported();
        Kernels::ALL.into_iter().filter(|k| *k <= best).collect()
    }
}

/// The level `request` (the value of `PRISM_KERNELS`, if set) gives on a CPU whose best is
/// `best`, and a warning when the request cannot be honoured as asked.
fn choose(request: Option<&str>, best: Kernels) -> (Kernels, Option<String>) {
    let Some(name) = request.map(str::trim).filter(|s| !s.is_empty()) else {
        return (best, None);
    };
    match Kernels::from_name(name) {
        Some(k) if k <= best => (k, None),
        Some(k) => (
            best,
            Some(format!(
                "{KERNELS_ENV}={}: this CPU lacks it; using {}",
                k.name(),
                best.name()
            )),
        ),
        None => (
            best,
            Some(format!(
                "{KERNELS_ENV}={name}: unknown (portable or avx2); using {}",
                best.name()
            )),
        ),
    }
}

/// The kernel level every op uses in this process: the best the CPU has, or the one
/// `PRISM_KERNELS` asks for (read once, at first use; a level the CPU lacks is refused
/// with a warning on stderr).
pub fn kernels() -> Kernels {
    static LEVEL: OnceLock<Kernels> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let request = std::env::var(KERNELS_ENV).ok();
        let (level, warning) = choose(request.as_deref(), Kernels::best_supported());
        if let Some(w) = warning {
            eprintln!("prism: {w}");
        }
        level
    })
}

/// Whether the AVX2 + FMA kernels run (the CPU has both and no lower level was forced).
#[inline]
pub(crate) fn avx2() -> bool {
    kernels() == Kernels::Avx2
}

/// Defines a function whose body is compiled twice (baseline and AVX2+FMA) and runs the
/// AVX2 copy at the AVX2 kernel level ([`kernels`]). Type parameters are allowed
/// (`fn f<T: Bound>(...)`, one bound each) and passed on explicitly.
///
/// The second form, `{ portable: EXPR, avx2: EXPR }` as the body, runs a different
/// expression per level (SIFT follows OpenCV's fused or unfused arithmetic this way); the
/// `avx2` one is compiled with AVX2 and FMA enabled.
macro_rules! avx2_fma {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?
            { portable: $portable:expr, avx2: $wide:expr $(,)? }
    ) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $wide
                }
                if $crate::ops::dispatch::avx2() {
                    // SAFETY: `wide` only needs AVX2 and FMA; the Avx2 level means the CPU
                    // has both (`Kernels::best_supported` checked them).
                    return unsafe { wide($($arg),*) };
                }
            }
            $portable
        }
    };
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident $(<$($g:ident : $gb:path),+ $(,)?>)?
            ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$attr])*
        $vis fn $name $(<$($g: $gb),+>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body $(<$($g: $gb),+>)? ($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide $(<$($g: $gb),+>)? ($($arg: $ty),*) $(-> $ret)? {
                    body $(::<$($g),+>)? ($($arg),*)
                }
                if $crate::ops::dispatch::avx2() {
                    // SAFETY: `wide` only needs AVX2 and FMA; the Avx2 level means the CPU
                    // has both (`Kernels::best_supported` checked them).
                    return unsafe { wide $(::<$($g),+>)? ($($arg),*) };
                }
            }
            body $(::<$($g),+>)? ($($arg),*)
        }
    };
}

pub(crate) use avx2_fma;

/// The kernels this process runs, as the about box names them: `"avx2+fma"` at the AVX2
/// level, `"baseline"` (SSE2 on x86-64) at the portable one ([`kernels`], so a forced
/// `PRISM_KERNELS=portable` shows here too).
pub fn simd_path() -> &'static str {
    match kernels() {
        Kernels::Avx2 => "avx2+fma",
        Kernels::Portable => "baseline",
    }
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

    use super::{choose, Kernels};

    #[test]
    fn a_request_picks_a_supported_level_and_nothing_above() {
        use Kernels::*;
        assert_eq!(choose(None, Avx2), (Avx2, None));
        assert_eq!(choose(Some(""), Portable), (Portable, None));
        assert_eq!(choose(Some("portable"), Avx2), (Portable, None));
        assert_eq!(choose(Some(" avx2 "), Avx2), (Avx2, None));
        let (k, w) = choose(Some("avx2"), Portable);
        assert_eq!(k, Portable);
        assert!(w.unwrap().contains("lacks"));
        let (k, w) = choose(Some("avx512"), Avx2);
        assert_eq!(k, Avx2);
        assert!(w.unwrap().contains("unknown"));
    }

    #[test]
    fn levels_round_trip_their_names() {
        for k in Kernels::ALL {
            assert_eq!(Kernels::from_name(k.name()), Some(k));
        }
        assert!(Kernels::supported().contains(&Kernels::Portable));
        assert_eq!(
            Kernels::supported().last(),
            Some(&Kernels::best_supported())
        );
    }

    #[test]
    fn op_unit_tests_pass_on_every_kernel_level() {
        // Re-runs this binary's op tests in a child per other level the CPU has: the level
        // is fixed per process, so forcing it here would race with tests running alongside.
        const ME: &str = "ops::dispatch::tests::op_unit_tests_pass_on_every_kernel_level";
        for level in Kernels::supported() {
            if level == super::kernels() {
                continue;
            }
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["ops::", "--skip", ME])
                .env(super::KERNELS_ENV, level.name())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}: {stdout}\n{}",
                level.name(),
                String::from_utf8_lossy(&out.stderr)
            );
            let ran = "ops::dispatch::tests::the_level_is_the_requested_one ... ok";
            assert!(stdout.contains(ran), "{}: {stdout}", level.name());
        }
    }

    #[test]
    fn the_level_is_the_requested_one() {
        let request = std::env::var(super::KERNELS_ENV).ok();
        let expected = request
            .as_deref()
            .and_then(Kernels::from_name)
            .filter(|k| *k <= Kernels::best_supported())
            .unwrap_or_else(Kernels::best_supported);
        assert_eq!(super::kernels(), expected, "{request:?}");
    }

    #[test]
    fn the_path_named_is_the_level_taken_and_one_the_cpu_has() {
        let found = super::cpu_features();
        let wide = found.contains(&"avx2") && found.contains(&"fma");
        let path = super::simd_path();
        assert_eq!(path == "avx2+fma", super::kernels() == Kernels::Avx2);
        assert!(wide || path == "baseline", "{path} without AVX2 and FMA");
    }

    avx2_fma! {
        fn widest<T: Copy>(items: &[T], size: fn(T) -> u32) -> u32 {
            items.iter().map(|&t| size(t)).max().unwrap_or(0)
        }
    }

    avx2_fma! {
        fn level_name(prefix: &str) -> String {
            portable: format!("{prefix}portable"),
            avx2: format!("{prefix}avx2"),
        }
    }

    #[test]
    fn the_split_form_runs_the_expression_of_the_level() {
        assert_eq!(level_name("k:"), format!("k:{}", super::kernels().name()));
    }

    #[test]
    fn generic_functions_get_both_copies_too() {
        assert_eq!(widest::<u8>(&[3, 9, 4], u32::from), 9);
        assert_eq!(widest::<char>(&[], u32::from), 0);
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
