//! What the about box shows: the version, the licence, and how the engine runs on this
//! machine (build target and profile, the SIMD path taken at run time, CPU features).

use serde::Serialize;

/// The about box's content.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct About {
    pub name: &'static str,
    pub version: &'static str,
    pub license: &'static str,
    /// e.g. `x86_64-linux`.
    pub target: String,
    /// `release` or `debug`.
    pub profile: &'static str,
    /// The copy of the engine's vectorised loops this CPU runs: `avx2+fma` or `baseline`.
    pub simd_path: &'static str,
    /// Whether a faster path was turned down by `PRISM_KERNELS` (the CPU has one).
    pub simd_forced: bool,
    /// The vector features found on this CPU at run time.
    pub cpu_features: Vec<&'static str>,
}

impl About {
    pub fn here() -> About {
        About {
            name: "Prism",
            version: env!("CARGO_PKG_VERSION"),
            license: env!("CARGO_PKG_LICENSE"),
            target: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            simd_path: prism_engine::ops::simd_path(),
            simd_forced: prism_engine::ops::dispatch::kernels()
                < prism_engine::ops::dispatch::Kernels::best_supported(),
            cpu_features: prism_engine::ops::cpu_features(),
        }
    }
}

/// The paths among the app's arguments: what a file manager's "Open with Prism" passes
/// (the desktop entry's `Exec=prism-app %F`). Options and paths that do not exist are
/// left out.
pub fn launch_paths(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::path::PathBuf> {
    args.into_iter()
        .filter(|a| !a.to_string_lossy().starts_with('-'))
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_about_box_names_version_licence_and_simd_path() {
        let a = About::here();
        assert_eq!(a.name, "Prism");
        assert_eq!(a.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(a.license, "MIT OR Apache-2.0");
        assert!(a.target.ends_with(std::env::consts::OS), "{}", a.target);
        let wide = a.cpu_features.contains(&"avx2") && a.cpu_features.contains(&"fma");
        // The best path the CPU has, unless PRISM_KERNELS asked for the portable one.
        let portable = std::env::var(prism_engine::ops::dispatch::KERNELS_ENV)
            .is_ok_and(|v| v.trim() == "portable");
        let fast = wide && !portable;
        assert_eq!(a.simd_path, if fast { "avx2+fma" } else { "baseline" });
        assert_eq!(a.simd_forced, wide && portable);
        #[cfg(target_arch = "x86_64")]
        assert!(a.cpu_features.contains(&"sse2"), "{:?}", a.cpu_features);
        let json = serde_json::to_value(&a).unwrap();
        for key in [
            "version",
            "license",
            "simd_path",
            "simd_forced",
            "cpu_features",
            "profile",
            "target",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
    }

    #[test]
    fn launch_arguments_keep_existing_paths_only() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.png");
        std::fs::write(&img, b"x").unwrap();
        let args = [
            img.clone().into_os_string(),
            "--some-flag".into(),
            dir.path().join("missing.png").into_os_string(),
            dir.path().as_os_str().to_owned(),
        ];
        assert_eq!(launch_paths(args), vec![img, dir.path().to_path_buf()]);
    }
}
